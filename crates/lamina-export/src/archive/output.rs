//! Where an export's bytes go, decided before anything is written: a new or regular file is
//! replaced atomically; standard output is streamed to; anything else at the path (a device,
//! a FIFO, a socket, a directory where a tar goes, a symlink) is refused unless forced, and
//! then written through, never replaced.
//!
//! Atomic files are made with `O_TMPFILE`: the data goes into an unnamed inode of the
//! output's directory and is linked in only when complete (straight to the name when it is
//! free, else to a temporary name renamed over it), so a killed export leaves nothing behind
//! at all. Where the filesystem cannot do that, and for the `oci-dir` staging directories, a
//! `.lamina-export-*` name is used, held under an exclusive `flock` for the writer's life;
//! every export sweeps its output directory of such names whose lock is free (their writer
//! is gone — a lock, unlike a pid, is right across PID namespaces).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FlockOperation, Mode, OFlags};

use super::ArchiveFormat;
use crate::ExportError;

/// The names of temporary outputs; the sweep removes them once their writer is gone.
pub(crate) const TEMP_PREFIXES: [&str; 2] = [".lamina-export-", ".lamina-old-"];

/// Where [`super::export_to`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportTarget {
    /// A path. A regular file there is replaced; with `force`, a symlink, device or FIFO
    /// there is opened and written through instead of refused.
    Path {
        /// The output path.
        path: PathBuf,
        /// Write through what is at `path` rather than refusing it.
        force: bool,
    },
    /// Standard output (archive formats only).
    Stdout,
}

impl ExportTarget {
    /// `-` is standard output, anything else a path.
    pub fn parse(output: &Path, force: bool) -> ExportTarget {
        if output == Path::new("-") {
            ExportTarget::Stdout
        } else {
            ExportTarget::Path {
                path: output.to_path_buf(),
                force,
            }
        }
    }
}

/// How the output is opened.
#[derive(Debug)]
pub(crate) enum Placement {
    /// A new file, or a regular file replaced, atomically.
    Atomic(PathBuf),
    /// An existing file, device or FIFO opened for writing (forced).
    Through(PathBuf),
    /// Standard output.
    Stdout,
    /// An OCI layout directory created, or replacing the directory there, atomically.
    Directory(PathBuf),
}

/// Decides how `target` is written in `format`; refuses what an export must not replace.
pub(crate) fn place(
    target: &ExportTarget,
    format: ArchiveFormat,
) -> Result<Placement, ExportError> {
    let (path, force) = match target {
        ExportTarget::Stdout if format == ArchiveFormat::OciDir => {
            return Err(ExportError::OutputRefused {
                path: PathBuf::from("-"),
                kind: "standard output",
                hint: "an oci-dir is a directory; write an oci-archive or docker-archive there, or name a directory".to_owned(),
            });
        }
        ExportTarget::Stdout => return Ok(Placement::Stdout),
        ExportTarget::Path { path, force } => (path, *force),
    };
    let refuse = |kind: &'static str, hint: &str| ExportError::OutputRefused {
        path: path.clone(),
        kind,
        hint: hint.to_owned(),
    };
    let force_hint = "an export replaces only regular files; pass --force to write through it";
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(match format {
                ArchiveFormat::OciDir => Placement::Directory(path.clone()),
                _ => Placement::Atomic(path.clone()),
            });
        }
        Err(source) => {
            return Err(ExportError::Io {
                path: path.clone(),
                source,
            });
        }
    };
    let kind = meta.file_type();
    if format == ArchiveFormat::OciDir {
        return if kind.is_dir() {
            Ok(Placement::Directory(path.clone()))
        } else if kind.is_symlink() && !force {
            Err(refuse(
                "a symlink",
                "an export does not follow symlinks; pass --force to write the layout into the directory it points to",
            ))
        } else if kind.is_symlink() && path.is_dir() {
            let resolved = std::fs::canonicalize(path).map_err(|source| ExportError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(Placement::Directory(resolved))
        } else {
            Err(refuse(
                "not a directory",
                "an oci-dir export writes a directory; remove it or name another path",
            ))
        };
    }
    if kind.is_file() {
        return Ok(Placement::Atomic(path.clone()));
    }
    if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
        return Err(refuse(
            "a directory",
            "an archive is one file; name a file in it, e.g. DIR/image.tar",
        ));
    }
    if kind.is_socket() {
        return Err(refuse(
            "a socket",
            "an archive cannot be written to a socket; name a file",
        ));
    }
    if force {
        return Ok(Placement::Through(path.clone()));
    }
    Err(refuse(
        if kind.is_symlink() {
            "a symlink"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_fifo() {
            "a FIFO"
        } else {
            "not a regular file"
        },
        force_hint,
    ))
}

/// A file being written that becomes `out` only when [`Staged::commit`] is called; dropped
/// uncommitted, it leaves nothing (or, on the fallback, a locked name the sweep removes).
pub(crate) struct Staged {
    pub(crate) file: File,
    out: PathBuf,
    /// The fallback's named temporary file (none with `O_TMPFILE`).
    named: Option<tempfile::TempPath>,
}

impl Staged {
    /// A staged file in `out`'s directory, readable like any other output (0644).
    pub(crate) fn new(out: &Path) -> Result<Staged, ExportError> {
        let parent = super::write::parent_of(out);
        let io_err = |source| ExportError::Io {
            path: parent.to_path_buf(),
            source,
        };
        if let Some(file) = anonymous_file(parent) {
            return Ok(Staged {
                file,
                out: out.to_path_buf(),
                named: None,
            });
        }
        let named = tempfile::Builder::new()
            .prefix(TEMP_PREFIXES[0])
            .tempfile_in(parent)
            .map_err(io_err)?;
        let (file, temp_path) = named.into_parts();
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| io_err(io::Error::from(e)))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
        Ok(Staged {
            file,
            out: out.to_path_buf(),
            named: Some(temp_path),
        })
    }

    /// Puts the (flushed and synced) file in place at `out`, replacing a regular file there.
    pub(crate) fn commit(self) -> Result<(), ExportError> {
        let out_err = |source| ExportError::Io {
            path: self.out.clone(),
            source,
        };
        if let Some(named) = self.named {
            return named.persist(&self.out).map_err(|e| out_err(e.error));
        }
        let fd_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        match rustix::fs::linkat(CWD, &fd_path, CWD, &self.out, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                // A name cannot be linked over: link beside it, then rename over. The file
                // stays locked through the link, so no sweep takes it meanwhile.
                let parent = super::write::parent_of(&self.out);
                let temp = parent.join(format!(
                    "{}{}-{}",
                    TEMP_PREFIXES[0],
                    std::process::id(),
                    nanos()
                ));
                rustix::fs::linkat(CWD, &fd_path, CWD, &temp, AtFlags::SYMLINK_FOLLOW)
                    .map_err(|e| out_err(e.into()))?;
                if let Err(e) = std::fs::rename(&temp, &self.out) {
                    let _ = std::fs::remove_file(&temp);
                    return Err(out_err(e));
                }
            }
            Err(e) => return Err(out_err(e.into())),
        }
        sync_dir(super::write::parent_of(&self.out));
        Ok(())
    }
}

/// An unnamed, locked, 0644 file in `dir`, when the filesystem and `/proc` allow linking it
/// in later; `None` sends the caller to the named fallback.
fn anonymous_file(dir: &Path) -> Option<File> {
    let fd = rustix::fs::openat(
        CWD,
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .ok()?;
    let file = File::from(fd);
    // Linking goes through /proc (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
    std::fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).ok()?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .ok()?;
    Some(file)
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Makes a rename in `dir` durable (best effort: some filesystems refuse to sync a directory).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Takes an exclusive lock on `path` (a file or directory the caller just created), held
/// while the returned file lives, so the sweep leaves it alone.
pub(crate) fn hold(path: &Path) -> Result<File, ExportError> {
    let io_err = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err(e.into()))?;
    Ok(file)
}

/// Removes the temporary outputs in `dir` whose writer is gone (their lock is free). Errors
/// are logged, not returned: the sweep is housekeeping for someone else's leftovers.
pub(crate) fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !TEMP_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let Ok(fd) = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        if rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        match removed {
            Ok(()) => tracing::debug!(path = %path.display(), "removed a killed export's leftover"),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "could not remove a killed export's leftover")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &Path, force: bool) -> ExportTarget {
        ExportTarget::Path {
            path: path.to_path_buf(),
            force,
        }
    }

    #[test]
    fn refuses_what_it_must_not_replace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file.tar");
        std::fs::write(&file, b"old").unwrap();
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let archive = ArchiveFormat::OciArchive;
        assert!(matches!(
            place(&at(&file, false), archive),
            Ok(Placement::Atomic(_))
        ));
        assert!(matches!(
            place(&at(&dir.path().join("new.tar"), false), archive),
            Ok(Placement::Atomic(_))
        ));
        let refused = place(&at(&link, false), archive).unwrap_err().to_string();
        assert!(
            refused.contains("link.tar is a symlink") && refused.contains("--force"),
            "{refused}"
        );
        assert!(matches!(
            place(&at(&link, true), archive),
            Ok(Placement::Through(_))
        ));
        let refused = place(&at(dir.path(), true), archive)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("is a directory"), "{refused}");
        let refused = place(&at(Path::new("/dev/null"), false), archive)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("/dev/null is a character device"),
            "{refused}"
        );
        assert!(matches!(
            place(&ExportTarget::Stdout, ArchiveFormat::OciDir),
            Err(ExportError::OutputRefused { .. })
        ));
        assert!(matches!(
            place(&at(dir.path(), false), ArchiveFormat::OciDir),
            Ok(Placement::Directory(_))
        ));
        assert!(matches!(
            place(&at(&file, true), ArchiveFormat::OciDir),
            Err(ExportError::OutputRefused { .. })
        ));
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_a_committed_one_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.tar");
        drop(Staged::new(&out).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        for content in [&b"first"[..], b"second"] {
            let mut staged = Staged::new(&out).unwrap();
            io::Write::write_all(&mut staged.file, content).unwrap();
            staged.commit().unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), content);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn the_sweep_removes_only_unlocked_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join(".lamina-export-dead");
        let live = dir.path().join(".lamina-export-live");
        let old_dir = dir.path().join(".lamina-old-dead");
        let other = dir.path().join("image.tar");
        for f in [&dead, &live, &other] {
            std::fs::write(f, b"x").unwrap();
        }
        std::fs::create_dir_all(old_dir.join("old")).unwrap();
        let _held = hold(&live).unwrap();
        sweep(dir.path());
        assert!(!dead.exists() && !old_dir.exists());
        assert!(live.exists() && other.exists());
    }
}
