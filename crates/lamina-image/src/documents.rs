//! Reading the JSON documents of an image as every tool writes them: configs with `null` or
//! missing optional members, Docker v2 schema 2 and OCI manifests, indexes and manifest
//! lists. The bytes are only read, never rewritten: what is stored is what arrived.

use lamina_types::Platform;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;
use serde_json::Value;

use crate::ImageError;

/// Parses config bytes for checking and reading. `null` members read as absent (Go writes
/// `null` for empty slices and maps), a missing `rootfs.diff_ids` as no layers, and `Cmd`,
/// `Entrypoint` and `Shell` may be one string (Docker's `StrSlice`). A member of the wrong
/// type, including the Docker-only `Healthcheck`, `OnBuild` and `Shell` the executor reads,
/// is an error naming the image, the field and what was found.
pub fn parse_config(reference: &str, bytes: &[u8]) -> Result<ImageConfiguration, ImageError> {
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|e| malformed(reference, "(document)", &e.to_string()))?;
    if !value.is_object() {
        return Err(malformed(
            reference,
            "(document)",
            &format!("found {}, expected an object", kind(&value)),
        ));
    }
    drop_nulls(&mut value);
    require_objects(reference, &value)?;
    if let Some(rootfs) = value.get_mut("rootfs").and_then(Value::as_object_mut) {
        rootfs
            .entry("diff_ids")
            .or_insert_with(|| Value::Array(Vec::new()));
    }
    if let Some(run) = value.get_mut("config").and_then(Value::as_object_mut) {
        for key in ["Cmd", "Entrypoint", "Shell"] {
            if let Some(Value::String(one)) = run.get(key) {
                let list = Value::Array(vec![Value::String(one.clone())]);
                run.insert(key.to_owned(), list);
            }
        }
    }
    typed::<DockerOnly>(reference, &value)?;
    typed(reference, &value)
}

/// Parses an image manifest (OCI or Docker v2 schema 2); `null` members read as absent.
pub fn parse_manifest(reference: &str, bytes: &[u8]) -> Result<ImageManifest, ImageError> {
    parse_document(reference, "manifest", bytes)
}

/// Parses an image index or Docker manifest list; `null` members read as absent.
pub fn parse_index(reference: &str, bytes: &[u8]) -> Result<ImageIndex, ImageError> {
    parse_document(reference, "index", bytes)
}

fn parse_document<T: serde::de::DeserializeOwned>(
    reference: &str,
    what: &str,
    bytes: &[u8],
) -> Result<T, ImageError> {
    let invalid = |field: String, reason: String| ImageError::InvalidImage {
        reference: reference.to_owned(),
        reason: format!("{what} field {field} is malformed ({reason})"),
    };
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("(document)".into(), e.to_string()))?;
    drop_nulls(&mut value);
    serde_path_to_error::deserialize(value)
        .map_err(|e| invalid(field_path(e.path()), e.inner().to_string()))
}

/// The Docker-only members of `config` that the executor reads, with their types.
#[derive(Deserialize)]
struct DockerOnly {
    #[serde(default)]
    #[allow(dead_code)] // read only to check its type
    config: Option<DockerRun>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // read only to check their types
struct DockerRun {
    #[serde(default)]
    healthcheck: Option<Health>,
    #[serde(default)]
    on_build: Option<Vec<String>>,
    #[serde(default)]
    shell: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)] // read only to check their types
struct Health {
    #[serde(default)]
    test: Option<Vec<String>>,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    start_period: Option<u64>,
    #[serde(default)]
    start_interval: Option<u64>,
    #[serde(default)]
    retries: Option<u64>,
}

/// Reads `T` from `value` by reference: a config is read twice (its Docker-only members,
/// then the OCI type), and copying the whole document for each read cost more than reading
/// it (a fifth of an all-hit rebuild's commit).
fn typed<T: serde::de::DeserializeOwned>(reference: &str, value: &Value) -> Result<T, ImageError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| malformed(reference, &field_path(e.path()), &e.inner().to_string()))
}

fn malformed(reference: &str, field: &str, reason: &str) -> ImageError {
    ImageError::MalformedConfig {
        reference: reference.to_owned(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn field_path(path: &serde_path_to_error::Path) -> String {
    match path.to_string().as_str() {
        "" | "." => "(document)".to_owned(),
        text => text.to_owned(),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The members that must be JSON objects (structs also read from lists, which no tool
/// writes and the executor does not accept).
fn require_objects(reference: &str, value: &Value) -> Result<(), ImageError> {
    let mut members: Vec<(String, &Value)> = Vec::new();
    for key in ["config", "rootfs"] {
        if let Some(v) = value.get(key) {
            members.push((key.to_owned(), v));
        }
    }
    if let Some(health) = value.get("config").and_then(|c| c.get("Healthcheck")) {
        members.push(("config.Healthcheck".to_owned(), health));
    }
    if let Some(Value::Array(history)) = value.get("history") {
        for (i, entry) in history.iter().enumerate() {
            members.push((format!("history[{i}]"), entry));
        }
    }
    match members.into_iter().find(|(_, v)| !v.is_object()) {
        Some((field, v)) => Err(malformed(
            reference,
            &field,
            &format!("found {}, expected an object", kind(v)),
        )),
        None => Ok(()),
    }
}

/// Removes every object member whose value is `null`, at any depth.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// The linux/amd64 image an index lists (or its only entry when that names no platform).
pub fn amd64_entry<'i>(
    reference: &str,
    index: &'i ImageIndex,
) -> Result<&'i Descriptor, ImageError> {
    let entries = index.manifests();
    let chosen = entries
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                Platform::LINUX_AMD64.matches(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .or(match entries.as_slice() {
            [only] if only.platform().is_none() => Some(only),
            _ => None,
        });
    chosen.ok_or_else(|| {
        let found: Vec<String> = entries
            .iter()
            .filter_map(|d| d.platform().as_ref())
            .map(|p| {
                Platform::new(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
                .to_string()
            })
            .collect();
        ImageError::Architecture {
            reference: reference.to_owned(),
            found: if found.is_empty() {
                "no platform listed".to_owned()
            } else {
                found.join(", ")
            },
        }
    })
}

/// Fails unless `config` is a linux/amd64 image.
pub fn check_platform(reference: &str, config: &ImageConfiguration) -> Result<(), ImageError> {
    let platform = Platform::new(
        &config.os().to_string(),
        &config.architecture().to_string(),
        config.variant().as_deref(),
    );
    if Platform::LINUX_AMD64.matches(platform.os(), platform.architecture(), None) {
        return Ok(());
    }
    Err(ImageError::Architecture {
        reference: reference.to_owned(),
        found: platform.to_string(),
    })
}

#[cfg(test)]
mod tests;
