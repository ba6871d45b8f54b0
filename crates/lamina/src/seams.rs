//! The executor's seams ([`lamina_exec::seams`]) filled with lamina-export's registry
//! client: the facade is where the two sibling crates meet.

use std::sync::Arc;

use lamina_exec::{BaseSource, RemoteCacheClient, SeamFuture};
use lamina_export::registry::cache::{CacheDocument, CacheExportReport, ExportBlob, RemoteCache};
use lamina_export::registry::remote_layers::{self, Localized};
use lamina_export::registry::{self, RegistryConfig};
use lamina_export::{ExportError, StoredImage};
use lamina_store::{LayerRecord, Store};

/// Bases the store lacks, pulled from their registries (linux/amd64, named in the store as
/// written).
#[derive(Debug, Clone)]
pub struct RegistryBases {
    config: RegistryConfig,
}

impl RegistryBases {
    /// Pulls with `config` (insecure hosts, mirrors, credentials, retries).
    pub fn new(config: RegistryConfig) -> Self {
        RegistryBases { config }
    }
}

impl BaseSource for RegistryBases {
    fn fetch(&self, store: Arc<Store>, reference: String) -> SeamFuture<StoredImage> {
        let config = self.config.clone();
        Box::pin(async move { registry::pull(&store, &reference, &config).await })
    }
}

/// Registry build caches (`--cache-from`, `--cache-to`) through lamina-export's
/// `registry::cache`.
#[derive(Debug, Clone)]
pub struct RegistryCache {
    config: RegistryConfig,
}

impl RegistryCache {
    /// Reaches registries with `config`.
    pub fn new(config: RegistryConfig) -> Self {
        RegistryCache { config }
    }
}

impl RemoteCacheClient for RegistryCache {
    fn import(&self, store: Arc<Store>, reference: String) -> SeamFuture<RemoteCache> {
        let config = self.config.clone();
        Box::pin(async move { registry::cache::import(&store, &reference, &config).await })
    }

    fn localize(&self, store: Arc<Store>, layers: Vec<LayerRecord>) -> SeamFuture<Localized> {
        let config = self.config.clone();
        // No lease of the caller's: the executor has put these layers in its build's lease,
        // which keeps each with the variant fetched for it.
        Box::pin(async move { remote_layers::localize(&store, &layers, &config, None).await })
    }

    fn export(
        &self,
        store: Arc<Store>,
        reference: String,
        document: CacheDocument,
        blobs: Vec<ExportBlob>,
    ) -> SeamFuture<CacheExportReport> {
        let config = self.config.clone();
        // The upload machinery keeps per-blob retry state in `Cell`s, so its future is not
        // `Send`: it runs on a thread of its own with a runtime of its own (as the ADD
        // downloader does), and the executor awaits its result.
        on_own_thread(move |runtime| {
            runtime.block_on(registry::cache::export(
                &store, &reference, document, &blobs, &config,
            ))
        })
    }
}

/// `work`'s result, computed on a new thread with a current-thread runtime it may block on.
fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce(&tokio::runtime::Runtime) -> Result<T, ExportError> + Send + 'static,
) -> SeamFuture<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ExportError::Io {
                path: "tokio runtime".into(),
                source,
            })
            .and_then(|runtime| work(&runtime));
        // The receiver is gone only if the build stopped waiting; nothing to report to.
        let _ = sender.send(result);
    });
    Box::pin(async move {
        receiver.await.unwrap_or_else(|_| {
            Err(ExportError::Io {
                path: "registry cache export".into(),
                source: std::io::Error::other("its thread ended without a result"),
            })
        })
    })
}
