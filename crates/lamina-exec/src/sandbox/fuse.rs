//! fuse-overlayfs, the fallback for kernels that refuse overlayfs in a user namespace (or
//! when `LAMINA_OVERLAY=fuse` asks for it), and turning its upper directory into the form
//! native overlayfs writes, so layers and their unpacked copies do not depend on which one ran.
//!
//! fuse-overlayfs runs in the foreground as a child of this process, killed by the kernel when
//! its parent thread dies (`PR_SET_PDEATHSIG`): a killed build leaves no daemon holding the
//! mount namespace, so its mounts end with it and reclaiming the run directory is the rootful
//! one (`overlay::unmount_all_under` also takes fuse mounts, should one be visible).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::fsutil::io_err;
use super::layers::opaque_xattr;
use super::overlay;
use crate::ExecError;

/// The environment variable that picks the overlay implementation in a user namespace.
pub const OVERLAY_ENV: &str = "LAMINA_OVERLAY";
/// The fallback's program (Debian package `fuse-overlayfs`).
const PROGRAM: &str = "fuse-overlayfs";
/// fuse-overlayfs's opaque mark when it cannot write `trusted.overlay.opaque`.
const FUSE_OPAQUE_XATTR: &str = "user.fuseoverlayfs.opaque";
/// Entries fuse-overlayfs adds to a directory it makes opaque (a file, a 0:0 device).
const FUSE_OPAQUE_ENTRIES: [&[u8]; 2] = [b".wh..wh..opq", b".wh..opq"];
const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// Which overlay mounts RUN steps get in a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Native overlayfs; fuse-overlayfs when the kernel refuses it.
    Auto,
    /// Native overlayfs only.
    Native,
    /// fuse-overlayfs always.
    Fuse,
}

/// 0 not read yet, else `Choice` + 1.
static CHOICE: AtomicU8 = AtomicU8::new(0);
/// Set once the kernel refused a native mount: later mounts go straight to fuse-overlayfs.
static REFUSED: AtomicBool = AtomicBool::new(false);
/// The one-time notice for the build output, until taken.
static NOTICE: Mutex<Option<String>> = Mutex::new(None);
static NOTICE_GIVEN: AtomicBool = AtomicBool::new(false);
/// Running fuse-overlayfs processes and their mount points.
static DAEMONS: Mutex<Vec<(PathBuf, Child)>> = Mutex::new(Vec::new());

/// `LAMINA_OVERLAY`: unset, empty or `auto`, `native`, `fuse`.
pub(crate) fn choice() -> Result<Choice, ExecError> {
    match CHOICE.load(Ordering::Relaxed) {
        1 => return Ok(Choice::Auto),
        2 => return Ok(Choice::Native),
        3 => return Ok(Choice::Fuse),
        _ => {}
    }
    let value = std::env::var(OVERLAY_ENV).unwrap_or_default();
    let parsed = parse_choice(&value)?;
    CHOICE.store(parsed as u8 + 1, Ordering::Relaxed);
    Ok(parsed)
}

fn parse_choice(value: &str) -> Result<Choice, ExecError> {
    match value {
        "" | "auto" => Ok(Choice::Auto),
        "native" => Ok(Choice::Native),
        "fuse" => Ok(Choice::Fuse),
        other => Err(ExecError::OverlaySetting {
            value: other.to_owned(),
        }),
    }
}

/// Whether mounts go to fuse-overlayfs without trying the kernel first.
pub(crate) fn fuse_first() -> Result<bool, ExecError> {
    Ok(choice()? == Choice::Fuse || REFUSED.load(Ordering::Relaxed))
}

/// Whether a native mount's `errno` is a kernel refusing overlayfs in a user namespace, to
/// fall back on (and remembers it).
pub(crate) fn falls_back(errno: rustix::io::Errno) -> Result<bool, ExecError> {
    let fall = is_refusal(errno) && choice()? == Choice::Auto;
    if fall {
        REFUSED.store(true, Ordering::Relaxed);
    }
    Ok(fall)
}

/// The errors a kernel gives for overlayfs it will not mount in a user namespace: no
/// `FS_USERNS_MOUNT` (EPERM), no `userxattr` option (EINVAL), no overlay module (ENODEV).
fn is_refusal(errno: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(errno, Errno::PERM | Errno::INVAL | Errno::NODEV)
}

/// Records the notice for the build output (once per process).
fn note(reason: &str) {
    if !NOTICE_GIVEN.swap(true, Ordering::Relaxed) {
        *NOTICE.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
            "RUN steps use fuse-overlayfs, which is slower than overlayfs: {reason}"
        ));
    }
}

/// The notice that RUN steps use fuse-overlayfs, the first time it is asked for after they
/// started to.
pub(crate) fn take_notice() -> Option<String> {
    NOTICE.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Mounts `lower` (fuse-overlayfs's `lowerdir` value), `upper` and `work` on `target`, with
/// fuse-overlayfs serving it until it is unmounted. `refusal` is why the kernel's overlayfs is
/// not used (for the notice).
pub(crate) fn mount(
    lower: &str,
    upper: &str,
    work: &str,
    target: &Path,
    refusal: &str,
) -> Result<(), ExecError> {
    let failed = |message: String| ExecError::Mount {
        what: format!("fuse-overlayfs ({refusal})"),
        target: target.to_path_buf(),
        source: std::io::Error::other(message),
    };
    let log_path = target.with_extension("fuse-overlayfs.log");
    let log = fs::File::create(&log_path).map_err(io_err(&log_path))?;
    let mut command = Command::new(PROGRAM);
    command
        .arg("-f")
        .arg("-o")
        .arg(format!("lowerdir={lower},upperdir={upper},workdir={work}"))
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only an async-signal-safe prctl between fork and exec.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().map_err(|e| {
        failed(if e.kind() == std::io::ErrorKind::NotFound {
            "fuse-overlayfs is not installed; install it (Debian: apt-get install fuse-overlayfs) \
             or run lamina as root"
                .to_owned()
        } else {
            format!("cannot start fuse-overlayfs: {e}")
        })
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if overlay::mounts_under(target)?.iter().any(|m| m == target) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let last = log
                .lines()
                .rfind(|l| !l.contains("unknown argument ignored"))
                .unwrap_or("")
                .trim();
            let hint = if last.contains("/dev/fuse") {
                " (as root: chmod 0666 /dev/fuse, as udev's default rule sets it)"
            } else {
                ""
            };
            return Err(failed(format!(
                "fuse-overlayfs exited ({status}): {last}{hint}"
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(failed("fuse-overlayfs did not mount within 20 s".into()));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    note(refusal);
    DAEMONS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((target.to_path_buf(), child));
    Ok(())
}

/// Waits for the fuse-overlayfs processes serving mount points at or below `dir` (unmounted
/// by now) to exit, killing those that do not within a few seconds.
pub(crate) fn reap_under(dir: &Path) {
    let mine: Vec<(PathBuf, Child)> = {
        let mut daemons = DAEMONS.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, rest) = daemons.drain(..).partition(|(t, _)| t.starts_with(dir));
        *daemons = rest;
        mine
    };
    for (_, mut child) in mine {
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether the mount at `target` is fuse-overlayfs's: its log is beside the mount point.
pub(crate) fn used_for(target: &Path) -> bool {
    target.with_extension("fuse-overlayfs.log").exists()
}

/// Rewrites the upper directory fuse-overlayfs left into what native overlayfs writes for the
/// same change, given the lowers it was mounted on (topmost first): whiteouts as 0:0 character
/// devices (not `.wh.NAME` files), opaque directories marked with [`opaque_xattr`] and nothing
/// else, and only where a lower has something at that path (fuse-overlayfs also marks every
/// new directory opaque; overlayfs only those made over a whiteout). Directory mtimes are kept.
pub(crate) fn normalize_upper(upper: &Path, lowers: &[PathBuf]) -> Result<(), ExecError> {
    normalize_dir(upper, &mut Vec::new(), lowers)
}

fn normalize_dir(dir: &Path, comps: &mut Vec<String>, lowers: &[PathBuf]) -> Result<(), ExecError> {
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    let mut opaque = has_xattr(dir, FUSE_OPAQUE_XATTR)
        || has_xattr(dir, "trusted.overlay.opaque")
        || has_xattr(dir, "user.overlay.opaque");
    let mut changed = false;
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        names.push(entry.map_err(io_err(dir))?.file_name().as_bytes().to_vec());
    }
    names.sort();
    for name in names {
        let path = dir.join(OsStr::from_bytes(&name));
        if FUSE_OPAQUE_ENTRIES.contains(&name.as_slice()) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            opaque = true;
            changed = true;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            // A whiteout as a file: the kernel's form is a 0:0 device under the name itself.
            // Where the file system refuses that device here (an overlayfs store, a kernel
            // before 5.8), which is why fuse-overlayfs wrote a file, the file stays: the layer
            // writer and fuse-overlayfs read it, and native overlayfs is not used there.
            let target = dir.join(OsStr::from_bytes(hidden));
            if fs::symlink_metadata(&target).is_err() {
                let made = rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &target,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                );
                match made {
                    Ok(()) => {
                        let entry = fs::symlink_metadata(&path).map_err(io_err(&path))?;
                        std::os::unix::fs::lchown(&target, Some(entry.uid()), Some(entry.gid()))
                            .map_err(io_err(&target))?;
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        changed = true;
                    }
                    Err(rustix::io::Errno::PERM) => {}
                    Err(e) => return Err(io_err(&target)(e.into())),
                }
            } else {
                fs::remove_file(&path).map_err(io_err(&path))?;
                changed = true;
            }
        } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            comps.push(String::from_utf8_lossy(&name).into_owned());
            normalize_dir(&path, comps, lowers)?;
            comps.pop();
        }
    }
    if !comps.is_empty() {
        for name in [
            FUSE_OPAQUE_XATTR,
            "trusted.overlay.opaque",
            "user.overlay.opaque",
        ] {
            if has_xattr(dir, name) {
                rustix::fs::lremovexattr(dir, name).map_err(|e| io_err(dir)(e.into()))?;
            }
        }
        if opaque && overlay::lookup(lowers, comps).is_some() {
            rustix::fs::lsetxattr(dir, opaque_xattr(), b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| io_err(dir)(e.into()))?;
        }
    }
    if changed {
        let mtime = fs::FileTimes::new().set_modified(meta.modified().map_err(io_err(dir))?);
        fs::File::open(dir)
            .and_then(|f| f.set_times(mtime))
            .map_err(io_err(dir))?;
    }
    Ok(())
}

fn has_xattr(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 4];
    rustix::fs::lgetxattr(path, name, &mut buf).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_takes_three_values_and_names_a_wrong_one() {
        assert_eq!(parse_choice("").unwrap(), Choice::Auto);
        assert_eq!(parse_choice("auto").unwrap(), Choice::Auto);
        assert_eq!(parse_choice("native").unwrap(), Choice::Native);
        assert_eq!(parse_choice("fuse").unwrap(), Choice::Fuse);
        let wrong = parse_choice("fuse-overlayfs").unwrap_err().to_string();
        assert!(
            wrong.contains("LAMINA_OVERLAY") && wrong.contains("fuse-overlayfs"),
            "{wrong}"
        );
    }

    #[test]
    fn only_a_kernel_refusal_falls_back() {
        use rustix::io::Errno;
        assert!(is_refusal(Errno::PERM) && is_refusal(Errno::INVAL) && is_refusal(Errno::NODEV));
        // A missing directory or a full disk is the mount's own error, not a refusal.
        assert!(!is_refusal(Errno::NOENT) && !is_refusal(Errno::NOSPC));
    }

    #[test]
    fn new_directories_lose_fuse_marks_and_replaced_ones_become_opaque() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        fs::create_dir_all(lower.join("replaced/old")).unwrap();
        fs::write(lower.join("gone"), "x").unwrap();
        for dir in ["replaced", "new"] {
            fs::create_dir_all(upper.join(dir)).unwrap();
            fs::write(upper.join(dir).join(".wh..wh..opq"), "").unwrap();
            fs::write(upper.join(dir).join("kept"), "k").unwrap();
        }
        fs::write(upper.join(".wh.gone"), "").unwrap();
        normalize_upper(&upper, std::slice::from_ref(&lower)).unwrap();
        let mut names: Vec<String> = fs::read_dir(upper.join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["kept"]);
        assert!(!has_xattr(&upper.join("new"), opaque_xattr()));
        assert!(!upper.join("replaced/.wh..wh..opq").exists());
        assert!(!upper.join(".wh.gone").exists());
        assert!(has_xattr(&upper.join("replaced"), opaque_xattr()));
        let gone = fs::symlink_metadata(upper.join("gone")).unwrap();
        assert!(overlay::is_whiteout(&gone), "{gone:?}");
    }
}
