//! Helpers for the registry tests: a real `docker-registry` process, a fault-injecting
//! proxy in front of it, and small images built into a store.

#![allow(dead_code)]

pub mod http;
pub mod image;
pub mod proxy;
pub mod server;

/// Whether the external tool `name` is on PATH.
pub fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// Says why a test does nothing here (tests may print; the lint is for libraries).
#[allow(clippy::print_stderr)]
pub fn skip(test: &str, reason: &str) {
    eprintln!("skipping {test}: {reason}");
}
