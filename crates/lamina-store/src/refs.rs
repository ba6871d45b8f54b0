//! Records that reference blobs: layers, cache entries and named images.

use std::time::SystemTime;

use crate::digest::hex;
use crate::index::{self, IndexBatch};
use crate::records::{from_ms, now_ms, to_ms};
use crate::store::TOUCH_GRANULARITY_MS;
use crate::touchlog::Touch;
use crate::{
    CacheEntry, CacheRecord, Digest, ImageRecord, ImageState, LayerRecord, Store, StoreError,
};

const MAX_IMAGE_NAME: usize = 4096;

fn corrupt(
    kind: &'static str,
    key: String,
) -> impl FnOnce(crate::encoding::DecodeError) -> StoreError {
    move |e| StoreError::CorruptRecord {
        kind,
        key,
        reason: e.0,
    }
}

impl Store {
    /// Resolves a digest that must be stored (sha256 through its alias).
    fn require(&self, digest: &Digest) -> Result<Digest, StoreError> {
        self.require_resolved(digest, self.resolve(digest)?)
    }

    /// [`Store::require`] of `digest`, whose blake3 key [`Store::resolve`] gave as `key`.
    fn require_resolved(
        &self,
        digest: &Digest,
        key: Option<[u8; 32]>,
    ) -> Result<Digest, StoreError> {
        let db = self.index()?;
        match key {
            Some(key) if db.get(index::BLOBS, &key)?.is_some() => Ok(Digest::blake3(key)),
            Some(key) if db.get(index::LAYERS, &key)?.is_some() => Ok(Digest::blake3(key)),
            _ => Err(StoreError::NotFound { digest: *digest }),
        }
    }

    /// Records a layer (keyed by `layer.digest`, the blake3 of its uncompressed tar). An
    /// existing record keeps its creation time and its variants, and gains the new ones (a
    /// variant is one compressed blob; one compression may have several).
    pub fn put_layer(&self, layer: &LayerRecord) -> Result<LayerRecord, StoreError> {
        self.put_layer_batch(layer, IndexBatch::default())
    }

    /// [`Store::put_layer`], writing `batch` in the same atomic write. A local variant with
    /// the sha256 of a remote one (its bytes, fetched) replaces it and ends its remote
    /// source record; a remote variant of bytes the record holds locally is dropped.
    pub(crate) fn put_layer_batch(
        &self,
        layer: &LayerRecord,
        mut batch: IndexBatch,
    ) -> Result<LayerRecord, StoreError> {
        let db = self.writable()?;
        let _gate = self.shared();
        let key = *layer.digest.as_bytes();
        let _stripe = self.stripe(&key);
        let mut record = layer.clone();
        record.created = from_ms(now_ms());
        // Remote variants whose bytes this record brings: their source records end.
        let mut made_local = Vec::new();
        let old = self.layer(&layer.digest)?;
        if let Some(old) = &old {
            // Known variants stay first and are never dropped: an image's manifest may name
            // any of them, e.g. two gzip encodings of one tar by different tools.
            record.created = old.created;
            let mut variants = old.variants.clone();
            for v in &layer.variants {
                match variants.iter_mut().find(|o| o.sha256 == v.sha256) {
                    Some(slot) if slot.is_remote() && !v.is_remote() => {
                        made_local.push(slot.clone());
                        *slot = v.clone();
                    }
                    Some(_) => {}
                    None => variants.push(v.clone()),
                }
            }
            record.variants = variants;
            // Once tree-backed, always: the plain blob may be gone already.
            record.tar_split = layer.tar_split.or(old.tar_split);
        }
        self.forget_remote(
            &mut batch,
            &LayerRecord {
                variants: made_local,
                ..layer.clone()
            },
        );
        // The record as it stands, its diff_id alias too (a store migrated from format v1
        // may lack it: a new record writes it): no write, and no fsync. A step rebuilt
        // with --no-cache records its layer again.
        let unchanged = batch.is_empty()
            && old.is_some_and(|old| old.encode() == record.encode())
            && db
                .get(index::DIFF_IDS, record.diff_id.as_bytes())?
                .as_deref()
                == Some(&key[..]);
        if unchanged {
            return Ok(record);
        }
        batch.put(index::LAYERS, key, record.encode());
        batch.put(index::DIFF_IDS, record.diff_id.as_bytes(), key);
        db.write(batch)?;
        Ok(record)
    }

    /// The layer record whose uncompressed tar has this sha256 (an OCI `diff_id`, as image
    /// configs list them), or `Ok(None)`.
    pub fn layer_by_diff_id(&self, diff_id: &Digest) -> Result<Option<LayerRecord>, StoreError> {
        let db = self.index()?;
        if diff_id.algorithm() != crate::Algorithm::Sha256 {
            return Ok(None);
        }
        match db.get(index::DIFF_IDS, diff_id.as_bytes())? {
            None => Ok(None),
            Some(v) => {
                let key = index::key32(index::DIFF_IDS, &v)?;
                self.layer(&Digest::blake3(key))
            }
        }
    }

    /// The layer record for the blake3 of an uncompressed tar.
    pub fn layer(&self, digest: &Digest) -> Result<Option<LayerRecord>, StoreError> {
        let db = self.index()?;
        let Some(key) = self.resolve(digest)? else {
            return Ok(None);
        };
        match db.get(index::LAYERS, &key)? {
            None => Ok(None),
            Some(v) => LayerRecord::decode(&key, &v)
                .map(Some)
                .map_err(corrupt(index::LAYERS, Digest::blake3(key).to_string())),
        }
    }

    /// Stores what a build step produced under its cache key. The layer and config must
    /// already be stored.
    pub fn put_cache_entry(
        &self,
        key: &[u8; 32],
        entry: &CacheEntry,
    ) -> Result<CacheRecord, StoreError> {
        let db = self.index()?;
        let _gate = self.shared();
        let layer = entry.layer.as_ref().map(|l| self.require(l)).transpose()?;
        let config = self.require(&entry.config)?;
        let now = from_ms(now_ms());
        let record = CacheRecord {
            key: *key,
            layer,
            config,
            created: now,
            last_used: now,
            ttl: entry.ttl,
        };
        // Storing what the key already holds (a rebuild's final entries) refreshes only its
        // times: losing that to a power cut is harmless, so it does not wait for an fsync.
        let same = self.cache_record(key).ok().flatten().is_some_and(|old| {
            old.layer == record.layer && old.config == record.config && old.ttl == record.ttl
        });
        if same && db.is_read_only() {
            // Only its use to record: the touch log, not a read-write open.
            db.record(Touch::Cache {
                key: *key,
                ms: now_ms(),
            });
        } else if same {
            db.put_relaxed(index::CACHE, key, &record.encode())?;
        } else {
            drop(db);
            self.writable()?.put(index::CACHE, key, &record.encode())?;
        }
        Ok(record)
    }

    /// Looks a cache key up; an expired entry is a miss. A hit counts as a use and pushes
    /// the expiry back.
    pub fn cache_entry(&self, key: &[u8; 32]) -> Result<Option<CacheRecord>, StoreError> {
        let db = self.index()?;
        let Some(mut record) = self.cache_record(key)? else {
            return Ok(None);
        };
        let now = now_ms();
        if to_ms(record.expires(self.options.default_ttl)) <= now {
            return Ok(None);
        }
        if now.saturating_sub(to_ms(record.last_used)) < TOUCH_GRANULARITY_MS {
            return Ok(Some(record));
        }
        if db.is_read_only() {
            db.record(Touch::Cache { key: *key, ms: now });
            record.last_used = from_ms(now);
        } else {
            let _gate = self.shared();
            // GC may have removed it between the read and the gate.
            if db.get(index::CACHE, key)?.is_some() {
                record.last_used = from_ms(now);
                db.put_relaxed(index::CACHE, key, &record.encode())?;
            }
        }
        Ok(Some(record))
    }

    pub(crate) fn cache_record(&self, key: &[u8; 32]) -> Result<Option<CacheRecord>, StoreError> {
        let db = self.index()?;
        match db.get(index::CACHE, key)? {
            None => Ok(None),
            Some(v) => CacheRecord::decode(key, &v)
                .map(Some)
                .map_err(corrupt(index::CACHE, hex(key))),
        }
    }

    /// Deletes a cache entry; returns whether it existed.
    pub fn remove_cache_entry(&self, key: &[u8; 32]) -> Result<bool, StoreError> {
        let db = self.writable()?;
        let existed = db.get(index::CACHE, key)?.is_some();
        let mut batch = crate::index::IndexBatch::default();
        batch.delete(index::CACHE, key);
        db.write(batch)?;
        Ok(existed)
    }

    /// Names an image: `name` (`name:tag`) now points at `manifest` and keeps everything in
    /// `references` (blobs or layers) alive. The manifest must be stored; references may
    /// still be missing while `state` is `Incomplete`. A retag keeps `pinned` and `created`.
    pub fn tag_image(
        &self,
        name: &str,
        manifest: &Digest,
        references: &[Digest],
        state: ImageState,
    ) -> Result<ImageRecord, StoreError> {
        let db = self.index()?;
        check_name(name)?;
        let _gate = self.shared();
        let old = self.image(name)?;
        // A retag to what the name already holds (a warm rebuild's) needs no existence
        // checks: they passed when it was tagged in that state, and since then the name has
        // kept all of it (GC keeps what a named image references; fsck's repair marks a name
        // whose references are missing `Incomplete`, which a complete retag does not match).
        // Each check was a lookup or two (blobs, then layers) per reference, a tenth of an
        // all-hit rebuild.
        let keys = std::iter::once(manifest)
            .chain(references)
            .map(|r| self.resolve(r))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let held = keys
            .iter()
            .map(|k| k.map(Digest::blake3))
            .collect::<Option<Vec<_>>>();
        let retag = held.filter(|held| {
            old.as_ref().is_some_and(|o| {
                o.state == state && o.manifest == held[0] && o.references == held[1..]
            })
        });
        let (manifest, refs) = match retag {
            Some(mut held) => (held.remove(0), held),
            None => {
                let manifest = self.require_resolved(manifest, keys[0])?;
                let refs = (references.iter().zip(&keys[1..]))
                    .map(|(r, key)| match (state, key) {
                        (ImageState::Complete, _) => self.require_resolved(r, *key),
                        (_, Some(key)) => Ok(Digest::blake3(*key)),
                        (_, None) => Err(StoreError::NotFound { digest: *r }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (manifest, refs)
            }
        };
        let unchanged = old
            .as_ref()
            .is_some_and(|o| o.manifest == manifest && o.references == refs && o.state == state);
        let now = from_ms(now_ms());
        // A retag to what the name already holds changes only `updated`: losing that to a
        // power cut is harmless, so a warm rebuild's retag does not wait for an fsync.
        let record = ImageRecord {
            name: name.to_owned(),
            manifest,
            references: refs,
            state,
            pinned: old.as_ref().is_some_and(|o| o.pinned),
            created: old.map_or(now, |o| o.created),
            updated: now,
        };
        if unchanged && db.is_read_only() {
            // A retag to what the name holds is a use: the touch log, not a read-write open.
            db.record(Touch::Image {
                name: name.to_owned(),
                ms: to_ms(now),
            });
        } else if unchanged {
            db.put_relaxed(index::IMAGES, name.as_bytes(), &record.encode())?;
        } else {
            drop(db);
            self.writable()?
                .put(index::IMAGES, name.as_bytes(), &record.encode())?;
        }
        Ok(record)
    }

    /// The image called `name`.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        let db = self.index()?;
        match db.get(index::IMAGES, name.as_bytes())? {
            None => Ok(None),
            Some(v) => ImageRecord::decode(name.as_bytes(), &v)
                .map(Some)
                .map_err(corrupt(index::IMAGES, format!("{name:?}"))),
        }
    }

    /// Every named image, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let db = self.index()?;
        let mut out = Vec::new();
        for item in db.scan(index::IMAGES) {
            let (k, v) = item?;
            let record = ImageRecord::decode(&k, &v).map_err(corrupt(
                index::IMAGES,
                String::from_utf8_lossy(&k).into_owned(),
            ))?;
            out.push(record);
        }
        Ok(out)
    }

    /// Pins or unpins an image; pinned images refuse [`Store::remove_image`].
    pub fn set_pinned(&self, name: &str, pinned: bool) -> Result<ImageRecord, StoreError> {
        let db = self.index()?;
        let _gate = self.shared();
        let mut record = self.image(name)?.ok_or_else(|| StoreError::ImageNotFound {
            name: name.to_owned(),
        })?;
        if record.pinned == pinned {
            // Nothing to change: a rebuild that pins its tag again writes nothing.
            return Ok(record);
        }
        record.pinned = pinned;
        record.updated = SystemTime::now();
        drop(db);
        self.writable()?
            .put(index::IMAGES, name.as_bytes(), &record.encode())?;
        Ok(record)
    }

    /// Removes a name; what only it referenced becomes collectable.
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord, StoreError> {
        let db = self.writable()?;
        let record = self.image(name)?.ok_or_else(|| StoreError::ImageNotFound {
            name: name.to_owned(),
        })?;
        if record.pinned {
            return Err(StoreError::Pinned {
                name: name.to_owned(),
            });
        }
        let mut batch = crate::index::IndexBatch::default();
        batch.delete(index::IMAGES, name.as_bytes());
        db.write(batch)?;
        Ok(record)
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason| {
        Err(StoreError::InvalidImageName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name.len() > MAX_IMAGE_NAME {
        return invalid("the name is longer than 4096 bytes");
    }
    if name.chars().any(char::is_control) {
        return invalid("the name contains control characters");
    }
    Ok(())
}
