//! Builds as an ordinary user where they need no sandbox: WORKDIR and `COPY --from` read the
//! layers without the unpacked-layer cache, which only root can fill (owners, devices).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::require::{Need, missing};
use crate::support::write_tree;

#[test]
fn workdir_and_copy_from_build_as_nobody() {
    if missing(&[Need::Root, Need::Tool("setpriv")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The binary and the project where `nobody` (65534) can read and write them.
    let lamina = root.join("lamina");
    std::fs::copy(env!("CARGO_BIN_EXE_lamina"), &lamina).unwrap();
    write_tree(
        root,
        &[
            ("base/Dockerfile", "FROM scratch\nCOPY rootfs/ /\n"),
            ("base/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            (
                "app/Dockerfile",
                "FROM scratch AS files\nCOPY data/ /data/\n\
                 FROM base:1\nWORKDIR /srv/new\nCOPY --from=files /data/ ./\n\
                 COPY --from=base:1 /etc/passwd /srv/passwd\n",
            ),
            ("app/data/a.txt", "a\n"),
        ],
    );
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(root)
        .status()
        .unwrap();
    assert!(chown.success());
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&lamina)
            .args(["--store", root.join("store").to_str().unwrap()])
            .args(args)
            .current_dir(root)
            .env("HOME", root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "lamina {args:?} as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The base comes as an archive, as a pulled or imported image does: its layer is not
    // in the layer cache, and its files belong to root.
    let root_store = root.join("root-store");
    let archive = root.join("base.tar");
    crate::support::lamina_in_store(
        root,
        root_store.to_str().unwrap(),
        &["build", "base", "--tag", "base:1", "--progress", "plain"],
    );
    crate::support::lamina_in_store(
        root,
        root_store.to_str().unwrap(),
        &["image", "export", "base:1", "-o", archive.to_str().unwrap()],
    );
    std::os::unix::fs::chown(&archive, Some(65534), Some(65534)).unwrap();
    as_nobody(&["image", "import", archive.to_str().unwrap(), "base:1"]);
    let built = as_nobody(&["build", "app", "--tag", "app:1", "--progress", "plain"]);
    assert!(built.contains("built sha256:"), "{built}");
    // Without root the base's layer cannot be unpacked into trees: the build keeps the base's
    // gzip (a plain image would need a decompressed copy of every base layer).
    let inspect: serde_json::Value =
        serde_json::from_str(&as_nobody(&["image", "inspect", "app:1", "--json"])).unwrap();
    for layer in inspect["manifest"]["layers"].as_array().unwrap() {
        let media_type = layer["mediaType"].as_str().unwrap();
        assert!(media_type.ends_with("gzip"), "{media_type}");
    }
}
