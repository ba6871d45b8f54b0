//! `RUN --mount=` through the binary on the busybox base: bind mounts from a stage, an image
//! and the context (their content in the step's key), cache mounts with ownership, sharing
//! modes and a seed, tmpfs with a size, secrets as files and variables, ssh agents.

use std::path::Path;

use lamina::export::StoredImage;
use lamina::store::{Store, StoreOptions};

use crate::build::{Project, sandbox_missing};
use crate::support::write_tree;

/// The image `name`'s files, all layers unpacked in order.
fn rootfs(project: &Project, name: &str) -> tempfile::TempDir {
    let store = Store::open(project.store(), StoreOptions::default()).unwrap();
    let image = StoredImage::load_named(&store, name).unwrap().unwrap();
    let out = tempfile::tempdir().unwrap();
    for layer in &image.layers {
        let blob = store.get(&layer.variant.digest).unwrap().unwrap();
        lamina::layer::Unpacker::default()
            .unpack(std::io::BufReader::new(blob.into_file()), out.path())
            .unwrap();
    }
    out
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The project with `files` written below it, or `None` where `require` allows a skip.
fn project(files: &[(&str, &str)]) -> Option<Project> {
    if sandbox_missing() {
        return None;
    }
    let project = Project::new();
    write_tree(project.dir.path(), files);
    Some(project)
}

fn build(project: &Project, dir: &str, tag: &str, extra: &[&str]) -> String {
    let mut args = vec!["build", dir, "--tag", tag, "--progress", "plain"];
    args.extend_from_slice(extra);
    project.ok(&args)
}

const BINDS: &str = "FROM busybox:test AS build
RUN mkdir /out && echo built > /out/artifact

FROM busybox:test
RUN --mount=type=bind,from=build,source=/out,target=/mnt/out cat /mnt/out/artifact > /copied
RUN --mount=type=bind,from=busybox:test,source=bin,target=/mnt/bin ls /mnt/bin > /listing
RUN --mount=type=bind,source=data,target=/data,rw echo scribble > /data/new && cat /data/input > /ctx
";

#[test]
fn bind_mounts_read_stages_images_and_the_context_and_key_on_their_content() {
    let Some(p) = project(&[("binds/Dockerfile", BINDS), ("binds/data/input", "one\n")]) else {
        return;
    };
    build(&p, "binds", "binds", &[]);
    let root = rootfs(&p, "binds");
    assert_eq!(read(root.path(), "copied"), "built\n");
    assert!(read(root.path(), "listing").lines().any(|l| l == "busybox"));
    assert_eq!(read(root.path(), "ctx"), "one\n");
    assert!(!root.path().join("mnt").exists() && !root.path().join("data").exists());
    // Writes to a rw bind are thrown away.
    assert!(!p.dir.path().join("binds/data/new").exists());

    // The context file is part of the last step's key, and only of it.
    write_tree(p.dir.path(), &[("binds/data/input", "two\n")]);
    let out = build(&p, "binds", "binds", &[]);
    assert!(out.contains("(3/4 steps cached)"), "{out}");
    assert_eq!(read(rootfs(&p, "binds").path(), "ctx"), "two\n");
}

/// As BuildKit's frontend places them: a relative target, or none, is in the WORKDIR.
const RELATIVE: &str = "FROM busybox:test
WORKDIR /src
RUN --mount=target=ctx --mount=type=cache,target=cache/ \\
    cat ctx/input > /seen && echo x >> cache/log && wc -l < /src/cache/log > /count
WORKDIR /src/ctx
RUN --mount=ro cat input > /seen-here
";

#[test]
fn relative_mount_targets_are_in_the_working_directory() {
    let Some(p) = project(&[("rel/Dockerfile", RELATIVE), ("rel/input", "ctx\n")]) else {
        return;
    };
    build(&p, "rel", "rel", &[]);
    let root = rootfs(&p, "rel");
    assert_eq!(read(root.path(), "seen"), "ctx\n");
    assert_eq!(read(root.path(), "count").trim(), "1");
    assert_eq!(read(root.path(), "seen-here"), "ctx\n");
    // No mount leaves anything in the image's /src (WORKDIR made /src/ctx).
    let left: Vec<_> = std::fs::read_dir(root.path().join("src/ctx"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_bind_mount_from_an_unknown_place_or_outside_the_context_is_refused() {
    let Some(p) = project(&[
        (
            "escape/Dockerfile",
            "FROM busybox:test\nRUN --mount=source=../x,target=/x true\n",
        ),
        (
            "missing/Dockerfile",
            "FROM busybox:test AS a\nFROM busybox:test\nRUN --mount=from=a,source=/nope,target=/x true\n",
        ),
    ]) else {
        return;
    };
    let err = p.err(&["build", "escape"]);
    assert!(err.contains("inside the build context"), "{err}");
    let err = p.err(&["build", "missing"]);
    assert!(
        err.contains("does not exist in that stage or image"),
        "{err}"
    );
}

const CACHES: &str = "FROM busybox:test AS seed
RUN mkdir -p /seed && echo seeded > /seed/s

FROM busybox:test
RUN --mount=type=cache,target=/c1,id=locked,sharing=locked,mode=0700,uid=1000,gid=1000 \\
    echo x >> /c1/log && wc -l < /c1/log > /locked && stat -c '%a %u %g' /c1 > /owner
RUN --mount=type=cache,target=/c2,sharing=shared echo x >> /c2/log && wc -l < /c2/log > /shared
RUN --mount=type=cache,target=/c3,sharing=private echo x >> /c3/log && wc -l < /c3/log > /private
RUN --mount=type=cache,target=/c4,from=seed,source=/seed cat /c4/s > /seeded
";

#[test]
fn cache_mounts_persist_in_every_sharing_mode_and_stay_out_of_layers() {
    let Some(p) = project(&[("caches/Dockerfile", CACHES)]) else {
        return;
    };
    build(&p, "caches", "caches", &[]);
    build(&p, "caches", "caches", &["--no-cache"]);
    let root = rootfs(&p, "caches");
    for (file, count) in [("locked", "2"), ("shared", "2"), ("private", "2")] {
        assert_eq!(read(root.path(), file).trim(), count, "{file}");
    }
    assert_eq!(read(root.path(), "owner"), "700 1000 1000\n");
    assert_eq!(read(root.path(), "seeded"), "seeded\n");
    for dir in ["c1", "c2", "c3", "c4"] {
        assert!(!root.path().join(dir).exists(), "{dir} is in the image");
    }

    // GC keeps caches used within the TTL and removes them past it.
    let kept: serde_json::Value = serde_json::from_str(&p.ok(&["cache", "gc", "--json"])).unwrap();
    assert_eq!(kept["cache_mounts_removed"], 0, "{kept}");
    let gc = p.ok(&["cache", "gc", "--ttl", "0s", "--min-age", "0s", "--json"]);
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    assert_eq!(gc["cache_mounts_removed"], 4, "{gc}");
    let left = std::fs::read_dir(p.store().join("exec/cache-mounts"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(left, 0);
}

#[test]
fn tmpfs_mounts_are_empty_bounded_and_not_in_the_layer() {
    let dockerfile = "FROM busybox:test
RUN --mount=type=tmpfs,target=/t,size=1m \\
    ls -A /t | wc -l > /entries && \\
    if head -c 2000000 /dev/zero > /t/big 2>/dev/null; then echo fit; else echo full; fi > /result
";
    let Some(p) = project(&[("tmpfs/Dockerfile", dockerfile)]) else {
        return;
    };
    build(&p, "tmpfs", "tmpfs", &[]);
    let root = rootfs(&p, "tmpfs");
    assert_eq!(read(root.path(), "entries").trim(), "0");
    assert_eq!(read(root.path(), "result"), "full\n");
    assert!(!root.path().join("t").exists());
}

#[test]
fn secrets_reach_files_and_variables_and_only_required_ones_must_be_given() {
    let dockerfile = "FROM busybox:test
RUN --mount=type=secret,id=tok,env=TOKEN test \"$TOKEN\" = s3cret && test ! -e /run/secrets/tok && echo env > /env
RUN --mount=type=secret,id=tok,target=/etc/tok,env=ALSO cat /etc/tok > /file-seen && test -n \"$ALSO\"
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo optional > /optional
";
    let required = "FROM busybox:test\nRUN --mount=type=secret,id=absent,required true\n";
    let Some(p) = project(&[
        ("secrets/Dockerfile", dockerfile),
        ("required/Dockerfile", required),
        ("tok.txt", "s3cret"),
    ]) else {
        return;
    };
    let secret = format!("id=tok,src={}", p.dir.path().join("tok.txt").display());
    build(&p, "secrets", "secrets", &["--secret", &secret]);
    let root = rootfs(&p, "secrets");
    assert_eq!(read(root.path(), "env"), "env\n");
    assert_eq!(read(root.path(), "file-seen"), "s3cret");
    assert_eq!(read(root.path(), "optional"), "optional\n");
    assert!(!root.path().join("etc/tok").exists());
    assert!(!root.path().join("run/secrets").exists());
    let err = p.err(&["build", "required", "--secret", &secret]);
    assert!(err.contains("secret `absent` was not provided"), "{err}");
}

#[test]
fn ssh_mounts_forward_the_agent_given_with_ssh_and_say_so_without_it() {
    let dockerfile = "FROM busybox:test\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo agent > /agent\n";
    let Some(p) = project(&[("ssh/Dockerfile", dockerfile)]) else {
        return;
    };
    let err = p.err(&["build", "ssh"]);
    assert!(err.contains("--ssh default"), "{err}");
    let socket = p.dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let ssh = format!("default={}", socket.display());
    build(&p, "ssh", "ssh", &["--ssh", &ssh]);
    assert_eq!(read(rootfs(&p, "ssh").path(), "agent"), "agent\n");
}
