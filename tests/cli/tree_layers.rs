//! Issue 12: tree-backed layers. A base imported plain and the RUN and COPY layers built on
//! it are kept as their unpacked trees plus tar-splits (no layer blob); exports reassemble
//! the exact tars (skopeo and umoci read them, the digests are the build's); a modified tree
//! fails an export with one line and shows in fsck; a build killed while writing a
//! tar-split leaves nothing the next command trips on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ingest::{docker_archive, untar};
use crate::support::{lamina, lamina_in_store as run, write_tree};

/// The layer directories (64 hex digits) under the store's trees.
fn trees(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join("exec/layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    names
}

fn blob_file(store: &Path, hex: &str) -> PathBuf {
    store.join("blobs-v1").join(&hex[..2]).join(&hex[2..])
}

/// (blobs, bytes) of one blob kind, from `cache du --json`.
fn du_kind(store: &str, dir: &Path, kind: &str) -> (u64, u64) {
    let du: Value = serde_json::from_str(&run(dir, store, &["cache", "du", "--json"])).unwrap();
    let entry = &du["kinds"][kind];
    match (entry["blobs"].as_u64(), entry["bytes"].as_u64()) {
        (Some(blobs), Some(bytes)) => (blobs, bytes),
        _ => panic!("no {kind} in `cache du --json`: {du}"),
    }
}

fn skopeo_inspect(transport: &str) -> Value {
    crate::archives::skopeo_inspect_with(&["--raw"], transport)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

struct Setup {
    dir: tempfile::TempDir,
    store: PathBuf,
    digest: String,
}

impl Setup {
    fn store(&self) -> &str {
        self.store.to_str().unwrap()
    }
}

/// A temporary directory with a store in it holding the busybox base imported from a
/// docker-archive (one plain layer).
fn store_with_imported_base() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = docker_archive(dir.path());
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    run(
        dir.path(),
        s,
        &["image", "import", archive.to_str().unwrap()],
    );
    (dir, store)
}

/// A store holding the busybox base imported from a docker-archive (one plain layer) and
/// `app:1` built on it with a COPY and a RUN.
fn setup() -> Setup {
    let (dir, store) = store_with_imported_base();
    let s = store.to_str().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "app/Dockerfile",
                "FROM nulls/base:1\nCOPY src /src\nRUN echo ran > /ran.txt && cat /src/a.txt >> /ran.txt\n",
            ),
            ("app/src/a.txt", "file a\n"),
            ("app/src/deep/b.txt", "file b, a little longer\n"),
        ],
    );
    let built = run(
        dir.path(),
        s,
        &["build", "app", "--tag", "app:1", "--progress", "plain"],
    );
    let at = built
        .find("built sha256:")
        .expect("the build prints its digest");
    let digest = built[at + 6..at + 6 + 71].to_string();
    Setup { dir, store, digest }
}

#[test]
fn built_and_imported_layers_are_trees_plus_tar_splits() {
    use crate::require::Need::Tool;
    if crate::build::sandbox_missing() || crate::require::missing(&[Tool("skopeo"), Tool("umoci")])
    {
        return;
    }
    let t = setup();
    let dir = t.dir.path();

    // Base, COPY and RUN: three trees, no layer blob, three tar-splits.
    let layers = trees(&t.store);
    assert_eq!(layers.len(), 3, "{layers:?}");
    for hex in &layers {
        assert!(
            !blob_file(&t.store, hex).exists(),
            "layer {hex} still has its blob"
        );
    }
    let (split_count, split_bytes) = du_kind(t.store(), dir, "tar-split");
    assert_eq!(split_count, 3);
    assert!(
        split_bytes < 64 * 1024,
        "tar-splits take {split_bytes} bytes"
    );
    assert_eq!(
        du_kind(t.store(), dir, "layer").0,
        0,
        "no layer blob at all"
    );

    // Plain export: the stored manifest, so the digest the build printed; every blob in the
    // archive has the digest it is named by (skopeo copies and checks them).
    let plain = dir.join("plain.tar");
    let export = |out: &Path, compression: &str, format: &str| {
        run(
            dir,
            t.store(),
            &[
                "image",
                "export",
                "app:1",
                "--format",
                format,
                "--compression",
                compression,
                "-o",
                out.to_str().unwrap(),
            ],
        )
    };
    export(&plain, "none", "oci-archive");
    let manifest = skopeo_inspect(&format!("oci-archive:{}", plain.display()));
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", plain.display()))
        .output()
        .unwrap()
        .stdout;
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw)),
        t.digest,
        "manifest digest"
    );
    let copied = dir.join("copied");
    let status = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", plain.display()))
        .arg(format!("dir:{}", copied.display()))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "skopeo copy checks every blob's digest");
    let layer_digests: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layer_digests.len(), 3);
    for d in &layer_digests {
        let bytes = std::fs::read(copied.join(d.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), *d);
    }
    // The same plain tars written into a directory instead of an archive.
    let plain_dir = dir.join("plain-dir");
    export(&plain_dir, "none", "oci-dir");
    for d in &layer_digests {
        let blob = plain_dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(
            format!("sha256:{}", sha256_hex(&bytes)),
            *d,
            "{}",
            blob.display()
        );
    }

    // gzip (made from the reassembled tars) as an OCI layout: umoci unpacks it.
    let layout = dir.join("layout");
    export(&layout, "gzip", "oci-dir");
    let bundle = dir.join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/ran.txt")).unwrap(),
        "ran\nfile a\n"
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());
    // The same tars as the plain export: the gzip layers decompress to the diff_ids.
    let config = std::fs::read(
        copied.join(
            manifest["config"]["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect::<Vec<_>>(),
        layer_digests
    );

    // The store is clean, and stays tree-backed after a GC (the gzip variants made for the
    // export are blobs beside the trees).
    run(dir, t.store(), &["cache", "fsck"]);
    run(dir, t.store(), &["cache", "gc"]);
    assert_eq!(
        trees(&t.store),
        layers,
        "GC keeps the trees of named images"
    );
    run(dir, t.store(), &["cache", "fsck"]);
}

/// What is left of a RUN's run directory is removed beside the next steps, and the build
/// ends only when it is gone: also in a rebuild with `--no-cache`, where the RUN's layer has
/// its tree already and the upper directory (3,000 files here, tens of milliseconds of
/// unlinks) is thrown away as the last step ends.
#[test]
fn a_build_leaves_no_run_directory_behind() {
    if crate::build::sandbox_missing() {
        return;
    }
    let (dir, store) = store_with_imported_base();
    let (d, s) = (dir.path(), store.to_str().unwrap());
    write_tree(
        d,
        &[(
            "many/Dockerfile",
            "FROM nulls/base:1\nRUN mkdir /many && cd /many && for i in $(seq 3000); do : > f$i; done\n",
        )],
    );
    let runs = store.join("exec/runs");
    let left = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    };
    let built = run(d, s, &["build", "many", "--tag", "many:1"]);
    assert_eq!(left(), Vec::<std::ffi::OsString>::new());
    let layers = trees(&store);
    let rebuilt = run(d, s, &["build", "many", "--tag", "many:1", "--no-cache"]);
    assert_eq!(left(), Vec::<std::ffi::OsString>::new());
    assert_eq!(trees(&store), layers, "the rebuild keeps the trees it had");
    let digest = |out: &str| {
        out.split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no digest printed: {out}"))
    };
    assert_eq!(digest(&rebuilt), digest(&built), "{built}\n{rebuilt}");
}

#[test]
fn a_modified_tree_fails_the_export_in_one_line_and_fsck_reports_it() {
    if crate::build::sandbox_missing() {
        return;
    }
    let t = setup();
    let dir = t.dir.path();
    let copy_tree = trees(&t.store)
        .into_iter()
        .map(|hex| t.store.join("exec/layers").join(hex))
        .find(|tree| tree.join("src/a.txt").is_file())
        .expect("the COPY layer's tree");
    // Same size, other bytes: only the digest can tell.
    std::fs::write(copy_tree.join("src/a.txt"), "FILE A\n").unwrap();
    let out = dir.join("out.tar");
    let output = lamina(
        dir,
        &[
            "--store",
            t.store(),
            "image",
            "export",
            "app:1",
            "--compression",
            "none",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("was modified")
            && lines[0].contains(&copy_tree.display().to_string())
            && lines[0].contains("lamina cache fsck"),
        "{stderr}"
    );
    assert!(!out.exists(), "a failed export leaves no output");

    let fsck = lamina(dir, &["--store", t.store(), "cache", "fsck"]);
    assert!(!fsck.status.success());
    let report = String::from_utf8_lossy(&fsck.stdout);
    assert!(report.contains("tree-backed layer blake3:"), "{report}");
    assert!(report.contains("was modified"), "{report}");
}

#[test]
fn a_build_killed_while_writing_a_tar_split_leaves_nothing_behind() {
    if crate::build::sandbox_missing() {
        return;
    }
    let (dir, store) = store_with_imported_base();
    let s = store.to_str().unwrap();
    // Many files, so the COPY layer's tar-split takes a while to write.
    let src = dir.path().join("app/src");
    for i in 0..20_000 {
        let sub = src.join(format!("d{}", i % 100));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), format!("file {i}\n")).unwrap();
    }
    write_tree(
        dir.path(),
        &[("app/Dockerfile", "FROM nulls/base:1\nCOPY src /src\n")],
    );
    let mut killed_in_write = false;
    for _ in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lamina"))
            .args(["--store", s, "build", "app", "--tag", "app:1", "--no-cache"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Killed the moment a blob is being staged: the tar-split is the build's first.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            let staging = std::fs::read_dir(store.join("tmp")).unwrap().count() > 0;
            if staging || child.try_wait().unwrap().is_some() {
                killed_in_write |= staging;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        if killed_in_write {
            break;
        }
    }
    assert!(killed_in_write, "the build was never caught writing a blob");
    // The next command builds; the store checks clean; no staged file is left.
    run(dir.path(), s, &["build", "app", "--tag", "app:1"]);
    run(dir.path(), s, &["cache", "fsck"]);
    let out = dir.path().join("out.tar");
    run(
        dir.path(),
        s,
        &[
            "image",
            "export",
            "app:1",
            "--compression",
            "none",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let unpacked = dir.path().join("unpacked");
    untar(&out, &unpacked);
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}

/// One COPY of two sources: the second replaces a file the first placed with a symlink, and
/// fills a directory the first made; the kept tree is the layer, as staged, and the rebuild
/// with `--no-cache` (the layer's tree kept already) leaves no staging tree behind.
#[test]
fn a_copy_of_two_sources_replaces_and_fills_what_the_first_placed() {
    let dir = context(&[
        ("a/x", "a file"),
        ("a/d/f", "from a"),
        ("b/d/g", "from b"),
        ("Dockerfile", "FROM scratch\nCOPY a/ b/ /out/\n"),
    ]);
    let d = dir.path();
    std::os::unix::fs::symlink("d/g", d.join("b/x")).unwrap();
    let store = d.join("store");
    let s = store.to_str().unwrap();
    let dockerfile = d.join("Dockerfile");
    run(d, s, &["build", dockerfile.to_str().unwrap()]);
    let out = only_tree(&store).join("out");
    assert_eq!(std::fs::read_link(out.join("x")).unwrap(), Path::new("d/g"));
    assert_eq!(std::fs::read_to_string(out.join("d/f")).unwrap(), "from a");
    assert_eq!(std::fs::read_to_string(out.join("d/g")).unwrap(), "from b");
    run(d, s, &["build", dockerfile.to_str().unwrap(), "--no-cache"]);
    assert_eq!(trees(&store).len(), 1);
    let staging: Vec<_> = std::fs::read_dir(store.join("exec/tmp"))
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "left in exec/tmp: {staging:?}");
}

/// A later source of one COPY never writes through a symlink an earlier one placed when it
/// leads out of the image (the build runs as root: the file would land on the host); one
/// leading inside the image is followed, as BuildKit does.
#[test]
fn a_copy_never_writes_through_a_symlink_out_of_the_image() {
    let dir = context(&[
        ("a/usr/lib/base", "base"),
        ("b/lib/added", "added"),
        ("c/x/f", "escaped"),
        ("Dockerfile.inside", "FROM scratch\nCOPY a/ b/ /out/\n"),
        ("Dockerfile.escape", "FROM scratch\nCOPY a/ c/ /out/\n"),
    ]);
    let d = dir.path();
    let outside = d.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink("usr/lib", d.join("a/lib")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("a/x")).unwrap();
    let store = d.join("store");
    let s = store.to_str().unwrap();
    let inside = d.join("Dockerfile.inside");
    run(d, s, &["build", inside.to_str().unwrap()]);
    let out = only_tree(&store).join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("usr/lib/added")).unwrap(),
        "added"
    );
    refused_through_symlink(d, &d.join("Dockerfile.escape"), "/out/x");
    assert!(!outside.join("f").exists(), "written through the symlink");
}

/// A symlink inside the image that a later source of the same COPY turns into one leading
/// out (`usr` replaced while `lib -> usr/lib` was written through): the next write through
/// `lib` is refused, not sent to the host.
#[test]
fn a_copy_rechecks_symlinks_after_a_later_source_replaces_one() {
    let dir = context(&[
        ("a/real/lib/base", "base"),
        ("b/lib/y", "through lib"),
        ("d/lib/z", "escaped"),
        ("Dockerfile", "FROM scratch\nCOPY a/ b/ c/ d/ /out/\n"),
    ]);
    let d = dir.path();
    let outside = d.join("outside");
    std::fs::create_dir_all(outside.join("lib")).unwrap();
    std::os::unix::fs::symlink("real", d.join("a/usr")).unwrap();
    std::os::unix::fs::symlink("usr/lib", d.join("a/lib")).unwrap();
    std::fs::create_dir(d.join("c")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("c/usr")).unwrap();
    refused_through_symlink(d, &d.join("Dockerfile"), "/out/lib");
    assert!(
        !outside.join("lib/z").exists(),
        "written through the symlink"
    );
}

/// The modes a COPY applies last follow no symlink a later source re-pointed out of the
/// image: `x -> y` is written through, then `x -> <host dir>` replaces it; the host
/// directory keeps its mode.
#[test]
fn a_copy_sets_no_mode_through_a_symlink_a_later_source_re_pointed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = context(&[
        ("c1/y/keep", "k"),
        ("c2/x/f", "through x"),
        ("Dockerfile", "FROM scratch\nCOPY c1/ c2/ c3/ /d/\n"),
    ]);
    let d = dir.path();
    let outside = d.join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("y", d.join("c1/x")).unwrap();
    std::fs::set_permissions(d.join("c2/x"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(d.join("c3")).unwrap();
    std::os::unix::fs::symlink(&outside, d.join("c3/x")).unwrap();
    refused_through_symlink(d, &d.join("Dockerfile"), "/d/x");
    let mode = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the host directory's mode changed");
}

/// A later source of one COPY that puts entries below a file an earlier one placed fails in
/// one line naming the path in the image (not the staging tree on the host).
#[test]
fn a_copy_below_a_file_an_earlier_source_placed_names_the_path_in_the_image() {
    let dir = context(&[
        ("a/x", "a file"),
        ("b/x/y", "below it"),
        ("Dockerfile", "FROM scratch\nCOPY a/ b/ /out/\n"),
    ]);
    let d = dir.path();
    let err = refused(d, &d.join("Dockerfile"));
    assert!(
        err.contains("/out/x:") && err.contains("placed a file here"),
        "{err}"
    );
    assert!(!err.contains("exec/tmp"), "{err}");
}

/// A COPY destination that resolves to `/` (`/app/..`, or `..` from `/srv`) is the image's
/// root directory, as in BuildKit: the file lands in it.
#[test]
fn a_copy_to_a_destination_resolving_to_the_root_copies_into_it() {
    let dir = context(&[
        ("f", "f"),
        ("g", "g"),
        (
            "Dockerfile",
            "FROM scratch\nCOPY f /app/..\nWORKDIR /srv\nCOPY g ..\n",
        ),
    ]);
    let d = dir.path();
    let store = build_in_new_store(d);
    let at_root = |name: &str| file_in_a_layer(&store, name);
    assert!(at_root("f") && at_root("g"), "{:?}", trees(&store));
}

/// `COPY f /srv` where the image has `/srv` as a directory (from `WORKDIR`, or from an
/// earlier COPY of a directory) copies into it, as BuildKit does, and does not replace it.
#[test]
fn a_copy_to_a_directory_the_image_has_copies_into_it() {
    let dir = context(&[
        ("f", "f"),
        ("g", "g"),
        ("h", "h"),
        ("d/.keep", ""),
        (
            "Dockerfile",
            "FROM scratch\nWORKDIR /srv\nCOPY f /srv\nCOPY g /srv/sub\nCOPY d /opt/d\n\
             COPY h /opt/d\n",
        ),
    ]);
    let d = dir.path();
    let store = build_in_new_store(d);
    let file = |path: &str| file_in_a_layer(&store, path);
    // Into the existing directories; a destination that does not exist yet is the file.
    assert!(file("srv/f"), "{:?}", trees(&store));
    assert!(file("srv/sub") && file("opt/d/h"));
    assert!(!file("srv") && !file("opt/d"));
}

/// A temporary build context holding `files`.
fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), files);
    dir
}

/// A destination resolves through the image's symlinks, as BuildKit resolves it: on a
/// merged-/usr image `COPY f /lib/` writes `/usr/lib/f`, leaving the `/lib` symlink (and all
/// of `/usr/lib` through it) in place, and an absolute symlink resolves from the image's
/// root; so does a WORKDIR the image lacks. A `--link` layer does not look at the image: its
/// path is as written.
#[test]
fn a_copy_destination_resolves_through_the_images_symlinks() {
    let dir = context(&[
        ("base/usr/lib/orig.so", "orig"),
        ("base/srv/data/.keep", ""),
        ("base/usr/share/zone/UTC", "utc"),
        ("base/etc/hostname", "h"),
        ("f", "f"),
        ("f2", "f2"),
        ("g", "g"),
        ("h", "h"),
        ("z", "z"),
        (
            "Dockerfile",
            "FROM scratch\nCOPY base /\nCOPY f /lib/\nCOPY f2 /lib\nCOPY g /data/g\n\
             COPY z /etc/zone\nWORKDIR /lib/app\nCOPY --link h /lib/h\n",
        ),
    ]);
    let d = dir.path();
    std::os::unix::fs::symlink("usr/lib", d.join("base/lib")).unwrap();
    std::os::unix::fs::symlink("/srv/data", d.join("base/data")).unwrap();
    std::os::unix::fs::symlink("/usr/share/zone/UTC", d.join("base/etc/zone")).unwrap();
    let store = build_in_new_store(d);
    let file = |path: &str| file_in_a_layer(&store, path);
    assert!(file("usr/lib/f") && file("usr/lib/f2") && file("srv/data/g"));
    assert!(file("lib/h") && !file("usr/lib/h"));
    let layers = store.join("exec/layers");
    let trees = trees(&store);
    // A symlink as the last component is followed too: its target gets the file.
    let mut utc: Vec<String> = trees
        .iter()
        .filter_map(|t| std::fs::read_to_string(layers.join(t).join("usr/share/zone/UTC")).ok())
        .collect();
    utc.sort();
    assert_eq!(utc, ["utc", "z"], "{trees:?}");
    assert!(
        trees
            .iter()
            .any(|t| layers.join(t).join("usr/lib/app").is_dir())
    );
    // The directories each layer has at the symlinks' names (not followed): only the
    // `--link` layer's `/lib`, holding `h`.
    let real_dirs = |name: &str| -> Vec<Vec<std::ffi::OsString>> {
        trees
            .iter()
            .map(|t| layers.join(t).join(name))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
            .map(|p| {
                std::fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect()
            })
            .collect()
    };
    assert_eq!(real_dirs("lib"), [["h"]]);
    assert!(real_dirs("data").is_empty() && real_dirs("etc/zone").is_empty());
}

/// The layer tree of a store that holds one.
fn only_tree(store: &Path) -> PathBuf {
    let [tree] = trees(store).try_into().expect("one layer tree");
    store.join("exec/layers").join(tree)
}

/// Builds `d/Dockerfile` into a new store `d/store`, which it returns.
fn build_in_new_store(d: &Path) -> PathBuf {
    let store = d.join("store");
    run(
        d,
        store.to_str().unwrap(),
        &["build", d.join("Dockerfile").to_str().unwrap()],
    );
    store
}

/// Whether some layer tree of `store` has a regular file at `path`.
fn file_in_a_layer(store: &Path, path: &str) -> bool {
    let layers = store.join("exec/layers");
    trees(store)
        .iter()
        .any(|tree| layers.join(tree).join(path).is_file())
}

/// Builds `dockerfile` into a new store in `d`, which must fail with one error line naming
/// `path` (in the image) as a symlink it would not write through.
fn refused_through_symlink(d: &Path, dockerfile: &Path, path: &str) {
    let line = refused(d, dockerfile);
    assert!(line.contains(path) && line.contains("symlink"), "{line}");
}

/// The one error line of a build of `dockerfile` into a new store in `d`, which must fail.
fn refused(d: &Path, dockerfile: &Path) -> String {
    let store = d.join("store");
    let err = crate::support::lamina_err(
        d,
        &[
            "--store",
            store.to_str().unwrap(),
            "build",
            dockerfile.to_str().unwrap(),
        ],
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    match errors[..] {
        [line] => line.to_owned(),
        _ => panic!("one error line expected: {err}"),
    }
}
