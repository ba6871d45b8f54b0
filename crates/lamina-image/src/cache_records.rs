//! The records of a registry build cache (`--cache-to` / `--cache-from`; docs/format.md,
//! "Remote build cache"): what the executor writes after a build and reads before one, and
//! what lamina-export's registry client sends and fetches. Their transport is not here: the
//! executor reaches it through its remote-cache seam.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use lamina_store::{Compression, Digest};
use serde::{Deserialize, Serialize};

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.lamina.cache.v1";
/// The media type of the config blob, a [`CacheDocument`] in JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.lamina.cache.v1+json";
/// The [`CacheDocument::version`] this code writes and reads.
pub const VERSION: u32 = 1;
/// The image config member holding an inline cache document (`--cache-to inline`): its
/// records' layers are the image's own.
pub const INLINE_MEMBER: &str = "lamina.cache.v1";

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

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What fetching the layers a store holds only as remote did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Localized {
    /// Layers fetched.
    pub layers: usize,
    /// Compressed bytes downloaded.
    pub bytes: u64,
}
