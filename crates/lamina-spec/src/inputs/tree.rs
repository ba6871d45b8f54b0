//! Walking a directory into [`TreeEntry`]s and hashing the files of many entries at once.

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::File;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::{DirListing, Hashing, ListedChild, ListedKind};
use super::ignore::{IgnoreRules, MatchState};
use super::{EntryKind, TreeEntry};
use crate::error::{Result, SpecError};

/// Files at least this large are hashed with several threads (on top of the per-file
/// parallelism); below it, splitting one file costs more than it gains.
const RAYON_FILE_SIZE: u64 = 1 << 20;

/// Files at least this large are memory-mapped; smaller ones are cheaper to read.
const MMAP_FILE_SIZE: u64 = 16 * 1024;

/// One set of rules applied during a walk, with the walked directory's place under the
/// rules' base directory.
#[derive(Debug, Clone)]
pub(super) struct Filter<'a> {
    rules: &'a IgnoreRules,
    /// Path of the current directory relative to the rules' base (`""` at the base).
    rel: String,
    state: MatchState,
    /// The current directory is ignored by these rules.
    ignored: bool,
}

impl<'a> Filter<'a> {
    /// A filter for a walk that starts at `rel` under the rules' base (`""` for the base).
    pub(super) fn at(rules: &'a IgnoreRules, rel: &str) -> Self {
        if rules.is_empty() || rel.is_empty() {
            return Filter {
                rules,
                rel: rel.to_string(),
                state: MatchState::default(),
                ignored: false,
            };
        }
        let state = rules.state_for(rel);
        let ignored = rules.decide(&state);
        Filter {
            rules,
            rel: rel.to_string(),
            state,
            ignored,
        }
    }

    /// Whether the starting point itself is ignored.
    pub(super) fn ignored(&self) -> bool {
        self.ignored
    }

    fn child(&self, name: &str) -> Self {
        if self.rules.is_empty() {
            return Filter {
                rules: self.rules,
                rel: String::new(),
                state: MatchState::default(),
                ignored: false,
            };
        }
        let rel = if self.rel.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.rel)
        };
        let state = if self.rel.is_empty() {
            self.rules.state_for(&rel)
        } else {
            self.rules.child_state(&self.state, &rel)
        };
        let ignored = self.rules.decide(&state);
        Filter {
            rules: self.rules,
            rel,
            state,
            ignored,
        }
    }

    /// Something below an ignored directory may still be included by an exception.
    fn may_reinclude(&self) -> bool {
        !self.ignored || self.rules.has_exceptions()
    }
}

/// The entry for `path` itself, named `name`; files get their hash later.
pub(super) fn entry_for(path: &Path, name: String, meta: &Metadata) -> Result<TreeEntry> {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Dir
    } else if file_type.is_file() {
        EntryKind::File {
            size: meta.len(),
            hash: [0; 32],
        }
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(path).map_err(|source| io_error(path, source))?;
        EntryKind::Symlink {
            target: target.into_os_string().into_vec(),
        }
    } else {
        return Err(SpecError::UnsupportedInput {
            path: path.to_path_buf(),
            reason: "it is a socket, fifo or device; only files, directories and symlinks can be copied",
        });
    };
    Ok(TreeEntry {
        name,
        kind,
        mode: meta.permissions().mode() & 0o7777,
        host_path: path.to_path_buf(),
    })
}

/// Below this many children that need system calls, a directory is walked on the calling
/// thread: handing a few `lstat`s to the pool costs more than it saves.
const PARALLEL_CHILDREN: usize = 8;

/// The contents of directory `dir` (metadata `dir_meta`, named `name`; `.` for a walk's
/// top), files hashed, appended to `out`, skipping what any filter ignores but descending
/// into ignored directories that an exception may re-include. Children are handled in
/// parallel (stat, hash, recurse) and collected in name order, so the result does not depend
/// on scheduling. `hashing` may answer file hashes, and the directory's listing, from a
/// cache. Entries go straight into `out`: a warm walk is mostly building them, and a vector
/// per child, moved up level by level, was as costly again.
pub(super) fn walk(
    dir: &Path,
    dir_meta: &Metadata,
    name: &str,
    filters: &[Filter<'_>],
    hashing: Hashing<'_>,
    out: &mut Vec<TreeEntry>,
) -> Result<()> {
    if let Some(listing) = hashing.listing(dir, dir_meta) {
        return walk_listed(dir, name, filters, hashing, &listing, out);
    }
    let listed_at = std::time::SystemTime::now();
    let mut children: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(|source| io_error(dir, source))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|source| io_error(dir, source))?;
    children.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let parts = children
        .into_par_iter()
        .map(|child| {
            let path = dir.join(&child);
            let Ok(child) = child.into_string() else {
                return Err(SpecError::UnsupportedInput {
                    path,
                    reason: "its name is not valid UTF-8",
                });
            };
            let mut entries = Vec::new();
            let listed = walk_child(path, name, filters, &child, hashing, &mut entries)?;
            Ok((child, entries, listed))
        })
        .collect::<Result<Vec<_>>>()?;
    if hashing.records_listings() {
        let children: Option<Vec<ListedChild>> = parts
            .iter()
            .map(|(child, _, listed)| {
                listed.clone().map(|kind| ListedChild {
                    name: child.clone(),
                    kind,
                })
            })
            .collect();
        // Unknown only for an ignored symlink, whose target was not read.
        if let Some(children) = children {
            hashing.record_listing(dir, dir_meta, listed_at, DirListing { children });
        }
    }
    out.extend(parts.into_iter().flat_map(|(_, entries, _)| entries));
    Ok(())
}

/// [`walk`] from a recorded listing: symlinks come from it, files and directories are
/// `lstat`ed as in a plain walk.
fn walk_listed(
    dir: &Path,
    name: &str,
    filters: &[Filter<'_>],
    hashing: Hashing<'_>,
    listing: &DirListing,
    out: &mut Vec<TreeEntry>,
) -> Result<()> {
    let child = |listed: &ListedChild, out: &mut Vec<TreeEntry>| -> Result<()> {
        let path = dir.join(&listed.name);
        match &listed.kind {
            ListedKind::Symlink { target, mode } => {
                if !filters.iter().any(|f| f.child(&listed.name).ignored()) {
                    out.push(TreeEntry {
                        name: child_name(name, &listed.name),
                        kind: EntryKind::Symlink {
                            target: target.clone(),
                        },
                        mode: *mode,
                        host_path: path,
                    });
                }
                Ok(())
            }
            ListedKind::Other => {
                walk_child(path, name, filters, &listed.name, hashing, out).map(drop)
            }
        }
    };
    let needing_syscalls = listing
        .children
        .iter()
        .filter(|c| c.kind == ListedKind::Other)
        .count();
    if needing_syscalls < PARALLEL_CHILDREN {
        out.reserve(listing.children.len());
        listing
            .children
            .iter()
            .try_for_each(|listed| child(listed, out))
    } else {
        let parts = listing
            .children
            .par_iter()
            .map(|listed| {
                let mut entries = Vec::new();
                child(listed, &mut entries).map(|()| entries)
            })
            .collect::<Result<Vec<_>>>()?;
        out.extend(parts.into_iter().flatten());
        Ok(())
    }
}

fn child_name(parent: &str, child: &str) -> String {
    if parent == "." {
        child.to_string()
    } else {
        let mut name = String::with_capacity(parent.len() + 1 + child.len());
        name.push_str(parent);
        name.push('/');
        name.push_str(child);
        name
    }
}

/// One child (at `path`, named `child`) of a walked directory named `name`: appends nothing,
/// one entry, or a directory and its contents to `out`. Returns what a listing of the
/// directory records of the child (`None` for an ignored symlink, whose target was not read).
fn walk_child(
    path: PathBuf,
    name: &str,
    filters: &[Filter<'_>],
    child: &str,
    hashing: Hashing<'_>,
    out: &mut Vec<TreeEntry>,
) -> Result<Option<ListedKind>> {
    let child_filters: Vec<Filter<'_>> = filters.iter().map(|f| f.child(child)).collect();
    let ignored = child_filters.iter().any(Filter::ignored);
    let child_name = child_name(name, child);
    let meta = std::fs::symlink_metadata(&path).map_err(|source| io_error(&path, source))?;
    if meta.is_dir() {
        if ignored && !child_filters.iter().all(Filter::may_reinclude) {
            return Ok(Some(ListedKind::Other));
        }
        let at = out.len();
        out.push(entry_for(&path, child_name.clone(), &meta)?);
        walk(&path, &meta, &child_name, &child_filters, hashing, out)?;
        if ignored && out.len() == at + 1 {
            // Ignored directory with nothing re-included below it.
            out.truncate(at);
        }
        Ok(Some(ListedKind::Other))
    } else if ignored {
        Ok((!meta.file_type().is_symlink()).then_some(ListedKind::Other))
    } else {
        let mut entry = entry_for(&path, child_name, &meta)?;
        hash_entry(&mut entry, Some(&meta), hashing)?;
        let listed = match &entry.kind {
            EntryKind::Symlink { target } => ListedKind::Symlink {
                target: target.clone(),
                mode: entry.mode,
            },
            _ => ListedKind::Other,
        };
        out.push(entry);
        Ok(Some(listed))
    }
}

/// Hashes a file entry in place (other kinds are left alone); the recorded size becomes the
/// number of bytes hashed. `meta` is the entry's `lstat`, if the caller has it, for the
/// cache in `hashing`.
pub(super) fn hash_entry(
    entry: &mut TreeEntry,
    meta: Option<&Metadata>,
    hashing: Hashing<'_>,
) -> Result<()> {
    let EntryKind::File { size, hash } = &mut entry.kind else {
        return Ok(());
    };
    let path = &entry.host_path;
    let hint = *size;
    let (bytes, digest) = hashing.hash(path, meta, || hash_file(path, hint))?;
    *size = bytes;
    *hash = digest;
    Ok(())
}

/// blake3 of one file: files under 16 KiB are read into a reused per-thread buffer, larger
/// ones are memory-mapped (by blake3), and from `RAYON_FILE_SIZE` also split across threads.
/// `size_hint` is the size seen when walking; the returned size is what was hashed.
fn hash_file(path: &Path, size_hint: u64) -> Result<(u64, [u8; 32])> {
    let mut hasher = blake3::Hasher::new();
    let result = if size_hint >= RAYON_FILE_SIZE {
        hasher.update_mmap_rayon(path).map(drop)
    } else if size_hint >= MMAP_FILE_SIZE {
        hasher.update_mmap(path).map(drop)
    } else {
        read_into(path, &mut hasher)
    };
    result.map_err(|source| io_error(path, source))?;
    Ok((hasher.count(), *hasher.finalize().as_bytes()))
}

thread_local! {
    /// Read buffer for small files, allocated once per thread: zeroing a fresh buffer for
    /// every file showed up in profiles of many-small-file trees.
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

/// Reads the whole file into `hasher` (it may have grown since it was walked).
fn read_into(path: &Path, hasher: &mut blake3::Hasher) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    READ_BUFFER.with_borrow_mut(|buffer| {
        loop {
            match file.read(buffer) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    hasher.update(&buffer[..n]);
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    })
}

pub(super) fn io_error(path: &Path, source: std::io::Error) -> SpecError {
    SpecError::Io {
        path: PathBuf::from(path),
        source,
    }
}
