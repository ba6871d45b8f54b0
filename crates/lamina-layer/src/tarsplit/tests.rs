use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use super::*;
use crate::{Compression, LayerError, LayerOptions, LayerWriter, UnpackOptions, Unpacker};
use lamina_types::Digest;

/// Records `tar` (fed in pieces of `piece` bytes) and returns the tar-split.
fn record(tar: &[u8], piece: usize) -> Result<(Vec<u8>, TarSplitSummary), NotSplittable> {
    let mut w = TarSplitWriter::new(Vec::new()).unwrap();
    for chunk in tar.chunks(piece.max(1)) {
        w.write_all(chunk).unwrap();
    }
    w.finish().unwrap()
}

fn reassemble(split: &[u8], tree: &Path, tar: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let expected = (Digest::sha256_of(tar), tar.len() as u64);
    let mut r = TarSplitReader::new(split, tree, Some(expected)).unwrap();
    let mut out = Vec::new();
    if let Err(e) = r.read_to_end(&mut out) {
        // A failed reader never ends cleanly afterwards.
        assert!(
            r.read(&mut [0u8; 16]).is_err(),
            "a read after {e} ended cleanly"
        );
        return Err(e);
    }
    Ok(out)
}

fn plain_writer() -> LayerWriter {
    LayerWriter::new(
        LayerOptions::default()
            .compression(Compression::None)
            .mtime_clamp(Some(0)),
    )
}

/// The plain tar of `tree` and its tar-split, written in one pass.
pub(super) fn tar_and_split(tree: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut tar = Vec::new();
    let mut split = TarSplitWriter::new(Vec::new()).unwrap();
    plain_writer()
        .write_tree_with_copy(tree, &mut tar, &mut split)
        .unwrap();
    let (split, _) = split.finish().unwrap().unwrap();
    (tar, split)
}

pub(super) fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("etc/deep").join("d".repeat(120))).unwrap();
    std::fs::write(p.join("etc/motd"), "hello\n").unwrap();
    std::fs::write(p.join("etc/empty"), "").unwrap();
    let long = p
        .join("etc/deep")
        .join("d".repeat(120))
        .join("f".repeat(90));
    std::fs::write(&long, vec![7u8; 1000]).unwrap();
    let big: Vec<u8> = (0..3_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(p.join("big.bin"), &big).unwrap();
    std::fs::hard_link(p.join("etc/motd"), p.join("motd-link")).unwrap();
    std::os::unix::fs::symlink("etc/motd", p.join("motd-sym")).unwrap();
    dir
}

#[test]
fn our_writer_tar_round_trips_through_its_tree() {
    let tree = sample_tree();
    let mut tar = Vec::new();
    let mut split = TarSplitWriter::new(Vec::new()).unwrap();
    let info = plain_writer()
        .write_tree_with_copy(tree.path(), &mut tar, &mut split)
        .unwrap();
    let (split, summary) = split.finish().unwrap().unwrap();
    assert_eq!(summary.tar_size, tar.len() as u64);
    assert_eq!(info.diff_id, Digest::sha256_of(&tar));
    // motd, the long-named file and big.bin; the hard link and the empty file have no data.
    assert_eq!(summary.files, 3);
    assert_eq!(summary.referenced, 6 + 1000 + 3_000_003);
    assert!(split.len() < 4096, "tar-split is {} bytes", split.len());
    assert_eq!(reassemble(&split, tree.path(), &tar).unwrap(), tar);
    // Fed a byte at a time, the record is the same.
    assert_eq!(record(&tar, 1).unwrap().0, split);
    assert_eq!(record(&tar, 511).unwrap().0, split);
}

#[test]
fn a_compressed_layer_still_gives_the_plain_tar() {
    let tree = sample_tree();
    let mut blob = Vec::new();
    let mut split = TarSplitWriter::new(Vec::new()).unwrap();
    let writer = LayerWriter::new(LayerOptions::default().mtime_clamp(Some(0)));
    let info = writer
        .write_tree_with_copy(tree.path(), &mut blob, &mut split)
        .unwrap();
    let (split, _) = split.finish().unwrap().unwrap();
    let expected = (info.diff_id, info.uncompressed_size);
    let mut r = TarSplitReader::new(&split[..], tree.path(), Some(expected)).unwrap();
    let mut tar = Vec::new();
    r.read_to_end(&mut tar).unwrap();
    let out = tempfile::tempdir().unwrap();
    let stats = Unpacker::new(UnpackOptions::default().same_owner(false))
        .unpack(&blob[..], out.path())
        .unwrap();
    assert_eq!(stats.diff_id, Digest::sha256_of(&tar));
}

fn gnu_tar(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("GNU tar is needed by this test (Debian package `tar`)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A tree as another tool would pack it: whiteouts, an opaque marker, hard links, symlinks,
/// long names and a large file.
fn foreign_tree() -> tempfile::TempDir {
    let dir = sample_tree();
    let p = dir.path();
    std::fs::create_dir(p.join("gone")).unwrap();
    std::fs::write(p.join("gone/.wh.removed"), "").unwrap();
    std::fs::write(p.join("gone/.wh..wh..opq"), "").unwrap();
    std::fs::write(p.join("gone/kept"), "kept").unwrap();
    std::fs::hard_link(p.join("big.bin"), p.join("etc/big-again")).unwrap();
    dir
}

#[test]
fn gnu_tar_layers_round_trip_through_their_unpacked_tree() {
    let src = foreign_tree();
    for format in [
        "--format=pax",
        "--format=gnu",
        "--format=posix",
        "--format=ustar",
    ] {
        let mut args = vec![format, "--numeric-owner", "--owner=1234", "--group=5678"];
        if format == "--format=ustar" {
            // ustar cannot hold the 213-byte name: pack only what it can.
            args.extend(["-cf", "-", "./etc/motd", "big.bin", "gone"]);
        } else {
            args.extend(["--xattrs", "-cf", "-", "."]);
        }
        let tar = gnu_tar(&args, src.path());
        let unpacked = tempfile::tempdir().unwrap();
        let mut split = TarSplitWriter::new(Vec::new()).unwrap();
        let reader = TeeReader(&tar[..], &mut split);
        let stats = Unpacker::new(UnpackOptions::default().same_owner(false))
            .unpack(reader, unpacked.path())
            .unwrap();
        assert_eq!(stats.diff_id, Digest::sha256_of(&tar), "{format}");
        let (split, summary) = split
            .finish()
            .unwrap()
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert!(summary.files >= 3, "{format}: {summary:?}");
        let back = reassemble(&split, unpacked.path(), &tar).unwrap();
        assert!(back == tar, "{format}: reassembled tar differs");
    }
}

struct TeeReader<'a, R, W>(R, &'a mut W);

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append(&h, data).unwrap();
}

#[test]
fn tars_a_tree_cannot_reproduce_are_refused() {
    let mut twice = tar::Builder::new(Vec::new());
    entry(&mut twice, "a", tar::EntryType::Regular, b"first");
    entry(&mut twice, "./a", tar::EntryType::Regular, b"second");
    let err = record(&twice.into_inner().unwrap(), 4096).unwrap_err();
    assert!(err.0.contains("appears twice"), "{err}");

    let mut below_file = tar::Builder::new(Vec::new());
    entry(&mut below_file, "a", tar::EntryType::Regular, b"file");
    entry(&mut below_file, "a/b", tar::EntryType::Regular, b"below");
    let err = record(&below_file.into_inner().unwrap(), 4096).unwrap_err();
    assert!(err.0.contains("non-directory"), "{err}");

    let mut through_link = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("l").unwrap();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_link_name("d").unwrap();
    h.set_size(0);
    h.set_cksum();
    through_link.append(&h, &b""[..]).unwrap();
    entry(&mut through_link, "l/f", tar::EntryType::Regular, b"x");
    assert!(record(&through_link.into_inner().unwrap(), 4096).is_err());

    let mut cut = tar::Builder::new(Vec::new());
    entry(&mut cut, "f", tar::EntryType::Regular, &[1u8; 2000]);
    let cut = cut.into_inner().unwrap();
    assert!(
        record(&cut[..1000], 4096)
            .unwrap_err()
            .0
            .contains("ends inside")
    );
}

#[test]
fn a_directory_named_twice_is_fine() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("d")).unwrap();
    std::fs::write(tree.path().join("d/f"), b"in d").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "d/", tar::EntryType::Directory, b"");
    entry(&mut b, "d/f", tar::EntryType::Regular, b"in d");
    entry(&mut b, "./d/", tar::EntryType::Directory, b"");
    let tar = b.into_inner().unwrap();
    let (split, summary) = record(&tar, 7).unwrap();
    assert_eq!(summary.files, 1);
    assert_eq!(reassemble(&split, tree.path(), &tar).unwrap(), tar);
}

#[test]
fn odd_entries_are_kept_literally() {
    // Data on a hard link entry, a directory with data, trailing bytes after the trailer:
    // all replayed from the tar-split.
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("f"), b"content").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "f", tar::EntryType::Regular, b"content");
    entry(&mut b, "dir/", tar::EntryType::Directory, b"dir data");
    entry(
        &mut b,
        ".wh.gone",
        tar::EntryType::Regular,
        b"whiteout with data",
    );
    let mut tar = b.into_inner().unwrap();
    tar.extend_from_slice(b"garbage after the end");
    let (split, summary) = record(&tar, 100).unwrap();
    assert_eq!(summary.files, 1);
    assert_eq!(reassemble(&split, tree.path(), &tar).unwrap(), tar);
}

#[test]
fn a_modified_tree_fails_with_the_tree_named() {
    let tree = sample_tree();
    let (tar, split) = tar_and_split(tree.path());

    // Same size, other bytes: caught by the digest at the end.
    std::fs::write(tree.path().join("etc/motd"), "HELLO\n").unwrap();
    let err = reassemble(&split, tree.path(), &tar).unwrap_err();
    let inner = err.into_inner().unwrap().downcast::<LayerError>().unwrap();
    assert!(matches!(*inner, LayerError::TreeModified { .. }), "{inner}");
    let text = inner.to_string();
    assert!(text.contains(&tree.path().display().to_string()), "{text}");
    assert!(
        text.contains("lamina cache fsck") && !text.contains('\n'),
        "{text}"
    );

    // Another size: caught when the file is opened.
    std::fs::write(tree.path().join("etc/motd"), "hi\n").unwrap();
    let err = reassemble(&split, tree.path(), &tar).unwrap_err();
    assert!(err.to_string().contains("etc/motd is 3 bytes"), "{err}");
    std::fs::remove_file(tree.path().join("big.bin")).unwrap();
    let err = reassemble(&split, tree.path(), &tar).unwrap_err();
    assert!(
        err.to_string().contains("big.bin cannot be opened"),
        "{err}"
    );
}

#[test]
fn checked_by_blake3_through_the_read_ahead_a_modified_tree_still_fails() {
    let tree = sample_tree();
    let (tar, split) = tar_and_split(tree.path());
    // As exports read it: checked against the layer key (the tar's blake3), on its own thread.
    // In whole buffers from the reading thread, read or written straight out.
    let read_as = |split: &[u8], write_to: bool| {
        let expected = (Digest::blake3_of(&tar), tar.len() as u64);
        let mut reader = TarSplitReader::new(
            std::io::Cursor::new(split.to_vec()),
            tree.path(),
            Some(expected),
        )
        .unwrap();
        // The digest checked on a thread of its own (as exports do) when written out, by
        // the reading thread when read.
        let check = write_to.then(|| {
            let check = reader.take_check().unwrap();
            Box::new(check) as Box<dyn crate::StreamCheck>
        });
        let mut ahead = crate::ReadAhead::spawn_checked(reader, check, "test").unwrap();
        let mut out = Vec::new();
        let done = if write_to {
            ahead
                .write_to(&mut out)
                .map(|n| assert_eq!(n, out.len() as u64))
        } else {
            ahead.read_to_end(&mut out).map(drop)
        };
        done.map(|()| out)
    };
    assert!(read_as(&split, false).unwrap() == tar);
    assert!(read_as(&split, true).unwrap() == tar);
    let read = |split: &[u8]| {
        let written = read_as(split, true);
        let read = read_as(split, false);
        assert_eq!(written.is_ok(), read.is_ok(), "both ways tell the same");
        read
    };

    // One byte of the 3 MB file changed, same size: megabytes of the tar have been handed
    // on before the digest at the end tells.
    let big = tree.path().join("big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    bytes[2_000_000] ^= 1;
    std::fs::write(&big, &bytes).unwrap();
    let err = read(&split).unwrap_err();
    let inner = err.into_inner().unwrap().downcast::<LayerError>().unwrap();
    assert!(matches!(*inner, LayerError::TreeModified { .. }), "{inner}");
    let text = inner.to_string();
    assert!(text.contains(&tree.path().display().to_string()), "{text}");
    assert!(
        text.contains(&Digest::blake3_of(&tar).to_string()),
        "{text}"
    );
    assert!(
        text.contains("lamina cache fsck") && !text.contains('\n'),
        "{text}"
    );
}

#[test]
fn a_damaged_tar_split_is_refused() {
    let tree = tempfile::tempdir().unwrap();
    assert!(matches!(
        TarSplitReader::new(&b"not zstd"[..], tree.path(), None),
        Err(LayerError::TarSplit { .. })
    ));
    let mut split = TarSplitWriter::new(Vec::new()).unwrap();
    split.write_all(&[0u8; 1024]).unwrap();
    let (split, _) = split.finish().unwrap().unwrap();
    // Cut short: refused when opened or when read, never read as a shorter tar.
    match TarSplitReader::new(&split[..split.len() - 3], tree.path(), None) {
        Err(LayerError::TarSplit { .. }) => {}
        Ok(mut r) => assert!(r.read_to_end(&mut Vec::new()).is_err()),
        Err(other) => panic!("{other}"),
    }
}

mod generated {
    use super::*;
    use proptest::prelude::*;

    fn trees() -> impl Strategy<Value = Vec<(String, usize, bool)>> {
        proptest::collection::vec(
            ("[a-c]{1,3}(/[a-c]{1,40}){0,3}", 0usize..3000, any::<bool>()),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn written_layers_reassemble_exactly(files in trees()) {
            let tree = tempfile::tempdir().unwrap();
            for (i, (name, size, link)) in files.iter().enumerate() {
                let path = tree.path().join(name);
                // Skip names that clash with an earlier file or directory.
                if path.parent().is_some_and(|p| std::fs::create_dir_all(p).is_err())
                    || path.exists()
                {
                    continue;
                }
                if *link && i > 0 {
                    let _ = std::os::unix::fs::symlink(&files[0].0, &path);
                } else {
                    std::fs::write(&path, vec![(i % 251) as u8; *size]).unwrap();
                }
            }
            let (tar, split) = tar_and_split(tree.path());
            prop_assert_eq!(reassemble(&split, tree.path(), &tar).unwrap(), tar);
        }
    }
}

#[test]
fn a_tree_out_of_the_page_cache_starts_the_prefetching_and_reads_the_same() {
    let tree = sample_tree();
    let (tar, split) = tar_and_split(tree.path());
    let expected = (Digest::blake3_of(&tar), tar.len() as u64);
    let read = || {
        let mut reader =
            TarSplitReader::with_prefetch(split.clone(), tree.path(), Some(expected)).unwrap();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert!(out == tar, "the same tar, prefetched or not");
        reader.prefetch_started()
    };
    // Just written and read: in the page cache, no thread of opens for nothing.
    assert!(!read());
    // Written back and dropped from the page cache (clean pages go at once).
    for name in ["etc/motd", "big.bin"] {
        let file = std::fs::File::open(tree.path().join(name)).unwrap();
        file.sync_all().unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let mut byte = [0u8; 1];
        let bufs = &mut [std::io::IoSliceMut::new(&mut byte)];
        let nowait = rustix::io::preadv2(&file, bufs, 0, rustix::io::ReadWriteFlags::NOWAIT);
        assert_eq!(
            nowait.err(),
            Some(rustix::io::Errno::AGAIN),
            "{name} stayed in the page cache: the temporary directory must be on a disk \
             file system (set TMPDIR), not tmpfs"
        );
        // The probe may have started a read-ahead of its own: let it end, drop it again.
        std::thread::sleep(std::time::Duration::from_millis(50));
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }
    assert!(
        read(),
        "a file out of the page cache starts the prefetching"
    );
}
