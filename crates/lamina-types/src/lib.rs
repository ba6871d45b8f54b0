//! `lamina-types`: the vocabulary every Lamina crate passes around.
//!
//! - [`Digest`] — a 256-bit content digest with its [`Algorithm`] (sha256 or blake3).
//! - [`Compression`] — none, gzip or zstd, with the OCI and Docker layer media types
//!   ([`LayerMediaType`] maps a media type back).
//! - [`Reference`] — an image reference, validated and normalised by Docker's rules, so
//!   `python:3.12` and `docker.io/library/python:3.12` are one name.
//! - [`Platform`] — os/architecture\[/variant\].
//!
//! This crate sits at the bottom of the crate graph: it depends on no other Lamina crate, and
//! every crate may depend on it. All parsing errors are one [`ParseError`].
//!
//! ```
//! use lamina_types::{Compression, Digest, Platform, Reference};
//!
//! let short = Reference::parse("python:3.12")?;
//! let full = Reference::parse("docker.io/library/python:3.12")?;
//! assert_eq!(short, full);
//! assert_eq!(full.to_string(), "docker.io/library/python:3.12");
//! assert_eq!(full.familiar(), "python:3.12");
//! assert_eq!(
//!     Reference::parse("org/app")?.with_default_tag().to_string(),
//!     "docker.io/org/app:latest"
//! );
//! assert!(Reference::parse("BAD NAME").is_err());
//!
//! let gzip: Compression = "gzip".parse()?;
//! assert_eq!(gzip.media_type(), "application/vnd.oci.image.layer.v1.tar+gzip");
//!
//! let empty = Digest::sha256_of(b"");
//! assert_eq!(empty.to_string().parse::<Digest>()?, empty);
//!
//! assert_eq!(Platform::parse("linux/amd64")?, Platform::LINUX_AMD64);
//! # Ok::<(), lamina_types::ParseError>(())
//! ```

pub mod compression;
pub mod digest;
pub mod error;
pub mod platform;
pub mod reference;

pub use compression::{Compression, LayerMediaType, MediaTypeFamily};
pub use digest::{Algorithm, Digest};
pub use error::ParseError;
pub use platform::Platform;
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, Reference};
