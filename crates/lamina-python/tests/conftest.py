"""Fixtures: a project folder both SDKs read, a temporary store with an offline busybox
base, and a loopback registry (Debian's docker-registry on a free port)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import lamina

PYPROJECT = """[project]
name = "demo"
dependencies = ["requests>=2", "numpy"]

[project.optional-dependencies]
dev = ["pytest"]
docs = ["sphinx"]
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder, made the current directory (both SDKs resolve paths against it)."""
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("print('hi')\n")
    (root / "my file.py").write_text("x\n")
    (root / "h\u00e9llo.py").write_text("x\n")
    (root / "src" / "pkg" / "mod.py").write_text("x\n")
    (root / "requirements.txt").write_text("numpy\n")
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "Dockerfile").write_text("FROM alpine:3.20\nRUN echo from-dockerfile\n")
    monkeypatch.chdir(root)
    return root


def busybox_rootfs(directory: Path) -> None:
    """Debian's static busybox with the applets the tests use, and a 1777 /tmp."""
    (directory / "bin").mkdir(parents=True)
    (directory / "tmp").mkdir()
    os.chmod(directory / "tmp", 0o1777)
    shutil.copy("/bin/busybox", directory / "bin" / "busybox")
    for applet in ["sh", "echo", "cat", "true", "sleep"]:
        os.symlink("busybox", directory / "bin" / applet)


def need(*tools: str) -> None:
    """Fails (never skips) when a tool the test drives is missing: CI has them all."""
    for tool in tools:
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.fail(f"{tool} is needed for this test; install it (see .ci/test)")
    if os.geteuid() != 0:
        pytest.fail("this test needs root (RUN steps run under runc on overlayfs)")


@pytest.fixture
def engine(tmp_path):
    return lamina.Engine(tmp_path / "store")


@pytest.fixture
def busybox(engine, tmp_path):
    """`busybox:offline` in the engine's store: a busybox rootfs on scratch."""
    need("/bin/busybox")
    context = tmp_path / "busybox"
    busybox_rootfs(context / "rootfs")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY rootfs/ /\n")
    engine.build(lamina.Image.from_dockerfile(context / "Dockerfile"), tag="busybox:offline")
    return "busybox:offline"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_registry(tmp_path, address):
    """Runs docker-registry on `address` and a free port; yields `address:port`, then stops
    it by PID."""
    need("docker-registry")
    storage = tmp_path / f"registry-{address}"
    storage.mkdir()
    last_error = ""
    for _ in range(5):
        port = free_port()
        config = tmp_path / f"registry-{address}-{port}.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            f"http:\n  addr: {address}:{port}\n  secret: lamina-python-test\n"
        )
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                socket.create_connection((address, port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        if process.poll() is None:
            try:
                yield f"{address}:{port}"
            finally:
                process.kill()
                process.wait()
            return
        last_error = process.stderr.read().decode(errors="replace")
    pytest.fail(f"docker-registry did not start: {last_error}")


@pytest.fixture
def registry(tmp_path):
    """`127.0.0.1:<port>` of a running registry (loopback: plain http without asking)."""
    yield from serve_registry(tmp_path, "127.0.0.1")


@pytest.fixture
def exposed_registry(tmp_path):
    """`<address>:<port>` of a running registry on this machine's first address that is not
    loopback: Lamina reaches it over plain http only when it is named insecure."""
    addresses = subprocess.run(
        ["hostname", "-I"], capture_output=True, text=True, check=True
    ).stdout.split()
    ipv4 = [a for a in addresses if "." in a and not a.startswith("127.")]
    if not ipv4:
        pytest.fail("this test needs an IPv4 address besides loopback (`hostname -I`)")
    yield from serve_registry(tmp_path, ipv4[0])
