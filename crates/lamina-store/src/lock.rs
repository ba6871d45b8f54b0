//! The cross-process lock: one exclusive `flock` on `LOCK`, held while a process has the
//! index open (see `slot.rs`).
//!
//! RocksDB lets only one process open a database read-write, so processes take turns;
//! rather than fail at RocksDB's own lock with an opaque message, the store waits (bounded)
//! for this lock and names the holder's pid when it gives up. The kernel drops the lock
//! when the holder dies, so a killed process never wedges the store.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::StoreError;

/// A held lock; released on drop.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock, polling until `timeout`; after waiting `notice_after`, calls `notice`
    /// once with the holder (`process <pid>`).
    pub(crate) fn acquire(
        path: &Path,
        timeout: Duration,
        notice_after: Duration,
        notice: impl Fn(&str),
    ) -> Result<Self, StoreError> {
        let start = Instant::now();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(StoreError::io(path))?;
        let mut pause = Duration::from_millis(1);
        let mut noticed = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    // Record the holder for the message other processes print: one write of
                    // a fixed width, so a reader never sees it half done or empty.
                    use std::os::unix::fs::FileExt;
                    let pid = format!("{:<10}\n", std::process::id());
                    file.write_all_at(pid.as_bytes(), 0)
                        .map_err(StoreError::io(path))?;
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
                    if !noticed && waited >= notice_after {
                        noticed = true;
                        notice(&holder(path));
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    // Holders keep the lock for milliseconds: poll often at first.
                    pause = (pause * 2).min(Duration::from_millis(10));
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
