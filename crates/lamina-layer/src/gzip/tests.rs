use super::*;
use std::io::Read;

/// Text-like input: compressible, with repeats further apart than a block.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "layer",
        "store",
        "blob ",
        "tar\n",
        "gzip",
        "zstd",
        "index",
        "/usr/lib/",
        "0x1f8b",
    ];
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(words[(state % words.len() as u64) as usize].as_bytes());
        if state.is_multiple_of(7) {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Compresses `data` with `workers`, writing it in pieces of `chunk` bytes.
fn gzip(data: &[u8], workers: u32, chunk: usize) -> Vec<u8> {
    let mut enc = ParallelGzip::new(Vec::new(), 6, workers).unwrap();
    for part in data.chunks(chunk.max(1)) {
        enc.write_all(part).unwrap();
        enc.flush().unwrap();
    }
    enc.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn same_bytes_for_any_worker_count_and_write_pattern() {
    let data = sample(BLOCK * 5 + 12_345, 7);
    let one = gzip(&data, 1, 1 << 20);
    for (workers, chunk) in [(2, 4096), (8, 1 << 20), (3, BLOCK), (8, 1)] {
        if chunk == 1 {
            // One-byte writes are slow; a shorter input shows the same thing.
            let short = &data[..BLOCK * 2 + 3];
            assert_eq!(gzip(short, workers, 1), gzip(short, 1, 1 << 20));
            continue;
        }
        assert_eq!(gzip(&data, workers, chunk), one, "{workers} workers");
    }
    assert_eq!(gunzip(&one), data);
    // A single gzip member: the single-member decoder reads everything.
    assert!(one.len() < data.len() / 2, "text compresses");
}

#[test]
fn same_bytes_for_any_worker_count_on_machine_code() {
    // Real binary data (this test program): matches of every length and distance.
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let data = &exe[..exe.len().min(BLOCK * 24)];
    let one = gzip(data, 1, 1 << 20);
    assert_eq!(gzip(data, 2, 100_000), one);
    assert_eq!(gzip(data, 8, 1 << 16), one);
    assert_eq!(gunzip(&one), data);
}

#[test]
fn block_edges_and_empty_input_round_trip() {
    for len in [0, 1, WINDOW - 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK] {
        let data = sample(len, len as u64);
        for workers in [1, 2] {
            let packed = gzip(&data, workers, 10_000);
            assert_eq!(gunzip(&packed), data, "len {len}");
        }
    }
}

#[test]
fn gnu_gzip_reads_it() {
    let data = sample(BLOCK * 3 + 99, 3);
    let packed = gzip(&data, 2, 1 << 16);
    let mut child = std::process::Command::new("gzip")
        .args(["-d", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("GNU gzip is needed for this test (Debian's `gzip` package)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&packed));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "gzip -d failed");
    assert_eq!(output.stdout, data);
}

#[test]
fn the_dictionary_carries_matches_across_blocks() {
    // Incompressible noise repeated in every block: only the previous block's tail as
    // dictionary lets a block refer back to it.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..WINDOW / 2)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let mut data = Vec::new();
    while data.len() < BLOCK * 4 {
        data.extend_from_slice(&noise);
    }
    let packed = gzip(&data, 2, 1 << 20);
    assert_eq!(gunzip(&packed), data);
    assert!(packed.len() < noise.len() * 2, "{} bytes", packed.len());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    #[test]
    fn random_inputs_round_trip_with_any_workers(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..(BLOCK * 2 + 500)),
        repeat in 1usize..4,
        workers in 1u32..5,
        chunk in 1usize..70_000,
    ) {
        // Repeating makes some inputs compressible and longer than a block.
        let data = data.repeat(repeat);
        let packed = gzip(&data, workers, chunk);
        proptest::prop_assert_eq!(gunzip(&packed), data.clone());
        proptest::prop_assert_eq!(packed, gzip(&data, 1, 1 << 20));
    }
}
