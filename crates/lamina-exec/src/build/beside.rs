//! Compressed variants of built layers, made on a thread beside the build's next steps.
//!
//! A step's cache key depends on the key of the step before it, never on the digest of that
//! step's layer, and only the commit names layers by their compressed digest. So a step of
//! a gzip or zstd build records its layer tree-backed (a tar-split beside the tree it
//! wrote, as a plain build does: `kept.rs`) and queues the compressed variant here; the
//! next steps run while it is made, and the commit waits for the queue before it names the
//! variants. What this thread fails to make the commit makes itself
//! (`ensure_named_variant`), so a failure here costs time, never an image. The variants are
//! kept as long as their layers (an untagged image's manifest names them), not dropped under
//! a size budget as a push's may be.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use lamina_store::{Compression, LayerRecord, Store};

/// The queue of layers waiting for their variant, and the one thread that makes them in
/// order (one at a time: each compression already uses every core, see
/// `lamina_image::codec::encoder`).
#[derive(Default)]
pub(crate) struct VariantsBeside {
    queue: Option<mpsc::Sender<LayerRecord>>,
    worker: Option<JoinHandle<usize>>,
    /// Set when the build ends without a commit: what is still queued is not needed.
    abandon: Arc<AtomicBool>,
}

impl VariantsBeside {
    /// Queues the `compression` variant of `layer` (a build has one compression); starts the
    /// thread on first use.
    pub(crate) fn queue(
        &mut self,
        store: &Arc<Store>,
        layer: LayerRecord,
        compression: Compression,
    ) {
        if self.queue.is_none() {
            let (sender, layers) = mpsc::channel::<LayerRecord>();
            let store = Arc::clone(store);
            let abandon = Arc::clone(&self.abandon);
            let spawned = std::thread::Builder::new()
                .name("lamina-variants".into())
                .spawn(move || make_variants(&store, layers, compression, &abandon));
            // No thread: the commit makes every variant, as it would have.
            let Ok(worker) = spawned else { return };
            self.worker = Some(worker);
            self.queue = Some(sender);
        }
        if let Some(queue) = &self.queue {
            // A send fails only if the thread is gone (it panicked): the commit makes it.
            let _ = queue.send(layer);
        }
    }

    /// Waits until every queued variant is made or has failed; returns how many were made.
    pub(crate) fn wait(&mut self) -> usize {
        // Closing the channel ends the thread's loop after the last queued layer.
        self.queue = None;
        self.worker
            .take()
            .map_or(0, |worker| worker.join().unwrap_or(0))
    }
}

impl Drop for VariantsBeside {
    /// A build that ends without a commit (a failed or cancelled step) needs none of what is
    /// queued, nor the variant in progress (it stops within a chunk); the thread is joined, so
    /// it never outlives the build's lease (`Build` declares this field before the lease, and
    /// fields drop in that order).
    fn drop(&mut self) {
        self.abandon.store(true, Ordering::Relaxed);
        self.wait();
    }
}

fn make_variants(
    store: &Store,
    layers: mpsc::Receiver<LayerRecord>,
    compression: Compression,
    abandon: &AtomicBool,
) -> usize {
    let mut made = 0;
    for layer in layers {
        if abandon.load(Ordering::Relaxed) {
            break;
        }
        match lamina_image::variants::ensure_named_variant(
            store,
            &layer,
            compression,
            Some(abandon),
        ) {
            Ok(_) => made += 1,
            Err(e) => tracing::debug!(
                "the {} variant of layer {} is left to the commit: {e}",
                compression.name(),
                layer.digest
            ),
        }
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_image::layer_store::{LayerSource, record_tree_layer, store_layer, write_tar_split};
    use lamina_layer::{LayerOptions, LayerWriter};
    use lamina_store::StoreOptions;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(dir.path().join("etc/lines"), text).unwrap();
        dir
    }

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        (dir, store)
    }

    fn writer(compression: Compression) -> LayerWriter {
        LayerWriter::new(
            LayerOptions::default()
                .compression(compression)
                .mtime_clamp(Some(0)),
        )
    }

    /// The layer of `src` recorded tree-backed, its tree in place, as a step leaves it.
    fn tree_backed(store: &Store, src: &std::path::Path, compression: Compression) -> LayerRecord {
        let split =
            write_tar_split(store, &writer(compression), LayerSource::Tree(src), None).unwrap();
        let kept = store.layer_tree(&split.info.blake3).join("etc");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::copy(src.join("etc/lines"), kept.join("lines")).unwrap();
        record_tree_layer(store, &split, None).unwrap()
    }

    #[test]
    fn a_variant_made_beside_is_the_one_the_step_would_have_stored() {
        let src = tree();
        for compression in [Compression::Zstd, Compression::Gzip] {
            // What a step stored before, in a store of its own: the compressed blob.
            let (_dir, direct_store) = store();
            let direct = store_layer(
                &direct_store,
                &writer(compression),
                LayerSource::Tree(src.path()),
                None,
            )
            .unwrap();
            let (_dir, store) = store();
            let layer = tree_backed(&store, src.path(), compression);
            assert_eq!(layer.digest, direct.digest);
            assert!(layer.variant_in(compression).is_none());

            let mut beside = VariantsBeside::default();
            beside.queue(&store, layer.clone(), compression);
            assert_eq!(beside.wait(), 1);
            let record = store.layer(&layer.digest).unwrap().unwrap();
            assert!(record.is_tree_backed());
            let made = record.variant_in(compression).unwrap();
            let stored = direct.variant_in(compression).unwrap();
            assert_eq!((made.sha256, made.size), (stored.sha256, stored.size));
            assert!(!made.reproducible, "kept with its layer");
            assert!(store.contains(&made.digest).unwrap());
        }
    }

    #[test]
    fn an_abandoned_queue_makes_nothing_more() {
        let (_dir, store) = store();
        let src = tree();
        let layer = tree_backed(&store, src.path(), Compression::Zstd);
        let mut beside = VariantsBeside::default();
        beside.abandon.store(true, Ordering::Relaxed);
        beside.queue(&store, layer.clone(), Compression::Zstd);
        assert_eq!(beside.wait(), 0);
        assert_eq!(beside.wait(), 0, "waiting twice is harmless");
        let record = store.layer(&layer.digest).unwrap().unwrap();
        assert!(record.variant_in(Compression::Zstd).is_none());
    }
}
