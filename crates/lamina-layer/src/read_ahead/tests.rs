use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{CHUNK, DEPTH, ReadAhead};

/// Gives `data` in pieces of at most `piece` bytes, then `fail` (if any) instead of the end;
/// counts what it gave and notes when it is dropped.
struct Source {
    data: Vec<u8>,
    pos: usize,
    piece: usize,
    fail: Option<io::Error>,
    given: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
}

impl Source {
    fn new(data: Vec<u8>, piece: usize) -> Source {
        Source {
            data,
            pos: 0,
            piece,
            fail: None,
            given: Arc::default(),
            dropped: Arc::default(),
        }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.data.len()
            && let Some(e) = self.fail.take()
        {
            return Err(e);
        }
        let n = buf.len().min(self.piece).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.given.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn gives_the_bytes_of_its_source_unchanged() {
    // Empty, shorter than a buffer, exactly one, and several with a partial last one; the
    // source answering in odd pieces.
    for len in [0, 1, 4099, CHUNK, 3 * CHUNK + 517] {
        let data = pattern(len);
        let mut reader = ReadAhead::spawn(Source::new(data.clone(), 7001), "test").unwrap();
        let mut out = Vec::new();
        // Small reads, as `io::copy` makes them.
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out.len(), data.len());
        assert!(out == data, "{len} bytes came out changed");
        // The end stays the end.
        assert_eq!(reader.read(&mut buf).unwrap(), 0);
    }
}

#[test]
fn an_error_comes_after_the_bytes_before_it_and_keeps_its_kind_and_payload() {
    let data = pattern(2 * CHUNK + 10);
    let mut source = Source::new(data.clone(), 1 << 16);
    source.fail = Some(io::Error::new(
        io::ErrorKind::InvalidData,
        crate::LayerError::TarSplit {
            reason: "a test failure".into(),
        },
    ));
    let mut reader = ReadAhead::spawn(source, "test").unwrap();
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).unwrap_err();
    assert!(out == data, "every byte before the error is given first");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.into_inner().unwrap().downcast::<crate::LayerError>();
    assert!(matches!(
        inner.as_deref(),
        Ok(crate::LayerError::TarSplit { .. })
    ));
    // After the error every read fails: never an end that looks like a whole stream.
    assert!(reader.read(&mut [0u8; 16]).is_err());
}

#[test]
fn runs_at_most_its_depth_ahead_and_stops_when_dropped() {
    let data = pattern(64 * CHUNK);
    let source = Source::new(data, CHUNK);
    let given = Arc::clone(&source.given);
    let dropped = Arc::clone(&source.dropped);
    let mut reader = ReadAhead::spawn(source, "test").unwrap();
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    // Give the thread time to run as far ahead as it may.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let ahead = given.load(Ordering::SeqCst);
    // The buffer being read, DEPTH queued, one being filled (blocked in its send).
    assert!(
        ahead <= ((DEPTH + 2) * CHUNK) as u64,
        "read {ahead} bytes ahead of a consumer that took 10"
    );
    drop(reader);
    // Dropping joins the thread, which has let go of its source.
    assert!(dropped.load(Ordering::SeqCst));
    assert!(given.load(Ordering::SeqCst) < (64 * CHUNK) as u64);
}
