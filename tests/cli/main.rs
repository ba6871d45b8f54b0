//! End-to-end tests: each drives the real `lamina` binary (or the workspace's metadata).

mod archives;
mod build;
mod cache;
mod crate_graph;
mod definitions;
mod ingest;
mod registry;
mod support;
