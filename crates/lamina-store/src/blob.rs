//! Writing blobs: [`BlobWriter`] stages bytes in a temp file while hashing them, and
//! `commit` turns the staging into a stored [`BlobInfo`].

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::{persist, remove_if_exists};
use crate::index::{self, IndexBatch};
use crate::lease::{Lease, member_key};
use crate::records::{from_ms, now_ms};
use crate::{BlobInfo, BlobKind, Digest, Store, StoreError};

/// A blob being written: `Write` into it, then [`BlobWriter::commit`]. Dropping it without
/// committing deletes the staged bytes.
pub struct BlobWriter<'s> {
    store: &'s Store,
    kind: BlobKind,
    out: Option<BufWriter<File>>,
    temp: PathBuf,
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    size: u64,
    lease: Option<[u8; 16]>,
    /// The blob's whole size when the caller knows it, for a full disk's message.
    needs: Option<u64>,
}

impl std::fmt::Debug for BlobWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("kind", &self.kind)
            .field("temp", &self.temp)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<'s> BlobWriter<'s> {
    pub(crate) fn new(store: &'s Store, kind: BlobKind) -> Result<Self, StoreError> {
        use sha2::Digest as _;
        let (file, temp) = store.layout.create_temp()?;
        Ok(BlobWriter {
            store,
            kind,
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            temp,
            blake3: blake3::Hasher::new(),
            sha256: sha2::Sha256::new(),
            size: 0,
            lease: None,
            needs: None,
        })
    }

    /// A full disk's error names the store, what was written, and what the blob needed.
    fn out_of_space(&self, error: io::Error) -> io::Error {
        // ENOSPC, EDQUOT
        if !matches!(error.raw_os_error(), Some(28 | 122)) {
            return error;
        }
        let needs = self
            .needs
            .map(|n| format!(" of the {n} it needs"))
            .unwrap_or_default();
        io::Error::new(
            error.kind(),
            format!(
                "no space left for the store at {}: {} bytes of a blob written{needs}; \
                 free space (`lamina cache gc --max-size …`, `image rm`) or use another \
                 --store",
                self.store.layout.root.display(),
                self.size,
            ),
        )
    }

    /// Protects the blob with `lease` from the moment it is committed (atomically with the
    /// commit), so GC cannot take it before the build that wrote it references it.
    pub fn lease(mut self, lease: &Lease<'_>) -> Self {
        self.lease = Some(lease.id_bytes());
        self
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Stores the blob under the digest of what was written.
    pub fn commit(self) -> Result<BlobInfo, StoreError> {
        self.finish(None, None)
    }

    /// Stores the blob only if it hashes to `expected` (blake3 or sha256) and, if given, has
    /// `size` bytes; otherwise nothing is kept and the mismatch is the error.
    pub fn commit_verified(
        self,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<BlobInfo, StoreError> {
        self.finish(Some(expected), size)
    }

    fn finish(
        mut self,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<BlobInfo, StoreError> {
        use sha2::Digest as _;
        let out = self.out.take().ok_or_else(|| StoreError::Io {
            path: self.temp.clone(),
            source: io::Error::other("writer already finished"),
        })?;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            path: self.temp.clone(),
            source: self.out_of_space(e.into_error()),
        })?;
        let blake3 = Digest::blake3(*self.blake3.finalize().as_bytes());
        let sha256 = Digest::sha256(std::mem::take(&mut self.sha256).finalize().into());
        let reject = |err: StoreError| -> Result<BlobInfo, StoreError> {
            remove_if_exists(&self.temp)?;
            Err(err)
        };
        if let Some(expected) = expected {
            let actual = match expected.algorithm() {
                crate::Algorithm::Blake3 => blake3,
                crate::Algorithm::Sha256 => sha256,
            };
            if actual != *expected {
                drop(file);
                return reject(StoreError::DigestMismatch {
                    expected: *expected,
                    actual,
                });
            }
        }
        if let Some(expected) = size.filter(|&s| s != self.size) {
            drop(file);
            return reject(StoreError::SizeMismatch {
                digest: blake3,
                expected,
                actual: self.size,
            });
        }
        let staged = Staged {
            file,
            temp: &self.temp,
            blake3,
            sha256,
            size: self.size,
            kind: self.kind,
        };
        let info = self.store.commit(staged, self.lease);
        if info.is_err() {
            remove_if_exists(&self.temp)?;
        }
        let info = info?;
        self.store.maybe_auto_gc();
        Ok(info)
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("writer already finished"))?;
        let n = match out.write(buf) {
            Ok(n) => n,
            Err(e) => return Err(self.out_of_space(e)),
        };
        self.blake3.update(&buf[..n]);
        self.sha256.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |out| out.flush())
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned: the staged bytes are worthless; a failure here leaves a temp file
            // that the next open removes.
            let _ = remove_if_exists(&self.temp);
        }
    }
}

/// Hashed, flushed bytes in a temp file, ready to be committed.
struct Staged<'a> {
    file: File,
    temp: &'a Path,
    blake3: Digest,
    sha256: Digest,
    size: u64,
    kind: BlobKind,
}

impl Store {
    /// Starts writing a blob.
    pub fn writer(&self, kind: BlobKind) -> Result<BlobWriter<'_>, StoreError> {
        BlobWriter::new(self, kind)
    }

    /// Stores everything `reader` yields. The bytes are staged while hashed; if they turn
    /// out to be stored already, the staging is dropped and nothing is written to the store.
    pub fn put(&self, kind: BlobKind, mut reader: impl Read) -> Result<BlobInfo, StoreError> {
        let mut w = self.writer(kind)?;
        let temp = w.temp.clone();
        io::copy(&mut reader, &mut w).map_err(StoreError::io(temp))?;
        w.commit()
    }

    /// Stores `reader`'s bytes only if they hash to `expected` (and have `size` bytes, if
    /// given); see [`BlobWriter::commit_verified`].
    pub fn put_verified(
        &self,
        kind: BlobKind,
        mut reader: impl Read,
        expected: &Digest,
        size: Option<u64>,
    ) -> Result<BlobInfo, StoreError> {
        let mut w = self.writer(kind)?;
        w.needs = size;
        let temp = w.temp.clone();
        io::copy(&mut reader, &mut w).map_err(StoreError::io(temp))?;
        w.commit_verified(expected, size)
    }

    /// Stores `data`. A blob already stored costs one hash and one index lookup.
    pub fn put_bytes(&self, kind: BlobKind, data: &[u8]) -> Result<BlobInfo, StoreError> {
        let key = *blake3::hash(data).as_bytes();
        if let Some(info) = self.dedupe_hit(&key, data.len() as u64)? {
            return Ok(info);
        }
        let mut w = self.writer(kind)?;
        let temp = w.temp.clone();
        w.write_all(data).map_err(StoreError::io(temp))?;
        w.commit()
    }

    /// [`Store::put_bytes`] with the blob in `lease` from the moment it is found or stored,
    /// so a GC in any process cannot take it before the caller references it.
    pub fn put_bytes_leased(
        &self,
        kind: BlobKind,
        data: &[u8],
        lease: &Lease<'_>,
    ) -> Result<BlobInfo, StoreError> {
        let key = *blake3::hash(data).as_bytes();
        if let Some(info) = self.dedupe_hit(&key, data.len() as u64)? {
            match lease.add(&info.digest) {
                Ok(()) => return Ok(info),
                // Collected since the lookup: store it again.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut w = self.writer(kind)?.lease(lease);
        let temp = w.temp.clone();
        w.write_all(data).map_err(StoreError::io(temp))?;
        w.commit()
    }

    /// Stores a file's bytes. The file is hashed (memory-mapped) first; if it is already
    /// stored nothing is copied.
    pub fn put_file(&self, kind: BlobKind, path: impl AsRef<Path>) -> Result<BlobInfo, StoreError> {
        let path = path.as_ref();
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap_rayon(path)
            .map_err(StoreError::io(path))?;
        let len = std::fs::metadata(path).map_err(StoreError::io(path))?.len();
        if let Some(info) = self.dedupe_hit(hasher.finalize().as_bytes(), len)? {
            return Ok(info);
        }
        let mut file = File::open(path).map_err(StoreError::io(path))?;
        let mut w = self.writer(kind)?;
        w.needs = Some(len);
        let temp = w.temp.clone();
        io::copy(&mut file, &mut w).map_err(StoreError::io(temp))?;
        w.commit()
    }

    /// If the blob exists, counts a hit and returns it.
    fn dedupe_hit(&self, key: &[u8; 32], size: u64) -> Result<Option<BlobInfo>, StoreError> {
        let db = self.index()?;
        let Some(info) = self.record(key)? else {
            return Ok(None);
        };
        if db.is_read_only() {
            use crate::touchlog::Touch;
            db.record(Touch::Count {
                counter: index::LOGICAL_BYTES,
                delta: size as i64,
            });
            db.record(Touch::Count {
                counter: index::HITS,
                delta: 1,
            });
        } else {
            let mut batch = IndexBatch::default();
            batch.count(index::LOGICAL_BYTES, size as i64);
            batch.count(index::HITS, 1);
            db.write_relaxed(batch)?;
        }
        self.touch(&info)?;
        // The record may have been collected between the lookup and the touch.
        self.record(key)
    }

    /// Moves staged bytes into place and indexes them, or recognises a duplicate.
    fn commit(&self, staged: Staged<'_>, lease: Option<[u8; 16]>) -> Result<BlobInfo, StoreError> {
        let db = self.writable()?;
        let key = *staged.blake3.as_bytes();
        let _gate = self.shared();
        let _stripe = self.stripe(&key);
        if let Some(lease) = lease {
            self.check_lease(&lease)?;
        }
        let mut batch = IndexBatch::default();
        batch.count(index::LOGICAL_BYTES, staged.size as i64);
        if let Some(lease) = lease {
            batch.put(index::LEASES, member_key(&lease, &key), b"");
        }
        if let Some(info) = self.record(&key)? {
            // Lost the race to an identical writer (or the bytes were stored long ago):
            // that is success, and our staging is simply dropped.
            drop(staged.file);
            remove_if_exists(staged.temp)?;
            batch.count(index::HITS, 1);
            // Counters and a lease member only: nothing a power cut could leave wrong.
            db.write_relaxed(batch)?;
            return Ok(info);
        }
        // Pending first: if we die between the rename and the index commit, the next
        // open removes the unindexed file.
        db.put(index::PENDING, &key, &[])?;
        persist(staged.file, staged.temp, &self.layout.blob_path(&key))?;
        let now = from_ms(now_ms());
        let info = BlobInfo {
            digest: staged.blake3,
            sha256: staged.sha256,
            size: staged.size,
            kind: staged.kind,
            created: now,
            last_used: now,
        };
        batch.put(index::BLOBS, key, info.encode());
        batch.put(index::SHA256, staged.sha256.as_bytes(), key);
        batch.delete(index::PENDING, key);
        batch.count(index::STORED_BYTES, staged.size as i64);
        batch.count(index::BLOB_COUNT, 1);
        batch.count(index::MISSES, 1);
        db.write(batch)?;
        Ok(info)
    }
}
