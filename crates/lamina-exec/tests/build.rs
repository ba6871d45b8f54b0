//! Builds of real definitions into a real store. The base is a busybox tree brought in with
//! `FROM scratch` + `COPY rootfs/ /`, so no registry is needed. RUN tests need root and runc
//! (`require` says what happens where they are missing).

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use lamina_exec::{BuildEvent, BuildOptions, BuildReport, ExecError, Executor, MissReason};
use lamina_image::StoredImage;
use lamina_spec::Image;

#[path = "build/add.rs"]
mod add;
#[path = "build/add_url.rs"]
mod add_url;
#[path = "build/base_source.rs"]
mod base_source;
#[path = "build/cold.rs"]
mod cold;
#[path = "support/env.rs"]
mod env;
#[path = "../../../tests/require.rs"]
mod require;

use env::Env;

fn build(exec: &Executor, image: &Image, options: BuildOptions) -> Result<BuildReport, ExecError> {
    exec.build_blocking(image, &options)
}

fn cached(report: &BuildReport) -> Vec<bool> {
    report.steps.iter().map(|s| s.cached).collect()
}

/// Whether RUN steps can run here (root, runc, busybox); if not, the test fails unless skips
/// were asked for (see `require`).
fn can_run() -> bool {
    use require::Need::{File, Root, Tool};
    !require::missing(&[Root, Tool("runc"), File("/bin/busybox")])
}

const CONFIG_STEPS: &str = "FROM scratch\nCOPY rootfs/ /\nARG VERSION=1.0\n\
    ENV APP_HOME=/srv/app APP_VERSION=$VERSION\nWORKDIR $APP_HOME\nCOPY --chmod=0755 app.sh ./\n\
    COPY --chown=1000:1001 conf/ conf/\nCOPY <<EOF /etc/motd\nhello $VERSION\nEOF\n\
    USER 1000\nLABEL org.example.name=app\nEXPOSE 8080 53/udp\nVOLUME /data\n\
    STOPSIGNAL SIGINT\nSHELL [\"/bin/sh\", \"-ec\"]\nHEALTHCHECK CMD [\"true\"]\n\
    ENTRYPOINT [\"/srv/app/app.sh\"]\n";

#[test]
fn every_config_and_copy_step_builds_without_a_sandbox() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[
            ("app.sh", "#!/bin/sh\necho app\n"),
            ("conf/a.conf", "a=1\n"),
            ("conf/sub/b.conf", "b=2\n"),
        ],
    );
    let exec = env.executor();
    let image = env.image(&ctx, CONFIG_STEPS);
    let report = build(&exec, &image, BuildOptions::default()).unwrap();
    assert_eq!(report.steps.len(), 15);
    assert!(report.steps.iter().all(|s| !s.cached));
    assert!(!exec.sandbox_started());
    assert!(matches!(
        report.first_miss,
        Some(MissReason::NewStep { index: 1, .. })
    ));
    // Layers: the rootfs, WORKDIR's new directory, three COPYs.
    let layered: Vec<usize> = report
        .steps
        .iter()
        .filter(|s| s.layer.is_some())
        .map(|s| s.index)
        .collect();
    assert_eq!(layered, [1, 4, 5, 6, 7]);

    let stored = StoredImage::load(&env.store, &report.manifest_blob).unwrap();
    assert_eq!(stored.digest, report.digest);
    assert_eq!(stored.layers.len(), 5);
    let config = stored.config.config().clone().unwrap();
    assert_eq!(config.working_dir().as_deref(), Some("/srv/app"));
    assert_eq!(config.user().as_deref(), Some("1000"));
    let env_vars = config.env().clone().unwrap();
    assert!(
        env_vars.contains(&"APP_VERSION=1.0".to_string()),
        "{env_vars:?}"
    );
    assert!(
        !env_vars.iter().any(|e| e.starts_with("VERSION=")),
        "ARG values are not baked"
    );
    assert_eq!(config.labels().as_ref().unwrap()["org.example.name"], "app");
    let ports = config.exposed_ports().clone().unwrap();
    assert!(ports.contains(&"8080/tcp".into()) && ports.contains(&"53/udp".into()));
    assert_eq!(config.volumes().clone().unwrap(), ["/data"]);
    assert_eq!(config.stop_signal().as_deref(), Some("SIGINT"));
    assert_eq!(config.entrypoint().clone().unwrap(), ["/srv/app/app.sh"]);
    assert_eq!(config.cmd(), &None, "an ENTRYPOINT means no default CMD");
    let history = stored.config.history().clone().unwrap();
    assert_eq!(history.len(), 15);
    assert_eq!(history[1].empty_layer(), Some(true));
    assert_eq!(
        stored.config.created().as_deref(),
        Some("1970-01-01T00:00:00Z")
    );

    let rootfs = env.rootfs(&report);
    let root = rootfs.path();
    let app = std::fs::metadata(root.join("srv/app/app.sh")).unwrap();
    assert_eq!(app.mode() & 0o7777, 0o755);
    let conf = std::fs::metadata(root.join("srv/app/conf/sub/b.conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid()), (1000, 1001));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "hello 1.0\n"
    );
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn a_second_build_and_another_checkout_hit_every_step() {
    let env = Env::new();
    let ctx = env.context("one", &[("app/main.py", "print(1)\n")]);
    let text = "FROM scratch\nCOPY rootfs/ /\nCOPY app /app\nWORKDIR /app\nCMD [\"python\"]\n";
    let first = build(
        &env.executor(),
        &env.image(&ctx, text),
        BuildOptions::default(),
    )
    .unwrap();

    let again = env.executor();
    let second = build(&again, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(cached(&second), [true; 4]);
    assert_eq!(second.first_miss, None);
    assert_eq!(second.digest, first.digest);
    assert!(!again.sandbox_started());

    // Same content elsewhere, with fresh mtimes: still all hits.
    let other = env.context("two", &[("app/main.py", "print(1)\n")]);
    let third = build(
        &env.executor(),
        &env.image(&other, text),
        BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(cached(&third), [true; 4]);
    assert_eq!(third.digest, first.digest);
}

#[test]
fn one_changed_byte_misses_from_that_step_on_and_explain_names_the_file() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("src/a.txt", "aaaa"), ("src/b.txt", "bbbb")]);
    let text = "FROM scratch\nCOPY rootfs/ /\nENV A=1\nCOPY src/ /src/\nENV B=2\n";
    let exec = env.executor();
    let first = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    std::fs::write(ctx.join("src/b.txt"), "bbbc").unwrap();
    let second = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(cached(&second), [true, true, false, false]);
    assert_ne!(second.digest, first.digest);
    match &second.first_miss {
        Some(MissReason::InputsChanged { index, paths, .. }) => {
            assert_eq!(*index, 3);
            assert_eq!(paths, &["src/b.txt"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.read(&second, "/src/b.txt").unwrap(), "bbbc");
}

#[test]
fn build_args_change_keys_and_explain_says_the_step_changed() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let text = "FROM scratch\nARG V=1\nENV X=$V\n";
    let exec = env.executor();
    build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    let options = BuildOptions {
        build_args: BTreeMap::from([("V".to_string(), "2".to_string())]),
        ..BuildOptions::default()
    };
    let second = build(&exec, &env.image(&ctx, text), options).unwrap();
    assert_eq!(cached(&second), [false, false]);
    assert!(
        matches!(&second.first_miss, Some(MissReason::StepChanged { index: 1, text, .. }) if text == "ARG V=2"),
        "{:?}",
        second.first_miss
    );
    let config = StoredImage::load(&env.store, &second.manifest_blob)
        .unwrap()
        .config;
    let vars = config.config().clone().unwrap().env().clone().unwrap();
    assert!(vars.contains(&"X=2".to_string()));
    // Neither ENTRYPOINT nor CMD: the default command keeps a sandbox up.
    assert_eq!(
        config.config().clone().unwrap().cmd().clone().unwrap(),
        ["sleep", "infinity"]
    );
}

#[test]
fn workdir_makes_a_layer_only_for_a_missing_directory() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let text = "FROM scratch\nCOPY rootfs/ /\nWORKDIR /bin\nWORKDIR /new/dir\n";
    let report = build(
        &env.executor(),
        &env.image(&ctx, text),
        BuildOptions::default(),
    )
    .unwrap();
    let layers: Vec<bool> = report.steps.iter().map(|s| s.layer.is_some()).collect();
    assert_eq!(layers, [true, false, true]);
    assert!(env.rootfs(&report).path().join("new/dir").is_dir());
}

#[test]
fn multi_stage_copies_from_a_stage_and_builds_only_what_the_target_needs() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("out/bin.txt", "built\n"), ("x", "x")]);
    let text = "FROM scratch AS build\nCOPY out/ /out/\nENV SECRET=1\n\
        FROM scratch AS unused\nCOPY x /x\n\
        FROM scratch\nCOPY --from=build /out/bin.txt /app/\nCOPY --from=0 /out /copy\n";
    let exec = env.executor();
    let report = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    let texts: Vec<&str> = report.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "COPY out/ /out/",
            "ENV SECRET=1",
            "COPY --from=build /out/bin.txt /app/",
            "COPY --from=0 /out /copy"
        ]
    );
    assert_eq!(env.read(&report, "/app/bin.txt").unwrap(), "built\n");
    assert_eq!(env.read(&report, "/copy/bin.txt").unwrap(), "built\n");
    let config = StoredImage::load(&env.store, &report.manifest_blob)
        .unwrap()
        .config;
    assert_eq!(config.config().clone().unwrap().env(), &None);

    // The source stage changes: the COPY --from misses too.
    std::fs::write(ctx.join("out/bin.txt"), "rebuilt\n").unwrap();
    let second = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(cached(&second), [false, false, false, false]);
    assert_eq!(env.read(&second, "/app/bin.txt").unwrap(), "rebuilt\n");

    // A target stage: only it and what it needs.
    let options = BuildOptions {
        target_stage: Some("unused".into()),
        ..BuildOptions::default()
    };
    let only = build(&exec, &env.image(&ctx, text), options).unwrap();
    assert_eq!(only.steps.len(), 1);
    let err = build(
        &exec,
        &env.image(&ctx, text),
        BuildOptions {
            target_stage: Some("nope".into()),
            ..BuildOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ExecError::UnknownTargetStage { .. }), "{err}");
}

#[test]
fn no_cache_reruns_and_gives_the_same_digest() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("f", "f")]);
    let text = "FROM scratch\nCOPY rootfs/ /\nCOPY f /f\nENV A=1\n";
    let exec = env.executor();
    let first = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    let all = BuildOptions {
        no_cache: true,
        ..BuildOptions::default()
    };
    let second = build(&exec, &env.image(&ctx, text), all).unwrap();
    assert_eq!(cached(&second), [false; 3]);
    assert!(matches!(
        second.first_miss,
        Some(MissReason::NoCache { index: 1, .. })
    ));
    assert_eq!(second.digest, first.digest, "layers are reproducible");
    let one = BuildOptions {
        no_cache_steps: vec![2],
        ..BuildOptions::default()
    };
    let third = build(&exec, &env.image(&ctx, text), one).unwrap();
    assert_eq!(cached(&third), [true, false, true]);
    assert!(matches!(
        third.first_miss,
        Some(MissReason::NoCacheStep { index: 2, .. })
    ));
}

#[test]
fn from_an_image_in_the_store_by_name_and_digest_without_a_registry() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let exec = env.executor();
    let base_text = "FROM scratch\nCOPY rootfs/ /\nENV BASE=yes\nCMD [\"sh\"]\n";
    let options = BuildOptions {
        tag: Some("example.invalid/base:1".into()),
        ..BuildOptions::default()
    };
    let base = build(&exec, &env.image(&ctx, base_text), options).unwrap();
    assert_eq!(
        exec.build_state("example.invalid/base:1"),
        Some(lamina_exec::BuildState::Active {
            digest: base.digest.to_string()
        })
    );
    let record = env.store.image("example.invalid/base:1").unwrap().unwrap();
    assert!(record.pinned);

    let text = "FROM example.invalid/base:1\nENV APP=$BASE\n";
    let child = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    let stored = StoredImage::load(&env.store, &child.manifest_blob).unwrap();
    assert_eq!(stored.layers.len(), 1, "the base's layer");
    let config = stored.config.config().clone().unwrap();
    assert!(
        config
            .env()
            .clone()
            .unwrap()
            .contains(&"APP=yes".to_string())
    );
    assert_eq!(config.cmd().clone().unwrap(), ["sh"], "inherited CMD");

    let by_digest = format!("FROM example.invalid/base@{}\nENV APP=$BASE\n", base.digest);
    let same = build(&exec, &env.image(&ctx, &by_digest), BuildOptions::default()).unwrap();
    assert_eq!(same.digest, child.digest);

    let missing = "FROM 127.0.0.1:1/nothing:here\n";
    let err = build(&exec, &env.image(&ctx, missing), BuildOptions::default()).unwrap_err();
    assert!(matches!(err, ExecError::BaseUnavailable { .. }), "{err}");
}

#[test]
fn unsupported_add_sources_fail_clearly() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("a.txt", "a")]);
    let exec = env.executor();
    for text in [
        "FROM scratch\nCOPY https://example.invalid/org/repo.git#main /src\n",
        "FROM scratch\nADD https://example.invalid/org/repo.git?ref=main&color=red /src\n",
        "FROM scratch\nADD git@example.invalid:org/repo.git a.txt /src/\n",
        "FROM scratch\nCOPY https://example.invalid/f /f\n",
    ] {
        let err = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap_err();
        assert!(
            matches!(err, ExecError::UnsupportedStep { index: 1, .. }),
            "{err}"
        );
    }
    // Over ssh a repository needs the build's agent; nothing is contacted without it.
    let text = "FROM scratch\nADD git@example.invalid:org/repo.git /src\n";
    let err = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExecError::InvalidStep { index: 1, .. })
            && err.to_string().contains("--ssh default"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_run_an_identical_step_once() {
    let env = Env::new();
    // A big input makes the COPY slow enough for the builds to overlap.
    let big = "x".repeat(32 << 20);
    let ctx = env.context("ctx", &[("big", &big)]);
    let text = "FROM scratch\nCOPY big /big\n";
    let (a, b) = (env.executor(), env.executor());
    let image = env.image(&ctx, text);
    let (ra, rb) = tokio::join!(
        a.build(&image, BuildOptions::default()),
        b.build(&image, BuildOptions::default())
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.digest, rb.digest);
    let misses = [&ra, &rb].iter().filter(|r| !r.steps[0].cached).count();
    assert_eq!(misses, 1, "exactly one build copied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builds_run_a_run_step_once() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    // Each run writes a fresh random id: two runs would give two different images.
    let text =
        "FROM scratch\nCOPY rootfs/ /\nRUN cat /proc/sys/kernel/random/uuid > /id && sleep 1\n";
    let (a, b) = (env.executor(), env.executor());
    let image = env.image(&ctx, text);
    let (ra, rb) = tokio::join!(
        a.build(&image, BuildOptions::default()),
        b.build(&image, BuildOptions::default())
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.digest, rb.digest);
    assert_eq!([&ra, &rb].iter().filter(|r| !r.steps[1].cached).count(), 1);
}

#[test]
fn run_steps_see_env_args_workdir_user_and_heredocs() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let text = "FROM scratch\nCOPY rootfs/ /\nENV GREETING=hello\nARG WHO=world\nWORKDIR /srv/app\n\
        RUN echo \"$GREETING $WHO\" > out.txt\n\
        RUN [\"/bin/sh\", \"-c\", \"cat /srv/app/out.txt > /srv/app/copy.txt\"]\n\
        RUN <<EOF\necho heredoc > /srv/app/heredoc.txt\nEOF\n\
        RUN true\n\
        USER 1000\nRUN id -u > /tmp/uid\n";
    let exec = env.executor();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let options = BuildOptions {
        on_event: Some(Arc::new(move |e| sink.lock().unwrap().push(e))),
        ..BuildOptions::default()
    };
    let report = build(&exec, &env.image(&ctx, text), options).unwrap();
    assert_eq!(
        env.read(&report, "/srv/app/out.txt").unwrap(),
        "hello world\n"
    );
    assert_eq!(
        env.read(&report, "/srv/app/copy.txt").unwrap(),
        "hello world\n"
    );
    assert_eq!(
        env.read(&report, "/srv/app/heredoc.txt").unwrap(),
        "heredoc\n"
    );
    assert_eq!(env.read(&report, "/tmp/uid").unwrap(), "1000\n");
    let run_true = report.steps.iter().find(|s| s.text == "RUN true").unwrap();
    assert_eq!(
        run_true.layer, None,
        "a RUN that changes nothing adds no layer"
    );
    let events = logs.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, BuildEvent::Committed { .. }))
    );

    // Again, in a fresh executor: every step hits and no sandbox is created.
    let again = env.executor();
    let second = build(&again, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert!(second.steps.iter().all(|s| s.cached));
    assert_eq!(second.digest, report.digest);
    assert!(!again.sandbox_started());
}

#[test]
fn a_failing_run_names_the_step_code_and_output() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let text = "FROM scratch\nCOPY rootfs/ /\nRUN echo about to fail; exit 3\n";
    let options = BuildOptions {
        tag: Some("failing:1".into()),
        ..BuildOptions::default()
    };
    let exec = env.executor();
    let err = build(&exec, &env.image(&ctx, text), options).unwrap_err();
    match &err {
        ExecError::StepFailed {
            index,
            exit_code,
            last_lines,
            text,
        } => {
            assert_eq!((*index, *exit_code), (2, 3));
            assert!(text.starts_with("RUN echo"));
            assert!(
                last_lines.iter().any(|l| l.contains("about to fail")),
                "{last_lines:?}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        exec.build_state("failing:1"),
        Some(lamina_exec::BuildState::BuildFailed { .. })
    ));
}

#[test]
fn run_deletes_lower_files_reads_secrets_and_feeds_later_stages() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let secret = env.root.join("token");
    std::fs::write(&secret, "s3cret").unwrap();
    let text = "FROM scratch AS build\nCOPY rootfs/ /\n\
        RUN rm /bin/wc && mkdir /out && echo made > /out/artifact\n\
        RUN --mount=type=secret,id=tok,target=/run/secrets/tok cat /run/secrets/tok > /out/secret && \
            if [ -e /bin/wc ]; then echo present; else echo gone; fi > /out/wc\n\
        FROM scratch\nCOPY rootfs/ /\nCOPY --from=build /out/ /result/\n";
    let options = BuildOptions {
        secrets: BTreeMap::from([("tok".to_string(), secret)]),
        ..BuildOptions::default()
    };
    let report = build(&env.executor(), &env.image(&ctx, text), options).unwrap();
    assert_eq!(env.read(&report, "/result/artifact").unwrap(), "made\n");
    assert_eq!(env.read(&report, "/result/secret").unwrap(), "s3cret");
    // The second RUN saw the first one's deletion.
    assert_eq!(env.read(&report, "/result/wc").unwrap(), "gone\n");
    // The final stage has its own rootfs, where wc is still there.
    assert!(env.rootfs(&report).path().join("bin/wc").exists());
    // The build stage's image does not have it (its RUN layer holds a whiteout).
    let stage = build(
        &env.executor(),
        &env.image(&ctx, text),
        BuildOptions {
            target_stage: Some("build".into()),
            ..BuildOptions::default()
        },
    );
    let stage = stage.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        stage.steps.iter().all(|s| s.cached),
        "the RUNs are not run again"
    );
    let rootfs = env.rootfs(&stage);
    assert!(!rootfs.path().join("bin/wc").exists());
    assert!(rootfs.path().join("bin/cat").exists());
}

/// Tags, as `tag`, a copy of the built image `base` whose config carries `triggers` in
/// `OnBuild` (as Docker-built images do; Lamina's own final configs are OCI-only).
fn with_onbuild(env: &Env, base: &BuildReport, triggers: &[&str], tag: &str) {
    use lamina_store::BlobKind;
    let image = StoredImage::load(&env.store, &base.manifest_blob).unwrap();
    let read = |digest| env.store.read(digest).unwrap().unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&read(&image.config_blob)).unwrap();
    config["config"]["OnBuild"] = serde_json::json!(triggers);
    let config = serde_json::to_vec(&config).unwrap();
    let config = env.store.put_bytes(BlobKind::Config, &config).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&read(&image.manifest_blob)).unwrap();
    manifest["config"]["digest"] = serde_json::json!(config.sha256.to_string());
    manifest["config"]["size"] = serde_json::json!(config.size);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest = env.store.put_bytes(BlobKind::Manifest, &manifest).unwrap();
    let stored = StoredImage::load(&env.store, &manifest.digest).unwrap();
    stored.tag(&env.store, tag, true).unwrap();
}

/// The final config as stored, as JSON.
fn config_json(env: &Env, report: &BuildReport) -> serde_json::Value {
    let image = StoredImage::load(&env.store, &report.manifest_blob).unwrap();
    serde_json::from_slice(&env.store.read(&image.config_blob).unwrap().unwrap()).unwrap()
}

/// ONBUILD of an earlier stage: its triggers run first in a stage built `FROM` it, expand
/// like the stage's own instructions, and are not passed on to the next stage.
#[test]
fn onbuild_of_an_earlier_stage_runs_in_the_stage_built_on_it() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("trigger.txt", "from the trigger\n")]);
    let exec = env.executor();
    let text = "FROM scratch AS a\nCOPY rootfs/ /\nONBUILD ENV TRIGGERED=yes\n\
                ONBUILD COPY trigger.txt /from-trigger.txt\nFROM a AS b\nENV AFTER=$TRIGGERED\n\
                FROM b\nENV LAST=1\n";
    let report = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    let texts: Vec<&str> = report.steps.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "COPY rootfs/ /",
            "ONBUILD ENV TRIGGERED=yes",
            "ONBUILD COPY trigger.txt /from-trigger.txt",
            "ENV TRIGGERED=yes",
            "COPY trigger.txt /from-trigger.txt",
            "ENV AFTER=yes",
            "ENV LAST=1",
        ],
        "the triggers run once, in stage b only"
    );
    assert_eq!(
        env.read(&report, "/from-trigger.txt").as_deref(),
        Some("from the trigger\n")
    );
    let config = config_json(&env, &report);
    assert!(config["config"].get("OnBuild").is_none(), "{config}");
}

/// ONBUILD triggers in a base image's config (RUN with a here-document and COPY from this
/// build's context) run right after FROM, in order, and are not inherited further.
#[test]
fn onbuild_triggers_of_a_base_image_run_after_from() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[("app.txt", "the app\n")]);
    let exec = env.executor();
    let base_text = "FROM scratch\nCOPY rootfs/ /\nENV GREETING=hi\n";
    let base = build(&exec, &env.image(&ctx, base_text), BuildOptions::default()).unwrap();
    let triggers = [
        "RUN <<EOF\necho \"$GREETING\" > /onbuild.txt\nEOF",
        "COPY app.txt /srv/app.txt",
        "RUN cat /onbuild.txt /srv/app.txt > /both.txt",
    ];
    with_onbuild(&env, &base, &triggers, "example.invalid/onbuild-base:1");

    let text = "FROM example.invalid/onbuild-base:1 AS child\nRUN echo after >> /both.txt\n\
                FROM child\nRUN echo grandchild\n";
    let report = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(
        report.steps.len(),
        5,
        "three triggers, once: {:?}",
        report.steps
    );
    assert_eq!(report.steps[0].text, triggers[0]);
    assert_eq!(
        env.read(&report, "/both.txt").as_deref(),
        Some("hi\nthe app\nafter\n")
    );
    assert!(
        config_json(&env, &report)["config"]
            .get("OnBuild")
            .is_none()
    );
    // A second build hits every step, triggers included.
    let again = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(cached(&again), [true; 5]);

    with_onbuild(
        &env,
        &base,
        &["ONBUILD RUN x"],
        "example.invalid/bad-trigger:1",
    );
    let bad = "FROM example.invalid/bad-trigger:1\n";
    let err = build(&exec, &env.image(&ctx, bad), BuildOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ONBUILD is not allowed") && message.contains("bad-trigger"),
        "{message}"
    );
}

/// A wildcard that matches nothing copies nothing (and adds no layer); a literal path
/// that is missing fails.
#[test]
fn wildcards_that_match_nothing_copy_nothing() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let exec = env.executor();
    let text = "FROM scratch\nCOPY rootfs/ /\nCOPY cwallet.ss[o] /opt/\n";
    let without = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert!(without.steps[1].layer.is_none());
    assert!(env.read(&without, "/opt/cwallet.sso").is_none());
    std::fs::write(ctx.join("cwallet.sso"), "wallet").unwrap();
    let with = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(
        env.read(&with, "/opt/cwallet.sso").as_deref(),
        Some("wallet")
    );
    let literal = "FROM scratch\nCOPY missing.sso /opt/\n";
    let err = build(&exec, &env.image(&ctx, literal), BuildOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing.sso"), "{err}");
}

/// `COPY --parents` as BuildKit documents it: matched paths keep their directories below
/// the destination (from a `/./` pivot on, if the source has one), and the destination is a
/// directory even for one file.
#[test]
fn copy_parents_keeps_the_source_directories() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[
            ("x/a.txt", "x a\n"),
            ("y/a.txt", "y a\n"),
            ("x/y/b.txt", "x y b\n"),
            ("x/y/c.txt", "x y c\n"),
        ],
    );
    let exec = env.executor();
    let text = "FROM scratch\nCOPY --parents ./x/a.txt ./y/a.txt /parents/\n\
                COPY --parents ./x/./y/*.txt /pivot/\nCOPY --parents x/a.txt /single\n\
                COPY --parents x/y /dir/\n";
    let report = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    for (path, content) in [
        ("/parents/x/a.txt", "x a\n"),
        ("/parents/y/a.txt", "y a\n"),
        ("/pivot/y/b.txt", "x y b\n"),
        ("/pivot/y/c.txt", "x y c\n"),
        ("/single/x/a.txt", "x a\n"),
        ("/dir/x/y/b.txt", "x y b\n"),
    ] {
        assert_eq!(env.read(&report, path).as_deref(), Some(content), "{path}");
    }
    assert!(env.read(&report, "/pivot/x/y/b.txt").is_none());
}

/// `COPY --link` makes a layer that does not depend on what is below it: when the base
/// changes, the layer is reused (the step does not copy again) and the image is right;
/// without `--link` the step runs again.
#[test]
fn copy_link_reuses_its_layer_on_a_changed_base() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("app.txt", "app\n"), ("base.txt", "one\n")]);
    let exec = env.executor();
    let text = "FROM scratch\nCOPY base.txt /\nWORKDIR /srv\nCOPY --link app.txt ./\n\
                COPY app.txt /plain/\n";
    let first = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    std::fs::write(ctx.join("base.txt"), "two\n").unwrap();
    let second = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap();
    assert_eq!(cached(&second), [false, false, true, false]);
    assert_eq!(second.steps[2].layer, first.steps[2].layer);
    assert_eq!(env.read(&second, "/srv/app.txt").as_deref(), Some("app\n"));
    assert_eq!(env.read(&second, "/base.txt").as_deref(), Some("two\n"));
    // Another working directory is another layer.
    let moved = text.replace("WORKDIR /srv", "WORKDIR /opt");
    let third = build(&exec, &env.image(&ctx, &moved), BuildOptions::default()).unwrap();
    assert!(!third.steps[2].cached);
    assert_eq!(env.read(&third, "/opt/app.txt").as_deref(), Some("app\n"));
}
