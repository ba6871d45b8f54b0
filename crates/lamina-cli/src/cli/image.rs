//! `lamina image ls|inspect|history|tag|rm|import|export`: the images in the store.

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::Subcommand;
use lamina::export::ArchiveFormat;
use lamina::export::image::display_name;
use lamina::store::Compression;
use serde_json::json;

use super::units;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Named images: state, digest, size, when created and last used, expiry.
    Ls {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// An image's digest, every config field that is set, layers and history.
    Inspect {
        /// `name[:tag]`.
        name: String,
        /// Print `{"name","digest","manifest","config"}` on one line, the manifest and
        /// config being the stored bytes verbatim.
        #[arg(long)]
        json: bool,
    },
    /// The steps that made an image, newest first, with their layer sizes.
    History {
        /// `name[:tag]`.
        name: String,
    },
    /// Give an image another name.
    Tag {
        /// The existing `name[:tag]`.
        source: String,
        /// The new `name[:tag]`.
        target: String,
    },
    /// Store and name the images of an OCI layout directory, oci-archive or docker-archive
    /// (`docker save` output), e.g. to seed offline bases.
    Import {
        /// The directory or tar file.
        path: PathBuf,
        /// The name to give the image [default: the name the archive records].
        name: Option<String>,
    },
    /// Write an image as an OCI layout directory, oci-archive or docker-archive.
    Export {
        /// `name[:tag]`.
        name: String,
        /// The output form.
        #[arg(long, value_enum, default_value_t = Format::OciArchive)]
        format: Format,
        /// Layer compression in the output: gzip reads everywhere (umoci, docker, podman);
        /// zstd needs newer clients (docker-archive turns it into gzip, which `docker load`
        /// needs). Stored variants are reused; a missing one is made once and kept.
        #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
        compression: LayerCompression,
        /// Where to write it: a file (written atomically, a regular file there replaced),
        /// a directory for oci-dir, or `-` for standard output.
        #[arg(long, short = 'o', value_name = "PATH")]
        output: PathBuf,
        /// Write through a symlink, device or FIFO at PATH instead of refusing it.
        #[arg(long)]
        force: bool,
    },
    /// Remove image names; their layers go at the next GC unless something else needs them.
    Rm {
        /// `name[:tag]`, one or more.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    OciDir,
    OciArchive,
    DockerArchive,
}

/// The workspace's one compression type (`none`, `gzip`, `zstd`), under its old CLI name.
pub type LayerCompression = Compression;

pub fn run(
    store_dir: Option<PathBuf>,
    command: ImageCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let reads_only = matches!(
        command,
        ImageCommand::Ls { .. } | ImageCommand::Inspect { .. } | ImageCommand::History { .. }
    );
    let engine = if reads_only {
        super::engine_reading(store_dir)?
    } else {
        super::engine(store_dir)?
    };
    match command {
        ImageCommand::Ls { json } => {
            let rows: Vec<_> = engine.list()?.into_iter().map(row).collect();
            if json {
                let rows: Vec<_> = rows.iter().map(Row::to_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                writeln!(
                    out,
                    "{:<32} {:<13} {:<19} {:>10}  {:<20} {:<20} EXPIRES",
                    "NAME", "STATE", "DIGEST", "SIZE", "CREATED", "LAST USED"
                )?;
                for r in &rows {
                    writeln!(
                        out,
                        "{:<32} {:<13} {:<19} {:>10}  {:<20} {:<20} never (named)",
                        r.name,
                        r.state,
                        short(&r.digest),
                        units::size(r.size),
                        humantime::format_rfc3339_seconds(r.created).to_string(),
                        humantime::format_rfc3339_seconds(r.last_used).to_string(),
                    )?;
                }
            }
        }
        ImageCommand::Inspect { name, json } => {
            let details = engine.inspect(&name)?;
            if json {
                super::inspect::print_json(&details, out)?;
            } else {
                super::inspect::print_text(&details, out)?;
            }
        }
        ImageCommand::History { name } => {
            writeln!(out, "{:>10}  CREATED BY", "SIZE")?;
            for entry in engine.history(&name)? {
                let size = match entry.size {
                    _ if entry.empty_layer => "0 B".to_string(),
                    Some(size) => units::size(size),
                    None => "?".to_string(),
                };
                writeln!(out, "{size:>10}  {}", entry.created_by)?;
            }
        }
        ImageCommand::Tag { source, target } => {
            let tagged = engine.tag(&source, &target)?;
            writeln!(out, "tagged {} as {}", tagged.digest, tagged.name)?;
        }
        ImageCommand::Import { path, name } => {
            let imported = engine
                .import(&path, name.as_deref())
                .with_context(|| format!("importing {}", path.display()))?;
            for imported in imported {
                let image = &imported.image;
                writeln!(out, "imported {} ({})", image.name, image.image.digest)?;
                // A head start for builds on it; the image is stored either way.
                if let Some(e) = imported.unpack_error {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "warning: {} is imported, but its layers could not be unpacked ahead \
                         of builds ({e}); the first build on it unpacks them",
                        image.name
                    );
                }
            }
        }
        ImageCommand::Export {
            name,
            format,
            compression,
            output,
            force,
        } => {
            let options = lamina::ExportOptions {
                format: match format {
                    Format::OciDir => ArchiveFormat::OciDir,
                    Format::OciArchive => ArchiveFormat::OciArchive,
                    Format::DockerArchive => ArchiveFormat::DockerArchive,
                },
                compression,
                force,
            };
            let report = engine
                .export(&name, &output, &options)
                .with_context(|| format!("exporting {name} to {}", output.display()))?;
            // The archive itself went to stdout: the summary goes to stderr.
            let mut stderr = std::io::stderr();
            let summary: &mut dyn Write = if output.as_os_str() == "-" {
                &mut stderr
            } else {
                &mut *out
            };
            writeln!(
                summary,
                "exported {} ({}) to {}: {}; compressed {} of {} layers for this export",
                display_name(&name),
                report.image.digest,
                output.display(),
                units::size(report.bytes),
                report.layers_compressed,
                report.image.layers.len(),
            )?;
        }
        ImageCommand::Rm { names } => {
            for name in names {
                let removed = engine.remove(&name)?;
                writeln!(out, "removed {} ({})", removed.name, removed.manifest)?;
            }
        }
    }
    Ok(out.flush()?)
}

struct Row {
    /// The familiar short form, as `docker images` shows it.
    name: String,
    /// The full name the store keys the image by.
    reference: String,
    state: String,
    digest: String,
    size: u64,
    created: SystemTime,
    updated: SystemTime,
    last_used: SystemTime,
    pinned: bool,
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "reference": self.reference,
            "state": self.state,
            "digest": self.digest,
            "size": self.size,
            "created": humantime::format_rfc3339_seconds(self.created).to_string(),
            "updated": humantime::format_rfc3339_seconds(self.updated).to_string(),
            "last_used": humantime::format_rfc3339_seconds(self.last_used).to_string(),
            "pinned": self.pinned,
            "expires": serde_json::Value::Null,
        })
    }
}

/// One `image ls` row, from the engine's summary (the state is the executor's for the name:
/// building, active, build_failed; else the store's completeness).
fn row(summary: lamina::ImageSummary) -> Row {
    Row {
        name: summary.name,
        reference: summary.reference,
        state: summary.state.name().to_string(),
        digest: summary.digest.to_string(),
        size: summary.size,
        created: summary.created,
        updated: summary.updated,
        last_used: summary.last_used,
        pinned: summary.pinned,
    }
}

fn short(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}
