//! ADD's extraction of local archives: a source file that is a tar archive (plain, gzip,
//! bzip2, xz or zstd) is extracted into the destination directory, as Docker does; any
//! other file, including a compressed file that does not hold a tar, is copied as is.
//!
//! Extraction goes through `lamina-layer`'s confined unpacker (no entry lands outside the
//! destination; a `..` entry is refused) without whiteout processing: `.wh.` names in an
//! archive are ordinary files. Entries keep the archive's modes, owners and mtimes; the
//! layer made from them is as deterministic as any other.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use lamina_layer::{LayerError, UnpackOptions, Unpacker};

/// The compression an archive candidate is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Codec {
    fn sniff(magic: &[u8]) -> Codec {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else if magic.starts_with(b"BZh") {
            Codec::Bzip2
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Codec::Xz
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Codec::Zstd
        } else {
            Codec::Plain
        }
    }

    fn reader(self, file: File) -> io::Result<Box<dyn Read>> {
        let file = BufReader::new(file);
        Ok(match self {
            Codec::Plain => Box::new(file),
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
            Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
            Codec::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(file)),
            Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        })
    }
}

/// The tar stream of `path` when it is a tar archive (its first header is valid once
/// decompressed), or `None` for any other file.
pub(super) fn open_tar(path: &Path) -> io::Result<Option<Box<dyn Read>>> {
    let mut magic = Vec::with_capacity(6);
    File::open(path)?.take(6).read_to_end(&mut magic)?;
    let mut stream = Codec::sniff(&magic).reader(File::open(path)?)?;
    let mut head = Vec::with_capacity(512);
    // A stream that does not decompress is not an archive: it is copied as is.
    if stream.by_ref().take(512).read_to_end(&mut head).is_err() || !is_tar_header(&head) {
        return Ok(None);
    }
    Ok(Some(Box::new(io::Cursor::new(head).chain(stream))))
}

/// A tar header block: 512 bytes whose checksum field matches their sum (the checksum
/// field counted as spaces), as GNU tar and Go's archive/tar tell a tar.
fn is_tar_header(block: &[u8]) -> bool {
    let Some(field) = block.get(148..156) else {
        return false;
    };
    if block.len() < 512 || block.iter().all(|b| *b == 0) {
        return false;
    }
    let digits = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit);
    let mut recorded = 0u64;
    let mut any = false;
    for d in digits {
        if d > b'7' {
            return false;
        }
        recorded = recorded * 8 + u64::from(d - b'0');
        any = true;
    }
    let sum: u64 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    any && recorded == sum
}

/// Extracts the tar stream `tar` into the directory `dest` (created if missing). Errors
/// name the archive by `shown` and the entry at fault.
pub(super) fn extract(tar: Box<dyn Read>, dest: &Path, shown: &str) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let unpacker = Unpacker::new(UnpackOptions::default().whiteouts(false));
    match unpacker.unpack(tar, dest) {
        Ok(_) => Ok(()),
        Err(LayerError::UnsafePath { entry, reason }) => Err(format!(
            "archive {shown} has an entry {entry:?} that points outside the destination \
             ({reason}); nothing was stored: fix the archive"
        )),
        Err(e) => Err(format!("cannot extract archive {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o640);
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn tars_are_told_through_every_compression() {
        let dir = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("a/b.txt", b"hello")]);
        let gzip = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let bzip = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        let text_gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&[b'x'; 600]).unwrap();
            e.finish().unwrap()
        };
        let cases: [(&str, &[u8], bool); 8] = [
            ("a.tar", &tar, true),
            ("a.tgz", &gzip, true),
            ("a.tbz", &bzip, true),
            ("a.txz", &xz, true),
            ("a.tzst", &zst, true),
            ("text.gz", &text_gz, false),
            ("broken.gz", &gzip[..12], false),
            ("plain.txt", b"just text", false),
        ];
        for (name, bytes, is_tar) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let found = open_tar(&path).unwrap();
            assert_eq!(found.is_some(), is_tar, "{name}");
            if let Some(mut stream) = found {
                let mut all = Vec::new();
                stream.read_to_end(&mut all).unwrap();
                assert_eq!(all, tar, "{name} reads back the whole tar");
            }
        }
    }

    #[test]
    fn extraction_refuses_escaping_entries_and_keeps_whiteout_names() {
        let dir = tempfile::tempdir().unwrap();
        let good = tar_of(&[("x/.wh.y", b"1"), ("x/z", b"2")]);
        extract(
            Box::new(io::Cursor::new(good)),
            &dir.path().join("d"),
            "g.tar",
        )
        .unwrap();
        assert!(dir.path().join("d/x/.wh.y").is_file());
        assert_eq!(std::fs::read(dir.path().join("d/x/z")).unwrap(), b"2");
        // tar::Header::set_path refuses `..`, so the name is written into the header.
        let mut evil = tar_of(&[("aaaaaaaaaescape", b"bad")]);
        evil[..9].copy_from_slice(b"../../../");
        let mut h = tar::Header::from_byte_slice(&evil[..512]).clone();
        h.set_cksum();
        evil[..512].copy_from_slice(h.as_bytes());
        let err = extract(
            Box::new(io::Cursor::new(evil)),
            &dir.path().join("e"),
            "evil.tar",
        )
        .unwrap_err();
        assert!(
            err.contains("evil.tar") && err.contains("../../../escape"),
            "{err}"
        );
        assert!(!dir.path().join("escape").exists());
    }
}
