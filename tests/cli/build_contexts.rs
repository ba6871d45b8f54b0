//! Named build contexts (`lamina build --build-context NAME=DIR|NAME=docker-image://REF`),
//! as BuildKit has them: `COPY --from=NAME` and `RUN --mount=type=bind,from=NAME` read a
//! directory context as the build context is read, its files in the step keys, in place of
//! a stage of that name; an image context also serves `FROM NAME`; a directory cannot.

use serde_json::Value;

use crate::downloads::rootfs;
use crate::support::{lamina, lamina_ok, write_tree};

/// `lamina --store <dir>/store build ctx ...` with JSON progress: (cached steps, steps).
fn build(dir: &std::path::Path, args: &[&str]) -> (u64, u64) {
    let store = dir.join("store");
    let mut all = vec!["--store", store.to_str().unwrap(), "build", "ctx"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--progress", "json"]);
    let out = lamina_ok(dir, &all);
    let result: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    (
        result["cached"].as_u64().expect("a cached count"),
        result["steps"].as_u64().expect("a step count"),
    )
}

#[test]
fn copy_from_a_named_directory_context_is_keyed_by_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            // The stage of the same name is overridden by the context, as in BuildKit.
            (
                "ctx/Dockerfile",
                "FROM scratch AS assets\nCOPY Dockerfile /logo.txt\n\
                 FROM scratch\nCOPY --from=assets logo.txt /srv/\nCOPY --from=assets conf/ /etc/app/\n",
            ),
            ("assets/logo.txt", "the logo\n"),
            ("assets/conf/app.ini", "level=1\n"),
            ("assets/conf/secret.key", "not for the image\n"),
            ("assets/.dockerignore", "conf/*.key\n"),
        ],
    );
    let assets = format!("assets={}", root.join("assets").display());
    let with = ["--build-context", assets.as_str(), "--tag", "ctx:1"];
    assert_eq!(build(root, &with), (0, 2));
    let fs = rootfs(root, "ctx:1");
    assert_eq!(
        std::fs::read_to_string(fs.join("srv/logo.txt")).unwrap(),
        "the logo\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("etc/app/app.ini")).unwrap(),
        "level=1\n"
    );
    assert!(
        !fs.join("etc/app/secret.key").exists(),
        "the context's own .dockerignore applies"
    );

    assert_eq!(
        build(root, &with),
        (2, 2),
        "unchanged files: every step hits"
    );
    write_tree(root, &[("assets/conf/app.ini", "level=2\n")]);
    assert_eq!(build(root, &with), (1, 2), "a changed file misses its step");
    let fs = rootfs(root, "ctx:1");
    assert_eq!(
        std::fs::read_to_string(fs.join("etc/app/app.ini")).unwrap(),
        "level=2\n"
    );
}

/// An image context stands in for `FROM NAME` and `COPY --from=NAME`; a directory context
/// cannot be a base, and the error says what to give instead.
#[test]
fn an_image_context_serves_from_and_a_directory_context_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            (
                "base/Dockerfile",
                "FROM scratch\nCOPY tool.sh /bin/tool.sh\n",
            ),
            ("base/tool.sh", "echo tool\n"),
            (
                "ctx/Dockerfile",
                "FROM toolbox\nCOPY --from=toolbox /bin/tool.sh /again/tool.sh\n",
            ),
        ],
    );
    let store = root.join("store");
    let store = store.to_str().unwrap();
    lamina_ok(
        root,
        &["--store", store, "build", "base", "--tag", "tools:1"],
    );
    let image = [
        "--build-context",
        "toolbox=docker-image://tools:1",
        "--tag",
        "img:1",
    ];
    assert_eq!(build(root, &image), (0, 1));
    let fs = rootfs(root, "img:1");
    for file in ["bin/tool.sh", "again/tool.sh"] {
        assert_eq!(
            std::fs::read_to_string(fs.join(file)).unwrap(),
            "echo tool\n"
        );
    }

    let output = lamina(
        root,
        &[
            "--store",
            store,
            "build",
            "ctx",
            "--build-context",
            "toolbox=base",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the build context `toolbox` is the directory")
            && stderr.contains("--build-context toolbox=docker-image://REF"),
        "{stderr}"
    );
    let bad = lamina(
        root,
        &["build", "ctx", "--build-context", "toolbox=missing-dir"],
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("missing-dir"),
        "{stderr}"
    );
}

/// `RUN --mount=type=bind,from=NAME` shows the directory; its files are in the RUN's key.
#[test]
fn a_run_bind_mount_reads_a_named_directory_context() {
    if crate::build::sandbox_missing() {
        return;
    }
    let project = crate::build::Project::new();
    let root = project.dir.path();
    write_tree(
        root,
        &[
            (
                "ctx/Dockerfile",
                "FROM busybox:test\n\
                 RUN --mount=type=bind,from=data,target=/data cat /data/input.txt > /seen.txt\n",
            ),
            ("data/input.txt", "first\n"),
        ],
    );
    let data = format!("data={}", root.join("data").display());
    let with = ["--build-context", data.as_str(), "--tag", "run:1"];
    assert_eq!(build(root, &with), (0, 1));
    assert_eq!(build(root, &with), (1, 1));
    write_tree(root, &[("data/input.txt", "second\n")]);
    assert_eq!(build(root, &with), (0, 1), "the mounted file is in the key");
    let fs = rootfs(root, "run:1");
    assert_eq!(
        std::fs::read_to_string(fs.join("seen.txt")).unwrap(),
        "second\n"
    );
}
