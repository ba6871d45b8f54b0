//! The writing side: files into a directory or a tar, the OCI layout, and atomic placement
//! of the result.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lamina_store::{Digest, Store};

use crate::layer_tar::{LayerReader, TreeTar};
use oci_spec::image::{
    Descriptor, ImageIndexBuilder, MediaType, OciLayoutBuilder, PlatformBuilder, SCHEMA_VERSION,
};

use super::ANNOTATION_IMAGE_NAME;
use super::output::{self, Placement, Staged};
use crate::image::{canonical_json, invalid, oci_digest};
use crate::{ExportError, StoredImage};

/// Where exported files go: a directory or a tar stream.
pub(crate) enum Sink {
    Dir(PathBuf),
    Tar(tar::Builder<BufWriter<File>>, PathBuf),
}

impl Sink {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
        move |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Adds an empty directory `name` (ending in `/`).
    pub(crate) fn dir(&mut self, name: &str) -> Result<(), ExportError> {
        match self {
            Sink::Dir(root) => {
                let path = root.join(name);
                std::fs::create_dir_all(&path).map_err(Sink::io(&path))
            }
            Sink::Tar(builder, path) => {
                let mut header = header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut header, name, io::empty())
                    .map_err(Sink::io(path))
            }
        }
    }

    /// Adds a file `name` of `size` bytes read from `data`; returns `size`.
    pub(crate) fn file(
        &mut self,
        name: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<u64, ExportError> {
        match self {
            Sink::Dir(root) => {
                let path = root.join(name);
                let mut file = File::create(&path).map_err(Sink::io(&path))?;
                let copied =
                    copy(data, &mut file).map_err(|e| crate::layer_tar::read_error(&path, e))?;
                if copied != size {
                    return Err(ExportError::Io {
                        path,
                        source: io::Error::other(format!("copied {copied} bytes, expected {size}")),
                    });
                }
            }
            Sink::Tar(builder, path) => {
                let mut header = header(tar::EntryType::Regular, 0o644, size);
                builder
                    .append_data(&mut header, name, data)
                    .map_err(|e| crate::layer_tar::read_error(path, e))?;
            }
        }
        Ok(size)
    }

    /// Adds a file holding `bytes`.
    pub(crate) fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<u64, ExportError> {
        self.file(name, bytes.len() as u64, &mut &bytes[..])
    }

    /// Adds the store blob `digest` as `name`; a tree-backed layer's plain variant is
    /// reassembled from its tree as it is written (and fails the export if the tree no longer
    /// gives the layer's diff_id).
    pub(crate) fn blob(
        &mut self,
        store: &Store,
        name: &str,
        digest: &Digest,
    ) -> Result<u64, ExportError> {
        let (size, data) = crate::layer_tar::open_blob_or_tree(store, digest)?
            .ok_or(lamina_store::StoreError::NotFound { digest: *digest })?;
        match data {
            LayerReader::Blob(mut blob) => self.file(name, size, &mut blob),
            LayerReader::Tree(tar) => self.tree_file(name, size, tar),
        }
    }

    /// Adds a reassembled tree tar as `name`, written straight from the buffers its thread
    /// fills instead of through the tar builder's copy.
    fn tree_file(&mut self, name: &str, size: u64, mut tar: TreeTar) -> Result<u64, ExportError> {
        let (path, out): (PathBuf, &mut dyn Write) = match self {
            Sink::Dir(root) => {
                let path = root.join(name);
                let file = File::create(&path).map_err(Sink::io(&path))?;
                return finish_tree_file(path, size, &mut tar, &mut &file);
            }
            Sink::Tar(builder, path) => {
                let mut header = header(tar::EntryType::Regular, 0o644, size);
                if header.set_path(name).is_err() {
                    // A name a ustar header cannot hold: the builder writes the extension.
                    return self.file(name, size, &mut tar);
                }
                header.set_cksum();
                let out = builder.get_mut();
                out.write_all(header.as_bytes()).map_err(Sink::io(path))?;
                (path.clone(), out)
            }
        };
        let written = finish_tree_file(path.clone(), size, &mut tar, out)?;
        // Padding to the next 512-byte block, as the builder pads its entries.
        let pad = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..pad as usize])
            .map_err(Sink::io(&path))?;
        Ok(written)
    }

    /// Ends a tar stream (a directory needs nothing).
    pub(crate) fn finish(self) -> Result<(), ExportError> {
        if let Sink::Tar(builder, path) = self {
            let mut out = builder.into_inner().map_err(Sink::io(&path))?;
            out.flush().map_err(Sink::io(&path))?;
            let file = out.into_inner().map_err(|e| ExportError::Io {
                path: path.clone(),
                source: e.into_error(),
            })?;
            // Pipes and terminals cannot be synced; a file (or a device) is.
            let is_pipe = file.metadata().is_ok_and(|m| {
                use std::os::unix::fs::FileTypeExt as _;
                m.file_type().is_fifo() || m.file_type().is_socket()
            });
            if !is_pipe {
                match file.sync_all() {
                    // Character devices and ttys answer EINVAL: nothing to sync.
                    Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    }
                    other => other.map_err(Sink::io(&path))?,
                }
            }
        }
        Ok(())
    }
}

/// A tar header with fixed owner and time, so equal inputs give equal archives.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

/// Writes `tar` to `out` and checks that it gave `size` bytes.
fn finish_tree_file(
    path: PathBuf,
    size: u64,
    tar: &mut TreeTar,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let written = tar
        .write_to(out)
        .map_err(|e| crate::layer_tar::read_error(&path, e))?;
    if written != size {
        return Err(ExportError::Io {
            path,
            source: io::Error::other(format!("copied {written} bytes, expected {size}")),
        });
    }
    Ok(written)
}

fn copy(from: &mut dyn Read, to: &mut File) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The tag part of a normalized name (`app:1` → `1`), for `org.opencontainers.image.ref.name`.
pub(crate) fn tag_of(name: &str) -> &str {
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) if !last.contains('@') => tag,
        _ => name,
    }
}

/// Writes the OCI layout of `image` into `sink`; returns the bytes written.
fn oci_layout(
    sink: &mut Sink,
    store: &Store,
    image: &StoredImage,
    name: &str,
) -> Result<u64, ExportError> {
    let mut bytes = 0;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|e| invalid(name, format!("cannot build oci-layout: {e}")))?;
    bytes += sink.bytes("oci-layout", &canonical_json(&layout, "oci-layout")?)?;
    sink.dir("blobs/")?;
    sink.dir("blobs/sha256/")?;
    let mut written = HashSet::new();
    let mut blob = |sink: &mut Sink, sha256: Digest, key: Digest| -> Result<u64, ExportError> {
        if !written.insert(sha256) {
            return Ok(0);
        }
        sink.blob(store, &format!("blobs/sha256/{}", sha256.hex()), &key)
    };
    for layer in &image.layers {
        bytes += blob(sink, layer.variant.sha256, layer.variant.digest)?;
    }
    let config = store
        .stat(&image.config_blob)?
        .ok_or(lamina_store::StoreError::NotFound {
            digest: image.config_blob,
        })?;
    bytes += blob(sink, config.sha256, config.digest)?;
    let manifest = store
        .stat(&image.manifest_blob)?
        .ok_or(lamina_store::StoreError::NotFound {
            digest: image.manifest_blob,
        })?;
    bytes += blob(sink, manifest.sha256, manifest.digest)?;

    let annotations: BTreeMap<String, String> = [
        (ANNOTATION_IMAGE_NAME.to_owned(), name.to_owned()),
        (
            oci_spec::image::ANNOTATION_REF_NAME.to_owned(),
            tag_of(name).to_owned(),
        ),
    ]
    .into();
    let platform = PlatformBuilder::default()
        .architecture(image.config.architecture().clone())
        .os(image.config.os().clone())
        .build()
        .map_err(|e| invalid(name, format!("cannot build its platform: {e}")))?;
    // A Docker v2 schema 2 manifest (as pulled, or derived from one) keeps its media type.
    let media_type = image
        .manifest
        .media_type()
        .clone()
        .unwrap_or(MediaType::ImageManifest);
    let mut descriptor = Descriptor::new(media_type, manifest.size, oci_digest(&manifest.sha256)?);
    descriptor.set_annotations(Some(annotations.into_iter().collect()));
    descriptor.set_platform(Some(platform));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![descriptor])
        .build()
        .map_err(|e| invalid(name, format!("cannot build index.json: {e}")))?;
    bytes += sink.bytes("index.json", &canonical_json(&index, "index")?)?;
    Ok(bytes)
}

/// Writes an OCI layout directory at `out`, replacing the directory there.
pub(crate) fn oci_dir(
    store: &Store,
    image: &StoredImage,
    name: &str,
    out: &Path,
) -> Result<u64, ExportError> {
    let parent = parent_of(out);
    output::sweep(parent);
    let temp = tempfile::Builder::new()
        .prefix(output::TEMP_PREFIXES[0])
        .tempdir_in(parent)
        .map_err(Sink::io(parent))?;
    let _writing = output::hold(temp.path())?;
    // Temp directories are private; the output is as readable as any other.
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(Sink::io(temp.path()))?;
    let mut sink = Sink::Dir(temp.path().to_path_buf());
    let bytes = oci_layout(&mut sink, store, image, name)?;
    sink.finish()?;
    // Move an old output aside first: a directory cannot be renamed over a non-empty one.
    let old = tempfile::Builder::new()
        .prefix(output::TEMP_PREFIXES[1])
        .tempdir_in(parent)
        .map_err(Sink::io(parent))?;
    let _removing = output::hold(old.path())?;
    if out.symlink_metadata().is_ok() {
        std::fs::rename(out, old.path().join("old")).map_err(Sink::io(out))?;
    }
    std::fs::rename(temp.path(), out).map_err(Sink::io(out))?;
    output::sync_dir(parent);
    // `temp` no longer exists: forget it; `old` takes the previous output with it.
    let _ = temp.keep();
    drop(old);
    Ok(bytes)
}

/// Writes a tar to `placement` with `fill`: a file atomically, or through what is there,
/// or to standard output.
pub(crate) fn tar_file(
    placement: &Placement,
    fill: impl FnOnce(&mut Sink) -> Result<u64, ExportError>,
) -> Result<u64, ExportError> {
    let tar = |file: File, label: PathBuf| {
        let mut builder = tar::Builder::new(BufWriter::with_capacity(256 * 1024, file));
        builder.mode(tar::HeaderMode::Deterministic);
        Sink::Tar(builder, label)
    };
    match placement {
        Placement::Atomic(out) => {
            output::sweep(parent_of(out));
            let staged = Staged::new(out)?;
            let file = staged.file.try_clone().map_err(Sink::io(out))?;
            let mut sink = tar(file, out.clone());
            let bytes = fill(&mut sink)?;
            sink.finish()?;
            staged.commit()?;
            Ok(bytes)
        }
        Placement::Through(out) => {
            let file = File::options()
                .write(true)
                .truncate(true)
                .open(out)
                .map_err(Sink::io(out))?;
            let mut sink = tar(file, out.clone());
            let bytes = fill(&mut sink)?;
            sink.finish()?;
            Ok(bytes)
        }
        Placement::Stdout => {
            let label = PathBuf::from("standard output");
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(Sink::io(&label))?;
            let mut sink = tar(File::from(fd), label);
            let bytes = fill(&mut sink)?;
            sink.finish()?;
            Ok(bytes)
        }
        Placement::Directory(out) => Err(ExportError::OutputRefused {
            path: out.clone(),
            kind: "a directory",
            hint: "an archive is one file; name a file in it".to_owned(),
        }),
    }
}

/// Writes an oci-archive to `out`.
pub(crate) fn oci_archive(
    store: &Store,
    image: &StoredImage,
    name: &str,
    out: &Placement,
) -> Result<u64, ExportError> {
    tar_file(out, |sink| oci_layout(sink, store, image, name))
}

/// The directory `out` is written in.
pub(super) fn parent_of(out: &Path) -> &Path {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests;
