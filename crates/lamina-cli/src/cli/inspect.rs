//! `lamina image inspect`: an image's config as text (every field that is set, nothing for
//! fields that are not), or its manifest and config exactly as stored (`--json`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use lamina::ImageDetails;
use serde_json::{Map, Value};

use super::units;

/// `--json`: one line, `{"name":…,"reference":…,"digest":…,"manifest":<bytes>,"config":<bytes>}`, the
/// manifest and config being the stored bytes verbatim (their sha256 are the image digest
/// and the config digest).
pub fn print_json(details: &ImageDetails, out: &mut impl Write) -> anyhow::Result<()> {
    write!(
        out,
        "{{\"name\":{},\"reference\":{},\"digest\":{},\"manifest\":",
        Value::from(details.name.as_str()),
        Value::from(details.reference.as_str()),
        Value::from(details.image.digest.to_string())
    )?;
    out.write_all(details.manifest.trim_ascii_end())?;
    out.write_all(b",\"config\":")?;
    out.write_all(details.config.trim_ascii_end())?;
    writeln!(out, "}}")?;
    Ok(())
}

/// The text form: identity, the config fields that are set, layers and history.
pub fn print_text(details: &ImageDetails, out: &mut impl Write) -> anyhow::Result<()> {
    let image = &details.image;
    let config: Value = serde_json::from_slice(&details.config)
        .with_context(|| format!("the stored config of {} is not JSON", image.digest))?;
    let field = |key: &str| config.get(key).filter(|v| is_set(v));
    writeln!(out, "name:        {}", details.name)?;
    writeln!(out, "digest:      {}", image.digest)?;
    let platform = [field("os"), field("architecture"), field("variant")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("/");
    if !platform.is_empty() {
        writeln!(out, "platform:    {platform}")?;
    }
    for key in ["created", "author"] {
        if let Some(value) = field(key).and_then(Value::as_str) {
            writeln!(out, "{:<12} {value}", format!("{key}:"))?;
        }
    }
    let empty = Map::new();
    let run = config
        .get("config")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    print_run_config(run, out)?;
    writeln!(out, "layers:")?;
    for layer in &image.layers {
        writeln!(
            out,
            "  {} {:>10} {}",
            layer.variant.sha256,
            units::size(layer.variant.size),
            layer.variant.compression.name(),
        )?;
    }
    let history = field("history").and_then(Value::as_array);
    if let Some(history) = history {
        writeln!(out, "history:")?;
        for entry in history {
            let created_by = entry.get("created_by").and_then(Value::as_str);
            let comment = entry.get("comment").and_then(Value::as_str);
            let text = created_by.or(comment).unwrap_or("(no description)");
            let empty_layer = entry.get("empty_layer").and_then(Value::as_bool) == Some(true);
            let marker = if empty_layer { "  (no layer)" } else { "" };
            writeln!(out, "  {text}{marker}")?;
        }
    }
    Ok(())
}

/// The `config` object's fields, one line per value, only those that are set.
fn print_run_config(run: &Map<String, Value>, out: &mut impl Write) -> anyhow::Result<()> {
    let field = |key: &str| run.get(key).filter(|v| is_set(v));
    let text = |key: &str| field(key).and_then(Value::as_str);
    if let Some(user) = text("User") {
        writeln!(out, "user:        {user}")?;
    }
    if let Some(dir) = text("WorkingDir") {
        writeln!(out, "workdir:     {dir}")?;
    }
    for env in strings(field("Env")) {
        writeln!(out, "env:         {env}")?;
    }
    for (label, key) in [
        ("entrypoint:", "Entrypoint"),
        ("cmd:", "Cmd"),
        ("shell:", "Shell"),
    ] {
        if let Some(argv) = field(key) {
            writeln!(out, "{label:<12} {}", serde_json::to_string(argv)?)?;
        }
    }
    if let Some(labels) = field("Labels").and_then(Value::as_object) {
        for (k, v) in labels {
            writeln!(out, "label:       {k}={}", v.as_str().unwrap_or_default())?;
        }
    }
    for (label, key) in [("port:", "ExposedPorts"), ("volume:", "Volumes")] {
        if let Some(map) = field(key).and_then(Value::as_object) {
            for name in map.keys() {
                writeln!(out, "{label:<12} {name}")?;
            }
        }
    }
    if let Some(health) = field("Healthcheck").and_then(Value::as_object) {
        writeln!(out, "healthcheck: {}", healthcheck_text(health))?;
    }
    if let Some(signal) = text("StopSignal") {
        writeln!(out, "stopsignal:  {signal}")?;
    }
    for trigger in strings(field("OnBuild")) {
        writeln!(out, "onbuild:     {trigger}")?;
    }
    Ok(())
}

/// `CMD true (interval 1m 30s, timeout 5s, retries 3)`; `NONE` when disabled.
fn healthcheck_text(health: &Map<String, Value>) -> String {
    let test = strings(health.get("Test"));
    let mut text = match test.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" => format!("CMD {}", rest.join(" ")),
        Some((kind, rest)) if kind == "CMD" => {
            format!("CMD {}", serde_json::to_string(rest).unwrap_or_default())
        }
        Some((kind, _)) => kind.clone(),
        None => "(inherited command)".to_string(),
    };
    let mut options = Vec::new();
    for (label, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start period", "StartPeriod"),
        ("start interval", "StartInterval"),
    ] {
        if let Some(nanos) = health.get(key).and_then(Value::as_u64).filter(|n| *n > 0) {
            let duration = humantime::format_duration(Duration::from_nanos(nanos));
            options.push(format!("{label} {duration}"));
        }
    }
    if let Some(retries) = health
        .get("Retries")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
    {
        options.push(format!("retries {retries}"));
    }
    if !options.is_empty() {
        text.push_str(&format!(" ({})", options.join(", ")));
    }
    text
}

/// A JSON value counts as set unless it is null, an empty string, list or object.
fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
