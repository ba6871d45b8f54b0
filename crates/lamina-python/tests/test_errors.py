"""Argument mistakes: TypeError naming the parameter, ValueError with the SDK's message."""

from __future__ import annotations

import pytest
from daytona import Image as DaytonaImage

import lamina

I = lamina.Image


@pytest.mark.parametrize(
    "call, parameter",
    [
        (lambda: I.base(3), "image"),
        (lambda: I.debian_slim(3.12), "python_version"),
        (lambda: I.from_dockerfile(None), "path"),
        (lambda: I.base("a").pip_install(1), "packages"),
        (lambda: I.base("a").pip_install("x", find_links="f"), "find_links"),
        (lambda: I.base("a").pip_install("x", index_url=1), "index_url"),
        (lambda: I.base("a").pip_install("x", extra_index_urls=[1]), "extra_index_urls"),
        (lambda: I.base("a").pip_install("x", pre="yes"), "pre"),
        (lambda: I.base("a").pip_install("x", extra_options=None), "extra_options"),
        (lambda: I.base("a").pip_install_from_requirements(1), "requirements_txt"),
        (lambda: I.base("a").pip_install_from_pyproject(1, []), "pyproject_toml"),
        (
            lambda: I.base("a").pip_install_from_pyproject("pyproject.toml", "dev"),
            "optional_dependencies",
        ),
        (lambda: I.base("a").add_local_file(1, "/x"), "local_path"),
        (lambda: I.base("a").add_local_file("app.py", 1), "remote_path"),
        (lambda: I.base("a").add_local_dir(b"src", "/x"), "local_path"),
        (lambda: I.base("a").run_commands(1), "commands"),
        (lambda: I.base("a").run_commands(["echo", 1]), "commands"),
        (lambda: I.base("a").env(["A=1"]), "env_vars"),
        (lambda: I.base("a").env({"A": 1}), "env_vars"),
        (lambda: I.base("a").workdir(1), "path"),
        (lambda: I.base("a").entrypoint("python"), "entrypoint_commands"),
        (lambda: I.base("a").cmd([1]), "cmd"),
        (lambda: I.base("a").dockerfile_commands("RUN x"), "dockerfile_commands"),
        (lambda: I.base("a").dockerfile_commands(["RUN x"], context_dir=1), "context_dir"),
        (lambda: I.base("a").apt_install(1), "packages"),
        (lambda: I.base("a").user(0), "user"),
        (lambda: I.base("a").label({"a": 1}), "labels"),
        (lambda: I.base("a").expose(80.5), "ports"),
    ],
)
def test_wrong_types_name_the_parameter(project, call, parameter):
    with pytest.raises(TypeError, match=f"argument '{parameter}'"):
        call()


# (chain, what the SDK raises for it): the message must be the SDK's.
SAME_MESSAGE = {
    "missing_file": lambda I: I.base("a").add_local_file("absent.py", "/x"),
    "file_is_dir": lambda I: I.base("a").add_local_file("src", "/x"),
    "missing_dir": lambda I: I.base("a").add_local_dir("absent", "/x"),
    "dir_is_file": lambda I: I.base("a").add_local_dir("app.py", "/x"),
    "missing_requirements": lambda I: I.base("a").pip_install_from_requirements("absent.txt"),
    "requirements_is_dir": lambda I: I.base("a").pip_install_from_requirements("src"),
    "missing_pyproject": lambda I: I.base("a").pip_install_from_pyproject("absent.toml", []),
    "pyproject_is_dir": lambda I: I.base("a").pip_install_from_pyproject("src", []),
    "missing_dockerfile": lambda I: I.from_dockerfile("absent/Dockerfile"),
    "dockerfile_is_dir": lambda I: I.from_dockerfile("src"),
    "missing_context": lambda I: I.base("a").dockerfile_commands(["RUN x"], "absent"),
    "context_is_file": lambda I: I.base("a").dockerfile_commands(["RUN x"], "app.py"),
    "strict_without_context": lambda I: I.base("a").dockerfile_commands(
        ["RUN x"], strict_context=True
    ),
    "invalid_python": lambda I: I.debian_slim("3.12x"),
    "unsupported_python": lambda I: I.debian_slim("3.8"),
    "unsupported_python_micro": lambda I: I.debian_slim("3.14.1"),
}


@pytest.mark.parametrize("name", sorted(SAME_MESSAGE))
def test_invalid_values_raise_value_error_with_the_sdk_message(project, name):
    chain = SAME_MESSAGE[name]
    with pytest.raises(Exception) as theirs:
        chain(DaytonaImage)
    with pytest.raises(ValueError) as ours:
        chain(lamina.Image)
    assert str(ours.value) == str(theirs.value).replace("Daytona supports", "Lamina supports")


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: I.base("Not A Name"), "must be lowercase"),
        (lambda: I.base("a").run_commands("echo a\necho b"), "run_commands"),
        (lambda: I.base("a").env({"A B": "1"}), "env"),
        (lambda: I.base("a").expose("http"), "expose"),
        (lambda: I.base("a").workdir(""), "workdir"),
        (lambda: I.base("a").dockerfile_commands(["FROM"]), "dockerfile_commands"),
        (lambda: I.base("a").user("a b"), "user"),
    ],
)
def test_values_lamina_refuses_raise_value_error(project, call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()
