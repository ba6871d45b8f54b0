//! A built layer and its tree, stored once: the tree a step wrote (a RUN's upper directory,
//! a COPY's staging tree) becomes the layer's unpacked copy, and the layer is recorded
//! tree-backed, as a tar-split beside it: the tree is the layer's bytes (docs/format.md,
//! "What a stored layer is"). In a gzip or zstd build the compressed variant an image
//! names is made beside the next steps (`beside.rs`). Without a layer cache that holds
//! trees (a build without root) the layer is stored as a compressed blob.

use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;

use lamina_image::layer_store::{LayerSource, record_tree_layer, store_layer, write_tar_split};
use lamina_store::{Compression, LayerRecord};

use super::lock;
use super::steps::Build;
use crate::ExecError;

impl Build<'_> {
    /// Stores the layer of `source`, whose files are the tree `tree`, and keeps `tree` as the
    /// layer's unpacked copy.
    pub(crate) fn store_and_keep(
        &self,
        source: LayerSource<'_>,
        tree: &Path,
    ) -> Result<LayerRecord, ExecError> {
        let store = &self.inner.store;
        let cache = self.inner.layer_cache()?;
        let epoch = self.settings.epoch;
        // A layer is written: the build holds its lease from here on.
        let lease = self.lease()?;
        // A RUN's upper directory was not synced at its unmount (see `overlay.rs`).
        let unsynced = matches!(source, LayerSource::OverlayUpper(_));
        if cache.holds_trees_of(store) {
            let split = write_tar_split(store, &self.writer, source, Some(lease))?;
            let record = || Ok(record_tree_layer(store, &split, Some(lease))?);
            let adopted = cache.adopt_then(&split.info.blake3, tree, epoch, unsynced, record)?;
            let recorded = match adopted {
                Some(layer) => Some(layer),
                // The layer has a tree already: built or unpacked before. A tree-backed
                // record stays so (the new tar-split is another record of the same tar).
                None if store
                    .layer(&split.info.blake3)?
                    .is_some_and(|r| r.is_tree_backed()) =>
                {
                    Some(record()?)
                }
                None => None,
            };
            if let Some(layer) = recorded {
                self.queue_variant(&layer);
                return Ok(layer);
            }
        }
        let layer = store_layer(store, &self.writer, source, Some(lease))?;
        // The layer is stored: failing to keep its tree only costs an unpack later.
        if let Err(e) = cache.adopt(&layer, tree, epoch, unsynced) {
            tracing::warn!("cannot keep the tree of layer {}: {e}", layer.digest);
        }
        Ok(layer)
    }

    /// Queues the build's compressed variant of a tree-backed `layer` if an image or a cache
    /// export will name it: a layer of the target stage or a stage it is built on, or any
    /// layer when the build exports its cache. A builder stage's layers get none (as
    /// BuildKit compresses only what it exports); a later push or export makes it on need.
    fn queue_variant(&self, layer: &LayerRecord) {
        let stage = self.current.1;
        let named = !self.options.cache_to.is_empty() || self.plan.target_chain().contains(&stage);
        if self.compression != Compression::None && named {
            let compression = self.compression;
            lock(&self.variants_beside).queue(&self.inner.store, layer.clone(), compression);
        }
    }
}

/// Staging trees a step did not keep (its layer had a tree already, as in a rebuild with
/// `--no-cache`) and what is left of a RUN's run directory (the overlay's work directory,
/// the scaffold, the bundle, the upper directory when not kept), removed on threads beside
/// the build's next steps: a few hundred entries are milliseconds of unlinks. Joined when
/// the build ends, so a build leaves none behind; what a killed process leaves is reclaimed
/// as any (`crate::reclaim`).
#[derive(Debug, Default)]
pub(crate) struct RemovedBeside(Mutex<Vec<JoinHandle<()>>>);

impl RemovedBeside {
    /// Drops `tree`, which removes itself when dropped (a `TempDir`, a run's `UpperDir`), on a
    /// thread of its own (here, when no thread can be started).
    pub(crate) fn remove(&self, tree: impl Send + 'static) {
        let spawned = std::thread::Builder::new()
            .name("lamina-remove".into())
            .spawn(move || drop(tree));
        if let Ok(handle) = spawned {
            lock(&self.0).push(handle);
        }
    }
}

impl Drop for RemovedBeside {
    fn drop(&mut self) {
        for handle in std::mem::take(&mut *lock(&self.0)) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_removed_beside_are_gone_when_it_drops() {
        let parent = tempfile::tempdir().unwrap();
        let removed = RemovedBeside::default();
        let mut paths = Vec::new();
        for i in 0..3 {
            let tree = tempfile::tempdir_in(parent.path()).unwrap();
            for j in 0..200 {
                let dir = tree.path().join(format!("d{j}"));
                std::fs::create_dir(&dir).unwrap();
                std::fs::write(dir.join("f"), format!("{i}.{j}")).unwrap();
            }
            paths.push(tree.path().to_path_buf());
            removed.remove(tree);
        }
        drop(removed);
        for path in paths {
            assert!(!path.exists(), "{} is left", path.display());
        }
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
