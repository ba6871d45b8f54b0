//! Reading source trees: metadata, extended attributes and the sorted entry plan.
//!
//! Every producer (a plain tree, an overlay upper directory, a diff of two trees) turns its
//! input into a [`Plan`]: the archive entries in their final order, each with the metadata that
//! was read once. The writer then only streams file contents.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::LayerError;

/// Extended attributes, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A source file with everything read from it before its contents.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) path: PathBuf,
    pub(crate) meta: Metadata,
    /// All attributes, `trusted.overlay.*` included (see [`layer_xattrs`]).
    pub(crate) xattrs: Xattrs,
}

/// One archive entry to write; names are archive paths without a trailing slash.
#[derive(Debug)]
pub(crate) enum PlanEntry {
    Node {
        name: Vec<u8>,
        node: Box<Node>,
    },
    /// `.wh.<last component of name>` in the parent of `name`.
    Whiteout {
        name: Vec<u8>,
    },
    /// `.wh..wh..opq` inside `dir`.
    Opaque {
        dir: Vec<u8>,
    },
}

pub(crate) type Plan = Vec<PlanEntry>;

/// How to read special files in a directory being walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A plain tree: devices are devices.
    Tree,
    /// An overlayfs upper directory: 0:0 character devices are whiteouts and
    /// `trusted.overlay.opaque=y` (`user.overlay.opaque=y` when mounted with `userxattr`, in a
    /// user namespace) marks opaque directories. fuse-overlayfs's marks are read too:
    /// `user.fuseoverlayfs.opaque=y`, a `.wh..wh..opq` file (with a `.wh..opq` 0:0 device
    /// beside it) in the opaque directory, and empty `.wh.NAME` files as whiteouts.
    OverlayUpper,
}

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// overlayfs's own attributes: `trusted.*` as root, `user.*` with `userxattr`, and
/// fuse-overlayfs's.
const OVERLAY_XATTRS: [&[u8]; 3] = [
    b"trusted.overlay.",
    b"user.overlay.",
    b"user.fuseoverlayfs.",
];
/// The entries fuse-overlayfs puts in a directory it makes opaque.
const FUSE_OPAQUE_ENTRIES: [&[u8]; 2] = [OPAQUE_MARKER, b".wh..opq"];

/// Whether `node`, named `name`, is one of fuse-overlayfs's opaque marks (an empty file or a
/// 0:0 device).
fn is_fuse_opaque_entry(name: &[u8], node: &Node) -> bool {
    FUSE_OPAQUE_ENTRIES.contains(&name)
        && ((node.meta.is_file() && node.meta.len() == 0) || is_overlay_whiteout(node))
}

/// The overlay attribute `name` (`opaque`, ...) under either prefix.
fn overlay_xattr<'a>(node: &'a Node, name: &str) -> Option<&'a [u8]> {
    OVERLAY_XATTRS
        .iter()
        .find_map(|prefix| xattr(node, &[prefix, name.as_bytes()].concat()))
}

/// Reads a node's metadata and extended attributes without following symlinks.
pub(crate) fn read_node(path: &Path) -> Result<Node, LayerError> {
    let meta = fs::symlink_metadata(path).map_err(LayerError::reading(path))?;
    let xattrs = read_xattrs(path)?;
    Ok(Node {
        path: path.to_owned(),
        meta,
        xattrs,
    })
}

fn read_xattrs(path: &Path) -> Result<Xattrs, LayerError> {
    use rustix::fs::{lgetxattr, lgetxattr_query, llistxattr, llistxattr_query};
    use rustix::io::Errno;
    let err = |e: Errno| LayerError::Source {
        path: path.to_owned(),
        source: e.into(),
    };
    let list = match read_sized(|buf| llistxattr(path, buf), || llistxattr_query(path)) {
        Ok(list) => list,
        Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(err(e)),
    };
    let mut out = Vec::new();
    for name in list.split(|&c| c == 0).filter(|s| !s.is_empty()) {
        match read_sized(
            |buf| lgetxattr(path, name, buf),
            || lgetxattr_query(path, name),
        ) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed since it was listed.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(err(e)),
        }
    }
    out.sort();
    Ok(out)
}

/// An attribute list or value read in one call when it fits a small buffer (nearly every
/// file has none, or short ones: one system call per file, not a size query before every
/// read), else at the size `query` reports; attributes can change between the query and
/// the read, so that is tried a few times.
fn read_sized(
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    mut query: impl FnMut() -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    use rustix::io::Errno;
    let mut small = [0u8; 256];
    match read(&mut small) {
        Ok(n) => return Ok(small[..n].to_vec()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e),
    }
    for _ in 0..8 {
        let mut buf = vec![0u8; query()?];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The attributes a layer carries: all but overlayfs's own (`trusted.overlay.*`,
/// `user.overlay.*`), with names PAX can hold.
pub(crate) fn layer_xattrs(node: &Node) -> Result<Xattrs, LayerError> {
    let mut out = Vec::new();
    for (k, v) in &node.xattrs {
        if OVERLAY_XATTRS.iter().any(|prefix| k.starts_with(prefix)) {
            continue;
        }
        if k.contains(&b'=') || k.contains(&b'\n') {
            return Err(LayerError::UnsupportedXattr {
                path: node.path.clone(),
                name: String::from_utf8_lossy(k).into_owned(),
            });
        }
        out.push((k.clone(), v.clone()));
    }
    Ok(out)
}

pub(crate) fn xattr<'a>(node: &'a Node, name: &[u8]) -> Option<&'a [u8]> {
    node.xattrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The names in a directory, in byte order.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<Vec<u8>>, LayerError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(LayerError::reading(dir))? {
        let e = e.map_err(LayerError::reading(dir))?;
        names.push(e.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}

/// `prefix/name`, or `name` at the root.
pub(crate) fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    if prefix.is_empty() {
        return name.to_vec();
    }
    [prefix, b"/", name].concat()
}

pub(crate) fn child_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// A sibling's entries, kept together so siblings sort by their archive names while each
/// directory's subtree follows it directly (depth-first, like `tar --sort=name`).
pub(crate) struct Sibling {
    pub(crate) key: Vec<u8>,
    pub(crate) entries: Plan,
}

pub(crate) fn flatten(mut siblings: Vec<Sibling>, out: &mut Plan) {
    siblings.sort_by(|a, b| a.key.cmp(&b.key));
    for s in siblings {
        out.extend(s.entries);
    }
}

fn is_overlay_whiteout(node: &Node) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let ft = node.meta.file_type();
    (ft.is_char_device() && node.meta.rdev() == 0)
        || (ft.is_file() && node.meta.len() == 0 && overlay_xattr(node, "whiteout").is_some())
}

/// Refuses overlay attributes whose meaning a layer cannot carry.
pub(crate) fn check_overlay_features(node: &Node) -> Result<(), LayerError> {
    for prefix in OVERLAY_XATTRS {
        for attr in [&b"redirect"[..], b"metacopy"] {
            let name = [prefix, attr].concat();
            if xattr(node, &name).is_some() {
                return Err(LayerError::OverlayFeature {
                    path: node.path.clone(),
                    attribute: String::from_utf8_lossy(&name).into_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Plans every entry below `dir` (not `dir` itself), whose archive path is `prefix`.
pub(crate) fn walk(
    dir: &Path,
    prefix: &[u8],
    source: Source,
    out: &mut Plan,
) -> Result<(), LayerError> {
    let mut siblings = Vec::new();
    for name in list_dir(dir)? {
        let path = child_path(dir, &name);
        let node = read_node(&path)?;
        let archive = join(prefix, &name);
        if source == Source::OverlayUpper && is_fuse_opaque_entry(&name, &node) {
            continue; // its directory was planned as opaque
        }
        if source == Source::OverlayUpper && is_overlay_whiteout(&node) {
            siblings.push(Sibling {
                key: [WHITEOUT_PREFIX, &name].concat(),
                entries: vec![PlanEntry::Whiteout { name: archive }],
            });
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX)
            && source == Source::OverlayUpper
            && !hidden.is_empty()
            && node.meta.is_file()
            && node.meta.len() == 0
        {
            // fuse-overlayfs's whiteout where it cannot make a 0:0 device: an empty
            // `.wh.NAME` file (a name with the same meaning in a layer).
            siblings.push(Sibling {
                key: name.clone(),
                entries: vec![PlanEntry::Whiteout {
                    name: join(prefix, hidden),
                }],
            });
            continue;
        }
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(LayerError::ReservedName { path });
        }
        let mut entries = Vec::new();
        if source == Source::OverlayUpper {
            check_overlay_features(&node)?;
        }
        let is_dir = node.meta.is_dir();
        let opaque = source == Source::OverlayUpper
            && is_dir
            && (overlay_xattr(&node, "opaque") == Some(b"y")
                || read_node(&child_path(&path, OPAQUE_MARKER))
                    .is_ok_and(|marker| is_fuse_opaque_entry(OPAQUE_MARKER, &marker)));
        entries.push(PlanEntry::Node {
            name: archive.clone(),
            node: Box::new(node),
        });
        if opaque {
            entries.push(PlanEntry::Opaque {
                dir: archive.clone(),
            });
        }
        if is_dir {
            walk(&path, &archive, source, &mut entries)?;
        }
        siblings.push(Sibling { key: name, entries });
    }
    flatten(siblings, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_whole_at_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"x").unwrap();
        assert!(read_xattrs(&path).unwrap().is_empty());
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(&path, name, value, rustix::fs::XattrFlags::empty()).unwrap()
        };
        // Past the one-call buffer: a long value, and a list of names longer than it (an
        // ext4 block holds them all).
        let long: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        set("user.long", &long);
        let mut expected = vec![(b"user.long".to_vec(), long)];
        for i in 0..20 {
            let name = format!("user.attribute-number-{i:02}");
            set(&name, name.as_bytes());
            expected.push((name.clone().into_bytes(), name.into_bytes()));
        }
        set("user.empty", b"");
        expected.push((b"user.empty".to_vec(), Vec::new()));
        expected.sort();
        assert_eq!(read_xattrs(&path).unwrap(), expected);
    }
}
