//! kill -9 at random points of put, index update and GC: the store must open, pass fsck and
//! keep every blob whose put (and tag) had returned.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lamina_store::{BlobKind, Digest, FsckOptions, ImageState, Store, StoreOptions};

const WORKER_ENV: &str = "LAMINA_STORE_CRASH_WORKER";
const IDLE_ENV: &str = "LAMINA_STORE_IDLE_WORKER";

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

/// In the child (env var set): open the store with its index held (no idle close), say so,
/// hold it for 600 ms, exit.
#[test]
fn hold_worker() {
    let Ok(root) = std::env::var(HOLD_ENV) else {
        return;
    };
    let holding = StoreOptions {
        idle_close: None,
        ..options()
    };
    let store = Store::open(&root, holding).expect("worker opens the store");
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened {}", std::process::id()).expect("stdout");
    out.flush().expect("stdout");
    std::thread::sleep(Duration::from_millis(600));
    drop(store);
}

/// In the child (env var set): open the store as a build would (index closed when idle),
/// put a blob, say so, keep the store open for 3 s, put another, exit.
#[test]
fn idle_worker() {
    let Ok(root) = std::env::var(IDLE_ENV) else {
        return;
    };
    let store = Store::open(&root, options()).expect("worker opens the store");
    store
        .put_bytes(BlobKind::Config, b"worker first")
        .expect("worker puts");
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened {}", std::process::id()).expect("stdout");
    out.flush().expect("stdout");
    std::thread::sleep(Duration::from_secs(3));
    store
        .put_bytes(BlobKind::Config, b"worker second")
        .expect("worker puts again");
}

#[test]
fn another_process_with_the_store_open_does_not_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (mut child, _) = spawn_worker("crash::idle_worker", IDLE_ENV, &root, "opened ");
    // The worker still has its Store open (for 3 s) but not its index: were it held, this
    // would give up after 2 s with `Locked`.
    let impatient = StoreOptions {
        lock_timeout: Duration::from_secs(2),
        ..options()
    };
    let store = Store::open(&root, impatient).expect("opens beside the other process");
    let mine = store.put_bytes(BlobKind::Config, b"parent").unwrap();
    assert!(child.wait().unwrap().success());
    for bytes in [&b"worker first"[..], b"worker second"] {
        assert!(store.contains(&Digest::blake3_of(bytes)).unwrap());
    }
    assert!(store.contains(&mine.digest).unwrap());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

#[test]
fn another_process_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (mut child, said) = spawn_worker("crash::hold_worker", HOLD_ENV, &root, "opened ");
    let pid = said;
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

const LEASE_ENV: &str = "LAMINA_STORE_LEASE_WORKER";

/// Starts this test binary's worker test `test` with `env` naming the store `root`, and
/// waits for its stdout line containing `marker`; returns the child (the caller waits for
/// it) and what followed the marker.
#[allow(clippy::zombie_processes)]
fn spawn_worker(
    test: &str,
    env: &str,
    root: &std::path::Path,
    marker: &str,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env, root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some((_, said)) = line.split_once(marker) {
            // The rest is drained, so the worker never writes to a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, said.to_owned());
        }
    }
}

/// In the child (env var set): take an hour-long lease, write a blob under it, say so, then
/// wait to be killed.
#[test]
fn lease_worker() {
    let Ok(root) = std::env::var(LEASE_ENV) else {
        return;
    };
    let store = Store::open(&root, options()).expect("worker opens the store");
    let lease = store.lease(Duration::from_secs(3600)).expect("lease");
    let mut writer = store.writer(BlobKind::Layer).expect("writer").lease(&lease);
    writer.write_all(b"leased by the worker").expect("write");
    let info = writer.commit().expect("commit");
    let mut out = std::io::stdout().lock();
    writeln!(out, "leased {}", info.digest).expect("stdout");
    out.flush().expect("stdout");
    std::thread::sleep(Duration::from_secs(60));
    drop(lease);
}

#[test]
fn a_killed_processs_lease_ends_with_it_and_a_live_ones_holds_in_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (mut child, said) = spawn_worker("crash::lease_worker", LEASE_ENV, &root, "leased ");
    let digest: Digest = said.trim().parse().unwrap();
    let store = Store::open(&root, options()).unwrap();
    // Nothing is young (min_age 0): only the other process's lease keeps the blob.
    let report = store.gc().unwrap();
    assert_eq!(report.leases_expired, 0);
    assert!(
        store.contains(&digest).unwrap(),
        "a live process's lease holds"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let report = store.gc().unwrap();
    assert_eq!(
        report.leases_expired, 1,
        "the dead owner's lease ended at once"
    );
    assert!(!store.contains(&digest).unwrap());
    assert!(store.fsck(FsckOptions::default()).unwrap().is_clean());
}

/// Regression: a store dropped while its idle closer was closing the index returned before
/// the close ended, so a process exiting right after (the CLI after a build) could die in
/// RocksDB's close with "pthread lock: Invalid argument" (1 in ~1,400 builds of the aging
/// benchmark). Once `drop` returns, the index must be closed: `LOCK` is free at once.
#[test]
fn a_dropped_store_has_closed_its_index_even_mid_idle_close() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let idle = Duration::from_millis(2);
    let quick_close = StoreOptions {
        idle_close: Some(idle),
        ..options()
    };
    let impatient = StoreOptions {
        lock_timeout: Duration::ZERO,
        idle_close: None,
        ..options()
    };
    for round in 0..30u32 {
        let store = Store::open(&root, quick_close.clone()).unwrap();
        store
            .put_bytes(BlobKind::Config, format!("round {round}").as_bytes())
            .unwrap();
        // Around the idle time, so that some drops meet the closer mid-close.
        std::thread::sleep(idle + Duration::from_micros(u64::from(round) * 100));
        drop(store);
        let next = Store::open(&root, impatient.clone())
            .unwrap_or_else(|e| panic!("round {round}: the dropped store still held it: {e}"));
        next.put_bytes(BlobKind::Config, b"after").unwrap();
    }
}
