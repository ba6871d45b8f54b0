"""Lamina: build container images with a content-addressed layer cache.

`Image` is Daytona's image definition API (the same Dockerfile text for the same calls,
plus `apt_install`, `user`, `label` and `expose`); `Engine` builds images into a local
store, every step a cached layer, and moves them to registries and archives.
"""

from ._engine import Engine
from ._image import Image
from ._native import (
    BuildError,
    BuildResult,
    DefinitionError,
    ExportResult,
    GcResult,
    ImageInfo,
    ImageNotFoundError,
    ImageTransferError,
    LaminaError,
    PushResult,
    StoreError,
    TransferEvent,
)

__all__ = [
    "BuildError",
    "BuildResult",
    "DefinitionError",
    "Engine",
    "ExportResult",
    "GcResult",
    "Image",
    "ImageInfo",
    "ImageNotFoundError",
    "ImageTransferError",
    "LaminaError",
    "PushResult",
    "StoreError",
    "TransferEvent",
]
