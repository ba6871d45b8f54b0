//! A layer's plain tar wherever the store keeps it: its plain blob, or — for a tree-backed
//! layer — its unpacked tree and tar-split, reassembled and checked against the layer key
//! (docs/format.md, "What a stored layer is").
//!
//! Every reader of layer bytes that may meet a tree-backed layer's plain variant goes
//! through here (archive export, variant making, pushes, unpacks without the tree in
//! place), so no caller looks for a blob that a tree stands in for.

use std::io::{self, Read};
use std::path::Path;

use lamina_layer::{LayerError, ReadAhead, TarSplitReader};
use lamina_store::{BlobInfo, BlobKind, LayerRecord, LayerVariant, Lease, Store};

use crate::ImageError;

/// A tree-backed layer's tar, reassembled on a thread of its own ahead of the reader (see
/// [`ReadAhead`]): fails at its end when the tree no longer reproduces the layer (see
/// [`TarSplitReader`]).
pub type TreeTar = ReadAhead;

/// Whether the store can give `variant` of `record`: its blob is stored, or it is the plain
/// variant of a tree-backed layer.
pub fn has_variant(
    store: &Store,
    record: &LayerRecord,
    variant: &LayerVariant,
) -> Result<bool, ImageError> {
    Ok(record.served_from_tree(variant) || store.contains(&variant.digest)?)
}

/// The tar of the tree-backed layer `record`, reassembled from its tree and tar-split.
///
/// Checked against the record's key, the blake3 of the same tar as the diff_id: it tells a
/// modified tree just as surely, at a fraction of sha256's cost. The reassembly (file opens,
/// reads) and the hash run on threads of their own, so the caller's writing or compressing
/// overlaps both.
pub fn open_tree_tar(store: &Store, record: &LayerRecord) -> Result<TreeTar, ImageError> {
    let Some(split) = record.tar_split else {
        return Err(ImageError::MissingVariant {
            layer: record.digest,
            compression: "none",
        });
    };
    // Small (a few hundred KiB for a 10,000-file base): read whole, so that the reader and
    // its prefetching thread each decode their own copy.
    let split = store
        .read(&split)?
        .ok_or(lamina_store::StoreError::NotFound { digest: split })?;
    let tree = store.layer_tree(&record.digest);
    let mut tar = TarSplitReader::with_prefetch(split, &tree, Some((record.digest, record.size)))?;
    let check = tar
        .take_check()
        .map(|check| Box::new(check) as Box<dyn lamina_layer::StreamCheck>);
    ReadAhead::spawn_checked(tar, check, "tree-tar")
        .map_err(|source| ImageError::Io { path: tree, source })
}

/// A layer's bytes from wherever they are kept: a blob file, or a tree-backed layer's tar
/// reassembled.
#[derive(Debug)]
pub enum LayerReader {
    Blob(lamina_store::Blob),
    Tree(TreeTar),
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerReader::Blob(blob) => blob.read(buf),
            LayerReader::Tree(tar) => tar.read(buf),
        }
    }
}

/// Bytes of a layer from wherever they are kept, and their length.
pub type LayerBytes = (u64, LayerReader);

/// The bytes of the store blob `digest`, or, when no blob has that digest but it is the
/// key of a tree-backed layer (the digest of its plain variant), that layer's tar
/// reassembled. `None` when neither exists. Returns the size with the reader.
pub fn open_blob_or_tree(
    store: &Store,
    digest: &lamina_store::Digest,
) -> Result<Option<LayerBytes>, ImageError> {
    if let Some(blob) = store.get(digest)? {
        return Ok(Some((blob.info.size, LayerReader::Blob(blob))));
    }
    match tree_backed_record(store, digest)? {
        Some(record) => Ok(Some((
            record.size,
            LayerReader::Tree(open_tree_tar(store, &record)?),
        ))),
        None => Ok(None),
    }
}

/// The record of the tree-backed layer whose plain tar has the store address `digest` (no
/// blob file: its bytes are reassembled from the layer's tree), if there is one.
pub fn tree_backed_record(
    store: &Store,
    digest: &lamina_store::Digest,
) -> Result<Option<LayerRecord>, ImageError> {
    Ok(store
        .layer(digest)?
        .filter(|record| record.digest == *digest && record.is_tree_backed()))
}

/// Stores the plain variant of the tree-backed `record` as a blob (for a consumer that
/// needs a file, such as a push), checked against the diff_id. GC drops it again once it
/// is older than its `min_age` (the tree stays the layer's copy).
pub fn materialize_plain(
    store: &Store,
    record: &LayerRecord,
    lease: Option<&Lease<'_>>,
) -> Result<BlobInfo, ImageError> {
    if let Some(info) = store.stat(&record.digest)? {
        return Ok(info);
    }
    let mut tar = open_tree_tar(store, record)?;
    let mut writer = store.writer(BlobKind::Layer)?;
    if let Some(lease) = lease {
        writer = writer.lease(lease);
    }
    let tree = store.layer_tree(&record.digest);
    tar.write_to(&mut writer)
        .map_err(|e| read_error(&tree, e))?;
    Ok(writer.commit_verified(&record.diff_id, Some(record.size))?)
}

/// Reads the tree-backed `record`'s tar through to its end: `Ok` when the tree still
/// reproduces the layer (fsck, and the check before a received blob is dropped).
pub fn verify_tree(store: &Store, record: &LayerRecord) -> Result<(), ImageError> {
    let mut tar = open_tree_tar(store, record)?;
    let tree = store.layer_tree(&record.digest);
    tar.write_to(&mut io::sink())
        .map_err(|e| read_error(&tree, e))?;
    Ok(())
}

/// An I/O error from reading layer bytes: the layer error inside when there is one.
pub fn read_error(path: &Path, e: io::Error) -> ImageError {
    let source = if e.get_ref().is_some_and(|inner| inner.is::<LayerError>()) {
        match e.into_inner().map(|inner| inner.downcast::<LayerError>()) {
            Some(Ok(layer)) => return ImageError::Layer(*layer),
            Some(Err(other)) => io::Error::other(other),
            None => io::Error::other("layer read failed"),
        }
    } else {
        e
    };
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}
