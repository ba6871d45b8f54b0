//! Digests: blake3 (the store's address) and sha256 (what OCI speaks).

use std::fmt;
use std::str::FromStr;

use crate::StoreError;

/// The hash function a [`Digest`] was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// BLAKE3, 256-bit output: the store's primary address.
    Blake3,
    /// SHA-256: kept beside every blob because OCI digests are sha256.
    Sha256,
}

impl Algorithm {
    /// The prefix used in the `algorithm:hex` text form.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }
}

/// A 256-bit content digest with its algorithm; text form `blake3:<64 hex>` / `sha256:<64 hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; 32],
}

impl Digest {
    /// A blake3 digest from its raw bytes.
    pub const fn blake3(bytes: [u8; 32]) -> Self {
        Digest {
            algorithm: Algorithm::Blake3,
            bytes,
        }
    }

    /// A sha256 digest from its raw bytes.
    pub const fn sha256(bytes: [u8; 32]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            bytes,
        }
    }

    /// The blake3 digest of `data`.
    pub fn blake3_of(data: &[u8]) -> Self {
        Digest::blake3(*blake3::hash(data).as_bytes())
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest::sha256(sha2::Sha256::digest(data).into())
    }

    /// Which hash function made this digest.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The lowercase hex of the raw bytes, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex(&self.bytes)
    }

    /// Parses `blake3:<hex>` or `sha256:<hex>` (64 lowercase or uppercase hex digits).
    pub fn parse(input: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &'static str| StoreError::InvalidDigest {
            input: input.to_owned(),
            reason,
        };
        let (algo, hex) = input.split_once(':').ok_or_else(|| {
            invalid("expected `algorithm:hex`, e.g. `sha256:` followed by 64 hex digits")
        })?;
        let algorithm = match algo {
            "blake3" => Algorithm::Blake3,
            "sha256" => Algorithm::Sha256,
            _ => return Err(invalid("unknown algorithm, use `blake3` or `sha256`")),
        };
        let bytes = unhex32(hex).ok_or_else(|| invalid("expected exactly 64 hex digits"))?;
        Ok(Digest { algorithm, bytes })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Parses exactly 64 hex digits into 32 bytes.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    let raw = text.as_bytes();
    if raw.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let d = Digest::blake3_of(b"hello");
        let text = d.to_string();
        assert!(text.starts_with("blake3:"));
        assert_eq!(Digest::parse(&text).unwrap(), d);
        let s = Digest::sha256_of(b"");
        assert_eq!(
            s.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.to_string().parse::<Digest>().unwrap(), s);
    }

    #[test]
    fn bad_text_is_rejected_with_the_input_named() {
        for bad in [
            "",
            "sha256",
            "md5:00",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidDigest { ref input, .. } if input == bad));
        }
    }
}
