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
    // An image whose layer names one path twice (as some real images do): its tree cannot
    // give that tar back, so the layer stays a blob and its unpacked tree is a copy.
    let dir = project.dir.path();
    let layout = dir.join("twice");
    write_oci_layout_of_one_tar(&layout, "twice:1", &tar_naming_a_path_twice(3_000_000));
    project.ok(&["image", "import", layout.to_str().unwrap()]);
    crate::support::write_tree(
        dir,
        &[(
            "more/Dockerfile",
            "FROM busybox:test\nCOPY --from=twice:1 /blob /blob\n",
        )],
    );
    project.ok(&["build", "more", "--progress", "plain"]);

    let du = json(&project.ok(&["cache", "du", "--json"]));
    // The budget counts blobs (what gc keeps) and the trees of tree-backed layers, then
    // unpacked copies and cache mounts.
    let blob_bytes = du["blob_files_bytes"].as_u64().unwrap();
    let unpacked = du["unpacked_layers_bytes"].as_u64().unwrap();
    // busybox, big's RUN, the COPY --from and the copy of twice:1's layer.
    assert_eq!(du["unpacked_layers"], 4, "{du}");
    // Room for the store and the trees that are layers, not for the 3 MB copy: the copy goes.
    let max = (blob_bytes + unpacked - 2_000_000).to_string();
    let gc_args = [
        "cache",
        "gc",
        "--max-size",
        &max,
        "--min-age",
        "0s",
        "--json",
    ];
    let gc = json(&project.ok(&gc_args));
    assert_eq!(gc["unpacked_layers_removed"], 1, "{gc}");
    let after = json(&project.ok(&["cache", "du", "--json"]));
    assert_eq!(after["unpacked_layers"], 3, "{after}");
    // A build reading the image unpacks what it needs again; the named images are whole.
    crate::support::write_tree(
        dir,
        &[(
            "again/Dockerfile",
            "FROM busybox:test\nCOPY --from=twice:1 /blob /again\n",
        )],
    );
    project.ok(&["build", "again", "--progress", "plain"]);
    project.ok(&["build", "big", "--tag", "big:1", "--progress", "plain"]);
}

/// A tar of `/blob` (`size` bytes) written twice, the second copy winning.
fn tar_naming_a_path_twice(size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for fill in [b'a', b'b'] {
        let mut header = tar::Header::new_ustar();
        header.set_size(size as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "blob", &vec![fill; size][..])
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// An OCI image layout at `dir` holding one image, `name`, of the single plain layer `tar`.
fn write_oci_layout_of_one_tar(dir: &Path, name: &str, tar: &[u8]) {
    use lamina::types::Digest;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::sha256_of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let (layer, layer_size) = put(tar);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A base received gzip (as from a registry) is tree-backed once unpacked and keeps its gzip
/// blob: a build on it compresses nothing (its image names plain layers, as Docker keeps
/// them until a push), and a gzip export names the base's layers by the digests received.
#[test]
fn a_build_on_a_base_received_gzip_compresses_nothing() {
    let Some(project) = project_with_a_big_layer() else {
        return;
    };
    let dir = project.dir.path();
    let archive = dir.join("big.tar");
    let archive = archive.to_str().unwrap();
    let exported = project.ok(&[
        "image",
        "export",
        "big:1",
        "--compression",
        "gzip",
        "-o",
        archive,
    ]);
    let received = dir.join("received");
    let received = received.to_str().unwrap();
    let in_received = |args: &[&str]| crate::support::lamina_in_store(dir, received, args);
    let imported = in_received(&["image", "import", archive]);
    assert_eq!(
        crate::support::digest_of(&imported),
        crate::support::digest_of(&exported)
    );
    let layer_blobs = |du: &serde_json::Value| du["kinds"]["layer"]["blobs"].as_u64().unwrap();
    let before = layer_blobs(&json(&in_received(&["cache", "du", "--json"])));

    crate::support::write_tree(dir, &[("on/Dockerfile", "FROM big:1\nRUN echo on > /on\n")]);
    in_received(&["build", "on", "--tag", "on:1", "--progress", "plain"]);
    let after = layer_blobs(&json(&in_received(&["cache", "du", "--json"])));
    assert_eq!(after, before, "no layer blob was written");
    let inspect = json(&in_received(&["image", "inspect", "on:1", "--json"]));
    let layers = inspect["manifest"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    for layer in layers {
        let media_type = layer["mediaType"].as_str().unwrap();
        assert!(media_type.ends_with(".tar"), "a plain layer: {media_type}");
    }

    // Exported gzip, the base's layers are the bytes received.
    let again = dir.join("on.tar");
    in_received(&[
        "image",
        "export",
        "on:1",
        "--compression",
        "gzip",
        "--format",
        "oci-dir",
        "-o",
        again.to_str().unwrap(),
    ]);
    let index = json(&std::fs::read_to_string(again.join("index.json")).unwrap());
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest_path = again.join("blobs/sha256").join(&manifest_digest[7..]);
    let manifest = json(&std::fs::read_to_string(manifest_path).unwrap());
    let base = json(&in_received(&["image", "inspect", "big:1", "--json"]));
    for (i, layer) in base["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            manifest["layers"][i]["digest"], layer["digest"],
            "layer {i}"
        );
    }
    let fsck = in_received(&["cache", "fsck"]);
    assert!(fsck.contains("0 issue(s)"), "{fsck}");
}
