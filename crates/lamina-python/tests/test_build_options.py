"""`Engine.build`'s BuildKit options (secrets, target, registry caches, named contexts,
ssh) on real builds, and `on_progress` of push and pull against a loopback registry."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile

import pytest

import lamina
from conftest import busybox_rootfs, need


def layer_files(engine, name, tmp_path):
    """The files of each layer of the image `name`, bottom first: path → content (empty
    for what is not a regular file), read from an oci-archive export."""
    archive = tmp_path / f"{name.replace(':', '-')}.tar"
    engine.export(name, archive)
    with tarfile.open(archive) as outer:

        def blob(digest):
            return outer.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()

        index = json.loads(outer.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        layers = []
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as tar:
                layers.append(
                    {
                        member.name.lstrip("./"): (
                            tar.extractfile(member).read() if member.isfile() else b""
                        )
                        for member in tar.getmembers()
                    }
                )
    return layers


def open_memory_files():
    """The memfds this process has open (bytes secrets live in them during a build)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the descriptor listdir itself used
    return [n for n in names if n.startswith("/memfd:lamina-secret")]


SECRET_STEPS = [
    "RUN --mount=type=secret,id=token cat /run/secrets/token && echo marker > /marker",
    'RUN --mount=type=secret,id=inline,env=INLINE echo "inline=$INLINE"',
]


def test_secrets_reach_run_steps_but_not_the_image(engine, busybox, tmp_path):
    need("runc")
    token_file = tmp_path / "token.txt"
    token_file.write_text("file-secret-3141\n")
    image = lamina.Image.base(busybox).dockerfile_commands(SECRET_STEPS)
    lines = []
    result = engine.build(
        image,
        tag="secrets:1",
        on_logs=lines.append,
        secrets={"token": token_file, "inline": b"bytes-secret-2718"},
    )
    assert "file-secret-3141" in lines, lines
    assert "inline=bytes-secret-2718" in lines, lines
    assert open_memory_files() == [], "the bytes secret's memory file is closed"

    layers = layer_files(engine, "secrets:1", tmp_path)
    assert any(files.get("marker") == b"marker\n" for files in layers), layers
    for files in layers:
        for path, content in files.items():
            assert b"file-secret" not in content and b"bytes-secret" not in content, path
            assert not path.startswith("run/secrets/"), path

    # As with BuildKit, a secret's value is no part of a step's key: another value hits.
    token_file.write_text("changed\n")
    again = engine.build(
        image, secrets={"token": str(token_file), "inline": bytearray(b"other")}
    )
    assert again.digest == result.digest and again.steps_cached == again.steps


def test_a_missing_required_secret_fails_the_build_naming_it(engine, busybox):
    image = lamina.Image.base(busybox).dockerfile_commands(SECRET_STEPS[:1])
    with pytest.raises(lamina.LaminaError, match="token"):
        engine.build(image)


MULTI_STAGE = """FROM busybox:offline AS first
RUN echo first > /stage
FROM busybox:offline AS second
RUN echo second > /stage
"""


def test_target_builds_the_stage_named_or_counted(engine, busybox, tmp_path):
    need("runc")
    dockerfile = tmp_path / "stages" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text(MULTI_STAGE)
    image = lamina.Image.from_dockerfile(dockerfile)

    lines = []
    engine.build(image, tag="first:1", target="first", on_logs=lines.append)
    assert "stage 0 (first) from busybox:offline" in lines
    assert not any(line.startswith("stage 1") for line in lines), lines
    assert layer_files(engine, "first:1", tmp_path)[-1]["stage"] == b"first\n"

    engine.build(image, tag="second:1", target=1)
    assert layer_files(engine, "second:1", tmp_path)[-1]["stage"] == b"second\n"

    with pytest.raises(lamina.DefinitionError) as unknown:
        engine.build(image, target="third")
    assert str(unknown.value) == 'no stage is named "third"; name one of: first, second'


def test_named_context_replaces_a_stage_for_copy_from(engine, busybox, tmp_path):
    need("runc")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("from the named context\n")
    image = lamina.Image.base(busybox).dockerfile_commands(
        ["COPY --from=notes note.txt /note.txt", "RUN cat /note.txt"]
    )
    lines = []
    engine.build(image, on_logs=lines.append, build_contexts={"notes": extra})
    assert "from the named context" in lines


def test_ssh_agent_socket_is_mounted_into_the_run_step(engine, busybox, tmp_path):
    need("runc")
    # Any unix socket stands for the agent: the step only sees that it is there.
    socket_path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX) as agent:
        agent.bind(str(socket_path))
        image = lamina.Image.base(busybox).dockerfile_commands(
            ['RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo agent-there']
        )
        lines = []
        engine.build(image, on_logs=lines.append, ssh={"default": socket_path})
    assert "agent-there" in lines, lines


def test_cache_to_a_registry_then_cache_from_it_in_another_store(
    engine, busybox, registry, tmp_path
):
    need("runc")
    image = lamina.Image.base(busybox).run_commands("echo built-once > /once")
    cache = f"{registry}/team/cache:app"
    built = engine.build(image, cache_to=[cache + ",mode=max"])
    assert built.steps_from_registry_cache == 0

    # A second store with the same offline base takes the RUN step from the cache.
    other = lamina.Engine(tmp_path / "other-store")
    context = tmp_path / "busybox-again"
    busybox_rootfs(context / "rootfs")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    other.build(lamina.Image.from_dockerfile(context / "Dockerfile"), tag="busybox:offline")
    other_lines = []
    fetched = other.build(image, cache_from=[cache], on_logs=other_lines.append)
    assert "built-once" not in other_lines, "the RUN step ran again"
    assert fetched.digest == built.digest
    assert (fetched.steps_from_registry_cache, fetched.steps_cached) == (1, 1)


def test_push_and_pull_report_each_blob_to_on_progress(engine, busybox, registry, tmp_path):
    need("runc")
    engine.build(lamina.Image.base(busybox).run_commands("echo p > /p"), tag="progress:1")
    reference = f"{registry}/team/progress:1"
    events = []
    pushed = engine.push("progress:1", reference, on_progress=events.append)
    done = [e for e in events if e.kind == "uploaded"]
    assert len(done) == pushed.blobs_pushed == 3
    assert all(e.transferred == e.size > 0 for e in done)
    assert sum(e.size for e in done) == pushed.bytes_pushed
    started = {e.digest for e in events if e.kind == "uploading"}
    assert started == {e.digest for e in done}
    assert all(e.transferred <= e.size for e in events if e.kind == "uploading")
    last = events[-1]
    assert (last.kind, last.digest, last.reference, last.size) == (
        "manifest",
        pushed.digest,
        reference,
        None,
    )
    assert 'kind="manifest"' in repr(last)

    again = []
    engine.push("progress:1", reference, on_progress=again.append)
    assert sorted(e.kind for e in again) == ["manifest"] + ["skipped"] * 3
    elsewhere = []
    engine.push("progress:1", f"{registry}/team/copy:1", on_progress=elsewhere.append)
    mounted = [e for e in elsewhere if e.kind == "mounted"]
    assert mounted and all(e.mounted_from.endswith("team/progress") for e in mounted), elsewhere

    other = lamina.Engine(tmp_path / "other-store")
    pulled = []
    assert other.pull(reference, on_progress=pulled.append) == pushed.digest
    downloaded = [e for e in pulled if e.kind == "downloaded"]
    assert {e.digest for e in downloaded} == {e.digest for e in done}
    assert all(e.transferred == e.size for e in downloaded)
    assert {e.kind for e in pulled} <= {"downloading", "downloaded"}
    repeat = []
    other.pull(reference, on_progress=repeat.append)
    assert {e.kind for e in repeat} <= {"skipped"}


def test_on_progress_exceptions_are_raised_after_the_transfer(
    engine, busybox, registry, tmp_path
):
    reference = f"{registry}/team/broken:1"

    def broken(event):
        raise RuntimeError(f"callback saw {event.kind}")

    with pytest.raises(RuntimeError, match="callback saw"):
        engine.push(busybox, reference, on_progress=broken)
    # The push itself completed.
    other = lamina.Engine(tmp_path / "other-store")
    with pytest.raises(RuntimeError, match="callback saw downloading"):
        other.pull(reference, on_progress=broken)
    assert [i.name for i in other.images()] == [reference]


def test_build_option_types_are_checked(engine):
    image = lamina.Image.base("busybox:offline")
    wrong = [
        (dict(secrets=["token"]), "secrets"),
        (dict(secrets={1: b"x"}), "secrets"),
        (dict(secrets={"token": 42}), "secrets"),
        (dict(ssh="default"), "ssh"),
        (dict(ssh={"default": 1}), "ssh"),
        (dict(target=1.5), "target"),
        (dict(target=True), "target"),
        (dict(cache_from="reg/cache:1"), "cache_from"),
        (dict(cache_to=[1]), "cache_to"),
        (dict(build_contexts={"a": 1}), "build_contexts"),
        (dict(build_contexts=[("a", "/")]), "build_contexts"),
        (dict(insecure_registries="reg:5000"), "insecure_registries"),
    ]
    for kwargs, parameter in wrong:
        with pytest.raises(TypeError, match=f"build\\(\\) argument '{parameter}'"):
            engine.build(image, **kwargs)
    for method in (
        lambda: engine.push("a:1", "127.0.0.1:1/a:1", on_progress="print"),
        lambda: engine.pull("127.0.0.1:1/a:1", on_progress=1),
    ):
        with pytest.raises(TypeError, match="argument 'on_progress'"):
            method()


def test_build_option_values_are_checked(engine, tmp_path, monkeypatch):
    image = lamina.Image.base("busybox:offline")
    (tmp_path / "file.txt").write_text("x")

    def refused(fragment, **kwargs):
        with pytest.raises(ValueError) as error:
            engine.build(image, **kwargs)
        assert str(error.value).startswith("build() argument '"), str(error.value)
        assert fragment in str(error.value), str(error.value)

    refused("does not exist or is not a file", secrets={"token": "s3cr3t-by-mistake"})
    refused("an id must not be empty", secrets={"": b"x"})
    with pytest.raises(ValueError) as shown:
        engine.build(image, secrets={"token": "s3cr3t-by-mistake"})
    assert "s3cr3t" not in str(shown.value), "a secret given as a path is never shown"

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    refused("forwards the agent of $SSH_AUTH_SOCK, which is not set", ssh={"default": None})
    refused("an id must not be empty", ssh={"": "/run/agent.sock"})

    refused("a stage index counts from 0", target=-1)
    refused("name a stage", target="")

    refused("names no cache ref", cache_to=["mode=max"])
    refused("cache type local is not supported", cache_to=["type=local,dest=/x"])
    refused("ignore-error takes true or false", cache_to=["reg/c:1,ignore-error=maybe"])

    refused("git:// contexts are not supported", build_contexts={"a": "git://host/repo"})
    refused("does not exist", build_contexts={"a": str(tmp_path / "absent")})
    refused("is not a directory", build_contexts={"a": tmp_path / "file.txt"})
    refused("docker-image:// names no image", build_contexts={"a": "docker-image://"})


def test_refused_options_start_no_build(engine, tmp_path):
    # Refused options never start a build: no build record, no work files.
    with pytest.raises(ValueError):
        engine.build(lamina.Image.base("busybox:offline"), cache_to=[""])
    assert engine.images() == []
    assert not (engine.store / "exec" / "runs").exists() or not list(
        (engine.store / "exec" / "runs").iterdir()
    )


def test_insecure_registries_let_a_build_pull_its_base_over_plain_http(
    engine, busybox, exposed_registry
):
    base = f"{exposed_registry}/base/busybox:1"
    insecure = [exposed_registry]
    engine.push(busybox, base, insecure_registries=insecure)
    image = lamina.Image.base(base).env({"A": "1"})
    with pytest.raises(lamina.BuildError, match=f"https://{exposed_registry}/v2/"):
        engine.build(image)  # over https, which the registry does not speak (after retries)
    lines = []
    built = engine.build(image, insecure_registries=insecure, on_logs=lines.append)
    assert lines[-1] == f"image {built.digest}"
    # The next build with the same list reuses what the first opened.
    assert engine.build(image, insecure_registries=insecure).steps_cached == 1
