//! `engine-rebuild STORE DOCKERFILE RUNS`: times all-hit rebuilds of a Dockerfile through
//! the Rust `Engine` (the same call the Python package makes: `Engine::build` on a tokio
//! runtime), after one warm-up build. Prints one JSON line: each run's wall time (`ms`) and
//! the executor's own time for it (`build_ms`, the report's duration), in milliseconds.
//! `benches/scripts/python-vs-rust-rebuild.py` runs it beside the Python package. It uses
//! the allocator the CLI and the Python module use (mimalloc); built with
//! `--features system-allocator`, glibc's malloc, as a Rust embedder that sets none gets.

use std::time::Instant;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use lamina::spec::Image;
use lamina::{BuildOptions, Engine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, dockerfile, runs] = args.as_slice() else {
        return Err("usage: engine-rebuild STORE DOCKERFILE RUNS".into());
    };
    let runs: usize = runs.parse()?;
    let engine = Engine::open(store)?;
    let image = Image::from_dockerfile(dockerfile)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = BuildOptions {
        tag: Some("bench-app:1".into()),
        ..BuildOptions::default()
    };
    let warm = runtime.block_on(engine.build(&image, options.clone()))?;
    if warm.steps.iter().any(|s| !s.cached) {
        return Err("the store is not warm: build the definition once first".into());
    }
    let mut times = Vec::with_capacity(runs);
    let mut build_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let report = runtime.block_on(engine.build(&image, options.clone()))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        build_times.push(report.duration.as_secs_f64() * 1000.0);
        assert!(report.steps.iter().all(|s| s.cached), "a rebuild missed");
    }
    let list = |values: &[f64]| {
        values
            .iter()
            .map(|t| format!("{t:.4}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(
        &mut stdout,
        format!(
            "{{\"ms\":[{}],\"build_ms\":[{}]}}\n",
            list(&times),
            list(&build_times)
        )
        .as_bytes(),
    )?;
    Ok(())
}
