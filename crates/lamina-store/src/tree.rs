//! Tree-backed layers: a layer's tar kept as its unpacked tree plus a tar-split blob
//! (docs/format.md, "What a stored layer is").
//!
//! The store does not read trees (that is lamina-layer's `TarSplitReader`, driven by
//! lamina-export); it records which layers are tree-backed, says where their trees live,
//! keeps their tar-splits with them through GC, and drops a plain blob once the tree stands
//! in for it.

use std::path::PathBuf;

use crate::fsutil::remove_if_exists;
use crate::index::{self, IndexBatch};
use crate::records::BlobInfo;
use crate::{Digest, LayerRecord, LayerVariant, Store, StoreError};

/// Where a tree-backed layer's unpacked tree lives, below the store root: the executor's
/// layer cache (`exec/layers/<hex>`), whose directories for tree-backed layers are store
/// data, not a cache.
pub const LAYER_TREES: &str = "exec/layers";

impl Store {
    /// Every tree-backed layer record (for fsck, which checks their trees).
    pub fn tree_backed_layers(&self) -> Result<Vec<LayerRecord>, StoreError> {
        let db = self.index()?;
        let mut layers = Vec::new();
        for item in db.scan(index::LAYERS) {
            let (k, v) = item?;
            let key = index::key32(index::LAYERS, &k)?;
            // An undecodable record is fsck's own finding; skipped here.
            if let Ok(rec) = LayerRecord::decode(&key, &v)
                && rec.is_tree_backed()
            {
                layers.push(rec);
            }
        }
        Ok(layers)
    }

    /// The directory that holds (or would hold) the unpacked tree of the layer `layer`
    /// (blake3 of its tar).
    pub fn layer_tree(&self, layer: &Digest) -> PathBuf {
        self.layout.root.join(LAYER_TREES).join(layer.hex())
    }

    /// Makes the layer `layer` tree-backed: records `tar_split` (a stored blob of kind
    /// `TarSplit`) and deletes the blob of its plain variant, which the tree and the
    /// tar-split now reproduce; a layer received compressed gains that plain variant and
    /// keeps its compressed blobs (their bytes cannot be made again). The caller has
    /// checked that the tree gives the tar, and holds it in place (`layer_tree`) until this
    /// returns.
    ///
    /// The record and the blob's deletion are one index batch; the file is unlinked after it
    /// (a `pending` key covers a crash in between, as in GC).
    pub fn set_tar_split(
        &self,
        layer: &Digest,
        tar_split: &Digest,
    ) -> Result<LayerRecord, StoreError> {
        let db = self.writable()?;
        let _gate = self.shared();
        let key = *layer.as_bytes();
        let _stripe = self.stripe(&key);
        let mut record = self
            .layer(layer)?
            .ok_or(StoreError::NotFound { digest: *layer })?;
        let split = self
            .stat(tar_split)?
            .ok_or(StoreError::NotFound { digest: *tar_split })?;
        record.tar_split = Some(split.digest);
        // A layer received compressed gets its plain variant, served from the tree; the
        // received bytes stay its first variant in their compression.
        if !record.variants.iter().any(|v| record.served_from_tree(v)) {
            let plain = LayerVariant::plain(record.digest, record.diff_id, record.size);
            record.variants.push(plain);
        }
        let mut batch = IndexBatch::default();
        batch.put(index::LAYERS, key, record.encode());
        let plain: Option<BlobInfo> =
            match record.variants.iter().find(|v| record.served_from_tree(v)) {
                Some(v) => self.record(v.digest.as_bytes())?,
                None => None,
            };
        if let Some(info) = &plain {
            batch.delete(index::BLOBS, key);
            batch.delete(index::SHA256, info.sha256.as_bytes());
            batch.put(index::PENDING, key, b"");
            batch.count(index::STORED_BYTES, -(info.size as i64));
            batch.count(index::BLOB_COUNT, -1);
        }
        db.write(batch)?;
        if plain.is_some() {
            remove_if_exists(&self.layout.blob_path(&key))?;
            let mut done = IndexBatch::default();
            done.delete(index::PENDING, key);
            db.write(done)?;
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::RECORD_V1;
    use crate::{BlobKind, FsckOptions, LayerVariant, StoreOptions};

    fn open(dir: &std::path::Path) -> Store {
        let options = StoreOptions {
            min_age: std::time::Duration::ZERO,
            auto_gc: false,
            ..Default::default()
        };
        Store::open(dir.join("s"), options).unwrap()
    }

    /// A layer stored plain (its blob is the tar), as an import stores it.
    fn plain_layer(store: &Store, tar: &[u8]) -> LayerRecord {
        let blob = store.put_bytes(BlobKind::Layer, tar).unwrap();
        let mut variant = LayerVariant::plain(blob.digest, blob.sha256, blob.size);
        variant.reproducible = false;
        store
            .put_layer(&LayerRecord {
                digest: blob.digest,
                diff_id: blob.sha256,
                size: blob.size,
                variants: vec![variant],
                created: std::time::SystemTime::UNIX_EPOCH,
                tar_split: None,
            })
            .unwrap()
    }

    #[test]
    fn layer_records_of_both_versions_decode() {
        let tar = b"a tar";
        let mut rec = LayerRecord {
            digest: Digest::blake3_of(tar),
            diff_id: Digest::sha256_of(tar),
            size: 5,
            variants: vec![LayerVariant::plain(
                Digest::blake3_of(tar),
                Digest::sha256_of(tar),
                5,
            )],
            created: std::time::SystemTime::UNIX_EPOCH,
            tar_split: Some(Digest::blake3_of(b"split")),
        };
        let key = *rec.digest.as_bytes();
        assert_eq!(LayerRecord::decode(&key, &rec.encode()).unwrap(), rec);
        // Version 1, as format-v1 stores hold it: no flags, no tar-split.
        let mut v1 = vec![RECORD_V1];
        v1.extend_from_slice(rec.diff_id.as_bytes());
        v1.extend_from_slice(&[5, 0, 1, 0]);
        v1.extend_from_slice(rec.digest.as_bytes());
        v1.extend_from_slice(rec.diff_id.as_bytes());
        v1.push(5);
        rec.tar_split = None;
        rec.variants[0].reproducible = false;
        assert_eq!(LayerRecord::decode(&key, &v1).unwrap(), rec);
        assert!(LayerRecord::decode(&key, &[3]).is_err());
    }

    #[test]
    fn a_tree_backed_layer_drops_its_plain_blob_and_gc_keeps_its_tar_split() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let layer = plain_layer(&store, b"the layer's tar");
        let split = store
            .put_bytes(BlobKind::TarSplit, b"its tar-split")
            .unwrap();
        let before = store.stats().unwrap();
        let record = store.set_tar_split(&layer.digest, &split.digest).unwrap();
        assert!(record.is_tree_backed() && record.served_from_tree(&record.variants[0]));
        assert!(
            !store.contains(&layer.digest).unwrap(),
            "the plain blob is gone"
        );
        assert!(!store.layout.blob_path(layer.digest.as_bytes()).exists());
        assert_eq!(store.stats().unwrap().blobs, before.blobs - 1);
        assert_eq!(store.layer(&layer.digest).unwrap().unwrap(), record);
        assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
        assert_eq!(store.tree_backed_layers().unwrap(), vec![record.clone()]);
        assert!(
            store
                .layer_tree(&layer.digest)
                .ends_with(layer.digest.hex())
        );

        // A cache entry keeps the layer: its tar-split stays; a plain blob made again (for
        // a push) is not kept by the layer once it is old.
        let config = store.put_bytes(BlobKind::Config, b"{}").unwrap();
        store
            .put_cache_entry(
                &[7; 32],
                &crate::CacheEntry {
                    layer: Some(layer.digest),
                    config: config.digest,
                    ttl: None,
                },
            )
            .unwrap();
        store
            .put_bytes(BlobKind::Layer, b"the layer's tar")
            .unwrap();
        store.gc().unwrap();
        assert!(store.contains(&split.digest).unwrap());
        assert!(store.layer(&layer.digest).unwrap().is_some());
        assert!(
            !store.contains(&layer.digest).unwrap(),
            "made-again plain blob dropped"
        );

        // Without a root, record and tar-split go together.
        store.remove_cache_entry(&[7; 32]).unwrap();
        store.gc().unwrap();
        assert!(store.layer(&layer.digest).unwrap().is_none());
        assert!(!store.contains(&split.digest).unwrap());
        assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    }

    #[test]
    fn fsck_reports_a_missing_tar_split() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let layer = plain_layer(&store, b"tar");
        let split = store.put_bytes(BlobKind::TarSplit, b"split").unwrap();
        store.set_tar_split(&layer.digest, &split.digest).unwrap();
        std::fs::remove_file(store.layout.blob_path(split.digest.as_bytes())).unwrap();
        let report = store.fsck(FsckOptions::default()).unwrap();
        assert!(
            report.issues.iter().any(
                |i| matches!(i, crate::FsckIssue::LayerTree { layer: l, .. } if *l == layer.digest)
            ),
            "{:?}",
            report.issues
        );
    }
}
