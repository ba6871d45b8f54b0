//! `lamina_store::Store` hot paths: putting new and duplicate blobs (1 KiB and 100 MiB),
//! reading them back, looking a cache key up among 1 million entries, and a GC that sweeps
//! 100,000 expired cache entries. Every store lives in a temporary directory created by the
//! run; page caches are warm after the first iteration, so reads measure the store, not the
//! disk. Stores are opened with `auto_gc: false` so no collection lands inside a measurement.
//!
//! Beyond criterion's mean and median, the lookup bench times 100,000 lookups one by one and
//! prints their percentiles, since the goal for lookups is stated as a p50.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use lamina_store::{BlobKind, CacheEntry, Digest, ImageState, Store, StoreOptions};

const SMALL: usize = 1024;
const LARGE: usize = 100 * 1024 * 1024;
const LOOKUP_ENTRIES: u64 = 1_000_000;
const TIMED_LOOKUPS: usize = 100_000;
const GC_ENTRIES: u64 = 100_000;
const GC_BLOBS: u64 = 1_000;

/// splitmix64: cheap, deterministic pseudo-random numbers for keys and content.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Options for bench stores: no automatic GC, and `min_age` 0 so an explicit `gc()` may
/// take anything unreferenced at once.
fn bench_options(sync: bool) -> StoreOptions {
    StoreOptions {
        min_age: Duration::ZERO,
        auto_gc: false,
        sync,
        ..StoreOptions::default()
    }
}

fn open(dir: &Path, sync: bool) -> Store {
    Store::open(dir.join("store"), bench_options(sync)).expect("open store")
}

/// The cache key of entry `i`: keys are blake3 outputs in real use, so spread like these.
fn cache_key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

/// Writes a per-iteration counter into the first bytes so every put stores new content.
fn make_unique(buf: &mut [u8], counter: &mut u64) {
    *counter += 1;
    buf[..8].copy_from_slice(&counter.to_le_bytes());
}

/// put (new and duplicate) and the plain blake3 hash of the same bytes, for one size.
fn bench_put(group: &mut BenchmarkGroup<'_, WallTime>, dir: &Path, size: usize, rng: &mut Rng) {
    // Default durability (fsync of blob file, directory and index), as users get it.
    let store = open(&dir.join(format!("put-{size}")), true);
    let mut fresh = rng.bytes(size);
    let mut counter = 0u64;
    group.bench_function("new", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                make_unique(&mut fresh, &mut counter);
                let start = Instant::now();
                black_box(store.put_bytes(BlobKind::Layer, &fresh).expect("put new"));
                total += start.elapsed();
                if size == LARGE {
                    // Untimed: keeps the disk footprint at one large blob.
                    store.gc().expect("gc between large puts");
                }
            }
            total
        });
    });

    let stored = rng.bytes(size);
    store
        .put_bytes(BlobKind::Layer, &stored)
        .expect("put the duplicate's original");
    group.bench_function("duplicate", |b| {
        b.iter(|| {
            store
                .put_bytes(BlobKind::Layer, black_box(&stored))
                .expect("put duplicate")
        });
    });
    group.bench_function("blake3_hash", |b| {
        b.iter(|| blake3::hash(black_box(&stored)));
    });

    if size == LARGE {
        // `put_file` hashes a memory-mapped file on every core before deciding to copy.
        let file = dir.join("large-input");
        std::fs::File::create(&file)
            .and_then(|mut f| f.write_all(&stored))
            .expect("write input file");
        group.bench_function("duplicate_file", |b| {
            b.iter(|| {
                store
                    .put_file(BlobKind::Layer, black_box(&file))
                    .expect("put_file duplicate")
            });
        });
        group.bench_function("blake3_hash_file_mmap_rayon", |b| {
            b.iter(|| {
                let mut hasher = blake3::Hasher::new();
                hasher
                    .update_mmap_rayon(black_box(&file))
                    .expect("hash file");
                hasher.finalize()
            });
        });
    }
}

fn put(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut rng = Rng(1);

    let mut group = c.benchmark_group("put_1KiB");
    group.throughput(Throughput::Bytes(SMALL as u64));
    bench_put(&mut group, dir.path(), SMALL, &mut rng);
    group.finish();

    let mut group = c.benchmark_group("put_100MiB");
    group.throughput(Throughput::Bytes(LARGE as u64));
    // One iteration takes tens to hundreds of milliseconds: flat sampling, 10 samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    bench_put(&mut group, dir.path(), LARGE, &mut rng);
    group.finish();
}

fn get(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open(dir.path(), true);
    let mut rng = Rng(2);
    let small = store
        .put_bytes(BlobKind::Config, &rng.bytes(SMALL))
        .expect("put small")
        .digest;
    let large = store
        .put_bytes(BlobKind::Layer, &rng.bytes(LARGE))
        .expect("put large")
        .digest;

    let mut group = c.benchmark_group("get");
    group.throughput(Throughput::Bytes(SMALL as u64));
    group.bench_function("1KiB_read", |b| {
        b.iter(|| store.read(black_box(&small)).expect("read").expect("hit"));
    });
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("100MiB_read", |b| {
        b.iter(|| store.read(black_box(&large)).expect("read").expect("hit"));
    });
    // Lookup, open and mmap; pages are touched only by whoever reads the bytes.
    group.bench_function("100MiB_map", |b| {
        b.iter(|| store.map(black_box(&large)).expect("map").expect("hit"));
    });
    group.finish();
}

/// Stores two blobs and returns (layer, config) digests for cache entries to point at.
fn entry_targets(store: &Store) -> (Digest, Digest) {
    let layer = store
        .put_bytes(BlobKind::Layer, b"bench layer")
        .expect("put layer")
        .digest;
    let config = store
        .put_bytes(BlobKind::Config, b"{\"bench\":\"config\"}")
        .expect("put config")
        .digest;
    (layer, config)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Times `keys` one lookup at a time; returns the sorted durations and how many lookups
/// rewrote the entry's last-used time (hits on entries last used a minute or more ago).
fn timed_lookups(store: &Store, keys: &[[u8; 32]]) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(keys.len());
    let mut touched = 0;
    // Records keep millisecond times: allow for the truncation.
    let pass_start = SystemTime::now() - Duration::from_millis(1);
    for key in keys {
        let start = Instant::now();
        let found = store.cache_entry(black_box(key)).expect("lookup");
        times.push(start.elapsed());
        if found.is_some_and(|r| r.last_used != r.created && r.last_used >= pass_start) {
            touched += 1;
        }
    }
    times.sort_unstable();
    (times, touched)
}

#[allow(
    clippy::print_stdout,
    reason = "a bench prints its setup times and percentiles next to criterion's report"
)]
fn report_percentiles(label: &str, times: &[Duration], touched: usize) {
    println!(
        "cache_lookup_1M {label}: n={} p50={:.2?} p90={:.2?} p99={:.2?} p99.9={:.2?} \
         max={:.2?} (last-used rewrites: {touched})",
        times.len(),
        percentile(times, 0.50),
        percentile(times, 0.90),
        percentile(times, 0.99),
        percentile(times, 0.999),
        times[times.len() - 1],
    );
}

#[allow(
    clippy::print_stdout,
    reason = "a bench prints its setup times and percentiles next to criterion's report"
)]
fn cache_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys: Vec<[u8; 32]> = (0..LOOKUP_ENTRIES).map(cache_key).collect();

    let start = Instant::now();
    {
        let store = open(dir.path(), false);
        let (layer, config) = entry_targets(&store);
        let entry = CacheEntry {
            layer: Some(layer),
            config,
            ttl: None,
        };
        for key in &keys {
            store.put_cache_entry(key, &entry).expect("put cache entry");
        }
    }
    let built = start.elapsed();
    // Reopened as a later build would find it: RocksDB recovers the index from its log
    // rather than serving every lookup from the table the writes just filled.
    let start = Instant::now();
    let store = open(dir.path(), false);
    println!(
        "cache_lookup_1M setup: {LOOKUP_ENTRIES} entries written in {built:.2?}, \
         store reopened in {:.2?}",
        start.elapsed()
    );

    let mut rng = Rng(3);
    let sample: Vec<[u8; 32]> = (0..TIMED_LOOKUPS)
        .map(|_| keys[rng.below(LOOKUP_ENTRIES) as usize])
        .collect();
    let (times, touched) = timed_lookups(&store, &sample);
    report_percentiles("hit, first lookup", &times, touched);
    let (times, touched) = timed_lookups(&store, &sample);
    report_percentiles("hit, repeated", &times, touched);
    let misses: Vec<[u8; 32]> = (0..TIMED_LOOKUPS as u64)
        .map(|i| cache_key(LOOKUP_ENTRIES + i))
        .collect();
    let (times, touched) = timed_lookups(&store, &misses);
    report_percentiles("miss", &times, touched);

    let mut group = c.benchmark_group("cache_lookup_1M");
    group.bench_function("hit_random", |b| {
        b.iter(|| {
            let key = &keys[rng.below(LOOKUP_ENTRIES) as usize];
            store
                .cache_entry(black_box(key))
                .expect("lookup")
                .expect("hit")
        });
    });
    let mut next_miss = 0;
    group.bench_function("miss", |b| {
        b.iter(|| {
            next_miss = (next_miss + 1) % misses.len();
            let found = store
                .cache_entry(black_box(&misses[next_miss]))
                .expect("lookup");
            assert!(found.is_none());
        });
    });
    group.finish();
}

/// A store holding `GC_ENTRIES` expired cache entries. With `blobs`, they point at
/// `GC_BLOBS` config blobs that nothing else keeps, so GC deletes those too; without, they
/// share one config kept by a named image, so GC only sweeps index records.
fn gc_store(dir: &Path, blobs: bool) -> Store {
    let store = open(dir, false);
    let configs: Vec<Digest> = if blobs {
        // Each put fsyncs its file: spread them over threads to shorten the setup.
        let mut configs = Vec::new();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        (t..GC_BLOBS)
                            .step_by(4)
                            .map(|i| {
                                let mut content = Rng(i).bytes(SMALL);
                                content[..8].copy_from_slice(&i.to_le_bytes());
                                store
                                    .put_bytes(BlobKind::Config, &content)
                                    .expect("put config")
                                    .digest
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                configs.extend(h.join().expect("setup thread"));
            }
        });
        configs
    } else {
        let (layer, config) = entry_targets(&store);
        store
            .tag_image("bench:keep", &layer, &[config], ImageState::Complete)
            .expect("tag image");
        vec![config]
    };
    for i in 0..GC_ENTRIES {
        let entry = CacheEntry {
            layer: None,
            config: configs[(i % configs.len() as u64) as usize],
            // Expires the moment it is written.
            ttl: Some(Duration::ZERO),
        };
        store
            .put_cache_entry(&cache_key(i), &entry)
            .expect("put cache entry");
    }
    store
}

fn gc(c: &mut Criterion) {
    let mut group = c.benchmark_group("gc_100k_expired_entries");
    // Every iteration needs a fresh store (seconds to build): 10 samples of one GC each.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(1));
    for (name, blobs) in [("index_only", false), ("with_1k_blobs", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("temporary directory");
                    let store = gc_store(dir.path(), blobs);
                    let start = Instant::now();
                    let report = store.gc().expect("gc");
                    total += start.elapsed();
                    assert_eq!(report.cache_expired, GC_ENTRIES);
                    assert_eq!(report.blobs_removed, if blobs { GC_BLOBS } else { 0 });
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = put, get, cache_lookup, gc
}
criterion_main!(benches);
