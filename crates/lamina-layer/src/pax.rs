//! Hand-built ustar headers with PAX extended records.
//!
//! Why not `tar::Builder`: it writes long names as GNU records rather than PAX, has no xattr
//! support on the write side, and fills headers from `stat` unless every field is overridden.
//! Writing the 512-byte ustar block ourselves keeps every byte under our control, which is what
//! reproducible digests need. Rules, all fixed:
//! - names up to 100 bytes go in the ustar `name` field, longer ones in a PAX `path` record
//!   (the `prefix` field is never used); link targets likewise with `linkpath`;
//! - numbers that do not fit their octal field (uid, gid, size, mtime) go in PAX records;
//! - `uname`/`gname` stay empty; PAX records are sorted by key; the PAX header itself has
//!   mode 0644, owner 0:0 and mtime 0.

use std::io::{self, Write};

/// The ustar type flags this crate writes.
pub(crate) mod kind {
    pub(crate) const FILE: u8 = b'0';
    pub(crate) const HARDLINK: u8 = b'1';
    pub(crate) const SYMLINK: u8 = b'2';
    pub(crate) const CHAR: u8 = b'3';
    pub(crate) const BLOCK: u8 = b'4';
    pub(crate) const DIR: u8 = b'5';
    pub(crate) const FIFO: u8 = b'6';
    pub(crate) const PAX: u8 = b'x';
}

/// Everything one archive entry's header says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) kind: u8,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    pub(crate) mtime: u64,
    pub(crate) link: &'a [u8],
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    /// Sorted by name; names contain neither `=` nor `\n` (the caller checks).
    pub(crate) xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

pub(crate) const BLOCK: usize = 512;

/// Writes the PAX extension (when needed) and the ustar header of one entry.
pub(crate) fn write_header(out: &mut impl Write, h: &Header<'_>) -> io::Result<()> {
    let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let num = |records: &mut Vec<(Vec<u8>, Vec<u8>)>, key: &str, v: u64, width: usize| {
        if fits(v, width) {
            v
        } else {
            records.push((key.as_bytes().to_vec(), v.to_string().into_bytes()));
            0
        }
    };
    let uid = num(&mut records, "uid", h.uid, 8);
    let gid = num(&mut records, "gid", h.gid, 8);
    let size = num(&mut records, "size", h.size, 12);
    let mtime = num(&mut records, "mtime", h.mtime, 12);
    let name = if h.name.len() <= 100 {
        h.name
    } else {
        records.push((b"path".to_vec(), h.name.to_vec()));
        truncate(h.name, 100)
    };
    let link = if h.link.len() <= 100 {
        h.link
    } else {
        records.push((b"linkpath".to_vec(), h.link.to_vec()));
        truncate(h.link, 100)
    };
    for (k, v) in h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        records.push((key, v.clone()));
    }
    if !records.is_empty() {
        records.sort();
        let mut body = Vec::new();
        for (k, v) in &records {
            body.extend_from_slice(&pax_record(k, v));
        }
        let mut pax_name = b"PaxHeaders/".to_vec();
        pax_name.extend_from_slice(truncate(base_name(h.name), 100 - pax_name.len()));
        let pax = Header {
            name: &pax_name,
            kind: kind::PAX,
            mode: 0o644,
            size: body.len() as u64,
            ..Header::default()
        };
        out.write_all(&ustar_block(
            &pax,
            &pax_name,
            b"",
            0,
            0,
            body.len() as u64,
            0,
        ))?;
        out.write_all(&body)?;
        write_padding(out, body.len() as u64)?;
    }
    out.write_all(&ustar_block(h, name, link, uid, gid, size, mtime))
}

/// Writes zeros up to the next 512-byte boundary after `len` bytes of data.
pub(crate) fn write_padding(out: &mut impl Write, len: u64) -> io::Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// Writes the end-of-archive marker: two zero blocks.
pub(crate) fn write_trailer(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

fn ustar_block(
    h: &Header<'_>,
    name: &[u8],
    link: &[u8],
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], uid);
    octal(&mut b[116..124], gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime);
    b[156] = h.kind;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], u64::from(h.dev_major));
    octal(&mut b[337..345], u64::from(h.dev_minor));
    // The checksum is computed with its own field as spaces.
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    octal(&mut b[148..155], sum);
    b[155] = b' ';
    b
}

/// Zero-padded octal filling the field but its last byte, which stays NUL.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn fits(v: u64, width: usize) -> bool {
    v < 1u64 << (3 * (width as u32 - 1))
}

/// Whether a device number fits its ustar field (7 octal digits).
pub(crate) fn dev_fits(v: u32) -> bool {
    fits(u64::from(v), 8)
}

fn truncate(s: &[u8], n: usize) -> &[u8] {
    &s[..s.len().min(n)]
}

fn base_name(name: &[u8]) -> &[u8] {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    trimmed.rsplit(|&c| c == b'/').next().unwrap_or(trimmed)
}

/// One `"<len> <key>=<value>\n"` record; `len` counts the whole record, itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        assert_eq!(pax_record(b"path", b"abcdefg"), b"16 path=abcdefg\n");
        // A record whose length crosses from two to three digits.
        let v = vec![b'x'; 92];
        let r = pax_record(b"path", &v);
        let len: usize = std::str::from_utf8(&r[..r.iter().position(|&c| c == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn header_reads_back_with_the_tar_crate() {
        let long = [b"d/".repeat(80), b"file".to_vec()].concat();
        let xattrs = vec![(b"user.k".to_vec(), b"v\0\xff".to_vec())];
        let h = Header {
            name: &long,
            kind: kind::FILE,
            mode: 0o4755,
            uid: 1 << 40,
            gid: 7,
            size: 3,
            mtime: 1_700_000_000,
            xattrs: &xattrs,
            ..Header::default()
        };
        let mut out = Vec::new();
        write_header(&mut out, &h).unwrap();
        out.extend_from_slice(b"abc");
        write_padding(&mut out, 3).unwrap();
        write_trailer(&mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let mut entries = ar.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(&*e.path_bytes(), &long[..]);
        assert_eq!(e.header().mode().unwrap(), 0o4755);
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        let pax: Vec<_> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_owned(), x.value_bytes().to_vec())
            })
            .collect();
        assert!(pax.contains(&("uid".to_owned(), b"1099511627776".to_vec())));
        assert!(pax.contains(&("SCHILY.xattr.user.k".to_owned(), b"v\0\xff".to_vec())));
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        assert_eq!(body, b"abc");
        assert!(entries.next().is_none());
    }
}
