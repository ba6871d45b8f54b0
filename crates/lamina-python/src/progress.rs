//! Python callbacks for progress: `on_logs` of a build, `on_progress` of a push or pull.
//!
//! Lamina calls them from the thread doing the work, which takes the GIL for each call. An
//! exception a callback raises cannot stop the Rust work where it happens; the first one is
//! kept and raised again once the operation is over, so a broken callback is never silent.
//! `KeyboardInterrupt` is the exception: Ctrl-C landing while a callback runs on the main
//! thread (a push's or pull's events come from the future the caller's thread polls) raises
//! it inside the callback, and it stops the operation as a Ctrl-C at any other moment does.

use std::sync::{Arc, Mutex};

use lamina::export::registry::{PullEvent, PushEvent};
use lamina::{BuildEvent, Event, EventSink};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use tokio::sync::Notify;

use crate::engine::log_line;

/// A Python callable and the first exception it raised.
#[derive(Clone)]
pub(crate) struct Callback {
    callable: Arc<Py<PyAny>>,
    first_error: Arc<Mutex<Option<PyErr>>>,
    /// The engine's signal-check ticks: woken at once when the callable is interrupted.
    ticks: Arc<Notify>,
}

impl Callback {
    pub(crate) fn new(callable: Py<PyAny>, ticks: Arc<Notify>) -> Callback {
        Callback {
            callable: Arc::new(callable),
            first_error: Arc::new(Mutex::new(None)),
            ticks,
        }
    }

    /// Calls the callable with one argument, keeping its exception if it raises the first.
    /// A `KeyboardInterrupt` goes back to Python's signal machinery, and the wait loop is
    /// woken to run its handler: the operation stops as for any Ctrl-C (kept as well, in
    /// case SIGINT is ignored, to be raised once the operation is over).
    fn call<T>(&self, argument: T)
    where
        T: for<'py> IntoPyObject<'py>,
    {
        Python::attach(|py| {
            if let Err(error) = self.callable.call1(py, (argument,)) {
                if error.is_instance_of::<PyKeyboardInterrupt>(py) {
                    // SAFETY: callable from any thread, with or without the GIL (it only
                    // marks SIGINT as tripped).
                    unsafe { pyo3::ffi::PyErr_SetInterrupt() };
                    self.ticks.notify_one();
                }
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(error);
            }
        });
    }

    /// `Ok` unless the callable raised: then its first exception.
    pub(crate) fn finish(&self) -> PyResult<()> {
        let first = self
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        first.map_or(Ok(()), Err)
    }

    /// A build's `on_event` that calls the callable with each line [`log_line`] gives.
    pub(crate) fn build_lines(&self) -> Arc<dyn Fn(BuildEvent) + Send + Sync> {
        let callback = self.clone();
        Arc::new(move |event| {
            if let Some(line) = log_line(&event) {
                callback.call(line);
            }
        })
    }

    /// A push's or pull's `on_event` that calls the callable with a [`TransferEvent`] for
    /// each blob event.
    pub(crate) fn transfers(&self) -> EventSink {
        let callback = self.clone();
        Arc::new(move |event| {
            let transfer = match &event {
                Event::Push(event) => TransferEvent::of_push(event),
                Event::Pull(event) => TransferEvent::of_pull(event),
                _ => None,
            };
            if let Some(transfer) = transfer {
                callback.call(transfer);
            }
        })
    }
}

/// One step of a push or pull, as `on_progress` gets it.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferEvent {
    /// `skipped` (the registry, or for a pull the store, has the blob), `mounted` (from
    /// another repository of the registry), `uploading` / `downloading` (started, then again
    /// as bytes move), `uploaded` / `downloaded`, and `manifest` (the push is complete).
    pub kind: String,
    /// The blob's digest (`sha256:...`); for `manifest`, the image's.
    pub digest: String,
    /// The blob's size in bytes; `None` for `manifest`.
    pub size: Option<u64>,
    /// Bytes moved so far: 0 when a transfer starts (or the blob is skipped or mounted),
    /// `size` when it is done.
    pub transferred: u64,
    /// The repository a `mounted` blob came from.
    pub mounted_from: Option<String>,
    /// The reference pushed to, for `manifest`.
    pub reference: Option<String>,
}

impl TransferEvent {
    fn blob(kind: &'static str, digest: &impl ToString, size: u64, transferred: u64) -> Self {
        TransferEvent {
            kind: kind.to_owned(),
            digest: digest.to_string(),
            size: Some(size),
            transferred,
            mounted_from: None,
            reference: None,
        }
    }

    fn of_push(event: &PushEvent) -> Option<TransferEvent> {
        Some(match event {
            PushEvent::Skipped { digest, size } => Self::blob("skipped", digest, *size, 0),
            PushEvent::Mounted { digest, size, from } => TransferEvent {
                mounted_from: Some(from.clone()),
                ..Self::blob("mounted", digest, *size, 0)
            },
            PushEvent::Uploading { digest, size } => Self::blob("uploading", digest, *size, 0),
            PushEvent::Progress { digest, sent, size } => {
                Self::blob("uploading", digest, *size, *sent)
            }
            PushEvent::Uploaded { digest, size } => Self::blob("uploaded", digest, *size, *size),
            PushEvent::Manifest { digest, reference } => TransferEvent {
                kind: "manifest".to_owned(),
                digest: digest.to_string(),
                size: None,
                transferred: 0,
                mounted_from: None,
                reference: Some(reference.clone()),
            },
            _ => return None,
        })
    }

    fn of_pull(event: &PullEvent) -> Option<TransferEvent> {
        Some(match event {
            PullEvent::Skipped { digest, size } => Self::blob("skipped", digest, *size, 0),
            PullEvent::Downloading { digest, size } => Self::blob("downloading", digest, *size, 0),
            PullEvent::Progress {
                digest,
                received,
                size,
            } => Self::blob("downloading", digest, *size, *received),
            PullEvent::Downloaded { digest, size } => {
                Self::blob("downloaded", digest, *size, *size)
            }
            _ => return None,
        })
    }
}

#[pymethods]
impl TransferEvent {
    fn __repr__(&self) -> String {
        let mut text = format!(
            "TransferEvent(kind={:?}, digest={:?}",
            self.kind, self.digest
        );
        if let Some(size) = self.size {
            text.push_str(&format!(", transferred={}, size={size}", self.transferred));
        }
        if let Some(from) = &self.mounted_from {
            text.push_str(&format!(", mounted_from={from:?}"));
        }
        if let Some(reference) = &self.reference {
            text.push_str(&format!(", reference={reference:?}"));
        }
        text.push(')');
        text
    }
}
