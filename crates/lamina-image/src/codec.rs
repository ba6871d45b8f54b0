//! Streaming layer codecs: detect, decompress, compress and hash in one pass, so no layer is
//! ever held in memory and no file is read twice.
//!
//! lamina-export's ingest pipeline shares the decoder and hasher; [`recompress`] makes the
//! layer variants builds, exports and pushes need.
//!
//! Compression is `lamina-layer`'s own [`lamina_layer::Encoder`] at the writer's default
//! levels, so a variant made here has the same bytes as one the layer writer makes from the
//! same tar.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use lamina_store::{BlobKind, Compression, Digest, LayerRecord, LayerVariant, Store};

use crate::ImageError;

const CHUNK: usize = 256 * 1024;
/// Bytes enough to tell the compression by magic (zstd's is the longest).
const MAGIC_LEN: usize = 4;

/// The compression a blob starting with `prefix` uses (anything unknown is a plain tar).
pub fn detect(prefix: &[u8]) -> Compression {
    match lamina_layer::detect_compression(prefix) {
        lamina_layer::Compression::Gzip => Compression::Gzip,
        lamina_layer::Compression::Zstd => Compression::Zstd,
        _ => Compression::None,
    }
}

/// A compressor for `compression` with the layer writer's settings, on every core (the
/// bytes do not depend on how many there are).
pub fn encoder<W: Write>(compression: Compression, out: W) -> io::Result<lamina_layer::Encoder<W>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = u32::try_from(workers).unwrap_or(u32::MAX);
    lamina_layer::Encoder::new(out, compression, compression.default_level(), workers)
}

/// Hashes what is written into it: blake3, sha256 and length.
#[derive(Default)]
pub struct Hasher {
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    size: u64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("size", &self.size).finish()
    }
}

impl Hasher {
    /// (blake3, sha256, size) of everything written.
    pub fn finish(self) -> (Digest, Digest, u64) {
        use sha2::Digest as _;
        (
            Digest::blake3(*self.blake3.finalize().as_bytes()),
            Digest::sha256(self.sha256.finalize().into()),
            self.size,
        )
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        self.blake3.update(buf);
        self.sha256.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// sha256 of a tar as it is written, or nothing when the tar needs no check.
struct TarCheck(Option<sha2::Sha256>);

impl TarCheck {
    fn new(hash: bool) -> Self {
        use sha2::Digest as _;
        TarCheck(hash.then(sha2::Sha256::new))
    }

    fn finish(self) -> Option<Digest> {
        use sha2::Digest as _;
        self.0.map(|h| Digest::sha256(h.finalize().into()))
    }
}

impl Write for TarCheck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        if let Some(h) = &mut self.0 {
            h.update(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes everything to both `a` and `b`. `flush` is not passed on: decoders flush their
/// output when they finish, and a flushed compressor emits a sync point that changes its
/// bytes; compressors are finished explicitly instead.
#[derive(Debug)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A push-style decompressor: compressed bytes in, the tar out to `W`.
pub enum Decoder<W: Write> {
    /// A plain tar, passed through.
    None(W),
    // Boxed: the gzip state is large, the others small.
    /// gzip (every member of a multi-member stream).
    Gzip(Box<flate2::write::MultiGzDecoder<W>>),
    /// zstd.
    Zstd(zstd::stream::write::Decoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for Decoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::None(_) => "Decoder::None",
            Decoder::Gzip(_) => "Decoder::Gzip",
            Decoder::Zstd(_) => "Decoder::Zstd",
        })
    }
}

impl<W: Write> Decoder<W> {
    /// A decoder of `compression` writing the tar to `out`.
    pub fn new(compression: Compression, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out))),
            Compression::Zstd => Decoder::Zstd(zstd::stream::write::Decoder::new(out)?),
            _ => Decoder::None(out),
        })
    }

    /// Flushes the rest; a stream that stops mid-frame is an `UnexpectedEof` error.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Decoder::None(w) => Ok(w),
            Decoder::Gzip(d) => d.finish(),
            Decoder::Zstd(d) => d.finish(),
        }
    }
}

impl<W: Write> Write for Decoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Decoder::None(w) => w.write(buf),
            Decoder::Gzip(d) => d.write(buf),
            Decoder::Zstd(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Decoder::None(w) => w.flush(),
            Decoder::Gzip(d) => d.flush(),
            Decoder::Zstd(d) => d.flush(),
        }
    }
}

/// Feeds all of `input` to `sink` in chunks, first handing `start` the first bytes (at most
/// 4) so the caller can pick a decoder by magic.
pub fn pump<R: Read, S: Write>(
    mut input: R,
    start: impl FnOnce(&[u8]) -> io::Result<S>,
    mut also: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<S> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    // Read until the magic is known (or the input ends).
    while filled < MAGIC_LEN {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let mut sink = start(&buf[..filled.min(MAGIC_LEN)])?;
    let mut n = filled;
    loop {
        if n > 0 {
            also(&buf[..n])?;
            sink.write_all(&buf[..n])?;
        }
        n = match input.read(&mut buf) {
            Ok(0) => return Ok(sink),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
    }
}

/// Makes the `target` variant of `record` from one of its stored variants (the plain one
/// when present: nothing to decompress), checking the tar against the record's diff_id, and
/// records it. Returns the updated record and the new variant.
///
/// A plain variant is the tar itself and the store hashed it when it was written, so its
/// recorded sha256 is the check; a compressed source is hashed as it is decompressed.
pub fn recompress(
    store: &Store,
    record: &LayerRecord,
    target: Compression,
) -> Result<(LayerRecord, LayerVariant), ImageError> {
    recompress_as(store, record, target, true, None)
}

/// [`recompress`], the new variant marked `reproducible` (a size budget may drop it from a
/// tree-backed layer, the next push or export makes it again) or not (kept as long as its
/// layer: a stored image's manifest names it). Once `stop` is set the work ends within a
/// chunk, with an error, and nothing is recorded (the blob written so far is dropped).
pub fn recompress_as(
    store: &Store,
    record: &LayerRecord,
    target: Compression,
    reproducible: bool,
    stop: Option<&AtomicBool>,
) -> Result<(LayerRecord, LayerVariant), ImageError> {
    let mut sources: Vec<&LayerVariant> = record.variants.iter().collect();
    sources.sort_by_key(|v| v.compression != Compression::None);
    let mut source: Option<(&LayerVariant, Box<dyn Read + Send>, PathBuf)> = None;
    for v in sources {
        if let Some(blob) = store.get(&v.digest)? {
            let path = store.blob_path(&blob.info);
            source = Some((v, Box::new(blob), path));
            break;
        }
        if record.served_from_tree(v) {
            // Reassembled from the tree; checked against the diff_id as it ends.
            let tar = crate::layer_tar::open_tree_tar(store, record)?;
            source = Some((v, Box::new(tar), store.layer_tree(&record.digest)));
            break;
        }
    }
    let Some((from, blob, path)) = source else {
        return Err(ImageError::MissingVariant {
            layer: record.digest,
            compression: target.name(),
        });
    };
    let io_err = |source| crate::layer_tar::read_error(&path, source);
    let corrupt = |diff_id: Digest| ImageError::CorruptLayer {
        image: "store".to_owned(),
        layer: from.digest.to_string(),
        reason: format!(
            "its tar has digest {diff_id}, the layer record says {}",
            record.diff_id
        ),
    };
    let plain = from.compression == Compression::None;
    if plain && from.sha256 != record.diff_id {
        return Err(corrupt(from.sha256));
    }
    let writer = store.writer(BlobKind::Layer)?;
    let encoder = encoder(target, writer).map_err(io_err)?;
    // Large writes into the compressor, as the layer writer makes them.
    let out = io::BufWriter::with_capacity(1 << 20, Tee(TarCheck::new(!plain), encoder));
    let stopped = || stop.is_some_and(|s| s.load(Ordering::Relaxed));
    let check_stop = |_: &[u8]| match stopped() {
        true => Err(io::Error::other("stopped: the variant is no longer needed")),
        false => Ok(()),
    };
    let decoder =
        pump(blob, |_| Decoder::new(from.compression, out), check_stop).map_err(io_err)?;
    let Tee(check, encoder) = decoder
        .finish()
        .map_err(io_err)?
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    if let Some(diff_id) = check.finish()
        && diff_id != record.diff_id
    {
        return Err(corrupt(diff_id));
    }
    let stored = encoder.finish().map_err(io_err)?.commit()?;
    let variant = LayerVariant {
        compression: target,
        digest: stored.digest,
        sha256: stored.sha256,
        size: stored.size,
        reproducible,
    };
    let mut updated = record.clone();
    updated.variants.retain(|v| v.compression != target);
    updated.variants.push(variant.clone());
    let updated = store.put_layer(&updated)?;
    Ok((updated, variant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_store::StoreOptions;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = encoder(Compression::Gzip, Vec::new()).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn recompressing_keeps_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let tar = vec![7u8; 10_000];
        let packed = gzip(&tar);
        let diff_id = Digest::sha256_of(&tar);
        let info = store.put_bytes(BlobKind::Layer, &packed).unwrap();
        let record = LayerRecord {
            digest: Digest::blake3_of(&tar),
            diff_id,
            size: tar.len() as u64,
            variants: vec![LayerVariant::stored(Compression::Gzip, &info)],
            created: std::time::SystemTime::now(),
            tar_split: None,
        };

        // Recompressing to zstd and back to plain keeps the tar.
        let record = store.put_layer(&record).unwrap();
        let (record, zstd) = recompress(&store, &record, Compression::Zstd).unwrap();
        let (record, plain) = recompress(&store, &record, Compression::None).unwrap();
        assert_eq!(record.variants.len(), 3);
        assert_eq!(plain.sha256, diff_id);
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&store.read(&zstd.digest).unwrap().unwrap()[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar);
    }

    #[test]
    fn a_stopped_recompression_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let tar = vec![7u8; 3 * CHUNK];
        let info = store.put_bytes(BlobKind::Layer, &tar).unwrap();
        let record = store
            .put_layer(&LayerRecord {
                digest: Digest::blake3_of(&tar),
                diff_id: Digest::sha256_of(&tar),
                size: tar.len() as u64,
                variants: vec![LayerVariant::stored(Compression::None, &info)],
                created: std::time::SystemTime::now(),
                tar_split: None,
            })
            .unwrap();
        let blobs = store.stats().unwrap().blobs;
        let stop = AtomicBool::new(true);
        let stopped = recompress_as(&store, &record, Compression::Zstd, false, Some(&stop));
        assert!(stopped.is_err());
        let after = store.layer(&record.digest).unwrap().unwrap();
        assert!(after.variant_in(Compression::Zstd).is_none());
        assert_eq!(store.stats().unwrap().blobs, blobs, "no blob is left");
        // Not stopped, the same call makes it.
        stop.store(false, Ordering::Relaxed);
        let (made, _) =
            recompress_as(&store, &record, Compression::Zstd, false, Some(&stop)).unwrap();
        assert!(!made.variant_in(Compression::Zstd).unwrap().reproducible);
    }
}
