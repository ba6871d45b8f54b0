//! Integration tests for lamina-store: one binary, run with `cargo test -p lamina-store`.

#[path = "store/crash.rs"]
mod crash;
#[path = "store/gc.rs"]
mod gc;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lamina_store::{
    BlobKind, Compression, Digest, FsckIssue, FsckOptions, ImageState, LayerRecord, LayerVariant,
    Store, StoreError, StoreOptions,
};

/// Options for tests: nothing is young, no automatic GC, short lock wait.
fn quick() -> StoreOptions {
    StoreOptions {
        min_age: Duration::ZERO,
        auto_gc: false,
        lock_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir.join("store"), quick()).unwrap()
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tmp_files(store: &Store) -> usize {
    std::fs::read_dir(store.path().join("tmp")).unwrap().count()
}

#[test]
fn put_then_get_by_either_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bytes = data(1, 100_000);
    let info = store.put(BlobKind::Layer, &bytes[..]).unwrap();
    assert_eq!(info.digest, Digest::blake3_of(&bytes));
    assert_eq!(info.sha256, Digest::sha256_of(&bytes));
    assert_eq!(info.size, 100_000);
    assert_eq!(info.kind, BlobKind::Layer);

    let mut read = Vec::new();
    store
        .get(&info.sha256)
        .unwrap()
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, bytes);
    assert_eq!(&*store.map(&info.digest).unwrap().unwrap(), &bytes[..]);
    assert_eq!(store.verify(&info.sha256).unwrap(), info);
    assert_eq!(
        store.blob_path(&info),
        store
            .path()
            .join("blobs-v1")
            .join(&info.digest.hex()[..2])
            .join(&info.digest.hex()[2..])
    );

    let missing = Digest::sha256_of(b"nope");
    assert!(store.get(&missing).unwrap().is_none());
    assert!(store.map(&Digest::blake3_of(b"nope")).unwrap().is_none());
    assert!(matches!(
        store.verify(&missing),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn empty_blob_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let info = store.put_bytes(BlobKind::Other, b"").unwrap();
    assert_eq!(info.size, 0);
    assert!(store.map(&info.digest).unwrap().unwrap().is_empty());
    assert_eq!(store.read(&info.digest).unwrap().unwrap(), b"");
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn dedupe_writes_nothing_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bytes = data(2, 5000);
    let file = dir.path().join("input");
    std::fs::write(&file, &bytes).unwrap();

    let a = store.put_bytes(BlobKind::Layer, &bytes).unwrap();
    let b = store.put_file(BlobKind::Layer, &file).unwrap();
    let c = store.put(BlobKind::Layer, &bytes[..]).unwrap();
    let mut w = store.writer(BlobKind::Layer).unwrap();
    w.write_all(&bytes).unwrap();
    let d = w.commit().unwrap();
    assert!(a == b && b == c && c == d);
    assert_eq!(tmp_files(&store), 0);

    let stats = store.stats().unwrap();
    assert_eq!(stats.blobs, 1);
    assert_eq!(stats.stored_bytes, 5000);
    assert_eq!(stats.logical_bytes, 20_000);
    assert_eq!((stats.dedupe_hits, stats.dedupe_misses), (3, 1));
    assert!((stats.dedupe_ratio() - 4.0).abs() < 1e-9);
    assert!((stats.hit_rate() - 0.75).abs() < 1e-9);
}

#[test]
fn mismatched_content_is_rejected_and_nothing_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let bytes = data(3, 4096);
    let claimed = Digest::sha256_of(b"something else");
    let err = store
        .put_verified(BlobKind::Layer, &bytes[..], &claimed, None)
        .unwrap_err();
    match err {
        StoreError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::sha256_of(&bytes));
        }
        other => panic!("unexpected {other}"),
    }
    let right = Digest::blake3_of(&bytes);
    let err = store
        .put_verified(BlobKind::Layer, &bytes[..], &right, Some(10))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 10,
                actual: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert!(store.stat(&right).unwrap().is_none());
    assert_eq!(store.stats().unwrap().blobs, 0);
    assert_eq!(tmp_files(&store), 0);

    let ok = store.put_verified(
        BlobKind::Layer,
        &bytes[..],
        &Digest::sha256_of(&bytes),
        Some(4096),
    );
    assert_eq!(ok.unwrap().digest, right);
}

#[test]
fn abandoned_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut w = store.writer(BlobKind::Other).unwrap();
    w.write_all(b"partial").unwrap();
    assert_eq!(tmp_files(&store), 1);
    drop(w);
    assert_eq!(tmp_files(&store), 0);
    assert_eq!(store.stats().unwrap().blobs, 0);
}

#[test]
fn corrupt_blob_is_named_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let info = store
        .put_bytes(BlobKind::Config, b"original bytes")
        .unwrap();
    let path = store.blob_path(&info);
    std::fs::write(&path, b"tampered bytes").unwrap();

    let err = store.verify(&info.digest).unwrap_err();
    assert!(matches!(&err, StoreError::CorruptBlob { digest, .. } if *digest == info.digest));
    assert!(err.to_string().contains(&info.digest.to_string()));

    let report = store.fsck(FsckOptions::default()).unwrap();
    assert!(!report.repaired);
    assert!(
        report
            .issues
            .iter()
            .any(|i| matches!(i, FsckIssue::CorruptBlob { digest, .. } if *digest == info.digest)),
        "{:?}",
        report.issues
    );
    let report = store
        .fsck(FsckOptions {
            repair: true,
            verify_content: true,
        })
        .unwrap();
    assert!(report.repaired);
    assert!(!path.exists());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    assert!(store.stat(&info.digest).unwrap().is_none());
    assert_eq!(store.stats().unwrap().stored_bytes, 0);
}

#[test]
fn truncated_or_missing_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = store.put_bytes(BlobKind::Other, &data(4, 1000)).unwrap();
    let b = store.put_bytes(BlobKind::Other, &data(5, 1000)).unwrap();
    std::fs::write(store.blob_path(&a), data(4, 10)).unwrap();
    std::fs::remove_file(store.blob_path(&b)).unwrap();
    assert!(matches!(
        store.get(&a.digest),
        Err(StoreError::CorruptBlob { .. })
    ));
    assert!(matches!(
        store.map(&b.digest),
        Err(StoreError::MissingBlob { .. })
    ));
    let stray = store.path().join("blobs-v1/00/stray");
    std::fs::write(&stray, b"?").unwrap();
    let report = store
        .fsck(FsckOptions {
            repair: true,
            verify_content: false,
        })
        .unwrap();
    assert_eq!(report.issues.len(), 3, "{:?}", report.issues);
    assert!(!stray.exists());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn threads_put_and_get_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let shared = data(7, 300_000);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..20u64 {
                    let bytes = data(1000 + t * 100 + i, 1000 + (i as usize) * 10);
                    let info = store.put(BlobKind::Other, &bytes[..]).unwrap();
                    assert_eq!(store.read(&info.digest).unwrap().unwrap(), bytes);
                    mine.push(info.digest);
                    let same = store.put(BlobKind::Layer, &shared[..]).unwrap();
                    assert_eq!(same.digest, Digest::blake3_of(&shared));
                }
                mine
            })
        })
        .collect();
    let all: Vec<Digest> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(all.len(), 160);
    let stats = store.stats().unwrap();
    assert_eq!(stats.blobs, 161, "one copy of the shared blob");
    assert_eq!(stats.dedupe_hits, 159);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    assert_eq!(tmp_files(&store), 0);
}

#[test]
fn an_operation_waits_for_another_holders_index_section_then_names_it() {
    let dir = tempfile::tempdir().unwrap();
    // A holder that never lets its index go idle stands for a long index section.
    let holding = StoreOptions {
        idle_close: None,
        ..quick()
    };
    let first = Store::open(dir.path().join("store"), holding).unwrap();
    let start = Instant::now();
    let err = Store::open(dir.path().join("store"), quick()).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(250));
    match &err {
        StoreError::Locked { holder, .. } => {
            assert_eq!(*holder, format!("process {}", std::process::id()));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("lock timeout"));

    // A waiter gets the index once the holder releases it; the holder keeps working and
    // takes its turn again.
    let first = std::sync::Arc::new(first);
    let releaser = {
        let first = first.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            assert!(first.release_index());
        })
    };
    let options = StoreOptions {
        lock_timeout: Duration::from_secs(10),
        ..quick()
    };
    let second = Store::open(dir.path().join("store"), options).unwrap();
    releaser.join().unwrap();
    let by_second = second.put_bytes(BlobKind::Config, b"second").unwrap();
    second.release_index();
    let by_first = first.put_bytes(BlobKind::Config, b"first").unwrap();
    assert!(first.contains(&by_second.digest).unwrap());
    assert!(first.release_index());
    assert!(second.contains(&by_first.digest).unwrap());
    assert!(second.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn two_stores_on_one_root_share_it_between_operations() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let b = open(dir.path());
    for i in 0..20u32 {
        let from_a = a
            .put_bytes(BlobKind::Config, format!("a{i}").as_bytes())
            .unwrap();
        let from_b = b
            .put_bytes(BlobKind::Config, format!("b{i}").as_bytes())
            .unwrap();
        // Each waits at most for the other's idle close (50 ms by default).
        assert!(b.contains(&from_a.digest).unwrap());
        assert!(a.contains(&from_b.digest).unwrap());
    }
    assert!(a.index_opens() > 1, "a closed and reopened its index");
    assert_eq!(a.stats().unwrap().blobs, 40);
    assert!(b.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn unknown_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    std::fs::write(dir.path().join("store/FORMAT"), "lamina-store v9\n").unwrap();
    let err = Store::open(dir.path().join("store"), quick()).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedFormat { .. }), "{err}");
}

#[test]
fn images_need_their_blobs_unless_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let manifest = store.put_bytes(BlobKind::Manifest, b"m").unwrap();
    let absent = Digest::blake3_of(b"not here yet");
    let err = store.tag_image("a:1", &manifest.digest, &[absent], ImageState::Complete);
    assert!(matches!(err, Err(StoreError::NotFound { digest }) if digest == absent));
    let rec = store
        .tag_image("a:1", &manifest.digest, &[absent], ImageState::Incomplete)
        .unwrap();
    assert_eq!(rec.references, vec![absent]);
    // A complete retag of what an incomplete name holds is checked as a new tag is (fsck's
    // repair marks a name with missing references incomplete): only an identical retag
    // skips the checks.
    let err = store.tag_image("a:1", &manifest.digest, &[absent], ImageState::Complete);
    assert!(matches!(err, Err(StoreError::NotFound { digest }) if digest == absent));
    assert!(matches!(
        store.tag_image("", &manifest.digest, &[], ImageState::Complete),
        Err(StoreError::InvalidImageName { .. })
    ));
    assert_eq!(store.images().unwrap().len(), 1);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let info = {
        let store = open(dir.path());
        store.put_bytes(BlobKind::Layer, &data(9, 12345)).unwrap()
    };
    let store = open(dir.path());
    assert_eq!(store.verify(&info.sha256).unwrap(), info);
    assert_eq!(store.stats().unwrap().stored_bytes, 12345);
}

/// The bytes of the index's write-ahead logs under the store at `root`.
fn index_log_bytes(root: &Path) -> u64 {
    walkdir(root)
        .iter()
        .filter(|file| file.extension().is_some_and(|x| x == "log"))
        .map(|file| file.metadata().unwrap().len())
        .sum()
}

/// RocksDB's own log keeps warnings and errors only: a read-write open wrote its options
/// dump (~400 lines, ~30 KB) into `LOG` at every open.
#[test]
fn read_write_opens_leave_rocksdb_log_without_the_options_dump() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 0..3 {
        let store = open(dir.path());
        store.put_bytes(BlobKind::Layer, &data(seed, 100)).unwrap();
    }
    let mut logs = 0;
    for entry in walkdir(dir.path()) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if name == "LOG" || name.starts_with("LOG.old") {
            logs += 1;
            let text = std::fs::read_to_string(&entry).unwrap();
            assert!(
                !text.contains("Options."),
                "{}: {text:.300}",
                entry.display()
            );
        }
    }
    assert!(logs > 0, "RocksDB keeps a LOG file for its warnings");
}

/// Every file below `root`.
fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            files.extend(walkdir(&entry.path()));
        } else {
            files.push(entry.path());
        }
    }
    files
}

#[test]
fn layer_records_merge_variants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tar = Digest::blake3_of(b"tar");
    let variant = |c, bytes: &[u8]| LayerVariant {
        compression: c,
        digest: Digest::blake3_of(bytes),
        sha256: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
        reproducible: false,
    };
    let record = |v| LayerRecord {
        digest: tar,
        diff_id: Digest::sha256_of(b"tar"),
        size: 3,
        variants: vec![v],
        created: std::time::SystemTime::UNIX_EPOCH,
        tar_split: None,
    };
    let first = store
        .put_layer(&record(variant(Compression::Gzip, b"gz")))
        .unwrap();
    assert!(
        first.created > std::time::SystemTime::UNIX_EPOCH,
        "the store sets created"
    );
    let logged = index_log_bytes(dir.path());
    store
        .put_layer(&record(variant(Compression::Zstd, b"zst")))
        .unwrap();
    assert!(
        index_log_bytes(dir.path()) > logged,
        "a new variant is written"
    );
    // Another gzip encoding of the same tar (another tool's bytes) joins; none is replaced.
    store
        .put_layer(&record(variant(Compression::Gzip, b"gz by another tool")))
        .unwrap();
    // A variant the record has: nothing to write (as a step rebuilt with --no-cache).
    let logged = index_log_bytes(dir.path());
    let again = store
        .put_layer(&record(variant(Compression::Gzip, b"gz")))
        .unwrap();
    assert_eq!(
        index_log_bytes(dir.path()),
        logged,
        "the same record is not written again"
    );
    assert_eq!(again, store.layer(&tar).unwrap().unwrap());
    let got = store.layer(&tar).unwrap().unwrap();
    let digests: Vec<_> = got.variants.iter().map(|v| v.digest).collect();
    assert_eq!(
        digests,
        [b"gz".as_slice(), b"zst", b"gz by another tool"].map(Digest::blake3_of)
    );
    assert_eq!(got.created, first.created);
    assert_eq!(got.diff_id, Digest::sha256_of(b"tar"));
    assert!(store.layer(&Digest::blake3_of(b"other")).unwrap().is_none());
    let by_diff_id = store.layer_by_diff_id(&Digest::sha256_of(b"tar")).unwrap();
    assert_eq!(by_diff_id, Some(got));
    assert_eq!(
        store
            .layer_by_diff_id(&Digest::sha256_of(b"other"))
            .unwrap(),
        None
    );
    // Unreferenced, the record goes at GC, and its diff_id alias with it.
    store.gc().unwrap();
    assert_eq!(store.layer(&tar).unwrap(), None);
    assert_eq!(
        store.layer_by_diff_id(&Digest::sha256_of(b"tar")).unwrap(),
        None
    );
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn corrupt_index_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let current = dir.path().join("store/index-v2/CURRENT");
    std::fs::write(&current, "MANIFEST-999999\n").unwrap();
    let err = Store::open(dir.path().join("store"), quick()).unwrap_err();
    assert!(matches!(err, StoreError::Index { .. }), "{err}");
    assert!(err.to_string().contains("index-v2"), "{err}");
}

#[test]
fn a_read_only_store_reads_beside_a_holder_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let holding = StoreOptions {
        idle_close: None,
        ..quick()
    };
    let writer = Store::open(dir.path().join("store"), holding).unwrap();
    let blob = writer.put_bytes(BlobKind::Config, b"written").unwrap();
    // The writer keeps the index (and LOCK): a read-write open would wait and give up.
    let reading = StoreOptions {
        read_only: true,
        ..quick()
    };
    let start = Instant::now();
    let reader = Store::open(dir.path().join("store"), reading.clone()).unwrap();
    assert!(start.elapsed() < Duration::from_millis(300), "did not wait");
    assert_eq!(reader.read(&blob.digest).unwrap().unwrap(), b"written");
    assert_eq!(reader.stats().unwrap().blobs, 1);
    assert!(reader.put_bytes(BlobKind::Config, b"refused").is_err());
    // What the writer adds later is seen by the reader's next open.
    let later = writer.put_bytes(BlobKind::Config, b"later").unwrap();
    drop(reader);
    let reader = Store::open(dir.path().join("store"), reading).unwrap();
    assert!(reader.contains(&later.digest).unwrap());
    assert!(writer.fsck(FsckOptions::default()).unwrap().is_clean());
}
