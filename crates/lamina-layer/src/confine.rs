//! Filesystem primitives that never leave the unpack target.
//!
//! Parents are resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor of the target, so `..`, absolute symlinks and symlink chains all resolve as if the
//! target were `/`: a symlink `a -> /` makes `a/etc/passwd` mean `<target>/etc/passwd`. The last
//! component is then handled with `*at` calls on the parent descriptor that never follow it.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens `path` (components joined by `/`) inside `root`; `flags` add to `O_CLOEXEC`.
pub(crate) fn open_in(root: &OwnedFd, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if path.is_empty() { b"." } else { path };
    loop {
        match rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            // openat2 returns EAGAIN when a concurrent rename may have raced the lookup.
            Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
            r => return r,
        }
    }
}

fn open_dir_path(root: &OwnedFd, path: &[u8]) -> Result<OwnedFd, Errno> {
    open_in(root, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// Opens the directory `comps` inside `root`, creating missing components with mode 0755 and
/// recording them in `created`.
pub(crate) fn ensure_dir(
    root: &OwnedFd,
    comps: &[&[u8]],
    created: &mut HashSet<Vec<u8>>,
) -> io::Result<OwnedFd> {
    let full = comps.join(&b'/');
    match open_dir_path(root, &full) {
        Err(Errno::NOENT) => {}
        r => return r.map_err(Into::into),
    }
    let mut cur = open_dir_path(root, b"")?;
    for i in 0..comps.len() {
        let prefix = comps[..=i].join(&b'/');
        cur = match open_dir_path(root, &prefix) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&cur, comps[i], Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        created.insert(prefix.clone());
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_dir_path(root, &prefix)?
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(cur)
}

/// Whether `name` in `dir` exists, and whether it is a directory (never following it).
pub(crate) fn kind_at(dir: &impl AsFd, name: &[u8]) -> io::Result<Option<bool>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory,
        )),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Clears the way for a new entry `name`: keeps an existing directory when `keep_dir`,
/// otherwise removes whatever is there.
pub(crate) fn clear_for(dir: &impl AsFd, name: &[u8], keep_dir: bool) -> io::Result<bool> {
    match kind_at(dir, name)? {
        None => Ok(false),
        Some(true) if keep_dir => Ok(true),
        Some(_) => remove_all(dir, name).map(|()| false),
    }
}

/// Removes `name` in `dir` and, for a directory, everything below it, never following links.
pub(crate) fn remove_all(dir: &impl AsFd, name: &[u8]) -> io::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(false) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
        Some(true) => {
            let sub = open_child_dir(dir, name)?;
            for child in list(&sub)? {
                remove_all(&sub, &child)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
    }
}

/// Opens the directory `name` in `dir` for reading, refusing a symlink there.
pub(crate) fn open_child_dir(dir: &impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let name = e?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

/// Applies an opaque marker: removes everything in `dir` (archive path `dir_path`) that this
/// layer did not create, descending into directories it did create.
pub(crate) fn prune(dir: &OwnedFd, dir_path: &[u8], created: &HashSet<Vec<u8>>) -> io::Result<()> {
    for name in list(dir)? {
        let path = crate::walk::join(dir_path, &name);
        if !created.contains(&path) {
            remove_all(dir, &name)?;
        } else if kind_at(dir, &name)? == Some(true) {
            prune(&open_child_dir(dir, &name)?, &path, created)?;
        }
    }
    Ok(())
}
