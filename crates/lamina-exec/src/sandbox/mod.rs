//! The sandbox that runs RUN steps: unpacked layers ([`LayerCache`]), an overlayfs rootfs per
//! run, a runc bundle, and build-time mounts ([`BuildMount`]) that never land in the layer.
//!
//! Running needs root (overlayfs and runc); [`Sandbox::new`] checks that up front.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamina_store::{LayerRecord, Store};

use crate::ExecError;

/// Unpacked layers, one directory per layer (keyed by the layer's blake3), unpacked once and
/// reused.
#[derive(Debug)]
pub struct LayerCache {
    root: PathBuf,
}

impl LayerCache {
    /// A cache in `work_dir/layers/`.
    pub fn new(work_dir: &Path) -> Result<Self, ExecError> {
        let _ = work_dir;
        unimplemented!()
    }

    /// Unpacks `layer` once, atomically, and returns its directory.
    pub fn unpacked(&self, store: &Store, layer: &LayerRecord) -> Result<PathBuf, ExecError> {
        let _ = (store, layer, &self.root);
        unimplemented!()
    }
}

/// How a cache mount is shared between concurrent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Concurrent runs use the directory at the same time.
    #[default]
    Shared,
    /// One run at a time holds the directory; others wait.
    Locked,
    /// Concurrent runs each get their own directory.
    Private,
}

/// A build-time mount of a RUN step; its target never lands in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildMount {
    /// The host CA bundle, read-only, plus the env vars that point tools at it.
    HostCaBundle,
    /// A secret file, read-only at `target`.
    Secret {
        /// The secret's id.
        id: String,
        /// The file on the host.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
    },
    /// A persistent cache directory.
    Cache {
        /// The cache's id (defaults to the target).
        id: String,
        /// Absolute path in the container.
        target: String,
        /// Concurrency mode.
        sharing: CacheSharing,
    },
    /// A host path.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
    },
}

impl BuildMount {
    /// Parses a Dockerfile `RUN --mount=` value.
    pub fn parse(spec: &str, secrets: &BTreeMap<String, PathBuf>) -> Result<BuildMount, ExecError> {
        let _ = (spec, secrets);
        unimplemented!()
    }
}

/// The network a run sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new, empty network namespace (loopback only).
    None,
}

/// Which stream an output line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One RUN step to execute.
pub struct RunRequest<'a> {
    /// Unpacked layers, bottom first (may be empty: scratch).
    pub lower_dirs: Vec<PathBuf>,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Absolute working directory in the container; created if missing.
    pub cwd: String,
    /// `name`, `uid`, `uid:gid`, `name:group`, resolved from the rootfs.
    pub user: Option<String>,
    /// Build-time mounts; never land in the layer.
    pub mounts: Vec<BuildMount>,
    /// The network.
    pub network: Network,
    /// Called with each output line as it arrives.
    pub on_output: &'a mut (dyn FnMut(OutputStream, &str) + Send),
}

impl std::fmt::Debug for RunRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("lower_dirs", &self.lower_dirs)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("mounts", &self.mounts)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// An overlay upper directory holding a run's changes; removed on drop.
#[derive(Debug)]
pub struct UpperDir {
    path: PathBuf,
}

impl UpperDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The process's exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// The changes the run made.
    pub upper: UpperDir,
    /// The last ~20 lines of output.
    pub last_lines: Vec<String>,
}

/// Runs commands under runc on an overlayfs rootfs.
#[derive(Debug)]
pub struct Sandbox {
    work_dir: PathBuf,
}

impl Sandbox {
    /// Checks runc and root, and cleans up runs left by killed processes.
    pub fn new(work_dir: &Path) -> Result<Self, ExecError> {
        let _ = work_dir;
        unimplemented!()
    }

    /// Runs one request to completion.
    pub fn run(&self, request: RunRequest<'_>) -> Result<RunOutcome, ExecError> {
        let _ = (request, &self.work_dir);
        unimplemented!()
    }
}
