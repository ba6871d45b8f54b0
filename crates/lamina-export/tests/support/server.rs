//! A real registry (Debian's `docker-registry`, i.e. distribution 2.x) on a free loopback
//! port, with filesystem storage in a temp dir; stopped by PID when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = "docker-registry";

/// A running registry.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    /// The access log file, when started with one.
    log: Option<std::path::PathBuf>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Registry {
    /// Starts an open registry.
    pub fn start() -> Registry {
        Registry::launch(None, false)
    }

    /// Starts a registry that wants HTTP basic auth for `user` / `password`.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user, password)), false)
    }

    /// Starts an open registry that logs every request (method, path, status, response
    /// bytes), read with [`Registry::access_log`]: what a client downloaded and uploaded.
    pub fn start_logged() -> Registry {
        Registry::launch(None, true)
    }

    fn launch(auth: Option<(&str, &str)>, logged: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let mut last_error = String::new();
        // The port can be taken between choosing and binding it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = write_config(dir.path(), port, auth, logged);
            // The access log goes to stdout.
            let log = dir.path().join(format!("access-{port}.log"));
            let stdout = match logged {
                true => Stdio::from(std::fs::File::create(&log).unwrap()),
                false => Stdio::null(),
            };
            let mut child = Command::new(BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(Stdio::piped())
                .spawn()
                .expect("docker-registry runs");
            if wait_for_port(port, &mut child) {
                return Registry {
                    port,
                    child,
                    _dir: dir,
                    log: logged.then_some(log),
                };
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            last_error = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("docker-registry did not start: {last_error}");
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The access log so far (combined log format: `"GET /v2/… HTTP/1.1" 200 <bytes>`).
    pub fn access_log(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The registry's storage directory (blobs under `docker/registry/v2/blobs`).
    pub fn storage(&self) -> std::path::PathBuf {
        self._dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(
    dir: &Path,
    port: u16,
    auth: Option<(&str, &str)>,
    logged: bool,
) -> std::path::PathBuf {
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: lamina-test-secret\n",
        !logged,
        storage.display()
    );
    if let Some((user, password)) = auth {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd runs");
        assert!(out.status.success(), "htpasswd failed");
        let htpasswd = dir.join("htpasswd");
        std::fs::write(&htpasswd, out.stdout).unwrap();
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: lamina-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    let path = dir.join(format!("config-{port}.yml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn wait_for_port(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
