//! The one error type of images moving into, out of and around the store.

use std::path::PathBuf;

/// What can go wrong moving images in and out of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] lamina_store::StoreError),
    /// A layer could not be read or written.
    #[error(transparent)]
    Layer(#[from] lamina_layer::LayerError),
    /// No image of that name or digest is in the store.
    #[error("image {reference} is not in the store; build, pull or import it first")]
    ImageNotFound {
        /// The name or digest asked for.
        reference: String,
    },
    /// A stored manifest or config does not parse or does not match its layers.
    #[error("image {reference}: {reason}")]
    InvalidImage {
        /// The name or digest of the image.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// An image needs a layer variant the store does not hold.
    #[error(
        "layer {layer} has no {compression} variant in the store; store that variant first (export does so on demand)"
    )]
    MissingVariant {
        /// The layer key (blake3 of the uncompressed tar).
        layer: lamina_store::Digest,
        /// The compression asked for (`tar`, `gzip` or `zstd`).
        compression: &'static str,
    },
    /// A stored layer's bytes do not match its record (found when making another variant
    /// of it). Layers arriving by import or pull that do not match are [`BlobRejected`].
    ///
    /// [`BlobRejected`]: ImageError::BlobRejected
    #[error(
        "image {image}: layer {layer} is corrupt: {reason}; the archive or store is damaged, get a fresh copy"
    )]
    CorruptLayer {
        /// The image (name, digest or archive) the layer belongs to.
        image: String,
        /// The layer's digest or its path in the archive.
        layer: String,
        /// What did not match.
        reason: String,
    },
    /// A path to import is neither an OCI layout, an oci-archive nor a docker-archive.
    #[error(
        "{} is not an OCI image layout, oci-archive or docker-archive (no oci-layout or manifest.json found)",
        path.display()
    )]
    UnknownArchive {
        /// The path given.
        path: PathBuf,
    },
    /// An archive's index or manifest is malformed or names missing files.
    #[error("archive {}: {reason}", path.display())]
    InvalidArchive {
        /// The archive or layout.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An imported image has no name in the archive and none was given.
    #[error(
        "archive {} does not name image {digest}; pass a name to import it under",
        path.display()
    )]
    NoImageName {
        /// The archive.
        path: PathBuf,
        /// The unnamed image's manifest or config digest.
        digest: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An export's output path holds something an export does not replace.
    #[error("{} is {kind}; {hint}", path.display())]
    OutputRefused {
        /// The output path.
        path: PathBuf,
        /// What is there (`a symlink`, `a character device`, ...).
        kind: &'static str,
        /// What to do instead.
        hint: String,
    },
    /// An image reference does not parse.
    #[error(
        "invalid image reference {reference:?}: {reason}; write [registry/]repository[:tag][@digest]"
    )]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry wants credentials, or refused the ones given (HTTP 401).
    #[error(
        "registry {registry} refused access to {reference} (401 unauthorized): set LAMINA_REGISTRY_USER and LAMINA_REGISTRY_PASSWORD, or log in with `docker login {registry}`"
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
    },
    /// The credentials are valid but lack a permission (HTTP 403).
    #[error(
        "registry {registry} denied {operation} of {reference} (403 forbidden): use credentials allowed to {operation} this repository"
    )]
    Forbidden {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// `pull` or `push`.
        operation: &'static str,
    },
    /// The registry does not have the repository, tag or blob (HTTP 404).
    #[error(
        "{what} of {reference} not found in registry {registry} (404): check the repository name and tag"
    )]
    RemoteNotFound {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// What was missing (`manifest`, `blob sha256:...`).
        what: String,
    },
    /// The registry kept answering 429 until the retries ran out.
    #[error(
        "registry {registry} is rate limiting requests for {reference} (429 too many requests): wait and try again, or log in to get a higher limit"
    )]
    RateLimited {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
    },
    /// Any other registry or transport failure (after retries, where retrying made sense).
    #[error("registry {registry} failed for {reference}: {reason}")]
    Registry {
        /// The registry host.
        registry: String,
        /// The image reference.
        reference: String,
        /// What happened.
        reason: String,
    },
    /// A pulled or imported manifest, config or layer did not match its descriptor (digest,
    /// size, diff_id) or arrived cut short; nothing of the pull or import was kept.
    #[error(
        "{what} of {reference} was rejected: {reason}; nothing was stored, pull or export the image again from an intact source"
    )]
    BlobRejected {
        /// The image reference.
        reference: String,
        /// What arrived wrong: `manifest` or `blob <digest>`.
        what: String,
        /// What did not match.
        reason: String,
    },
    /// An image config has a member of the wrong type; nothing of the image was stored.
    #[error(
        "image {reference}: config field {field} is malformed ({reason}); nothing was stored, rebuild the image with a tool that writes a valid config"
    )]
    MalformedConfig {
        /// The image's name or digest.
        reference: String,
        /// The member's path in the config (`config.Env`, `rootfs.diff_ids`).
        field: String,
        /// What was found instead (`invalid type: string "x", expected a sequence`).
        reason: String,
    },
    /// The image (or every image of an index) is for another architecture.
    #[error("image {reference} architecture ({found}) is not amd64")]
    Architecture {
        /// The image reference.
        reference: String,
        /// The architectures on offer, e.g. `arm64, linux/arm/v7`.
        found: String,
    },
    /// A manifest, config or layer media type this client does not handle.
    #[error(
        "image {reference}: unsupported media type {media_type}; only OCI and Docker v2 schema 2 images can be pulled"
    )]
    UnsupportedMediaType {
        /// The image reference.
        reference: String,
        /// The media type found.
        media_type: String,
    },
    /// Credentials could not be read (docker config.json or a credential helper).
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// The registry host.
        registry: String,
        /// What failed (never the secret itself).
        reason: String,
    },
    /// A remote build cache document is not one this version reads (damaged, another
    /// format version, or not a Lamina cache).
    #[error("build cache {reference}: {reason}")]
    InvalidCache {
        /// The cache reference (the writer's tag).
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A layer the store holds only as remote (a registry cache hit) could not be fetched
    /// or did not verify.
    #[error(
        "layer {diff_id} is stored as remote (its bytes are in {source_repository}) and could not be fetched: {reason}; check access to that repository, or remove the images built on it and build again"
    )]
    RemoteLayer {
        /// The layer's diff_id.
        diff_id: String,
        /// `registry/repository` the store says holds it.
        source_repository: String,
        /// Why the fetch failed.
        reason: String,
    },
}
