"""`Image`: Daytona's image definition API on Lamina's builder.

Every method renders the same Dockerfile text as Daytona's SDK for the same call, checks its
arguments when called, and returns a new `Image` (an `Image` never changes).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from . import _checks as check
from ._native import NativeImage, supported_python_series

_VERSION = re.compile(r"^3(?:\.\d{1,2}){1,2}(rc\d*)?$")
_NO_CONSTRUCTOR = object()


def _python_version(python_version: Optional[str]) -> str:
    """The version `debian_slim` asks for, checked as Daytona's SDK checks it."""
    supported = supported_python_series()
    if python_version is None:
        # As Daytona's SDK: the series of the interpreter running this.
        python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    elif not _VERSION.match(python_version):
        raise ValueError(f"Invalid Python version: {python_version!r}")
    components = python_version.split(".")
    series = f"{components[0]}.{components[1]}"
    if series not in supported:
        raise ValueError(
            f"Unsupported Python version: {python_version!r}. "
            f"Lamina supports the following series: {supported!r}."
        )
    return python_version


class Image:
    """A container image definition, built step by step like Daytona's `Image`.

    Start with `Image.base`, `Image.debian_slim` or `Image.from_dockerfile`; each step
    returns a new `Image`. Relative local paths resolve against the current directory of
    the moment the image was started.

    >>> Image.base("python:3.12-slim").pip_install("requests").workdir("/app").dockerfile()
    'FROM python:3.12-slim\\nRUN python -m pip install requests\\nWORKDIR /app\\n'
    """

    __slots__ = ("_native",)

    def __init__(self, _native: Any = _NO_CONSTRUCTOR) -> None:
        if not isinstance(_native, NativeImage):
            raise TypeError(
                "start an Image with Image.base(...), Image.debian_slim(...) or "
                "Image.from_dockerfile(...)"
            )
        self._native = _native

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_native"):
            raise AttributeError("an Image is immutable: each method returns a new one")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Image({self.dockerfile()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Image):
            return NotImplemented
        return self._native == other._native

    __hash__ = None  # type: ignore[assignment]

    # Constructors

    @staticmethod
    def base(image: str) -> "Image":
        """Starts from a registry image: `FROM <image>`."""
        check.string("base", "image", image)
        return Image(NativeImage.base(image))

    @staticmethod
    def debian_slim(python_version: Optional[str] = None) -> "Image":
        """Starts from `python:<X.Y.Z>-slim-bookworm` with compilers and an upgraded pip.

        `python_version` is a series (`"3.12"`, mapped to its pinned release), an exact
        version (`"3.12.4"`), or None for the series of the running interpreter.
        """
        check.optional_string("debian_slim", "python_version", python_version)
        return Image(NativeImage.debian_slim(_python_version(python_version)))

    @staticmethod
    def from_dockerfile(path: Union[str, Path], *, strict_context: bool = False) -> "Image":
        """Starts from a Dockerfile; its COPY sources resolve against its folder.

        Lamina always keeps COPY sources inside the build context, so `strict_context`
        (accepted for Daytona compatibility) changes nothing.
        """
        text = check.path("from_dockerfile", "path", path)
        check.boolean("from_dockerfile", "strict_context", strict_context)
        check.existing(
            "file",
            text,
            f"Dockerfile {Path(text)} does not exist",
            f"Dockerfile path {Path(text)} exists but is not a file",
        )
        return Image(NativeImage.from_dockerfile(text))

    # Steps

    def dockerfile(self) -> str:
        """The Dockerfile text of this definition."""
        return self._native.dockerfile()

    def pip_install(
        self,
        *packages: Union[str, List[str]],
        find_links: Optional[List[str]] = None,
        index_url: Optional[str] = None,
        extra_index_urls: Optional[List[str]] = None,
        pre: bool = False,
        extra_options: str = "",
    ) -> "Image":
        """`RUN python -m pip install <sorted packages> <options>`; nothing without packages."""
        method = "pip_install"
        names = check.flattened(method, "packages", packages)
        options = _pip_options(method, find_links, index_url, extra_index_urls, pre, extra_options)
        if not names:
            return self
        return Image(self._native.pip_install(names, *options))

    def pip_install_from_requirements(
        self,
        requirements_txt: str,
        find_links: Optional[List[str]] = None,
        index_url: Optional[str] = None,
        extra_index_urls: Optional[List[str]] = None,
        pre: bool = False,
        extra_options: str = "",
    ) -> "Image":
        """Copies the requirements file to `/.requirements.txt` and pip installs from it."""
        method = "pip_install_from_requirements"
        text = check.path(method, "requirements_txt", requirements_txt)
        options = _pip_options(method, find_links, index_url, extra_index_urls, pre, extra_options)
        check.existing(
            "file",
            text,
            f"Requirements file {text} does not exist",
            f"Requirements path {text} exists but is not a file",
        )
        return Image(self._native.pip_install_from_requirements(text, *options))

    def pip_install_from_pyproject(
        self,
        pyproject_toml: str,
        optional_dependencies: Optional[List[str]] = None,
        find_links: Optional[str] = None,
        index_url: Optional[str] = None,
        extra_index_url: Optional[str] = None,
        pre: bool = False,
        extra_options: str = "",
    ) -> "Image":
        """One pip install of `[project].dependencies` and the named optional groups."""
        method = "pip_install_from_pyproject"
        text = check.path(method, "pyproject_toml", pyproject_toml)
        groups = check.optional_strings(method, "optional_dependencies", optional_dependencies)
        check.optional_string(method, "find_links", find_links)
        check.optional_string(method, "extra_index_url", extra_index_url)
        options = _pip_options(
            method,
            [find_links] if find_links else None,
            index_url,
            [extra_index_url] if extra_index_url else None,
            pre,
            extra_options,
        )
        check.existing(
            "file",
            text,
            f"pyproject.toml file {text} does not exist",
            f"pyproject.toml path {text} exists but is not a file",
        )
        return Image(self._native.pip_install_from_pyproject(text, groups, *options))

    def add_local_file(self, local_path: Union[str, Path], remote_path: str) -> "Image":
        """`COPY ["<local>", "<remote>"]`; a `remote_path` ending in `/` gets the file's name."""
        method = "add_local_file"
        text = check.path(method, "local_path", local_path)
        check.string(method, "remote_path", remote_path)
        check.existing(
            "file",
            text,
            f"Local file {text} does not exist",
            f"Local path {text} exists but is not a file",
        )
        return Image(self._native.add_local_file(text, remote_path))

    def add_local_dir(self, local_path: Union[str, Path], remote_path: str) -> "Image":
        """`COPY ["<local>", "<remote>"]`: the directory's content goes into `remote_path`."""
        method = "add_local_dir"
        text = check.path(method, "local_path", local_path)
        check.string(method, "remote_path", remote_path)
        check.existing(
            "dir",
            text,
            f"Local directory {text} does not exist",
            f"Local path {text} exists but is not a directory",
        )
        return Image(self._native.add_local_dir(text, remote_path))

    def run_commands(self, *commands: Union[str, List[str]]) -> "Image":
        """One `RUN` per command: a str as written, a list of str as double-quoted words."""
        parsed: List[Union[str, List[str]]] = []
        for command in commands:
            if isinstance(command, str):
                parsed.append(command)
            elif isinstance(command, (list, tuple)):
                parsed.append(check.strings("run_commands", "commands", command))
            else:
                raise check.wrong("run_commands", "commands", "str or a list of str", command)
        return Image(self._native.run_commands(parsed))

    def env(self, env_vars: Dict[str, str]) -> "Image":
        """One `ENV KEY=<shell-quoted value>` per variable, in the dict's order."""
        variables = check.mapping("env", "env_vars", env_vars)
        return Image(self._native.env(list(variables.items())))

    def workdir(self, path: Union[str, Path]) -> "Image":
        """`WORKDIR <shell-quoted path>`."""
        if not isinstance(path, (str, os.PathLike)):
            raise check.wrong("workdir", "path", "str or os.PathLike", path)
        return Image(self._native.workdir(str(path)))

    def entrypoint(self, entrypoint_commands: List[str]) -> "Image":
        """`ENTRYPOINT ["a", "b"]`."""
        argv = _argv("entrypoint", "entrypoint_commands", entrypoint_commands)
        return Image(self._native.entrypoint(argv))

    def cmd(self, cmd: List[str]) -> "Image":
        """`CMD ["a", "b"]`."""
        return Image(self._native.cmd(_argv("cmd", "cmd", cmd)))

    def dockerfile_commands(
        self,
        dockerfile_commands: List[str],
        context_dir: Optional[Union[Path, str]] = None,
        *,
        strict_context: bool = False,
    ) -> "Image":
        """Appends Dockerfile lines; their COPY sources resolve against `context_dir` if given.

        Lamina always keeps COPY sources inside the build context; `strict_context` is
        accepted for Daytona compatibility and, as there, needs `context_dir`.
        """
        method = "dockerfile_commands"
        lines = check.strings(method, "dockerfile_commands", dockerfile_commands)
        check.boolean(method, "strict_context", strict_context)
        directory = None
        if context_dir:
            directory = check.path(method, "context_dir", context_dir)
            check.existing(
                "dir",
                directory,
                f"Context directory {directory} does not exist",
                f"Context path {directory} exists but is not a directory",
            )
        elif strict_context:
            raise ValueError(
                "strict_context requires context_dir so that the build context boundary is "
                "explicit"
            )
        return Image(self._native.dockerfile_commands(lines, directory))

    # Lamina's own steps

    def apt_install(self, *packages: Union[str, List[str]]) -> "Image":
        """`RUN apt-get update && apt-get install -y <sorted packages> && rm -rf
        /var/lib/apt/lists/*`; nothing without packages."""
        names = check.flattened("apt_install", "packages", packages)
        return Image(self._native.apt_install(names))

    def user(self, user: str) -> "Image":
        """`USER <user>` (`name`, `name:group`, `uid[:gid]`)."""
        check.string("user", "user", user)
        return Image(self._native.user(user))

    def label(self, labels: Dict[str, str]) -> "Image":
        """One `LABEL k=<shell-quoted value> ...` with every label; nothing if empty."""
        pairs = check.mapping("label", "labels", labels)
        return Image(self._native.label(list(pairs.items())))

    def expose(self, *ports: Union[int, str]) -> "Image":
        """`EXPOSE <port> ...`: numbers or strings (`8080`, `"53/udp"`, `"8000-8010"`)."""
        texts: List[str] = []
        for port in ports:
            if isinstance(port, bool) or not isinstance(port, (int, str)):
                raise check.wrong("expose", "ports", "int or str", port)
            texts.append(str(port))
        return Image(self._native.expose(texts))


def _pip_options(
    method: str,
    find_links: Any,
    index_url: Any,
    extra_index_urls: Any,
    pre: Any,
    extra_options: Any,
) -> tuple:
    links = check.optional_strings(method, "find_links", find_links)
    index = check.optional_string(method, "index_url", index_url)
    extra = check.optional_strings(method, "extra_index_urls", extra_index_urls)
    check.boolean(method, "pre", pre)
    check.string(method, "extra_options", extra_options)
    # Daytona's SDK leaves out an empty index URL.
    return (links, index or None, extra, pre, extra_options)


def _argv(method: str, name: str, value: Any) -> List[str]:
    """A list of str (lists inside it flattened, as Daytona's SDK does)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise check.wrong(method, name, "a list of str", value)
    return check.flattened(method, name, value)
