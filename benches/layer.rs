//! Throughput of the layer engine's hot paths: the two tar digests (blake3, sha256), zstd at
//! a few levels, the one-pass `LayerWriter` (tar alone and tar + zstd + three digests) and the
//! `Unpacker`. Hashing and zstd run on 32 MiB in memory; the writer and unpacker on a ~51 MB
//! generated tree (2,000 files of 1–16 KiB and 2 of 16 MiB, pseudo-random content that does
//! not compress), page cache warm after the first iteration.

use std::io::Write;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lamina_benches::{TreeSpec, generate_tree};
use lamina_layer::{Compression, LayerOptions, LayerWriter, UnpackOptions, Unpacker};
use sha2::Digest as _;

const BUFFER: usize = 32 << 20;

fn tree_spec() -> TreeSpec {
    TreeSpec {
        small_files: 2_000,
        large_files: 2,
        large_size: 16 << 20,
        ..TreeSpec::small_files()
    }
}

/// Text-like bytes (words from a small vocabulary) that zstd level 3 shrinks about 3:1, so the
/// zstd figures are not those of its incompressible-input fast path.
fn compressible(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "layer", "tar", "digest", "sha256", "blake3", "zstd", "image", "build", "cache", "store",
        "the", "of", "a", "to", "and", "\n",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(WORDS[(state % 16) as usize].as_bytes());
        out.push(if state & 0x300 == 0 { b'_' } else { b' ' });
        if state & 0xf000 == 0 {
            out.extend_from_slice(&state.to_le_bytes()[..3]);
        }
    }
    out.truncate(len);
    out
}

fn hashing(c: &mut Criterion) {
    let data = compressible(BUFFER);
    let mut group = c.benchmark_group("layer_hash");
    group.throughput(Throughput::Bytes(data.len() as u64));
    // 1 MiB updates, as the writer feeds them.
    group.bench_function("blake3", |b| {
        b.iter(|| {
            let mut h = blake3::Hasher::new();
            data.chunks(1 << 20).for_each(|c| {
                h.update(c);
            });
            h.finalize()
        });
    });
    group.bench_function("sha256", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            data.chunks(1 << 20).for_each(|c| h.update(c));
            h.finalize()
        });
    });
    group.finish();
}

fn zstd_levels(c: &mut Criterion) {
    let data = compressible(BUFFER);
    let mut group = c.benchmark_group("layer_zstd");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(data.len() as u64));
    for level in [1, 3, 9] {
        // The writer's settings: 2 workers and a checksum.
        group.bench_function(format!("level_{level}_2_workers"), |b| {
            b.iter(|| {
                let out = Vec::with_capacity(data.len() / 2);
                let mut enc = zstd::stream::write::Encoder::new(out, level).expect("encoder");
                enc.multithread(2).expect("zstd workers");
                enc.include_checksum(true).expect("zstd checksum");
                enc.write_all(&data).expect("compress");
                enc.finish().expect("finish").len()
            });
        });
    }
    group.finish();
}

fn writer_and_unpacker(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let tree = dir.path().join("tree");
    generate_tree(&tree, &tree_spec()).expect("generate tree");
    let zstd = LayerOptions::default().mtime_clamp(Some(0));
    let plain = zstd.clone().compression(Compression::None);

    let mut group = c.benchmark_group("layer_write");
    group.sampling_mode(SamplingMode::Flat);
    let tar_bytes = LayerWriter::new(plain.clone())
        .write_tree(&tree, std::io::sink())
        .expect("write layer")
        .uncompressed_size;
    group.throughput(Throughput::Bytes(tar_bytes));
    for (name, options) in [
        ("tar_2_digests", plain.clone()),
        ("zstd_3_2_workers_3_digests", zstd.clone()),
        ("zstd_3_1_worker_3_digests", zstd.clone().zstd_workers(1)),
    ] {
        let writer = LayerWriter::new(options);
        group.bench_function(name, |b| {
            b.iter(|| {
                writer
                    .write_tree(&tree, std::io::sink())
                    .expect("write layer")
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("layer_unpack");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(tar_bytes));
    let unpacker = Unpacker::new(UnpackOptions::default().same_owner(false));
    for (name, options) in [("tar", plain), ("zstd_3", zstd)] {
        let mut blob = Vec::new();
        LayerWriter::new(options)
            .write_tree(&tree, &mut blob)
            .expect("write layer");
        group.bench_function(name, |b| {
            b.iter_batched(
                || tempfile::tempdir_in(dir.path()).expect("target directory"),
                |target| {
                    unpacker.unpack(&blob[..], target.path()).expect("unpack");
                    // Returned, so the removal is not timed.
                    target
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hashing, zstd_levels, writer_and_unpacker
}
criterion_main!(benches);
