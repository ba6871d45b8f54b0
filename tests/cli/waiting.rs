//! Every command that writes waits the same way for another process's index section:
//! `--wait` or `LAMINA_WAIT`, a note on stderr naming the holder, a one-line error when it
//! gives up. Commands that only read never wait.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lamina::store::{Store, StoreOptions};

/// Runs `lamina --store STORE args..` with `env` set, returning (success, stdout, stderr).
fn run(store: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lamina"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("LAMINA_WAIT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("the lamina binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_writing_command_waits_for_the_holder_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // This test process holds the index (as a long GC would) for ~1.5 s, then closes it.
    let store = Store::open(&path, holding()).unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(store);
    });
    let start = Instant::now();
    let (ok, _, stderr) = run(&path, &["cache", "gc", "--wait", "10s"], &[]);
    let waited = start.elapsed();
    holder.join().unwrap();
    assert!(ok, "cache gc failed: {stderr}");
    assert!(
        waited >= Duration::from_millis(1000),
        "did not wait: {waited:?}"
    );
    let pid = format!("process {}", std::process::id());
    let notes: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("waiting for the store"))
        .collect();
    assert_eq!(notes.len(), 1, "one note while waiting: {stderr}");
    assert!(
        notes[0].contains(&pid),
        "the note names the holder: {stderr}"
    );
    assert!(
        notes[0].contains("--wait"),
        "the note names the option: {stderr}"
    );
}

/// Options that keep the index open until the store is dropped: a stand-in for a process
/// in a long index section.
fn holding() -> StoreOptions {
    StoreOptions {
        idle_close: None,
        ..StoreOptions::default()
    }
}

/// A command line and the environment it runs with.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

#[test]
fn a_short_wait_fails_in_one_line_naming_holder_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let _store = Store::open(&path, holding()).unwrap();
    let pid = format!("process {}", std::process::id());
    // The global option after the subcommand, and the environment variable, for commands
    // that open the store in different ways (the engine, the store alone, a build).
    let cases: [Case<'_>; 3] = [
        (&["cache", "gc", "--wait", "300ms"], &[]),
        (&["cache", "fsck"], &[("LAMINA_WAIT", "300ms")]),
        (&["--wait", "0s", "image", "rm", "app:1"], &[]),
    ];
    for (args, env) in cases {
        let start = Instant::now();
        let (ok, _, stderr) = run(&path, args, env);
        assert!(!ok, "lamina {args:?} should fail while the store is held");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{args:?} waited too long"
        );
        let lines: Vec<_> = stderr
            .lines()
            .filter(|l| !l.starts_with("waiting for"))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {args:?}: {stderr}");
        assert!(lines[0].contains(&pid), "names the holder: {stderr}");
        assert!(
            lines[0].contains("--wait") && lines[0].contains("LAMINA_WAIT"),
            "names the option: {stderr}"
        );
    }
}

#[test]
fn readers_do_not_wait_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    // Written once, so the readers have an index to open.
    drop(Store::open(&path, StoreOptions::default()).unwrap());
    let _store = Store::open(&path, holding()).unwrap();
    for args in [
        &["image", "ls", "--wait", "300ms"][..],
        &["cache", "stats", "--wait", "300ms"],
        &["cache", "du", "--wait", "300ms"],
    ] {
        let (ok, _, stderr) = run(&path, args, &[]);
        assert!(ok, "lamina {args:?} waited for the holder: {stderr}");
        assert!(!stderr.contains("waiting for"), "{stderr}");
    }
    let (ok, _, stderr) = run(
        &path,
        &["image", "inspect", "app:1", "--wait", "300ms"],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("app:1") && !stderr.contains("in use by"),
        "{stderr}"
    );
}
