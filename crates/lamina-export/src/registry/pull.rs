//! `pull`: a registry image into the store, with the registry's manifest bytes kept so the
//! image digest stays the registry's.
//!
//! Every blob is checked before anything is committed: layer bodies stream into staged
//! store blobs while being decompressed and hashed (compressed sha256 against the
//! descriptor, uncompressed sha256 against the config's diff_id), and only when the whole
//! image has arrived are the blobs, layer records and manifest committed under a lease and
//! the image tagged. A bad or cut blob therefore leaves nothing behind.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{StreamExt, TryStreamExt, stream};
use lamina_store::{
    BlobInfo, BlobKind, Compression, Digest, LayerRecord, LayerVariant, Lease, Store,
};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{Arch, ImageConfiguration, ImageIndex, ImageManifest, Os};

use super::ingest::{IngestError, layer_compression};
use super::ingest::{LayerIngest, StagedLayer, UncompressedDigests, hash_uncompressed};
use super::transport::{Fault, Remote};
use super::{PullEvent, RegistryConfig, media};
use crate::image::{normalize_name, store_digest};
use crate::{ExportError, StoredImage};

/// Largest config blob accepted (they are a few KiB; this bounds memory on a hostile
/// registry).
const MAX_CONFIG: u64 = 32 << 20;
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
    let (manifest_bytes, manifest_digest) = resolve_manifest(&remote).await?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        invalid(
            reference,
            format!("manifest {manifest_digest} does not parse: {e}"),
        )
    })?;
    let config_type = manifest.config().media_type().to_string();
    if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
        return Err(ExportError::UnsupportedMediaType {
            reference: reference.to_owned(),
            media_type: config_type,
        });
    }
    let (config_sha, config_bytes) = fetch_config(store, &remote, &manifest, progress).await?;
    let image_config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| {
        invalid(
            reference,
            format!("config {config_sha} does not parse: {e}"),
        )
    })?;
    if *image_config.architecture() != Arch::Amd64 || *image_config.os() != Os::Linux {
        return Err(ExportError::Architecture {
            reference: reference.to_owned(),
            found: format!("{}/{}", image_config.os(), image_config.architecture()),
        });
    }
    let jobs = layer_jobs(reference, &manifest, &image_config)?;
    // Indices, not `jobs.iter()`: a closure over borrowed items would make the future
    // lose `Send` (a higher-ranked lifetime the compiler cannot prove).
    let fetched: Vec<Fetched<'_>> = stream::iter(0..jobs.len())
        .map(|i| fetch_layer(store, &remote, &jobs[i], progress))
        .buffered(config.max_parallel.max(1))
        .try_collect()
        .await?;

    // Everything arrived and checked out: commit.
    let lease = store.lease(LEASE_TTL)?;
    let config_info = put_leased(store, &lease, BlobKind::Config, &config_bytes, &config_sha)?;
    for (job, fetched) in jobs.iter().zip(fetched) {
        let record = match fetched {
            Fetched::Present(variant) => {
                lease.add(&variant.digest)?;
                continue;
            }
            Fetched::Local(record) => {
                for v in &record.variants {
                    lease.add(&v.digest)?;
                }
                record
            }
            Fetched::Staged(staged) => {
                let uncompressed = staged.uncompressed;
                let info = staged.commit(&job.sha256, job.size, &lease)?;
                layer_record(job.compression, &info, uncompressed)
            }
        };
        store.put_layer(&record)?;
    }
    let manifest_info = put_leased(
        store,
        &lease,
        BlobKind::Manifest,
        &manifest_bytes,
        &manifest_digest,
    )?;
    let image = StoredImage::load(store, &manifest_info.digest)?;
    image.tag(store, &normalize_name(reference), false)?;
    lease.release()?;
    tracing::info!(
        reference,
        digest = %image.digest,
        config = %config_info.sha256,
        layers = image.layers.len(),
        "pulled"
    );
    Ok(image)
}

/// One layer to fetch.
struct LayerJob {
    /// Descriptor digest text, as the registry names the blob.
    digest: String,
    sha256: Digest,
    size: u64,
    compression: Compression,
    diff_id: Digest,
}

/// A layer ready to commit.
enum Fetched<'s> {
    /// Record and blob are in the store already.
    Present(LayerVariant),
    /// The blob was in the store, its layer record was not: recomputed locally.
    Local(LayerRecord),
    /// Downloaded and checked, staged but not committed.
    Staged(Box<StagedLayer<'s>>),
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
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
                invalid(
                    &remote.display,
                    format!("index {digest} does not parse: {e}"),
                )
            })?;
            let chosen = index.manifests().iter().find(|m| {
                m.platform()
                    .as_ref()
                    .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
            });
            let Some(chosen) = chosen else {
                let found: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|m| m.platform().as_ref())
                    .map(|p| match p.variant() {
                        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                        None => format!("{}/{}", p.os(), p.architecture()),
                    })
                    .collect();
                return Err(ExportError::Architecture {
                    reference: remote.display.clone(),
                    found: if found.is_empty() {
                        "no platform listed".to_owned()
                    } else {
                        found.join(", ")
                    },
                });
            };
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
) -> Result<(Digest, Vec<u8>), ExportError> {
    let descriptor = manifest.config();
    let digest_text = descriptor.digest().to_string();
    let sha256 = store_digest(descriptor.digest())
        .map_err(|reason| invalid(&remote.display, format!("config {reason}")))?;
    if let Some(bytes) = store.read(&sha256)? {
        progress(PullEvent::Skipped {
            digest: sha256,
            size: descriptor.size(),
        });
        return Ok((sha256, bytes));
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
    Ok((sha256, bytes))
}

fn layer_jobs(
    reference: &str,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> Result<Vec<LayerJob>, ExportError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(invalid(
            reference,
            format!(
                "manifest lists {} layers but config has {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| {
            let media_type = descriptor.media_type().to_string();
            let compression =
                layer_compression(&media_type).ok_or(ExportError::UnsupportedMediaType {
                    reference: reference.to_owned(),
                    media_type,
                })?;
            Ok(LayerJob {
                digest: descriptor.digest().to_string(),
                sha256: store_digest(descriptor.digest())
                    .map_err(|reason| invalid(reference, format!("layer {reason}")))?,
                size: descriptor.size(),
                compression,
                diff_id: Digest::parse(diff_id)
                    .map_err(|e| invalid(reference, format!("diff_id {diff_id:?}: {e}")))?,
            })
        })
        .collect()
}

async fn fetch_layer<'s>(
    store: &'s Store,
    remote: &Remote,
    job: &LayerJob,
    progress: Progress<'_>,
) -> Result<Fetched<'s>, ExportError> {
    let skipped = || {
        progress(PullEvent::Skipped {
            digest: job.sha256,
            size: job.size,
        });
    };
    if let Some(record) = store.layer_by_diff_id(&job.diff_id)?
        && let Some(v) = record.variants.iter().find(|v| v.sha256 == job.sha256)
        && store.contains(&v.digest)?
    {
        tracing::debug!(layer = %job.digest, "layer already in the store");
        skipped();
        return Ok(Fetched::Present(v.clone()));
    }
    if let Some(blob) = store.get(&job.sha256)? {
        let info = blob.info.clone();
        let uncompressed = hash_uncompressed(job.compression, blob).map_err(|e| {
            rejected(
                &remote.display,
                &job.digest,
                format!("stored copy does not decompress: {e}"),
            )
        })?;
        check_diff_id(remote, job, &uncompressed)?;
        skipped();
        return Ok(Fetched::Local(layer_record(
            job.compression,
            &info,
            uncompressed,
        )));
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
            let mut ingest =
                LayerIngest::new(store, job.compression).map_err(ingest_fault(remote, job))?;
            let mut meter = Meter::new(job.sha256, job.size, progress);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Fault::Stream)?;
                ingest.write(&chunk).map_err(ingest_fault(remote, job))?;
                meter.add(chunk.len());
            }
            meter.finish();
            ingest.finish().map_err(ingest_fault(remote, job))
        })
        .await?;
    if staged.size != job.size {
        return Err(rejected(
            &remote.display,
            &job.digest,
            format!("got {} bytes, the manifest says {}", staged.size, job.size),
        ));
    }
    check_diff_id(remote, job, &staged.uncompressed)?;
    progress(PullEvent::Downloaded {
        digest: job.sha256,
        size: job.size,
    });
    Ok(Fetched::Staged(Box::new(staged)))
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

fn ingest_fault<'a>(remote: &'a Remote, job: &'a LayerJob) -> impl Fn(IngestError) -> Fault + 'a {
    move |e| match e {
        IngestError::Store(e) => Fault::Export(e.into()),
        IngestError::Stage(e) => Fault::Export(ExportError::Io {
            path: "store staging file".into(),
            source: e,
        }),
        IngestError::Decode(e) => Fault::Export(rejected(
            &remote.display,
            &job.digest,
            format!("not a valid {:?} stream: {e}", job.compression),
        )),
    }
}

fn check_diff_id(
    remote: &Remote,
    job: &LayerJob,
    uncompressed: &UncompressedDigests,
) -> Result<(), ExportError> {
    if uncompressed.diff_id != job.diff_id {
        return Err(rejected(
            &remote.display,
            &job.digest,
            format!(
                "uncompressed it hashes to {}, the config's diff_id is {}",
                uncompressed.diff_id, job.diff_id
            ),
        ));
    }
    Ok(())
}

fn layer_record(
    compression: Compression,
    info: &BlobInfo,
    uncompressed: UncompressedDigests,
) -> LayerRecord {
    LayerRecord {
        digest: uncompressed.blake3,
        diff_id: uncompressed.diff_id,
        size: uncompressed.size,
        variants: vec![LayerVariant {
            compression,
            digest: info.digest,
            sha256: info.sha256,
            size: info.size,
        }],
        created: SystemTime::now(),
    }
}

/// Stores `bytes` under `lease` only if they hash to `sha256`.
fn put_leased(
    store: &Store,
    lease: &Lease<'_>,
    kind: BlobKind,
    bytes: &[u8],
    sha256: &Digest,
) -> Result<BlobInfo, ExportError> {
    let mut writer = store.writer(kind)?.lease(lease);
    writer.write_all(bytes).map_err(|source| ExportError::Io {
        path: store.path().to_path_buf(),
        source,
    })?;
    Ok(writer.commit_verified(sha256, Some(bytes.len() as u64))?)
}
