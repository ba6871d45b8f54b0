//! The OCI distribution client: [`pull`] an image into the store, [`push`] one from it.
//!
//! Built on `oci-client` for HTTP, the token flow and the upload protocol, and on
//! `docker_credential` for docker's `config.json`. What they lack is here: retries with
//! backoff and errors that say what to do (`transport`), streaming a layer into the store
//! while decompressing and hashing it (the shared `ingest` pipeline), streaming uploads from store files in
//! bounded chunks, and chunked uploads that resume where the registry stands after a cut
//! connection (`push`), cross-repository mount sources from what this store knows
//! (`mounts`), and the commit-only-when-complete rule of a pull (`pull`).
//!
//! ```no_run
//! # async fn demo(store: &lamina_store::Store) -> Result<(), lamina_export::ExportError> {
//! use lamina_export::registry::{RegistryConfig, pull, push};
//!
//! let config = RegistryConfig::default();
//! let image = pull(store, "alpine:3.19", &config).await?;
//! let report = push(store, &image, "127.0.0.1:5000/alpine:3.19", &config, &|_| {}).await?;
//! assert_eq!(report.digest, image.digest);
//! # Ok(()) }
//! ```
//!
//! [`push`] sends an image as it is stored (its manifest bytes, so its digest). To push it in
//! another layer compression, e.g. gzip for clients that read no zstd, convert it first with
//! [`crate::with_compression`] (variants are made once and kept; `lamina push` does this,
//! gzip by default):
//!
//! ```no_run
//! # async fn demo(store: &lamina_store::Store, image: &lamina_export::StoredImage)
//! # -> Result<(), lamina_export::ExportError> {
//! use lamina_export::registry::{RegistryConfig, push};
//! use lamina_store::Compression;
//!
//! let gzip = lamina_export::with_compression(store, image, Compression::Gzip)?.image;
//! let report = push(store, &gzip, "127.0.0.1:5000/app:1", &RegistryConfig::default(), &|_| {})
//!     .await?;
//! assert_eq!(report.digest, gzip.digest);
//! # Ok(()) }
//! ```
//!
//! Transport: https by default; plain http only for hosts in
//! [`RegistryConfig::insecure`] and for loopback hosts (`localhost`, `127.0.0.0/8`, `::1`).
//! Credentials: see [`Credentials`] for where they come from; they are never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use lamina_store::Digest;

mod auth;
pub mod cache;
pub(crate) mod media;
mod mounts;
mod pull;
mod push;
pub mod remote_layers;
mod transport;

pub use auth::{Credentials, PASSWORD_ENV, USER_ENV};
pub use pull::{pull, pull_with_progress};
pub use push::push;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registry hosts (`host[:port]`) that may be reached over plain http. Loopback hosts
    /// always may.
    pub insecure: Vec<String>,
    /// Registry host → host to use instead (e.g. `docker.io` → a local mirror). Pulls and
    /// pushes go to the mirror; the image keeps its original name in the store.
    pub mirrors: BTreeMap<String, String>,
    /// Credentials for every registry this config reaches; `None` looks them up (environment,
    /// then docker's config.json, else anonymous).
    pub credentials: Option<Credentials>,
    /// Blobs transferred at once.
    pub max_parallel: usize,
    /// Further tries after a failure worth retrying (5xx, 408, 429, timeouts, dropped
    /// connections, cut bodies).
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_delay: Duration,
    /// Longest wait for the registry to send something.
    pub timeout: Duration,
    /// Whether to read docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`) for
    /// credentials.
    pub docker_config: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            credentials: None,
            max_parallel: 4,
            retries: 4,
            retry_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(120),
            docker_config: true,
        }
    }
}

/// Progress of a [`push`], one event per blob step and one for the manifest. Digests are
/// sha256 (what the registry calls the blob).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// The registry already had the blob.
    Skipped {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// The blob was mounted from another repository of the same registry.
    Mounted {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// The repository it came from.
        from: String,
    },
    /// An upload started.
    Uploading {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes of an upload read from the store and handed to the connection so far; sent
    /// about every 100 ms while it streams, the last one with `sent == size`. A retried
    /// upload starts again from 0, or, when a chunked upload resumes, from the bytes the
    /// registry holds.
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes sent so far.
        sent: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// An upload finished.
    Uploaded {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// The manifest is in place: the image is pushed.
    Manifest {
        /// The image digest (sha256 of the manifest).
        digest: Digest,
        /// The reference pushed to.
        reference: String,
    },
}

/// Progress of a [`pull_with_progress`], per blob (config and layers). Digests are sha256
/// (what the registry calls the blob).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// The blob (or the layer it holds) is in the store already: not downloaded.
    Skipped {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// A download started.
    Downloading {
        /// The blob.
        digest: Digest,
        /// Its size in bytes, as the manifest says.
        size: u64,
    },
    /// Bytes of a download received so far; sent every 64 KiB or 100 ms at most, the last
    /// one with `received == size`. A retried download starts again from 0.
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes received so far.
        received: u64,
        /// Its size in bytes, as the manifest says.
        size: u64,
    },
    /// A download finished and checked out (not yet committed: that happens once every blob
    /// has arrived).
    Downloaded {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
}

/// What a [`push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The image digest (sha256 of the manifest), the same on the registry as in the store.
    pub digest: Digest,
    /// The reference pushed to.
    pub reference: String,
    /// Blobs uploaded.
    pub blobs_pushed: usize,
    /// Blobs the registry already had in that repository.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Bytes uploaded.
    pub bytes_pushed: u64,
}
