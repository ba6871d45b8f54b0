//! `lamina` as an ordinary user with subordinate ids: RUN steps in a user namespace of its own
//! (`lamina::rootless`), checked against the same definitions built as root.
//!
//! The tests run as root (as CI does) and drive the binary as `lamina-rootless-test`, a user
//! they create once with subordinate ids (as `.ci/test` does), through `setpriv`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::require::Need::{File, Root, Tool};
use crate::support::{digest_of, lamina_in_store, write_tree};

mod fuse;
mod namespaces;

/// The user the tests build as; it gets subordinate ids.
pub const USER: &str = "lamina-rootless-test";
/// A user without subordinate ids.
const NO_SUBIDS_USER: &str = "lamina-nosubids-test";

/// Whether the test must return now because what rootless builds need is missing.
fn needs_missing() -> bool {
    crate::require::missing(&[
        Root,
        Tool("setpriv"),
        Tool("useradd"),
        Tool("usermod"),
        Tool("newuidmap"),
        Tool("newgidmap"),
        Tool("runc"),
        File("/bin/busybox"),
        // The host CAs a RUN trusts by default.
        File("/etc/ssl/certs/ca-certificates.crt"),
    ])
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates `name` unless it exists (serialised: tests run in parallel); with `subids` it gets
/// 65536 subordinate uids and gids when it has none. Returns its uid and gid.
fn ensure_user(name: &str, subids: bool) -> (u32, u32) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("id")
        .args(["-u", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        // No automatic subordinate ids: they are added below, where asked for.
        run_ok(Command::new("useradd").args([
            "--no-create-home",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            name,
        ]));
    }
    let listed = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(':').next() == Some(name))
    };
    if subids && !(listed("/etc/subuid") && listed("/etc/subgid")) {
        run_ok(Command::new("usermod").args([
            "--add-subuids",
            "300000-365535",
            "--add-subgids",
            "300000-365535",
            name,
        ]));
    }
    assert!(
        subids || !listed("/etc/subuid"),
        "{name} must have no subordinate ids"
    );
    let id = |flag: &str| {
        run_ok(Command::new("id").args([flag, name]))
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

/// A directory the test user owns, with a copy of the binary (the build's target directory
/// may not be reachable for them), a busybox base definition, and two stores: `store` (the
/// user's) and `root-store` (root's).
pub struct Rootless {
    pub dir: tempfile::TempDir,
    lamina: PathBuf,
    user: &'static str,
    uid: u32,
    gid: u32,
}

impl Rootless {
    /// Set up for [`USER`], with `files` written; `None` where `require` allows a skip.
    pub fn with(files: &[(&str, &str)]) -> Option<Rootless> {
        Rootless::for_user(USER, true, files)
    }

    fn for_user(user: &'static str, subids: bool, files: &[(&str, &str)]) -> Option<Rootless> {
        if needs_missing() {
            return None;
        }
        let (uid, gid) = ensure_user(user, subids);
        let dir = tempfile::tempdir().unwrap();
        let lamina = dir.path().join("lamina");
        std::fs::copy(env!("CARGO_BIN_EXE_lamina"), &lamina).unwrap();
        let rootfs = dir.path().join("base/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in [
            "sh", "echo", "cat", "ls", "mkdir", "rm", "cp", "chown", "test", "sleep", "id",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        write_tree(
            dir.path(),
            &[
                ("base/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
                ("base/rootfs/etc/group", "root:x:0:\n"),
                ("base/rootfs/etc/lower.txt", "from the base\n"),
                ("base/rootfs/etc/d/sub/f", "replaced by an opaque dir\n"),
                ("base/Dockerfile", "FROM scratch\nCOPY rootfs/ /\n"),
            ],
        );
        write_tree(dir.path(), files);
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let project = Rootless {
            dir,
            lamina,
            user,
            uid,
            gid,
        };
        project.give_to_user();
        Some(project)
    }

    /// Makes everything below the directory the user's (after root wrote into it).
    pub fn give_to_user(&self) {
        run_ok(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", self.uid, self.gid))
                .arg(self.dir.path()),
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lamina --store <dir>/store args..` as the user.
    fn command(&self, args: &[&str]) -> Command {
        self.command_in(&self.path("store"), args)
    }

    /// `lamina --store STORE args..` as the user.
    fn command_in(&self, store: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg(&self.lamina)
            .arg("--store")
            .arg(store)
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("USER", self.user)
            // The kept namespace (see `kept_namespace`) is this test's own.
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env_remove("LAMINA_STORE")
            .env_remove("XDG_CACHE_HOME");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// As the user; asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lamina {args:?} as {}: {}",
            self.user,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// As the user; asserts failure and returns stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "lamina {args:?} as {} should fail: {}",
            self.user,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// As the user, stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `lamina --store <dir>/root-store args..` as root.
    pub fn root_ok(&self, args: &[&str]) -> String {
        let store = self.path("root-store");
        lamina_in_store(self.dir.path(), store.to_str().unwrap(), args)
    }
}

impl Drop for Rootless {
    /// Ends the process that keeps this test's user namespace.
    fn drop(&mut self) {
        if let Some(pid) = kept_pid(self) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// The pid of the process keeping the user's namespace, from lamina's pid file.
fn kept_pid(project: &Rootless) -> Option<u32> {
    std::fs::read_to_string(project.path("run/lamina/userns.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Builds `definition` as `tag` rootless and as root, each on its own busybox base, and
/// returns both image digests.
fn build_both(project: &Rootless, definition: &str, tag: &str, extra: &[&str]) -> [String; 2] {
    let base = [
        "build",
        "base",
        "--tag",
        "busybox:test",
        "--progress",
        "plain",
    ];
    let mut args = vec!["build", definition, "--tag", tag, "--progress", "plain"];
    args.extend_from_slice(extra);
    project.ok(&base);
    let rootless = digest_of(&project.ok(&args));
    project.root_ok(&base);
    let rootful = digest_of(&project.root_ok(&args));
    [rootless, rootful]
}

/// The layer blobs of `tag` in the user's store, bottom first (an uncompressed OCI export).
fn layer_blobs(project: &Rootless, tag: &str) -> Vec<PathBuf> {
    let out = project.path(&format!("export-{}", tag.replace(':', "-")));
    project.ok(&[
        "image",
        "export",
        tag,
        "--format",
        "oci-dir",
        "--compression",
        "none",
        "--output",
        out.to_str().unwrap(),
    ]);
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let digest = digest.as_str().unwrap();
        out.join("blobs/sha256").join(&digest["sha256:".len()..])
    };
    let index = read(&out.join("index.json"));
    let manifest = read(&blob(&index["manifests"][0]["digest"]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| blob(&layer["digest"]))
        .collect()
}

/// `tar -tv` of a layer, ids as numbers.
fn listing(layer: &Path) -> String {
    run_ok(
        Command::new("tar")
            .args(["-tv", "--numeric-owner", "-f"])
            .arg(layer),
    )
}

/// The content of `path` in the topmost layer holding it.
fn content(layers: &[PathBuf], path: &str) -> Option<String> {
    layers.iter().rev().find_map(|layer| {
        let out = Command::new("tar")
            .arg("-xOf")
            .arg(layer)
            .arg(path)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

const APP: &str = "\
FROM busybox:test AS tools
RUN mkdir -p /out && echo tool > /out/tool.txt

FROM busybox:test
COPY --chown=1000:1001 data/ /data/
RUN echo hello > /made.txt && mkdir /owned && echo o > /owned/f && chown -R 100:101 /owned \\
 && rm /etc/lower.txt && rm -rf /etc/d && mkdir /etc/d && echo new > /etc/d/n
RUN --mount=type=cache,target=/cache sh -c 'test -f /cache/seen || echo first > /cache/seen; cp /cache/seen /from-cache'
RUN --mount=type=secret,id=token cp /run/secrets/token /secret-copy
RUN test -s /etc/ssl/certs/ca-certificates.crt && test -s /run/lamina/ca.pem
RUN --network=none sh -c 'ls /sys/class/net > /networks'
COPY --from=tools /out/tool.txt /tool.txt
";

#[test]
fn a_rootless_build_gives_the_image_a_root_build_gives() {
    let Some(project) = Rootless::with(&[
        ("app/Dockerfile", APP),
        ("app/data/a.txt", "alpha\n"),
        ("token.txt", "s3cret\n"),
    ]) else {
        return;
    };
    let secret = format!("id=token,src={}", project.path("token.txt").display());
    let [rootless, rootful] = build_both(&project, "app", "app:1", &["--secret", &secret]);
    assert_eq!(
        rootless, rootful,
        "the same definition, rootless and as root"
    );

    let blobs = layer_blobs(&project, "app:1");
    let layers: Vec<String> = blobs.iter().map(|b| listing(b)).collect();
    let all = layers.join("");
    for (what, needle) in [
        ("COPY --chown keeps its ids", " 1000/1001 "),
        ("a chown in a RUN keeps its ids", " 100/101 "),
        ("files a RUN creates are root's", " 0/0 "),
    ] {
        assert!(all.contains(needle), "{what}: {all}");
    }
    let run = layers
        .iter()
        .find(|l| l.contains("made.txt"))
        .expect("the RUN layer");
    assert!(run.contains("etc/.wh.lower.txt"), "a whiteout: {run}");
    assert!(run.contains("etc/d/.wh..wh..opq"), "an opaque dir: {run}");
    assert!(
        !run.contains("overlay"),
        "no overlay attribute leaks: {run}"
    );
    for (file, expected) in [
        ("from-cache", "first\n"),
        ("secret-copy", "s3cret\n"),
        ("tool.txt", "tool\n"),
        ("data/a.txt", "alpha\n"),
        ("networks", "lo\n"),
    ] {
        assert_eq!(content(&blobs, file).as_deref(), Some(expected), "{file}");
    }
    // A rebuild is all cache hits.
    let again = project.ok(&[
        "build",
        "app",
        "--tag",
        "app:1",
        "--progress",
        "plain",
        "--secret",
        &secret,
    ]);
    assert!(again.contains(&rootless), "{again}");
}

/// The ids of the containers in runc's state directory of `store`.
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

#[test]
fn a_killed_rootless_build_takes_its_container_along_and_leaves_nothing_after_a_rebuild() {
    let Some(project) = Rootless::with(&[(
        "slow/Dockerfile",
        "FROM busybox:test\nARG PAUSE=61\nRUN echo \"$((6 * 7))-up\" && sleep $PAUSE\n",
    )]) else {
        return;
    };
    project.ok(&["build", "base", "--tag", "busybox:test"]);
    let store = project.path("store");
    let mut build = project.spawn(&["build", "slow", "--progress", "plain"]);
    let mut lines = BufReader::new(build.stderr.take().unwrap()).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("42-up"));
    assert!(started, "the RUN step never started");
    assert_eq!(containers(&store).len(), 1, "the RUN's container runs");
    // setpriv executed lamina in its own process: this is lamina's pid. SIGKILL: none of
    // lamina's cleanup runs.
    build.kill().unwrap();
    build.wait().unwrap();
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
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 1, "its run dir");

    // The rebuild reclaims the run dir (files of the namespace's ids included) and builds.
    let again = ["build", "slow", "--tag", "slow:1", "--build-arg", "PAUSE=0"];
    project.ok(&again);
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
    assert!(containers(&store).is_empty());
}

#[test]
fn a_rootless_build_pushes_to_a_registry_and_pulls_back_to_build_on() {
    use crate::registry::server;
    if crate::require::missing(&[Tool(server::BINARY), Tool("skopeo")]) {
        return;
    }
    let Some(project) = Rootless::with(&[(
        "app/Dockerfile",
        "FROM busybox:test\nRUN echo pushed > /p.txt && chown 7:8 /p.txt\n",
    )]) else {
        return;
    };
    let registry = server::Registry::start();
    project.ok(&["build", "base", "--tag", "busybox:test"]);
    let built = project.ok(&["build", "app", "--tag", "app:1", "--progress", "plain"]);
    let digest = digest_of(&built);
    let reference = format!("{}/rootless/app:1", registry.host());
    let pushed = project.ok(&["push", "app:1", &reference, "--compression", "zstd"]);
    assert!(pushed.contains(&digest), "{pushed}");
    let inspect = run_ok(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], serde_json::Value::from(digest.clone()));

    // Pulled back into a fresh store of the user's (its layers unpacked in the namespace),
    // and built on.
    let fresh = project.path("fresh");
    let pulled = project
        .command_in(&fresh, &["pull", &reference])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&pulled.stdout);
    assert!(
        pulled.status.success() && out.contains(&digest),
        "{out}{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    write_tree(
        project.dir.path(),
        &[(
            "on-pulled/Dockerfile",
            &format!("FROM {reference}\nRUN cat /p.txt > /again.txt\n"),
        )],
    );
    project.give_to_user();
    let built = project
        .command_in(&fresh, &["build", "on-pulled", "--progress", "plain"])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

#[test]
fn device_nodes_stay_in_stored_layers_but_not_in_the_rootless_unpacked_copy() {
    let Some(project) = Rootless::with(&[
        (
            "devices/Dockerfile",
            "FROM busybox:test\nRUN mkdir /devs && mknod /devs/null c 1 3 && echo kept > /devs/file\n",
        ),
        (
            "app/Dockerfile",
            "FROM devbase:1\nRUN ls /devs > /listing\n",
        ),
        (
            "mknod/Dockerfile",
            "FROM devbase:1\nRUN mknod /mine c 1 3\n",
        ),
    ]) else {
        return;
    };
    // Root builds the base with a device node; the user imports it, as a pulled image.
    project.root_ok(&["build", "base", "--tag", "busybox:test"]);
    project.root_ok(&["build", "devices", "--tag", "devbase:1"]);
    let archive = project.path("devbase.tar");
    project.root_ok(&[
        "image",
        "export",
        "devbase:1",
        "-o",
        archive.to_str().unwrap(),
    ]);
    project.give_to_user();
    project.ok(&["image", "import", archive.to_str().unwrap(), "devbase:1"]);

    // The unpacked copy a rootless RUN sees lacks the device (as with rootless BuildKit)...
    project.ok(&["build", "app", "--tag", "app:1", "--progress", "plain"]);
    let blobs = layer_blobs(&project, "app:1");
    assert_eq!(content(&blobs, "listing").as_deref(), Some("file\n"));
    // ...while the image keeps it, byte for byte.
    let devices = blobs.iter().map(|b| listing(b)).collect::<String>();
    assert!(
        devices
            .lines()
            .any(|l| l.starts_with('c') && l.ends_with("devs/null")),
        "{devices}"
    );
    // A RUN cannot make one.
    let err = project.err(&["build", "mknod", "--progress", "plain"]);
    assert!(err.contains("mknod"), "{err}");
}
