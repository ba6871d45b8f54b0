//! Garbage collection: mark from roots, sweep the rest, then enforce the size budget.
//!
//! Roots: named images, unexpired cache entries, live leases, and anything created or used
//! within `min_age`. A digest reached from a root keeps its blob and, if it names a layer
//! record, the record and every variant blob. With a `max_size`, unexpired cache entries
//! are dropped least-recently-used first until what is kept fits; then the `reproducible`
//! compressed variants of tree-backed layers (made from the tree for a push or export, and
//! made again bit-for-bit by the next one) fill what room is left, most recently used
//! first, and the rest leave their records.
//!
//! Readers that record uses in the touch log hold it shared from their lookups until their
//! uses are appended; GC holds it exclusive from before its index section to the end of its
//! sweep, and merges it first (see `touchlog`), so nothing a reader found is judged unused.
//!
//! Crash safety: the index batch that deletes blob records also lists their files in the
//! `pending` family; files are unlinked after the batch commits, and `pending` is cleared
//! last. A crash anywhere leaves either records with files, or pending files that the next
//! open removes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::digest::hex;
use crate::fsutil::remove_if_exists;
use crate::index::{self, IndexBatch, key32};
use crate::lease::duration_ms;
use crate::records::{LeaseHeader, now_ms, to_ms};
use crate::touchlog::{Held, Mode};
use crate::{BlobInfo, CacheRecord, ImageRecord, LayerRecord, Store, StoreError};

/// What a GC did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes freed by deleting them.
    pub bytes_freed: u64,
    /// Layer records deleted.
    pub layers_removed: u64,
    /// Cache entries deleted because their TTL ran out.
    pub cache_expired: u64,
    /// Unexpired cache entries deleted to meet the size budget.
    pub cache_evicted: u64,
    /// Reproducible variants of tree-backed layers dropped to meet the size budget.
    pub variants_dropped: u64,
    /// Expired leases deleted.
    pub leases_expired: u64,
    /// Expired cache entries kept because they were made within `min_age`.
    pub cache_kept_young: u64,
    /// Blobs kept.
    pub blobs_kept: u64,
    /// Bytes kept.
    pub bytes_kept: u64,
    /// False if roots alone exceed `max_size`.
    pub budget_met: bool,
    /// Wall time taken.
    pub duration: Duration,
}

/// Reachability over digests: a layer key pulls in its variants.
struct Marker<'a> {
    layers: &'a HashMap<[u8; 32], LayerRecord>,
    /// Blobs kept (and the keys of blob-backed layers kept).
    marked: HashSet<[u8; 32]>,
    /// Keys of tree-backed layers kept. Apart from `marked` because such a key is also the
    /// digest its plain blob would have, and keeping the layer does not keep that blob.
    tree_layers: HashSet<[u8; 32]>,
    /// The size of the trees of `tree_layers`, counted at their tar's size: under a size
    /// budget a tree-backed layer's tree weighs what its blob would.
    tree_bytes: u64,
    /// Reproducible compressed variants of tree-backed layers reached through their layer
    /// (blob → layer key): kept last, while the size budget has room (see `gc_locked`).
    remakeable: HashMap<[u8; 32], [u8; 32]>,
    /// Whether `mark` may count variants as remakeable: not for leases (a build or push in
    /// progress keeps what it holds whole) nor for images (their manifests name variants).
    remakeable_allowed: bool,
}

impl Marker<'_> {
    /// Marks `digest` and what it implies; returns the newly marked digests.
    fn mark(&mut self, digest: [u8; 32], newly: &mut Vec<[u8; 32]>) {
        let Some(layer) = self.layers.get(&digest) else {
            self.mark_blob(digest, newly);
            return;
        };
        if layer.is_tree_backed() {
            if self.tree_layers.insert(digest) {
                self.tree_bytes += layer.size;
                newly.push(digest);
            }
        } else {
            self.mark_blob(digest, newly);
        }
        // A tree-backed layer's plain blob is a copy its tree and tar-split reproduce (made
        // for a push): kept only while young. Its tar-split goes with it.
        for v in layer.variants.iter().filter(|v| !layer.served_from_tree(v)) {
            let remakeable = self.remakeable_allowed
                && layer.is_tree_backed()
                && v.reproducible
                && !v.is_remote();
            if remakeable {
                self.remakeable.insert(*v.digest.as_bytes(), digest);
            } else {
                self.mark_blob(*v.digest.as_bytes(), newly);
            }
        }
        if let Some(split) = &layer.tar_split {
            self.mark_blob(*split.as_bytes(), newly);
        }
    }

    /// Marks the blob `digest` only.
    fn mark_blob(&mut self, digest: [u8; 32], newly: &mut Vec<[u8; 32]>) {
        if self.marked.insert(digest) {
            newly.push(digest);
        }
    }

    /// Unmarks what `mark` marked (a cache entry evicted under the budget).
    fn unmark(&mut self, digest: &[u8; 32]) {
        self.marked.remove(digest);
        if self.tree_layers.remove(digest) {
            self.tree_bytes -= self.layers.get(digest).map_or(0, |l| l.size);
        }
    }

    /// Whether the layer record `key` is kept.
    fn keeps_layer(&self, key: &[u8; 32]) -> bool {
        self.marked.contains(key) || self.tree_layers.contains(key)
    }
}

fn cache_refs(rec: &CacheRecord) -> impl Iterator<Item = [u8; 32]> + '_ {
    rec.layer
        .iter()
        .chain(std::iter::once(&rec.config))
        .map(|d| *d.as_bytes())
}

fn corrupt(kind: &'static str, key: &[u8], reason: String) -> StoreError {
    StoreError::CorruptRecord {
        kind,
        key: hex(key),
        reason,
    }
}

impl Store {
    /// Collects garbage now. Refuses (with `CorruptRecord`) if a root record does not
    /// decode, since sweeping without knowing every root could lose a named image's blobs.
    ///
    /// Waits (up to `lock_timeout`) for readers that looked records up and have not yet
    /// recorded their use (read sections, read-only sessions of read-first stores), and
    /// merges the touch log before deciding what is expired.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        // This process's own idle read-only session holds the log shared: end it first.
        self.end_read_session();
        let log = self.lock_touch_log(Mode::Exclusive)?;
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.gc_locked(&log)
    }

    /// Runs GC if automatic GC is on and enough time has passed (less when over budget).
    pub(crate) fn maybe_auto_gc(&self) {
        if !self.options.auto_gc {
            return;
        }
        let now = now_ms();
        let last = self.last_gc_ms.load(Ordering::Relaxed);
        let over_budget = self.options.max_size.is_some_and(|max| {
            self.index()
                .and_then(|db| db.counter(index::STORED_BYTES))
                .is_ok_and(|s| s > 0 && s as u64 > max)
        });
        let interval = if over_budget {
            1_000
        } else {
            duration_ms(self.options.gc_interval)
        };
        if now.saturating_sub(last) < interval {
            return;
        }
        if self
            .last_gc_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // The put that triggered this already succeeded; a failed GC is retried on the
            // next trigger and surfaces in an explicit `gc` or `fsck`. It never waits for the
            // touch log: the caller may be a build holding it shared.
            if let Ok(Some(log)) = self.touch_log().try_exclusive() {
                let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
                let _ = self.gc_locked(&log);
            }
        }
    }

    fn gc_locked(&self, log: &Held) -> Result<GcReport, StoreError> {
        let db = self.writable()?;
        let start = Instant::now();
        // What readers used counts before anything is judged expired or old.
        log.merge_into(&db)?;
        let now = now_ms();
        let grace = duration_ms(self.options.min_age);
        let young = |t: u64| now.saturating_sub(t) < grace;
        let mut report = GcReport {
            budget_met: true,
            ..GcReport::default()
        };
        let mut batch = IndexBatch::default();

        let mut layers = HashMap::new();
        for item in db.scan(index::LAYERS) {
            let (k, v) = item?;
            let key = key32(index::LAYERS, &k)?;
            let rec = LayerRecord::decode(&key, &v).map_err(|e| corrupt(index::LAYERS, &k, e.0))?;
            layers.insert(key, rec);
        }
        let mut marker = Marker {
            layers: &layers,
            marked: HashSet::new(),
            tree_layers: HashSet::new(),
            tree_bytes: 0,
            remakeable: HashMap::new(),
            remakeable_allowed: false,
        };
        let mut scratch = Vec::new();

        // Leases: headers sort before their members (a key is a prefix of its members').
        let mut live: Option<[u8; 16]> = None;
        for item in db.scan(index::LEASES) {
            let (k, v) = item?;
            if k.len() == 16 {
                let header =
                    LeaseHeader::decode(&v).map_err(|e| corrupt(index::LEASES, &k, e.0))?;
                let id = <[u8; 16]>::try_from(&k[..]).unwrap_or_default();
                let owner_alive = header.owner.is_empty()
                    || crate::owner::alive(&self.layout.root, &header.owner);
                if header.expires_ms > now && owner_alive {
                    live = Some(id);
                } else {
                    live = None;
                    report.leases_expired += 1;
                    batch.delete(index::LEASES, &k);
                }
            } else if k.len() == 48 {
                if live.is_some_and(|id| k[..16] == id) {
                    marker.mark(key32(index::LEASES, &k[16..])?, &mut scratch);
                } else {
                    batch.delete(index::LEASES, &k);
                }
            } else {
                return Err(corrupt(
                    index::LEASES,
                    &k,
                    format!("key has {} bytes", k.len()),
                ));
            }
        }

        // An image's layers keep every variant: its manifest names one of them by digest,
        // and the image must load as it was stored.
        for item in db.scan(index::IMAGES) {
            let (k, v) = item?;
            let rec = ImageRecord::decode(&k, &v).map_err(|e| corrupt(index::IMAGES, &k, e.0))?;
            for d in std::iter::once(&rec.manifest).chain(&rec.references) {
                marker.mark(*d.as_bytes(), &mut scratch);
            }
        }
        marker.remakeable_allowed = true;

        // Cache entries: expired ones go (unless young); the rest are roots, possibly
        // subject to the budget below.
        let mut candidates = Vec::new();
        for item in db.scan(index::CACHE) {
            let (k, v) = item?;
            let key = key32(index::CACHE, &k)?;
            let rec = CacheRecord::decode(&key, &v).map_err(|e| corrupt(index::CACHE, &k, e.0))?;
            let expired = to_ms(rec.expires(self.options.default_ttl)) <= now;
            if young(to_ms(rec.created)) {
                report.cache_kept_young += u64::from(expired);
                for d in cache_refs(&rec) {
                    marker.mark(d, &mut scratch);
                }
            } else if expired {
                report.cache_expired += 1;
                batch.delete(index::CACHE, key);
            } else {
                candidates.push(rec);
            }
        }

        let mut blobs: HashMap<[u8; 32], BlobInfo> = HashMap::new();
        for item in db.scan(index::BLOBS) {
            let (k, v) = item?;
            let key = key32(index::BLOBS, &k)?;
            // A corrupt blob record is fsck's business; GC leaves it alone.
            if let Ok(info) = BlobInfo::decode(&key, &v) {
                if young(to_ms(info.last_used)) {
                    marker.mark_blob(key, &mut scratch);
                }
                blobs.insert(key, info);
            }
        }
        // A layer is kept whole when it is young or any of its blobs is kept (a lease on
        // the blob a build just wrote keeps the record it writes next).
        for (key, rec) in &layers {
            let variant_kept = rec
                .variants
                .iter()
                .map(|v| &v.digest)
                .chain(&rec.tar_split)
                .any(|d| marker.marked.contains(d.as_bytes()));
            if young(to_ms(rec.created)) || variant_kept {
                marker.mark(*key, &mut scratch);
            }
        }

        let size_of = |d: &[u8; 32]| blobs.get(d).map_or(0, |b| b.size);
        let mut kept: u64 = marker.marked.iter().map(size_of).sum::<u64>() + marker.tree_bytes;
        // Newest first: keep entries while they fit, then evict the rest (strict LRU).
        candidates.sort_by_key(|c| std::cmp::Reverse(c.last_used));
        let mut evicting = false;
        for rec in candidates {
            if !evicting {
                scratch.clear();
                let trees_before = marker.tree_bytes;
                for d in cache_refs(&rec) {
                    marker.mark(d, &mut scratch);
                }
                let extra: u64 =
                    scratch.iter().map(size_of).sum::<u64>() + (marker.tree_bytes - trees_before);
                match self.options.max_size {
                    Some(max) if kept + extra > max => {
                        for d in &scratch {
                            marker.unmark(d);
                        }
                        evicting = true;
                    }
                    _ => {
                        kept += extra;
                        continue;
                    }
                }
            }
            report.cache_evicted += 1;
            batch.delete(index::CACHE, rec.key);
        }
        // Remakeable variants that nothing else keeps (a lease, a young blob, an image naming
        // the blob itself) come last: kept while they fit, most recently used first; the rest
        // leave their layer records and are swept with the unmarked blobs.
        let mut remakeable: Vec<([u8; 32], [u8; 32])> = (marker.remakeable.iter())
            .filter(|(blob, layer)| {
                !marker.marked.contains(*blob)
                    && marker.keeps_layer(layer)
                    && blobs.contains_key(*blob)
            })
            .map(|(blob, layer)| (*blob, *layer))
            .collect();
        remakeable.sort_by_key(|(blob, _)| std::cmp::Reverse(blobs[blob].last_used));
        let mut trimmed: HashMap<[u8; 32], LayerRecord> = HashMap::new();
        for (blob, layer) in remakeable {
            let size = size_of(&blob);
            if self.options.max_size.is_none_or(|max| kept + size <= max) {
                marker.marked.insert(blob);
                kept += size;
            } else if let Some(record) = layers.get(&layer) {
                let record = trimmed.entry(layer).or_insert_with(|| record.clone());
                record.variants.retain(|v| *v.digest.as_bytes() != blob);
                report.variants_dropped += 1;
            }
        }
        for (key, record) in &trimmed {
            batch.put(index::LAYERS, key, record.encode());
        }
        if let Some(max) = self.options.max_size {
            report.budget_met = kept <= max;
        }

        let mut doomed = Vec::new();
        for (key, info) in &blobs {
            if marker.marked.contains(key) {
                report.blobs_kept += 1;
                report.bytes_kept += info.size;
                continue;
            }
            batch.delete(index::BLOBS, key);
            batch.delete(index::SHA256, info.sha256.as_bytes());
            batch.put(index::PENDING, key, b"");
            batch.count(index::STORED_BYTES, -(info.size as i64));
            batch.count(index::BLOB_COUNT, -1);
            report.blobs_removed += 1;
            report.bytes_freed += info.size;
            doomed.push(*key);
        }
        for (key, rec) in &layers {
            if !marker.keeps_layer(key) {
                batch.delete(index::LAYERS, key);
                batch.delete(index::DIFF_IDS, rec.diff_id.as_bytes());
                self.forget_remote(&mut batch, rec);
                report.layers_removed += 1;
            }
        }
        batch.put(index::META, index::LAST_GC, now.to_le_bytes());
        db.write(batch)?;
        self.last_gc_ms.store(now, Ordering::Relaxed);

        let mut done = IndexBatch::default();
        for key in &doomed {
            remove_if_exists(&self.layout.blob_path(key))?;
            done.delete(index::PENDING, key);
        }
        if !done.is_empty() {
            db.write(done)?;
        }
        // Merge what short-lived processes left and drop the tombstones of what this GC
        // deleted, so later opens read one sorted run.
        db.merge_all();
        report.duration = start.elapsed();
        Ok(report)
    }
}
