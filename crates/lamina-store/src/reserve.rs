//! A few megabytes kept in `<root>/RESERVE` so that a full disk never locks the store: every
//! read-write open of RocksDB writes files (OPTIONS, MANIFEST, a new WAL), so with no space
//! left even `cache gc` and `image rm`, the commands that would free space, could not open
//! it. When an open fails for want of space, the reserve is given up and the open retried;
//! the next open with room to spare makes it again.

use std::fs;
use std::io::Write;

use crate::StoreError;
use crate::fsutil::{Layout, persist};

/// Size of the reserve: far more than an open and a GC's index writes need.
pub(crate) const RESERVE_BYTES: u64 = 8 << 20;

/// Whether `error` came from a full disk (or quota).
pub(crate) fn is_out_of_space(error: &StoreError) -> bool {
    let text = error.to_string();
    text.contains("No space left on device")
        || text.contains("Disk quota exceeded")
        || text.contains("os error 28")
}

/// Gives the reserve up; `true` if there was one.
pub(crate) fn release(layout: &Layout) -> bool {
    fs::remove_file(&layout.reserve).is_ok()
}

/// Bytes free for unprivileged writes on the store's file system, if known.
fn free_bytes(layout: &Layout) -> Option<u64> {
    let stat = rustix::fs::statvfs(&layout.root).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Gives the reserve up when the disk is nearly full, before a read-write open writes to
/// the index: an open no longer fails for want of space (it writes no table file), but the
/// writes after it would, so the commands that free space need the room at once.
pub(crate) fn release_if_nearly_full(layout: &Layout) {
    if free_bytes(layout).is_some_and(|free| free < 2 * RESERVE_BYTES) {
        release(layout);
    }
}

/// Makes the reserve if it is missing and the disk has room for it with plenty to spare
/// (best effort: a store without a reserve works, it only loses this protection until
/// space is freed).
pub(crate) fn ensure(layout: &Layout) {
    if fs::metadata(&layout.reserve).is_ok_and(|m| m.len() >= RESERVE_BYTES) {
        return;
    }
    if free_bytes(layout).is_some_and(|free| free < 4 * RESERVE_BYTES) {
        return;
    }
    let Ok((mut file, tmp)) = layout.create_temp() else {
        return;
    };
    // Written zeros, real blocks: a sparse file would free nothing when removed.
    let zeros = vec![0u8; 1 << 20];
    let written = (0..RESERVE_BYTES / zeros.len() as u64).try_for_each(|_| file.write_all(&zeros));
    if written.is_err() || persist(file, &tmp, &layout.reserve).is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_keeps_a_reserve_of_real_blocks() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path(), Default::default()).unwrap();
        let meta = fs::metadata(dir.path().join("RESERVE")).unwrap();
        assert_eq!(meta.len(), RESERVE_BYTES);
        assert!(
            meta.blocks() * 512 >= RESERVE_BYTES,
            "allocated, not sparse"
        );
        drop(store);
        assert!(is_out_of_space(&StoreError::Io {
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(28),
        }));
    }
}
