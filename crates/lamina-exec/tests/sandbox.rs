//! The sandbox for real: layers from a store unpacked by `LayerCache`, RUN steps under runc on
//! overlayfs. Needs root, runc and a static busybox (Debian `busybox-static`); see `require` for
//! what happens where they are missing.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lamina_exec::ExecError;
use lamina_exec::sandbox::{
    BuildMount, CacheSharing, LayerCache, MountSource, Network, OutputStream, Ownership,
    RunOutcome, RunRequest, Sandbox,
};
use lamina_layer::{Compression, LayerOptions, LayerWriter, Unpacker};
use lamina_store::{BlobKind, LayerRecord, LayerVariant, Store, StoreOptions};

#[path = "../../../tests/require.rs"]
mod require;
#[path = "sandbox/trust.rs"]
mod trust;

const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "echo", "rm", "ls", "cat", "id", "pwd", "seq", "test", "head", "mkdir", "env", "wc",
    "sleep", "cp", "mv", "chmod", "touch", "ln", "stat",
];

/// Whether these tests must return now: root, runc and busybox are needed, and where they are
/// missing the test fails unless skips were asked for (see `require`).
fn skip() -> bool {
    use require::Need::{File, Root, Tool};
    require::missing(&[Root, File(BUSYBOX), Tool("runc")])
}

struct Env {
    tmp: tempfile::TempDir,
    store: Store,
    cache: LayerCache,
    sandbox: Sandbox,
    base: LayerRecord,
    base_dir: PathBuf,
}

/// A busybox rootfs with a user `app` (1000:1000) in group `wheel`.
fn base_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("home/app")).unwrap();
    std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
    fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
}

/// Writes a layer into the store as `lamina::store_layer` does.
fn put_layer(store: &Store, upper: Option<&Path>, tree: Option<&Path>) -> LayerRecord {
    let options = LayerOptions::default()
        .compression(Compression::Zstd)
        .mtime_clamp(Some(0));
    let writer = LayerWriter::new(options);
    let mut blob = store.writer(BlobKind::Layer).unwrap();
    let info = match (upper, tree) {
        (Some(upper), _) => writer.write_overlay_upper(upper, &mut blob).unwrap(),
        (None, Some(tree)) => writer.write_tree(tree, &mut blob).unwrap(),
        _ => unreachable!(),
    };
    let stored = blob.commit_verified(&info.digest, Some(info.size)).unwrap();
    let record = LayerRecord {
        digest: info.blake3,
        diff_id: info.diff_id,
        size: info.uncompressed_size,
        variants: vec![LayerVariant {
            compression: lamina_store::Compression::Zstd,
            digest: stored.digest,
            sha256: stored.sha256,
            size: stored.size,
            reproducible: false,
        }],
        created: SystemTime::now(),
        tar_split: None,
    };
    store.put_layer(&record).unwrap()
}

fn env() -> Option<Env> {
    if skip() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store"), StoreOptions::default()).unwrap();
    let tree = tmp.path().join("tree");
    base_tree(&tree);
    let base = put_layer(&store, None, Some(&tree));
    let work = tmp.path().join("work");
    let cache = LayerCache::new(&work).unwrap();
    let base_dir = cache.unpacked(&store, &base).unwrap().to_path_buf();
    let sandbox = Sandbox::new(&work).unwrap();
    Some(Env {
        tmp,
        store,
        cache,
        sandbox,
        base,
        base_dir,
    })
}

type Lines = Vec<(OutputStream, String)>;

struct Opts {
    lowers: Vec<PathBuf>,
    env: Vec<String>,
    cwd: &'static str,
    user: Option<&'static str>,
    mounts: Vec<BuildMount>,
    network: Network,
}

impl Env {
    fn opts(&self) -> Opts {
        Opts {
            lowers: vec![self.base_dir.clone()],
            env: vec![],
            cwd: "/",
            user: None,
            mounts: vec![],
            network: Network::Host,
        }
    }

    fn sh(&self, script: &str, opts: Opts) -> Result<(RunOutcome, Lines), ExecError> {
        let mut lines = Vec::new();
        let mut on_output = |s: OutputStream, l: &str| lines.push((s, l.to_owned()));
        let outcome = self.sandbox.run(RunRequest {
            lower_dirs: opts.lowers,
            args: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: opts.env,
            cwd: opts.cwd.into(),
            user: opts.user.map(str::to_owned),
            mounts: opts.mounts,
            network: opts.network,
            on_output: &mut on_output,
            cancel: None,
        })?;
        Ok((outcome, lines))
    }

    fn runs_left(&self) -> usize {
        fs::read_dir(self.tmp.path().join("work/runs"))
            .unwrap()
            .count()
    }
}

fn stdout(lines: &Lines) -> Vec<&str> {
    lines
        .iter()
        .filter(|(s, _)| *s == OutputStream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect()
}

/// Every path below `root`, sorted.
fn entries(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
            }
            out.push(name);
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

#[test]
fn a_run_leaves_exactly_its_change_in_the_upper_dir() {
    let Some(env) = env() else { return };
    let (out, lines) = env
        .sh("echo hi > /a; rm /bin/ls; echo done", env.opts())
        .unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    assert_eq!(stdout(&lines), ["done"]);
    let upper = out.upper.path();
    // No /etc/resolv.conf, /etc/hosts, /proc, /dev or /sys placeholders: only the change.
    assert_eq!(entries(upper), ["a", "bin", "bin/ls"]);
    assert_eq!(fs::read_to_string(upper.join("a")).unwrap(), "hi\n");
    assert!(is_whiteout(&upper.join("bin/ls")));

    // The upper as a layer, unpacked on top of the base, gives the expected tree...
    let change = put_layer(&env.store, Some(upper), None);
    let merged = env.tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    for layer in [&env.base, &change] {
        let blob = env.store.read(&layer.variants[0].digest).unwrap().unwrap();
        Unpacker::default().unpack(&blob[..], &merged).unwrap();
    }
    assert_eq!(fs::read_to_string(merged.join("a")).unwrap(), "hi\n");
    assert!(fs::symlink_metadata(merged.join("bin/ls")).is_err());
    assert!(fs::symlink_metadata(merged.join("bin/sh")).is_ok());

    // ...and the cached layer stacks as an overlay lower with its whiteout in overlay form.
    let change_dir = env
        .cache
        .unpacked(&env.store, &change)
        .unwrap()
        .to_path_buf();
    assert!(is_whiteout(&change_dir.join("bin/ls")));
    let mut opts = env.opts();
    opts.lowers.push(change_dir);
    let (next, lines) = env
        .sh("cat /a; test -e /bin/ls && echo ls-still-there; true", opts)
        .unwrap();
    assert_eq!(stdout(&lines), ["hi"]);
    assert!(entries(next.upper.path()).is_empty());

    drop((out, next));
    assert_eq!(env.runs_left(), 0);
}

#[test]
fn a_failing_command_reports_its_exit_code_and_last_lines() {
    let Some(env) = env() else { return };
    let (out, lines) = env
        .sh("echo oops >&2; seq 1 30 >&2; exit 3", env.opts())
        .unwrap();
    assert_eq!(out.exit_code, 3);
    // One stream, so a fixed order (two pipes may interleave either way).
    let expected: Vec<String> = (11..=30).map(|i| i.to_string()).collect();
    assert_eq!(out.last_lines, expected);
    assert_eq!(lines.len(), 31);
    assert_eq!(lines[0], (OutputStream::Stderr, "oops".to_owned()));
    assert!(lines.iter().all(|(s, _)| *s == OutputStream::Stderr));
}

#[test]
fn output_lines_stream_in_order() {
    let Some(env) = env() else { return };
    let (out, lines) = env.sh("seq 1 2000", env.opts()).unwrap();
    assert_eq!(out.exit_code, 0);
    let expected: Vec<String> = (1..=2000).map(|i| i.to_string()).collect();
    assert_eq!(stdout(&lines), expected);
}

#[test]
fn env_cwd_and_user_are_honoured() {
    let Some(env) = env() else { return };
    let mut opts = env.opts();
    opts.env = vec!["FOO=bar baz".into()];
    opts.cwd = "/srv/app";
    opts.user = Some("app");
    let (out, lines) = env
        .sh(
            "id -u; id -g; id -G; pwd; echo \"$FOO\"; echo $HOME; echo $PATH",
            opts,
        )
        .unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    assert_eq!(
        stdout(&lines),
        [
            "1000",
            "1000",
            "1000 10",
            "/srv/app",
            "bar baz",
            "/home/app",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
    drop(out);
    let mut opts = env.opts();
    opts.user = Some("ghost");
    let err = env.sh("true", opts).unwrap_err();
    assert!(matches!(err, ExecError::UnknownUser { .. }), "{err}");
    assert_eq!(env.runs_left(), 0);
}

#[test]
fn cache_mounts_persist_across_runs_and_stay_out_of_the_layer() {
    let Some(env) = env() else { return };
    let cache = || BuildMount::Cache {
        id: "pip".into(),
        target: "/root/.cache/pip".into(),
        sharing: CacheSharing::Locked,
        ownership: Ownership {
            mode: 0o700,
            uid: 1000,
            gid: 1000,
        },
        seed: None,
        readonly: false,
    };
    let mut opts = env.opts();
    opts.mounts = vec![cache()];
    let (first, _) = env.sh("echo kept > /root/.cache/pip/f", opts).unwrap();
    assert_eq!(first.exit_code, 0);
    assert!(entries(first.upper.path()).is_empty());
    let mut opts = env.opts();
    opts.mounts = vec![cache()];
    let (second, lines) = env.sh("cat /root/.cache/pip/f", opts).unwrap();
    assert_eq!(stdout(&lines), ["kept"]);
    assert!(entries(second.upper.path()).is_empty());
    let on_host = env.tmp.path().join("work/cache-mounts/pip");
    assert_eq!(fs::read_to_string(on_host.join("f")).unwrap(), "kept\n");
    let meta = fs::metadata(&on_host).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid()),
        (0o700, 1000, 1000)
    );
}

#[test]
fn secrets_are_readable_but_not_in_the_layer() {
    let Some(env) = env() else { return };
    let secret = env.tmp.path().join("token");
    fs::write(&secret, "s3cret\n").unwrap();
    let mut opts = env.opts();
    opts.mounts = vec![BuildMount::Secret {
        source: secret,
        target: Some("/run/secrets/tok".into()),
        env: Some("TOKEN".into()),
        ownership: Ownership {
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    }];
    let script = "cat /run/secrets/tok; echo \"$TOKEN\"; stat -c %a /run/secrets/tok";
    let (out, lines) = env.sh(script, opts).unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    assert_eq!(stdout(&lines), ["s3cret", "s3cret", "", "400"]);
    assert!(entries(out.upper.path()).is_empty());
    // The copy made for the mount is gone as the run ends, though the run directory lives
    // on with the outcome (a build removes it later, on a thread).
    let run_dir = out.upper.path().parent().unwrap();
    assert!(run_dir.join("work").exists());
    assert!(!run_dir.join("secrets").exists());
}

#[test]
fn writable_binds_never_change_the_host_and_tmpfs_is_empty() {
    let Some(env) = env() else { return };
    let src = env.tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("file"), "original\n").unwrap();
    let mut opts = env.opts();
    opts.mounts = vec![
        BuildMount::Bind {
            source: MountSource::Host(src.clone()),
            target: "/src".into(),
            readonly: false,
        },
        BuildMount::Tmpfs {
            target: "/scratch".into(),
            size: None,
        },
    ];
    let (out, lines) = env
        .sh(
            "echo changed > /src/file; cat /src/file; ls -A /scratch | wc -l",
            opts,
        )
        .unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    assert_eq!(stdout(&lines)[0], "changed");
    assert_eq!(fs::read_to_string(src.join("file")).unwrap(), "original\n");
    assert!(entries(out.upper.path()).is_empty());
}

#[test]
fn network_none_has_only_loopback() {
    let Some(env) = env() else { return };
    let mut opts = env.opts();
    opts.network = Network::None;
    let (_, lines) = env.sh("ls /sys/class/net", opts).unwrap();
    assert_eq!(stdout(&lines), ["lo"]);
    let (_, host) = env.sh("ls /sys/class/net", env.opts()).unwrap();
    assert!(
        stdout(&host).len() > 1 || stdout(&host) != ["lo"],
        "{host:?}"
    );
}

#[test]
fn runc_failures_are_errors_and_leave_nothing_behind() {
    let Some(env) = env() else { return };
    let mut lines = 0;
    let mut on_output = |_: OutputStream, _: &str| lines += 1;
    let err = env
        .sandbox
        .run(RunRequest {
            lower_dirs: vec![env.base_dir.clone()],
            args: vec!["/no/such/binary".into()],
            env: vec![],
            cwd: "/".into(),
            user: None,
            mounts: vec![],
            network: Network::Host,
            on_output: &mut on_output,
            cancel: None,
        })
        .unwrap_err();
    assert!(matches!(err, ExecError::Runtime { .. }), "{err}");
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    assert_eq!(env.runs_left(), 0);
}

#[test]
fn scratch_runs_work_without_lowers() {
    let Some(env) = env() else { return };
    let busybox = env.tmp.path().join("bb");
    fs::create_dir(&busybox).unwrap();
    fs::copy(BUSYBOX, busybox.join("busybox")).unwrap();
    let mut opts = env.opts();
    opts.lowers = vec![];
    opts.mounts = vec![BuildMount::Bind {
        source: MountSource::Host(busybox),
        target: "/bb".into(),
        readonly: true,
    }];
    let mut lines = Vec::new();
    let mut on_output = |s: OutputStream, l: &str| lines.push((s, l.to_owned()));
    let out = env
        .sandbox
        .run(RunRequest {
            lower_dirs: opts.lowers,
            args: vec![
                "/bb/busybox".into(),
                "sh".into(),
                "-c".into(),
                "/bb/busybox echo hi > /x".into(),
            ],
            env: vec![],
            cwd: "/".into(),
            user: None,
            mounts: opts.mounts,
            network: Network::Host,
            on_output: &mut on_output,
            cancel: None,
        })
        .unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    assert_eq!(entries(out.upper.path()), ["x"]);
}

#[test]
fn concurrent_unpacks_of_one_layer_end_with_one_directory() {
    let Some(env) = env() else { return };
    let tree = env.tmp.path().join("tree2");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), "x").unwrap();
    let layer = put_layer(&env.store, None, Some(&tree));
    let dirs: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    env.cache
                        .unpacked(&env.store, &layer)
                        .unwrap()
                        .to_path_buf()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(dirs.iter().all(|d| *d == dirs[0]));
    assert_eq!(fs::read_to_string(dirs[0].join("d/f")).unwrap(), "x");
    let layers_dir = env.tmp.path().join("work/layers");
    let names: Vec<String> = fs::read_dir(&layers_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock") && n != ".tmp")
        .collect();
    // The base and this layer, no temporary directories.
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(fs::read_dir(layers_dir.join(".tmp")).unwrap().count(), 0);
}

#[test]
fn stale_runs_of_dead_processes_are_cleaned_up() {
    let Some(env) = env() else { return };
    let work = env.tmp.path().join("work");
    // A pid above any pid_max: its process is surely gone.
    let stale = work.join("runs/lamina-2147483000-0-0");
    fs::create_dir_all(stale.join("rootfs")).unwrap();
    rustix::mount::mount(
        "tmpfs",
        stale.join("rootfs").as_path(),
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .unwrap();
    fs::write(stale.join("rootfs/f"), "x").unwrap();
    let stale_tmp = work.join("layers/.tmp/abc-2147483000-0");
    fs::create_dir_all(stale_tmp.join("d")).unwrap();
    Sandbox::new(&work).unwrap();
    LayerCache::new(&work).unwrap();
    assert!(!stale.exists());
    assert!(!stale_tmp.exists());
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains("lamina-2147483000"));
}

#[test]
fn a_panicking_output_callback_still_tears_the_run_down() {
    let Some(env) = env() else { return };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut on_output = |_: OutputStream, _: &str| panic!("callback gave up");
        env.sandbox.run(RunRequest {
            lower_dirs: vec![env.base_dir.clone()],
            args: vec!["/bin/sh".into(), "-c".into(), "echo one; sleep 30".into()],
            env: vec![],
            cwd: "/".into(),
            user: None,
            mounts: vec![],
            network: Network::Host,
            on_output: &mut on_output,
            cancel: None,
        })
    }));
    assert!(result.is_err());
    assert_eq!(env.runs_left(), 0);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(env.tmp.path().to_str().unwrap()));
}

#[test]
fn a_replaced_directory_is_opaque_in_the_layer_and_in_the_cache() {
    let Some(env) = env() else { return };
    let (out, lines) = env
        .sh(
            "set -e; rm -r /home; mkdir /home; echo new > /home/only",
            env.opts(),
        )
        .unwrap();
    assert_eq!(out.exit_code, 0, "{lines:?}");
    let change = put_layer(&env.store, Some(out.upper.path()), None);
    let change_dir = env
        .cache
        .unpacked(&env.store, &change)
        .unwrap()
        .to_path_buf();
    let mut buf = [0u8; 1];
    let opaque = rustix::fs::getxattr(change_dir.join("home"), "trusted.overlay.opaque", &mut buf);
    assert_eq!((opaque.unwrap(), buf[0]), (1, b'y'));
    let mut opts = env.opts();
    opts.lowers.push(change_dir);
    let (_, lines) = env.sh("ls /home", opts).unwrap();
    assert_eq!(stdout(&lines), ["only"]);
}
