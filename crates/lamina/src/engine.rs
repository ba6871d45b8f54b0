//! [`Engine`]: one store and the executor that builds into it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lamina_exec::{BuildOptions, BuildReport, ExecConfig, Executor};
use lamina_export::StoredImage;
use lamina_export::registry::RegistryConfig;
use lamina_spec::Image;
use lamina_store::{Store, StoreOptions};

use crate::Error;

/// The executor's work files (unpacked layers, sandboxes, step locks, build records) live in
/// this directory of the store, so one path names everything a build keeps.
const WORK_DIR: &str = "exec";

/// What [`Engine::open_with`] lets a caller set.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The executor's settings. Its `bases` and `remote_cache`, when left `None`, become
    /// [`RegistryBases`](crate::RegistryBases) and [`RegistryCache`](crate::RegistryCache)
    /// over `registry`.
    pub exec: ExecConfig,
    /// How builds reach registries: base pulls, `--cache-from` and `--cache-to`.
    pub registry: RegistryConfig,
}

/// A store opened for building: `Engine::open(path)?.build(&image, options).await?`.
///
/// ```no_run
/// # async fn demo() -> Result<(), lamina::Error> {
/// use lamina::{BuildOptions, Engine, spec::Image};
///
/// let engine = Engine::open_default()?;
/// let image = Image::base("busybox:local")?
///     .workdir("/home/app")?
///     .run_commands(["echo hello > greeting"])?;
/// let report = engine
///     .build(&image, BuildOptions { tag: Some("hello:latest".into()), ..Default::default() })
///     .await?;
/// println!("{} ({} steps)", report.digest, report.steps.len());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) executor: Executor,
}

impl Engine {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        Engine::open_with(path, StoreOptions::default(), |_| {})
    }

    /// Opens the store at its default location (`$LAMINA_STORE`, else the XDG cache dir).
    pub fn open_default() -> Result<Engine, Error> {
        Engine::open(lamina_store::default_location()?)
    }

    /// Opens the store at `path` with `options`; `configure` adjusts the executor's settings
    /// (CA bundle mount, default command, layer compression) and how builds reach
    /// registries before it starts.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: StoreOptions,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Result<Engine, Error> {
        lamina_exec::rootless::check_store_access(path.as_ref())?;
        let store = Arc::new(Store::open(path.as_ref(), options)?);
        let mut config = EngineConfig {
            exec: ExecConfig::new(Engine::work_dir_of(store.path())),
            registry: RegistryConfig::default(),
        };
        configure(&mut config);
        let EngineConfig { mut exec, registry } = config;
        // The executor knows no registry: bases and build caches reach one through these,
        // unless the caller brought its own.
        if exec.bases.is_none() {
            exec.bases = Some(Arc::new(crate::RegistryBases::new(registry.clone())));
        }
        if exec.remote_cache.is_none() {
            exec.remote_cache = Some(Arc::new(crate::RegistryCache::new(registry)));
        }
        let executor = Executor::new(store.clone(), exec)?;
        Ok(Engine { store, executor })
    }

    /// Where the executor keeps its work files for the store at `store_path`.
    pub fn work_dir_of(store_path: &Path) -> PathBuf {
        store_path.join(WORK_DIR)
    }

    /// Builds `image` into the store: every step a cached layer. See [`BuildOptions`] for
    /// tags (`name` means `name:latest`), build arguments, secrets, cache control and
    /// progress events.
    pub async fn build(&self, image: &Image, options: BuildOptions) -> Result<BuildReport, Error> {
        Ok(self.executor.build(image, options).await?)
    }

    /// [`Engine::build`] for callers without an async runtime.
    pub fn build_blocking(
        &self,
        image: &Image,
        options: &BuildOptions,
    ) -> Result<BuildReport, Error> {
        Ok(self.executor.build_blocking(image, options)?)
    }

    /// The image named `name` (`name:tag`, `:latest` when no tag is given).
    pub fn image(&self, name: &str) -> Result<Option<StoredImage>, Error> {
        Ok(StoredImage::load_named(&self.store, name)?)
    }

    /// Unpacks `image`'s layers for builds on it (see [`Executor::unpack_layers`]); `image
    /// import` and `pull` do it, as Docker's load and pull do. Returns how many were
    /// unpacked.
    pub fn unpack_layers(&self, image: &StoredImage) -> Result<u64, Error> {
        let layers: Vec<_> = image.layers.iter().map(|l| l.record.clone()).collect();
        Ok(self.executor.unpack_layers(&layers)?)
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }
}
