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
         RUN echo step-ran && mkdir -p /out && cat /src/a.txt /src/b.txt > /out/all.txt && echo unused > /out/unused.txt\n\
         FROM {host}/base:1\n\
         COPY --from=build /out/all.txt /all.txt\n\
         RUN echo step-ran && cat /all.txt > /copy.txt\n\
         COPY conf /conf\n\
         RUN echo step-ran && cat /conf/c.txt >> /copy.txt\n\
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

/// RUN steps that ran: each prints `step-ran`.
fn markers(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == "log" && e.to_string().contains("step-ran"))
        .count()
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

/// Layer blob traffic in a registry access log: bytes of successful `GET`s of `digests`,
/// and uploads (`PUT`/`PATCH`) naming one of them.
fn layer_traffic(log: &str, digests: &[String]) -> (u64, usize) {
    let hexes: Vec<&str> = digests
        .iter()
        .map(|d| d.strip_prefix("sha256:").unwrap())
        .collect();
    let mut downloaded = 0;
    let mut uploads = 0;
    for line in log.lines() {
        let Some(hex) = hexes.iter().find(|h| line.contains(*h)) else {
            continue;
        };
        if line.contains("\"GET ") && line.contains(&format!("/blobs/sha256:{hex} ")) {
            // `"GET … HTTP/1.1" 200 <bytes> …`
            let after = line.split("\" ").nth(1).unwrap_or_default();
            let mut fields = after.split(' ');
            if fields.next() == Some("200") {
                downloaded += fields
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if line.contains("\"PUT ") || line.contains("\"PATCH ") {
            uploads += 1;
        }
    }
    (downloaded, uploads)
}

/// A new store holding only the base, imported from `archive` (not pulled) as
/// `<host>/base:1`; returns its path.
fn store_with_base(root: &Path, name: &str, archive: &Path, host: &str) -> String {
    let store = root.join(name).to_str().unwrap().to_owned();
    let base = format!("{host}/base:1");
    run(
        root,
        &store,
        &["image", "import", archive.to_str().unwrap(), &base],
    );
    store
}

fn stats(root: &Path, store: &str) -> Value {
    serde_json::from_str(&run(root, store, &["cache", "stats", "--json"])).unwrap()
}

#[test]
fn a_fresh_store_takes_every_step_from_a_registry_cache() {
    if tools_missing() || crate::require::missing(&[crate::require::Need::Tool("umoci")]) {
        return;
    }
    let registry = server::Registry::start_logged();
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
    let (built_a, events, _) =
        build_json(root, a, &[&one, "--tag", "app:a", "--cache-to", &cache_to]);
    assert_eq!(built_a["steps"], 7);
    assert_eq!(built_a["cached"], 0);
    let exported = events
        .iter()
        .find(|e| e["event"] == "cache_exported")
        .expect("the cache was exported");
    assert_eq!(exported["records"], 7, "{exported}");
    let a_config = config_digest(root, a, "app:a");
    let pushed_a = run(root, a, &["push", "app:a", &format!("{host}/app:a")]);
    let inspect: Value =
        serde_json::from_str(&run(root, a, &["image", "inspect", "app:a", "--json"])).unwrap();
    let built_layers: Vec<String> = inspect["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(built_layers.len(), 4);

    // Store B imports the base from the archive (other manifest, other compression) and
    // builds from another checkout: every step is a remote hit, nothing runs, and no layer
    // is downloaded: the image names its layers as the registry holds them.
    let b = &store_with_base(root, "store-b", &archive, &host);
    let log_before = registry.access_log().len();
    let two = checkout(root, "elsewhere/two/app", &host, "gamma\n");
    let (built, events, _) = build_json(root, b, &[&two, "--tag", "app:b", "--cache-from", &cache]);
    // The build stage is only read by a COPY --from that hits: it is never built.
    assert_eq!(built["steps"], 5, "{built}");
    assert_eq!(built["cached"], 5, "{built}");
    assert_eq!(built["remote_hits"], 5, "{built}");
    assert_eq!(fetched(&events), (0, 0), "{events:?}");
    assert_eq!(
        layer_traffic(&registry.access_log()[log_before..], &built_layers),
        (0, 0),
        "no layer bytes went through the registry"
    );
    assert_eq!(markers(&events), 0, "no RUN ran: {events:?}");
    assert_eq!(built["digest"], built_a["digest"], "the writer's image");
    assert_eq!(config_digest(root, b, "app:b"), a_config);
    assert!(run(root, b, &["image", "ls"]).contains("app:b"));
    // The image's built layers are remote: counted apart, no bytes here.
    let remote = stats(root, b);
    assert_eq!(remote["remote_layers"], 4, "{remote}");
    assert!(remote["remote_bytes"].as_u64().unwrap() > 0, "{remote}");
    let du = run(root, b, &["cache", "du"]);
    assert!(du.contains("remote") && du.contains("4 layer(s)"), "{du}");
    assert!(run(root, b, &["cache", "fsck"]).contains(": 0 issue(s)"));

    // Pushed to the same registry, B's image is A's, byte for byte, and no layer goes up
    // or comes down: the base is mounted from its repository, the built layers from the
    // cache repository (only the config blob is uploaded).
    let log_before = registry.access_log().len();
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
    assert_eq!(
        layer_traffic(&registry.access_log()[log_before..], &built_layers),
        (0, 0),
        "{pushed_b}"
    );

    // Exporting needs the bytes: the four layers are fetched (verified) and stored, and the
    // layout is one umoci unpacks.
    let log_before = registry.access_log().len();
    let layout = root.join("layout-b");
    run(
        root,
        b,
        &[
            "image",
            "export",
            "app:b",
            "--format",
            "oci-dir",
            "--output",
            layout.to_str().unwrap(),
        ],
    );
    let (downloaded, uploads) = layer_traffic(&registry.access_log()[log_before..], &built_layers);
    assert!(downloaded > 0 && uploads == 0, "{downloaded} {uploads}");
    assert_eq!(stats(root, b)["remote_layers"], 0, "all fetched");
    let bundle = root.join("bundle-b");
    let unpacked = std::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:b", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        unpacked.status.success(),
        "{}",
        String::from_utf8_lossy(&unpacked.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/copy.txt")).unwrap(),
        "alpha\nbeta\ngamma\n"
    );
    assert!(run(root, b, &["cache", "fsck"]).contains(": 0 issue(s)"));

    // Store C changed one input: steps before it are remote hits, it and every later step
    // run, and --explain names the file by comparing with the writer's record.
    let c = &store_with_base(root, "store-c", &archive, &host);
    let three = checkout(root, "three/app", &host, "changed\n");
    let output = lamina(
        root,
        &[
            "--store",
            c,
            "build",
            &three,
            "--tag",
            "app:c",
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
    assert!(stdout.contains("(2/5 steps cached)"), "{stdout}");
    let c_config = config_digest(root, c, "app:c");

    // mode=min records only the target stage's steps; a reader still runs nothing, the
    // build stage behind its COPY --from is neither built nor fetched.
    let cache_min = format!("{host}/cache-min:main");
    let (_, events, _) = build_json(root, a, &[&one, "--cache-to", &cache_min]);
    let exported = events
        .iter()
        .find(|e| e["event"] == "cache_exported")
        .expect("the cache was exported");
    assert_eq!(exported["records"], 5, "{exported}");
    let e = &store_with_base(root, "store-e", &archive, &host);
    let (built, events, _) = build_json(root, e, &[&two, "--cache-from", &cache_min]);
    assert_eq!(built["remote_hits"], 5, "{built}");
    assert_eq!(
        markers(&events),
        0,
        "the build stage's RUN did not run: {events:?}"
    );
    assert_eq!(fetched(&events), (0, 0), "{events:?}");
    assert_eq!(built["digest"], built_a["digest"]);

    // A corrupted layer blob in the registry, under a step that runs (so its bytes are
    // read): a warning, then a correct build without the cache.
    let last = &built_layers[1];
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
    let d = &store_with_base(root, "store-d", &archive, &host);
    let (built, events, stderr) =
        build_json(root, d, &[&three, "--tag", "app:d", "--cache-from", &cache]);
    assert!(stderr.contains("warning: remote cache"), "{stderr}");
    assert!(stderr.contains("building again without it"), "{stderr}");
    // Every step ran: the first attempt failed before its first miss could run.
    assert_eq!(built["remote_hits"], 0, "{built}");
    assert_eq!(built["cached"], 0, "{built}");
    assert_eq!(
        markers(&events),
        3,
        "both RUNs of the final stage and the build stage's ran"
    );
    assert_eq!(config_digest(root, d, "app:d"), c_config);
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

/// Builds `defs[i]` in `stores[i]` with `--cache-to cache`, all started before any is
/// waited for (the exports overlap); each must succeed.
fn export_at_once(root: &Path, stores: &[String], defs: &[String], cache: &str) {
    let children: Vec<_> = stores
        .iter()
        .zip(defs)
        .map(|(store, def)| {
            std::process::Command::new(env!("CARGO_BIN_EXE_lamina"))
                .args(["--store", store, "build", def, "--cache-to", cache])
                .current_dir(root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
    let stores: Vec<String> = (0..defs.len())
        .map(|i| {
            root.join(format!("writer-{i}"))
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    export_at_once(root, &stores, &defs, &cache);
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

/// Regression (issue 15): two processes of one store share its writer tag; exporting at
/// the same moment, neither loses the other's records.
#[test]
fn two_builds_of_one_store_exporting_at_once_keep_both_record_sets() {
    if crate::require::missing(&[crate::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = server::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cache = format!("{}/cache:one-store", registry.host());
    let store = root.join("shared-store");
    let store = store.to_str().unwrap();
    for round in 0..3 {
        let defs: Vec<String> = ["left", "right"]
            .iter()
            .map(|w| copy_only(root, &format!("{w}-{round}"), &format!("{w} {round}\n")))
            .collect();
        export_at_once(root, &[store.to_owned(), store.to_owned()], &defs, &cache);
        // An empty store finds both builds' records (and every earlier round's).
        let reader = root.join(format!("reader-{round}"));
        for def in &defs {
            let (built, _, _) = build_json(
                root,
                reader.to_str().unwrap(),
                &[def, "--cache-from", &cache],
            );
            assert_eq!(built["remote_hits"], 2, "round {round}: {built}");
        }
    }
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
    // Builds with an inline record and returns the image's inspection.
    let build_inline = || -> Value {
        run(
            root,
            writer,
            &["build", &def, "--tag", "app:1", "--cache-to", "inline"],
        );
        serde_json::from_str(&run(root, writer, &["image", "inspect", "app:1", "--json"])).unwrap()
    };
    let inspect = build_inline();
    let records = &inspect["config"]["lamina.cache.v1"]["records"];
    assert_eq!(records.as_array().map(Vec::len), Some(2), "{inspect}");
    // Rebuilt with every step a hit, the record still names the COPY's inputs (for a
    // reader's `--explain`): hits make them only when a record is written.
    let inspect = build_inline();
    let steps = &inspect["config"]["lamina.cache.v1"]["builds"][0]["steps"]["steps"];
    let copy = steps
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["text"] == "COPY f /f"))
        .unwrap_or_else(|| panic!("no COPY step recorded: {inspect}"));
    assert_eq!(copy["inputs"][0][0], "f", "{copy}");
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
    // The layer stays in the image's repository until read: exporting fetches it.
    assert_eq!(fetched(&events).0, 0, "{events:?}");
    assert_eq!(config_digest(root, reader, "app:1"), plain_config);
    assert_eq!(stats(root, reader)["remote_layers"], 1);
    let out = root.join("app.tar");
    run(
        root,
        reader,
        &["image", "export", "app:1", "-o", out.to_str().unwrap()],
    );
    assert_eq!(stats(root, reader)["remote_layers"], 0);
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
