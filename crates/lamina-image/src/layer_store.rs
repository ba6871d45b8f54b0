//! Layers into the store, for builds and embedders: a [`LayerWriter`] streams straight into a
//! store blob (no temporary copy of the whole layer), and the layer record links the
//! uncompressed tar's digests with the compressed variant just written.

use std::path::Path;
use std::time::SystemTime;

use lamina_layer::{Compression, LayerError, LayerInfo, LayerWriter, TarSplitWriter};
use lamina_store::{BlobInfo, BlobKind, BlobWriter, LayerRecord, LayerVariant, Lease, Store};

use crate::ImageError;

/// What a layer is made from.
#[derive(Debug, Clone, Copy)]
pub enum LayerSource<'a> {
    /// Every entry of a directory tree.
    Tree(&'a Path),
    /// An overlayfs upper directory (whiteouts and opaque directories become OCI markers).
    OverlayUpper(&'a Path),
    /// The change from `lower` to `upper`, when overlayfs is not available.
    Diff { lower: &'a Path, upper: &'a Path },
}

/// Writes a layer from `source` directly into a new blob of `store`, then records it with the
/// compressed variant the writer's options name.
///
/// The blob is committed only if the bytes the store hashed match the compressed digest the
/// layer writer computed (a cross-check that costs a second sha256 of the compressed stream,
/// never a second read of any file). With `lease`, GC cannot take the blob from the moment it
/// lands until the caller references it.
pub fn store_layer(
    store: &Store,
    writer: &LayerWriter,
    source: LayerSource<'_>,
    lease: Option<&Lease<'_>>,
) -> Result<LayerRecord, ImageError> {
    let mut blob = leased_writer(store, BlobKind::Layer, lease)?;
    let info = match source {
        LayerSource::Tree(root) => writer.write_tree(root, &mut blob)?,
        LayerSource::OverlayUpper(upper) => writer.write_overlay_upper(upper, &mut blob)?,
        LayerSource::Diff { lower, upper } => writer.diff_trees(lower, upper, &mut blob)?,
    };
    let stored = blob.commit_verified(&info.digest, Some(info.size))?;
    let record = LayerRecord {
        digest: info.blake3,
        diff_id: info.diff_id,
        size: info.uncompressed_size,
        variants: vec![LayerVariant {
            compression: writer.options().compression,
            digest: stored.digest,
            sha256: stored.sha256,
            size: stored.size,
            reproducible: true,
        }],
        created: SystemTime::now(),
        tar_split: None,
    };
    let record = store.put_layer(&record)?;
    if let Some(lease) = lease {
        lease.add(&record.digest)?;
    }
    Ok(record)
}

/// A layer written as a tar-split only: the tar's digests and the stored tar-split blob,
/// not yet recorded (see [`write_tar_split`]).
#[derive(Debug, Clone)]
pub struct SplitLayer {
    /// The layer as written (plain: `digest` is the diff_id).
    pub info: LayerInfo,
    /// The tar-split blob.
    pub tar_split: BlobInfo,
}

/// Writes the plain layer of `source` as a tar-split blob only: no byte of file content is
/// stored, the tree `source` names stays the layer's only copy of them. The caller makes that
/// tree the layer's unpacked tree ([`lamina_store::Store::layer_tree`]) and then records the
/// layer with [`record_tree_layer`]; if it cannot, it stores the layer as a blob instead
/// ([`store_layer`]). With `lease`, GC leaves the tar-split blob alone until then.
pub fn write_tar_split(
    store: &Store,
    writer: &LayerWriter,
    source: LayerSource<'_>,
    lease: Option<&Lease<'_>>,
) -> Result<SplitLayer, ImageError> {
    let plain = LayerWriter::new(writer.options().clone().compression(Compression::None));
    let blob = leased_writer(store, BlobKind::TarSplit, lease)?;
    let mut split = TarSplitWriter::new(blob).map_err(sink)?;
    let info = match source {
        LayerSource::Tree(root) => plain.write_tree_with_copy(root, std::io::sink(), &mut split)?,
        LayerSource::OverlayUpper(upper) => {
            plain.write_overlay_upper_with_copy(upper, std::io::sink(), &mut split)?
        }
        LayerSource::Diff { .. } => {
            return Err(ImageError::Layer(LayerError::TarSplit {
                reason: "a tree diff has no tree of its own to keep".into(),
            }));
        }
    };
    let (blob, _) = split
        .finish()
        .map_err(sink)?
        .map_err(|e| LayerError::TarSplit { reason: e.0 })?;
    let tar_split = blob.commit()?;
    Ok(SplitLayer { info, tar_split })
}

/// A blob writer of `kind`, in `lease` if given (GC leaves the blob alone until the caller
/// references it).
fn leased_writer<'s>(
    store: &'s Store,
    kind: BlobKind,
    lease: Option<&Lease<'_>>,
) -> Result<BlobWriter<'s>, ImageError> {
    let blob = store.writer(kind)?;
    Ok(match lease {
        Some(lease) => blob.lease(lease),
        None => blob,
    })
}

fn sink(source: std::io::Error) -> LayerError {
    LayerError::Sink { source }
}

/// Records a layer written by [`write_tar_split`] as tree-backed: its plain variant (no
/// blob: the tree and the tar-split give it) and its tar-split. Call it only once the tree
/// is in place, holding it there until this returns.
pub fn record_tree_layer(
    store: &Store,
    split: &SplitLayer,
    lease: Option<&Lease<'_>>,
) -> Result<LayerRecord, ImageError> {
    let info = &split.info;
    let record = LayerRecord {
        digest: info.blake3,
        diff_id: info.diff_id,
        size: info.uncompressed_size,
        variants: vec![LayerVariant::plain(
            info.blake3,
            info.diff_id,
            info.uncompressed_size,
        )],
        created: SystemTime::now(),
        tar_split: Some(split.tar_split.digest),
    };
    let record = store.put_layer(&record)?;
    if let Some(lease) = lease {
        lease.add(&record.digest)?;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_layer::{Compression, LayerOptions, Unpacker};
    use lamina_store::StoreOptions;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/motd"), "hello\n").unwrap();
        dir
    }

    #[test]
    fn a_layer_lands_in_the_store_with_its_variants_linked() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path(), StoreOptions::default()).unwrap();
        let src = tree();
        let options = LayerOptions::default().mtime_clamp(Some(0));

        let zstd = LayerWriter::new(options.clone().compression(Compression::Zstd));
        let first = store_layer(&store, &zstd, LayerSource::Tree(src.path()), None).unwrap();
        let gzip = LayerWriter::new(options.compression(Compression::Gzip));
        let both = store_layer(&store, &gzip, LayerSource::Tree(src.path()), None).unwrap();

        // Same tar, two encodings: one record keyed by the tar's blake3, two variants.
        assert_eq!(both.digest, first.digest);
        assert_eq!(both.diff_id, first.diff_id);
        assert_eq!(both.variants.len(), 2);
        assert_eq!(store.layer(&first.digest).unwrap().unwrap(), both);

        // Each variant is a stored blob that unpacks to the tree, with the recorded diff_id.
        for variant in &both.variants {
            let bytes = store.read(&variant.digest).unwrap().unwrap();
            assert_eq!(bytes.len() as u64, variant.size);
            let out = tempfile::tempdir().unwrap();
            let stats = Unpacker::default().unpack(&bytes[..], out.path()).unwrap();
            assert_eq!(stats.diff_id, both.diff_id);
            assert_eq!(
                std::fs::read(out.path().join("etc/motd")).unwrap(),
                b"hello\n"
            );
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_in_the_store() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path(), StoreOptions::default()).unwrap();
        let missing = store_dir.path().join("no-such-tree");
        let writer = LayerWriter::new(LayerOptions::default());
        let err = store_layer(&store, &writer, LayerSource::Tree(&missing), None).unwrap_err();
        assert!(matches!(err, ImageError::Layer(_)), "{err:?}");
        assert_eq!(store.stats().unwrap().blobs, 0);
    }
}
