//! Lamina's layer engine: deterministic OCI image layers in, confined extraction out.
//!
//! The main types are [`LayerWriter`], which writes a layer from a directory tree, from an
//! overlayfs upper directory or from the difference of two trees, and [`Unpacker`], which
//! applies a layer (plain, gzip or zstd, detected by magic bytes) to a directory without ever
//! writing outside it.
//!
//! [`TarSplitWriter`] records a layer's tar minus the file contents its unpacked tree holds,
//! and [`TarSplitReader`] gives the exact tar back from that record and the tree (the store
//! keeps such layers as their tree only; see the `tarsplit` module docs).
//!
//! A layer is written in one pass: the tar stream is hashed (sha256 for the `diff_id`, blake3
//! for the store) while it is compressed, and the compressed stream is hashed on its way to the
//! sink, so no file is read twice. The same tree and [`LayerOptions`] always give the same bytes.
//!
//! ```
//! use lamina_layer::{Compression, LayerOptions, LayerWriter, Unpacker};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let src = tempfile::tempdir()?;
//! std::fs::create_dir(src.path().join("etc"))?;
//! std::fs::write(src.path().join("etc/motd"), "hello\n")?;
//!
//! let options = LayerOptions::default()
//!     .compression(Compression::Zstd)
//!     .mtime_clamp(Some(0));
//! let mut blob = Vec::new();
//! let info = LayerWriter::new(options.clone()).write_tree(src.path(), &mut blob)?;
//! assert_eq!(info.size, blob.len() as u64);
//! assert_eq!(info.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
//! assert!(info.diff_id.to_string().starts_with("sha256:"));
//!
//! // Deterministic: writing again gives the same digest.
//! let again = LayerWriter::new(options).write_tree(src.path(), std::io::sink())?;
//! assert_eq!(again.digest, info.digest);
//!
//! let dst = tempfile::tempdir()?;
//! let stats = Unpacker::default().unpack(&blob[..], dst.path())?;
//! assert_eq!(stats.diff_id, info.diff_id);
//! assert_eq!(std::fs::read_to_string(dst.path().join("etc/motd"))?, "hello\n");
//! # Ok(())
//! # }
//! ```

mod compress;
mod confine;
mod diff;
mod digest;
mod error;
mod gzip;
mod pax;
mod read_ahead;
mod tail;
mod tarsplit;
mod unpack;
mod walk;
mod writer;

pub use compress::{Compression, Encoder, detect_compression};
pub use error::LayerError;
pub use lamina_types::Digest;
pub use read_ahead::{ReadAhead, StreamCheck};
pub use tarsplit::{NotSplittable, TarCheck, TarSplitReader, TarSplitSummary, TarSplitWriter};
pub use unpack::{UnpackOptions, UnpackStats, Unpacker};
pub use writer::{LayerInfo, LayerOptions, LayerWriter};
