//! `check`, `digest` and `build` agree on what COPY/ADD sources name (one expansion of
//! ARG/ENV and the platform arguments, wildcards that match nothing, URLs after expansion),
//! and ONBUILD triggers of a base image run in the image built on it; through the binary.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::{lamina, lamina_err, lamina_ok, write_tree};

/// The texts of the steps a `--progress json` build started, and its result line.
fn started_steps(out: &str) -> (Vec<String>, Value) {
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let texts = events
        .iter()
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect();
    (texts, events.last().cloned().unwrap_or_default())
}

fn run_args<'a>(store: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--store", store];
    all.extend_from_slice(args);
    all
}

/// `digest` follows exactly the files the build copies: the one reached through
/// `$TARGETARCH` counts, the other architecture's does not; `check` accepts the context
/// and `build` copies the same file.
#[test]
fn digest_check_and_build_read_sources_after_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    write_tree(
        dir.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nARG TARGETOS\nARG TARGETARCH\n\
                 COPY dist/$TARGETOS/$TARGETARCH/app /app\nCOPY cwallet.ss[o] /opt/\n",
            ),
            ("dist/linux/amd64/app", "amd64\n"),
            ("dist/linux/arm64/app", "arm64\n"),
        ],
    );
    let digest = || lamina_ok(dir.path(), &["digest", "Dockerfile"]);
    let before = digest();
    let out = lamina_ok(dir.path(), &["check", "Dockerfile"]);
    assert!(out.starts_with("ok: "), "{out}");
    assert!(
        out.contains(before.trim()),
        "check prints the same digest: {out}"
    );

    write_tree(dir.path(), &[("dist/linux/arm64/app", "arm64, rebuilt\n")]);
    assert_eq!(digest(), before, "an unrelated file does not count");
    write_tree(dir.path(), &[("dist/linux/amd64/app", "amd64, rebuilt\n")]);
    let after = digest();
    assert_ne!(after, before, "the file the build copies counts");
    // The optional file: absent is fine, present counts.
    write_tree(dir.path(), &[("cwallet.sso", "wallet\n")]);
    assert_ne!(digest(), after);

    let built = lamina_ok(
        dir.path(),
        &run_args(
            store,
            &["build", ".", "--tag", "arch:1", "--progress", "json"],
        ),
    );
    let (steps, _) = started_steps(&built);
    assert!(
        steps.iter().any(|s| s == "COPY dist/linux/amd64/app /app"),
        "the build copied the same file: {steps:?}"
    );

    // A literal source that is missing still fails, naming it.
    write_tree(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM scratch\nCOPY cwallet.sso.missing /opt/\n",
        )],
    );
    let err = lamina_err(dir.path(), &["check", "Dockerfile"]);
    assert!(err.contains("cwallet.sso.missing"), "{err}");
}

/// A quoted URL built from an ARG is a URL: `check` passes it (no "matches no file"),
/// `digest` hashes its text (or its checksum) without downloading, and a checksum that is
/// not sha256 is refused by `build` and warned about by `check`.
#[test]
fn url_sources_are_recognised_after_quote_removal_and_expansion() {
    let dir = tempfile::tempdir().unwrap();
    let add = |flags: &str| {
        format!(
            "FROM scratch\nARG PYTHON_VERSION=3.12.1\n# a comment\n\
             ADD {flags} \"https://example.invalid/Python-${{PYTHON_VERSION}}.tar.xz\" /x\n"
        )
    };
    write_tree(dir.path(), &[("Dockerfile", &add(""))]);
    let output = lamina(dir.path(), &["check", "Dockerfile"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // `build` downloads http(s) sources, so there is nothing to warn about.
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(!stderr.contains("matches no file"), "{stderr}");

    let digest = |args: &[&str]| {
        let mut all = vec!["digest", "Dockerfile"];
        all.extend_from_slice(args);
        lamina_ok(dir.path(), &all)
    };
    let plain = digest(&[]);
    assert_ne!(digest(&["--build-arg", "PYTHON_VERSION=3.12.2"]), plain);
    write_tree(
        dir.path(),
        &[("Dockerfile", &add("--checksum=sha256:0123abcd"))],
    );
    let pinned = digest(&[]);
    assert_ne!(pinned, plain);

    let store = dir.path().join("store");
    let err = lamina_err(
        dir.path(),
        &run_args(store.to_str().unwrap(), &["build", "Dockerfile"]),
    );
    assert!(
        err.contains("--checksum=sha256:0123abcd") && err.contains("sha256:<64 hex digits>"),
        "{err}"
    );
    let check = lamina(dir.path(), &["check", "Dockerfile"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("warning: line 4: ADD would fail in `lamina build`")
            && stderr.contains("--checksum=sha256:0123abcd"),
        "{stderr}"
    );
}

/// Builds a busybox rootfs image tagged `name` into `store` from `dir/base`.
fn busybox_base(dir: &Path, store: &str, name: &str) {
    let rootfs = dir.join("base/rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "test", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    write_tree(
        dir,
        &[("base/Dockerfile", "FROM scratch\nCOPY rootfs/ /\n")],
    );
    lamina_ok(
        dir,
        &run_args(
            store,
            &["build", "base", "--tag", name, "--progress", "plain"],
        ),
    );
}

/// Rewrites the only image of the OCI layout at `layout` so that its config carries
/// `triggers` in `OnBuild`, as Docker writes them.
fn add_onbuild(layout: &Path, triggers: &[&str]) {
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let put = |bytes: &[u8]| {
        let hex = lamina::store::Digest::sha256_of(bytes).hex();
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
        json!({"digest": format!("sha256:{hex}"), "size": bytes.len()})
    };
    let read =
        |path: &Path| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let mut index = read(&layout.join("index.json"));
    let mut manifest = read(&blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(&blob(manifest["config"]["digest"].as_str().unwrap()));
    config["config"]["OnBuild"] = json!(triggers);
    let written = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = written["digest"].clone();
    manifest["config"]["size"] = written["size"].clone();
    let written = put(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = written["digest"].clone();
    index["manifests"][0]["size"] = written["size"].clone();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Builds `app` (`FROM base`, then a RUN that checks what the triggers wrote) as `child:1`
/// and asserts that the base's two triggers ran first, in order.
fn build_child_running_triggers(dir: &Path, store: &str, base: &str) {
    let dockerfile = format!(
        "FROM {base}\nRUN test \"$(cat /onbuild.txt)\" = hi && \
         test \"$(cat /srv/app.txt)\" = \"the app\"\n"
    );
    write_tree(
        dir,
        &[
            ("app/app.txt", "the app\n"),
            ("app/Dockerfile", &dockerfile),
        ],
    );
    let out = lamina_ok(
        dir,
        &run_args(
            store,
            &["build", "app", "--tag", "child:1", "--progress", "json"],
        ),
    );
    let (texts, result) = started_steps(&out);
    assert_eq!(result["steps"], 3, "{result}");
    assert_eq!(
        texts[..2],
        ["RUN echo hi > /onbuild.txt", "COPY app.txt /srv/app.txt"]
    );
}

/// A base image whose config carries ONBUILD triggers (a RUN and a COPY): `FROM` it runs
/// them first, in order, against this build's context; the image built on it does not
/// pass them on.
#[test]
fn onbuild_triggers_of_a_base_image_run_after_from() {
    if crate::build::sandbox_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    busybox_base(dir.path(), store, "plain-base:1");
    let layout = dir.path().join("layout");
    lamina_ok(
        dir.path(),
        &run_args(
            store,
            &[
                "image",
                "export",
                "plain-base:1",
                "--format",
                "oci-dir",
                "-o",
                layout.to_str().unwrap(),
            ],
        ),
    );
    add_onbuild(
        &layout,
        &["RUN echo hi > /onbuild.txt", "COPY app.txt /srv/app.txt"],
    );
    lamina_ok(
        dir.path(),
        &run_args(
            store,
            &[
                "image",
                "import",
                layout.to_str().unwrap(),
                "onbuild-base:1",
            ],
        ),
    );

    write_tree(
        dir.path(),
        &[("next/Dockerfile", "FROM child:1\nRUN true\n")],
    );
    build_child_running_triggers(dir.path(), store, "onbuild-base:1");
    // Not inherited: an image built on the child runs only its own step.
    let out = lamina_ok(
        dir.path(),
        &run_args(store, &["build", "next", "--progress", "json"]),
    );
    let (texts, result) = started_steps(&out);
    assert_eq!(result["steps"], 1, "{texts:?}");
}

/// An image Lamina builds keeps its own `ONBUILD` lines in its config: a later build `FROM`
/// it runs them first, and the image that build makes does not carry them on.
#[test]
fn onbuild_lines_of_a_lamina_built_image_run_in_the_next_build() {
    if crate::build::sandbox_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    busybox_base(dir.path(), store, "plain-base:1");
    write_tree(
        dir.path(),
        &[(
            "parent/Dockerfile",
            "FROM plain-base:1\nONBUILD RUN echo hi > /onbuild.txt\n\
                 ONBUILD COPY app.txt /srv/app.txt\n",
        )],
    );
    lamina_ok(
        dir.path(),
        &run_args(store, &["build", "parent", "--tag", "parent:1"]),
    );
    let on_build = |name: &str| {
        let out = lamina_ok(
            dir.path(),
            &run_args(store, &["image", "inspect", name, "--json"]),
        );
        let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        value["config"]["config"]["OnBuild"].clone()
    };
    assert_eq!(
        on_build("parent:1"),
        serde_json::json!(["RUN echo hi > /onbuild.txt", "COPY app.txt /srv/app.txt"])
    );
    build_child_running_triggers(dir.path(), store, "parent:1");
    let child = on_build("child:1");
    assert!(child.is_null() || child == serde_json::json!([]), "{child}");
}
