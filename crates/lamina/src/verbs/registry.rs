//! Images to and from OCI registries.

use std::time::Duration;

use lamina_export::StoredImage;
use lamina_export::registry::{self, RegistryConfig};
use lamina_store::Compression;

use crate::event::{Event, EventSink};
use crate::{Engine, Error};

/// What [`Engine::prune_remote_cache`] did: writer tags looked at, records removed and kept.
pub use lamina_export::registry::cache::PruneReport as RemoteCachePruned;

/// Options of [`Engine::push`].
#[derive(Clone)]
pub struct PushOptions {
    /// Layer compression on the registry (gzip, the default, is what every client pulls).
    /// A layer not yet stored that way is compressed once and the variant kept.
    pub compression: Compression,
    /// Insecure registries, mirrors, credentials, parallelism.
    pub registry: RegistryConfig,
    /// Called with [`Event::Push`] as blobs are skipped, mounted and uploaded.
    pub on_event: Option<EventSink>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            compression: Compression::Gzip,
            registry: RegistryConfig::default(),
            on_event: None,
        }
    }
}

impl std::fmt::Debug for PushOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushOptions")
            .field("compression", &self.compression)
            .field("registry", &self.registry)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// Options of [`Engine::pull`].
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Insecure registries, mirrors, credentials, parallelism.
    pub registry: RegistryConfig,
    /// Called with [`Event::Pull`] as blobs are skipped and downloaded.
    pub on_event: Option<EventSink>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("registry", &self.registry)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// What [`Engine::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The registry's view: digest, reference, blobs uploaded, skipped and mounted, bytes.
    pub push: registry::PushReport,
    /// Layers compressed for this push (stored variants are reused).
    pub layers_compressed: usize,
    /// Layers in the image pushed.
    pub layers: usize,
}

/// What [`Engine::pull`] stored.
#[derive(Debug)]
pub struct PullReport {
    /// The image, under its reference.
    pub image: StoredImage,
    /// Why its layers could not be unpacked ahead of builds, if they could not (the image
    /// is stored either way; the first build on it unpacks them).
    pub unpack_error: Option<Error>,
}

impl Engine {
    /// Pushes the image named `name` to `reference` (`registry/repository[:tag]`).
    ///
    /// ```no_run
    /// # async fn demo(engine: lamina::Engine) -> Result<(), lamina::Error> {
    /// let report = engine
    ///     .push("app:1", "127.0.0.1:5000/team/app:1", &lamina::PushOptions::default())
    ///     .await?;
    /// println!("{} ({} blobs uploaded)", report.push.digest, report.push.blobs_pushed);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn push(
        &self,
        name: &str,
        reference: &str,
        options: &PushOptions,
    ) -> Result<PushReport, Error> {
        let image = self.require_image(name)?;
        let store = self.store.clone();
        let compression = options.compression;
        // A layer to convert that only a registry holds is fetched here, in async code and
        // with this push's registry settings, so the conversion below never blocks on the
        // runtime from its blocking thread. Layers pushed as they are stay remote (mounted).
        let to_convert: Vec<_> = (image.layers.iter())
            .filter(|l| l.variant.compression != compression)
            .map(|l| l.record.clone())
            .collect();
        registry::remote_layers::localize(&self.store, &to_convert, &options.registry, None)
            .await?;
        // Compressing a missing variant is CPU work: off the async threads.
        let converted = tokio::task::spawn_blocking(move || {
            lamina_export::with_compression(&store, &image, compression)
        })
        .await
        .map_err(|e| Error::TaskFailed {
            reason: e.to_string(),
        })??;
        let sink = options.on_event.clone();
        let progress = move |event| {
            if let Some(sink) = &sink {
                sink(Event::Push(event));
            }
        };
        let push = registry::push(
            &self.store,
            &converted.image,
            reference,
            &options.registry,
            &progress,
        )
        .await?;
        Ok(PushReport {
            push,
            layers_compressed: converted.layers_compressed,
            layers: converted.image.layers.len(),
        })
    }

    /// Pulls `reference` (`[registry/]repository[:tag][@digest]`, linux/amd64 from
    /// multi-platform images) into the store under that name, and unpacks its layers
    /// ahead of builds.
    ///
    /// ```no_run
    /// # async fn demo(engine: lamina::Engine) -> Result<(), lamina::Error> {
    /// let pulled = engine
    ///     .pull("127.0.0.1:5000/library/busybox:1", &lamina::PullOptions::default())
    ///     .await?;
    /// println!("{} layers", pulled.image.layers.len());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn pull(&self, reference: &str, options: &PullOptions) -> Result<PullReport, Error> {
        let sink = options.on_event.clone();
        let progress = move |event| {
            if let Some(sink) = &sink {
                sink(Event::Pull(event));
            }
        };
        let image =
            registry::pull_with_progress(&self.store, reference, &options.registry, &progress)
                .await?;
        let unpack_error = self.unpack_layers(&image).err();
        Ok(PullReport {
            image,
            unpack_error,
        })
    }
}

impl Engine {
    /// Drops the records of the registry build cache at `reference` (what `--cache-to`
    /// wrote there) that are older than `older_than`, in every writer's tag.
    ///
    /// ```no_run
    /// # async fn demo(engine: lamina::Engine) -> Result<(), lamina::Error> {
    /// use std::time::Duration;
    /// let config = lamina::export::registry::RegistryConfig::default();
    /// let day = Duration::from_secs(24 * 3600);
    /// let pruned = engine.prune_remote_cache("127.0.0.1:5000/team/cache", day, &config).await?;
    /// println!("{} records removed, {} kept", pruned.removed, pruned.kept);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn prune_remote_cache(
        &self,
        reference: &str,
        older_than: Duration,
        config: &RegistryConfig,
    ) -> Result<RemoteCachePruned, Error> {
        Ok(registry::cache::prune(&self.store, reference, older_than, config).await?)
    }
}
