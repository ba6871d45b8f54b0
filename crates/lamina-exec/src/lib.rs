//! `lamina-exec`: the executor. Turns a definition into an image in the store, one cached
//! layer per step; RUN steps run under runc on an overlayfs rootfs.
//!
//! - `sandbox`: unpacked-layer cache, overlayfs mounts, runc bundles, build-time mounts.
//! - `build`: cache keys, step execution, image config, multi-stage, the `Executor`.
//! - `usage`: what the work directory holds on disk, by part.
//! - `reclaim`: what killed processes left in the work directory, removed by the next one.
//! - `rootless`: builds without root, in a user namespace ([`rootless::enter`]).
//! - [`seams`]: what the executor asks of the outside ([`BaseSource`] for images the store
//!   lacks, [`RemoteCacheClient`] for registry build caches); the facade fills them with
//!   lamina-export's registry client, so this crate depends on no registry code.

pub mod build;
mod cancel;
pub mod error;
mod owner;
pub mod reclaim;
pub mod rootless;
pub mod sandbox;
pub mod seams;
pub mod usage;

pub use build::{
    BuildEvent, BuildOptions, BuildReport, BuildState, CacheKey, CacheMode, CacheTo, DefaultCmd,
    ExecConfig, Executor, MissReason, NamedContext, SANDBOX_DEFAULT_CMD, StepReport,
};
pub use cancel::{CANCEL_POLL, CancelToken};
pub use error::ExecError;
pub use seams::{BaseSource, RemoteCacheClient, SeamFuture};
