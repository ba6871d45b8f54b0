//! GC, TTL, size budget, leases and accounting.

use std::io::Write;
use std::time::Duration;

use lamina_store::{
    BlobKind, CacheEntry, Compression, Digest, FsckOptions, ImageState, LayerRecord, LayerVariant,
    Store, StoreError, StoreOptions,
};

use super::{data, open, quick};

#[test]
fn gc_keeps_roots_and_sweeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let loose = store.put_bytes(BlobKind::Other, b"loose").unwrap();
    let manifest = store.put_bytes(BlobKind::Manifest, b"manifest").unwrap();
    let config = store.put_bytes(BlobKind::Config, b"config").unwrap();
    let gz = store.put_bytes(BlobKind::Layer, b"gzip bytes").unwrap();
    let tar = Digest::blake3_of(b"tar bytes");
    store
        .put_layer(&LayerRecord {
            digest: tar,
            diff_id: Digest::sha256_of(b"tar bytes"),
            size: 9,
            variants: vec![LayerVariant {
                compression: Compression::Gzip,
                digest: gz.digest,
                sha256: gz.sha256,
                size: gz.size,
                reproducible: false,
            }],
            created: std::time::SystemTime::now(),
            tar_split: None,
        })
        .unwrap();
    // References by sha256 resolve to blake3.
    store
        .tag_image(
            "app:v1",
            &manifest.sha256,
            &[config.sha256, tar],
            ImageState::Complete,
        )
        .unwrap();

    let report = store.gc().unwrap();
    assert_eq!((report.blobs_removed, report.bytes_freed), (1, 5));
    assert_eq!(report.blobs_kept, 3);
    assert!(store.stat(&loose.digest).unwrap().is_none());
    assert!(!store.blob_path(&loose).exists());
    for kept in [&manifest, &config, &gz] {
        store.verify(&kept.digest).unwrap();
    }
    assert!(store.layer(&tar).unwrap().is_some());

    // Pinned images refuse removal; once removed, everything goes.
    store.set_pinned("app:v1", true).unwrap();
    assert!(matches!(
        store.remove_image("app:v1"),
        Err(StoreError::Pinned { .. })
    ));
    store.set_pinned("app:v1", false).unwrap();
    store.remove_image("app:v1").unwrap();
    let report = store.gc().unwrap();
    assert_eq!((report.blobs_removed, report.layers_removed), (3, 1));
    assert_eq!(store.stats().unwrap().stored_bytes, 0);
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn young_blobs_survive_gc() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        min_age: Duration::from_secs(600),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    let info = store.put_bytes(BlobKind::Other, b"fresh").unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 0);
    store.verify(&info.digest).unwrap();
}

#[test]
fn cache_entries_expire_after_their_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        default_ttl: Duration::from_millis(150),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    let short = store.put_bytes(BlobKind::Config, b"short-lived").unwrap();
    let long = store.put_bytes(BlobKind::Config, b"long-lived").unwrap();
    let entry = |config: Digest, ttl| CacheEntry {
        layer: None,
        config,
        ttl,
    };
    store
        .put_cache_entry(&[1; 32], &entry(short.digest, None))
        .unwrap();
    store
        .put_cache_entry(
            &[2; 32],
            &entry(long.digest, Some(Duration::from_secs(3600))),
        )
        .unwrap();
    assert!(store.cache_entry(&[1; 32]).unwrap().is_some());
    assert_eq!(store.gc().unwrap().blobs_removed, 0);

    std::thread::sleep(Duration::from_millis(250));
    assert!(
        store.cache_entry(&[1; 32]).unwrap().is_none(),
        "expired entries are misses"
    );
    let report = store.gc().unwrap();
    assert_eq!((report.cache_expired, report.blobs_removed), (1, 1));
    assert!(store.stat(&short.digest).unwrap().is_none());
    assert_eq!(
        store.cache_entry(&[2; 32]).unwrap().unwrap().config,
        long.digest
    );

    let missing = CacheEntry {
        layer: Some(Digest::blake3_of(b"x")),
        config: long.digest,
        ttl: None,
    };
    assert!(matches!(
        store.put_cache_entry(&[3; 32], &missing),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn size_budget_evicts_least_recently_used_entries() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_size: Some(2_500),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    for i in 0..4u8 {
        let blob = store
            .put_bytes(BlobKind::Config, &data(u64::from(i) + 10, 1000))
            .unwrap();
        store
            .put_cache_entry(
                &[i; 32],
                &CacheEntry {
                    layer: None,
                    config: blob.digest,
                    ttl: None,
                },
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = store.gc().unwrap();
    assert_eq!(report.cache_evicted, 2);
    assert!(report.budget_met);
    assert!(store.stats().unwrap().stored_bytes <= 2_500);
    assert!(store.cache_entry(&[0; 32]).unwrap().is_none());
    assert!(store.cache_entry(&[1; 32]).unwrap().is_none());
    assert!(store.cache_entry(&[2; 32]).unwrap().is_some());
    assert!(store.cache_entry(&[3; 32]).unwrap().is_some());
}

#[test]
fn leases_protect_blobs_of_builds_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let lease = store.lease(Duration::from_secs(60)).unwrap();
    let mut w = store.writer(BlobKind::Layer).unwrap().lease(&lease);
    w.write_all(b"layer being built").unwrap();
    let written = w.commit().unwrap();
    let added = store
        .put_bytes(BlobKind::Config, b"config being built")
        .unwrap();
    lease.add(&added.sha256).unwrap();
    assert_eq!(store.stats().unwrap().leases, 1);
    assert_eq!(store.gc().unwrap().blobs_removed, 0);
    lease.release().unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 2);
    assert!(store.stat(&written.digest).unwrap().is_none());

    let expired = store.lease(Duration::from_millis(1)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(
        expired.add(&added.digest),
        Err(StoreError::LeaseReleased { .. })
    ));
    assert_eq!(store.gc().unwrap().leases_expired, 1);
}

#[test]
fn accounting_matches_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut keep = Vec::new();
    for i in 0..40 {
        let info = store
            .put_bytes(BlobKind::Layer, &data(100 + i, (i as usize) * 997))
            .unwrap();
        if i % 2 == 0 {
            keep.push(info.digest);
        }
    }
    let check = |store: &Store| {
        let stats = store.stats().unwrap();
        let du = store.du().unwrap();
        assert_eq!(stats.stored_bytes, du.blob_files_bytes);
        let by_kind: u64 = du.kinds.iter().map(|k| k.bytes).sum();
        assert_eq!(by_kind, du.blob_files_bytes);
        assert!(du.index_bytes > 0);
        // The free-space reserve, 8 MiB of real blocks, is part of what the store holds.
        assert_eq!(du.reserve_bytes, 8 << 20);
        assert_eq!(
            du.total_bytes(),
            du.blob_files_bytes + du.index_bytes + du.tmp_bytes + du.reserve_bytes
        );
    };
    check(&store);
    let manifest = store.put_bytes(BlobKind::Manifest, b"m").unwrap();
    store
        .tag_image("keep:1", &manifest.digest, &keep, ImageState::Complete)
        .unwrap();
    assert_eq!(store.gc().unwrap().blobs_removed, 20);
    check(&store);
    drop(store);
    check(&open(dir.path()));
}

#[test]
fn automatic_gc_runs_after_writes_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), options_with_auto()).unwrap();
    // A fresh store has never collected: the first put triggers GC, which (min_age 0)
    // takes the unreferenced blob; the next put falls inside the interval.
    let first = store.put_bytes(BlobKind::Other, b"first").unwrap();
    assert!(store.stat(&first.digest).unwrap().is_none());
    let second = store.put_bytes(BlobKind::Other, b"second").unwrap();
    assert!(store.stat(&second.digest).unwrap().is_some());
    drop(store);
    // The last GC time persists, so reopening does not collect again at once.
    let store = Store::open(dir.path().join("store"), options_with_auto()).unwrap();
    store.put_bytes(BlobKind::Other, b"third").unwrap();
    assert!(store.stat(&second.digest).unwrap().is_some());
}

fn options_with_auto() -> StoreOptions {
    StoreOptions {
        auto_gc: true,
        gc_interval: Duration::from_secs(3600),
        ..quick()
    }
}

/// A tree-backed layer (its tar-split stored, no plain blob) with a reproducible gzip
/// variant of `len` bytes, kept by a cache entry (key `[seed; 32]`); returns the layer key
/// and the gzip blob.
fn tree_layer_with_gzip(store: &Store, seed: u8, len: usize) -> (Digest, lamina_store::BlobInfo) {
    let (key, gz) = tree_layer(store, seed, 64, Some(len));
    (key, gz.unwrap())
}

/// A tree-backed layer of a `tar_len`-byte tar (its tar-split stored, no plain blob), with
/// a reproducible gzip variant of `gzip_len` bytes if given, kept by a cache entry (key
/// `[seed; 32]`); returns the layer key and the gzip blob.
fn tree_layer(
    store: &Store,
    seed: u8,
    tar_len: usize,
    gzip_len: Option<usize>,
) -> (Digest, Option<lamina_store::BlobInfo>) {
    let seed64 = u64::from(seed);
    let tar = data(seed64, tar_len);
    let key = Digest::blake3_of(&tar);
    let split = store
        .put_bytes(BlobKind::TarSplit, &data(seed64 + 100, 32))
        .unwrap();
    let mut variants = vec![LayerVariant::plain(
        key,
        Digest::sha256_of(&tar),
        tar.len() as u64,
    )];
    let gz = gzip_len.map(|len| {
        store
            .put_bytes(BlobKind::Layer, &data(seed64 + 200, len))
            .unwrap()
    });
    if let Some(gz) = &gz {
        variants.push(LayerVariant {
            compression: Compression::Gzip,
            digest: gz.digest,
            sha256: gz.sha256,
            size: gz.size,
            reproducible: true,
        });
    }
    store
        .put_layer(&LayerRecord {
            digest: key,
            diff_id: Digest::sha256_of(&tar),
            size: tar.len() as u64,
            variants,
            created: std::time::SystemTime::now(),
            tar_split: Some(split.digest),
        })
        .unwrap();
    let config = store
        .put_bytes(BlobKind::Config, &data(seed64 + 300, 16))
        .unwrap();
    let entry = CacheEntry {
        layer: Some(key),
        config: config.digest,
        ttl: Some(Duration::from_secs(3600)),
    };
    store.put_cache_entry(&[seed; 32], &entry).unwrap();
    (key, gz)
}

/// Tags an image whose manifest names layer `key` (its variants are what the manifest's
/// descriptors point at).
fn name_in_image(store: &Store, seed: u8, key: Digest) {
    let config = store
        .put_bytes(BlobKind::Config, &data(u64::from(seed) + 500, 16))
        .unwrap();
    let manifest = store
        .put_bytes(BlobKind::Manifest, &data(u64::from(seed) + 400, 16))
        .unwrap();
    store
        .tag_image(
            &format!("app:{seed}"),
            &manifest.sha256,
            &[config.sha256, key],
            ImageState::Complete,
        )
        .unwrap();
}

fn has_gzip(store: &Store, key: &Digest) -> bool {
    let record = store.layer(key).unwrap().unwrap();
    assert!(record.is_tree_backed(), "the layer itself stays");
    record
        .variants
        .iter()
        .any(|v| v.compression == Compression::Gzip)
}

#[test]
fn size_budget_drops_reproducible_variants_of_tree_backed_layers_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (old, old_gz) = tree_layer_with_gzip(&store, 1, 1000);
    std::thread::sleep(Duration::from_millis(5));
    let (new, new_gz) = tree_layer_with_gzip(&store, 2, 1000);
    // Without a budget both stay.
    assert_eq!(store.gc().unwrap().variants_dropped, 0);
    let everything = store.stats().unwrap().stored_bytes;
    drop(store);

    // Room for one variant: the least recently used one goes, from its record too.
    let options = StoreOptions {
        max_size: Some(everything - 500),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options.clone()).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.variants_dropped, 1);
    assert_eq!(report.cache_evicted, 0);
    assert!(report.budget_met);
    assert_eq!(report.bytes_freed, 1000);
    assert!(store.stat(&old_gz.digest).unwrap().is_none());
    assert!(!has_gzip(&store, &old));
    assert!(store.stat(&new_gz.digest).unwrap().is_some());
    assert!(has_gzip(&store, &new));
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());

    // A lease (a push or build in progress holding the layer) keeps its variant whole, even
    // with no room at all; released, the budget takes it (with the cache entries, which do
    // not fit either).
    drop(store);
    let store = Store::open(
        dir.path().join("store"),
        StoreOptions {
            max_size: Some(1),
            ..options
        },
    )
    .unwrap();
    let lease = store.lease(Duration::from_secs(60)).unwrap();
    lease.add(&new).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.variants_dropped, 0);
    assert!(has_gzip(&store, &new));
    lease.release().unwrap();
    store.gc().unwrap();
    assert!(store.stat(&new_gz.digest).unwrap().is_none());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn young_variants_are_not_dropped_for_size() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_size: Some(1),
        min_age: Duration::from_secs(600),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    // Made just now (a push that is still uploading it): young.
    let (key, _) = tree_layer_with_gzip(&store, 3, 1000);
    assert_eq!(store.gc().unwrap().variants_dropped, 0);
    assert!(has_gzip(&store, &key));
}

/// Regression: a variant a stored image's manifest names is the image's, not a cache a
/// budget may trim: dropping it made the image fail to load ("no stored variant").
#[test]
fn variants_of_layers_an_image_names_are_kept_under_any_budget() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_size: Some(1),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    let (named, named_gz) = tree_layer_with_gzip(&store, 4, 1000);
    name_in_image(&store, 4, named);
    let (cached, _) = tree_layer_with_gzip(&store, 5, 1000);
    let report = store.gc().unwrap();
    assert!(has_gzip(&store, &named), "{report:?}");
    assert!(store.stat(&named_gz.digest).unwrap().is_some());
    assert!(
        store
            .layer(&cached)
            .unwrap()
            .is_none_or(|r| r.variants.len() == 1),
        "the layer only a cache entry kept loses its variant (or goes whole): {report:?}"
    );
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

/// A tree-backed layer's tree is the layer: the budget weighs it at its tar's size, so a
/// cache entry whose tree does not fit is evicted (and its layer with it) though its blobs
/// are small.
#[test]
fn size_budget_counts_the_trees_of_tree_backed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_size: Some(15_000),
        ..quick()
    };
    let store = Store::open(dir.path().join("store"), options).unwrap();
    let mut keys = Vec::new();
    for seed in 1..=2u8 {
        let (key, _) = tree_layer(&store, seed, 10_000, None);
        keys.push(key);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        store.stats().unwrap().stored_bytes < 1_000,
        "the blobs are small"
    );
    let report = store.gc().unwrap();
    assert_eq!(report.cache_evicted, 1);
    assert_eq!(report.layers_removed, 1);
    assert!(report.budget_met);
    assert!(store.cache_entry(&[1; 32]).unwrap().is_none());
    assert!(store.layer(&keys[0]).unwrap().is_none());
    assert!(store.layer(&keys[1]).unwrap().is_some());
}
