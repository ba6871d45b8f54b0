//! Statistics and disk usage, for `lamina cache stats` and `lamina cache du`.

use crate::fsutil::dir_size;
use crate::index;
use crate::{BlobInfo, BlobKind, Store, StoreError};

/// Store-wide counters. Blob count and stored bytes are exact (kept in the same index
/// batches as the records they count); the dedupe counters cover the store's whole life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Blobs stored.
    pub blobs: u64,
    /// Bytes of blob content stored (each blob once).
    pub stored_bytes: u64,
    /// Bytes handed to `put`, duplicates included.
    pub logical_bytes: u64,
    /// Puts that found their blob already stored.
    pub dedupe_hits: u64,
    /// Puts that stored a new blob.
    pub dedupe_misses: u64,
    /// Layer records.
    pub layers: u64,
    /// Cache entries (expired ones included until GC removes them).
    pub cache_entries: u64,
    /// Named images.
    pub images: u64,
    /// Leases held (expired ones included until GC removes them).
    pub leases: u64,
    /// Layer variants recorded as remote: only a registry holds their bytes (0 bytes here).
    pub remote_layers: u64,
    /// Compressed bytes of those variants, in their registries.
    pub remote_bytes: u64,
}

impl Stats {
    /// Logical bytes per stored byte since the store was created (1.0 means no sharing).
    pub fn dedupe_ratio(&self) -> f64 {
        if self.stored_bytes == 0 {
            return 1.0;
        }
        self.logical_bytes as f64 / self.stored_bytes as f64
    }

    /// Fraction of puts that were dedupe hits.
    pub fn hit_rate(&self) -> f64 {
        let total = self.dedupe_hits + self.dedupe_misses;
        if total == 0 {
            0.0
        } else {
            self.dedupe_hits as f64 / total as f64
        }
    }
}

/// Count and bytes of one kind of blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindUsage {
    /// The kind.
    pub kind: BlobKind,
    /// Blobs of this kind.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Where the store's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskUsage {
    /// Blob bytes per kind, from the index.
    pub kinds: Vec<KindUsage>,
    /// Sum of blob file lengths actually under `blobs-v1/`.
    pub blob_files_bytes: u64,
    /// Bytes of the RocksDB index directory.
    pub index_bytes: u64,
    /// Bytes of staged writes in `tmp/`.
    pub tmp_bytes: u64,
    /// Bytes of the free-space reserve (`RESERVE`), given up when the disk is full.
    pub reserve_bytes: u64,
}

impl DiskUsage {
    /// Everything the store occupies (file lengths, not allocated blocks).
    pub fn total_bytes(&self) -> u64 {
        self.blob_files_bytes + self.index_bytes + self.tmp_bytes + self.reserve_bytes
    }
}

fn counter(store: &Store, key: &[u8]) -> Result<u64, StoreError> {
    let db = store.index()?;
    Ok(u64::try_from(db.counter(key)?).unwrap_or(0))
}

impl Store {
    /// Current statistics.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let db = self.index()?;
        let count = |cf: &str| -> Result<u64, StoreError> {
            let mut n = 0;
            for item in db.scan(cf) {
                item?;
                n += 1;
            }
            Ok(n)
        };
        let mut leases = 0;
        for item in db.scan(index::LEASES) {
            if item?.0.len() == 16 {
                leases += 1;
            }
        }
        let remote = self.remote_blobs()?;
        Ok(Stats {
            remote_layers: remote.len() as u64,
            remote_bytes: remote.iter().map(|r| r.size).sum(),
            blobs: counter(self, index::BLOB_COUNT)?,
            stored_bytes: counter(self, index::STORED_BYTES)?,
            logical_bytes: counter(self, index::LOGICAL_BYTES)?,
            dedupe_hits: counter(self, index::HITS)?,
            dedupe_misses: counter(self, index::MISSES)?,
            layers: count(index::LAYERS)?,
            cache_entries: count(index::CACHE)?,
            images: count(index::IMAGES)?,
            leases,
        })
    }

    /// Disk usage per blob kind, plus the index and staging directories.
    pub fn du(&self) -> Result<DiskUsage, StoreError> {
        let db = self.index()?;
        let mut kinds: Vec<KindUsage> = BlobKind::ALL
            .iter()
            .map(|&kind| KindUsage {
                kind,
                blobs: 0,
                bytes: 0,
            })
            .collect();
        for info in self.blobs()? {
            if let Some(k) = kinds.iter_mut().find(|k| k.kind == info.kind) {
                k.blobs += 1;
                k.bytes += info.size;
            }
        }
        Ok(DiskUsage {
            kinds,
            blob_files_bytes: dir_size(&self.layout.blobs)?.0,
            index_bytes: dir_size(db.path())?.0,
            tmp_bytes: dir_size(&self.layout.tmp)?.0,
            reserve_bytes: std::fs::metadata(&self.layout.reserve).map_or(0, |m| m.len()),
        })
    }

    /// Every blob record, in digest order.
    pub fn blobs(&self) -> Result<Vec<BlobInfo>, StoreError> {
        let db = self.index()?;
        db.scan(index::BLOBS)
            .map(|item| {
                let (k, v) = item?;
                let key = index::key32(index::BLOBS, &k)?;
                BlobInfo::decode(&key, &v).map_err(|e| StoreError::CorruptRecord {
                    kind: index::BLOBS,
                    key: crate::Digest::blake3(key).to_string(),
                    reason: e.0,
                })
            })
            .collect()
    }
}
