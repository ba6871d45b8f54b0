//! `lamina image export -o` writes only what it was asked to (issue 14, finding 3): devices,
//! symlinks and FIFOs are refused unless `--force`, then written through, never replaced;
//! `-o -` streams to stdout; a killed export leaves nothing beside its output.

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{lamina, lamina_err, lamina_in_store as run, write_tree};

/// A store holding `demo:1` (FROM scratch, no sandbox), whose one layer holds `size` bytes
/// of incompressible data.
fn store_with_image(dir: &Path, size: usize) -> String {
    let mut data = vec![0u8; size];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        // xorshift: incompressible bytes without a random-number dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(dir.join("ctx/data.bin"), data).unwrap();
    write_tree(
        dir,
        &[("ctx/Dockerfile", "FROM scratch\nCOPY data.bin /data.bin\n")],
    );
    let store = dir.join("store").to_str().unwrap().to_owned();
    run(
        dir,
        &store,
        &["build", "ctx", "--tag", "demo:1", "--progress", "plain"],
    );
    store
}

/// The member names `tar -t` lists for `archive`.
fn tar_listing(archive: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let bytes = archive.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "tar -t failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn export_args<'a>(store: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--store", store, "image", "export", "demo:1", "-o", out];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_device_is_refused_and_stays_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 1000);
    let err = lamina_err(dir.path(), &export_args(&store, "/dev/full", &[]));
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("/dev/full is a character device") && err.contains("--force"),
        "{err}"
    );
    // Forced, it is written through: the device answers "no space", and stays a device.
    let err = lamina_err(dir.path(), &export_args(&store, "/dev/full", &["--force"]));
    assert!(err.contains("No space left on device"), "{err}");
    let meta = std::fs::symlink_metadata("/dev/full").unwrap();
    assert!(meta.file_type().is_char_device(), "/dev/full was replaced");
}

#[test]
fn a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 1000);
    let target = dir.path().join("precious.txt");
    std::fs::write(&target, "keep me\n").unwrap();
    let link = dir.path().join("out.tar");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = lamina_err(dir.path(), &export_args(&store, "out.tar", &[]));
    assert!(
        err.contains("out.tar is a symlink") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());

    // Forced, the archive goes into the file the link points to; the link stays.
    run(
        dir.path(),
        &store,
        &["image", "export", "demo:1", "-o", "out.tar", "--force"],
    );
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    let listing = tar_listing(&std::fs::read(&target).unwrap());
    assert!(listing.iter().any(|n| n == "index.json"), "{listing:?}");
}

#[test]
fn a_fifo_is_written_through_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 1000);
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let err = lamina_err(dir.path(), &export_args(&store, "pipe", &[]));
    assert!(
        err.contains("pipe is a FIFO") && err.contains("--force"),
        "{err}"
    );

    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::fs::File::open(reader_path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    });
    run(
        dir.path(),
        &store,
        &[
            "image",
            "export",
            "demo:1",
            "--format",
            "docker-archive",
            "-o",
            "pipe",
            "--force",
        ],
    );
    let received = reader.join().unwrap();
    let listing = tar_listing(&received);
    assert!(listing.iter().any(|n| n == "manifest.json"), "{listing:?}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn dash_streams_the_archive_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 1000);
    let output = lamina(dir.path(), &export_args(&store, "-", &[]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = tar_listing(&output.stdout);
    for member in ["oci-layout", "index.json"] {
        assert!(listing.iter().any(|n| n == member), "{listing:?}");
    }
    // The summary went to stderr, and no file named `-` was made.
    assert!(String::from_utf8_lossy(&output.stderr).contains("exported demo:1"));
    assert!(!dir.path().join("-").exists());
    // A directory layout cannot go to stdout.
    let err = lamina_err(
        dir.path(),
        &export_args(&store, "-", &["--format", "oci-dir"]),
    );
    assert!(err.contains("oci-dir"), "{err}");
}

/// The open files of `pid` that are an export being written in `dir`: an unnamed
/// `O_TMPFILE` inode shows as `DIR/#<inode> (deleted)`, the fallback as `.lamina-export-*`.
fn export_in_progress(pid: u32, dir: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            target.starts_with(dir)
                && target.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with('#') || n.starts_with(".lamina-export-")
                })
        })
    })
}

#[test]
fn a_killed_export_leaves_nothing_beside_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 96 << 20);
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let mut killed_mid_write = 0;
    for attempt in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lamina"))
            .args([
                "--store",
                &store,
                "image",
                "export",
                "demo:1",
                "--compression",
                "zstd",
                "-o",
                out_dir.join("image.tar").to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut writing = false;
        while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
            if export_in_progress(child.id(), &out_dir) {
                writing = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        if writing && !status.success() {
            killed_mid_write += 1;
        }
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "image.tar")
            .collect();
        assert!(left.is_empty(), "attempt {attempt}: left {left:?}");
    }
    assert!(killed_mid_write > 0, "no kill landed mid-export");
    // A later export completes and is all that is there.
    run(
        dir.path(),
        &store,
        &[
            "image",
            "export",
            "demo:1",
            "--compression",
            "zstd",
            "-o",
            out_dir.join("image.tar").to_str().unwrap(),
        ],
    );
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["image.tar"]);
}

/// What a killed oci-dir export (or an export on a filesystem without `O_TMPFILE`) leaves is
/// a `.lamina-export-*` / `.lamina-old-*` name nobody holds a lock on: the next export into
/// that directory removes it, and leaves names it does not own alone.
#[test]
fn the_next_export_sweeps_a_dead_exports_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_image(dir.path(), 1000);
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join(".lamina-export-dead/blobs")).unwrap();
    std::fs::create_dir_all(out.join(".lamina-old-dead/old")).unwrap();
    std::fs::write(out.join(".lamina-export-file"), b"half an archive").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    run(
        dir.path(),
        &store,
        &[
            "image",
            "export",
            "demo:1",
            "--format",
            "oci-dir",
            "-o",
            out.join("layout").to_str().unwrap(),
        ],
    );
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["layout", "notes.txt"]);
}
