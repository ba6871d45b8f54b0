//! Running the git CLI: never prompting, in batch mode over ssh, within a time limit,
//! its error output as one line.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How git is run: never prompting, in batch mode over ssh, with a time limit.
pub(super) struct Git {
    pub(super) ssh_socket: Option<PathBuf>,
}

impl Git {
    /// Runs `git args` and returns its standard output, or its last error line.
    pub(super) fn run(
        &self,
        cwd: Option<&Path>,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, String> {
        let mut cmd = Command::new("git");
        cmd.args([
            "-c",
            "protocol.file.allow=user",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 \
             -o ServerAliveCountMax=4",
        )
        // The user's own git environment must not redirect these commands.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .process_group(0);
        for (name, default) in [
            ("GIT_HTTP_LOW_SPEED_LIMIT", "1000"),
            ("GIT_HTTP_LOW_SPEED_TIME", "60"),
        ] {
            if std::env::var_os(name).is_none() {
                cmd.env(name, default);
            }
        }
        // git's TLS (GnuTLS on Debian) does not read SSL_CERT_FILE.
        if std::env::var_os("GIT_SSL_CAINFO").is_none()
            && let Some(file) = std::env::var_os("SSL_CERT_FILE")
            && Path::new(&file).is_file()
        {
            cmd.env("GIT_SSL_CAINFO", file);
        }
        match &self.ssh_socket {
            Some(socket) => cmd.env("SSH_AUTH_SOCK", socket),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "git is not installed (Debian package git); ADD of a repository needs it"
                    .to_string()
            } else {
                format!("cannot run git: {e}")
            }
        })?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    // The whole group: git's helpers (ssh, remote-http) hold the pipes.
                    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                        let _ =
                            rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                    }
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        let what = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('/'))
            .unwrap_or(&"git");
        match status {
            None => Err(format!(
                "git {what} did not finish within {} s",
                timeout.as_secs()
            )),
            Some(s) if s.success() => Ok(String::from_utf8_lossy(&out).into_owned()),
            Some(s) => {
                // Everything git (and ssh) said, joined into one line; the end if long.
                let err = String::from_utf8_lossy(&err);
                let mut line = err
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(cut) = line.len().checked_sub(500)
                    && let Some(start) = (cut..line.len()).find(|i| line.is_char_boundary(*i))
                {
                    line = format!("…{}", &line[start..]);
                }
                if line.is_empty() {
                    line = format!("exited with {s}");
                }
                Err(format!("git {what} failed: {line}"))
            }
        }
    }
}
