//! ADD of a URL when the server misbehaves, through the binary against loopback servers
//! scripted here: 5xx answers and bodies cut short are tried again, up to 3 attempts; a
//! stalled server fails within `LAMINA_DOWNLOAD_TIMEOUT`; a 404 and an untrusted
//! certificate fail at once; each failure is one line naming the URL. A download's mtime is
//! its `Last-Modified` time, under the layers' `SOURCE_DATE_EPOCH` clamp.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::write_tree;

const BODY: &[u8] = b"#!/bin/sh\necho fetched\n";
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
/// [`LAST_MODIFIED`] in seconds since the epoch.
const LAST_MODIFIED_SECS: u64 = 1_445_412_480;

/// What the server does with one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Answers this status with an empty body.
    Status(&'static str),
    /// Sends [`BODY`] whole, with `Last-Modified`.
    Body,
    /// Announces [`BODY`]'s length, sends part of it and closes.
    CutShort,
    /// Sends the headers, then nothing, holding the connection open.
    Stall,
}

/// A loopback HTTP server answering its requests with `script` in turn (the last reply
/// repeats), counting them.
struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
}

impl Server {
    fn start(script: &[Reply]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/dl/tool.sh", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        let script = script.to_vec();
        let held = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)];
                let head = |extra: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                        BODY.len()
                    )
                };
                match reply {
                    Reply::Status(status) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                    Reply::Body => {
                        let head = head(&format!("Last-Modified: {LAST_MODIFIED}\r\n"));
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(BODY);
                    }
                    Reply::CutShort => {
                        let _ = stream.write_all(head("").as_bytes());
                        let _ = stream.write_all(&BODY[..5]);
                    }
                    Reply::Stall => {
                        let _ = stream.write_all(head("").as_bytes());
                        held.lock().unwrap().push(stream);
                    }
                }
            }
        });
        Server { url, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Runs `lamina --store <dir>/store build <dir>/ctx` on a Dockerfile that ADDs `url`, with
/// `env` set.
fn build_adding(dir: &Path, url: &str, tag: &str, env: &[(&str, &str)]) -> Output {
    let dockerfile = format!("FROM scratch\nADD {url} /usr/local/bin/\n");
    build(dir, &dockerfile, tag, env)
}

/// Runs `lamina --store <dir>/store build <dir>/ctx` on `dockerfile`, with `env` set.
fn build(dir: &Path, dockerfile: &str, tag: &str, env: &[(&str, &str)]) -> Output {
    write_tree(dir, &[("ctx/Dockerfile", dockerfile)]);
    let store = dir.join("store");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lamina"));
    command
        .arg("--store")
        .arg(&store)
        .args(["build", "ctx", "--tag", tag, "--progress", "plain"])
        .current_dir(dir)
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("SOURCE_DATE_EPOCH");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the lamina binary runs")
}

/// The error of a failed build: one line, naming `url`.
fn error_line(output: &Output, url: &str) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the build should fail: {stderr}");
    let error = stderr
        .split_once("error: ")
        .map(|(_, error)| error.trim_end())
        .unwrap_or_else(|| panic!("no error in {stderr}"));
    assert!(
        !error.contains('\n') && error.contains(url),
        "one line naming {url}: {stderr}"
    );
    error.to_string()
}

fn assert_built(output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Exports `tag` from the store `<dir>/store` as an OCI layout and unpacks its layers with
/// GNU tar (which keeps mtimes).
pub(crate) fn rootfs(dir: &Path, tag: &str) -> PathBuf {
    let layout = dir.join(format!("layout-{tag}"));
    let out = dir.join(format!("rootfs-{tag}"));
    // A second look at the same tag starts afresh.
    for old in [&layout, &out] {
        if old.exists() {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
    let status = Command::new(env!("CARGO_BIN_EXE_lamina"))
        .arg("--store")
        .arg(dir.join("store"))
        .args(["image", "export", tag, "--format", "oci-dir", "-o"])
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let json =
        |path: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let blob = |digest: &Value| {
        let digest = digest.as_str().unwrap();
        layout.join("blobs/sha256").join(&digest["sha256:".len()..])
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    std::fs::create_dir_all(&out).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let status = Command::new("tar")
            .arg("-xf")
            .arg(blob(&layer["digest"]))
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
    }
    out
}

fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_download_is_tried_again_after_a_503_and_a_body_cut_short() {
    let server = Server::start(&[
        Reply::Status("503 Service Unavailable"),
        Reply::CutShort,
        Reply::Body,
    ]);
    let dir = tempfile::tempdir().unwrap();
    assert_built(&build_adding(dir.path(), &server.url, "retried:1", &[]));
    assert_eq!(server.requests(), 3);
    let fs = rootfs(dir.path(), "retried:1");
    assert_eq!(
        std::fs::read(fs.join("usr/local/bin/tool.sh")).unwrap(),
        BODY
    );
}

#[test]
fn a_download_gives_up_after_3_attempts_naming_the_url_and_the_cause() {
    let server = Server::start(&[Reply::Status("503 Service Unavailable")]);
    let dir = tempfile::tempdir().unwrap();
    let output = build_adding(dir.path(), &server.url, "never:1", &[]);
    let line = error_line(&output, &server.url);
    assert!(
        line.contains(&format!("cannot download {} after 3 attempts", server.url))
            && line.contains("503 Service Unavailable")
            && line.contains(&format!("ADD {} /usr/local/bin/", server.url)),
        "{line}"
    );
    assert_eq!(server.requests(), 3);
}

#[test]
fn a_stalled_server_fails_within_the_download_timeout() {
    let server = Server::start(&[Reply::Stall]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = build_adding(
        dir.path(),
        &server.url,
        "stalled:1",
        &[("LAMINA_DOWNLOAD_TIMEOUT", "1")],
    );
    let took = started.elapsed();
    let line = error_line(&output, &server.url);
    assert!(
        line.contains("after 3 attempts") && line.contains("sent nothing for 1s"),
        "{line}"
    );
    assert_eq!(server.requests(), 3);
    // 3 waits of 1 s and 2 pauses (0.5 s, 1 s) between them, with room for a slow machine.
    assert!(took < Duration::from_secs(30), "took {took:?}");
}

#[test]
fn a_404_fails_at_once_in_one_line() {
    let server = Server::start(&[Reply::Status("404 Not Found")]);
    let dir = tempfile::tempdir().unwrap();
    let output = build_adding(dir.path(), &server.url, "missing:1", &[]);
    let line = error_line(&output, &server.url);
    assert!(
        line.contains("answered 404 Not Found") && !line.contains("attempts"),
        "{line}"
    );
    assert_eq!(server.requests(), 1, "a 404 is not tried again");
}

/// A server whose certificate is signed by a CA made here, which the host does not trust:
/// one line saying the certificate is not trusted and how to trust its CA.
#[test]
fn an_untrusted_certificate_fails_in_one_line_saying_what_to_do() {
    if crate::require::missing(&[crate::require::Need::Tool("openssl")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("ext.cnf", "subjectAltName=IP:127.0.0.1\n")]);
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    for args in [
        format!("req -x509 {key} -days 1 -subj /CN=test-CA -keyout ca.key -out ca.pem"),
        format!("req {key} -subj /CN=127.0.0.1 -keyout key.pem -out req.csr"),
        "x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
         -extfile ext.cnf -out cert.pem"
            .to_string(),
    ] {
        let made = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl {args}");
    }
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-www"])
        .args(["-cert", "cert.pem", "-key", "key.pem"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It prints `ACCEPT 127.0.0.1:<port>` once it listens.
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("ACCEPT 127.0.0.1:").map(str::to_string))
        .expect("openssl s_server says where it listens");
    let url = format!("https://127.0.0.1:{port}/tool.sh");
    let output = build_adding(dir.path(), &url, "tls:1", &[]);
    server.kill().unwrap();
    server.wait().unwrap();
    let line = error_line(&output, &url);
    assert!(
        line.contains("certificate is not trusted")
            && line.contains("update-ca-certificates")
            && !line.contains("attempts"),
        "{line}"
    );
}

/// The file gets the `Last-Modified` time as its mtime where the layers' clamp
/// (`SOURCE_DATE_EPOCH`, the epoch by default) allows it.
#[test]
fn a_download_gets_its_last_modified_time_under_the_layer_clamp() {
    if crate::require::missing(&[crate::require::Need::Tool("tar")]) {
        return;
    }
    let server = Server::start(&[Reply::Body]);
    let dir = tempfile::tempdir().unwrap();
    // The second ADD is pinned: it takes the copy the first one kept.
    let sum = lamina::store::Digest::sha256_of(BODY).hex();
    let dockerfile = format!(
        "FROM scratch\nADD {0} /usr/local/bin/\nADD --checksum=sha256:{sum} {0} /pinned.sh\n",
        server.url
    );
    let later = "2000000000";
    assert_built(&build(
        dir.path(),
        &dockerfile,
        "dated:1",
        &[("SOURCE_DATE_EPOCH", later)],
    ));
    assert_eq!(server.requests(), 1);
    let fs = rootfs(dir.path(), "dated:1");
    assert_eq!(mtime(&fs.join("usr/local/bin/tool.sh")), LAST_MODIFIED_SECS);
    assert_eq!(mtime(&fs.join("pinned.sh")), LAST_MODIFIED_SECS);

    // By default every mtime is clamped to the epoch, this one too.
    assert_built(&build_adding(dir.path(), &server.url, "clamped:1", &[]));
    let fs = rootfs(dir.path(), "clamped:1");
    assert_eq!(mtime(&fs.join("usr/local/bin/tool.sh")), 0);
}
