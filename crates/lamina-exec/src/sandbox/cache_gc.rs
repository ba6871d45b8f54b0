//! Collecting `RUN --mount=type=cache` directories (`work_dir/cache-mounts/<name>/`), as
//! BuildKit prunes its cache mounts: each run stamps `<name>.used`; [`prune_cache_mounts`]
//! removes the ones unused for longer than the TTL, then the least recently used until they
//! fit the space the store's budget leaves. Nothing used within `min_age` is removed.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::fsutil::{io_err, try_lock_named};
use crate::ExecError;

/// What [`prune_cache_mounts`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheMountsPruned {
    /// Cache directories removed.
    pub removed: u64,
    /// Bytes of the files in them.
    pub bytes: u64,
}

/// Records that cache `name` below `root` is used now.
pub(crate) fn mark_used(root: &Path, name: &str) -> Result<(), ExecError> {
    let stamp = root.join(format!("{name}.used"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&stamp)
        .map_err(io_err(&stamp))?;
    file.set_modified(SystemTime::now()).map_err(io_err(&stamp))
}

/// Removes the cache mounts of `work_dir` unused for longer than `ttl`, then, least recently
/// used first, while their bytes exceed `budget` (when given); never one used within
/// `min_age` or held by a run in any process (every sharing mode holds its cache's lock).
pub fn prune_cache_mounts(
    work_dir: &Path,
    ttl: Duration,
    min_age: Duration,
    budget: Option<u64>,
) -> Result<CacheMountsPruned, ExecError> {
    let root = work_dir.join("cache-mounts");
    let mut report = CacheMountsPruned::default();
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(report);
    };
    let now = SystemTime::now();
    // (last use, name, bytes)
    let mut caches = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&root))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if name.starts_with('.') {
            // `.<name>.tmp-<owner token>-<n>`: a cache being created by a process that died.
            let token = name
                .rsplit_once(".tmp-")
                .and_then(|(_, rest)| rest.split('-').next());
            if token.is_some_and(|token| !crate::owner::alive(work_dir, token)) {
                let path = entry.path();
                // Another process may be removing it too.
                if let Err(e) = fs::remove_dir_all(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(io_err(&path)(e));
                }
            }
            continue;
        }
        let used = fs::metadata(root.join(format!("{name}.used")))
            .and_then(|m| m.modified())
            .or_else(|_| entry.metadata().and_then(|m| m.modified()))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let bytes = crate::usage::bytes_of(&entry.path());
        caches.push((used, name, bytes));
    }
    caches.sort();
    let mut total: u64 = caches.iter().map(|c| c.2).sum();
    for (used, name, bytes) in caches {
        let age = now.duration_since(used).unwrap_or_default();
        let over_budget = budget.is_some_and(|b| total > b);
        if age < min_age || !(age > ttl || over_budget) {
            continue;
        }
        // A run holding it (shared, locked or private sharing) keeps it.
        let Some(_lock) = try_lock_named(&root.join(format!("{name}.lock")))? else {
            continue;
        };
        // Used since it was listed (its run then waited for this lock): keep it.
        let used_now = fs::metadata(root.join(format!("{name}.used")))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > used);
        if used_now {
            continue;
        }
        let dir = root.join(&name);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        for suffix in ["used", "lock"] {
            let _ = fs::remove_file(root.join(format!("{name}.{suffix}")));
        }
        total -= bytes;
        report.removed += 1;
        report.bytes += bytes;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(root: &Path, name: &str, bytes: usize, used_secs_ago: u64) {
        fs::create_dir_all(root.join(name)).unwrap();
        fs::write(root.join(name).join("f"), vec![0u8; bytes]).unwrap();
        mark_used(root, name).unwrap();
        let when = SystemTime::now() - Duration::from_secs(used_secs_ago);
        let stamp = fs::File::options()
            .write(true)
            .open(root.join(format!("{name}.used")))
            .unwrap();
        stamp.set_modified(when).unwrap();
    }

    #[test]
    fn old_caches_go_then_the_least_recently_used_until_the_budget_fits() {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("cache-mounts");
        cache(&root, "stale", 10, 3 * 86400);
        cache(&root, "old", 100, 3600);
        cache(&root, "newer", 100, 1800);
        cache(&root, "fresh", 100, 10);
        let day = Duration::from_secs(86400);
        let minute = Duration::from_secs(60);
        // TTL alone: only the stale one.
        let report = prune_cache_mounts(work.path(), day, minute, None).unwrap();
        assert_eq!((report.removed, report.bytes), (1, 10));
        assert!(!root.join("stale").exists() && !root.join("stale.used").exists());
        // A budget of 150 bytes: the oldest go first; the fresh one is too young to go.
        let report = prune_cache_mounts(work.path(), day, minute, Some(150)).unwrap();
        assert_eq!(report.removed, 2);
        assert!(!root.join("old").exists() && !root.join("newer").exists());
        assert!(root.join("fresh").is_dir());
        // A half-made cache of a dead process goes; a locked cache is in use and stays.
        fs::create_dir_all(root.join(".half.tmp-2147483000-0")).unwrap();
        cache(&root, "busy", 10, 3 * 86400);
        let _lock = super::super::fsutil::try_lock_file(&root.join("busy.lock"))
            .unwrap()
            .unwrap();
        let report = prune_cache_mounts(work.path(), day, minute, None).unwrap();
        assert_eq!(report.removed, 0);
        assert!(!root.join(".half.tmp-2147483000-0").exists());
        assert!(root.join("busy").is_dir());
    }
}
