//! The namespace's life and the errors without one: the kept namespace joined by later
//! commands, no subordinate ids, user namespaces disabled, a store the user cannot write.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{NO_SUBIDS_USER, Rootless, kept_pid};
/// The user namespace of process `pid`.
fn user_namespace(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap()
}

#[test]
fn later_commands_join_the_kept_namespace_and_a_wrong_one_is_replaced() {
    let Some(project) = Rootless::with(&[]) else {
        return;
    };
    project.ok(&["image", "ls"]);
    let kept = kept_pid(&project).expect("the first command keeps its namespace");
    assert_ne!(user_namespace(kept), user_namespace(std::process::id()));
    project.ok(&["build", "base", "--tag", "busybox:test"]);
    assert_eq!(kept_pid(&project), Some(kept), "joined, not made again");

    // A pid file naming a process outside any namespace of lamina's is not joined.
    let mut other = Command::new("setpriv")
        .arg(format!("--reuid={}", project.uid))
        .arg(format!("--regid={}", project.gid))
        .arg("--init-groups")
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-KILL", &kept.to_string()])
        .status();
    std::fs::write(
        project.path("run/lamina/userns.pid"),
        format!("{}\n", other.id()),
    )
    .unwrap();
    let listed = project.ok(&["image", "ls"]);
    assert!(listed.contains("busybox:test"), "{listed}");
    let _ = other.kill();
    let _ = other.wait();
    let new = kept_pid(&project).unwrap();
    assert_ne!(new, other.id());
    assert_ne!(user_namespace(new), user_namespace(std::process::id()));

    // A keeper of a namespace with other maps (as after the user's subordinate ids changed)
    // is ended and replaced: here `unshare -r` maps the user alone.
    let mut stale = Command::new("setpriv")
        .arg(format!("--reuid={}", project.uid))
        .arg(format!("--regid={}", project.gid))
        .arg("--init-groups")
        .args(["unshare", "--user", "--map-root-user", "sleep", "infinity"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read(format!("/proc/{}/cmdline", stale.id())).unwrap_or_default()
        != b"sleep\0infinity\0"
    {
        assert!(Instant::now() < deadline, "unshare never ran sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-KILL", &new.to_string()])
        .status();
    std::fs::write(
        project.path("run/lamina/userns.pid"),
        format!("{}\n", stale.id()),
    )
    .unwrap();
    project.ok(&["image", "ls"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ended = loop {
        if let Some(status) = stale.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = stale.kill();
            panic!("the stale keeper was left running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!ended.success(), "the stale keeper was killed: {ended:?}");
    assert_ne!(kept_pid(&project), Some(stale.id()));
}

#[test]
fn without_subordinate_ids_run_steps_say_how_to_add_them_and_the_rest_builds() {
    let Some(project) = Rootless::for_user(
        NO_SUBIDS_USER,
        false,
        &[("app/Dockerfile", "FROM busybox:test\nRUN echo hi > /x\n")],
    ) else {
        return;
    };
    // No RUN: builds without a namespace.
    let built = project.ok(&[
        "build",
        "base",
        "--tag",
        "busybox:test",
        "--progress",
        "plain",
    ]);
    assert!(built.contains("built sha256:"), "{built}");
    let err = project.err(&["build", "app", "--progress", "plain"]);
    assert!(
        err.contains(&format!(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {NO_SUBIDS_USER}"
        )),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one line: {err}");
}

#[test]
fn a_store_made_by_root_names_the_directory_the_user_cannot_write() {
    let Some(project) = Rootless::with(&[]) else {
        return;
    };
    let store = project.path("root-store");
    project.root_ok(&["build", "base", "--tag", "busybox:test"]);
    let shown = store.display().to_string();
    for args in [&["image", "ls"][..], &["cache", "gc"], &["build", "base"]] {
        let out = project.command_in(&store, args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{shown} is not writable by this user")),
            "{args:?}: {err}"
        );
    }
}

/// `lamina args..` as the project's user inside a user namespace the test makes (an identity
/// map of the first million ids, so the user and their subordinate ids exist there) whose
/// `user.max_user_namespaces` is 0: as on a host with user namespaces disabled.
fn run_where_user_namespaces_are_disabled(project: &Rootless, args: &[&str]) -> Output {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    // The first shell waits until its maps are written, then execs the second, which has
    // root's capabilities in the namespace from that exec on.
    let inner = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec setpriv --reuid={} --regid={} \
         --init-groups \"$@\"",
        project.uid, project.gid
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"read -r _ && exec sh -c "$0" sh "$@""#)
        .arg(inner)
        .arg(&project.lamina)
        .arg("--store")
        .arg(project.path("store"))
        .args(args)
        .current_dir(project.dir.path())
        .env("HOME", project.dir.path())
        .env("XDG_RUNTIME_DIR", project.path("run"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: unshare is async-signal-safe; the forked child is single-threaded.
    unsafe {
        cmd.pre_exec(|| {
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    for map in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{}/{map}", child.id()), "0 0 1000000\n").unwrap();
    }
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn with_user_namespaces_disabled_run_steps_name_the_sysctl_and_the_rest_builds() {
    let Some(project) = Rootless::with(&[("app/Dockerfile", "FROM busybox:test\nRUN true\n")])
    else {
        return;
    };
    let base = run_where_user_namespaces_are_disabled(
        &project,
        &[
            "build",
            "base",
            "--tag",
            "busybox:test",
            "--progress",
            "plain",
        ],
    );
    assert!(
        base.status.success(),
        "a COPY-only build: {}",
        String::from_utf8_lossy(&base.stderr)
    );
    let app = run_where_user_namespaces_are_disabled(&project, &["build", "app"]);
    let err = String::from_utf8_lossy(&app.stderr);
    assert!(!app.status.success(), "{err}");
    assert!(
        err.contains("cannot create a user namespace")
            && err.contains("sysctl -w user.max_user_namespaces="),
        "{err}"
    );
}
