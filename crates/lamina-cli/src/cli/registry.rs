//! `lamina push` and `lamina pull`: images to and from OCI registries.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lamina::export::registry::{Credentials, PullEvent, PushEvent, RegistryConfig};
use lamina::store::Digest;

use super::image::LayerCompression;
use super::units;

/// Registry options shared by push, pull and build.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// A registry (`host[:port]`) to reach over plain http; repeatable. Loopback registries
    /// always may be.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure: Vec<String>,
    /// Use another registry in place of one, `FROM=TO` (e.g. docker.io=mirror.local:5000);
    /// repeatable.
    #[arg(long = "registry-mirror", value_name = "FROM=TO")]
    mirrors: Vec<String>,
    /// Credentials, `USER:PASSWORD` [default: $LAMINA_REGISTRY_USER and
    /// $LAMINA_REGISTRY_PASSWORD, else docker's config.json, else anonymous].
    #[arg(long, value_name = "USER:PASSWORD", hide_env_values = true)]
    creds: Option<String>,
}

impl RegistryArgs {
    pub fn config(&self) -> anyhow::Result<RegistryConfig> {
        let mut config = RegistryConfig {
            insecure: self.insecure.clone(),
            ..RegistryConfig::default()
        };
        for mirror in &self.mirrors {
            let (from, to) = mirror.split_once('=').with_context(|| {
                format!("--registry-mirror {mirror}: expected FROM=TO, e.g. docker.io=mirror:5000")
            })?;
            config.mirrors.insert(from.to_string(), to.to_string());
        }
        if let Some(creds) = &self.creds {
            // Never echo the value: it holds a password.
            let (username, password) = creds
                .split_once(':')
                .context("--creds: expected USER:PASSWORD")?;
            config.credentials = Some(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store, `name[:tag]`.
    name: String,
    /// Where to push it: `registry/repository[:tag]`.
    reference: String,
    /// Layer compression on the registry: gzip is what every client pulls (docker 20.10,
    /// podman, umoci); zstd needs docker 23+, podman or containerd 1.5+. A layer not yet
    /// stored that way is compressed once and the variant kept for later pushes; the pushed
    /// image then has its own manifest digest (printed), the config is the same.
    #[arg(long, value_enum, default_value_t = LayerCompression::Gzip)]
    compression: LayerCompression,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// `[registry/]repository[:tag][@digest]`; picks linux/amd64 from multi-platform images.
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn push(
    store_dir: Option<PathBuf>,
    args: PushArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = super::engine(store_dir)?;
    let display = Arc::new(Display::new());
    let shown = display.clone();
    let options = lamina::PushOptions {
        compression: args.compression,
        registry: args.registry.config()?,
        on_event: Some(Arc::new(move |event| {
            if let lamina::Event::Push(event) = event {
                shown.push(event)
            }
        })),
    };
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(engine.push(&args.name, &args.reference, &options));
    display.finish();
    let report = report.with_context(|| format!("pushing {} to {}", args.name, args.reference))?;
    let elapsed = started.elapsed();
    let pushed = &report.push;
    let rate = pushed.bytes_pushed as f64 / elapsed.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "pushed {} to {} in {}: {} blobs uploaded ({}, {}/s), {} already there, {} mounted; \
         {} of {} layers compressed for this push",
        pushed.digest,
        pushed.reference,
        units::elapsed(elapsed),
        pushed.blobs_pushed,
        units::size(pushed.bytes_pushed),
        units::size(rate as u64),
        pushed.blobs_skipped,
        pushed.blobs_mounted,
        report.layers_compressed,
        report.layers,
    )?;
    Ok(out.flush()?)
}

pub fn pull(
    store_dir: Option<PathBuf>,
    args: PullArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = super::engine(store_dir)?;
    let display = Arc::new(Display::new());
    let shown = display.clone();
    let options = lamina::PullOptions {
        registry: args.registry.config()?,
        on_event: Some(Arc::new(move |event| {
            if let lamina::Event::Pull(event) = event {
                shown.pull(event)
            }
        })),
    };
    let started = std::time::Instant::now();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let pulled = runtime.block_on(engine.pull(&args.reference, &options));
    display.finish();
    let pulled = pulled.with_context(|| format!("pulling {}", args.reference))?;
    // A head start for builds on it; the image is stored either way.
    if let Some(e) = pulled.unpack_error {
        let _ = writeln!(
            std::io::stderr().lock(),
            "warning: {} is pulled, but its layers could not be unpacked ahead of builds \
             ({e}); the first build on it unpacks them",
            args.reference
        );
    }
    let image = pulled.image;
    let size: u64 = image.layers.iter().map(|l| l.variant.size).sum();
    writeln!(
        out,
        "pulled {} ({}, {} layers, {}) in {}",
        args.reference,
        image.digest,
        image.layers.len(),
        units::size(size),
        units::elapsed(started.elapsed()),
    )?;
    Ok(out.flush()?)
}

/// Where transfer progress goes: bars on a terminal, else one line per blob step (logs and
/// pipes get no redraws).
enum Display {
    Bars(BlobBars),
    Lines,
}

impl Display {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            Display::Bars(BlobBars::new())
        } else {
            Display::Lines
        }
    }

    fn push(&self, event: PushEvent) {
        match self {
            Display::Bars(bars) => match event {
                PushEvent::Skipped { digest, size } => bars.finish(digest, size, "already there"),
                PushEvent::Mounted { digest, size, from } => {
                    bars.finish(digest, size, &format!("mounted from {from}"))
                }
                PushEvent::Uploading { digest, size } => bars.start(digest, size),
                PushEvent::Progress { digest, sent, .. } => bars.set(&digest, sent),
                PushEvent::Uploaded { digest, size } => bars.finish(digest, size, "uploaded"),
                PushEvent::Manifest { digest, reference } => {
                    let _ = bars
                        .multi
                        .println(format!("manifest {digest} → {reference}"));
                }
                _ => {}
            },
            Display::Lines => {
                if let Some(line) = push_line(event) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }

    fn pull(&self, event: PullEvent) {
        match self {
            Display::Bars(bars) => match event {
                PullEvent::Skipped { digest, size } => bars.finish(digest, size, "already there"),
                PullEvent::Downloading { digest, size } => bars.start(digest, size),
                PullEvent::Progress {
                    digest, received, ..
                } => bars.set(&digest, received),
                PullEvent::Downloaded { digest, size } => bars.finish(digest, size, "downloaded"),
                _ => {}
            },
            Display::Lines => {
                if let Some(line) = pull_line(event) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }

    /// Leaves bars of transfers that did not finish (a failed push or pull) as they stand.
    fn finish(&self) {
        if let Display::Bars(bars) = self {
            for (_, bar) in bars.lock().drain() {
                bar.abandon();
            }
        }
    }
}

/// The line for a push event without a terminal; `None` for byte counts.
fn push_line(event: PushEvent) -> Option<String> {
    Some(match event {
        PushEvent::Skipped { digest, size } => {
            format!("{digest} {}: already there", units::size(size))
        }
        PushEvent::Mounted { digest, size, from } => {
            format!("{digest} {}: mounted from {from}", units::size(size))
        }
        PushEvent::Uploading { digest, size } => {
            format!("{digest} {}: uploading", units::size(size))
        }
        PushEvent::Uploaded { digest, size } => {
            format!("{digest} {}: uploaded", units::size(size))
        }
        PushEvent::Manifest { digest, reference } => format!("manifest {digest} → {reference}"),
        _ => return None,
    })
}

/// The line for a pull event without a terminal; `None` for byte counts.
fn pull_line(event: PullEvent) -> Option<String> {
    Some(match event {
        PullEvent::Skipped { digest, size } => {
            format!("{digest} {}: already there", units::size(size))
        }
        PullEvent::Downloading { digest, size } => {
            format!("{digest} {}: downloading", units::size(size))
        }
        PullEvent::Downloaded { digest, size } => {
            format!("{digest} {}: downloaded", units::size(size))
        }
        _ => return None,
    })
}

/// One progress bar per blob on stderr.
struct BlobBars {
    multi: MultiProgress,
    /// Bars of transfers under way; finished ones stay drawn but leave the map.
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl BlobBars {
    fn new() -> Self {
        BlobBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, ProgressBar>> {
        // A panic elsewhere leaves the map usable.
        self.bars.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bar(&self, digest: &Digest, size: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(short(digest));
        bar
    }

    fn start(&self, digest: Digest, size: u64) {
        // A retried transfer keeps its bar.
        self.lock()
            .entry(digest)
            .or_insert_with(|| self.bar(&digest, size));
    }

    fn set(&self, digest: &Digest, done: u64) {
        if let Some(bar) = self.lock().get(digest) {
            bar.set_position(done);
        }
    }

    /// Ends the blob's bar with `outcome`, drawing one if the blob had none (skipped or
    /// mounted blobs transfer nothing).
    fn finish(&self, digest: Digest, size: u64, outcome: &str) {
        let bar = self
            .lock()
            .remove(&digest)
            .unwrap_or_else(|| self.bar(&digest, size));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.finish_with_message(format!("{} {outcome}", units::size(size)));
    }
}

/// The first 12 hex digits of a digest, as docker shows layers.
fn short(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_blob_and_skip_byte_counts() {
        let digest = Digest::sha256_of(b"layer");
        let line = pull_line(PullEvent::Downloaded { digest, size: 2048 }).unwrap();
        assert_eq!(line, format!("{digest} 2.0 KiB: downloaded"));
        let progress = PullEvent::Progress {
            digest,
            received: 1,
            size: 2,
        };
        assert_eq!(pull_line(progress), None);
        let progress = PushEvent::Progress {
            digest,
            sent: 1,
            size: 2,
        };
        assert_eq!(push_line(progress), None);
        assert_eq!(short(&digest), digest.hex()[..12]);
    }
}
