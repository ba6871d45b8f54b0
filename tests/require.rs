//! The one rule for tests that need something from the machine: root, an external tool, a
//! file. A test that cannot run here fails, naming what is missing, so a green run always
//! means the test ran. A developer without root or the tools can ask for skips on a local run
//! with `LAMINA_TEST_ALLOW_SKIP=1`; `.ci/test` sets `LAMINA_TEST_STRICT=1`, which wins over it.
//!
//! Test crates cannot share a module, so each includes this one file with `#[path]`.

#![allow(dead_code, clippy::print_stderr)]

use std::path::Path;

/// Set by `.ci/test`: every test runs; a missing requirement is a failure whatever else is set.
pub const STRICT: &str = "LAMINA_TEST_STRICT";
/// Set by a developer for a local run: a test whose requirements are missing returns early
/// (printing why) instead of failing.
pub const ALLOW_SKIP: &str = "LAMINA_TEST_ALLOW_SKIP";

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// Effective user id 0: overlayfs mounts, runc, chown, dockerd.
    Root,
    /// An executable: a bare name is looked up on PATH, a path is taken as it is.
    Tool(&'a str),
    /// A file, e.g. `/bin/busybox`.
    File(&'a str),
}

impl Need<'_> {
    /// Why this need is not met here, if it is not.
    pub fn unmet(&self) -> Option<String> {
        match *self {
            Need::Root => (!rustix::process::geteuid().is_root())
                .then(|| "it needs root (overlayfs mounts, runc, owners)".to_string()),
            Need::Tool(tool) => (!tool_exists(tool))
                .then(|| format!("{tool} is not installed{}", package_hint(tool))),
            Need::File(path) => (!Path::new(path).is_file())
                .then(|| format!("{path} is missing{}", package_hint(path))),
        }
    }
}

/// Whether the calling test must return now because one of `needs` is not met: panics naming
/// it (the test fails) unless skips were asked for, then prints why and returns true.
#[must_use]
pub fn missing(needs: &[Need<'_>]) -> bool {
    match needs.iter().find_map(Need::unmet) {
        Some(reason) => {
            cannot_run(&reason);
            true
        }
        None => false,
    }
}

/// The calling test cannot run here for `reason` (found while running, e.g. a failed mount):
/// panics, unless skips were asked for; then it prints why, and the caller returns.
pub fn cannot_run(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    if skips_allowed() {
        eprintln!("skipping {test}: {reason} ({ALLOW_SKIP}=1 is set)");
        return;
    }
    let hint = if flag(STRICT) {
        format!("{STRICT}=1: every test must run")
    } else {
        format!(
            "run the tests as root with what .ci/test installs, or set {ALLOW_SKIP}=1 to skip such tests locally"
        )
    };
    panic!("{test} cannot run here: {reason} ({hint})");
}

/// Whether a missing requirement may skip a test instead of failing it.
pub fn skips_allowed() -> bool {
    flag(ALLOW_SKIP) && !flag(STRICT)
}

fn flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// ` (Debian package P)` for the tools and files the tests use.
fn package_hint(tool: &str) -> String {
    let name = tool.rsplit('/').next().unwrap_or(tool);
    let package = match name {
        "busybox" => "busybox-static",
        "htpasswd" => "apache2-utils",
        "docker" | "dockerd" => "docker.io",
        "readelf" => "binutils",
        "runc" | "umoci" | "skopeo" | "podman" | "docker-registry" | "tar" | "zstd" | "git"
        | "fuse-overlayfs" => name,
        _ => return String::new(),
    };
    format!(" (Debian package {package})")
}
