//! The `docker save` format: writing it, and reading it (the OCI layout newer Docker versions
//! also put in the tar is read by `oci`, which `import` prefers when present).

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use lamina_store::{Compression, Digest, Store};
use serde::{Deserialize, Serialize};

use super::codec;
use super::import::{Found, receive_layers};
use super::source::Source;
use super::write::{tag_of, tar_file};
use crate::image::canonical_json;
use crate::ingest::{self, ImagePlan};
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
    /// Layer file paths, bottom first (`null` for none).
    #[serde(default, deserialize_with = "null_as_empty")]
    layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Writes `image` (layers plain or gzip) as a docker-archive at `out`.
pub(crate) fn write(
    store: &Store,
    image: &StoredImage,
    name: &str,
    out: &super::output::Placement,
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

/// Every image of a docker-archive's `manifest.json`, checked and staged. The archive has no
/// image manifest: one is written for each image ([`ingest::synthesize_manifest`]) around
/// the config bytes as they are, so the Docker image ID stays.
pub(crate) fn read<'s>(store: &'s Store, source: &Source) -> Result<Vec<Found<'s>>, ExportError> {
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
        let config = ingest::parse_config(&reference, &config_bytes)?;
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
        let mut descriptors = Vec::with_capacity(diff_ids.len());
        for (file, diff_id) in entry.layers.iter().zip(diff_ids) {
            let diff_id = Digest::parse(diff_id).map_err(|e| ExportError::InvalidArchive {
                path: source.path().to_path_buf(),
                reason: format!("image {reference}: {e}"),
            })?;
            descriptors.push(describe_layer(source, file, diff_id)?);
        }
        let (manifest, manifest_bytes) = ingest::synthesize_manifest(&config_bytes, &descriptors)?;
        let plan = ImagePlan::new(&reference, manifest_bytes, &manifest, config_bytes)?;
        let fetched = receive_layers(store, source, &plan, |i| entry.layers[i].clone())?;
        found.push(Found {
            names,
            plan,
            fetched,
        });
    }
    Ok(found)
}

/// A docker-archive layer file as `(compression, sha256, size)` for its manifest. `docker
/// save` writes plain tars, whose sha256 is the config's diff_id (checked when the layer is
/// received); a compressed one is hashed first.
fn describe_layer(
    source: &Source,
    file: &str,
    diff_id: Digest,
) -> Result<(Compression, Digest, u64), ExportError> {
    let (mut reader, size) = source.open_file(file)?;
    let io = |e| ExportError::Io {
        path: source.path().join(file),
        source: e,
    };
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match reader.read(&mut magic[filled..]).map_err(io)? {
            0 => break,
            n => filled += n,
        }
    }
    let compression = codec::detect(&magic[..filled]);
    if compression == Compression::None {
        return Ok((compression, diff_id, size));
    }
    let mut hasher = codec::Hasher::default();
    hasher.write_all(&magic[..filled]).map_err(io)?;
    std::io::copy(&mut reader, &mut hasher).map_err(io)?;
    let (_, sha256, size) = hasher.finish();
    Ok((compression, sha256, size))
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

/// Parses `manifest.json`, naming the archive when it does not parse.
fn parse<T: serde::de::DeserializeOwned>(
    source: &Source,
    name: &str,
    bytes: &[u8],
) -> Result<T, ExportError> {
    serde_json::from_slice(bytes).map_err(|e| ExportError::InvalidArchive {
        path: source.path().to_path_buf(),
        reason: format!("{name} does not parse: {e}"),
    })
}
