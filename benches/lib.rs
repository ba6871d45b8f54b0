//! Shared helpers for Lamina's benchmarks: deterministic input trees to hash.
//!
//! [`generate_tree`] writes a tree described by a [`TreeSpec`]: many small files in nested
//! directories (the shape of a source checkout) and a few large ones (datasets, model
//! weights). Content is pseudo-random from a fixed seed, so every run and every machine gets
//! the same bytes; by default it does not compress or deduplicate, and with
//! [`TreeSpec::compressible`] it is text-like (gzip shrinks it about as much as the files of
//! a typical image).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// What [`generate_tree`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSpec {
    /// Number of small files, under `small/`.
    pub small_files: usize,
    /// Smallest small-file size in bytes.
    pub small_min: usize,
    /// Largest small-file size in bytes.
    pub small_max: usize,
    /// Small files per leaf directory; ten leaf directories share a parent.
    pub files_per_dir: usize,
    /// Number of large files, under `large/`.
    pub large_files: usize,
    /// Size of each large file in bytes.
    pub large_size: u64,
    /// Seed of the content generator.
    pub seed: u64,
    /// Text-like content (lines of words from a generated vocabulary, with numbers) instead
    /// of random bytes.
    pub compressible: bool,
}

impl TreeSpec {
    /// 5,000 files of 1–16 KiB in nested directories, nothing large.
    pub fn small_files() -> Self {
        TreeSpec {
            small_files: 5_000,
            small_min: 1024,
            small_max: 16 * 1024,
            files_per_dir: 50,
            large_files: 0,
            large_size: 0,
            seed: 0x1a31_4a5e_ed00_0001,
            compressible: false,
        }
    }

    /// 4 files of 64 MiB, nothing small.
    pub fn large_files() -> Self {
        TreeSpec {
            small_files: 0,
            large_files: 4,
            large_size: 64 << 20,
            ..TreeSpec::small_files()
        }
    }

    /// Both: the small-files tree plus the large files.
    pub fn mixed() -> Self {
        TreeSpec {
            large_files: 4,
            large_size: 64 << 20,
            ..TreeSpec::small_files()
        }
    }

    /// About 500 MB for layer benchmarks: 10,000 files of 1–16 KiB plus 6 files of 64 MiB.
    pub fn layer() -> Self {
        TreeSpec {
            small_files: 10_000,
            large_files: 6,
            large_size: 64 << 20,
            ..TreeSpec::small_files()
        }
    }
}

impl Default for TreeSpec {
    fn default() -> Self {
        TreeSpec::mixed()
    }
}

/// What [`generate_tree`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    /// Files written.
    pub files: usize,
    /// Total bytes of file content.
    pub bytes: u64,
}

/// Writes the tree described by `spec` into `dir` (created if needed; existing files with
/// the same names are overwritten).
pub fn generate_tree(dir: &Path, spec: &TreeSpec) -> io::Result<TreeStats> {
    let mut rng = XorShift::new(spec.seed);
    let vocabulary = spec.compressible.then(|| Vocabulary::new(&mut rng));
    let vocabulary = vocabulary.as_ref();
    let mut stats = TreeStats::default();
    let per_dir = spec.files_per_dir.max(1);
    let span = spec.small_max.saturating_sub(spec.small_min) as u64 + 1;
    for i in 0..spec.small_files {
        let leaf = i / per_dir;
        let sub = dir.join(format!("small/g{:03}/d{}", leaf / 10, leaf % 10));
        if i % per_dir == 0 {
            fs::create_dir_all(&sub)?;
        }
        let size = spec.small_min as u64 + rng.next() % span;
        write_content(
            &sub.join(format!("f{i:05}.dat")),
            size,
            &mut rng,
            vocabulary,
        )?;
        stats.files += 1;
        stats.bytes += size;
    }
    if spec.large_files > 0 {
        fs::create_dir_all(dir.join("large"))?;
    }
    for k in 0..spec.large_files {
        write_content(
            &dir.join(format!("large/big{k}.dat")),
            spec.large_size,
            &mut rng,
            vocabulary,
        )?;
        stats.files += 1;
        stats.bytes += spec.large_size;
    }
    Ok(stats)
}

fn write_content(
    path: &Path,
    size: u64,
    rng: &mut XorShift,
    vocabulary: Option<&Vocabulary>,
) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        match vocabulary {
            Some(words) => words.fill(&mut buf[..n], rng),
            None => rng.fill(&mut buf[..n]),
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()
}

/// Words for text-like content: 1,024 random lowercase words of 2–11 letters, drawn with a
/// skew towards the first ones (as in real text and code), in lines with punctuation and
/// the odd random number. gzip -6 shrinks it about 3:1.
#[derive(Debug)]
struct Vocabulary(Vec<Vec<u8>>);

impl Vocabulary {
    fn new(rng: &mut XorShift) -> Self {
        let words = (0..1024)
            .map(|_| {
                let len = 2 + (rng.next() % 10) as usize;
                (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
            })
            .collect();
        Vocabulary(words)
    }

    fn fill(&self, buf: &mut [u8], rng: &mut XorShift) {
        let mut at = 0;
        while at < buf.len() {
            let r = rng.next();
            // The product of two uniform picks favours small indexes.
            let index = ((r & 0x3ff) * ((r >> 10) & 0x3ff)) >> 10;
            let mut piece: &[u8] = &self.0[index as usize];
            let number;
            if (r >> 20).is_multiple_of(16) {
                number = format!("{:x}", r >> 32).into_bytes();
                piece = &number;
            }
            let separator: &[u8] = match (r >> 24) % 12 {
                0 => b"\n",
                1 => b", ",
                2 => b"(",
                3 => b") ",
                _ => b" ",
            };
            for part in [piece, separator] {
                let n = part.len().min(buf.len() - at);
                buf[at..at + n].copy_from_slice(&part[..n]);
                at += n;
            }
        }
    }
}

/// xorshift64*: tiny, fast and plenty random for benchmark content.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_spec() -> TreeSpec {
        TreeSpec {
            small_files: 23,
            small_min: 10,
            small_max: 100,
            files_per_dir: 5,
            large_files: 2,
            large_size: 70_001,
            seed: 7,
            compressible: false,
        }
    }

    #[test]
    fn trees_are_deterministic_and_sized_as_asked() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let stats = generate_tree(a.path(), &small_spec()).expect("generate");
        assert_eq!(
            stats,
            generate_tree(b.path(), &small_spec()).expect("generate")
        );
        assert_eq!(stats.files, 25);
        let big = fs::read(a.path().join("large/big1.dat")).expect("read");
        assert_eq!(big.len(), 70_001);
        assert_eq!(
            big,
            fs::read(b.path().join("large/big1.dat")).expect("read")
        );
        let small = fs::read(a.path().join("small/g000/d4/f00022.dat")).expect("read");
        assert!((10..=100).contains(&small.len()), "{}", small.len());
        let mut total = 0;
        for entry in fs::read_dir(a.path().join("small/g000")).expect("ls") {
            for file in fs::read_dir(entry.expect("entry").path()).expect("ls") {
                total += fs::metadata(file.expect("file").path())
                    .expect("stat")
                    .len();
            }
        }
        assert_eq!(total + 2 * 70_001, stats.bytes);
    }

    #[test]
    fn seeds_change_content() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        generate_tree(a.path(), &small_spec()).expect("generate");
        generate_tree(
            b.path(),
            &TreeSpec {
                seed: 8,
                ..small_spec()
            },
        )
        .expect("generate");
        assert_ne!(
            fs::read(a.path().join("large/big0.dat")).expect("read"),
            fs::read(b.path().join("large/big0.dat")).expect("read")
        );
    }
}
