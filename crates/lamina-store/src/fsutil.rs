//! The on-disk layout and the one atomic persist helper every file write goes through.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;
use crate::digest::hex;

/// The text of the format marker file.
pub(crate) const FORMAT_V1: &str = "lamina-store v1\n";
/// Format v2 adds layer records of encoding version 2 (tree-backed layers, tar-split blobs).
pub(crate) const FORMAT_V2: &str = "lamina-store v2\n";
/// Format v3 keeps the index in one key space with tagged keys (`index-v2/`) instead of
/// one column family per kind of record (`index-v1/`); v1 and v2 stores are migrated by
/// their first open (see `migrate`).
pub(crate) const FORMAT_V3: &str = "lamina-store v3\n";

/// What a store's format marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// This version's format.
    Current,
    /// Format v1 or v2: the index needs migrating.
    BeforeIndexV2,
}

/// Paths inside a store root (see docs/format.md).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) blobs: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) index: PathBuf,
    /// The index of format v1 and v2, until migrated.
    pub(crate) old_index: PathBuf,
    /// Where a migration builds the new index before renaming it to `index`.
    pub(crate) migrating_index: PathBuf,
    pub(crate) lock: PathBuf,
    pub(crate) format: PathBuf,
    pub(crate) reserve: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            blobs: root.join("blobs-v1"),
            tmp: root.join("tmp"),
            index: root.join("index-v2"),
            old_index: root.join("index-v1"),
            migrating_index: root.join("index-v2.migrating"),
            lock: root.join("LOCK"),
            format: root.join("FORMAT"),
            reserve: root.join("RESERVE"),
        }
    }

    /// A new temp file in `tmp/`, owned by this process (its owner lock taken first).
    pub(crate) fn create_temp(&self) -> Result<(File, PathBuf), StoreError> {
        let owner = crate::owner::claim(&self.root)
            .map_err(|(path, source)| StoreError::Io { path, source })?;
        create_temp(&self.tmp, owner)
    }

    /// `blobs-v1/<first two hex digits>/<remaining 62 hex digits>`.
    pub(crate) fn blob_path(&self, blake3: &[u8; 32]) -> PathBuf {
        let h = hex(blake3);
        self.blobs.join(&h[..2]).join(&h[2..])
    }

    /// What the format marker says (a store of format v1 or v2 is migrated before its
    /// index is opened).
    pub(crate) fn marker(&self) -> Result<Marker, StoreError> {
        let found = fs::read_to_string(&self.format).map_err(StoreError::io(&self.format))?;
        if found == FORMAT_V3 {
            Ok(Marker::Current)
        } else if found == FORMAT_V1 || found == FORMAT_V2 {
            Ok(Marker::BeforeIndexV2)
        } else {
            Err(StoreError::UnsupportedFormat {
                path: self.format.clone(),
                found,
            })
        }
    }

    /// Creates the directory tree and the format marker of a new store (the caller holds
    /// `LOCK`); an existing one is left as it is.
    pub(crate) fn create(&self) -> Result<(), StoreError> {
        fs::create_dir_all(&self.root).map_err(StoreError::io(&self.root))?;
        if !self.format.is_file() {
            fs::create_dir_all(&self.tmp).map_err(StoreError::io(&self.tmp))?;
            // All 256 shards up front: a put never creates a directory, so it never needs to
            // fsync a grandparent.
            for b in 0..=255u8 {
                let shard = self.blobs.join(hex(&[b]));
                fs::create_dir_all(&shard).map_err(StoreError::io(&shard))?;
            }
            sync_dir(&self.blobs)?;
            // The marker goes last: a store without it is (re)initialised on open.
            self.write_marker(FORMAT_V3)?;
        }
        fs::create_dir_all(&self.tmp).map_err(StoreError::io(&self.tmp))?;
        Ok(())
    }

    /// Replaces the format marker atomically.
    pub(crate) fn write_marker(&self, text: &str) -> Result<(), StoreError> {
        self.write_file(&self.format, text)
    }

    /// Writes `text` to `target` atomically (a temp file persisted in its place).
    pub(crate) fn write_file(&self, target: &Path, text: &str) -> Result<(), StoreError> {
        let (mut file, tmp) = self.create_temp()?;
        file.write_all(text.as_bytes())
            .map_err(StoreError::io(&tmp))?;
        persist(file, &tmp, target)
    }
}

/// Creates a new, uniquely named file in `dir`, named after `owner` (this process's owner
/// token, see [`crate::owner`]) so other processes leave it alone while this one lives.
pub(crate) fn create_temp(dir: &Path, owner: &str) -> Result<(File, PathBuf), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = dir.join(format!("{owner}-{n}-{nanos:x}.tmp"));
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StoreError::Io { path, source: e }),
        }
    }
}

/// The owner token of a temp file's name (see [`create_temp`]).
pub(crate) fn temp_owner(name: &str) -> &str {
    name.split('-').next().unwrap_or_default()
}

/// Makes `temp` durable and moves it to `target` atomically: fsync the file, rename, fsync
/// the target's directory. The only place this crate renames files.
#[allow(clippy::disallowed_methods)] // this is the helper the ban points to
pub(crate) fn persist(file: File, temp: &Path, target: &Path) -> Result<(), StoreError> {
    file.sync_all().map_err(StoreError::io(temp))?;
    drop(file);
    fs::rename(temp, target).map_err(StoreError::io(target))?;
    if let Some(dir) = target.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Moves the directory `from` to `to` (which must not exist) and makes the move durable.
#[allow(clippy::disallowed_methods)] // a directory: `persist` moves files
pub(crate) fn rename_dir(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(StoreError::io(to))?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes a directory tree; one already gone is fine.
pub(crate) fn remove_dir_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// fsyncs a directory so renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(dir))
}

/// Removes a file; a file already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Total length of the regular files under `dir` (recursively), and their count.
pub(crate) fn dir_size(dir: &Path) -> Result<(u64, u64), StoreError> {
    let mut bytes = 0;
    let mut files = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io(dir))?;
        let meta = entry.metadata().map_err(StoreError::io(entry.path()))?;
        if meta.is_dir() {
            let (b, f) = dir_size(&entry.path())?;
            bytes += b;
            files += f;
        } else if meta.is_file() {
            bytes += meta.len();
            files += 1;
        }
    }
    Ok((bytes, files))
}
