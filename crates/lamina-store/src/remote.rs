//! Remote layers: a layer whose bytes are only in a registry (a `--cache-from` hit that
//! nothing has read yet). The layer record names the variant the registry holds, and a
//! *remote source* record says where to fetch it; the bytes come into the store only when
//! something reads them (see docs/format.md, "Remote layers").
//!
//! A remote variant is a [`LayerVariant`] whose store address is unknown: it carries its
//! sha256 in `digest` (in the index, its sha256's bytes where a blake3 would be; no blob
//! can have a blake3 equal to its own sha256). `store.contains(&variant.digest)` is then
//! false until the blob is fetched, and true afterwards (the sha256 alias finds it), so a
//! record read before the fetch still finds the bytes after it.

use crate::encoding::{DecodeError, Decoder, Encoder};
use crate::index::{self, IndexBatch};
use crate::records::{from_ms, now_ms, to_ms};
use crate::{Algorithm, Compression, Digest, LayerRecord, LayerVariant, Store, StoreError};

/// Key prefix of remote source records in the `meta` family (then the variant's sha256).
const PREFIX: &[u8] = b"remote/";

/// Where a remote variant's bytes can be fetched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteSource {
    /// Registry host (`127.0.0.1:5000`, `ghcr.io`).
    pub registry: String,
    /// Repository on it that holds the blob.
    pub repository: String,
}

/// A remote source record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBlob {
    /// sha256 of the compressed blob (the variant's descriptor digest).
    pub sha256: Digest,
    /// The layer it encodes (blake3 of the uncompressed tar).
    pub layer: Digest,
    /// Compressed size.
    pub size: u64,
    /// Where to fetch it.
    pub source: RemoteSource,
    /// When it was recorded.
    pub created: std::time::SystemTime,
}

impl LayerVariant {
    /// A variant only a registry holds (see the module docs).
    pub fn remote(compression: Compression, sha256: Digest, size: u64) -> LayerVariant {
        LayerVariant {
            compression,
            digest: sha256,
            sha256,
            size,
            // Received from elsewhere: its bytes cannot be made again here.
            reproducible: false,
        }
    }

    /// Whether this variant was recorded as remote: its store address is its sha256.
    pub fn is_remote(&self) -> bool {
        self.digest.algorithm() == Algorithm::Sha256
    }
}

fn key(sha256: &Digest) -> Vec<u8> {
    let mut key = PREFIX.to_vec();
    key.extend_from_slice(sha256.as_bytes());
    key
}

impl RemoteBlob {
    fn encode(&self) -> Vec<u8> {
        Encoder::new()
            .bytes32(self.layer.as_bytes())
            .varint(self.size)
            .bytes(self.source.registry.as_bytes())
            .bytes(self.source.repository.as_bytes())
            .varint(to_ms(self.created))
            .finish()
    }

    fn decode(sha256: [u8; 32], value: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(value)?;
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec()).map_err(|_| DecodeError("name is not UTF-8".into()))
        };
        let blob = RemoteBlob {
            sha256: Digest::sha256(sha256),
            layer: Digest::blake3(d.bytes32()?),
            size: d.varint()?,
            source: RemoteSource {
                registry: text(d.bytes()?)?,
                repository: text(d.bytes()?)?,
            },
            created: from_ms(d.varint()?),
        };
        d.end()?;
        Ok(blob)
    }
}

impl Store {
    /// Records `layer` whose variants are all remote (made with [`LayerVariant::remote`]),
    /// fetchable from `source`: the layer record (merged with an existing one, as
    /// [`Store::put_layer`] does; a variant the store already holds stays local) and one
    /// remote source record per variant, in one batch.
    pub fn put_remote_layer(
        &self,
        layer: &LayerRecord,
        source: &RemoteSource,
    ) -> Result<LayerRecord, StoreError> {
        if let Some(local) = layer.variants.iter().find(|v| !v.is_remote()) {
            return Err(StoreError::NotFound {
                digest: local.digest,
            });
        }
        // Held from the read of the old record to the write: no other process writes in
        // between.
        let _writing = self.writable()?;
        let now = from_ms(now_ms());
        let old = self.layer(&layer.digest)?;
        let held = |v: &LayerVariant| {
            old.as_ref().is_some_and(|o| {
                o.variants
                    .iter()
                    .any(|h| h.sha256 == v.sha256 && !h.is_remote())
            })
        };
        let mut batch = IndexBatch::default();
        for variant in layer.variants.iter().filter(|v| !held(v)) {
            let blob = RemoteBlob {
                sha256: variant.sha256,
                layer: layer.digest,
                size: variant.size,
                source: source.clone(),
                created: now,
            };
            batch.put(index::META, key(&variant.sha256), blob.encode());
        }
        self.put_layer_batch(layer, batch)
    }

    /// Where the remote variant with this sha256 can be fetched, if it is recorded.
    pub fn remote_blob(&self, sha256: &Digest) -> Result<Option<RemoteBlob>, StoreError> {
        let db = self.index()?;
        if sha256.algorithm() != Algorithm::Sha256 {
            return Ok(None);
        }
        match db.get(index::META, &key(sha256))? {
            None => Ok(None),
            Some(v) => RemoteBlob::decode(*sha256.as_bytes(), &v)
                .map(Some)
                .map_err(|e| StoreError::CorruptRecord {
                    kind: index::META,
                    key: format!("remote/{sha256}"),
                    reason: e.0,
                }),
        }
    }

    /// Every remote source record (for statistics and GC).
    pub fn remote_blobs(&self) -> Result<Vec<RemoteBlob>, StoreError> {
        let db = self.index()?;
        let mut out = Vec::new();
        for item in db.scan_prefix(index::META, PREFIX) {
            let (k, v) = item?;
            let Ok(sha) = <[u8; 32]>::try_from(&k[PREFIX.len()..]) else {
                continue;
            };
            if let Ok(blob) = RemoteBlob::decode(sha, &v) {
                out.push(blob);
            }
        }
        Ok(out)
    }

    /// The remote variant of `layer` and its source, when the store holds none of the
    /// layer's variants; `None` when some variant is local (or nothing says where to fetch).
    /// A `layer` read without remote variants is taken as local without a lookup (a
    /// record only loses remote variants).
    pub fn remote_variant(
        &self,
        layer: &LayerRecord,
    ) -> Result<Option<(LayerVariant, RemoteBlob)>, StoreError> {
        if !layer.variants.iter().any(LayerVariant::is_remote) {
            return Ok(None);
        }
        let record = self.layer(&layer.digest)?.unwrap_or_else(|| layer.clone());
        let mut found = None;
        for variant in &record.variants {
            if self.contains(&variant.digest)? {
                return Ok(None);
            }
            if found.is_none()
                && variant.is_remote()
                && let Some(blob) = self.remote_blob(&variant.sha256)?
            {
                found = Some((variant.clone(), blob));
            }
        }
        Ok(found)
    }

    /// Adds to `batch` the deletion of the remote source records of `record`'s remote
    /// variants (a GC that drops the record, or a fetch that made them local).
    pub(crate) fn forget_remote(&self, batch: &mut IndexBatch, record: &LayerRecord) {
        for variant in record.variants.iter().filter(|v| v.is_remote()) {
            batch.delete(index::META, key(&variant.sha256));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobKind, StoreOptions};

    fn source() -> RemoteSource {
        RemoteSource {
            registry: "127.0.0.1:5000".into(),
            repository: "team/cache".into(),
        }
    }

    #[test]
    fn a_remote_layer_becomes_local_when_its_blob_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let bytes = b"compressed layer bytes";
        let sha = Digest::sha256_of(bytes);
        let tar = Digest::blake3([7; 32]);
        let diff_id = Digest::sha256([8; 32]);
        let remote = LayerRecord {
            digest: tar,
            diff_id,
            size: 100,
            variants: vec![LayerVariant::remote(
                Compression::Gzip,
                sha,
                bytes.len() as u64,
            )],
            created: std::time::SystemTime::now(),
            tar_split: None,
        };
        let stored = store.put_remote_layer(&remote, &source()).unwrap();
        // Read back: the variant is still remote, the source is recorded.
        let read = store.layer(&tar).unwrap().unwrap();
        assert_eq!(read.variants, stored.variants);
        assert!(read.variants[0].is_remote());
        assert!(!store.contains(&read.variants[0].digest).unwrap());
        let (variant, blob) = store.remote_variant(&read).unwrap().unwrap();
        assert_eq!(variant.sha256, sha);
        assert_eq!(blob.source, source());
        assert_eq!(blob.layer, tar);
        assert_eq!(store.remote_blobs().unwrap().len(), 1);
        // An image can name the layer: it is a layer record.
        store
            .lease(std::time::Duration::from_secs(60))
            .unwrap()
            .add(&tar)
            .unwrap();

        // Fetched: the local variant replaces the remote one and the source goes.
        let info = store.put_bytes(BlobKind::Layer, bytes).unwrap();
        let local = LayerRecord {
            variants: vec![LayerVariant::stored(Compression::Gzip, &info)],
            ..remote.clone()
        };
        let merged = store.put_layer(&local).unwrap();
        assert_eq!(merged.variants, local.variants);
        assert!(store.remote_variant(&merged).unwrap().is_none());
        assert!(store.remote_blobs().unwrap().is_empty());
        // The old record's remote variant now resolves to the stored blob.
        assert!(store.contains(&read.variants[0].digest).unwrap());
        // Recording it remote again keeps the local variant.
        let again = store.put_remote_layer(&remote, &source()).unwrap();
        assert_eq!(again.variants, local.variants);
        assert!(store.fsck(Default::default()).unwrap().is_clean());
    }

    #[test]
    fn gc_drops_an_unreferenced_remote_layer_and_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            min_age: std::time::Duration::ZERO,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), options).unwrap();
        let tar = Digest::blake3([1; 32]);
        let remote = LayerRecord {
            digest: tar,
            diff_id: Digest::sha256([2; 32]),
            size: 10,
            variants: vec![LayerVariant::remote(
                Compression::Zstd,
                Digest::sha256([3; 32]),
                5,
            )],
            created: std::time::SystemTime::now(),
            tar_split: None,
        };
        store.put_remote_layer(&remote, &source()).unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.layers_removed, 1);
        assert!(store.layer(&tar).unwrap().is_none());
        assert!(store.remote_blobs().unwrap().is_empty());
    }
}
