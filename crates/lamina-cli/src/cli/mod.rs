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
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Lamina: content-addressed container image builds with a layer cache.
#[derive(Debug, Parser)]
#[command(name = "lamina", version, about, propagate_version = true)]
pub struct Cli {
    /// The store directory [default: $XDG_CACHE_HOME/lamina/store, else ~/.cache/lamina/store].
    #[arg(long, global = true, env = lamina::store::STORE_ENV, value_name = "DIR")]
    store: Option<PathBuf>,

    /// How long to wait for a store that another process holds (e.g. a build) before giving
    /// up [default: 1h for build, 30s for the other commands].
    #[arg(long, global = true, env = WAIT_ENV, value_parser = units::parse_duration, value_name = "DURATION")]
    wait: Option<std::time::Duration>,

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
    Build(Box<build::BuildArgs>),
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

/// The environment variable that sets `--wait` for every command.
const WAIT_ENV: &str = "LAMINA_WAIT";

/// `--wait` (or `$LAMINA_WAIT`), set once by [`run`] for every command that opens the store.
static WAIT: OnceLock<Option<Duration>> = OnceLock::new();

/// How long this command waits for a held store: `--wait`, else the command's `default`.
fn wait_or(default: Duration) -> Duration {
    WAIT.get().copied().flatten().unwrap_or(default)
}

/// How long commands other than `build` wait for a held store unless `--wait` says.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = WAIT.set(cli.wait);
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
        Command::Build(args) => build::run(cli.store, *args, &mut out),
        Command::Image(command) => image::run(cli.store, command, &mut out),
        Command::Push(args) => registry::push(cli.store, args, &mut out),
        Command::Pull(args) => registry::pull(cli.store, args, &mut out),
    }
}

/// Opens the engine on `--store`, `$LAMINA_STORE` or the default location.
fn engine(store_dir: Option<PathBuf>) -> anyhow::Result<lamina::Engine> {
    engine_with(store_dir, |_| {})
}

/// [`engine`] for commands that only read the store (list, inspect, history): the index is
/// opened read-only, so they never wait for writers and write nothing.
fn engine_reading(store_dir: Option<PathBuf>) -> anyhow::Result<lamina::Engine> {
    let options = lamina::store::StoreOptions {
        read_only: true,
        ..Default::default()
    };
    engine_opened(store_dir, options, wait_or(DEFAULT_WAIT), |_| {})
}

/// [`engine`] with the executor's settings adjusted first.
fn engine_with(
    store_dir: Option<PathBuf>,
    configure: impl FnOnce(&mut lamina::EngineConfig),
) -> anyhow::Result<lamina::Engine> {
    engine_waiting(store_dir, wait_or(DEFAULT_WAIT), configure)
}

/// Opens the engine, waiting for a store another process holds as `--wait` says.
fn engine_waiting(
    store_dir: Option<PathBuf>,
    wait: Duration,
    configure: impl FnOnce(&mut lamina::EngineConfig),
) -> anyhow::Result<lamina::Engine> {
    engine_opened(store_dir, Default::default(), wait, configure)
}

/// Opens the engine with `options`, waiting as `--wait` says.
fn engine_opened(
    store_dir: Option<PathBuf>,
    options: lamina::store::StoreOptions,
    wait: Duration,
    configure: impl FnOnce(&mut lamina::EngineConfig),
) -> anyhow::Result<lamina::Engine> {
    let dir = match store_dir {
        Some(dir) => dir,
        None => lamina::store::default_location()?,
    };
    let mut configure = Some(configure);
    open_waiting(&dir, options, wait, |options| {
        lamina::Engine::open_with(&dir, options, |config| {
            if let Some(configure) = configure.take() {
                configure(config);
            }
        })
    })
}

/// Opens what holds the store at `dir` (`open` gets `options` with `wait` as its lock
/// timeout). Processes hold the store only while they read or write its index, so waits
/// are normally milliseconds; one that lasts (another process's GC of a large store, say)
/// is announced once on stderr naming the holder, and giving up is a one-line error naming
/// the holder and `--wait`. The same holds for every later wait of the command.
fn open_waiting<T>(
    dir: &Path,
    options: lamina::store::StoreOptions,
    wait: Duration,
    open: impl FnOnce(lamina::store::StoreOptions) -> Result<T, lamina::Error>,
) -> anyhow::Result<T> {
    use lamina::store::{StoreOptions, WaitNotice};
    let (shown, limit) = (dir.display().to_string(), humantime::format_duration(wait));
    let notice = WaitNotice::new(move |holder| {
        let _ = writeln!(
            std::io::stderr(),
            "waiting for the store {shown}: in use by {holder} (up to {limit}, set with --wait or {WAIT_ENV})"
        );
    });
    let options = StoreOptions {
        lock_timeout: wait,
        wait_notice: Some(notice),
        ..options
    };
    open(options).map_err(|e| gave_up(dir, wait, e))
}

/// A store given up on is one line naming the holder and `--wait`; other errors pass.
fn gave_up(dir: &Path, wait: Duration, error: lamina::Error) -> anyhow::Error {
    use lamina::store::StoreError;
    match error {
        lamina::Error::Store(StoreError::Locked { holder, .. }) => anyhow::anyhow!(
            "the store {} is in use by {holder}; gave up after {} (wait longer with --wait DURATION or {WAIT_ENV})",
            dir.display(),
            humantime::format_duration(wait)
        ),
        other => other.into(),
    }
}
