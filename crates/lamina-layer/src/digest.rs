//! Digest types and the hashing writers of the one-pass pipeline.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest, shown as `sha256:<64 lowercase hex digits>` as OCI descriptors spell it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

/// A BLAKE3 digest, shown as `blake3:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Blake3Digest(pub [u8; 32]);

/// The error of parsing a digest from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: expected {algorithm}:<64 lowercase hex digits>")]
pub struct ParseDigestError {
    /// The text that failed to parse.
    pub input: String,
    /// The algorithm prefix that was expected.
    pub algorithm: &'static str,
}

macro_rules! digest_impls {
    ($ty:ident, $prefix:literal) => {
        impl $ty {
            /// The lowercase hex form without the algorithm prefix.
            pub fn hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{}"), self.hex())
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $ty {
            type Err = ParseDigestError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || ParseDigestError {
                    input: s.to_owned(),
                    algorithm: $prefix,
                };
                let hex = s.strip_prefix(concat!($prefix, ":")).ok_or_else(err)?;
                parse_hex(hex).map($ty).ok_or_else(err)
            }
        }
    };
}

digest_impls!(Sha256Digest, "sha256");
digest_impls!(Blake3Digest, "blake3");

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Hashes the uncompressed tar (sha256 for the diff_id, blake3 for the store) on its way to
/// the compressor.
pub(crate) struct TarHasher<W> {
    inner: W,
    sha256: Sha256,
    blake3: blake3::Hasher,
    len: u64,
}

impl<W: Write> TarHasher<W> {
    pub(crate) fn new(inner: W) -> Self {
        TarHasher {
            inner,
            sha256: Sha256::new(),
            blake3: blake3::Hasher::new(),
            len: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, Sha256Digest, Blake3Digest, u64) {
        let sha = Sha256Digest(self.sha256.finalize().into());
        let b3 = Blake3Digest(*self.blake3.finalize().as_bytes());
        (self.inner, sha, b3, self.len)
    }
}

impl<W: Write> Write for TarHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
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
    sha256: Option<Sha256>,
    len: u64,
}

impl<W: Write> BlobHasher<W> {
    /// `hash: false` only counts: for uncompressed layers the blob digest is the diff_id.
    pub(crate) fn new(inner: W, hash: bool) -> Self {
        BlobHasher {
            inner,
            sha256: hash.then(Sha256::new),
            len: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, Option<Sha256Digest>, u64) {
        (
            self.inner,
            self.sha256.map(|h| Sha256Digest(h.finalize().into())),
            self.len,
        )
    }
}

impl<W: Write> Write for BlobHasher<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.sha256 {
            h.update(&buf[..n]);
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

    pub(crate) fn finish(self) -> (Sha256Digest, u64) {
        (Sha256Digest(self.sha256.finalize().into()), self.len)
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
    fn display_and_parse_round_trip() {
        let d = Sha256Digest(Sha256::digest(b"").into());
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.parse::<Sha256Digest>(), Ok(d));
        assert!("sha256:E3B0".parse::<Sha256Digest>().is_err());
        assert!(
            s.replace("sha256", "blake3")
                .parse::<Sha256Digest>()
                .is_err()
        );
        let b = Blake3Digest(*blake3::hash(b"x").as_bytes());
        assert_eq!(b.to_string().parse::<Blake3Digest>(), Ok(b));
    }

    #[test]
    fn tar_hasher_matches_one_shot_hashes() {
        let mut h = TarHasher::new(Vec::new());
        h.write_all(b"hello ").unwrap();
        h.write_all(b"world").unwrap();
        let (out, sha, b3, len) = h.finish();
        assert_eq!(out, b"hello world");
        assert_eq!(sha.0, <[u8; 32]>::from(Sha256::digest(b"hello world")));
        assert_eq!(b3.0, *blake3::hash(b"hello world").as_bytes());
        assert_eq!(len, 11);
    }
}
