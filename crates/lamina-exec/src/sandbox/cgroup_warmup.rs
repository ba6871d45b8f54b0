//! Lets the kernel's wait before runc's first cgroup move pass while the run is set up.
//!
//! `runc run` as root writes the container's pid into `cgroup.procs`. The kernel serialises
//! every such move with one system-wide semaphore, and the first writer after a quiet spell
//! waits out an RCU grace period before it gets it (8 ms on the benchmark machine, 15 ms seen
//! inside runc); writers that come within a grace period or so of the last one do not wait.
//! So a build's first RUN paid it inside runc, on the critical path. When a run starts
//! being set up, [`start`] moves this process, on a thread, into the cgroup it is already
//! in: the move changes nothing, and its wait passes beside the overlay mount and runc's
//! own start-up. The 11-instruction benchmark build went from 100 to 85 ms (median of 30
//! alternating `--no-cache` builds; docs/benchmarks-cold.md). Hosts that mount cgroups
//! with `favordynmods` have no such wait, and the move costs microseconds.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Starts the move on a thread; does nothing without a writable cgroup of this process
/// (no cgroup file system, not root) or in a user namespace, where runc sets no cgroups.
pub(crate) fn start() {
    if crate::rootless::in_user_namespace() {
        return;
    }
    static OWN_PROCS: OnceLock<Option<PathBuf>> = OnceLock::new();
    let Some(procs) = OWN_PROCS.get_or_init(own_cgroup_procs).clone() else {
        return;
    };
    std::thread::spawn(move || {
        let _ = move_into(&procs);
    });
}

/// Writes this process's pid into `procs`; never creates the file.
fn move_into(procs: &std::path::Path) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(procs)?;
    file.write_all(std::process::id().to_string().as_bytes())
}

/// The `cgroup.procs` file of the cgroup this process is in, in one mounted hierarchy: the
/// unified (v2) one when mounted, else the first v1 hierarchy found.
fn own_cgroup_procs() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let procs = cgroup_procs_paths(&cgroups, &mounts);
    procs.into_iter().find(|p| p.is_file())
}

/// Candidate `cgroup.procs` paths of the process whose `/proc/<pid>/cgroup` is `cgroups`,
/// from the mount table `mountinfo`, the unified hierarchy first.
fn cgroup_procs_paths(cgroups: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for line in cgroups.lines() {
        // "hierarchy-id:controllers:path"; v2 is "0::path".
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let unified = id == "0" && controllers.is_empty();
        for mount in mountinfo.lines() {
            let Some((root, mount_point, fs_type, super_options)) = mount_fields(mount) else {
                continue;
            };
            let serves = if unified {
                fs_type == "cgroup2"
            } else {
                fs_type == "cgroup"
                    && controllers
                        .split(',')
                        .all(|c| super_options.split(',').any(|o| o == c))
            };
            if !serves {
                continue;
            }
            // The mount shows the hierarchy from `root` down; a cgroup outside it is not
            // reachable through this mount.
            let Some(below) = below_root(path, root) else {
                continue;
            };
            let mut procs = PathBuf::from(mount_point);
            procs.extend(below.split('/').filter(|c| !c.is_empty()));
            procs.push("cgroup.procs");
            if unified {
                found.insert(0, procs);
            } else {
                found.push(procs);
            }
            break;
        }
    }
    found
}

/// A mountinfo line's root, mount point, file system type and super options. The mount
/// point is octal-escaped there (`\040` for a space); such mounts are skipped.
fn mount_fields(line: &str) -> Option<(&str, &str, &str, &str)> {
    let (before, after) = line.split_once(" - ")?;
    let mut before = before.split(' ');
    let root = before.nth(3)?;
    let mount_point = before.next()?;
    let mut after = after.split(' ');
    let fs_type = after.next()?;
    let super_options = after.nth(1)?;
    if mount_point.contains('\\') || root.contains('\\') {
        return None;
    }
    Some((root, mount_point, fs_type, super_options))
}

/// `path` relative to `root`, both absolute cgroup paths; `None` when it is not below it.
fn below_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:32 /docker/abc /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
38 31 0:33 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn the_unified_hierarchy_comes_first_and_v1_paths_follow_their_mounts() {
        let cgroups = "\
9:name=systemd:/
8:pids:/docker/abc/inner
4:memory:/process_api/x y
2:cpu,cpuacct:/
0::/user.slice
";
        let paths: Vec<String> = cgroup_procs_paths(cgroups, MOUNTINFO)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/unified/user.slice/cgroup.procs",
                "/sys/fs/cgroup/systemd/cgroup.procs",
                "/sys/fs/cgroup/pids/inner/cgroup.procs",
                "/sys/fs/cgroup/memory/process_api/x y/cgroup.procs",
                "/sys/fs/cgroup/cpu,cpuacct/cgroup.procs",
            ]
        );
    }

    #[test]
    fn a_cgroup_outside_the_mounted_root_or_a_controller_not_mounted_gives_no_path() {
        // pids is mounted from /docker/abc: /docker/abcd is not below it; blkio is not mounted.
        let cgroups = "8:pids:/docker/abcd\n7:blkio:/\n";
        assert!(cgroup_procs_paths(cgroups, MOUNTINFO).is_empty());
        assert_eq!(below_root("/docker/abc", "/docker/abc/"), Some(""));
        assert_eq!(below_root("/a", "/"), Some("/a"));
    }

    /// The move goes through (the tests run as root) and leaves the process in every cgroup it was in.
    #[test]
    fn the_move_leaves_this_process_where_it_was() {
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let procs = own_cgroup_procs().expect("a cgroup.procs file of this process");
        move_into(&procs).expect("writing this process's pid into its own cgroup (as root)");
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
        let pid = std::process::id().to_string();
        let members = std::fs::read_to_string(&procs).unwrap();
        assert!(
            members.lines().any(|l| l == pid),
            "{pid} in {}",
            procs.display()
        );
    }
}
