//! What a killed `lamina` leaves behind: its RUN's container dies with it (a watchdog deletes
//! it), and the next command reclaims its run directory, overlay mounts and staging trees.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::build::Project;
use crate::support::write_tree;

/// The ids of the containers in runc's state directory of the store.
fn containers(store: &Path) -> Vec<String> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(store.join("exec/runc"))
        .args(["list", "-q"])
        .output()
        .expect("runc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Mount points below `dir`, from this process's mount table.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Runs `cache gc` on the project's store when dropped, so that a failing assertion leaves no
/// container or mount behind (its temporary directory could not be removed with them).
struct ReclaimOnDrop<'p>(&'p Project);

impl Drop for ReclaimOnDrop<'_> {
    fn drop(&mut self) {
        let store = self.0.store();
        let _ = crate::support::lamina(
            self.0.dir.path(),
            &["--store", store.to_str().unwrap_or_default(), "cache", "gc"],
        );
    }
}

#[test]
fn a_killed_build_takes_its_container_along_and_the_next_command_reclaims_the_rest() {
    let Some(project) = Project::with(&[(
        "slow/Dockerfile",
        "FROM busybox:test\nRUN echo \"$((6 * 7))-up\" && sleep 60\n",
    )]) else {
        return;
    };
    let _reclaim = ReclaimOnDrop(&project);
    let store = project.store();
    // The tag names an image already; the killed rebuild must not leave it "building".
    write_tree(
        project.dir.path(),
        &[("quick/Dockerfile", "FROM busybox:test\nENV A=1\n")],
    );
    project.ok(&["build", "quick", "--tag", "slow:1", "--progress", "plain"]);
    let mut build = project.spawn(&["build", "slow", "--tag", "slow:1", "--progress", "plain"]);
    let mut lines = BufReader::new(build.stderr.take().unwrap()).lines();
    // The RUN's own output (the step's header shows the command, not this).
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("42-up"));
    assert!(started, "the RUN step never started");
    assert_eq!(containers(&store).len(), 1, "the RUN's container runs");
    build.kill().unwrap(); // SIGKILL: no cleanup code of lamina's runs
    build.wait().unwrap();

    // The container is gone within seconds, without any other command.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !containers(&store).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        containers(&store),
        Vec::<String>::new(),
        "the container outlived lamina"
    );
    let runs = store.join("exec/runs");
    assert_eq!(
        std::fs::read_dir(&runs).unwrap().count(),
        1,
        "its run dir is left"
    );
    assert!(!mounts_below(&runs).is_empty(), "and its overlay mount");

    // The next command that opens the store reclaims the run dir and its mounts.
    let gc: serde_json::Value =
        serde_json::from_str(&project.ok(&["cache", "gc", "--json"])).unwrap();
    assert_eq!(gc["leftover_runs_removed"], 1, "{gc}");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
    assert_eq!(mounts_below(&store), Vec::<String>::new());
    // Its tag reads as failed (interrupted), not as building forever.
    let listing: serde_json::Value =
        serde_json::from_str(&project.ok(&["image", "ls", "--json"])).unwrap();
    let row = listing
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "slow:1"))
        .unwrap_or_else(|| panic!("slow:1 not listed: {listing}"));
    assert_eq!(row["state"], "build_failed", "{row}");
}

#[test]
fn a_build_killed_mid_copy_leaves_no_staging_tree_after_the_next_command() {
    // 5,000 files: enough that the staging tree is seen before the COPY ends.
    let mut files: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("many/src/d{}/f{i}", i % 50), "x".repeat(2000)))
        .collect();
    files.push((
        "many/Dockerfile".into(),
        "FROM busybox:test\nCOPY src /src\n".into(),
    ));
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (&a[..], &b[..])).collect();
    let Some(project) = Project::with(&files) else {
        return;
    };
    let tmp = project.store().join("exec/tmp");
    let mut build = project.spawn(&["build", "many", "--progress", "plain"]);
    // Killed as soon as its staging tree exists: mid-COPY.
    let deadline = Instant::now() + Duration::from_secs(60);
    let staging = || {
        std::fs::read_dir(&tmp).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("copy-")))
        })
    };
    while !staging() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(staging(), "the COPY never staged");
    build.kill().unwrap();
    build.wait().unwrap();
    assert!(staging(), "the killed build left its staging tree");

    project.ok(&["image", "ls"]);
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left after the next command: {left:?}");
}

#[test]
fn runs_that_end_leave_no_container_state_behind() {
    // `runc run` destroys its container when it ends by itself, so lamina deletes it only
    // when runc did not: whatever the step's outcome, runc's state directory is left empty.
    let Some(project) = Project::with(&[
        (
            "ok/Dockerfile",
            "FROM busybox:test\nRUN echo one > /one\nRUN true\n",
        ),
        ("fails/Dockerfile", "FROM busybox:test\nRUN exit 3\n"),
    ]) else {
        return;
    };
    let _reclaim = ReclaimOnDrop(&project);
    let store = project.store();
    let state_entries = || -> Vec<String> {
        std::fs::read_dir(store.join("exec/runc"))
            .map(|dir| {
                dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    project.ok(&["build", "ok", "--tag", "ok:1", "--progress", "plain"]);
    assert_eq!(containers(&store), Vec::<String>::new());
    assert_eq!(state_entries(), Vec::<String>::new());
    let failed = project.err(&["build", "fails", "--tag", "fails:1", "--progress", "plain"]);
    assert!(failed.contains("exit code 3"), "{failed}");
    assert_eq!(state_entries(), Vec::<String>::new());
    assert_eq!(mounts_below(&store), Vec::<String>::new());
}
