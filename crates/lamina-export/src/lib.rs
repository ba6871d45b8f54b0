//! `lamina-export`: how images leave and enter Lamina's store.
//!
//! - [`image`] (from lamina-image): an image in the store ([`StoredImage`]): its OCI manifest, config and layer
//!   records, written and read back. Every other crate goes through this module to create or
//!   read images, so the store holds them one way.
//! - [`archive`]: OCI image layout directories, oci-archive and docker-archive, out and in.
//! - [`ingest`]: the one verify-and-stage pipeline imports and pulls share, and the lenient
//!   parsing of configs and manifests as every tool writes them.
//! - [`registry`]: the OCI distribution client, pull into the store and push from it.
//! - [`layer_store`] (from lamina-image): a layer written by `lamina-layer` streamed straight into the store and
//!   recorded with its variant, for builds, tests and embedders.
//! - [`layer_tar`] (from lamina-image): a layer's plain tar from its blob, or reassembled from a tree-backed
//!   layer's unpacked tree and tar-split.
//! - [`variants`]: an image in the layer compression a push or export asks for (variants
//!   made once, stored and reused).

pub mod archive;
pub mod error;
pub mod ingest;
pub mod registry;
pub mod variants;

// Stored images and layers live in lamina-image (below this crate and the executor); their
// paths here keep working.
pub use lamina_image::{image, layer_store, layer_tar};

pub use archive::{ArchiveFormat, ExportReport, ImportedImage};
pub use error::ExportError;
pub use image::{ImageLayer, StoredImage};
pub use variants::{Converted, with_compression};
