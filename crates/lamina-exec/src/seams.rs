//! What the executor needs from outside the store, as traits the caller fills: where a base
//! image the store lacks comes from ([`BaseSource`]) and how a registry build cache is read
//! and written ([`RemoteCacheClient`]). The facade (`lamina::Engine`) fills both with
//! lamina-export's registry client; a test or an embedder may bring its own. The executor
//! itself knows no registry.
//!
//! When they are called: bases and `--cache-from` records before the blocking build starts,
//! and `--cache-to` exports after it ends, all from async code. Only the bytes of a remote
//! layer that a later step needs are fetched mid-build: the blocking build hands the
//! future to the runtime it was started from and waits for its result on a channel
//! (`Bridge`), so no runtime is ever blocked on from inside one of its own threads.
//!
//! The futures are `'static` (they own their arguments) so that they can be spawned on the
//! runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lamina_image::cache_records::{
    CacheDocument, CacheExportReport, ExportBlob, Localized, RemoteCache,
};
use lamina_image::{ImageError, StoredImage};
use lamina_store::{LayerRecord, Store};

use crate::ExecError;

/// A boxed future the executor awaits (or spawns on its runtime).
pub type SeamFuture<T> = Pin<Box<dyn Future<Output = Result<T, ImageError>> + Send + 'static>>;

/// Where a base image (`FROM`, `COPY --from=<image>`, `RUN --mount=from=<image>`) comes
/// from when the store does not hold it.
pub trait BaseSource: Send + Sync + std::fmt::Debug {
    /// Stores the image `reference` (the full form, `docker.io/library/busybox:1.36`, or
    /// with a digest) in `store` and names it there, so the next build finds it without
    /// asking again. Returns the stored image.
    fn fetch(&self, store: Arc<Store>, reference: String) -> SeamFuture<StoredImage>;
}

/// A registry build cache (`--cache-from`, `--cache-to`; the records are
/// [`lamina_image::cache_records`]).
pub trait RemoteCacheClient: Send + Sync + std::fmt::Debug {
    /// The merged records of every writer of the cache ref `reference`.
    fn import(&self, store: Arc<Store>, reference: String) -> SeamFuture<RemoteCache>;

    /// Fetches the layers among `layers` that the store holds only as remote (from the
    /// repository each is recorded in), verified, and records them as local. The executor
    /// has put every one of them in its build's lease before calling.
    fn localize(&self, store: Arc<Store>, layers: Vec<LayerRecord>) -> SeamFuture<Localized>;

    /// Writes `document` (merged with this store's earlier records) under this store's
    /// writer tag of the cache ref `reference`, sending `blobs` first.
    fn export(
        &self,
        store: Arc<Store>,
        reference: String,
        document: CacheDocument,
        blobs: Vec<ExportBlob>,
    ) -> SeamFuture<CacheExportReport>;
}

/// Runs futures on the runtime a build was started from, for its blocking thread: the future
/// is spawned there and the thread waits on a channel for its output. (`Handle::block_on`
/// from the runtime's own blocking pool would drive the future on that thread, which stalls
/// a current-thread runtime's I/O driver and ties a pool thread to network waits.)
#[derive(Debug, Clone)]
pub(crate) struct Bridge {
    runtime: tokio::runtime::Handle,
}

impl Bridge {
    /// A bridge to the runtime of the calling async code.
    pub(crate) fn current() -> Bridge {
        Bridge {
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// `future`'s output, waited for on this (blocking) thread; the outer error is the
    /// runtime's (it shut down before the future ended).
    pub(crate) fn wait<T: Send + 'static>(
        &self,
        future: SeamFuture<T>,
    ) -> Result<Result<T, ImageError>, ExecError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            // The receiver is gone only if the build already failed; nothing to report to.
            let _ = sender.send(future.await);
        });
        receiver.blocking_recv().map_err(|_| ExecError::TaskFailed {
            reason: "the async runtime stopped before a remote layer fetch ended".into(),
        })
    }
}
