//! Messages that used to mislead (issue 14, finding 6), each through the binary, and the
//! layer size check of import (finding 5).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::build::{Project, sandbox_missing};
use crate::support::{lamina, lamina_err, lamina_in_store as run, write_tree};

fn store_of(dir: &Path) -> String {
    dir.join("store").to_str().unwrap().to_owned()
}

#[test]
fn an_unknown_target_lists_the_stages_or_says_there_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    write_tree(
        dir.path(),
        &[
            ("plain/a.txt", "a\n"),
            ("plain/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("staged/a.txt", "a\n"),
            (
                "staged/Dockerfile",
                "FROM scratch AS base\nCOPY a.txt /a.txt\nFROM base AS app\nCOPY a.txt /b.txt\n",
            ),
        ],
    );
    let build = |definition: &str| {
        lamina_err(
            dir.path(),
            &[
                "--store",
                &store,
                "build",
                definition,
                "--target",
                "nostage",
                "--progress",
                "plain",
            ],
        )
    };
    let err = build("plain");
    assert!(
        err.contains("no stage is named \"nostage\"") && err.contains("names no stages"),
        "{err}"
    );
    assert!(!err.contains("name one of"), "{err}");
    let err = build("staged");
    assert!(err.contains("name one of: base, app"), "{err}");
}

#[test]
fn a_missing_definition_is_named_as_the_definition() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    let err = lamina_err(
        dir.path(),
        &["--store", &store, "build", "nowhere/Dockerfile"],
    );
    assert!(
        err.contains("definition 'nowhere/Dockerfile' does not exist"),
        "{err}"
    );
    assert!(!err.contains("context directory"), "{err}");
}

#[test]
fn a_silent_failing_run_and_a_huge_run_line_read_well() {
    if sandbox_missing() {
        return;
    }
    let project = Project::new();
    // Under the kernel's 128 KiB limit for one argument.
    let long_arg = "x".repeat(100_000);
    write_tree(
        project.dir.path(),
        &[
            ("silent/Dockerfile", "FROM busybox:test\nRUN exit 3\n"),
            (
                "long/Dockerfile",
                &format!("FROM busybox:test\nRUN test -z {long_arg}\n"),
            ),
        ],
    );
    let err = project.err(&["build", "silent", "--progress", "plain"]);
    assert!(err.contains("failed with exit code 3"), "{err}");
    assert!(err.contains("(it printed nothing)"), "{err}");
    assert!(!err.contains("last output"), "{err}");

    let store = project.store();
    let output = lamina(
        project.dir.path(),
        &[
            "--store",
            store.to_str().unwrap(),
            "build",
            "long",
            "--progress",
            "plain",
        ],
    );
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.len() < 10_000, "{} bytes of output", text.len());
    assert!(text.contains("more characters not shown"), "{text}");
    assert!(text.contains("failed with exit code 1"), "{text}");
}

#[test]
fn an_io_error_does_not_repeat_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    let err = lamina_err(
        dir.path(),
        &["--store", &store, "image", "import", "missing.tar"],
    );
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    assert!(err.contains("missing.tar"), "{err}");
}

#[test]
fn a_garbage_archive_gets_a_clean_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    let mut garbage = Vec::with_capacity(8192);
    let mut state: u32 = 12345;
    for _ in 0..8192 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        garbage.push((state >> 16) as u8);
    }
    // A checksum that matches makes tar parse the header and quote its fields.
    std::fs::write(dir.path().join("garbage.tar"), &garbage).unwrap();
    let output = lamina(
        dir.path(),
        &["--store", &store, "image", "import", "garbage.tar"],
    );
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(
        err.trim_end()
            .chars()
            .all(|c| !c.is_control() && c != char::REPLACEMENT_CHARACTER),
        "{err:?}"
    );
    assert!(err.contains("garbage.tar: not a tar archive"), "{err}");
    assert!(err.len() < 300, "{err}");
}

#[test]
fn gc_says_when_min_age_kept_what_the_ttl_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    write_tree(
        dir.path(),
        &[
            ("ctx/a.txt", "a\n"),
            ("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
        ],
    );
    run(dir.path(), &store, &["build", "ctx", "--progress", "plain"]);
    let out = run(dir.path(), &store, &["cache", "gc", "--ttl", "0s"]);
    assert!(
        out.contains("expired cache entr") && out.contains("made within --min-age (10m)"),
        "{out}"
    );
    let out = run(
        dir.path(),
        &store,
        &["cache", "gc", "--ttl", "0s", "--min-age", "0s"],
    );
    assert!(!out.contains("note: kept"), "{out}");
    assert!(!out.contains("cache entries: 0 expired"), "{out}");
}

#[test]
fn a_full_disk_during_copy_names_the_store_not_the_input() {
    use crate::require::Need::{Root, Tool};
    if crate::require::missing(&[Root, Tool("mount")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    if !mounted.success() {
        crate::require::cannot_run("mounting a tmpfs failed");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&small);
    let store = small.join("store");
    let store = store.to_str().unwrap();
    write_tree(
        dir.path(),
        &[("ctx/Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n")],
    );
    std::fs::write(dir.path().join("ctx/big.bin"), vec![7u8; 40 << 20]).unwrap();
    let err = lamina_err(
        dir.path(),
        &["--store", store, "build", "ctx", "--progress", "plain"],
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&format!("{store}/")), "{err}");
    let input = dir.path().join("ctx/big.bin");
    assert!(!err.contains(input.to_str().unwrap()), "{err}");
}

/// Rewrites the first layer descriptor's size in the OCI layout at `layout` (manifest and
/// index updated to match), so the manifest is valid JSON but wrong about its layer.
fn corrupt_layer_size(layout: &Path) {
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blobs = layout.join("blobs/sha256");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&old["sha256:".len()..])).unwrap())
            .unwrap();
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = Value::from(size + 1);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    std::fs::write(layout.join("manifest.tmp"), &bytes).unwrap();
    let out = Command::new("sha256sum")
        .arg(layout.join("manifest.tmp"))
        .output()
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
    std::fs::rename(layout.join("manifest.tmp"), blobs.join(&hex)).unwrap();
    index["manifests"][0]["digest"] = Value::from(format!("sha256:{hex}"));
    index["manifests"][0]["size"] = Value::from(bytes.len());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_manifest_with_a_wrong_layer_size_is_refused_even_when_the_layer_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_of(dir.path());
    write_tree(
        dir.path(),
        &[
            ("ctx/a.txt", "a\n"),
            ("ctx/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
        ],
    );
    run(
        dir.path(),
        &store,
        &["build", "ctx", "--tag", "good:1", "--progress", "plain"],
    );
    run(
        dir.path(),
        &store,
        &[
            "image", "export", "good:1", "--format", "oci-dir", "-o", "layout",
        ],
    );
    corrupt_layer_size(&dir.path().join("layout"));
    let stats_before = run(dir.path(), &store, &["cache", "stats"]);
    // The store holds the layer (it built it) and, in a fresh store, it must be received.
    let fresh = store_of(&dir.path().join("fresh"));
    for store in [&store, &fresh] {
        let err = lamina_err(
            dir.path(),
            &["--store", store, "image", "import", "layout", "bad:1"],
        );
        assert!(err.contains("layer sha256:"), "{err}");
        assert!(err.contains("nothing was stored"), "{err}");
        let listed = run(dir.path(), store, &["image", "ls"]);
        assert!(!listed.contains("bad"), "{listed}");
    }
    let stats_after = run(dir.path(), &store, &["cache", "stats"]);
    let blobs = |stats: &str| {
        stats
            .lines()
            .find(|l| l.starts_with("blobs"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(blobs(&stats_before), blobs(&stats_after));
}
