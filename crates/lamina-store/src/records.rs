//! The index's record types and their v1 encodings.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Digest;
use crate::encoding::{
    DecodeError, Decoder, Encoder, RECORD_V2, compression_code, compression_from_code,
};

/// Milliseconds since the Unix epoch, the time unit of every record.
pub(crate) fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The inverse of [`to_ms`].
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

pub(crate) fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// What a blob holds; used for `du` per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BlobKind {
    /// Anything else.
    Other,
    /// A layer tar, compressed or not.
    Layer,
    /// An image config.
    Config,
    /// A manifest or index.
    Manifest,
    /// A layer's tar-split: its tar minus the file contents its unpacked tree holds.
    TarSplit,
}

impl BlobKind {
    /// Every kind, in `du` order.
    pub const ALL: [BlobKind; 5] = [
        BlobKind::Layer,
        BlobKind::TarSplit,
        BlobKind::Config,
        BlobKind::Manifest,
        BlobKind::Other,
    ];

    fn code(self) -> u8 {
        match self {
            BlobKind::Other => 0,
            BlobKind::Layer => 1,
            BlobKind::Config => 2,
            BlobKind::Manifest => 3,
            BlobKind::TarSplit => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => BlobKind::Other,
            1 => BlobKind::Layer,
            2 => BlobKind::Config,
            3 => BlobKind::Manifest,
            4 => BlobKind::TarSplit,
            c => return Err(DecodeError(format!("unknown blob kind {c}"))),
        })
    }

    /// A lowercase name for reports.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Other => "other",
            BlobKind::Layer => "layer",
            BlobKind::Config => "config",
            BlobKind::Manifest => "manifest",
            BlobKind::TarSplit => "tar-split",
        }
    }
}

/// What the store knows about one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its blake3 digest: the store address.
    pub digest: Digest,
    /// Its sha256 digest, for OCI.
    pub sha256: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// What it holds.
    pub kind: BlobKind,
    /// When it was first stored.
    pub created: SystemTime,
    /// When it was last put or read (updated at most once a minute).
    pub last_used: SystemTime,
}

impl BlobInfo {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Encoder::new()
            .varint(self.size)
            .bytes32(self.sha256.as_bytes())
            .u8(self.kind.code())
            .varint(to_ms(self.created))
            .varint(to_ms(self.last_used))
            .finish()
    }

    pub(crate) fn decode(key: &[u8; 32], value: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(value)?;
        let info = BlobInfo {
            digest: Digest::blake3(*key),
            size: d.varint()?,
            sha256: Digest::sha256(d.bytes32()?),
            kind: BlobKind::from_code(d.u8()?)?,
            created: from_ms(d.varint()?),
            last_used: from_ms(d.varint()?),
        };
        d.end()?;
        Ok(info)
    }
}

/// How a layer variant is compressed: the workspace's one compression type, stored as a
/// byte whose codes the encoding module keeps fixed.
pub use lamina_types::Compression;

/// One compressed encoding of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVariant {
    /// The compression used.
    pub compression: Compression,
    /// blake3 of the compressed bytes (the blob's store address).
    pub digest: Digest,
    /// sha256 of the compressed bytes (the OCI descriptor digest).
    pub sha256: Digest,
    /// Compressed size in bytes.
    pub size: u64,
    /// Made by Lamina's own encoder from the tar (a build, or a variant a push or export
    /// needed), so the same bytes can be made again: GC may drop its blob when the layer is
    /// tree-backed. A variant received from elsewhere is never reproducible.
    pub reproducible: bool,
}

impl LayerVariant {
    /// The plain (uncompressed) variant of the tar with these digests: its blob, when
    /// stored, is the tar itself.
    pub fn plain(blake3: Digest, diff_id: Digest, size: u64) -> Self {
        LayerVariant {
            compression: Compression::None,
            digest: blake3,
            sha256: diff_id,
            size,
            reproducible: true,
        }
    }

    /// The stored blob `info` as a variant in `compression`, its bytes as received or
    /// written once (not marked reproducible).
    pub fn stored(compression: Compression, info: &BlobInfo) -> Self {
        LayerVariant {
            compression,
            digest: info.digest,
            sha256: info.sha256,
            size: info.size,
            reproducible: false,
        }
    }
}

/// A layer: keyed by the blake3 of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// blake3 of the uncompressed tar (the key).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the OCI diff_id).
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Its compressed encodings.
    pub variants: Vec<LayerVariant>,
    /// When the record was first written (set by the store).
    pub created: SystemTime,
    /// A tree-backed layer's tar-split blob (docs/format.md, "What a stored layer is"): the
    /// layer's unpacked tree at [`crate::Store::layer_tree`] plus this blob give the tar, so
    /// its plain variant needs no blob of its own.
    pub tar_split: Option<Digest>,
}

impl LayerRecord {
    /// Whether the tar is kept as the unpacked tree plus a tar-split.
    pub fn is_tree_backed(&self) -> bool {
        self.tar_split.is_some()
    }

    /// The variant an image names for `compression`: the first of that compression (a
    /// record may hold several, e.g. two gzip encodings by different tools; known variants
    /// stay first).
    pub fn variant_in(&self, compression: Compression) -> Option<&LayerVariant> {
        self.variants.iter().find(|v| v.compression == compression)
    }

    /// Whether `variant` is this record's plain variant served from its tree (no blob
    /// needed).
    pub fn served_from_tree(&self, variant: &LayerVariant) -> bool {
        self.is_tree_backed()
            && variant.compression == Compression::None
            && variant.digest == self.digest
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_version(RECORD_V2);
        e.bytes32(self.diff_id.as_bytes())
            .varint(self.size)
            .varint(to_ms(self.created));
        e.varint(self.variants.len() as u64);
        for v in &self.variants {
            e.u8(compression_code(v.compression))
                .bytes32(v.digest.as_bytes())
                .bytes32(v.sha256.as_bytes())
                .varint(v.size)
                .u8(u8::from(v.reproducible));
        }
        e.opt_bytes32(self.tar_split.as_ref().map(Digest::as_bytes));
        e.finish()
    }

    pub(crate) fn decode(key: &[u8; 32], value: &[u8]) -> Result<Self, DecodeError> {
        let (version, mut d) = Decoder::versioned(value, RECORD_V2)?;
        let diff_id = Digest::sha256(d.bytes32()?);
        let size = d.varint()?;
        let created = from_ms(d.varint()?);
        let n = d.list_len(66)?;
        let mut variants = Vec::with_capacity(n);
        for _ in 0..n {
            let compression = compression_from_code(d.u8()?)?;
            let address = d.bytes32()?;
            let sha256 = d.bytes32()?;
            // A remote variant (no blob yet) is stored with its sha256 as its address.
            let digest = if address == sha256 {
                Digest::sha256(sha256)
            } else {
                Digest::blake3(address)
            };
            variants.push(LayerVariant {
                compression,
                digest,
                sha256: Digest::sha256(sha256),
                size: d.varint()?,
                reproducible: version >= RECORD_V2 && d.u8()? != 0,
            });
        }
        let tar_split = if version >= RECORD_V2 {
            d.opt_bytes32()?.map(Digest::blake3)
        } else {
            None
        };
        d.end()?;
        Ok(LayerRecord {
            digest: Digest::blake3(*key),
            diff_id,
            size,
            variants,
            created,
            tar_split,
        })
    }
}

/// What a build step produced, to be stored under its cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The resulting layer (blake3 of its uncompressed tar), if the step made one.
    pub layer: Option<Digest>,
    /// The resulting config blob.
    pub config: Digest,
    /// Time to live after last use; `None` takes the store's default.
    pub ttl: Option<Duration>,
}

/// A stored cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// The step cache key.
    pub key: [u8; 32],
    /// The resulting layer, if any.
    pub layer: Option<Digest>,
    /// The resulting config blob.
    pub config: Digest,
    /// When the entry was written.
    pub created: SystemTime,
    /// When it was last written or hit.
    pub last_used: SystemTime,
    /// Its own time to live, if it overrides the store's default.
    pub ttl: Option<Duration>,
}

impl CacheRecord {
    /// When the entry expires, given the store's default time to live.
    pub fn expires(&self, default_ttl: Duration) -> SystemTime {
        self.last_used + self.ttl.unwrap_or(default_ttl)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let ttl = self
            .ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        Encoder::new()
            .opt_bytes32(self.layer.as_ref().map(Digest::as_bytes))
            .bytes32(self.config.as_bytes())
            .varint(to_ms(self.created))
            .varint(to_ms(self.last_used))
            .opt_varint(ttl)
            .finish()
    }

    pub(crate) fn decode(key: &[u8; 32], value: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(value)?;
        let rec = CacheRecord {
            key: *key,
            layer: d.opt_bytes32()?.map(Digest::blake3),
            config: Digest::blake3(d.bytes32()?),
            created: from_ms(d.varint()?),
            last_used: from_ms(d.varint()?),
            ttl: d.opt_varint()?.map(Duration::from_millis),
        };
        d.end()?;
        Ok(rec)
    }
}

/// Whether every blob a named image needs is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageState {
    /// Some referenced blobs may still be missing (e.g. a pull in progress).
    Incomplete,
    /// Every referenced blob is present.
    Complete,
}

/// A named image (`name:tag`): a GC root until removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `name:tag`.
    pub name: String,
    /// The manifest blob (blake3).
    pub manifest: Digest,
    /// Everything else it needs: config blob, layers (blake3 of the uncompressed tar, which
    /// keeps every variant) or individual blobs.
    pub references: Vec<Digest>,
    /// Completeness.
    pub state: ImageState,
    /// Pinned images refuse removal until unpinned.
    pub pinned: bool,
    /// When the name was first written.
    pub created: SystemTime,
    /// When it last changed.
    pub updated: SystemTime,
}

impl ImageRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.bytes32(self.manifest.as_bytes());
        e.u8(match self.state {
            ImageState::Incomplete => 0,
            ImageState::Complete => 1,
        });
        e.u8(u8::from(self.pinned))
            .varint(to_ms(self.created))
            .varint(to_ms(self.updated));
        e.varint(self.references.len() as u64);
        for r in &self.references {
            e.bytes32(r.as_bytes());
        }
        e.finish()
    }

    pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<Self, DecodeError> {
        let name = String::from_utf8(key.to_vec())
            .map_err(|_| DecodeError("image name is not utf-8".into()))?;
        let mut d = Decoder::new(value)?;
        let manifest = Digest::blake3(d.bytes32()?);
        let state = match d.u8()? {
            0 => ImageState::Incomplete,
            1 => ImageState::Complete,
            s => return Err(DecodeError(format!("unknown image state {s}"))),
        };
        let pinned = match d.u8()? {
            0 => false,
            1 => true,
            p => return Err(DecodeError(format!("bad pinned flag {p}"))),
        };
        let created = from_ms(d.varint()?);
        let updated = from_ms(d.varint()?);
        let n = d.list_len(32)?;
        let mut references = Vec::with_capacity(n);
        for _ in 0..n {
            references.push(Digest::blake3(d.bytes32()?));
        }
        d.end()?;
        Ok(ImageRecord {
            name,
            manifest,
            references,
            state,
            pinned,
            created,
            updated,
        })
    }
}

/// A lease's header record: who took it and until when it protects its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseHeader {
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
    pub(crate) pid: u32,
    /// The owner token of the process that took it (`crate::owner`); the lease ends with
    /// that process. Empty in leases written before owners existed (they only expire).
    pub(crate) owner: String,
}

impl LeaseHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Encoder::new()
            .varint(self.created_ms)
            .varint(self.expires_ms)
            .varint(u64::from(self.pid))
            .bytes(self.owner.as_bytes())
            .finish()
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(value)?;
        let created_ms = d.varint()?;
        let expires_ms = d.varint()?;
        let pid = u32::try_from(d.varint()?).map_err(|_| DecodeError("pid overflows".into()))?;
        let owner = if d.at_end() {
            String::new()
        } else {
            String::from_utf8(d.bytes()?.to_vec())
                .map_err(|_| DecodeError("owner is not UTF-8".into()))?
        };
        d.end()?;
        Ok(LeaseHeader {
            created_ms,
            expires_ms,
            pid,
            owner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SystemTime {
        from_ms(ms)
    }

    #[test]
    fn records_round_trip() {
        let b = Digest::blake3_of(b"x");
        let s = Digest::sha256_of(b"x");
        let blob = BlobInfo {
            digest: b,
            sha256: s,
            size: 1,
            kind: BlobKind::Config,
            created: t(5),
            last_used: t(9),
        };
        assert_eq!(
            BlobInfo::decode(b.as_bytes(), &blob.encode()).unwrap(),
            blob
        );

        let layer = LayerRecord {
            digest: b,
            diff_id: s,
            size: 10,
            variants: vec![LayerVariant {
                compression: Compression::Zstd,
                digest: b,
                sha256: s,
                size: 3,
                reproducible: true,
            }],
            created: t(1),
            tar_split: Some(b),
        };
        assert_eq!(
            LayerRecord::decode(b.as_bytes(), &layer.encode()).unwrap(),
            layer
        );

        let cache = CacheRecord {
            key: [3; 32],
            layer: None,
            config: b,
            created: t(1),
            last_used: t(2),
            ttl: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            CacheRecord::decode(&[3; 32], &cache.encode()).unwrap(),
            cache
        );
        assert_eq!(cache.expires(Duration::from_secs(1)), t(60_002));

        let image = ImageRecord {
            name: "app:v1".into(),
            manifest: b,
            references: vec![b, b],
            state: ImageState::Complete,
            pinned: true,
            created: t(1),
            updated: t(2),
        };
        assert_eq!(
            ImageRecord::decode(b"app:v1", &image.encode()).unwrap(),
            image
        );

        let lease = LeaseHeader {
            created_ms: 1,
            expires_ms: 2,
            pid: 77,
            owner: "4d2abc".into(),
        };
        assert_eq!(LeaseHeader::decode(&lease.encode()).unwrap(), lease);
        // A lease written before owners existed: no owner field.
        let old = Encoder::new().varint(1).varint(2).varint(77).finish();
        assert_eq!(LeaseHeader::decode(&old).unwrap().owner, "");
    }

    #[test]
    fn truncated_records_fail_to_decode() {
        let b = Digest::blake3_of(b"x");
        let blob = BlobInfo {
            digest: b,
            sha256: Digest::sha256_of(b"x"),
            size: 1,
            kind: BlobKind::Layer,
            created: t(5),
            last_used: t(9),
        };
        let bytes = blob.encode();
        for cut in 0..bytes.len() {
            assert!(
                BlobInfo::decode(b.as_bytes(), &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
