//! What the executor's work directory holds on disk, by part, for `lamina cache du`: the
//! unpacked copies of layers (a build's largest files after the blobs), cache mounts, kept
//! git repositories and the rest (build records, locks, URL records, the hash cache).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes (file lengths, each hard-linked file once) below the executor's work directory, on
/// its own file system: mounts below it (a RUN's rootfs) are not descended into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkUsage {
    /// Unpacked layer directories (`layers/`), and how many.
    pub unpacked_layers: u64,
    pub unpacked_layers_bytes: u64,
    /// `RUN --mount=type=cache` directories (`cache-mounts/`).
    pub cache_mounts_bytes: u64,
    /// Kept git repositories of ADD git sources (`git-cache-v1/`).
    pub git_repos_bytes: u64,
    /// Run directories (`runs/`): RUNs in progress, or left by killed processes.
    pub runs_bytes: u64,
    /// Staging trees and downloads (`tmp/`).
    pub temp_bytes: u64,
    /// Everything else: build records, locks, URL records, the hash cache.
    pub other_bytes: u64,
}

impl WorkUsage {
    /// All of it.
    pub fn total_bytes(&self) -> u64 {
        self.unpacked_layers_bytes
            + self.cache_mounts_bytes
            + self.git_repos_bytes
            + self.runs_bytes
            + self.temp_bytes
            + self.other_bytes
    }
}

/// The usage of `work_dir` (all zero when it does not exist).
pub fn work_usage(work_dir: &Path) -> io::Result<WorkUsage> {
    let mut usage = WorkUsage::default();
    let mut seen = HashSet::new();
    let dev = match fs::metadata(work_dir) {
        Ok(meta) => meta.dev(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(usage),
        Err(e) => return Err(e),
    };
    let entries = match fs::read_dir(work_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(usage),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let bytes = bytes_below(&entry.path(), &mut seen, dev)?;
        match entry.file_name().to_str() {
            Some("layers") => {
                usage.unpacked_layers_bytes += bytes;
                usage.unpacked_layers = fs::read_dir(entry.path())?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count() as u64;
            }
            Some("cache-mounts") => usage.cache_mounts_bytes += bytes,
            Some("git-cache-v1") => usage.git_repos_bytes += bytes,
            Some("runs") => usage.runs_bytes += bytes,
            Some("tmp") => usage.temp_bytes += bytes,
            _ => usage.other_bytes += bytes,
        }
    }
    Ok(usage)
}

/// File lengths below `path` (itself included when a file), hard links counted once, mounts
/// not descended into; 0 when it cannot be read. The one size walk of the work directory's
/// parts (unpacked layers, cache mounts, git repositories, leftovers).
pub(crate) fn bytes_of(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .and_then(|m| bytes_below(path, &mut HashSet::new(), m.dev()))
        .unwrap_or(0)
}

/// File lengths below `path` (itself included when a file), hard links counted once.
fn bytes_below(path: &Path, seen: &mut HashSet<(u64, u64)>, dev: u64) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Gone while walking (a run finished): nothing to count.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // A mount (a running or killed RUN's overlay rootfs) shows other files, not these.
    if meta.dev() != dev {
        return Ok(0);
    }
    if meta.is_dir() {
        let mut total = 0;
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        for entry in entries {
            total += bytes_below(&entry?.path(), seen, dev)?;
        }
        return Ok(total);
    }
    if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
        return Ok(meta.len());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_counted_apart_and_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "layers/abc/etc",
            "layers/.tmp-x",
            "cache-mounts/pip",
            "git-cache-v1/r",
            "runs/lamina-1-0",
            "tmp",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("layers/abc/etc/a"), [0u8; 100]).unwrap();
        fs::hard_link(root.join("layers/abc/etc/a"), root.join("layers/abc/etc/b")).unwrap();
        fs::write(root.join("cache-mounts/pip/w"), [0u8; 10]).unwrap();
        fs::write(root.join("git-cache-v1/r/p"), [0u8; 7]).unwrap();
        fs::write(root.join("hash-cache-v1"), [0u8; 3]).unwrap();
        fs::write(root.join("runs/lamina-1-0/config.json"), [0u8; 20]).unwrap();
        fs::write(root.join("tmp/copy-1.x"), [0u8; 30]).unwrap();
        let usage = work_usage(root).unwrap();
        assert_eq!(
            usage,
            WorkUsage {
                unpacked_layers: 1,
                unpacked_layers_bytes: 100,
                cache_mounts_bytes: 10,
                git_repos_bytes: 7,
                runs_bytes: 20,
                temp_bytes: 30,
                other_bytes: 3,
            }
        );
        assert_eq!(usage.total_bytes(), 170);
        assert_eq!(
            work_usage(&root.join("missing")).unwrap(),
            WorkUsage::default()
        );
    }
}
