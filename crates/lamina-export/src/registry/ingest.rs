//! The synchronous half of a layer pull: compressed bytes go into a staged store blob and,
//! in the same pass, through a decompressor into blake3 + sha256 of the uncompressed tar.
//!
//! (`archive::codec` has the same hasher and decoder, private to that module; one of the
//! two should go once that module's API settles.)
//!
//! Nothing here commits: a [`StagedLayer`] is committed only once every blob of the image
//! has arrived and checked out, so a failed pull leaves nothing in the store.

use std::io::{self, Write};

use lamina_store::{BlobInfo, BlobKind, Compression, Digest, Lease, Store, StoreError};

/// The compression a layer media type implies, or `None` for a type we do not pull.
pub(crate) fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// blake3 + sha256 + length of whatever is written into it.
#[derive(Default)]
pub(crate) struct TarHasher {
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    size: u64,
}

impl Write for TarHasher {
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

impl TarHasher {
    fn finish(self) -> UncompressedDigests {
        use sha2::Digest as _;
        UncompressedDigests {
            blake3: Digest::blake3(*self.blake3.finalize().as_bytes()),
            diff_id: Digest::sha256(self.sha256.finalize().into()),
            size: self.size,
        }
    }
}

/// What the uncompressed tar hashed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UncompressedDigests {
    /// blake3 of the tar: the layer key.
    pub blake3: Digest,
    /// sha256 of the tar: the OCI diff_id.
    pub diff_id: Digest,
    /// Tar length in bytes.
    pub size: u64,
}

/// A decompressor that writes into a [`TarHasher`].
enum Decoder {
    Plain(Box<TarHasher>),
    // Multi-member: some tools write a gzip layer as several concatenated members.
    Gzip(Box<flate2::write::MultiGzDecoder<TarHasher>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, TarHasher>>),
}

impl Decoder {
    fn new(compression: Compression) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                TarHasher::default(),
            ))),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::write::Decoder::new(
                TarHasher::default(),
            )?)),
            _ => Decoder::Plain(Box::default()),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Plain(h) => h.write_all(data),
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Zstd(d) => d.write_all(data),
        }
    }

    fn finish(self) -> io::Result<UncompressedDigests> {
        let hasher = match self {
            Decoder::Plain(h) => *h,
            Decoder::Gzip(d) => d.finish()?,
            Decoder::Zstd(mut d) => {
                d.flush()?;
                d.into_inner()
            }
        };
        Ok(hasher.finish())
    }
}

/// Hashes the uncompressed content of `reader` (a layer blob in `compression`).
pub(crate) fn hash_uncompressed(
    compression: Compression,
    mut reader: impl io::Read,
) -> io::Result<UncompressedDigests> {
    let mut decoder = Decoder::new(compression)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        decoder.write_all(&buf[..n])?;
    }
    decoder.finish()
}

/// A layer blob being received: staged in the store, decompressed and hashed on the fly.
pub(crate) struct LayerIngest<'s> {
    blob: lamina_store::BlobWriter<'s>,
    decoder: Decoder,
}

impl<'s> LayerIngest<'s> {
    pub(crate) fn new(store: &'s Store, compression: Compression) -> Result<Self, IngestError> {
        Ok(LayerIngest {
            blob: store.writer(BlobKind::Layer)?,
            decoder: Decoder::new(compression).map_err(IngestError::Decode)?,
        })
    }

    /// Feeds the next piece of the compressed stream.
    pub(crate) fn write(&mut self, chunk: &[u8]) -> Result<(), IngestError> {
        self.blob.write_all(chunk).map_err(IngestError::Stage)?;
        self.decoder.write_all(chunk).map_err(IngestError::Decode)
    }

    /// Ends the stream: the staged blob (not yet committed) and the tar's digests.
    pub(crate) fn finish(mut self) -> Result<StagedLayer<'s>, IngestError> {
        self.blob.flush().map_err(IngestError::Stage)?;
        let uncompressed = self.decoder.finish().map_err(IngestError::Decode)?;
        Ok(StagedLayer {
            size: self.blob.size(),
            blob: self.blob,
            uncompressed,
        })
    }
}

/// A fully received layer blob, staged but not in the store yet.
pub(crate) struct StagedLayer<'s> {
    blob: lamina_store::BlobWriter<'s>,
    /// Compressed bytes received.
    pub size: u64,
    /// The uncompressed tar's digests.
    pub uncompressed: UncompressedDigests,
}

impl StagedLayer<'_> {
    /// Stores the blob if it hashes to `sha256` and has `size` bytes (else nothing is kept).
    pub(crate) fn commit(
        self,
        sha256: &Digest,
        size: u64,
        lease: &Lease<'_>,
    ) -> Result<BlobInfo, StoreError> {
        self.blob.lease(lease).commit_verified(sha256, Some(size))
    }
}

/// Why receiving a layer failed.
#[derive(Debug)]
pub(crate) enum IngestError {
    /// The store could not stage the bytes.
    Store(StoreError),
    /// Writing the staged bytes failed.
    Stage(io::Error),
    /// The compressed stream is not valid for its media type.
    Decode(io::Error),
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        IngestError::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_compression_hashes_the_same_tar() {
        let tar = tar_bytes();
        let plain = hash_uncompressed(Compression::None, &tar[..]).unwrap();
        assert_eq!(plain.diff_id, Digest::sha256_of(&tar));
        assert_eq!(plain.blake3, Digest::blake3_of(&tar));
        assert_eq!(plain.size, tar.len() as u64);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            hash_uncompressed(Compression::Gzip, &gz[..]).unwrap(),
            plain
        );

        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        assert_eq!(
            hash_uncompressed(Compression::Zstd, &zst[..]).unwrap(),
            plain
        );
    }

    #[test]
    fn a_cut_gzip_stream_is_an_error() {
        let tar = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let cut = &gz[..gz.len() / 2];
        match hash_uncompressed(Compression::Gzip, cut) {
            Err(_) => {}
            Ok(d) => assert_ne!(d.diff_id, Digest::sha256_of(&tar)),
        }
    }

    #[test]
    fn media_types_map_to_compressions() {
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(layer_compression("application/vnd.cncf.helm.chart"), None);
    }

    #[test]
    fn ingest_stages_and_commits_only_the_right_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), lamina_store::StoreOptions::default()).unwrap();
        let tar = tar_bytes();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let lease = store.lease(std::time::Duration::from_secs(60)).unwrap();

        let mut ingest = LayerIngest::new(&store, Compression::Zstd).unwrap();
        for chunk in zst.chunks(7000) {
            ingest.write(chunk).unwrap();
        }
        let staged = ingest.finish().unwrap();
        assert_eq!(staged.uncompressed.diff_id, Digest::sha256_of(&tar));
        let wrong = Digest::sha256_of(b"something else");
        assert!(staged.commit(&wrong, zst.len() as u64, &lease).is_err());
        assert_eq!(store.stats().unwrap().blobs, 0);

        let mut ingest = LayerIngest::new(&store, Compression::Zstd).unwrap();
        ingest.write(&zst).unwrap();
        let info = ingest
            .finish()
            .unwrap()
            .commit(&Digest::sha256_of(&zst), zst.len() as u64, &lease)
            .unwrap();
        assert_eq!(info.sha256, Digest::sha256_of(&zst));
    }
}
