//! `lamina cache stats|gc|fsck|du` on a real store.

use std::path::Path;

use lamina::store::{BlobKind, ImageState, Store, StoreOptions};

use crate::support::{lamina_err, lamina_ok};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A store with one named image (manifest + config) and one unreferenced blob.
fn populated_store(dir: &Path) -> (String, String) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let config = store
        .put_bytes(BlobKind::Config, b"{\"architecture\":\"amd64\"}")
        .unwrap();
    let manifest = store
        .put_bytes(BlobKind::Manifest, b"{\"manifest\":1}")
        .unwrap();
    let loose = store
        .put_bytes(BlobKind::Layer, b"not referenced by anything")
        .unwrap();
    // The same bytes again: a dedupe hit, nothing written.
    store
        .put_bytes(BlobKind::Layer, b"not referenced by anything")
        .unwrap();
    store
        .tag_image(
            "app:1",
            &manifest.digest,
            &[config.digest],
            ImageState::Complete,
        )
        .unwrap();
    (config.digest.to_string(), loose.digest.to_string())
}

#[test]
fn stats_and_du_report_what_the_store_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    populated_store(&store);
    let store_arg = store.to_str().unwrap();

    let stats = json(&lamina_ok(
        tmp.path(),
        &["--store", store_arg, "cache", "stats", "--json"],
    ));
    assert_eq!(stats["blobs"], 3);
    assert_eq!(stats["images"], 1);
    assert_eq!(stats["dedupe_hits"], 1);
    assert!(stats["dedupe_ratio"].as_f64().unwrap() > 1.0, "{stats}");

    let text = lamina_ok(tmp.path(), &["--store", store_arg, "cache", "stats"]);
    assert!(text.contains("blobs          3"), "{text}");

    let du = json(&lamina_ok(
        tmp.path(),
        &["--store", store_arg, "cache", "du", "--json"],
    ));
    assert_eq!(du["kinds"]["layer"]["blobs"], 1);
    assert_eq!(du["kinds"]["config"]["blobs"], 1);
    let stored = stats["stored_bytes"].as_u64().unwrap();
    assert_eq!(du["blob_files_bytes"].as_u64().unwrap(), stored);
}

#[test]
fn store_location_comes_from_the_environment_too() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("from-env");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(["cache", "stats", "--json"])
        .env("LAMINA_STORE", &store)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = json(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(stats["store"], store.to_str().unwrap());
    assert!(store.join("LOCK").exists() || store.read_dir().unwrap().next().is_some());
}

#[test]
fn gc_keeps_named_images_and_removes_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (config, loose) = populated_store(&store);
    let store_arg = store.to_str().unwrap();

    // Fresh blobs are protected by the minimum age.
    let kept = json(&lamina_ok(
        tmp.path(),
        &["--store", store_arg, "cache", "gc", "--json"],
    ));
    assert_eq!(kept["blobs_removed"], 0);

    let swept = json(&lamina_ok(
        tmp.path(),
        &[
            "--store",
            store_arg,
            "cache",
            "gc",
            "--min-age",
            "0s",
            "--json",
        ],
    ));
    assert_eq!(swept["blobs_removed"], 1);
    assert_eq!(swept["blobs_kept"], 2);

    let reopened = Store::open(&store, StoreOptions::default()).unwrap();
    assert!(reopened.contains(&config.parse().unwrap()).unwrap());
    assert!(!reopened.contains(&loose.parse().unwrap()).unwrap());
}

#[test]
fn fsck_finds_a_corrupt_blob_and_repair_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (config, _) = populated_store(&store);
    let store_arg = store.to_str().unwrap();
    let clean = lamina_ok(tmp.path(), &["--store", store_arg, "cache", "fsck"]);
    assert!(clean.contains("0 issue(s)"), "{clean}");

    let path = {
        let opened = Store::open(&store, StoreOptions::default()).unwrap();
        let info = opened.stat(&config.parse().unwrap()).unwrap().unwrap();
        opened.blob_path(&info)
    };
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    std::fs::write(&path, b"{\"architecture\":\"arm64\"}").unwrap();

    let err = lamina_err(tmp.path(), &["--store", store_arg, "cache", "fsck"]);
    assert!(err.contains("--repair"), "{err}");
    let report = json(
        &String::from_utf8(
            crate::support::lamina(
                tmp.path(),
                &["--store", store_arg, "cache", "fsck", "--json"],
            )
            .stdout,
        )
        .unwrap(),
    );
    let issues = report["issues"].as_array().unwrap();
    assert!(
        issues.iter().any(|i| i.as_str().unwrap().contains(&config)),
        "{report}"
    );

    lamina_ok(
        tmp.path(),
        &["--store", store_arg, "cache", "fsck", "--repair"],
    );
    let after = lamina_ok(tmp.path(), &["--store", store_arg, "cache", "fsck"]);
    assert!(after.contains("0 issue(s)"), "{after}");
}

#[test]
fn bad_sizes_and_durations_say_what_to_write() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let store_arg = store.to_str().unwrap();
    let err = lamina_err(
        tmp.path(),
        &["--store", store_arg, "cache", "gc", "--max-size", "lots"],
    );
    assert!(err.contains("invalid size 'lots'"), "{err}");
    let err = lamina_err(
        tmp.path(),
        &["--store", store_arg, "cache", "gc", "--ttl", "soon"],
    );
    assert!(err.contains("invalid duration 'soon'"), "{err}");
}

/// File lengths below `dir`, each hard-linked file once (what `du -sb` counts, minus
/// directories).
fn bytes_below(dir: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            total += bytes_below(&path, seen);
        } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

/// A project whose store holds `big:1`: the busybox base and a RUN layer of ~3 MB, both
/// kept unpacked; `None` where `require` allows a skip.
fn project_with_a_big_layer() -> Option<crate::build::Project> {
    let project = crate::build::Project::with(&[(
        "big/Dockerfile",
        "FROM busybox:test\nRUN head -c 3000000 /bin/busybox > /blob\n",
    )])?;
    project.ok(&["build", "big", "--tag", "big:1", "--progress", "plain"]);
    Some(project)
}

#[test]
fn du_counts_unpacked_layers_and_everything_else_under_the_store() {
    let Some(project) = project_with_a_big_layer() else {
        return;
    };
    let du = json(&project.ok(&["cache", "du", "--json"]));
    // The base's COPY layer and the RUN layer, each kept unpacked.
    assert_eq!(du["unpacked_layers"], 2, "{du}");
    assert!(
        du["unpacked_layers_bytes"].as_u64().unwrap() > 3_000_000,
        "{du}"
    );
    let total = du["total_bytes"].as_u64().unwrap();
    let walked = bytes_below(&project.store(), &mut Default::default());
    // Opening the store for `du` rewrites a few small RocksDB files.
    assert!(
        total.abs_diff(walked) < 1 << 20,
        "du says {total}, the files hold {walked}"
    );
    let text = project.ok(&["cache", "du"]);
    assert!(
        text.contains("unpacked") && text.contains("2 layer(s)"),
        "{text}"
    );
}

#[test]
fn the_size_budget_covers_unpacked_layers_least_recently_used_first() {
    let Some(project) = project_with_a_big_layer() else {
        return;
    };
    // A store that received the image compressed (as from a registry): its layers are the
    // gzip blobs it got, and their unpacked trees are copies.
    let dir = project.dir.path();
    let archive = dir.join("big.tar");
    project.ok(&["image", "export", "big:1", "-o", archive.to_str().unwrap()]);
    let received = dir.join("received");
    let received = received.to_str().unwrap();
    let in_received = |args: &[&str]| {
        let mut all = vec!["--store", received];
        all.extend_from_slice(args);
        lamina_ok(dir, &all)
    };
    in_received(&["image", "import", archive.to_str().unwrap()]);
    let du = json(&in_received(&["cache", "du", "--json"]));
    // The budget counts blobs (what gc keeps), then unpacked layers and cache mounts.
    let blob_bytes = du["blob_files_bytes"].as_u64().unwrap();
    assert_eq!(du["unpacked_layers"], 2, "{du}");
    // A budget with room for the store and a little more: the unpacked copies go (they are
    // copies of stored blobs); the images stay.
    let max = (blob_bytes + 100_000).to_string();
    let gc_args = [
        "cache",
        "gc",
        "--max-size",
        &max,
        "--min-age",
        "0s",
        "--json",
    ];
    let gc = json(&in_received(&gc_args));
    assert!(gc["unpacked_layers_removed"].as_u64().unwrap() >= 1, "{gc}");
    let after = json(&in_received(&["cache", "du", "--json"]));
    assert!(
        after["unpacked_layers_bytes"].as_u64().unwrap() <= 100_000,
        "{after}"
    );
    // A RUN on the image unpacks what it needs again.
    crate::support::write_tree(
        dir,
        &[("more/Dockerfile", "FROM big:1\nRUN test -s /blob\n")],
    );
    in_received(&["build", "more", "--progress", "plain"]);

    // In the store that built it, the layers are tree-backed: their trees are the layers,
    // which the same budget never evicts (a named image's layers stay whole).
    let gc = json(&project.ok(&gc_args));
    assert_eq!(gc["unpacked_layers_removed"], 0, "{gc}");
    let du = json(&project.ok(&["cache", "du", "--json"]));
    assert_eq!(du["unpacked_layers"], 2, "{du}");
    project.ok(&["build", "more", "--progress", "plain"]);
}
