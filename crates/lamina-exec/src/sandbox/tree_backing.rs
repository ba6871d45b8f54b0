//! Received layers become tree-backed when they are unpacked: the tar a layer arrived as
//! (`image import`, a pull; decompressed first if it came gzip or zstd) is recorded as a
//! tar-split while it unpacks, the tree is checked to give the tar back, and a plain blob is
//! then dropped (docs/format.md, "What a stored layer is"). Compressed blobs (gzip from a
//! registry) are kept, their bytes cannot be made again from the tar; the layer gains a
//! plain variant served from the tree, so builds on it need not compress.

use std::io::{self, Read, Write};

use lamina_layer::TarSplitWriter;
use lamina_store::{BlobInfo, BlobKind, BlobWriter, LayerRecord, Store};

use crate::ExecError;

/// A tar-split being recorded from the tar an unpack reads.
pub(super) struct Recorder<'s> {
    split: Option<TarSplitWriter<BlobWriter<'s>>>,
}

impl<'s> Recorder<'s> {
    pub(super) fn new(store: &'s Store) -> Result<Self, ExecError> {
        let blob = store.writer(BlobKind::TarSplit)?;
        let split = TarSplitWriter::new(blob).map_err(|source| ExecError::Io {
            path: store.path().join("tmp"),
            source,
        })?;
        Ok(Recorder { split: Some(split) })
    }

    /// `reader`, recording what is read from it.
    pub(super) fn tee<R: Read>(&mut self, reader: R) -> Tee<'_, 's, R> {
        Tee {
            inner: reader,
            recorder: self,
        }
    }

    /// The stored tar-split, or `None` (logged) when the tar cannot be reassembled from its
    /// tree or recording failed.
    pub(super) fn finish(self, layer: &str) -> Option<BlobInfo> {
        let result = match self.split?.finish() {
            Ok(Ok((blob, _))) => blob.commit().map_err(|e| e.to_string()),
            Ok(Err(not)) => Err(not.0),
            Err(e) => Err(e.to_string()),
        };
        result
            .inspect_err(|reason| tracing::debug!("layer {layer} stays blob-backed: {reason}"))
            .ok()
    }
}

/// A reader that hands every byte it reads to a [`Recorder`]; a failing recorder is
/// dropped, never failing the read.
pub(super) struct Tee<'r, 's, R> {
    inner: R,
    recorder: &'r mut Recorder<'s>,
}

impl<R: Read> Read for Tee<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(split) = &mut self.recorder.split
            && split.write_all(&buf[..n]).is_err()
        {
            self.recorder.split = None;
        }
        Ok(n)
    }
}

/// Makes `layer`, whose tree is in place (the caller holds the layer's lock), tree-backed by
/// `split`: the tree must give the exact tar back first, then the record names the tar-split
/// and the plain blob goes.
pub(super) fn back_by_tree(
    store: &Store,
    layer: &LayerRecord,
    split: &BlobInfo,
) -> Result<(), ExecError> {
    let mut candidate = layer.clone();
    candidate.tar_split = Some(split.digest);
    lamina_image::layer_tar::verify_tree(store, &candidate)?;
    store.set_tar_split(&layer.digest, &split.digest)?;
    Ok(())
}
