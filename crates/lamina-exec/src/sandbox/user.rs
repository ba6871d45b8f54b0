//! Resolving a step's `USER` against the rootfs's `/etc/passwd` and `/etc/group`, as Docker
//! does: names are looked up, numbers are taken as they are, supplementary groups come from
//! group membership.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::ExecError;

/// The process identity of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when there is none).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// Reads a file of the rootfs, resolving symlinks inside it; a missing file reads as empty.
fn read_in_root(rootfs: &Path, path: &str) -> Result<String, ExecError> {
    let io = |source: std::io::Error| ExecError::Io {
        path: rootfs.join(path),
        source,
    };
    let root: OwnedFd = std::fs::File::open(rootfs).map_err(io)?.into();
    let fd = match rustix::fs::openat2(
        &root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(io(e.into())),
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text)
}

fn passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).copied().unwrap_or("/").to_owned(),
            })
        })
        .collect()
}

/// `(name, gid, members)` of each group.
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some(((*f.first()?).to_owned(), f.get(2)?.parse().ok()?, members))
        })
        .collect()
}

/// Resolves `user` (`name`, `uid`, `uid:gid`, `name:group`; `None` is root) in `rootfs`.
pub(crate) fn resolve(user: Option<&str>, rootfs: &Path) -> Result<Identity, ExecError> {
    let spec = user.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("0");
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let fail = |reason: String| ExecError::UnknownUser {
        user: spec.to_owned(),
        reason,
    };
    let users = passwd(&read_in_root(rootfs, "etc/passwd")?);
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == uid),
        Err(_) => Some(users.iter().find(|e| e.name == user_part).ok_or_else(|| {
            fail(format!(
                "no user `{user_part}` in the image's /etc/passwd; create it in an earlier step or use a numeric uid"
            ))
        })?),
    };
    let uid = entry.map_or_else(|| user_part.parse().unwrap_or(0), |e| e.uid);
    let all_groups = groups(&read_in_root(rootfs, "etc/group")?);
    let gid = match group_part {
        None => entry.map_or(0, |e| e.gid),
        Some("") => return Err(fail("the group after `:` is empty".into())),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => all_groups
                .iter()
                .find(|(name, _, _)| name == g)
                .map(|(_, gid, _)| *gid)
                .ok_or_else(|| {
                    fail(format!(
                        "no group `{g}` in the image's /etc/group; create it in an earlier step or use a numeric gid"
                    ))
                })?,
        },
    };
    let mut additional_gids: Vec<u32> = match entry {
        Some(e) => all_groups
            .iter()
            .filter(|(_, g, members)| *g != gid && members.contains(&e.name))
            .map(|(_, g, _)| *g)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
        home: entry.map_or_else(|| "/".to_owned(), |e| e.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\nstaff:x:50:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let r = rootfs();
        let app = resolve(Some("app"), r.path()).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![10]);
        let root = resolve(None, r.path()).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let named_group = resolve(Some("app:staff"), r.path()).unwrap();
        assert_eq!((named_group.uid, named_group.gid), (1000, 50));
        let numeric = resolve(Some("4242:7"), r.path()).unwrap();
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 7, "/")
        );
        assert_eq!(resolve(Some("1000"), r.path()).unwrap().gid, 1000);
    }

    #[test]
    fn unknown_names_are_errors_that_name_the_user() {
        let r = rootfs();
        let err = resolve(Some("ghost"), r.path()).unwrap_err().to_string();
        assert!(
            err.contains("ghost") && err.contains("/etc/passwd"),
            "{err}"
        );
        let err = resolve(Some("app:nogroup"), r.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("nogroup"), "{err}");
    }

    #[test]
    fn a_symlinked_passwd_resolves_inside_the_root() {
        let r = rootfs();
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        // Absolute: must resolve to the rootfs's own file, never the host's.
        std::os::unix::fs::symlink("/etc/real-passwd", r.path().join("etc/passwd")).unwrap();
        std::fs::write(
            r.path().join("etc/real-passwd"),
            "zed:x:77:77::/z:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(resolve(Some("zed"), r.path()).unwrap().uid, 77);
    }
}
