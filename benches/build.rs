//! `lamina_exec::Executor` end to end, in process: a 10-step definition on a busybox base
//! (`FROM scratch` + `COPY` of a busybox root filesystem made in a temporary directory, then
//! ENV, WORKDIR, COPY of a small context, two RUNs, LABEL, EXPOSE, USER, ENTRYPOINT).
//!
//! - `build/warm_all_hits`: the rebuild of a definition built once untimed, every step a cache
//!   hit (`build_blocking` on one executor over a store opened once). Each iteration still
//!   hashes the local inputs (the busybox tree and the context), looks every key up and
//!   commits the manifest, as a real rebuild does. Goal: under 5 ms.
//! - `build/cold_no_cache`: the same definition with `no_cache: true`, so every step runs
//!   (RUN under runc on overlayfs) and every layer is written again.
//!
//! RUN steps need root and runc. Without them (or when the first RUN build fails) the bench
//! builds a RUN-free variant of the same length (ENV and CMD in place of the RUNs) and says
//! so on stdout, so the figures are never silently those of another definition.

use std::hint::black_box;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use lamina_exec::{BuildOptions, BuildReport, ExecConfig, Executor};
use lamina_spec::Image;
use lamina_store::{Store, StoreOptions};

/// Steps after `FROM` in both variants.
const STEPS: usize = 10;
/// Debian's busybox-static, the base's only program.
const BUSYBOX: &str = "/bin/busybox";

/// A busybox root filesystem as the CLI demo makes it: every applet a symlink, root in
/// /etc/passwd and /etc/group, a 1777 /tmp.
fn busybox_rootfs(dir: &Path) {
    for sub in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(sub)).expect("rootfs directory");
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    std::fs::copy(BUSYBOX, dir.join("bin/busybox"))
        .expect("copy busybox (install Debian's busybox-static)");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            symlink("busybox", dir.join("bin").join(applet)).expect("applet symlink");
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").expect("group");
}

/// The context: `rootfs/` and a small `app/`.
fn context(dir: &Path) {
    busybox_rootfs(&dir.join("rootfs"));
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("conf")).expect("app directory");
    std::fs::write(app.join("hello.sh"), "echo \"$GREETING from $APP_HOME\"\n").expect("app");
    std::fs::write(
        app.join("setup.sh"),
        "mkdir -p data\necho ready > data/state\n",
    )
    .expect("app");
    std::fs::write(app.join("conf/app.conf"), "port=8080\nlevel=info\n").expect("app");
}

/// The definition; `with_run` picks the two RUN steps or their RUN-free stand-ins.
fn definition(ctx: &Path, with_run: bool) -> Image {
    let image = Image::scratch()
        .and_then(|i| i.context_dir(ctx))
        .and_then(|i| i.add_local_dir("rootfs", "/"))
        .and_then(|i| i.env([("APP_HOME", "/srv/app")]))
        .and_then(|i| i.workdir("/srv/app"))
        .and_then(|i| i.add_local_dir("app", "/srv/app"));
    let image = if with_run {
        image.and_then(|i| i.run_commands(["sh setup.sh", "echo built > /srv/app/built"]))
    } else {
        image
            .and_then(|i| i.env([("GREETING", "hello")]))
            .and_then(|i| i.cmd(["--help"]))
    };
    image
        .and_then(|i| i.label([("org.opencontainers.image.title", "bench")]))
        .and_then(|i| i.expose([8080u16]))
        .and_then(|i| i.user("1000"))
        .and_then(|i| i.entrypoint(["sh", "/srv/app/hello.sh"]))
        .expect("bench definition")
}

/// Why RUN steps cannot run here, if they cannot.
fn run_unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (RUN needs overlayfs mounts and runc)".into());
    }
    match Command::new("runc").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("runc is not on PATH (install Debian's runc)".into()),
    }
}

#[allow(
    clippy::print_stdout,
    reason = "a bench says which definition it measures next to criterion's report"
)]
fn say(line: &str) {
    println!("{line}");
}

/// A store and executor in `dir`, the definition built once (untimed), and which variant.
struct Setup {
    executor: Executor,
    image: Image,
    first: BuildReport,
}

fn setup(dir: &Path) -> Setup {
    let ctx: PathBuf = dir.join("ctx");
    context(&ctx);
    let options = StoreOptions {
        auto_gc: false,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(dir.join("store"), options).expect("open store"));
    let executor =
        Executor::new(store, ExecConfig::new(dir.join("work"))).expect("create executor");
    let with_run = match run_unavailable() {
        Some(reason) => {
            say(&format!("RUN-free variant: {reason}"));
            None
        }
        None => {
            let image = definition(&ctx, true);
            match executor.build_blocking(&image, &BuildOptions::default()) {
                Ok(first) => Some((image, first)),
                Err(e) => {
                    say(&format!("RUN-free variant: the build with RUN failed: {e}"));
                    None
                }
            }
        }
    };
    let (image, first) = with_run.unwrap_or_else(|| {
        let image = definition(&ctx, false);
        let first = executor
            .build_blocking(&image, &BuildOptions::default())
            .expect("first build");
        (image, first)
    });
    assert_eq!(first.steps.len(), STEPS, "{}", image.dockerfile());
    assert!(first.steps.iter().all(|s| !s.cached), "a fresh store hit");
    say(&format!(
        "definition ({} layers, image {}):\n{}",
        first.steps.iter().filter(|s| s.layer.is_some()).count(),
        first.digest,
        image.dockerfile()
    ));
    Setup {
        executor,
        image,
        first,
    }
}

fn builds(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let Setup {
        executor,
        image,
        first,
    } = setup(dir.path());

    let mut group = c.benchmark_group("build");
    let warm = BuildOptions::default();
    group.bench_function("warm_all_hits", |b| {
        b.iter(|| {
            let report = executor
                .build_blocking(black_box(&image), &warm)
                .expect("warm rebuild");
            assert!(report.steps.iter().all(|s| s.cached), "a warm step missed");
            assert_eq!(
                report.digest, first.digest,
                "a warm rebuild changed the image"
            );
            report
        });
    });

    let cold = BuildOptions {
        no_cache: true,
        ..BuildOptions::default()
    };
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("cold_no_cache", |b| {
        b.iter(|| {
            let report = executor
                .build_blocking(black_box(&image), &cold)
                .expect("cold build");
            assert!(report.steps.iter().all(|s| !s.cached), "--no-cache hit");
            report
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = builds
}
criterion_main!(benches);
