//! [`ReadAhead`]: a reader run on a thread of its own, a few large buffers ahead of its
//! consumer.
//!
//! A tree-backed layer's tar is reassembled by opening and reading thousands of files and
//! hashing every byte ([`crate::TarSplitReader`]); whoever consumes it (an archive being
//! written, a compressor) has work of its own. Running the reassembly on another thread lets
//! both proceed at once, so reading a tree costs about what reading one blob file does.
//!
//! The reading thread fills whole buffers; the consumer reads them or writes them out as
//! they are ([`ReadAhead::write_to`]), without a copy in between. A
//! [`StreamCheck`] (the tar's digest against the layer key) runs on a third thread over the
//! same buffers: on two cores, reading plus hashing on one thread was what a tree export
//! waited for, while the consumer's thread idled a third of the time.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per chunk handed from the reading thread to the consumer.
const CHUNK: usize = 1 << 20;
/// Filled chunks that may wait for the consumer: how far the reading thread runs ahead.
const DEPTH: usize = 4;

/// A check of the whole stream, given every byte in order on a thread of its own; its verdict
/// comes at the end of the stream.
pub trait StreamCheck: Send + 'static {
    /// The stream's next bytes.
    fn update(&mut self, bytes: &[u8]);
    /// Whether the stream was what it should be: an error ends the stream as the source's
    /// own errors do.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// Fills `buf` (a recycled buffer: its bytes are overwritten) with up to `limit` bytes of
/// `source`; returns `false` once the source has ended. Not `take(limit).read_to_end`: that
/// zeroes the whole buffer again on every use, where a full recycled one needs none.
fn fill(source: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> io::Result<bool> {
    buf.resize(limit, 0);
    let mut len = 0;
    let result = loop {
        match source.read(&mut buf[len..]) {
            Ok(0) => break Ok(false),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(len);
    result
}

/// Reads a stream on a thread of its own into 1 MiB chunks, a few of them ahead of the
/// consumer. Bytes and errors come out exactly as the source gives them: an error it returns
/// (e.g. a [`crate::LayerError`] inside an `io::Error`) is returned as it is, after the bytes
/// read before it, and so is a failed [`StreamCheck`] in place of the end; every later read
/// fails too, so a failed stream is never taken for a shorter whole one. Dropping the reader
/// stops its threads.
pub struct ReadAhead {
    filled: Option<Receiver<io::Result<Arc<Vec<u8>>>>>,
    /// Buffers done with, going back to the reading thread (from the consumer and the
    /// checking thread: the last one to let go makes it reusable), so no buffer is
    /// allocated per chunk.
    emptied: SyncSender<Arc<Vec<u8>>>,
    current: Arc<Vec<u8>>,
    pos: usize,
    done: bool,
    failed: bool,
    thread: Option<JoinHandle<()>>,
    checker: Option<JoinHandle<io::Result<()>>>,
}

impl ReadAhead {
    /// Starts reading `inner` on a new thread named `name`.
    pub fn spawn<R: Read + Send + 'static>(inner: R, name: &str) -> io::Result<ReadAhead> {
        ReadAhead::spawn_checked(inner, None, name)
    }

    /// Starts reading `inner` on a new thread named `name`, and `check` over its bytes on
    /// another.
    pub fn spawn_checked<R: Read + Send + 'static>(
        inner: R,
        check: Option<Box<dyn StreamCheck>>,
        name: &str,
    ) -> io::Result<ReadAhead> {
        let (filled_tx, filled) = std::sync::mpsc::sync_channel(DEPTH);
        // Every buffer in use is filled and queued for the consumer (DEPTH) and the checker
        // (DEPTH), being filled (1), or read by each (2); both may return theirs.
        let (emptied, emptied_rx) = std::sync::mpsc::sync_channel(2 * (DEPTH + 2));
        let (check_tx, checker) = match check {
            Some(check) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(DEPTH);
                let emptied = emptied.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("{name}-check"))
                    .spawn(move || run_check(check, &rx, &emptied))?;
                (Some(tx), Some(thread))
            }
            None => (None, None),
        };
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || produce(inner, &filled_tx, &emptied_rx, check_tx.as_ref()))?;
        Ok(ReadAhead {
            filled: Some(filled),
            emptied,
            current: Arc::default(),
            pos: 0,
            done: false,
            failed: false,
            thread: Some(thread),
            checker,
        })
    }

    /// The unread bytes of the current buffer, taking the next one when this one is read
    /// (empty at the end of the stream).
    fn unread(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.current.len() {
            if self.failed {
                return Err(io::Error::other("the stream failed earlier"));
            }
            if self.done {
                return Ok(&[]);
            }
            let next = self.filled.as_ref().and_then(|rx| rx.recv().ok());
            let buf = match next {
                Some(Ok(buf)) => buf,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                // The thread ended after its last buffer: the end of the stream, once the
                // check agrees. (A panicking thread also closes the channel; `drop` reports
                // nothing, so that is checked when joining below.)
                None => {
                    self.failed = true;
                    if let Some(thread) = self.thread.take()
                        && thread.join().is_err()
                    {
                        return Err(io::Error::other("the read-ahead thread panicked"));
                    }
                    if let Some(checker) = self.checker.take() {
                        match checker.join() {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(e),
                            Err(_) => return Err(io::Error::other("the check thread panicked")),
                        }
                    }
                    (self.failed, self.done) = (false, true);
                    return Ok(&[]);
                }
            };
            let old = std::mem::replace(&mut self.current, buf);
            self.pos = 0;
            if old.capacity() > 0 {
                let _ = self.emptied.try_send(old);
            }
        }
        Ok(&self.current[self.pos..])
    }

    /// Writes the rest of the stream to `out` straight from the reading thread's buffers;
    /// returns the bytes written. Fails as [`Read`] would, after writing the bytes before
    /// the failure; a failed write fails the stream too.
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let bytes = self.unread()?;
            if bytes.is_empty() {
                return Ok(total);
            }
            let n = bytes.len();
            if let Err(e) = out.write_all(bytes) {
                // Part of the buffer may be out: the stream cannot be resumed.
                self.failed = true;
                return Err(e);
            }
            self.pos += n;
            total += n as u64;
        }
    }
}

/// A buffer given back by both the consumer and the checker, if one is waiting.
fn recycled(emptied: &Receiver<Arc<Vec<u8>>>) -> Option<Vec<u8>> {
    // A buffer the other side still holds is dropped here; its last holder frees it.
    emptied.try_iter().find_map(|buf| Arc::try_unwrap(buf).ok())
}

/// The reading thread: fills buffers until the source ends or fails, or the consumer or the
/// checker is gone.
fn produce(
    mut source: impl Read,
    filled: &SyncSender<io::Result<Arc<Vec<u8>>>>,
    emptied: &Receiver<Arc<Vec<u8>>>,
    check: Option<&SyncSender<Arc<Vec<u8>>>>,
) {
    loop {
        let mut buf = recycled(emptied).unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let result = fill(&mut source, &mut buf, CHUNK);
        let more = matches!(result, Ok(true));
        if !buf.is_empty() {
            let buf = Arc::new(buf);
            if let Some(check) = check
                && check.send(Arc::clone(&buf)).is_err()
            {
                return;
            }
            if filled.send(Ok(buf)).is_err() {
                return;
            }
        }
        if let Err(e) = result {
            let _ = filled.send(Err(e));
            return;
        }
        if !more {
            return;
        }
    }
}

/// The checking thread: every buffer in order, then the verdict (once the reading thread
/// has ended, whether or not the stream was whole: the consumer only asks at its end).
fn run_check(
    mut check: Box<dyn StreamCheck>,
    buffers: &Receiver<Arc<Vec<u8>>>,
    emptied: &SyncSender<Arc<Vec<u8>>>,
) -> io::Result<()> {
    for buf in buffers {
        check.update(&buf);
        let _ = emptied.try_send(buf);
    }
    check.finish()
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the stream failed earlier"));
        }
        if out.is_empty() {
            return Ok(0);
        }
        let bytes = self.unread()?;
        let n = out.len().min(bytes.len());
        out[..n].copy_from_slice(&bytes[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel makes a blocked `send` fail, so the thread ends at its next
        // buffer; then it is joined, so nothing it holds (files, the tree) outlives the
        // reader. The checker ends once the reading thread has.
        self.filled.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(checker) = self.checker.take() {
            let _ = checker.join();
        }
    }
}

impl std::fmt::Debug for ReadAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
