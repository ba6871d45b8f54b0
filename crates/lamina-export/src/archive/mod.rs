//! Images out of the store into OCI image layouts, oci-archives and docker-archives, and back.
//!
//! - [`ArchiveFormat::OciDir`]: an [OCI image layout] directory (`oci-layout`, `index.json`,
//!   `blobs/sha256/...`), as `skopeo`'s `oci:` transport and `umoci` read it.
//! - [`ArchiveFormat::OciArchive`]: the same layout as one tar file (`oci-archive:`).
//! - [`ArchiveFormat::DockerArchive`]: the `docker save` form (`manifest.json` with
//!   `Config`/`RepoTags`/`Layers`, `repositories`, the config and layer files), which
//!   `docker load` and `skopeo`'s `docker-archive:` read. `docker load` does not read zstd
//!   layers, so asking for zstd there gives gzip layers.
//!
//! [`export`] writes one image under one name. Each layer goes out in the compression asked
//! for: a stored variant in that compression is copied as it is; a missing one is made once
//! from another variant and stored, so later exports reuse it and never compress again. When
//! that changes the layers' compression the exported image gets its own manifest (the config
//! stays the same). Files are written atomically and a killed or failed export leaves
//! nothing beside the output; devices, FIFOs and symlinks are written through only when
//! forced, `-` streams to standard output ([`output`]); blobs are streamed, never held in
//! memory.
//!
//! [`import`] reads any of the three forms (a directory holding `oci-layout`, a tar holding
//! `oci-layout`, or a tar holding `manifest.json`), stores each layer blob as it is while
//! checking both its digest and its tar's `diff_id`, and tags the images. From an index only
//! the linux/amd64 image is taken. Names come from the caller, else from the archive
//! (`io.containerd.image.name` or `org.opencontainers.image.ref.name` annotations, or
//! `RepoTags`). Nothing is tagged unless every image and layer checked out.
//!
//! [OCI image layout]: https://github.com/opencontainers/image-spec/blob/main/image-layout.md

pub(crate) use lamina_image::codec;
mod docker;
mod import;
mod oci;
pub mod output;
mod source;
mod write;

use std::path::{Path, PathBuf};

use lamina_store::{Compression, Store};

pub use output::ExportTarget;
use output::Placement;

use crate::{ExportError, StoredImage};

/// The annotation containerd and Docker put the full image name in.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// The forms an image can be exported to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// An OCI image layout directory.
    OciDir,
    /// An OCI image layout in one tar file.
    OciArchive,
    /// The `docker save` tar format.
    DockerArchive,
}

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The path written (`-` for standard output).
    pub path: PathBuf,
    /// The format written.
    pub format: ArchiveFormat,
    /// The layers' compression in the output (gzip where zstd was asked for a docker-archive).
    pub compression: Compression,
    /// The image as exported: the input image, or its variant with the new compression (its
    /// own manifest, the same config).
    pub image: StoredImage,
    /// Layers that had to be compressed (and were stored) for this export.
    pub layers_compressed: usize,
    /// Bytes of files written.
    pub bytes: u64,
}

/// One image [`import`] stored and tagged.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The name it was tagged with, in the short form `docker images` shows
    /// (`python:3.12`); the store keys it by the full form (`docker.io/library/python:3.12`).
    pub name: String,
    /// The image.
    pub image: StoredImage,
}

/// Writes `image` to the path `out` in `format` under `name`; what is at `out` must be a
/// regular file (or a directory for [`ArchiveFormat::OciDir`]) or nothing. See [`export_to`].
pub fn export(
    store: &Store,
    image: &StoredImage,
    name: &str,
    format: ArchiveFormat,
    compression: Compression,
    out: &Path,
) -> Result<ExportReport, ExportError> {
    let target = ExportTarget::Path {
        path: out.to_path_buf(),
        force: false,
    };
    export_to(store, image, name, format, compression, &target)
}

/// Writes `image` to `target` in `format` under `name` (`name:tag`, `:latest` when missing),
/// with its layers in `compression` (see the module docs). A file is written atomically
/// (missing parent directories are created) and a regular file there replaced; a symlink,
/// device or FIFO there is refused unless the target is forced, then written through (see
/// [`output`]). Nothing is written before the target and name checked out.
pub fn export_to(
    store: &Store,
    image: &StoredImage,
    name: &str,
    format: ArchiveFormat,
    compression: Compression,
    target: &ExportTarget,
) -> Result<ExportReport, ExportError> {
    // OCI layouts carry the full name (as containerd writes it), docker-archives the short
    // form `docker save` writes.
    let reference = crate::image::image_name(name)?;
    let compression = match (format, compression) {
        (ArchiveFormat::DockerArchive, Compression::Zstd) => Compression::Gzip,
        (_, c) => c,
    };
    let placement = output::place(target, format)?;
    if let Placement::Atomic(out) | Placement::Directory(out) = &placement {
        let parent = write::parent_of(out);
        std::fs::create_dir_all(parent).map_err(|source| ExportError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    // Every layer's bytes are written: any held only as remote is fetched first.
    let records: Vec<_> = image.layers.iter().map(|l| l.record.clone()).collect();
    crate::registry::remote_layers::localize_blocking(store, &records)?;
    let crate::variants::Converted {
        image,
        layers_compressed,
    } = crate::variants::with_compression(store, image, compression)?;
    let name = reference.to_string();
    let bytes = match (format, &placement) {
        (ArchiveFormat::OciDir, Placement::Directory(out)) => {
            write::oci_dir(store, &image, &name, out)?
        }
        (ArchiveFormat::OciDir, _) => unreachable!("place gives oci-dir only a directory"),
        (ArchiveFormat::OciArchive, _) => write::oci_archive(store, &image, &name, &placement)?,
        (ArchiveFormat::DockerArchive, _) => {
            docker::write(store, &image, &reference.familiar(), &placement)?
        }
    };
    let path = match target {
        ExportTarget::Path { path, .. } => path.clone(),
        ExportTarget::Stdout => PathBuf::from("-"),
    };
    Ok(ExportReport {
        path,
        format,
        compression,
        image,
        layers_compressed,
        bytes,
    })
}

/// Stores and tags the images of the OCI layout, oci-archive or docker-archive at `path`.
///
/// With `name`, the archive must hold exactly one image, tagged `name`; without, every image
/// is tagged with the names the archive gives it, and an unnamed one is an error.
pub fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ExportError> {
    import::import(store, path, name)
}
