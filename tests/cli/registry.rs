//! `lamina push` and `lamina pull` through the binary against the real CNCF distribution
//! registry (Debian's docker-registry) on a free loopback port, checked with skopeo.

use std::process::Command;

use crate::support::{digest_of, lamina, lamina_in_store as run, write_tree};

// The same registry launcher the lamina-export tests use: one copy of the start-up logic.
#[path = "../../crates/lamina-export/tests/support/server.rs"]
#[allow(dead_code)]
pub mod server;

/// Whether the test must return now because a tool it drives is missing (see `require`).
fn tools_missing() -> bool {
    use crate::require::Need::Tool;
    crate::require::missing(&[Tool(server::BINARY), Tool("skopeo"), Tool("htpasswd")])
}

#[test]
fn push_then_pull_into_an_empty_store_keeps_the_digest() {
    if tools_missing() {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/data/a.txt", "alpha\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY data /data\nCMD [\"/data/a.txt\"]\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let built = run(
        dir.path(),
        store,
        &["build", "ctx", "--tag", "app:1", "--progress", "plain"],
    );
    let digest = digest_of(&built);
    let reference = format!("{}/team/app:1", registry.host());

    // zstd: the layers as built, so the registry has the built image's digest.
    let zstd = ["push", "app:1", &reference, "--compression", "zstd"];
    let pushed = run(dir.path(), store, &zstd);
    assert!(pushed.contains(&digest), "{pushed}");
    assert!(
        pushed.contains("2 blobs uploaded"),
        "a layer and a config: {pushed}"
    );
    let again = run(dir.path(), store, &zstd);
    assert!(
        again.contains("0 blobs uploaded") && again.contains("2 already there"),
        "{again}"
    );

    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["Digest"], serde_json::Value::from(digest.clone()));

    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let pulled = run(dir.path(), fresh, &["pull", &reference]);
    assert!(pulled.contains(&digest), "{pulled}");
    let listed = run(dir.path(), fresh, &["image", "ls"]);
    assert!(listed.contains(&reference), "{listed}");
    let fsck = run(dir.path(), fresh, &["cache", "fsck"]);
    assert!(fsck.contains(": 0 issue(s)"), "{fsck}");

    // A FROM that names a registry image not yet in the store pulls it; with a mirror, a
    // docker.io name is fetched from the local registry instead (how offline users point
    // builds at their own registry).
    run(
        dir.path(),
        store,
        &[
            "push",
            "app:1",
            &format!("{}/library/base:7", registry.host()),
            "--compression",
            "zstd",
        ],
    );
    write_tree(
        dir.path(),
        &[(
            "on-base/Dockerfile",
            "FROM docker.io/library/base:7\nENV LAYERED=yes\n",
        )],
    );
    let mirrored = dir.path().join("mirrored");
    let mirrored = mirrored.to_str().unwrap();
    let mirror = format!("docker.io={}", registry.host());
    let args = [
        "build",
        "on-base",
        "--registry-mirror",
        &mirror,
        "--progress",
        "plain",
    ];
    let built = run(dir.path(), mirrored, &args);
    assert!(built.contains("built sha256:"), "{built}");
    let listed = run(dir.path(), mirrored, &["image", "ls"]);
    assert!(
        listed.contains("base:7"),
        "the pulled base is in the store: {listed}"
    );
    // Now the base is in the store: no registry (and no mirror) is needed any more.
    drop(registry);
    let again = run(
        dir.path(),
        mirrored,
        &["build", "on-base", "--progress", "plain"],
    );
    assert!(again.contains("(1/1 steps cached)"), "{again}");
}

#[test]
fn pushing_to_a_registry_that_wants_credentials_says_so_and_works_with_them() {
    if tools_missing() {
        return;
    }
    let registry = server::Registry::start_with_auth("builder", "s3cret-pass");
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/f", "x\n"),
            ("ctx/Dockerfile", "FROM scratch\nCOPY f /f\n"),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    run(
        dir.path(),
        store,
        &["build", "ctx", "--tag", "app:1", "--progress", "plain"],
    );
    let reference = format!("{}/app:1", registry.host());

    let output = lamina(dir.path(), &["--store", store, "push", "app:1", &reference]);
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    let creds = "builder:s3cret-pass";
    let output = lamina(
        dir.path(),
        &[
            "--store", store, "push", "app:1", &reference, "--creds", creds,
        ],
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{all}");
    assert!(
        !all.contains("s3cret-pass"),
        "credentials are never printed: {all}"
    );
}

/// `skopeo inspect --raw` of `reference`: the manifest as the registry serves it.
fn raw_manifest(reference: &str) -> serde_json::Value {
    let output = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn layer_media_types(manifest: &serde_json::Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

fn blob_count(cwd: &std::path::Path, store: &str) -> u64 {
    let stats = run(cwd, store, &["cache", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    stats["blobs"].as_u64().unwrap()
}

#[test]
fn push_sends_gzip_by_default_made_once_and_pulled_back() {
    if tools_missing() {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/data/a.txt", &"alpha\n".repeat(10_000)),
            ("ctx/data/b.txt", "beta\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY data/a.txt /a.txt\nCOPY data/b.txt /b.txt\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let built = digest_of(&run(
        dir.path(),
        store,
        &["build", "ctx", "--tag", "app:1", "--progress", "plain"],
    ));
    let reference = format!("{}/team/app:gz", registry.host());

    // Built layers are zstd; the default push makes gzip variants and a manifest of its own.
    let pushed = run(dir.path(), store, &["push", "app:1", &reference]);
    let digest = digest_of(&pushed);
    assert_ne!(digest, built, "{pushed}");
    assert!(pushed.contains("2 of 2 layers compressed"), "{pushed}");
    let manifest = raw_manifest(&reference);
    assert_eq!(
        layer_media_types(&manifest),
        vec!["application/vnd.oci.image.layer.v1.tar+gzip"; 2]
    );

    // Again, to another repository: the stored variants go up, nothing new is stored.
    let blobs = blob_count(dir.path(), store);
    let other = format!("{}/team/other:gz", registry.host());
    let again = run(dir.path(), store, &["push", "app:1", &other]);
    assert_eq!(digest_of(&again), digest);
    assert!(again.contains("0 of 2 layers compressed"), "{again}");
    assert_eq!(blob_count(dir.path(), store), blobs, "no new blob");

    // A fresh store pulls the gzip image back with the pushed digest, layers as received.
    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let pulled = run(dir.path(), fresh, &["pull", &reference]);
    assert!(pulled.contains(&digest), "{pulled}");
    let fsck = run(dir.path(), fresh, &["cache", "fsck"]);
    assert!(fsck.contains(": 0 issue(s)"), "{fsck}");

    // An image from an uncompressed docker-archive is compressed on the way out.
    let archive = dir.path().join("plain.tar");
    let archive = archive.to_str().unwrap();
    run(
        dir.path(),
        store,
        &[
            "image",
            "export",
            "app:1",
            "--format",
            "docker-archive",
            "--compression",
            "none",
            "-o",
            archive,
        ],
    );
    let imported = dir.path().join("imported");
    let imported = imported.to_str().unwrap();
    run(
        dir.path(),
        imported,
        &["image", "import", archive, "plain:1"],
    );
    let from_plain = format!("{}/team/plain:1", registry.host());
    let pushed = run(dir.path(), imported, &["push", "plain:1", &from_plain]);
    assert!(pushed.contains("2 of 2 layers compressed"), "{pushed}");
    let manifest = raw_manifest(&from_plain);
    for media_type in layer_media_types(&manifest) {
        assert!(media_type.ends_with("gzip"), "{media_type}");
    }
    // The same tars in the same compression: the same blobs as the first push.
    let digests = |m: &serde_json::Value| -> Vec<serde_json::Value> {
        let layers = m["layers"].as_array().unwrap();
        layers.iter().map(|l| l["digest"].clone()).collect()
    };
    assert_eq!(digests(&manifest), digests(&raw_manifest(&reference)));

    // --compression none sends the tars themselves.
    let raw = format!("{}/team/plain:raw", registry.host());
    run(
        dir.path(),
        imported,
        &["push", "plain:1", &raw, "--compression", "none"],
    );
    for layer in raw_manifest(&raw)["layers"].as_array().unwrap() {
        let media_type = layer["mediaType"].as_str().unwrap();
        assert!(media_type.ends_with(".tar"), "{media_type}");
    }
}

/// A build that pulls its own base (gzip, never unpacked by a `pull`) names the same plain
/// layers on its first run and on a rebuild: the build's compression does not depend on
/// whether the base was unpacked before. It compresses nothing (no layer blob is written
/// beyond the base's), and a push makes the gzip variants, the base's as it was received.
#[test]
fn a_build_on_a_base_it_pulls_is_the_same_image_every_time() {
    if tools_missing() || crate::build::sandbox_missing() {
        return;
    }
    let registry = server::Registry::start();
    let project = crate::build::Project::new();
    let dir = project.dir.path();
    let base = format!("{}/lib/base:1", registry.host());
    project.ok(&["push", "busybox:test", &base, "--compression", "gzip"]);
    write_tree(
        dir,
        &[(
            "pulled/Dockerfile",
            &format!("FROM {base}\nRUN echo app > /app\n"),
        )],
    );
    let store = dir.join("fresh");
    let store = store.to_str().unwrap();
    let build = || {
        digest_of(&run(
            dir,
            store,
            &["build", "pulled", "--tag", "app:1", "--progress", "plain"],
        ))
    };
    let first = build();
    let du: serde_json::Value =
        serde_json::from_str(&run(dir, store, &["cache", "du", "--json"])).unwrap();
    assert_eq!(
        du["kinds"]["layer"]["blobs"], 1,
        "the base's gzip layer only: {du}"
    );
    assert_eq!(build(), first, "the rebuild names the same layers");

    let pushed = run(
        dir,
        store,
        &["push", "app:1", &format!("{}/app:1", registry.host())],
    );
    assert!(
        pushed.contains("already there"),
        "the base's layer: {pushed}"
    );
}
