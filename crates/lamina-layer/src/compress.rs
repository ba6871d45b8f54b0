//! Compression on the write side and format detection on the read side.

use std::io::{self, BufReader, Read, Write};

/// How a layer's tar stream is compressed: the workspace's one compression type, from
/// `lamina-types` (its media types, names and default levels live there).
pub use lamina_types::Compression;

/// A compressor with the layer writer's settings (gzip in parallel blocks with a constant
/// header, zstd with a checksum and a fixed worker count), so anything compressed with it,
/// e.g. a variant made later from a stored plain tar, has the bytes the writer would have
/// produced. Neither output depends on the worker count.
pub struct Encoder<W: Write>(Inner<W>);

enum Inner<W: Write> {
    None(W),
    Gzip(crate::gzip::ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.0 {
            Inner::None(_) => "none",
            Inner::Gzip(_) => "gzip",
            Inner::Zstd(_) => "zstd",
        };
        f.debug_tuple("Encoder").field(&kind).finish()
    }
}

/// The size of a zstd job (the unit each worker compresses). Part of the output's identity:
/// changing it changes the bytes, and so the digests, of every layer compressed after it.
const ZSTD_JOB_SIZE: u32 = 1 << 20;

impl<W: Write> Encoder<W> {
    /// `workers` (threads compressing) is clamped to at least 1: zstd's single-threaded output
    /// differs from its multi-threaded one, and any count >= 1 gives the same bytes; gzip's
    /// blocks are the same for any count (see the `gzip` module). Digests never depend on the
    /// machine.
    pub fn new(inner: W, compression: Compression, level: i32, workers: u32) -> io::Result<Self> {
        Ok(Encoder(match compression {
            Compression::None => Inner::None(inner),
            Compression::Gzip => Inner::Gzip(crate::gzip::ParallelGzip::new(
                inner,
                level.clamp(0, 9) as u32,
                workers,
            )?),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                enc.multithread(workers.max(1))?;
                // zstd's default job for level 3 is 8 MiB, and it keeps several jobs' input
                // and output buffers per worker in flight: ~110 MB at 2 workers. 1 MiB jobs
                // cost a little ratio and keep a build's peak memory near 40 MB less.
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                enc.include_checksum(true)?;
                Inner::Zstd(enc)
            }
        }))
    }

    /// Ends the compressed stream and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        match self.0 {
            Inner::None(w) => Ok(w),
            Inner::Gzip(e) => e.finish(),
            Inner::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(e) => e.write(buf),
            Inner::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::None(w) => w.flush(),
            Inner::Gzip(e) => e.flush(),
            Inner::Zstd(e) => e.flush(),
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression a layer starting with `prefix` (its first 4 bytes) uses; anything that is
/// neither gzip nor zstd is taken as a plain tar.
pub fn detect_compression(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Detects the compression from the first bytes and returns the decompressed stream.
pub(crate) fn decompress<'a, R: Read + 'a>(
    mut reader: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let prefix = &magic[..got];
    let whole = io::Cursor::new(prefix.to_vec()).chain(reader);
    Ok(if prefix.starts_with(&GZIP_MAGIC) {
        (
            Compression::Gzip,
            Box::new(flate2::read::MultiGzDecoder::new(whole)),
        )
    } else if prefix == ZSTD_MAGIC {
        (
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::new(
                whole,
            ))?),
        )
    } else {
        (Compression::None, Box::new(whole))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(c: Compression, workers: u32) -> Vec<u8> {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut enc = Encoder::new(Vec::new(), c, c.default_level(), workers).unwrap();
        enc.write_all(&data).unwrap();
        let out = enc.finish().unwrap();
        let (detected, mut r) = decompress(io::Cursor::new(out.clone())).unwrap();
        assert_eq!(detected, c);
        let mut back = Vec::new();
        r.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        out
    }

    #[test]
    fn every_compression_round_trips_and_is_detected() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            round_trip(c, 2);
        }
        assert_eq!(
            round_trip(Compression::Gzip, 1),
            round_trip(Compression::Gzip, 4)
        );
    }

    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let one = round_trip(Compression::Zstd, 1);
        assert_eq!(one, round_trip(Compression::Zstd, 2));
        assert_eq!(one, round_trip(Compression::Zstd, 0), "0 is clamped to 1");
    }

    #[test]
    fn short_inputs_are_plain() {
        let (c, mut r) = decompress(&[0x1fu8][..]).unwrap();
        assert_eq!(c, Compression::None);
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, [0x1f]);
    }
}
