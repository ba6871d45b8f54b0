//! Integration tests of lamina-layer: round trips, determinism, interop with GNU tar and umoci,
//! overlayfs against tree diffs, and hostile layers.

mod adversarial;
mod interop;
mod support;

use std::fs;
use std::io::Cursor;
use std::process::Command;

use lamina_layer::{Compression, LayerOptions, LayerWriter, UnpackOptions, Unpacker};
use support::*;

fn opts(c: Compression) -> LayerOptions {
    LayerOptions::default().compression(c)
}

#[test]
fn tree_round_trips_through_every_compression() {
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let expected = snapshot(&src);
    // The fixture really holds what the layer must carry.
    assert_eq!(
        expected[&b"bin/sh"[..]].link.as_deref(),
        Some(&b"bin/busybox"[..])
    );
    assert_eq!(expected[&b"etc/passwd"[..]].xattrs.len(), 1);
    if is_root() {
        assert_eq!(expected[&b"dev/null"[..]].kind, "char");
        assert_eq!(expected[&b"lib/big.so"[..]].uid, 3_000_000);
        let cap = &expected[&b"bin/ping"[..]];
        assert_eq!(
            (cap.mode, &cap.xattrs[0].0[..]),
            (0o4755, &b"security.capability"[..])
        );
    }
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut blob = Vec::new();
        let info = LayerWriter::new(opts(c))
            .write_tree(&src, &mut blob)
            .unwrap();
        assert_eq!(info.size, blob.len() as u64);
        assert_eq!(info.media_type, c.media_type());
        if c == Compression::None {
            assert_eq!(info.digest, info.diff_id);
            assert_eq!(info.uncompressed_size, info.size);
        } else {
            assert_ne!(info.digest, info.diff_id);
            assert!(info.size < info.uncompressed_size);
        }
        let dst = sub(&tmp, &format!("dst-{c:?}"));
        let stats = Unpacker::default()
            .unpack(Cursor::new(&blob), &dst)
            .unwrap();
        assert_eq!(stats.compression, c);
        assert_eq!(stats.diff_id, info.diff_id);
        assert_eq!(stats.uncompressed_size, info.uncompressed_size);
        assert_same(&expected, &snapshot(&dst), &format!("{c:?} round trip"));
    }
}

#[test]
fn same_tree_gives_identical_bytes_wherever_it_lives() {
    let tmp = tempdir();
    let a = sub(&tmp, "a");
    rich_tree(&a);
    let b = tmp.path().join("elsewhere/b");
    fs::create_dir_all(b.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(&a).arg(&b));
    let write = |dir: &std::path::Path, workers: u32| {
        let o = opts(Compression::Zstd).zstd_workers(workers);
        let mut blob = Vec::new();
        let info = LayerWriter::new(o).write_tree(dir, &mut blob).unwrap();
        (info, blob)
    };
    let (ia, ba) = write(&a, 1);
    let (ib, bb) = write(&b, 4);
    assert_eq!(ia, ib);
    assert!(ba == bb, "layers of copied trees differ");
    // A changed mtime changes the layer unless the clamp hides it.
    set_mtime(&b.join("etc/passwd"), MTIME + 10);
    assert_ne!(write(&b, 1).0.diff_id, ia.diff_id);
    let clamped = |dir| {
        let o = opts(Compression::None).mtime_clamp(Some(1000));
        LayerWriter::new(o)
            .write_tree(dir, std::io::sink())
            .unwrap()
    };
    assert_eq!(clamped(&a), clamped(&b));
}

#[test]
fn mtime_clamp_lowers_only_later_times() {
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    fs::write(src.join("old"), "o").unwrap();
    fs::write(src.join("new"), "n").unwrap();
    set_mtime(&src.join("old"), 500);
    set_mtime(&src.join("new"), MTIME);
    let mut blob = Vec::new();
    let o = opts(Compression::Gzip).mtime_clamp(Some(1000));
    LayerWriter::new(o).write_tree(&src, &mut blob).unwrap();
    let dst = sub(&tmp, "dst");
    Unpacker::default().unpack(&blob[..], &dst).unwrap();
    let snap = snapshot(&dst);
    assert_eq!(snap[&b"old"[..]].mtime, 500);
    assert_eq!(snap[&b"new"[..]].mtime, 1000);
}

#[test]
fn entries_are_sorted_depth_first_with_pax_long_names() {
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let mut blob = Vec::new();
    LayerWriter::new(opts(Compression::None))
        .write_tree(&src, &mut blob)
        .unwrap();
    let mut ar = tar::Archive::new(&blob[..]);
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            h.as_ustar()
                .map(|u| (u.username_bytes(), u.groupname_bytes())),
            Some((&b""[..], &b""[..]))
        );
        names.push(e.path_bytes().into_owned());
    }
    assert_eq!(names[0], b"bin/");
    let expect_order = [
        &b"bin/"[..],
        b"bin/busybox",
        b"bin/ls",
        b"bin/ping",
        b"bin/sh",
        b"caf\xe9",
        b"deep/",
    ];
    assert_eq!(&names[..7], &expect_order[..]);
    assert!(
        names.iter().any(|n| n.len() > 100),
        "the long path survives as PAX"
    );
    // GNU long-name records never appear: only ustar and PAX type flags.
    let flags: Vec<u8> = blob
        .chunks(512)
        .filter(|b| &b[257..263] == b"ustar\0")
        .map(|b| b[156])
        .collect();
    assert!(flags.iter().all(|f| b"0123456x".contains(f)), "{flags:?}");
}

#[test]
fn whiteouts_remove_only_lower_content_whatever_their_order() {
    let tmp = tempdir();
    let dst = sub(&tmp, "dst");
    fs::create_dir_all(dst.join("d/keep-me-not")).unwrap();
    fs::write(dst.join("d/lower"), "l").unwrap();
    fs::write(dst.join("gone"), "g").unwrap();
    fs::create_dir(dst.join("gone-dir")).unwrap();
    fs::write(dst.join("gone-dir/f"), "f").unwrap();
    // The layer's own d/new comes before the opaque marker, and new2 before its whiteout.
    let layer = adversarial::tar_of(&[
        adversarial::dir("d/"),
        adversarial::file("d/new", b"n"),
        adversarial::file("d/.wh..wh..opq", b""),
        adversarial::file(".wh.gone", b""),
        adversarial::file(".wh.gone-dir", b""),
        adversarial::file("new2", b"2"),
        adversarial::file(".wh.new2", b""),
        adversarial::file(".wh.never-existed", b""),
    ]);
    let stats = Unpacker::default().unpack(&layer[..], &dst).unwrap();
    assert_eq!(stats.whiteouts, 5);
    let snap = snapshot(&dst);
    let names: Vec<_> = snap
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(names, ["d", "d/new", "new2"]);
}

#[test]
fn unprivileged_options_skip_devices_and_owners() {
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let mut blob = Vec::new();
    LayerWriter::default().write_tree(&src, &mut blob).unwrap();
    let dst = sub(&tmp, "dst");
    let o = UnpackOptions::default()
        .same_owner(false)
        .devices(false)
        .xattrs(false);
    let stats = Unpacker::new(o).unpack(&blob[..], &dst).unwrap();
    let snap = snapshot(&dst);
    assert!(!snap.contains_key(&b"dev/null"[..]));
    assert_eq!(stats.skipped, if is_root() { 2 } else { 0 });
    let me = rustix::process::geteuid().as_raw();
    assert!(snap.values().all(|i| i.uid == me && i.xattrs.is_empty()));
    assert_eq!(
        snap[&b"etc/passwd"[..]].data,
        fs::read(src.join("etc/passwd")).unwrap()
    );
}

fn entry_names(blob: &[u8]) -> Vec<String> {
    let mut ar = tar::Archive::new(blob);
    let entries = ar.entries().unwrap();
    entries
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

#[test]
fn overlay_upper_markers_become_oci_whiteouts() {
    // Hand-made overlay markers need root (mknod 0:0, trusted.* xattrs).
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let tmp = tempdir();
    let upper = sub(&tmp, "upper");
    fs::create_dir(upper.join("opaque")).unwrap();
    fs::write(upper.join("opaque/kept"), "k").unwrap();
    let x = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(upper.join("opaque"), "trusted.overlay.opaque", b"y", x).unwrap();
    rustix::fs::setxattr(upper.join("opaque/kept"), "trusted.overlay.origin", b"o", x).unwrap();
    mknod(
        &upper.join("deleted"),
        rustix::fs::FileType::CharacterDevice,
        0,
        0,
        0,
    );
    let mut blob = Vec::new();
    let w = LayerWriter::new(opts(Compression::None));
    w.write_overlay_upper(&upper, &mut blob).unwrap();
    assert_eq!(
        entry_names(&blob),
        [
            ".wh.deleted",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/kept"
        ]
    );
    assert!(
        !blob.windows(15).any(|w| w == b"trusted.overlay"),
        "overlay xattrs leak"
    );
    // As a plain tree the same device is a device.
    let mut plain = Vec::new();
    w.write_tree(&upper, &mut plain).unwrap();
    assert!(entry_names(&plain).contains(&"deleted".to_owned()));
    // Redirects cannot be expressed in a layer.
    rustix::fs::setxattr(upper.join("opaque"), "trusted.overlay.redirect", b"/x", x).unwrap();
    let err = w.write_overlay_upper(&upper, std::io::sink()).unwrap_err();
    assert!(
        matches!(err, lamina_layer::LayerError::OverlayFeature { .. }),
        "{err}"
    );
}

#[test]
fn user_namespace_overlay_markers_become_the_same_oci_whiteouts() {
    // What overlayfs mounted with `userxattr` (in a user namespace) writes: `user.overlay.*`.
    // mknod 0:0 needs root or a user namespace.
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let tmp = tempdir();
    let upper = sub(&tmp, "upper");
    fs::create_dir(upper.join("opaque")).unwrap();
    fs::write(upper.join("opaque/kept"), "k").unwrap();
    let x = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(upper.join("opaque"), "user.overlay.opaque", b"y", x).unwrap();
    rustix::fs::setxattr(upper.join("opaque/kept"), "user.overlay.origin", b"o", x).unwrap();
    rustix::fs::setxattr(upper.join("opaque/kept"), "user.mine", b"v", x).unwrap();
    mknod(
        &upper.join("deleted"),
        rustix::fs::FileType::CharacterDevice,
        0,
        0,
        0,
    );
    let mut blob = Vec::new();
    let w = LayerWriter::new(opts(Compression::None));
    w.write_overlay_upper(&upper, &mut blob).unwrap();
    assert_eq!(
        entry_names(&blob),
        [
            ".wh.deleted",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/kept"
        ]
    );
    assert!(
        !blob.windows(12).any(|w| w == b"user.overlay"),
        "overlay xattrs leak"
    );
    assert!(
        blob.windows(9).any(|w| w == b"user.mine"),
        "other user attributes stay"
    );
    rustix::fs::setxattr(upper.join("opaque"), "user.overlay.redirect", b"/x", x).unwrap();
    let err = w.write_overlay_upper(&upper, std::io::sink()).unwrap_err();
    assert!(
        matches!(err, lamina_layer::LayerError::OverlayFeature { ref attribute, .. } if attribute == "user.overlay.redirect"),
        "{err}"
    );
}

#[test]
fn fuse_overlayfs_markers_become_the_same_oci_whiteouts() {
    // What fuse-overlayfs writes in a user namespace: `user.fuseoverlayfs.opaque` and, in the
    // opaque directory, a `.wh..wh..opq` file and a `.wh..opq` 0:0 device. mknod needs root.
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let tmp = tempdir();
    let upper = sub(&tmp, "upper");
    for dir in ["opaque", "marked"] {
        fs::create_dir(upper.join(dir)).unwrap();
        fs::write(upper.join(dir).join("kept"), "k").unwrap();
    }
    let x = rustix::fs::XattrFlags::empty();
    rustix::fs::setxattr(upper.join("opaque"), "user.fuseoverlayfs.opaque", b"y", x).unwrap();
    fs::write(upper.join("opaque/.wh..wh..opq"), "").unwrap();
    let device = rustix::fs::FileType::CharacterDevice;
    mknod(&upper.join("opaque/.wh..opq"), device, 0, 0, 0);
    // Older fuse-overlayfs, or no xattrs: the marker file alone.
    fs::write(upper.join("marked/.wh..wh..opq"), "").unwrap();
    mknod(&upper.join("deleted"), device, 0, 0, 0);
    // Where it cannot make the device: an empty `.wh.NAME` file.
    fs::write(upper.join(".wh.filed"), "").unwrap();
    let mut blob = Vec::new();
    let w = LayerWriter::new(opts(Compression::None));
    w.write_overlay_upper(&upper, &mut blob).unwrap();
    assert_eq!(
        entry_names(&blob),
        [
            ".wh.deleted",
            ".wh.filed",
            "marked/",
            "marked/.wh..wh..opq",
            "marked/kept",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/kept"
        ]
    );
    assert!(
        !blob.windows(16).any(|w| w == b"fuseoverlayfs.op"),
        "fuse-overlayfs attributes leak"
    );
}

#[test]
fn whiteout_names_in_sources_are_refused() {
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    fs::write(src.join(".wh.sneaky"), "").unwrap();
    let err = LayerWriter::default()
        .write_tree(&src, std::io::sink())
        .unwrap_err();
    match err {
        lamina_layer::LayerError::ReservedName { path } => assert!(path.ends_with(".wh.sneaky")),
        other => panic!("expected ReservedName, got {other}"),
    }
}
