//! Lamina's content-addressed store.
//!
//! [`Store`] keeps every layer, config and manifest once, addressed by blake3, with its
//! sha256 recorded so OCI digests find it too. Blobs are files under `blobs-v1/`, written
//! atomically and verified before they land; records (blobs, layers, cache entries, named
//! images, leases) live in a RocksDB index, each kind under its own key prefix. Eviction is by
//! TTL for cache entries, by an optional size budget (least recently used first) and by a
//! mark-and-sweep GC from named images, unexpired cache entries and live leases. The
//! layout and record encodings are described in `docs/format.md`.
//!
//! The store is embedded and synchronous. Any number of processes may have it open: each
//! holds the index only while it reads or writes it (others wait for that section, up to
//! [`StoreOptions::lock_timeout`]), never while it runs a step or moves blob bytes; within
//! a process any number of threads share it.
//!
//! ```
//! use lamina_store::{BlobKind, Digest, ImageState, Store, StoreOptions};
//!
//! # fn main() -> Result<(), lamina_store::StoreError> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("store"), StoreOptions::default())?;
//! let config = store.put_bytes(BlobKind::Config, br#"{"architecture":"amd64"}"#)?;
//! let manifest = store.put_bytes(BlobKind::Manifest, b"{...}")?;
//!
//! // Found again by either digest; putting the same bytes again writes nothing.
//! assert_eq!(store.stat(&config.sha256)?.unwrap().digest, config.digest);
//! assert_eq!(store.put_bytes(BlobKind::Config, br#"{"architecture":"amd64"}"#)?, config);
//!
//! // A named image keeps what it references through every GC.
//! store.tag_image("app:latest", &manifest.digest, &[config.digest], ImageState::Complete)?;
//! store.gc()?;
//! assert_eq!(store.read(&config.digest)?.unwrap(), br#"{"architecture":"amd64"}"#);
//! assert!(store.fsck(Default::default())?.is_clean());
//! # Ok(())
//! # }
//! ```

mod blob;
mod digest;
mod encoding;
mod error;
mod fsck;
mod fsutil;
mod gc;
mod index;
mod lease;
mod lock;
mod migrate;
pub mod owner;
mod records;
mod refs;
mod remote;
mod reserve;
mod slot;
mod stats;
mod store;
mod touchlog;
mod tree;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::PathBuf;

pub use blob::BlobWriter;
pub use digest::{Algorithm, Digest};
pub use error::StoreError;
pub use fsck::{FsckIssue, FsckOptions, FsckReport};
pub use gc::GcReport;
pub use lease::Lease;
pub use records::{
    BlobInfo, BlobKind, CacheEntry, CacheRecord, Compression, ImageRecord, ImageState, LayerRecord,
    LayerVariant,
};
pub use remote::{RemoteBlob, RemoteSource};
pub use stats::{DiskUsage, KindUsage, Stats};
pub use store::{Blob, BlobMap, ReadSection, Store, StoreOptions, WaitNotice};
pub use tree::LAYER_TREES;

/// The environment variable that overrides the store location.
pub const STORE_ENV: &str = "LAMINA_STORE";

/// The default store location: `$LAMINA_STORE` if set, else `$XDG_CACHE_HOME/lamina/store`,
/// else `$HOME/.cache/lamina/store`. Relative `XDG_CACHE_HOME` values are ignored, as the
/// XDG spec asks.
pub fn default_location() -> Result<PathBuf, StoreError> {
    location_from(|name| std::env::var_os(name))
}

/// [`default_location`] over any environment lookup (for tests and embedding).
pub fn location_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StoreError> {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = non_empty(STORE_ENV) {
        return Ok(path);
    }
    if let Some(cache) = non_empty("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(cache.join("lamina").join("store"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(home.join(".cache").join("lamina").join("store"));
    }
    Err(StoreError::NoLocation)
}
