//! Warm rebuilds through the binary (issue 13): a rebuild whose steps all hit opens the
//! index read-only and records its uses in the store's touch log; the next writer (or GC)
//! merges them; GC never takes what a rebuild beside it reports; a process killed while it
//! appends leaves nothing the next command cannot read; the binary starts without loading
//! the shared C++ library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use lamina::store::{Store, StoreOptions};
use serde_json::Value;

use crate::support::{lamina, lamina_ok, write_tree};

/// A context with a COPY-only Dockerfile (no RUN: no sandbox needed), and a store beside it.
struct Warm {
    dir: tempfile::TempDir,
}

impl Warm {
    fn new() -> Warm {
        let dir = tempfile::tempdir().unwrap();
        for variant in ["a", "b"] {
            write_tree(
                dir.path(),
                &[
                    (
                        &format!("{variant}/files/one.txt"),
                        &format!("one {variant}\n"),
                    ),
                    (&format!("{variant}/files/two/three.txt"), "three\n"),
                    (
                        &format!("{variant}/Dockerfile"),
                        "FROM scratch\nCOPY files/one.txt /one.txt\nENV APP=/srv\n\
                         COPY files/two /srv/two\nWORKDIR /srv\nLABEL x=y\nUSER 1000\n\
                         ENTRYPOINT [\"/bin/sh\"]\n",
                    ),
                ],
            );
        }
        Warm { dir }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn args<'a>(&'a self, store: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--store", store];
        all.extend_from_slice(args);
        all
    }

    fn ok(&self, args: &[&str]) -> String {
        let store = self.store();
        lamina_ok(self.dir.path(), &self.args(store.to_str().unwrap(), args))
    }

    /// Builds `variant` with JSON progress; returns the result object.
    fn build(&self, variant: &str, extra: &[&str]) -> Value {
        let mut args = vec!["build", variant, "--progress", "json"];
        args.extend_from_slice(extra);
        result_of(&self.ok(&args))
    }
}

fn result_of(stdout: &str) -> Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or_else(|| panic!("no result in {stdout}"))
}

/// Output with the build's duration (`in 4 ms`) left out.
fn without_time(out: &str) -> String {
    out.split(' ')
        .filter(|w| w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn all_cached(result: &Value) -> bool {
    result["cached"] == result["steps"]
}

/// Name, size and modification time of every file in the index directory.
fn index_files(store: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(store.join("index-v2"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (meta.len(), meta.modified().unwrap()),
            )
        })
        .collect()
}

#[test]
fn an_all_hit_rebuild_opens_the_index_read_only() {
    let warm = Warm::new();
    let first = warm.build("a", &["--tag", "app:1"]);
    let explain_first = warm.ok(&["build", "a", "--tag", "app:1", "--explain"]);
    let before = index_files(&warm.store());
    let again = warm.build("a", &["--tag", "app:1"]);
    assert!(all_cached(&again), "{again}");
    assert_eq!(again["digest"], first["digest"]);
    // No OPTIONS file, MANIFEST record, WAL or table file was written.
    assert_eq!(index_files(&warm.store()), before);
    let explain = warm.ok(&["build", "a", "--tag", "app:1", "--explain"]);
    assert_eq!(
        without_time(&explain),
        without_time(&explain_first),
        "same output and --explain"
    );
    assert!(explain.contains("first miss: none"), "{explain}");

    // It needs no write section: it succeeds while this process holds the store's.
    let holder = Store::open(
        warm.store(),
        StoreOptions {
            idle_close: None,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert!(holder.index_is_open());
    let store = warm.store();
    let out = lamina(
        warm.dir.path(),
        &[
            "--store",
            store.to_str().unwrap(),
            "--wait",
            "300ms",
            "build",
            "a",
            "--tag",
            "app:1",
            "--progress",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "an all-hit rebuild waited for the write section: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held = result_of(&String::from_utf8_lossy(&out.stdout));
    assert!(all_cached(&held));
    assert_eq!(held["digest"], first["digest"]);
    drop(holder);
}

fn last_used(warm: &Warm, name: &str) -> String {
    let rows: Value = serde_json::from_str(&warm.ok(&["image", "ls", "--json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str().is_some_and(|n| n.contains(name)))
        .unwrap_or_else(|| panic!("{name} not listed: {rows}"))["last_used"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn touch_log(store: &Path) -> u64 {
    std::fs::metadata(store.join("touches-v1")).map_or(0, |m| m.len())
}

#[test]
fn uses_recorded_by_an_all_hit_rebuild_reach_image_ls_and_gc() {
    let warm = Warm::new();
    warm.build("a", &["--tag", "app:1"]);
    let untagged = warm.build("b", &[]);
    let listed = last_used(&warm, "app:1");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(all_cached(&warm.build("a", &["--tag", "app:1"])));
    assert!(all_cached(&warm.build("b", &[])));
    assert!(
        touch_log(&warm.store()) > 0,
        "the rebuilds recorded their uses"
    );
    // GC merges them before it decides: the untagged image's entries were used 0 s ago, so a
    // 2 s TTL keeps its manifest (without the rebuild it goes: see below).
    warm.ok(&["cache", "gc", "--ttl", "2s", "--min-age", "0s"]);
    assert_eq!(touch_log(&warm.store()), 0, "gc merged the log");
    let store = Store::open(warm.store(), StoreOptions::default()).unwrap();
    let digest: lamina::store::Digest = untagged["digest"].as_str().unwrap().parse().unwrap();
    assert!(store.contains(&digest).unwrap(), "the used image was kept");
    drop(store);
    let newer = last_used(&warm, "app:1");
    assert!(newer > listed, "last used moved: {listed} -> {newer}");

    // Without a use in the last 2 s, the same GC takes it.
    std::thread::sleep(Duration::from_millis(2500));
    warm.ok(&["cache", "gc", "--ttl", "2s", "--min-age", "0s"]);
    let store = Store::open(warm.store(), StoreOptions::default()).unwrap();
    assert!(!store.contains(&digest).unwrap(), "an unused image expires");
    assert!(store.fsck(Default::default()).unwrap().is_clean());
}

#[test]
fn gc_in_a_loop_beside_all_hit_rebuilds_never_takes_a_reported_result() {
    let warm = Warm::new();
    warm.build("a", &["--tag", "app:1"]);
    warm.build("b", &["--tag", "app:2"]);
    let collector = crate::support::GcLoop::start(warm.dir.path(), &warm.store());
    let store_path = warm.store();
    for round in 0..12 {
        // The tag moves between the two variants, so each rebuild's layers are kept only by
        // its cache entries (which GC expires) and by its own read section or lease.
        let variant = ["a", "b"][round % 2];
        let result = warm.build(variant, &["--tag", "app:moving"]);
        let digest: lamina::store::Digest = result["digest"].as_str().unwrap().parse().unwrap();
        let store = Store::open(
            &store_path,
            StoreOptions {
                read_only: true,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        // Named now, so no GC may have taken it or what it needs.
        assert!(store.contains(&digest).unwrap(), "round {round}: {result}");
        let image = store
            .image("docker.io/library/app:moving")
            .unwrap()
            .unwrap();
        for reference in &image.references {
            assert!(
                store.contains(reference).unwrap() || store.layer(reference).unwrap().is_some(),
                "round {round}: {reference} is gone"
            );
        }
    }
    assert!(collector.stop() >= 2, "gc ran beside the rebuilds");
    assert!(warm.ok(&["cache", "fsck"]).contains(": 0 issue(s)"));
    let archive = warm.dir.path().join("moving.tar");
    warm.ok(&[
        "image",
        "export",
        "app:moving",
        "-o",
        archive.to_str().unwrap(),
    ]);
}

#[test]
fn a_process_killed_while_recording_uses_leaves_a_store_the_next_command_reads() {
    let warm = Warm::new();
    let first = warm.build("a", &["--tag", "app:1"]);
    let store = warm.store();
    for delay_ms in [0u64, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lamina"))
            .args([
                "--store",
                store.to_str().unwrap(),
                "build",
                "a",
                "--tag",
                "app:1",
            ])
            .current_dir(warm.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // A torn record, as a kill -9 in the middle of an append leaves it, then a whole one.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(store.join("touches-v1"))
        .unwrap();
    std::io::Write::write_all(&mut log, &[0xC7, 0x1A, 1, 32, 0, 9, 9]).unwrap();
    drop(log);
    let again = warm.build("a", &["--tag", "app:1"]);
    assert!(all_cached(&again));
    assert_eq!(again["digest"], first["digest"]);
    warm.ok(&["cache", "gc"]);
    assert_eq!(touch_log(&store), 0, "the next writer merged the log");
    assert!(warm.ok(&["cache", "fsck"]).contains(": 0 issue(s)"));
    assert!(warm.ok(&["image", "ls"]).contains("app"));
}

/// Loading the shared C++ library (RocksDB's libstdc++) cost every command ~1 ms of a ~8 ms
/// warm rebuild; `crates/lamina-cli/build.rs` links it statically and falls back with only a
/// build warning, so this checks that the static link took.
#[test]
fn the_binary_does_not_load_the_shared_cpp_library() {
    if crate::require::missing(&[crate::require::Need::Tool("readelf")]) {
        return;
    }
    let output = Command::new("readelf")
        .args(["--dynamic", env!("CARGO_BIN_EXE_lamina")])
        .output()
        .expect("readelf (binutils) runs");
    assert!(output.status.success(), "readelf failed: {output:?}");
    let dynamic = String::from_utf8_lossy(&output.stdout);
    assert!(dynamic.contains("Shared library: [libc.so.6]"), "{dynamic}");
    assert!(!dynamic.contains("libstdc++"), "{dynamic}");
}
