//! Hostile layers: every attempt to write outside the target is refused or contained.

use std::fs;

use lamina_layer::{LayerError, Unpacker};

use crate::support::*;

/// One raw ustar entry: (name, type flag, link target, contents).
pub struct Raw(String, u8, String, Vec<u8>);

pub fn file(name: &str, data: &[u8]) -> Raw {
    Raw(name.into(), b'0', String::new(), data.to_vec())
}
pub fn dir(name: &str) -> Raw {
    Raw(name.into(), b'5', String::new(), Vec::new())
}
pub fn symlink(name: &str, target: &str) -> Raw {
    Raw(name.into(), b'2', target.into(), Vec::new())
}
pub fn hardlink(name: &str, target: &str) -> Raw {
    Raw(name.into(), b'1', target.into(), Vec::new())
}

/// Builds a tar by hand: the tar crate's builder refuses the hostile names tested here.
pub fn tar_of(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    for Raw(name, kind, link, data) in entries {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let mode = if *kind == b'5' {
            "0000755\0"
        } else {
            "0000644\0"
        };
        h[100..108].copy_from_slice(mode.as_bytes());
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

struct Arena {
    _tmp: tempfile::TempDir,
    target: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// A target beside an `outside` directory holding `secret`.
fn arena() -> Arena {
    let tmp = tempdir();
    let target = sub(&tmp, "target");
    let outside = sub(&tmp, "outside");
    fs::write(outside.join("secret"), "s").unwrap();
    Arena {
        _tmp: tmp,
        target,
        outside,
    }
}

impl Arena {
    fn unpack(&self, entries: &[Raw]) -> Result<lamina_layer::UnpackStats, LayerError> {
        Unpacker::default().unpack(&tar_of(entries)[..], &self.target)
    }

    fn outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["secret"],
            "something was written outside the target"
        );
        assert_eq!(fs::read(self.outside.join("secret")).unwrap(), b"s");
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(
                &fs::metadata(self.outside.join("secret")).unwrap()
            ),
            1
        );
        let parent: Vec<_> = fs::read_dir(self.target.parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(parent.len(), 2);
    }

    fn abs_outside(&self) -> String {
        self.outside.to_str().unwrap().to_owned()
    }
}

fn assert_unsafe(r: Result<lamina_layer::UnpackStats, LayerError>, entry: &str) {
    match r {
        Err(LayerError::UnsafePath { entry: e, .. }) => assert_eq!(e, entry),
        other => panic!("expected UnsafePath for {entry}, got {other:?}"),
    }
}

#[test]
fn dot_dot_paths_are_refused_and_named() {
    let a = arena();
    assert_unsafe(a.unpack(&[file("../outside/x", b"x")]), "../outside/x");
    assert_unsafe(
        a.unpack(&[file("a/../../outside/x", b"x")]),
        "a/../../outside/x",
    );
    assert_unsafe(a.unpack(&[hardlink("h", "../outside/secret")]), "h");
    assert_unsafe(a.unpack(&[file("../.wh.outside", b"")]), "../.wh.outside");
    assert_unsafe(a.unpack(&[file(".wh...", b"")]), ".wh...");
    let msg = a.unpack(&[file("../x", b"")]).unwrap_err().to_string();
    assert!(
        msg.contains("\"../x\"") && msg.contains("outside the target"),
        "{msg}"
    );
    a.outside_untouched();
}

#[test]
fn absolute_paths_land_inside_the_target() {
    let a = arena();
    let abs = format!("{}/x", a.abs_outside());
    a.unpack(&[file(&abs, b"x")]).unwrap();
    a.outside_untouched();
    assert_eq!(
        fs::read(a.target.join(abs.trim_start_matches('/'))).unwrap(),
        b"x"
    );
}

#[test]
fn symlinks_to_the_root_or_upwards_resolve_inside() {
    let a = arena();
    let abs = a.abs_outside();
    a.unpack(&[
        symlink("root", "/"),
        file(&format!("root{abs}/via-root"), b"1"),
        symlink("up", "../../../../../../.."),
        file("up/outside/via-up", b"2"),
        symlink("abs", &abs),
        file("abs/via-abs", b"3"),
        // A chain: c1 -> c2 -> ../
        symlink("c2", "../"),
        symlink("c1", "c2"),
        file("c1/outside/via-chain", b"4"),
        dir("d/"),
        symlink("d/back", "../.."),
        file("d/back/outside/via-nested", b"5"),
    ])
    .unwrap();
    a.outside_untouched();
    let t = &a.target;
    assert_eq!(
        fs::read(t.join(format!("{}/via-root", &abs[1..]))).unwrap(),
        b"1"
    );
    assert_eq!(fs::read(t.join("outside/via-up")).unwrap(), b"2");
    assert_eq!(
        fs::read(t.join(format!("{}/via-abs", &abs[1..]))).unwrap(),
        b"3"
    );
    assert_eq!(fs::read(t.join("outside/via-chain")).unwrap(), b"4");
    assert_eq!(fs::read(t.join("outside/via-nested")).unwrap(), b"5");
}

#[test]
fn hardlinks_never_reach_outside_files() {
    let a = arena();
    let abs = a.abs_outside();
    let r = a.unpack(&[hardlink("h1", &format!("{abs}/secret"))]);
    assert!(
        matches!(r, Err(LayerError::Unpack { ref entry, .. }) if entry == "h1"),
        "{r:?}"
    );
    let r = a.unpack(&[symlink("s", &abs), hardlink("h2", "s/secret")]);
    assert!(r.is_err(), "{r:?}");
    // A hard link to a symlink links the symlink itself.
    a.unpack(&[
        symlink("s2", &format!("{abs}/secret")),
        hardlink("h3", "s2"),
    ])
    .unwrap();
    assert!(
        fs::symlink_metadata(a.target.join("h3"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    a.outside_untouched();
}

#[test]
fn entries_replace_symlinks_instead_of_following_them() {
    let a = arena();
    let abs = a.abs_outside();
    a.unpack(&[
        symlink("f", &format!("{abs}/secret")),
        file("f", b"replaced"),
        symlink("d", &abs),
        dir("d/"),
        file("d/x", b"x"),
    ])
    .unwrap();
    a.outside_untouched();
    assert_eq!(fs::read(a.target.join("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(a.target.join("d")).unwrap().is_dir());
}

#[test]
fn whiteouts_through_symlinks_stay_inside() {
    let a = arena();
    let abs = a.abs_outside();
    a.unpack(&[
        symlink("s", &abs),
        file("s/.wh.secret", b""),
        file("s/.wh..wh..opq", b""),
    ])
    .unwrap();
    a.unpack(&[symlink("up", "../.."), file("up/outside/.wh.secret", b"")])
        .unwrap();
    a.outside_untouched();
}

#[test]
fn garbage_and_truncated_layers_are_errors_not_panics() {
    let a = arena();
    for bytes in [
        &b"\x28\xb5\x2f\xfdgarbage"[..],
        b"\x1f\x8b\x08\0junk",
        &[7u8; 700],
    ] {
        assert!(Unpacker::default().unpack(bytes, &a.target).is_err());
    }
    let good = tar_of(&[file("f", &[1u8; 2000])]);
    assert!(
        Unpacker::default()
            .unpack(&good[..1000], &a.target)
            .is_err()
    );
    a.outside_untouched();
}
