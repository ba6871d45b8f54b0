//! Lets the kernel's wait before runc's first cgroup move pass while the run is set up.
//!
//! `runc run` as root writes the container's pid into `cgroup.procs`. The kernel serialises
//! every move of a task it names by id with one system-wide semaphore, and the first writer
//! after a quiet spell waits out an RCU grace period before it gets it (8 ms on the benchmark
//! machine, 15 ms seen inside runc); writers that come within a grace period or so of the
//! last one do not wait. So a build's first RUN paid it inside runc, on the critical path.
//! When a run starts being set up, [`start`] starts a thread that moves itself, by its
//! thread id, into the cgroup it is already in (`tasks` in a v1 hierarchy,
//! `cgroup.threads` in v2): the move changes nothing and concerns only that thread, which
//! then ends, and its wait passes beside the overlay mount and runc's own start-up. The
//! 11-instruction benchmark build went from 100 to 85 ms (median of 30 alternating
//! `--no-cache` builds; docs/benchmarks-cold-rounds.md). Hosts that mount cgroups with
//! `favordynmods` have no such wait, and the move costs microseconds.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Starts the move on a thread (none in a user namespace, where runc sets no cgroups). The
/// thread reads where it is each time (the process may have been moved since the last run)
/// and gives up quietly when it cannot write there (not root, a read-only cgroup file
/// system).
pub(crate) fn start() {
    if crate::rootless::in_user_namespace() {
        return;
    }
    // No thread (a pids limit reached): runc waits, as before.
    let _ = std::thread::Builder::new()
        .name("lamina-cgroup".into())
        .spawn(|| {
            if let Some(tasks) = own_cgroup_tasks() {
                let _ = move_into(&tasks);
            }
        });
}

/// Writes the calling thread's id into `tasks`; never creates the file.
fn move_into(tasks: &Path) -> std::io::Result<()> {
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let mut file = OpenOptions::new().write(true).open(tasks)?;
    file.write_all(tid.to_string().as_bytes())
}

/// The file listing the threads of the cgroup this thread is in, in one mounted hierarchy:
/// the unified (v2) one when mounted, else the first v1 hierarchy found.
fn own_cgroup_tasks() -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string("/proc/thread-self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    cgroup_task_files(&cgroups, &mounts)
        .into_iter()
        .find(|p| p.is_file())
}

/// Candidate thread-list files (`cgroup.threads` in v2, `tasks` in v1) of the thread whose
/// `/proc/<pid>/task/<tid>/cgroup` is `cgroups`, from the mount table `mountinfo`, the
/// unified hierarchy first.
fn cgroup_task_files(cgroups: &str, mountinfo: &str) -> Vec<PathBuf> {
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
            let mut tasks = PathBuf::from(mount_point);
            tasks.extend(below.split('/').filter(|c| !c.is_empty()));
            if unified {
                tasks.push("cgroup.threads");
                found.insert(0, tasks);
            } else {
                tasks.push("tasks");
                found.push(tasks);
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

/// `path` relative to `root`, both absolute cgroup paths; `None` when it is not below it,
/// as a cgroup outside this process's cgroup namespace shows (`/../x`).
fn below_root<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if path.split('/').any(|c| c == ".." || c == ".") {
        return None;
    }
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
        let paths: Vec<String> = cgroup_task_files(cgroups, MOUNTINFO)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/sys/fs/cgroup/unified/user.slice/cgroup.threads",
                "/sys/fs/cgroup/systemd/tasks",
                "/sys/fs/cgroup/pids/inner/tasks",
                "/sys/fs/cgroup/memory/process_api/x y/tasks",
                "/sys/fs/cgroup/cpu,cpuacct/tasks",
            ]
        );
    }

    #[test]
    fn a_cgroup_outside_the_mounted_root_or_the_namespace_gives_no_path() {
        // pids is mounted from /docker/abc: /docker/abcd is not below it; blkio is not
        // mounted; a cgroup outside this process's cgroup namespace shows as `/../x`, which
        // must not resolve to a sibling hierarchy (`unified/../memory`).
        let cgroups = "8:pids:/docker/abcd\n7:blkio:/\n0::/../memory\n8:pids:/docker/abc/../x\n";
        assert!(cgroup_task_files(cgroups, MOUNTINFO).is_empty());
        assert_eq!(below_root("/docker/abc", "/docker/abc/"), Some(""));
        assert_eq!(below_root("/a", "/"), Some("/a"));
        assert_eq!(below_root("/a/./b", "/"), None);
    }

    /// The move goes through (the tests run as root), moves only the calling thread and
    /// leaves it, and the process, in every cgroup they were in.
    #[test]
    fn the_move_leaves_the_thread_where_it_was() {
        let thread_before = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
        let process_before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let tasks = own_cgroup_tasks().expect("a thread list of this thread's cgroup");
        move_into(&tasks).expect("writing this thread's id into its own cgroup (as root)");
        let thread_after = std::fs::read_to_string("/proc/thread-self/cgroup").unwrap();
        assert_eq!(thread_after, thread_before);
        let process_after = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(process_after, process_before);
        let tid = rustix::thread::gettid().as_raw_nonzero().get().to_string();
        let members = std::fs::read_to_string(&tasks).unwrap();
        assert!(
            members.lines().any(|l| l == tid),
            "{tid} in {}",
            tasks.display()
        );
    }
}
