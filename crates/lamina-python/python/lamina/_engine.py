"""`Engine`: a Lamina store and the builder that fills it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _checks as check
from ._image import Image
from ._native import BuildResult, ExportResult, GcResult, ImageInfo, NativeEngine, PushResult


class Engine:
    """A Lamina store opened for building: images in, layers cached, images out.

    `store` is the store's directory (created if needed); None means `$LAMINA_STORE`, else
    the XDG cache directory (`~/.cache/lamina/store`), as the `lamina` command uses. Every
    method releases the GIL while Lamina works. Ctrl-C during a build cancels it (the running
    RUN step's container is killed and everything it made removed; steps already stored stay
    cached) and raises KeyboardInterrupt.

    An open Engine holds the store only while it reads or writes the store's index, as
    every `lamina` process does: other processes (the CLI, other Engines) use the same store
    beside it.
    """

    __slots__ = ("_native",)

    def __init__(self, store: Optional[Union[str, "os.PathLike[str]"]] = None) -> None:
        directory = None if store is None else check.path("Engine", "store", store)
        self._native = NativeEngine(directory)

    def __repr__(self) -> str:
        return f"Engine(store={str(self.store)!r})"

    @property
    def store(self) -> Path:
        """The store's directory."""
        return Path(self._native.store)

    def build(
        self,
        image: Image,
        tag: Optional[str] = None,
        on_logs: Optional[Callable[[str], Any]] = None,
        no_cache: bool = False,
        build_args: Optional[Dict[str, str]] = None,
    ) -> BuildResult:
        """Builds `image` into the store, every step a cached layer, and names it `tag`.

        `on_logs` is called with each log line as it comes: a line per step
        (`#2/5 RUN make`), `#2 cached` for a step found in the cache, every line a RUN step
        prints, and `image sha256:...` at the end. An exception it raises is raised again
        when the build is over. Returns the digest, the duration in seconds and how many
        steps came from the cache.
        """
        if not isinstance(image, Image):
            raise check.wrong("build", "image", "lamina.Image", image)
        check.optional_string("build", "tag", tag)
        if on_logs is not None and not callable(on_logs):
            raise check.wrong("build", "on_logs", "callable or None", on_logs)
        check.boolean("build", "no_cache", no_cache)
        args = {} if build_args is None else check.mapping("build", "build_args", build_args)
        return self._native.build(image._native, tag, on_logs, no_cache, args)

    def push(
        self,
        name: str,
        reference: str,
        *,
        compression: str = "gzip",
        insecure_registries: Optional[List[str]] = None,
    ) -> PushResult:
        """Pushes the image `name` to `reference` (`registry/repository[:tag]`).

        `compression` is the layers' on the registry: `gzip` (what every client pulls),
        `zstd` or `none`. Loopback registries are reached over plain http; list others in
        `insecure_registries` (`host:port`).
        """
        check.string("push", "name", name)
        check.string("push", "reference", reference)
        check.string("push", "compression", compression)
        insecure = check.optional_strings("push", "insecure_registries", insecure_registries)
        return self._native.push(name, reference, compression, insecure)

    def pull(self, reference: str, *, insecure_registries: Optional[List[str]] = None) -> str:
        """Pulls `reference` (linux/amd64) into the store; returns its digest."""
        check.string("pull", "reference", reference)
        insecure = check.optional_strings("pull", "insecure_registries", insecure_registries)
        return self._native.pull(reference, insecure)

    def export(
        self,
        name: str,
        path: Union[str, "os.PathLike[str]"],
        *,
        format: str = "oci-archive",
        compression: str = "gzip",
    ) -> ExportResult:
        """Writes the image `name` to `path` as an `oci-archive`, `docker-archive` (what
        `docker load` reads) or `oci-dir`; a file is written atomically."""
        check.string("export", "name", name)
        target = check.path("export", "path", path)
        check.string("export", "format", format)
        check.string("export", "compression", compression)
        return self._native.export(name, target, format, compression)

    def import_(
        self, path: Union[str, "os.PathLike[str]"], name: Optional[str] = None
    ) -> List[Tuple[str, str]]:
        """Stores the images of an OCI layout, oci-archive or docker-archive at `path`
        (named `name`, else as the archive names them); returns (name, digest) pairs."""
        source = check.path("import_", "path", path)
        check.optional_string("import_", "name", name)
        return self._native.import_(source, name)

    def images(self) -> List[ImageInfo]:
        """The named images in the store."""
        return self._native.images()

    def remove(self, name: str) -> str:
        """Removes the name `name` (its layers go at the next `gc`); returns the name."""
        check.string("remove", "name", name)
        return self._native.remove(name)

    def gc(self) -> GcResult:
        """Removes what no named image, live cache entry or running build needs."""
        return self._native.gc()
