//! End-to-end tests: each drives the real `lamina` binary (or the workspace's metadata).

mod add_sources;
mod archives;
mod build;
mod build_contexts;
mod cache;
mod check_mounts;
mod crate_graph;
mod debian;
mod definitions;
mod disk_full;
mod docker_output;
mod docker_world;
mod downloads;
mod export_targets;
mod git_servers;
mod git_sources;
mod ingest;
mod leftovers;
mod messages;
mod mounts;
mod names;
mod registry;
mod remote_cache;
#[path = "../require.rs"]
mod require;
mod rootless;
mod sharing;
mod sources;
mod support;
mod tree_layers;
mod trust;
mod unprivileged;
mod waiting;
mod warm;
