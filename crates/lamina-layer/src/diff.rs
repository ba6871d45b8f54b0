//! Diffing two directory trees into the plan an overlayfs upper directory would give.
//!
//! Rules, chosen so that a change made through a real overlay mount yields the same layer:
//! - a path only in `upper` is added with its whole subtree;
//! - a path only in `lower` becomes a whiteout (one for a whole directory);
//! - a directory in both is written when its own metadata changed or anything below it did
//!   (overlayfs copies up every ancestor of a change);
//! - a directory replacing a non-directory is opaque (overlayfs marks a directory made over a
//!   whiteout so);
//! - any other path in both is written when its type, mode, owner, mtime (to the nanosecond),
//!   size, device, link target, attributes or contents differ.
//!
//! What a diff cannot see: a directory deleted and recreated with some of the same names gives
//! per-name whiteouts where overlayfs gives an opaque directory; a file copied up without a
//! change (overlayfs writes it, the diff does not); hard links that overlayfs broke on copy-up.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::LayerError;
use crate::walk::{
    Node, Plan, PlanEntry, Sibling, Source, WHITEOUT_PREFIX, child_path, flatten, join,
    layer_xattrs, list_dir, read_node, walk,
};

/// Plans the changes from `lower` to `upper` below the roots; returns whether anything changed.
pub(crate) fn diff_dir(
    lower: &Path,
    upper: &Path,
    prefix: &[u8],
    out: &mut Plan,
) -> Result<bool, LayerError> {
    let upper_names = list_dir(upper)?;
    let lower_names = list_dir(lower)?;
    let mut siblings = Vec::new();
    for name in &upper_names {
        let up_path = child_path(upper, name);
        let up = read_node(&up_path)?;
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(LayerError::ReservedName { path: up_path });
        }
        let archive = join(prefix, name);
        let lo = if lower_names.binary_search(name).is_ok() {
            Some(read_node(&child_path(lower, name))?)
        } else {
            None
        };
        let mut entries = Vec::new();
        match lo {
            Some(lo) if lo.meta.is_dir() && up.meta.is_dir() => {
                let mut below = Vec::new();
                let changed = diff_dir(&lo.path, &up_path, &archive, &mut below)?;
                if changed || !same_meta(&lo, &up)? {
                    entries.push(PlanEntry::Node {
                        name: archive,
                        node: Box::new(up),
                    });
                    entries.extend(below);
                }
            }
            Some(lo) if !up.meta.is_dir() => {
                if !same_meta(&lo, &up)? || !same_content(&lo, &up)? {
                    entries.push(PlanEntry::Node {
                        name: archive,
                        node: Box::new(up),
                    });
                }
            }
            lo => {
                // New, or a directory replacing a non-directory.
                let is_dir = up.meta.is_dir();
                entries.push(PlanEntry::Node {
                    name: archive.clone(),
                    node: Box::new(up),
                });
                if is_dir {
                    if lo.is_some() {
                        entries.push(PlanEntry::Opaque {
                            dir: archive.clone(),
                        });
                    }
                    walk(&up_path, &archive, Source::Tree, &mut entries)?;
                }
            }
        }
        if !entries.is_empty() {
            siblings.push(Sibling {
                key: name.clone(),
                entries,
            });
        }
    }
    for name in lower_names {
        if upper_names.binary_search(&name).is_err() {
            siblings.push(Sibling {
                key: [WHITEOUT_PREFIX, &name].concat(),
                entries: vec![PlanEntry::Whiteout {
                    name: join(prefix, &name),
                }],
            });
        }
    }
    let changed = !siblings.is_empty();
    flatten(siblings, out);
    Ok(changed)
}

fn same_meta(lo: &Node, up: &Node) -> Result<bool, LayerError> {
    let (a, b): (&Metadata, &Metadata) = (&lo.meta, &up.meta);
    Ok(a.mode() == b.mode()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && (a.is_dir() || a.size() == b.size())
        && a.rdev() == b.rdev()
        && layer_xattrs(lo)? == layer_xattrs(up)?)
}

/// Compares symlink targets or file bytes (metadata already matched).
fn same_content(lo: &Node, up: &Node) -> Result<bool, LayerError> {
    let ft = lo.meta.file_type();
    if ft.is_symlink() {
        let a = std::fs::read_link(&lo.path).map_err(LayerError::reading(&lo.path))?;
        let b = std::fs::read_link(&up.path).map_err(LayerError::reading(&up.path))?;
        return Ok(a == b);
    }
    if !ft.is_file() {
        return Ok(true);
    }
    let mut a = File::open(&lo.path).map_err(LayerError::reading(&lo.path))?;
    let mut b = File::open(&up.path).map_err(LayerError::reading(&up.path))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut a, &mut ba).map_err(LayerError::reading(&lo.path))?;
        let nb = read_full(&mut b, &mut bb).map_err(LayerError::reading(&up.path))?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
