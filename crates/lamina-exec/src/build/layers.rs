//! Layers of a build: the layer writer's options, temporary directories, and the per-key
//! locks that make two builds run an identical step once.

use std::fs::File;
use std::path::{Path, PathBuf};

use lamina_layer::{LayerOptions, LayerWriter};
use lamina_store::Compression;

use super::key::{CacheKey, hex};
use crate::ExecError;

/// The layer writer options of a build: fixed mtime clamp, the configured compression.
pub(crate) fn writer(compression: Compression, epoch: u64) -> LayerWriter {
    LayerWriter::new(
        LayerOptions::default()
            .compression(compression)
            .mtime_clamp(Some(epoch)),
    )
}

/// Unpacks `layers` (bottom first) into the empty directory `target`, whiteouts applied, with
/// the unpacker's defaults (owners kept only as root): the merged filesystem they describe.
pub(crate) fn unpack_merged(
    store: &lamina_store::Store,
    layers: &[lamina_store::LayerRecord],
    target: &Path,
) -> Result<(), ExecError> {
    let unpacker = lamina_layer::Unpacker::default();
    for layer in layers {
        // The first variant stored here: a remote one has no bytes yet, and a tree-backed
        // layer's plain variant is reassembled from its tree.
        let mut tar = None;
        for variant in &layer.variants {
            if let Some((_, found)) =
                lamina_image::layer_tar::open_blob_or_tree(store, &variant.digest)?
            {
                tar = Some(found);
                break;
            }
        }
        let tar = tar.ok_or_else(|| ExecError::InvalidStoredConfig {
            digest: layer.digest.to_string(),
            reason: "the layer record lists no stored variant".into(),
        })?;
        unpacker.unpack(std::io::BufReader::with_capacity(1 << 20, tar), target)?;
    }
    Ok(())
}

/// A temporary directory under the build's work directory, removed on drop.
pub(crate) fn temp_dir(work_dir: &Path, prefix: &str) -> Result<tempfile::TempDir, ExecError> {
    let parent = work_dir.join("tmp");
    std::fs::create_dir_all(&parent).map_err(|source| io(&parent, source))?;
    // Named with this process's owner token, so another process can tell when it is stale.
    let prefix = format!("{prefix}{}.", crate::owner::claim(work_dir)?);
    tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .map_err(|source| io(&parent, source))
}

/// An exclusive lock on one cache key, across threads and processes (`flock` on
/// `work_dir/locks/<key>.lock`); released on drop. A holder that stored the step marks the
/// file ([`KeyLock::mark_stored`]), so the next holder knows the step may have been stored
/// since its own lookup.
#[derive(Debug)]
pub(crate) struct KeyLock {
    file: File,
}

impl KeyLock {
    /// Waits for the lock of `key`.
    pub fn acquire(work_dir: &Path, key: &CacheKey) -> Result<KeyLock, ExecError> {
        let path = lock_path(work_dir, key)?;
        // Each acquisition opens its own file description, so flock also excludes other
        // threads of this process; the lock is checked to be on the file the path names,
        // since `prune_step_locks` unlinks unused lock files.
        let file =
            crate::sandbox::fsutil::lock_named(&path, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(KeyLock { file })
    }

    /// The lock of `key` if nobody holds it now.
    pub fn try_acquire(work_dir: &Path, key: &CacheKey) -> Result<Option<KeyLock>, ExecError> {
        let path = lock_path(work_dir, key)?;
        Ok(crate::sandbox::fsutil::try_lock_named(&path)?.map(|file| KeyLock { file }))
    }

    /// Whether a holder before this one stored the step (see [`KeyLock::mark_stored`]).
    pub fn stored_before(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() > 0)
    }

    /// Marks the step as stored, for the holders after this one. Best effort: an unmarked
    /// file only means that a build whose lookup came before this store runs the step too.
    pub fn mark_stored(&self) {
        use std::os::unix::fs::FileExt;
        // Written every time: the time of the last store is what keeps it from a prune.
        let _ = self.file.write_at(b"1", 0);
    }
}

fn lock_path(work_dir: &Path, key: &CacheKey) -> Result<PathBuf, ExecError> {
    let dir = work_dir.join(LOCKS);
    std::fs::create_dir_all(&dir).map_err(|source| io(&dir, source))?;
    Ok(dir.join(format!("{}.lock", hex(key))))
}

const LOCKS: &str = "locks";

/// Removes the step-lock files no process holds (one is made per missed cache key, so they
/// pile up: 70,000 after 10,000 builds), but for those marked stored in the last hour;
/// returns how many went. Each is unlinked while held, so a process that opened it before
/// sees it is not the file the path names and opens the new one.
pub fn prune_step_locks(work_dir: &Path) -> Result<u64, ExecError> {
    let dir = work_dir.join(LOCKS);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(|e| io(&dir, e))?.path();
        if path.extension().is_none_or(|x| x != "lock") {
            continue;
        }
        if let Some(held) = crate::sandbox::fsutil::try_lock_named(&path)?
            && !recently_marked(&held)
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// How long a step lock marked as stored is kept: a build whose lookup came before the store
/// and that takes the lock after it must find the mark (a new file has none), and that is
/// seconds; an hour is ample.
const MARK_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

fn recently_marked(lock: &File) -> bool {
    lock.metadata().is_ok_and(|m| {
        m.len() > 0
            && m.modified()
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < MARK_KEPT))
    })
}

pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ExecError {
    ExecError::Io {
        path: path.into(),
        source,
    }
}

/// An image by content, for keys: config sha256 and diff_ids (see [`super::key::image_identity`]).
pub(crate) fn image_identity(image: &lamina_image::StoredImage) -> String {
    let diff_ids: Vec<String> = image
        .layers
        .iter()
        .map(|l| l.record.diff_id.to_string())
        .collect();
    super::key::image_identity(image.manifest.config().digest().as_ref(), &diff_ids)
}

/// Whether some variant of `layer` is in the store.
pub(crate) fn has_stored_variant(
    store: &lamina_store::Store,
    layer: &lamina_store::LayerRecord,
) -> Result<bool, crate::ExecError> {
    Ok(stored_variant(store, layer)?.is_some())
}

/// The digest of the first variant of `layer` that is in the store.
pub(crate) fn stored_variant(
    store: &lamina_store::Store,
    layer: &lamina_store::LayerRecord,
) -> Result<Option<lamina_store::Digest>, crate::ExecError> {
    for variant in &layer.variants {
        if lamina_image::layer_tar::has_variant(store, layer, variant)? {
            return Ok(Some(variant.digest));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_lock_tells_the_next_holder_that_the_step_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let key = [3u8; 32];
        let first = KeyLock::try_acquire(dir.path(), &key).unwrap().unwrap();
        assert!(!first.stored_before());
        assert!(KeyLock::try_acquire(dir.path(), &key).unwrap().is_none());
        drop(first);
        // Released unmarked (a failed step): the next holder has nothing to look up again.
        let second = KeyLock::acquire(dir.path(), &key).unwrap();
        assert!(!second.stored_before());
        second.mark_stored();
        drop(second);
        let third = KeyLock::acquire(dir.path(), &key).unwrap();
        assert!(third.stored_before());
        third.mark_stored();
        assert_eq!(
            std::fs::read(dir.path().join(LOCKS).join(format!("{}.lock", hex(&key)))).unwrap(),
            b"1"
        );
    }
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn unheld_step_locks_are_pruned_and_a_held_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let held = KeyLock::acquire(dir.path(), &[1; 32]).unwrap();
        drop(KeyLock::acquire(dir.path(), &[2; 32]).unwrap());
        drop(KeyLock::acquire(dir.path(), &[3; 32]).unwrap());
        assert_eq!(prune_step_locks(dir.path()).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(dir.path().join(LOCKS)).unwrap().collect();
        assert_eq!(left.len(), 1, "the held one stays");
        drop(held);
        // Taken again after the prune: a new file, and the lock still excludes.
        let again = KeyLock::acquire(dir.path(), &[2; 32]).unwrap();
        assert_eq!(prune_step_locks(dir.path()).unwrap(), 1);
        drop(again);
    }

    #[test]
    fn a_step_lock_marked_stored_outlives_prunes_for_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let marked = KeyLock::acquire(dir.path(), &[4; 32]).unwrap();
        marked.mark_stored();
        drop(marked);
        assert_eq!(prune_step_locks(dir.path()).unwrap(), 0);
        assert!(
            KeyLock::acquire(dir.path(), &[4; 32])
                .unwrap()
                .stored_before()
        );
        let path = dir
            .path()
            .join(LOCKS)
            .join(format!("{}.lock", hex(&[4; 32])));
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        assert_eq!(prune_step_locks(dir.path()).unwrap(), 1);
        assert!(!path.exists());
    }

    #[test]
    fn a_key_lock_excludes_other_threads() {
        let dir = tempfile::tempdir().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (dir, inside, max) = (dir.path().to_path_buf(), inside.clone(), max.clone());
                std::thread::spawn(move || {
                    let _lock = KeyLock::acquire(&dir, &[7; 32]).unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }
}
