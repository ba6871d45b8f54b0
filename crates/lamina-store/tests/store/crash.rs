//! kill -9 at random points of put, index update and GC: the store must open, pass fsck and
//! keep every blob whose put (and tag) had returned.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lamina_store::{BlobKind, Digest, FsckOptions, ImageState, Store, StoreOptions};

const WORKER_ENV: &str = "LAMINA_STORE_CRASH_WORKER";

fn options() -> StoreOptions {
    StoreOptions {
        min_age: Duration::ZERO,
        auto_gc: false,
        lock_timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    }
}

/// In the child (env var set): put, tag and collect forever, printing `kept <digest>` after
/// each put whose blob is rooted by an image. In a normal test run: returns at once.
#[test]
fn crash_worker() {
    let Ok(root) = std::env::var(WORKER_ENV) else {
        return;
    };
    let store = Store::open(&root, options()).expect("worker opens the store");
    let pid = u64::from(std::process::id());
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        // Some contents repeat across workers, to exercise the dedupe path too.
        let seed = if i % 4 == 0 {
            i % 16
        } else {
            pid * 1_000_000 + i
        };
        let bytes = super::data(seed, (seed as usize * 7919) % 150_000);
        let info = if i % 2 == 0 {
            store.put_bytes(BlobKind::Layer, &bytes).expect("put")
        } else {
            store.put(BlobKind::Layer, &bytes[..]).expect("put")
        };
        if i % 3 != 2 {
            let name = format!("crash:{pid}-{i}");
            store
                .tag_image(&name, &info.digest, &[], ImageState::Complete)
                .expect("tag");
            writeln!(out, "kept {}", info.digest).expect("stdout");
            out.flush().expect("stdout");
        }
        if i % 5 == 4 {
            store.gc().expect("gc");
        }
    }
}

#[test]
fn kill_9_at_random_points_loses_nothing_that_returned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64)
        | 1;
    let mut kept: Vec<Digest> = Vec::new();
    let start = Instant::now();
    for round in 0..30 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(30 + rng % 300);
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_worker",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        // Only whole lines: a line cut by the kill was never fully reported.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            // The harness may print `test ... ` before the first line on the same line.
            if let Some((_, d)) = line.trim_end().split_once("kept ") {
                kept.push(d.parse().unwrap());
            }
        }

        // Every round: opens, fsck (sizes) is clean, every reported blob is there. The
        // content of everything is re-hashed once at the end.
        let store = Store::open(&root, options()).unwrap();
        let report = store
            .fsck(FsckOptions {
                repair: false,
                verify_content: false,
            })
            .unwrap();
        assert!(
            report.is_clean(),
            "round {round} (killed after {delay:?}): {:?}",
            report.issues
        );
        for d in &kept {
            assert!(store.contains(d).unwrap(), "round {round}: lost {d}");
        }
    }
    let store = Store::open(&root, options()).unwrap();
    let report = store
        .fsck(FsckOptions {
            repair: false,
            verify_content: true,
        })
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.issues);
    for d in &kept {
        store.verify(d).unwrap_or_else(|e| panic!("lost {d}: {e}"));
    }
    assert!(
        kept.len() > 30,
        "workers made too little progress: {} blobs",
        kept.len()
    );
    let mut out = std::io::stderr().lock();
    writeln!(
        out,
        "crash test: {} rooted blobs survived 30 kills",
        kept.len()
    )
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(120));
}

const HOLD_ENV: &str = "LAMINA_STORE_HOLD_WORKER";

/// In the child (env var set): open the store, say so, hold it for 600 ms, exit.
#[test]
fn hold_worker() {
    let Ok(root) = std::env::var(HOLD_ENV) else {
        return;
    };
    let store = Store::open(&root, options()).expect("worker opens the store");
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened {}", std::process::id()).expect("stdout");
    out.flush().expect("stdout");
    std::thread::sleep(Duration::from_millis(600));
    drop(store);
}

#[test]
fn another_process_waits_for_the_holder() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::hold_worker",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, &root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let pid = loop {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some((_, pid)) = line.split_once("opened ") {
            break pid.to_owned();
        }
    };
    let impatient = StoreOptions {
        lock_timeout: Duration::from_millis(50),
        ..options()
    };
    match Store::open(&root, impatient) {
        Err(lamina_store::StoreError::Locked { holder, .. }) => {
            assert_eq!(holder, format!("process {pid}"));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let store = Store::open(&root, options()).expect("opens once the holder exits");
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
    child.wait().unwrap();
}
