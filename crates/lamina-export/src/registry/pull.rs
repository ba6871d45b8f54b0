//! `pull`: a registry image into the store, with the registry's manifest bytes kept so the
//! image digest stays the registry's.
//!
//! Checking and staging are the shared ingest pipeline's ([`crate::ingest`]); this module
//! fetches: the manifest (an index resolved to its linux/amd64 entry), the config, and the
//! layer bodies, which stream into staged store blobs while being decompressed and hashed.
//! Only when the whole image has arrived and checked out is anything committed (under a
//! lease) and the image tagged. A bad or cut blob therefore leaves nothing behind.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use lamina_store::{Digest, Store};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::ImageManifest;

use super::transport::{Fault, Remote};
use super::{PullEvent, RegistryConfig, media};
use crate::image::{normalize_name, store_digest};
use crate::ingest::{self, Fetched, ImagePlan, LayerJob, MAX_CONFIG, documents};
use crate::{ExportError, StoredImage};

/// Largest manifest accepted.
const MAX_MANIFEST: usize = 8 << 20;
/// How long the pull's lease protects committed blobs until the tag lands.
const LEASE_TTL: Duration = Duration::from_secs(3600);
/// A download's byte count is reported once this many more bytes arrived...
const PROGRESS_BYTES: u64 = 64 << 10;
/// ...or this long after the last report, whichever comes first.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The callback of a [`pull_with_progress`].
type Progress<'a> = &'a (dyn Fn(PullEvent) + Send + Sync);

/// Pulls `reference` into `store` and names it there as written (`:latest` added when it
/// has neither tag nor digest). An index resolves to its linux/amd64 image. Blobs already
/// in the store are not downloaded again.
///
/// Takes `&Store`; the future is `Send`, so it can be spawned with the store shared by
/// reference or `Arc`. Layers are received concurrently within the one future, up to
/// `config.max_parallel` at a time.
pub async fn pull(
    store: &Store,
    reference: &str,
    config: &RegistryConfig,
) -> Result<StoredImage, ExportError> {
    fn ignore(_: PullEvent) {}
    pull_with_progress(store, reference, config, &ignore).await
}

/// [`pull`], calling `progress` as each blob is skipped (already in the store) or
/// downloaded. `progress` is called from the pull's future, from several blobs interleaved.
pub async fn pull_with_progress(
    store: &Store,
    reference: &str,
    config: &RegistryConfig,
    progress: Progress<'_>,
) -> Result<StoredImage, ExportError> {
    let remote = Remote::open(reference, config, RegistryOperation::Pull).await?;
    let (manifest_bytes, _) = resolve_manifest(&remote).await?;
    let manifest = ingest::parse_manifest(&remote.display, &manifest_bytes)?;
    let config_bytes = fetch_config(store, &remote, &manifest, progress).await?;
    let plan = ImagePlan::new(&remote.display, manifest_bytes, &manifest, config_bytes)?;
    let jobs = &plan.layers;
    // Indices, not `jobs.iter()`: a closure over borrowed items would make the future
    // lose `Send` (a higher-ranked lifetime the compiler cannot prove).
    let fetched: Vec<Fetched<'_>> = stream::iter(0..jobs.len())
        .map(|i| fetch_layer(store, &remote, &plan, &jobs[i], progress))
        .buffered(config.max_parallel.max(1))
        .try_collect()
        .await?;

    // Everything arrived and checked out: commit.
    let lease = store.lease(LEASE_TTL)?;
    let image = plan.commit(store, &lease, fetched)?;
    image.tag(store, &normalize_name(reference), false)?;
    lease.release()?;
    tracing::info!(
        reference,
        digest = %image.digest,
        config = %image.config_blob,
        layers = image.layers.len(),
        "pulled"
    );
    Ok(image)
}

fn invalid(reference: &str, reason: String) -> ExportError {
    crate::image::invalid(reference, reason)
}

/// `digest` names a blob, or is `manifest`.
fn rejected(reference: &str, digest: &str, reason: String) -> ExportError {
    ExportError::BlobRejected {
        reference: reference.to_owned(),
        what: if digest.starts_with("sha256:") {
            format!("blob {digest}")
        } else {
            digest.to_owned()
        },
        reason,
    }
}

/// The image manifest for the reference: bytes and sha256, an index resolved to its
/// linux/amd64 entry.
async fn resolve_manifest(remote: &Remote) -> Result<(Vec<u8>, Digest), ExportError> {
    let (bytes, digest) = fetch_manifest(remote, &remote.reference).await?;
    match media::manifest_kind(&bytes) {
        media::ManifestKind::Image => Ok((bytes, digest)),
        media::ManifestKind::Index => {
            let index = ingest::parse_index(&remote.display, &bytes)?;
            let chosen = documents::amd64_entry(&remote.display, &index)?;
            let target = remote
                .reference
                .clone_with_digest(chosen.digest().to_string());
            let (bytes, digest) = fetch_manifest(remote, &target).await?;
            match media::manifest_kind(&bytes) {
                media::ManifestKind::Image => Ok((bytes, digest)),
                _ => Err(invalid(
                    &remote.display,
                    format!("index entry {digest} is not an image manifest"),
                )),
            }
        }
        media::ManifestKind::Other(media_type) => Err(ExportError::UnsupportedMediaType {
            reference: remote.display.clone(),
            media_type,
        }),
    }
}

async fn fetch_manifest(
    remote: &Remote,
    reference: &Reference,
) -> Result<(Vec<u8>, Digest), ExportError> {
    let auth = oci_client::secrets::RegistryAuth::Anonymous; // already stored by Remote::open
    let (bytes, digest_text) = remote
        .retry("manifest", || async {
            remote
                .client
                .pull_manifest_raw(reference, &auth, media::ACCEPTED_MANIFESTS)
                .await
                .map_err(Fault::Oci)
        })
        .await?;
    if bytes.len() > MAX_MANIFEST {
        return Err(invalid(
            &remote.display,
            format!(
                "manifest is {} bytes, more than any image needs",
                bytes.len()
            ),
        ));
    }
    let digest = Digest::sha256_of(&bytes);
    // oci-client already checked the body against the header and the reference's digest.
    if digest.to_string() != digest_text {
        return Err(rejected(
            &remote.display,
            "manifest",
            format!("it hashes to {digest}, the registry said {digest_text}"),
        ));
    }
    Ok((bytes.to_vec(), digest))
}

/// The config bytes (from the store if there, else the registry), verified.
async fn fetch_config(
    store: &Store,
    remote: &Remote,
    manifest: &ImageManifest,
    progress: Progress<'_>,
) -> Result<Vec<u8>, ExportError> {
    let descriptor = manifest.config();
    let digest_text = descriptor.digest().to_string();
    let sha256 = store_digest(descriptor.digest())
        .map_err(|reason| invalid(&remote.display, format!("config {reason}")))?;
    if let Some(bytes) = store.read(&sha256)? {
        progress(PullEvent::Skipped {
            digest: sha256,
            size: descriptor.size(),
        });
        return Ok(bytes);
    }
    if descriptor.size() > MAX_CONFIG {
        return Err(invalid(
            &remote.display,
            format!(
                "config is {} bytes, more than any image needs",
                descriptor.size()
            ),
        ));
    }
    let what = format!("blob {digest_text}");
    progress(PullEvent::Downloading {
        digest: sha256,
        size: descriptor.size(),
    });
    let bytes = remote
        .retry(&what, || async {
            let mut body = remote
                .client
                .pull_blob_stream(&remote.reference, digest_text.as_str())
                .await
                .map_err(Fault::Oci)?;
            let mut meter = Meter::new(sha256, descriptor.size(), progress);
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Fault::Stream)?;
                bytes.extend_from_slice(&chunk);
                meter.add(chunk.len());
                if bytes.len() as u64 > descriptor.size() {
                    break;
                }
            }
            meter.finish();
            Ok(bytes)
        })
        .await?;
    if bytes.len() as u64 != descriptor.size() {
        return Err(rejected(
            &remote.display,
            &digest_text,
            format!(
                "got {} bytes, the manifest says {}",
                bytes.len(),
                descriptor.size()
            ),
        ));
    }
    if Digest::sha256_of(&bytes) != sha256 {
        return Err(rejected(
            &remote.display,
            &digest_text,
            "content does not match its digest".into(),
        ));
    }
    progress(PullEvent::Downloaded {
        digest: sha256,
        size: descriptor.size(),
    });
    Ok(bytes)
}

async fn fetch_layer<'s>(
    store: &'s Store,
    remote: &Remote,
    plan: &ImagePlan,
    job: &LayerJob,
    progress: Progress<'_>,
) -> Result<Fetched<'s>, ExportError> {
    if let Some(fetched) = plan.present(store, job)? {
        tracing::debug!(layer = %job.digest, "layer already in the store");
        progress(PullEvent::Skipped {
            digest: job.sha256,
            size: job.size,
        });
        return Ok(fetched);
    }
    let what = format!("blob {}", job.digest);
    progress(PullEvent::Downloading {
        digest: job.sha256,
        size: job.size,
    });
    let staged = remote
        .retry(&what, || async {
            let mut body = remote
                .client
                .pull_blob_stream(&remote.reference, job.digest.as_str())
                .await
                .map_err(Fault::Oci)?;
            let fault = |e| Fault::Export(plan.ingest_error(job, e));
            let mut ingest = plan.receiver(store, job).map_err(Fault::Export)?;
            let mut meter = Meter::new(job.sha256, job.size, progress);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Fault::Stream)?;
                ingest.write(&chunk).map_err(fault)?;
                meter.add(chunk.len());
            }
            meter.finish();
            ingest.finish().map_err(fault)
        })
        .await
        .map_err(|e| match e {
            // A non-distributable layer may live only at its descriptor's URLs.
            ExportError::RemoteNotFound { .. } if !job.urls.is_empty() => invalid(
                &remote.display,
                format!(
                    "non-distributable layer {} is not on this registry and Lamina does not fetch layers from other hosts (its descriptor points to {}); copy the image with its layers (skopeo copy) to a registry that holds them",
                    job.digest,
                    job.urls.join(", ")
                ),
            ),
            e => e,
        })?;
    let fetched = plan.verify(job, staged)?;
    progress(PullEvent::Downloaded {
        digest: job.sha256,
        size: job.size,
    });
    Ok(fetched)
}

/// Reports a download's bytes as [`PullEvent::Progress`], batched so a body arriving in
/// small chunks costs few calls.
struct Meter<'a> {
    digest: Digest,
    size: u64,
    received: u64,
    reported: u64,
    at: Instant,
    progress: Progress<'a>,
}

impl<'a> Meter<'a> {
    fn new(digest: Digest, size: u64, progress: Progress<'a>) -> Self {
        Meter {
            digest,
            size,
            received: 0,
            reported: 0,
            at: Instant::now(),
            progress,
        }
    }

    fn add(&mut self, bytes: usize) {
        self.received += bytes as u64;
        if self.received - self.reported >= PROGRESS_BYTES || self.at.elapsed() >= PROGRESS_EVERY {
            self.report();
        }
    }

    /// Reports what is not yet reported (the body ended).
    fn finish(&mut self) {
        if self.received != self.reported {
            self.report();
        }
    }

    fn report(&mut self) {
        self.reported = self.received;
        self.at = Instant::now();
        (self.progress)(PullEvent::Progress {
            digest: self.digest,
            received: self.received,
            size: self.size,
        });
    }
}
