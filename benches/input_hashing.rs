//! Throughput of local-input hashing (`lamina_spec::inputs::hash_tree`, the path every
//! `COPY`/`ADD` input takes into the definition digest) on two trees: many small files and a
//! few large ones. Trees are generated once per run into a temporary directory; the page
//! cache is warm after the first iteration, so this measures hashing and file-system calls,
//! not disk reads.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lamina_benches::{TreeSpec, generate_tree};
use lamina_spec::inputs::{IgnoreRules, hash_tree};

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = input_hashing
}
criterion_main!(benches);
