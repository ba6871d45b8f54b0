//! Interop with GNU tar and umoci, and overlayfs against tree diffs.

use std::fs;
use std::path::Path;
use std::process::Command;

use lamina_layer::{Compression, LayerOptions, LayerWriter, Unpacker};

use crate::support::*;

use require::Need::{Root, Tool};

#[test]
fn gnu_tar_extracts_our_layers_to_the_same_tree() {
    if require::missing(&[Tool("tar")]) {
        return;
    }
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let layer = tmp.path().join("layer.tar");
    let o = LayerOptions::default().compression(Compression::None);
    LayerWriter::new(o)
        .write_tree(&src, fs::File::create(&layer).unwrap())
        .unwrap();
    let dst = sub(&tmp, "dst");
    let mut cmd = Command::new("tar");
    cmd.args(["-xpf"])
        .arg(&layer)
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-C"])
        .arg(&dst);
    if is_root() {
        cmd.arg("--same-owner");
    }
    run(&mut cmd);
    assert_same(&snapshot(&src), &snapshot(&dst), "GNU tar extraction");
}

#[test]
fn layers_made_by_gnu_tar_unpack_here() {
    if require::missing(&[Tool("tar")]) {
        return;
    }
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let expected = snapshot(&src);
    // PAX with xattrs, and GNU format with its long-name records; gzip through tar -z.
    for (i, format) in ["--format=pax", "--format=gnu"].into_iter().enumerate() {
        let layer = tmp.path().join(format!("gnu{i}.tar.gz"));
        let mut cmd = Command::new("tar");
        cmd.args(["-czpf"])
            .arg(&layer)
            .args([format, "--numeric-owner", "--sort=name", "-C"])
            .arg(&src);
        if format == "--format=pax" {
            cmd.args(["--xattrs", "--xattrs-include=*"]);
        }
        run(cmd.arg("."));
        let dst = sub(&tmp, &format!("dst{i}"));
        let stats = Unpacker::default()
            .unpack(fs::File::open(&layer).unwrap(), &dst)
            .unwrap();
        assert_eq!(stats.compression, Compression::Gzip);
        let mut want = expected.clone();
        if format == "--format=gnu" {
            // GNU format cannot carry extended attributes.
            want.values_mut().for_each(|i| i.xattrs.clear());
        }
        assert_same(&want, &snapshot(&dst), format);
    }
}

fn json_blob(blobs: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = lamina_layer::Digest::sha256_of(bytes);
    fs::write(blobs.join(digest.hex()), bytes).unwrap();
    (digest.to_string(), bytes.len())
}

#[test]
fn umoci_unpacks_our_layers_to_the_same_tree() {
    // umoci unpack needs root to restore owners and devices.
    if require::missing(&[Tool("umoci"), Root]) {
        return;
    }
    let tmp = tempdir();
    let src = sub(&tmp, "src");
    rich_tree(&src);
    let layout = sub(&tmp, "layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let mut blob = Vec::new();
    let o = LayerOptions::default().compression(Compression::Gzip);
    let info = LayerWriter::new(o).write_tree(&src, &mut blob).unwrap();
    fs::write(blobs.join(info.digest.hex()), &blob).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        info.diff_id
    );
    let (cdig, csize) = json_blob(&blobs, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cdig}","size":{csize}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        info.media_type, info.digest, info.size
    );
    let (mdig, msize) = json_blob(&blobs, manifest.as_bytes());
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{mdig}","size":{msize},"annotations":{{"org.opencontainers.image.ref.name":"test"}}}}]}}"#
    );
    fs::write(layout.join("index.json"), index).unwrap();
    let rootfs = tmp.path().join("rootfs");
    run(Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&rootfs));
    assert_same(&snapshot(&src), &snapshot(&rootfs), "umoci raw unpack");
}

/// Makes a change through a real overlay mount and checks that the upper directory and a diff
/// of the trees give byte-identical layers, and that the layer reproduces the merged tree.
#[test]
fn overlay_upper_and_tree_diff_give_identical_layers() {
    if require::missing(&[Root]) {
        return;
    }
    let tmp = tempdir();
    let lower = sub(&tmp, "lower");
    rich_tree(&lower);
    fs::create_dir_all(lower.join("srv/old/nested")).unwrap();
    fs::write(lower.join("srv/old/nested/f"), "f").unwrap();
    fs::write(lower.join("srv/replace-me"), "was a file").unwrap();
    fs::create_dir(lower.join("srv/dir-to-file")).unwrap();
    set_mtimes(&lower, MTIME);
    let (upper, work, merged) = (sub(&tmp, "upper"), sub(&tmp, "work"), sub(&tmp, "merged"));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return require::cannot_run(&format!(
                "cannot mount overlayfs: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        Err(e) => return require::cannot_run(&format!("cannot run mount: {e}")),
    }
    let m = |p: &str| merged.join(p);
    // Edit a file deep down, add, delete a file and a directory, chmod, chown, add a symlink,
    // replace a file with a directory and a directory with a file.
    fs::write(m("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    fs::write(m("etc/new"), "new").unwrap();
    fs::remove_file(m("etc/empty")).unwrap();
    fs::remove_dir_all(m("srv/old")).unwrap();
    chmod(&m("bin/ping"), 0o755);
    chown(&m("tmp"), 0, 0);
    std::os::unix::fs::symlink("../bin/busybox", m("srv/link")).unwrap();
    fs::remove_file(m("srv/replace-me")).unwrap();
    fs::create_dir(m("srv/replace-me")).unwrap();
    fs::write(m("srv/replace-me/inner"), "i").unwrap();
    fs::remove_dir(m("srv/dir-to-file")).unwrap();
    fs::write(m("srv/dir-to-file"), "now a file").unwrap();
    let options = LayerOptions::default()
        .compression(Compression::Zstd)
        .mtime_clamp(Some(MTIME as u64 + 1));
    let writer = LayerWriter::new(options);
    let mut from_diff = Vec::new();
    let diff_info = writer.diff_trees(&lower, &merged, &mut from_diff);
    let merged_snapshot = snapshot(&merged);
    run(Command::new("umount").arg(&merged));
    let diff_info = diff_info.unwrap();
    let mut from_upper = Vec::new();
    let upper_info = writer.write_overlay_upper(&upper, &mut from_upper).unwrap();
    assert_eq!(diff_info, upper_info);
    assert!(from_diff == from_upper, "diff and overlay layers differ");
    // Check the layer's content: whiteouts and an opaque directory are there.
    let mut plain = Vec::new();
    zstd::stream::copy_decode(&from_upper[..], &mut plain).unwrap();
    let names: Vec<String> = tar::Archive::new(&plain[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect();
    for want in [
        "etc/.wh.empty",
        "srv/.wh.old",
        "srv/replace-me/",
        "srv/replace-me/.wh..wh..opq",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    // Lower tree plus the layer gives the merged tree (mtimes clamped the same way).
    let applied = sub(&tmp, "applied");
    run(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", lower.display()))
        .arg(&applied));
    Unpacker::default()
        .unpack(&from_upper[..], &applied)
        .unwrap();
    let mut want = merged_snapshot;
    let mut got = snapshot(&applied);
    for s in [&mut want, &mut got] {
        s.values_mut()
            .for_each(|i| i.mtime = i.mtime.min(MTIME + 1));
    }
    assert_same(&want, &got, "lower + overlay layer");
}
