//! `lamina build`: build a definition into the store, with live progress.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use lamina::exec::sandbox::OutputStream;
use lamina::{BuildEvent, BuildOptions, BuildReport, CacheTo, DefaultCmd, NamedContext};
use serde_json::json;

use super::progress::TtyProgress;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A .toml definition, a Dockerfile, or a directory holding lamina.toml or Dockerfile.
    definition: PathBuf,
    /// Name the image (`name[:tag]`); named images are kept until removed.
    #[arg(long, short = 't', value_name = "NAME")]
    tag: Option<String>,
    /// How to show progress: a live display on a terminal, plain lines, or JSON lines.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Say which step missed the cache first, and why.
    #[arg(long)]
    explain: bool,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    no_cache: bool,
    /// Run step N (1-based, as the progress shows) even if it is cached; repeatable.
    #[arg(long, value_name = "N")]
    no_cache_step: Vec<usize>,
    /// A build argument, `NAME=VALUE`; repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_pair)]
    build_arg: Vec<(String, String)>,
    /// A secret for `RUN --mount=type=secret`, `id=ID,src=FILE`; repeatable.
    #[arg(long, value_name = "id=ID,src=FILE", value_parser = parse_secret)]
    secret: Vec<(String, PathBuf)>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent of $SSH_AUTH_SOCK) or
    /// `ID=SOCKET`; repeatable.
    #[arg(long, value_name = "default|ID=SOCKET", value_parser = parse_ssh)]
    ssh: Vec<(String, PathBuf)>,
    /// A named build context, `NAME=DIR` or `NAME=docker-image://REF`: `COPY --from=NAME`
    /// and `RUN --mount=from=NAME` read it (an image one also `FROM NAME`) in place of a
    /// stage or image of that name; repeatable.
    #[arg(long, value_name = "NAME=DIR|NAME=docker-image://REF", value_parser = parse_context)]
    build_context: Vec<(String, NamedContext)>,
    /// Build this stage (name or 0-based index) instead of the last.
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// The command of an image that sets neither ENTRYPOINT nor CMD: `auto` gives TOML
    /// definitions (sandbox images) `sleep infinity` and leaves Dockerfiles as docker
    /// build does; `sleep-infinity` and `none` decide for every definition.
    #[arg(long, value_enum, default_value_t = DefaultCmdArg::Auto, value_name = "WHEN")]
    default_cmd: DefaultCmdArg,
    /// Do not mount the host's CA bundle into RUN steps.
    #[arg(long)]
    no_host_ca: bool,
    /// The longest an ADD of a URL waits to connect or for more data, in seconds or with a
    /// unit (`90s`, `2m`); a download is tried 3 times in all.
    #[arg(long, env = "LAMINA_DOWNLOAD_TIMEOUT", value_parser = parse_timeout, default_value = "60", value_name = "SECS")]
    download_timeout: std::time::Duration,
    /// Take steps from this registry cache when the store misses them (`REF`, written by
    /// --cache-to); repeatable, searched in order. Name only refs you trust: whoever can push
    /// to one can put layers into every build that reads it.
    #[arg(long, value_name = "REF")]
    cache_from: Vec<String>,
    /// Write this build's cache records to a registry (`REF[,mode=min|max][,ignore-error=true]`),
    /// or into the image's config (`inline`: changes the image digest); repeatable. A failed
    /// export fails the command after the image is stored, unless ignore-error=true.
    #[arg(long, value_name = "REF[,mode=min|max][,ignore-error=true]|inline", value_parser = CacheTo::parse)]
    cache_to: Vec<CacheTo>,
    /// How to reach registries for bases that are not in the store yet.
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DefaultCmdArg {
    Auto,
    SleepInfinity,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Plain,
    Json,
}

pub(super) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let timeout = match s.trim().parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => super::units::parse_duration(s)?,
    };
    if timeout.is_zero() {
        return Err(format!("`{s}`: a timeout must be longer than 0"));
    }
    Ok(timeout)
}

pub(super) fn parse_context(s: &str) -> Result<(String, NamedContext), String> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => (name, value),
        _ => {
            return Err(format!(
                "`{s}`: expected NAME=DIR or NAME=docker-image://REF"
            ));
        }
    };
    if let Some(reference) = value.strip_prefix("docker-image://") {
        return Ok((name.to_string(), NamedContext::Image(reference.to_string())));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(format!(
            "`{s}`: {scheme}:// contexts are not supported; give a directory or docker-image://REF"
        ));
    }
    let dir =
        std::fs::canonicalize(value).map_err(|e| format!("`{s}`: the directory {value}: {e}"))?;
    if !dir.is_dir() {
        return Err(format!("`{s}`: {value} is not a directory"));
    }
    Ok((name.to_string(), NamedContext::Dir(dir)))
}

pub(super) fn parse_secret(s: &str) -> Result<(String, PathBuf), String> {
    let mut id = None;
    let mut src = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            _ => return Err(format!("`{part}` in `{s}`: expected id=ID,src=FILE")),
        }
    }
    match (id, src) {
        (Some(id), Some(src)) if !id.is_empty() => Ok((id, src)),
        _ => Err(format!("`{s}`: expected id=ID,src=FILE")),
    }
}

pub(super) fn parse_ssh(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((id, socket)) if !id.is_empty() && !socket.is_empty() => {
            Ok((id.to_string(), PathBuf::from(socket)))
        }
        Some(_) => Err(format!("`{s}`: expected ID=SOCKET")),
        None => match std::env::var_os("SSH_AUTH_SOCK") {
            Some(socket) if !socket.is_empty() => Ok((s.to_string(), PathBuf::from(socket))),
            _ => Err(format!(
                "`--ssh {s}` forwards the agent of $SSH_AUTH_SOCK, which is not set; start an \
                 agent or give --ssh {s}=SOCKET"
            )),
        },
    }
}

/// A build waits this long for a store another process holds unless `--wait` says: the
/// steps the other build runs are then cache hits here.
const BUILD_WAIT: std::time::Duration = std::time::Duration::from_secs(60 * 60);

pub fn run(
    store_dir: Option<PathBuf>,
    args: BuildArgs,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let image = lamina::load_definition(&args.definition)?;
    let registry = args.registry.config()?;
    let host_ca_bundle = !args.no_host_ca;
    let download_timeout = args.download_timeout;
    // Read-first: a rebuild whose steps all hit never opens the index read-write (its uses
    // go to the store's touch log); the first write opens it read-write.
    let options = lamina::store::StoreOptions {
        read_first: true,
        ..Default::default()
    };
    let wait = super::wait_or(BUILD_WAIT);
    let engine = super::engine_opened(store_dir, options, wait, |config| {
        config.registry = registry;
        config.exec.host_ca_bundle = host_ca_bundle;
        config.exec.download_timeout = download_timeout;
    })?;
    let mode = match args.progress {
        Progress::Auto if std::io::stderr().is_terminal() => Mode::Tty(TtyProgress::new()),
        Progress::Auto | Progress::Plain => Mode::Plain,
        Progress::Json => Mode::Json,
    };
    let display = Arc::new(Mutex::new(mode));
    let on_event = {
        let display = display.clone();
        Arc::new(move |event: BuildEvent| {
            if let Ok(mut display) = display.lock() {
                display.event(&event);
            }
        })
    };
    let options = BuildOptions {
        tag: args.tag.clone(),
        build_args: args.build_arg.into_iter().collect::<BTreeMap<_, _>>(),
        secrets: args.secret.into_iter().collect(),
        ssh: args.ssh.into_iter().collect(),
        no_cache: args.no_cache,
        no_cache_steps: args.no_cache_step,
        target_stage: args.target,
        contexts: args.build_context.into_iter().collect(),
        default_cmd: match args.default_cmd {
            DefaultCmdArg::Auto => DefaultCmd::ByOrigin,
            DefaultCmdArg::SleepInfinity => DefaultCmd::SleepInfinity,
            DefaultCmdArg::None => DefaultCmd::None,
        },
        on_event: Some(on_event),
        cache_from: args.cache_from,
        cache_to: args.cache_to,
        cancel: None,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(engine.build(&image, options));
    if let Ok(mut display) = display.lock() {
        display.finish();
    }
    let report = result.with_context(|| format!("building {}", args.definition.display()))?;
    let json = matches!(args.progress, Progress::Json);
    print_report(&report, args.explain, json, out)?;
    Ok(out.flush()?)
}

fn print_report(
    report: &BuildReport,
    explain: bool,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let cached = report.steps.iter().filter(|s| s.cached).count();
    if json {
        let value = json!({
            "event": "result",
            "digest": report.digest.to_string(),
            "tag": report.tag.as_deref().map(lamina::export::image::display_name),
            "reference": report.tag,
            "duration_ms": report.duration.as_millis() as u64,
            "steps": report.steps.len(),
            "cached": cached,
            "first_miss": report.first_miss.as_ref().map(|m| m.to_string()),
            "layers_unpacked": report.layers_unpacked,
            "remote_hits": report.remote_hits,
            "remote_layers": report.remote_layers.0,
            "remote_bytes": report.remote_layers.1,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    if explain {
        match &report.first_miss {
            Some(miss) => writeln!(out, "first miss: {miss}")?,
            None => writeln!(out, "first miss: none, every step came from the cache")?,
        }
    }
    writeln!(
        out,
        "built {} in {} ({cached}/{} steps cached){}",
        report.digest,
        super::units::elapsed(report.duration),
        report.steps.len(),
        report
            .tag
            .as_ref()
            .map(|t| format!(", tagged {}", lamina::export::image::display_name(t)))
            .unwrap_or_default(),
    )?;
    Ok(())
}

/// Where progress goes: a live terminal display, plain lines, or JSON lines, all on stderr
/// except JSON (stdout, one object per line, so tools can read it).
enum Mode {
    Tty(TtyProgress),
    Plain,
    Json,
}

impl Mode {
    fn event(&mut self, event: &BuildEvent) {
        // Warnings reach the terminal whatever the progress mode (JSON also gets an event).
        if let BuildEvent::Warning { message } = event {
            if let Mode::Tty(tty) = self {
                tty.finish();
            }
            let _ = writeln!(std::io::stderr().lock(), "warning: {message}");
            if !matches!(self, Mode::Json) {
                return;
            }
        }
        match self {
            Mode::Tty(tty) => tty.event(event),
            Mode::Plain => {
                if let Some(line) = plain_line(event) {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
            Mode::Json => {
                if let Some(value) = json_event(event) {
                    let _ = writeln!(std::io::stdout().lock(), "{value}");
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Mode::Tty(tty) = self {
            tty.finish();
        }
    }
}

fn plain_line(event: &BuildEvent) -> Option<String> {
    Some(match event {
        BuildEvent::StageStarted { stage, name, base } => match name {
            Some(name) => format!("stage {stage} ({name}) from {base}"),
            None => format!("stage {stage} from {base}"),
        },
        BuildEvent::StepStarted { index, total, text } => format!("#{index}/{total} {text}"),
        BuildEvent::StepCached { index, .. } => format!("#{index} cached"),
        BuildEvent::StepLog {
            index,
            stream,
            line,
        } => {
            let mark = if *stream == OutputStream::Stderr {
                "!"
            } else {
                "|"
            };
            format!("#{index} {mark} {line}")
        }
        BuildEvent::StepFinished {
            index,
            cached: false,
            duration,
        } => format!("#{index} done in {}", super::units::elapsed(*duration)),
        BuildEvent::StepFinished { cached: true, .. } => return None,
        BuildEvent::Committed { digest } => format!("image {digest}"),
        BuildEvent::RemoteLayersFetched {
            reference,
            layers,
            bytes,
        } => format!("fetched {layers} layer(s), {bytes} bytes, from the cache {reference}"),
        BuildEvent::CacheExported {
            reference,
            records,
            bytes_uploaded,
        } => format!(
            "exported the cache to {reference}: {records} record(s), {bytes_uploaded} layer bytes uploaded"
        ),
        _ => return None,
    })
}

fn json_event(event: &BuildEvent) -> Option<serde_json::Value> {
    Some(match event {
        BuildEvent::StageStarted { stage, name, base } => {
            json!({"event": "stage", "stage": stage, "name": name, "base": base})
        }
        BuildEvent::StepStarted { index, total, text } => {
            json!({"event": "step_started", "index": index, "total": total, "text": text})
        }
        BuildEvent::StepCached { index, key } => {
            json!({"event": "step_cached", "index": index, "key": lamina::exec::build::key::hex(key)})
        }
        BuildEvent::StepLog {
            index,
            stream,
            line,
        } => {
            let stream = if *stream == OutputStream::Stderr {
                "stderr"
            } else {
                "stdout"
            };
            json!({"event": "log", "index": index, "stream": stream, "line": line})
        }
        BuildEvent::StepFinished {
            index,
            cached,
            duration,
        } => json!({
            "event": "step_finished",
            "index": index,
            "cached": cached,
            "duration_ms": duration.as_millis() as u64,
        }),
        BuildEvent::Committed { digest } => {
            json!({"event": "committed", "digest": digest.to_string()})
        }
        BuildEvent::Warning { message } => json!({"event": "warning", "message": message}),
        BuildEvent::RemoteLayersFetched {
            reference,
            layers,
            bytes,
        } => {
            json!({"event": "remote_layers_fetched", "reference": reference, "layers": layers, "bytes": bytes})
        }
        BuildEvent::CacheExported {
            reference,
            records,
            bytes_uploaded,
        } => {
            json!({"event": "cache_exported", "reference": reference, "records": records, "bytes_uploaded": bytes_uploaded})
        }
        _ => return None,
    })
}
