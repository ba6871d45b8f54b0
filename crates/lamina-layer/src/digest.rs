//! The hashing writers of the one-pass pipeline. Their digests are the workspace's one
//! [`Digest`] type.

use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use lamina_types::Digest;
use sha2::{Digest as _, Sha256};

/// Bytes handed to a [`Sha256Thread`] at a time. Chunks are new memory for every layer, each
/// page a page fault when first written: small ones keep a small layer's cost small.
const CHUNK: usize = 256 << 10;
/// Chunks in flight per [`Sha256Thread`] (2 MiB): enough to ride out a slow scheduler tick.
const POOL: usize = 8;

/// sha256 on a helper thread. sha256 is the slowest stage of the writer (about 1.6 GB/s with
/// SHA-NI, slower than zstd level 3 on a core); off the writing thread it runs beside
/// reading, blake3 and compression instead of after them. Input is copied into pooled chunks,
/// so the caller's buffers are free as soon as `update` returns.
pub(crate) struct Sha256Thread {
    chunk: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    allocated: usize,
    thread: Option<JoinHandle<[u8; 32]>>,
}

impl Sha256Thread {
    pub(crate) fn new() -> io::Result<Self> {
        let (full, to_hash) = sync_channel::<Vec<u8>>(POOL);
        let (hashed, empty) = sync_channel(POOL);
        let thread = std::thread::Builder::new()
            .name("lamina-sha256".into())
            .spawn(move || {
                let mut sha = Sha256::new();
                for mut chunk in to_hash {
                    sha.update(&chunk);
                    chunk.clear();
                    // The writer may have finished and dropped its end: nothing to recycle.
                    let _ = hashed.send(chunk);
                }
                sha.finalize().into()
            })?;
        Ok(Sha256Thread {
            chunk: Vec::with_capacity(CHUNK),
            full: Some(full),
            empty,
            allocated: 1,
            thread: Some(thread),
        })
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (CHUNK - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.chunk.len() == CHUNK {
                self.send()?;
            }
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let next = match self.empty.try_recv() {
            Ok(chunk) => chunk,
            Err(_) if self.allocated < POOL => {
                self.allocated += 1;
                Vec::with_capacity(CHUNK)
            }
            Err(_) => self.empty.recv().map_err(|_| stopped())?,
        };
        let full = std::mem::replace(&mut self.chunk, next);
        let tx = self.full.as_ref().ok_or_else(stopped)?;
        tx.send(full).map_err(|_| stopped())
    }

    pub(crate) fn finish(mut self) -> io::Result<Digest> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        // Closing the channel ends the thread's loop.
        drop(self.full.take());
        let thread = self.thread.take().ok_or_else(stopped)?;
        thread.join().map(Digest::sha256).map_err(|_| stopped())
    }
}

impl Drop for Sha256Thread {
    /// On an error path the thread is told to stop and left to finish on its own.
    fn drop(&mut self) {
        drop(self.full.take());
    }
}

fn stopped() -> io::Error {
    io::Error::other("the sha256 thread stopped unexpectedly")
}

/// Hashes the uncompressed tar (sha256 for the diff_id, blake3 for the store) on its way to
/// the compressor.
pub(crate) struct TarHasher<W> {
    inner: W,
    sha256: Sha256Thread,
    blake3: blake3::Hasher,
    len: u64,
}

impl<W: Write> TarHasher<W> {
    pub(crate) fn new(inner: W) -> io::Result<Self> {
        Ok(TarHasher {
            inner,
            sha256: Sha256Thread::new()?,
            blake3: blake3::Hasher::new(),
            len: 0,
        })
    }

    pub(crate) fn finish(self) -> io::Result<(W, Digest, Digest, u64)> {
        let sha = self.sha256.finish()?;
        let b3 = Digest::blake3(*self.blake3.finalize().as_bytes());
        Ok((self.inner, sha, b3, self.len))
    }
}

impl<W: Write> Write for TarHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n])?;
        self.blake3.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts the compressed stream on its way to the caller's sink.
pub(crate) struct BlobHasher<W> {
    inner: W,
    sha256: Option<Sha256Thread>,
    len: u64,
}

impl<W: Write> BlobHasher<W> {
    /// `hash: false` only counts: for uncompressed layers the blob digest is the diff_id.
    pub(crate) fn new(inner: W, hash: bool) -> io::Result<Self> {
        Ok(BlobHasher {
            inner,
            sha256: hash.then(Sha256Thread::new).transpose()?,
            len: 0,
        })
    }

    pub(crate) fn finish(self) -> io::Result<(W, Option<Digest>, u64)> {
        let digest = self.sha256.map(Sha256Thread::finish).transpose()?;
        Ok((self.inner, digest, self.len))
    }
}

impl<W: Write> Write for BlobHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.sha256 {
            h.update(&buf[..n])?;
        }
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read through it (the unpacker's diff_id check).
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    sha256: Sha256,
    len: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            sha256: Sha256::new(),
            len: 0,
        }
    }

    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest::sha256(self.sha256.finalize().into()), self.len)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha256.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_hasher_matches_one_shot_hashes() {
        let mut h = TarHasher::new(Vec::new()).unwrap();
        h.write_all(b"hello ").unwrap();
        h.write_all(b"world").unwrap();
        let (out, sha, b3, len) = h.finish().unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(sha, Digest::sha256_of(b"hello world"));
        assert_eq!(b3, Digest::blake3_of(b"hello world"));
        assert_eq!(len, 11);
    }

    #[test]
    fn sha256_thread_matches_one_shot_across_many_chunks() {
        // More chunks than the pool holds, in odd-sized pieces that straddle chunk borders.
        let data: Vec<u8> = (0..(POOL * 2 + 1) * CHUNK + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut t = Sha256Thread::new().unwrap();
        for piece in data.chunks(CHUNK / 3 + 7) {
            t.update(piece).unwrap();
        }
        assert_eq!(t.finish().unwrap(), Digest::sha256_of(&data));
        let empty = Sha256Thread::new().unwrap().finish().unwrap();
        assert_eq!(empty, Digest::sha256_of(b""));
    }

    #[test]
    fn blob_hasher_hashes_only_when_asked() {
        let mut h = BlobHasher::new(Vec::new(), true).unwrap();
        h.write_all(b"blob").unwrap();
        let (out, digest, len) = h.finish().unwrap();
        assert_eq!((out.as_slice(), len), (&b"blob"[..], 4));
        assert_eq!(digest, Some(Digest::sha256_of(b"blob")));
        let mut h = BlobHasher::new(Vec::new(), false).unwrap();
        h.write_all(b"blob").unwrap();
        assert_eq!(h.finish().unwrap().1, None);
    }
}
