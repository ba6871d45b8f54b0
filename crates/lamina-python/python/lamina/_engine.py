"""`Engine`: a Lamina store and the builder that fills it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

from . import _build_options as options
from . import _checks as check
from ._image import Image
from ._native import (
    BuildResult,
    ExportResult,
    GcResult,
    ImageInfo,
    NativeEngine,
    PushResult,
    TransferEvent,
)


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
        *,
        secrets: Optional[Mapping[str, Union[str, "os.PathLike[str]", bytes]]] = None,
        ssh: Optional[Mapping[str, Optional[Union[str, "os.PathLike[str]"]]]] = None,
        target: Optional[Union[str, int]] = None,
        cache_from: Optional[List[str]] = None,
        cache_to: Optional[List[str]] = None,
        build_contexts: Optional[Mapping[str, Union[str, "os.PathLike[str]"]]] = None,
        insecure_registries: Optional[List[str]] = None,
    ) -> BuildResult:
        """Builds `image` into the store, every step a cached layer, and names it `tag`.

        `on_logs` is called with each log line as it comes: a line per step
        (`#2/5 RUN make`), `#2 cached` for a step found in the cache, every line a RUN step
        prints, `warning: ...` for what does not stop the build, and `image sha256:...` once
        the image is stored. An exception it raises is raised again when the build is over;
        KeyboardInterrupt cancels the build, as Ctrl-C does.
        Returns the digest, the duration in seconds, how many steps came from the cache
        (`steps_cached`) and how many of those a `cache_from` registry gave
        (`steps_from_registry_cache`).

        The other options are `lamina build`'s (and BuildKit's) flags:

        - `secrets`: id → the path of a file, or the secret itself as bytes (kept in memory
          only, for the build), for `RUN --mount=type=secret,id=ID` (`--secret`). Secrets
          never enter a layer or a cache key.
        - `ssh`: id → an SSH agent's socket for `RUN --mount=type=ssh`; None means the agent
          of `$SSH_AUTH_SOCK` (`{"default": None}` is `--ssh default`).
        - `target`: build this stage (its name, or its 0-based index) instead of the last.
        - `cache_from`: registry caches (`registry/repository:tag`, written by `cache_to`)
          to take steps from when the store misses them, searched in order. Name only caches
          you trust: whoever can push to one can put layers into every build that reads it.
        - `cache_to`: where to write this build's cache records:
          `REF[,mode=min|max][,ignore-error=true]`, or `inline` (into the image's config,
          which changes its digest). A failed export raises `BuildError` after the image is
          stored, unless `ignore-error=true`.
        - `build_contexts`: name → a directory or `docker-image://REF`, read by
          `COPY --from=NAME` and `RUN --mount=from=NAME` (and, for an image, `FROM NAME`) in
          place of a stage or image of that name.
        - `insecure_registries`: registries (`host:port`) that bases and caches are fetched
          from over plain http (loopback registries always are).

        A wrong type raises TypeError; a value `lamina build` would refuse, ValueError.
        """
        if not isinstance(image, Image):
            raise check.wrong("build", "image", "lamina.Image", image)
        check.optional_string("build", "tag", tag)
        check.optional_callable("build", "on_logs", on_logs)
        check.boolean("build", "no_cache", no_cache)
        args = {} if build_args is None else check.mapping("build", "build_args", build_args)
        secret_sources = options.secret_sources(secrets)
        agents = options.ssh_agents(ssh)
        stage = options.target_stage(target)
        sources = check.optional_strings("build", "cache_from", cache_from)
        destinations = check.optional_strings("build", "cache_to", cache_to)
        contexts = options.named_contexts(build_contexts)
        insecure = check.optional_strings("build", "insecure_registries", insecure_registries)
        with options.secret_files(secret_sources) as secret_paths:
            return self._native.build(
                image._native,
                tag,
                on_logs,
                no_cache,
                args,
                secret_paths,
                agents,
                stage,
                sources,
                destinations,
                contexts,
                insecure,
            )

    def push(
        self,
        name: str,
        reference: str,
        *,
        compression: str = "gzip",
        insecure_registries: Optional[List[str]] = None,
        on_progress: Optional[Callable[[TransferEvent], Any]] = None,
    ) -> PushResult:
        """Pushes the image `name` to `reference` (`registry/repository[:tag]`).

        `compression` is the layers' on the registry: `gzip` (what every client pulls),
        `zstd` or `none`. Loopback registries are reached over plain http; list others in
        `insecure_registries` (`host:port`). `on_progress` is called with a
        `TransferEvent` for each blob as it is skipped (the registry has it), mounted
        (from another repository), uploading (bytes sent so far, about every 100 ms) and
        uploaded, and once the manifest is in place; an exception it raises is raised again
        when the push is over. Ctrl-C (or KeyboardInterrupt from `on_progress`) stops the
        push and raises KeyboardInterrupt; blobs already uploaded stay on the registry.
        """
        check.string("push", "name", name)
        check.string("push", "reference", reference)
        check.string("push", "compression", compression)
        insecure = check.optional_strings("push", "insecure_registries", insecure_registries)
        check.optional_callable("push", "on_progress", on_progress)
        return self._native.push(name, reference, compression, insecure, on_progress)

    def pull(
        self,
        reference: str,
        *,
        insecure_registries: Optional[List[str]] = None,
        on_progress: Optional[Callable[[TransferEvent], Any]] = None,
    ) -> str:
        """Pulls `reference` (linux/amd64) into the store; returns its digest.

        `on_progress` is called with a `TransferEvent` for each blob as it is skipped (the
        store has it), downloading (bytes received so far) and downloaded; an exception it
        raises is raised again when the pull is over. Ctrl-C (or KeyboardInterrupt from
        `on_progress`) stops the pull and raises KeyboardInterrupt.
        """
        check.string("pull", "reference", reference)
        insecure = check.optional_strings("pull", "insecure_registries", insecure_registries)
        check.optional_callable("pull", "on_progress", on_progress)
        return self._native.pull(reference, insecure, on_progress)

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
