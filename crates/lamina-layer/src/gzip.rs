//! gzip compressed on every core, with bytes that do not depend on how many.
//!
//! pigz's scheme: the input is cut into [`BLOCK`]-sized pieces by position alone; each piece
//! is deflated on its own (raw deflate, zlib-rs through flate2) with the previous piece's last
//! 32 KiB as preset dictionary and ended with a sync flush (the last piece with the final
//! block instead), and the pieces are written in order behind one gzip header. The trailer's
//! CRC-32 is combined from the pieces' CRCs. Every piece's bytes depend only on the input, so
//! one worker or eight give the same stream, the same digest on any machine, and the result
//! is one ordinary gzip member that GNU gzip, Go's `compress/gzip` (docker, umoci, skopeo)
//! and flate2 read. (zlib-rs picks its match finder by level only, never by CPU feature; a
//! zlib-rs upgrade may still change the bytes, so its version is part of the format.)
//!
//! gzp implements the same format but needs a `'static` writer it moves to its own thread;
//! layer sinks here borrow the store, so the few lines of scheduling live here instead.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Input bytes per independently deflated piece (pigz's default). Part of the output format:
/// changing it changes every gzip digest.
pub(crate) const BLOCK: usize = 128 * 1024;
/// deflate's window: how much of the previous piece a piece may refer back to.
const WINDOW: usize = 32 * 1024;

/// One piece to deflate.
struct Job {
    /// The previous piece's last [`WINDOW`] bytes (empty for the first piece).
    dictionary: Vec<u8>,
    data: Vec<u8>,
    /// Whether this is the last piece (final block instead of a sync flush).
    last: bool,
    reply: SyncSender<io::Result<Piece>>,
}

/// A deflated piece and the CRC of its input.
struct Piece {
    deflated: Vec<u8>,
    crc: Crc,
}

/// A pool of threads deflating pieces.
struct Pool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(workers: usize, level: flate2::Compression) -> io::Result<Pool> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::with_capacity(workers);
        for n in 0..workers {
            let queue = Arc::clone(&queue);
            let thread = std::thread::Builder::new()
                .name(format!("gzip-{n}"))
                .spawn(move || work(&queue, level))?;
            threads.push(thread);
        }
        Ok(Pool {
            jobs: Some(jobs),
            threads,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends every worker once it is idle.
        self.jobs.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>, level: flate2::Compression) {
    loop {
        let job = match queue.lock().unwrap_or_else(PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        let piece = deflate(level, &job.dictionary, &job.data, job.last);
        // The encoder may have gone (dropped on an error elsewhere): nothing to tell.
        let _ = job.reply.send(piece);
    }
}

/// Deflates `data` as one piece of the stream (see the module docs).
///
/// Each piece gets a new compressor: a reset one keeps stale window bytes that can sway its
/// choice between equally long matches (measured: a few bytes differ), and then the output
/// would depend on which pieces a thread happened to compress before.
fn deflate(
    level: flate2::Compression,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
) -> io::Result<Piece> {
    let compress = &mut Compress::new(level, false);
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // deflate's worst case is a little over the input; start there so one call usually does.
    let mut deflated = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    let mut input = data;
    loop {
        if deflated.capacity() - deflated.len() < 64 {
            deflated.reserve(deflated.capacity().max(4096));
        }
        let before = compress.total_in();
        let status = compress
            .compress_vec(input, &mut deflated, flush)
            .map_err(io::Error::other)?;
        input = &input[(compress.total_in() - before) as usize..];
        let room_left = deflated.len() < deflated.capacity();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is taken and output room is left over.
            _ if !last && input.is_empty() && room_left => break,
            _ => {}
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok(Piece { deflated, crc })
}

/// A piece on its way: computed by the pool, or here when there is no pool.
enum Pending {
    Done(io::Result<Piece>),
    Waiting(Receiver<io::Result<Piece>>),
}

/// A gzip writer compressing [`BLOCK`]s on `workers` threads (see the module docs).
pub(crate) struct ParallelGzip<W: Write> {
    inner: W,
    level: flate2::Compression,
    /// None with one worker: pieces are deflated on the writing thread.
    pool: Option<Pool>,
    block: Vec<u8>,
    dictionary: Vec<u8>,
    pending: VecDeque<Pending>,
    max_pending: usize,
    crc: Crc,
    total_in: u64,
    header_written: bool,
}

impl<W: Write> ParallelGzip<W> {
    pub(crate) fn new(inner: W, level: u32, workers: u32) -> io::Result<Self> {
        let level = flate2::Compression::new(level.min(9));
        let workers = workers.max(1) as usize;
        let pool = if workers > 1 {
            Some(Pool::new(workers, level)?)
        } else {
            None
        };
        Ok(ParallelGzip {
            inner,
            level,
            pool,
            block: Vec::with_capacity(BLOCK),
            dictionary: Vec::new(),
            pending: VecDeque::new(),
            // Enough queued that no worker waits for the writing thread.
            max_pending: workers * 2,
            crc: Crc::new(),
            total_in: 0,
            header_written: false,
        })
    }

    /// Hands the current block to be deflated, then writes finished pieces, waiting for the
    /// oldest while too many are queued.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let dictionary = std::mem::take(&mut self.dictionary);
        if data.len() >= WINDOW {
            self.dictionary = data[data.len() - WINDOW..].to_vec();
        }
        self.total_in += data.len() as u64;
        let pending = if let Some(pool) = &self.pool {
            let (reply, receiver) = std::sync::mpsc::sync_channel(1);
            let job = Job {
                dictionary,
                data,
                last,
                reply,
            };
            let sent = pool.jobs.as_ref().map(|jobs| jobs.send(job));
            if !matches!(sent, Some(Ok(()))) {
                return Err(io::Error::other("the gzip workers have stopped"));
            }
            Pending::Waiting(receiver)
        } else {
            Pending::Done(deflate(self.level, &dictionary, &data, last))
        };
        self.pending.push_back(pending);
        while self.pending.len() > self.max_pending || (last && !self.pending.is_empty()) {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let piece = match self.pending.pop_front() {
            None => return Ok(()),
            Some(Pending::Done(piece)) => piece?,
            Some(Pending::Waiting(receiver)) => receiver
                .recv()
                .map_err(|_| io::Error::other("a gzip worker stopped"))??,
        };
        self.write_header()?;
        self.inner.write_all(&piece.deflated)?;
        self.crc.combine(&piece.crc);
        Ok(())
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        // As flate2's GzBuilder writes it: no name, mtime 0, the level hint, OS "unknown".
        let hint = match self.level.level() {
            9.. => 2,
            0..=1 => 4,
            _ => 0,
        };
        self.inner
            .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, hint, 255])?;
        self.header_written = true;
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        self.write_header()?;
        let sum = self.crc.sum();
        // ISIZE is the input length modulo 2^32.
        let size = self.total_in as u32;
        self.inner.write_all(&sum.to_le_bytes())?;
        self.inner.write_all(&size.to_le_bytes())?;
        // Stops the workers before the writer is handed back.
        self.pool.take();
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full block goes only once more input follows: the last one must be final.
        if self.block.len() == BLOCK {
            self.dispatch(false)?;
        }
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// Writes the pieces finished so far without cutting a block, so flushing never changes
    /// the bytes.
    fn flush(&mut self) -> io::Result<()> {
        while matches!(self.pending.front(), Some(Pending::Done(_))) {
            self.write_oldest()?;
        }
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
