//! Images from and for the real Docker world, checked with the clients Debian ships: a private
//! dockerd (docker.io: BuildKit and the classic builder, push, pull, run, save, load), podman,
//! umoci and docker-registry on loopback. One dockerd serves every check; each check runs even
//! when an earlier one failed, and the test fails at the end naming every failed check.
//! Timings go to stderr (`cargo test … -- --nocapture` shows them).

#![allow(clippy::print_stderr)]

mod clients;

use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clients::{DOCKER, DOCKERD, Dockerd, Podman, loaded_name, run_ok};

use crate::registry::server;
use crate::support::{lamina_in_store, write_tree};

#[test]
fn images_go_to_and_come_from_docker_podman_and_umoci() {
    use crate::require::Need::{File, Root, Tool};
    let needs = [
        Root,
        Tool(DOCKERD),
        Tool(DOCKER),
        Tool("podman"),
        Tool("umoci"),
        Tool("runc"),
        Tool("tar"),
        Tool("skopeo"),
        Tool(server::BINARY),
        File("/bin/busybox"),
    ];
    if crate::require::missing(&needs) {
        return;
    }
    let world = World::start();
    let mut checks = Checks::default();
    for builder in [Builder::BuildKit, Builder::Classic] {
        checks.run(
            &format!(
                "{} base: docker push → lamina pull and build FROM it → lamina push → \
                 docker and podman pull and run",
                builder.name()
            ),
            || world.base_round_trip(builder),
        );
    }
    checks.run(
        "lamina push (default compression) of a scratch build and a docker save import → \
         gzip layers, docker and podman pull and run",
        || world.default_push_reaches_every_client(),
    );
    checks.run(
        "an image imported as docker.io/library/NAME:TAG is found as NAME:TAG by export and FROM",
        || world.short_and_full_names_meet(),
    );
    checks.run(
        "docker save → lamina image import → image export --format docker-archive → \
         docker load keeps the image ID",
        || world.save_import_export_load(),
    );
    checks.run(
        "default oci-dir and oci-archive exports unpack with umoci and run in podman; \
         docker-archive runs in docker",
        || world.exports_reach_every_client(),
    );
    checks.run(
        "COPY of hardlinked files: one inode in docker run, link count as on the host",
        || world.copy_keeps_hardlinks(),
    );
    checks.finish();
}

/// The two builders of Debian's docker.
#[derive(Debug, Clone, Copy)]
enum Builder {
    BuildKit,
    Classic,
}

impl Builder {
    fn name(self) -> &'static str {
        match self {
            Builder::BuildKit => "buildkit",
            Builder::Classic => "classic",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Builder::BuildKit => "1",
            Builder::Classic => "0",
        }
    }
}

/// dockerd, a registry, podman's storage and a scratch directory, all private to the test.
/// Fields drop in order: dockerd stops (and its mounts go) before the directory is removed.
struct World {
    dockerd: Dockerd,
    registry: server::Registry,
    podman: Podman,
    dir: tempfile::TempDir,
}

/// What the image of `World::build_scratch_app` prints.
const SCRATCH_APP_OUTPUT: &str = "written by a RUN step\n";

/// What the RUN steps of the app built on each base write, and its CMD prints.
fn app_output(builder: Builder) -> String {
    format!("hello from {}, then lamina\nsecond step\n", builder.name())
}

impl World {
    fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let dockerd = Dockerd::start(&dir.path().join("docker"));
        eprintln!("dockerd answered in {:?}", dockerd.started_in);
        let registry = server::Registry::start();
        let podman = Podman::new(&dir.path().join("podman"));
        let world = World {
            dockerd,
            registry,
            podman,
            dir,
        };
        for builder in [Builder::BuildKit, Builder::Classic] {
            let started = Instant::now();
            world.docker_build_base(builder);
            eprintln!("docker build ({}): {:?}", builder.name(), started.elapsed());
        }
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `lamina --store <scratch>/stores/STORE args…`, asserting success.
    fn lamina(&self, store: &str, args: &[&str]) -> String {
        let store = self.path("stores").join(store);
        lamina_in_store(self.dir.path(), store.to_str().unwrap(), args)
    }

    /// A busybox base for `builder`, built by docker from a context of Debian's busybox-static
    /// (no network needed), tagged `base-<builder>:1`.
    fn docker_build_base(&self, builder: Builder) {
        let ctx = self.path(&format!("base-{}", builder.name()));
        busybox_rootfs(&ctx.join("rootfs"));
        let dockerfile = format!(
            "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin GREETING=\"hello from {}\"\n\
             WORKDIR /\nLABEL org.example.builder={}\nCMD [\"/bin/sh\", \"-c\", \"echo $GREETING\"]\n",
            builder.name(),
            builder.name()
        );
        write_tree(&ctx, &[("Dockerfile", &dockerfile)]);
        run_ok(
            self.dockerd
                .docker()
                .env("DOCKER_BUILDKIT", builder.env())
                .args(["build", "--network", "host", "--tag"])
                .arg(format!("base-{}:1", builder.name()))
                .arg(&ctx),
        );
    }

    /// docker push → lamina pull → lamina build FROM it (through a registry mirror) with RUN
    /// steps → lamina push → docker pull + run and podman pull + run print what RUN wrote.
    fn base_round_trip(&self, builder: Builder) {
        let b = builder.name();
        let host = self.registry.host();
        let base = format!("{host}/library/base-{b}:1");
        self.dockerd.ok(&["tag", &format!("base-{b}:1"), &base]);
        self.dockerd.ok(&["push", &base]);

        let store = format!("round-trip-{b}");
        self.lamina(&store, &["pull", &base]);
        write_tree(
            &self.path(&format!("app-{b}")),
            &[(
                "Dockerfile",
                &format!(
                    "FROM base-{b}:1\nRUN echo \"$GREETING, then lamina\" > /greeting.txt\n\
                     RUN mkdir -p /data && echo \"second step\" > /data/second.txt\n\
                     CMD [\"/bin/cat\", \"/greeting.txt\", \"/data/second.txt\"]\n"
                ),
            )],
        );
        let mirror = format!("docker.io={host}");
        self.lamina(
            &store,
            &[
                "build",
                &format!("app-{b}"),
                "--tag",
                &format!("app-{b}:1"),
                "--registry-mirror",
                &mirror,
                "--progress",
                "plain",
            ],
        );
        let app = format!("{host}/lamina/app-{b}:1");
        self.lamina(&store, &["push", &format!("app-{b}:1"), &app]);

        self.dockerd.ok(&["pull", "--quiet", &app]);
        let out = self.dockerd.ok(&["run", "--rm", "--network", "host", &app]);
        assert_eq!(out, app_output(builder), "docker run {app}");
        self.podman.pull(&app);
        assert_eq!(
            self.podman.run(&app),
            app_output(builder),
            "podman run {app}"
        );
    }

    /// An image imported under its full name (`docker.io/library/…`) is found by its short
    /// name, as Docker treats the two as one: by `image export`, and by a FROM with no
    /// registry to fall back on.
    fn short_and_full_names_meet(&self) {
        let saved = self.path("names-base.tar");
        let saved = saved.to_str().unwrap();
        self.dockerd
            .ok(&["save", "--output", saved, "base-classic:1"]);
        let store = "names";
        let full = "docker.io/library/names-base:1";
        self.lamina(store, &["image", "import", saved, full]);
        let exported = self.path("names-base.docker.tar");
        let out = exported.to_str().unwrap();
        let args = [
            "image",
            "export",
            "names-base:1",
            "--format",
            "docker-archive",
            "-o",
            out,
        ];
        self.lamina(store, &args);
        let ctx = self.path("names-app");
        write_tree(
            &ctx,
            &[("Dockerfile", "FROM names-base:1\nENV FROM_SHORT_NAME=yes\n")],
        );
        let ctx = ctx.to_str().unwrap();
        self.lamina(
            store,
            &["build", ctx, "--tag", "names-app:1", "--progress", "plain"],
        );
    }

    /// `docker save` → `lamina image import` → `lamina image export --format docker-archive`
    /// → `docker load`, for both builders' bases: the same image ID comes back.
    fn save_import_export_load(&self) {
        for builder in [Builder::BuildKit, Builder::Classic] {
            let b = builder.name();
            let base = format!("base-{b}:1");
            let id = self.image_id(&base);
            let saved = self.path(&format!("saved-{b}.tar"));
            self.dockerd
                .ok(&["save", "--output", saved.to_str().unwrap(), &base]);
            let store = format!("save-load-{b}");
            let name = format!("imported-{b}:1");
            self.lamina(&store, &["image", "import", saved.to_str().unwrap(), &name]);
            let exported = self.path(&format!("exported-{b}.tar"));
            self.lamina(
                &store,
                &[
                    "image",
                    "export",
                    &name,
                    "--format",
                    "docker-archive",
                    "-o",
                    exported.to_str().unwrap(),
                ],
            );
            // Gone from docker, so the load below reads every layer from lamina's archive.
            self.dockerd.ok(&["rmi", "--force", &id]);
            let loaded = self.docker_load(&exported);
            assert_eq!(
                self.image_id(&loaded),
                id,
                "the {b} base loaded back from lamina's export has another image ID"
            );
        }
    }

    /// An image built by lamina on busybox `FROM scratch`, with a RUN step, tagged `tag` in
    /// `store`; its CMD prints [`SCRATCH_APP_OUTPUT`].
    fn build_scratch_app(&self, store: &str, tag: &str) {
        let ctx = self.path(&format!("scratch-app-{store}"));
        busybox_rootfs(&ctx.join("rootfs"));
        write_tree(
            &ctx,
            &[(
                "Dockerfile",
                "FROM scratch\nCOPY rootfs/ /\nRUN echo \"written by a RUN step\" > /run.txt\n\
                 CMD [\"/bin/cat\", \"/run.txt\"]\n",
            )],
        );
        let ctx = ctx.to_str().unwrap();
        self.lamina(store, &["build", ctx, "--tag", tag, "--progress", "plain"]);
    }

    /// `lamina push` with the default compression sends gzip layers, whether they are stored
    /// as zstd (built here) or uncompressed (imported from `docker save`), and docker and
    /// podman pull and run the result.
    fn default_push_reaches_every_client(&self) {
        let host = self.registry.host();
        let store = "push-default";
        self.build_scratch_app(store, "scratch-app:1");
        let saved = self.path("push-default-base.tar");
        let saved = saved.to_str().unwrap();
        self.dockerd
            .ok(&["save", "--output", saved, "base-buildkit:1"]);
        self.lamina(store, &["image", "import", saved, "saved-base:1"]);
        for (image, expected) in [
            ("scratch-app:1", SCRATCH_APP_OUTPUT.to_string()),
            ("saved-base:1", "hello from buildkit\n".to_string()),
        ] {
            let remote = format!("{host}/pushed/{image}");
            self.lamina(store, &["push", image, &remote]);
            let manifest = run_ok(Command::new("skopeo").args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{remote}"),
            ]));
            let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
            let media_types: Vec<&str> = manifest["layers"]
                .as_array()
                .expect("a manifest with layers")
                .iter()
                .map(|layer| layer["mediaType"].as_str().unwrap_or_default())
                .collect();
            assert!(
                media_types.iter().all(|t| t.ends_with("gzip")),
                "{image} was pushed with layers {media_types:?}, not gzip"
            );
            self.dockerd.ok(&["pull", "--quiet", &remote]);
            let out = self
                .dockerd
                .ok(&["run", "--rm", "--network", "host", &remote]);
            assert_eq!(out, expected, "docker run {remote}");
            self.podman.pull(&remote);
            assert_eq!(self.podman.run(&remote), expected, "podman run {remote}");
        }
    }

    /// A lamina-built image (RUN step included) exported as `oci-dir` and `oci-archive` with
    /// the default compression unpacks with umoci and runs in podman; `docker-archive` runs in
    /// docker.
    fn exports_reach_every_client(&self) {
        let store = "exports";
        self.build_scratch_app(store, "exported:1");
        let expected = SCRATCH_APP_OUTPUT;

        let oci_dir = self.path("export/oci-dir");
        let oci_archive = self.path("export/image.oci.tar");
        let docker_archive = self.path("export/image.docker.tar");
        for (format, path) in [
            ("oci-dir", &oci_dir),
            ("oci-archive", &oci_archive),
            ("docker-archive", &docker_archive),
        ] {
            let out = path.to_str().unwrap();
            let args = [
                "image",
                "export",
                "exported:1",
                "--format",
                format,
                "-o",
                out,
            ];
            self.lamina(store, &args);
        }

        // umoci reads layouts only: the archive is unpacked into one first.
        let archive_layout = self.path("export/oci-archive-layout");
        std::fs::create_dir_all(&archive_layout).unwrap();
        run_ok(
            Command::new("tar")
                .arg("-xf")
                .arg(&oci_archive)
                .arg("-C")
                .arg(&archive_layout),
        );
        for (form, layout) in [("oci-dir", &oci_dir), ("oci-archive", &archive_layout)] {
            let bundle = self.path(&format!("export/bundle-{form}"));
            let image = format!("{}:{}", layout.display(), ref_name(layout));
            run_ok(
                Command::new("umoci")
                    .args(["unpack", "--image", &image])
                    .arg(&bundle),
            );
            let written = std::fs::read_to_string(bundle.join("rootfs/run.txt"))
                .unwrap_or_else(|e| panic!("umoci unpack of the {form} export: run.txt: {e}"));
            assert_eq!(written, expected, "run.txt unpacked by umoci from {form}");
        }
        for (form, path) in [("oci-dir", &oci_dir), ("oci-archive", &oci_archive)] {
            let loaded = self.podman.load(path);
            assert_eq!(self.podman.run(&loaded), expected, "podman run of {form}");
        }
        let loaded = self.docker_load(&docker_archive);
        let out = self
            .dockerd
            .ok(&["run", "--rm", "--network", "host", &loaded]);
        assert_eq!(out, expected, "docker run of the docker-archive");
    }

    /// COPY of three hardlinked files: in a container they are one inode with three links.
    fn copy_keeps_hardlinks(&self) {
        let ctx = self.path("hardlinks");
        busybox_rootfs(&ctx.join("rootfs"));
        write_tree(
            &ctx,
            &[
                ("links/a", "one file, three names\n"),
                (
                    "Dockerfile",
                    "FROM scratch\nCOPY rootfs/ /\nCOPY links/ /links/\n\
                     CMD [\"/bin/stat\", \"-c\", \"%i %h %n\", \"/links/a\", \"/links/b\", \"/links/c\"]\n",
                ),
            ],
        );
        std::fs::hard_link(ctx.join("links/a"), ctx.join("links/b")).unwrap();
        std::fs::hard_link(ctx.join("links/a"), ctx.join("links/c")).unwrap();
        let host_links = std::fs::metadata(ctx.join("links/a")).unwrap().nlink();

        let store = "hardlinks";
        let args = [
            "build",
            "hardlinks",
            "--tag",
            "links:1",
            "--progress",
            "plain",
        ];
        self.lamina(store, &args);
        let archive = self.path("links.docker.tar");
        let out = archive.to_str().unwrap();
        let args = [
            "image",
            "export",
            "links:1",
            "--format",
            "docker-archive",
            "-o",
            out,
        ];
        self.lamina(store, &args);
        let loaded = self.docker_load(&archive);
        let stat = self
            .dockerd
            .ok(&["run", "--rm", "--network", "host", &loaded]);
        let rows: Vec<(&str, u64)> = stat
            .lines()
            .map(|line| {
                let mut fields = line.split(' ');
                let inode = fields.next().unwrap();
                let links = fields.next().and_then(|n| n.parse().ok()).unwrap();
                (inode, links)
            })
            .collect();
        assert_eq!(rows.len(), 3, "stat printed: {stat}");
        assert!(
            rows.iter()
                .all(|&(inode, links)| inode == rows[0].0 && links == host_links),
            "the three names are not one inode with {host_links} links in docker run: {stat}"
        );
    }

    /// `docker load -i path`; returns the image it loaded.
    fn docker_load(&self, path: &Path) -> String {
        let out = self
            .dockerd
            .ok(&["load", "--input", path.to_str().unwrap()]);
        loaded_name(&out).unwrap_or_else(|| panic!("docker load named no image: {out}"))
    }

    fn image_id(&self, image: &str) -> String {
        let id = self
            .dockerd
            .ok(&["image", "inspect", "--format", "{{.Id}}", image]);
        id.trim().to_string()
    }
}

/// The `org.opencontainers.image.ref.name` of the layout's first manifest (umoci's tag).
fn ref_name(layout: &Path) -> String {
    let index = std::fs::read(layout.join("index.json")).expect("the layout has index.json");
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_else(|| panic!("no ref.name in {}: {index}", layout.display()))
        .to_string()
}

/// Debian's static busybox with the applets the checks use, /etc/passwd and a 1777 /tmp.
fn busybox_rootfs(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "mkdir", "ls", "stat"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    write_tree(
        dir,
        &[
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", "root:x:0:\n"),
        ],
    );
}

/// Named checks run one after another; a failed one is recorded and the next still runs.
#[derive(Default)]
struct Checks {
    results: Vec<(String, Duration, Result<(), String>)>,
}

impl Checks {
    fn run(&mut self, name: &str, check: impl FnOnce()) {
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(check)).map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into())
        });
        let took = started.elapsed();
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        eprintln!("check {verdict} in {took:?}: {name}");
        self.results.push((name.to_string(), took, outcome));
    }

    /// Panics naming every failed check and why.
    fn finish(self) {
        let failed: Vec<String> = self
            .results
            .iter()
            .filter_map(|(name, took, outcome)| {
                outcome
                    .as_ref()
                    .err()
                    .map(|why| format!("- {name} (after {took:?}):\n  {why}"))
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} checks failed:\n{}",
            failed.len(),
            self.results.len(),
            failed.join("\n")
        );
    }
}
