//! The persistent content-hash cache: `<work_dir>/hash-cache-v2` maps a file's stamp
//! (path, size, mtime, ctime, inode, device) to the blake3 of its content, so COPY/ADD
//! inputs that have not changed since an earlier build are not read again, and a
//! directory's stamp to its listing (names, symlink targets), so an unchanged directory is
//! not listed again and its symlinks not read (see [`lamina_spec::inputs::ContentHashCache`]
//! for when either may be recorded).
//!
//! A build loads the file once, on its first COPY/ADD with local sources, and writes it
//! back at its end if anything changed; the executor keeps it in memory for its next build
//! while the file is unchanged (`KeptHashCache`). It is only a cache: a missing, unreadable
//! or corrupt file is ignored with a warning and rebuilt, a failed write is a warning, and
//! concurrent builds in different processes simply overwrite each other's file (the loser's
//! new hashes are computed again next time). Cache keys never depend on it: a hit yields
//! what was recorded for exactly that stamp.
//!
//! # Format (all integers little-endian)
//!
//! ```text
//! magic    8 bytes  "LMHASH02"
//! count    u64      number of file entries
//! files    count ×  sorted by path bytes:
//!   path     u16 bytes shared with the previous entry's path, u16 length of the rest,
//!            then those bytes
//!   size u64, mtime_ns i64, ctime_ns i64, inode u64, dev u64
//!   seen     u32    day (since the Unix epoch) the entry was last used
//!   blake3   32 bytes
//! dirs     u64      number of directory entries, then each, sorted by path bytes:
//!   path, size, mtime_ns, ctime_ns, inode, dev, seen as above
//!   children u32, then each: u16 name length, name, u8 kind (0 file or directory,
//!            1 symlink: u32 mode, u16 target length, target)
//! checksum 32 bytes blake3 of everything before it
//! ```
//!
//! Bounded: entries unused for [`MAX_AGE_DAYS`] are dropped when the file is written, and at
//! most [`MAX_ENTRIES`] files (the most recently used) and directories counting at most
//! [`MAX_ENTRIES`] with their children are kept. The version 1 file (files only) is not read; the first
//! save removes it.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use lamina_spec::inputs::{ContentHashCache, DirListing, FileStamp, ListedChild, ListedKind};

use super::layers::io;
use crate::ExecError;

/// The cache's file name in the executor's work directory.
pub const FILE_NAME: &str = "hash-cache-v2";

/// The file of the previous format, removed by the first save.
const OLD_FILE_NAME: &str = "hash-cache-v1";

/// Entries not used for this many days are dropped.
pub const MAX_AGE_DAYS: u32 = 30;

/// At most this many entries are kept (about 100 MB of file at typical path lengths).
pub const MAX_ENTRIES: usize = 1_000_000;

const MAGIC: &[u8; 8] = b"LMHASH02";

/// How a build's COPY/ADD input files were hashed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashCacheStats {
    /// Entries in the cache when the build first needed it: those of the file, or of the
    /// executor's copy kept from its last build (0 if the file was missing or corrupt, or
    /// no step needed it). The other counts are the build's own, except that builds of one
    /// executor running at the same time share a cache and see each other's counts.
    pub loaded: u64,
    /// Files looked up by stamp.
    pub lookups: u64,
    /// Lookups answered by the cache: files whose content was not read.
    pub hits: u64,
    /// Hashes recorded for next time.
    pub recorded: u64,
    /// Directories whose recorded listing was used: not listed, their symlinks not read.
    pub dirs_from_cache: u64,
}

impl HashCacheStats {
    /// The counts since `start` (a build's share of a cache kept across builds); `loaded`
    /// is the entries at the start.
    fn since(self, start: &HashCacheStats) -> HashCacheStats {
        HashCacheStats {
            loaded: start.loaded,
            lookups: self.lookups - start.lookups,
            hits: self.hits - start.hits,
            recorded: self.recorded - start.recorded,
            dirs_from_cache: self.dirs_from_cache - start.dirs_from_cache,
        }
    }
}

/// A recorded stamp (its path is the map key) and what was recorded under it: a file's
/// hash or a directory's listing.
#[derive(Debug)]
struct Entry<T> {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    dev: u64,
    value: T,
    /// Day of the last lookup that hit (or of the record).
    seen: AtomicU32,
}

impl<T> Entry<T> {
    fn new(stamp: &FileStamp, value: T, seen: u32) -> Self {
        Entry {
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            ctime_ns: stamp.ctime_ns,
            inode: stamp.inode,
            dev: stamp.dev,
            value,
            seen: AtomicU32::new(seen),
        }
    }

    fn matches(&self, stamp: &FileStamp) -> bool {
        self.size == stamp.size
            && self.mtime_ns == stamp.mtime_ns
            && self.ctime_ns == stamp.ctime_ns
            && self.inode == stamp.inode
            && self.dev == stamp.dev
    }
}

type Files = HashMap<PathBuf, Entry<[u8; 32]>>;
type Dirs = HashMap<PathBuf, Entry<Arc<DirListing>>>;

/// The content-hash cache of one work directory, in memory (see the module docs).
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    entries: RwLock<Files>,
    dirs: RwLock<Dirs>,
    today: u32,
    changed: AtomicBool,
    loaded: u64,
    lookups: AtomicU64,
    hits: AtomicU64,
    recorded: AtomicU64,
    dirs_from_cache: AtomicU64,
}

impl HashCache {
    /// Loads `<work_dir>/hash-cache-v2`; a missing file gives an empty cache, an unreadable
    /// or corrupt one an empty cache and a warning (the file is rewritten on [`save`]).
    ///
    /// [`save`]: HashCache::save
    pub fn open(work_dir: &Path) -> Self {
        HashCache::open_stamped(work_dir).0
    }

    /// [`HashCache::open`], with the identity of the file it read (none if it read none).
    fn open_stamped(work_dir: &Path) -> (Self, Option<FileStamp>) {
        let path = work_dir.join(FILE_NAME);
        let mut identity = None;
        let read = File::open(&path).and_then(|mut file| {
            identity = file.metadata().ok().map(|m| FileStamp::new(&path, &m));
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes)
        });
        let ((entries, dirs), changed) = match read {
            Ok(bytes) => match decode(&bytes) {
                Ok(decoded) => (decoded, false),
                Err(reason) => {
                    tracing::warn!(path = %path.display(), reason, "ignoring corrupt hash cache; it will be rebuilt");
                    (Default::default(), true)
                }
            },
            // A store of the previous format: its file is removed by the first save.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                (Default::default(), work_dir.join(OLD_FILE_NAME).exists())
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "ignoring unreadable hash cache; it will be rebuilt");
                (Default::default(), true)
            }
        };
        let cache = HashCache {
            path,
            loaded: entries.len() as u64,
            entries: RwLock::new(entries),
            dirs: RwLock::new(dirs),
            today: today(),
            changed: AtomicBool::new(changed),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            recorded: AtomicU64::new(0),
            dirs_from_cache: AtomicU64::new(0),
        };
        (cache, identity)
    }

    /// Number of entries in memory.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts since [`HashCache::open`].
    pub fn stats(&self) -> HashCacheStats {
        HashCacheStats {
            loaded: self.loaded,
            lookups: self.lookups.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            dirs_from_cache: self.dirs_from_cache.load(Ordering::Relaxed),
        }
    }

    /// Writes the cache back if anything changed since it was loaded (temp file, fsync,
    /// rename), dropping entries unused for [`MAX_AGE_DAYS`] and any beyond
    /// [`MAX_ENTRIES`]. Returns whether the file was written.
    pub fn save(&self) -> Result<bool, ExecError> {
        Ok(self.save_identified()?.is_some())
    }

    /// [`HashCache::save`], returning the identity of the file written (taken before the
    /// rename, so another process's file renamed over it right after is not mistaken for
    /// ours).
    fn save_identified(&self) -> Result<Option<FileStamp>, ExecError> {
        // Cleared before the entries are copied: a build sharing this cache that records
        // after the copy sets it again, and its own save writes what this one missed.
        if !self.changed.swap(false, Ordering::AcqRel) {
            return Ok(None);
        }
        let written = self.write_file();
        if written.is_err() {
            self.changed.store(true, Ordering::Release);
        }
        written.map(Some)
    }

    fn write_file(&self) -> Result<FileStamp, ExecError> {
        let bytes = {
            let entries = self.read();
            let dirs = self.dirs.read().unwrap_or_else(|p| p.into_inner());
            let oldest = self.today.saturating_sub(MAX_AGE_DAYS);
            let files = kept(&entries, oldest, |_| 1);
            let dirs = kept(&dirs, oldest, |listing| 1 + listing.children.len());
            encode(&files, &dirs)
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        let temp = tempfile::NamedTempFile::new_in(dir).map_err(|source| io(dir, source))?;
        let mut out = BufWriter::new(temp);
        out.write_all(&bytes)
            .map_err(|source| io(&self.path, source))?;
        let temp = out
            .into_inner()
            .map_err(|e| io(&self.path, e.into_error()))?;
        temp.as_file()
            .sync_all()
            .map_err(|source| io(&self.path, source))?;
        let identity = temp
            .as_file()
            .metadata()
            .map(|m| FileStamp::new(&self.path, &m))
            .map_err(|source| io(&self.path, source))?;
        temp.persist(&self.path)
            .map_err(|e| io(&self.path, e.error))?;
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| io(dir, source))?;
        let old = dir.join(OLD_FILE_NAME);
        if let Err(err) = std::fs::remove_file(&old)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %old.display(), error = %err, "could not remove the old hash cache");
        }
        Ok(identity)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Files> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl ContentHashCache for HashCache {
    fn lookup(&self, stamp: &FileStamp) -> Option<[u8; 32]> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let entries = self.read();
        let entry = entries.get(&stamp.path).filter(|e| e.matches(stamp))?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.mark_seen(entry);
        Some(entry.value)
    }

    fn record(&self, stamp: FileStamp, blake3: [u8; 32]) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
        let entry = Entry::new(&stamp, blake3, self.today);
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stamp.path, entry);
        self.changed.store(true, Ordering::Relaxed);
    }

    fn lookup_dir(&self, stamp: &FileStamp) -> Option<Arc<DirListing>> {
        let dirs = self.dirs.read().unwrap_or_else(|p| p.into_inner());
        let entry = dirs.get(&stamp.path).filter(|e| e.matches(stamp))?;
        self.dirs_from_cache.fetch_add(1, Ordering::Relaxed);
        self.mark_seen(entry);
        Some(Arc::clone(&entry.value))
    }

    fn record_dir(&self, stamp: FileStamp, listing: DirListing) {
        let entry = Entry::new(&stamp, Arc::new(listing), self.today);
        self.dirs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stamp.path, entry);
        self.changed.store(true, Ordering::Relaxed);
    }
}

impl HashCache {
    /// Notes that `entry` was used today; the file is then written back at the end.
    fn mark_seen<T>(&self, entry: &Entry<T>) {
        if entry.seen.swap(self.today, Ordering::Relaxed) != self.today {
            self.changed.store(true, Ordering::Relaxed);
        }
    }
}

/// The entries to write, sorted by path: those used within [`MAX_AGE_DAYS`] (days since
/// `oldest`) with paths that fit a u16 length, the most recently used first while their
/// `weight`s sum to at most [`MAX_ENTRIES`].
fn kept<T>(
    entries: &HashMap<PathBuf, Entry<T>>,
    oldest: u32,
    weight: impl Fn(&T) -> usize,
) -> Vec<(&PathBuf, &Entry<T>)> {
    let mut kept: Vec<(&PathBuf, &Entry<T>)> = entries
        .iter()
        .filter(|(path, e)| {
            e.seen.load(Ordering::Relaxed) >= oldest
                && path.as_os_str().len() <= usize::from(u16::MAX)
        })
        .collect();
    let total: usize = kept.iter().map(|(_, e)| weight(&e.value)).sum();
    if total > MAX_ENTRIES {
        kept.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.seen.load(Ordering::Relaxed)));
        let mut sum = 0;
        kept.retain(|(_, e)| {
            sum += weight(&e.value);
            sum <= MAX_ENTRIES
        });
    }
    kept.sort_unstable_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    kept
}

/// A build's cache: loaded on first use, saved when the build ends.
#[derive(Debug)]
pub(crate) struct LazyHashCache<'a> {
    work_dir: PathBuf,
    kept: &'a KeptHashCache,
    cache: OnceLock<(Arc<HashCache>, HashCacheStats)>,
}

impl<'a> LazyHashCache<'a> {
    pub(crate) fn new(work_dir: &Path, kept: &'a KeptHashCache) -> Self {
        LazyHashCache {
            work_dir: work_dir.to_path_buf(),
            kept,
            cache: OnceLock::new(),
        }
    }

    /// The cache, loaded now if this is the first call (or taken from the executor's, if
    /// the file has not changed since).
    pub(crate) fn get(&self) -> &HashCache {
        &self
            .cache
            .get_or_init(|| {
                let cache = self.kept.take(&self.work_dir);
                let start = HashCacheStats {
                    loaded: cache.len() as u64,
                    ..cache.stats()
                };
                (cache, start)
            })
            .0
    }

    /// What this build did with it (zeros if it was never loaded).
    pub(crate) fn stats(&self) -> HashCacheStats {
        self.cache
            .get()
            .map(|(cache, start)| cache.stats().since(start))
            .unwrap_or_default()
    }

    /// Writes the cache back if it was loaded and changed; a failure is only a warning.
    pub(crate) fn finish(&self) {
        if let Some((cache, _)) = self.cache.get() {
            self.kept.save(cache);
        }
    }
}

/// What tells one cache file from another: another process's save renames a new file over
/// it (a new inode), and any write changes its size or mtime. The ctime is left out:
/// nothing here rewrites the file in place.
fn file_identity(stamp: &FileStamp) -> (u64, u64, u64, i64) {
    (stamp.inode, stamp.dev, stamp.size, stamp.mtime_ns)
}

/// The stamp of the file at `path` now, if there is one.
fn stamp_at(path: &Path) -> Option<FileStamp> {
    std::fs::metadata(path)
        .ok()
        .map(|m| FileStamp::new(path, &m))
}

/// The executor's hash cache between builds: a build in the same process takes it instead
/// of reading and decoding the file again (a tenth of an all-hit rebuild in process), as
/// long as the file is the one it read or wrote last and the day has not changed (entries
/// are marked with the day they were used). Only a cache of a cache: entries are checked
/// against their files' stamps either way.
#[derive(Debug, Default)]
pub(crate) struct KeptHashCache {
    slot: std::sync::Mutex<Option<(Arc<HashCache>, Option<FileStamp>)>>,
}

impl KeptHashCache {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(Arc<HashCache>, Option<FileStamp>)>> {
        self.slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The kept cache if it is still current, else the file's contents (kept from now on).
    fn take(&self, work_dir: &Path) -> Arc<HashCache> {
        let mut slot = self.slot();
        if let Some((cache, identity)) = slot.as_ref()
            && cache.today == today()
            && stamp_at(&cache.path).as_ref().map(file_identity)
                == identity.as_ref().map(file_identity)
        {
            return Arc::clone(cache);
        }
        let (cache, identity) = HashCache::open_stamped(work_dir);
        let cache = Arc::new(cache);
        *slot = Some((Arc::clone(&cache), identity));
        cache
    }

    /// Saves `cache` if it changed, and notes the file it wrote; a failure is only a
    /// warning, and the next build reads the file again. A cache grown past what a save
    /// keeps ([`MAX_ENTRIES`]) is dropped too, so memory stays bounded by the file's bound.
    fn save(&self, cache: &Arc<HashCache>) {
        // Held across the write (fsyncs included): builds of this process finishing at
        // once write in turn, and a build starting meanwhile waits to take the cache.
        let mut slot = self.slot();
        let saved = cache.save_identified();
        let kept = slot
            .as_ref()
            .is_some_and(|(kept, _)| Arc::ptr_eq(kept, cache));
        match saved {
            Ok(written) if kept && cache.len() <= MAX_ENTRIES => {
                if let (Some(identity), Some((_, noted))) = (written, slot.as_mut()) {
                    *noted = Some(identity);
                }
            }
            Ok(_) => {
                if kept {
                    *slot = None;
                }
            }
            Err(err) => {
                *slot = None;
                tracing::warn!(error = %err, "could not write the hash cache; the next build re-reads its inputs");
            }
        }
    }
}

fn today() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs / 86_400).unwrap_or(u32::MAX)
}

fn encode(
    files: &[(&PathBuf, &Entry<[u8; 32]>)],
    dirs: &[(&PathBuf, &Entry<Arc<DirListing>>)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(56 + files.len() * 120 + dirs.len() * 200);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(files.len() as u64).to_le_bytes());
    encode_section(&mut out, files, |out, hash| out.extend_from_slice(hash));
    out.extend_from_slice(&(dirs.len() as u64).to_le_bytes());
    encode_section(&mut out, dirs, |out, listing| {
        // Names and targets longer than u16::MAX cannot exist on Linux (255 and 4096).
        out.extend_from_slice(&(listing.children.len() as u32).to_le_bytes());
        for child in &listing.children {
            out.extend_from_slice(&(child.name.len() as u16).to_le_bytes());
            out.extend_from_slice(child.name.as_bytes());
            match &child.kind {
                ListedKind::Other => out.push(0),
                ListedKind::Symlink { target, mode } => {
                    out.push(1);
                    out.extend_from_slice(&mode.to_le_bytes());
                    out.extend_from_slice(&(target.len() as u16).to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
        }
    });
    let checksum = blake3::hash(&out);
    out.extend_from_slice(checksum.as_bytes());
    out
}

/// Writes entries sorted by path, each path sharing a prefix with the one before it, then
/// the stamp, the last-used day and what `value` writes.
fn encode_section<T>(
    out: &mut Vec<u8>,
    entries: &[(&PathBuf, &Entry<T>)],
    value: impl Fn(&mut Vec<u8>, &T),
) {
    let mut previous: &[u8] = &[];
    for (path, e) in entries {
        let path = path.as_os_str().as_bytes();
        let shared = path
            .iter()
            .zip(previous)
            .take_while(|(a, b)| a == b)
            .count();
        // Both fit: paths longer than u16::MAX were left out.
        out.extend_from_slice(&(shared as u16).to_le_bytes());
        out.extend_from_slice(&((path.len() - shared) as u16).to_le_bytes());
        out.extend_from_slice(&path[shared..]);
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&e.mtime_ns.to_le_bytes());
        out.extend_from_slice(&e.ctime_ns.to_le_bytes());
        out.extend_from_slice(&e.inode.to_le_bytes());
        out.extend_from_slice(&e.dev.to_le_bytes());
        out.extend_from_slice(&e.seen.load(Ordering::Relaxed).to_le_bytes());
        value(out, &e.value);
        previous = path;
    }
}

/// Reads fixed-size pieces off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
}

fn decode(bytes: &[u8]) -> Result<(Files, Dirs), &'static str> {
    if bytes.len() < MAGIC.len() + 16 + 32 {
        return Err("too short");
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 32);
    if blake3::hash(body).as_bytes() != checksum {
        return Err("checksum mismatch");
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a hash cache (bad magic)");
    }
    // A file entry takes at least 80 bytes, a directory entry 52.
    let files = decode_section(&mut r, 80, |r| r.array())?;
    let dirs = decode_section(&mut r, 52, |r| {
        let count = u32::from_le_bytes(r.array()?);
        // Each child takes at least 3 bytes.
        if count as usize > r.0.len() / 3 {
            return Err("child count larger than the file");
        }
        let mut children = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = usize::from(u16::from_le_bytes(r.array()?));
            let name = std::str::from_utf8(r.take(len)?).map_err(|_| "child name not UTF-8")?;
            let kind = match r.array::<1>()?[0] {
                0 => ListedKind::Other,
                1 => {
                    let mode = u32::from_le_bytes(r.array()?);
                    let len = usize::from(u16::from_le_bytes(r.array()?));
                    ListedKind::Symlink {
                        target: r.take(len)?.to_vec(),
                        mode,
                    }
                }
                _ => return Err("unknown child kind"),
            };
            children.push(ListedChild {
                name: name.to_string(),
                kind,
            });
        }
        Ok(Arc::new(DirListing { children }))
    })?;
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok((files, dirs))
}

/// Reads a u64 count, then that many entries as [`encode_section`] wrote them, each at
/// least `min_size` bytes, their values read by `value`.
fn decode_section<T>(
    r: &mut Reader<'_>,
    min_size: usize,
    value: impl Fn(&mut Reader<'_>) -> Result<T, &'static str>,
) -> Result<HashMap<PathBuf, Entry<T>>, &'static str> {
    let count = u64::from_le_bytes(r.array()?);
    if count > (r.0.len() / min_size) as u64 {
        return Err("entry count larger than the file");
    }
    let mut entries = HashMap::with_capacity(count as usize);
    let mut path: Vec<u8> = Vec::new();
    for _ in 0..count {
        let shared = usize::from(u16::from_le_bytes(r.array()?));
        let suffix = usize::from(u16::from_le_bytes(r.array()?));
        if shared > path.len() {
            return Err("path prefix longer than the previous path");
        }
        path.truncate(shared);
        path.extend_from_slice(r.take(suffix)?);
        let size = u64::from_le_bytes(r.array()?);
        let mtime_ns = i64::from_le_bytes(r.array()?);
        let ctime_ns = i64::from_le_bytes(r.array()?);
        let inode = u64::from_le_bytes(r.array()?);
        let dev = u64::from_le_bytes(r.array()?);
        let seen = AtomicU32::new(u32::from_le_bytes(r.array()?));
        let entry = Entry {
            size,
            mtime_ns,
            ctime_ns,
            inode,
            dev,
            seen,
            value: value(r)?,
        };
        entries.insert(PathBuf::from(OsStr::from_bytes(&path)), entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
