//! The unpacked-layer cache under a size budget: a blob-backed layer's directory is only a
//! copy of its stored blob, so `lamina cache gc --max-size` may drop the least recently used
//! ones (the next RUN on them unpacks them again); a tree-backed layer's directory is the
//! layer itself and is never evicted. Use is marked on the layer's lock file
//! (`<hex>.lock`, its mtime), which every unpack and adoption creates.

use std::fs;
use std::time::{Duration, SystemTime};

use super::fsutil::io_err;
use super::layers::{LayerCache, PruneReport};
use crate::ExecError;

impl LayerCache {
    /// Marks the layer `hex` as used now (best effort: a failure only makes it look older).
    pub(crate) fn mark_used(&self, hex: &str) {
        let lock = self.root.join(format!("{hex}.lock"));
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        let times = rustix::fs::Timestamps {
            last_access: now,
            last_modification: now,
        };
        if rustix::fs::utimensat(rustix::fs::CWD, &lock, &times, rustix::fs::AtFlags::empty())
            .is_err()
        {
            let _ = fs::File::create(&lock);
        }
    }

    /// Removes unpacked layers, least recently used first, until the rest holds at most
    /// `budget` bytes; none used within `min_age`, none a build uses now, and none for which
    /// `pinned(hex)` is true (a tree-backed layer's tree is the layer's only copy). Returns
    /// what went and the bytes left.
    pub fn evict_to_budget(
        &self,
        budget: u64,
        min_age: Duration,
        pinned: impl Fn(&str) -> bool,
    ) -> Result<(PruneReport, u64), ExecError> {
        let mut layers = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(io_err(&self.root))? {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_layer = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_layer || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let used = fs::metadata(self.root.join(format!("{name}.lock")))
                .or_else(|_| entry.metadata())
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let path = entry.path();
            let bytes = crate::usage::bytes_of(&path);
            layers.push((used, name, bytes));
        }
        layers.sort();
        let mut total: u64 = layers.iter().map(|l| l.2).sum();
        let now = SystemTime::now();
        let mut report = PruneReport::default();
        for (used, name, bytes) in layers {
            if total <= budget {
                break;
            }
            if now.duration_since(used).unwrap_or_default() < min_age || pinned(&name) {
                continue;
            }
            // A layer a build uses (in any process) stays, and counts as kept.
            if let Some(removed) = self.remove_dir(&name)? {
                report.bytes += removed;
                report.removed += 1;
                total -= bytes;
            }
        }
        Ok((report, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_until_the_rest_fits() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(dir.path()).unwrap();
        let hex = |c: char| c.to_string().repeat(64);
        for (c, size) in [('a', 100), ('b', 100), ('c', 100)] {
            fs::create_dir_all(cache.root.join(hex(c))).unwrap();
            fs::write(cache.root.join(hex(c)).join("f"), vec![0u8; size]).unwrap();
            fs::write(cache.root.join(format!("{}.lock", hex(c))), "").unwrap();
        }
        // Used order: b long ago, a then, c now.
        let ago = |secs: u64| SystemTime::now() - Duration::from_secs(secs);
        for (c, when) in [('b', ago(3000)), ('a', ago(2000)), ('c', ago(1000))] {
            let lock = fs::File::options()
                .write(true)
                .open(cache.root.join(format!("{}.lock", hex(c))))
                .unwrap();
            lock.set_modified(when).unwrap();
        }
        // `a` is used again now: b and c are the least recently used.
        cache.mark_used(&hex('a'));
        let (report, kept) = cache
            .evict_to_budget(150, Duration::from_secs(60), |_| false)
            .unwrap();
        assert_eq!(
            report,
            PruneReport {
                removed: 2,
                bytes: 200
            }
        );
        assert_eq!(kept, 100);
        assert!(!cache.root.join(hex('b')).exists() && !cache.root.join(hex('c')).exists());
        assert!(!cache.root.join(format!("{}.lock", hex('b'))).exists());
        // Over budget, but used within min_age: kept.
        let (report, _) = cache
            .evict_to_budget(0, Duration::from_secs(60), |_| false)
            .unwrap();
        assert_eq!(report.removed, 0);
        assert_eq!(
            cache
                .evict_to_budget(0, Duration::ZERO, |_| false)
                .unwrap()
                .0
                .removed,
            1
        );
    }

    #[test]
    fn a_layer_in_use_by_a_build_in_any_process_stays() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::new(dir.path()).unwrap();
        let hex = "d".repeat(64);
        fs::create_dir_all(cache.root.join(&hex)).unwrap();
        fs::write(cache.root.join(&hex).join("f"), [1u8; 10]).unwrap();
        // A build's use: a shared lock on the layer's lock file through its own open file
        // description, as another process holds it.
        let lock_path = cache.root.join(format!("{hex}.lock"));
        let user = super::super::fsutil::lock_file(
            &lock_path,
            rustix::fs::FlockOperation::NonBlockingLockShared,
        )
        .unwrap();
        let (report, kept) = cache.evict_to_budget(0, Duration::ZERO, |_| false).unwrap();
        assert_eq!(report.removed, 0);
        assert_eq!(kept, 10);
        assert!(cache.root.join(&hex).join("f").exists());
        drop(user);
        let (report, kept) = cache.evict_to_budget(0, Duration::ZERO, |_| false).unwrap();
        assert_eq!((report.removed, kept), (1, 0));
        assert!(!cache.root.join(&hex).exists());
        // Nothing left under a temporary name either.
        assert_eq!(fs::read_dir(&cache.root).unwrap().count(), 1, "only .tmp");
        assert_eq!(fs::read_dir(cache.root.join(".tmp")).unwrap().count(), 0);
    }
}
