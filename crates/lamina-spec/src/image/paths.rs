//! Local paths named by builder steps: where they resolve, what they must be, and the
//! context-relative name the Dockerfile gets for them.

use std::path::{Component, Path, PathBuf};

use super::validate::invalid;
use crate::error::{Result, SpecError};

/// What a local path must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

/// A checked local input, ready to be named in a `COPY`.
#[derive(Debug)]
pub(super) struct Local {
    /// The source as the Dockerfile names it: relative to its root, `/`-separated.
    pub source: String,
    /// The instruction's own root when the path is outside the context root.
    pub root: Option<PathBuf>,
    /// The file or directory name of the path.
    pub name: String,
}

/// `path` made absolute against the current directory and normalized.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|source| SpecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(normalize(&absolute))
}

/// `path` resolved against `root` (unless absolute) and normalized.
pub(crate) fn resolve_path(root: &Path, path: &Path) -> PathBuf {
    normalize(&root.join(path))
}

/// Removes `.` components and folds `..` into its parent, without touching the file system
/// (so a symlinked folder keeps its own name, as `COPY` sees it).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`; a relative path keeps leading `..`s.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

/// Fails unless `path` exists and is of `kind` (symlinks followed).
pub(super) fn check_kind(path: &Path, kind: Kind) -> Result<()> {
    let metadata = std::fs::metadata(path).map_err(|error| SpecError::reading(path, error))?;
    match kind {
        Kind::File if !metadata.is_file() => Err(SpecError::NotAFile {
            path: path.to_path_buf(),
        }),
        Kind::Dir if !metadata.is_dir() => Err(SpecError::NotADirectory {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Resolves `local` against the context `root`, checks it is of `kind`, and names it for a
/// `COPY`: relative to `root` when inside it, else by its own name with its parent as the
/// instruction's root. Absolute host paths never reach the Dockerfile.
pub(super) fn resolve(
    method: &'static str,
    root: &Path,
    local: &Path,
    kind: Kind,
) -> Result<Local> {
    let root = normalize(root);
    let path = resolve_path(&root, local);
    check_kind(&path, kind)?;
    let shown = local.display().to_string();
    let (source, step_root) = match path.strip_prefix(&root) {
        Ok(relative) => (relative.to_path_buf(), None),
        Err(_) => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(invalid(
                    method,
                    "local path",
                    shown,
                    "cannot copy the file system root",
                ));
            };
            (PathBuf::from(name), Some(parent.to_path_buf()))
        }
    };
    let mut words = Vec::new();
    for component in source.components() {
        let Some(word) = component.as_os_str().to_str() else {
            return Err(invalid(
                method,
                "local path",
                shown,
                "the path is not valid UTF-8",
            ));
        };
        if let Some(c) = word
            .chars()
            .find(|c| "*?[]$\\".contains(*c) || c.is_control())
        {
            let reason = format!(
                "COPY would read {c:?} in '{word}' as a pattern or variable; rename it or add its \
                 folder instead"
            );
            return Err(invalid(method, "local path", shown, reason));
        }
        words.push(word.to_string());
    }
    let source = if words.is_empty() {
        ".".to_string()
    } else {
        words.join("/")
    };
    let name = path
        .file_name()
        .map_or_else(|| ".".to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Local {
        source,
        root: step_root,
        name,
    })
}
