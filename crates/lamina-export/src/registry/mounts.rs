//! Where a blob may already live on a registry, so a push can mount it instead of
//! uploading it again (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other repo>`).
//!
//! Two sources, both hints (a failed mount falls back to an upload):
//! - repositories this store pushed to, recorded in `registry-v1/pushed.json` under the
//!   store root (registry host → repository → blob sha256s, most recent first, bounded);
//! - images named in the store after a pull from that registry (`host/repo:tag`): their
//!   source repository holds the blobs the image record references.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use lamina_store::{Digest, Store};
use serde::{Deserialize, Serialize};

use super::transport::parse_reference;

/// Repositories remembered per registry.
const MAX_REPOS: usize = 64;
/// Blobs remembered per repository.
const MAX_BLOBS: usize = 4096;

/// The push record file.
fn record_path(store: &Store) -> PathBuf {
    store.path().join("registry-v1").join("pushed.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Registry host → repositories, most recently pushed first.
    registries: std::collections::BTreeMap<String, Vec<Repo>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Repo {
    name: String,
    /// sha256 digests (`sha256:<hex>`) known to be in the repository.
    blobs: Vec<String>,
}

fn read_record(path: &Path) -> Record {
    // A missing or unreadable record only costs mounts, never a push.
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// One blob of an image, as a push sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobRef {
    /// sha256 (the registry's name for it).
    pub sha256: Digest,
    /// What keeps it in the store: the blob itself (config) or the layer key.
    pub owner: Digest,
}

/// Repositories of `registry` other than `repository` that hold `blob`, best first.
pub(crate) fn candidates(
    store: &Store,
    registry: &str,
    repository: &str,
    blob: &BlobRef,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let record = read_record(&record_path(store));
    let digest = blob.sha256.to_string();
    if let Some(repos) = record.registries.get(registry) {
        for repo in repos {
            if repo.name != repository && repo.blobs.contains(&digest) {
                out.push(repo.name.clone());
            }
        }
    }
    if let Ok(images) = store.images() {
        for image in images {
            let Ok(reference) = parse_reference(&image.name) else {
                continue;
            };
            if reference.registry() == registry
                && reference.repository() != repository
                && image.references.contains(&blob.owner)
                && !out.iter().any(|r| r == reference.repository())
            {
                out.push(reference.repository().to_owned());
            }
        }
    }
    out
}

/// Remembers that `repository` on `registry` now holds `blobs`.
pub(crate) fn remember(
    store: &Store,
    registry: &str,
    repository: &str,
    blobs: &[Digest],
) -> std::io::Result<()> {
    let path = record_path(store);
    let mut record = read_record(&path);
    let repos = record.registries.entry(registry.to_owned()).or_default();
    let mut known: Vec<String> = match repos.iter().position(|r| r.name == repository) {
        Some(i) => repos.remove(i).blobs,
        None => Vec::new(),
    };
    let new: BTreeSet<String> = blobs.iter().map(Digest::to_string).collect();
    known.retain(|b| !new.contains(b));
    let mut merged: Vec<String> = new.into_iter().collect();
    merged.extend(known);
    merged.truncate(MAX_BLOBS);
    repos.insert(
        0,
        Repo {
            name: repository.to_owned(),
            blobs: merged,
        },
    );
    repos.truncate(MAX_REPOS);
    let dir = path.parent().unwrap_or(store.path());
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a reader never sees half a file.
    let temp = dir.join(format!("pushed.json.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&temp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_repositories_become_mount_sources() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), lamina_store::StoreOptions::default()).unwrap();
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let blob = |sha256| BlobRef {
            sha256,
            owner: Digest::blake3_of(b"x"),
        };
        assert!(candidates(&store, "r:5000", "app", &blob(a)).is_empty());
        remember(&store, "r:5000", "one", &[a]).unwrap();
        remember(&store, "r:5000", "two", &[a, b]).unwrap();
        remember(&store, "other:5000", "three", &[a]).unwrap();
        assert_eq!(
            candidates(&store, "r:5000", "app", &blob(a)),
            ["two", "one"]
        );
        assert_eq!(candidates(&store, "r:5000", "two", &blob(a)), ["one"]);
        assert_eq!(candidates(&store, "r:5000", "app", &blob(b)), ["two"]);
        // Re-pushing a repository keeps what it already had.
        remember(&store, "r:5000", "one", &[b]).unwrap();
        assert_eq!(candidates(&store, "r:5000", "x", &blob(a)), ["one", "two"]);
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), lamina_store::StoreOptions::default()).unwrap();
        let path = record_path(&store);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let blob = BlobRef {
            sha256: Digest::sha256_of(b"a"),
            owner: Digest::blake3_of(b"a"),
        };
        assert!(candidates(&store, "r:5000", "app", &blob).is_empty());
        remember(&store, "r:5000", "app", &[blob.sha256]).unwrap();
        assert_eq!(candidates(&store, "r:5000", "b", &blob), ["app"]);
    }
}
