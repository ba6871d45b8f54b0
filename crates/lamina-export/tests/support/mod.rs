//! Helpers for the registry tests: a real `docker-registry` process, a fault-injecting
//! proxy in front of it, and small images built into a store.

#![allow(dead_code)]

pub mod http;
pub mod image;
pub mod proxy;
#[path = "../../../../tests/require.rs"]
pub mod require;
pub mod server;
