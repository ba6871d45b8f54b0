//! Small file-system helpers shared by the sandbox modules.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::ExecError;

/// Maps an I/O error to [`ExecError::Io`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens (creating) `path` and takes a `flock` on it; the lock lasts as long as the file.
pub(crate) fn lock_file(path: &Path, op: FlockOperation) -> Result<File, ExecError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    rustix::fs::flock(&file, op).map_err(|e| ExecError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(file)
}

/// Like [`lock_file`] with a non-blocking lock: `Ok(None)` when another holder has it.
pub(crate) fn try_lock_file(path: &Path) -> Result<Option<File>, ExecError> {
    match lock_file(path, FlockOperation::NonBlockingLockExclusive) {
        Ok(file) => Ok(Some(file)),
        Err(ExecError::Io { source, .. })
            if source.raw_os_error() == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Locks the file at `path` (created if missing) with `op`, making sure the lock held is on
/// the file the path names: a remover unlinks the lock file while holding it exclusively, so
/// a lock taken on an unlinked file would guard nothing.
pub(crate) fn lock_named(path: &Path, op: FlockOperation) -> Result<File, ExecError> {
    loop {
        let file = lock_file(path, op)?;
        if names_file(path, &file)? {
            return Ok(file);
        }
    }
}

/// [`lock_named`] exclusively without waiting: `None` when someone holds the lock.
pub(crate) fn try_lock_named(path: &Path) -> Result<Option<File>, ExecError> {
    loop {
        let Some(file) = try_lock_file(path)? else {
            return Ok(None);
        };
        if names_file(path, &file)? {
            return Ok(Some(file));
        }
    }
}

fn names_file(path: &Path, file: &File) -> Result<bool, ExecError> {
    let held = rustix::fs::fstat(file).map_err(|e| io_err(path)(e.into()))?;
    Ok(match rustix::fs::stat(path) {
        Ok(named) => named.st_ino == held.st_ino && named.st_dev == held.st_dev,
        Err(_) => false,
    })
}

/// Opens the directory `comps` below `root` one component at a time without following any
/// symlink, so the result is always inside `root`; with `create`, missing directories are
/// made (mode 0755).
pub(crate) fn open_dir_in(
    root: &impl AsFd,
    comps: &[&[u8]],
    create: bool,
) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::openat(root, ".", flags, Mode::empty())?;
    for comp in comps {
        let comp = std::ffi::OsStr::from_bytes(comp);
        fd = match rustix::fs::openat(&fd, comp, flags, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rustix::fs::openat(&fd, comp, flags, Mode::empty())?
            }
            other => other?,
        };
    }
    Ok(fd)
}

/// Copies the tree at `from` (a directory) to the new directory `to`: directories, regular
/// files and symlinks with their modes and owners; other entries (devices, sockets) are
/// skipped.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), ExecError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(from).map_err(io_err(from))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        std::fs::create_dir(to).map_err(io_err(to))?;
        for entry in std::fs::read_dir(from).map_err(io_err(from))? {
            let entry = entry.map_err(io_err(from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_symlink() {
        let target = std::fs::read_link(from).map_err(io_err(from))?;
        std::os::unix::fs::symlink(target, to).map_err(io_err(to))?;
    } else if kind.is_file() {
        std::fs::copy(from, to).map_err(io_err(from))?;
    } else {
        return Ok(());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(io_err(to))?;
    if !kind.is_symlink() {
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err(to))?;
    }
    Ok(())
}

/// Splits an absolute container path into components, refusing `..`.
pub(crate) fn container_components(path: &str) -> Option<Vec<&str>> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (path.starts_with('/') && !comps.contains(&"..")).then_some(comps)
}
