//! `lamina`: the facade over Lamina's crates, and the `lamina` command-line tool.
//!
//! [`Engine`] opens a store and builds images into it, one cached layer per step, and has a
//! method for every store verb (list, inspect, history, tag, remove, import, export, push,
//! pull, gc, du, stats, fsck) with typed options and results; long operations report
//! progress as [`Event`]s;
//! [`load_definition`] reads a definition file (TOML or Dockerfile). Re-exports give embedders
//! one dependency: [`spec`] is `lamina-spec`, [`store`] is `lamina-store`, [`layer`] is
//! `lamina-layer`, [`image`] is `lamina-image` (stored images and layers), [`exec`] is
//! `lamina-exec`, [`export`] is `lamina-export`, [`types`] is `lamina-types` (digests,
//! compressions, image references, platforms).
//!
//! A program that builds RUN steps without root calls [`rootless::enter`] first thing in
//! `main`, before any thread starts: it moves the process into a user namespace of its own
//! (see [`rootless`]).

pub use lamina_exec as exec;
pub use lamina_export as export;
pub use lamina_image as image;
pub use lamina_layer as layer;
pub use lamina_spec as spec;
pub use lamina_store as store;
pub use lamina_types as types;

mod definition;
mod engine;
mod error;
mod event;
mod seams;
mod verbs;

pub use definition::{DefinitionKind, load_definition, resolve_definition_path};
pub use engine::{Engine, EngineConfig};
pub use error::Error;
// The executor's base source and remote cache client over registries (`Engine` sets them).
pub use seams::{RegistryBases, RegistryCache};
// Builds without root: call `rootless::enter()` at the start of main.
pub use event::{Event, EventSink, build_events_to};
pub use lamina_exec::rootless;
// `lamina check`: what `build` would refuse in a valid definition.
pub use lamina_exec::build::{Refusal, refusals_with};
pub use lamina_exec::{
    BuildEvent, BuildOptions, BuildReport, CacheMode, CacheTo, CancelToken, DefaultCmd, MissReason,
    NamedContext,
};
pub use lamina_image::layer_store::{LayerSource, store_layer};
pub use verbs::images::{
    ExportOptions, HistoryEntry, ImageDetails, ImageStatus, ImageSummary, Imported, Removed, Tagged,
};
pub use verbs::maintenance::{DiskUsage, GcReport, fsck_store, gc_store};
pub use verbs::registry::{PullOptions, PullReport, PushOptions, PushReport, RemoteCachePruned};
// An image in the layer compression a push or export needs (`lamina push --compression`).
pub use lamina_export::with_compression;
