//! [`Event`]: the one progress type of the facade's long operations.

use std::sync::Arc;

use lamina_exec::BuildEvent;
use lamina_export::registry::{PullEvent, PushEvent};

/// Progress of a build, push or pull, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A build's stages, steps, cache hits and RUN output lines.
    Build(BuildEvent),
    /// A push's blobs: skipped, mounted, uploading (with bytes sent), uploaded; the manifest.
    Push(PushEvent),
    /// A pull's blobs: skipped, downloading (with bytes received), downloaded.
    Pull(PullEvent),
}

/// Where a long operation sends its [`Event`]s; called from the thread doing the work.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A [`crate::BuildOptions::on_event`] callback that hands each build event to `sink`, so
/// one sink serves builds, pushes and pulls.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use lamina::{BuildOptions, Event, EventSink, build_events_to};
///
/// let lines = Arc::new(Mutex::new(Vec::new()));
/// let seen = lines.clone();
/// let sink: EventSink = Arc::new(move |event| {
///     if let Event::Build(lamina::BuildEvent::StepLog { line, .. }) = event {
///         seen.lock().unwrap().push(line);
///     }
/// });
/// let options = BuildOptions { on_event: Some(build_events_to(sink)), ..Default::default() };
/// assert!(options.on_event.is_some());
/// ```
pub fn build_events_to(sink: EventSink) -> Arc<dyn Fn(BuildEvent) + Send + Sync> {
    Arc::new(move |event| sink(Event::Build(event)))
}
