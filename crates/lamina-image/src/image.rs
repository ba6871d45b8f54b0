//! An image in the store: manifest + config + layers, all as store blobs.
//!
//! The manifest is an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`) whose
//! layer descriptors name one stored variant of each layer (by its sha256, as OCI wants); the
//! config is an OCI image config whose `rootfs.diff_ids` are the layers' uncompressed sha256.
//! Both are stored as blobs (kinds `Manifest` and `Config`), so lookups by sha256 work.

use std::io::Read;
use std::str::FromStr;

use lamina_store::{
    BlobInfo, BlobKind, Compression, Digest, ImageRecord, ImageState, LayerRecord, LayerVariant,
    Store,
};
use lamina_types::Reference;
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION,
};

use crate::ImageError;

/// One layer of a stored image: the layer record and the variant its manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayer {
    /// The layer (blake3 of the uncompressed tar is its key; every known variant listed).
    pub record: LayerRecord,
    /// The variant the manifest references.
    pub variant: LayerVariant,
}

/// An image whose manifest, config and layers are all in the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// sha256 of the manifest bytes: the image digest users see (`sha256:<hex>`).
    pub digest: Digest,
    /// blake3 of the manifest bytes: its store address.
    pub manifest_blob: Digest,
    /// The parsed manifest.
    pub manifest: ImageManifest,
    /// blake3 of the config bytes.
    pub config_blob: Digest,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// Layers, bottom first, matching `manifest.layers()` and `config.rootfs().diff_ids()`.
    pub layers: Vec<ImageLayer>,
}

/// What a listing shows of a stored image, read from its manifest alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    /// sha256 of the manifest bytes: the image digest users see.
    pub digest: Digest,
    /// The layers' sizes as the manifest gives them (those of the variants it names).
    pub size: u64,
    /// When the manifest blob was last used, before this read.
    pub last_used: std::time::SystemTime,
}

impl StoredImage {
    /// The manifest at `digest` summed up for a listing, `None` if it is not stored. One
    /// blob read, no config or layer lookups: `image ls` reads each image's manifest only.
    pub fn summary(store: &Store, digest: &Digest) -> Result<Option<ManifestSummary>, ImageError> {
        let Some((info, bytes)) = read_blob(store, digest)? else {
            return Ok(None);
        };
        let manifest = crate::documents::parse_manifest(&digest.to_string(), &bytes)?;
        Ok(Some(ManifestSummary {
            digest: info.sha256,
            size: manifest.layers().iter().map(|layer| layer.size()).sum(),
            last_used: info.last_used,
        }))
    }

    /// Writes `config` (its `rootfs.diff_ids` replaced by the layers' diff_ids) and a manifest
    /// naming each layer's `compression` variant into the store, deterministically (same
    /// inputs, same bytes, same digest). Every layer must already be stored with that variant;
    /// a missing one is an error naming the layer.
    pub fn commit(
        store: &Store,
        config: &ImageConfiguration,
        layers: &[LayerRecord],
        compression: Compression,
    ) -> Result<StoredImage, ImageError> {
        let mut config = config.clone();
        config.rootfs_mut().set_typ("layers".to_owned());
        config
            .rootfs_mut()
            .set_diff_ids(layers.iter().map(|l| l.diff_id.to_string()).collect());
        let config_bytes = canonical_json(&config, "config")?;
        StoredImage::commit_config_bytes(store, &config_bytes, layers, compression)
    }

    /// [`StoredImage::commit`] with the config stored exactly as `config_bytes` (an imported
    /// or pulled image's, whose sha256 is its Docker image ID): only a new manifest is
    /// written. The config's `rootfs.diff_ids` must be the layers' diff_ids.
    pub fn commit_config_bytes(
        store: &Store,
        config_bytes: &[u8],
        layers: &[LayerRecord],
        compression: Compression,
    ) -> Result<StoredImage, ImageError> {
        StoredImage::commit_leased(store, config_bytes, layers, compression, None)
    }

    /// [`StoredImage::commit_config_bytes`] with the config and manifest in `lease` from the
    /// moment they are stored, so a GC in another process cannot take them before the
    /// caller references them (a build's cache entries, a tag).
    pub fn commit_leased(
        store: &Store,
        config_bytes: &[u8],
        layers: &[LayerRecord],
        compression: Compression,
        lease: Option<&lamina_store::Lease<'_>>,
    ) -> Result<StoredImage, ImageError> {
        let config = crate::documents::parse_config("new image", config_bytes)?;
        StoredImage::commit_parsed(store, config_bytes, config, layers, compression, lease, &[])
    }

    /// [`StoredImage::commit_leased`] given `config`, what
    /// [`parse_config`](crate::documents::parse_config) reads from `config_bytes` (a caller
    /// that commits the same config again keeps it rather than reading it again).
    /// `stored_variants` are layer variants the caller found stored and keeps in use (under
    /// its lease or read section): the image names them without asking the store again.
    pub fn commit_parsed(
        store: &Store,
        config_bytes: &[u8],
        config: ImageConfiguration,
        layers: &[LayerRecord],
        compression: Compression,
        lease: Option<&lamina_store::Lease<'_>>,
        stored_variants: &[Digest],
    ) -> Result<StoredImage, ImageError> {
        let put = |kind, bytes: &[u8]| match lease {
            Some(lease) => store.put_bytes_leased(kind, bytes, lease),
            None => store.put_bytes(kind, bytes),
        };
        let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        if *config.rootfs().diff_ids() != diff_ids {
            return Err(invalid(
                "new image",
                format!(
                    "its config lists diff_ids {:?} but its layers are {diff_ids:?}",
                    config.rootfs().diff_ids()
                ),
            ));
        }
        let mut image_layers = Vec::with_capacity(layers.len());
        let mut descriptors = Vec::with_capacity(layers.len());
        for layer in layers {
            let (record, variant) = stored_variant(store, layer, compression, stored_variants)?;
            descriptors.push(Descriptor::new(
                layer_media_type(compression),
                variant.size,
                oci_digest(&variant.sha256)?,
            ));
            image_layers.push(ImageLayer { record, variant });
        }
        let config_info = put(BlobKind::Config, config_bytes)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_info.size,
                oci_digest(&config_info.sha256)?,
            ))
            .layers(descriptors)
            .build()
            .map_err(|e| invalid("new image", format!("cannot build its manifest: {e}")))?;
        let manifest_bytes = canonical_json(&manifest, "manifest")?;
        let manifest_info = put(BlobKind::Manifest, &manifest_bytes)?;
        Ok(StoredImage {
            digest: manifest_info.sha256,
            manifest_blob: manifest_info.digest,
            manifest,
            config_blob: config_info.digest,
            config,
            layers: image_layers,
        })
    }

    /// Reads the image whose manifest is stored under `digest` (blake3 or sha256).
    ///
    /// Any stored image manifest works, not only ones [`StoredImage::commit`] wrote (imported
    /// or pulled manifests keep their bytes, so their digests stay): each layer is found by
    /// its config `diff_id`, and its variant by the descriptor's sha256.
    pub fn load(store: &Store, digest: &Digest) -> Result<StoredImage, ImageError> {
        let reference = digest.to_string();
        let (manifest_info, manifest_bytes) =
            read_blob(store, digest)?.ok_or_else(|| ImageError::ImageNotFound {
                reference: reference.clone(),
            })?;
        let manifest = crate::documents::parse_manifest(&reference, &manifest_bytes)?;
        let config_digest = store_digest(manifest.config().digest())
            .map_err(|reason| invalid(&reference, format!("config {reason}")))?;
        let (config_info, config_bytes) = read_blob(store, &config_digest)?.ok_or_else(|| {
            invalid(
                &reference,
                format!("config {config_digest} is not in the store"),
            )
        })?;
        let config = crate::documents::parse_config(&reference, &config_bytes)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(invalid(
                &reference,
                format!(
                    "manifest lists {} layers but config has {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (descriptor, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let diff_id = Digest::parse(diff_id)
                .map_err(|e| invalid(&reference, format!("diff_id {diff_id:?}: {e}")))?;
            let record = store.layer_by_diff_id(&diff_id)?.ok_or_else(|| {
                invalid(&reference, format!("layer {diff_id} is not in the store"))
            })?;
            let sha256 = store_digest(descriptor.digest())
                .map_err(|reason| invalid(&reference, format!("layer {reason}")))?;
            let variant = record
                .variants
                .iter()
                .find(|v| v.sha256 == sha256)
                .cloned()
                .ok_or_else(|| {
                    invalid(
                        &reference,
                        format!("layer {diff_id} has no stored variant with digest {sha256}"),
                    )
                })?;
            layers.push(ImageLayer { record, variant });
        }
        Ok(StoredImage {
            digest: manifest_info.sha256,
            manifest_blob: manifest_info.digest,
            manifest,
            config_blob: config_info.digest,
            config,
            layers,
        })
    }

    /// Reads the image tagged `name` (`name:tag`; a missing `:tag` means `:latest`; short and
    /// full names are one, see [`image_name`]), or `Ok(None)` when no such name is in the store.
    /// A name that is not a valid reference is an error.
    pub fn load_named(store: &Store, name: &str) -> Result<Option<StoredImage>, ImageError> {
        match find_named(store, &image_name(name)?)? {
            None => Ok(None),
            Some(record) => StoredImage::load(store, &record.manifest).map(Some),
        }
    }

    /// Names this image in the store (an `ImageRecord`, a GC root listing the config and every
    /// layer); `pinned` images refuse removal until unpinned.
    ///
    /// The record's key is the canonical full name ([`image_name`]); a record of the same
    /// name under an older short key is replaced by it. `pinned == false` leaves the pin of
    /// an existing name as it was; unpin with `Store::set_pinned`.
    pub fn tag(&self, store: &Store, name: &str, pinned: bool) -> Result<(), ImageError> {
        let reference = image_name(name)?;
        let key = reference.to_string();
        let legacy = legacy_keys(&reference)
            .into_iter()
            .filter_map(|k| store.image(&k).transpose().map(|r| r.map(|r| (k, r))))
            .collect::<Result<Vec<_>, _>>()?;
        store.tag_image(
            &key,
            &self.manifest_blob,
            &self.references(),
            ImageState::Complete,
        )?;
        let was_pinned = legacy.iter().any(|(_, r)| r.pinned);
        if pinned || was_pinned {
            store.set_pinned(&key, true)?;
        }
        for (old, record) in legacy {
            if record.pinned {
                store.set_pinned(&old, false)?;
            }
            store.remove_image(&old)?;
        }
        Ok(())
    }

    /// Every digest this image needs kept: the config blob and each layer key (a layer key
    /// keeps all its variants).
    pub fn references(&self) -> Vec<Digest> {
        std::iter::once(self.config_blob)
            .chain(self.layers.iter().map(|l| l.record.digest))
            .collect()
    }
}

/// `name` as a reference by Docker's rules, with tag `latest` when it has neither a tag nor
/// a digest: `python:3.12` and `docker.io/library/python:3.12` give the same reference, whose
/// `to_string()` (the full form) is the image's key in the store and whose `familiar()` is
/// the short form `image ls` shows. Invalid names (`BAD NAME`, `:`, `x@sha256:zz`) are
/// refused with a message naming them.
pub fn image_name(name: &str) -> Result<Reference, ImageError> {
    Reference::parse(name)
        .map(Reference::with_default_tag)
        .map_err(|e| match e {
            lamina_types::ParseError::Reference { input, reason } => ImageError::InvalidReference {
                reference: input,
                reason,
            },
            other => ImageError::InvalidReference {
                reference: name.to_owned(),
                reason: other.to_string(),
            },
        })
}

/// The image record named `reference`: under its full name, else under a short key an older
/// store wrote for it (`python:3.12`, `library/python:3.12`, `docker.io/python:3.12`).
pub fn find_named(store: &Store, reference: &Reference) -> Result<Option<ImageRecord>, ImageError> {
    if let Some(record) = store.image(&reference.to_string())? {
        return Ok(Some(record));
    }
    for key in legacy_keys(reference) {
        if let Some(record) = store.image(&key)? {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Keys stores before canonical names used for `reference`: the name as users typed it, with
/// `:latest` added (see docs/format.md).
fn legacy_keys(reference: &Reference) -> Vec<String> {
    let full = reference.to_string();
    let mut keys = vec![reference.familiar()];
    if reference.registry() == lamina_types::DEFAULT_REGISTRY {
        let path = &full[lamina_types::DEFAULT_REGISTRY.len() + 1..];
        keys.push(path.to_owned());
        if let Some(short) = path.strip_prefix("library/") {
            keys.push(format!("{}/{short}", lamina_types::DEFAULT_REGISTRY));
        }
    }
    keys.retain(|k| *k != full);
    keys.sort();
    keys.dedup();
    keys
}

/// How a store key is shown to users: the short form `docker images` uses (`python:3.12`,
/// `org/app:latest`, `localhost:5000/app:1`), or the key itself if it is no valid reference.
pub fn display_name(key: &str) -> String {
    Reference::parse(key).map_or_else(|_| key.to_owned(), |r| r.familiar())
}

/// The store key for `name`: its full canonical form with the default tag
/// (`app` → `docker.io/library/app:latest`), or `name` with `:latest` added as before when it
/// is not a valid reference. Prefer [`image_name`], which refuses invalid names.
pub fn normalize_name(name: &str) -> String {
    match image_name(name) {
        Ok(reference) => reference.to_string(),
        Err(_) => {
            let last = name.rsplit('/').next().unwrap_or(name);
            if last.contains(':') || last.contains('@') {
                name.to_owned()
            } else {
                format!("{name}:latest")
            }
        }
    }
}

/// The OCI media type of a layer compressed with `compression`.
pub fn layer_media_type(compression: Compression) -> MediaType {
    MediaType::from(compression.media_type())
}

/// A store digest as an OCI digest (`sha256:<hex>` or `blake3:<hex>`, both valid OCI forms).
pub fn oci_digest(digest: &Digest) -> Result<oci_spec::image::Digest, ImageError> {
    oci_spec::image::Digest::from_str(&digest.to_string())
        .map_err(|e| invalid(&digest.to_string(), format!("not an OCI digest: {e}")))
}

/// An OCI digest as a store digest; only sha256 is accepted.
pub fn store_digest(digest: &oci_spec::image::Digest) -> Result<Digest, String> {
    Digest::parse(digest.as_ref())
        .ok()
        .filter(|d| d.algorithm() == lamina_store::Algorithm::Sha256)
        .ok_or_else(|| format!("digest {digest} is not a sha256 digest"))
}

/// Serializes `value` as compact JSON with object keys sorted, so equal values always give
/// equal bytes (oci-spec keeps labels and annotations in hash maps, whose order varies).
pub fn canonical_json<T: serde::Serialize>(value: &T, what: &str) -> Result<Vec<u8>, ImageError> {
    let value = serde_json::to_value(value)
        .map_err(|e| invalid("new image", format!("cannot serialize its {what}: {e}")))?;
    serde_json::to_vec(&sorted(value))
        .map_err(|e| invalid("new image", format!("cannot serialize its {what}: {e}")))
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The layer's record with its `compression` variant: from `layer` itself, else from the
/// store's record (which may have gained the variant since), checking the blob is present;
/// not checked when it is among `stored_variants` (the caller keeps it).
fn stored_variant(
    store: &Store,
    layer: &LayerRecord,
    compression: Compression,
    stored_variants: &[Digest],
) -> Result<(LayerRecord, LayerVariant), ImageError> {
    let find = |r: &LayerRecord| r.variant_in(compression).cloned();
    if let Some(variant) = find(layer).filter(|v| stored_variants.contains(&v.digest)) {
        return Ok((layer.clone(), variant));
    }
    let found = match find(layer) {
        Some(v) => Some((layer.clone(), v)),
        None => store
            .layer(&layer.digest)?
            .and_then(|r| find(&r).map(|v| (r, v))),
    };
    match found {
        Some((record, variant)) if crate::layer_tar::has_variant(store, &record, &variant)? => {
            Ok((record, variant))
        }
        // Only in a registry (a cache hit nothing has read): an image may name it as is.
        Some((record, variant))
            if variant.is_remote() && store.remote_blob(&variant.sha256)?.is_some() =>
        {
            Ok((record, variant))
        }
        _ => Err(ImageError::MissingVariant {
            layer: layer.digest,
            compression: compression.name(),
        }),
    }
}

fn read_blob(store: &Store, digest: &Digest) -> Result<Option<(BlobInfo, Vec<u8>)>, ImageError> {
    let Some(mut blob) = store.get(digest)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(usize::try_from(blob.info.size).unwrap_or(0));
    blob.read_to_end(&mut bytes)
        .map_err(|source| ImageError::Io {
            path: store.blob_path(&blob.info),
            source,
        })?;
    Ok(Some((blob.info, bytes)))
}

/// An [`ImageError::InvalidImage`] for `reference`.
pub fn invalid(reference: &str, reason: String) -> ImageError {
    ImageError::InvalidImage {
        reference: reference.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
