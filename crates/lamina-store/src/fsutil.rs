//! The on-disk layout and the one atomic persist helper every file write goes through.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::StoreError;
use crate::digest::hex;

/// The text of the format marker file.
pub(crate) const FORMAT_V1: &str = "lamina-store v1\n";
/// Format v2 adds layer records of encoding version 2 (tree-backed layers, tar-split blobs);
/// a v1 store is a valid v2 store, upgraded by its first read-write open.
pub(crate) const FORMAT_V2: &str = "lamina-store v2\n";

/// Paths inside a store root (see docs/format.md).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) blobs: PathBuf,
    pub(crate) tmp: PathBuf,
    pub(crate) index: PathBuf,
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
            index: root.join("index-v1"),
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

    /// Creates the directory tree and the format marker, or checks the marker of an
    /// existing store.
    /// A v1 store is upgraded to v2 unless `read_only` (its records all stay valid; only a
    /// lamina that reads v1 alone refuses it afterwards).
    pub(crate) fn create_or_check(&self, read_only: bool) -> Result<(), StoreError> {
        fs::create_dir_all(&self.root).map_err(StoreError::io(&self.root))?;
        match fs::read_to_string(&self.format) {
            Ok(found) if found == FORMAT_V2 || (found == FORMAT_V1 && read_only) => {}
            Ok(found) if found == FORMAT_V1 => {
                let (mut file, tmp) = self.create_temp()?;
                file.write_all(FORMAT_V2.as_bytes())
                    .map_err(StoreError::io(&tmp))?;
                persist(file, &tmp, &self.format)?;
            }
            Ok(found) => {
                return Err(StoreError::UnsupportedFormat {
                    path: self.format.clone(),
                    found,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.tmp).map_err(StoreError::io(&self.tmp))?;
                // All 256 shards up front: a put never creates a directory, so it never
                // needs to fsync a grandparent.
                for b in 0..=255u8 {
                    let shard = self.blobs.join(hex(&[b]));
                    fs::create_dir_all(&shard).map_err(StoreError::io(&shard))?;
                }
                sync_dir(&self.blobs)?;
                // The marker goes last: a store without it is (re)initialised on open.
                let (mut file, tmp) = self.create_temp()?;
                file.write_all(FORMAT_V2.as_bytes())
                    .map_err(StoreError::io(&tmp))?;
                persist(file, &tmp, &self.format)?;
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: self.format.clone(),
                    source: e,
                });
            }
        }
        fs::create_dir_all(&self.tmp).map_err(StoreError::io(&self.tmp))?;
        Ok(())
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
