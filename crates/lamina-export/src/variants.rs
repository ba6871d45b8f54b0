//! An image in the layer compression a push or an export asks for.
//!
//! A stored layer is one layer record (keyed by its tar) with one or more stored variants,
//! each a blob in one compression (docs/format.md, "What a stored layer is"). Received layers
//! keep the bytes they came with, built ones are zstd; a variant a push or export needs is
//! made once from one the store has, recorded beside the others, and reused from then on.
//!
//! The image in another compression is another image: its manifest names the other variants
//! (with their media types and digests) over the same config bytes, so it has its own
//! digest. That manifest is derived from the stored one and nothing else (see
//! [`with_compression`]), so making it again gives the same bytes: a second push or export in
//! the same compression uploads or writes nothing new and the registry sees the same digest.

use lamina_store::{BlobKind, Compression, Store};
use serde_json::Value;

use crate::archive::codec;
use crate::image::{canonical_json, invalid};
use crate::registry::media::{DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};
use crate::{ExportError, StoredImage};

/// An image as [`with_compression`] returns it.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The image with every layer in the asked compression: the input image itself when it
    /// already was, else one with its own manifest (same config bytes).
    pub image: StoredImage,
    /// Layer variants that had to be made (and were stored) for this.
    pub layers_compressed: usize,
}

pub use lamina_image::variants::ensure_variant;

/// `image` with every layer in `compression`.
///
/// Each layer's variant in that compression is taken from the store when it has one, else
/// made from another variant (the plain one when there is one), checked against the layer's
/// diff_id and stored. When any layer changes, a manifest is derived from the stored one:
/// the same document (annotations, config descriptor, unknown fields kept) with each layer
/// descriptor's media type, digest and size replaced, keys sorted. A Docker (v2 schema 2)
/// manifest stays one, with Docker's layer media types, for gzip and plain layers; Docker's
/// format has no zstd type, so for zstd it becomes an OCI manifest (config bytes unchanged).
/// The manifest is stored as a blob; nothing names it, so GC may take it, and the next call
/// writes the same bytes again.
pub fn with_compression(
    store: &Store,
    image: &StoredImage,
    compression: Compression,
) -> Result<Converted, ExportError> {
    if image
        .layers
        .iter()
        .all(|l| l.variant.compression == compression)
    {
        return Ok(Converted {
            image: image.clone(),
            layers_compressed: 0,
        });
    }
    // A layer to convert that is held only as remote is fetched first (verified).
    let to_convert: Vec<_> = (image.layers.iter())
        .filter(|l| l.variant.compression != compression)
        .map(|l| l.record.clone())
        .collect();
    crate::registry::remote_layers::localize_blocking(store, &to_convert)?;
    let mut made = 0;
    let mut variants = Vec::with_capacity(image.layers.len());
    for layer in &image.layers {
        if layer.variant.compression == compression {
            variants.push(layer.variant.clone());
            continue;
        }
        // The store's record may have gained variants since the image was loaded.
        let record = store
            .layer(&layer.record.digest)?
            .unwrap_or_else(|| layer.record.clone());
        let stored = match record
            .variants
            .iter()
            .find(|v| v.compression == compression)
        {
            Some(v) if crate::layer_tar::has_variant(store, &record, v)? => Some(v.clone()),
            _ => None,
        };
        let variant = match stored {
            Some(variant) => variant,
            None => {
                let (_, variant) = codec::recompress(store, &record, compression)?;
                tracing::debug!(
                    layer = %record.digest,
                    variant = %variant.sha256,
                    compression = compression.name(),
                    "made a layer variant"
                );
                made += 1;
                variant
            }
        };
        variants.push(variant);
    }

    let reference = image.digest.to_string();
    let original = store
        .read(&image.manifest_blob)?
        .ok_or_else(|| ExportError::ImageNotFound {
            reference: reference.clone(),
        })?;
    let mut manifest: Value = serde_json::from_slice(&original)
        .map_err(|e| invalid(&reference, format!("manifest does not parse: {e}")))?;
    let docker = manifest.get("mediaType").and_then(Value::as_str) == Some(DOCKER_MANIFEST);
    let as_docker = docker && compression != Compression::Zstd;
    if docker && !as_docker {
        manifest["mediaType"] = OCI_MANIFEST.into();
        if manifest["config"].get("mediaType").and_then(Value::as_str) == Some(DOCKER_CONFIG) {
            manifest["config"]["mediaType"] = OCI_CONFIG.into();
        }
    }
    let media_type = layer_media_type(compression, as_docker);
    let Some(descriptors) = manifest.get_mut("layers").and_then(Value::as_array_mut) else {
        return Err(invalid(&reference, "manifest has no layer list".to_owned()));
    };
    if descriptors.len() != variants.len() {
        return Err(invalid(
            &reference,
            format!(
                "manifest lists {} layers, the image has {}",
                descriptors.len(),
                variants.len()
            ),
        ));
    }
    for (descriptor, variant) in descriptors.iter_mut().zip(&variants) {
        let Some(fields) = descriptor.as_object_mut() else {
            return Err(invalid(
                &reference,
                "a layer descriptor is not an object".into(),
            ));
        };
        fields.insert("mediaType".into(), media_type.into());
        fields.insert("digest".into(), variant.sha256.to_string().into());
        fields.insert("size".into(), variant.size.into());
        // Download locations of a foreign layer's original bytes do not serve these.
        fields.remove("urls");
    }
    let bytes = canonical_json(&manifest, "manifest")?;
    let info = store.put_bytes(BlobKind::Manifest, &bytes)?;
    let converted = StoredImage::load(store, &info.digest)?;
    Ok(Converted {
        image: converted,
        layers_compressed: made,
    })
}

/// The layer media type for `compression`, in Docker's naming (which has no zstd) or OCI's.
fn layer_media_type(compression: Compression, docker: bool) -> &'static str {
    match compression.docker_media_type() {
        Some(docker_type) if docker => docker_type,
        _ => compression.media_type(),
    }
}

#[cfg(test)]
mod tests;
