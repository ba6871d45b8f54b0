//! The `docker save` format: writing it, and reading it (including the OCI-layout form newer
//! Docker versions also put in the tar, which `import` prefers when present).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use lamina_store::{Compression, Digest, Store};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::import::{self, Found, check_platform, parse};
use super::source::Source;
use super::write::{tag_of, tar_file};
use crate::image::canonical_json;
use crate::{ExportError, StoredImage};

/// One image of `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    /// The config file's path in the tar.
    config: String,
    /// `name:tag` names.
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    /// Layer file paths, bottom first.
    layers: Vec<String>,
}

/// Writes `image` (layers plain or gzip) as a docker-archive at `out`.
pub(crate) fn write(
    store: &Store,
    image: &StoredImage,
    name: &str,
    out: &Path,
) -> Result<u64, ExportError> {
    tar_file(out, |sink| {
        let mut bytes = 0;
        let config = store
            .stat(&image.config_blob)?
            .ok_or(lamina_store::StoreError::NotFound {
                digest: image.config_blob,
            })?;
        let config_name = format!("{}.json", config.sha256.hex());
        bytes += sink.blob(store, &config_name, &config.digest)?;
        let mut written = HashSet::new();
        let mut layers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let v = &layer.variant;
            let file = match v.compression {
                Compression::None => format!("{}.tar", v.sha256.hex()),
                Compression::Gzip => format!("{}.tar.gz", v.sha256.hex()),
                _ => {
                    return Err(ExportError::MissingVariant {
                        layer: layer.record.digest,
                        compression: "plain or gzip",
                    });
                }
            };
            if written.insert(file.clone()) {
                bytes += sink.blob(store, &file, &v.digest)?;
            }
            layers.push(file);
        }
        // A digest-pinned name is no tag: docker-archives name images by `name:tag` only.
        let repo_tags = (!name.contains('@')).then(|| vec![name.to_owned()]);
        let manifest = vec![Entry {
            config: config_name,
            repo_tags: repo_tags.clone(),
            layers,
        }];
        bytes += sink.bytes(
            "manifest.json",
            &canonical_json(&manifest, "manifest.json")?,
        )?;
        // The legacy `repositories` file maps repository → tag → top layer id.
        if let (Some(_), Some(top)) = (repo_tags, image.layers.last()) {
            let tag = tag_of(name);
            let repo = name.strip_suffix(&format!(":{tag}")).unwrap_or(name);
            let repositories: BTreeMap<&str, BTreeMap<&str, String>> =
                [(repo, [(tag, top.record.diff_id.hex())].into())].into();
            bytes += sink.bytes(
                "repositories",
                &canonical_json(&repositories, "repositories")?,
            )?;
        }
        Ok(bytes)
    })
}

/// Every image of a docker-archive's `manifest.json`.
pub(crate) fn read(store: &Store, source: &Source) -> Result<Vec<Found>, ExportError> {
    let entries: Vec<Entry> = parse(source, "manifest.json", &source.read("manifest.json")?)?;
    let mut found = Vec::with_capacity(entries.len());
    for entry in entries {
        let names: Vec<String> = entry
            .repo_tags
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.is_empty() && t != "<none>:<none>")
            .collect();
        let reference = names
            .first()
            .cloned()
            .unwrap_or_else(|| entry.config.clone());
        let config_bytes = source.read(&entry.config)?;
        check_config_name(source, &entry.config, &config_bytes)?;
        let config: ImageConfiguration = parse(source, &entry.config, &config_bytes)?;
        check_platform(&config, &reference)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(ExportError::InvalidArchive {
                path: source.path().to_path_buf(),
                reason: format!(
                    "image {reference}: manifest.json lists {} layers but its config has {} diff_ids",
                    entry.layers.len(),
                    diff_ids.len()
                ),
            });
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (file, diff_id) in entry.layers.iter().zip(diff_ids) {
            let diff_id = Digest::parse(diff_id).map_err(|e| ExportError::InvalidArchive {
                path: source.path().to_path_buf(),
                reason: format!("image {reference}: {e}"),
            })?;
            layers.push(import::layer(
                store, source, file, None, &diff_id, &reference,
            )?);
        }
        let image = import::commit_converted(store, &config, &layers)?;
        found.push(Found { names, image });
    }
    Ok(found)
}

/// Config files are named after their sha256 (`<hex>.json` or `blobs/sha256/<hex>`); when
/// the name says so, the bytes must match it.
fn check_config_name(source: &Source, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.strip_suffix(".json").unwrap_or(file);
    let Ok(expected) = Digest::parse(&format!("sha256:{stem}")) else {
        return Ok(());
    };
    let actual = Digest::sha256_of(bytes);
    if actual == expected {
        return Ok(());
    }
    Err(ExportError::InvalidArchive {
        path: source.path().to_path_buf(),
        reason: format!("config {name} has digest {actual}"),
    })
}
