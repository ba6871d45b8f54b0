//! A build cache shared through a registry (`--cache-to` / `--cache-from`; docs/format.md,
//! "Remote build cache").
//!
//! Records (a step's cache key → the layer it made, its config, what `--explain` compares)
//! travel as an OCI artifact: an image manifest with artifact type [`ARTIFACT_TYPE`] whose
//! config blob ([`CONFIG_MEDIA_TYPE`]) is a [`CacheDocument`] and whose layers are the layer
//! blobs themselves, pushed with the image push's skip / mount / upload, so a cache costs no
//! second upload of what the registry already holds.
//!
//! Sharing: every writer (a store) owns one tag, `<tag>.lamina-<writer id>`, and rewrites only
//! that one (merging its own earlier records); readers list the repository's tags and merge
//! every writer's document. The distribution API has no conditional manifest PUT, so a
//! read–merge–write of one shared tag would lose records under concurrent writers; with one
//! tag per writer nothing is lost.

mod fetch;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt, stream};
use lamina_store::{BlobKind, Compression, Digest, Store};
use oci_client::{Reference, RegistryOperation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::mounts::{self, BlobRef};
use super::push::{PushBlob, push_blob};
use super::transport::{Fault, Remote, parse_reference};
use super::{PushEvent, RegistryConfig, media};
use crate::ExportError;

pub use fetch::fetch_layers;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.lamina.cache.v1";
/// The media type of the config blob, a [`CacheDocument`] in JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.lamina.cache.v1+json";
/// The [`CacheDocument::version`] this code writes and reads.
pub const VERSION: u32 = 1;
/// The image config member holding an inline cache document (`--cache-to inline`): its
/// records' layers are the image's own.
pub const INLINE_MEMBER: &str = "lamina.cache.v1";
/// What separates a cache ref's tag from a writer id in the writer's tag.
const WRITER_MARK: &str = ".lamina-";
/// Largest cache document read.
const MAX_DOCUMENT: u64 = 64 << 20;

/// The config blob of a cache artifact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDocument {
    /// Format version ([`VERSION`]); a reader skips documents of another version.
    pub version: u32,
    /// One per step key.
    pub records: Vec<CacheRecord>,
    /// The step list of each exported build, by definition shape, for `--explain`.
    #[serde(default)]
    pub builds: Vec<CacheBuild>,
}

/// What one step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The step's cache key (hex).
    pub key: String,
    /// When it was last exported (seconds since the Unix epoch): `prune-remote` ages by it.
    pub created: u64,
    /// The step's text, variables expanded.
    pub text: String,
    /// The digest of its inputs (hex), as it entered the key.
    pub inputs: String,
    /// The image config after the step (JSON text, as stored).
    pub config: String,
    /// The layer it added, if any.
    pub layer: Option<CacheLayer>,
}

/// A layer a record points at: one stored variant, as pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheLayer {
    /// sha256 of the blob (the descriptor digest).
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// `none`, `gzip` or `zstd`.
    pub compression: String,
    /// sha256 of the tar (the OCI diff_id): checked after download.
    pub diff_id: String,
    /// blake3 of the tar (the store's layer key) and the tar's size.
    pub tar: String,
    /// Uncompressed size.
    pub tar_size: u64,
}

impl CacheLayer {
    /// The layer's compression, if one this version knows.
    pub fn compression(&self) -> Option<Compression> {
        self.compression.parse().ok()
    }

    fn descriptor(&self) -> serde_json::Value {
        let media_type = self
            .compression()
            .map_or("application/octet-stream", Compression::media_type);
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size})
    }
}

/// One exported build: its steps as `--explain` records them, and the layers of its image
/// (bases included), so a reader's push can mount them from the cache repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheBuild {
    /// The definition's shape (hex): its unexpanded text and target.
    pub shape: String,
    /// When it was exported (seconds since the Unix epoch).
    pub created: u64,
    /// The build's step records (opaque here; the executor's format).
    pub steps: serde_json::Value,
    /// The final image's layers.
    pub layers: Vec<CacheLayer>,
}

/// A blob of the store to send with a cache export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportBlob {
    /// Its store address (blake3).
    pub blob: Digest,
    /// Its sha256.
    pub sha256: Digest,
    /// What keeps it in the store (the layer key).
    pub owner: Digest,
    /// Its size.
    pub size: u64,
}

/// What a cache export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExportReport {
    /// The writer's tag.
    pub reference: String,
    /// Records in the document now (earlier ones of this writer included).
    pub records: usize,
    /// Layer blobs uploaded (the others were there or mounted).
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
}

/// The merged records of every writer of a cache ref.
#[derive(Debug, Clone, Default)]
pub struct RemoteCache {
    /// The cache ref as given.
    pub reference: String,
    /// The repository holding the records' layers (a remote hit is recorded as fetchable
    /// from it).
    pub source: lamina_store::RemoteSource,
    /// By key; when writers disagree, the most recently exported record.
    pub records: BTreeMap<String, CacheRecord>,
    /// Exported builds, most recent first.
    pub builds: Vec<CacheBuild>,
    /// Writer documents that could not be read (each a one-line reason); the rest count.
    pub warnings: Vec<String>,
}

/// What `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Writer tags looked at.
    pub writers: usize,
    /// Records dropped.
    pub removed: usize,
    /// Records kept.
    pub kept: usize,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tag a store writes under: `<tag>.lamina-<writer>`.
fn writer_reference(
    reference: &Reference,
    writer: &str,
) -> Result<(Reference, String), ExportError> {
    let tag = reference.tag().unwrap_or("latest");
    let writer_tag = format!("{tag}{WRITER_MARK}{writer}");
    if writer_tag.len() > 128 {
        return Err(ExportError::InvalidReference {
            reference: reference.whole(),
            reason: "the tag is too long to add a writer id; use a shorter cache tag".into(),
        });
    }
    let target = Reference::with_tag(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        writer_tag.clone(),
    );
    Ok((target, writer_tag))
}

/// This store's writer id: random, made once, kept under `registry-v1/`.
pub fn writer_id(store: &Store) -> String {
    let path = store.path().join("registry-v1").join("cache-writer");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return id.to_owned();
        }
    }
    let mut seed = blake3::Hasher::new();
    seed.update(store.path().as_os_str().as_encoded_bytes());
    seed.update(&std::process::id().to_le_bytes());
    seed.update(
        &SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    let id = seed.finalize().to_hex()[..16].to_string();
    // Losing the race to another process writes another id; either is fine, and a failed
    // write only means a new tag next time.
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
        && let Ok(mut temp) = tempfile::NamedTempFile::new_in(dir)
        && std::io::Write::write_all(&mut temp, id.as_bytes()).is_ok()
    {
        let _ = temp.persist_noclobber(&path);
    }
    std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| t.len() == 16)
        .unwrap_or(id)
}

/// Writes `document` (merged with this writer's earlier records) under this store's writer
/// tag of `reference`, sending `blobs` first (skipped when there, mounted when another
/// repository of the registry holds them, else uploaded).
pub async fn export(
    store: &Store,
    reference: &str,
    mut document: CacheDocument,
    blobs: &[ExportBlob],
    config: &RegistryConfig,
) -> Result<CacheExportReport, ExportError> {
    let base = parse_reference(reference)?;
    let (target, _) = writer_reference(&base, &writer_id(store))?;
    let remote = Remote::open(&target.whole(), config, RegistryOperation::Push).await?;
    // Processes on this store share its writer tag: one at a time reads, merges and
    // writes it, so two exporting at once both keep their records.
    let lock_path = store.path().join("registry-v1").join("cache-writer.lock");
    let _writing = tokio::task::spawn_blocking(move || lock_exclusive(&lock_path))
        .await
        .map_err(|e| ExportError::Io {
            path: "cache writer lock".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    // This writer's earlier records stay unless replaced; an unreadable document of our own
    // is replaced whole.
    if let Ok(Some(earlier)) = read_document(&remote, &remote.reference).await {
        merge_into(&mut document, earlier);
    }
    document.version = VERSION;

    let ignore = |_: PushEvent| {};
    let push_blobs: Vec<PushBlob> = blobs
        .iter()
        .map(|b| PushBlob {
            blob: b.blob,
            refs: BlobRef {
                sha256: b.sha256,
                owner: b.owner,
            },
            size: b.size,
        })
        .collect();
    let outcomes: Vec<super::push::Outcome> = stream::iter(push_blobs.iter())
        .map(|blob| push_blob(store, &remote, blob, None, &ignore))
        .buffer_unordered(config.max_parallel.max(1))
        .try_collect()
        .await?;
    let mut report = CacheExportReport {
        reference: remote.display.clone(),
        records: document.records.len(),
        blobs_uploaded: 0,
        bytes_uploaded: 0,
    };
    for outcome in outcomes {
        if let super::push::Outcome::Uploaded(size) = outcome {
            report.blobs_uploaded += 1;
            report.bytes_uploaded += size;
        }
    }
    write_document(store, &remote, &document).await?;
    let shas: Vec<Digest> = blobs.iter().map(|b| b.sha256).collect();
    if let Err(e) = mounts::remember(
        store,
        remote.registry(),
        remote.reference.repository(),
        &shas,
    ) {
        tracing::warn!(error = %e, "could not record the cache repository");
    }
    Ok(report)
}

/// Opens `path` (made if missing) and waits for an exclusive `flock` on it, held until the
/// file is dropped (or the process dies).
fn lock_exclusive(path: &std::path::Path) -> Result<std::fs::File, ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(e.into()))?;
    Ok(file)
}

/// Adds `earlier`'s records and builds that `document` does not replace.
fn merge_into(document: &mut CacheDocument, earlier: CacheDocument) {
    for record in earlier.records {
        if !document.records.iter().any(|r| r.key == record.key) {
            document.records.push(record);
        }
    }
    for build in earlier.builds {
        if !document.builds.iter().any(|b| b.shape == build.shape) {
            document.builds.push(build);
        }
    }
}

/// Every layer blob the document names, once: the manifest's layers.
fn document_layers(document: &CacheDocument) -> Vec<serde_json::Value> {
    let mut seen = std::collections::BTreeSet::new();
    let layers = document
        .records
        .iter()
        .filter_map(|r| r.layer.as_ref())
        .chain(document.builds.iter().flat_map(|b| &b.layers));
    layers
        .filter(|l| seen.insert(l.digest.clone()))
        .map(CacheLayer::descriptor)
        .collect()
}

/// Pushes the document as the config blob of a cache manifest at `remote`'s tag. Every
/// layer it names must already be in the repository.
async fn write_document(
    store: &Store,
    remote: &Remote,
    document: &CacheDocument,
) -> Result<(), ExportError> {
    let bytes = serde_json::to_vec(document).map_err(|e| ExportError::InvalidCache {
        reference: remote.display.clone(),
        reason: format!("cannot serialize the document: {e}"),
    })?;
    let info = store.put_bytes(BlobKind::Other, &bytes)?;
    let config_blob = PushBlob {
        blob: info.digest,
        refs: BlobRef {
            sha256: info.sha256,
            owner: info.digest,
        },
        size: info.size,
    };
    push_blob(store, remote, &config_blob, None, &|_| {}).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": info.sha256.to_string(),
            "size": info.size,
        },
        "layers": document_layers(document),
    });
    let body = bytes::Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
    let content_type = http::HeaderValue::from_static(media::OCI_MANIFEST);
    remote
        .put_manifest("push cache manifest", body, content_type)
        .await
}

/// The document at `reference`, `None` when the tag does not exist.
async fn read_document(
    remote: &Remote,
    reference: &Reference,
) -> Result<Option<CacheDocument>, ExportError> {
    let display = reference.whole();
    let auth = oci_client::secrets::RegistryAuth::Anonymous; // stored by Remote::open
    let fetched = remote
        .retry("cache manifest", || async {
            remote
                .client
                .pull_manifest_raw(reference, &auth, &[media::OCI_MANIFEST])
                .await
                .map_err(Fault::Oci)
        })
        .await;
    let (bytes, _) = match fetched {
        Ok(found) => found,
        Err(ExportError::RemoteNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let invalid = |reason: String| ExportError::InvalidCache {
        reference: display.clone(),
        reason,
    };
    let manifest: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("its manifest is not JSON: {e}")))?;
    let config = &manifest["config"];
    if config["mediaType"].as_str() != Some(CONFIG_MEDIA_TYPE) {
        return Err(invalid(format!(
            "not a Lamina cache (config media type {})",
            config["mediaType"]
        )));
    }
    let (Some(digest), Some(size)) = (config["digest"].as_str(), config["size"].as_u64()) else {
        return Err(invalid("its manifest has no config digest and size".into()));
    };
    let body = fetch_verified(remote, reference, digest, size).await?;
    let document: CacheDocument = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!("its document does not parse: {e}")))?;
    if document.version != VERSION {
        return Err(invalid(format!(
            "format version {} (this Lamina reads {VERSION}); export it again",
            document.version
        )));
    }
    Ok(Some(document))
}

/// A small blob (a document, a config), checked against its digest and size.
async fn fetch_verified(
    remote: &Remote,
    reference: &Reference,
    digest: &str,
    size: u64,
) -> Result<Vec<u8>, ExportError> {
    let invalid = |reason: String| ExportError::InvalidCache {
        reference: reference.whole(),
        reason,
    };
    let sha256 = Digest::parse(digest).map_err(|e| invalid(format!("digest {digest}: {e}")))?;
    if size > MAX_DOCUMENT {
        return Err(invalid(format!("blob {digest} is {size} bytes, too large")));
    }
    let body = remote
        .retry("cache document", || async {
            let mut stream = remote
                .client
                .pull_blob_stream(reference, digest)
                .await
                .map_err(Fault::Oci)?;
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk.map_err(Fault::Stream)?);
                if body.len() as u64 > size {
                    break;
                }
            }
            Ok(body)
        })
        .await
        .map_err(|e| match e {
            ExportError::BlobRejected { reason, .. } => {
                invalid(format!("blob {digest} was rejected: {reason}"))
            }
            e => e,
        })?;
    if body.len() as u64 != size || Digest::sha256_of(&body) != sha256 {
        return Err(invalid(format!("blob {digest} does not match its digest")));
    }
    Ok(body)
}

/// The writer tags of `reference`'s repository: `<tag>.lamina-<id>`.
async fn writer_tags(remote: &Remote, tag: &str) -> Result<Vec<String>, ExportError> {
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let listed = remote
        .retry("list tags", || async {
            remote
                .client
                .list_tags(&remote.reference, &auth, None, None)
                .await
                .map_err(Fault::Oci)
        })
        .await;
    let tags = match listed {
        Ok(response) => response.tags,
        // A repository nobody pushed to yet.
        Err(ExportError::RemoteNotFound { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let prefix = format!("{tag}{WRITER_MARK}");
    let mut tags: Vec<String> = tags
        .into_iter()
        .filter(|t| t.strip_prefix(&prefix).is_some_and(|id| !id.is_empty()))
        .collect();
    tags.sort();
    Ok(tags)
}

/// Reads and merges every writer's records of `reference`. Fails only when the repository
/// cannot be listed (unreachable, unauthorized); an unreadable writer document is a warning.
/// Remembers the repository as holding the records' layers, so a later push of an image
/// built from them mounts them instead of uploading.
pub async fn import(
    store: &Store,
    reference: &str,
    config: &RegistryConfig,
) -> Result<RemoteCache, ExportError> {
    let base = parse_reference(reference)?;
    let remote = Remote::open(reference, config, RegistryOperation::Pull).await?;
    let tag = base.tag().unwrap_or("latest").to_owned();
    let mut cache = RemoteCache {
        reference: reference.to_owned(),
        source: lamina_store::RemoteSource {
            registry: base.registry().to_owned(),
            repository: base.repository().to_owned(),
        },
        ..RemoteCache::default()
    };
    let mut documents = Vec::new();
    // The ref itself, when it is an image pushed with an inline cache record.
    match read_inline(&remote).await {
        Ok(Some(document)) => documents.push(Ok(Some(document))),
        Ok(None) => {}
        Err(e) => cache.warnings.push(e.to_string()),
    }
    for writer in writer_tags(&remote, &tag).await? {
        let target = Reference::with_tag(
            base.registry().to_owned(),
            base.repository().to_owned(),
            writer.clone(),
        );
        documents.push(read_document(&remote, &target).await);
    }
    for document in documents {
        match document {
            Ok(Some(document)) => {
                for record in document.records {
                    match cache.records.get(&record.key) {
                        Some(have) if have.created >= record.created => {}
                        _ => {
                            cache.records.insert(record.key.clone(), record);
                        }
                    }
                }
                cache.builds.extend(document.builds);
            }
            Ok(None) => {}
            Err(e) => cache.warnings.push(e.to_string()),
        }
    }
    cache.builds.sort_by_key(|b| std::cmp::Reverse(b.created));
    let shas: Vec<Digest> = cache
        .records
        .values()
        .filter_map(|r| r.layer.as_ref())
        .chain(cache.builds.iter().flat_map(|b| &b.layers))
        .filter_map(|l| Digest::parse(&l.digest).ok())
        .collect();
    if !shas.is_empty()
        && let Err(e) = mounts::remember(store, remote.registry(), base.repository(), &shas)
    {
        tracing::warn!(error = %e, "could not record the cache repository");
    }
    Ok(cache)
}

/// The inline cache document in the config of the image at `remote`'s ref, if it is an image
/// with one. `None` for a missing tag, a cache artifact, an index or an image without one.
async fn read_inline(remote: &Remote) -> Result<Option<CacheDocument>, ExportError> {
    let auth = oci_client::secrets::RegistryAuth::Anonymous;
    let fetched = remote
        .retry("manifest", || async {
            remote
                .client
                .pull_manifest_raw(&remote.reference, &auth, media::ACCEPTED_MANIFESTS)
                .await
                .map_err(Fault::Oci)
        })
        .await;
    let (bytes, _) = match fetched {
        Ok(found) => found,
        Err(ExportError::RemoteNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(None);
    };
    let config = &manifest["config"];
    let image_config = [media::OCI_CONFIG, media::DOCKER_CONFIG];
    if !config["mediaType"]
        .as_str()
        .is_some_and(|t| image_config.contains(&t))
    {
        return Ok(None);
    }
    let (Some(digest), Some(size)) = (config["digest"].as_str(), config["size"].as_u64()) else {
        return Ok(None);
    };
    let body = fetch_verified(remote, &remote.reference, digest, size).await?;
    let Ok(mut config) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Ok(None);
    };
    let Some(member) = config.get_mut(INLINE_MEMBER).map(serde_json::Value::take) else {
        return Ok(None);
    };
    let mut document: CacheDocument =
        serde_json::from_value(member).map_err(|e| ExportError::InvalidCache {
            reference: remote.display.clone(),
            reason: format!("its inline cache record does not parse: {e}"),
        })?;
    // The records name layers by tar; the blobs are whatever this manifest names (the image
    // may have been pushed in another compression than it was built in).
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let descriptors = manifest["layers"].as_array().cloned().unwrap_or_default();
    let pushed: BTreeMap<&str, &serde_json::Value> =
        diff_ids.into_iter().zip(descriptors.iter()).collect();
    let as_pushed = |layer: &mut CacheLayer| -> bool {
        let Some(descriptor) = pushed.get(layer.diff_id.as_str()) else {
            return false;
        };
        let compression = descriptor["mediaType"]
            .as_str()
            .and_then(crate::ingest::layer::layer_compression);
        match (
            descriptor["digest"].as_str(),
            descriptor["size"].as_u64(),
            compression,
        ) {
            (Some(digest), Some(size), Some(compression)) => {
                layer.digest = digest.to_owned();
                layer.size = size;
                layer.compression = compression.name().to_owned();
                true
            }
            _ => false,
        }
    };
    document
        .records
        .retain_mut(|r| r.layer.as_mut().is_none_or(&as_pushed));
    for build in &mut document.builds {
        build.layers.retain_mut(&as_pushed);
    }
    if document.version != VERSION {
        return Err(ExportError::InvalidCache {
            reference: remote.display.clone(),
            reason: format!(
                "inline record of format version {} (this Lamina reads {VERSION})",
                document.version
            ),
        });
    }
    Ok(Some(document))
}

/// Whether an entry exported at `created` (seconds) is younger than `older_than` at `now`.
/// Times are whole seconds, so an entry from this very second has age 0: `older_than` 0
/// drops everything, as `--older-than 0` promises.
fn outlives_prune(created: u64, now: u64, older_than: Duration) -> bool {
    now.saturating_sub(created) < older_than.as_secs()
}

/// Drops every writer's records (and build lists) exported `older_than` ago or longer.
/// Each writer tag is rewritten; a writer exporting at the same moment may lose that export
/// (run it when writers are idle, e.g. from a nightly job).
pub async fn prune(
    store: &Store,
    reference: &str,
    older_than: Duration,
    config: &RegistryConfig,
) -> Result<PruneReport, ExportError> {
    let base = parse_reference(reference)?;
    let remote = Remote::open(reference, config, RegistryOperation::Push).await?;
    let tag = base.tag().unwrap_or("latest").to_owned();
    let now = now_secs();
    let mut report = PruneReport::default();
    for writer in writer_tags(&remote, &tag).await? {
        let target = Reference::with_tag(
            base.registry().to_owned(),
            base.repository().to_owned(),
            writer,
        );
        let Some(mut document) = read_document(&remote, &target).await? else {
            continue;
        };
        report.writers += 1;
        let before = document.records.len();
        document
            .records
            .retain(|r| outlives_prune(r.created, now, older_than));
        document
            .builds
            .retain(|b| outlives_prune(b.created, now, older_than));
        report.removed += before - document.records.len();
        report.kept += document.records.len();
        if document.records.len() != before {
            let writer_remote =
                Remote::open(&target.whole(), config, RegistryOperation::Push).await?;
            write_document(store, &writer_remote, &document).await?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
