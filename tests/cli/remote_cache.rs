//! `--cache-to` / `--cache-from` through the binary against the real registry: a store that
//! never ran the steps takes them from a registry cache written by another store, with its
//! base arrived another way and its checkout elsewhere.

use std::path::Path;

use serde_json::Value;

use crate::build::Project;
use crate::registry::server;
use crate::support::{lamina, lamina_in_store as run, write_tree};

fn tools_missing() -> bool {
    use crate::require::Need::{File, Root, Tool};
    crate::require::missing(&[
        Root,
        Tool("runc"),
        File("/bin/busybox"),
        Tool(server::BINARY),
        Tool("htpasswd"),
    ])
}

/// The definition: a build stage whose layers the final image does not hold, and a final
/// stage reading a `conf` directory late.
fn dockerfile(host: &str) -> String {
    format!(
        "FROM {host}/base:1 AS build\n\
         COPY src /src\n\
         RUN mkdir -p /out && cat /src/a.txt /src/b.txt > /out/all.txt && echo unused > /out/unused.txt\n\
         FROM {host}/base:1\n\
         COPY --from=build /out/all.txt /all.txt\n\
         RUN cat /all.txt > /copy.txt\n\
         COPY conf /conf\n\
         RUN cat /conf/c.txt >> /copy.txt\n\
         ENV DONE=1\n"
    )
}

fn checkout(root: &Path, name: &str, host: &str, conf: &str) -> String {
    write_tree(
        root,
        &[
            (&format!("{name}/Dockerfile"), &dockerfile(host)),
            (&format!("{name}/src/a.txt"), "alpha\n"),
            (&format!("{name}/src/b.txt"), "beta\n"),
            (&format!("{name}/conf/c.txt"), conf),
        ],
    );
    root.join(name).to_str().unwrap().to_owned()
}

/// `lamina build --progress json` lines: the result object and every event.
fn build_json(root: &Path, store: &str, args: &[&str]) -> (Value, Vec<Value>, String) {
    let mut all = vec!["--store", store, "build", "--progress", "json"];
    all.extend_from_slice(args);
    let output = lamina(root, &all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "lamina {all:?}: {stderr}");
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let result = events
        .iter()
        .find(|e| e["event"] == "result")
        .cloned()
        .expect("a result line");
    (result, events, stderr)
}

fn config_digest(root: &Path, store: &str, name: &str) -> String {
    let inspect: Value =
        serde_json::from_str(&run(root, store, &["image", "inspect", name, "--json"])).unwrap();
    inspect["manifest"]["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn fetched(events: &[Value]) -> (u64, u64) {
    events
        .iter()
        .filter(|e| e["event"] == "remote_layers_fetched")
        .fold((0, 0), |(n, b), e| {
            (
                n + e["layers"].as_u64().unwrap(),
                b + e["bytes"].as_u64().unwrap(),
            )
        })
}

#[test]
fn a_fresh_store_takes_every_step_from_a_registry_cache() {
    if tools_missing() {
        return;
    }
    let registry = server::Registry::start();
    let host = registry.host();
    // The base: built from busybox, pushed (gzip) for store A to pull, and saved as a
    // docker-archive with plain layers for the other stores to import (another manifest,
    // other layer blobs, the same config and tars).
    let project = Project::new();
    let root = project.dir.path();
    let seed = project.store();
    let seed = seed.to_str().unwrap();
    run(
        root,
        seed,
        &["push", "busybox:test", &format!("{host}/base:1")],
    );
    let archive = root.join("base.tar");
    run(
        root,
        seed,
        &[
            "image",
            "export",
            "busybox:test",
            "--format",
            "docker-archive",
            "--compression",
            "none",
            "--output",
            archive.to_str().unwrap(),
        ],
    );
    let cache = format!("{host}/cache:main");

    // Store A pulls the base and exports every step.
    let a = root.join("store-a");
    let a = a.to_str().unwrap();
    let one = checkout(root, "one/app", &host, "gamma\n");
    let cache_to = format!("{cache},mode=max");
    let (built, events, _) =
        build_json(root, a, &[&one, "--tag", "app:a", "--cache-to", &cache_to]);
    assert_eq!(built["steps"], 7);
    assert_eq!(built["cached"], 0);
    let exported = events
        .iter()
        .find(|e| e["event"] == "cache_exported")
        .expect("the cache was exported");
    assert_eq!(exported["records"], 7, "{exported}");
    let a_config = config_digest(root, a, "app:a");
    let pushed_a = run(root, a, &["push", "app:a", &format!("{host}/app:a")]);

    // Store B imports the base from the archive (other manifest, other compression) and
    // builds from another checkout: every step is a remote hit, nothing runs, and only
    // the final image's two built layers are downloaded (not the build stage's).
    let b = root.join("store-b");
    let b = b.to_str().unwrap();
    run(
        root,
        b,
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            &format!("{host}/base:1"),
        ],
    );
    let two = checkout(root, "elsewhere/two/app", &host, "gamma\n");
    let (built, events, _) = build_json(root, b, &[&two, "--tag", "app:b", "--cache-from", &cache]);
    assert_eq!(built["cached"], 7, "{built}");
    assert_eq!(built["remote_hits"], 7, "{built}");
    let (layers, bytes) = fetched(&events);
    assert_eq!(
        layers, 4,
        "the final stage's COPY --from, RUN, COPY and RUN layers, not the build stage's: {events:?}"
    );
    assert!(bytes > 0);
    assert_eq!(
        config_digest(root, b, "app:b"),
        a_config,
        "the same image config"
    );
    assert!(
        !events.iter().any(|e| e["event"] == "log"),
        "no RUN printed anything: nothing ran"
    );

    // Pushed with the same compression, B's image is A's, byte for byte; its layers are
    // mounted from the cache repository, not uploaded (only the config blob goes up).
    let pushed_b = run(root, b, &["push", "app:b", &format!("{host}/other:b")]);
    assert_eq!(
        crate::support::digest_of(&pushed_b),
        crate::support::digest_of(&pushed_a),
        "{pushed_a}\n{pushed_b}"
    );
    assert!(pushed_b.contains(" 1 blobs uploaded"), "{pushed_b}");
    assert!(
        pushed_b.contains(" 5 mounted"),
        "base and built layers: {pushed_b}"
    );

    // Store C changed one input: steps before it are remote hits, it and every later step
    // run, and --explain names the file by comparing with the writer's record.
    let c = root.join("store-c");
    let c = c.to_str().unwrap();
    run(
        root,
        c,
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            &format!("{host}/base:1"),
        ],
    );
    let three = checkout(root, "three/app", &host, "changed\n");
    let output = lamina(
        root,
        &[
            "--store",
            c,
            "build",
            &three,
            "--cache-from",
            &cache,
            "--explain",
            "--progress",
            "plain",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("first miss: step 5 (COPY conf /conf): inputs changed: conf/c.txt"),
        "{stdout}"
    );
    assert!(stdout.contains("(4/7 steps cached)"), "{stdout}");

    // A corrupted layer blob in the registry: a warning, then a correct build without the
    // cache.
    let inspect: Value =
        serde_json::from_str(&run(root, a, &["image", "inspect", "app:a", "--json"])).unwrap();
    let last = inspect["manifest"]["layers"][4]["digest"].as_str().unwrap();
    let hex = last.strip_prefix("sha256:").unwrap();
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let d = root.join("store-d");
    let d = d.to_str().unwrap();
    run(
        root,
        d,
        &[
            "image",
            "import",
            archive.to_str().unwrap(),
            &format!("{host}/base:1"),
        ],
    );
    let (built, _, stderr) = build_json(root, d, &[&two, "--tag", "app:d", "--cache-from", &cache]);
    assert!(stderr.contains("warning: remote cache"), "{stderr}");
    assert!(stderr.contains("building again without it"), "{stderr}");
    // Every step with a layer ran; only ENV, whose record named no layer and was taken
    // before the bad blob turned up, is a local hit the second time.
    assert_eq!(built["remote_hits"], 0, "{built}");
    assert_eq!(built["cached"], 1, "{built}");
    assert_eq!(config_digest(root, d, "app:d"), a_config);
}

/// A small definition without RUN (no sandbox needed) that differs by `word`.
fn copy_only(root: &Path, name: &str, word: &str) -> String {
    write_tree(
        root,
        &[
            (
                &format!("{name}/Dockerfile"),
                "FROM scratch\nCOPY f /f\nENV W=1\n",
            ),
            (&format!("{name}/f"), word),
        ],
    );
    root.join(name).to_str().unwrap().to_owned()
}

#[test]
fn concurrent_writers_to_one_cache_ref_keep_both_records() {
    if crate::require::missing(&[crate::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = format!("{}/cache:shared", registry.host());
    let defs: Vec<String> = ["one", "two"]
        .iter()
        .map(|w| copy_only(root, w, &format!("{w}\n")))
        .collect();
    let children: Vec<_> = defs
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let store = root.join(format!("writer-{i}"));
            std::process::Command::new(env!("CARGO_BIN_EXE_lamina"))
                .args([
                    "--store",
                    store.to_str().unwrap(),
                    "build",
                    def,
                    "--cache-to",
                    &cache,
                ])
                .current_dir(root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        // Both started before either is waited for: the exports overlap.
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reader = root.join("reader");
    let reader = reader.to_str().unwrap();
    for def in &defs {
        let (built, _, _) = build_json(root, reader, &[def, "--cache-from", &cache]);
        assert_eq!(built["cached"], 2, "{built}");
        assert_eq!(built["remote_hits"], 2, "{built}");
    }

    // prune-remote drops records older than the cutoff: none now, all with 0s.
    let pruned = run(
        root,
        reader,
        &["cache", "prune-remote", &cache, "--older-than", "1h"],
    );
    assert!(
        pruned.contains("0 record(s) removed, 4 kept, 2 writer(s)"),
        "{pruned}"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let pruned = run(
        root,
        reader,
        &["cache", "prune-remote", &cache, "--older-than", "1s"],
    );
    assert!(pruned.contains("4 record(s) removed, 0 kept"), "{pruned}");
    let fresh = root.join("fresh");
    let (built, _, _) = build_json(
        root,
        fresh.to_str().unwrap(),
        &[&defs[0], "--cache-from", &cache],
    );
    assert_eq!(built["remote_hits"], 0, "{built}");
}

#[test]
fn a_cache_behind_credentials_is_read_with_them_and_missed_without() {
    if crate::require::missing(&[
        crate::require::Need::Tool(server::BINARY),
        crate::require::Need::Tool("htpasswd"),
    ]) {
        return;
    }
    let registry = server::Registry::start_with_auth("ci", "cache-pass");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = format!("{}/team/cache:main", registry.host());
    let def = copy_only(root, "app", "data\n");
    let writer = root.join("writer");
    let writer = writer.to_str().unwrap();
    let creds = ["--creds", "ci:cache-pass"];

    // Without credentials the export fails after the image is stored...
    let output = lamina(
        root,
        &["--store", writer, "build", &def, "--cache-to", &cache],
    );
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("was built and stored") && err.contains("ignore-error=true"),
        "{err}"
    );
    // ...unless told to ignore it.
    let ignored = format!("{cache},ignore-error=true");
    let (_, _, stderr) = build_json(root, writer, &[&def, "--cache-to", &ignored]);
    assert!(stderr.contains("warning: exporting the cache"), "{stderr}");
    let mut args = vec![def.as_str(), "--cache-to", cache.as_str()];
    args.extend(creds);
    build_json(root, writer, &args);

    let reader = root.join("reader");
    let reader = reader.to_str().unwrap();
    let (built, _, stderr) = build_json(root, reader, &[&def, "--cache-from", &cache]);
    assert_eq!(built["remote_hits"], 0, "{built}");
    assert!(stderr.contains("cannot be read"), "{stderr}");
    let other = root.join("reader-2");
    let mut args = vec![def.as_str(), "--cache-from", cache.as_str()];
    args.extend(creds);
    let (built, _, stderr) = build_json(root, other.to_str().unwrap(), &args);
    assert_eq!(built["remote_hits"], 2, "{built}");
    assert!(
        !stderr.contains("cache-pass"),
        "credentials are never printed: {stderr}"
    );
}

#[test]
fn one_base_pulled_or_imported_gives_the_same_step_keys() {
    if crate::require::missing(&[crate::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let seed = root.join("seed");
    let seed = seed.to_str().unwrap();
    let base = copy_only(root, "base", "base\n");
    run(root, seed, &["build", &base, "--tag", "base:1"]);
    let pulled = format!("{}/base:1", registry.host());
    run(root, seed, &["push", "base:1", &pulled]);
    let archive = root.join("base.tar");
    let archive = archive.to_str().unwrap();
    run(
        root,
        seed,
        &[
            "image",
            "export",
            "base:1",
            "--format",
            "docker-archive",
            "--compression",
            "none",
            "--output",
            archive,
        ],
    );

    // One store holds the base twice: pulled (gzip, the registry's manifest) and imported
    // under another name (plain layers, a synthesized manifest). A step on either has one
    // key, so the second build runs nothing.
    let store = root.join("store");
    let store = store.to_str().unwrap();
    run(root, store, &["pull", &pulled]);
    run(root, store, &["image", "import", archive, "imported:1"]);
    let manifest = |name: &str| {
        let inspect: Value =
            serde_json::from_str(&run(root, store, &["image", "inspect", name, "--json"])).unwrap();
        inspect["manifest"].clone()
    };
    let (on_pulled, on_imported) = (manifest(&pulled), manifest("imported:1"));
    assert_ne!(on_pulled["layers"], on_imported["layers"], "other blobs");
    assert_eq!(
        on_pulled["config"]["digest"],
        on_imported["config"]["digest"]
    );
    write_tree(
        root,
        &[
            ("a/Dockerfile", &format!("FROM {pulled}\nENV X=1\n")),
            ("b/Dockerfile", "FROM imported:1\nENV X=1\n"),
        ],
    );
    let (first, _, _) = build_json(root, store, &["a"]);
    assert_eq!(first["cached"], 0, "{first}");
    let (second, _, _) = build_json(root, store, &["b"]);
    assert_eq!(second["cached"], 1, "the same key: {second}");
}

#[test]
fn an_image_pushed_with_an_inline_cache_record_is_a_cache_source() {
    if crate::require::missing(&[crate::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let def = copy_only(root, "app", "data\n");
    let writer = root.join("writer");
    let writer = writer.to_str().unwrap();
    run(
        root,
        writer,
        &["build", &def, "--tag", "app:1", "--cache-to", "inline"],
    );
    let inspect: Value =
        serde_json::from_str(&run(root, writer, &["image", "inspect", "app:1", "--json"])).unwrap();
    let records = &inspect["config"]["lamina.cache.v1"]["records"];
    assert_eq!(records.as_array().map(Vec::len), Some(2), "{inspect}");
    // The record is part of the config: opt-in, since it changes the image digest.
    let plain = root.join("plain");
    let plain = plain.to_str().unwrap();
    run(root, plain, &["build", &def, "--tag", "app:1"]);
    let plain_config = config_digest(root, plain, "app:1");
    assert_ne!(config_digest(root, writer, "app:1"), plain_config);

    // Pushed as gzip (built as zstd): the reader takes the layer the manifest names.
    let image = format!("{}/app:1", registry.host());
    run(root, writer, &["push", "app:1", &image]);
    let reader = root.join("reader");
    let reader = reader.to_str().unwrap();
    let (built, events, _) = build_json(
        root,
        reader,
        &[&def, "--tag", "app:1", "--cache-from", &image],
    );
    assert_eq!(built["remote_hits"], 2, "{built}");
    assert_eq!(fetched(&events).0, 1, "{events:?}");
    assert_eq!(config_digest(root, reader, "app:1"), plain_config);
}

#[test]
fn a_missing_or_damaged_cache_document_is_a_miss_with_a_warning() {
    if crate::require::missing(&[crate::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let def = copy_only(root, "app", "data\n");
    let cache = format!("{}/cache:main", registry.host());

    let (built, _, stderr) = build_json(
        root,
        &root.join("r1").to_string_lossy(),
        &[&def, "--cache-from", &cache],
    );
    assert_eq!(built["cached"], 0, "{built}");
    assert!(stderr.contains("holds no records"), "{stderr}");

    let writer = root.join("writer");
    run(
        root,
        writer.to_str().unwrap(),
        &["build", &def, "--cache-to", &cache],
    );
    // Flip a byte of the writer's document (the blob that is a version-1 cache document).
    let mut damaged = 0;
    for shard in
        std::fs::read_dir(registry.storage().join("docker/registry/v2/blobs/sha256")).unwrap()
    {
        for blob in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let data = blob.unwrap().path().join("data");
            let mut bytes = std::fs::read(&data).unwrap();
            if bytes.starts_with(b"{\"version\":1,") {
                let last = bytes.len() - 2;
                bytes[last] ^= 0x01;
                std::fs::write(&data, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1);
    let (built, _, stderr) = build_json(
        root,
        &root.join("r2").to_string_lossy(),
        &[&def, "--cache-from", &cache],
    );
    assert_eq!(built["remote_hits"], 0, "{built}");
    assert_eq!(built["cached"], 0, "{built}");
    assert!(
        stderr.contains("was rejected") && stderr.contains("its records are skipped"),
        "{stderr}"
    );
}
