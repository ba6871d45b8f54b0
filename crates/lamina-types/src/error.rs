//! The one error type of this crate.

/// Text that is not a valid digest, compression, image reference or platform.
///
/// Every variant names the input and says what a valid one looks like; all of them are
/// bad user (or peer) input, never an environment problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not `sha256:<64 hex>` or `blake3:<64 hex>`.
    #[error("invalid digest {input:?}: {reason}")]
    Digest {
        /// The text that failed to parse.
        input: String,
        /// What is wrong with it and what is expected.
        reason: &'static str,
    },
    /// Not one of the compression names.
    #[error("unknown compression {input:?}: use none, gzip or zstd")]
    Compression {
        /// The text that failed to parse.
        input: String,
    },
    /// Not an image reference by Docker's rules.
    #[error("invalid image reference {input:?}: {reason}")]
    Reference {
        /// The text that failed to parse.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not `os/architecture[/variant]`.
    #[error("invalid platform {input:?}: {reason}")]
    Platform {
        /// The text that failed to parse.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
