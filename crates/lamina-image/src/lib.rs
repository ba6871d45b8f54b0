//! `lamina-image`: images and layers as Lamina's store holds them, the vocabulary the
//! executor (`lamina-exec`) and the OCI interchange (`lamina-export`) share. Neither depends
//! on the other; both build on this crate, and the facade (`lamina`) joins them.
//!
//! - [`image`]: an image in the store ([`StoredImage`]): its OCI manifest, config and layer
//!   records, written and read back; image names (`image_name`, `find_named`,
//!   `display_name`). Every other crate goes through this module to create or read images, so
//!   the store holds them one way.
//! - [`documents`]: the lenient parsing of configs, manifests and indexes as every tool
//!   writes them.
//! - [`layer_store`]: a layer written by `lamina-layer` streamed straight into the store and
//!   recorded with its variant, for builds, tests and embedders.
//! - [`layer_tar`]: a layer's plain tar from its blob, or reassembled from a tree-backed
//!   layer's unpacked tree and tar-split.
//! - [`codec`]: streaming detect / decompress / compress / hash, and [`variants`]: a layer's
//!   variant in another compression, made once and recorded.
//! - [`cache_records`]: the records of a registry build cache, which the executor writes
//!   and reads and lamina-export's registry client carries.
//! - [`error`]: [`ImageError`], the one error of images moving into, out of and around the
//!   store, registry transfers included (lamina-export names it `ExportError`), so an error
//!   the registry client returns through the executor's seams keeps its kind and text.

pub mod cache_records;
pub mod codec;
pub mod documents;
pub mod error;
pub mod image;
pub mod layer_store;
pub mod layer_tar;
pub mod variants;

pub use error::ImageError;
pub use image::{ImageLayer, ManifestSummary, StoredImage};
