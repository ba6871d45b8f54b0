//! Fuzzes the layer unpacker: any bytes must unpack or fail cleanly (no panic), nothing may
//! appear outside the target directory, and a tree that unpacked must survive a second round
//! trip (layer -> unpack -> layer) byte for byte.
#![no_main]

use std::fs;

use lamina_layer::{Compression, LayerOptions, LayerWriter, Unpacker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parent = tempfile::tempdir().expect("temp dir");
    let target = parent.path().join("target");
    let sentinel = parent.path().join("sentinel");
    fs::create_dir(&target).expect("target dir");
    fs::create_dir(&sentinel).expect("sentinel dir");
    let unpacked = Unpacker::default().unpack(data, &target);
    let beside: Vec<_> = fs::read_dir(parent.path()).expect("list parent").collect();
    assert_eq!(beside.len(), 2, "an entry was created beside the target");
    assert_eq!(
        fs::read_dir(&sentinel).expect("list sentinel").count(),
        0,
        "the sentinel was written"
    );
    if unpacked.is_err() {
        return;
    }
    let writer = LayerWriter::new(LayerOptions::default().compression(Compression::None));
    let mut first = Vec::new();
    // Unpacked trees can hold what a layer refuses (an xattr name with `=`): not a bug.
    if writer.write_tree(&target, &mut first).is_err() {
        return;
    }
    let again = parent.path().join("again");
    fs::create_dir(&again).expect("second target");
    Unpacker::default()
        .unpack(&first[..], &again)
        .expect("our own layer unpacks");
    let mut second = Vec::new();
    writer
        .write_tree(&again, &mut second)
        .expect("the second tree is archivable");
    assert!(
        first == second,
        "layer -> unpack -> layer changed the layer"
    );
});
