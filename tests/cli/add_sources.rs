//! `ADD` of local archives through the binary: `check` no longer warns, `build` extracts a
//! GNU tar gzip archive (or keeps it with `--unpack=false`), and refuses an archive whose
//! entry escapes the destination with a one-line error naming the step and the entry.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{lamina, lamina_ok, write_tree};

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("the tool runs");
    assert!(status.success(), "{cmd:?}");
}

/// The merged rootfs of `tag`, exported as an OCI layout and unpacked with GNU tar.
fn rootfs(dir: &Path, store: &str, tag: &str) -> std::path::PathBuf {
    let layout = dir.join(format!("layout-{tag}"));
    lamina_ok(
        dir,
        &[
            "--store",
            store,
            "image",
            "export",
            tag,
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
        ],
    );
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let json = |path: std::path::PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let out = dir.join(format!("rootfs-{tag}"));
    std::fs::create_dir_all(&out).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blob(layer["digest"].as_str().unwrap());
        run(Command::new("tar").arg("-xf").arg(path).arg("-C").arg(&out));
    }
    out
}

#[test]
fn add_extracts_a_local_archive_and_refuses_an_escaping_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            ("tree/a/hello.txt", "hello from the archive\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nADD app.tgz /opt/app\nADD --unpack=false app.tgz /keep/\n",
            ),
            ("evil/Dockerfile", "FROM scratch\nADD evil.tar /x/\n"),
            ("evil/escape.txt", "outside\n"),
            ("evil/sub/.keep", ""),
        ],
    );
    run(Command::new("tar")
        .args(["-czf", "../ctx/app.tgz", "a"])
        .current_dir(root.join("tree")));
    // -P keeps the `../` GNU tar would strip.
    run(Command::new("tar")
        .args(["-P", "-cf", "../evil.tar", "../escape.txt"])
        .current_dir(root.join("evil/sub")));

    let check = lamina(root, &["check", "ctx/Dockerfile"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(!stderr.contains("would fail"), "{stderr}");

    let store = root.join("store");
    let store = store.to_str().unwrap();
    lamina_ok(
        root,
        &[
            "--store",
            store,
            "build",
            "ctx",
            "--tag",
            "arc:1",
            "--progress",
            "plain",
        ],
    );
    let fs = rootfs(root, store, "arc:1");
    assert_eq!(
        std::fs::read_to_string(fs.join("opt/app/a/hello.txt")).unwrap(),
        "hello from the archive\n"
    );
    assert_eq!(
        std::fs::read(fs.join("keep/app.tgz")).unwrap(),
        std::fs::read(root.join("ctx/app.tgz")).unwrap()
    );

    let output = lamina(
        root,
        &["--store", store, "build", "evil", "--progress", "plain"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("ADD evil.tar /x/") && l.contains("../escape.txt")),
        "{stderr}"
    );
}
