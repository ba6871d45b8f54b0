//! Touch log: record format, torn records, merges, and GC waiting for readers.

use std::time::Duration;

use super::*;
use crate::records::now_ms;
use crate::{BlobKind, CacheEntry, ImageState, Store, StoreOptions};

fn sample() -> Vec<Touch> {
    vec![
        Touch::Blob {
            key: [7; 32],
            ms: 1_000,
        },
        Touch::Cache {
            key: [9; 32],
            ms: 2_000,
        },
        Touch::Image {
            name: "docker.io/library/app:latest".into(),
            ms: 3_000,
        },
        Touch::Count {
            counter: index::HITS,
            delta: 2,
        },
        Touch::Count {
            counter: index::LOGICAL_BYTES,
            delta: -5,
        },
    ]
}

fn encode(touches: &[Touch]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for t in touches {
        t.encode_into(&mut bytes);
    }
    bytes
}

#[test]
fn records_round_trip() {
    let touches = sample();
    assert_eq!(parse(&encode(&touches)), (touches, 0));
}

#[test]
fn a_torn_last_record_is_ignored() {
    let touches = sample();
    let bytes = encode(&touches);
    for cut in 1..30 {
        let (read, _) = parse(&bytes[..bytes.len() - cut]);
        assert_eq!(read, touches[..touches.len() - 1], "cut {cut}");
    }
}

#[test]
fn a_torn_record_followed_by_good_ones_loses_only_itself() {
    let touches = sample();
    let mut bytes = encode(&touches[..1]);
    let torn = encode(&touches[1..2]);
    bytes.extend_from_slice(&torn[..torn.len() - 3]);
    bytes.extend(encode(&touches[2..]));
    let (read, skipped) = parse(&bytes);
    let mut expected = touches.clone();
    expected.remove(1);
    assert_eq!(read, expected);
    assert_eq!(skipped, torn.len() - 3);
    // A flipped byte fails the record's check.
    let mut bytes = encode(&touches);
    bytes[HEADER + 3] ^= 1;
    assert_eq!(parse(&bytes).0, touches[1..]);
}

#[test]
fn unknown_counters_are_not_applied() {
    let mut bytes = Vec::new();
    Touch::Image {
        name: "counter/stored_bytes".into(),
        ms: 1,
    }
    .encode_into(&mut bytes);
    bytes[2] = 4;
    // Re-checksummed so only the counter name is wrong.
    let end = bytes.len() - CHECK;
    let check = checksum(&bytes[2..end]);
    bytes[end..].copy_from_slice(&check);
    assert_eq!(parse(&bytes), (vec![], 0));
}

fn options(read_first: bool) -> StoreOptions {
    StoreOptions {
        read_first,
        auto_gc: false,
        min_age: Duration::ZERO,
        default_ttl: Duration::from_secs(3600),
        lock_timeout: Duration::from_millis(300),
        ..StoreOptions::default()
    }
}

/// Rewrites a blob's, a cache entry's and an image's last use to half an hour ago.
fn age(store: &Store, blob: &crate::Digest, cache_key: &[u8; 32], image: &str) {
    let db = store.writable().unwrap();
    let old = now_ms() - 1_800_000;
    let mut info = store.stat(blob).unwrap().unwrap();
    info.last_used = from_ms(old);
    db.put(index::BLOBS, blob.as_bytes(), &info.encode())
        .unwrap();
    let mut record = store.cache_record(cache_key).unwrap().unwrap();
    record.last_used = from_ms(old);
    db.put(index::CACHE, cache_key, &record.encode()).unwrap();
    let mut record = store.image(image).unwrap().unwrap();
    record.updated = from_ms(old);
    db.put(index::IMAGES, image.as_bytes(), &record.encode())
        .unwrap();
}

#[test]
fn a_read_first_store_records_uses_in_the_log_and_a_writer_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key = [3u8; 32];
    let blob = {
        let store = Store::open(&path, options(false)).unwrap();
        let info = store.put_bytes(BlobKind::Config, b"{}").unwrap();
        store
            .put_cache_entry(
                &key,
                &CacheEntry {
                    layer: None,
                    config: info.digest,
                    ttl: None,
                },
            )
            .unwrap();
        store
            .tag_image("app:1", &info.digest, &[], ImageState::Complete)
            .unwrap();
        age(&store, &info.digest, &key, "app:1");
        info.digest
    };
    let log_path = path.join(FILE);
    let before = std::fs::metadata(path.join("index-v2").join("CURRENT")).unwrap();
    {
        let store = Store::open(&path, options(true)).unwrap();
        let section = store.read_section().unwrap();
        assert!(store.cache_entry(&key).unwrap().is_some());
        assert_eq!(store.read(&blob).unwrap().unwrap(), b"{}");
        assert_eq!(
            store.put_bytes(BlobKind::Config, b"{}").unwrap().digest,
            blob
        );
        store
            .tag_image("app:1", &blob, &[], ImageState::Complete)
            .unwrap();
        section.end().unwrap();
        assert!(
            store.index().unwrap().is_read_only(),
            "nothing opened read-write"
        );
        let (touches, skipped) = parse(&std::fs::read(&log_path).unwrap());
        assert_eq!(skipped, 0);
        assert!(touches.contains(&Touch::Count {
            counter: index::HITS,
            delta: 1
        }));
        for kind in [1, 2, 3] {
            assert!(
                touches.iter().any(|t| t.kind() == kind),
                "kind {kind}: {touches:?}"
            );
        }
    }
    // A read-only open writes nothing into the index directory.
    let after = std::fs::metadata(path.join("index-v2").join("CURRENT")).unwrap();
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());

    // The next writer merges the log and empties it.
    let store = Store::open(&path, options(false)).unwrap();
    assert_eq!(std::fs::metadata(&log_path).unwrap().len(), 0);
    let recent = |t: std::time::SystemTime| now_ms() - to_ms(t) < 60_000;
    assert!(recent(store.stat(&blob).unwrap().unwrap().last_used));
    assert!(recent(store.cache_record(&key).unwrap().unwrap().last_used));
    assert!(recent(store.image("app:1").unwrap().unwrap().updated));
}

#[test]
fn gc_waits_for_a_read_section_and_then_keeps_what_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key = [4u8; 32];
    let blob = {
        let store = Store::open(&path, options(false)).unwrap();
        let info = store.put_bytes(BlobKind::Config, b"[1]").unwrap();
        let entry = CacheEntry {
            layer: None,
            config: info.digest,
            ttl: Some(Duration::from_secs(61)),
        };
        store.put_cache_entry(&key, &entry).unwrap();
        // Used 60.5 s ago with a 61 s TTL: it expires in half a second unless a use (older
        // than the minute between recorded uses) moves it.
        let db = store.writable().unwrap();
        let mut record = store.cache_record(&key).unwrap().unwrap();
        record.last_used = from_ms(now_ms() - 60_500);
        db.put(index::CACHE, &key, &record.encode()).unwrap();
        info.digest
    };
    let reader = Store::open(&path, options(true)).unwrap();
    let gc = Store::open(&path, options(false)).unwrap();
    gc.release_index();
    let section = reader.read_section().unwrap();
    // Found before GC runs: the entry counts as used now.
    assert!(reader.cache_entry(&key).unwrap().is_some());
    let err = gc.gc().unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    // Past its old expiry: only the recorded use keeps it now.
    std::thread::sleep(Duration::from_millis(800));
    drop(section);
    reader.release_index();
    let report = gc.gc().unwrap();
    assert_eq!(report.cache_expired, 0, "{report:?}");
    assert!(gc.contains(&blob).unwrap());
    assert!(gc.cache_entry(&key).unwrap().is_some());
}

#[test]
fn a_read_first_store_opens_read_write_at_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    drop(Store::open(&path, options(false)).unwrap());
    let store = Store::open(&path, options(true)).unwrap();
    assert!(store.index().unwrap().is_read_only());
    let info = store.put_bytes(BlobKind::Other, b"new").unwrap();
    assert!(!store.index().unwrap().is_read_only());
    assert_eq!(store.read(&info.digest).unwrap().unwrap(), b"new");
    store.release_index();
    // Opened read-only again: it sees its own write.
    assert!(store.index().unwrap().is_read_only());
    assert!(store.contains(&info.digest).unwrap());
}

#[test]
fn a_read_section_that_grows_the_log_past_its_bound_merges_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let key = [5u8; 32];
    {
        let store = Store::open(&path, options(false)).unwrap();
        let info = store.put_bytes(BlobKind::Config, b"{}").unwrap();
        let entry = CacheEntry {
            layer: None,
            config: info.digest,
            ttl: None,
        };
        store.put_cache_entry(&key, &entry).unwrap();
        store
            .tag_image("app:1", &info.digest, &[], ImageState::Complete)
            .unwrap();
        age(&store, &info.digest, &key, "app:1");
    }
    // Earlier warm rebuilds' uses, just under the bound (records of a blob no longer stored).
    let log_path = path.join(FILE);
    let earlier = Touch::Blob {
        key: [9u8; 32],
        ms: now_ms(),
    };
    let one = encode(std::slice::from_ref(&earlier));
    let count = usize::try_from(MERGE_ABOVE_BYTES).unwrap() / one.len();
    std::fs::write(&log_path, one.repeat(count)).unwrap();

    let store = Store::open(&path, options(true)).unwrap();
    let log_len = || std::fs::metadata(&log_path).unwrap().len();
    // While another process's reader holds the log, the end leaves it (and does not wait).
    {
        let other = TouchLog::new(&path)
            .lock(Mode::Shared, Duration::ZERO, Duration::MAX, |_| {})
            .unwrap();
        let section = store.read_section().unwrap();
        assert!(store.cache_entry(&key).unwrap().is_some());
        section.end().unwrap();
        assert!(log_len() > MERGE_ABOVE_BYTES, "left for later");
        drop(other);
    }
    let section = store.read_section().unwrap();
    assert!(store.cache_entry(&key).unwrap().is_some());
    section.end().unwrap();
    assert_eq!(log_len(), 0, "merged");
    assert!(!store.index_is_open(), "LOCK released after the merge");
    let recent = |t: std::time::SystemTime| now_ms() - to_ms(t) < 60_000;
    assert!(recent(store.cache_record(&key).unwrap().unwrap().last_used));
}

#[test]
fn an_open_for_writes_in_the_background_leaves_waiting_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let wait = Duration::from_secs(20);
    // Another writer keeps the index, and `LOCK`, open until released.
    let writer = Store::open(
        &path,
        StoreOptions {
            idle_close: None,
            ..options(false)
        },
    )
    .unwrap();
    let old = writer.put_bytes(BlobKind::Other, b"old").unwrap();
    let store = Store::open(
        &path,
        StoreOptions {
            lock_timeout: wait,
            idle_close: None,
            ..options(true)
        },
    )
    .unwrap();
    assert!(store.index().unwrap().is_read_only());
    let opens = store.index_opens();
    // `LOCK` is taken: the background open gives up at once (a writer waits, with its
    // notice), and lookups go on from the read-only open.
    store.open_for_writes_in_background();
    std::thread::sleep(Duration::from_millis(200));
    assert!(store.contains(&old.digest).unwrap());
    assert!(store.index().unwrap().is_read_only());
    assert_eq!(store.index_opens(), opens);
    // Once `LOCK` is free a background open completes by itself, and the first write uses
    // it: one read-write open more.
    writer.release_index();
    store.open_for_writes_in_background();
    let deadline = std::time::Instant::now() + wait;
    while store.index_opens() == opens && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.index_opens(), opens + 1);
    let new = store.put_bytes(BlobKind::Other, b"new").unwrap();
    assert!(!store.index().unwrap().is_read_only());
    assert_eq!(store.index_opens(), opens + 1);
    assert!(store.contains(&new.digest).unwrap() && store.contains(&old.digest).unwrap());
}
