//! A built layer and its tree, stored once: the tree a step wrote (a RUN's upper directory,
//! a COPY's staging tree) becomes the layer's unpacked copy, and the layer is stored either
//! as a compressed blob beside it (the build's compression is gzip or zstd) or, for a plain
//! layer, as a tar-split only: the tree is then the layer's bytes (docs/format.md, "What a
//! stored layer is").

use std::path::Path;

use lamina_image::layer_store::{LayerSource, record_tree_layer, store_layer, write_tar_split};
use lamina_store::{Compression, LayerRecord};

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
        if self.compression == Compression::None && cache.holds_trees_of(store) {
            let split = write_tar_split(store, &self.writer, source, Some(lease))?;
            let record = || Ok(record_tree_layer(store, &split, Some(lease))?);
            if let Some(layer) = cache.adopt_then(&split.info.blake3, tree, epoch, record)? {
                return Ok(layer);
            }
            // The layer has a tree already: built or unpacked before. A tree-backed record
            // stays so (the new tar-split is another record of the same tar).
            if store
                .layer(&split.info.blake3)?
                .is_some_and(|r| r.is_tree_backed())
            {
                return record();
            }
        }
        let layer = store_layer(store, &self.writer, source, Some(lease))?;
        // The layer is stored: failing to keep its tree only costs an unpack later.
        if let Err(e) = cache.adopt(&layer, tree, epoch) {
            tracing::warn!("cannot keep the tree of layer {}: {e}", layer.digest);
        }
        Ok(layer)
    }
}
