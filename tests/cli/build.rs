//! `lamina build` and `lamina image` end to end: real RUN steps under runc on overlayfs, on a
//! busybox base built from scratch (no registry), through the binary.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{lamina, lamina_err, lamina_ok, write_tree};

/// Whether the test must return now because RUN steps cannot run here (root, runc and
/// busybox are needed; see `require`).
pub fn sandbox_missing() -> bool {
    use crate::require::Need::{File, Root, Tool};
    crate::require::missing(&[Root, Tool("runc"), File("/bin/busybox")])
}

/// A temp dir with a store, a busybox base tagged `busybox:test`, and the app definition.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("base/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "ls", "mkdir", "id", "sort", "tr", "pwd", "test", "stat", "wc",
            "head", "touch",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        write_tree(
            dir.path(),
            &[
                ("base/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                ("base/rootfs/etc/group", "root:x:0:\n"),
                (
                    "base/lamina.toml",
                    "[image]\nscratch = true\n\n[[step]]\nadd_local_dir = { local = \"rootfs\", remote = \"/\" }\n",
                ),
                ("app/lamina.toml", APP),
                ("app/src/setup.sh", "echo building; ls > listing.txt\n"),
                ("app/src/hello.sh", "echo \"$GREETING\"\n"),
            ],
        );
        let project = Project { dir };
        project.ok(&[
            "build",
            "base",
            "--tag",
            "busybox:test",
            "--progress",
            "plain",
        ]);
        project
    }

    /// A project with `files` written below it, or `None` where `require` allows a skip of
    /// a test that needs the sandbox.
    pub fn with(files: &[(&str, &str)]) -> Option<Project> {
        if sandbox_missing() {
            return None;
        }
        let project = Project::new();
        write_tree(project.dir.path(), files);
        Some(project)
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn args<'a>(&'a self, store: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--store", store];
        all.extend_from_slice(args);
        all
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let store = self.store();
        lamina_ok(self.dir.path(), &self.args(store.to_str().unwrap(), args))
    }

    /// Starts `lamina` on this project's store with `args`, stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let store = self.store();
        Command::new(env!("CARGO_BIN_EXE_lamina"))
            .args(self.args(store.to_str().unwrap(), args))
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn err(&self, args: &[&str]) -> String {
        let store = self.store();
        lamina_err(self.dir.path(), &self.args(store.to_str().unwrap(), args))
    }

    /// Builds `definition` with JSON progress; returns the events and the result object.
    fn build_json(&self, definition: &str, extra: &[&str]) -> (Vec<Value>, Value) {
        let mut args = vec!["build", definition, "--progress", "json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        let mut events: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let result = events.pop().expect("a result line");
        assert_eq!(result["event"], "result", "{result}");
        (events, result)
    }
}

const APP: &str = r#"
[image]
base = "busybox:test"

[[step]]
env = { GREETING = "hello from lamina" }

[[step]]
workdir = "/home/app"

[[step]]
add_local_dir = { local = "src", remote = "/home/app" }

[[step]]
run = "sh setup.sh"

[[step]]
entrypoint = ["sh", "/home/app/hello.sh"]
"#;

/// Indexes (1-based) of the steps the events say came from the cache.
fn cached_steps(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["cached"] == true)
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

#[test]
fn second_build_and_a_moved_checkout_hit_every_step() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    let (events, cold) = project.build_json("app", &["--tag", "app:test"]);
    assert_eq!(cold["steps"], 5, "{cold}");
    assert_eq!(cold["cached"], 0, "{cold}");
    let logs: Vec<_> = events.iter().filter(|e| e["event"] == "log").collect();
    assert!(
        logs.iter()
            .any(|e| e["line"] == "building" && e["index"] == 4),
        "RUN output is streamed: {events:?}"
    );

    let (_, warm) = project.build_json("app", &["--tag", "app:test"]);
    assert_eq!(warm["cached"], 5, "{warm}");
    assert_eq!(warm["digest"], cold["digest"]);
    assert_eq!(warm["first_miss"], Value::Null);

    // Another checkout: same content, other path, fresh mtimes.
    let moved = project.dir.path().join("elsewhere/app");
    std::fs::create_dir_all(&moved).unwrap();
    for name in ["lamina.toml", "src/setup.sh", "src/hello.sh"] {
        let to = moved.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(project.dir.path().join("app").join(name), to).unwrap();
    }
    let (_, moved) = project.build_json("elsewhere/app", &[]);
    assert_eq!(moved["cached"], 5, "{moved}");
    assert_eq!(moved["digest"], cold["digest"]);

    // The RUN step's result is in the image: its config and its layers.
    let inspect: Value =
        serde_json::from_str(&project.ok(&["image", "inspect", "app:test", "--json"])).unwrap();
    assert_eq!(inspect["digest"], cold["digest"]);
    let config = &inspect["config"]["config"];
    assert_eq!(config["WorkingDir"], "/home/app");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["sh", "/home/app/hello.sh"])
    );
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hello from lamina"),
        "{config}"
    );
    assert_eq!(inspect["config"]["architecture"], "amd64");
}

#[test]
fn a_changed_byte_misses_from_its_step_on_and_explain_names_the_file() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    let (_, first) = project.build_json("app", &[]);
    std::fs::write(
        project.dir.path().join("app/src/hello.sh"),
        "echo \"$GREETING!\"\n",
    )
    .unwrap();
    let (events, second) = project.build_json("app", &[]);
    assert_ne!(second["digest"], first["digest"]);
    assert_eq!(cached_steps(&events), vec![1, 2], "{events:?}");
    let miss = second["first_miss"].as_str().unwrap();
    assert!(miss.contains("hello.sh"), "{miss}");

    let text = project.ok(&["build", "app", "--explain", "--progress", "plain"]);
    assert!(text.contains("first miss: none"), "{text}");
}

#[test]
fn a_failing_run_names_the_step_and_exit_code() {
    let Some(project) = Project::with(&[(
        "failing/Dockerfile",
        "FROM busybox:test\nRUN echo about to fail && exit 3\n",
    )]) else {
        return;
    };
    let err = project.err(&[
        "build",
        "failing",
        "--tag",
        "failing:test",
        "--progress",
        "plain",
    ]);
    assert!(
        err.contains("exit code 3") || err.contains("exited with 3"),
        "{err}"
    );
    assert!(
        err.contains("about to fail"),
        "the last lines are shown: {err}"
    );
    let listing = project.ok(&["image", "ls", "--json"]);
    let rows: Value = serde_json::from_str(&listing).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "failing:test" || r["state"] == "build_failed"),
        "{rows}"
    );
}

#[test]
fn image_commands_list_tag_show_history_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("ctx/hello.txt", "hello\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nCOPY hello.txt /hello.txt\nENV A=1\nCMD [\"/hello\"]\n",
            ),
        ],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--store", store];
        all.extend_from_slice(args);
        lamina_ok(dir.path(), &all)
    };
    let built = run(&["build", "ctx", "--tag", "hello", "--progress", "plain"]);
    assert!(built.contains("tagged hello:latest"), "{built}");
    run(&["image", "tag", "hello", "hello:v2"]);
    let ls = run(&["image", "ls"]);
    assert!(
        ls.contains("hello:latest") && ls.contains("hello:v2"),
        "{ls}"
    );
    let history = run(&["image", "history", "hello:v2"]);
    assert!(history.contains("COPY hello.txt /hello.txt"), "{history}");
    assert!(history.contains("ENV A=1"), "{history}");
    run(&["image", "rm", "hello:latest"]);
    let ls = run(&["image", "ls", "--json"]);
    let rows: Value = serde_json::from_str(&ls).unwrap();
    let names: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("hello:v2")]);
    let row = &rows[0];
    assert!(
        row["last_used"].as_str().unwrap() >= row["created"].as_str().unwrap(),
        "{row}"
    );
    let output = lamina(
        dir.path(),
        &["--store", store, "image", "rm", "hello:latest"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no image named hello:latest"));
}

#[test]
fn two_build_processes_at_once_run_a_step_once() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    // The RUN records a value that differs on every run: one digest means it ran once.
    write_tree(
        project.dir.path(),
        &[(
            "slow/Dockerfile",
            "FROM busybox:test\nRUN sleep 1 && echo $$-$RANDOM > /once\n",
        )],
    );
    let spawn = || project.spawn(&["build", "slow", "--progress", "json"]);
    let (first, second) = (spawn(), spawn());
    let results: Vec<Value> = [first, second]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(results[0]["digest"], results[1]["digest"], "{results:?}");
    let cached: Vec<_> = results
        .iter()
        .map(|r| r["cached"].as_u64().unwrap())
        .collect();
    assert!(
        cached.contains(&0) && cached.contains(&1),
        "one ran, one hit: {cached:?}"
    );
}

#[test]
fn gc_removes_the_unpacked_copies_of_collected_layers() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    project.ok(&["build", "app", "--tag", "app:test", "--progress", "plain"]);
    let layers_dir = project.store().join("exec/layers");
    let unpacked = || {
        std::fs::read_dir(&layers_dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().unwrap().is_dir() && e.file_name().len() == 64)
            .count()
    };
    assert!(unpacked() > 0, "the RUN step unpacked its lower layers");

    // While the images are named, GC keeps their layers and the unpacked copies.
    project.ok(&["cache", "gc", "--ttl", "0s", "--min-age", "0s"]);
    assert!(unpacked() > 0);

    project.ok(&["image", "rm", "app:test", "busybox:test"]);
    let gc: Value = serde_json::from_str(&project.ok(&[
        "cache",
        "gc",
        "--ttl",
        "0s",
        "--min-age",
        "0s",
        "--json",
    ]))
    .unwrap();
    assert!(gc["unpacked_layers_removed"].as_u64().unwrap() > 0, "{gc}");
    assert_eq!(unpacked(), 0, "{gc}");
    let fsck = project.ok(&["cache", "fsck"]);
    assert!(fsck.contains(": 0 issue(s)"), "{fsck}");
}
