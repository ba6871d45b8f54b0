//! Which process owns a work file, and whether that process is still alive.
//!
//! Each process that works in a work directory holds an exclusive `flock` on
//! `<work_dir>/owners/<token>.lock` for as long as it lives, and names the temporary files,
//! run directories and containers it makes with its token. The kernel drops the lock when the
//! process dies, however it dies, so "can I take that lock?" tells any other process whether
//! the owner is gone — also across PID namespaces (CI containers sharing a store), where pid
//! checks would see unrelated processes or none.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::FlockOperation;

use crate::ExecError;
use crate::sandbox::fsutil::{io_err, lock_file, try_lock_file};

const OWNERS: &str = "owners";

/// This process's token: lowercase hex, no `-` or `.`, unique among live processes.
pub(crate) fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:x}{:08x}",
            std::process::id(),
            (nanos & 0xffff_ffff) as u32
        )
    })
}

/// Takes (once per work directory) the lock that says this process owns what carries its
/// token below `work_dir`, and returns the token.
pub(crate) fn claim(work_dir: &Path) -> Result<&'static str, ExecError> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    let held = HELD.get_or_init(Default::default);
    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
    let key = std::path::absolute(work_dir).map_err(io_err(work_dir))?;
    if let std::collections::hash_map::Entry::Vacant(slot) = held.entry(key) {
        let dir = slot.key().join(OWNERS);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("{}.lock", token()));
        // Another process may take the new, not yet locked file for a dead owner's and
        // unlink it between our open and our flock: then the lock held has no name, and we
        // make the file again.
        let lock = loop {
            let lock = lock_file(&path, FlockOperation::LockExclusive)?;
            let held = rustix::fs::fstat(&lock).map_err(|e| io_err(&path)(e.into()))?;
            match rustix::fs::stat(&path) {
                Ok(named) if named.st_ino == held.st_ino && named.st_dev == held.st_dev => {
                    break lock;
                }
                _ => continue,
            }
        };
        slot.insert(lock);
    }
    Ok(token())
}

/// Whether the process with `token` may still be using its files below `work_dir`. A token
/// without a lock file belongs to no live process (owners create theirs before anything
/// else). The lock files of dead owners are removed on the way.
pub(crate) fn alive(work_dir: &Path, token: &str) -> bool {
    if token == self::token() {
        return true;
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let path = work_dir.join(OWNERS).join(format!("{token}.lock"));
    if !path.exists() {
        return false;
    }
    match try_lock_file(&path) {
        Ok(Some(_dead)) => {
            // Removed while held, so no live owner can be holding this file.
            let _ = fs::remove_file(&path);
            false
        }
        Ok(None) => true,
        // Cannot tell (e.g. no permission): assume alive, never remove a live owner's files.
        Err(_) => true,
    }
}

/// Removes the lock files of owners that are gone (their files were reclaimed first).
pub(crate) fn forget_dead(work_dir: &Path) -> Result<(), ExecError> {
    let dir = work_dir.join(OWNERS);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(token) = name.strip_suffix(".lock") {
            alive(work_dir, token);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_token_is_alive_and_a_released_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        assert_eq!(claim(work).unwrap(), token());
        assert!(alive(work, token()));
        // Another owner: its lock held by an open file here stands for a live process.
        let owners = work.join(OWNERS);
        let other = lock_file(
            &owners.join("abc123.lock"),
            FlockOperation::NonBlockingLockExclusive,
        )
        .unwrap();
        // Checked through a separate open file description, as another process would.
        assert!(alive(work, "abc123"));
        drop(other);
        assert!(!alive(work, "abc123"));
        assert!(
            !owners.join("abc123.lock").exists(),
            "a dead owner's lock goes"
        );
        assert!(!alive(work, "fff000"), "no lock file: nobody");
        assert!(!alive(work, "not-hex"));
    }
}
