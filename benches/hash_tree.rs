//! `hash-tree <dir> [--runs N]`
//!
//! Hashes every file under `<dir>` through `lamina_spec::inputs::hash_tree` (the path the
//! definition digest takes) and prints one line per run:
//! `files=<n> bytes=<n> seconds=<s> mb_per_s=<MB/s>` (MB = 10^6 bytes). Set
//! `RAYON_NUM_THREADS` to change the thread count.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use lamina_spec::inputs::{EntryKind, IgnoreRules, hash_tree};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut runs = 1usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or("--runs needs a value")?.parse()?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            path if dir.is_none() => dir = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}").into()),
        }
    }
    let dir = dir.ok_or("usage: hash-tree <dir> [--runs N]")?;
    let rules = IgnoreRules::new();
    let mut out = std::io::stdout().lock();
    for _ in 0..runs {
        let start = Instant::now();
        let entries = hash_tree(&dir, &rules)?;
        let seconds = start.elapsed().as_secs_f64();
        let (files, bytes) = entries
            .iter()
            .fold((0u64, 0u64), |(files, bytes), e| match e.kind {
                EntryKind::File { size, .. } => (files + 1, bytes + size),
                _ => (files, bytes),
            });
        let mb_per_s = bytes as f64 / 1e6 / seconds;
        writeln!(
            out,
            "files={files} bytes={bytes} seconds={seconds:.4} mb_per_s={mb_per_s:.1}"
        )?;
    }
    Ok(())
}
