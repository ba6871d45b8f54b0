//! Store upkeep: garbage collection, disk usage, counts and consistency checks.

use lamina_exec::build::GitCachePruned;
use lamina_exec::reclaim::Reclaimed;
use lamina_exec::sandbox::{CacheMountsPruned, LayerCache, PruneReport};
use lamina_exec::usage::WorkUsage;
use lamina_store::{FsckOptions, FsckReport, Stats};

use crate::{Engine, Error};

/// What [`Engine::gc`] removed, from the store and from the executor's work files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs, layer records, cache entries and leases (the store's own collection).
    pub store: lamina_store::GcReport,
    /// Unpacked copies of layers the store no longer holds, or over the size budget.
    pub unpacked: PruneReport,
    /// `RUN --mount=type=cache` directories unused past the TTL or over the budget.
    pub cache_mounts: CacheMountsPruned,
    /// Kept git repositories no checkout used within the TTL.
    pub git_repos: GitCachePruned,
    /// Run directories and staging trees left by killed processes.
    pub leftovers: Reclaimed,
    /// Step-lock files no process held (one is made per missed cache key).
    pub step_locks_removed: u64,
}

/// Bytes on disk under the store directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    /// Blobs by kind, the index, staging and the reserve.
    pub store: lamina_store::DiskUsage,
    /// The executor's work files: unpacked layers, cache mounts, git repositories.
    pub work: WorkUsage,
    /// Everything under the store directory.
    pub total_bytes: u64,
    /// Layers only a registry holds (a registry-cache hit not yet needed here): no bytes in
    /// the store, counted apart.
    pub remote_layers: usize,
    /// Their compressed size in the registry.
    pub remote_layers_bytes: u64,
}

impl Engine {
    /// Removes expired cache entries, entries over the size budget (least recently used
    /// first) and every blob no named image, live cache entry or lease needs, with the
    /// unpacked copies, cache mounts and git repositories that go with them. The TTL, budget
    /// and minimum age are the [`lamina_store::StoreOptions`] the engine was opened with.
    ///
    /// Run it while no build of this engine runs: the unpacked copies it prunes are the
    /// ones builds read.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let engine = lamina::Engine::open(dir.path())?;
    /// let report = engine.gc()?;
    /// assert_eq!(report.store.blobs_removed, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn gc(&self) -> Result<GcReport, Error> {
        let mut report = gc_store(&self.store)?;
        // What killed processes left was reclaimed when the engine opened: it counts here.
        report.leftovers += self.executor.take_reclaimed_at_start();
        Ok(report)
    }

    /// Bytes on disk by kind of blob, index, staging area and work files.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let engine = lamina::Engine::open(dir.path())?;
    /// let usage = engine.du()?;
    /// assert!(usage.total_bytes >= usage.store.index_bytes);
    /// # Ok(())
    /// # }
    /// ```
    pub fn du(&self) -> Result<DiskUsage, Error> {
        let store = self.store.du()?;
        let work_dir = Engine::work_dir_of(self.store.path());
        let work = lamina_exec::usage::work_usage(&work_dir).map_err(|source| {
            lamina_store::StoreError::Io {
                path: work_dir.clone(),
                source,
            }
        })?;
        let total_bytes = store.total_bytes() + work.total_bytes();
        let remote = self.store.remote_blobs()?;
        Ok(DiskUsage {
            store,
            work,
            total_bytes,
            remote_layers: remote.len(),
            remote_layers_bytes: remote.iter().map(|r| r.size).sum(),
        })
    }

    /// Blob, layer, cache-entry and image counts; stored and logical bytes.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let engine = lamina::Engine::open(dir.path())?;
    /// assert_eq!(engine.stats()?.images, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Result<Stats, Error> {
        Ok(self.store.stats()?)
    }

    /// Checks every blob's content and every index record; with `options.repair`, removes
    /// what is corrupt or dangling.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let engine = lamina::Engine::open(dir.path())?;
    /// let report = engine.fsck(lamina::store::FsckOptions::default())?;
    /// assert!(report.issues.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn fsck(&self, options: FsckOptions) -> Result<FsckReport, Error> {
        fsck_store(&self.store, options)
    }
}

/// What [`Engine::fsck`] does, for a caller that has only the store open: the store's own
/// check, then every tree-backed layer's tree reassembled against its diff_id (a tree that
/// was modified, or is missing, is an issue no repair can fix: the tree was the layer).
pub fn fsck_store(store: &lamina_store::Store, options: FsckOptions) -> Result<FsckReport, Error> {
    let mut report = store.fsck(options)?;
    let reported: std::collections::HashSet<_> = report
        .issues
        .iter()
        .filter_map(|i| match i {
            lamina_store::FsckIssue::LayerTree { layer, .. } => Some(*layer),
            _ => None,
        })
        .collect();
    for layer in store.tree_backed_layers()? {
        if reported.contains(&layer.digest) {
            continue;
        }
        let tree = store.layer_tree(&layer.digest);
        let reason = if !tree.is_dir() {
            Some(format!("its unpacked tree {} is missing", tree.display()))
        } else {
            lamina_image::layer_tar::verify_tree(store, &layer)
                .err()
                .map(|e| e.to_string())
        };
        if let Some(reason) = reason {
            report.issues.push(lamina_store::FsckIssue::LayerTree {
                layer: layer.digest,
                reason,
            });
        }
    }
    Ok(report)
}

/// What [`Engine::gc`] does, for a caller that has the store open without an engine (an
/// engine also reports what it reclaimed when it opened).
///
/// ```
/// # fn main() -> Result<(), lamina::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = lamina::store::Store::open(dir.path(), Default::default())?;
/// let report = lamina::gc_store(&store)?;
/// assert_eq!(report.leftovers.runs, 0);
/// # Ok(())
/// # }
/// ```
pub fn gc_store(store: &lamina_store::Store) -> Result<GcReport, Error> {
    let report = store.gc()?;
    let work_dir = Engine::work_dir_of(store.path());
    let options = store.options();
    let mut unpacked = PruneReport::default();
    let mut unpacked_kept = 0;
    if work_dir.join("layers").is_dir() {
        let cache = LayerCache::new(&work_dir)?;
        unpacked = cache.prune(store)?;
        // Unpacked copies are the first to go under the budget: each is only a copy of
        // a stored blob, made again by the next RUN that needs it. Trees of tree-backed
        // layers are the layers themselves: never evicted.
        if let Some(max) = options.max_size {
            let budget = max.saturating_sub(report.bytes_kept);
            let pinned = |hex: &str| {
                lamina_store::Digest::parse(&format!("blake3:{hex}"))
                    .ok()
                    .and_then(|d| store.layer(&d).ok().flatten())
                    .is_none_or(|r| r.is_tree_backed())
            };
            let (evicted, kept) = cache.evict_to_budget(budget, options.min_age, pinned)?;
            unpacked.removed += evicted.removed;
            unpacked.bytes += evicted.bytes;
            unpacked_kept = kept;
        }
    }
    let cache_mounts = lamina_exec::sandbox::prune_cache_mounts(
        &work_dir,
        options.default_ttl,
        options.min_age,
        options
            .max_size
            .map(|max| max.saturating_sub(report.bytes_kept + unpacked_kept)),
    )?;
    let leftovers = lamina_exec::reclaim::reclaim_leftovers(&work_dir)?;
    let git_repos =
        lamina_exec::build::prune_git_cache(&work_dir, options.default_ttl, options.min_age)?;
    let step_locks_removed = lamina_exec::build::prune_step_locks(&work_dir)?;
    Ok(GcReport {
        store: report,
        unpacked,
        cache_mounts,
        git_repos,
        leftovers,
        step_locks_removed,
    })
}
