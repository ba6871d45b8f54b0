//! `NativeEngine`: a `lamina::Engine` and the tokio runtime its async verbs run on.
//!
//! Every method releases the GIL while Rust works, on the caller's thread, taking the GIL
//! back every 50 ms only to let Python run signal handlers: Ctrl-C cancels a build (its
//! running container stopped and removed) and raises `KeyboardInterrupt`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use lamina::export::ArchiveFormat;
use lamina::export::registry::RegistryConfig;
use lamina::store::{Compression, StoreOptions};
use lamina::{
    BuildEvent, BuildOptions, CacheTo, CancelToken, Engine, ExportOptions, NamedContext,
    PullOptions, PushOptions,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use tokio::sync::Notify;

use crate::errors::lamina as lamina_error;
use crate::image::NativeImage;
use crate::progress::Callback;
use crate::results::{BuildResult, ExportResult, GcResult, ImageInfo, PushResult};

/// How often a running call lets Python run its signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// An open store and its executor.
#[pyclass(frozen, module = "lamina._native")]
#[derive(Debug)]
pub struct NativeEngine {
    engine: Engine,
    runtime: tokio::runtime::Runtime,
    /// Notified every [`SIGNAL_CHECK`] by a thread of this engine's own. A tokio timer per
    /// call cost an all-hit rebuild 1.6-2.3 ms of wall time (registering it wakes a parked
    /// runtime worker); waiting on this costs no system call.
    ticks: Arc<Notify>,
    /// Engines on the same store whose builds reach more registries over plain http (a
    /// build's `insecure_registries`: the executor reads its registry settings when it
    /// opens), by that list, sorted; opened on first use.
    reaching: Mutex<Vec<(Vec<String>, Engine)>>,
}

/// Starts the thread that notifies `ticks` every [`SIGNAL_CHECK`]; it ends once the engine
/// (the last strong reference) is gone.
fn start_ticks() -> PyResult<Arc<Notify>> {
    let ticks = Arc::new(Notify::new());
    let weak = Arc::downgrade(&ticks);
    std::thread::Builder::new()
        .name("lamina-signal-ticks".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SIGNAL_CHECK);
                match weak.upgrade() {
                    Some(ticks) => ticks.notify_waiters(),
                    None => break,
                }
            }
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    Ok(ticks)
}

impl NativeEngine {
    /// Runs the future `make` returns on the runtime, on the calling thread with the GIL
    /// released (as a Rust caller's `block_on` would: no extra thread hop). Every
    /// `SIGNAL_CHECK` it takes the GIL for a moment to let Python run its signal handlers; a
    /// handler's exception (KeyboardInterrupt on Ctrl-C) is raised once the work stopped:
    /// with a `cancel` token, the token is cancelled and the work awaited (a build kills its
    /// running container and cleans up first); without one, the future is dropped.
    fn wait<T, F, Fut>(&self, py: Python<'_>, cancel: Option<CancelToken>, make: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(Engine) -> Fut + Send,
        Fut: Future<Output = Result<T, lamina::Error>>,
    {
        self.wait_on(py, self.engine.clone(), cancel, make)
    }

    /// [`NativeEngine::wait`] with `engine` in place of this one's.
    fn wait_on<T, F, Fut>(
        &self,
        py: Python<'_>,
        engine: Engine,
        cancel: Option<CancelToken>,
        make: F,
    ) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(Engine) -> Fut + Send,
        Fut: Future<Output = Result<T, lamina::Error>>,
    {
        let handle = self.runtime.handle().clone();
        let ticks = self.ticks.clone();
        let outcome = py.detach(move || {
            handle.block_on(async move {
                let work = make(engine);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        biased;
                        result = &mut work => return Ok(result),
                        () = ticks.notified() => {
                            if let Err(interrupt) = Python::attach(|py| py.check_signals()) {
                                if let Some(cancel) = &cancel {
                                    cancel.cancel();
                                    let _ = work.await;
                                }
                                return Err(interrupt);
                            }
                        }
                    }
                }
            })
        });
        outcome.and_then(|result| result.map_err(lamina_error))
    }

    /// This engine, or with `insecure` registries one on the same store whose builds reach
    /// them over plain http (loopback registries need no entry).
    fn engine_reaching(&self, py: Python<'_>, mut insecure: Vec<String>) -> PyResult<Engine> {
        if insecure.is_empty() {
            return Ok(self.engine.clone());
        }
        insecure.sort();
        insecure.dedup();
        // The lock is never held without the GIL (a thread waiting for the GIL while
        // holding it would block one that holds the GIL and waits for the lock).
        let opened = |reaching: &Mutex<Vec<(Vec<String>, Engine)>>| {
            let reaching = reaching.lock().unwrap_or_else(|e| e.into_inner());
            let found = reaching.iter().find(|(list, _)| *list == insecure);
            found.map(|(_, engine)| engine.clone())
        };
        if let Some(engine) = opened(&self.reaching) {
            return Ok(engine);
        }
        let path = self.engine.store().path().to_path_buf();
        let registries = insecure.clone();
        let engine = py
            .detach(|| {
                Engine::open_with(path, StoreOptions::default(), |config| {
                    config.registry.insecure = registries;
                })
            })
            .map_err(lamina_error)?;
        if let Some(engine) = opened(&self.reaching) {
            return Ok(engine); // another thread opened one meanwhile
        }
        let mut reaching = self.reaching.lock().unwrap_or_else(|e| e.into_inner());
        reaching.push((insecure, engine.clone()));
        Ok(engine)
    }
}

/// A named build context as `Engine.build` passes it: `docker-image://REF`, else a
/// directory (the Python half checked it and made it absolute).
fn named_context(value: String) -> NamedContext {
    match value.strip_prefix("docker-image://") {
        Some(reference) => NamedContext::Image(reference.to_owned()),
        None => NamedContext::Dir(PathBuf::from(value)),
    }
}

/// `work` on the runtime's blocking threads, as a future for [`NativeEngine::wait`].
async fn blocking<T: Send + 'static>(
    engine: Engine,
    work: impl FnOnce(Engine) -> Result<T, lamina::Error> + Send + 'static,
) -> Result<T, lamina::Error> {
    tokio::task::spawn_blocking(move || work(engine))
        .await
        .map_err(|e| lamina::Error::TaskFailed {
            reason: e.to_string(),
        })?
}

fn compression(value: &str) -> PyResult<Compression> {
    value.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "compression must be 'gzip', 'zstd' or 'none', not {value:?}"
        ))
    })
}

fn registry_config(insecure_registries: Vec<String>) -> RegistryConfig {
    RegistryConfig {
        insecure: insecure_registries,
        ..RegistryConfig::default()
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The line `on_logs` gets for a build event, `None` for events without one.
pub(crate) fn log_line(event: &BuildEvent) -> Option<String> {
    Some(match event {
        BuildEvent::StageStarted { stage, name, base } => match name {
            Some(name) => format!("stage {stage} ({name}) from {base}"),
            None => format!("stage {stage} from {base}"),
        },
        BuildEvent::StepStarted { index, total, text } => format!("#{index}/{total} {text}"),
        BuildEvent::StepCached { index, .. } => format!("#{index} cached"),
        BuildEvent::StepLog { line, .. } => line.clone(),
        BuildEvent::Committed { digest } => format!("image {digest}"),
        BuildEvent::Warning { message } => format!("warning: {message}"),
        _ => return None,
    })
}

#[pymethods]
impl NativeEngine {
    #[new]
    #[pyo3(signature = (store=None))]
    fn new(py: Python<'_>, store: Option<PathBuf>) -> PyResult<NativeEngine> {
        let engine = py
            .detach(|| match store {
                Some(path) => Engine::open(path),
                None => Engine::open_default(),
            })
            .map_err(lamina_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lamina")
            .enable_all()
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the runtime: {e}")))?;
        Ok(NativeEngine {
            engine,
            runtime,
            ticks: start_ticks()?,
            reaching: Mutex::new(Vec::new()),
        })
    }

    /// The store's directory.
    #[getter]
    fn store(&self) -> PathBuf {
        self.engine.store().path().to_path_buf()
    }

    #[pyo3(signature = (
        image, tag=None, on_logs=None, no_cache=false, build_args=BTreeMap::new(),
        secrets=BTreeMap::new(), ssh=BTreeMap::new(), target=None, cache_from=Vec::new(),
        cache_to=Vec::new(), build_contexts=BTreeMap::new(), insecure_registries=Vec::new()
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, as `lamina build` flags
    fn build(
        &self,
        py: Python<'_>,
        image: &NativeImage,
        tag: Option<String>,
        on_logs: Option<Py<PyAny>>,
        no_cache: bool,
        build_args: BTreeMap<String, String>,
        secrets: BTreeMap<String, PathBuf>,
        ssh: BTreeMap<String, PathBuf>,
        target: Option<String>,
        cache_from: Vec<String>,
        cache_to: Vec<String>,
        build_contexts: BTreeMap<String, String>,
        insecure_registries: Vec<String>,
    ) -> PyResult<BuildResult> {
        let cache_to = cache_to
            .iter()
            .map(|spec| {
                CacheTo::parse(spec).map_err(|reason| {
                    PyValueError::new_err(format!("build() argument 'cache_to': {reason}"))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let on_logs = on_logs.map(|callable| Callback::new(callable, self.ticks.clone()));
        let cancel = CancelToken::new();
        let options = BuildOptions {
            tag,
            no_cache,
            build_args,
            secrets,
            ssh,
            target_stage: target,
            contexts: build_contexts
                .into_iter()
                .map(|(name, value)| (name, named_context(value)))
                .collect(),
            cache_from,
            cache_to,
            on_event: on_logs.as_ref().map(Callback::build_lines),
            cancel: Some(cancel.clone()),
            ..BuildOptions::default()
        };
        let engine = self.engine_reaching(py, insecure_registries)?;
        let definition = image.inner.clone();
        let report = self.wait_on(py, engine, Some(cancel), move |engine| async move {
            engine.build(&definition, options).await
        })?;
        on_logs.as_ref().map_or(Ok(()), Callback::finish)?;
        Ok(BuildResult {
            digest: report.digest.to_string(),
            tag: report
                .tag
                .as_deref()
                .map(lamina::export::image::display_name),
            duration: report.duration.as_secs_f64(),
            steps: report.steps.len(),
            steps_cached: report.steps.iter().filter(|s| s.cached).count(),
            steps_from_registry_cache: report.remote_hits,
        })
    }

    #[pyo3(signature = (
        name, reference, compression="gzip", insecure_registries=Vec::new(), on_progress=None
    ))]
    fn push(
        &self,
        py: Python<'_>,
        name: String,
        reference: String,
        compression: &str,
        insecure_registries: Vec<String>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<PushResult> {
        let on_progress = on_progress.map(|callable| Callback::new(callable, self.ticks.clone()));
        let options = PushOptions {
            compression: self::compression(compression)?,
            registry: registry_config(insecure_registries),
            on_event: on_progress.as_ref().map(Callback::transfers),
        };
        let report = self.wait(py, None, move |engine| async move {
            engine.push(&name, &reference, &options).await
        })?;
        on_progress.as_ref().map_or(Ok(()), Callback::finish)?;
        Ok(PushResult {
            digest: report.push.digest.to_string(),
            reference: report.push.reference,
            blobs_pushed: report.push.blobs_pushed,
            blobs_skipped: report.push.blobs_skipped,
            blobs_mounted: report.push.blobs_mounted,
            bytes_pushed: report.push.bytes_pushed,
            layers_compressed: report.layers_compressed,
        })
    }

    #[pyo3(signature = (reference, insecure_registries=Vec::new(), on_progress=None))]
    fn pull(
        &self,
        py: Python<'_>,
        reference: String,
        insecure_registries: Vec<String>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let on_progress = on_progress.map(|callable| Callback::new(callable, self.ticks.clone()));
        let options = PullOptions {
            registry: registry_config(insecure_registries),
            on_event: on_progress.as_ref().map(Callback::transfers),
        };
        let report = self.wait(py, None, move |engine| async move {
            engine.pull(&reference, &options).await
        })?;
        on_progress.as_ref().map_or(Ok(()), Callback::finish)?;
        Ok(report.image.digest.to_string())
    }

    #[pyo3(signature = (name, path, format="oci-archive", compression="gzip"))]
    fn export(
        &self,
        py: Python<'_>,
        name: String,
        path: PathBuf,
        format: &str,
        compression: &str,
    ) -> PyResult<ExportResult> {
        let format_name = format;
        let format = match format {
            "oci-dir" => ArchiveFormat::OciDir,
            "oci-archive" => ArchiveFormat::OciArchive,
            "docker-archive" => ArchiveFormat::DockerArchive,
            other => {
                return Err(PyValueError::new_err(format!(
                    "format must be 'oci-dir', 'oci-archive' or 'docker-archive', not {other:?}"
                )));
            }
        };
        let options = ExportOptions {
            format,
            compression: self::compression(compression)?,
            force: false,
        };
        let format_name = format_name.to_string();
        let report = self.wait(py, None, move |engine| {
            blocking(engine, move |engine| engine.export(&name, &path, &options))
        })?;
        Ok(ExportResult {
            path: report.path.display().to_string(),
            digest: report.image.digest.to_string(),
            format: format_name,
            compression: report.compression.name().to_string(),
            bytes: report.bytes,
        })
    }

    #[pyo3(signature = (path, name=None))]
    fn import_(
        &self,
        py: Python<'_>,
        path: PathBuf,
        name: Option<String>,
    ) -> PyResult<Vec<(String, String)>> {
        let imported = self.wait(py, None, move |engine| {
            blocking(engine, move |engine| engine.import(&path, name.as_deref()))
        })?;
        Ok(imported
            .into_iter()
            .map(|i| (i.image.name, i.image.image.digest.to_string()))
            .collect())
    }

    fn images(&self, py: Python<'_>) -> PyResult<Vec<ImageInfo>> {
        let listed = self.wait(py, None, |engine| blocking(engine, |engine| engine.list()))?;
        Ok(listed
            .into_iter()
            .map(|image| ImageInfo {
                name: image.name,
                reference: image.reference,
                digest: image.digest.to_string(),
                state: image.state.name().to_string(),
                size: image.size,
                created: seconds(image.created),
                last_used: seconds(image.last_used),
            })
            .collect())
    }

    fn remove(&self, py: Python<'_>, name: String) -> PyResult<String> {
        let removed = self.wait(py, None, move |engine| {
            blocking(engine, move |engine| engine.remove(&name))
        })?;
        Ok(removed.name)
    }

    fn gc(&self, py: Python<'_>) -> PyResult<GcResult> {
        let report = self.wait(py, None, |engine| blocking(engine, |engine| engine.gc()))?;
        Ok(GcResult {
            blobs_removed: report.store.blobs_removed,
            bytes_freed: report.store.bytes_freed,
            blobs_kept: report.store.blobs_kept,
            cache_expired: report.store.cache_expired,
            cache_evicted: report.store.cache_evicted,
            unpacked_layers_removed: report.unpacked.removed,
            work_bytes_freed: report.unpacked.bytes
                + report.cache_mounts.bytes
                + report.git_repos.bytes
                + report.leftovers.bytes,
        })
    }
}
