//! Local inputs of `COPY`/`ADD`: which files a source names, and their content hashes.
//!
//! Entry points:
//! - [`resolve_copy_inputs`]: every local source of one `COPY`/`ADD`, resolved against its
//!   source directory (see [`crate::Context::root_for`]), filtered by that directory's
//!   `.dockerignore` and the instruction's `--exclude` patterns, walked and hashed.
//!   The definition digest uses it; the executor reuses its [`TreeEntry::host_path`]s to copy.
//! - [`hash_tree`]: one directory, walked and hashed under given [`IgnoreRules`].
//!
//! Each has a `_cached` variant taking an optional [`ContentHashCache`], which answers the
//! hash of a file whose [`FileStamp`] it has seen, so an unchanged file is not read again
//! (see the `cache` submodule for when a hash is recorded). Results are identical with and
//! without a cache.
//!
//! # What a source resolves to
//!
//! Sources are taken as final words: pass the instruction as [`Dockerfile::expand`] gives it
//! (variables expanded, quotes removed), as the definition digest and the build both do;
//! here `$VAR` would be a literal file name. Skipped, because they are not local files:
//! `--from` copies, URLs and git remotes ([`is_remote_source`]) and, outside the JSON form,
//! heredoc sources (`<<EOF`), whose bodies are part of the instruction. A source is cleaned lexically (a
//! leading `/` is dropped: sources are always relative to the source directory) and may not
//! climb out with `..` ([`SpecError::CopySourceOutsideContext`]). Components with `*`, `?` or
//! `[...]` are matched against directory listings with Go's `filepath.Match` rules (dot files
//! included), like BuildKit. Each match is a [`SourceMatch`]. A literal source with none, or
//! with all of them hidden by `.dockerignore`, is [`SpecError::CopySourceNotFound`]; a
//! source with a wildcard may match nothing and then copies nothing, as BuildKit allows
//! (`COPY cwallet.ss[o] ./` is the idiom for "copy it if it is there").
//!
//! [`Dockerfile::expand`]: crate::instruction::Dockerfile::expand
//!
//! A match that is a symlink is followed, as COPY does, but must resolve inside the source
//! directory (else `CopySourceOutsideContext`; Docker would instead resolve it as if the
//! directory were `/`). Symlinks *inside* a copied directory are kept as symlinks.
//!
//! # Entry names
//!
//! Names are `/`-separated and say where COPY puts an entry relative to its destination,
//! so they do not depend on where the source directory sits:
//! - a file match is named by its base name (`src/app.py` gives `app.py`);
//! - a directory match contributes its contents (COPY copies contents, not the directory):
//!   the directory itself is `.`, its contents are relative to it (`src/` gives `.`,
//!   `pkg/mod.py`, ...);
//! - with `--parents`, names keep the matched path (below a `/./` pivot, if the source has
//!   one): `COPY --parents src/app.py` gives `src/app.py`.
//!
//! Each match lists the match itself first, then its contents sorted byte-wise by name.
//!
//! # Filters
//!
//! `.dockerignore` patterns apply to paths relative to the source directory; `--exclude`
//! patterns to names relative to the match's parent for a file match (its base name) and
//! relative to the match for a directory's contents (a directory match is never excluded as
//! a whole). Pattern syntax and semantics are Docker's; see [`IgnoreRules`].
//!
//! # Hashing
//!
//! One pass: the children of each directory are listed and sorted, then handled in parallel
//! with rayon (`lstat`, blake3 of file content, recursion into subdirectories) and collected
//! in name order, so the output does not depend on thread scheduling. File matches of
//! globs are hashed together in a second parallel step. Files from 16 KiB are memory-mapped
//! (by blake3); files from 1 MiB are also split across threads. A file that another process
//! truncates while it is mapped can crash the process (SIGBUS); inputs are expected to hold
//! still during a build.

mod cache;
mod ignore;
mod pattern;
mod tree;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use cache::{ContentHashCache, DirListing, FileStamp, ListedChild, ListedKind, RACY_WINDOW};
pub use ignore::IgnoreRules;

use crate::error::{Result, SpecError};
use crate::instruction::Copy;
use cache::Hashing;
use pattern::{Glob, has_wildcard};
use tree::{Filter, entry_for, hash_entry, io_error, walk};

/// One file, directory or symlink of a local input.
///
/// Everything but `host_path` describes the input independently of where it is on disk and
/// may go into a digest; `host_path` is only for reading or copying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// `/`-separated name relative to where COPY places it (see the module docs); `.` for a
    /// directory match itself.
    pub name: String,
    /// File, directory or symlink, with content.
    pub kind: EntryKind,
    /// Permission bits: `st_mode & 0o7777` (setuid, setgid and sticky bits included).
    pub mode: u32,
    /// Absolute path on this machine. Never part of a digest.
    pub host_path: PathBuf,
}

/// What a [`TreeEntry`] is, with its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its size in bytes and the blake3 hash of its content.
    File { size: u64, hash: [u8; 32] },
    /// A directory; its contents are entries of their own.
    Dir,
    /// A symlink (not followed) and its target, byte for byte.
    Symlink { target: Vec<u8> },
}

/// One path that a COPY source matched, with its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// Index of the source in [`Copy::sources`].
    pub source: usize,
    /// The matched path relative to the source directory, cleaned and `/`-separated; `.`
    /// for the directory itself. This is the path as named, before following a symlink.
    pub path: String,
    /// The match itself, then (for a directory) its contents sorted by name.
    pub entries: Vec<TreeEntry>,
}

impl SourceMatch {
    /// Sum of the sizes of the files of this match.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

/// Whether an (expanded) COPY/ADD source names something remote: an http(s) URL or a git
/// remote (`git@host:...`, `git://`, `ssh://`).
pub fn is_remote_source(source: &str) -> bool {
    ["http://", "https://", "git@", "git://", "ssh://"]
        .iter()
        .any(|p| source.starts_with(p))
}

/// Whether an (expanded) COPY/ADD source names local files: not a URL, git remote or
/// (outside the JSON form) heredoc.
pub fn is_local_source(copy: &Copy, source: &str) -> bool {
    let heredoc = !copy.json_form && source.starts_with("<<");
    !is_remote_source(source) && !heredoc
}

/// Resolves and hashes the local inputs of one `COPY`/`ADD` whose sources resolve against
/// `root`, honouring `<root>/.dockerignore` and the instruction's `--exclude` patterns.
///
/// Returns the matches of every local source in source order (each source's matches in
/// byte-wise order of their paths); empty for `--from` copies and copies with no local
/// source.
pub fn resolve_copy_inputs(copy: &Copy, root: &Path) -> Result<Vec<SourceMatch>> {
    resolve_copy_inputs_cached(copy, root, None)
}

/// [`resolve_copy_inputs`], taking file hashes from `cache` where it knows them and
/// recording the others there.
pub fn resolve_copy_inputs_cached(
    copy: &Copy,
    root: &Path,
    cache: Option<&dyn ContentHashCache>,
) -> Result<Vec<SourceMatch>> {
    if copy.from.is_some() || !copy.sources.iter().any(|s| is_local_source(copy, s)) {
        return Ok(Vec::new());
    }
    let ignore = IgnoreRules::load(root)?;
    resolve_copy_inputs_with_cached(copy, root, &ignore, cache)
}

/// [`resolve_copy_inputs`] with the context's ignore rules given rather than read from
/// `<root>/.dockerignore` (for callers that resolve many instructions against one root).
pub fn resolve_copy_inputs_with(
    copy: &Copy,
    root: &Path,
    ignore: &IgnoreRules,
) -> Result<Vec<SourceMatch>> {
    resolve_copy_inputs_with_cached(copy, root, ignore, None)
}

/// Below this many matches, their files are hashed on the calling thread.
const PARALLEL_MATCHES: usize = 4;

/// [`resolve_copy_inputs_with`], taking file hashes from `cache` where it knows them and
/// recording the others there.
pub fn resolve_copy_inputs_with_cached(
    copy: &Copy,
    root: &Path,
    ignore: &IgnoreRules,
    cache: Option<&dyn ContentHashCache>,
) -> Result<Vec<SourceMatch>> {
    let hashing = Hashing { cache };
    if copy.from.is_some() {
        return Ok(Vec::new());
    }
    let root = canonical_root(root)?;
    let excludes = IgnoreRules::from_patterns(&copy.excludes, "COPY --exclude")?;
    let mut matches = Vec::new();
    for (index, source) in copy.sources.iter().enumerate() {
        if !is_local_source(copy, source) {
            continue;
        }
        let found = resolve_source(copy, index, source, &root, ignore, &excludes, hashing)?;
        // BuildKit allows a wildcard to match nothing; a literal path must exist.
        if found.is_empty() && !has_wildcard(source) {
            return Err(SpecError::CopySourceNotFound {
                source_name: source.clone(),
                context: root.clone(),
            });
        }
        matches.extend(found);
    }
    // Directory contents were hashed while walking; file matches are hashed here, together
    // (on this thread when there are few: a warm rebuild would start the pool for nothing).
    if matches.len() < PARALLEL_MATCHES {
        matches
            .iter_mut()
            .filter_map(|m| m.entries.first_mut())
            .try_for_each(|entry| hash_entry(entry, None, hashing))?;
    } else {
        matches
            .par_iter_mut()
            .filter_map(|m| m.entries.first_mut())
            .try_for_each(|entry| hash_entry(entry, None, hashing))?;
    }
    Ok(matches)
}

/// Walks and hashes directory `dir`: the directory itself as `.`, then everything below it
/// that `ignore` (with paths relative to `dir`) does not hide, sorted byte-wise by name.
/// Symlinks are not followed.
pub fn hash_tree(dir: &Path, ignore: &IgnoreRules) -> Result<Vec<TreeEntry>> {
    hash_tree_with(dir, ignore, Hashing::NONE)
}

/// [`hash_tree`], taking file hashes from `cache` where it knows them and recording the
/// others there. `dir` is made canonical first (stamps name files by their real path), so
/// the `host_path`s are canonical too.
pub fn hash_tree_cached(
    dir: &Path,
    ignore: &IgnoreRules,
    cache: Option<&dyn ContentHashCache>,
) -> Result<Vec<TreeEntry>> {
    match cache {
        Some(_) => hash_tree_with(&canonical_root(dir)?, ignore, Hashing { cache }),
        None => hash_tree_with(dir, ignore, Hashing::NONE),
    }
}

fn hash_tree_with(
    dir: &Path,
    ignore: &IgnoreRules,
    hashing: Hashing<'_>,
) -> Result<Vec<TreeEntry>> {
    let meta = std::fs::metadata(dir).map_err(|source| SpecError::reading(dir, source))?;
    if !meta.is_dir() {
        return Err(SpecError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut entries = vec![entry_for(dir, ".".to_string(), &meta)?];
    walk(
        dir,
        &meta,
        ".",
        &[Filter::at(ignore, "")],
        hashing,
        &mut entries,
    )?;
    sort_after_first(&mut entries);
    Ok(entries)
}

fn canonical_root(root: &Path) -> Result<PathBuf> {
    let canonical =
        std::fs::canonicalize(root).map_err(|source| SpecError::reading(root, source))?;
    if !canonical.is_dir() {
        return Err(SpecError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    Ok(canonical)
}

/// A source split into cleaned components, and how many leading components `--parents`
/// drops (those before a `/./` pivot).
fn split_source(copy: &Copy, source: &str, root: &Path) -> Result<(Vec<String>, usize)> {
    let outside = || SpecError::CopySourceOutsideContext {
        source_name: source.to_string(),
        context: root.to_path_buf(),
    };
    let components = clean_components(source).ok_or_else(outside)?;
    if !copy.parents {
        return Ok((components, 0));
    }
    let Some((base, _)) = source.split_once("/./") else {
        return Ok((components, 0));
    };
    let base = clean_components(base).ok_or_else(outside)?;
    let pivot = base
        .iter()
        .zip(&components)
        .take_while(|(a, b)| a == b)
        .count();
    Ok((components, pivot))
}

/// Lexical cleaning; `None` if `..` climbs above the start.
fn clean_components(path: &str) -> Option<Vec<String>> {
    let mut components: Vec<String> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                components.pop()?;
            }
            other => components.push(other.to_string()),
        }
    }
    Some(components)
}

/// All matches of one source, walked but not yet hashed.
fn resolve_source(
    copy: &Copy,
    index: usize,
    source: &str,
    root: &Path,
    ignore: &IgnoreRules,
    excludes: &IgnoreRules,
    hashing: Hashing<'_>,
) -> Result<Vec<SourceMatch>> {
    let (components, pivot) = split_source(copy, source, root)?;
    let mut candidates = expand(&components, source, root)?;
    candidates.sort_by_cached_key(|c| c.join("/"));

    let mut matches = Vec::new();
    for candidate in candidates {
        let rel = if candidate.is_empty() {
            ".".to_string()
        } else {
            candidate.join("/")
        };
        let lexical = root.join(&rel);
        let resolved = match std::fs::canonicalize(&lexical) {
            Ok(resolved) => resolved,
            // Absent, or a dangling symlink: nothing to copy.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(source) => return Err(io_error(&lexical, source)),
        };
        let Ok(inside) = resolved.strip_prefix(root) else {
            return Err(SpecError::CopySourceOutsideContext {
                source_name: source.to_string(),
                context: root.to_path_buf(),
            });
        };
        let Some(resolved_rel) = inside.to_str().map(str::to_string) else {
            return Err(SpecError::UnsupportedInput {
                path: resolved,
                reason: "its name is not valid UTF-8",
            });
        };
        let ignore_filter = Filter::at(ignore, &resolved_rel);
        let hidden = ignore_filter.ignored() || (rel != "." && ignore.is_ignored(&rel));

        let meta = std::fs::metadata(&resolved).map_err(|e| io_error(&resolved, e))?;
        let placed = placed_name(&candidate, copy.parents, pivot, meta.is_dir());
        let mut entries = vec![entry_for(&resolved, placed.clone(), &meta)?];
        if meta.is_dir() {
            if hidden && !ignore.has_exceptions() {
                continue;
            }
            let filters = [ignore_filter, Filter::at(excludes, "")];
            walk(&resolved, &meta, &placed, &filters, hashing, &mut entries)?;
            if hidden && entries.len() == 1 {
                continue;
            }
            sort_after_first(&mut entries);
        } else {
            let base = candidate.last().map_or(".", String::as_str);
            if hidden || excludes.is_ignored(base) {
                continue;
            }
        }
        matches.push(SourceMatch {
            source: index,
            path: rel,
            entries,
        });
    }
    Ok(matches)
}

/// Expands wildcard components against directory listings (sorted, dot files included).
fn expand(components: &[String], source: &str, root: &Path) -> Result<Vec<Vec<String>>> {
    let mut candidates: Vec<Vec<String>> = vec![Vec::new()];
    for component in components {
        if !has_wildcard(component) {
            candidates
                .iter_mut()
                .for_each(|c| c.push(component.clone()));
            continue;
        }
        let glob = Glob::component(component).map_err(|reason| SpecError::InvalidCopySource {
            source_name: source.to_string(),
            reason,
        })?;
        let mut expanded = Vec::new();
        for candidate in candidates {
            let dir = root.join(candidate.join("/"));
            let listing = match std::fs::read_dir(&dir) {
                Ok(listing) => listing,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => continue,
                Err(source) => return Err(io_error(&dir, source)),
            };
            let mut names = Vec::new();
            for entry in listing {
                let name = entry.map_err(|e| io_error(&dir, e))?.file_name();
                match name.to_str() {
                    Some(name) if glob.matches(name) => names.push(name.to_string()),
                    Some(_) => {}
                    // Names must be UTF-8 (they go into the digest as text). Refuse one that
                    // the pattern would match with its bad bytes matched by wildcards,
                    // rather than leave it out of the copy unnoticed.
                    None if glob.matches(&name.to_string_lossy()) => {
                        return Err(SpecError::UnsupportedInput {
                            path: dir.join(name),
                            reason: "its name is not valid UTF-8",
                        });
                    }
                    None => {}
                }
            }
            names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let mut next = candidate.clone();
                next.push(name);
                expanded.push(next);
            }
        }
        candidates = expanded;
    }
    Ok(candidates)
}

/// Where COPY puts a match, relative to the destination (see the module docs).
fn placed_name(components: &[String], parents: bool, pivot: usize, is_dir: bool) -> String {
    if parents {
        let kept = &components[pivot.min(components.len())..];
        if !kept.is_empty() {
            return kept.join("/");
        }
    }
    match components.last() {
        Some(base) if !is_dir => base.clone(),
        _ => ".".to_string(),
    }
}

fn sort_after_first(entries: &mut [TreeEntry]) {
    if let Some((_, rest)) = entries.split_first_mut() {
        rest.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    }
}

#[cfg(test)]
mod tests;
