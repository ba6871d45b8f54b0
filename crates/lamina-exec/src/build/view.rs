//! The merged filesystem of a stack of unpacked layers, read without mounting or copying
//! anything: what WORKDIR, `--chown` by name and `COPY --from` need to look at.
//!
//! The layer directories are the [`LayerCache`](crate::sandbox::LayerCache)'s, in the form
//! overlayfs reads as lower directories, and lookups follow overlayfs's rules: the topmost
//! layer that has a name decides what it is; a 0:0 character device is a whiteout (the name is
//! gone); a directory merges with the same directory in the layers below unless it carries
//! the opaque attribute or a layer below has something else there. Symlinks resolve inside
//! the view, as they would inside the container.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::sandbox::opaque_xattr;

/// A name in the view: the metadata of its topmost occurrence, and the host directories or
/// file that make it up (for a directory, every layer's copy that merges, top first).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The last component of the path it was found at (empty for the root).
    pub name: OsString,
    pub meta: Metadata,
    pub paths: Vec<PathBuf>,
}

impl Node {
    /// The host path of the topmost occurrence (the one whose content a file has).
    pub fn host(&self) -> &Path {
        &self.paths[0]
    }

    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
}

/// Layers as one read-only tree.
#[derive(Debug, Clone)]
pub(crate) struct LayerView {
    /// Unpacked layer directories, top first.
    top_first: Vec<PathBuf>,
    /// The layers those directories belong to, held in use while the view lives.
    _in_use: Vec<crate::sandbox::LayerInUse>,
    /// The one merged tree of [`LayerView::merged`], removed with the last clone.
    _merged: Option<std::sync::Arc<tempfile::TempDir>>,
}

const MAX_SYMLINK_HOPS: usize = 40;

impl LayerView {
    /// The view of `bottom_first` (a stage's layers in image order).
    pub fn new(bottom_first: Vec<crate::sandbox::LayerInUse>) -> Self {
        let mut view = LayerView::of_dirs(bottom_first.iter().map(|l| l.path().to_path_buf()));
        view._in_use = bottom_first;
        view
    }

    /// The view of plain directories, bottom first.
    pub fn of_dirs(bottom_first: impl DoubleEndedIterator<Item = PathBuf>) -> Self {
        LayerView {
            top_first: bottom_first.rev().collect(),
            _in_use: Vec::new(),
            _merged: None,
        }
    }

    /// The view of one tree that already holds the merged layers.
    pub fn merged(tree: tempfile::TempDir) -> Self {
        LayerView {
            top_first: vec![tree.path().to_path_buf()],
            _in_use: Vec::new(),
            _merged: Some(std::sync::Arc::new(tree)),
        }
    }

    fn root(&self) -> std::io::Result<Node> {
        let mut paths = Vec::new();
        for dir in &self.top_first {
            paths.push(dir.clone());
            if is_opaque(dir) {
                break;
            }
        }
        let meta = std::fs::metadata(paths.first().map_or(Path::new("/"), |p| p.as_path()))?;
        Ok(Node {
            name: OsString::new(),
            meta,
            paths,
        })
    }

    /// The node at `path` (absolute or not, taken from `/`); symlinks in the middle are
    /// followed, the last one only with `follow`. `None` when nothing is there.
    pub fn lookup(&self, path: &str, follow: bool) -> std::io::Result<Option<Node>> {
        Ok(self.walk(path, follow)?.1)
    }

    /// `path` (absolute or not, taken from `/`) as a process in the container would reach
    /// it, an absolute path, cleaned: each symlink on the way, the last component's too,
    /// replaced by its target; from the first component that does not exist (or lies below a
    /// non-directory) on, the components are kept as written. With the node there, if any.
    pub fn resolve(&self, path: &str) -> std::io::Result<(String, Option<Node>)> {
        let (names, node) = self.walk(path, true)?;
        Ok((format!("/{}", names.join("/")), node))
    }

    /// Walks `path` from the root: the names of where it leads, each symlink on the way (the
    /// last one only with `follow_last`) replaced by its target (an absolute one taken from
    /// the view's root, `..` never above it), missing components kept as written; and the
    /// node there when every component exists.
    fn walk(&self, path: &str, follow_last: bool) -> std::io::Result<(Vec<String>, Option<Node>)> {
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut names: Vec<String> = Vec::new();
        // The root, then the node of each leading component of `names` that exists.
        let mut found: Vec<Node> = Vec::new();
        if !self.top_first.is_empty() {
            found.push(self.root()?);
        }
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    names.pop();
                    found.truncate(names.len() + 1);
                    continue;
                }
                _ => {}
            }
            let parent = found.last().filter(|_| found.len() == names.len() + 1);
            let node = match parent {
                Some(parent) if parent.is_dir() => child(parent, part.as_ref())?,
                _ => None,
            };
            let last = todo.iter().all(|p| p.is_empty() || p == ".");
            match node {
                Some(node) if node.meta.file_type().is_symlink() && (!last || follow_last) => {
                    let (absolute, target) = follow_link(&node, &mut hops, path)?;
                    if absolute {
                        names.clear();
                        found.truncate(1);
                    }
                    todo.extend(target);
                }
                Some(node) => {
                    names.push(part);
                    found.push(node);
                }
                None => names.push(part),
            }
        }
        let node = if found.len() == names.len() + 1 {
            found.pop()
        } else {
            None
        };
        Ok((names, node))
    }

    /// The content of the file at `path` (symlinks followed), `None` if there is none.
    pub fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self.lookup(path, true)? {
            Some(node) if node.meta.is_file() => std::fs::read(node.host()).map(Some),
            _ => Ok(None),
        }
    }
}

/// The target of the symlink `node`, met resolving `path`: whether it is absolute, and its
/// components in the order a resolver pops them. Fails past [`MAX_SYMLINK_HOPS`] links.
fn follow_link(node: &Node, hops: &mut usize, path: &str) -> std::io::Result<(bool, Vec<String>)> {
    *hops += 1;
    if *hops > MAX_SYMLINK_HOPS {
        return Err(std::io::Error::other(format!(
            "too many symlinks resolving {path}"
        )));
    }
    let target = std::fs::read_link(node.host())?;
    // A lossy spelling would name another path: a COPY would write there.
    let target = target.to_str().ok_or_else(|| {
        std::io::Error::other(format!(
            "a symlink on the way to {path} has a target that is not UTF-8"
        ))
    })?;
    let parts = target.split('/').rev().map(str::to_string).collect();
    Ok((target.starts_with('/'), parts))
}

/// The nodes `source` names in the view, in name order: symlinks followed, `*` and `?`
/// wildcards allowed in the last component (`glob` matches them).
pub(crate) fn find(
    view: &LayerView,
    source: &str,
    glob: impl Fn(&[u8], &[u8]) -> bool,
) -> std::io::Result<Vec<Node>> {
    let (parent, last) = source.rsplit_once('/').unwrap_or(("", source));
    if !last.contains(['*', '?']) {
        return Ok(view.lookup(source, true)?.into_iter().collect());
    }
    let Some(dir) = view.lookup(parent, true)?.filter(Node::is_dir) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for (name, node) in list(&dir)? {
        if !glob(last.as_bytes(), name.as_encoded_bytes()) {
            continue;
        }
        if node.meta.is_symlink() {
            let path = format!("{parent}/{}", name.to_string_lossy());
            found.extend(view.lookup(&path, true)?);
        } else {
            found.push(node);
        }
    }
    Ok(found)
}

/// The entries of the directory `dir`, merged across its layers, by name.
pub(crate) fn list(dir: &Node) -> std::io::Result<BTreeMap<OsString, Node>> {
    let mut seen: BTreeMap<OsString, Option<Node>> = BTreeMap::new();
    for layer_dir in &dir.paths {
        for entry in std::fs::read_dir(layer_dir)? {
            let name = entry?.file_name();
            // fuse-overlayfs's whiteout files are no entries (see `child`).
            if seen.contains_key(&name) || name.as_encoded_bytes().starts_with(b".wh.") {
                continue;
            }
            let node = child(dir, name.as_ref())?;
            seen.insert(name, node);
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|(name, node)| node.map(|n| (name, n)))
        .collect())
}

/// The entry `name` of the directory `parent`, merged across layers.
fn child(parent: &Node, name: &std::ffi::OsStr) -> std::io::Result<Option<Node>> {
    let mut found: Option<Node> = None;
    for layer_dir in &parent.paths {
        let path = layer_dir.join(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if crate::sandbox::overlay::is_file_whiteout(layer_dir, name) {
                    break; // hides what lies below; a layer above was taken already
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
        match &mut found {
            None if whiteout => return Ok(None),
            None => {
                let stop = !meta.is_dir() || is_opaque(&path);
                found = Some(Node {
                    name: name.to_os_string(),
                    meta,
                    paths: vec![path],
                });
                if stop {
                    break;
                }
            }
            // A directory above merges only with directories below.
            Some(node) => {
                if whiteout || !meta.is_dir() {
                    break;
                }
                let opaque = is_opaque(&path);
                node.paths.push(path);
                if opaque {
                    break;
                }
            }
        }
    }
    Ok(found)
}

fn is_opaque(dir: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, opaque_xattr(), &mut value), Ok(1) if value[0] == b'y')
}

#[cfg(test)]
mod tests;
