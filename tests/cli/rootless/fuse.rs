//! The fuse-overlayfs fallback (`LAMINA_OVERLAY=fuse` forces it, as a kernel refusing
//! overlayfs in a user namespace would): the same image digests as native overlayfs and as
//! root, the build output says so, and a killed build leaves no daemon and nothing on disk.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{APP, Rootless, build_both, containers};
use crate::require::Need::Tool;
use crate::support::digest_of;

/// fuse-overlayfs, and a `/dev/fuse` the user may open (udev makes it 0666; `.ci/test` too).
fn fuse_missing() -> bool {
    if crate::require::missing(&[Tool("fuse-overlayfs"), Tool("fusermount3")]) {
        return true;
    }
    let mode = std::fs::metadata("/dev/fuse")
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    assert_eq!(
        mode & 0o006,
        0o006,
        "/dev/fuse must exist and be readable and writable by every user (chmod 0666 /dev/fuse, \
         as udev does; inside a container, pass --device /dev/fuse)"
    );
    false
}

/// `lamina --store <dir>/fuse-store args..` as the user with `LAMINA_OVERLAY=fuse`.
fn fuse_command(project: &Rootless, args: &[&str]) -> Command {
    let mut cmd = project.command_in(&project.path("fuse-store"), args);
    cmd.env("LAMINA_OVERLAY", "fuse");
    cmd
}

fn fuse_ok(project: &Rootless, args: &[&str]) -> Output {
    let out = fuse_command(project, args).output().unwrap();
    assert!(
        out.status.success(),
        "LAMINA_OVERLAY=fuse lamina {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Pids of fuse-overlayfs processes serving a directory of `project`.
fn daemons(project: &Rootless) -> Vec<u32> {
    let dir = project.dir.path().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.starts_with("fuse-overlayfs") && cmdline.contains(&dir)
        })
        .collect()
}

#[test]
fn fuse_overlayfs_gives_the_image_native_overlayfs_and_root_give_and_says_so() {
    if fuse_missing() {
        return;
    }
    let Some(project) = Rootless::with(&[
        ("app/Dockerfile", APP),
        ("app/data/a.txt", "alpha\n"),
        ("token.txt", "s3cret\n"),
    ]) else {
        return;
    };
    let secret = format!("id=token,src={}", project.path("token.txt").display());
    let [native, rootful] = build_both(&project, "app", "app:1", &["--secret", &secret]);
    assert_eq!(native, rootful, "native rootless and root");

    let progress = ["--progress", "plain"];
    fuse_ok(
        &project,
        &[&["build", "base", "--tag", "busybox:test"][..], &progress].concat(),
    );
    let args = [
        &["build", "app", "--tag", "app:1", "--secret", &secret][..],
        &progress,
    ]
    .concat();
    let built = fuse_ok(&project, &args);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert_eq!(
        digest_of(&String::from_utf8_lossy(&built.stdout)),
        native,
        "fuse-overlayfs and native overlayfs give the same image: {stderr}"
    );
    let notices = stderr.matches("RUN steps use fuse-overlayfs").count();
    assert_eq!(notices, 1, "said once, naming fuse-overlayfs: {stderr}");
    assert!(stderr.contains("slower"), "{stderr}");
    assert!(daemons(&project).is_empty(), "every fuse-overlayfs ended");
    assert_eq!(
        std::fs::read_dir(project.path("fuse-store/exec/runs"))
            .unwrap()
            .count(),
        0,
        "no run directory left"
    );

    // A step on top of the fuse-made layers (their unpacked copies are lowers now) sees the
    // whiteout and the opaque directory as native overlayfs would.
    std::fs::write(
        project.path("app/Dockerfile"),
        format!(
            "{APP}RUN test ! -e /etc/lower.txt && test ! -e /etc/d/sub && test -f /etc/d/n \
             && test -f /made.txt\n"
        ),
    )
    .unwrap();
    project.give_to_user();
    let on_top = fuse_ok(&project, &args);
    let native_on_top = digest_of(&project.ok(&args));
    assert_eq!(
        digest_of(&String::from_utf8_lossy(&on_top.stdout)),
        native_on_top
    );
}

#[test]
fn a_killed_build_on_fuse_overlayfs_leaves_nothing_after_the_next_command() {
    if fuse_missing() {
        return;
    }
    let Some(project) = Rootless::with(&[(
        "slow/Dockerfile",
        "FROM busybox:test\nARG PAUSE=61\nRUN echo \"$((6 * 7))-up\" && sleep $PAUSE\n",
    )]) else {
        return;
    };
    fuse_ok(&project, &["build", "base", "--tag", "busybox:test"]);
    let store = project.path("fuse-store");
    let mut build = fuse_command(&project, &["build", "slow", "--progress", "plain"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(build.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("42-up"));
    assert!(started, "the RUN step never started");
    assert_eq!(
        daemons(&project).len(),
        1,
        "the RUN's rootfs is fuse-overlayfs"
    );
    build.kill().unwrap();
    build.wait().unwrap();
    let gone = |what: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        what()
    };
    assert!(
        gone(&|| daemons(&project).is_empty()),
        "fuse-overlayfs outlived lamina"
    );
    assert!(
        gone(&|| containers(&store).is_empty()),
        "the container outlived lamina"
    );
    let runs = store.join("exec/runs");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 1, "its run dir");

    fuse_ok(
        &project,
        &["build", "slow", "--tag", "slow:1", "--build-arg", "PAUSE=0"],
    );
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
    assert!(daemons(&project).is_empty());
    assert!(containers(&store).is_empty());
    assert!(no_mount_under(&store), "a mount is left below the store");
}

/// Nothing of the host's mount table lies below `dir`.
fn no_mount_under(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    !info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.starts_with(dir.as_ref()))
}

/// An overlayfs mount root makes in the test's directory, unmounted when dropped: a store on
/// it is what a rootless build inside a container whose root is overlayfs gets.
struct OverlayStore {
    merged: std::path::PathBuf,
}

impl OverlayStore {
    fn new(project: &Rootless) -> OverlayStore {
        let base = project.path("ovl");
        let (lower, upper, work, merged) = (
            base.join("lower"),
            base.join("upper"),
            base.join("work"),
            base.join("merged"),
        );
        for dir in [&lower, &upper, &work, &merged] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t overlay {options}");
        let store = OverlayStore { merged };
        project.give_to_user();
        store
    }
}

impl Drop for OverlayStore {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

#[test]
fn a_store_on_overlayfs_falls_back_by_itself_and_gives_the_same_images() {
    if fuse_missing() {
        return;
    }
    let Some(project) = Rootless::with(&[
        ("app/Dockerfile", APP),
        ("app/data/a.txt", "alpha\n"),
        ("token.txt", "s3cret\n"),
        (
            "on-top/Dockerfile",
            "FROM app:1\nRUN test ! -e /etc/lower.txt && test ! -e /etc/d/sub && test -f /etc/d/n \
             && echo ok > /checked\n",
        ),
    ]) else {
        return;
    };
    let overlay = OverlayStore::new(&project);
    let store = overlay.merged.join("store");
    let secret = format!("id=token,src={}", project.path("token.txt").display());
    let base = ["build", "base", "--tag", "busybox:test"];
    let app = [
        "build",
        "app",
        "--tag",
        "app:1",
        "--progress",
        "plain",
        "--secret",
        &secret,
    ];
    let on_top = ["build", "on-top", "--tag", "on-top:1"];
    let in_overlay = |args: &[&str]| {
        let out = project.command_in(&store, args).output().unwrap();
        assert!(
            out.status.success(),
            "lamina {args:?} on an overlayfs store: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    // The kernel refuses an overlayfs upper directory on overlayfs: no setting needed.
    in_overlay(&base);
    let built = in_overlay(&app);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(
        stderr.contains("RUN steps use fuse-overlayfs")
            && stderr.contains("the kernel refused overlayfs in a user namespace"),
        "{stderr}"
    );
    project.ok(&base);
    let native = digest_of(&project.ok(&app));
    assert_eq!(digest_of(&String::from_utf8_lossy(&built.stdout)), native);

    // The same image imported (its layers unpacked where a 0:0 device cannot be made) and
    // built on: the whiteout and the opaque directory hold.
    let archive = project.path("app.tar");
    project.ok(&["image", "export", "app:1", "-o", archive.to_str().unwrap()]);
    let import = ["image", "import", archive.to_str().unwrap(), "app:1"];
    // Into a new store on the overlayfs and a new one beside it, where overlayfs works.
    let on_fresh = [overlay.merged.join("fresh"), project.path("native-fresh")].map(|fresh| {
        for args in [&import[..], &on_top[..]] {
            let out = project.command_in(&fresh, args).output().unwrap();
            assert!(
                out.status.success(),
                "lamina {args:?} in {}: {}",
                fresh.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            if args[0] == "build" {
                return digest_of(&String::from_utf8_lossy(&out.stdout));
            }
        }
        unreachable!("the build returns")
    });
    assert_eq!(on_fresh[0], on_fresh[1], "built on the imported image");
    // And on the image built on the overlayfs store (its RUN layers' adopted copies).
    assert_eq!(
        digest_of(&String::from_utf8_lossy(&in_overlay(&on_top).stdout)),
        digest_of(&project.ok(&on_top)),
        "built on the image built on the overlayfs store"
    );
}
