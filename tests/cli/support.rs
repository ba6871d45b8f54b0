//! Helpers for running the `lamina` binary.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lamina` with `args` in `cwd` and returns its output.
pub fn lamina(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the lamina binary runs")
}

/// Runs `lamina` and asserts success, returning stdout.
pub fn lamina_ok(cwd: &Path, args: &[&str]) -> String {
    let output = lamina(cwd, args);
    assert!(
        output.status.success(),
        "lamina {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// Runs `lamina`, asserts failure, and returns stderr.
pub fn lamina_err(cwd: &Path, args: &[&str]) -> String {
    let output = lamina(cwd, args);
    assert!(
        !output.status.success(),
        "lamina {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).expect("stderr is UTF-8")
}

/// Writes `files` (relative name, content) under `dir`, creating folders.
pub fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Runs `lamina --store STORE args..` in `cwd`, asserts success, returns stdout.
pub fn lamina_in_store(cwd: &Path, store: &str, args: &[&str]) -> String {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    lamina_ok(cwd, &all)
}

/// The first `sha256:<hex>` digest in `text`.
pub fn digest_of(text: &str) -> String {
    let start = text.find("sha256:").expect("a digest");
    text[start..start + 71].to_string()
}

/// `lamina cache gc --min-age 0s --ttl 0s` in a loop on another thread until stopped: nothing
/// young and every cache entry expired, so only names, leases and read sections keep anything.
pub struct GcLoop {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl GcLoop {
    pub fn start(dir: &Path, store: &Path) -> GcLoop {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (dir, store, stop) = (dir.to_path_buf(), store.to_path_buf(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut gcs = 0;
            while !stop.load(Ordering::SeqCst) {
                let store = store.to_str().unwrap();
                let args = [
                    "--store",
                    store,
                    "cache",
                    "gc",
                    "--min-age",
                    "0s",
                    "--ttl",
                    "0s",
                ];
                let out = lamina(&dir, &args);
                assert!(
                    out.status.success(),
                    "gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                gcs += 1;
            }
            gcs
        });
        GcLoop {
            done,
            thread: Some(thread),
        }
    }

    /// Stops the loop after its current GC; returns how many GCs ran.
    pub fn stop(mut self) -> usize {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}
