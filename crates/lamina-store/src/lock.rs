//! The cross-process lock: one exclusive `flock` on `LOCK`, held for a `Store`'s lifetime.
//!
//! RocksDB lets only one process open a database read-write, so a second process cannot
//! share the index; rather than fail at RocksDB's own lock with an opaque message, the store
//! waits (bounded) for this lock and names the holder's pid when it gives up. The kernel
//! drops the lock when the holder dies, so a killed process never wedges the store.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::StoreError;

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock, polling until `timeout`.
    pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<Self, StoreError> {
        let start = Instant::now();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io(path))?;
        let mut pause = Duration::from_millis(5);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    // Record the holder for the message other processes print.
                    file.set_len(0).map_err(StoreError::io(path))?;
                    file.rewind().map_err(StoreError::io(path))?;
                    write!(file, "{}", std::process::id()).map_err(StoreError::io(path))?;
                    return Ok(StoreLock { _file: file });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= timeout {
                        return Err(StoreError::Locked {
                            path: path.to_path_buf(),
                            holder: holder(path),
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
    }
}

/// `process <pid>` from the lock file, or a vaguer phrase if it is empty or unreadable.
fn holder(path: &Path) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    match (read, text.trim().parse::<u32>()) {
        (Ok(_), Ok(pid)) => format!("process {pid}"),
        _ => "another process".to_owned(),
    }
}
