//! [`LayerWriter`]: plans, then streams a layer through tar, hashing and compression at once.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use lamina_types::Digest;

use crate::compress::{Compression, Encoder};
use crate::digest::{BlobHasher, TarHasher};
use crate::error::LayerError;
use crate::pax::{self, Header, kind};
use crate::walk::{self, Node, OPAQUE_MARKER, Plan, PlanEntry, Source, WHITEOUT_PREFIX};

/// How layers are written. Equal options and equal trees give byte-identical layers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerOptions {
    /// Later modification times are lowered to this (seconds since the epoch), as
    /// `SOURCE_DATE_EPOCH` asks; `None` keeps them (whole seconds).
    pub mtime_clamp: Option<u64>,
    /// The compression of the blob.
    pub compression: Compression,
    /// The compression level; `None` is [`Compression::default_level`].
    pub level: Option<i32>,
    /// Compression worker threads (zstd and gzip alike; the name is historical), at least 1
    /// (0 counts as 1). The output does not depend on it.
    pub zstd_workers: u32,
}

impl Default for LayerOptions {
    /// zstd level 3 with 2 workers, no mtime clamp.
    fn default() -> Self {
        LayerOptions {
            mtime_clamp: None,
            compression: Compression::Zstd,
            level: None,
            zstd_workers: 2,
        }
    }
}

impl LayerOptions {
    /// The defaults, with `mtime_clamp` taken from `SOURCE_DATE_EPOCH` when it is set to a
    /// number of seconds (other values are ignored).
    pub fn from_env() -> Self {
        let clamp = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok());
        LayerOptions {
            mtime_clamp: clamp,
            ..LayerOptions::default()
        }
    }

    /// Sets [`LayerOptions::mtime_clamp`].
    pub fn mtime_clamp(mut self, clamp: Option<u64>) -> Self {
        self.mtime_clamp = clamp;
        self
    }

    /// Sets [`LayerOptions::compression`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets [`LayerOptions::zstd_workers`].
    pub fn zstd_workers(mut self, workers: u32) -> Self {
        self.zstd_workers = workers;
        self
    }

    /// Sets [`LayerOptions::level`].
    pub fn level(mut self, level: Option<i32>) -> Self {
        self.level = level;
        self
    }
}

/// What a written layer is: everything an OCI descriptor and config need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar: the config's `rootfs.diff_ids` entry.
    pub diff_id: Digest,
    /// blake3 of the uncompressed tar, for the content store.
    pub blake3: Digest,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// sha256 of the blob as written (equal to `diff_id` when uncompressed).
    pub digest: Digest,
    /// Bytes of the blob as written.
    pub size: u64,
    /// The blob's OCI media type.
    pub media_type: &'static str,
}

/// Writes deterministic OCI image layers.
///
/// Entries go depth-first with siblings in byte order of their archive names (a directory's
/// opaque marker right after it); headers are built by hand (see the `pax` module docs); owners
/// are numeric; whiteouts and opaque markers are empty regular files with mode 0, owner 0:0 and
/// mtime 0. The root directory itself is not an entry. Sockets are skipped, as GNU tar does.
#[derive(Debug, Clone, Default)]
pub struct LayerWriter {
    options: LayerOptions,
}

impl LayerWriter {
    /// A writer with these options.
    pub fn new(options: LayerOptions) -> Self {
        LayerWriter { options }
    }

    /// The writer's options.
    pub fn options(&self) -> &LayerOptions {
        &self.options
    }

    /// Writes everything below `root` as a layer into `out`.
    pub fn write_tree<W: Write>(&self, root: &Path, out: W) -> Result<LayerInfo, LayerError> {
        self.write_tree_with_copy(root, out, io::sink())
    }

    /// [`LayerWriter::write_tree`], also handing the uncompressed tar to `tar_copy` as it is
    /// written (a [`crate::TarSplitWriter`] records it so).
    pub fn write_tree_with_copy<W: Write, T: Write>(
        &self,
        root: &Path,
        out: W,
        tar_copy: T,
    ) -> Result<LayerInfo, LayerError> {
        let mut plan = Plan::new();
        walk::walk(root, b"", Source::Tree, &mut plan)?;
        self.write_plan(&plan, out, tar_copy)
    }

    /// Writes an overlayfs upper directory (of an unmounted overlay) as a layer: 0:0 character
    /// devices become `.wh.<name>` whiteouts and `trusted.overlay.opaque=y` directories get a
    /// `.wh..wh..opq` marker. Reading `trusted.*` attributes needs root (or a user namespace
    /// that owns the mount); overlays with `redirect_dir` or `metacopy` are refused.
    pub fn write_overlay_upper<W: Write>(
        &self,
        upper: &Path,
        out: W,
    ) -> Result<LayerInfo, LayerError> {
        self.write_overlay_upper_with_copy(upper, out, io::sink())
    }

    /// [`LayerWriter::write_overlay_upper`], also handing the uncompressed tar to `tar_copy`.
    pub fn write_overlay_upper_with_copy<W: Write, T: Write>(
        &self,
        upper: &Path,
        out: W,
        tar_copy: T,
    ) -> Result<LayerInfo, LayerError> {
        let mut plan = Plan::new();
        walk::walk(upper, b"", Source::OverlayUpper, &mut plan)?;
        self.write_plan(&plan, out, tar_copy)
    }

    /// Writes the difference from `lower` to `upper` as a layer, for when overlayfs is not
    /// available; the same change gives the same bytes as [`LayerWriter::write_overlay_upper`]
    /// (see the `diff` module docs for the few cases a diff cannot see).
    pub fn diff_trees<W: Write>(
        &self,
        lower: &Path,
        upper: &Path,
        out: W,
    ) -> Result<LayerInfo, LayerError> {
        let mut plan = Plan::new();
        crate::diff::diff_dir(lower, upper, b"", &mut plan)?;
        self.write_plan(&plan, out, io::sink())
    }

    fn write_plan<W: Write, T: Write>(
        &self,
        plan: &Plan,
        out: W,
        tar_copy: T,
    ) -> Result<LayerInfo, LayerError> {
        let o = &self.options;
        let compressed = o.compression != Compression::None;
        let level = o.level.unwrap_or(o.compression.default_level());
        let blob = BlobHasher::new(out, compressed).map_err(LayerError::sink)?;
        let enc =
            Encoder::new(blob, o.compression, level, o.zstd_workers).map_err(LayerError::sink)?;
        // Large buffer in front of the hashers: blake3 is fastest on big updates.
        let hasher = TarHasher::new(Tee(enc, tar_copy)).map_err(LayerError::sink)?;
        let mut tar = BufWriter::with_capacity(1 << 20, hasher);
        let mut links = HashMap::new();
        let mut buf = vec![0u8; copy_buffer_len(plan)];
        for entry in plan {
            self.write_entry(entry, &mut tar, &mut links, &mut buf)?;
        }
        pax::write_trailer(&mut tar).map_err(LayerError::sink)?;
        let hasher = tar
            .into_inner()
            .map_err(|e| LayerError::sink(e.into_error()))?;
        let (Tee(enc, mut tar_copy), diff_id, blake3, uncompressed_size) =
            hasher.finish().map_err(LayerError::sink)?;
        tar_copy.flush().map_err(LayerError::sink)?;
        let blob = enc.finish().map_err(LayerError::sink)?;
        let (mut out, digest, size) = blob.finish().map_err(LayerError::sink)?;
        out.flush().map_err(LayerError::sink)?;
        Ok(LayerInfo {
            diff_id,
            blake3,
            uncompressed_size,
            digest: digest.unwrap_or(diff_id),
            size,
            media_type: o.compression.media_type(),
        })
    }

    fn write_entry(
        &self,
        entry: &PlanEntry,
        tar: &mut impl Write,
        links: &mut HashMap<(u64, u64), Vec<u8>>,
        buf: &mut [u8],
    ) -> Result<(), LayerError> {
        let (name, node) = match entry {
            PlanEntry::Whiteout { name } => {
                let (dir, base) = split_last(name);
                let marker = walk::join(dir, &[WHITEOUT_PREFIX, base].concat());
                return write_marker(tar, &marker);
            }
            PlanEntry::Opaque { dir } => return write_marker(tar, &walk::join(dir, OPAQUE_MARKER)),
            PlanEntry::Node { name, node } => (name, node),
        };
        let meta = &node.meta;
        let ft = meta.file_type();
        let xattrs = walk::layer_xattrs(node)?;
        let mut h = Header {
            name,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: self.clamp(meta.mtime()),
            xattrs: &xattrs,
            ..Header::default()
        };
        let dir_name;
        let target;
        let mut content = false;
        if ft.is_dir() {
            dir_name = [name.as_slice(), b"/"].concat();
            h.name = &dir_name;
            h.kind = kind::DIR;
        } else if let Some(first) = hardlink_of(node, name, links) {
            h.kind = kind::HARDLINK;
            target = first;
            h.link = &target;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&node.path).map_err(LayerError::reading(&node.path))?;
            target = t.as_os_str().as_bytes().to_vec();
            h.kind = kind::SYMLINK;
            h.link = &target;
        } else if ft.is_file() {
            h.kind = kind::FILE;
            h.size = meta.len();
            content = true;
        } else if ft.is_fifo() {
            h.kind = kind::FIFO;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.kind = if ft.is_char_device() {
                kind::CHAR
            } else {
                kind::BLOCK
            };
            let rdev = meta.rdev();
            (h.dev_major, h.dev_minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            if !pax::dev_fits(h.dev_major) || !pax::dev_fits(h.dev_minor) {
                return Err(LayerError::Source {
                    path: node.path.clone(),
                    source: std::io::Error::other("device number too large for a tar header"),
                });
            }
        } else {
            return Ok(()); // a socket
        }
        if !content {
            return pax::write_header(tar, &h).map_err(LayerError::sink);
        }
        // Open before writing the header, so an unreadable file fails cleanly.
        let mut file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&node.path)
            .map_err(LayerError::reading(&node.path))?;
        pax::write_header(tar, &h).map_err(LayerError::sink)?;
        copy_exact(&mut file, node, h.size, tar, buf)?;
        pax::write_padding(tar, h.size).map_err(LayerError::sink)
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = u64::try_from(mtime).unwrap_or(0);
        self.options.mtime_clamp.map_or(t, |c| t.min(c))
    }
}

/// Writes everything to both writers (the compressor, and a copy of the tar).
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Records the first archive name of a multiply linked inode; later names link to it.
fn hardlink_of(
    node: &Node,
    name: &[u8],
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> Option<Vec<u8>> {
    if node.meta.nlink() < 2 {
        return None;
    }
    let key = (node.meta.dev(), node.meta.ino());
    if let Some(first) = links.get(&key) {
        return Some(first.clone());
    }
    links.insert(key, name.to_vec());
    None
}

/// The copy buffer for `plan`'s files: 1 MiB, or the largest file's size when smaller. It is
/// zeroed, so each of its pages costs a page fault: a full-size buffer took 256 of them for
/// every layer, one without file contents (a WORKDIR's) included.
fn copy_buffer_len(plan: &Plan) -> usize {
    const MAX: usize = 1 << 20;
    const MIN: usize = 4096;
    let largest = plan
        .iter()
        .filter_map(|entry| match entry {
            PlanEntry::Node { node, .. } if node.meta.is_file() => Some(node.meta.len()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    usize::try_from(largest).map_or(MAX, |n| n.clamp(MIN, MAX))
}

/// Streams exactly `size` bytes: a file that grew or shrank would corrupt the archive.
fn copy_exact(
    file: &mut File,
    node: &Node,
    size: u64,
    tar: &mut impl Write,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let mut left = size;
    let changed = || LayerError::FileChanged {
        path: node.path.clone(),
    };
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = file
            .read(&mut buf[..want])
            .map_err(LayerError::reading(&node.path))?;
        if n == 0 {
            return Err(changed());
        }
        tar.write_all(&buf[..n]).map_err(LayerError::sink)?;
        left -= n as u64;
    }
    if file
        .read(&mut buf[..1])
        .map_err(LayerError::reading(&node.path))?
        != 0
    {
        return Err(changed());
    }
    Ok(())
}

fn write_marker(tar: &mut impl Write, name: &[u8]) -> Result<(), LayerError> {
    let h = Header {
        name,
        kind: kind::FILE,
        ..Header::default()
    };
    pax::write_header(tar, &h).map_err(LayerError::sink)
}

/// Splits `a/b/c` into (`a/b`, `c`).
fn split_last(name: &[u8]) -> (&[u8], &[u8]) {
    match name.iter().rposition(|&c| c == b'/') {
        Some(i) => (&name[..i], &name[i + 1..]),
        None => (b"", name),
    }
}
