//! Throughput of local-input hashing (`lamina_spec::inputs::hash_tree`, the path every
//! `COPY`/`ADD` input takes into the definition digest) on two trees: many small files and a
//! few large ones. Trees are generated once per run into a temporary directory; the page
//! cache is warm after the first iteration, so this measures hashing and file-system calls,
//! not disk reads.
//!
//! `input_hashing_cache/*` hashes a 50,000-file tree (256 B–4 KiB each) three ways:
//! - `cold`: no content-hash cache, every file read (what every build did before the cache);
//! - `cold_record`: an empty `lamina_exec` hash cache, every file read and recorded, and the
//!   cache file written (a first build);
//! - `warm`: the cache file loaded and every file answered from it by its stamp, no content
//!   read (a rebuild of an unchanged context);
//! - `load`: only loading the cache file, a part of `warm`.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lamina_benches::{TreeSpec, generate_tree};
use lamina_exec::build::hash_cache::{FILE_NAME, HashCache};
use lamina_spec::inputs::{IgnoreRules, RACY_WINDOW, hash_tree, hash_tree_cached};

fn input_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("input_hashing");
    // One iteration takes 0.1 s or more: flat sampling keeps 10 samples within the budget.
    group.sampling_mode(SamplingMode::Flat);
    let rules = IgnoreRules::new();
    for (name, spec) in [
        ("small_files", TreeSpec::small_files()),
        ("large_files", TreeSpec::large_files()),
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let stats = generate_tree(dir.path(), &spec).expect("generate tree");
        group.throughput(Throughput::Bytes(stats.bytes));
        group.bench_function(name, |b| {
            b.iter(|| hash_tree(dir.path(), &rules).expect("hash tree"));
        });
    }
    group.finish();
}

/// 50,000 small files: the shape of a large source checkout.
fn many_files() -> TreeSpec {
    TreeSpec {
        small_files: 50_000,
        small_min: 256,
        small_max: 4096,
        ..TreeSpec::small_files()
    }
}

fn input_hashing_cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("input_hashing_cache");
    group.sampling_mode(SamplingMode::Flat);
    let rules = IgnoreRules::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let tree = dir.path().join("tree");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work directory");
    let stats = generate_tree(&tree, &many_files()).expect("generate tree");
    // Files younger than the racy window are never recorded.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(500));
    group.throughput(Throughput::Elements(stats.files as u64));

    group.bench_function("cold", |b| {
        b.iter(|| hash_tree(&tree, &rules).expect("hash tree"));
    });
    group.bench_function("cold_record", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(work.join(FILE_NAME));
            let cache = HashCache::open(&work);
            let entries = hash_tree_cached(&tree, &rules, Some(&cache)).expect("hash tree");
            cache.save().expect("save hash cache");
            entries
        });
    });
    let cache = HashCache::open(&work);
    hash_tree_cached(&tree, &rules, Some(&cache)).expect("hash tree");
    cache.save().expect("save hash cache");
    assert_eq!(cache.len(), stats.files, "every file recorded");
    group.bench_function("load", |b| {
        b.iter(|| HashCache::open(&work));
    });
    group.bench_function("warm", |b| {
        b.iter(|| {
            let cache = HashCache::open(&work);
            let entries = hash_tree_cached(&tree, &rules, Some(&cache)).expect("hash tree");
            assert_eq!(cache.stats().hits, stats.files as u64, "every file a hit");
            entries
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = input_hashing, input_hashing_cache
}
criterion_main!(benches);
