//! Compact, versioned binary encoding of index records (see docs/format.md).
//!
//! Every value starts with a version byte ([`RECORD_V1`]); integers are LEB128 varints,
//! digests are their 32 raw bytes (the algorithm is implied by the field), optional values
//! carry a 0/1 tag, lists a varint length. Decoding never panics: any short,
//! overlong or unknown input is a [`DecodeError`].

use std::fmt;

/// The record encoding of every record but layers.
pub(crate) const RECORD_V1: u8 = 1;
/// Layer records since store format v2: variant flags and the tar-split.
pub(crate) const RECORD_V2: u8 = 2;

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The byte a layer variant's compression is stored as. The codes are part of the on-disk
/// format (docs/format.md) and never change.
pub(crate) fn compression_code(compression: lamina_types::Compression) -> u8 {
    use lamina_types::Compression;
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Zstd => 2,
    }
}

/// The compression stored as `code`.
pub(crate) fn compression_from_code(code: u8) -> Result<lamina_types::Compression, DecodeError> {
    use lamina_types::Compression;
    Ok(match code {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        c => return Err(DecodeError(format!("unknown compression {c}"))),
    })
}

/// Appends fields to a record buffer.
#[derive(Debug)]
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// A buffer already holding the version byte.
    pub(crate) fn new() -> Self {
        Encoder::with_version(RECORD_V1)
    }

    /// A buffer holding the version byte `version`.
    pub(crate) fn with_version(version: u8) -> Self {
        let mut buf = Vec::with_capacity(96);
        buf.push(version);
        Encoder { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    pub(crate) fn bytes32(&mut self, v: &[u8; 32]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Length-prefixed bytes: varint length, then the bytes.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    pub(crate) fn opt_varint(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).varint(v),
            None => self.u8(0),
        }
    }

    pub(crate) fn opt_bytes32(&mut self, v: Option<&[u8; 32]>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).bytes32(v),
            None => self.u8(0),
        }
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads fields back, in the order they were written.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Checks the version byte (`RECORD_V1`) and positions after it.
    pub(crate) fn new(value: &'a [u8]) -> Result<Self, DecodeError> {
        Decoder::versioned(value, RECORD_V1).map(|(_, d)| d)
    }

    /// Checks the version byte (any up to `newest`), returns it and positions after it.
    pub(crate) fn versioned(value: &'a [u8], newest: u8) -> Result<(u8, Self), DecodeError> {
        match value.split_first() {
            Some((&v, rest)) if (RECORD_V1..=newest).contains(&v) => Ok((v, Decoder { rest })),
            Some((v, _)) => Err(DecodeError(format!("unknown record version {v}"))),
            None => Err(DecodeError("empty record".into())),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError(format!(
                "truncated: needed {n} more bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflows 64 bits".into()));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint longer than 10 bytes".into()))
    }

    pub(crate) fn bytes32(&mut self) -> Result<[u8; 32], DecodeError> {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.take(32)?);
        Ok(out)
    }

    /// Length-prefixed bytes (see `Encoder::bytes`).
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.list_len(1)?;
        self.take(n)
    }

    /// Whether every byte was read (for fields a later writer appends).
    pub(crate) fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    fn tag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(DecodeError(format!("bad option tag {t}"))),
        }
    }

    pub(crate) fn opt_varint(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.tag()? {
            self.varint().map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn opt_bytes32(&mut self) -> Result<Option<[u8; 32]>, DecodeError> {
        if self.tag()? {
            self.bytes32().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list length, bounded by the bytes left so a corrupt length cannot allocate wildly.
    pub(crate) fn list_len(&mut self, min_item_size: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let max = self.rest.len() / min_item_size.max(1);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| DecodeError(format!("list length {n} exceeds the record")))
    }

    /// Fails if bytes are left over (a record longer than its version allows).
    pub(crate) fn end(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError(format!("{} trailing bytes", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let d = [7u8; 32];
        let bytes = Encoder::new()
            .u8(3)
            .varint(0)
            .varint(127)
            .varint(128)
            .varint(u64::MAX)
            .bytes32(&d)
            .opt_varint(None)
            .opt_varint(Some(300))
            .opt_bytes32(Some(&d))
            .finish();
        let mut dec = Decoder::new(&bytes).unwrap();
        assert_eq!(dec.u8().unwrap(), 3);
        assert_eq!(dec.varint().unwrap(), 0);
        assert_eq!(dec.varint().unwrap(), 127);
        assert_eq!(dec.varint().unwrap(), 128);
        assert_eq!(dec.varint().unwrap(), u64::MAX);
        assert_eq!(dec.bytes32().unwrap(), d);
        assert_eq!(dec.opt_varint().unwrap(), None);
        assert_eq!(dec.opt_varint().unwrap(), Some(300));
        assert_eq!(dec.opt_bytes32().unwrap(), Some(d));
        dec.end().unwrap();
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Decoder::new(&[]).is_err());
        assert!(Decoder::new(&[9, 1, 2]).is_err());
        let mut dec = Decoder::new(&[1, 0xff, 0xff]).unwrap();
        assert!(dec.varint().is_err());
        let mut dec = Decoder::new(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ])
        .unwrap();
        assert!(dec.varint().is_err());
        let mut dec = Decoder::new(&[1, 5]).unwrap();
        assert!(dec.opt_varint().is_err());
        let mut dec = Decoder::new(&[1, 200, 1, b'a']).unwrap();
        assert!(dec.list_len(1).is_err());
        let mut dec = Decoder::new(&[1, 1, 2]).unwrap();
        assert!(dec.bytes32().is_err());
        let dec = Decoder::new(&[1, 0]).unwrap();
        assert!(dec.end().is_err());
    }
}
