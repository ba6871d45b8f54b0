//! A built layer and its tree, stored once: the tree a step wrote (a RUN's upper directory,
//! a COPY's staging tree) becomes the layer's unpacked copy, and the layer is recorded
//! tree-backed, as a tar-split beside it: the tree is the layer's bytes (docs/format.md,
//! "What a stored layer is"). In a gzip or zstd build the compressed variant an image
//! names is made beside the next steps (`beside.rs`). Without a layer cache that holds
//! trees (a build without root) the layer is stored as a compressed blob.

use std::path::Path;

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
        if cache.holds_trees_of(store) {
            let split = write_tar_split(store, &self.writer, source, Some(lease))?;
            let record = || Ok(record_tree_layer(store, &split, Some(lease))?);
            let recorded = match cache.adopt_then(&split.info.blake3, tree, epoch, record)? {
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
        if let Err(e) = cache.adopt(&layer, tree, epoch) {
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
