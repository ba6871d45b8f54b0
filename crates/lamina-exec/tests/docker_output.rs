//! Builds whose output must match what Docker's builders make: hard links kept by COPY,
//! history text as BuildKit writes it, the sandbox default command only where it belongs,
//! and Docker-only config fields (Healthcheck, Shell, OnBuild) kept in the final config.

#![allow(clippy::print_stderr)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use lamina_exec::{BuildOptions, BuildReport, DefaultCmd};
use lamina_spec::{Context, Dockerfile, Image, Origin};

#[path = "support/env.rs"]
mod env;
#[path = "../../../tests/require.rs"]
mod require;

use env::Env;

fn dockerfile(ctx: &Path, text: &str) -> Image {
    Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(ctx))
        .with_origin(Origin::Dockerfile)
}

fn builder(ctx: &Path, text: &str) -> Image {
    Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(ctx))
}

/// `links/a`, `links/b`, `links/c`: one inode; `links/d`: a link of a file outside the
/// copied set.
fn link_files(ctx: &Path) {
    let links = ctx.join("links");
    std::fs::create_dir_all(&links).unwrap();
    std::fs::create_dir_all(ctx.join("outside")).unwrap();
    std::fs::write(links.join("a"), "shared\n").unwrap();
    std::fs::hard_link(links.join("a"), links.join("b")).unwrap();
    std::fs::hard_link(links.join("a"), links.join("c")).unwrap();
    std::fs::write(ctx.join("outside/x"), "alone\n").unwrap();
    std::fs::hard_link(ctx.join("outside/x"), links.join("d")).unwrap();
}

fn inode_and_links(path: &Path) -> (u64, u64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.ino(), meta.nlink())
}

#[test]
fn copy_keeps_hard_links_among_the_copied_files() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    link_files(&ctx);
    let text = "FROM scratch\nCOPY rootfs/ /\nCOPY links/ /links/\n";
    let report = env.build(&dockerfile(&ctx, text), BuildOptions::default());

    // One file entry, then hard link entries naming it; `d` is a plain file.
    let entries = env.last_layer_entries(&report);
    let kind = |name: &str| {
        entries
            .iter()
            .find(|(p, _, _)| p.trim_end_matches('/') == name)
            .unwrap_or_else(|| panic!("{name} in {entries:?}"))
            .clone()
    };
    assert_eq!(kind("links/a").1, tar::EntryType::Regular);
    for name in ["links/b", "links/c"] {
        assert_eq!(kind(name).1, tar::EntryType::Link, "{name}");
        assert_eq!(kind(name).2, "links/a", "{name}");
    }
    assert_eq!(kind("links/d").1, tar::EntryType::Regular);

    let rootfs = env.rootfs(&report);
    let a = inode_and_links(&rootfs.path().join("links/a"));
    assert_eq!(a.1, 3);
    for name in ["b", "c"] {
        assert_eq!(inode_and_links(&rootfs.path().join("links").join(name)), a);
    }
    assert_eq!(inode_and_links(&rootfs.path().join("links/d")).1, 1);

    // The same files, unlinked: another key (links are part of the input), and the same
    // link structure elsewhere (other inodes): the same key and digest.
    let plain = env.context("plain", &[]);
    for name in ["a", "b", "c"] {
        std::fs::create_dir_all(plain.join("links")).unwrap();
        std::fs::write(plain.join("links").join(name), "shared\n").unwrap();
    }
    std::fs::write(plain.join("links/d"), "alone\n").unwrap();
    let unlinked = env.build(&dockerfile(&plain, text), BuildOptions::default());
    assert!(!unlinked.steps[1].cached);
    assert_ne!(unlinked.digest, report.digest);
    let again = env.context("again", &[]);
    link_files(&again);
    let moved = env.build(&dockerfile(&again, text), BuildOptions::default());
    assert!(moved.steps.iter().all(|s| s.cached));
    assert_eq!(moved.digest, report.digest);
    let rebuilt = env.build(
        &dockerfile(&again, text),
        BuildOptions {
            no_cache: true,
            ..BuildOptions::default()
        },
    );
    assert_eq!(rebuilt.digest, report.digest, "the layer is deterministic");

    // COPY --from keeps the links it finds in the source stage.
    let from = "FROM scratch AS src\nCOPY links/ /links/\nFROM scratch\nCOPY --from=src /links/ /copied/\n";
    let report = env.build(&dockerfile(&ctx, from), BuildOptions::default());
    let rootfs = env.rootfs(&report);
    let a = inode_and_links(&rootfs.path().join("copied/a"));
    assert_eq!(a.1, 3);
    assert_eq!(inode_and_links(&rootfs.path().join("copied/c")), a);
    assert_eq!(inode_and_links(&rootfs.path().join("copied/d")).1, 1);
}

#[test]
fn a_run_step_sees_one_inode_with_three_links() {
    use require::Need::{File, Root, Tool};
    if require::missing(&[Root, Tool("runc"), File("/bin/busybox")]) {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    link_files(&ctx);
    let text = "FROM scratch\nCOPY rootfs/ /\nCOPY links/ /links/\n\
                RUN stat -c '%i %h' /links/a /links/b /links/c /links/d > /stat.txt\n";
    let report = env.build(&dockerfile(&ctx, text), BuildOptions::default());
    let rootfs = env.rootfs(&report);
    let stat = std::fs::read_to_string(rootfs.path().join("stat.txt")).unwrap();
    let lines: Vec<(&str, &str)> = stat.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(lines.len(), 4, "{stat}");
    assert_eq!(lines[0].1, "3", "{stat}");
    assert!(lines[..3].iter().all(|l| *l == lines[0]), "{stat}");
    assert_eq!(lines[3].1, "1", "{stat}");
    assert_ne!(lines[3].0, lines[0].0, "{stat}");
}

const CONFIG_STEPS: &str = "FROM scratch\nCOPY rootfs/ /\nARG VERSION=1.0\n\
    ENV APP_HOME=/srv/app APP_VERSION=$VERSION\nENV LEGACY old form\nWORKDIR $APP_HOME\n\
    COPY --chmod=0755 app.sh ./\nCOPY <<EOF /etc/motd\nhello $VERSION\nEOF\n\
    USER 1000\nLABEL org.example.name=app description=\"an app\"\nEXPOSE 8080 53/udp\n\
    VOLUME /data\nSTOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-ec\"]\n\
    HEALTHCHECK --interval=30s CMD [\"true\"]\nONBUILD RUN echo child\n";

#[test]
fn history_reads_as_buildkit_writes_it_and_the_config_keeps_docker_fields() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("app.sh", "#!/bin/sh\n")]);
    let report = env.build(&dockerfile(&ctx, CONFIG_STEPS), BuildOptions::default());
    let config = env.config(&report);
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    // The strings BuildKit's dockerfile2llb (convert.go, convert_copy.go,
    // convert_expose.go) writes for these instructions; ONBUILD writes none.
    assert_eq!(
        history,
        [
            "COPY rootfs/ / # buildkit",
            "ARG VERSION=1.0",
            "ENV APP_HOME=/srv/app APP_VERSION=1.0",
            "ENV LEGACY=old form",
            "WORKDIR /srv/app",
            "COPY --chmod=0755 app.sh ./ # buildkit",
            "COPY <<EOF /etc/motd # buildkit",
            "USER 1000",
            "LABEL org.example.name=app description=an app",
            "EXPOSE [53/udp 8080/tcp]",
            "VOLUME [/data]",
            "STOPSIGNAL SIGINT",
            "SHELL [/bin/sh -ec]",
            "HEALTHCHECK {Test:[CMD true] Interval:30s Timeout:0s StartPeriod:0s \
             StartInterval:0s Retries:0}",
        ]
    );
    // A Dockerfile's image gets no default command.
    let c = &config["config"];
    assert!(
        c.get("Cmd").is_none() && c.get("Entrypoint").is_none(),
        "{c}"
    );
    // Docker-only fields survive into the final config.
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(c["StopSignal"], "SIGINT");
}

#[test]
fn the_sandbox_default_command_follows_the_origin_unless_told() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let text = "FROM scratch\nCOPY rootfs/ /\n";
    let cmd_and_last = |report: &BuildReport| {
        let config = env.config(report);
        let last = config["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        (config["config"].get("Cmd").cloned(), last)
    };
    let sleep = serde_json::json!(["sleep", "infinity"]);
    let default_entry = "CMD [\"sleep\" \"infinity\"] # lamina: default command for sandbox images";

    // Builder (and TOML) definitions: the default, recorded in history.
    let sandbox = env.build(&builder(&ctx, text), BuildOptions::default());
    let (cmd, last) = cmd_and_last(&sandbox);
    assert_eq!(cmd, Some(sleep.clone()));
    assert_eq!(last["created_by"], default_entry);
    assert_eq!(last["empty_layer"], true);

    // A Dockerfile: nothing, as docker build leaves it.
    let plain = env.build(&dockerfile(&ctx, text), BuildOptions::default());
    let (cmd, last) = cmd_and_last(&plain);
    assert_eq!(cmd, None);
    assert_eq!(last["created_by"], "COPY rootfs/ / # buildkit");
    assert_ne!(plain.digest, sandbox.digest);

    // Told explicitly, either way.
    let off = env.build(
        &builder(&ctx, text),
        BuildOptions {
            default_cmd: DefaultCmd::None,
            ..BuildOptions::default()
        },
    );
    assert_eq!(cmd_and_last(&off).0, None);
    assert_eq!(off.digest, plain.digest);
    let on = env.build(
        &dockerfile(&ctx, text),
        BuildOptions {
            default_cmd: DefaultCmd::SleepInfinity,
            ..BuildOptions::default()
        },
    );
    assert_eq!(cmd_and_last(&on).0, Some(sleep));
    assert_eq!(on.digest, sandbox.digest);

    // An image with a CMD of its own never gets the default.
    let own = env.build(
        &builder(&ctx, "FROM scratch\nCOPY rootfs/ /\nCMD [\"sh\"]\n"),
        BuildOptions::default(),
    );
    let (cmd, last) = cmd_and_last(&own);
    assert_eq!(cmd, Some(serde_json::json!(["sh"])));
    assert_eq!(last["created_by"], "CMD [\"sh\"]");
}
