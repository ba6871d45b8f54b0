//! [`Unpacker`]: applies a layer to a directory, confined to it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use lamina_types::Digest;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use tar::EntryType;

use crate::compress::{Compression, decompress};
use crate::confine::{self, clear_for, ensure_dir, open_in};
use crate::digest::HashingReader;
use crate::error::{LayerError, lossy};
use crate::tail::Tail;
use crate::walk::{OPAQUE_MARKER, WHITEOUT_PREFIX, join};

/// What the unpacker applies besides contents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Set owners from the layer (needs root); otherwise files belong to the caller.
    pub same_owner: bool,
    /// Create character and block devices (needs root); otherwise they are skipped and counted.
    pub devices: bool,
    /// Set extended attributes from `SCHILY.xattr.*` records.
    pub xattrs: bool,
    /// Apply `.wh.` whiteouts and opaque markers (layers); off, they are ordinary entries
    /// (a plain archive, as `ADD` extracts it).
    pub whiteouts: bool,
}

impl Default for UnpackOptions {
    /// Owners and devices when running as root, extended attributes always.
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            same_owner: root,
            devices: root,
            xattrs: true,
            whiteouts: true,
        }
    }
}

impl UnpackOptions {
    /// Sets [`UnpackOptions::same_owner`].
    pub fn same_owner(mut self, on: bool) -> Self {
        self.same_owner = on;
        self
    }

    /// Sets [`UnpackOptions::devices`].
    pub fn devices(mut self, on: bool) -> Self {
        self.devices = on;
        self
    }

    /// Sets [`UnpackOptions::xattrs`].
    pub fn xattrs(mut self, on: bool) -> Self {
        self.xattrs = on;
        self
    }

    /// Sets [`UnpackOptions::whiteouts`].
    pub fn whiteouts(mut self, on: bool) -> Self {
        self.whiteouts = on;
        self
    }
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackStats {
    /// The compression that was detected.
    pub compression: Compression,
    /// sha256 of the uncompressed tar: compare it with the expected `diff_id`.
    pub diff_id: Digest,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// Entries created (files, directories, links, devices).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Entries skipped: devices without [`UnpackOptions::devices`], global headers, aufs
    /// metadata.
    pub skipped: u64,
}

/// Applies OCI layers to a directory.
///
/// Entry paths are taken relative to the target (a leading `/` is dropped); a `..` component in
/// a path or hard-link target is refused with [`LayerError::UnsafePath`]. Symlinks met on the
/// way resolve inside the target (see the `confine` module), so no entry is written outside it.
/// Whiteouts and opaque markers remove only what lower layers left, never entries of the same
/// layer, whatever their order. Directory modes and mtimes are set last.
#[derive(Debug, Clone, Default)]
pub struct Unpacker {
    options: UnpackOptions,
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Unpacker {
    /// An unpacker with these options.
    pub fn new(options: UnpackOptions) -> Self {
        Unpacker { options }
    }

    /// Unpacks the layer read from `reader` (plain, gzip or zstd) into the directory `target`.
    ///
    /// The tar stream may end without its end-of-archive blocks, and without the padding
    /// after the last entry's data (as `umoci insert` writes layers); a stream cut inside an
    /// entry's header or data is [`LayerError::Truncated`].
    pub fn unpack<R: Read>(&self, reader: R, target: &Path) -> Result<UnpackStats, LayerError> {
        let root: OwnedFd = File::open(target)
            .map_err(|source| LayerError::Unpack {
                entry: String::new(),
                source,
            })?
            .into();
        let read_err = |source| LayerError::Read { source };
        let (compression, stream) = decompress(reader).map_err(read_err)?;
        let (tail, tail_state) = Tail::new(HashingReader::new(stream));
        let mut archive = tar::Archive::new(tail);
        let mut st = State {
            opts: &self.options,
            root,
            created: HashSet::new(),
            dirs: Vec::new(),
            stats: UnpackStats {
                compression,
                diff_id: Digest::sha256([0; 32]),
                uncompressed_size: 0,
                entries: 0,
                whiteouts: 0,
                skipped: 0,
            },
        };
        // The last entry read in full, to place a cut in the header after it.
        let mut last: Option<Vec<u8>> = None;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(_) if tail_state.ended() => {
                    return Err(LayerError::Truncated {
                        entry: last.as_deref().map(lossy),
                        in_data: false,
                    });
                }
                Err(source) => return Err(LayerError::Read { source }),
            };
            let raw = entry.path_bytes().into_owned();
            st.apply(&mut entry)?;
            // Whatever data the entry has left is read here, so the stream's end can be told
            // to fall after it (padding may be missing) or inside it (cut short).
            io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
            if tail_state.ended() {
                return Err(LayerError::Truncated {
                    entry: Some(lossy(&raw)),
                    in_data: true,
                });
            }
            tail_state.data_complete();
            last = Some(raw);
        }
        st.finish_dirs()?;
        let mut hashed = archive.into_inner().into_inner();
        // Whatever follows the end marker is part of the blob and of its diff_id.
        io::copy(&mut hashed, &mut io::sink()).map_err(read_err)?;
        let (diff_id, len) = hashed.finish();
        st.stats.diff_id = diff_id;
        st.stats.uncompressed_size = len;
        Ok(st.stats)
    }
}

struct State<'a> {
    opts: &'a UnpackOptions,
    root: OwnedFd,
    /// Paths this layer created, which its whiteouts must not remove.
    created: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set at the end.
    dirs: Vec<(Vec<u8>, u32, u64)>,
    stats: UnpackStats,
}

/// Splits an entry path into components, dropping `.`, empty ones and a leading `/`.
/// `entry` names the entry in errors.
fn components<'p>(
    entry: &[u8],
    raw: &'p [u8],
    what: &'static str,
) -> Result<Vec<&'p [u8]>, LayerError> {
    let comps: Vec<&[u8]> = raw
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if comps.contains(&&b".."[..]) {
        return Err(LayerError::UnsafePath {
            entry: lossy(entry),
            reason: what,
        });
    }
    Ok(comps)
}

impl State<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            self.stats.skipped += 1;
            return Ok(());
        }
        let comps = components(&raw, &raw, "path has a `..` component")?;
        let Some((&name, parents)) = comps.split_last() else {
            self.stats.skipped += 1; // the root itself
            return Ok(());
        };
        let parent_path = parents.join(&b'/');
        if self.opts.whiteouts
            && let Some(rest) = name.strip_prefix(WHITEOUT_PREFIX)
        {
            return self.whiteout(&raw, &parent_path, name, rest);
        }
        let path = join(&parent_path, name);
        let meta = read_meta(entry).map_err(|source| LayerError::Read { source })?;
        let unpack = LayerError::unpack(&raw);
        let parent =
            ensure_dir(&self.root, parents, &mut self.created).map_err(LayerError::unpack(&raw))?;
        let is_dir =
            kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"));
        if is_dir {
            let existed = clear_for(&parent, name, true).map_err(LayerError::unpack(&raw))?;
            if !existed {
                rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| LayerError::unpack(&raw)(e.into()))?;
            }
            let fd = confine::open_child_dir(&parent, name).map_err(LayerError::unpack(&raw))?;
            self.owner_and_xattrs(&fd, &meta, None)
                .map_err(LayerError::unpack(&raw))?;
            self.dirs.push((path.clone(), meta.mode, meta.mtime));
        } else {
            match kind {
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    self.file(entry, &parent, name, &meta).map_err(unpack)?;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .ok_or_else(|| invalid(&raw, "symlink without a target"))?;
                    clear_for(&parent, name, false).map_err(LayerError::unpack(&raw))?;
                    rustix::fs::symlinkat(&*target, &parent, name).map_err(|e| unpack(e.into()))?;
                    self.finish_special(&parent, name, &meta, false)
                        .map_err(LayerError::unpack(&raw))?;
                }
                EntryType::Link => self.hardlink(entry, &raw, &path, &parent, name)?,
                EntryType::Char | EntryType::Block | EntryType::Fifo => {
                    let ft = match kind {
                        EntryType::Char => FileType::CharacterDevice,
                        EntryType::Block => FileType::BlockDevice,
                        _ => FileType::Fifo,
                    };
                    if ft != FileType::Fifo && !self.opts.devices {
                        self.stats.skipped += 1;
                        return Ok(());
                    }
                    let h = entry.header();
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    clear_for(&parent, name, false).map_err(LayerError::unpack(&raw))?;
                    let mode = Mode::from_raw_mode(meta.mode & 0o777);
                    rustix::fs::mknodat(&parent, name, ft, mode, rustix::fs::makedev(major, minor))
                        .map_err(|e| unpack(e.into()))?;
                    self.finish_special(&parent, name, &meta, true)
                        .map_err(LayerError::unpack(&raw))?;
                }
                other => {
                    return Err(invalid(&raw, &format!("unsupported entry type {other:?}")));
                }
            }
        }
        self.created.insert(path);
        self.stats.entries += 1;
        Ok(())
    }

    fn file<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
    ) -> io::Result<()> {
        clear_for(parent, name, false)?;
        let flags =
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent, name, flags, Mode::from_raw_mode(0o600))?;
        let mut file = File::from(fd);
        io::copy(entry, &mut file)?;
        // Owner before mode (chown clears setuid), attributes after both (chown clears
        // security.capability), times last.
        self.owner_and_xattrs(&file, meta, Some(meta.mode))?;
        rustix::fs::futimens(&file, &times(meta.mtime))?;
        Ok(())
    }

    fn owner_and_xattrs(&self, fd: &impl AsFd, meta: &Meta, mode: Option<u32>) -> io::Result<()> {
        if self.opts.same_owner {
            let (uid, gid) = ids(meta)?;
            rustix::fs::fchown(fd, Some(uid), Some(gid))?;
        }
        if let Some(mode) = mode {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
        }
        if self.opts.xattrs {
            for (k, v) in &meta.xattrs {
                rustix::fs::fsetxattr(fd, &k[..], v, XattrFlags::empty())?;
            }
        }
        Ok(())
    }

    /// Owner, mode, attributes and mtime of a symlink, device or fifo, by name in `parent`.
    fn finish_special(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        chmod: bool,
    ) -> io::Result<()> {
        if self.opts.same_owner {
            let (uid, gid) = ids(meta)?;
            rustix::fs::chownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if chmod {
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if self.opts.xattrs && !meta.xattrs.is_empty() {
            // The parent is reached through its descriptor; the name itself is not followed.
            let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            p.extend_from_slice(name);
            for (k, v) in &meta.xattrs {
                rustix::fs::lsetxattr(OsStr::from_bytes(&p), &k[..], v, XattrFlags::empty())?;
            }
        }
        rustix::fs::utimensat(parent, name, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        raw: &[u8],
        path: &[u8],
        parent: &OwnedFd,
        name: &[u8],
    ) -> Result<(), LayerError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| invalid(raw, "hard link without a target"))?;
        let tcomps = components(raw, &target, "hard link target has a `..` component")?;
        let Some((&tname, tparents)) = tcomps.split_last() else {
            return Err(invalid(raw, "hard link to the root"));
        };
        if join(&tparents.join(&b'/'), tname) == path {
            return Err(invalid(raw, "hard link to itself"));
        }
        let tparent = open_in(
            &self.root,
            &tparents.join(&b'/'),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .map_err(|e| LayerError::unpack(raw)(e.into()))?;
        clear_for(parent, name, false).map_err(LayerError::unpack(raw))?;
        // Flags 0: a symlink target is linked itself, never followed.
        rustix::fs::linkat(&tparent, tname, parent, name, AtFlags::empty())
            .map_err(|e| LayerError::unpack(raw)(e.into()))
    }

    fn whiteout(
        &mut self,
        raw: &[u8],
        parent_path: &[u8],
        name: &[u8],
        rest: &[u8],
    ) -> Result<(), LayerError> {
        if name != OPAQUE_MARKER && rest.starts_with(WHITEOUT_PREFIX) {
            self.stats.skipped += 1; // other aufs metadata such as `.wh..wh.plnk`
            return Ok(());
        }
        if rest.is_empty() || rest == b"." {
            return Err(invalid(raw, "whiteout without a name"));
        }
        if rest == b".." {
            return Err(LayerError::UnsafePath {
                entry: lossy(raw),
                reason: "whiteout of `..`",
            });
        }
        let dir = match open_in(&self.root, parent_path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            // Nothing below to hide.
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => {
                self.stats.whiteouts += 1;
                return Ok(());
            }
            Err(e) => return Err(LayerError::unpack(raw)(e.into())),
        };
        let result = if name == OPAQUE_MARKER {
            confine::prune(&dir, parent_path, &self.created)
        } else if self.created.contains(&join(parent_path, rest)) {
            Ok(())
        } else {
            confine::remove_all(&dir, rest)
        };
        result.map_err(LayerError::unpack(raw))?;
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Sets directory modes and mtimes, last entry first, once each.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        let mut done = HashSet::new();
        for (path, mode, mtime) in self.dirs.iter().rev() {
            if !done.insert(path) {
                continue;
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
            let fd = match open_in(&self.root, path, flags) {
                Ok(fd) => fd,
                // Replaced by a later entry or removed by a whiteout.
                Err(
                    rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP | rustix::io::Errno::NOENT,
                ) => continue,
                Err(e) => return Err(LayerError::unpack(path)(e.into())),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
                .and_then(|()| rustix::fs::futimens(&fd, &times(*mtime)))
                .map_err(|e| LayerError::unpack(path)(e.into()))?;
        }
        Ok(())
    }
}

fn invalid(raw: &[u8], reason: &str) -> LayerError {
    LayerError::InvalidEntry {
        entry: lossy(raw),
        reason: reason.to_owned(),
    }
}

fn ids(meta: &Meta) -> io::Result<(Uid, Gid)> {
    let too_big = || io::Error::other("owner id does not fit 32 bits");
    let uid = u32::try_from(meta.uid).map_err(|_| too_big())?;
    let gid = u32::try_from(meta.gid).map_err(|_| too_big())?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Header fields with their PAX overrides.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()?,
        uid: h.uid()?,
        gid: h.gid()?,
        mtime: h.mtime()?,
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let v = ext.value_bytes();
            let num = || {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse::<u64>().ok())
            };
            match ext.key_bytes() {
                b"uid" => meta.uid = num().unwrap_or(meta.uid),
                b"gid" => meta.gid = num().unwrap_or(meta.gid),
                b"mtime" => meta.mtime = num().unwrap_or(0),
                k => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        meta.xattrs.push((name.to_vec(), v.to_vec()));
                    }
                }
            }
        }
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_drop_dots_and_slashes_but_refuse_dot_dot() {
        let c = components(b"e", b"/./a//b/./c/", "x").unwrap();
        assert_eq!(c, [&b"a"[..], b"b", b"c"]);
        assert!(components(b"e", b"./", "x").unwrap().is_empty());
        let err = components(b"entry", b"a/../b", "why").unwrap_err();
        assert!(matches!(err, LayerError::UnsafePath { entry, reason: "why" } if entry == "entry"));
        assert!(
            components(b"e", b"a/..b/...", "x").is_ok(),
            "`..b` and `...` are names"
        );
    }

    #[test]
    fn whiteouts_off_keeps_marker_names_as_entries() {
        let mut builder = tar::Builder::new(Vec::new());
        for name in ["a/keep", "a/.wh.keep", "a/.wh..wh..opq"] {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            builder.append(&h, &b"x"[..]).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plain = UnpackOptions::default().same_owner(false).whiteouts(false);
        let stats = Unpacker::new(plain).unpack(&tar[..], dir.path()).unwrap();
        assert_eq!((stats.entries, stats.whiteouts), (3, 0));
        for name in ["keep", ".wh.keep", ".wh..wh..opq"] {
            assert!(dir.path().join("a").join(name).is_file(), "{name}");
        }
        let layered = tempfile::tempdir().unwrap();
        let options = UnpackOptions::default().same_owner(false);
        let stats = Unpacker::new(options)
            .unpack(&tar[..], layered.path())
            .unwrap();
        assert_eq!(stats.whiteouts, 2);
        assert!(
            layered.path().join("a/keep").is_file(),
            "same-layer entries stay"
        );
        assert!(!layered.path().join("a/.wh.keep").exists());
    }
}
