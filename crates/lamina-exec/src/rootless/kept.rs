//! The kept user namespace: the first `lamina` of a user leaves a `sleep infinity` process in
//! the namespace it made (as Podman's pause process does), and later ones join that
//! namespace with `setns` instead of making one: the two setuid id-mapping tools cost a few
//! milliseconds per command, a third of a warm rebuild. The process's pid is kept in a
//! directory only the user can write (`$XDG_RUNTIME_DIR/lamina`, else `/tmp/lamina-<uid>`),
//! under a lock, and a kept pid is only joined when that process belongs to the user and its
//! namespace has exactly the id maps this user's would get.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::FlockOperation;

use super::Maps;

const PID_FILE: &str = "userns.pid";
const LOCK_FILE: &str = "userns.lock";

/// The directory for the kept namespace's files, made if missing; `None` when no directory
/// only this user can write is at hand (then every command makes its own namespace).
pub(super) fn runtime_dir() -> Option<PathBuf> {
    let uid = rustix::process::getuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if Path::new(&base).is_absolute() => Path::new(&base).join("lamina"),
        _ => std::env::temp_dir().join(format!("lamina-{uid}")),
    };
    let _ = fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o022 == 0).then_some(dir)
}

/// Holds the directory's lock (released when dropped): one process at a time checks, joins or
/// replaces the kept namespace.
pub(super) fn lock(dir: &Path) -> Option<File> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).ok()?;
    Some(file)
}

/// The whitespace-separated numbers of an id map file, or of our map arguments.
fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// Joins the kept namespace when there is one with the right maps. Returns whether it did.
pub(super) fn join(dir: &Path, maps: &Maps) -> bool {
    let Some(pid) = fs::read_to_string(dir.join(PID_FILE))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    // Opened first: the namespace stays whatever happens to the process after this.
    let Ok(ns) = File::open(proc.join("ns/user")) else {
        return false;
    };
    let ours = fs::metadata(&proc).is_ok_and(|m| m.uid() == rustix::process::getuid().as_raw());
    let same = |file: &str, args: &[String]| {
        fs::read_to_string(proc.join(file))
            .is_ok_and(|map| words(&map) == args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    if !ours {
        return false;
    }
    if !same("uid_map", &maps.uid) || !same("gid_map", &maps.gid) {
        retire_if_keeper(&proc, pid);
        return false;
    }
    rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::User),
    )
    .is_ok()
}

/// Ends a keeper whose namespace has other maps (the user's subordinate ids changed): the
/// user's own `sleep infinity` in a user namespace other than the host's, named by our pid
/// file. A new one replaces it.
fn retire_if_keeper(proc: &Path, pid: u32) {
    let keeper = fs::read(proc.join("cmdline")).is_ok_and(|c| c == b"sleep\0infinity\0");
    let namespaced = fs::read_to_string(proc.join("uid_map"))
        .is_ok_and(|map| words(&map) != ["0", "0", "4294967295"]);
    if keeper
        && namespaced
        && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Starts the process that keeps this process's (new, mapped) user namespace, in its own
/// session so a terminal's hangup does not end it, and records its pid. Failures only mean
/// the next command makes its own namespace.
pub(super) fn keep(dir: &Path) {
    let mut sleep = Command::new("sleep");
    sleep
        .arg("infinity")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/");
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the parent.
    unsafe {
        sleep.pre_exec(|| {
            rustix::process::setsid()?;
            Ok(())
        });
    }
    let Ok(child) = sleep.spawn() else {
        return;
    };
    let tmp = dir.join(format!("{PID_FILE}.{}", std::process::id()));
    if fs::write(&tmp, format!("{}\n", child.id())).is_err()
        || fs::rename(&tmp, dir.join(PID_FILE)).is_err()
    {
        let _ = fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_files_compare_by_their_numbers() {
        let file = "         0       1001          1\n         1     100000      65536\n";
        let args: Vec<String> = ["0", "1001", "1", "1", "100000", "65536"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            words(file),
            args.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}
