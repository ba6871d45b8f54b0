//! The facade's error type: one variant per lower crate, so callers can match on the kind.

/// An error from any part of Lamina, as the facade returns it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The definition (builder input, Dockerfile, TOML file, local inputs).
    #[error(transparent)]
    Spec(#[from] lamina_spec::SpecError),
    /// The content-addressed store.
    #[error(transparent)]
    Store(#[from] lamina_store::StoreError),
    /// Writing or reading a layer.
    #[error(transparent)]
    Layer(#[from] lamina_layer::LayerError),
    /// Building an image.
    #[error(transparent)]
    Exec(#[from] lamina_exec::ExecError),
    /// Moving images in and out of the store (archives, registries).
    #[error(transparent)]
    Export(#[from] lamina_export::ExportError),
    /// No image has this name in the store.
    #[error("no image named {name} in the store; `lamina image ls` lists them")]
    ImageNotFound {
        /// The name asked for, short form.
        name: String,
    },
    /// A blob an image names is not in the store (a damaged store).
    #[error("the {what} of {image} ({blob}) is missing from the store; run `lamina cache fsck`")]
    BlobMissing {
        /// Which blob: `manifest` or `config`.
        what: &'static str,
        /// The image's short name.
        image: String,
        /// The blob's store address.
        blob: lamina_store::Digest,
    },
    /// A background task of the engine panicked or was cancelled.
    #[error("an engine task failed: {reason}")]
    TaskFailed {
        /// What the runtime said.
        reason: String,
    },
}
