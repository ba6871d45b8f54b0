//! The real clients the Docker-world test drives: a private dockerd (Debian's docker.io, whose
//! client is /usr/bin/docker; a newer client elsewhere on PATH would hide what Debian ships),
//! podman with its own storage, and a helper that runs a command and names it when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Debian docker.io's daemon and client.
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const DOCKER: &str = "/usr/bin/docker";

/// Runs `cmd`, asserts it succeeded (naming the command and its stderr), returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", describe(cmd)));
    assert!(
        output.status.success(),
        "{} failed ({}): {}{}",
        describe(cmd),
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

/// `program arg arg…`, for failure messages.
fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// A dockerd of its own: socket, data root and exec root in `dir`, no iptables, no bridge
/// (containers and builds use the host network). Stopped by PID when dropped, with the mounts
/// it leaves behind (the netns bind mount under its exec root) unmounted.
pub struct Dockerd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    /// How long the daemon took to answer.
    pub started_in: Duration,
}

impl Dockerd {
    /// Starts dockerd and waits until it answers; panics with its log if it cannot start.
    pub fn start(dir: &Path) -> Dockerd {
        let started = Instant::now();
        for sub in ["data", "exec", "client"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let config = serde_json::json!({
            "iptables": false,
            "bridge": "none",
            "data-root": dir.join("data"),
            "exec-root": dir.join("exec"),
            "pidfile": dir.join("dockerd.pid"),
        });
        let config_path = dir.join("daemon.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let socket = dir.join("docker.sock");
        let log_path = dir.join("dockerd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(DOCKERD)
            .arg("--config-file")
            .arg(&config_path)
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{DOCKERD} cannot start: {e}"));
        let mut dockerd = Dockerd {
            child,
            dir: dir.to_path_buf(),
            socket,
            started_in: Duration::ZERO,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = dockerd.child.try_wait() {
                panic!(
                    "dockerd exited ({status}) instead of starting: {}",
                    log_tail(&log_path)
                );
            }
            let answered = dockerd
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not answer within 60 s: {}",
                    log_tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        dockerd.started_in = started.elapsed();
        dockerd
    }

    /// The Debian client, talking to this daemon only, with its own config directory.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// Runs the client with `args`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.docker().args(args))
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        unmount_under(&self.dir);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last lines of dockerd's log, for a failure message.
fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Unmounts every mount point under `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for point in points {
        let plain = Command::new("umount").arg(&point).status();
        if !plain.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&point).status();
        }
    }
}

/// podman with its storage, run root and temp dir under `dir` (vfs, so nothing stays
/// mounted), the cgroupfs manager and file events (no systemd needed).
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        std::fs::create_dir_all(dir).unwrap();
        Podman {
            dir: dir.to_path_buf(),
        }
    }

    pub fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        cmd
    }

    /// Runs podman with `args`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(self.podman().args(args))
    }

    /// `podman pull` from a plain-http registry.
    pub fn pull(&self, reference: &str) {
        self.ok(&["pull", "--quiet", "--tls-verify=false", reference]);
    }

    /// `podman load -i path`; returns the name it loaded. podman names a loaded layout
    /// directory after the path it was given, which must then be a valid (lowercase)
    /// repository: it is given relative to the parent directory.
    pub fn load(&self, path: &Path) -> String {
        let name = path.file_name().unwrap().to_str().unwrap();
        let out = run_ok(
            self.podman()
                .args(["load", "-i", name])
                .current_dir(path.parent().unwrap()),
        );
        loaded_name(&out).unwrap_or_else(|| panic!("podman load named no image: {out}"))
    }

    /// `podman run` on the host network, with the ulimits this sandbox allows; returns stdout.
    pub fn run(&self, image: &str) -> String {
        self.ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
            image,
        ])
    }
}

/// The image a `docker load` / `podman load` reports: the text after `Loaded image: ` or
/// `Loaded image ID: ` on its last such line.
pub fn loaded_name(output: &str) -> Option<String> {
    output
        .lines()
        .filter_map(|line| {
            line.strip_prefix("Loaded image ID: ")
                .or_else(|| line.strip_prefix("Loaded image: "))
                .or_else(|| line.strip_prefix("Loaded image(s): "))
        })
        .map(|name| name.trim().to_string())
        .next_back()
}
