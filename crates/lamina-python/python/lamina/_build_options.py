"""`Engine.build`'s BuildKit options (`secrets`, `ssh`, `build_contexts`, `target`,
`cache_to`): their checks, with the messages `lamina build` gives for the same flags, and
secrets given as bytes, which live in memory only for the build."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional

from . import _checks as check

METHOD = "build"

PathLike = (str, os.PathLike)
SecretBytes = (bytes, bytearray, memoryview)


def _invalid(name: str, reason: str) -> ValueError:
    return ValueError(f"{METHOD}() argument '{name}': {reason}")


def _ids(name: str, value: Any, expected: str) -> Mapping[Any, Any]:
    """`value` as a mapping whose keys are non-empty str (TypeError, else ValueError)."""
    if not isinstance(value, Mapping):
        raise check.wrong(METHOD, name, expected, value)
    for key in value:
        if not isinstance(key, str):
            raise TypeError(
                f"{METHOD}() argument '{name}' must be {expected}, "
                f"but has a {check.type_name(key)} key"
            )
        if not key:
            raise _invalid(name, "an id must not be empty")
    return value


def _wrong_value(name: str, expected: str, key: str, item: Any) -> TypeError:
    return TypeError(
        f"{METHOD}() argument '{name}' must be {expected}, "
        f"but maps {key!r} to {check.type_name(item)}"
    )


def _path_text(value: Any) -> str:
    return os.path.expanduser(os.fspath(value))


def secret_sources(secrets: Any) -> Mapping[str, Any]:
    """Checks `secrets` (id → a file's path, or the secret itself as bytes). A path must
    name a file; the message never shows the value, which may be the secret itself given
    as str by mistake."""
    if secrets is None:
        return {}
    expected = "a dict of str to a path (str or os.PathLike) or bytes"
    for key, value in _ids("secrets", secrets, expected).items():
        if isinstance(value, SecretBytes):
            continue
        if not isinstance(value, PathLike) or not isinstance(os.fspath(value), str):
            raise _wrong_value("secrets", expected, key, value)
        if not os.path.isfile(_path_text(value)):
            raise _invalid(
                "secrets",
                f"the file of secret {key!r} does not exist or is not a file; give the "
                "path of a file (as `--secret id=ID,src=FILE`), or the secret itself as bytes",
            )
    return secrets


@contextlib.contextmanager
def secret_files(secrets: Mapping[str, Any]) -> Iterator[Dict[str, str]]:
    """Each secret as a file path for the build: a path as given, bytes in an anonymous
    in-memory file (memfd) named by its `/proc/self/fd` link. The build reads the secrets
    in this process; the memory files are closed when it is over, and a killed process
    leaves nothing of them behind."""
    descriptors: List[int] = []
    try:
        paths: Dict[str, str] = {}
        for key, value in secrets.items():
            if isinstance(value, SecretBytes):
                descriptor = os.memfd_create("lamina-secret", os.MFD_CLOEXEC)
                descriptors.append(descriptor)
                remaining = memoryview(value).cast("B")
                while remaining:
                    remaining = remaining[os.write(descriptor, remaining) :]
                paths[key] = f"/proc/self/fd/{descriptor}"
            else:
                paths[key] = _path_text(value)
        yield paths
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def ssh_agents(ssh: Any) -> Dict[str, str]:
    """`ssh` (id → an agent's socket, or None for the agent of $SSH_AUTH_SOCK, as
    `--ssh default`) as id → socket path."""
    if ssh is None:
        return {}
    expected = "a dict of str to a socket path (str or os.PathLike) or None"
    agents: Dict[str, str] = {}
    for key, value in _ids("ssh", ssh, expected).items():
        if value is None:
            socket = os.environ.get("SSH_AUTH_SOCK", "")
            if not socket:
                raise _invalid(
                    "ssh",
                    f"{{{key!r}: None}} forwards the agent of $SSH_AUTH_SOCK, which is not "
                    f"set; start an agent or give its socket: {{{key!r}: SOCKET}}",
                )
            agents[key] = socket
        elif isinstance(value, PathLike) and isinstance(os.fspath(value), str):
            socket = _path_text(value)
            if not socket:
                raise _invalid("ssh", f"{key!r} maps to an empty path; give the agent's socket")
            agents[key] = socket
        else:
            raise _wrong_value("ssh", expected, key, value)
    return agents


def named_contexts(contexts: Any) -> Dict[str, str]:
    """`build_contexts` (name → a directory, or `docker-image://REF`) with each directory
    made absolute, as `--build-context NAME=DIR|NAME=docker-image://REF`."""
    if contexts is None:
        return {}
    expected = "a dict of str to a directory (str or os.PathLike) or 'docker-image://REF'"
    out: Dict[str, str] = {}
    for key, value in _ids("build_contexts", contexts, expected).items():
        if not isinstance(value, PathLike) or not isinstance(os.fspath(value), str):
            raise _wrong_value("build_contexts", expected, key, value)
        text = os.fspath(value)
        given = f"`{key}={text}`"
        if not text:
            raise _invalid("build_contexts", f"{given}: expected NAME=DIR or NAME=docker-image://REF")
        if isinstance(value, str) and text.startswith("docker-image://"):
            if not text[len("docker-image://") :]:
                raise _invalid("build_contexts", f"{given}: docker-image:// names no image")
            out[key] = text
            continue
        if isinstance(value, str) and "://" in text:
            scheme = text.split("://", 1)[0]
            raise _invalid(
                "build_contexts",
                f"{given}: {scheme}:// contexts are not supported; give a directory or "
                "docker-image://REF",
            )
        directory = _path_text(value)
        if not os.path.exists(directory):
            raise _invalid("build_contexts", f"{given}: the directory {text} does not exist")
        if not os.path.isdir(directory):
            raise _invalid("build_contexts", f"{given}: {text} is not a directory")
        out[key] = os.path.realpath(directory)
    return out


def target_stage(target: Any) -> Optional[str]:
    """A stage's name, or its 0-based index as int (as `--target`)."""
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, (str, int)):
        raise check.wrong(METHOD, "target", "str, int or None", target)
    if isinstance(target, int):
        if target < 0:
            raise _invalid("target", f"a stage index counts from 0, not {target}")
        return str(target)
    if not target:
        raise _invalid("target", "name a stage, or give None to build the last")
    return target
