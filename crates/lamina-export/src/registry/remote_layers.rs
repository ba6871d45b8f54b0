//! Layers the store holds only as remote (docs/format.md, "Remote layers"): a
//! `--cache-from` hit that nothing has read is recorded with the variant its registry holds
//! and where to fetch it. Whatever needs the bytes (a RUN on it, an export, a push to
//! another registry or in another compression) calls [`localize`] first: the blob is
//! fetched from its recorded repository, verified against its digest, size, diff_id and
//! tar key, and stored as a local variant of the same record.

use std::collections::BTreeMap;

use lamina_store::{LayerRecord, Lease, Store};

use super::RegistryConfig;
use super::cache::{CacheLayer, fetch_layers};
use crate::ExportError;

/// What [`localize`] fetched.
pub use lamina_image::cache_records::Localized;

/// Whether some layer of `layers` is held only as remote.
pub fn any_remote(store: &Store, layers: &[LayerRecord]) -> Result<bool, ExportError> {
    for layer in layers {
        if store.remote_variant(layer)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Fetches every layer of `layers` the store holds only as remote, in parallel per source
/// repository, verified, and records each as local. With `lease`, the fetched blobs and
/// records stay in it (a build's, until it references them).
pub async fn localize(
    store: &Store,
    layers: &[LayerRecord],
    config: &RegistryConfig,
    lease: Option<&Lease<'_>>,
) -> Result<Localized, ExportError> {
    let mut by_source: BTreeMap<String, Vec<CacheLayer>> = BTreeMap::new();
    for layer in layers {
        let Some((variant, blob)) = store.remote_variant(layer)? else {
            continue;
        };
        let source = format!("{}/{}", blob.source.registry, blob.source.repository);
        let wanted = by_source.entry(source).or_default();
        let digest = variant.sha256.to_string();
        if !wanted.iter().any(|w| w.digest == digest) {
            wanted.push(CacheLayer {
                digest,
                size: variant.size,
                compression: variant.compression.name().to_owned(),
                diff_id: layer.diff_id.to_string(),
                tar: layer.digest.to_string(),
                tar_size: layer.size,
            });
        }
    }
    let mut done = Localized::default();
    for (source, wanted) in by_source {
        let (records, bytes) = fetch_layers(store, &source, &wanted, config, lease)
            .await
            .map_err(|e| ExportError::RemoteLayer {
                diff_id: wanted
                    .iter()
                    .map(|w| w.diff_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source_repository: source.clone(),
                reason: e.to_string(),
            })?;
        done.layers += records.len();
        done.bytes += bytes;
    }
    Ok(done)
}

/// [`localize`] for a sync caller, with the default registry settings (credentials from
/// `$LAMINA_REGISTRY_USER`/`$LAMINA_REGISTRY_PASSWORD` or docker's `config.json`): what an
/// export or a conversion to another compression calls before reading layer bytes. Does
/// nothing (and starts no runtime) when no layer is remote.
pub fn localize_blocking(store: &Store, layers: &[LayerRecord]) -> Result<Localized, ExportError> {
    if !any_remote(store, layers)? {
        return Ok(Localized::default());
    }
    let config = RegistryConfig::default();
    block_on(localize(store, layers, &config, None))?
}

/// Runs `future` on the caller's tokio runtime (from one of its blocking threads), or on a
/// runtime of its own outside one.
pub fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, ExportError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => Ok(tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ExportError::Io {
                path: "tokio runtime".into(),
                source,
            })?
            .block_on(future)),
    }
}
