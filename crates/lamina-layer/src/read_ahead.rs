//! [`ReadAhead`]: a reader run on a thread of its own, a few large buffers ahead of its
//! consumer.
//!
//! A tree-backed layer's tar is reassembled by opening and reading thousands of files and
//! hashing every byte ([`crate::TarSplitReader`]); whoever consumes it (an archive being
//! written, a compressor) has work of its own. Running the reassembly on another thread lets
//! both proceed at once, so reading a tree costs about what reading one blob file does.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

/// Bytes per buffer handed from the reading thread to the consumer.
const CHUNK: usize = 1 << 20;
/// Filled buffers that may wait for the consumer: how far the reading thread runs ahead.
const DEPTH: usize = 4;

/// Reads `R` on a thread of its own into 1 MiB buffers, a few of them ahead of
/// the consumer. Bytes and errors come out exactly as `R` gives them: an error `R` returns
/// (e.g. a [`crate::LayerError`] inside an `io::Error`) is returned as it is, after the bytes
/// read before it; every later read fails too, so a failed stream is never taken for a
/// shorter whole one. Dropping the reader stops the thread.
pub struct ReadAhead {
    filled: Option<Receiver<io::Result<Vec<u8>>>>,
    /// Emptied buffers going back to the reading thread, so no buffer is allocated per chunk.
    emptied: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
    failed: bool,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts reading `inner` on a new thread named `name`.
    pub fn spawn<R: Read + Send + 'static>(inner: R, name: &str) -> io::Result<ReadAhead> {
        let (filled_tx, filled) = std::sync::mpsc::sync_channel(DEPTH);
        // Every buffer in use is either filled and queued (DEPTH), being filled (1) or being
        // read by the consumer (1), so one more slot than that never blocks the consumer.
        let (emptied, emptied_rx) = std::sync::mpsc::sync_channel(DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || produce(inner, &filled_tx, &emptied_rx))?;
        Ok(ReadAhead {
            filled: Some(filled),
            emptied,
            current: Vec::new(),
            pos: 0,
            done: false,
            failed: false,
            thread: Some(thread),
        })
    }
}

/// The reading thread: fills buffers until `inner` ends or fails, or the consumer is gone.
fn produce(
    mut inner: impl Read,
    filled: &SyncSender<io::Result<Vec<u8>>>,
    emptied: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = match emptied.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty) => Vec::with_capacity(CHUNK),
            Err(TryRecvError::Disconnected) => return,
        };
        buf.resize(CHUNK, 0);
        let mut len = 0;
        let result = loop {
            match inner.read(&mut buf[len..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    len += n;
                    if len == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(len);
        let end = len < CHUNK;
        if len > 0 && filled.send(Ok(buf)).is_err() {
            return;
        }
        if let Err(e) = result {
            let _ = filled.send(Err(e));
            return;
        }
        if end {
            return;
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.failed {
                return Err(io::Error::other("the stream failed earlier"));
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let next = self.filled.as_ref().and_then(|rx| rx.recv().ok());
            let buf = match next {
                Some(Ok(buf)) => buf,
                Some(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                // The thread ended after its last buffer: the end of the stream. (A
                // panicking thread also closes the channel; `drop` reports nothing, so
                // that is checked when joining below.)
                None => {
                    self.done = true;
                    if let Some(thread) = self.thread.take()
                        && thread.join().is_err()
                    {
                        self.failed = true;
                        return Err(io::Error::other("the read-ahead thread panicked"));
                    }
                    return Ok(0);
                }
            };
            let old = std::mem::replace(&mut self.current, buf);
            self.pos = 0;
            if old.capacity() > 0 {
                let _ = self.emptied.try_send(old);
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing the channel makes a blocked `send` fail, so the thread ends at its next
        // buffer; then it is joined, so nothing it holds (files, the tree) outlives the reader.
        self.filled.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
