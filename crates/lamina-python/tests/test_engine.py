"""`lamina.Engine`: a real build on an offline busybox base (RUN under runc), its logs,
the cache, export, push and pull against a loopback registry, and the errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tarfile
import threading
import time

import pytest

import lamina
from conftest import need


def test_build_streams_run_output_and_rebuilds_from_the_cache(engine, busybox, project):
    need("runc")
    image = (
        lamina.Image.base(busybox)
        .env({"GREETING": "hello from python"})
        .run_commands('echo "$GREETING"', "echo to-stderr >&2")
        .workdir("/srv")
    )
    lines = []
    result = engine.build(image, tag="app:1", on_logs=lines.append)
    assert result.digest.startswith("sha256:") and len(result.digest) == 71
    assert result.tag == "app:1"
    assert (result.steps, result.steps_cached) == (4, 0)
    assert result.duration > 0
    assert "hello from python" in lines
    assert "to-stderr" in lines
    assert any(line.startswith("#2/4 RUN") for line in lines), lines
    assert lines[-1] == f"image {result.digest}"

    again_lines = []
    again = engine.build(image, tag="app:1", on_logs=again_lines.append)
    assert again.digest == result.digest
    assert again.steps_cached == again.steps == 4
    assert "hello from python" not in again_lines
    assert "#2 cached" in again_lines

    fresh = engine.build(image, no_cache=True)
    assert fresh.steps_cached == 0

    names = {i.name: i for i in engine.images()}
    assert names["app:1"].digest == result.digest
    assert names["app:1"].state == "active"
    assert names["app:1"].size > 0


def test_build_args_reach_the_build(engine, busybox):
    need("runc")
    image = lamina.Image.base(busybox).dockerfile_commands(
        ["ARG FLAVOUR=plain", "RUN echo flavour=$FLAVOUR"]
    )
    lines = []
    engine.build(image, on_logs=lines.append, build_args={"FLAVOUR": "spicy"})
    assert "flavour=spicy" in lines


def test_export_then_push_and_pull_through_a_loopback_registry(
    engine, busybox, registry, tmp_path
):
    need("runc", "skopeo")
    image = lamina.Image.base(busybox).run_commands("echo pushed > /pushed.txt")
    built = engine.build(image, tag="pushme:1")

    archive = tmp_path / "pushme.tar"
    exported = engine.export("pushme:1", archive)
    assert exported.format == "oci-archive" and exported.compression == "gzip"
    assert 0 < exported.bytes <= archive.stat().st_size
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["digest"] == exported.digest

    reference = f"{registry}/team/pushme:1"
    pushed = engine.push("pushme:1", reference)
    assert pushed.digest == exported.digest, "gzip on the registry, as in the archive"
    assert pushed.blobs_pushed == 3, "config and two layers (busybox, RUN)"
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        check=True,
        capture_output=True,
    ).stdout
    assert len(json.loads(raw)["layers"]) == 2

    other = lamina.Engine(tmp_path / "other-store")
    assert other.pull(reference) == pushed.digest
    assert [i.name for i in other.images()] == [reference]
    imported = other.import_(archive, "imported:1")
    assert imported == [("imported:1", exported.digest)]
    assert built.digest != pushed.digest, "the store keeps the zstd layers as built"


def test_remove_and_gc(engine, busybox):
    assert engine.remove(busybox) == busybox
    assert engine.images() == []
    with pytest.raises(lamina.ImageNotFoundError) as missing:
        engine.remove(busybox)
    assert str(missing.value) == (
        "no image named busybox:offline in the store; `lamina image ls` lists them"
    )
    result = engine.gc()
    # Everything is younger than the default minimum age (10 minutes): nothing goes.
    assert result.blobs_removed == 0 and result.blobs_kept >= 3


def test_failures_raise_the_lamina_error_hierarchy(engine, busybox, tmp_path):
    need("runc")
    failing = lamina.Image.base(busybox).run_commands("echo about to fail; exit 3")
    lines = []
    with pytest.raises(lamina.BuildError) as failed:
        engine.build(failing, on_logs=lines.append)
    assert isinstance(failed.value, lamina.LaminaError)
    assert "exit" in str(failed.value) and "3" in str(failed.value), str(failed.value)
    assert "about to fail" in lines

    with pytest.raises(lamina.ImageNotFoundError):
        engine.export("absent:1", tmp_path / "absent.tar")
    with pytest.raises(lamina.ImageTransferError):
        engine.import_(tmp_path / "not-there.tar")
    # A COPY source that is not there is found when the build reads its inputs.
    missing_source = lamina.Image.base(busybox).dockerfile_commands(["COPY absent.txt /x"])
    with pytest.raises(lamina.DefinitionError, match="absent.txt"):
        engine.build(missing_source)


def test_on_logs_exceptions_are_raised_after_the_build(engine, busybox):
    need("runc")

    def broken(line):
        raise RuntimeError(f"callback saw {line!r}")

    with pytest.raises(RuntimeError, match="callback saw"):
        engine.build(lamina.Image.base(busybox).run_commands("echo x"), on_logs=broken)


def test_engine_arguments_are_checked(engine, tmp_path):
    image = lamina.Image.base("busybox:offline")
    with pytest.raises(TypeError, match="argument 'image'"):
        engine.build("FROM busybox")
    with pytest.raises(TypeError, match="argument 'tag'"):
        engine.build(image, tag=1)
    with pytest.raises(TypeError, match="argument 'on_logs'"):
        engine.build(image, on_logs="print")
    with pytest.raises(TypeError, match="argument 'no_cache'"):
        engine.build(image, no_cache=1)
    with pytest.raises(TypeError, match="argument 'build_args'"):
        engine.build(image, build_args={"A": 1})
    with pytest.raises(TypeError, match="argument 'store'"):
        lamina.Engine(store=1)
    with pytest.raises(ValueError, match="compression"):
        engine.push("a:1", "127.0.0.1:1/a:1", compression="brotli")
    with pytest.raises(ValueError, match="format"):
        engine.export("a:1", tmp_path / "a.tar", format="zip")


def test_ctrl_c_cancels_a_running_build_and_leaves_nothing_behind(engine, busybox, tmp_path):
    need("runc")
    image = lamina.Image.base(busybox).run_commands("echo started; sleep 60; echo done > /x")

    def interrupt_once_started(line):
        if line == "started":
            # As a terminal's Ctrl-C: SIGINT to this process while the RUN sleeps.
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.build(image, tag="cancelled:1", on_logs=interrupt_once_started)
    assert time.monotonic() - started < 20, "the 60 s RUN was not stopped"
    work = engine.store / "exec"
    for part in ("runs", "runc", "tmp"):
        left = list((work / part).iterdir()) if (work / part).exists() else []
        assert left == [], f"{part}: {left}"
    with open("/proc/self/mountinfo") as mounts:
        assert str(tmp_path) not in mounts.read(), "a mount is left under the store"
    assert "cancelled:1" not in [i.name for i in engine.images()]
    # The engine still works afterwards.
    assert engine.build(lamina.Image.base(busybox).run_commands("echo again")).steps == 1


def test_ctrl_c_inside_on_logs_cancels_the_build(engine, busybox):
    # KeyboardInterrupt raised in a callback is a Ctrl-C that landed while it ran.
    need("runc")
    image = lamina.Image.base(busybox).run_commands("echo started; sleep 60")

    def interrupted(line):
        if line == "started":
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine.build(image, on_logs=interrupted)
    assert time.monotonic() - started < 20, "the 60 s RUN was not stopped"


def test_ctrl_c_inside_on_progress_stops_the_push_before_its_manifest(
    engine, busybox, registry
):
    need("skopeo")
    reference = f"{registry}/team/interrupted:1"
    seen = []

    def interrupted(event):
        seen.append(event.kind)
        if event.kind == "uploading":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.push(busybox, reference, on_progress=interrupted)
    assert "manifest" not in seen, seen
    missing = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        capture_output=True,
    )
    assert missing.returncode != 0, "the manifest was pushed"
    # The engine pushes normally afterwards.
    assert engine.push(busybox, reference).reference == reference
