//! `lamina image export` and `lamina image import` through the binary, checked with skopeo.

use std::process::Command;

use serde_json::Value;

use crate::support::{digest_of, lamina_err, lamina_in_store as run, write_tree};

fn skopeo_inspect(transport: &str) -> Value {
    let output = Command::new("skopeo")
        .args(["inspect", transport])
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
    for (format, path) in [
        ("oci-dir", &oci_dir),
        ("oci-archive", &oci_tar),
        ("docker-archive", &docker_tar),
    ] {
        let out = path.to_str().unwrap();
        run(
            dir.path(),
            store,
            &["image", "export", "demo:1", "--format", format, "-o", out],
        );
    }

    // The OCI forms keep the image digest (zstd layers, as stored); skopeo reads all three.
    // In the layout, ref.name is the tag (the containerd convention).
    let layout = skopeo_inspect(&format!("oci:{}:1", oci_dir.display()));
    assert_eq!(layout["Digest"], Value::from(digest.clone()));
    assert_eq!(layout["Layers"].as_array().unwrap().len(), 2);
    let archive = skopeo_inspect(&format!("oci-archive:{}", oci_tar.display()));
    assert_eq!(archive["Digest"], Value::from(digest.clone()));
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
    assert_eq!(digest_of(&imported), digest);
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
