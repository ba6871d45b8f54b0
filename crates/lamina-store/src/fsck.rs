//! `fsck`: check every blob and index record; optionally repair by removing what is
//! corrupt or dangling.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use crate::digest::{hex, unhex32};
use crate::fsutil::remove_if_exists;
use crate::index::{self, IndexBatch, key32};
use crate::records::{CacheRecord, ImageRecord, ImageState, LayerRecord, LeaseHeader};
use crate::store::verify_file;
use crate::{BlobInfo, Digest, Store, StoreError};

/// What `fsck` checks and whether it repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsckOptions {
    /// Remove corrupt and dangling entries (and fix counters) instead of only reporting.
    pub repair: bool,
    /// Re-hash every blob (slow on big stores); otherwise only sizes are checked.
    pub verify_content: bool,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            repair: false,
            verify_content: true,
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsckIssue {
    /// A record does not decode (repair deletes it).
    CorruptRecord {
        /// Its kind (`blobs`, `layers`, `cache`, `images`, …).
        kind: &'static str,
        /// Its key, printable.
        key: String,
        /// Why.
        reason: String,
    },
    /// An indexed blob's file is gone (repair deletes the record).
    MissingBlob {
        /// The blob.
        digest: Digest,
        /// Where its file should be.
        path: PathBuf,
    },
    /// A blob's bytes do not match its record (repair deletes both).
    CorruptBlob {
        /// The blob.
        digest: Digest,
        /// Its file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// A file under `blobs-v1/` that no record names (repair deletes it).
    OrphanFile {
        /// The file.
        path: PathBuf,
    },
    /// A sha256 alias whose blob is missing or has another sha256 (repair deletes it).
    DanglingAlias {
        /// The alias.
        sha256: Digest,
    },
    /// A blob without its sha256 alias (repair adds it).
    MissingAlias {
        /// The blob.
        digest: Digest,
    },
    /// A diff_id alias whose layer record is missing or has another diff_id (repair deletes
    /// it).
    DanglingDiffId {
        /// The alias.
        diff_id: Digest,
    },
    /// A layer record without its diff_id alias (repair adds it).
    MissingDiffId {
        /// The layer.
        layer: Digest,
    },
    /// A cache entry or complete image refers to something not stored (repair deletes
    /// the cache entry, or marks the image incomplete).
    DanglingReference {
        /// `cache entry <hex>` or `image <name>`.
        owner: String,
        /// The missing digest.
        digest: Digest,
    },
    /// A tree-backed layer cannot give its tar: its tar-split blob or its unpacked tree is
    /// missing, or the tree was modified. Nothing can repair it (the tree was the layer's
    /// only copy); images using it must be pulled, imported or built again.
    LayerTree {
        /// The layer.
        layer: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A counter disagrees with the records (repair corrects it).
    CounterDrift {
        /// Which counter.
        counter: &'static str,
        /// Its value.
        recorded: i64,
        /// The records' sum.
        actual: i64,
    },
}

impl fmt::Display for FsckIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsckIssue::CorruptRecord { kind, key, reason } => {
                write!(f, "corrupt {kind} record {key}: {reason}")
            }
            FsckIssue::MissingBlob { digest, path } => {
                write!(
                    f,
                    "blob {digest} is indexed but {} is missing",
                    path.display()
                )
            }
            FsckIssue::CorruptBlob {
                digest,
                path,
                reason,
            } => {
                write!(
                    f,
                    "blob {digest} at {} is corrupt: {reason}",
                    path.display()
                )
            }
            FsckIssue::OrphanFile { path } => write!(f, "{} is not indexed", path.display()),
            FsckIssue::DanglingAlias { sha256 } => write!(f, "alias {sha256} names no blob"),
            FsckIssue::MissingAlias { digest } => write!(f, "blob {digest} has no sha256 alias"),
            FsckIssue::DanglingDiffId { diff_id } => {
                write!(f, "diff_id alias {diff_id} names no layer")
            }
            FsckIssue::MissingDiffId { layer } => {
                write!(f, "layer {layer} has no diff_id alias")
            }
            FsckIssue::DanglingReference { owner, digest } => {
                write!(f, "{owner} refers to {digest}, which is not stored")
            }
            FsckIssue::LayerTree { layer, reason } => {
                write!(f, "tree-backed layer {layer}: {reason}")
            }
            FsckIssue::CounterDrift {
                counter,
                recorded,
                actual,
            } => {
                write!(
                    f,
                    "counter {counter} is {recorded}, records add up to {actual}"
                )
            }
        }
    }
}

/// What `fsck` found (and repaired).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckReport {
    /// Blob records checked.
    pub blobs_checked: u64,
    /// Other records checked.
    pub records_checked: u64,
    /// Problems found, in the order found.
    pub issues: Vec<FsckIssue>,
    /// Whether the issues were repaired.
    pub repaired: bool,
}

impl FsckReport {
    /// No problems.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

struct Check {
    report: FsckReport,
    batch: IndexBatch,
    files_to_remove: Vec<PathBuf>,
}

impl Check {
    fn corrupt(&mut self, kind: &'static str, key: &[u8], reason: String) {
        let printable = if kind == index::IMAGES {
            format!("{:?}", String::from_utf8_lossy(key))
        } else {
            hex(key)
        };
        self.report.issues.push(FsckIssue::CorruptRecord {
            kind,
            key: printable,
            reason,
        });
        self.batch.delete(kind, key);
    }
}

impl Store {
    /// Checks the whole store; with `repair`, fixes what it finds. Holds off every writer
    /// in this process while it runs.
    pub fn fsck(&self, options: FsckOptions) -> Result<FsckReport, StoreError> {
        // Held for the whole check: repairs and reads see one index.
        let db = self.writable()?;
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let mut c = Check {
            report: FsckReport::default(),
            batch: IndexBatch::default(),
            files_to_remove: Vec::new(),
        };
        let idx = &db;

        // Blobs: record, file, content.
        let mut good: HashSet<[u8; 32]> = HashSet::new();
        // Blobs whose records repair deletes: their aliases go too, without a second issue.
        let mut removed: HashSet<[u8; 32]> = HashSet::new();
        let mut sha_of = std::collections::HashMap::new();
        let (mut bytes, mut count) = (0i64, 0i64);
        let mut removed_bytes = 0i64;
        for item in idx.scan(index::BLOBS) {
            let (k, v) = item?;
            c.report.blobs_checked += 1;
            let info = match key32(index::BLOBS, &k).and_then(|key| {
                BlobInfo::decode(&key, &v).map_err(|e| StoreError::CorruptRecord {
                    kind: index::BLOBS,
                    key: hex(&k),
                    reason: e.0,
                })
            }) {
                Ok(info) => info,
                Err(e) => {
                    c.corrupt(index::BLOBS, &k, e.to_string());
                    continue;
                }
            };
            let path = self.blob_path(&info);
            let checked = if options.verify_content {
                verify_file(&path, &info)
            } else {
                match std::fs::metadata(&path) {
                    Ok(m) if m.len() == info.size => Ok(()),
                    Ok(m) => Err(StoreError::CorruptBlob {
                        digest: info.digest,
                        path: path.clone(),
                        reason: format!("file has {} bytes, the index says {}", m.len(), info.size),
                    }),
                    Err(_) => Err(StoreError::MissingBlob {
                        digest: info.digest,
                        path: path.clone(),
                    }),
                }
            };
            let issue = match checked {
                Ok(()) => None,
                Err(StoreError::MissingBlob { digest, path }) => {
                    Some(FsckIssue::MissingBlob { digest, path })
                }
                Err(StoreError::CorruptBlob {
                    digest,
                    path,
                    reason,
                }) => {
                    c.files_to_remove.push(path.clone());
                    Some(FsckIssue::CorruptBlob {
                        digest,
                        path,
                        reason,
                    })
                }
                Err(e) => return Err(e),
            };
            if let Some(issue) = issue {
                removed.insert(*info.digest.as_bytes());
                removed_bytes += info.size as i64;
                c.report.issues.push(issue);
                c.batch.delete(index::BLOBS, &k);
                continue;
            }
            let key = *info.digest.as_bytes();
            good.insert(key);
            sha_of.insert(key, info.sha256);
            bytes += info.size as i64;
            count += 1;
        }

        // Aliases both ways.
        let mut aliased = HashSet::new();
        for item in idx.scan(index::SHA256) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            let target = <[u8; 32]>::try_from(&v[..]).ok();
            let ok = match (<[u8; 32]>::try_from(&k[..]), target) {
                (Ok(sha), Some(t)) => sha_of.get(&t).is_some_and(|s| *s.as_bytes() == sha),
                _ => false,
            };
            if ok {
                aliased.insert(target.unwrap_or_default());
            } else if target.is_some_and(|t| removed.contains(&t)) {
                c.batch.delete(index::SHA256, &k);
            } else {
                let sha256 = Digest::sha256(<[u8; 32]>::try_from(&k[..]).unwrap_or_default());
                c.report.issues.push(FsckIssue::DanglingAlias { sha256 });
                c.batch.delete(index::SHA256, &k);
            }
        }
        for (key, sha) in &sha_of {
            if !aliased.contains(key) {
                c.report.issues.push(FsckIssue::MissingAlias {
                    digest: Digest::blake3(*key),
                });
                c.batch.put(index::SHA256, sha.as_bytes(), key);
            }
        }

        // Files nobody names.
        for shard in
            std::fs::read_dir(&self.layout.blobs).map_err(StoreError::io(&self.layout.blobs))?
        {
            let shard = shard.map_err(StoreError::io(&self.layout.blobs))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if !shard.path().is_dir() {
                c.report
                    .issues
                    .push(FsckIssue::OrphanFile { path: shard.path() });
                c.files_to_remove.push(shard.path());
                continue;
            }
            for file in std::fs::read_dir(shard.path()).map_err(StoreError::io(shard.path()))? {
                let file = file.map_err(StoreError::io(shard.path()))?;
                let name = format!("{shard_name}{}", file.file_name().to_string_lossy());
                let known = unhex32(&name).is_some_and(|d| good.contains(&d) && hex(&d) == name);
                if !known && !c.files_to_remove.contains(&file.path()) {
                    c.report
                        .issues
                        .push(FsckIssue::OrphanFile { path: file.path() });
                    c.files_to_remove.push(file.path());
                }
            }
        }

        self.fsck_records(&mut c, &good)?;

        // Records that repair removes are still counted when judging drift: the counters
        // were right about them; repair then subtracts them along with any real drift.
        let removed_count = removed.len() as i64;
        for (counter, key, kept, removing) in [
            ("blob_count", index::BLOB_COUNT, count, removed_count),
            ("stored_bytes", index::STORED_BYTES, bytes, removed_bytes),
        ] {
            let recorded = idx.counter(key)?;
            let actual = kept + removing;
            if recorded != actual {
                c.report.issues.push(FsckIssue::CounterDrift {
                    counter,
                    recorded,
                    actual,
                });
            }
            if recorded != kept {
                c.batch.count(key, kept - recorded);
            }
        }

        if options.repair && !c.report.issues.is_empty() {
            let Check {
                report,
                batch,
                files_to_remove,
                ..
            } = c;
            idx.write(batch)?;
            for path in &files_to_remove {
                remove_if_exists(path)?;
            }
            return Ok(FsckReport {
                repaired: true,
                ..report
            });
        }
        Ok(c.report)
    }

    /// Layers, cache entries, images and leases: decode, and references resolve.
    fn fsck_records(&self, c: &mut Check, good: &HashSet<[u8; 32]>) -> Result<(), StoreError> {
        let db = self.index()?;
        let idx = &db;
        let mut layers = HashSet::new();
        let mut diff_id_of = HashMap::new();
        for item in idx.scan(index::LAYERS) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            match key32(index::LAYERS, &k).map(|key| LayerRecord::decode(&key, &v)) {
                Ok(Ok(rec)) => {
                    layers.insert(*rec.digest.as_bytes());
                    diff_id_of.insert(*rec.digest.as_bytes(), rec.diff_id);
                    if let Some(split) = rec.tar_split
                        && !good.contains(split.as_bytes())
                    {
                        c.report.issues.push(FsckIssue::LayerTree {
                            layer: rec.digest,
                            reason: format!("its tar-split blob {split} is not stored"),
                        });
                    }
                }
                Ok(Err(e)) => c.corrupt(index::LAYERS, &k, e.0),
                Err(e) => c.corrupt(index::LAYERS, &k, e.to_string()),
            }
        }
        self.fsck_diff_ids(c, &diff_id_of)?;
        let present = |d: &Digest| good.contains(d.as_bytes()) || layers.contains(d.as_bytes());
        for item in idx.scan(index::CACHE) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            let rec = match key32(index::CACHE, &k) {
                Ok(key) => CacheRecord::decode(&key, &v).map_err(|e| e.0),
                Err(e) => Err(e.to_string()),
            };
            match rec {
                Err(reason) => c.corrupt(index::CACHE, &k, reason),
                Ok(rec) => {
                    let missing = rec.layer.iter().chain([&rec.config]).find(|d| !present(d));
                    if let Some(d) = missing {
                        c.report.issues.push(FsckIssue::DanglingReference {
                            owner: format!("cache entry {}", hex(&k)),
                            digest: *d,
                        });
                        c.batch.delete(index::CACHE, &k);
                    }
                }
            }
        }
        for item in idx.scan(index::IMAGES) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            match ImageRecord::decode(&k, &v) {
                Err(e) => c.corrupt(index::IMAGES, &k, e.0),
                Ok(mut rec) => {
                    if rec.state != ImageState::Complete {
                        continue;
                    }
                    let all = std::iter::once(&rec.manifest).chain(&rec.references);
                    if let Some(d) = all.copied().find(|d| !present(d)) {
                        c.report.issues.push(FsckIssue::DanglingReference {
                            owner: format!("image {}", rec.name),
                            digest: d,
                        });
                        rec.state = ImageState::Incomplete;
                        c.batch.put(index::IMAGES, &k, rec.encode());
                    }
                }
            }
        }
        for item in idx.scan(index::LEASES) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            match k.len() {
                16 => {
                    if let Err(e) = LeaseHeader::decode(&v) {
                        c.corrupt(index::LEASES, &k, e.0);
                    }
                }
                48 => {}
                n => c.corrupt(index::LEASES, &k, format!("key has {n} bytes")),
            }
        }
        Ok(())
    }

    /// diff_id aliases both ways, like the sha256 aliases of blobs.
    fn fsck_diff_ids(
        &self,
        c: &mut Check,
        diff_id_of: &HashMap<[u8; 32], Digest>,
    ) -> Result<(), StoreError> {
        let db = self.index()?;
        let idx = &db;
        let mut aliased = HashSet::new();
        for item in idx.scan(index::DIFF_IDS) {
            let (k, v) = item?;
            c.report.records_checked += 1;
            let target = <[u8; 32]>::try_from(&v[..]).ok();
            let ok = target
                .and_then(|t| diff_id_of.get(&t))
                .is_some_and(|d| d.as_bytes()[..] == k[..]);
            if ok {
                aliased.insert(target.unwrap_or_default());
            } else {
                let diff_id = Digest::sha256(<[u8; 32]>::try_from(&k[..]).unwrap_or_default());
                c.report.issues.push(FsckIssue::DanglingDiffId { diff_id });
                c.batch.delete(index::DIFF_IDS, &k);
            }
        }
        for (key, diff_id) in diff_id_of {
            if !aliased.contains(key) {
                c.report.issues.push(FsckIssue::MissingDiffId {
                    layer: Digest::blake3(*key),
                });
                c.batch.put(index::DIFF_IDS, diff_id.as_bytes(), key);
            }
        }
        Ok(())
    }
}
