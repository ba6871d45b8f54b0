//! `gen-tree <dir> [--preset small|large|mixed|layer] [--small-files N] [--small-min BYTES]
//! [--small-max BYTES] [--large-files N] [--large-mib MIB] [--seed N] [--compressible]`
//!
//! Writes a deterministic benchmark tree (see `lamina_benches::generate_tree`) and prints
//! `files=<n> bytes=<n>`.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lamina_benches::{TreeSpec, generate_tree};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut spec = TreeSpec::mixed();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--preset" => {
                spec = match value()?.as_str() {
                    "small" => TreeSpec::small_files(),
                    "large" => TreeSpec::large_files(),
                    "mixed" => TreeSpec::mixed(),
                    "layer" => TreeSpec::layer(),
                    other => {
                        return Err(format!(
                            "unknown preset {other:?}: use small, large, mixed or layer"
                        )
                        .into());
                    }
                }
            }
            "--small-files" => spec.small_files = value()?.parse()?,
            "--small-min" => spec.small_min = value()?.parse()?,
            "--small-max" => spec.small_max = value()?.parse()?,
            "--large-files" => spec.large_files = value()?.parse()?,
            "--large-mib" => spec.large_size = value()?.parse::<u64>()? << 20,
            "--seed" => spec.seed = value()?.parse()?,
            "--compressible" => spec.compressible = true,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            path if dir.is_none() => dir = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}").into()),
        }
    }
    let dir = dir
        .ok_or("usage: gen-tree <dir> [--preset small|large|mixed|layer] [--small-files N] ...")?;
    let stats = generate_tree(&dir, &spec)?;
    writeln!(
        std::io::stdout().lock(),
        "files={} bytes={}",
        stats.files,
        stats.bytes
    )?;
    Ok(())
}
