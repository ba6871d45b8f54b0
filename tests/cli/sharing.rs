//! Many processes on one store: builds run their steps side by side, identical steps run
//! once, readers answer while a RUN runs, a killed step-lock holder is taken over, and GC
//! runs beside builds without taking what they use.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::build::{Project, sandbox_missing};
use crate::support::write_tree;

/// Counts HTTP requests on a free 127.0.0.1 port: a RUN step that fetches from it leaves a
/// mark outside the store each time it really runs.
struct RunCounter {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl RunCounter {
    fn start() -> RunCounter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(
                    b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nran",
                );
            }
        });
        RunCounter { port, hits }
    }

    /// A shell command that marks one run.
    fn mark(&self) -> String {
        format!("wget -q -O /marked http://127.0.0.1:{}/", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Waits for `child`, asserting success; returns stdout.
fn finish(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until a RUN step's container runs in this project's store (its run directory
/// exists), for at most 20 s.
fn wait_for_a_run(project: &Project) {
    let runs = project.store().join("exec/runs");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if std::fs::read_dir(&runs).is_ok_and(|mut d| d.next().is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no RUN started within 20 s");
}

#[test]
fn eight_processes_build_on_one_store_and_a_shared_step_runs_once() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    let counter = RunCounter::start();
    for i in 0..8 {
        write_tree(
            project.dir.path(),
            &[(
                &format!("d{i}/Dockerfile"),
                &format!(
                    "FROM busybox:test\nRUN {} && sleep 1\nRUN echo {i} > /id\n",
                    counter.mark()
                ),
            )],
        );
    }
    let children: Vec<_> = (0..8)
        .map(|i| project.spawn(&["build", &format!("d{i}"), "--tag", &format!("d{i}:1")]))
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        finish(child, &format!("build {i}"));
    }
    assert_eq!(counter.hits(), 1, "the shared RUN ran once");
    for i in 0..8 {
        project.ok(&["image", "inspect", &format!("d{i}:1")]);
    }
    assert!(project.ok(&["cache", "fsck"]).contains(": 0 issue(s)"));
}

#[test]
fn two_builds_with_long_run_steps_run_them_at_the_same_time() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    write_tree(
        project.dir.path(),
        &[
            (
                "a/Dockerfile",
                "FROM busybox:test\nRUN sleep 4 && echo a > /a\n",
            ),
            (
                "b/Dockerfile",
                "FROM busybox:test\nRUN sleep 4 && echo b > /b\n",
            ),
        ],
    );
    let start = Instant::now();
    let (a, b) = (
        project.spawn(&["build", "a"]),
        project.spawn(&["build", "b"]),
    );
    finish(a, "build a");
    finish(b, "build b");
    let took = start.elapsed();
    // One after the other would take 8 s and more.
    assert!(took < Duration::from_millis(7500), "took {took:?}");
}

#[test]
fn readers_answer_at_once_while_another_process_runs_a_step() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    write_tree(
        project.dir.path(),
        &[(
            "slow/Dockerfile",
            "FROM busybox:test\nRUN sleep 6 && echo done > /done\n",
        )],
    );
    let build = project.spawn(&["build", "slow", "--tag", "slow:1"]);
    wait_for_a_run(&project);
    for args in [
        &["image", "ls"][..],
        &["image", "inspect", "busybox:test"],
        &["cache", "stats"],
        &["cache", "du"],
    ] {
        let start = Instant::now();
        project.ok(args);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "lamina {args:?} took {took:?} during a RUN"
        );
    }
    finish(build, "the slow build");
    assert!(project.ok(&["image", "ls"]).contains("slow"));
}

#[test]
fn a_killed_step_lock_holder_is_taken_over_by_a_waiting_build() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    let counter = RunCounter::start();
    write_tree(
        project.dir.path(),
        &[(
            "shared/Dockerfile",
            &format!("FROM busybox:test\nRUN sleep 3 && {}\n", counter.mark()),
        )],
    );
    let mut first = project.spawn(&["build", "shared"]);
    wait_for_a_run(&project);
    let second = project.spawn(&["build", "shared", "--tag", "shared:1"]);
    // The second waits on the step's lock the first holds.
    std::thread::sleep(Duration::from_millis(700));
    first.kill().unwrap();
    first.wait().unwrap();
    let out = finish(second, "the waiting build");
    assert!(out.contains("sha256:"), "{out}");
    assert_eq!(
        counter.hits(),
        1,
        "the step ran to its end once, in the waiter"
    );
    assert!(project.ok(&["cache", "fsck"]).contains(": 0 issue(s)"));
    // What the killed process left is reclaimed by the next command.
    project.ok(&["cache", "gc"]);
    let runs = project.store().join("exec/runs");
    assert!(
        std::fs::read_dir(&runs).map_or(true, |mut d| d.next().is_none()),
        "a run directory was left"
    );
}

#[test]
fn gc_in_a_loop_beside_four_builds_takes_nothing_they_use() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    for i in 0..4 {
        write_tree(
            project.dir.path(),
            &[
                (&format!("g{i}/data/file.txt"), &format!("data {i}\n")),
                (
                    &format!("g{i}/Dockerfile"),
                    &format!(
                        "FROM busybox:test\nRUN echo one {i} > /one\nCOPY data /data\n\
                         RUN cat /one /data/file.txt > /two\nWORKDIR /w{i}\n\
                         RUN echo three > three\n"
                    ),
                ),
            ],
        );
    }
    let collector = crate::support::GcLoop::start(project.dir.path(), &project.store());
    for round in 0..2 {
        let builds: Vec<_> = (0..4)
            .map(|i| {
                project.spawn(&[
                    "build",
                    &format!("g{i}"),
                    "--tag",
                    &format!("g{i}:{round}"),
                    "--no-cache",
                ])
            })
            .collect();
        for (i, child) in builds.into_iter().enumerate() {
            finish(child, &format!("build {i} of round {round}"));
        }
    }
    assert!(collector.stop() >= 2, "gc ran beside the builds");
    assert!(project.ok(&["cache", "fsck"]).contains(": 0 issue(s)"));
    for i in 0..4 {
        let archive = project.dir.path().join(format!("g{i}.tar"));
        project.ok(&[
            "image",
            "export",
            &format!("g{i}:1"),
            "-o",
            archive.to_str().unwrap(),
        ]);
        assert!(std::fs::metadata(&archive).unwrap().len() > 0);
    }
}
