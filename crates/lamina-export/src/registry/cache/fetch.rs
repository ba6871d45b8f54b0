//! Downloading the layers of cache records: in parallel, each streamed into a staged store
//! blob while decompressed and hashed, and kept only when its digest, size, diff_id and tar
//! key are the ones the record claims (whoever can push to a cache ref could otherwise
//! inject a layer).

use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt, stream};
use lamina_store::{Digest, LayerRecord, LayerVariant, Lease, Store};
use oci_client::RegistryOperation;

use super::CacheLayer;
use crate::ExportError;
use crate::ingest::layer::{IngestError, LayerIngest};
use crate::registry::RegistryConfig;
use crate::registry::transport::{Fault, Remote};

/// How long fetched blobs are protected until the build records them.
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// Downloads `layers` from the cache ref `reference` (the repository holding them) into
/// `store`, verified, and records them; a layer the store holds already is not fetched.
/// With `lease` (a build's), every fetched blob and layer record stays in it, so GC cannot
/// take them before the build references them; without, they are leased only until this
/// returns (the caller's image already names them).
/// Returns the layer records, in order, and the bytes downloaded.
pub async fn fetch_layers(
    store: &Store,
    reference: &str,
    layers: &[CacheLayer],
    config: &RegistryConfig,
    lease: Option<&Lease<'_>>,
) -> Result<(Vec<LayerRecord>, u64), ExportError> {
    let remote = Remote::open(reference, config, RegistryOperation::Pull).await?;
    let own;
    let lease = match lease {
        Some(lease) => lease,
        None => {
            own = store.lease(LEASE_TTL)?;
            &own
        }
    };
    // Indices, not `layers.iter()`: a closure over borrowed items would make the future
    // lose `Send` (a higher-ranked lifetime the compiler cannot prove), and the executor
    // spawns this future on its runtime.
    let fetched: Vec<(LayerRecord, u64)> = stream::iter(0..layers.len())
        .map(|i| fetch_one(store, &remote, &layers[i], lease))
        .buffered(config.max_parallel.max(1))
        .try_collect()
        .await?;
    let bytes = fetched.iter().map(|(_, n)| n).sum();
    Ok((fetched.into_iter().map(|(r, _)| r).collect(), bytes))
}

fn rejected(remote: &Remote, layer: &CacheLayer, reason: String) -> ExportError {
    ExportError::InvalidCache {
        reference: remote.display.clone(),
        reason: format!("layer {} was rejected: {reason}", layer.digest),
    }
}

/// A body the client refused (digest, cut stream) as a cache problem, not an image one.
fn as_cache_error(remote: &Remote, layer: &CacheLayer, e: ExportError) -> ExportError {
    match e {
        ExportError::BlobRejected { reason, .. } => rejected(remote, layer, reason),
        e => e,
    }
}

async fn fetch_one(
    store: &Store,
    remote: &Remote,
    layer: &CacheLayer,
    lease: &Lease<'_>,
) -> Result<(LayerRecord, u64), ExportError> {
    let invalid = |reason: &str| ExportError::InvalidCache {
        reference: remote.display.clone(),
        reason: format!("layer {}: {reason}", layer.digest),
    };
    let sha256 = Digest::parse(&layer.digest).map_err(|_| invalid("bad digest"))?;
    let diff_id = Digest::parse(&layer.diff_id).map_err(|_| invalid("bad diff_id"))?;
    let tar = Digest::parse(&layer.tar).map_err(|_| invalid("bad tar digest"))?;
    let compression = layer
        .compression()
        .ok_or_else(|| invalid("unknown compression"))?;
    if let Some(record) = store.layer(&tar)?
        && record.diff_id == diff_id
    {
        for variant in &record.variants {
            if crate::layer_tar::has_variant(store, &record, variant)? {
                lease.add(&record.digest)?;
                return Ok((record, 0));
            }
        }
    }
    let what = format!("blob {}", layer.digest);
    let staged = remote
        .retry(&what, || async {
            let mut body = remote
                .client
                .pull_blob_stream(&remote.reference, layer.digest.as_str())
                .await
                .map_err(Fault::Oci)?;
            let fault = |e: IngestError| {
                Fault::Export(match e {
                    IngestError::Store(e) => e.into(),
                    IngestError::Stage(source) => ExportError::Io {
                        path: "store staging file".into(),
                        source,
                    },
                    IngestError::Decode(e) => rejected(
                        remote,
                        layer,
                        format!("not a valid {compression} stream: {e}"),
                    ),
                })
            };
            let mut ingest = LayerIngest::new(store, compression).map_err(fault)?;
            while let Some(chunk) = body.next().await {
                ingest
                    .write(&chunk.map_err(Fault::Stream)?)
                    .map_err(fault)?;
            }
            ingest.finish().map_err(fault)
        })
        .await
        .map_err(|e| as_cache_error(remote, layer, e))?;
    if staged.size != layer.size {
        return Err(rejected(
            remote,
            layer,
            format!("got {} bytes, the record says {}", staged.size, layer.size),
        ));
    }
    let tar_digests = staged.uncompressed;
    if tar_digests.diff_id != diff_id || tar_digests.blake3 != tar {
        return Err(rejected(
            remote,
            layer,
            format!(
                "its tar has diff_id {}, the record says {diff_id}",
                tar_digests.diff_id
            ),
        ));
    }
    let size = staged.size;
    let info = staged.commit(&sha256, size, lease).map_err(|e| match e {
        lamina_store::StoreError::DigestMismatch { .. }
        | lamina_store::StoreError::SizeMismatch { .. } => rejected(
            remote,
            layer,
            format!("content does not match its digest: {e}"),
        ),
        e => e.into(),
    })?;
    let record = store.put_layer(&LayerRecord {
        digest: tar,
        diff_id,
        size: tar_digests.size,
        variants: vec![LayerVariant::stored(compression, &info)],
        created: SystemTime::now(),
        tar_split: None,
    })?;
    lease.add(&record.digest)?;
    Ok((record, size))
}
