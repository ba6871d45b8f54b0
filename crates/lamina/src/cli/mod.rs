//! Command-line arguments and dispatch.

mod build;
mod cache;
mod definition;
mod image;
mod inspect;
mod progress;
mod registry;
mod units;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Lamina: content-addressed container image builds with a layer cache.
#[derive(Debug, Parser)]
#[command(name = "lamina", version, about, propagate_version = true)]
pub struct Cli {
    /// The store directory [default: $XDG_CACHE_HOME/lamina/store, else ~/.cache/lamina/store].
    #[arg(long, global = true, env = lamina::store::STORE_ENV, value_name = "DIR")]
    store: Option<PathBuf>,

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
        /// A build argument, `NAME=VALUE`, as `build` would get it; repeatable.
        #[arg(long, value_name = "NAME=VALUE", value_parser = build::parse_pair)]
        build_arg: Vec<(String, String)>,
    },
    /// Validate a definition and every local input it names; warn about what `build` refuses.
    Check {
        /// A .toml definition, a Dockerfile, or a directory holding lamina.toml or Dockerfile.
        definition: PathBuf,
        /// A build argument, `NAME=VALUE`, as `build` would get it; repeatable.
        #[arg(long, value_name = "NAME=VALUE", value_parser = build::parse_pair)]
        build_arg: Vec<(String, String)>,
        /// A secret `build` would get, `id=ID,src=FILE`: `RUN --mount=type=secret,required`
        /// of another id is warned about; repeatable.
        #[arg(long, value_name = "id=ID,src=FILE", value_parser = build::parse_secret)]
        secret: Vec<(String, PathBuf)>,
        /// An SSH agent `build` would get (`default` or `ID=SOCKET`): `RUN --mount=type=ssh`
        /// of another id is warned about; repeatable.
        #[arg(long, value_name = "default|ID=SOCKET", value_parser = build::parse_ssh)]
        ssh: Vec<(String, PathBuf)>,
        /// A named build context `build` would get (`NAME=DIR|NAME=docker-image://REF`);
        /// repeatable.
        #[arg(long, value_name = "NAME=DIR|NAME=docker-image://REF", value_parser = build::parse_context)]
        build_context: Vec<(String, lamina::NamedContext)>,
    },
    /// Build a definition into the store, every step a cached layer.
    Build(build::BuildArgs),
    /// List, inspect, name, remove, import and export images in the store.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Push an image from the store to a registry.
    Push(registry::PushArgs),
    /// Pull an image (linux/amd64) from a registry into the store.
    Pull(registry::PullArgs),
    /// Inspect and maintain the store: stats, garbage collection, consistency checks.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Not locked for the whole command: `build --progress json` writes events to stdout from
    // the build's thread while this one waits.
    let mut out = std::io::stdout();
    match cli.command {
        Command::Dockerfile { definition } => definition::dockerfile(&definition, &mut out),
        Command::Digest {
            definition,
            build_arg,
        } => definition::digest(&definition, &build_arg.into_iter().collect(), &mut out),
        Command::Check {
            definition,
            build_arg,
            secret,
            ssh,
            build_context,
        } => {
            let options = lamina::BuildOptions {
                build_args: build_arg.into_iter().collect(),
                secrets: secret.into_iter().collect(),
                ssh: ssh.into_iter().collect(),
                contexts: build_context.into_iter().collect(),
                ..lamina::BuildOptions::default()
            };
            definition::check(&definition, &options, &mut out)
        }
        Command::Cache(command) => cache::run(cli.store, command, &mut out),
        Command::Build(args) => build::run(cli.store, args, &mut out),
        Command::Image(command) => image::run(cli.store, command, &mut out),
        Command::Push(args) => registry::push(cli.store, args, &mut out),
        Command::Pull(args) => registry::pull(cli.store, args, &mut out),
    }
}

/// Opens the engine on `--store`, `$LAMINA_STORE` or the default location.
fn engine(store_dir: Option<PathBuf>) -> anyhow::Result<lamina::Engine> {
    engine_with(store_dir, |_| {})
}

/// [`engine`] with the executor's settings adjusted first.
fn engine_with(
    store_dir: Option<PathBuf>,
    configure: impl FnOnce(&mut lamina::exec::ExecConfig),
) -> anyhow::Result<lamina::Engine> {
    engine_waiting(store_dir, None, configure)
}

/// Opens the engine; with `wait`, a store held by another process (another build) is waited
/// for that long, after saying so, instead of the store's default lock timeout.
fn engine_waiting(
    store_dir: Option<PathBuf>,
    wait: Option<std::time::Duration>,
    configure: impl FnOnce(&mut lamina::exec::ExecConfig),
) -> anyhow::Result<lamina::Engine> {
    use lamina::store::{StoreError, StoreOptions};
    let dir = match store_dir {
        Some(dir) => dir,
        None => lamina::store::default_location()?,
    };
    let Some(wait) = wait else {
        return Ok(lamina::Engine::open_with(
            dir,
            StoreOptions::default(),
            configure,
        )?);
    };
    let quick = StoreOptions {
        lock_timeout: std::time::Duration::from_millis(200),
        ..StoreOptions::default()
    };
    let mut configure = Some(configure);
    let mut config_once = |config: &mut lamina::exec::ExecConfig| {
        if let Some(configure) = configure.take() {
            configure(config);
        }
    };
    match lamina::Engine::open_with(&dir, quick, &mut config_once) {
        Err(lamina::Error::Store(StoreError::Locked { holder, .. })) => {
            let _ = writeln!(
                std::io::stderr(),
                "waiting for the store {}: in use by {holder} (up to {})",
                dir.display(),
                humantime::format_duration(wait)
            );
            let patient = StoreOptions {
                lock_timeout: wait,
                ..StoreOptions::default()
            };
            Ok(lamina::Engine::open_with(&dir, patient, config_once)?)
        }
        other => Ok(other?),
    }
}
