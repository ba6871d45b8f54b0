//! Skipping content reads for unchanged files: a [`ContentHashCache`] maps a file's
//! [`FileStamp`] (path, size, mtime, ctime, inode, device) to the blake3 of its content.
//!
//! The cache only ever replaces reading a file: a hit yields the hash recorded for exactly
//! that stamp, so digests and cache keys are the same with or without it. What this module
//! decides (and the cache implementation does not) is *when* a hash may be recorded, with
//! git's racy-stat rule:
//! - a file whose mtime or ctime is within [`RACY_WINDOW`] of now is not recorded: it may be
//!   written again within the same timestamp tick, leaving a stamp that matches stale
//!   content;
//! - a file whose stamp changed while it was hashed (`lstat` before and after) is not
//!   recorded: the bytes read may be a mix of two versions.
//!
//! The ctime is part of the stamp because `touch -d` and archive extraction can set an
//! old mtime on new content, but nothing short of changing the clock sets a ctime.
//!
//! A cache may also remember what a directory held ([`DirListing`]), under the directory's
//! own stamp, with the same two rules. Every change to a directory's entries (create,
//! unlink, rename, link) sets its mtime and ctime, so an unchanged stamp means the same
//! names bound to the same inodes. A symlink's target cannot change without a new inode, so
//! the listing keeps the targets and a walk skips `readdir` and the symlinks' `lstat` and
//! `readlink`; files and subdirectories are still `lstat`ed, since their content and
//! modes change without touching the directory.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How close to now a file's mtime or ctime may be for its hash to be recorded (see the
/// module docs).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Absolute path, with every symlink resolved.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time in nanoseconds since the Unix epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number of the file system holding the file.
    pub dev: u64,
}

impl FileStamp {
    /// The stamp of the file at `path` as `meta` (from `lstat` or `stat`) describes it.
    pub fn new(path: impl Into<PathBuf>, meta: &Metadata) -> Self {
        FileStamp {
            path: path.into(),
            size: meta.size(),
            mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// Whether the file may change again within its timestamp tick: its mtime or ctime is
    /// less than `window` before `now` (or after it: a clock set back).
    pub fn is_racy(&self, now: SystemTime, window: Duration) -> bool {
        let now_ns = match now.duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_nanos()).unwrap_or(i64::MAX),
            Err(_) => return true,
        };
        let window_ns = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
        let limit = now_ns.saturating_sub(window_ns);
        self.mtime_ns > limit || self.ctime_ns > limit
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// A store of content hashes by [`FileStamp`], consulted before a file is read.
///
/// Called from several threads at once. A miss is `None`, never an error: a cache that
/// cannot answer just costs a read.
pub trait ContentHashCache: Sync {
    /// The blake3 recorded for exactly this stamp (every field equal), if any.
    fn lookup(&self, stamp: &FileStamp) -> Option<[u8; 32]>;

    /// Records the blake3 of the content the file had under `stamp`. Only called for files
    /// that passed the racy-stat rule.
    fn record(&self, stamp: FileStamp, blake3: [u8; 32]);

    /// How close to now an mtime or ctime makes a file racy; [`RACY_WINDOW`] unless the
    /// cache knows better (tests use zero).
    fn racy_window(&self) -> Duration {
        RACY_WINDOW
    }

    /// What the directory held under exactly this stamp (every field equal), if recorded.
    /// The default remembers no directory.
    fn lookup_dir(&self, stamp: &FileStamp) -> Option<Arc<DirListing>> {
        let _ = stamp;
        None
    }

    /// Records what the directory held under `stamp`. Only called for directories that
    /// passed the racy-stat rule and whose stamp did not change while they were listed.
    fn record_dir(&self, stamp: FileStamp, listing: DirListing) {
        let _ = (stamp, listing);
    }
}

/// A directory's children as a walk saw them, sorted byte-wise by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirListing {
    /// Every child, ignored ones included (the rules may differ on the next walk).
    pub children: Vec<ListedChild>,
}

/// One child of a [`DirListing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedChild {
    /// The child's name (UTF-8: other names are refused by the walk).
    pub name: String,
    /// What is known of it without a system call.
    pub kind: ListedKind,
}

/// What a listing knows of a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedKind {
    /// A symlink: its target and mode never change while the directory's stamp holds.
    Symlink {
        /// The target, as `readlink` returned it.
        target: Vec<u8>,
        /// Permission bits as `lstat` reported them.
        mode: u32,
    },
    /// A file or directory: `lstat`ed on every walk.
    Other,
}

/// Hashing with an optional cache: the part of a walk that decides between a lookup, a read
/// and a record.
#[derive(Clone, Copy)]
pub(super) struct Hashing<'a> {
    pub cache: Option<&'a dyn ContentHashCache>,
}

impl Hashing<'_> {
    /// No cache: every file is read.
    pub(super) const NONE: Hashing<'static> = Hashing { cache: None };

    /// The recorded listing of directory `dir` whose metadata is `meta`, if the cache holds
    /// one for exactly that stamp.
    pub(super) fn listing(&self, dir: &Path, meta: &Metadata) -> Option<Arc<DirListing>> {
        self.cache?.lookup_dir(&FileStamp::new(dir, meta))
    }

    /// Whether walks record listings (only with a cache).
    pub(super) fn records_listings(&self) -> bool {
        self.cache.is_some()
    }

    /// Records `listing` for `dir`, whose metadata was `before` when it was listed at
    /// `listed_at` (taken before `readdir`), if it was not racy then and its stamp is the
    /// same now (the racy-stat rule, as for files). The time is the listing's, not the end
    /// of the walk below it: a walk longer than the window would otherwise let a change made
    /// within the stamp's tick, just after `readdir`, pass for an old one.
    pub(super) fn record_listing(
        &self,
        dir: &Path,
        before: &Metadata,
        listed_at: SystemTime,
        listing: DirListing,
    ) {
        let Some(cache) = self.cache else {
            return;
        };
        let before = FileStamp::new(dir, before);
        if before.is_racy(listed_at, cache.racy_window()) {
            return;
        }
        let unchanged =
            std::fs::symlink_metadata(dir).is_ok_and(|after| FileStamp::new(dir, &after) == before);
        if unchanged {
            cache.record_dir(before, listing);
        }
    }

    /// The hash and size of the file at `path`, from the cache when its stamp is known
    /// there. `meta` is the file's metadata if the caller has it (else it is read here when
    /// a cache is in use); `hash` reads the file and returns (bytes hashed, blake3).
    pub(super) fn hash(
        &self,
        path: &Path,
        meta: Option<&Metadata>,
        hash: impl FnOnce() -> crate::Result<(u64, [u8; 32])>,
    ) -> crate::Result<(u64, [u8; 32])> {
        let Some(cache) = self.cache else {
            return hash();
        };
        let before = match meta {
            Some(meta) => FileStamp::new(path, meta),
            None => match std::fs::symlink_metadata(path) {
                Ok(meta) => FileStamp::new(path, &meta),
                // Let the read report the problem as it always has.
                Err(_) => return hash(),
            },
        };
        if let Some(digest) = cache.lookup(&before) {
            return Ok((before.size, digest));
        }
        // Racy by the time the read starts (see `record_listing`).
        let read_at = SystemTime::now();
        let (size, digest) = hash()?;
        if size == before.size && !before.is_racy(read_at, cache.racy_window()) {
            let unchanged = std::fs::symlink_metadata(path)
                .is_ok_and(|after| FileStamp::new(path, &after) == before);
            if unchanged {
                cache.record(before, digest);
            }
        }
        Ok((size, digest))
    }
}

#[cfg(test)]
mod tests;
