//! `lamina image export` and `lamina image import` through the binary, checked with skopeo.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{digest_of, lamina_err, lamina_in_store as run, write_tree};

fn skopeo_inspect(transport: &str) -> Value {
    skopeo_inspect_with(&[], transport)
}

/// `skopeo inspect EXTRA… TRANSPORT` as JSON (`--raw`: the manifest as stored).
pub(crate) fn skopeo_inspect_with(extra: &[&str], transport: &str) -> Value {
    let output = Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .arg(transport)
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo inspect {transport}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn exported_archives_are_read_by_skopeo_and_imported_back() {
    if crate::require::missing(&[crate::require::Need::Tool("skopeo")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/etc/motd", "hello\n"),
            ("ctx/bin/tool", "#!/bin/sh\necho tool\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY etc /etc\nCOPY bin /bin\nENV A=1\nENTRYPOINT [\"/bin/tool\"]\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let built = run(
        dir.path(),
        store,
        &["build", "ctx", "--tag", "demo:1", "--progress", "plain"],
    );
    let digest = digest_of(&built);

    let oci_dir = dir.path().join("out/layout");
    let oci_tar = dir.path().join("out/image.tar");
    let docker_tar = dir.path().join("out/docker.tar");
    let mut exported = Vec::new();
    for (format, path) in [
        ("oci-dir", &oci_dir),
        ("oci-archive", &oci_tar),
        ("docker-archive", &docker_tar),
    ] {
        let out = path.to_str().unwrap();
        exported.push(digest_of(&run(
            dir.path(),
            store,
            &["image", "export", "demo:1", "--format", format, "-o", out],
        )));
    }
    // gzip by default: the image in gzip has its own manifest, the same in both OCI forms.
    let gzip_digest = exported[0].clone();
    assert_ne!(gzip_digest, digest);
    assert_eq!(exported[1], gzip_digest);

    // In the layout, ref.name is the tag (the containerd convention); skopeo reads all three.
    let layout = skopeo_inspect(&format!("oci:{}:1", oci_dir.display()));
    assert_eq!(layout["Digest"], Value::from(gzip_digest.clone()));
    assert_eq!(layout["Layers"].as_array().unwrap().len(), 2);
    let blob = oci_dir
        .join("blobs/sha256")
        .join(&gzip_digest["sha256:".len()..]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    let archive = skopeo_inspect(&format!("oci-archive:{}", oci_tar.display()));
    assert_eq!(archive["Digest"], Value::from(gzip_digest.clone()));
    let docker = skopeo_inspect(&format!("docker-archive:{}", docker_tar.display()));
    assert_eq!(docker["Architecture"], "amd64");
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 2);

    // Import into a fresh store: OCI forms give the same digest back.
    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let imported = run(
        dir.path(),
        fresh,
        &["image", "import", oci_tar.to_str().unwrap(), "again:1"],
    );
    assert_eq!(digest_of(&imported), gzip_digest);
    let imported = run(
        dir.path(),
        fresh,
        &["image", "import", docker_tar.to_str().unwrap()],
    );
    assert!(
        imported.contains("demo:1"),
        "the docker archive's RepoTags name it: {imported}"
    );
    let inspect: Value = serde_json::from_str(&run(
        dir.path(),
        fresh,
        &["image", "inspect", "demo:1", "--json"],
    ))
    .unwrap();
    assert_eq!(
        inspect["config"]["config"]["Entrypoint"],
        serde_json::json!(["/bin/tool"])
    );

    // An image built FROM the imported one needs no registry.
    write_tree(
        dir.path(),
        &[("on-top/Dockerfile", "FROM again:1\nENV B=2\n")],
    );
    let on_top = run(
        dir.path(),
        fresh,
        &["build", "on-top", "--progress", "plain"],
    );
    assert!(on_top.contains("built sha256:"), "{on_top}");
}

fn stored_blobs(cwd: &Path, store: &str) -> u64 {
    let stats: Value = serde_json::from_str(&run(cwd, store, &["cache", "stats", "--json"]))
        .expect("stats are JSON");
    stats["blobs"].as_u64().unwrap()
}

/// `umoci unpack` of the image tagged `tag` in the layout `layout` into `bundle`.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    let output = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .output()
        .expect("umoci is needed for this test (Debian's `umoci` package)");
    assert!(
        output.status.success(),
        "umoci unpack {}: {}",
        layout.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn default_exports_unpack_with_umoci_and_variants_are_made_once() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/etc/motd", "hello from lamina\n"),
            ("ctx/Dockerfile", "FROM scratch\nCOPY etc /etc\n"),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let built = digest_of(&run(
        dir.path(),
        store,
        &["build", "ctx", "--tag", "motd:1", "--progress", "plain"],
    ));
    let layout = dir.path().join("layout");
    let archive = dir.path().join("image.tar");
    let export = |format: &str, out: &Path, extra: &[&str]| {
        let mut args = vec!["image", "export", "motd:1", "--format", format, "-o"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        run(dir.path(), store, &args)
    };

    let first = export("oci-dir", &layout, &[]);
    assert!(first.contains("compressed 1 of 1 layers"), "{first}");
    let blobs = stored_blobs(dir.path(), store);
    // Every later gzip export reuses the variant and its manifest: nothing new is stored.
    let again = export("oci-archive", &archive, &[]);
    assert!(again.contains("compressed 0 of 1 layers"), "{again}");
    assert_eq!(digest_of(&again), digest_of(&first));
    assert_eq!(stored_blobs(dir.path(), store), blobs);

    // umoci 0.4 reads no zstd; the default exports it unpacks, the directory and the archive
    // (a layout in a tar) alike.
    umoci_unpack(&layout, "1", &dir.path().join("from-dir"));
    let unpacked = dir.path().join("from-archive-layout");
    std::fs::create_dir(&unpacked).unwrap();
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(untar.success());
    umoci_unpack(&unpacked, "1", &dir.path().join("from-archive"));
    for bundle in ["from-dir", "from-archive"] {
        let motd = dir.path().join(bundle).join("rootfs/etc/motd");
        assert_eq!(
            std::fs::read_to_string(&motd).unwrap(),
            "hello from lamina\n"
        );
    }

    // zstd on request: the layers as built, the built image's digest.
    let zstd = export(
        "oci-dir",
        &dir.path().join("zstd"),
        &["--compression", "zstd"],
    );
    assert_eq!(digest_of(&zstd), built);
    assert!(zstd.contains("compressed 0 of 1 layers"), "{zstd}");
}

#[test]
fn importing_something_that_is_not_an_image_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("not-an-image.tar", "definitely not a tar file")],
    );
    let store = dir.path().join("store");
    let err = lamina_err(
        dir.path(),
        &[
            "--store",
            store.to_str().unwrap(),
            "image",
            "import",
            "not-an-image.tar",
            "x:1",
        ],
    );
    assert!(err.contains("not-an-image.tar"), "{err}");
}
