//! Garbage collection of the kept bare repositories (`<work_dir>/git-cache-v1`): one unused
//! (no checkout from it) for longer than the store's TTL goes, as BuildKit drops unused git
//! checkouts. A step that hits its cache needs no repository; a later miss fetches again.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::ExecError;

use super::super::layers::{KeyLock, io};

/// What [`prune_git_cache`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GitCachePruned {
    /// Repositories removed.
    pub removed: usize,
    /// Bytes they held.
    pub bytes: u64,
}

/// The stamp whose mtime is the last checkout from the repository `name`.
pub(super) fn used_stamp(cache: &Path, name: &str) -> std::path::PathBuf {
    cache.join(format!("{name}.used"))
}

/// The lock of the repository `name`, held while it is fetched, checked out or removed.
pub(super) fn lock_key(name: &str) -> [u8; 32] {
    *blake3::hash(format!("git-cache-v1\0{name}").as_bytes()).as_bytes()
}

/// Removes the kept repositories of `work_dir` unused for longer than `ttl` (never one
/// used within `min_age`). Call it while holding the store (no build runs then).
pub fn prune_git_cache(
    work_dir: &Path,
    ttl: Duration,
    min_age: Duration,
) -> Result<GitCachePruned, ExecError> {
    let cache = work_dir.join("git-cache-v1");
    let mut report = GitCachePruned::default();
    let Ok(entries) = std::fs::read_dir(&cache) else {
        return Ok(report);
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || name.contains('.') {
            continue;
        }
        let used = std::fs::metadata(used_stamp(&cache, &name))
            .and_then(|m| m.modified())
            .or_else(|_| entry.metadata().and_then(|m| m.modified()))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let age = now.duration_since(used).unwrap_or_default();
        if age < min_age || age <= ttl {
            continue;
        }
        let _lock = KeyLock::acquire(work_dir, &lock_key(&name))?;
        let dir = entry.path();
        let bytes = crate::usage::bytes_of(&dir);
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let _ = std::fs::remove_file(used_stamp(&cache, &name));
        report.removed += 1;
        report.bytes += bytes;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_unused_past_the_ttl_go() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("git-cache-v1");
        let day = Duration::from_secs(86_400);
        for (name, days_ago) in [("old", 10), ("fresh", 0)] {
            std::fs::create_dir_all(cache.join(name).join("objects")).unwrap();
            std::fs::write(cache.join(name).join("objects/pack"), vec![0u8; 100]).unwrap();
            let stamp = std::fs::File::create(used_stamp(&cache, name)).unwrap();
            stamp
                .set_modified(SystemTime::now() - day * days_ago)
                .unwrap();
        }
        let pruned = prune_git_cache(work.path(), 2 * day, Duration::ZERO).unwrap();
        assert_eq!(
            pruned,
            GitCachePruned {
                removed: 1,
                bytes: 100
            }
        );
        assert!(!cache.join("old").exists() && !used_stamp(&cache, "old").exists());
        assert!(cache.join("fresh").exists());
        // Within the minimum age nothing goes, whatever the TTL.
        let pruned = prune_git_cache(work.path(), Duration::ZERO, day).unwrap();
        assert_eq!(pruned.removed, 0);
    }
}
