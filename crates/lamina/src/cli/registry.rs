//! `lamina push` and `lamina pull`: images to and from OCI registries.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use lamina::export::registry::{self, Credentials, PushEvent, RegistryConfig};

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
    let image = engine.image(&args.name)?.with_context(|| {
        format!(
            "no image named {} in the store; `lamina image ls` lists them",
            args.name
        )
    })?;
    let config = args.registry.config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let progress = |event: PushEvent| {
        let line = match event {
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
            _ => return,
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    };
    let started = std::time::Instant::now();
    let report = runtime
        .block_on(registry::push(
            engine.store(),
            &image,
            &args.reference,
            &config,
            &progress,
        ))
        .with_context(|| format!("pushing {} to {}", args.name, args.reference))?;
    let elapsed = started.elapsed();
    let rate = report.bytes_pushed as f64 / elapsed.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "pushed {} to {} in {}: {} blobs uploaded ({}, {}/s), {} already there, {} mounted",
        report.digest,
        report.reference,
        units::elapsed(elapsed),
        report.blobs_pushed,
        units::size(report.bytes_pushed),
        units::size(rate as u64),
        report.blobs_skipped,
        report.blobs_mounted,
    )?;
    Ok(out.flush()?)
}

pub fn pull(
    store_dir: Option<PathBuf>,
    args: PullArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let engine = super::engine(store_dir)?;
    let config = args.registry.config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let started = std::time::Instant::now();
    let image = runtime
        .block_on(registry::pull(engine.store(), &args.reference, &config))
        .with_context(|| format!("pulling {}", args.reference))?;
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
