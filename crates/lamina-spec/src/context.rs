//! Where an image's local inputs come from: the directories that `COPY`/`ADD` sources resolve
//! against. Only relative names inside these directories ever reach a digest; the directories
//! themselves (absolute, machine-specific) never do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Identifies one instruction of a [`crate::Dockerfile`]: stage index, instruction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepRef {
    pub stage: usize,
    pub instruction: usize,
}

/// The build context of an image.
///
/// Every `COPY`/`ADD` source (other than `--from`, URLs and heredocs) resolves against
/// [`Context::root`], unless that one instruction has a root of its own (a builder call
/// that named a file outside the root, or `dockerfile_commands` with another `context_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    root: PathBuf,
    step_roots: BTreeMap<StepRef, PathBuf>,
}

impl Context {
    /// A context whose sources all resolve against `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Context {
            root: root.into(),
            step_roots: BTreeMap::new(),
        }
    }

    /// The directory sources resolve against by default (a Dockerfile's folder, a TOML
    /// definition's folder, or the builder's context directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Gives one instruction its own source directory.
    pub fn set_step_root(&mut self, step: StepRef, root: impl Into<PathBuf>) {
        self.step_roots.insert(step, root.into());
    }

    /// The directory that the sources of instruction `step` resolve against.
    pub fn root_for(&self, step: StepRef) -> &Path {
        self.step_roots
            .get(&step)
            .map_or(self.root.as_path(), PathBuf::as_path)
    }

    /// Instructions with a root of their own, in order.
    pub fn step_roots(&self) -> impl Iterator<Item = (StepRef, &Path)> {
        self.step_roots
            .iter()
            .map(|(step, root)| (*step, root.as_path()))
    }
}
