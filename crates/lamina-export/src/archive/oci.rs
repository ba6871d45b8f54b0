//! Reading OCI image layouts (directory, oci-archive, or the layout `docker save` of Docker
//! 25 and later puts in its tar): manifests and configs are kept as they are.

use lamina_store::{Digest, Store};
use lamina_types::Platform;
use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor};

use super::ANNOTATION_IMAGE_NAME;
use super::import::{Found, receive_layers};
use super::source::Source;
use crate::ExportError;
use crate::image::store_digest;
use crate::ingest::{self, ImagePlan, MAX_CONFIG, documents};
use crate::registry::media::{self, ManifestKind};

/// Every image `index.json` names (indexes resolved to their linux/amd64 image), checked
/// and staged.
pub(crate) fn read<'s>(store: &'s Store, source: &Source) -> Result<Vec<Found<'s>>, ExportError> {
    let index = ingest::parse_index(
        &source.path().display().to_string(),
        &source.read("index.json")?,
    )?;
    let entries = index.manifests();
    // A layout listing several platforms' manifests side by side: take the amd64 ones.
    let amd64 = |d: &Descriptor| {
        d.platform().as_ref().is_some_and(|p| {
            Platform::LINUX_AMD64.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    };
    let any_amd64 = entries.iter().any(amd64);
    let mut found = Vec::new();
    for descriptor in entries {
        if any_amd64 && descriptor.platform().is_some() && !amd64(descriptor) {
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
        let manifest_bytes = select(source, descriptor, &reference, 0)?;
        let manifest = ingest::parse_manifest(&reference, &manifest_bytes)?;
        let config_bytes = blob(source, manifest.config())?;
        let plan = ImagePlan::new(&reference, manifest_bytes, &manifest, config_bytes)?;
        let fetched = receive_layers(store, source, &plan, |i| {
            blob_name_of(&plan.layers[i].sha256)
        })?;
        found.push(Found {
            names,
            plan,
            fetched,
        });
    }
    Ok(found)
}

/// The bytes of the image manifest `descriptor` leads to: its own, or those of the
/// linux/amd64 entry of the index it is (checked against the descriptor).
fn select(
    source: &Source,
    descriptor: &Descriptor,
    reference: &str,
    depth: usize,
) -> Result<Vec<u8>, ExportError> {
    if depth > 4 {
        return Err(invalid(
            source,
            format!("indexes nest too deep at {reference}"),
        ));
    }
    let bytes = checked_blob(source, descriptor)?;
    match media::manifest_kind(&bytes) {
        ManifestKind::Image => Ok(bytes),
        ManifestKind::Index => {
            let index = ingest::parse_index(reference, &bytes)?;
            let chosen = documents::amd64_entry(reference, &index)?;
            select(source, chosen, reference, depth + 1)
        }
        ManifestKind::Other(media_type) => Err(ExportError::UnsupportedMediaType {
            reference: reference.to_owned(),
            media_type,
        }),
    }
}

/// The bytes of the blob `descriptor` names, checked against its digest and size.
fn checked_blob(source: &Source, descriptor: &Descriptor) -> Result<Vec<u8>, ExportError> {
    let digest = sha256_of(source, descriptor)?;
    let bytes = blob(source, descriptor)?;
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

/// The bytes of the (small) blob `descriptor` names, unchecked: the pipeline checks them.
fn blob(source: &Source, descriptor: &Descriptor) -> Result<Vec<u8>, ExportError> {
    let digest = sha256_of(source, descriptor)?;
    if descriptor.size() > MAX_CONFIG {
        return Err(invalid(
            source,
            format!(
                "blob {digest} has {} bytes, more than any image metadata",
                descriptor.size()
            ),
        ));
    }
    source.read(&blob_name_of(&digest))
}

fn sha256_of(source: &Source, descriptor: &Descriptor) -> Result<Digest, ExportError> {
    store_digest(descriptor.digest()).map_err(|reason| invalid(source, reason))
}

fn blob_name_of(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn invalid(source: &Source, reason: String) -> ExportError {
    ExportError::InvalidArchive {
        path: source.path().to_path_buf(),
        reason,
    }
}
