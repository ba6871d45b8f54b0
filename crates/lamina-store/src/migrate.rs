//! Moving a store of format v1 or v2 to format v3: the index of one column family per
//! kind of record (`index-v1/`) becomes one key space with tagged keys (`index-v2/`).
//!
//! Runs once, by the first open of the old store, with `LOCK` held. Every step can be cut
//! by a kill -9 without losing anything: the old index is only read (a read-only open
//! replays its WAL in memory) until the marker says v3, and the marker is written only
//! after the new index is complete and in place.
//! 1. the new index is built in `index-v2.migrating/` (one left by a killed migration is
//!    removed first), flushed and merged into one table file;
//! 2. it is renamed to `index-v2/` (one there already is a killed migration's, since the
//!    marker still says v2: removed first);
//! 3. the marker is replaced by v3;
//! 4. `index-v1/` is removed (a killed process's is removed by the next open's recovery).

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options};

use crate::StoreError;
use crate::fsutil::{FORMAT_V3, Layout, Marker, remove_dir_if_exists, rename_dir};
use crate::index::{self, FAMILIES, Index, IndexBatch, add_i64};

/// Entries per write while copying: bounds the memory a large index takes to migrate.
const COPY_BATCH: usize = 4096;

/// Migrates the store to format v3 if it is older. The caller holds `LOCK`.
pub(crate) fn migrate(layout: &Layout) -> Result<(), StoreError> {
    // Another process may have migrated it while this one waited for `LOCK`.
    if layout.marker()? == Marker::Current {
        return Ok(());
    }
    remove_dir_if_exists(&layout.migrating_index)?;
    remove_dir_if_exists(&layout.index)?;
    if layout.old_index.join("CURRENT").is_file() {
        copy_index(&layout.old_index, &layout.migrating_index)?;
        rename_dir(&layout.migrating_index, &layout.index)?;
    }
    layout.write_marker(FORMAT_V3)?;
    remove_dir_if_exists(&layout.old_index)
}

/// Whether a migration killed after its marker write left the old index behind.
pub(crate) fn left_behind(layout: &Layout) -> bool {
    layout.old_index.exists() || layout.migrating_index.exists()
}

/// Removes what [`left_behind`] found. The caller holds `LOCK`, and the store is of
/// format v3.
pub(crate) fn remove_leftovers(layout: &Layout) -> Result<(), StoreError> {
    remove_dir_if_exists(&layout.migrating_index)?;
    remove_dir_if_exists(&layout.old_index)
}

/// Copies every record of the old index at `old` into a new index at `new`.
fn copy_index(old: &std::path::Path, new: &std::path::Path) -> Result<(), StoreError> {
    let failed = |source| StoreError::Index {
        path: old.to_path_buf(),
        source,
    };
    let families = FAMILIES.iter().map(|(name, _)| {
        let mut options = Options::default();
        if *name == index::META {
            // Counters were written as merges: reading them back needs the operator.
            options.set_merge_operator_associative("lamina-add-i64", add_i64);
        }
        ColumnFamilyDescriptor::new(*name, options)
    });
    let old_db = DB::open_cf_descriptors_read_only(&Options::default(), old, families, false)
        .map_err(failed)?;
    let new_index = Index::open(new, false)?;
    for (name, _) in FAMILIES {
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
    // Flushed (tables and MANIFEST synced) and merged into one file before the rename
    // makes it the index.
    new_index.bound_wal(0, 0)?;
    new_index.merge_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobKind, FsckOptions, ImageState, Store, StoreOptions};

    /// Writes an index of format v2 at `path`: the families as column families, a counter
    /// as merges, some records flushed into tables and some left in the WAL.
    fn write_v2_index(path: &std::path::Path, records: &[(&str, Vec<u8>, Vec<u8>)]) {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let families = FAMILIES.iter().map(|(name, _)| {
            let mut cf = Options::default();
            if *name == index::META {
                cf.set_merge_operator_associative("lamina-add-i64", add_i64);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&options, path, families).unwrap();
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

    #[test]
    fn a_v2_store_is_migrated_by_its_first_open_with_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        // A store made by this version, its records then moved into an index of format v2
        // the way format v2 kept them.
        let (blob, records) = {
            let store = Store::open(&root, StoreOptions::default()).unwrap();
            let blob = store.put_bytes(BlobKind::Manifest, b"a manifest").unwrap();
            store
                .tag_image("app:v1", &blob.digest, &[], ImageState::Complete)
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
        let layout = Layout::new(&root);
        remove_dir_if_exists(&layout.index).unwrap();
        write_v2_index(&layout.old_index, &records);
        std::fs::write(&layout.format, "lamina-store v2\n").unwrap();

        // Read-only opens migrate too: the old index is not readable any more.
        let read_only = StoreOptions {
            read_only: true,
            ..Default::default()
        };
        let store = Store::open(&root, read_only).unwrap();
        assert_eq!(std::fs::read_to_string(&layout.format).unwrap(), FORMAT_V3);
        assert!(!layout.old_index.exists());
        assert!(!layout.migrating_index.exists());
        assert_eq!(store.read(&blob.digest).unwrap().unwrap(), b"a manifest");
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
    }

    #[test]
    fn a_killed_migration_is_redone_and_its_leftovers_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        drop(Store::open(&root, StoreOptions::default()).unwrap());
        let layout = Layout::new(&root);
        remove_dir_if_exists(&layout.index).unwrap();
        write_v2_index(
            &layout.old_index,
            &[(index::IMAGES, b"app:v1".to_vec(), b"not a record".to_vec())],
        );
        // Format v1 had the same index as v2.
        std::fs::write(&layout.format, "lamina-store v1\n").unwrap();
        // Killed after the rename, before the marker: a complete new index, and the half
        // one of an earlier attempt.
        copy_index(&layout.old_index, &layout.index).unwrap();
        std::fs::create_dir_all(layout.migrating_index.join("junk")).unwrap();
        drop(Store::open(&root, StoreOptions::default()).unwrap());
        assert_eq!(std::fs::read_to_string(&layout.format).unwrap(), FORMAT_V3);
        assert!(!layout.migrating_index.exists());
        assert!(!layout.old_index.exists());

        // Killed after the marker, before the old index went: removed by the next open.
        write_v2_index(&layout.old_index, &[]);
        let store = Store::open(&root, StoreOptions::default()).unwrap();
        assert!(!layout.old_index.exists());
        // The damaged record made it across, and fsck finds it in the new index.
        assert!(!store.fsck(FsckOptions::default()).unwrap().is_clean());
    }
}
