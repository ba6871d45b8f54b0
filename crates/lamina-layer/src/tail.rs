//! The end of a layer's tar stream, as other tools write it.
//!
//! A tar archive ends with each entry's data padded to 512 bytes and two zero blocks. Some
//! writers stop earlier: `umoci insert` (umoci 0.4.7) ends its layers right after the last
//! file's data, with neither padding nor trailer, and umoci, containerd and GNU tar's
//! listing of the entries accept that. The `tar` crate does not: it wants to skip the
//! missing padding ("unexpected EOF during skip"). [`Tail`] sits between the layer bytes and
//! the `tar` crate and supplies that padding as zeros, but only when the stream ends right
//! after an entry's data, which the unpack loop marks once it has read all of it
//! ([`TailState::data_complete`]). A stream cut anywhere else still ends early: inside an
//! entry's data the loop sees the end before the data is complete, inside a header the
//! `tar` crate fails to read the block; [`TailState::ended`] tells both from other errors.
//!
//! Supplied zeros never reach the hash below, so the `diff_id` stays that of the bytes the
//! layer really has.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Size of a tar block.
const BLOCK: u64 = 512;

/// What the unpack loop and the reader share about the stream's position.
#[derive(Debug, Default)]
pub(crate) struct TailState {
    /// Bytes handed to the `tar` crate, supplied padding included.
    pos: Cell<u64>,
    /// Where the data of the last fully read entry ends.
    data_end: Cell<Option<u64>>,
    /// Whether the layer's bytes have run out.
    ended: Cell<bool>,
}

impl TailState {
    /// Marks the current position as the end of an entry's data, read in full: if the
    /// stream ends within the padding that follows, the rest of the padding is supplied.
    pub(crate) fn data_complete(&self) {
        self.data_end.set(Some(self.pos.get()));
    }

    /// Whether the layer's bytes have run out (the padding supplied after the last entry
    /// counts as running out).
    pub(crate) fn ended(&self) -> bool {
        self.ended.get()
    }
}

/// A reader that supplies the zero padding a layer leaves off after its last entry.
pub(crate) struct Tail<R> {
    inner: R,
    state: Rc<TailState>,
}

impl<R> Tail<R> {
    /// Wraps `inner`; the returned state is for the unpack loop.
    pub(crate) fn new(inner: R) -> (Self, Rc<TailState>) {
        let state = Rc::new(TailState::default());
        let tail = Tail {
            inner,
            state: Rc::clone(&state),
        };
        (tail, state)
    }

    /// The wrapped reader, for whatever follows the archive.
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let pos = self.state.pos.get();
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.state.pos.set(pos + n as u64);
            return Ok(n);
        }
        self.state.ended.set(true);
        // Within the padding after a fully read entry: supply the rest of it. Anywhere else
        // (inside data or a header, or at a block boundary) the end stays an end.
        if let Some(end) = self.state.data_end.get() {
            let boundary = end.next_multiple_of(BLOCK);
            if (end..boundary).contains(&pos) {
                let k = usize::try_from(boundary - pos)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                buf[..k].fill(0);
                self.state.pos.set(pos + k as u64);
                return Ok(k);
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests;
