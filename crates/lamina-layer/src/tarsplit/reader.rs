//! [`TarSplitReader`]: a tar-split and its tree back into the exact tar.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use lamina_types::{Algorithm, Digest};
use rustix::fs::OFlags;
use sha2::{Digest as _, Sha256};

use super::{END, FILE, LITERAL, MAGIC};
use crate::confine::open_in;
use crate::error::{LayerError, lossy};

enum Segment {
    /// Literal bytes left to copy from the tar-split.
    Literal(u64),
    /// A tree file being copied: what is left of it.
    File {
        file: File,
        path: Vec<u8>,
        left: u64,
    },
    Between,
    Done,
}

/// The hash of the tar as it is read, in the algorithm of the digest it is checked against.
enum TarHash {
    None,
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl TarHash {
    fn for_digest(expected: Option<&Digest>) -> TarHash {
        match expected.map(Digest::algorithm) {
            None => TarHash::None,
            Some(Algorithm::Sha256) => TarHash::Sha256(Sha256::new()),
            Some(Algorithm::Blake3) => TarHash::Blake3(Box::default()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            TarHash::None => {}
            TarHash::Sha256(h) => h.update(bytes),
            TarHash::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    fn finish(self) -> Option<Digest> {
        match self {
            TarHash::None => None,
            TarHash::Sha256(h) => Some(Digest::sha256(h.finalize().into())),
            TarHash::Blake3(h) => Some(Digest::blake3(*h.finalize().as_bytes())),
        }
    }
}

/// Reads the tar a tar-split records, taking file contents from `tree`, and checks it: the
/// reader fails (an `io::Error` wrapping [`LayerError::TreeModified`]) when a tree file is
/// missing or has another size, and, at the end, when the tar's digest or length is not what
/// the caller expects. Nothing is trusted before that last check passes: write what it gives
/// somewhere that is discarded on error.
pub struct TarSplitReader<R: Read> {
    split: BufReader<zstd::stream::read::Decoder<'static, BufReader<R>>>,
    tree: PathBuf,
    root: OwnedFd,
    segment: Segment,
    hash: TarHash,
    len: u64,
    expected: Option<(Digest, u64)>,
    prefetch: Option<super::prefetch::Prefetch>,
    /// An error was returned: every later read fails too.
    failed: bool,
}

impl TarSplitReader<io::Cursor<Vec<u8>>> {
    /// As [`TarSplitReader::new`], over a tar-split held in memory, with a thread that warms
    /// the page cache for the files the reader opens next when the tree turns out not to
    /// be cached (see `prefetch.rs`).
    pub fn with_prefetch(
        split: Vec<u8>,
        tree: &Path,
        expected: Option<(Digest, u64)>,
    ) -> Result<Self, LayerError> {
        let mut reader = TarSplitReader::new(io::Cursor::new(split.clone()), tree, expected)?;
        reader.prefetch = super::prefetch::Prefetch::spawn(split, &reader.root);
        Ok(reader)
    }
}

impl<R: Read> TarSplitReader<R> {
    /// Whether the prefetching thread was started (a tree file was not in the page cache).
    #[cfg(test)]
    pub(super) fn prefetch_started(&self) -> bool {
        self.prefetch.as_ref().is_some_and(|p| p.found_cold())
    }

    /// A reader of the tar-split read from `split` (as [`super::TarSplitWriter`] wrote it)
    /// over the tree at `tree`. With `expected` (a digest of the tar, tar length), the end is
    /// checked. The digest may be the tar's sha256 (the diff_id) or its blake3 (a layer
    /// record's key): blake3 costs a fraction of sha256's time per byte, which matters when a
    /// whole layer is read for an export whose blob-backed counterpart hashes nothing.
    pub fn new(split: R, tree: &Path, expected: Option<(Digest, u64)>) -> Result<Self, LayerError> {
        let corrupt = |reason: String| LayerError::TarSplit { reason };
        let decoder = zstd::stream::read::Decoder::new(split)
            .map_err(|e| corrupt(format!("cannot decompress it: {e}")))?;
        let mut split = BufReader::with_capacity(1 << 16, decoder);
        let mut magic = [0u8; MAGIC.len()];
        split
            .read_exact(&mut magic)
            .map_err(|e| corrupt(format!("cannot read its start: {e}")))?;
        if magic != MAGIC {
            return Err(corrupt("it does not start with the tar-split magic".into()));
        }
        let root: OwnedFd = File::open(tree)
            .map_err(|e| LayerError::TreeModified {
                tree: tree.to_path_buf(),
                detail: format!("cannot open it: {e}"),
            })?
            .into();
        Ok(TarSplitReader {
            split,
            tree: tree.to_path_buf(),
            root,
            segment: Segment::Between,
            hash: TarHash::for_digest(expected.as_ref().map(|(digest, _)| digest)),
            len: 0,
            expected,
            prefetch: None,
            failed: false,
        })
    }

    fn modified(&self, detail: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            LayerError::TreeModified {
                tree: self.tree.clone(),
                detail,
            },
        )
    }

    /// Reads the next record header into `self.segment`.
    fn next_segment(&mut self) -> io::Result<()> {
        match read_record(&mut self.split)? {
            Record::Literal(len) => self.segment = Segment::Literal(len),
            Record::File { path, size } => {
                // Non-blocking: a FIFO put in the tree fails the size check below instead of
                // blocking the open; a regular file opens the same.
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
                let fd = open_in(&self.root, &path, flags).map_err(|e| {
                    self.modified(format!("{} cannot be opened: {e}", lossy(&path)))
                })?;
                let file = File::from(fd);
                let meta = file.metadata()?;
                if !meta.is_file() || meta.len() != size {
                    return Err(self.modified(format!(
                        "{} is {} bytes, the layer has {size}",
                        lossy(&path),
                        meta.len()
                    )));
                }
                if let Some(prefetch) = &self.prefetch {
                    prefetch.opened(&file, size);
                }
                self.segment = Segment::File {
                    file,
                    path,
                    left: size,
                };
            }
            Record::End { total } => {
                if total != self.len {
                    return Err(corrupt("its end record gives another length"));
                }
                if !self.split.fill_buf()?.is_empty() {
                    return Err(corrupt("bytes follow its end record"));
                }
                // Done only once the check passed: after a failed one, every read fails.
                self.check_end()?;
                self.segment = Segment::Done;
            }
        }
        Ok(())
    }

    fn check_end(&mut self) -> io::Result<()> {
        let Some(expected) = self.expected.take() else {
            return Ok(());
        };
        let hash = std::mem::replace(&mut self.hash, TarHash::None);
        verdict(&self.tree, hash, self.len, expected)
    }

    /// Takes the check of the tar's digest out of this reader (which goes on checking the
    /// tree's files and the tar-split's own length record), to run it on another thread:
    /// `None` when the reader was made without an expected digest.
    pub fn take_check(&mut self) -> Option<TarCheck> {
        let expected = self.expected.take()?;
        let hash = std::mem::replace(&mut self.hash, TarHash::None);
        Some(TarCheck {
            tree: self.tree.clone(),
            hash,
            len: self.len,
            expected,
        })
    }
}

/// Whether a reassembled tar of `len` bytes hashing to `hash` is the `expected` one.
fn verdict(tree: &Path, hash: TarHash, len: u64, (digest, size): (Digest, u64)) -> io::Result<()> {
    let actual = hash.finish();
    if actual == Some(digest) && len == size {
        return Ok(());
    }
    let actual = actual.map_or_else(|| "none".to_owned(), |d| d.to_string());
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        LayerError::TreeModified {
            tree: tree.to_path_buf(),
            detail: format!(
                "the reassembled tar has digest {actual} and {len} bytes, the layer is {digest} \
                 and {size} bytes"
            ),
        },
    ))
}

/// The digest check of a [`TarSplitReader`], taken out to run over the tar's bytes on a
/// thread of its own ([`crate::ReadAhead::spawn_checked`]): the same verdict, with the same
/// error, as the reader's own at its end.
pub struct TarCheck {
    tree: PathBuf,
    hash: TarHash,
    len: u64,
    expected: (Digest, u64),
}

impl crate::read_ahead::StreamCheck for TarCheck {
    fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.len += bytes.len() as u64;
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        let TarCheck {
            tree,
            hash,
            len,
            expected,
        } = *self;
        verdict(&tree, hash, len, expected)
    }
}

impl std::fmt::Debug for TarCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarCheck")
            .field("tree", &self.tree)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<R: Read> std::fmt::Debug for TarSplitReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSplitReader")
            .field("tree", &self.tree)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for TarSplitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the tar failed earlier"));
        }
        let read = self.read_segments(buf);
        self.failed = matches!(&read, Err(e) if e.kind() != io::ErrorKind::Interrupted);
        let n = read?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<R: Read> TarSplitReader<R> {
    /// The tar's next bytes, record by record; [`Read`] counts, hashes and remembers failures.
    fn read_segments(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match &mut self.segment {
                Segment::Done => return Ok(0),
                Segment::Between => {
                    self.next_segment()?;
                    continue;
                }
                Segment::Literal(0) | Segment::File { left: 0, .. } => {
                    self.segment = Segment::Between;
                    continue;
                }
                Segment::Literal(left) => {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = self.split.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            LayerError::TarSplit {
                                reason: "it ends inside a literal record".into(),
                            },
                        ));
                    }
                    *left -= n as u64;
                    n
                }
                Segment::File { file, path, left } => {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        let detail = format!("{} got shorter while it was read", lossy(path));
                        return Err(self.modified(detail));
                    }
                    *left -= n as u64;
                    n
                }
            };
            return Ok(n);
        }
    }
}

/// One record of a tar-split, as [`read_record`] decodes it.
pub(super) enum Record {
    /// `len` bytes of the tar stream follow, as they are.
    Literal(u64),
    /// A regular file's contents come from the tree file at `path`, `size` bytes long.
    File { path: Vec<u8>, size: u64 },
    /// The end: the tar stream is `total` bytes long.
    End { total: u64 },
}

/// Reads the next record's header (a literal's bytes are left in `split` for the caller).
pub(super) fn read_record(split: &mut impl Read) -> io::Result<Record> {
    let mut tag = [0u8; 1];
    split
        .read_exact(&mut tag)
        .map_err(|_| corrupt("it ends without its end record"))?;
    Ok(match tag[0] {
        LITERAL => Record::Literal(read_varint(split)?),
        FILE => {
            let len = usize::try_from(read_varint(split)?)
                .map_err(|_| corrupt("a path length is out of range"))?;
            if len > 1 << 16 {
                return Err(corrupt("a path is too long"));
            }
            let mut path = vec![0u8; len];
            split.read_exact(&mut path)?;
            let size = read_varint(split)?;
            Record::File { path, size }
        }
        END => Record::End {
            total: read_varint(split)?,
        },
        _ => return Err(corrupt("it has an unknown record")),
    })
}

fn corrupt(reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        LayerError::TarSplit {
            reason: reason.to_owned(),
        },
    )
}

fn read_varint(r: &mut impl Read) -> io::Result<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint too long",
    ))
}
