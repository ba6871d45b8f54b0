//! Receiving one layer: compressed bytes go into a staged store blob and, in the same pass,
//! through a decompressor into blake3 + sha256 of the uncompressed tar (the decoder and
//! hasher of `archive::codec`).
//!
//! Nothing here commits: a [`StagedLayer`] is committed only once every blob of the image
//! has arrived and checked out, so a failed pull or import leaves nothing in the store.

use std::io::{self, Write};

use lamina_store::{BlobInfo, BlobKind, Compression, Digest, Lease, Store, StoreError};

use lamina_types::LayerMediaType;

use crate::archive::codec::{self, Decoder, Hasher};

/// The compression a layer media type implies (OCI, Docker v2, non-distributable and
/// foreign layers alike), or `None` for a type we do not pull.
pub(crate) fn layer_compression(media_type: &str) -> Option<Compression> {
    LayerMediaType::parse(media_type).map(|layer| layer.compression)
}

/// Whether a layer media type is a non-distributable (OCI) or foreign (Docker) one.
pub(crate) fn is_foreign(media_type: &str) -> bool {
    LayerMediaType::parse(media_type).is_some_and(|m| !m.distributable)
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

impl UncompressedDigests {
    fn of(hasher: Hasher) -> Self {
        let (blake3, diff_id, size) = hasher.finish();
        UncompressedDigests {
            blake3,
            diff_id,
            size,
        }
    }
}

/// Hashes the uncompressed content of `reader` (a layer blob in `compression`).
pub(crate) fn hash_uncompressed(
    compression: Compression,
    reader: impl io::Read,
) -> io::Result<UncompressedDigests> {
    let decoder = codec::pump(
        reader,
        |_| Decoder::new(compression, Hasher::default()),
        |_| Ok(()),
    )?;
    Ok(UncompressedDigests::of(decoder.finish()?))
}

/// A layer blob being received: staged in the store, decompressed and hashed on the fly.
pub(crate) struct LayerIngest<'s> {
    blob: lamina_store::BlobWriter<'s>,
    decoder: Decoder<Hasher>,
}

impl<'s> LayerIngest<'s> {
    pub(crate) fn new(store: &'s Store, compression: Compression) -> Result<Self, IngestError> {
        Ok(LayerIngest {
            blob: store.writer(BlobKind::Layer)?,
            decoder: Decoder::new(compression, Hasher::default()).map_err(IngestError::Decode)?,
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
        let uncompressed =
            UncompressedDigests::of(self.decoder.finish().map_err(IngestError::Decode)?);
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
    fn a_zstd_stream_cut_between_blocks_is_an_error() {
        // Cut at a whole frame's worth of input less its end: the decoder must see that the
        // frame never finished, not just hash what came out.
        let tar = tar_bytes();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for cut in [zst.len() - 4, zst.len() / 2] {
            assert!(
                hash_uncompressed(Compression::Zstd, &zst[..cut]).is_err(),
                "cut at {cut} of {}",
                zst.len()
            );
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
