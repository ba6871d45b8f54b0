//! Reading OCI image layouts (directory or oci-archive).

use lamina_store::{BlobKind, Digest, Store};
use oci_spec::image::{
    ANNOTATION_REF_NAME, Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest,
    MediaType, Os, Platform,
};

use super::ANNOTATION_IMAGE_NAME;
use super::import::{self, Found, check_platform, parse};
use super::source::Source;
use crate::image::store_digest;
use crate::{ExportError, StoredImage};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn is_amd64(platform: &Platform) -> bool {
    *platform.architecture() == Arch::Amd64 && *platform.os() == Os::Linux
}

fn is_index(descriptor: &Descriptor) -> bool {
    match descriptor.media_type() {
        MediaType::ImageIndex => true,
        MediaType::Other(t) => t == DOCKER_LIST,
        _ => false,
    }
}

/// Every image `index.json` names (indexes resolved to their linux/amd64 image).
pub(crate) fn read(store: &Store, source: &Source) -> Result<Vec<Found>, ExportError> {
    let index: ImageIndex = parse(source, "index.json", &source.read("index.json")?)?;
    let entries = index.manifests();
    // A layout listing several platforms' manifests side by side: take the amd64 ones.
    let any_amd64 = entries
        .iter()
        .any(|d| d.platform().as_ref().is_some_and(is_amd64));
    let mut found = Vec::new();
    for descriptor in entries {
        if any_amd64 && descriptor.platform().as_ref().is_some_and(|p| !is_amd64(p)) {
            continue;
        }
        let annotations = descriptor.annotations().as_ref();
        let names: Vec<String> = annotations
            .and_then(|a| {
                a.get(ANNOTATION_IMAGE_NAME)
                    .or_else(|| a.get(ANNOTATION_REF_NAME))
            })
            .into_iter()
            .cloned()
            .collect();
        let reference = names
            .first()
            .cloned()
            .unwrap_or_else(|| descriptor.digest().to_string());
        let manifest = select(source, descriptor, &reference, 0)?;
        let image = image(store, source, &manifest, &reference)?;
        found.push(Found { names, image });
    }
    Ok(found)
}

/// The manifest `descriptor` leads to: itself, or the linux/amd64 entry of the index it is.
fn select(
    source: &Source,
    descriptor: &Descriptor,
    reference: &str,
    depth: usize,
) -> Result<Descriptor, ExportError> {
    if !is_index(descriptor) {
        return Ok(descriptor.clone());
    }
    if depth > 4 {
        return Err(invalid(
            source,
            format!("indexes nest too deep at {reference}"),
        ));
    }
    let index: ImageIndex = parse(source, "an index", &blob(source, descriptor)?)?;
    let entries = index.manifests();
    let chosen = entries
        .iter()
        .find(|d| d.platform().as_ref().is_some_and(is_amd64))
        .or(match entries.as_slice() {
            [only] if only.platform().is_none() => Some(only),
            _ => None,
        });
    match chosen {
        Some(d) => select(source, d, reference, depth + 1),
        None => Err(ExportError::NotAmd64 {
            reference: reference.to_owned(),
            architecture: entries
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The bytes of the blob `descriptor` names, checked against its digest and size.
fn blob(source: &Source, descriptor: &Descriptor) -> Result<Vec<u8>, ExportError> {
    let digest = sha256_of(source, descriptor)?;
    let bytes = source.read(&blob_name(&digest))?;
    let actual = Digest::sha256_of(&bytes);
    if actual != digest || bytes.len() as u64 != descriptor.size() {
        return Err(invalid(
            source,
            format!(
                "blob {digest} ({} bytes) has digest {actual} and {} bytes",
                descriptor.size(),
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn sha256_of(source: &Source, descriptor: &Descriptor) -> Result<Digest, ExportError> {
    store_digest(descriptor.digest()).map_err(|reason| invalid(source, reason))
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn invalid(source: &Source, reason: String) -> ExportError {
    ExportError::InvalidArchive {
        path: source.path().to_path_buf(),
        reason,
    }
}

/// Stores the image of manifest `descriptor`: its layers, then its config and manifest as
/// they are (so its digest stays) when they are OCI documents, else converted.
fn image(
    store: &Store,
    source: &Source,
    descriptor: &Descriptor,
    reference: &str,
) -> Result<StoredImage, ExportError> {
    let manifest_bytes = blob(source, descriptor)?;
    let manifest: ImageManifest = parse(source, "a manifest", &manifest_bytes)?;
    let config_bytes = blob(source, manifest.config())?;
    let config: ImageConfiguration = parse(source, "an image config", &config_bytes)?;
    check_platform(&config, reference)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(
            source,
            format!(
                "image {reference}: manifest lists {} layers but config has {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let diff_id = Digest::parse(diff_id)
            .map_err(|e| invalid(source, format!("image {reference}: {e}")))?;
        let digest = sha256_of(source, layer)?;
        layers.push(import::layer(
            store,
            source,
            &blob_name(&digest),
            Some((&digest, layer.size())),
            &diff_id,
            reference,
        )?);
    }
    let oci_layers = manifest.layers().iter().all(|l| {
        matches!(
            l.media_type(),
            MediaType::ImageLayer | MediaType::ImageLayerGzip | MediaType::ImageLayerZstd
        )
    });
    // The manifest can be kept only if the store holds exactly the blobs it names.
    let blobs_kept = manifest
        .layers()
        .iter()
        .zip(&layers)
        .all(|(d, (record, _))| {
            store_digest(d.digest()).is_ok_and(|s| record.variants.iter().any(|v| v.sha256 == s))
        });
    let oci = matches!(manifest.media_type(), None | Some(MediaType::ImageManifest))
        && *manifest.config().media_type() == MediaType::ImageConfig
        && oci_layers
        && blobs_kept;
    if !oci {
        return import::commit_converted(store, &config, &layers);
    }
    store.put_bytes(BlobKind::Config, &config_bytes)?;
    let stored = store.put_bytes(BlobKind::Manifest, &manifest_bytes)?;
    StoredImage::load(store, &stored.digest)
}
