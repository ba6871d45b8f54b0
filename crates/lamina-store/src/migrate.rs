//! Moving a store of format v1 or v2 to format v3: the index of one column family per
//! kind of record (`index-v1/`) becomes one key space with tagged keys (`index-v2/`).
//!
//! Runs once, by the first open of the old store, with `LOCK` held. Every step can be cut
//! by a kill -9 without losing anything: the old index is only read (a read-only open
//! replays its WAL in memory) until the marker says v3, and the marker is written only
//! after the new index is complete, durable and in place.
//! 1. the new index is built in `index-v2.migrating/` (one left by a killed migration is
//!    removed first), flushed and merged into one sorted run;
//! 2. it is renamed to `index-v2/` (one there already is a killed migration's, since the
//!    marker still says v2: removed first);
//! 3. the marker is replaced by v3;
//! 4. `index-v1/` is replaced by a file of the same name saying where the index went, so
//!    that a lamina of format v2 still running (it checked the marker when it opened the
//!    store) fails to reopen it instead of creating an empty index there. A killed
//!    process's `index-v1/` is replaced by the next read-write open.

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options};

use crate::StoreError;
use crate::fsutil::{FORMAT_V3, Layout, Marker, remove_dir_if_exists, rename_dir};
use crate::index::{self, FAMILIES, Index, IndexBatch, add_i64};

/// Entries per write while copying: bounds the memory a large index takes to migrate.
const COPY_BATCH: usize = 4096;

/// What the file left at `index-v1` says.
const MOVED_NOTE: &str = "the index moved to index-v2 (store format v3)\n";

/// Migrates the store to format v3 if it is older. The caller holds `LOCK`.
pub(crate) fn migrate(layout: &Layout) -> Result<(), StoreError> {
    // Another process may have migrated it while this one waited for `LOCK`.
    if layout.marker()? == Marker::Current {
        return Ok(());
    }
    remove_dir_if_exists(&layout.migrating_index)?;
    remove_dir_if_exists(&layout.index)?;
    // An old index that cannot be read fails the migration (RocksDB names what is wrong)
    // and stays as it is: only a store that never opened its index has none to copy.
    let holds_files =
        std::fs::read_dir(&layout.old_index).is_ok_and(|mut entries| entries.next().is_some());
    if holds_files {
        copy_index(&layout.old_index, &layout.migrating_index)?;
        rename_dir(&layout.migrating_index, &layout.index)?;
    }
    layout.write_marker(FORMAT_V3)?;
    // Best effort: the store is migrated; the next read-write open tries again.
    let _ = remove_leftovers(layout);
    Ok(())
}

/// Whether a migration killed after its marker write left the old index (or a half-built
/// new one) behind.
pub(crate) fn left_behind(layout: &Layout) -> bool {
    layout.old_index.is_dir() || layout.migrating_index.exists()
}

/// Removes what [`left_behind`] found and leaves the note at `index-v1`. The caller holds
/// `LOCK`, and the store is of format v3.
pub(crate) fn remove_leftovers(layout: &Layout) -> Result<(), StoreError> {
    remove_dir_if_exists(&layout.migrating_index)?;
    if layout.old_index.is_dir() {
        remove_dir_if_exists(&layout.old_index)?;
    }
    if !layout.old_index.exists() {
        layout.write_file(&layout.old_index, MOVED_NOTE)?;
    }
    Ok(())
}

/// A column family of a format v2 index, as it was opened.
fn v2_family(name: &str) -> ColumnFamilyDescriptor {
    let mut options = Options::default();
    if name == index::META {
        // Counters were written as merges: reading them back needs the operator.
        options.set_merge_operator_associative("lamina-add-i64", add_i64);
    }
    ColumnFamilyDescriptor::new(name, options)
}

/// Copies every record of the old index at `old` into a new index at `new`.
fn copy_index(old: &std::path::Path, new: &std::path::Path) -> Result<(), StoreError> {
    let failed = |source| StoreError::Index {
        path: old.to_path_buf(),
        source,
    };
    // The first stores of format v1 had no `diff_ids` family: open those there are.
    let present = DB::list_cf(&Options::default(), old).map_err(failed)?;
    let families: Vec<&str> = FAMILIES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| present.iter().any(|p| p == name))
        .collect();
    let descriptors = families.iter().map(|name| v2_family(name));
    let old_db = DB::open_cf_descriptors_read_only(&Options::default(), old, descriptors, false)
        .map_err(failed)?;
    let new_index = Index::open(new, false)?;
    for name in families {
        let family = old_db
            .cf_handle(name)
            .expect("every family was opened above");
        let mut batch = IndexBatch::default();
        let mut entries = 0;
        for item in old_db.iterator_cf(family, IteratorMode::Start) {
            let (key, value) = item.map_err(failed)?;
            batch.put(name, key, value);
            entries += 1;
            if entries % COPY_BATCH == 0 {
                new_index.write_relaxed(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            new_index.write_relaxed(batch)?;
        }
    }
    // Flushed (tables and MANIFEST synced) before the rename makes it the index; merged
    // into one last-level run, which has no filter to load at every open.
    new_index.flush()?;
    new_index.merge_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobInfo, BlobKind, FsckOptions, ImageState, Store, StoreOptions};

    /// Writes an index of format v2 at `path` with the column families `families`: some
    /// records flushed into tables and some left in the WAL, and a counter as merges
    /// (`HITS`: 5 + 2).
    fn write_v2_index(
        path: &std::path::Path,
        families: &[&str],
        records: &[(&str, Vec<u8>, Vec<u8>)],
    ) {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let descriptors = families.iter().map(|name| v2_family(name));
        let db = DB::open_cf_descriptors(&options, path, descriptors).unwrap();
        for (i, (family, key, value)) in records.iter().enumerate() {
            db.put_cf(db.cf_handle(family).unwrap(), key, value)
                .unwrap();
            if i == records.len() / 2 {
                db.flush_cf(db.cf_handle(family).unwrap()).unwrap();
            }
        }
        let meta = db.cf_handle(index::META).unwrap();
        db.merge_cf(meta, index::HITS, 5i64.to_le_bytes()).unwrap();
        db.flush_cf(meta).unwrap();
        db.merge_cf(meta, index::HITS, 2i64.to_le_bytes()).unwrap();
    }

    /// A store at `root` holding a manifest blob tagged `tag`, turned into a store of
    /// format `marker` whose index is of format v2 with `families`: the records this
    /// version wrote, moved the way format v2 kept them.
    fn old_store(root: &std::path::Path, tag: &str, families: &[&str], marker: &str) -> BlobInfo {
        let (blob, records) = {
            let store = Store::open(root, StoreOptions::default()).unwrap();
            let blob = store.put_bytes(BlobKind::Manifest, tag.as_bytes()).unwrap();
            store
                .tag_image(tag, &blob.digest, &[], ImageState::Complete)
                .unwrap();
            let db = store.index().unwrap();
            let mut records = Vec::new();
            for (name, _) in FAMILIES {
                for item in db.scan(name) {
                    let (k, v) = item.unwrap();
                    if (name, &k[..]) != (index::META, index::HITS) {
                        records.push((name, k.to_vec(), v.to_vec()));
                    }
                }
            }
            (blob, records)
        };
        let layout = Layout::new(root);
        remove_dir_if_exists(&layout.index).unwrap();
        write_v2_index(&layout.old_index, families, &records);
        std::fs::write(&layout.format, marker).unwrap();
        blob
    }

    fn all_families() -> Vec<&'static str> {
        FAMILIES.iter().map(|(name, _)| *name).collect()
    }

    fn assert_migrated(layout: &Layout) {
        assert_eq!(std::fs::read_to_string(&layout.format).unwrap(), FORMAT_V3);
        assert!(!layout.migrating_index.exists());
        assert_eq!(
            std::fs::read_to_string(&layout.old_index).unwrap(),
            MOVED_NOTE
        );
    }

    #[test]
    fn a_v2_store_is_migrated_by_its_first_open_with_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let blob = old_store(&root, "app:v1", &all_families(), "lamina-store v2\n");
        let layout = Layout::new(&root);

        // Read-only opens migrate too: the old index is not readable any more.
        let read_only = StoreOptions {
            read_only: true,
            ..Default::default()
        };
        let store = Store::open(&root, read_only).unwrap();
        assert_migrated(&layout);
        assert_eq!(store.read(&blob.digest).unwrap().unwrap(), b"app:v1");
        assert_eq!(
            store.stat(&blob.sha256).unwrap().unwrap().digest,
            blob.digest
        );
        assert_eq!(
            store.image("app:v1").unwrap().unwrap().manifest,
            blob.digest
        );
        assert_eq!(store.index().unwrap().counter(index::HITS).unwrap(), 7);
        drop(store);
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{report:?}");

        // A lamina of format v2 still running cannot reopen the old index and write into
        // an empty one: RocksDB cannot make a directory where the note is.
        let mut options = Options::default();
        options.create_if_missing(true);
        assert!(DB::open(&options, &layout.old_index).is_err());
    }

    #[test]
    fn a_first_v1_store_without_the_diff_ids_family_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let families: Vec<_> = all_families()
            .into_iter()
            .filter(|name| *name != index::DIFF_IDS)
            .collect();
        let blob = old_store(&root, "app:v1", &families, "lamina-store v1\n");
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        assert_migrated(&Layout::new(&root));
        assert_eq!(
            store.image("app:v1").unwrap().unwrap().manifest,
            blob.digest
        );
    }

    #[test]
    fn an_old_index_that_cannot_be_read_stops_the_migration_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        old_store(&root, "app:v1", &all_families(), "lamina-store v2\n");
        let layout = Layout::new(&root);
        std::fs::remove_file(layout.old_index.join("CURRENT")).unwrap();
        let err = Store::open(&root, StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Index { .. }), "{err}");
        assert!(err.to_string().contains("index-v1"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&layout.format).unwrap(),
            "lamina-store v2\n"
        );
        assert!(std::fs::read_dir(&layout.old_index).unwrap().count() > 0);
        assert!(!layout.index.exists());
    }

    #[test]
    fn a_killed_migration_is_redone_and_its_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let layout = Layout::new(&root);
        // Killed after the rename, before the marker: a complete new index (here one of
        // other records, to tell them apart), and the half one of an earlier attempt.
        let stale = tempfile::tempdir().unwrap();
        old_store(
            &stale.path().join("s"),
            "stale:v1",
            &all_families(),
            "lamina-store v2\n",
        );
        let blob = old_store(&root, "app:v1", &all_families(), "lamina-store v2\n");
        copy_index(
            &Layout::new(&stale.path().join("s")).old_index,
            &layout.index,
        )
        .unwrap();
        std::fs::create_dir_all(layout.migrating_index.join("junk")).unwrap();
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        assert_migrated(&layout);
        assert_eq!(
            store.image("app:v1").unwrap().unwrap().manifest,
            blob.digest
        );
        assert_eq!(store.image("stale:v1").unwrap(), None);
        drop(store);

        // Killed after the marker, before the old index went (and a half-built index of
        // another attempt): replaced by the next read-write open, the v3 index untouched;
        // a read-only open leaves them for it.
        std::fs::remove_file(&layout.old_index).unwrap();
        write_v2_index(&layout.old_index, &all_families(), &[]);
        std::fs::create_dir_all(layout.migrating_index.join("junk")).unwrap();
        let read_only = StoreOptions {
            read_only: true,
            ..Default::default()
        };
        drop(Store::open(&root, read_only).unwrap());
        assert!(layout.old_index.is_dir());
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        assert_migrated(&layout);
        assert_eq!(
            store.image("app:v1").unwrap().unwrap().manifest,
            blob.digest
        );
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(report.is_clean(), "{report:?}");
    }
}
