//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

use crate::Digest;

/// Everything that can go wrong in the store.
///
/// Variants fall into four groups: bad input (`DigestMismatch`,
/// `SizeMismatch`, `InvalidImageName`), environment (`Io`, `Locked`, `NoLocation`),
/// corruption (`CorruptBlob`, `MissingBlob`, `CorruptRecord`, `Index`, `UnsupportedFormat`)
/// and misuse of the API (`NotFound`, `ImageNotFound`, `Pinned`, `LeaseReleased`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("i/o error on {}: {source}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another process holds the store and did not let go in time.
    #[error(
        "store {} is in use by {holder}; gave up after {waited_ms} ms, wait for it to finish or raise the lock timeout",
        .path.display()
    )]
    Locked {
        /// The store's lock file.
        path: PathBuf,
        /// Who holds it, e.g. `process 1234` (from the lock file, or `another process`).
        holder: String,
        /// How long we waited, in milliseconds.
        waited_ms: u64,
    },
    /// Neither `LAMINA_STORE`, `XDG_CACHE_HOME` nor `HOME` names a location.
    #[error("no store location: set LAMINA_STORE, XDG_CACHE_HOME or HOME")]
    NoLocation,
    /// The store directory was written by an unknown format version.
    #[error(
        "{} holds store format {found:?}, this build reads `lamina-store v1` and `v2`; use a matching lamina or another directory",
        .path.display()
    )]
    UnsupportedFormat {
        /// The format marker file.
        path: PathBuf,
        /// What the marker said.
        found: String,
    },
    /// The RocksDB index failed.
    #[error("index at {} failed: {source}; run `lamina cache fsck` to check the store", .path.display())]
    Index {
        /// The index directory.
        path: PathBuf,
        /// The RocksDB error.
        #[source]
        source: rocksdb::Error,
    },
    /// An index record did not decode.
    #[error("corrupt {kind} record {key}: {reason}; run `lamina cache fsck --repair`")]
    CorruptRecord {
        /// Which kind of record (`blobs`, `layers`, `cache`, `images`, …).
        kind: &'static str,
        /// The record's key, printable.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A blob's bytes no longer match its digest or recorded size.
    #[error("blob {digest} at {} is corrupt: {reason}; run `lamina cache fsck --repair`", .path.display())]
    CorruptBlob {
        /// The blob's blake3 digest.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// The index names a blob whose file is gone.
    #[error("blob {digest} is indexed but {} is missing; run `lamina cache fsck --repair`", .path.display())]
    MissingBlob {
        /// The blob's blake3 digest.
        digest: Digest,
        /// The file that should exist.
        path: PathBuf,
    },
    /// Written bytes do not hash to the digest the caller promised; nothing was kept.
    #[error("content does not match the expected digest {expected}: got {actual}")]
    DigestMismatch {
        /// The digest the caller claimed.
        expected: Digest,
        /// The digest of the bytes actually written.
        actual: Digest,
    },
    /// Written bytes have another length than the caller promised; nothing was kept.
    #[error("content for {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob being written (its computed blake3 digest).
        digest: Digest,
        /// The size the caller claimed.
        expected: u64,
        /// The size actually written.
        actual: u64,
    },
    /// A record refers to a blob or layer the store does not have.
    #[error("{digest} is not in the store; put it first")]
    NotFound {
        /// The digest looked up.
        digest: Digest,
    },
    /// No image has this name.
    #[error("no image named {name:?} in the store")]
    ImageNotFound {
        /// The `name:tag` looked up.
        name: String,
    },
    /// An image name is empty or too long.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidImageName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The image is pinned; unpin it before removing it.
    #[error("image {name:?} is pinned; unpin it before removing it")]
    Pinned {
        /// The image name.
        name: String,
    },
    /// The lease was already released or has expired and been collected.
    #[error("lease {lease} is no longer held; take a new lease")]
    LeaseReleased {
        /// The lease id, hex.
        lease: String,
    },
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
