//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while writing or unpacking a layer.
///
/// Source-side problems name the file (`path`), sink problems carry only the I/O error, and
/// problems with a layer being unpacked name the archive entry (`entry`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// Reading a source file or directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Source {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the layer to its sink failed.
    #[error("cannot write the layer: {source}")]
    Sink {
        /// The underlying error.
        source: io::Error,
    },
    /// A source file changed size while it was being archived.
    #[error("{} changed while it was archived; archive a tree nobody is writing to", path.display())]
    FileChanged {
        /// The file that changed.
        path: PathBuf,
    },
    /// A source name starts with `.wh.`, which a layer reserves for whiteouts.
    #[error("{} uses the reserved whiteout prefix `.wh.`; rename it", path.display())]
    ReservedName {
        /// The offending file.
        path: PathBuf,
    },
    /// An overlayfs upper directory uses a feature a layer cannot express.
    #[error(
        "{} carries the overlay attribute {attribute}; mount the overlay with redirect_dir=off and metacopy=off",
        path.display()
    )]
    OverlayFeature {
        /// The file carrying the attribute.
        path: PathBuf,
        /// The attribute, such as `trusted.overlay.redirect`.
        attribute: String,
    },
    /// An extended attribute name cannot be stored in a PAX record.
    #[error("{} has the extended attribute {name:?} whose name contains `=` or a newline; remove it", path.display())]
    UnsupportedXattr {
        /// The file carrying the attribute.
        path: PathBuf,
        /// The attribute name, lossily decoded.
        name: String,
    },
    /// Reading or decompressing the layer stream failed, or it is not a valid tar archive.
    #[error("cannot read the layer: {source}")]
    Read {
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's path or link target leaves the target directory (`..`).
    #[error(
        "layer entry {entry:?} points outside the target directory ({reason}); the layer is unsafe"
    )]
    UnsafePath {
        /// The entry, lossily decoded.
        entry: String,
        /// Which part is unsafe.
        reason: &'static str,
    },
    /// An entry is malformed or of a kind the unpacker does not support.
    #[error("layer entry {entry:?} is invalid: {reason}")]
    InvalidEntry {
        /// The entry, lossily decoded.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layer's tar stream ends inside an entry's header or data: the layer was cut
    /// short (a missing end-of-archive trailer or final padding is not this).
    #[error(
        "the layer is cut short inside {}; fetch or rebuild the layer",
        match (entry, in_data) {
            (Some(e), true) => format!("the data of entry {e:?}"),
            (Some(e), false) => format!("the header of the entry after {e:?}"),
            (None, _) => "the header of its first entry".to_owned(),
        }
    )]
    Truncated {
        /// The entry whose data is cut, or (`in_data` false) the last complete entry before
        /// the cut header; `None` when the first header is cut. Lossily decoded.
        entry: Option<String>,
        /// Whether the cut is in the entry's data rather than in the next header.
        in_data: bool,
    },
    /// A tar-split is not in the format this version writes, or is damaged.
    #[error("the layer's tar-split is unreadable ({reason}); run `lamina cache fsck`")]
    TarSplit {
        /// What is wrong with it.
        reason: String,
    },
    /// A layer's unpacked tree no longer holds what its tar-split references: the tar cannot
    /// be reassembled.
    #[error(
        "the unpacked tree {} of this layer was modified ({detail}), so its tar cannot be reassembled; run `lamina cache fsck`",
        tree.display()
    )]
    TreeModified {
        /// The tree (its directory is named by the layer's blake3).
        tree: PathBuf,
        /// What differs.
        detail: String,
    },
    /// Applying an entry to the target directory failed.
    #[error("cannot unpack layer entry {entry:?}: {source}")]
    Unpack {
        /// The entry, lossily decoded.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl LayerError {
    pub(crate) fn reading(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LayerError {
        let path = path.into();
        move |source| LayerError::Source { path, source }
    }

    pub(crate) fn sink(source: io::Error) -> LayerError {
        LayerError::Sink { source }
    }

    pub(crate) fn unpack(entry: &[u8]) -> impl FnOnce(io::Error) -> LayerError + '_ {
        move |source| LayerError::Unpack {
            entry: lossy(entry),
            source,
        }
    }
}

/// Decodes an entry name for messages.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
