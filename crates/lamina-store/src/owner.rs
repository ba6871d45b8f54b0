//! Which process owns a file, and whether that process is still alive.
//!
//! Each process that works in a directory (the store root, the executor's work directory)
//! holds an exclusive `flock` on `<dir>/owners/<token>.lock` for as long as it lives, and
//! names the temporary files, leases, run directories and containers it makes with its
//! token. The kernel drops the lock when the process dies, however it dies, so "can I take
//! that lock?" tells any other process whether the owner is gone — also across PID
//! namespaces (CI containers sharing a store), where pid checks would see unrelated
//! processes or none.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const OWNERS: &str = "owners";

/// This process's token: lowercase hex, no `-` or `.`, unique among live processes.
pub fn token() -> &'static str {
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

fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Takes (once per directory) the lock that says this process owns what carries its token
/// below `dir`, and returns the token. Errors name the path.
pub fn claim(dir: &Path) -> Result<&'static str, (PathBuf, io::Error)> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    let held = HELD.get_or_init(Default::default);
    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
    let key = std::path::absolute(dir).map_err(|e| (dir.to_path_buf(), e))?;
    if let std::collections::hash_map::Entry::Vacant(slot) = held.entry(key) {
        let owners = slot.key().join(OWNERS);
        fs::create_dir_all(&owners).map_err(|e| (owners.clone(), e))?;
        let path = owners.join(format!("{}.lock", token()));
        let failed = |e| (path.clone(), e);
        // Another process may take the new, not yet locked file for a dead owner's and
        // unlink it between our open and our flock: then the lock held has no name, and we
        // make the file again.
        let lock = loop {
            let lock = open_lock(&path).map_err(failed)?;
            lock.lock().map_err(failed)?;
            let held = lock.metadata().map_err(failed)?;
            match fs::metadata(&path) {
                Ok(named) if named.ino() == held.ino() && named.dev() == held.dev() => break lock,
                _ => continue,
            }
        };
        slot.insert(lock);
    }
    Ok(token())
}

/// Whether the process with `token` may still be using its files below `dir`. A token
/// without a lock file belongs to no live process (owners create theirs before anything
/// else). The lock files of dead owners are removed on the way.
pub fn alive(dir: &Path, token: &str) -> bool {
    if token == self::token() {
        return true;
    }
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let path = dir.join(OWNERS).join(format!("{token}.lock"));
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return false,
        // Cannot tell (e.g. no permission): assume alive, never remove a live owner's files.
        Err(_) => return true,
    };
    match file.try_lock() {
        Ok(()) => {
            // Removed while held, so no live owner can be holding this file; but only if the
            // path still names it (a new owner may have made the file anew meanwhile).
            let same = match (file.metadata(), fs::metadata(&path)) {
                (Ok(held), Ok(named)) => held.ino() == named.ino() && held.dev() == named.dev(),
                _ => false,
            };
            if !same {
                return alive(dir, token);
            }
            let _ = fs::remove_file(&path);
            false
        }
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(_)) => true,
    }
}

/// Removes the lock files of owners that are gone (their files were reclaimed first).
pub fn forget_dead(dir: &Path) -> Result<(), (PathBuf, io::Error)> {
    let owners = dir.join(OWNERS);
    let entries = match fs::read_dir(&owners) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((owners, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| (owners.clone(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(token) = name.strip_suffix(".lock") {
            alive(dir, token);
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
        let other = open_lock(&owners.join("abc123.lock")).unwrap();
        other.lock().unwrap();
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
