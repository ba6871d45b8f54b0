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
        StoredImage::commit_parsed(store, config_bytes, config, layers, compression, lease)
    }

    /// [`StoredImage::commit_leased`] given `config`, what
    /// [`parse_config`](crate::documents::parse_config) reads from `config_bytes` (a caller
    /// that commits the same config again keeps it rather than reading it again).
    pub fn commit_parsed(
        store: &Store,
        config_bytes: &[u8],
        config: ImageConfiguration,
        layers: &[LayerRecord],
        compression: Compression,
        lease: Option<&lamina_store::Lease<'_>>,
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
            let (record, variant) = stored_variant(store, layer, compression)?;
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
/// store's record (which may have gained the variant since), checking the blob is present.
fn stored_variant(
    store: &Store,
    layer: &LayerRecord,
    compression: Compression,
) -> Result<(LayerRecord, LayerVariant), ImageError> {
    let find = |r: &LayerRecord| {
        r.variants
            .iter()
            .find(|v| v.compression == compression)
            .cloned()
    };
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
mod tests {
    use super::*;
    use lamina_store::StoreOptions;
    use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os};
    use std::collections::HashMap;
    use std::time::SystemTime;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
        (dir, store)
    }

    /// A fake layer: `tar` stands for the uncompressed bytes, `zstd` for its zstd variant.
    fn layer(store: &Store, tar: &[u8], zstd: &[u8]) -> LayerRecord {
        let plain = store.put_bytes(BlobKind::Layer, tar).unwrap();
        let packed = store.put_bytes(BlobKind::Layer, zstd).unwrap();
        let variant = LayerVariant::stored;
        store
            .put_layer(&LayerRecord {
                digest: plain.digest,
                diff_id: plain.sha256,
                size: plain.size,
                variants: vec![
                    variant(Compression::Zstd, &packed),
                    variant(Compression::None, &plain),
                ],
                created: SystemTime::now(),
                tar_split: None,
            })
            .unwrap()
    }

    /// Commits an image of the one layer `layer` with a config of `labels`.
    fn commit_one(
        store: &Store,
        labels: &[(&str, &str)],
        layer: &LayerRecord,
        compression: Compression,
    ) -> Result<StoredImage, ImageError> {
        StoredImage::commit(
            store,
            &config(labels),
            std::slice::from_ref(layer),
            compression,
        )
    }

    fn config(labels: &[(&str, &str)]) -> ImageConfiguration {
        let labels: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .env(vec!["PATH=/bin".to_owned()])
                    .labels(labels)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn commit_then_load_round_trips() {
        let (_dir, store) = store();
        let a = layer(&store, b"tar a", b"zst a");
        let b = layer(&store, b"tar b", b"zst b");
        let image = StoredImage::commit(
            &store,
            &config(&[("x", "1")]),
            &[a.clone(), b.clone()],
            Compression::Zstd,
        )
        .unwrap();

        let m = &image.manifest;
        assert_eq!(m.media_type(), &Some(MediaType::ImageManifest));
        assert_eq!(m.config().media_type(), &MediaType::ImageConfig);
        assert_eq!(m.layers().len(), 2);
        for (d, rec) in m.layers().iter().zip([&a, &b]) {
            assert_eq!(d.media_type(), &MediaType::ImageLayerZstd);
            let zstd = &rec.variants[0];
            assert_eq!(d.digest().to_string(), zstd.sha256.to_string());
            assert_eq!(d.size(), zstd.size);
        }
        assert_eq!(
            image.config.rootfs().diff_ids(),
            &vec![a.diff_id.to_string(), b.diff_id.to_string()]
        );
        // The digest is the sha256 of the stored manifest bytes.
        let bytes = store.read(&image.manifest_blob).unwrap().unwrap();
        assert_eq!(Digest::sha256_of(&bytes), image.digest);
        assert_eq!(
            store.stat(&image.digest).unwrap().unwrap().kind,
            BlobKind::Manifest
        );
        let config_info = store.stat(&image.config_blob).unwrap().unwrap();
        assert_eq!(config_info.kind, BlobKind::Config);
        assert_eq!(
            m.config().digest().to_string(),
            config_info.sha256.to_string()
        );

        let zstd_sizes: u64 = [&a, &b].iter().map(|l| l.variants[0].size).sum();
        let mut last_use = None;
        for key in [image.digest, image.manifest_blob] {
            let summary = StoredImage::summary(&store, &key).unwrap().unwrap();
            assert_eq!((summary.digest, summary.size), (image.digest, zstd_sizes));
            last_use.get_or_insert(summary.last_used);
            let loaded = StoredImage::load(&store, &key).unwrap();
            assert_eq!(loaded.digest, image.digest);
            assert_eq!(loaded.manifest, image.manifest);
            assert_eq!(loaded.config, image.config);
            assert_eq!(loaded.layers, image.layers);
            assert_eq!(loaded.references(), image.references());
        }
        assert_eq!(image.layers[1].variant.compression, Compression::Zstd);
        assert_eq!(
            image.references(),
            vec![image.config_blob, a.digest, b.digest]
        );
        let info = store.stat(&image.manifest_blob).unwrap().unwrap();
        assert_eq!(last_use, Some(info.last_used), "the use before the read");
        assert!(
            StoredImage::summary(&store, &a.digest).is_err(),
            "not a manifest"
        );
        let absent = Digest::blake3([7; 32]);
        assert!(StoredImage::summary(&store, &absent).unwrap().is_none());
    }

    #[test]
    fn commit_is_deterministic_and_compression_changes_only_the_manifest() {
        let (_dir, store) = store();
        let a = layer(&store, b"tar a", b"zst a");
        // Many labels: a hash map's iteration order would show up here.
        let labels: Vec<(String, String)> = (0..32)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (&**k, &**v)).collect();
        let one = commit_one(&store, &refs, &a, Compression::Zstd).unwrap();
        let mut reversed = refs.clone();
        reversed.reverse();
        let two = commit_one(&store, &reversed, &a, Compression::Zstd).unwrap();
        assert_eq!(one.digest, two.digest);
        assert_eq!(one.config_blob, two.config_blob);

        let plain = StoredImage::commit(&store, &config(&refs), &[a], Compression::None).unwrap();
        assert_ne!(plain.digest, one.digest);
        assert_eq!(plain.config_blob, one.config_blob);
        assert_eq!(
            plain.manifest.layers()[0].media_type(),
            &MediaType::ImageLayer
        );
    }

    #[test]
    fn a_missing_variant_is_an_error_naming_the_layer() {
        let (_dir, store) = store();
        let a = layer(&store, b"tar a", b"zst a");
        let err = commit_one(&store, &[], &a, Compression::Gzip).unwrap_err();
        match &err {
            ImageError::MissingVariant { layer, compression } => {
                assert_eq!(*layer, a.digest);
                assert_eq!(*compression, "gzip");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&a.digest.to_string()), "{err}");
    }

    #[test]
    fn load_of_unknown_digest_or_garbage_fails_cleanly() {
        let (_dir, store) = store();
        let missing = Digest::sha256_of(b"nothing");
        assert!(matches!(
            StoredImage::load(&store, &missing),
            Err(ImageError::ImageNotFound { .. })
        ));
        let junk = store.put_bytes(BlobKind::Manifest, b"{not json").unwrap();
        assert!(matches!(
            StoredImage::load(&store, &junk.digest),
            Err(ImageError::InvalidImage { .. })
        ));
    }

    #[test]
    fn tag_then_load_named_with_default_tag() {
        let (_dir, store) = store();
        let a = layer(&store, b"tar a", b"zst a");
        let image = commit_one(&store, &[], &a, Compression::Zstd).unwrap();
        assert!(StoredImage::load_named(&store, "app").unwrap().is_none());
        image.tag(&store, "app", true).unwrap();
        let record = store
            .image("docker.io/library/app:latest")
            .unwrap()
            .unwrap();
        assert!(record.pinned);
        assert_eq!(record.manifest, image.manifest_blob);
        assert!(record.references.contains(&a.digest));
        for name in [
            "app",
            "app:latest",
            "docker.io/library/app",
            "library/app:latest",
        ] {
            let loaded = StoredImage::load_named(&store, name).unwrap().unwrap();
            assert_eq!(loaded.digest, image.digest);
        }
        // The tag keeps the image through GC.
        store.gc().unwrap();
        assert!(StoredImage::load_named(&store, "app").unwrap().is_some());
    }

    #[test]
    fn names_are_stored_in_full_form_with_latest_only_without_tag_or_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        for (name, key) in [
            ("app", "docker.io/library/app:latest"),
            ("app:1", "docker.io/library/app:1"),
            ("org/app", "docker.io/org/app:latest"),
            ("host:5000/app", "host:5000/app:latest"),
            ("host:5000/app:2", "host:5000/app:2"),
            (
                &format!("app@{digest}"),
                &format!("docker.io/library/app@{digest}"),
            ),
        ] {
            assert_eq!(normalize_name(name), key, "{name}");
            assert_eq!(image_name(name).unwrap().to_string(), key, "{name}");
        }
    }

    #[test]
    fn invalid_names_are_refused_naming_them() {
        for bad in ["BAD NAME", ":", "x@sha256:zz", ""] {
            let err = image_name(bad).unwrap_err();
            assert!(
                matches!(&err, ImageError::InvalidReference { reference, .. } if reference == bad),
                "{bad:?}: {err}"
            );
        }
    }

    /// Stores written before names were canonical keyed images by the name as typed
    /// (`python:3.12`); those records are still found, and a new tag of the same name
    /// replaces the old key (keeping its pin).
    #[test]
    fn records_under_old_short_keys_are_found_and_replaced() {
        let (_dir, store) = store();
        let a = layer(&store, b"tar a", b"zst a");
        let image = commit_one(&store, &[], &a, Compression::Zstd).unwrap();
        store
            .tag_image(
                "python:3.12",
                &image.manifest_blob,
                &image.references(),
                ImageState::Complete,
            )
            .unwrap();
        store.set_pinned("python:3.12", true).unwrap();
        for name in ["python:3.12", "docker.io/library/python:3.12"] {
            let found = StoredImage::load_named(&store, name).unwrap().unwrap();
            assert_eq!(found.digest, image.digest, "{name}");
        }
        image
            .tag(&store, "docker.io/library/python:3.12", false)
            .unwrap();
        let names: Vec<_> = store
            .images()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["docker.io/library/python:3.12"]);
        assert!(store.image(&names[0]).unwrap().unwrap().pinned);
    }
}
