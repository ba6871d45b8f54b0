//! Build orchestration: a [`lamina_spec::Image`] becomes an image in the store, one cached
//! step at a time.
//!
//! The [`Executor`] expands the definition, resolves each stage's base (`scratch`, an
//! earlier stage, an image already in the store, else one its [`BaseSource`] fetches before
//! the build starts), then walks the
//! steps of the stages the target needs. Each step has a cache key (see [`key`]): a hit
//! reuses the stored layer and config and runs nothing; a miss runs the step (RUN under
//! the sandbox, COPY/ADD into a staged tree, everything else on the config), stores its
//! layer and config, and records them under the key. Identical steps of concurrent builds
//! run once: a per-key lock is taken on a miss and the cache checked again under it.
//!
//! Submodules: [`key`] (cache keys), `plan` (stages, bases, step numbering), `steps` (the
//! step loop), `config` (image config updates), `copy` (COPY/ADD; `remote` and `git` fetch
//! its URL and repository sources), `run` (RUN), `explain`
//! (why the first miss missed), `history` (history text as BuildKit writes it), `layers`
//! (layer and lock helpers), [`hash_cache`] (content hashes of unchanged input files, kept
//! across builds), `support` (what a build refuses, found before building, for `lamina
//! check`).

mod archive;
mod beside;
mod compression;
mod config;
mod copy;
mod explain;
mod from_sources;
mod git;
pub mod hash_cache;
mod history;
mod hits;
mod kept;
pub mod key;
mod layers;
mod lazy;
mod plan;
mod remote;
pub mod remote_cache;
mod run;
mod run_mounts;
mod steps;
mod support;
mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_store::{Compression, Digest, LayerRecord, Store};

use crate::ExecError;
use crate::sandbox::{LayerCache, OutputStream, Sandbox};
use crate::seams::{BaseSource, Bridge, RemoteCacheClient};

pub use config::canonical_config;
pub use explain::{BuildState, MissReason};
pub use git::{GitCachePruned, prune_git_cache};
pub use hash_cache::HashCacheStats;
pub use key::CacheKey;
pub use layers::prune_step_locks;
pub use remote_cache::{CacheMode, CacheTo};
pub use run_mounts::validate_run_mount;
pub use support::{Refusal, refusals, refusals_with};

/// How an [`Executor`] runs builds.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Where unpacked layers, sandboxes, locks and build records live.
    pub work_dir: PathBuf,
    /// Where base images missing from the store come from (`lamina::Engine` pulls them from
    /// registries). `None`: a build on an image the store lacks fails, naming it.
    pub bases: Option<Arc<dyn BaseSource>>,
    /// The registry build cache client for `--cache-from` and `--cache-to` (`lamina::Engine`
    /// sets lamina-export's). `None`: cache sources are skipped with a warning, exports fail.
    pub remote_cache: Option<Arc<dyn RemoteCacheClient>>,
    /// Let RUN steps trust the CAs of `host_ca_file` besides the image's own (default true);
    /// they never enter a layer.
    pub host_ca_bundle: bool,
    /// The host's CA bundle (default `/etc/ssl/certs/ca-certificates.crt`).
    pub host_ca_file: PathBuf,
    /// How new layers are compressed (default zstd) when every base layer has a variant in
    /// it (a build FROM scratch, or on images built so); otherwise, as root, none (the layers
    /// stay trees until a push, as Docker keeps them), else the bases' (docs/format.md).
    pub layer_compression: Compression,
    /// The longest an ADD download waits to connect or for the next bytes (default 60 s).
    pub download_timeout: Duration,
    /// How often an ADD download is tried when the connection fails, times out, breaks off
    /// or the server answers 5xx or 429 (default 3; 4xx answers are not tried again).
    pub download_attempts: u32,
}

impl ExecConfig {
    /// The defaults, with work files under `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        ExecConfig {
            work_dir: work_dir.into(),
            bases: None,
            remote_cache: None,
            host_ca_bundle: true,
            host_ca_file: PathBuf::from(crate::sandbox::CA_BUNDLE),
            layer_compression: Compression::Zstd,
            download_timeout: Duration::from_secs(60),
            download_attempts: 3,
        }
    }
}

/// The command a sandbox image gets when it sets neither `ENTRYPOINT` nor `CMD`: Daytona
/// runs its sandboxes from the image's command, and this one keeps the container up.
pub const SANDBOX_DEFAULT_CMD: [&str; 2] = ["sleep", "infinity"];

/// Whether a final image that sets neither `ENTRYPOINT` nor `CMD` gets
/// [`SANDBOX_DEFAULT_CMD`]. When it does, its history says so (an empty-layer entry
/// `CMD ["sleep" "infinity"] # lamina: default command for sandbox images`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultCmd {
    /// By the definition's [`lamina_spec::Origin`]: builder API and TOML definitions
    /// (Daytona's sandbox images) get it; Dockerfiles do not, so that their images match
    /// what `docker build` makes.
    #[default]
    ByOrigin,
    /// Always give it.
    SleepInfinity,
    /// Never: the image keeps no command, as Docker leaves it.
    None,
}

impl DefaultCmd {
    /// Whether a definition from `origin` gets the default command.
    pub fn applies_to(self, origin: lamina_spec::Origin) -> bool {
        match self {
            DefaultCmd::ByOrigin => origin == lamina_spec::Origin::Builder,
            DefaultCmd::SleepInfinity => true,
            DefaultCmd::None => false,
        }
    }
}

/// What one build should do.
#[derive(Clone, Default)]
pub struct BuildOptions {
    /// Name the result (`name:tag`; `name` alone means `name:latest`); named images are pinned.
    pub tag: Option<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// Secret id to host file, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// SSH agent id (`default`) to the agent's socket on the host, for `RUN --mount=type=ssh`.
    pub ssh: BTreeMap<String, PathBuf>,
    /// Run every step, ignoring the cache.
    pub no_cache: bool,
    /// Run these steps (1-based, see [`StepReport::index`]) even on a hit.
    pub no_cache_steps: Vec<usize>,
    /// Build this stage (by name or 0-based index) instead of the last.
    pub target_stage: Option<String>,
    /// Whether an image without `ENTRYPOINT` and `CMD` gets the sandbox default command.
    pub default_cmd: DefaultCmd,
    /// Named build contexts (`--build-context NAME=...`), by name: what `COPY --from=NAME`
    /// and `RUN --mount=from=NAME` read (and, for an image, `FROM NAME`) in place of a stage
    /// or image of that name, as BuildKit has them.
    pub contexts: BTreeMap<String, NamedContext>,
    /// Called with progress as it happens: from a blocking thread during the steps, from
    /// the task awaiting the build for `--cache-from` warnings and `--cache-to` exports.
    pub on_event: Option<Arc<dyn Fn(BuildEvent) + Send + Sync>>,
    /// Registry caches to take steps from (`--cache-from`), in order: the first that has a
    /// key wins. Name only refs you trust: whoever can push to one can put layers into
    /// every build that reads it (each layer is checked against the diff_id its record
    /// claims, not against what the step would have made).
    pub cache_from: Vec<String>,
    /// Registry caches to write this build's records to (`--cache-to`).
    pub cache_to: Vec<CacheTo>,
    /// Stops the build when cancelled: before the next step, or the running RUN step's
    /// container (see [`crate::CancelToken`]).
    pub cancel: Option<crate::CancelToken>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("tag", &self.tag)
            .field("build_args", &self.build_args)
            .field("secrets", &self.secrets)
            .field("ssh", &self.ssh)
            .field("no_cache", &self.no_cache)
            .field("no_cache_steps", &self.no_cache_steps)
            .field("target_stage", &self.target_stage)
            .field("default_cmd", &self.default_cmd)
            .field("contexts", &self.contexts)
            .field("on_event", &self.on_event.as_ref().map(|_| "..."))
            .field("cache_from", &self.cache_from)
            .field("cache_to", &self.cache_to)
            .field("cancel", &self.cancel)
            .finish()
    }
}

/// A named build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A host directory, read as the build context is (its own `.dockerignore` applies); its
    /// files enter the step keys by content.
    Dir(PathBuf),
    /// An image reference (`docker-image://REF`), resolved as a `FROM` image is.
    Image(String),
}

/// Progress of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEvent {
    /// A stage starts from its base.
    StageStarted {
        /// 0-based stage index in the definition.
        stage: usize,
        /// Its `AS` name.
        name: Option<String>,
        /// The expanded `FROM` reference.
        base: String,
    },
    /// A step begins (looked up, then run on a miss).
    StepStarted {
        /// 1-based step index.
        index: usize,
        /// Steps in this build.
        total: usize,
        /// The step as Dockerfile text, as messages show it (`error::brief_step`: the first
        /// line, at most 200 characters).
        text: String,
    },
    /// A step was found in the cache.
    StepCached {
        /// 1-based step index.
        index: usize,
        /// Its cache key.
        key: CacheKey,
    },
    /// A line of a RUN step's output.
    StepLog {
        /// 1-based step index.
        index: usize,
        /// stdout or stderr.
        stream: OutputStream,
        /// The line, without its newline.
        line: String,
    },
    /// A step is done.
    StepFinished {
        /// 1-based step index.
        index: usize,
        /// Whether it came from the cache.
        cached: bool,
        /// How long it took.
        duration: Duration,
    },
    /// The image is in the store.
    Committed {
        /// The manifest's sha256.
        digest: Digest,
    },
    /// Something the user should know that does not stop the build (an unreadable remote
    /// cache, a failed export with `ignore-error=true`).
    Warning {
        /// One line.
        message: String,
    },
    /// Layers of remote cache hits were downloaded (verified) because the build needs them.
    RemoteLayersFetched {
        /// The cache ref.
        reference: String,
        /// How many.
        layers: usize,
        /// Compressed bytes downloaded.
        bytes: u64,
    },
    /// The build's records were written to a `--cache-to` ref.
    CacheExported {
        /// The writer's tag.
        reference: String,
        /// Records in its document.
        records: usize,
        /// Layer bytes uploaded (the rest was there or mounted).
        bytes_uploaded: u64,
    },
}

/// One step of a finished build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// 1-based, counting the steps (instructions after `FROM`) of the stages built, in order.
    pub index: usize,
    /// The step as Dockerfile text, variables expanded.
    pub text: String,
    /// Whether it came from the cache.
    pub cached: bool,
    /// How long it took.
    pub duration: Duration,
    /// The layer it added (blake3 of the uncompressed tar), if any.
    pub layer: Option<Digest>,
    /// Its cache key.
    pub key: CacheKey,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The image digest: sha256 of the manifest.
    pub digest: Digest,
    /// The manifest's store address (blake3).
    pub manifest_blob: Digest,
    /// Every step, in order.
    pub steps: Vec<StepReport>,
    /// Why the first step that missed the cache missed (`None`: all hit).
    pub first_miss: Option<MissReason>,
    /// Wall time of the build.
    pub duration: Duration,
    /// The name given to the image.
    pub tag: Option<String>,
    /// How COPY/ADD input files were hashed: how many came from the content-hash cache.
    pub input_hashing: HashCacheStats,
    /// Stored layers this build unpacked from their blobs (to run on them or read them). The
    /// layers a build makes are kept as written, so a build unpacks only layers it did not
    /// make on this machine (its bases' on first use), and a rebuild none. Counted per
    /// executor: builds running at the same time on one executor count each other's.
    pub layers_unpacked: u64,
    /// Steps taken from a `--cache-from` source (run nowhere here).
    pub remote_hits: usize,
    /// Layers of remote hits downloaded, and their compressed bytes.
    pub remote_layers: (usize, u64),
}

/// Builds images into a store.
///
/// The sandbox (runc, overlayfs, root) is created only when a RUN step misses the cache,
/// so builds whose RUN steps all hit, and builds without RUN, need none of it.
#[derive(Debug, Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub store: Arc<Store>,
    pub config: ExecConfig,
    layer_cache: Mutex<Option<Arc<LayerCache>>>,
    sandbox: Mutex<Option<Arc<Sandbox>>>,
    /// What [`Executor::new`] reclaimed, until a GC report takes it.
    reclaimed_at_start: Mutex<crate::reclaim::Reclaimed>,
    /// The content-hash cache between this executor's builds.
    pub(crate) hash_cache: hash_cache::KeptHashCache,
    /// The config this executor committed last, read.
    pub(crate) last_config: LastConfig,
    /// Step configs this executor's cache hits read, by digest.
    pub(crate) step_configs: StepConfigs,
    /// The definitions this executor expanded last.
    pub(crate) expansions: plan::Expansions,
}

impl Executor {
    /// An executor over `store`; creates `config.work_dir` and reclaims what killed
    /// processes left there ([`crate::reclaim`]).
    pub fn new(store: Arc<Store>, config: ExecConfig) -> Result<Self, ExecError> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|source| layers::io(&config.work_dir, source))?;
        crate::owner::claim(&config.work_dir)?;
        // Best effort: a leftover that cannot be removed now must not stop this command.
        let reclaimed = crate::reclaim::reclaim_leftovers(&config.work_dir).unwrap_or_else(|e| {
            tracing::warn!("cannot reclaim what killed builds left: {e}");
            Default::default()
        });
        Ok(Executor {
            inner: Arc::new(Inner {
                store,
                config,
                layer_cache: Mutex::new(None),
                sandbox: Mutex::new(None),
                reclaimed_at_start: Mutex::new(reclaimed),
                hash_cache: Default::default(),
                last_config: Default::default(),
                step_configs: Default::default(),
                expansions: Default::default(),
            }),
        })
    }

    /// What killed processes left that this executor removed when it started, handed out
    /// once (a GC report adds it to what the GC itself reclaims).
    pub fn take_reclaimed_at_start(&self) -> crate::reclaim::Reclaimed {
        std::mem::take(
            &mut self
                .inner
                .reclaimed_at_start
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The store builds write into.
    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Unpacks `layers` (an image's, bottom first) into the unpacked-layer cache now, as
    /// `docker load` and `docker pull` extract what they receive, so the first build on the
    /// image starts at once: WORKDIR, `--chown` and RUN read layers in place. Returns how
    /// many were unpacked (layers already there cost nothing). Without root it unpacks
    /// nothing: an unpacked copy keeps owners and devices, which only root can write (a build
    /// without root reads layers through a temporary merged tree instead).
    pub fn unpack_layers(&self, layers: &[LayerRecord]) -> Result<u64, ExecError> {
        if !rustix::process::geteuid().is_root() {
            return Ok(0);
        }
        let cache = self.inner.layer_cache()?;
        let before = cache.unpacks();
        for layer in layers {
            drop(cache.unpacked(&self.inner.store, layer)?);
        }
        Ok(cache.unpacks() - before)
    }

    /// Builds `image`. Bases the store lacks are fetched and `--cache-from` records read
    /// first, then the steps run on tokio's blocking pool, then `--cache-to` records are
    /// written. Dropping the future does not stop a step that has started (it finishes, and
    /// its result is cached).
    pub async fn build(
        &self,
        image: &lamina_spec::Image,
        options: BuildOptions,
    ) -> Result<BuildReport, ExecError> {
        // `app` names `docker.io/library/app:latest`, here as everywhere images are named;
        // an invalid tag is refused before anything runs.
        let options = BuildOptions {
            tag: (options.tag.as_deref())
                .map(lamina_image::image::image_name)
                .transpose()?
                .map(|reference| reference.to_string()),
            ..options
        };
        let inner = &self.inner;
        // Cache sources first: the plan's images are only looked up, not leased, until the
        // blocking build starts, so nothing slow (a registry's timeouts) may come between.
        let mut sources = remote_cache::load_sources(inner, &options).await;
        // Plan and build in one blocking task (a hand-over between threads is a tenth of an
        // all-hit rebuild); back here only to fetch an image the store lacks, then again.
        let mut fetched = BTreeMap::new();
        let (mut report, exports) = loop {
            let task = (inner.clone(), image.clone(), options.clone());
            let (planned_with, bridge) = (fetched.clone(), Bridge::current());
            let outcome = blocking(move || {
                let (inner, image, options) = task;
                match plan::Plan::resolve(
                    &inner.store,
                    &image,
                    &options,
                    &planned_with,
                    &inner.expansions,
                ) {
                    Ok(plan::Planned::Ready(plan)) => PlanThenBuild::Built(Box::new(steps::build(
                        &inner, &image, &options, plan, sources, &bridge,
                    ))),
                    Ok(plan::Planned::Missing(reference)) => {
                        PlanThenBuild::Missing(reference, sources)
                    }
                    Err(e) => PlanThenBuild::PlanFailed(e),
                }
            })
            .await;
            // A panic in the task fails the build like any error: recorded in the tag's state.
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => return Err(steps::record_failure(inner, &options, e).await),
            };
            match outcome {
                PlanThenBuild::Built(built) => break (*built)?,
                PlanThenBuild::Missing(reference, unused) => {
                    sources = unused;
                    match fetch_base(inner, &reference).await {
                        Ok(image) => fetched.insert(reference, image),
                        Err(e) => return Err(steps::record_failure(inner, &options, e).await),
                    };
                }
                PlanThenBuild::PlanFailed(e) => {
                    return Err(steps::record_failure(inner, &options, e).await);
                }
            }
        };
        match remote_cache::export_caches(inner, &options, &mut report, exports).await {
            Ok(()) => Ok(report),
            Err(e) => Err(steps::record_failure(inner, &options, e).await),
        }
    }

    /// The blocking form of [`Executor::build`], for callers without a runtime: it runs the
    /// build on a runtime of its own. Do not call it from async code (a runtime cannot be
    /// started inside another); use [`Executor::build`] there.
    pub fn build_blocking(
        &self,
        image: &lamina_spec::Image,
        options: &BuildOptions,
    ) -> Result<BuildReport, ExecError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ExecError::Io {
                path: "tokio runtime".into(),
                source,
            })?
            .block_on(self.build(image, options.clone()))
    }

    /// The state of the last build that was to be tagged `tag` (building, active or
    /// failed), from the executor's build records.
    pub fn build_state(&self, tag: &str) -> Option<BuildState> {
        let tag = lamina_image::image::normalize_name(tag);
        explain::read_state(&self.inner.config.work_dir, &tag)
    }

    /// Whether the sandbox has been created (only a RUN miss creates it).
    pub fn sandbox_started(&self) -> bool {
        lock(&self.inner.sandbox).is_some()
    }
}

impl Inner {
    /// The sandbox, created on first use.
    pub(crate) fn sandbox(&self) -> Result<Arc<Sandbox>, ExecError> {
        let mut slot = lock(&self.sandbox);
        if let Some(sandbox) = slot.as_ref() {
            return Ok(sandbox.clone());
        }
        let sandbox = Arc::new(Sandbox::new(&self.config.work_dir)?);
        *slot = Some(sandbox.clone());
        Ok(sandbox)
    }

    /// How many layers the unpacked-layer cache has unpacked so far (0 before it exists).
    pub(crate) fn layer_unpacks(&self) -> u64 {
        lock(&self.layer_cache).as_ref().map_or(0, |c| c.unpacks())
    }

    /// The unpacked-layer cache, created on first use.
    pub(crate) fn layer_cache(&self) -> Result<Arc<LayerCache>, ExecError> {
        let mut slot = lock(&self.layer_cache);
        if let Some(cache) = slot.as_ref() {
            return Ok(cache.clone());
        }
        let cache = Arc::new(LayerCache::new(&self.config.work_dir)?);
        *slot = Some(cache.clone());
        Ok(cache)
    }
}

/// `mutex`'s guard, also after a panic in another holder (what it guards stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `work` on tokio's blocking pool (store lookups and file I/O stay off the async threads).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ExecError::TaskFailed {
            reason: e.to_string(),
        })
}

/// The last config an executor committed, as read: a rebuild commits the same config bytes
/// again, and reading them (`parse_config`) was a twentieth of an all-hit rebuild in
/// process. Kept with its bytes, so it is only used for exactly those bytes (compared, not
/// hashed: storing them hashes them already).
#[derive(Debug, Default)]
pub(crate) struct LastConfig {
    slot: Mutex<Option<(Vec<u8>, oci_spec::image::ImageConfiguration)>>,
}

impl LastConfig {
    /// [`StoredImage::commit_parsed`](lamina_image::StoredImage::commit_parsed), reading
    /// `config_bytes` only if they are not the last ones committed.
    pub(crate) fn commit(
        &self,
        store: &Store,
        config_bytes: &[u8],
        layers: &[lamina_store::LayerRecord],
        compression: lamina_store::Compression,
        lease: Option<&lamina_store::Lease<'_>>,
        stored_variants: &[lamina_store::Digest],
    ) -> Result<lamina_image::StoredImage, ExecError> {
        let known = lock(&self.slot)
            .as_ref()
            .filter(|(last, _)| last.as_slice() == config_bytes)
            .map(|(_, config)| config.clone());
        let read_now = known.is_none();
        let config = match known {
            Some(config) => config,
            None => lamina_image::documents::parse_config("new image", config_bytes)?,
        };
        let stored = lamina_image::StoredImage::commit_parsed(
            store,
            config_bytes,
            config,
            layers,
            compression,
            lease,
            stored_variants,
        )?;
        if read_now {
            *lock(&self.slot) = Some((config_bytes.to_vec(), stored.config.clone()));
        }
        Ok(stored)
    }
}

/// Step configs as read, by the digest of their bytes: each cache hit read its step's
/// config blob and parsed it (a seventh of an all-hit rebuild in process). A digest names
/// its bytes, so an entry is right for as long as the store holds the blob, which the hit
/// asks the store ([`Store::mark_used`]). Bounded: emptied when full.
#[derive(Debug, Default)]
pub(crate) struct StepConfigs {
    slot: Mutex<std::collections::HashMap<lamina_store::Digest, config::ImageConfig>>,
}

impl StepConfigs {
    /// At most this many configs are kept (a few KiB each).
    const MAX: usize = 1024;

    pub(crate) fn get(&self, digest: &lamina_store::Digest) -> Option<config::ImageConfig> {
        lock(&self.slot).get(digest).cloned()
    }

    pub(crate) fn insert(&self, digest: lamina_store::Digest, config: &config::ImageConfig) {
        let mut configs = lock(&self.slot);
        if configs.len() >= StepConfigs::MAX {
            configs.clear();
        }
        configs.insert(digest, config.clone());
    }
}

/// What a build's blocking task came back with.
enum PlanThenBuild {
    /// Planned and built (or failed while building: the build recorded that itself).
    Built(Box<Result<(BuildReport, Vec<remote_cache::PendingExport>), ExecError>>),
    /// The plan needs this image, which the store lacks; the cache sources, unused.
    Missing(
        String,
        Vec<Option<lamina_image::cache_records::RemoteCache>>,
    ),
    /// Planning failed.
    PlanFailed(ExecError),
}

/// Fetches an image the plan needs from the executor's base source, before any step runs (a
/// base's `ENV` and `ONBUILD` shape what comes after it: see [`plan::Plan::resolve`]).
async fn fetch_base(
    inner: &Arc<Inner>,
    reference: &str,
) -> Result<lamina_image::image::StoredImage, ExecError> {
    let unavailable = |reason: String| ExecError::BaseUnavailable {
        reference: reference.to_owned(),
        reason,
    };
    let Some(source) = &inner.config.bases else {
        return Err(unavailable(
            "it is not in the store, and this executor has no base source to fetch it from".into(),
        ));
    };
    (source
        .fetch(inner.store.clone(), reference.to_owned())
        .await)
        .map_err(|e| unavailable(format!("it is not in the store and pulling it failed: {e}")))
}

#[cfg(test)]
mod last_config_tests {
    use lamina_store::{Compression, StoreOptions};

    use super::*;

    fn config(env: &str) -> Vec<u8> {
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["{env}"]}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_config_committed_again_is_read_once_and_gives_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let last = LastConfig::default();
        let commit = |bytes: &[u8]| last.commit(&store, bytes, &[], Compression::None, None, &[]);
        let reference = |bytes: &[u8]| {
            lamina_image::StoredImage::commit_leased(&store, bytes, &[], Compression::None, None)
                .unwrap()
        };
        let (a, b) = (config("A=1"), config("A=2"));
        let first = commit(&a).unwrap();
        assert_eq!(first.digest, reference(&a).digest);
        // Kept, keyed by the bytes: what the same bytes commit to comes from the kept
        // config (a stand-in for it shows through), other bytes are read.
        let stand_in = lamina_image::documents::parse_config("x", &config("KEPT=1")).unwrap();
        lock(&last.slot).as_mut().unwrap().1 = stand_in.clone();
        assert_eq!(commit(&a).unwrap().config, stand_in);
        let other = commit(&b).unwrap();
        assert_eq!(other.config, reference(&b).config);
        assert_eq!(other.digest, reference(&b).digest);
        assert_ne!(other.digest, first.digest);
    }
}
