//! Images that match Docker's, through the binary: `image inspect` shows every config field
//! that is set (and `--json` the stored bytes), the sandbox default command only where it
//! belongs or where `--default-cmd` says, and COPY keeps hard links.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{lamina_ok, write_tree};

/// A temp dir with a store; builds and inspects through the binary.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(files: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        write_tree(dir.path(), files);
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ok(&self, args: &[&str]) -> String {
        let store = self.path("store");
        let mut all = vec!["--store", store.to_str().unwrap()];
        all.extend_from_slice(args);
        lamina_ok(self.dir.path(), &all)
    }

    fn build(&self, definition: &str, tag: &str, extra: &[&str]) {
        let mut args = vec!["build", definition, "--tag", tag, "--progress", "plain"];
        args.extend_from_slice(extra);
        self.ok(&args);
    }
}

const FULL: &str = "FROM scratch\nCOPY hello.txt /srv/app/\nENV APP_HOME=/srv/app MODE=prod\n\
    WORKDIR /srv/app\nUSER 1000:1000\nLABEL org.example.name=app description=\"an app\"\n\
    EXPOSE 8080 53/udp\nVOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-ec\"]\n\
    HEALTHCHECK --interval=30s --retries=3 CMD [\"true\"]\nONBUILD COPY . /child\n\
    ENTRYPOINT [\"/srv/app/run\"]\nCMD [\"--serve\"]\n";

#[test]
fn inspect_shows_every_set_field_and_nothing_blank() {
    let project = Project::new(&[
        ("full/Dockerfile", FULL),
        ("full/hello.txt", "hello\n"),
        ("bare/Dockerfile", "FROM scratch\nCOPY hello.txt /\n"),
        ("bare/hello.txt", "hello\n"),
    ]);
    project.build("full", "full:1", &[]);
    let text = project.ok(&["image", "inspect", "full:1"]);
    // The name as the store normalizes it (short or full form).
    let name = text.lines().next().unwrap();
    assert!(
        name.starts_with("name:        ") && name.ends_with("full:1"),
        "{text}"
    );
    for line in [
        "platform:    linux/amd64",
        "user:        1000:1000",
        "workdir:     /srv/app",
        "env:         APP_HOME=/srv/app",
        "env:         MODE=prod",
        "entrypoint:  [\"/srv/app/run\"]",
        "cmd:         [\"--serve\"]",
        "shell:       [\"/bin/sh\",\"-ec\"]",
        "label:       description=an app",
        "label:       org.example.name=app",
        "port:        53/udp",
        "port:        8080/tcp",
        "volume:      /data",
        "healthcheck: CMD [\"true\"] (interval 30s, retries 3)",
        "stopsignal:  SIGINT",
        "onbuild:     COPY . /child",
        "history:",
        "  COPY hello.txt /srv/app/ # buildkit",
        "  ENV APP_HOME=/srv/app MODE=prod  (no layer)",
        "  EXPOSE [53/udp 8080/tcp]  (no layer)",
        "  CMD [\"--serve\"]  (no layer)",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    assert!(text.contains("digest:      sha256:"), "{text}");
    assert_no_blank_values(&text);

    // An image that sets nothing shows nothing for it (a Dockerfile gets no default CMD).
    project.build("bare", "bare:1", &[]);
    let text = project.ok(&["image", "inspect", "bare:1"]);
    for absent in [
        "user:",
        "workdir:",
        "env:",
        "cmd:",
        "entrypoint:",
        "label:",
        "port:",
        "volume:",
        "healthcheck:",
        "stopsignal:",
        "onbuild:",
        "shell:",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(absent)),
            "{absent} in\n{text}"
        );
    }
    assert_no_blank_values(&text);
}

/// Every `key: value` line has a value; only section headers end in `:`.
fn assert_no_blank_values(text: &str) {
    for line in text.lines() {
        assert!(!line.trim().is_empty(), "blank line in\n{text}");
        if line.trim_end().ends_with(':') {
            assert!(
                ["layers:", "history:"].contains(&line.trim_end()),
                "{line:?} has no value in\n{text}"
            );
        }
    }
}

#[test]
fn inspect_json_prints_the_stored_manifest_and_config_bytes() {
    let project = Project::new(&[("full/Dockerfile", FULL), ("full/hello.txt", "hello\n")]);
    project.build("full", "full:1", &[]);
    let out = project.ok(&["image", "inspect", "full:1", "--json"]);
    let value: Value = serde_json::from_str(&out).unwrap();
    assert!(value["name"].as_str().unwrap().ends_with("full:1"), "{out}");
    // The manifest text is the stored bytes: its sha256 is the image digest, and the
    // config's is the digest the manifest names.
    let (_, rest) = out.split_once("\"manifest\":").unwrap();
    let (manifest, rest) = rest.split_once(",\"config\":").unwrap();
    let config = rest.strip_suffix("}\n").unwrap();
    let sha = |text: &str| lamina::store::Digest::sha256_of(text.as_bytes()).to_string();
    assert_eq!(Value::from(sha(manifest)), value["digest"]);
    assert_eq!(
        Value::from(sha(config)),
        value["manifest"]["config"]["digest"]
    );
    // Docker-only fields are in the stored config.
    assert_eq!(value["config"]["config"]["Healthcheck"]["Retries"], 3);
    assert_eq!(
        value["config"]["config"]["OnBuild"],
        serde_json::json!(["COPY . /child"])
    );
}

#[test]
fn default_cmd_is_for_toml_definitions_unless_the_flag_says_otherwise() {
    let project = Project::new(&[
        ("df/Dockerfile", "FROM scratch\nCOPY a /a\n"),
        ("df/a", "a\n"),
        (
            "toml/lamina.toml",
            "[image]\nscratch = true\n\n[[step]]\nadd_local_file = { local = \"a\", remote = \"/a\" }\n",
        ),
        ("toml/a", "a\n"),
    ]);
    let cmd_lines = |tag: &str| {
        let text = project.ok(&["image", "inspect", tag]);
        text.lines()
            .filter(|l| l.starts_with("cmd:") || l.contains("# lamina: default command"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let sandbox = [
        "cmd:         [\"sleep\",\"infinity\"]".to_string(),
        "  CMD [\"sleep\" \"infinity\"] # lamina: default command for sandbox images  (no layer)"
            .to_string(),
    ];
    project.build("df", "df:auto", &[]);
    assert!(cmd_lines("df:auto").is_empty());
    project.build("df", "df:on", &["--default-cmd", "sleep-infinity"]);
    assert_eq!(cmd_lines("df:on"), sandbox);
    project.build("toml", "toml:auto", &[]);
    assert_eq!(cmd_lines("toml:auto"), sandbox);
    project.build("toml", "toml:off", &["--default-cmd", "none"]);
    assert!(cmd_lines("toml:off").is_empty());
}

/// Three linked files and one linked to a file that is not copied.
fn link_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("links")).unwrap();
    std::fs::write(dir.join("links/a"), "shared\n").unwrap();
    for name in ["b", "c"] {
        std::fs::hard_link(dir.join("links/a"), dir.join("links").join(name)).unwrap();
    }
    std::fs::write(dir.join("alone"), "alone\n").unwrap();
    std::fs::hard_link(dir.join("alone"), dir.join("links/d")).unwrap();
}

#[test]
fn copy_keeps_hard_links_in_the_exported_layer() {
    let project = Project::new(&[("app/Dockerfile", "FROM scratch\nCOPY links/ /links/\n")]);
    link_files(&project.path("app"));
    project.build("app", "links:1", &[]);
    let layout = project.path("layout");
    project.ok(&[
        "image",
        "export",
        "links:1",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
    ]);
    // Unpack the exported layer (the layout's only one).
    let blob_path = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_path(manifest_digest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let rootfs = tempfile::tempdir().unwrap();
    let blob = std::fs::File::open(blob_path(layers[0]["digest"].as_str().unwrap())).unwrap();
    lamina::layer::Unpacker::default()
        .unpack(blob, rootfs.path())
        .unwrap();
    let stat = |name: &str| {
        let meta = std::fs::metadata(rootfs.path().join("links").join(name)).unwrap();
        (meta.ino(), meta.nlink())
    };
    let a = stat("a");
    assert_eq!(a.1, 3);
    assert_eq!(stat("b"), a);
    assert_eq!(stat("c"), a);
    assert_eq!(stat("d").1, 1);
}

#[test]
fn a_run_step_sees_one_inode_for_linked_copies() {
    if crate::build::sandbox_missing() {
        return;
    }
    let project = Project::new(&[(
        "app/Dockerfile",
        "FROM scratch\nCOPY rootfs/ /\nCOPY links/ /links/\n\
         RUN stat -c '%i %h' /links/a /links/b /links/c /links/d > /stat.txt\nCMD [\"cat\", \"/stat.txt\"]\n",
    )]);
    let app = project.path("app");
    link_files(&app);
    std::fs::create_dir_all(app.join("rootfs/bin")).unwrap();
    std::fs::create_dir_all(app.join("rootfs/tmp")).unwrap();
    std::fs::copy("/bin/busybox", app.join("rootfs/bin/busybox")).unwrap();
    for applet in ["sh", "stat"] {
        std::os::unix::fs::symlink("busybox", app.join("rootfs/bin").join(applet)).unwrap();
    }
    project.build("app", "stat:1", &[]);
    let layout = project.path("layout");
    project.ok(&[
        "image",
        "export",
        "stat:1",
        "--format",
        "oci-dir",
        "-o",
        layout.to_str().unwrap(),
    ]);
    // The RUN layer is the last one; its /stat.txt says what `stat` saw in the container.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob_path = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob_path(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let rootfs = tempfile::tempdir().unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = std::fs::File::open(blob_path(layer["digest"].as_str().unwrap())).unwrap();
        lamina::layer::Unpacker::default()
            .unpack(blob, rootfs.path())
            .unwrap();
    }
    let stat = std::fs::read_to_string(rootfs.path().join("stat.txt")).unwrap();
    let lines: Vec<(&str, &str)> = stat.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(lines.len(), 4, "{stat}");
    assert!(lines[..3].iter().all(|l| *l == lines[0]), "{stat}");
    assert_eq!(lines[0].1, "3", "{stat}");
    assert_eq!(lines[3].1, "1", "{stat}");
}
