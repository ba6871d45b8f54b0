//! `push`: an image from the store to a registry, blobs first (skip, mount or upload, in
//! parallel), then the manifest bytes exactly as stored, so the registry's digest is the
//! store's.
//!
//! Uploads stream from the store's blob files in [`CHUNK`]-sized reads, so no layer is ever
//! held in memory whole. Every blob goes up as one streamed `PUT` (`POST` then `PUT` with the
//! body), which is what keeps a push at the speed of `docker push` or `skopeo copy`: those
//! also send a blob in one request, whereas one `PATCH` per 4 MiB (`oci-client`'s chunked
//! upload) costs a request, a wait for its answer and the registry's per-request upload
//! bookkeeping per chunk (measured: about half the throughput on a 490 MB layer to a local
//! registry; docs/benchmarks.md, "Registry push"). A registry that refuses a whole blob in
//! one request ([`Fault::refuses_one_request`]: 413 and the like) gets it again as `PATCH`
//! chunks.
//!
//! Chunked uploads resume: when a `PATCH` (or the closing `PUT`) fails in a way worth
//! retrying, the retry asks the registry how much of the session it holds (`GET` on the
//! upload location, `Range: 0-<last>`) and goes on from the next byte; a registry that has
//! lost the session (404) or does not say (no `Range`) gets a new upload from byte 0. When
//! the one streamed `PUT` breaks mid-body (a cut connection, not an answer from the
//! registry) on a blob larger than one chunk, the retries of that blob go chunked, so a
//! flaky link costs at most a chunk per break instead of the whole blob each time.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::SeekFrom;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use lamina_store::{Digest, Store};
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::mounts::{self, BlobRef};
use super::transport::{Fault, Remote};
use super::{PushEvent, PushReport, RegistryConfig, media};
use crate::{ExportError, StoredImage};

/// Bytes per read from the store file, and per `PATCH` when chunking (oci-client sends each
/// stream item of up to 4 MiB as one chunk).
const CHUNK: usize = 4 << 20;
/// Mount sources tried per blob before uploading it.
const MAX_MOUNT_TRIES: usize = 3;
/// How often an upload's byte count is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// One blob to push.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushBlob {
    /// The store address of the bytes.
    pub blob: Digest,
    /// What the registry calls it, plus what keeps it in the store.
    pub refs: BlobRef,
    pub size: u64,
}

/// What happened to one blob.
pub(crate) enum Outcome {
    Skipped,
    Mounted,
    Uploaded(u64),
    /// Neither there nor mountable, and its bytes are only in a registry: fetch, then push.
    NeedsBytes,
}

/// Pushes `image` from `store` to `reference` (tag or digest; a digest must be the image's).
///
/// Takes `&Store`; blobs are handled concurrently within the one future, up to
/// `config.max_parallel` at a time. `progress` is called from that future as blobs are
/// skipped, mounted or uploaded (so it needs no locking; the future is not `Send`).
pub async fn push(
    store: &Store,
    image: &StoredImage,
    reference: &str,
    config: &RegistryConfig,
    progress: &dyn Fn(PushEvent),
) -> Result<PushReport, ExportError> {
    let remote = Remote::open(reference, config, RegistryOperation::Push).await?;
    let manifest_bytes =
        store
            .read(&image.manifest_blob)?
            .ok_or_else(|| ExportError::ImageNotFound {
                reference: image.digest.to_string(),
            })?;
    let digest = Digest::sha256_of(&manifest_bytes);
    if let Some(wanted) = remote.reference.digest()
        && wanted != digest.to_string()
    {
        return Err(ExportError::InvalidReference {
            reference: reference.to_owned(),
            reason: format!("it names digest {wanted} but the image is {digest}"),
        });
    }
    let blobs = image_blobs(store, image)?;
    // Layers only in a registry: on this registry they are mounted from the repository
    // that holds them (or found here already); from another, they are fetched first.
    let target_registry = remote.reference.registry().to_owned();
    let mut homes: HashMap<Digest, String> = HashMap::new();
    let mut elsewhere = Vec::new();
    for layer in &image.layers {
        if let Some((_, held)) = store.remote_variant(&layer.record)? {
            if held.source.registry == target_registry {
                homes.insert(layer.variant.sha256, held.source.repository);
            } else {
                elsewhere.push(layer.record.clone());
            }
        }
    }
    if !elsewhere.is_empty() {
        super::remote_layers::localize(store, &elsewhere, config, None).await?;
    }
    let home = |blob: &PushBlob| homes.get(&blob.refs.sha256).map(String::as_str);
    // In order (`buffered`), so a blob that needs its bytes is found by position.
    let mut outcomes: Vec<Outcome> = stream::iter(blobs.iter())
        .map(|blob| push_blob(store, &remote, blob, home(blob), progress))
        .buffered(config.max_parallel.max(1))
        .try_collect()
        .await?;
    let needs: Vec<usize> = (outcomes.iter().enumerate())
        .filter(|(_, o)| matches!(o, Outcome::NeedsBytes))
        .map(|(i, _)| i)
        .collect();
    if !needs.is_empty() {
        // Not mountable (the repository holding them dropped them, or no access to it):
        // fetched, verified, and uploaded like any stored layer.
        let records: Vec<_> = (image.layers.iter())
            .filter(|l| {
                needs
                    .iter()
                    .any(|&i| blobs[i].refs.sha256 == l.variant.sha256)
            })
            .map(|l| l.record.clone())
            .collect();
        super::remote_layers::localize(store, &records, config, None).await?;
        for i in needs {
            outcomes[i] = push_blob(store, &remote, &blobs[i], None, progress).await?;
            if matches!(outcomes[i], Outcome::NeedsBytes) {
                // Never a manifest naming a blob the registry lacks.
                return Err(crate::image::invalid(
                    &blobs[i].refs.sha256.to_string(),
                    format!(
                        "blob {} is neither in the store nor in a registry it was recorded \
                         from; pull or rebuild the image",
                        blobs[i].blob
                    ),
                ));
            }
        }
    }
    let content_type =
        http::HeaderValue::from_static(media::manifest_content_type(&manifest_bytes));
    let body = bytes::Bytes::from(manifest_bytes);
    remote
        .put_manifest("push manifest", body, content_type)
        .await?;
    progress(PushEvent::Manifest {
        digest,
        reference: reference.to_owned(),
    });
    let shas: Vec<Digest> = blobs.iter().map(|b| b.refs.sha256).collect();
    if let Err(e) = mounts::remember(
        store,
        remote.registry(),
        remote.reference.repository(),
        &shas,
    ) {
        // Only future mounts lose from this.
        tracing::warn!(error = %e, "could not record the pushed repository");
    }

    let mut report = PushReport {
        digest,
        reference: reference.to_owned(),
        blobs_pushed: 0,
        blobs_skipped: 0,
        blobs_mounted: 0,
        bytes_pushed: 0,
    };
    for outcome in outcomes {
        match outcome {
            Outcome::Skipped => report.blobs_skipped += 1,
            Outcome::Mounted => report.blobs_mounted += 1,
            Outcome::Uploaded(size) => {
                report.blobs_pushed += 1;
                report.bytes_pushed += size;
            }
            Outcome::NeedsBytes => {}
        }
    }
    tracing::info!(
        reference,
        %digest,
        pushed = report.blobs_pushed,
        skipped = report.blobs_skipped,
        mounted = report.blobs_mounted,
        bytes = report.bytes_pushed,
        "pushed"
    );
    Ok(report)
}

/// The config and layer blobs, each once.
fn image_blobs(store: &Store, image: &StoredImage) -> Result<Vec<PushBlob>, ExportError> {
    let config = store
        .stat(&image.config_blob)?
        .ok_or_else(|| missing(image, image.config_blob))?;
    let mut blobs = vec![PushBlob {
        blob: config.digest,
        refs: BlobRef {
            sha256: config.sha256,
            owner: config.digest,
        },
        size: config.size,
    }];
    for layer in &image.layers {
        if blobs.iter().any(|b| b.refs.sha256 == layer.variant.sha256) {
            continue;
        }
        blobs.push(PushBlob {
            blob: layer.variant.digest,
            refs: BlobRef {
                sha256: layer.variant.sha256,
                owner: layer.record.digest,
            },
            size: layer.variant.size,
        });
    }
    Ok(blobs)
}

fn missing(image: &StoredImage, blob: Digest) -> ExportError {
    crate::image::invalid(
        &image.digest.to_string(),
        format!("blob {blob} is not in the store; pull or rebuild the image"),
    )
}

/// Pushes one blob: skipped when the repository has it, mounted when another repository
/// of the registry does (`home` first: where a remote layer's bytes are), else uploaded
/// from the store; [`Outcome::NeedsBytes`] when it would be uploaded but the store holds
/// it only as remote.
pub(crate) async fn push_blob(
    store: &Store,
    remote: &Remote,
    blob: &PushBlob,
    home: Option<&str>,
    progress: &dyn Fn(PushEvent),
) -> Result<Outcome, ExportError> {
    let digest = blob.refs.sha256;
    let digest_text = digest.to_string();
    let exists = remote
        .retry("check blob", || async {
            remote
                .client
                .blob_exists(&remote.reference, &digest_text)
                .await
                .map_err(Fault::Oci)
        })
        .await?;
    if exists {
        progress(PushEvent::Skipped {
            digest,
            size: blob.size,
        });
        return Ok(Outcome::Skipped);
    }
    let registry = remote.registry();
    let repository = remote.reference.repository();
    let mut sources = mounts::candidates(store, registry, repository, &blob.refs);
    if let Some(home) = home.filter(|h| *h != repository) {
        sources.retain(|s| s != home);
        sources.insert(0, home.to_owned());
    }
    for source in sources.into_iter().take(MAX_MOUNT_TRIES) {
        let from = Reference::with_tag(registry.to_owned(), source.clone(), "latest".to_owned());
        let mounted = remote
            .retry("mount blob", || async {
                remote
                    .client
                    .mount_blob(&remote.reference, &from, &digest_text)
                    .await
                    .map_err(Fault::Oci)
            })
            .await;
        match mounted {
            Ok(()) => {
                progress(PushEvent::Mounted {
                    digest,
                    size: blob.size,
                    from: source,
                });
                return Ok(Outcome::Mounted);
            }
            // The registry answers a failed mount by opening a plain upload (202); any
            // failure here just means uploading instead.
            Err(e) => tracing::debug!(%digest, from = %source, error = %e, "mount failed"),
        }
    }

    if !store.contains(&blob.blob)?
        && crate::layer_tar::tree_backed_record(store, &blob.blob)?.is_none()
    {
        return Ok(Outcome::NeedsBytes);
    }
    progress(PushEvent::Uploading {
        digest,
        size: blob.size,
    });
    // The body stream must be `Send + 'static` and `progress` is neither, so the stream only
    // counts and this future reports the count on a timer.
    let sent = Arc::new(AtomicU64::new(0));
    // Per blob across tries: whether it goes in chunks, and the chunked session to resume.
    let chunked = Cell::new(false);
    let session = Cell::new(None);
    let upload = remote.retry("upload blob", || async {
        if !chunked.get() {
            let body = blob_stream(store, blob, &sent)?;
            let whole = remote
                .monolithic
                .push_blob_stream(&remote.reference, body, &digest_text, Some(blob.size))
                .await
                .map_err(Fault::Oci);
            match whole {
                Ok(_) => return Ok(()),
                Err(fault) if fault.refuses_one_request() => {
                    tracing::debug!(
                        %digest,
                        error = %fault.describe(),
                        "registry refused the blob in one request, sending it in chunks"
                    );
                    chunked.set(true);
                }
                Err(fault)
                    if fault.retryable()
                        && fault.status().is_none()
                        && sent.load(Ordering::Relaxed) > 0
                        && blob.size > CHUNK as u64 =>
                {
                    tracing::debug!(
                        %digest,
                        error = %fault.describe(),
                        "upload broke mid-body, retrying it in resumable chunks"
                    );
                    chunked.set(true);
                    return Err(fault);
                }
                Err(fault) => return Err(fault),
            }
        }
        upload_chunked(store, remote, blob, &sent, &session).await
    });
    let mut upload = std::pin::pin!(upload);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = 0;
    let report = |reported: &mut u64| {
        let now = sent.load(Ordering::Relaxed);
        if now != *reported {
            *reported = now;
            progress(PushEvent::Progress {
                digest,
                sent: now,
                size: blob.size,
            });
        }
    };
    let result = loop {
        tokio::select! {
            result = &mut upload => break result,
            _ = tick.tick() => report(&mut reported),
        }
    };
    result?;
    report(&mut reported);
    progress(PushEvent::Uploaded {
        digest,
        size: blob.size,
    });
    Ok(Outcome::Uploaded(blob.size))
}

/// Where a chunked upload stands: its location and the next byte to send.
struct Session {
    location: String,
    offset: u64,
}

/// Uploads `blob` in [`CHUNK`]-sized `PATCH`es, going on with `session` if a previous try
/// left one the registry still holds. A failure leaves the session to resume in `session`.
async fn upload_chunked(
    store: &Store,
    remote: &Remote,
    blob: &PushBlob,
    sent: &AtomicU64,
    session: &Cell<Option<Session>>,
) -> Result<(), Fault> {
    let digest = blob.refs.sha256;
    let (mut location, mut offset) = match session.take() {
        None => (remote.begin_upload().await?, 0),
        Some(old) => match remote.upload_status(&old.location).await {
            Ok(Some((location, offset))) if offset <= blob.size => {
                tracing::debug!(%digest, offset, acked = old.offset, "resuming the chunked upload");
                (location, offset)
            }
            Err(fault) if fault.retryable() => {
                session.set(Some(old));
                return Err(fault);
            }
            other => {
                let reason = match other {
                    Err(fault) => fault.describe(),
                    _ => "the registry does not say how much it holds".to_owned(),
                };
                tracing::debug!(%digest, %reason, "cannot resume the upload, starting over");
                (remote.begin_upload().await?, 0)
            }
        },
    };
    let mut file = open_blob(store, blob)?;
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(Fault::Stream)?;
    sent.store(offset, Ordering::Relaxed);
    loop {
        let mut buf = bytes::BytesMut::with_capacity(CHUNK);
        while buf.len() < CHUNK {
            if file.read_buf(&mut buf).await.map_err(Fault::Stream)? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        let len = buf.len() as u64;
        sent.store(offset + len, Ordering::Relaxed);
        match remote.upload_chunk(&location, offset, buf.freeze()).await {
            Ok(next) => {
                location = next;
                offset += len;
            }
            Err(fault) => {
                session.set(Some(Session { location, offset }));
                return Err(fault);
            }
        }
    }
    if let Err(fault) = remote.finish_upload(&location, &digest.to_string()).await {
        session.set(Some(Session { location, offset }));
        return Err(fault);
    }
    Ok(())
}

/// The blob's store file.
fn open_blob(store: &Store, blob: &PushBlob) -> Result<tokio::fs::File, Fault> {
    let mut opened = store.get(&blob.blob).map_err(ExportError::from)?;
    if opened.is_none()
        && let Some(record) = crate::layer_tar::tree_backed_record(store, &blob.blob)?
    {
        // A tree-backed layer pushed plain: an upload reads (and may re-read) a file, so
        // the tar is reassembled into a blob once (GC drops it again when it is old).
        crate::layer_tar::materialize_plain(store, &record, None)?;
        opened = store.get(&blob.blob).map_err(ExportError::from)?;
    }
    let Some(opened) = opened else {
        return Err(Fault::Export(crate::image::invalid(
            &blob.refs.sha256.to_string(),
            format!(
                "blob {} is not in the store; pull or rebuild the image",
                blob.blob
            ),
        )));
    };
    Ok(tokio::fs::File::from_std(opened.into_file()))
}

/// The blob's bytes from its store file, in chunks of [`CHUNK`] bytes, read as sent; `sent`
/// is reset and then counts the bytes handed out.
fn blob_stream(
    store: &Store,
    blob: &PushBlob,
    sent: &Arc<AtomicU64>,
) -> Result<
    impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static,
    Fault,
> {
    let file = open_blob(store, blob)?;
    sent.store(0, Ordering::Relaxed);
    let sent = Arc::clone(sent);
    Ok(
        stream::try_unfold((file, sent), |(mut file, sent)| async move {
            let mut buf = bytes::BytesMut::with_capacity(CHUNK);
            while buf.len() < CHUNK {
                if file.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                Ok(None)
            } else {
                sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
                Ok(Some((buf.freeze(), (file, sent))))
            }
        })
        .map_err(OciDistributionError::IoError),
    )
}
