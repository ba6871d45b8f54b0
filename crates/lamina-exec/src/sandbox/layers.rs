//! [`LayerCache`]: stored layers unpacked once into directories usable as overlayfs lower
//! directories.
//!
//! The [`Unpacker`] applies whiteouts to what lies below, and an unpacked layer has nothing
//! below, so its whiteouts would vanish. Stacked as overlay lowers, each layer directory must
//! carry them in overlayfs form instead: after unpacking, a second pass over the tar headers
//! turns `.wh.<name>` into a 0:0 character device `<name>` and `.wh..wh..opq` into the
//! `trusted.overlay.opaque=y` attribute on its directory (`user.overlay.opaque=y` in a user
//! namespace, see [`crate::rootless`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use lamina_layer::{UnpackOptions, Unpacker};
use lamina_store::{Compression, LayerRecord, LayerVariant, Store};
use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags};

use super::fsutil::{io_err, lock_named, open_dir_in, try_lock_named};
use crate::ExecError;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The attribute overlayfs reads to stop merging a directory with the layers below.
pub(crate) use crate::rootless::opaque_xattr;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where layer directories are made and removed, below the cache root (a rename away from
/// their final name, on the same file system).
pub(crate) const TMP_DIR: &str = ".tmp";

/// Unpacked layers, one directory per layer (keyed by the layer's blake3), unpacked once and
/// reused.
///
/// Directories are named by the hex blake3 of the uncompressed tar, so every stored variant of
/// a layer maps to the same directory. They are read-only by convention: overlay mounts use
/// them as lower directories and never write to them.
#[derive(Debug, Clone)]
pub struct LayerCache {
    work_dir: PathBuf,
    pub(super) root: PathBuf,
    /// Layers unpacked from their blobs by this cache (adopted ones are not counted).
    unpacks: std::sync::Arc<AtomicU64>,
}

impl LayerCache {
    /// A cache in `work_dir/layers/` (created if missing).
    pub fn new(work_dir: &Path) -> Result<Self, ExecError> {
        let root = work_dir.join("layers");
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        // Temporary directories (`.tmp/<hex>-<owner token>-<n>`) of killed processes. They
        // live in a directory of their own so that this scan, made by every process, does
        // not list every layer.
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name.split('-').nth(1).unwrap_or("");
            if !crate::owner::alive(work_dir, owner) {
                remove_tree(&entry.path())?;
            }
        }
        Ok(LayerCache {
            work_dir: work_dir.to_path_buf(),
            root,
            unpacks: Default::default(),
        })
    }

    /// How many layers this cache has unpacked from their blobs so far.
    pub fn unpacks(&self) -> u64 {
        self.unpacks.load(Ordering::Relaxed)
    }

    /// The directory that holds (or will hold) `layer`.
    pub fn dir_of(&self, layer: &LayerRecord) -> PathBuf {
        self.root.join(layer.digest.hex())
    }

    /// Unpacks `layer` once, atomically, and returns its directory, held in use.
    ///
    /// Any stored variant will do (the [`Unpacker`] detects the compression); the result is
    /// checked against the layer's diff_id. The unpack goes to a temporary directory renamed
    /// into place; a per-layer file lock makes concurrent callers, threads or processes, wait
    /// for the first one and reuse its directory. The returned [`LayerInUse`] holds that lock
    /// shared until dropped, so `cache gc` in any process leaves the directory alone.
    pub fn unpacked(&self, store: &Store, layer: &LayerRecord) -> Result<LayerInUse, ExecError> {
        let hex = layer.digest.hex();
        let dir = self.root.join(&hex);
        let lock_path = self.root.join(format!("{hex}.lock"));
        loop {
            let shared = lock_named(&lock_path, FlockOperation::LockShared)?;
            if dir.is_dir() {
                self.mark_used(&hex);
                return Ok(LayerInUse {
                    dir,
                    _lock: std::sync::Arc::new(shared),
                });
            }
            drop(shared);
            if let Some(_lock) = self.lock_missing(&hex)? {
                self.unpack_locked(store, layer, &hex, &dir)?;
            }
            // Then in use like any existing directory (a GC may take it in between: again).
        }
    }

    /// Unpacks `layer` into `dir`, with the layer's lock held exclusively.
    fn unpack_locked(
        &self,
        store: &Store,
        layer: &LayerRecord,
        hex: &str,
        dir: &Path,
    ) -> Result<(), ExecError> {
        // Under the lock, any temporary directory of this layer is left by a killed process.
        self.remove_stale_tmp(hex)?;
        let tmp = self.temp_name(hex)?;
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let split = !layer.is_tree_backed() && self.holds_trees_of(store);
        let result = unpack_into(store, layer, &tmp, split)
            .and_then(|split| fs::rename(&tmp, dir).map_err(io_err(dir)).map(|()| split));
        let split = match result {
            Ok(split) => split,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        self.unpacks.fetch_add(1, Ordering::Relaxed);
        if let Some(split) = split {
            // Best effort: the layer stays blob-backed when this fails.
            if let Err(e) = super::tree_backing::back_by_tree(store, layer, &split) {
                tracing::warn!("layer {hex} keeps its blob: {e}");
            }
        }
        Ok(())
    }

    /// Makes `tree`, which holds exactly `layer`'s content in the form this cache keeps (a
    /// RUN's overlay upper directory, or a tree a COPY staged), the layer's directory, so a
    /// layer built here is written once and never unpacked from its blob.
    ///
    /// mtimes newer than `mtime_clamp` are set to it first, as the layer's tar has them:
    /// the directory must read the same whether adopted or unpacked, so that later steps see
    /// the same files on a cold build and on a rebuild. When the layer already has a
    /// directory, or `tree` is on another file system, `tree` is left to the caller and
    /// `Ok(false)` says so. `sync_first`: see [`LayerCache::adopt_then`].
    pub fn adopt(
        &self,
        layer: &LayerRecord,
        tree: &Path,
        mtime_clamp: u64,
        sync_first: bool,
    ) -> Result<bool, ExecError> {
        Ok(self
            .adopt_then(&layer.digest, tree, mtime_clamp, sync_first, || Ok(()))?
            .is_some())
    }

    /// [`LayerCache::adopt`] for the layer whose tar has blake3 `layer`, running `then` once
    /// the tree is in place, with the layer's lock still held exclusively: a tree-backed
    /// layer's record is written there, so no `cache gc` (which removes directories whose
    /// record is missing, taking that lock first) can see the tree before its record.
    /// `Ok(None)` when the tree was not adopted (left to the caller, `then` not run).
    /// With `sync_first`, the file system holding `tree` is synced before the tree moves in:
    /// a RUN's upper directory (its overlay is mounted `volatile`, so its unmount synced
    /// nothing) reaches the disk before the record that makes it a layer's only copy, or
    /// before a cache that takes an existing directory for a complete one holds it.
    pub fn adopt_then<R>(
        &self,
        layer: &lamina_store::Digest,
        tree: &Path,
        mtime_clamp: u64,
        sync_first: bool,
        then: impl FnOnce() -> Result<R, ExecError>,
    ) -> Result<Option<R>, ExecError> {
        // Without root a tree cannot hold what an unpack as root writes (owners, devices).
        if !rustix::process::geteuid().is_root() {
            return Ok(None);
        }
        let hex = layer.hex();
        let dir = self.root.join(&hex);
        let Some(_lock) = self.lock_missing(&hex)? else {
            return Ok(None);
        };
        clamp_mtimes(tree, mtime_clamp).map_err(io_err(tree))?;
        if sync_first {
            let sync = |dir: &File| rustix::fs::syncfs(dir).map_err(std::io::Error::from);
            File::open(tree)
                .and_then(|dir| sync(&dir))
                .map_err(io_err(tree))?;
        }
        match fs::rename(tree, &dir) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        then().map(Some)
    }

    /// Whether this cache's directories are the store's layer trees
    /// ([`Store::layer_tree`]): only then can a layer be tree-backed.
    pub fn holds_trees_of(&self, store: &Store) -> bool {
        let trees = store.path().join(lamina_store::LAYER_TREES);
        self.root == trees || fs::canonicalize(&self.root).ok() == fs::canonicalize(&trees).ok()
    }

    /// The lock of the layer `hex` when its directory does not exist yet (checked again
    /// under the lock); `None` when it does.
    fn lock_missing(&self, hex: &str) -> Result<Option<File>, ExecError> {
        let dir = self.root.join(hex);
        if dir.is_dir() {
            return Ok(None);
        }
        let lock = lock_named(
            &self.root.join(format!("{hex}.lock")),
            FlockOperation::LockExclusive,
        )?;
        Ok((!dir.is_dir()).then_some(lock))
    }

    /// A new temporary name for layer `hex`'s directory, owned by this process.
    fn temp_name(&self, hex: &str) -> Result<PathBuf, ExecError> {
        Ok(self.root.join(TMP_DIR).join(format!(
            "{hex}-{}-{}",
            crate::owner::claim(&self.work_dir)?,
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }

    fn remove_stale_tmp(&self, hex: &str) -> Result<(), ExecError> {
        let prefix = format!("{hex}-");
        let tmp = self.root.join(TMP_DIR);
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }

    /// Removes the unpacked layers whose layer record the store no longer has (collected by
    /// GC), returning how many and their bytes. A layer in use by a build, in any process,
    /// is left for a later GC.
    pub fn prune(&self, store: &Store) -> Result<PruneReport, ExecError> {
        let mut report = PruneReport::default();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = lamina_store::Digest::parse(&format!("blake3:{name}")) else {
                continue; // lock files, temporary directories
            };
            if store.layer(&digest)?.is_some() {
                continue;
            }
            if let Some(bytes) = self.remove_dir(&name)? {
                report.bytes += bytes;
                report.removed += 1;
            }
        }
        Ok(report)
    }

    /// Removes the directory of the layer `hex` and its lock file unless a build uses it;
    /// returns its bytes, or `None` when it is in use. The directory is renamed away first
    /// (to a temporary name a later unpack or process removes), so a removal cut short never
    /// leaves a partial layer under the layer's name.
    pub(super) fn remove_dir(&self, hex: &str) -> Result<Option<u64>, ExecError> {
        let lock_path = self.root.join(format!("{hex}.lock"));
        let Some(_lock) = try_lock_named(&lock_path)? else {
            return Ok(None);
        };
        let path = self.root.join(hex);
        let bytes = crate::usage::bytes_of(&path);
        let gone = self.temp_name(hex)?;
        match fs::rename(&path, &gone) {
            Ok(()) => fs::remove_dir_all(&gone).map_err(io_err(&gone))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        // Unlinked while held: whoever opened the old file sees it is no longer the named
        // one (lock_named) and opens the new.
        if let Err(e) = fs::remove_file(&lock_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(io_err(&lock_path)(e));
        }
        Ok(Some(bytes))
    }
}

/// Removes a dead owner's tree; another process removing it at the same time is success.
fn remove_tree(path: &Path) -> Result<(), ExecError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// An unpacked layer a build is using: its directory, and a shared lock on the layer that
/// keeps GC in any process from removing it until dropped.
#[derive(Debug, Clone)]
pub struct LayerInUse {
    dir: PathBuf,
    _lock: std::sync::Arc<File>,
}

/// Two uses of one layer are equal: the lock is not part of what they name.
impl PartialEq for LayerInUse {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
    }
}

impl Eq for LayerInUse {}

impl LayerInUse {
    /// The layer's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl std::ops::Deref for LayerInUse {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.dir
    }
}

/// What [`LayerCache::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Unpacked layer directories removed.
    pub removed: u64,
    /// Bytes of the files in them.
    pub bytes: u64,
}

/// Sets every mtime below `dir` that is newer than `clamp` to `clamp` (links not followed).
fn clamp_mtimes(dir: &Path, clamp: u64) -> io::Result<()> {
    let clamped = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: clamp as i64,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: clamp as i64,
            tv_nsec: 0,
        },
    };
    let root: OwnedFd = File::open(dir)?.into();
    clamp_below(&root, &clamped)
}

fn clamp_below(dir: &OwnedFd, clamped: &rustix::fs::Timestamps) -> io::Result<()> {
    let newer = |st: &rustix::fs::Stat| {
        (st.st_mtime, st.st_mtime_nsec as i64)
            > (
                clamped.last_modification.tv_sec,
                clamped.last_modification.tv_nsec,
            )
    };
    let mut listing = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let st = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let child = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            clamp_below(&child, clamped)?;
        }
        if newer(&st) {
            rustix::fs::utimensat(dir, name, clamped, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        }
    }
    Ok(())
}

/// Unpacks the first stored variant of `layer` into the empty directory `dir`, then writes its
/// whiteouts in overlayfs form. With `split`, the tar is also recorded as a tar-split on the
/// way (returned when the tar can be reassembled from the tree, see `tree_backing`).
fn unpack_into(
    store: &Store,
    layer: &LayerRecord,
    dir: &Path,
    split: bool,
) -> Result<Option<lamina_store::BlobInfo>, ExecError> {
    let layer_hex = layer.digest.hex();
    // Cheapest to decompress first: the tar is read twice.
    let mut variants: Vec<&LayerVariant> = layer.variants.iter().collect();
    variants.sort_by_key(|v| match v.compression {
        Compression::None => 0,
        Compression::Zstd => 1,
        _ => 2,
    });
    for variant in variants {
        let Some(blob) = store.get(&variant.digest)? else {
            continue;
        };
        // A user namespace cannot create device nodes: they are skipped, as containerd does
        // for rootless BuildKit (the stored layer keeps them).
        let devices = !crate::rootless::in_user_namespace();
        let options = UnpackOptions::default().same_owner(true).devices(devices);
        let unpacker = Unpacker::new(options);
        let reader = io::BufReader::new(blob);
        let (stats, recorded) = if split {
            // The tar-split records the plain tar, whatever the variant's compression.
            let mut recorder = super::tree_backing::Recorder::new(store)?;
            let plain = decompressed(variant.compression, reader, &layer_hex)?;
            let stats = unpacker.unpack(recorder.tee(plain), dir)?;
            (stats, Some(recorder))
        } else {
            (unpacker.unpack(reader, dir)?, None)
        };
        if stats.diff_id != layer.diff_id {
            return Err(ExecError::LayerDiffIdMismatch {
                layer: layer_hex,
                expected: layer.diff_id.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        if stats.whiteouts > 0 {
            let Some(blob) = store.get(&variant.digest)? else {
                return Err(ExecError::LayerBlobMissing { layer: layer_hex });
            };
            let reader = decompressed(variant.compression, io::BufReader::new(blob), &layer_hex)?;
            overlay_whiteouts(reader, dir, &layer_hex)?;
        }
        return Ok(recorded.and_then(|r| r.finish(&layer_hex)));
    }
    if layer.is_tree_backed() {
        return Err(ExecError::LayerTreeMissing {
            layer: layer_hex,
            tree: store.layer_tree(&layer.digest),
        });
    }
    Err(ExecError::LayerBlobMissing { layer: layer_hex })
}

fn decompressed<'a, R: io::BufRead + 'a>(
    compression: Compression,
    reader: R,
    layer: &str,
) -> Result<Box<dyn Read + 'a>, ExecError> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(
            |source| ExecError::Io {
                path: PathBuf::from(layer),
                source,
            },
        )?),
    })
}

/// Writes the whiteouts and opaque markers of the tar read from `reader` into `dir` in
/// overlayfs form. Entries the layer itself has at a whited-out path win (the OCI rule: a
/// whiteout hides only what lower layers have), except that a directory replacing a lower
/// entry becomes opaque.
fn overlay_whiteouts(reader: impl Read, dir: &Path, layer: &str) -> Result<(), ExecError> {
    let root: OwnedFd = File::open(dir).map_err(io_err(dir))?.into();
    let mut archive = tar::Archive::new(reader);
    let read_err = |source| ExecError::Io {
        path: PathBuf::from(layer),
        source,
    };
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let invalid = |reason: &str| ExecError::InvalidLayerEntry {
            layer: layer.to_owned(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason: reason.to_owned(),
        };
        let comps: Vec<&[u8]> = raw
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        let Some((&name, parents)) = comps.split_last() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX) else {
            continue;
        };
        if comps.contains(&&b".."[..]) {
            return Err(invalid("path has a `..` component"));
        }
        let parent = open_dir_in(&root, parents, true)
            .map_err(|e| invalid(&format!("cannot open its directory inside the layer: {e}")))?;
        let set_opaque = |fd: &OwnedFd| {
            rustix::fs::fsetxattr(fd, opaque_xattr(), b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| invalid(&format!("cannot mark the directory opaque: {e}")))
        };
        if name == OPAQUE_MARKER {
            set_opaque(&parent)?;
            continue;
        }
        if rest.starts_with(WHITEOUT_PREFIX) || rest.is_empty() || rest == b".." {
            continue; // aufs metadata, or refused by the unpacker already
        }
        match rustix::fs::statat(&parent, rest, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let fd = rustix::fs::openat(
                    &parent,
                    rest,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| invalid(&e.to_string()))?;
                set_opaque(&fd)?;
            }
            Ok(_) => {}
            Err(rustix::io::Errno::NOENT) => {
                // The device gets the whiteout entry's mtime and its directory keeps its
                // own, so the directory reads as a RUN's upper directory would.
                let failed = |e: rustix::io::Errno| {
                    invalid(&format!("cannot create the overlay whiteout: {e}"))
                };
                let dir_times = rustix::fs::fstat(&parent).map_err(failed)?;
                let made = rustix::fs::mknodat(
                    &parent,
                    rest,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                );
                // Where the file system refuses the device in a user namespace (a store on
                // overlayfs, a kernel before 5.8), native overlayfs is refused too and RUN
                // steps use fuse-overlayfs, which reads its own form: an empty `.wh.NAME`.
                let rest = match made {
                    Ok(()) => rest,
                    Err(rustix::io::Errno::PERM) if crate::rootless::in_user_namespace() => {
                        let flags =
                            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
                        rustix::fs::openat(&parent, name, flags, Mode::empty()).map_err(failed)?;
                        name
                    }
                    Err(e) => return Err(failed(e)),
                };
                let mtime = entry.header().mtime().unwrap_or(0);
                let at = |sec: i64, nsec: i64| rustix::fs::Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec as _,
                };
                let own = rustix::fs::Timestamps {
                    last_access: at(mtime as i64, 0),
                    last_modification: at(mtime as i64, 0),
                };
                rustix::fs::utimensat(&parent, rest, &own, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(failed)?;
                let kept = rustix::fs::Timestamps {
                    last_access: at(dir_times.st_atime, dir_times.st_atime_nsec as i64),
                    last_modification: at(dir_times.st_mtime, dir_times.st_mtime_nsec as i64),
                };
                rustix::fs::futimens(&parent, &kept).map_err(failed)?;
            }
            Err(e) => return Err(invalid(&e.to_string())),
        }
    }
    Ok(())
}
