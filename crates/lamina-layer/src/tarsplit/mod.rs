//! Tar-split: a layer's tar as its non-content bytes plus references to file contents in the
//! layer's unpacked tree, from which the exact tar is reassembled.
//!
//! Docker keeps a layer as its unpacked tree and a tar-split (the same idea, in JSON) and
//! reassembles the tar on save and push; Lamina's store does the same for layers whose tree
//! exists (docs/format.md, "What a stored layer is"). [`TarSplitWriter`] reads a tar stream
//! as it is written or read (a [`Write`] sink beside the layer writer's hashers, or fed by
//! the unpacker's reader) and records it; [`TarSplitReader`] gives the tar back, reading
//! file contents from the tree.
//!
//! The format (zstd-compressed as a whole, at level 1; little state, so it streams both ways):
//!
//! ```text
//! "lamina-tar-split v1\n"
//! then records, in tar order:
//!   'L' varint n, n bytes              literal bytes of the tar (headers, PAX and GNU
//!                                      records, padding, the trailer, data of anything
//!                                      that is not a referenced regular file)
//!   'F' varint n, n bytes, varint size the next `size` bytes are the content of the file
//!                                      at that path of the tree (components joined by `/`,
//!                                      no leading `/`, no `.` or `..`)
//!   'E' varint total                   end; `total` is the tar's length
//! ```
//!
//! A regular file's content is referenced only when the tree is certain to hold exactly it:
//! the entry's path appears once in the tar, no entry before it made one of its parents a
//! non-directory, it is no whiteout marker and its name does not end in `/`. A tar breaking
//! these rules (the same path twice, a file replaced by a later entry, a path through a
//! symlink of the same tar) cannot be reassembled from the tree: the writer reports it and
//! the caller keeps the tar itself. Owners, modes and times come from the recorded headers,
//! never from the tree, so a tree whose owners are mapped (rootless) reassembles the same tar.

mod prefetch;
mod reader;

use std::collections::HashSet;
use std::io::{self, Write};

pub use reader::{TarCheck, TarSplitReader};

/// First bytes of every (decompressed) tar-split.
pub(crate) const MAGIC: &[u8] = b"lamina-tar-split v1\n";
pub(crate) const LITERAL: u8 = b'L';
pub(crate) const FILE: u8 = b'F';
pub(crate) const END: u8 = b'E';

/// Literal bytes are buffered up to this much before a record is written.
const LITERAL_FLUSH: usize = 1 << 20;
/// PAX and GNU long-name records larger than this are not parsed (the tar is not split).
const META_LIMIT: u64 = 16 << 20;
const BLOCK: u64 = 512;
const TAR_SPLIT_ZSTD_LEVEL: i32 = 1;

/// What [`TarSplitWriter::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TarSplitSummary {
    /// Bytes of tar recorded.
    pub tar_size: u64,
    /// Regular files whose content is referenced.
    pub files: u64,
    /// Bytes of tar those references stand for.
    pub referenced: u64,
}

/// Why a tar cannot be reassembled from its tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotSplittable(pub String);

#[derive(Debug)]
enum State {
    /// Filling a 512-byte header block.
    Header,
    /// The data of a PAX (`x`, `g`) or GNU long-name (`L`, `K`) record, parsed when complete.
    Meta { kind: u8, left: u64 },
    /// An entry's data: referenced (`literal` false) or copied; `pad` zeros follow.
    Data { left: u64, literal: bool, pad: u64 },
    /// Zero padding after data.
    Padding { left: u64 },
}

/// Records a tar stream written into it as a tar-split, compressed into `out`.
///
/// Feeding it never fails because of the tar's content: what cannot be split is remembered
/// and reported by [`TarSplitWriter::finish`]; only errors of `out` fail a write.
pub struct TarSplitWriter<W: Write> {
    out: zstd::stream::write::Encoder<'static, W>,
    state: State,
    block: Vec<u8>,
    literal: Vec<u8>,
    meta: Vec<u8>,
    /// Overrides for the next entry: its path (PAX `path`, GNU `L`) and size (PAX `size`).
    next_path: Option<Vec<u8>>,
    next_size: Option<u64>,
    seen: HashSet<Vec<u8>>,
    non_dirs: HashSet<Vec<u8>>,
    problem: Option<String>,
    total: u64,
    summary: TarSplitSummary,
}

impl<W: Write> TarSplitWriter<W> {
    /// A writer recording into `out`.
    pub fn new(out: W) -> io::Result<Self> {
        // Level 1: a tar-split is mostly tar headers, which it packs within ~3% of level 3
        // (measured on 4 and 7 MB tar-splits of documentation and headers), while level 3's
        // tables (768 KiB, cleared for every stream) cost ~0.3 ms per layer written.
        let mut out = zstd::stream::write::Encoder::new(out, TAR_SPLIT_ZSTD_LEVEL)?;
        out.write_all(MAGIC)?;
        Ok(TarSplitWriter {
            out,
            state: State::Header,
            block: Vec::with_capacity(BLOCK as usize),
            literal: Vec::new(),
            meta: Vec::new(),
            next_path: None,
            next_size: None,
            seen: HashSet::new(),
            non_dirs: HashSet::new(),
            problem: None,
            total: 0,
            summary: TarSplitSummary {
                tar_size: 0,
                files: 0,
                referenced: 0,
            },
        })
    }

    /// Ends the record: `out` and what was recorded, or why the tar cannot be reassembled
    /// from its tree (the caller then discards `out`'s bytes and keeps the tar).
    pub fn finish(mut self) -> io::Result<Result<(W, TarSplitSummary), NotSplittable>> {
        let in_entry = matches!(self.state, State::Meta { .. } | State::Data { .. });
        if in_entry {
            self.fail("the tar ends inside an entry".to_owned());
        }
        // A stream ending inside a header block is replayed as it is (padding and record
        // data were recorded as they came).
        let rest = std::mem::take(&mut self.block);
        self.push_literal(&rest)?;
        if let Some(problem) = self.problem.take() {
            return Ok(Err(NotSplittable(problem)));
        }
        self.flush_literal()?;
        self.out.write_all(&[END])?;
        write_varint(&mut self.out, self.total)?;
        let out = self.out.finish()?;
        self.summary.tar_size = self.total;
        Ok(Ok((out, self.summary)))
    }

    fn fail(&mut self, problem: String) {
        self.problem.get_or_insert(problem);
    }

    fn push_literal(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.literal.extend_from_slice(bytes);
        if self.literal.len() >= LITERAL_FLUSH {
            self.flush_literal()?;
        }
        Ok(())
    }

    fn flush_literal(&mut self) -> io::Result<()> {
        if self.literal.is_empty() {
            return Ok(());
        }
        self.out.write_all(&[LITERAL])?;
        write_varint(&mut self.out, self.literal.len() as u64)?;
        self.out.write_all(&self.literal)?;
        self.literal.clear();
        Ok(())
    }

    /// Data of `size` bytes, then its padding.
    fn data(size: u64, literal: bool) -> State {
        match size {
            0 => State::Header,
            _ => State::Data {
                left: size,
                literal,
                pad: (BLOCK - size % BLOCK) % BLOCK,
            },
        }
    }

    /// Consumes as much of `buf` as the current state takes; returns how much.
    fn step(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.state {
            State::Header => {
                let n = (BLOCK as usize - self.block.len()).min(buf.len());
                self.block.extend_from_slice(&buf[..n]);
                if self.block.len() == BLOCK as usize {
                    let block = std::mem::take(&mut self.block);
                    self.push_literal(&block)?;
                    self.header(&block)?;
                    self.block = block;
                    self.block.clear();
                }
                Ok(n)
            }
            State::Meta { kind, left } => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                self.meta.extend_from_slice(&buf[..n]);
                self.push_literal(&buf[..n])?;
                let left = left - n as u64;
                if left == 0 {
                    let meta = std::mem::take(&mut self.meta);
                    self.apply_meta(kind, &meta);
                    self.state = padding_after(meta.len() as u64);
                } else {
                    self.state = State::Meta { kind, left };
                }
                Ok(n)
            }
            State::Data { left, literal, pad } => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                if literal {
                    self.push_literal(&buf[..n])?;
                }
                let left = left - n as u64;
                self.state = match (left, pad) {
                    (0, 0) => State::Header,
                    (0, pad) => State::Padding { left: pad },
                    (left, pad) => State::Data { left, literal, pad },
                };
                Ok(n)
            }
            State::Padding { left } => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                self.push_literal(&buf[..n])?;
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Header
                } else {
                    State::Padding { left }
                };
                Ok(n)
            }
        }
    }

    /// Handles one complete header block (already recorded as literal bytes).
    fn header(&mut self, block: &[u8]) -> io::Result<()> {
        if block.iter().all(|&b| b == 0) {
            return Ok(()); // end-of-archive blocks, and anything after them, stay literal
        }
        let kind = block[156];
        let Some(header_size) = parse_number(&block[124..136]) else {
            self.fail("an entry has an unreadable size field".into());
            self.state = Self::data(u64::MAX, true);
            return Ok(());
        };
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                self.state = if header_size == 0 {
                    State::Header
                } else if header_size > META_LIMIT {
                    self.fail("an extended header is too large to split".into());
                    Self::data(header_size, true)
                } else {
                    State::Meta {
                        kind,
                        left: header_size,
                    }
                };
                return Ok(());
            }
            _ => {}
        }
        let size = self.next_size.take().unwrap_or(header_size);
        let raw = self.next_path.take().unwrap_or_else(|| header_name(block));
        let is_dir = kind == b'5' || (matches!(kind, b'0' | 0 | b'7') && raw.ends_with(b"/"));
        let regular = matches!(kind, b'0' | 0 | b'7') && !is_dir;
        let path = self.check_path(&raw, is_dir);
        let whiteout = path
            .as_deref()
            .map(base_name)
            .is_some_and(|b| b.starts_with(b".wh."));
        if regular
            && size > 0
            && !whiteout
            && self.problem.is_none()
            && let Some(path) = path
        {
            self.flush_literal()?;
            self.out.write_all(&[FILE])?;
            write_varint(&mut self.out, path.len() as u64)?;
            self.out.write_all(&path)?;
            write_varint(&mut self.out, size)?;
            self.summary.files += 1;
            self.summary.referenced += size;
            self.state = Self::data(size, false);
            return Ok(());
        }
        self.state = Self::data(size, true);
        // Data of anything else (GNU sparse maps, vendor types) is recorded as it is.
        Ok(())
    }

    /// The entry's path in the tree, after recording it; `None` (and a problem noted) when
    /// the tree cannot be trusted to hold what this entry says.
    fn check_path(&mut self, raw: &[u8], is_dir: bool) -> Option<Vec<u8>> {
        let comps: Vec<&[u8]> = raw
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if comps.is_empty() {
            return None; // the root itself
        }
        if comps.contains(&&b".."[..]) {
            self.fail(format!("entry {} has a `..` component", lossy(raw)));
            return None;
        }
        let path = comps.join(&b'/');
        let mut prefix = Vec::with_capacity(path.len());
        for c in &comps[..comps.len() - 1] {
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(c);
            if self.non_dirs.contains(&prefix) {
                self.fail(format!(
                    "entry {} lies below {}, which an earlier entry made a non-directory",
                    lossy(raw),
                    lossy(&prefix)
                ));
                return None;
            }
        }
        // A directory named again changes no file; anything else named twice does.
        let again = !self.seen.insert(path.clone());
        if again && (!is_dir || self.non_dirs.contains(&path)) {
            self.fail(format!("the path {} appears twice", lossy(&path)));
            return None;
        }
        if !is_dir {
            self.non_dirs.insert(path.clone());
        }
        Some(path)
    }

    fn apply_meta(&mut self, kind: u8, data: &[u8]) {
        match kind {
            b'L' => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                self.next_path = Some(data[..end].to_vec());
            }
            b'x' => {
                for (key, value) in pax_records(data) {
                    match key {
                        b"path" => self.next_path = Some(value.to_vec()),
                        b"size" => {
                            match std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                                Some(size) => self.next_size = Some(size),
                                None => self.fail("a PAX size record is not a number".into()),
                            }
                        }
                        _ => {}
                    }
                }
            }
            b'g' if pax_records(data).any(|(k, _)| k == b"path" || k == b"size") => {
                self.fail("a global PAX header sets path or size".into());
            }
            _ => {} // `K`: link names do not matter here
        }
    }
}

impl<W: Write> std::fmt::Debug for TarSplitWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSplitWriter")
            .field("total", &self.total)
            .field("summary", &self.summary)
            .field("problem", &self.problem)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Write for TarSplitWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            done += self.step(&buf[done..])?;
        }
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn padding_after(len: u64) -> State {
    match len % BLOCK {
        0 => State::Header,
        r => State::Padding { left: BLOCK - r },
    }
}

/// The ustar name (with the POSIX `prefix` when the block is POSIX ustar).
fn header_name(block: &[u8]) -> Vec<u8> {
    let field = |b: &[u8]| b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())].to_vec();
    let name = field(&block[..100]);
    if &block[257..263] == b"ustar\0" {
        let prefix = field(&block[345..500]);
        if !prefix.is_empty() {
            return [prefix, b"/".to_vec(), name].concat();
        }
    }
    name
}

/// A numeric header field: octal (NUL or space terminated) or GNU base-256.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&c| c == b' ')
        .take_while(|&c| c != 0 && c != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `key=value` pairs of a PAX extended header; stops at the first malformed record.
fn pax_records(mut data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        let space = data.iter().position(|&c| c == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() {
            return None;
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record.iter().position(|&c| c == b'=')?;
        Some((&record[..eq], &record[eq + 1..]))
    })
}

fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&c| c == b'/').next().unwrap_or(path)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn write_varint(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out.write_all(&buf[..n])
}

#[cfg(test)]
mod tests;
