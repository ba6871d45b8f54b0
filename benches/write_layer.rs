//! `write-layer <dir> <out> [--compression zstd|gzip|none] [--level N] [--workers N]
//! [--runs N]`
//!
//! Writes `<dir>` as a layer into the file `<out>` (e.g. `/dev/null`) through
//! `lamina_layer::LayerWriter` (defaults: zstd level 3, 2 workers, no mtime clamp) and prints
//! one line per run: `tar_bytes=<n> blob_bytes=<n> seconds=<s> mb_per_s=<MB/s>`, where MB/s is
//! 10^6 bytes of uncompressed tar per second.

use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use lamina_layer::{Compression, LayerOptions, LayerWriter};

const USAGE: &str = "usage: write-layer <dir> <out> [--compression zstd|gzip|none] [--level N] \
                     [--workers N] [--runs N]";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut options = LayerOptions::default();
    let mut runs = 1usize;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--compression" => {
                options = options.compression(match value()?.as_str() {
                    "zstd" => Compression::Zstd,
                    "gzip" => Compression::Gzip,
                    "none" => Compression::None,
                    other => {
                        return Err(format!(
                            "unknown compression {other:?}: use zstd, gzip or none"
                        )
                        .into());
                    }
                })
            }
            "--level" => options = options.level(Some(value()?.parse()?)),
            "--workers" => options = options.zstd_workers(value()?.parse()?),
            "--runs" => runs = value()?.parse()?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            path if paths.len() < 2 => paths.push(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}").into()),
        }
    }
    let [dir, out_path] = <[PathBuf; 2]>::try_from(paths).map_err(|_| USAGE)?;
    let writer = LayerWriter::new(options);
    let mut stdout = std::io::stdout().lock();
    for _ in 0..runs {
        let out = File::create(&out_path)?;
        let start = Instant::now();
        let info = writer.write_tree(&dir, out)?;
        let seconds = start.elapsed().as_secs_f64();
        let mb_per_s = info.uncompressed_size as f64 / 1e6 / seconds;
        writeln!(
            stdout,
            "tar_bytes={} blob_bytes={} seconds={seconds:.4} mb_per_s={mb_per_s:.1}",
            info.uncompressed_size, info.size
        )?;
    }
    Ok(())
}
