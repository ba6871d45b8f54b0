//! Leases: a build in progress protects the blobs it writes until it references them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::digest::hex;
use crate::index::{self, IndexBatch};
use crate::records::{LeaseHeader, now_ms};
use crate::{Digest, Store, StoreError};

/// The key of a blob protected by lease `id`.
pub(crate) fn member_key(id: &[u8; 16], blob: &[u8; 32]) -> [u8; 48] {
    let mut key = [0u8; 48];
    key[..16].copy_from_slice(id);
    key[16..].copy_from_slice(blob);
    key
}

/// A GC root held by a build in progress: every blob added to it (or written with
/// [`crate::BlobWriter::lease`]) survives GC until the lease is released or expires.
/// Dropping the lease releases it; a process that dies holding one loses it at once (GC in
/// any process sees its owner lock free), and the expiry bounds it in any case.
#[derive(Debug)]
pub struct Lease<'s> {
    store: &'s Store,
    id: [u8; 16],
    released: bool,
}

impl Lease<'_> {
    pub(crate) fn id_bytes(&self) -> [u8; 16] {
        self.id
    }

    /// The lease id, hex.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// Protects an already stored blob (or layer record) with this lease.
    pub fn add(&self, digest: &Digest) -> Result<(), StoreError> {
        // One index section from lookup to write: no GC in another process between them.
        let db = self.store.writable()?;
        let _gate = self.store.shared();
        self.store.check_lease(&self.id)?;
        let key = self
            .store
            .resolve(digest)?
            .ok_or(StoreError::NotFound { digest: *digest })?;
        if db.get(index::BLOBS, &key)?.is_none() && db.get(index::LAYERS, &key)?.is_none() {
            return Err(StoreError::NotFound { digest: *digest });
        }
        // Without fsync, as the lease itself: it matters only while this process lives.
        db.put_relaxed(index::LEASES, &member_key(&self.id, &key), &[])
    }

    /// Extends the lease to expire `ttl` from now.
    pub fn renew(&self, ttl: Duration) -> Result<(), StoreError> {
        // One index section: GC in another process cannot end the lease in between.
        let db = self.store.writable()?;
        let _gate = self.store.shared();
        let mut header = self.store.check_lease(&self.id)?;
        header.expires_ms = now_ms().saturating_add(duration_ms(ttl));
        db.put(index::LEASES, &self.id, &header.encode())
    }

    /// Ends the lease; its blobs become collectable unless something else references them.
    pub fn release(mut self) -> Result<(), StoreError> {
        self.released = true;
        self.store.release_lease(&self.id)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.released {
            // Best effort: if this fails the lease still expires on its own.
            let _ = self.store.release_lease(&self.id);
        }
    }
}

pub(crate) fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Store {
    /// Takes a lease that expires `ttl` from now unless renewed or released.
    pub fn lease(&self, ttl: Duration) -> Result<Lease<'_>, StoreError> {
        let db = self.writable()?;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut seed = blake3::Hasher::new();
        seed.update(&std::process::id().to_le_bytes());
        seed.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        seed.update(&nanos.to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&seed.finalize().as_bytes()[..16]);
        let now = now_ms();
        let owner = crate::owner::claim(&self.layout.root)
            .map_err(|(path, source)| StoreError::Io { path, source })?;
        let header = LeaseHeader {
            created_ms: now,
            expires_ms: now.saturating_add(duration_ms(ttl)),
            pid: std::process::id(),
            owner: owner.to_owned(),
        };
        // Without fsync: a lease only matters while its process lives, and a power cut ends
        // that; a later synced write (a protected blob's commit) syncs it too, in WAL order.
        db.put_relaxed(index::LEASES, &id, &header.encode())?;
        Ok(Lease {
            store: self,
            id,
            released: false,
        })
    }

    /// The header of a live lease, or `LeaseReleased`.
    pub(crate) fn check_lease(&self, id: &[u8; 16]) -> Result<LeaseHeader, StoreError> {
        let db = self.index()?;
        let released = || StoreError::LeaseReleased { lease: hex(id) };
        let value = db.get(index::LEASES, id)?.ok_or_else(released)?;
        let header = LeaseHeader::decode(&value).map_err(|e| StoreError::CorruptRecord {
            kind: index::LEASES,
            key: hex(id),
            reason: e.0,
        })?;
        if header.expires_ms <= now_ms() {
            return Err(released());
        }
        Ok(header)
    }

    pub(crate) fn release_lease(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        let db = self.writable()?;
        let mut batch = IndexBatch::default();
        for item in db.scan_prefix(index::LEASES, id) {
            let (key, _) = item?;
            batch.delete(index::LEASES, key);
        }
        // Without fsync: a release lost to a power cut leaves a lease that expires.
        db.write_relaxed(batch)
    }
}
