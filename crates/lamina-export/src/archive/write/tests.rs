//! Archive writing from a tree-backed layer: the tar is reassembled on a thread of its own
//! while the archive is written, and a tree that no longer gives the layer fails the write
//! with nothing left at the output.

use std::io::Read;
use std::path::{Path, PathBuf};

use lamina_layer::{LayerError, LayerOptions, LayerWriter};
use lamina_store::{LayerRecord, Store, StoreOptions};

use super::tar_file;
use crate::ExportError;
use crate::archive::output::Placement;
use crate::layer_store::{LayerSource, record_tree_layer, write_tar_split};

/// A store holding one tree-backed layer (a small file and a 3 MB one, more than one
/// read-ahead buffer), and that layer's record.
fn tree_backed_layer(dir: &Path) -> (Store, LayerRecord) {
    let store = Store::open(dir.join("store"), StoreOptions::default()).unwrap();
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/motd"), "hello\n").unwrap();
    let big: Vec<u8> = (0..3_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("big.bin"), big).unwrap();
    let writer = LayerWriter::new(LayerOptions::default().mtime_clamp(Some(0)));
    let split = write_tar_split(&store, &writer, LayerSource::Tree(&src), None).unwrap();
    let tree = store.layer_tree(&split.info.blake3);
    std::fs::create_dir_all(tree.parent().unwrap()).unwrap();
    std::fs::rename(&src, &tree).unwrap();
    let record = record_tree_layer(&store, &split, None).unwrap();
    assert!(record.is_tree_backed());
    (store, record)
}

fn export_layer(store: &Store, record: &LayerRecord, out: &Path) -> Result<u64, ExportError> {
    tar_file(&Placement::Atomic(out.to_path_buf()), |sink| {
        sink.blob(store, "layer.tar", &record.digest)
    })
}

fn names_in(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

#[test]
fn a_tree_backed_layer_is_written_as_its_exact_tar() {
    let dir = tempfile::tempdir().unwrap();
    let (store, record) = tree_backed_layer(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("layer-archive.tar");
    export_layer(&store, &record, &out).unwrap();

    let mut archive = tar::Archive::new(std::fs::File::open(&out).unwrap());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut tar = Vec::new();
    entry.read_to_end(&mut tar).unwrap();
    assert_eq!(tar.len() as u64, record.size);
    assert_eq!(lamina_store::Digest::sha256_of(&tar), record.diff_id);
}

#[test]
fn a_tree_modified_after_recording_fails_the_write_in_one_line_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (store, record) = tree_backed_layer(dir.path());
    let tree = store.layer_tree(&record.digest);
    // One byte of the big file, same size: the tar's first megabytes are written to the
    // output before the digest at the end tells.
    let big = tree.join("big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[2_500_000] ^= 1;
    std::fs::write(&big, bytes).unwrap();

    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("layer-archive.tar");
    let err = export_layer(&store, &record, &out).unwrap_err();
    assert!(
        matches!(&err, ExportError::Layer(LayerError::TreeModified { tree: t, .. }) if *t == tree),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&tree.display().to_string())
            && text.contains("lamina cache fsck")
            && !text.contains('\n'),
        "{text}"
    );
    assert!(
        names_in(&out_dir).is_empty(),
        "left behind: {:?}",
        names_in(&out_dir)
    );

    // An existing output is not touched either.
    std::fs::write(&out, "previous export").unwrap();
    export_layer(&store, &record, &out).unwrap_err();
    assert_eq!(std::fs::read(&out).unwrap(), b"previous export");
    assert_eq!(names_in(&out_dir), vec![out.clone()]);

    // A push's plain blob is refused the same way, and nothing is stored.
    let err = crate::layer_tar::materialize_plain(&store, &record, None).unwrap_err();
    assert!(
        matches!(err, ExportError::Layer(LayerError::TreeModified { .. })),
        "{err:?}"
    );
    assert!(store.stat(&record.digest).unwrap().is_none());
}
