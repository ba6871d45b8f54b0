//! The `lamina` command-line tool.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lamina: content-addressed container image builds with a layer cache.
#[derive(Debug, Parser)]
#[command(name = "lamina", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Dockerfile that a definition renders to.
    Dockerfile {
        /// A .toml definition, a Dockerfile, or a directory holding lamina.toml or Dockerfile.
        definition: PathBuf,
    },
    /// Print the definition digest: blake3 of the instructions and every local input's content.
    Digest {
        /// A .toml definition, a Dockerfile, or a directory holding lamina.toml or Dockerfile.
        definition: PathBuf,
    },
    /// Validate a definition and every local input it names.
    Check {
        /// A .toml definition, a Dockerfile, or a directory holding lamina.toml or Dockerfile.
        definition: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Broken pipes (e.g. `lamina dockerfile x | head`) are not worth a message.
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Dockerfile { definition } => {
            let image = lamina::load_definition(&definition)?;
            out.write_all(image.dockerfile().as_bytes())?;
        }
        Command::Digest { definition } => {
            let image = lamina::load_definition(&definition)?;
            writeln!(out, "{}", image.digest()?)?;
        }
        Command::Check { definition } => {
            let image = lamina::load_definition(&definition)?;
            // The digest reads every local input, so a missing or unreadable one fails here.
            let digest = image.digest()?;
            let stages = &image.definition().stages;
            let steps: usize = stages.iter().map(|stage| stage.instructions.len()).sum();
            writeln!(
                out,
                "ok: {} ({} stage{}, {} instruction{}, {digest})",
                definition.display(),
                stages.len(),
                plural(stages.len()),
                steps,
                plural(steps),
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
