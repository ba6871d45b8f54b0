//! A base as Docker writes it (`null` for empty config fields, fields Lamina does not model)
//! imported from a docker-archive, built on with a RUN step, and exported with its config
//! bytes, so its Docker image ID, unchanged.

use std::path::Path;
use std::process::Command;

use crate::support::{lamina_err, lamina_in_store as run, write_tree};

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

fn tar(dir: &Path, out: &Path, members: &[&str]) {
    let status = Command::new("tar")
        .args([
            "--format=gnu",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .args(members)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The files of a tar as (name, bytes), unpacked with GNU tar.
pub(crate) fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A `docker save` archive of a busybox image whose config is in Docker 20.10's classic
/// builder's shape; returns its path and the config's file name (`<image id>.json`).
pub(crate) fn docker_archive(dir: &Path) -> (std::path::PathBuf, String) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    write_tree(
        &rootfs,
        &[("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")],
    );
    let save = dir.join("save");
    std::fs::create_dir_all(save.join("layer")).unwrap();
    tar(&rootfs, &save.join("layer/layer.tar"), &["."]);
    let diff_id = sha256_file(&save.join("layer/layer.tar"));
    let config = format!(
        r##"{{"architecture":"amd64","config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"Tty":false,"Env":["PATH=/bin"],"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}},"container_config":{{"Cmd":["/bin/sh","-c","#(nop) COPY dir:x in / "],"OnBuild":null}},"created":"2024-01-01T00:00:00.123456789Z","docker_version":"20.10.24+dfsg1","history":[{{"created":"2024-01-01T00:00:00.123456789Z","created_by":"/bin/sh -c #(nop) COPY dir:x in / "}}],"os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"##
    );
    std::fs::write(save.join("config.tmp"), &config).unwrap();
    let id = sha256_file(&save.join("config.tmp"));
    let config_name = format!("{id}.json");
    std::fs::rename(save.join("config.tmp"), save.join(&config_name)).unwrap();
    std::fs::write(
        save.join("manifest.json"),
        format!(r#"[{{"Config":"{config_name}","RepoTags":["nulls/base:1"],"Layers":["layer/layer.tar"]}}]"#),
    )
    .unwrap();
    let archive = dir.join("base.tar");
    tar(
        &save,
        &archive,
        &["manifest.json", &config_name, "layer/layer.tar"],
    );
    (archive, config_name)
}

#[test]
fn a_docker_base_with_null_fields_builds_and_exports_with_its_image_id() {
    if crate::build::sandbox_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, config_name) = docker_archive(dir.path());
    let config_bytes = std::fs::read(dir.path().join("save").join(&config_name)).unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let imported = run(
        dir.path(),
        store,
        &["image", "import", archive.to_str().unwrap()],
    );
    assert!(imported.contains("nulls/base:1"), "{imported}");

    // Issue 10: `"OnBuild": null` made every build FROM such a base fail.
    write_tree(
        dir.path(),
        &[(
            "app/Dockerfile",
            "FROM nulls/base:1\nRUN echo ran > /ran.txt\nCMD [\"cat\", \"/ran.txt\"]\n",
        )],
    );
    let built = run(
        dir.path(),
        store,
        &["build", "app", "--tag", "app:1", "--progress", "plain"],
    );
    assert!(built.contains("built sha256:"), "{built}");

    // The base goes back out with the config bytes it came with: the same image ID.
    for compression in ["none", "gzip", "zstd"] {
        let out = dir.path().join(format!("back-{compression}.tar"));
        run(
            dir.path(),
            store,
            &[
                "image",
                "export",
                "nulls/base:1",
                "--format",
                "docker-archive",
                "--compression",
                compression,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        let unpacked = dir.path().join(format!("unpacked-{compression}"));
        untar(&out, &unpacked);
        let back = std::fs::read(unpacked.join(&config_name))
            .unwrap_or_else(|e| panic!("{config_name} not in the export: {e}"));
        assert_eq!(back, config_bytes, "config bytes changed ({compression})");
    }
}

#[test]
fn a_malformed_base_config_is_refused_at_import_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("save");
    std::fs::create_dir_all(save.join("layer")).unwrap();
    write_tree(&dir.path().join("rootfs"), &[("hello.txt", "hi\n")]);
    tar(
        &dir.path().join("rootfs"),
        &save.join("layer/layer.tar"),
        &["."],
    );
    let diff_id = sha256_file(&save.join("layer/layer.tar"));
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":"PATH=/bin","OnBuild":null}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    std::fs::write(save.join("config.json"), config).unwrap();
    std::fs::write(
        save.join("manifest.json"),
        r#"[{"Config":"config.json","RepoTags":["bad/base:1"],"Layers":["layer/layer.tar"]}]"#,
    )
    .unwrap();
    let archive = dir.path().join("bad.tar");
    tar(
        &save,
        &archive,
        &["manifest.json", "config.json", "layer/layer.tar"],
    );
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let err = lamina_err(
        dir.path(),
        &[
            "--store",
            store,
            "image",
            "import",
            archive.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("image bad/base:1: config field config.Env is malformed (invalid type: string \"PATH=/bin\""),
        "{err}"
    );
    let listed = run(dir.path(), store, &["image", "ls"]);
    assert!(!listed.contains("bad/base"), "{listed}");
}

#[test]
fn an_imported_base_is_unpacked_at_import_and_builds_on_it_unpack_nothing() {
    if crate::build::sandbox_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = docker_archive(dir.path());
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    run(
        dir.path(),
        store,
        &["image", "import", archive.to_str().unwrap()],
    );
    // WORKDIR and --chown by name read the base in place; RUN stacks it as it is.
    write_tree(
        dir.path(),
        &[
            (
                "app/Dockerfile",
                "FROM nulls/base:1\nWORKDIR /srv/app\nCOPY --chown=root f ./\n\
                 RUN test -d /srv/app && test -f /srv/app/f\n",
            ),
            ("app/f", "f\n"),
        ],
    );
    let built = run(dir.path(), store, &["build", "app", "--progress", "json"]);
    let result: serde_json::Value = built
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or_else(|| panic!("no result line in {built}"));
    assert_eq!(result["cached"], 0, "{result}");
    assert_eq!(result["layers_unpacked"], 0, "{result}");
}
