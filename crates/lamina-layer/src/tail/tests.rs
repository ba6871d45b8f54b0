use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::{LayerError, Unpacker};

#[path = "../../../../tests/require.rs"]
mod require;

/// A tar with a directory `d/`, a 2000-byte file `d/big` and a 12-byte file `d/small` (last),
/// with its trailer, and where each part ends: (archive, end of `d/big`'s header, end of
/// `d/small`'s header, end of `d/small`'s data).
fn archive() -> (Vec<u8>, usize, usize, usize) {
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "d/", &[][..]).unwrap();
    for (name, size) in [("d/big", 2000usize), ("d/small", 12)] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
        let mut h = header(tar::EntryType::Regular, 0o644, size as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let full = b.into_inner().unwrap();
    // Plain ustar headers: one block each, data padded to blocks.
    let big_header = 2 * 512;
    let small_header = big_header + 2048 + 512;
    let small_data = small_header + 12;
    assert_eq!(full.len(), small_header + 512 + 1024, "layout as assumed");
    (full, big_header, small_header, small_data)
}

fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<crate::UnpackStats, LayerError>) {
    let dst = tempfile::tempdir().unwrap();
    let result = Unpacker::default().unpack(bytes, dst.path());
    (dst, result)
}

fn assert_complete(dst: &Path) {
    let small = fs::read(dst.join("d/small")).unwrap();
    assert_eq!(small, (1..=12).collect::<Vec<u8>>());
    assert_eq!(fs::read(dst.join("d/big")).unwrap().len(), 2000);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_layer_without_trailer_or_final_padding_unpacks() {
    let (full, _, _, small_data) = archive();
    // The end exactly after the data; inside the padding; at the block boundary (no
    // trailer); after one trailer block; the whole archive.
    for end in [
        small_data,
        small_data + 100,
        small_data + 500,
        small_data + 500 + 512,
        full.len(),
    ] {
        let cut = &full[..end];
        let (dst, result) = unpack(cut);
        let stats = result.unwrap_or_else(|e| panic!("ending at {end}: {e}"));
        assert_complete(dst.path());
        assert_eq!(stats.entries, 3);
        // Supplied padding is not part of the layer's digest.
        assert_eq!(stats.diff_id, lamina_types::Digest::sha256_of(cut));
        assert_eq!(stats.uncompressed_size, end as u64);
    }
    // The same compressed, as umoci stores it.
    let (dst, result) = unpack(&gzip(&full[..small_data]));
    result.unwrap();
    assert_complete(dst.path());
}

#[test]
fn a_layer_cut_inside_data_is_an_error_naming_the_entry() {
    let (full, big_header, _, small_data) = archive();
    // Mid-block, on a block boundary inside the data, one byte short of the end.
    for (end, entry) in [
        (big_header + 700, "d/big"),
        (big_header + 1024, "d/big"),
        (small_data - 1, "d/small"),
    ] {
        let (_dst, result) = unpack(&full[..end]);
        match result {
            Err(LayerError::Truncated {
                entry: Some(e),
                in_data: true,
            }) => assert_eq!(e, entry, "cut at {end}"),
            other => panic!("cut at {end}: {other:?}"),
        }
    }
    // Compressed alike.
    let (_dst, result) = unpack(&gzip(&full[..small_data - 5]));
    assert!(
        matches!(result, Err(LayerError::Truncated { in_data: true, .. })),
        "{result:?}"
    );
    let message = unpack(&full[..big_header + 700]).1.unwrap_err().to_string();
    assert!(message.contains("\"d/big\""), "{message}");
}

#[test]
fn a_layer_cut_inside_a_header_is_an_error_naming_the_entry_before() {
    let (full, big_header, small_header, _) = archive();
    let (_dst, result) = unpack(&full[..small_header - 200]);
    match result {
        Err(LayerError::Truncated {
            entry: Some(e),
            in_data: false,
        }) => assert_eq!(e, "d/big"),
        other => panic!("{other:?}"),
    }
    let (_dst, result) = unpack(&full[..300]);
    assert!(
        matches!(
            result,
            Err(LayerError::Truncated {
                entry: None,
                in_data: false
            })
        ),
        "{result:?}"
    );
    // Right after `d/big`'s header: its data is missing, not padding.
    let (_dst, result) = unpack(&full[..big_header]);
    assert!(
        matches!(result, Err(LayerError::Truncated { entry: Some(ref e), in_data: true }) if e == "d/big"),
        "{result:?}"
    );
}

#[test]
fn padding_is_supplied_only_after_complete_data() {
    let data = [7u8; 10];
    let (mut tail, state) = Tail::new(&data[..]);
    let mut buf = [1u8; 600];
    assert_eq!(tail.read(&mut buf).unwrap(), 10);
    // Not marked: the end stays an end.
    assert_eq!(tail.read(&mut buf).unwrap(), 0);
    assert!(state.ended());
    state.data_complete();
    assert_eq!(tail.read(&mut buf).unwrap(), 502);
    assert!(buf[..502].iter().all(|&b| b == 0));
    assert_eq!(
        tail.read(&mut buf).unwrap(),
        0,
        "no more than one block's padding"
    );
}

#[test]
fn umoci_insert_layers_unpack() {
    if require::missing(&[require::Need::Tool("umoci")]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    fs::write(work.path().join("hello"), b"hello world\n").unwrap();
    let odd: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(work.path().join("odd"), &odd).unwrap();
    run(&["init", "--layout", "oci"]);
    run(&["new", "--image", "oci:t"]);
    run(&["insert", "--image", "oci:t", "hello", "/etc/hello"]);
    run(&["insert", "--image", "oci:t", "odd", "/opt/data/odd"]);

    // The layers are the gzip blobs (config, manifest and index are JSON); their paths do not
    // overlap, so their order does not matter.
    let dst = tempfile::tempdir().unwrap();
    let mut layers = 0;
    for blob in fs::read_dir(work.path().join("oci/blobs/sha256")).unwrap() {
        let bytes = fs::read(blob.unwrap().path()).unwrap();
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            continue;
        }
        let stats = Unpacker::default()
            .unpack(&bytes[..], dst.path())
            .unwrap_or_else(|e| panic!("umoci's layer is refused: {e}"));
        // The premise: umoci leaves the padding and the trailer off.
        assert_ne!(stats.uncompressed_size % 512, 0);
        layers += 1;
    }
    assert_eq!(layers, 2);
    assert_eq!(
        fs::read(dst.path().join("etc/hello")).unwrap(),
        b"hello world\n"
    );
    assert_eq!(fs::read(dst.path().join("opt/data/odd")).unwrap(), odd);
}
