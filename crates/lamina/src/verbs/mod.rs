//! The `Engine` methods behind the CLI's store verbs, with typed options and results.
//!
//! Each module adds an `impl Engine` block: `images` (list, inspect, history, tag, remove,
//! import, export), `registry` (push, pull), `maintenance` (gc, du, stats, fsck).

pub(crate) mod images;
pub(crate) mod maintenance;
pub(crate) mod registry;
