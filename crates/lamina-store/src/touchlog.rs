//! The touch log: uses (last-used times, dedupe counters) seen by read-only index opens,
//! recorded outside RocksDB and merged into the index by the next writer.
//!
//! A warm rebuild only reads the index, except for "last used" marks; writing those would
//! need a read-write open (RocksDB writes an OPTIONS file, a MANIFEST record and a WAL on
//! every one). Instead a read-only open appends them to `touches-v1` in the store root, one
//! `write` with `O_APPEND`, and a writer applies them later. The file's `flock` also keeps GC
//! from deciding while a reader has looked records up but not yet recorded its use:
//!
//! - readers that record uses hold it **shared** from their first lookup until their uses
//!   are appended (a read-only session of the index; a build's all-hit part);
//! - GC holds it **exclusive** from before its index section until its sweep is done, and
//!   merges the log first, so what a reader used is as recent in the index as if it had
//!   been written there;
//! - any other read-write open merges it only if it can take it exclusive at once.
//!
//! Lock order: this file before `LOCK`. A process holding `LOCK` never waits for this file
//! (it only tries), so the two never deadlock.
//!
//! Crash safety: a record is applied only if its checksum holds; a torn record (a process
//! killed mid-append, a power cut) is skipped byte by byte to the next record. The log is
//! emptied after its records are written to the index; a crash between the two applies them
//! again later, which leaves last-used times as they were (a maximum) and may count a few
//! dedupe hits twice (statistics only). Losing the log loses only last-used marks.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::index::{self, Index, IndexBatch};
use crate::records::{from_ms, to_ms};
use crate::{BlobInfo, CacheRecord, ImageRecord, StoreError};

/// The log's file name in the store root.
pub(crate) const FILE: &str = "touches-v1";

/// Past this size a reader asks for a merge (a read-write section) after appending, so a
/// store that only sees warm rebuilds does not grow its log without bound.
pub(crate) const MERGE_ABOVE_BYTES: u64 = 256 << 10;

const MAGIC: [u8; 2] = [0xC7, 0x1A];
/// Magic, kind, payload length (u16), value (u64).
const HEADER: usize = 2 + 1 + 2 + 8;
const CHECK: usize = 4;

/// One recorded use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Touch {
    /// A blob was used at `ms`.
    Blob { key: [u8; 32], ms: u64 },
    /// A cache entry was used at `ms`.
    Cache { key: [u8; 32], ms: u64 },
    /// A named image was retagged to what it already named at `ms`.
    Image { name: String, ms: u64 },
    /// A dedupe counter (a `meta` counter key) grows by `delta`.
    Count { counter: &'static [u8], delta: i64 },
}

/// Counters a touch may add to: a record naming any other is ignored.
const COUNTERS: [&[u8]; 2] = [index::HITS, index::LOGICAL_BYTES];

impl Touch {
    fn kind(&self) -> u8 {
        match self {
            Touch::Blob { .. } => 1,
            Touch::Cache { .. } => 2,
            Touch::Image { .. } => 3,
            Touch::Count { .. } => 4,
        }
    }

    fn value(&self) -> u64 {
        match self {
            Touch::Blob { ms, .. } | Touch::Cache { ms, .. } | Touch::Image { ms, .. } => *ms,
            Touch::Count { delta, .. } => *delta as u64,
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Touch::Blob { key, .. } | Touch::Cache { key, .. } => key,
            Touch::Image { name, .. } => name.as_bytes(),
            Touch::Count { counter, .. } => counter,
        }
    }

    /// Appends the record: magic, kind, payload length, value, payload, check.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let payload = self.payload();
        let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
        let payload = &payload[..usize::from(len)];
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(self.kind());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.value().to_le_bytes());
        out.extend_from_slice(payload);
        let check = checksum(&out[start + MAGIC.len()..]);
        out.extend_from_slice(&check);
    }

    fn decode(kind: u8, value: u64, payload: &[u8]) -> Option<Touch> {
        match kind {
            1 => Some(Touch::Blob {
                key: payload.try_into().ok()?,
                ms: value,
            }),
            2 => Some(Touch::Cache {
                key: payload.try_into().ok()?,
                ms: value,
            }),
            3 => Some(Touch::Image {
                name: String::from_utf8(payload.to_vec()).ok()?,
                ms: value,
            }),
            4 => Some(Touch::Count {
                counter: COUNTERS.into_iter().find(|c| *c == payload)?,
                delta: value as i64,
            }),
            _ => None,
        }
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECK] {
    let hash = blake3::hash(bytes);
    let mut check = [0u8; CHECK];
    check.copy_from_slice(&hash.as_bytes()[..CHECK]);
    check
}

/// The records in `bytes`, skipping anything that is not a whole record with a good check
/// (a torn append), and how many bytes were skipped.
pub(crate) fn parse(bytes: &[u8]) -> (Vec<Touch>, usize) {
    let mut touches = Vec::new();
    let mut skipped = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        match record_at(&bytes[pos..]) {
            Some((touch, len)) => {
                touches.extend(touch);
                pos += len;
            }
            None => {
                pos += 1;
                skipped += 1;
            }
        }
    }
    (touches, skipped)
}

/// The record at the start of `bytes` and its length; `Some((None, len))` for a well-formed
/// record of a kind this version does not apply.
fn record_at(bytes: &[u8]) -> Option<(Option<Touch>, usize)> {
    if bytes.len() < HEADER + CHECK || bytes[..2] != MAGIC {
        return None;
    }
    let kind = bytes[2];
    let len = usize::from(u16::from_le_bytes([bytes[3], bytes[4]]));
    let end = HEADER + len;
    if bytes.len() < end + CHECK || checksum(&bytes[2..end]) != bytes[end..end + CHECK] {
        return None;
    }
    let value = u64::from_le_bytes(bytes[5..HEADER].try_into().ok()?);
    Some((Touch::decode(kind, value, &bytes[HEADER..end]), end + CHECK))
}

/// The touch log of one store.
#[derive(Debug, Clone)]
pub(crate) struct TouchLog {
    path: PathBuf,
}

/// The log file with a `flock` held on it (shared or exclusive); released on drop.
#[derive(Debug)]
pub(crate) struct Held {
    file: File,
    path: PathBuf,
}

/// Whether a lock is wanted shared (readers) or exclusive (GC, merges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

impl TouchLog {
    pub(crate) fn new(root: &Path) -> TouchLog {
        TouchLog {
            path: root.join(FILE),
        }
    }

    fn open(&self) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(StoreError::io(&self.path))
    }

    /// Takes the lock in `mode`, polling up to `timeout`; after `notice_after`, calls
    /// `notice` once (the holder is a GC or a reader of another process).
    pub(crate) fn lock(
        &self,
        mode: Mode,
        timeout: Duration,
        notice_after: Duration,
        notice: impl Fn(&str),
    ) -> Result<Held, StoreError> {
        let start = Instant::now();
        let file = self.open()?;
        let mut pause = Duration::from_millis(1);
        let mut noticed = false;
        loop {
            let tried = match mode {
                Mode::Shared => file.try_lock_shared(),
                Mode::Exclusive => file.try_lock(),
            };
            match tried {
                Ok(()) => {
                    return Ok(Held {
                        file,
                        path: self.path.clone(),
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    let holder = match mode {
                        Mode::Shared => "a garbage collection",
                        Mode::Exclusive => "another process's cache lookups",
                    };
                    if waited >= timeout {
                        return Err(StoreError::Locked {
                            path: self.path.clone(),
                            holder: holder.to_owned(),
                            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                        });
                    }
                    if !noticed && waited >= notice_after {
                        noticed = true;
                        notice(holder);
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Io {
                        path: self.path.clone(),
                        source: e,
                    });
                }
            }
        }
    }

    /// The exclusive lock if nobody holds the log now.
    pub(crate) fn try_exclusive(&self) -> Result<Option<Held>, StoreError> {
        let file = self.open()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Held {
                file,
                path: self.path.clone(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Io {
                path: self.path.clone(),
                source: e,
            }),
        }
    }
}

impl Held {
    /// Appends `touches` in one write (`O_APPEND`: concurrent appenders never interleave
    /// within it); returns the log's size after it.
    pub(crate) fn append(&self, touches: &[Touch]) -> Result<u64, StoreError> {
        let mut bytes = Vec::with_capacity(touches.len() * 64);
        for touch in touches {
            touch.encode_into(&mut bytes);
        }
        (&self.file)
            .write_all(&bytes)
            .map_err(StoreError::io(&self.path))?;
        self.size()
    }

    /// The log's size in bytes.
    pub(crate) fn size(&self) -> Result<u64, StoreError> {
        Ok(self
            .file
            .metadata()
            .map_err(StoreError::io(&self.path))?
            .len())
    }

    /// Applies every record to `index` and empties the log. Hold it exclusive.
    pub(crate) fn merge_into(&self, index: &Index) -> Result<usize, StoreError> {
        let mut bytes = Vec::new();
        let mut file = &self.file;
        std::io::Seek::seek(&mut file, io::SeekFrom::Start(0))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(StoreError::io(&self.path))?;
        if bytes.is_empty() {
            return Ok(0);
        }
        let (touches, _) = parse(&bytes);
        apply(index, &touches)?;
        self.file.set_len(0).map_err(StoreError::io(&self.path))?;
        Ok(touches.len())
    }
}

/// Writes `touches` into the index in one batch (without fsync: they are last-used marks):
/// a time only ever moves forward, and a record gone meanwhile stays gone.
pub(crate) fn apply(index: &Index, touches: &[Touch]) -> Result<(), StoreError> {
    let mut blobs: HashMap<[u8; 32], u64> = HashMap::new();
    let mut caches: HashMap<[u8; 32], u64> = HashMap::new();
    let mut images: HashMap<&str, u64> = HashMap::new();
    let mut batch = IndexBatch::default();
    for touch in touches {
        match touch {
            Touch::Blob { key, ms } => max_into(&mut blobs, *key, *ms),
            Touch::Cache { key, ms } => max_into(&mut caches, *key, *ms),
            Touch::Image { name, ms } => max_into(&mut images, name.as_str(), *ms),
            Touch::Count { counter, delta } => batch.count(counter, *delta),
        }
    }
    for (key, ms) in blobs {
        let Some(value) = index.get(index::BLOBS, &key)? else {
            continue;
        };
        // A record that does not decode is fsck's business; a touch leaves it alone.
        if let Ok(mut info) = BlobInfo::decode(&key, &value)
            && to_ms(info.last_used) < ms
        {
            info.last_used = from_ms(ms);
            batch.put(index::BLOBS, key, info.encode());
        }
    }
    for (key, ms) in caches {
        let Some(value) = index.get(index::CACHE, &key)? else {
            continue;
        };
        if let Ok(mut record) = CacheRecord::decode(&key, &value)
            && to_ms(record.last_used) < ms
        {
            record.last_used = from_ms(ms);
            batch.put(index::CACHE, key, record.encode());
        }
    }
    for (name, ms) in images {
        let Some(value) = index.get(index::IMAGES, name.as_bytes())? else {
            continue;
        };
        if let Ok(mut record) = ImageRecord::decode(name.as_bytes(), &value)
            && to_ms(record.updated) < ms
        {
            record.updated = from_ms(ms);
            batch.put(index::IMAGES, name.as_bytes(), record.encode());
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    index.write_relaxed(batch)
}

fn max_into<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, ms: u64) {
    let slot = map.entry(key).or_insert(ms);
    *slot = (*slot).max(ms);
}

#[cfg(test)]
#[path = "touchlog_tests.rs"]
mod tests;
