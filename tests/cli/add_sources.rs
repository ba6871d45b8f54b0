//! `ADD` through the binary: `check` no longer warns for local archives or http URLs;
//! `build` extracts a GNU tar gzip archive (or keeps it with `--unpack=false`), refuses an
//! archive whose entry escapes the destination with a one-line error naming the step and
//! the entry, and downloads a URL from a loopback server once, revalidating it next time.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::support::{lamina, lamina_ok, write_tree};

fn run(cmd: &mut Command) {
    let status = cmd.status().expect("the tool runs");
    assert!(status.success(), "{cmd:?}");
}

/// The merged rootfs of `tag`, exported as an OCI layout and unpacked with GNU tar.
pub(crate) fn rootfs(dir: &Path, store: &str, tag: &str) -> std::path::PathBuf {
    let layout = dir.join(format!("layout-{tag}"));
    lamina_ok(
        dir,
        &[
            "--store",
            store,
            "image",
            "export",
            tag,
            "--format",
            "oci-dir",
            "-o",
            layout.to_str().unwrap(),
        ],
    );
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let json = |path: std::path::PathBuf| -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let out = dir.join(format!("rootfs-{tag}"));
    std::fs::create_dir_all(&out).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blob(layer["digest"].as_str().unwrap());
        run(Command::new("tar").arg("-xf").arg(path).arg("-C").arg(&out));
    }
    out
}

#[test]
fn add_extracts_a_local_archive_and_refuses_an_escaping_entry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            ("tree/a/hello.txt", "hello from the archive\n"),
            (
                "ctx/Dockerfile",
                "FROM scratch\nADD app.tgz /opt/app\nADD --unpack=false app.tgz /keep/\n",
            ),
            ("evil/Dockerfile", "FROM scratch\nADD evil.tar /x/\n"),
            ("evil/escape.txt", "outside\n"),
            ("evil/sub/.keep", ""),
        ],
    );
    run(Command::new("tar")
        .args(["-czf", "../ctx/app.tgz", "a"])
        .current_dir(root.join("tree")));
    // -P keeps the `../` GNU tar would strip.
    run(Command::new("tar")
        .args(["-P", "-cf", "../evil.tar", "../escape.txt"])
        .current_dir(root.join("evil/sub")));

    let check = lamina(root, &["check", "ctx/Dockerfile"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    assert!(!stderr.contains("would fail"), "{stderr}");

    let store = root.join("store");
    let store = store.to_str().unwrap();
    lamina_ok(
        root,
        &[
            "--store",
            store,
            "build",
            "ctx",
            "--tag",
            "arc:1",
            "--progress",
            "plain",
        ],
    );
    let fs = rootfs(root, store, "arc:1");
    assert_eq!(
        std::fs::read_to_string(fs.join("opt/app/a/hello.txt")).unwrap(),
        "hello from the archive\n"
    );
    assert_eq!(
        std::fs::read(fs.join("keep/app.tgz")).unwrap(),
        std::fs::read(root.join("ctx/app.tgz")).unwrap()
    );

    let output = lamina(
        root,
        &["--store", store, "build", "evil", "--progress", "plain"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("ADD evil.tar /x/") && l.contains("../escape.txt")),
        "{stderr}"
    );
}

/// A loopback HTTP server for one file with an ETag: counts requests and full answers,
/// answers 304 to a matching `If-None-Match`.
fn serve_one(body: &'static [u8]) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (requests, full) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, f) = (requests.clone(), full.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut revalidating = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                revalidating |= line
                    .to_ascii_lowercase()
                    .starts_with("if-none-match: \"v1\"");
            }
            r.fetch_add(1, Ordering::SeqCst);
            let head = if revalidating {
                "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n".to_string()
            } else {
                f.fetch_add(1, Ordering::SeqCst);
                format!(
                    "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            if !revalidating {
                let _ = stream.write_all(body);
            }
        }
    });
    (base, requests, full)
}

#[test]
fn add_downloads_a_url_once_and_revalidates_it_on_the_next_build() {
    let (base, requests, full) = serve_one(b"#!/bin/sh\necho tool\n");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[(
            "ctx/Dockerfile",
            &format!("FROM scratch\nADD {base}/dl/tool.sh /usr/local/bin/\n"),
        )],
    );
    let check = lamina(root, &["check", "ctx/Dockerfile"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
    let store = root.join("store");
    let store = store.to_str().unwrap();
    let build = || {
        lamina_ok(
            root,
            &[
                "--store",
                store,
                "build",
                "ctx",
                "--tag",
                "tool:1",
                "--progress",
                "plain",
            ],
        )
    };
    let first = build();
    let second = build();
    assert_eq!(
        (requests.load(Ordering::SeqCst), full.load(Ordering::SeqCst)),
        (2, 1),
        "one download, then one revalidation"
    );
    assert_eq!(
        crate::support::digest_of(&first),
        crate::support::digest_of(&second)
    );
    let fs = rootfs(root, store, "tool:1");
    let tool = fs.join("usr/local/bin/tool.sh");
    assert_eq!(std::fs::read(&tool).unwrap(), b"#!/bin/sh\necho tool\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&tool).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
