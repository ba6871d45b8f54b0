//! Overlayfs: the per-run rootfs mount, the scaffold lower directory that provides mount points
//! the image lacks, and unmounting everything below a directory.
//!
//! runc creates a missing mount point (say `/etc/resolv.conf` in a scratch image) in the
//! rootfs, which would put it in the upper directory and so in the layer. Instead, every mount
//! point the lowers lack is created in a per-run *scaffold* directory stacked as the topmost
//! lower: runc finds it, the upper stays untouched. Scaffold directories copy the owner, mode
//! and mtime of the directory they cover, so the merged view looks like the image.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::mount::{MountFlags, UnmountFlags};

use super::fsutil::{container_components, io_err};
use super::layers::opaque_xattr;
use crate::ExecError;

/// A mount point the container needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Absolute path in the container.
    pub path: String,
    /// A directory (else a file).
    pub dir: bool,
}

impl Target {
    pub(crate) fn dir(path: &str) -> Self {
        Target {
            path: path.to_owned(),
            dir: true,
        }
    }

    pub(crate) fn file(path: &str) -> Self {
        Target {
            path: path.to_owned(),
            dir: false,
        }
    }
}

pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether `dir` holds fuse-overlayfs's whiteout of `name`, an empty `.wh.NAME` file (in
/// stores where a user namespace cannot make the 0:0 device, see `fuse::normalize_upper`).
pub(crate) fn is_file_whiteout(dir: &Path, name: &std::ffi::OsStr) -> bool {
    let mut marker = std::ffi::OsString::from(".wh.");
    marker.push(name);
    fs::symlink_metadata(dir.join(marker)).is_ok_and(|m| m.is_file() && m.len() == 0)
}

pub(crate) fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(path, opaque_xattr(), &mut buf), Ok(1) if buf[0] == b'y')
}

/// What overlayfs shows at `comps` for the lowers `lowers` (topmost first): the metadata and
/// host path of the topmost entry, honouring whiteouts and opaque directories.
pub(crate) fn lookup(lowers: &[PathBuf], comps: &[String]) -> Option<(fs::Metadata, PathBuf)> {
    let mut layers: Vec<&PathBuf> = lowers.iter().collect();
    let mut top = None;
    for i in 0..comps.len() {
        let mut next = Vec::new();
        top = None;
        for layer in &layers {
            // Earlier components are real directories in `layer`, so no host symlink is
            // followed on the way.
            let path = comps[..=i].iter().fold((*layer).clone(), |p, c| p.join(c));
            let Ok(meta) = fs::symlink_metadata(&path) else {
                let parent = comps[..i].iter().fold((*layer).clone(), |p, c| p.join(c));
                if is_file_whiteout(&parent, comps[i].as_ref()) {
                    break;
                }
                continue;
            };
            if is_whiteout(&meta) {
                break;
            }
            let dir = meta.is_dir();
            if top.is_none() {
                top = Some((meta, path.clone()));
            }
            if !dir {
                break;
            }
            next.push(*layer);
            if is_opaque(&path) {
                break;
            }
        }
        let (meta, _) = top.as_ref()?;
        if i + 1 < comps.len() && !meta.is_dir() {
            return None;
        }
        layers = next;
    }
    top
}

/// Resolves symlinks in the container path `comps` through the merged lowers, confined to the
/// root as runc resolves mount destinations. Missing tails are kept as they are.
pub(crate) fn resolve(lowers: &[PathBuf], comps: &[&str]) -> Vec<String> {
    let mut todo: Vec<String> = comps.iter().rev().map(|c| (*c).to_owned()).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            done.pop();
            continue;
        }
        done.push(comp);
        let Some((meta, path)) = lookup(lowers, &done) else {
            continue;
        };
        if !meta.file_type().is_symlink() || hops >= 40 {
            continue;
        }
        hops += 1;
        let Ok(link) = fs::read_link(&path) else {
            continue;
        };
        done.pop();
        let link = link.to_string_lossy().into_owned();
        if link.starts_with('/') {
            done.clear();
        }
        todo.extend(
            link.split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .rev()
                .map(str::to_owned),
        );
    }
    done
}

/// Fills `scaffold` with the mount points of `targets` that the merged `lowers` (topmost first)
/// lack or have with the wrong type.
pub(crate) fn build_scaffold(
    scaffold: &Path,
    lowers: &[PathBuf],
    targets: &[Target],
) -> Result<(), ExecError> {
    for target in targets {
        let Some(comps) = container_components(&target.path) else {
            return Err(ExecError::UnusablePath {
                path: PathBuf::from(&target.path),
                reason: "mount targets must be absolute paths without `..`".into(),
            });
        };
        let comps = resolve(lowers, &comps);
        if comps.is_empty() {
            continue; // the root itself
        }
        let fits = lookup(lowers, &comps)
            .is_some_and(|(m, _)| if target.dir { m.is_dir() } else { m.is_file() });
        if fits {
            continue;
        }
        for k in 1..=comps.len() {
            let path = comps[..k]
                .iter()
                .fold(scaffold.to_path_buf(), |p, c| p.join(c));
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            if k < comps.len() || target.dir {
                fs::create_dir(&path).map_err(io_err(&path))?;
                if let Some((meta, _)) = lookup(lowers, &comps[..k]).filter(|(m, _)| m.is_dir()) {
                    copy_dir_meta(&path, &meta)?;
                }
            } else {
                fs::write(&path, b"").map_err(io_err(&path))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn copy_dir_meta(path: &Path, meta: &fs::Metadata) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid())).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err(path))?;
    let mtime = fs::FileTimes::new().set_modified(meta.modified().map_err(io_err(path))?);
    fs::File::open(path)
        .and_then(|f| f.set_times(mtime))
        .map_err(io_err(path))
}

fn option_path(path: &Path) -> Result<&str, ExecError> {
    let unusable = |reason: &str| ExecError::UnusablePath {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let s = path
        .to_str()
        .ok_or_else(|| unusable("not UTF-8; use a work directory with a plain path"))?;
    if s.contains([',', ':', '\\', '\n']) {
        return Err(unusable(
            "contains `,`, `:` or `\\`, which overlayfs options cannot hold; use a work directory with a plain path",
        ));
    }
    Ok(s)
}

/// Set once the kernel refused the `volatile` overlay option.
static VOLATILE_REFUSED: AtomicBool = AtomicBool::new(false);

/// Mounts an overlay of `lowers` (topmost first, at least one) with `upper` and `work` on
/// `target`. `redirect_dir` and `metacopy` stay off so the upper directory is a plain
/// description of the change (see `LayerWriter::write_overlay_upper`).
pub(crate) fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ExecError> {
    let lower = lowers
        .iter()
        .map(|p| option_path(p))
        .collect::<Result<Vec<_>, _>>()?
        .join(":");
    // In a user namespace overlayfs can only keep its attributes under `user.overlay.*`, and
    // then takes `nofollow` for "no redirects" (it refuses `off` beside `userxattr`).
    let (redirect, userxattr) = if crate::rootless::in_user_namespace() {
        ("nofollow", ",userxattr")
    } else {
        ("off", "")
    };
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={},redirect_dir={redirect},metacopy=off,index=off{userxattr}",
        option_path(upper)?,
        option_path(work)?
    );
    // `volatile` (Linux 5.10): no sync at unmount. Without it the unmount syncs the whole
    // file system under the upper directory (every process's dirty data on it), yet most
    // upper directories are thrown away (a RUN that changed nothing, a layer the store has)
    // and the one kept as a layer's tree is synced when adopted (`LayerCache::adopt_then`).
    let volatile = !VOLATILE_REFUSED.load(Ordering::Relaxed);
    let data = if volatile { data + ",volatile" } else { data };
    // The kernel takes the options in one page.
    if data.len() >= 4000 {
        return Err(ExecError::UnusablePath {
            path: target.to_path_buf(),
            reason: format!(
                "{} layers make overlay options too long; squash the base image or use a shorter work directory",
                lowers.len()
            ),
        });
    }
    let data = CString::new(data).map_err(|_| ExecError::UnusablePath {
        path: target.to_path_buf(),
        reason: "path holds a NUL byte".into(),
    })?;
    // In a user namespace a kernel may refuse overlayfs (before 5.11, or a distribution's
    // policy): fuse-overlayfs takes over there, or always with `LAMINA_OVERLAY=fuse`.
    let fuse_mount = |refusal: &str| {
        super::fuse::mount(
            &lower,
            option_path(upper)?,
            option_path(work)?,
            target,
            refusal,
        )
    };
    if !userxattr.is_empty() && super::fuse::fuse_first()? {
        let reason = match super::fuse::choice()? {
            super::fuse::Choice::Fuse => format!("{} is `fuse`", super::fuse::OVERLAY_ENV),
            _ => "the kernel refused overlayfs in a user namespace".to_owned(),
        };
        return fuse_mount(&reason);
    }
    let mut mounted =
        rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), &*data);
    if volatile && mounted == Err(rustix::io::Errno::INVAL) {
        // A kernel before 5.10 (if the option is what it refused): the unmount syncs, as it
        // always did.
        let plain = data
            .to_bytes()
            .strip_suffix(b",volatile")
            .unwrap_or(data.to_bytes());
        let plain = CString::new(plain).expect("came from a CString");
        mounted = rustix::mount::mount("overlay", target, "overlay", MountFlags::empty(), &*plain);
        if mounted.is_ok() {
            VOLATILE_REFUSED.store(true, Ordering::Relaxed);
        }
    }
    match mounted {
        Ok(()) => Ok(()),
        Err(errno) if !userxattr.is_empty() && super::fuse::falls_back(errno)? => fuse_mount(
            &format!("the kernel refused overlayfs in a user namespace ({errno})"),
        ),
        Err(e) => {
            let what = if userxattr.is_empty() {
                "overlayfs".into()
            } else if super::fuse::choice()? == super::fuse::Choice::Native {
                format!(
                    "overlayfs in a user namespace (rootless; {}=native turns the fuse-overlayfs \
                     fallback off: unset it, or run lamina as root)",
                    super::fuse::OVERLAY_ENV
                )
            } else {
                "overlayfs in a user namespace (rootless)".into()
            };
            Err(ExecError::Mount {
                what,
                target: target.to_path_buf(),
                source: e.into(),
            })
        }
    }
}

/// Mounts a throwaway writable overlay of the host directory `source` below `base`
/// (`upper/`, `work/`, `merged/`) and returns the merged directory.
pub(crate) fn mount_throwaway(source: &Path, base: &Path) -> Result<PathBuf, ExecError> {
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    for dir in [&upper, &work, &merged] {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    mount_overlay(&[source.to_path_buf()], &upper, &work, &merged)?;
    Ok(merged)
}

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
pub(crate) fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, ExecError> {
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).map_err(io_err(info))?;
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| b.get(j).is_some_and(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal(i + 1) && octal(i + 2) && octal(i + 3) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or below `dir` (lazily if busy) and checks nothing is left, so the
/// directory can be removed without reaching into a mounted file system.
pub(crate) fn unmount_all_under(dir: &Path) -> Result<(), ExecError> {
    for _ in 0..3 {
        let mounts = mounts_under(dir)?;
        if mounts.is_empty() {
            super::fuse::reap_under(dir);
            return Ok(());
        }
        for m in mounts {
            if rustix::mount::unmount(&m, UnmountFlags::empty()).is_err()
                && rustix::mount::unmount(&m, UnmountFlags::DETACH).is_err()
            {
                // A fuse mount this namespace does not own (made through the setuid
                // fusermount3): its helper may unmount it.
                let _ = std::process::Command::new("fusermount3")
                    .args(["-u", "-z"])
                    .arg(&m)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        super::fuse::reap_under(dir);
    }
    match mounts_under(dir)?.into_iter().next() {
        None => Ok(()),
        Some(target) => Err(ExecError::Mount {
            what: "unmounting".into(),
            target,
            source: std::io::Error::other("still mounted after unmounting; unmount it by hand"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowers(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = (0..n)
            .map(|i| tmp.path().join(i.to_string()))
            .collect::<Vec<_>>();
        for d in &dirs {
            fs::create_dir(d).unwrap();
        }
        (tmp, dirs)
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn lookup_takes_the_topmost_entry_and_stops_at_non_directories() {
        let (_t, l) = lowers(2);
        fs::create_dir_all(l[1].join("etc")).unwrap();
        fs::write(l[1].join("etc/hosts"), "x").unwrap();
        fs::create_dir_all(l[0].join("etc")).unwrap();
        assert!(lookup(&l, &s(&["etc", "hosts"])).unwrap().0.is_file());
        assert!(lookup(&l, &s(&["etc", "nope"])).is_none());
        // A file on top hides the directory below.
        fs::remove_dir(l[0].join("etc")).unwrap();
        fs::write(l[0].join("etc"), "file").unwrap();
        assert!(lookup(&l, &s(&["etc", "hosts"])).is_none());
    }

    #[test]
    fn resolve_follows_symlinks_inside_the_root() {
        let (_t, l) = lowers(1);
        fs::create_dir_all(l[0].join("run")).unwrap();
        fs::create_dir_all(l[0].join("var")).unwrap();
        std::os::unix::fs::symlink("../run", l[0].join("var/run")).unwrap();
        std::os::unix::fs::symlink("/../../etc", l[0].join("escape")).unwrap();
        assert_eq!(resolve(&l, &["var", "run", "x"]), s(&["run", "x"]));
        assert_eq!(resolve(&l, &["escape", "y"]), s(&["etc", "y"]));
    }

    #[test]
    fn the_scaffold_holds_only_missing_mount_points_with_the_image_metadata() {
        use std::os::unix::fs::PermissionsExt;
        let (t, l) = lowers(1);
        fs::create_dir(l[0].join("etc")).unwrap();
        fs::set_permissions(l[0].join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(l[0].join("etc/hosts"), "x").unwrap();
        let scaffold = t.path().join("scaffold");
        fs::create_dir(&scaffold).unwrap();
        let targets = [
            Target::file("/etc/hosts"),
            Target::file("/etc/resolv.conf"),
            Target::dir("/proc"),
        ];
        build_scaffold(&scaffold, &l, &targets).unwrap();
        assert!(!scaffold.join("etc/hosts").exists());
        assert!(scaffold.join("etc/resolv.conf").is_file());
        assert!(scaffold.join("proc").is_dir());
        let mode = fs::metadata(scaffold.join("etc")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750);
    }

    /// The overlay is mounted `volatile` (its unmount syncs nothing) and shows the lowers
    /// and the writes that reach the upper directory (the tests run as root).
    #[test]
    fn an_overlay_is_mounted_volatile_and_writes_reach_the_upper_directory() {
        let (tmp, l) = lowers(1);
        fs::write(l[0].join("base"), "lower").unwrap();
        let [upper, work, target] = ["upper", "work", "merged"].map(|d| tmp.path().join(d));
        for d in [&upper, &work, &target] {
            fs::create_dir(d).unwrap();
        }
        mount_overlay(&l, &upper, &work, &target).expect("mounting an overlay (as root)");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .find(|line| line.split(' ').nth(4) == target.to_str())
            .expect("the overlay in mountinfo")
            .to_owned();
        fs::write(target.join("new"), "upper").unwrap();
        assert_eq!(fs::read_to_string(target.join("base")).unwrap(), "lower");
        unmount_all_under(&target).unwrap();
        let super_options = line.rsplit(' ').next().unwrap();
        assert!(
            // Newer kernels show the option as `fsync=volatile`.
            super_options
                .split(',')
                .any(|o| o == "volatile" || o == "fsync=volatile"),
            "{super_options}"
        );
        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "upper");
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape(r"/plain\04"), r"/plain\04");
    }
}
