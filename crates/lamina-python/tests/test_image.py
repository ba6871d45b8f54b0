"""`lamina.Image` against the installed Daytona SDK: the same calls give the same
Dockerfile text, and the same argument mistakes fail the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from daytona import Image as DaytonaImage

import lamina

# Each chain is called on both classes; `I` is the class.
CHAINS = {
    "base": lambda I: I.base("python:3.12-slim"),
    "base_digest": lambda I: I.base("registry.example:5000/team/app@sha256:" + "a" * 64),
    "debian_slim_default": lambda I: I.debian_slim(),
    "debian_slim_3_9": lambda I: I.debian_slim("3.9"),
    "debian_slim_3_10": lambda I: I.debian_slim("3.10"),
    "debian_slim_3_11": lambda I: I.debian_slim("3.11"),
    "debian_slim_3_12": lambda I: I.debian_slim("3.12"),
    "debian_slim_3_13": lambda I: I.debian_slim("3.13"),
    "debian_slim_micro": lambda I: I.debian_slim("3.13.4"),
    "debian_slim_rc": lambda I: I.debian_slim("3.11.0rc2"),
    "from_dockerfile": lambda I: I.from_dockerfile("Dockerfile"),
    "from_dockerfile_path": lambda I: I.from_dockerfile(Path("Dockerfile")),
    "pip_install": lambda I: I.base("python:3.12").pip_install("requests", "numpy"),
    "pip_install_lists": lambda I: I.base("python:3.12").pip_install(
        ["torch", "a b"], "zz<3", ["pandas>=2"]
    ),
    "pip_install_options": lambda I: I.base("python:3.12").pip_install(
        "x",
        find_links=["/x y", "f"],
        index_url="https://i.example/simple",
        extra_index_urls=["https://e1.example", "https://e 2.example"],
        pre=True,
        extra_options="  --no-cache-dir  ",
    ),
    "pip_install_empty_index": lambda I: I.base("python:3.12").pip_install("x", index_url=""),
    "pip_install_nothing": lambda I: I.base("python:3.12").pip_install(),
    "pip_install_from_requirements": lambda I: I.base("python:3.12")
    .pip_install_from_requirements("requirements.txt", index_url="https://i.example")
    .pip_install_from_requirements("./src/../requirements.txt", pre=True),
    "pip_install_from_pyproject": lambda I: I.base("python:3.12").pip_install_from_pyproject(
        "pyproject.toml",
        optional_dependencies=["dev", "absent"],
        find_links="f l",
        index_url="https://i.example",
        extra_index_url="https://x.example",
        extra_options="--no-deps",
    ),
    "pip_install_from_pyproject_plain": lambda I: I.base(
        "python:3.12"
    ).pip_install_from_pyproject("pyproject.toml", []),
    "add_local_file": lambda I: I.base("alpine").add_local_file("app.py", "/app/app.py"),
    "add_local_file_into_dir": lambda I: I.base("alpine").add_local_file(
        "./src/pkg/mod.py", "/app/"
    ),
    "add_local_file_spaces": lambda I: I.base("alpine").add_local_file(
        "my file.py", "/app/x y.py"
    ),
    "add_local_file_unicode": lambda I: I.base("alpine").add_local_file(
        "h\u00e9llo.py", "/app/"
    ),
    "add_local_file_pathlib": lambda I: I.base("alpine").add_local_file(
        Path("app.py"), "/srv/app.py"
    ),
    "add_local_dir": lambda I: I.base("alpine").add_local_dir("src", "/app/src"),
    "add_local_dir_dot": lambda I: I.base("alpine").add_local_dir(".", "/app"),
    "add_local_dir_nested": lambda I: I.base("alpine").add_local_dir(Path("src/pkg"), "/pkg"),
    "run_commands": lambda I: I.base("alpine").run_commands(
        "apt-get update", "echo 'a b' > /x && cat /x"
    ),
    "run_commands_words": lambda I: I.base("alpine").run_commands(
        ["echo", "a b", "$HOME", 'q"x', "s'y", "b\\s"], "true"
    ),
    "env": lambda I: I.base("alpine").env(
        {"A": "1", "B": "a b", "C": "", "D": "it's", "E": "\u00e9", "F": "x=y:z,@%+-./"}
    ),
    "workdir": lambda I: I.base("alpine").workdir("/app dir").workdir(Path("/w")),
    "entrypoint_cmd": lambda I: I.base("alpine")
    .entrypoint(["python", "-m", "app"])
    .cmd(["--port", "80"]),
    "entrypoint_cmd_empty": lambda I: I.base("alpine").entrypoint([]).cmd([]),
    "entrypoint_unicode": lambda I: I.base("alpine").entrypoint(["\u00e9cho", "$HOME"]),
    "dockerfile_commands": lambda I: I.base("alpine").dockerfile_commands(
        ["RUN echo a", "COPY src /src", "ENV X=1", "USER nobody"]
    ),
    "dockerfile_commands_context": lambda I: I.base("alpine").dockerfile_commands(
        ["COPY pkg /pkg"], context_dir="src"
    ),
    "dockerfile_commands_multiline": lambda I: I.base("alpine").dockerfile_commands(
        ["RUN echo one", "FROM alpine AS second", "WORKDIR /second"]
    ),
    "long_chain": lambda I: I.debian_slim("3.12")
    .pip_install("numpy", "pandas")
    .pip_install_from_requirements("requirements.txt")
    .add_local_dir("src", "/app/src")
    .add_local_file("app.py", "/app/app.py")
    .env({"APP_MODE": "production run"})
    .workdir("/app")
    .run_commands("python -m compileall /app")
    .entrypoint(["python", "app.py"])
    .cmd(["--verbose"]),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_renders_as_the_daytona_sdk(project, name):
    chain = CHAINS[name]
    assert chain(lamina.Image).dockerfile() == chain(DaytonaImage).dockerfile()


def test_every_daytona_method_is_covered():
    """A method the SDK adds shows up here first."""
    # pydantic's own members (`model_*`) are not the SDK's API.
    public = {n for n in vars(DaytonaImage) if not n.startswith(("_", "model_"))}
    covered = {
        "base",
        "debian_slim",
        "from_dockerfile",
        "pip_install",
        "pip_install_from_requirements",
        "pip_install_from_pyproject",
        "add_local_file",
        "add_local_dir",
        "run_commands",
        "env",
        "workdir",
        "entrypoint",
        "cmd",
        "dockerfile_commands",
        "dockerfile",
    }
    assert public <= covered, public - covered
    for method in covered:
        assert callable(getattr(lamina.Image, method)), method


def test_images_never_change(project):
    base = lamina.Image.base("alpine")
    first = base.run_commands("echo one")
    second = base.run_commands("echo two")
    assert base.dockerfile() == "FROM alpine\n"
    assert first.dockerfile().endswith("RUN echo one\n")
    assert second.dockerfile().endswith("RUN echo two\n")
    with pytest.raises(AttributeError):
        base._native = first._native
    assert lamina.Image.base("alpine") == base
    with pytest.raises(TypeError):
        lamina.Image()


def test_lamina_steps(project):
    image = (
        lamina.Image.base("debian:12")
        .apt_install("git", ["curl"])
        .user("nobody")
        .label({"org.opencontainers.image.title": "demo app"})
        .expose(8080, "53/udp")
    )
    assert image.dockerfile() == (
        "FROM debian:12\n"
        "RUN apt-get update && apt-get install -y curl git && rm -rf /var/lib/apt/lists/*\n"
        "USER nobody\n"
        "LABEL org.opencontainers.image.title='demo app'\n"
        "EXPOSE 8080 53/udp\n"
    )


def test_default_python_is_the_running_interpreter_as_in_the_sdk(project):
    series = f"{sys.version_info.major}.{sys.version_info.minor}"
    text = lamina.Image.debian_slim().dockerfile()
    assert text.startswith(f"FROM python:{series}.")


# What Lamina writes differently, on purpose.


def test_paths_outside_the_working_directory_keep_host_paths_out(project, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x\n")
    image = lamina.Image.base("alpine").add_local_file(str(outside), "/o.txt")
    # The SDK writes the absolute host path without its leading slash; Lamina writes the
    # file's name and keeps its folder as that step's own root, so the text (and the
    # digest) is the same from any checkout.
    assert image.dockerfile() == 'FROM alpine\nCOPY ["outside.txt", "/o.txt"]\n'
    inside = lamina.Image.base("alpine").add_local_file(str(project / "app.py"), "/a.py")
    assert inside.dockerfile() == 'FROM alpine\nCOPY ["app.py", "/a.py"]\n'


def test_dockerfile_commands_are_written_in_canonical_form(project):
    image = lamina.Image.base("alpine").dockerfile_commands(["run   echo a", "# note"])
    assert image.dockerfile() == "FROM alpine\nRUN echo a\n"


def test_exec_form_words_are_valid_json(project):
    # The SDK joins the words without escaping (`["say "hi""]`, not JSON, so Docker runs
    # it as a shell command); Lamina escapes them.
    image = lamina.Image.base("alpine").cmd(['say "hi"'])
    assert image.dockerfile() == 'FROM alpine\nCMD ["say \\"hi\\""]\n'
