//! [`Digest`]: a 256-bit content digest with its algorithm.

use std::fmt;
use std::str::FromStr;

use crate::ParseError;

/// The hash function a [`Digest`] was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// BLAKE3, 256-bit output: the store's primary address.
    Blake3,
    /// SHA-256: what OCI descriptors, diff_ids and Docker image IDs use.
    Sha256,
}

impl Algorithm {
    /// The prefix of the `algorithm:hex` text form.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Blake3 => "blake3",
            Algorithm::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A 256-bit content digest with its algorithm; text form `sha256:<64 hex>` or
/// `blake3:<64 hex>`, lowercase as the OCI image spec requires.
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

    /// Parses `sha256:<hex>` or `blake3:<hex>` with exactly 64 lowercase hex digits.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let invalid = |reason| ParseError::Digest {
            input: input.to_owned(),
            reason,
        };
        let (algorithm, hex) = input.split_once(':').ok_or_else(|| {
            invalid("expected `algorithm:hex`, e.g. `sha256:` followed by 64 hex digits")
        })?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "blake3" => Algorithm::Blake3,
            _ => return Err(invalid("unknown algorithm, use `sha256` or `blake3`")),
        };
        let bytes =
            unhex32(hex).ok_or_else(|| invalid("expected exactly 64 lowercase hex digits"))?;
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
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Exactly 64 lowercase hex digits as 32 bytes.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    let raw = text.as_bytes();
    if raw.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn text_form_round_trips() {
        let d = Digest::blake3_of(b"hello");
        let text = d.to_string();
        assert!(text.starts_with("blake3:"), "{text}");
        assert_eq!(Digest::parse(&text).unwrap(), d);
        let s = Digest::sha256_of(b"");
        assert_eq!(s.to_string(), EMPTY_SHA256);
        assert_eq!(EMPTY_SHA256.parse::<Digest>().unwrap(), s);
        assert_eq!(s.algorithm(), Algorithm::Sha256);
        assert_eq!(format!("{s:?}"), EMPTY_SHA256);
        assert_eq!(Digest::sha256(*s.as_bytes()), s);
    }

    #[test]
    fn equal_bytes_of_different_algorithms_differ() {
        let bytes = [7u8; 32];
        assert_ne!(Digest::sha256(bytes), Digest::blake3(bytes));
    }

    #[test]
    fn bad_text_is_refused_with_the_input_named() {
        let upper = EMPTY_SHA256.to_uppercase().replace("SHA256", "sha256");
        for bad in [
            "",
            "sha256",
            "sha256:",
            "md5:00",
            "sha512:e3b0",
            "sha256:abc",
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{}", "0".repeat(65)),
            &upper,
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(err, ParseError::Digest { ref input, .. } if input == bad),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
