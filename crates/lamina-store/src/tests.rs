//! Unit tests that reach into the index: corrupt records, recovery of pending files.

use super::*;
use crate::index;

fn open(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        min_age: std::time::Duration::ZERO,
        auto_gc: false,
        ..Default::default()
    };
    Store::open(dir.join("s"), options).unwrap()
}

#[test]
fn corrupt_blob_record_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let info = store.put_bytes(BlobKind::Other, b"abc").unwrap();
    store
        .index()
        .unwrap()
        .put(index::BLOBS, info.digest.as_bytes(), &[1, 0xff])
        .unwrap();
    let err = store.stat(&info.digest).unwrap_err();
    match &err {
        StoreError::CorruptRecord { kind, key, .. } => {
            assert_eq!(*kind, "blobs");
            assert_eq!(*key, info.digest.to_string());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("fsck"));
    let report = store
        .fsck(FsckOptions {
            repair: true,
            verify_content: true,
        })
        .unwrap();
    assert!(
        report
            .issues
            .iter()
            .any(|i| matches!(i, FsckIssue::CorruptRecord { kind: "blobs", .. }))
    );
    assert!(
        report
            .issues
            .iter()
            .any(|i| matches!(i, FsckIssue::OrphanFile { .. }))
    );
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    assert_eq!(store.stat(&info.digest).unwrap(), None);
}

#[test]
fn corrupt_image_record_stops_gc_instead_of_losing_roots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .index()
        .unwrap()
        .put(index::IMAGES, b"app:v1", &[1, 2, 3])
        .unwrap();
    let err = store.gc().unwrap_err();
    assert!(
        matches!(err, StoreError::CorruptRecord { kind: "images", .. }),
        "{err}"
    );
    assert!(matches!(
        store.image("app:v1"),
        Err(StoreError::CorruptRecord { .. })
    ));
}

#[test]
fn pending_file_without_record_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let digest = Digest::blake3_of(b"half-written");
    let path = {
        let store = open(dir.path());
        let path = store.layout.blob_path(digest.as_bytes());
        std::fs::write(&path, b"half-written").unwrap();
        store
            .index()
            .unwrap()
            .put(index::PENDING, digest.as_bytes(), &[])
            .unwrap();
        std::fs::write(store.layout.tmp.join("junk.tmp"), b"x").unwrap();
        path
    };
    let store = open(dir.path());
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(&store.layout.tmp).unwrap().count(), 0);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn counters_drift_is_found_and_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put_bytes(BlobKind::Other, b"12345").unwrap();
    let mut batch = crate::index::IndexBatch::default();
    batch.count(index::STORED_BYTES, 100);
    store.index().unwrap().write(batch).unwrap();
    let report = store
        .fsck(FsckOptions {
            repair: true,
            verify_content: false,
        })
        .unwrap();
    assert_eq!(
        report.issues,
        vec![FsckIssue::CounterDrift {
            counter: "stored_bytes",
            recorded: 105,
            actual: 5
        }]
    );
    assert_eq!(store.stats().unwrap().stored_bytes, 5);
}

#[test]
fn location_follows_env_precedence() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(*v))
        }
    };
    assert_eq!(
        location_from(env(&[("LAMINA_STORE", "/s"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/s")
    );
    assert_eq!(
        location_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/x/lamina/store")
    );
    assert_eq!(
        location_from(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/h/.cache/lamina/store")
    );
    assert!(matches!(
        location_from(env(&[])),
        Err(StoreError::NoLocation)
    ));
}

#[test]
fn diff_id_aliases_are_checked_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tar = b"layer tar";
    let layer = LayerRecord {
        digest: Digest::blake3_of(tar),
        diff_id: Digest::sha256_of(tar),
        size: tar.len() as u64,
        variants: Vec::new(),
        created: std::time::SystemTime::UNIX_EPOCH,
        tar_split: None,
    };
    store.put_layer(&layer).unwrap();
    let stray = Digest::sha256_of(b"no such layer");
    store
        .index()
        .unwrap()
        .put(index::DIFF_IDS, stray.as_bytes(), layer.digest.as_bytes())
        .unwrap();
    let drop_alias = || {
        let mut batch = crate::index::IndexBatch::default();
        batch.delete(index::DIFF_IDS, layer.diff_id.as_bytes());
        store.index().unwrap().write(batch).unwrap();
    };
    drop_alias();
    assert_eq!(store.layer_by_diff_id(&layer.diff_id).unwrap(), None);
    // Recording the layer again (as a rebuild does) writes the missing alias back, though
    // the record itself is unchanged.
    store.put_layer(&layer).unwrap();
    assert!(store.layer_by_diff_id(&layer.diff_id).unwrap().is_some());
    drop_alias();

    let report = store
        .fsck(FsckOptions {
            repair: true,
            verify_content: false,
        })
        .unwrap();
    assert!(
        report
            .issues
            .contains(&FsckIssue::DanglingDiffId { diff_id: stray })
    );
    assert!(report.issues.contains(&FsckIssue::MissingDiffId {
        layer: layer.digest
    }));
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    let found = store.layer_by_diff_id(&layer.diff_id).unwrap().unwrap();
    assert_eq!(found.digest, layer.digest);
    assert_eq!(store.layer_by_diff_id(&stray).unwrap(), None);
}

#[test]
fn mark_used_answers_from_the_index_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let blob = store.put_bytes(BlobKind::Config, b"{}").unwrap();
    // The file is not opened: a caller holding the bytes asks only whether they are kept.
    std::fs::remove_file(store.blob_path(&blob)).unwrap();
    assert_eq!(
        store.mark_used(&blob.digest).unwrap().map(|b| b.digest),
        Some(blob.digest)
    );
    assert!(store.get(&blob.digest).is_err());
    let unknown = Digest::blake3(*blake3::hash(b"never stored").as_bytes());
    assert_eq!(store.mark_used(&unknown).unwrap(), None);
}

#[test]
fn sorted_runs_are_merged_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let db = index::Index::open(&dir.path().join("index"), false).unwrap();
    // Three flushes (one fewer than RocksDB's own level-0 trigger, so no background
    // compaction merges them meanwhile), each writing records of several kinds.
    for i in 0..3u8 {
        db.put(index::CACHE, &[i; 32], b"entry").unwrap();
        db.put(index::IMAGES, &[i], b"image").unwrap();
        db.bound_wal(0, 0).unwrap();
    }
    // One table file (a sorted run) per flush, whatever kinds of record it holds.
    assert_eq!(db.table_files(), 3);
    assert_eq!(db.sorted_runs().unwrap(), 3);
    db.bound_runs(3).unwrap();
    assert_eq!(db.sorted_runs().unwrap(), 3);
    db.bound_runs(2).unwrap();
    assert_eq!(db.sorted_runs().unwrap(), 1);
    assert_eq!(db.table_files(), 1);
    for i in 0..3u8 {
        assert_eq!(db.get(index::CACHE, &[i; 32]).unwrap().unwrap(), b"entry");
        assert_eq!(db.get(index::IMAGES, &[i]).unwrap().unwrap(), b"image");
    }
}

#[test]
fn kinds_of_record_do_not_see_each_others_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = index::Index::open(&dir.path().join("index"), false).unwrap();
    db.put(index::LEASES, b"lease-1", b"header").unwrap();
    db.put(index::LEASES, b"lease-1/member", b"").unwrap();
    db.put(index::PENDING, b"lease-1", b"").unwrap();
    db.put(index::IMAGES, b"z", b"image").unwrap();
    let keys = |family: &str, prefix: &[u8]| -> Vec<Vec<u8>> {
        db.scan_prefix(family, prefix)
            .map(|r| r.unwrap().0.to_vec())
            .collect()
    };
    assert_eq!(
        keys(index::LEASES, b"lease-1"),
        [b"lease-1".to_vec(), b"lease-1/member".to_vec()]
    );
    assert_eq!(keys(index::PENDING, b""), [b"lease-1".to_vec()]);
    assert_eq!(keys(index::IMAGES, b""), [b"z".to_vec()]);
    assert!(keys(index::BLOBS, b"").is_empty());
    assert_eq!(db.get(index::PENDING, b"lease-1/member").unwrap(), None);
}

#[test]
fn index_files_stay_bounded_across_many_short_opens() {
    // Each cycle is a short-lived command: open, write a little (a blob record, a cache
    // entry, counters, a retag), close. Opens keep the WAL they recover and start another,
    // flushing all of them into a table file once more than MAX_WAL_FILES pile up.
    let dir = tempfile::tempdir().unwrap();
    let cycles = 2 * index::MAX_SORTED_RUNS as usize * index::MAX_WAL_FILES;
    for i in 0..cycles {
        let store = open(dir.path());
        let logs = std::fs::read_dir(store.path().join("index-v2"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count();
        // The flush at the bound makes the old WAL files obsolete; RocksDB deletes them in
        // the background, so a few more may be seen for a while.
        assert!(
            logs <= 2 * index::MAX_WAL_FILES,
            "cycle {i}: {logs} WAL files after open"
        );
        // Merged by RocksDB once MERGE_TRIGGER_RUNS are there (a flush at this open may
        // add one the merge has not taken yet), long before the bound of `bound_runs`.
        let runs = store.index().unwrap().sorted_runs().unwrap();
        assert!(
            runs <= index::MERGE_TRIGGER_RUNS as u64 + 1,
            "cycle {i}: {runs} sorted runs after open"
        );
        let blob = store
            .put_bytes(BlobKind::Manifest, format!("manifest {i}").as_bytes())
            .unwrap();
        let entry = CacheEntry {
            layer: None,
            config: blob.digest,
            ttl: None,
        };
        store.put_cache_entry(&[i as u8; 32], &entry).unwrap();
        store
            .tag_image("age:latest", &blob.digest, &[], ImageState::Complete)
            .unwrap();
    }
    // GC merges the index into one file.
    let store = open(dir.path());
    store.gc().unwrap();
    assert!(store.index().unwrap().table_files() <= 1);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn the_manifest_stays_small_across_many_opens() {
    // Opens append to the MANIFEST (RocksDB's reuse_manifest_on_open); its size bound makes
    // an open write a fresh one once it grows past it.
    let dir = tempfile::tempdir().unwrap();
    let manifest_bytes = |store: &Store| -> u64 {
        std::fs::read_dir(store.path().join("index-v2"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
            // RocksDB deletes an old MANIFEST in the background: it may go between the two.
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    let mut largest = 0;
    for i in 0..1500u32 {
        let store = open(dir.path());
        store.put_bytes(BlobKind::Config, &i.to_le_bytes()).unwrap();
        largest = largest.max(manifest_bytes(&store));
    }
    assert!(
        largest <= 2 * index::MAX_MANIFEST_BYTES as u64,
        "the MANIFEST grew to {largest} bytes over 1500 opens"
    );
}

/// Bytes of WAL in a store's index directory.
fn wal_bytes(store_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(store_dir.join("index-v2"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        // RocksDB deletes obsolete files in the background: one may go between the two.
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

#[test]
fn a_long_lived_writer_leaves_a_short_wal_for_the_next_open() {
    // One process writing for a while (an embedder's engine touching its hits): one WAL
    // file that every later open, read-only ones included, would replay in full.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut written = 0;
    for i in 0.. {
        store
            .put_bytes(BlobKind::Manifest, format!("manifest {i}").as_bytes())
            .unwrap();
        written = wal_bytes(store.path()).max(written);
        if written > 2 * index::MAX_WAL_BYTES {
            break;
        }
    }
    let path = store.path().to_path_buf();
    drop(store);
    let left = wal_bytes(&path);
    assert!(
        left <= index::MAX_WAL_BYTES,
        "{left} bytes of WAL left after {written} were written"
    );
    // Nothing was lost on the way.
    let store = open(dir.path());
    let blob = store.put_bytes(BlobKind::Manifest, b"manifest 0").unwrap();
    assert!(store.stat(&blob.digest).unwrap().is_some());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}
