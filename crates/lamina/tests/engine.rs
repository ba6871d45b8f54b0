//! Every `Engine` verb through the library API (no CLI): a build on an offline busybox base
//! with its RUN output through the event callback, then the store verbs on its result, and
//! a push and pull against a loopback registry.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina::export::ArchiveFormat;
use lamina::spec::Image;
use lamina::store::FsckOptions;
use lamina::{
    BuildEvent, BuildOptions, CancelToken, Engine, Error, Event, EventSink, ExportOptions,
    ImageStatus, PullOptions, PushOptions, build_events_to,
};

#[path = "../../../tests/require.rs"]
mod require;

#[path = "../../lamina-export/tests/support/server.rs"]
#[allow(dead_code)]
mod server;

use require::Need;

/// A temporary store and a context holding a busybox root file system.
struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        busybox_rootfs(&dir.path().join("ctx/rootfs"));
        std::fs::write(dir.path().join("ctx/hello.txt"), "hello\n").unwrap();
        let engine = Engine::open(dir.path().join("store")).unwrap();
        Fixture { dir, engine }
    }

    fn context(&self) -> std::path::PathBuf {
        self.dir.path().join("ctx")
    }

    /// `busybox:offline`: the rootfs copied onto scratch, no RUN (no runc needed).
    fn base(&self) -> lamina::BuildReport {
        let image = Image::scratch()
            .and_then(|i| i.context_dir(self.context()))
            .and_then(|i| i.add_local_dir("rootfs", "/"))
            .unwrap();
        let options = BuildOptions {
            tag: Some("busybox:offline".into()),
            ..Default::default()
        };
        self.engine.build_blocking(&image, &options).unwrap()
    }
}

fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn build_reports_steps_and_run_output_through_one_event_sink() {
    if require::missing(&[Need::Root, Need::Tool("runc"), Need::File("/bin/busybox")]) {
        return;
    }
    let fixture = Fixture::new();
    fixture.base();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let sink: EventSink = Arc::new(move |event| seen.lock().unwrap().push(event));
    let image = Image::base("busybox:offline")
        .and_then(|i| i.run_commands(["echo built-by-engine", "echo to-stderr >&2"]))
        .unwrap();
    let options = BuildOptions {
        tag: Some("app:1".into()),
        on_event: Some(build_events_to(sink)),
        ..Default::default()
    };
    let report = runtime()
        .block_on(fixture.engine.build(&image, options.clone()))
        .unwrap();
    assert_eq!(report.steps.len(), 2);
    assert!(report.steps.iter().all(|s| !s.cached));
    let events = std::mem::take(&mut *events.lock().unwrap());
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Build(BuildEvent::StepLog { line, .. }) => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["built-by-engine", "to-stderr"]);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::Build(BuildEvent::StepStarted { .. })))
        .count();
    assert_eq!(started, 2);
    // The same build again is all hits.
    let again = fixture.engine.build_blocking(&image, &options).unwrap();
    assert_eq!(again.digest, report.digest);
    assert!(again.steps.iter().all(|s| s.cached));
}

#[test]
fn a_build_cancelled_mid_run_stops_and_leaves_nothing_behind() {
    if require::missing(&[Need::Root, Need::Tool("runc"), Need::File("/bin/busybox")]) {
        return;
    }
    let fixture = Fixture::new();
    fixture.base();
    let cancel = CancelToken::new();
    let token = cancel.clone();
    // Cancel once the RUN step is known to be running: it printed its first line.
    let on_event = Arc::new(move |event: BuildEvent| {
        if let BuildEvent::StepLog { line, .. } = event
            && line == "started"
        {
            let token = token.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(200));
                token.cancel();
            });
        }
    });
    let image = Image::base("busybox:offline")
        .and_then(|i| i.run_commands(["echo started; sleep 60; echo finished > /never"]))
        .unwrap();
    let options = BuildOptions {
        tag: Some("cancelled:1".into()),
        on_event: Some(on_event),
        cancel: Some(cancel),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let error = fixture.engine.build_blocking(&image, &options).unwrap_err();
    assert!(
        matches!(error, Error::Exec(lamina::exec::ExecError::Cancelled)),
        "{error}"
    );
    assert_eq!(error.to_string(), "the build was cancelled");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the 60 s RUN was not stopped: {:?}",
        started.elapsed()
    );
    // No run directory, container state, mount or temporary tree is left.
    let work = Engine::work_dir_of(fixture.engine.store().path());
    let entries = |dir: &str| -> Vec<String> {
        std::fs::read_dir(work.join(dir))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(entries("runs"), Vec::<String>::new());
    assert_eq!(entries("runc"), Vec::<String>::new());
    assert_eq!(entries("tmp"), Vec::<String>::new());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(fixture.dir.path().to_str().unwrap()),
        "a mount is left under the store"
    );
    assert!(fixture.engine.image("cancelled:1").unwrap().is_none());
    // A token cancelled before the build stops it before its first step.
    let early = CancelToken::new();
    early.cancel();
    let options = BuildOptions {
        cancel: Some(early),
        ..Default::default()
    };
    assert!(matches!(
        fixture.engine.build_blocking(&image, &options),
        Err(Error::Exec(lamina::exec::ExecError::Cancelled))
    ));
}

#[test]
fn list_inspect_history_tag_and_remove() {
    let fixture = Fixture::new();
    let base = fixture.base();
    let engine = &fixture.engine;

    let listed = engine.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "busybox:offline");
    assert_eq!(listed[0].reference, "docker.io/library/busybox:offline");
    assert_eq!(listed[0].digest, base.digest);
    assert_eq!(listed[0].state, ImageStatus::Active);
    assert!(listed[0].size > 0 && listed[0].pinned);

    let details = engine.inspect("busybox:offline").unwrap();
    assert_eq!(details.image.digest, base.digest);
    assert_eq!(
        lamina::store::Digest::sha256_of(&details.manifest),
        base.digest
    );
    let config: serde_json::Value = serde_json::from_slice(&details.config).unwrap();
    assert_eq!(config["os"], "linux");

    // The listing's size, from the manifest, is that of the stored variants.
    let stored: u64 = details.image.layers.iter().map(|l| l.variant.size).sum();
    assert_eq!(listed[0].size, stored);

    let history = engine.history("busybox:offline").unwrap();
    let copy = history
        .iter()
        .find(|h| h.created_by.contains("COPY"))
        .unwrap();
    assert_eq!(copy.size, Some(details.image.layers[0].variant.size));

    let tagged = engine.tag("busybox:offline", "example.test/bb:2").unwrap();
    assert_eq!(
        (tagged.name.as_str(), tagged.digest),
        ("example.test/bb:2", base.digest)
    );
    assert_eq!(engine.list().unwrap().len(), 2);
    assert!(matches!(
        engine.tag("busybox:offline", "Bad Name"),
        Err(Error::Export(_))
    ));

    let removed = engine.remove("example.test/bb:2").unwrap();
    assert_eq!(removed.name, "example.test/bb:2");
    let missing = engine.remove("example.test/bb:2").unwrap_err();
    assert_eq!(
        missing.to_string(),
        "no image named example.test/bb:2 in the store; `lamina image ls` lists them"
    );
    assert!(matches!(
        engine.inspect("nothing:here"),
        Err(Error::ImageNotFound { name }) if name == "nothing:here"
    ));
    assert_eq!(engine.list().unwrap().len(), 1);

    // Its manifest blob gone from disk: still listed, under its store address, size 0.
    let store = engine.store();
    let record = store.image(&listed[0].reference).unwrap().unwrap();
    let info = store.stat(&record.manifest).unwrap().unwrap();
    std::fs::remove_file(store.blob_path(&info)).unwrap();
    let listed = engine.list().unwrap();
    assert_eq!((listed[0].digest, listed[0].size), (record.manifest, 0));
}

#[test]
fn export_then_import_into_another_store_keeps_the_image() {
    let fixture = Fixture::new();
    fixture.base();
    let archive = fixture.dir.path().join("bb.tar");
    let report = fixture
        .engine
        .export("busybox:offline", &archive, &ExportOptions::default())
        .unwrap();
    assert_eq!(report.format, ArchiveFormat::OciArchive);
    assert!(report.bytes > 0 && archive.is_file());

    let other = Engine::open(fixture.dir.path().join("other-store")).unwrap();
    let imported = other.import(&archive, Some("copy:1")).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].image.name, "copy:1");
    assert!(imported[0].unpack_error.is_none());
    let copy = other.require_image("copy:1").unwrap();
    assert_eq!(copy.digest, report.image.digest);
    assert!(matches!(
        other.import(&fixture.dir.path().join("absent.tar"), None),
        Err(Error::Export(_))
    ));
}

#[test]
fn push_and_pull_through_a_loopback_registry() {
    if require::missing(&[Need::Tool(server::BINARY)]) {
        return;
    }
    let fixture = Fixture::new();
    fixture.base();
    let registry = server::Registry::start();
    let reference = format!("{}/team/bb:1", registry.host());
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let sink: EventSink = Arc::new(move |event| seen.lock().unwrap().push(event));
    let runtime = runtime();
    let push = PushOptions {
        on_event: Some(sink.clone()),
        ..Default::default()
    };
    let pushed = runtime
        .block_on(fixture.engine.push("busybox:offline", &reference, &push))
        .unwrap();
    assert_eq!(pushed.push.blobs_pushed, 2, "config and one layer");
    assert_eq!(
        pushed.layers_compressed, 1,
        "zstd as built, gzip on the registry"
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Push(_)))
    );

    let other = Engine::open(fixture.dir.path().join("other-store")).unwrap();
    let pull = PullOptions {
        on_event: Some(sink),
        ..Default::default()
    };
    let pulled = runtime.block_on(other.pull(&reference, &pull)).unwrap();
    assert_eq!(pulled.image.digest, pushed.push.digest);
    assert!(pulled.unpack_error.is_none());
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Pull(_)))
    );
    assert_eq!(
        other.require_image(&reference).unwrap().digest,
        pushed.push.digest
    );

    let error = runtime
        .block_on(fixture.engine.push("absent:1", &reference, &push))
        .unwrap_err();
    assert!(matches!(error, Error::ImageNotFound { .. }), "{error}");
}

#[test]
fn a_registry_build_cache_is_written_then_pruned() {
    if require::missing(&[Need::Tool(server::BINARY)]) {
        return;
    }
    let fixture = Fixture::new();
    let registry = server::Registry::start();
    let cache_ref = format!("{}/team/cache:main", registry.host());
    let image = Image::scratch()
        .and_then(|i| i.context_dir(fixture.context()))
        .and_then(|i| i.add_local_file("hello.txt", "/hello.txt"))
        .unwrap();
    let options = BuildOptions {
        cache_to: vec![lamina::CacheTo::parse(&format!("{cache_ref},mode=max")).unwrap()],
        ..Default::default()
    };
    fixture.engine.build_blocking(&image, &options).unwrap();

    let runtime = runtime();
    let config = lamina::export::registry::RegistryConfig::default();
    let engine = &fixture.engine;
    let kept = runtime
        .block_on(engine.prune_remote_cache(&cache_ref, Duration::from_secs(3600), &config))
        .unwrap();
    assert_eq!((kept.writers, kept.removed), (1, 0), "{kept:?}");
    assert!(kept.kept > 0, "the build exported its steps: {kept:?}");

    let pruned = runtime
        .block_on(engine.prune_remote_cache(&cache_ref, Duration::ZERO, &config))
        .unwrap();
    assert_eq!(pruned.removed, kept.kept, "every record is older than 0 s");
    assert_eq!(pruned.kept, 0);

    let missing = format!("{}/team/absent:main", registry.host());
    let error = runtime
        .block_on(engine.prune_remote_cache(&missing, Duration::ZERO, &config))
        .map(|report| report.removed);
    assert!(
        matches!(error, Ok(0) | Err(Error::Export(_))),
        "a cache ref without records prunes nothing: {error:?}"
    );
}

#[test]
fn gc_du_stats_and_fsck() {
    let fixture = Fixture::new();
    fixture.base();
    let engine = &fixture.engine;
    let stats = engine.stats().unwrap();
    assert_eq!(stats.images, 1);
    assert!(stats.blobs >= 3, "layer, config, manifest");

    let usage = engine.du().unwrap();
    assert!(usage.store.total_bytes() > 0);
    assert_eq!(
        usage.total_bytes,
        usage.store.total_bytes() + usage.work.total_bytes()
    );

    // A named image is a root: nothing of it goes.
    let gc = engine.gc().unwrap();
    assert_eq!(gc.store.blobs_removed, 0);
    assert!(engine.require_image("busybox:offline").is_ok());

    let clean = engine.fsck(FsckOptions::default()).unwrap();
    assert!(clean.issues.is_empty(), "{:?}", clean.issues);
    assert!(clean.blobs_checked >= 3);

    // After the name goes, an engine whose GC keeps nothing young removes its blobs.
    engine.remove("busybox:offline").unwrap();
    let Fixture { dir, engine } = fixture;
    drop(engine);
    let options = lamina::store::StoreOptions {
        min_age: std::time::Duration::ZERO,
        default_ttl: std::time::Duration::ZERO,
        ..Default::default()
    };
    let engine = Engine::open_with(dir.path().join("store"), options, |_| {}).unwrap();
    let gc = engine.gc().unwrap();
    assert!(gc.store.blobs_removed >= 3, "{gc:?}");
    assert_eq!(engine.stats().unwrap().images, 0);
}
