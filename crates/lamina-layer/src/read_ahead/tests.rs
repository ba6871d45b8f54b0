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

        // Written out whole, from where the thread left the bytes.
        let mut written = Vec::new();
        let mut reader = ReadAhead::spawn(Source::new(data.clone(), 7001), "test").unwrap();
        assert_eq!(reader.write_to(&mut written).unwrap(), len as u64);
        assert!(written == data, "{len} bytes came out changed when written");
        assert_eq!(reader.write_to(&mut written).unwrap(), 0);
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
    assert!(reader.read(&mut []).is_err(), "an empty read too");
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

/// Counts the bytes it is given; at the end fails unless they were `expected`.
struct CountingCheck {
    seen: u64,
    expected: u64,
}

impl super::StreamCheck for CountingCheck {
    fn update(&mut self, bytes: &[u8]) {
        self.seen += bytes.len() as u64;
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        if self.seen == self.expected {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("saw {} bytes", self.seen),
            ))
        }
    }
}

fn checked(data: &[u8], expected: u64, fail: Option<io::Error>) -> ReadAhead {
    let mut source = Source::new(data.to_vec(), 1 << 16);
    source.fail = fail;
    let check = Box::new(CountingCheck { seen: 0, expected });
    ReadAhead::spawn_checked(source, Some(check), "test").unwrap()
}

#[test]
fn a_check_on_its_own_thread_sees_every_byte_and_its_failure_takes_the_place_of_the_end() {
    let data = pattern(3 * CHUNK + 99);
    let len = data.len() as u64;
    // Agreeing: the stream ends as usual, read or written.
    let mut out = Vec::new();
    checked(&data, len, None).read_to_end(&mut out).unwrap();
    assert!(out == data);
    let mut written = Vec::new();
    assert_eq!(
        checked(&data, len, None).write_to(&mut written).unwrap(),
        len
    );
    assert!(written == data);

    // Disagreeing: every byte first, then the check's error instead of the end, and after
    // it every read fails.
    let mut reader = checked(&data, len + 1, None);
    let mut out = Vec::new();
    let err = reader.read_to_end(&mut out).unwrap_err();
    assert!(out == data, "the bytes come before the verdict");
    assert!(
        err.to_string().contains(&format!("saw {len} bytes")),
        "{err}"
    );
    assert!(reader.read(&mut [0u8; 16]).is_err());
    assert!(
        checked(&data, len + 1, None)
            .write_to(&mut Vec::new())
            .is_err()
    );

    // A source that fails: its own error, not the check's.
    let fail = io::Error::new(io::ErrorKind::InvalidData, "the source broke");
    let err = checked(&data, len + 1, Some(fail))
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.to_string(), "the source broke");

    // Dropped half-way: both threads stop.
    let mut reader = checked(&pattern(64 * CHUNK), 0, None);
    reader.read_exact(&mut [0u8; 10]).unwrap();
    drop(reader);
}
