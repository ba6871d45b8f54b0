//! ADD of http URLs against a loopback server written here (one request per connection,
//! counting requests): download, naming, mode, `--checksum`, `--unpack=true`, the step key.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lamina_exec::{BuildOptions, ExecError};
use sha2::Digest;

use super::{Env, build, cached};

/// Serves `files` (path → body) with a strong ETag of the body; answers 304 to a matching
/// `If-None-Match`; counts requests and full (200) answers.
struct Server {
    base: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    requests: Arc<AtomicUsize>,
    full: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files = Arc::new(Mutex::new(HashMap::<String, Vec<u8>>::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let full = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = listener.local_addr().unwrap();
        let (f, r, n, halt) = (files.clone(), requests.clone(), full.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                // Stopping drops the listener: connections are then refused.
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let mut if_none_match = None;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap() == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("if-none-match")
                    {
                        if_none_match = Some(value.trim().to_string());
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let body = f.lock().unwrap().get(&path).cloned();
                let reply = match body {
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                    Some(body) => {
                        let etag = format!("\"{}\"", hex(&sha2::Sha256::digest(&body)));
                        if if_none_match.as_deref() == Some(etag.as_str()) {
                            format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n").into_bytes()
                        } else {
                            n.fetch_add(1, Ordering::SeqCst);
                            let mut reply = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: {etag}\r\n\
                                 Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            reply.extend_from_slice(&body);
                            reply
                        }
                    }
                };
                let _ = stream.write_all(&reply);
            }
        });
        Server {
            base,
            files,
            requests,
            full,
            stop,
            addr,
        }
    }

    /// Closes the listening socket (waking the accept loop so that it sees the flag).
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        while std::net::TcpStream::connect(self.addr).is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn serve(&self, path: &str, body: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_vec());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

#[test]
fn add_url_downloads_names_checks_and_keys_by_content() {
    let server = Server::start();
    server.serve("/files/tool.txt", b"tool v1\n");
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let exec = env.executor();
    let url = format!("{}/files/tool.txt", server.base);
    let text = format!(
        "FROM scratch\nADD {url} /opt/\nADD --checksum={} {url} /pinned.txt\n",
        sha256(b"tool v1\n")
    );
    let image = env.image(&ctx, &text);
    let first = build(&exec, &image, BuildOptions::default()).unwrap();
    let rootfs = env.rootfs(&first);
    let tool = rootfs.path().join("opt/tool.txt");
    assert_eq!(std::fs::read(&tool).unwrap(), b"tool v1\n");
    assert_eq!(
        std::fs::metadata(&tool).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::read(rootfs.path().join("pinned.txt")).unwrap(),
        b"tool v1\n"
    );
    // The pinned step took the copy the first step kept: it has the checksum.
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // The unpinned step revalidates its kept copy (a 304, nothing transferred); the pinned
    // step hits without a request.
    let requests = server.requests.load(Ordering::SeqCst);
    let again = build(&exec, &image, BuildOptions::default()).unwrap();
    assert_eq!(cached(&again), [true, true]);
    assert_eq!(server.requests.load(Ordering::SeqCst), requests + 1);
    assert_eq!(server.full.load(Ordering::SeqCst), 1);
    assert_eq!(again.digest, first.digest);

    // New content: the unpinned step misses, the pinned one now fails its checksum.
    server.serve("/files/tool.txt", b"tool v2\n");
    let err = build(&exec, &image, BuildOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExecError::InvalidStep { index: 2, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&url) && message.contains("--checksum") && !message.contains('\n'),
        "{message}"
    );
    let unpinned = format!("FROM scratch\nADD {url} /opt/\n");
    let changed = build(&exec, &env.image(&ctx, &unpinned), BuildOptions::default()).unwrap();
    // (Built by the failed build above, whose first step passed.)
    assert_ne!(changed.steps[0].layer, first.steps[0].layer);
    assert_eq!(
        server.full.load(Ordering::SeqCst),
        2,
        "v2 was downloaded once"
    );
    assert_eq!(
        env.read(&changed, "/opt/tool.txt").as_deref(),
        Some("tool v2\n")
    );

    // A fresh download that fails its checksum is not kept.
    server.serve("/bad.txt", b"unexpected\n");
    let bad = format!(
        "FROM scratch\nADD --checksum={} {}/bad.txt /b\n",
        sha256(b"expected\n"),
        server.base
    );
    let err = build(&exec, &env.image(&ctx, &bad), BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/bad.txt"), "{err}");
    let digest = lamina_store::Digest::parse(&sha256(b"unexpected\n")).unwrap();
    assert!(!env.store.contains(&digest).unwrap(), "nothing was stored");

    // A missing file is an error naming the URL.
    let missing = format!("FROM scratch\nADD {}/nothing.txt /x\n", server.base);
    let err = build(&exec, &env.image(&ctx, &missing), BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/nothing.txt"), "{err}");
}

#[test]
fn add_url_extracts_only_with_unpack_true() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("inner/file.txt").unwrap();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    h.set_cksum();
    builder.append(&h, &b"inside"[..]).unwrap();
    let tar = builder.into_inner().unwrap();
    let server = Server::start();
    server.serve("/a.tar", &tar);
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let exec = env.executor();
    let text = format!(
        "FROM scratch\nADD {0}/a.tar /plain/\nADD --unpack=true {0}/a.tar /unpacked/\n",
        server.base
    );
    let report = build(&exec, &env.image(&ctx, &text), BuildOptions::default()).unwrap();
    let rootfs = env.rootfs(&report);
    assert_eq!(
        std::fs::read(rootfs.path().join("plain/a.tar")).unwrap(),
        tar
    );
    assert_eq!(
        std::fs::read(rootfs.path().join("unpacked/inner/file.txt")).unwrap(),
        b"inside"
    );
}

/// With the server gone, a URL downloaded before is taken from the kept copy, and the build
/// says so; one never downloaded fails naming the URL.
#[test]
fn add_url_uses_the_kept_copy_offline_and_says_so() {
    let server = Server::start();
    server.serve("/f.txt", b"kept\n");
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let exec = env.executor();
    let text = format!("FROM scratch\nADD {}/f.txt /f.txt\n", server.base);
    let image = env.image(&ctx, &text);
    let first = build(&exec, &image, BuildOptions::default()).unwrap();
    server.stop();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let options = BuildOptions {
        on_event: Some(Arc::new(move |e| sink.lock().unwrap().push(e))),
        ..BuildOptions::default()
    };
    let offline = build(&exec, &image, options).unwrap();
    assert_eq!(cached(&offline), [true]);
    assert_eq!(offline.digest, first.digest);
    let said = logs.lock().unwrap().iter().any(|e| {
        matches!(e, lamina_exec::BuildEvent::StepLog { line, .. }
            if line.contains("cannot reach") && line.contains("copy kept"))
    });
    assert!(said, "the build says it used the kept copy");
    let never = format!("FROM scratch\nADD {}/other.txt /o\n", server.base);
    let err = build(&exec, &env.image(&ctx, &never), BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/other.txt"), "{err}");
}
