//! The `created_by` text of image history entries, as BuildKit's Dockerfile frontend writes
//! it for the same instruction, so that `docker history` reads the same for an image built
//! by Lamina or by `docker build`.
//!
//! The shapes follow moby/buildkit `frontend/dockerfile/dockerfile2llb/convert.go`
//! (`dispatchEnv`, `dispatchRun` with `runCommandString`, `dispatchWorkdir`, `dispatchLabel`,
//! `dispatchCmd`, `dispatchEntrypoint`, `dispatchHealthcheck`, `dispatchUser`,
//! `dispatchVolume`, `dispatchStopSignal`, `dispatchShell`, `dispatchArg`,
//! `dispatchMaintainer`, `commitToHistory`), `convert_copy.go` (`dispatchCopy`) and
//! `convert_expose.go` (`dispatchExpose`): values after variable expansion and quote
//! removal, Go's `%q` / `%v` / `%+v` formatting of lists and structs, and ` # buildkit`
//! after steps that make a layer (RUN, COPY, ADD). `ONBUILD` writes no entry.

use lamina_spec::{Copy, Instruction};

use super::config::{HealthConfig, ImageConfig};
use super::run;

/// The comment BuildKit appends to the history of steps that run on the filesystem.
const LAYER_SUFFIX: &str = " # buildkit";

/// The history text of `instruction`, given the stage's config after the step and the
/// stage's `ARG`s in declaration order (a value of `None`: declared without one). `None`:
/// the instruction writes no history entry.
pub(crate) fn created_by(
    instruction: &Instruction,
    config: &ImageConfig,
    args: &[(String, Option<String>)],
) -> Option<String> {
    let c = &config.config;
    let text = match instruction {
        Instruction::Run(r) => {
            // The argv the step ran; a RUN that cannot run failed before history.
            let argv = run::argv(config, r).unwrap_or_default();
            let mut words = build_args(config, args);
            words.extend(argv);
            format!("RUN {}{LAYER_SUFFIX}", words.join(" "))
        }
        Instruction::Copy(copy) => copy_text(copy),
        Instruction::Env(pairs) => key_values("ENV", pairs),
        Instruction::Label(pairs) => key_values("LABEL", pairs),
        Instruction::Arg(decls) => {
            let decls: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(value) => format!("{}={value}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", decls.join(" "))
        }
        Instruction::Workdir(_) => format!("WORKDIR {}", config.workdir()),
        Instruction::User(user) => format!("USER {user}"),
        Instruction::Expose(ports) => {
            // The parser sorts the ports as written; each becomes `port/proto`.
            let mut ports = ports.clone();
            ports.sort();
            let specs: Vec<String> = ports.iter().map(|p| port_spec(p)).collect();
            format!("EXPOSE {}", go_list(&specs))
        }
        Instruction::Volume(paths) => format!("VOLUME {}", go_list(paths)),
        Instruction::Shell(words) => format!("SHELL {}", go_list(words)),
        Instruction::Entrypoint(_) => format!(
            "ENTRYPOINT {}",
            go_quoted_list(c.entrypoint.as_deref().unwrap_or_default())
        ),
        Instruction::Cmd(_) => {
            format!(
                "CMD {}",
                go_quoted_list(c.cmd.as_deref().unwrap_or_default())
            )
        }
        Instruction::StopSignal(signal) => format!("STOPSIGNAL {signal}"),
        Instruction::Healthcheck(_) => {
            let health = c.healthcheck.clone().unwrap_or_default();
            format!("HEALTHCHECK {}", health_text(&health))
        }
        Instruction::Maintainer(name) => format!("MAINTAINER {name}"),
        Instruction::Onbuild(_) => return None,
    };
    Some(text)
}

/// The history text of the default command given to a sandbox image.
pub(crate) fn default_cmd_text(argv: &[String]) -> String {
    format!(
        "CMD {} # lamina: default command for sandbox images",
        go_quoted_list(argv)
    )
}

/// `|<n> NAME=value ...`, the build arguments BuildKit lists before a RUN's argv; a value
/// set by `ENV` wins, as in the RUN's environment.
fn build_args(config: &ImageConfig, args: &[(String, Option<String>)]) -> Vec<String> {
    if args.is_empty() {
        return Vec::new();
    }
    let mut words = vec![format!("|{}", args.len())];
    for (name, value) in args {
        let value = config
            .env_var(name)
            .or(value.as_deref())
            .unwrap_or_default();
        words.push(format!("{name}={value}"));
    }
    words
}

/// `COPY [--parents] [--chown=..] [--chmod=..] <paths> <<HEREDOCS <dest> # buildkit`
/// (`--from`, `--link` and `--exclude` are not written).
fn copy_text(copy: &Copy) -> String {
    let mut text = String::from(if copy.add { "ADD" } else { "COPY" });
    if copy.parents {
        text.push_str(" --parents");
    }
    if let Some(chown) = &copy.chown {
        text.push_str(&format!(" --chown={chown}"));
    }
    if let Some(chmod) = &copy.chmod {
        text.push_str(&format!(" --chmod={chmod}"));
    }
    let is_heredoc = |s: &String| !copy.json_form && s.starts_with("<<");
    for source in copy.sources.iter().filter(|s| !is_heredoc(s)) {
        text.push(' ');
        text.push_str(source);
    }
    for source in copy.sources.iter().filter(|s| is_heredoc(s)) {
        let name = source
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(|c| c == '"' || c == '\'');
        text.push_str(&format!(" <<{name}"));
    }
    text.push(' ');
    text.push_str(&copy.dest);
    text.push_str(LAYER_SUFFIX);
    text
}

fn key_values(keyword: &str, pairs: &[(String, String)]) -> String {
    let mut text = keyword.to_string();
    for (k, v) in pairs {
        text.push_str(&format!(" {k}={v}"));
    }
    text
}

/// A port as the config keys it: `80` is `80/tcp`, the protocol lowercase.
pub(crate) fn port_spec(port: &str) -> String {
    match port.split_once('/') {
        Some((number, proto)) => format!("{number}/{}", proto.to_ascii_lowercase()),
        None => format!("{port}/tcp"),
    }
}

/// Go's `%v` of a string slice: `[a b c]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a string slice: `["a" "b c"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `strconv.Quote`: double quotes, backslash escapes for `"`, `\` and characters that
/// are not printable.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%+v` of BuildKit's `HealthcheckConfig`.
fn health_text(h: &HealthConfig) -> String {
    format!(
        "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(&h.test),
        go_duration(h.interval),
        go_duration(h.timeout),
        go_duration(h.start_period),
        go_duration(h.start_interval),
        h.retries
    )
}

/// Go's `time.Duration.String()`: `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`.
fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, digits) = match nanos {
            n if n < 1_000 => ("ns", 0),
            n if n < 1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (whole, fraction) = split_fraction(nanos, digits);
        return format!("{whole}{fraction}{unit}");
    }
    let (seconds, fraction) = split_fraction(nanos, 9);
    let mut text = format!("{}{fraction}s", seconds % 60);
    let minutes = seconds / 60;
    if minutes > 0 {
        text = format!("{}m{text}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            text = format!("{hours}h{text}");
        }
    }
    text
}

/// `value / 10^digits` and its fraction as `.ddd` without trailing zeros (empty if none).
fn split_fraction(value: u64, digits: u32) -> (u64, String) {
    let scale = 10u64.pow(digits);
    let fraction = value % scale;
    if fraction == 0 {
        return (value / scale, String::new());
    }
    let text = format!("{fraction:0width$}", width = digits as usize);
    (value / scale, format!(".{}", text.trim_end_matches('0')))
}

#[cfg(test)]
mod tests;
