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

    let pushed = run(dir.path(), store, &["push", "app:1", &reference]);
    assert!(pushed.contains(&digest), "{pushed}");
    assert!(
        pushed.contains("2 blobs uploaded"),
        "a layer and a config: {pushed}"
    );
    let again = run(dir.path(), store, &["push", "app:1", &reference]);
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
