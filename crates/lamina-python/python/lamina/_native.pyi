"""Type stubs of `lamina._native`, the Rust half of the package."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

def supported_python_series() -> List[str]: ...

class LaminaError(Exception): ...
class DefinitionError(LaminaError): ...
class BuildError(LaminaError): ...
class StoreError(LaminaError): ...
class ImageTransferError(LaminaError): ...
class ImageNotFoundError(LaminaError): ...

class NativeImage:
    @staticmethod
    def base(reference: str) -> NativeImage: ...
    @staticmethod
    def debian_slim(python_version: str) -> NativeImage: ...
    @staticmethod
    def from_dockerfile(path: str) -> NativeImage: ...
    def dockerfile(self) -> str: ...
    def pip_install(
        self,
        packages: List[str],
        find_links: List[str],
        index_url: Optional[str],
        extra_index_urls: List[str],
        pre: bool,
        extra_options: str,
    ) -> NativeImage: ...
    def pip_install_from_requirements(
        self,
        path: str,
        find_links: List[str],
        index_url: Optional[str],
        extra_index_urls: List[str],
        pre: bool,
        extra_options: str,
    ) -> NativeImage: ...
    def pip_install_from_pyproject(
        self,
        path: str,
        optional_dependencies: List[str],
        find_links: List[str],
        index_url: Optional[str],
        extra_index_urls: List[str],
        pre: bool,
        extra_options: str,
    ) -> NativeImage: ...
    def add_local_file(self, local_path: str, remote_path: str) -> NativeImage: ...
    def add_local_dir(self, local_path: str, remote_path: str) -> NativeImage: ...
    def run_commands(self, commands: List[Union[str, List[str]]]) -> NativeImage: ...
    def env(self, env_vars: List[Tuple[str, str]]) -> NativeImage: ...
    def workdir(self, path: str) -> NativeImage: ...
    def entrypoint(self, entrypoint_commands: List[str]) -> NativeImage: ...
    def cmd(self, cmd: List[str]) -> NativeImage: ...
    def dockerfile_commands(
        self, dockerfile_commands: List[str], context_dir: Optional[str] = None
    ) -> NativeImage: ...
    def apt_install(self, packages: List[str]) -> NativeImage: ...
    def user(self, user: str) -> NativeImage: ...
    def label(self, labels: List[Tuple[str, str]]) -> NativeImage: ...
    def expose(self, ports: List[str]) -> NativeImage: ...

class BuildResult:
    """What `Engine.build` did."""

    digest: str
    """The image digest, `sha256:<hex>`."""
    tag: Optional[str]
    """The name given (`name:tag`), if any."""
    duration: float
    """Seconds the build took."""
    steps: int
    """Steps built."""
    steps_cached: int
    """Steps found in the cache (nothing run), in the store or a `cache_from` registry."""
    steps_from_registry_cache: int
    """Of those, the steps taken from a `cache_from` registry cache."""

class PushResult:
    """What `Engine.push` did."""

    digest: str
    reference: str
    blobs_pushed: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_pushed: int
    layers_compressed: int

class ExportResult:
    """What `Engine.export` wrote."""

    path: str
    digest: str
    format: str
    compression: str
    bytes: int

class ImageInfo:
    """One named image in the store."""

    name: str
    reference: str
    digest: str
    state: str
    size: int
    created: float
    last_used: float

class GcResult:
    """What `Engine.gc` removed."""

    blobs_removed: int
    bytes_freed: int
    blobs_kept: int
    cache_expired: int
    cache_evicted: int
    unpacked_layers_removed: int
    work_bytes_freed: int

class TransferEvent:
    """One step of a push or pull, as `on_progress` gets it."""

    kind: str
    """`skipped`, `mounted`, `uploading`, `uploaded` and `manifest` (push); `skipped`,
    `downloading` and `downloaded` (pull)."""
    digest: str
    """The blob's digest (`sha256:...`); for `manifest`, the image's."""
    size: Optional[int]
    """The blob's size in bytes; None for `manifest`."""
    transferred: int
    """Bytes moved so far: 0 when a transfer starts (or the blob is skipped or mounted),
    `size` when it is done."""
    mounted_from: Optional[str]
    """The repository a `mounted` blob came from."""
    reference: Optional[str]
    """The reference pushed to, for `manifest`."""

class NativeEngine:
    def __init__(self, store: Optional[str] = None) -> None: ...
    @property
    def store(self) -> str: ...
    def build(
        self,
        image: NativeImage,
        tag: Optional[str] = None,
        on_logs: Optional[Callable[[str], Any]] = None,
        no_cache: bool = False,
        build_args: Dict[str, str] = ...,
        secrets: Dict[str, str] = ...,
        ssh: Dict[str, str] = ...,
        target: Optional[str] = None,
        cache_from: List[str] = ...,
        cache_to: List[str] = ...,
        build_contexts: Dict[str, str] = ...,
        insecure_registries: List[str] = ...,
    ) -> BuildResult: ...
    def push(
        self,
        name: str,
        reference: str,
        compression: str = "gzip",
        insecure_registries: List[str] = ...,
        on_progress: Optional[Callable[[TransferEvent], Any]] = None,
    ) -> PushResult: ...
    def pull(
        self,
        reference: str,
        insecure_registries: List[str] = ...,
        on_progress: Optional[Callable[[TransferEvent], Any]] = None,
    ) -> str: ...
    def export(
        self, name: str, path: str, format: str = "oci-archive", compression: str = "gzip"
    ) -> ExportResult: ...
    def import_(self, path: str, name: Optional[str] = None) -> List[Tuple[str, str]]: ...
    def images(self) -> List[ImageInfo]: ...
    def remove(self, name: str) -> str: ...
    def gc(self) -> GcResult: ...
