//! [`Prefetch`]: the page cache warmed for the tree files a [`super::TarSplitReader`] opens
//! next, when the tree is not cached.
//!
//! A tree read from a cold page cache is thousands of small synchronous reads, one file
//! after another (a 289 MB Debian base exported 2.4 times slower than its blob, which the
//! kernel reads ahead as one file). This thread walks the same tar-split a bounded number of
//! files ahead of the reader, opens each file and asks the kernel to read it
//! (`posix_fadvise(WILLNEED)`), so the disk works on many files at once. It starts only once
//! the reader has found a file not in the page cache (`preadv2(RWF_NOWAIT)`): from a warm
//! cache it would be a thread of opens for nothing.

use std::io::{self, BufRead, BufReader, Read};
use std::num::NonZeroU64;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::fs::{Advice, OFlags};
use rustix::io::{Errno, ReadWriteFlags};

use super::MAGIC;
use super::reader::{Record, read_record};
use crate::confine::open_in;

/// How far ahead of the reader the thread may have asked for files: in files, and in bytes
/// (so a tree of large files does not push out of the page cache what the reader has yet to
/// read; also the most asked of one file at a time).
const AHEAD_FILES: u64 = 256;
const AHEAD_BYTES: u64 = 64 << 20;
/// How long the thread sleeps when it is far enough ahead (or not started).
const NAP: Duration = Duration::from_millis(1);

/// What the reader and the prefetching thread share.
#[derive(Default)]
struct Shared {
    /// Tree files the reader has opened, and their bytes.
    opened: AtomicU64,
    opened_bytes: AtomicU64,
    /// The reader met a file not in the page cache: prefetching pays.
    cold: AtomicBool,
    /// The reader is gone.
    stop: AtomicBool,
    /// Files the thread asked the kernel to read.
    asked: AtomicU64,
}

/// The prefetching thread of one reader; stopped and joined when dropped.
pub(super) struct Prefetch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Starts the thread over its own copy of the (compressed) tar-split and its own handle
    /// on the tree's root. Best effort: without a thread the reader only goes slower.
    pub(super) fn spawn(split: Vec<u8>, root: &OwnedFd) -> Option<Prefetch> {
        let root = root.try_clone().ok()?;
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tree-prefetch".into())
            .spawn(move || {
                // Errors end prefetching: the reader reports its own.
                let _ = run(&split, &root, &theirs);
            })
            .ok()?;
        Some(Prefetch {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread the reader opened its next tree file, `file`; the first files and
    /// then one in 64 are checked for being in the page cache, which starts prefetching.
    pub(super) fn opened(&self, file: &std::fs::File, size: u64) {
        let n = self.shared.opened.fetch_add(1, Ordering::Relaxed);
        self.shared.opened_bytes.fetch_add(size, Ordering::Relaxed);
        if size == 0
            || self.shared.cold.load(Ordering::Relaxed)
            || (n >= 16 && !n.is_multiple_of(64))
        {
            return;
        }
        let mut byte = [0u8; 1];
        let bufs = &mut [io::IoSliceMut::new(&mut byte)];
        if let Err(Errno::AGAIN) = rustix::io::preadv2(file, bufs, 0, ReadWriteFlags::NOWAIT) {
            self.shared.cold.store(true, Ordering::Relaxed);
            if let Some(thread) = &self.thread {
                thread.thread().unpark();
            }
        }
    }
}

#[cfg(test)]
impl Prefetch {
    /// Whether the reader found a file out of the page cache.
    pub(super) fn found_cold(&self) -> bool {
        self.shared.cold.load(Ordering::Relaxed)
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The thread: waits for the reader to find the tree cold, then walks the tar-split's file
/// records from where the reader is, staying at most [`AHEAD_FILES`] and [`AHEAD_BYTES`]
/// ahead of it.
fn run(split: &[u8], root: &OwnedFd, shared: &Shared) -> io::Result<()> {
    while !shared.cold.load(Ordering::Relaxed) {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let mut records = BufReader::new(zstd::stream::read::Decoder::new(split)?);
    let mut magic = [0u8; MAGIC.len()];
    records.read_exact(&mut magic)?;
    let mut files = 0u64;
    let mut bytes = 0u64;
    loop {
        match read_record(&mut records)? {
            Record::Literal(len) => {
                io::copy(&mut (&mut records).take(len), &mut io::sink())?;
            }
            Record::File { path, size } => {
                files += 1;
                bytes += size;
                if files <= shared.opened.load(Ordering::Relaxed) {
                    // Already opened by the reader (prefetching started late).
                    continue;
                }
                while files > shared.opened.load(Ordering::Relaxed) + AHEAD_FILES
                    || bytes > shared.opened_bytes.load(Ordering::Relaxed) + AHEAD_BYTES
                {
                    if shared.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::park_timeout(NAP);
                }
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                // Non-blocking: a FIFO put in the tree must not hold the thread (and the
                // reader's drop, which joins it); a regular file opens the same.
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
                if let (Ok(fd), Some(len)) = (
                    open_in(root, &path, flags),
                    NonZeroU64::new(size.min(AHEAD_BYTES)),
                ) {
                    let _ = rustix::fs::fadvise(&fd, 0, Some(len), Advice::WillNeed);
                    shared.asked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Record::End { .. } => return Ok(()),
        }
        if records.fill_buf()?.is_empty() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_asks_for_every_file_with_bytes_once_started_and_stops_when_told() {
        let tree = super::super::tests::sample_tree();
        let (_, split) = super::super::tests::tar_and_split(tree.path());
        let root: OwnedFd = std::fs::File::open(tree.path()).unwrap().into();
        // Started (the reader found a cold file) and far behind: every file with bytes
        // (etc/motd, the long-named file, big.bin; not etc/empty nor the hard link).
        let shared = Shared::default();
        shared.cold.store(true, Ordering::Relaxed);
        run(&split, &root, &shared).unwrap();
        assert_eq!(shared.asked.load(Ordering::Relaxed), 3);
        // Started late, once the reader had opened all four files: nothing is asked again.
        let late = Shared::default();
        late.cold.store(true, Ordering::Relaxed);
        late.opened.store(4, Ordering::Relaxed);
        run(&split, &root, &late).unwrap();
        assert_eq!(late.asked.load(Ordering::Relaxed), 0);
        // Never started: it waits, and ends when the reader goes.
        let waiting = Prefetch::spawn(split, &root).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(waiting.shared.asked.load(Ordering::Relaxed), 0);
        drop(waiting);
    }
}
