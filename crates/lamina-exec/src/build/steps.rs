//! The step loop: stage by stage, step by step, look the key up, run on a miss, record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use lamina_image::StoredImage;
use lamina_layer::LayerWriter;
use lamina_spec::inputs::SourceMatch;
use lamina_spec::{Image, Instruction};
use lamina_store::{CacheEntry, Compression, LayerRecord};

use super::config::{ImageConfig, rfc3339, source_date_epoch};
use super::explain::{self, BuildRecord, BuildState, MissReason, RecordedStep};
use super::hash_cache::LazyHashCache;
use super::history;
use super::key::{self, CacheKey, KeySettings, hex};
use super::layers::{self, KeyLock};
use super::lazy::StepInputs;
use super::lock;
use super::plan::{Base, Plan, base_config};
use super::remote_cache::{PendingExport, RemoteState};
use super::view::LayerView;
use super::{BuildEvent, BuildOptions, BuildReport, Inner, SANDBOX_DEFAULT_CMD, StepReport};
use crate::ExecError;
use crate::seams::Bridge;
use lamina_image::cache_records::RemoteCache;
use lamina_image::layer_store::LayerSource;

/// A stage as its steps go by.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    /// The image config so far.
    pub config: ImageConfig,
    /// The layers so far, bottom first.
    pub layers: Vec<LayerRecord>,
    /// The key of the last step (or the base).
    pub key: CacheKey,
    /// What the stage started from, for explaining misses.
    pub base_name: String,
    /// `ARG` values visible to RUN steps (not part of the config).
    pub args: BTreeMap<String, String>,
    /// The stage's `ARG`s in declaration order, with or without a value: RUN history
    /// lists them, as BuildKit does.
    pub declared_args: Vec<(String, Option<String>)>,
    /// Whether this stage set `CMD` (an `ENTRYPOINT` then keeps it).
    pub cmd_set: bool,
}

/// One build in progress.
pub(crate) struct Build<'a> {
    pub inner: &'a Inner,
    pub image: &'a Image,
    pub options: &'a BuildOptions,
    pub plan: Plan,
    pub compression: Compression,
    pub writer: LayerWriter,
    /// `SOURCE_DATE_EPOCH` (or 0) as RFC 3339: every `created` the build writes.
    pub created: String,
    /// Content hashes of unchanged inputs, loaded on the first COPY/ADD that needs them.
    pub(crate) hash_cache: &'a LazyHashCache<'a>,
    pub(crate) settings: KeySettings,
    steps: Vec<StepReport>,
    first_miss: Option<MissReason>,
    /// The record of the last build of this tag or definition, read at the first miss
    /// that needs it (`previous()`).
    previous: OnceLock<Option<BuildRecord>>,
    record_paths: Vec<PathBuf>,
    pub(crate) record: BuildRecord,
    /// The definition's shape (see `definition_shape`).
    pub(crate) shape: CacheKey,
    pub(crate) results: BTreeMap<usize, StageState>,
    /// Stages whose keys are known but that have not been built (see `lazy.rs`).
    pub(crate) lazy: std::collections::BTreeSet<usize>,
    /// The git source of the current ADD, resolved to its commit for the key.
    pub(crate) git: Option<super::git::Resolved>,
    /// Compressed variants of this build's layers, made beside its next steps. Declared
    /// before `lease` so that it drops first: its thread ends before the lease does.
    pub(crate) variants_beside: Mutex<super::beside::VariantsBeside>,
    /// Staging trees no layer kept and finished runs' directories, being removed beside the
    /// next steps.
    pub(crate) removed_beside: super::kept::RemovedBeside,
    /// Every blob and layer the build uses or writes, so that GC in any process (`cache
    /// gc` beside this build) leaves them until the build has referenced them; released
    /// when the build ends, and with this process if it dies. Taken at the first miss,
    /// before the step unpacks, downloads, runs, waits or writes (see `hits`): until then
    /// the read section protects what the build found.
    pub(crate) lease: OnceLock<lamina_store::Lease<'a>>,
    /// While every step so far hit: no GC decides (in any process), and what the build
    /// found is recorded as used without writing the index (see `hits`).
    pub(crate) section: Mutex<Option<lamina_store::ReadSection<'a>>>,
    /// What the build used before it took its lease, added to the lease when it does.
    pub(crate) used_before_lease: Mutex<Vec<lamina_store::Digest>>,
    /// Layer variants this build's hits found stored while its read section held GC off
    /// (their layers are in use, so they stay; see `lookup`).
    pub(crate) stored_variants: Mutex<Vec<lamina_store::Digest>>,
    /// The `--cache-from` sources, in order (`None`: unreadable, or dropped after a layer
    /// of it failed to verify).
    pub(crate) remote_sources: &'a [Option<RemoteCache>],
    /// Remote hits, layers still remote, and the steps for `--cache-to`.
    pub(crate) remote: RemoteState,
    /// The runtime the build was started from, for fetching remote layers mid-build.
    pub(crate) bridge: &'a Bridge,
    /// The inputs digest and stage of the step in progress (for `--cache-to` records).
    pub(crate) current: (CacheKey, usize),
}

/// How long a build's lease lasts if its process somehow outlives it without releasing it
/// (a dead process's lease ends at once).
pub(crate) const BUILD_LEASE_TTL: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// Runs a whole build (`options.tag` already in its full form, `plan` made with every image
/// it needs in the store, `sources` the `--cache-from` records read), recording the state
/// of a tagged one. Returns the report and the `--cache-to` documents to send.
pub(crate) fn build(
    inner: &Inner,
    image: &Image,
    options: &BuildOptions,
    plan: Plan,
    sources: Vec<Option<RemoteCache>>,
    bridge: &Bridge,
) -> Result<(BuildReport, Vec<PendingExport>), ExecError> {
    let work_dir = &inner.config.work_dir;
    // `building` is written at the build's first step run (`Build::mark_building`): a
    // rebuild whose steps all hit takes milliseconds and writes its state only if it changed.
    let hash_cache = LazyHashCache::new(work_dir, &inner.hash_cache);
    let result = super::remote_cache::with_sources(options, sources, |sources| {
        build_with_sources(
            inner,
            image,
            options,
            plan.clone(),
            &hash_cache,
            sources,
            bridge,
        )
    });
    hash_cache.finish();
    if let Some(tag) = options.tag.as_deref() {
        let state = match &result {
            Ok((report, _)) => BuildState::Active {
                digest: report.digest.to_string(),
            },
            Err(e) => BuildState::BuildFailed {
                error: e.to_string(),
            },
        };
        record_state(work_dir, tag, &state)?;
    }
    result
}

/// Writes a tagged build's state when it changed.
fn record_state(
    work_dir: &std::path::Path,
    tag: &str,
    state: &BuildState,
) -> Result<(), ExecError> {
    if explain::read_state(work_dir, tag).as_ref() != Some(state) {
        explain::write_state(work_dir, tag, state)?;
    }
    Ok(())
}

/// Records a tagged build as failed with `error` (which happened outside the step loop:
/// fetching a base, exporting the cache) and returns it.
pub(crate) async fn record_failure(
    inner: &std::sync::Arc<Inner>,
    options: &BuildOptions,
    error: ExecError,
) -> ExecError {
    if let Some(tag) = options.tag.clone() {
        let work_dir = inner.config.work_dir.clone();
        let state = BuildState::BuildFailed {
            error: error.to_string(),
        };
        let recorded = super::blocking(move || record_state(&work_dir, &tag, &state)).await;
        if let Err(e) | Ok(Err(e)) = recorded {
            tracing::warn!("cannot record the failed build's state: {e}");
        }
    }
    error
}

fn build_with_sources<'a>(
    inner: &'a Inner,
    image: &'a Image,
    options: &'a BuildOptions,
    plan: Plan,
    hash_cache: &'a LazyHashCache<'a>,
    remote_sources: &'a [Option<RemoteCache>],
    bridge: &'a Bridge,
) -> Result<(BuildReport, Vec<PendingExport>), ExecError> {
    let started = Instant::now();
    let unpacks_before = inner.layer_unpacks();
    let store = &inner.store;
    let compression = super::compression::choose(inner, &plan, options, remote_sources);
    let epoch = source_date_epoch();
    let shape = definition_shape(image, options);
    let record_paths =
        explain::record_paths(&inner.config.work_dir, options.tag.as_deref(), &shape);
    let mut build = Build {
        inner,
        image,
        options,
        compression,
        writer: layers::writer(compression, epoch),
        created: rfc3339(epoch),
        hash_cache,
        settings: KeySettings { epoch },
        steps: Vec::new(),
        first_miss: None,
        // No build of this definition here yet: what the remote cache's writer built.
        previous: OnceLock::new(),
        record_paths,
        record: BuildRecord::default(),
        shape,
        results: BTreeMap::new(),
        lazy: std::collections::BTreeSet::new(),
        git: None,
        variants_beside: Mutex::new(Default::default()),
        removed_beside: Default::default(),
        lease: OnceLock::new(),
        // A remote cache means network work between lookups: a lease from the start.
        section: Mutex::new(
            if remote_sources.is_empty() && options.cache_to.is_empty() {
                Some(store.read_section()?)
            } else {
                None
            },
        ),
        used_before_lease: Mutex::new(Vec::new()),
        stored_variants: Mutex::new(Vec::new()),
        remote_sources,
        remote: RemoteState::default(),
        bridge,
        current: (key::NO_INPUTS, 0),
        plan,
    };
    if build.section().is_none() {
        build.lease()?;
    }
    // With a remote cache, a stage outside the target's `FROM` chain (read only by
    // `COPY --from` or a mount) is built only if a step reading it misses (`lazy.rs`).
    let chain = build.plan.target_chain();
    let lazy = remote_sources.iter().any(Option::is_some);
    for s in build.plan.stages.clone() {
        let state = if lazy && !chain.contains(&s) {
            build.lazy.insert(s);
            build.probe_stage(s)?
        } else {
            build.run_stage(s)?
        };
        build.results.insert(s, state);
    }
    // The cache documents carry the record, the inline one inside `commit`.
    if !options.cache_to.is_empty() {
        build.record.fill();
    }
    let (stored, tag) = build.commit()?;
    // All hits: the build's uses go to the touch log, and GC may run again.
    if let Some(section) = build.section().take() {
        section.end()?;
    }
    explain::write_record(&build.record_paths, &mut build.record)?;
    let exports = build.cache_exports(&stored, &shape, &build.record)?;
    let remote_layers = *build
        .remote
        .fetched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let report = BuildReport {
        digest: stored.digest,
        manifest_blob: stored.manifest_blob,
        steps: build.steps,
        first_miss: build.first_miss,
        duration: started.elapsed(),
        tag,
        input_hashing: hash_cache.stats(),
        layers_unpacked: inner.layer_unpacks() - unpacks_before,
        remote_hits: build.remote.hits,
        remote_layers,
    };
    Ok((report, exports))
}

/// Identifies "the same definition" across builds for explaining misses: its unexpanded
/// text and target, without input content (so an edited input still finds the record).
fn definition_shape(image: &Image, options: &BuildOptions) -> CacheKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(image.dockerfile().as_bytes());
    hasher.update(b"\0target\0");
    hasher.update(options.target_stage.as_deref().unwrap_or("").as_bytes());
    *hasher.finalize().as_bytes()
}

impl Build<'_> {
    /// Records that a build of the tag is running (at its first step run, or wait for
    /// another process running one).
    pub(crate) fn mark_building(&self) -> Result<(), ExecError> {
        if let Some(tag) = &self.options.tag {
            explain::write_state(&self.inner.config.work_dir, tag, &BuildState::Building)?;
        }
        Ok(())
    }

    pub(crate) fn emit(&self, event: BuildEvent) {
        if let Some(on_event) = &self.options.on_event {
            on_event(event);
        }
    }

    pub(crate) fn start_stage(&mut self, s: usize) -> Result<StageState, ExecError> {
        let stage = &self.plan.df.stages[s];
        self.emit(BuildEvent::StageStarted {
            stage: s,
            name: stage.name.clone(),
            base: stage.base.clone(),
        });
        let mut state = match &self.plan.bases[s] {
            Base::Scratch => StageState {
                config: ImageConfig::scratch(),
                layers: Vec::new(),
                key: key::base_key("scratch", self.settings),
                base_name: "scratch".into(),
                args: BTreeMap::new(),
                declared_args: Vec::new(),
                cmd_set: false,
            },
            Base::Stage(parent) => {
                let parent_state = &self.results[parent];
                StageState {
                    base_name: format!("stage {parent} ({})", hex(&parent_state.key)),
                    args: BTreeMap::new(),
                    declared_args: Vec::new(),
                    cmd_set: false,
                    ..parent_state.clone()
                }
            }
            Base::Image(image) => StageState {
                config: base_config(&self.inner.store, image)?,
                layers: image.layers.iter().map(|l| l.record.clone()).collect(),
                key: key::base_key(&layers::image_identity(image), self.settings),
                // By config digest: the manifest digest of one base differs between a pull
                // and an archive import, and records are compared across stores.
                base_name: format!("{} ({})", stage.base, image.manifest.config().digest()),
                args: BTreeMap::new(),
                declared_args: Vec::new(),
                cmd_set: false,
            },
        };
        // A base image's layers are in use from here on, even if its name goes meanwhile
        // (`image rm` and `cache gc` beside this build).
        if matches!(&self.plan.bases[s], Base::Image(_)) {
            for layer in &state.layers {
                match self.use_digest(&layer.digest) {
                    Ok(()) | Err(lamina_store::StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // The base's triggers run at the start of this stage (see `plan`); they are not
        // passed on to images built on this one. Nor is a base's inline cache record.
        state.config.config.on_build.clear();
        state
            .config
            .extra
            .remove(lamina_image::cache_records::INLINE_MEMBER);
        Ok(state)
    }

    /// Runs (or reuses) step `i` of stage `s`, numbered `index`.
    pub(crate) fn step(
        &mut self,
        s: usize,
        i: usize,
        index: usize,
        state: &mut StageState,
    ) -> Result<(), ExecError> {
        if self
            .options
            .cancel
            .as_ref()
            .is_some_and(|c| c.is_cancelled())
        {
            return Err(ExecError::Cancelled);
        }
        let started = Instant::now();
        let instruction = self.plan.df.stages[s].instructions[i].clone();
        let text = instruction
            .render(self.plan.df.escape)
            .trim_end()
            .to_string();
        self.emit(BuildEvent::StepStarted {
            index,
            total: self.plan.total,
            text: crate::error::brief_step(&text).into_owned(),
        });
        let workdir = state.config.workdir().to_owned();
        let StepInputs {
            inputs,
            matches,
            fingerprints,
            fingerprint_matches,
            download: _download,
        } = self.step_inputs(s, i, index, &instruction, &text, &workdir)?;
        let step_key = key::step_key(&state.key, &text, &inputs);
        self.current = (inputs, s);
        let mut recorded = RecordedStep {
            index,
            text: text.clone(),
            key: hex(&step_key),
            parent: hex(&state.key),
            base: (i == 0).then(|| state.base_name.clone()),
            inputs: fingerprints,
            pending: Vec::new(),
        };
        let forced = self.options.no_cache || self.options.no_cache_steps.contains(&index);

        let mut found = if forced {
            None
        } else {
            self.lookup(&step_key)?
        };
        if found.is_none() {
            // A miss: the step will write. The index opens for writing beside the step's
            // first work (a COPY's staging); the lease, which lets GC run while the step
            // does, is taken before anything long: a wait for another process running this
            // step, an unpack, a download, a RUN, a large COPY's staging, the step's first
            // write (`Build::lease`).
            self.inner.store.open_for_writes_in_background();
            let work_dir = &self.inner.config.work_dir;
            let lock = match KeyLock::try_acquire(work_dir, &step_key)? {
                Some(lock) => lock,
                None => {
                    // Another process runs this step: this build is running too.
                    self.lease()?;
                    self.mark_building()?;
                    KeyLock::acquire(work_dir, &step_key)?
                }
            };
            // Another build may have stored this very step since the lookup above (it marks
            // the lock when it has): looked up again through the index opened for writing,
            // which sees every write (a read-only open sees the index as it was opened).
            if !forced && lock.stored_before() {
                self.lease()?;
                found = self.lookup(&step_key)?;
            }
            // `COPY --link`: the layer made on another base is this step's layer too.
            let link = match &instruction {
                Instruction::Copy(copy) if linkable(copy) => Some(key::link_key(
                    self.settings,
                    state.config.workdir(),
                    &text,
                    &inputs,
                )),
                _ => None,
            };
            if found.is_none()
                && !forced
                && let Some(link) = &link
                && let Some(layer) = self.linked_layer(link)?
            {
                state.config.rootfs.diff_ids.push(layer.diff_id.to_string());
                if let Some(created_by) =
                    history::created_by(&instruction, &state.config, &state.declared_args)
                {
                    state.config.push_history(created_by, false, &self.created);
                }
                self.lease()?;
                self.save(&step_key, state, Some(&layer))?;
                lock.mark_stored();
                drop(lock);
                if fingerprint_matches {
                    recorded.pending = matches;
                }
                self.emit(BuildEvent::StepCached {
                    index,
                    key: step_key,
                });
                let layer = Some(layer);
                self.finish(index, text, recorded, step_key, state, layer, true, started);
                return Ok(());
            }
            // Found in a `--cache-from` source: nothing runs, the layer stays remote until read.
            if found.is_none() && !forced {
                found = self.remote_hit(&step_key, &state.layers)?;
                // Its entry is stored now, as a run's would be.
                if found.is_some() {
                    lock.mark_stored();
                }
            }
            if found.is_none() {
                if fingerprint_matches {
                    recorded.inputs = key::input_fingerprints(&matches);
                }
                if self.first_miss.is_none() {
                    self.mark_building()?;
                    self.first_miss = Some(self.miss_reason(&recorded, forced));
                }
                // A stage skipped so far (see `lazy.rs`) is built now if this step reads it.
                self.realize_sources(s, &instruction)?;
                self.current = (inputs, s);
                let layer = self.execute(s, index, &text, &instruction, state, &matches)?;
                self.lease()?;
                self.save(&step_key, state, layer.as_ref())?;
                if let Some(link) = &link {
                    self.save(link, state, layer.as_ref())?;
                }
                lock.mark_stored();
                drop(lock);
                self.finish(
                    index, text, recorded, step_key, state, layer, false, started,
                );
                return Ok(());
            }
        }
        let Some((config, layer)) = found else {
            unreachable!("a miss returned above");
        };
        self.emit(BuildEvent::StepCached {
            index,
            key: step_key,
        });
        if fingerprint_matches {
            recorded.pending = matches;
        }
        state.config = config;
        match &instruction {
            Instruction::Cmd(_) => state.cmd_set = true,
            Instruction::Arg(decls) => record_args(state, decls),
            _ => {}
        }
        self.finish(index, text, recorded, step_key, state, layer, true, started);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        index: usize,
        text: String,
        recorded: RecordedStep,
        step_key: CacheKey,
        state: &mut StageState,
        layer: Option<LayerRecord>,
        cached: bool,
        started: Instant,
    ) {
        let duration = started.elapsed();
        self.note_for_export(step_key, &text, state, layer.as_ref());
        self.steps.push(StepReport {
            index,
            text,
            cached,
            duration,
            layer: layer.as_ref().map(|l| l.digest),
            key: step_key,
        });
        self.record.steps.push(recorded);
        state.layers.extend(layer);
        state.key = step_key;
        self.emit(BuildEvent::StepFinished {
            index,
            cached,
            duration,
        });
    }

    /// The last build's record; with none here, what the remote cache's writer built.
    fn previous(&self) -> &Option<BuildRecord> {
        self.previous.get_or_init(|| {
            explain::read_record(&self.record_paths)
                .or_else(|| super::remote_cache::remote_record(self.remote_sources, &self.shape))
        })
    }

    fn miss_reason(&self, recorded: &RecordedStep, forced: bool) -> MissReason {
        let (index, text) = (recorded.index, recorded.text.clone());
        if self.options.no_cache {
            MissReason::NoCache { index, text }
        } else if forced {
            MissReason::NoCacheStep { index, text }
        } else {
            explain::explain(self.previous().as_ref(), recorded)
        }
    }

    /// Runs a step that missed; updates `state.config` (history and diff_ids included) and
    /// returns the layer it made.
    fn execute(
        &self,
        s: usize,
        index: usize,
        text: &str,
        instruction: &Instruction,
        state: &mut StageState,
        matches: &[SourceMatch],
    ) -> Result<Option<LayerRecord>, ExecError> {
        // The step runs on its layers: any still in a remote cache are fetched now.
        self.ensure_local(&state.layers)?;
        let escape = self.plan.df.escape;
        let layer = match instruction {
            Instruction::Run(run) => self.run_step(s, index, text, run, state)?,
            Instruction::Copy(copy) => self.copy_step(s, index, text, copy, state, matches)?,
            Instruction::Workdir(_) => {
                state.config.apply(instruction, escape, &mut state.cmd_set);
                self.ensure_workdir(state)?
            }
            Instruction::Arg(decls) => {
                record_args(state, decls);
                None
            }
            other => {
                state.config.apply(other, escape, &mut state.cmd_set);
                None
            }
        };
        if let Some(layer) = &layer {
            state.config.rootfs.diff_ids.push(layer.diff_id.to_string());
        }
        if let Some(created_by) =
            history::created_by(instruction, &state.config, &state.declared_args)
        {
            state
                .config
                .push_history(created_by, layer.is_none(), &self.created);
        }
        Ok(layer)
    }

    /// A layer holding the working directory, if the rootfs does not have it yet.
    fn ensure_workdir(&self, state: &StageState) -> Result<Option<LayerRecord>, ExecError> {
        let workdir = state.config.workdir().trim_start_matches('/').to_string();
        if workdir.is_empty() {
            return Ok(None);
        }
        let work_dir = &self.inner.config.work_dir;
        let view = self.view(&state.layers)?;
        // Made through the image's symlinks, as BuildKit makes it: `WORKDIR /lib/app` on a
        // merged-/usr base is `/usr/lib/app`, not a `/lib` directory hiding the symlink.
        let in_image = |e| layers::io(&workdir, e);
        let (resolved, existing) = view.resolve(&workdir).map_err(in_image)?;
        if existing.is_some_and(|node| node.is_dir()) {
            return Ok(None);
        }
        let tree = layers::temp_dir(work_dir, "workdir-")?;
        let dir = tree.path().join(resolved.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|e| layers::io(&dir, e))?;
        Ok(Some(self.store_staged(tree)?))
    }

    /// The merged filesystem of `layers`, read from their unpacked copies.
    /// Without root the layer cache cannot be filled (its copies keep owners, devices and
    /// overlay attributes), so the layers are unpacked, merged, into a temporary tree.
    pub(crate) fn view(&self, layers: &[LayerRecord]) -> Result<LayerView, ExecError> {
        // Layers may need unpacking (seconds for a large base): GC may run meanwhile.
        self.lease()?;
        self.ensure_local(layers)?;
        if !rustix::process::geteuid().is_root() {
            let merged = layers::temp_dir(&self.inner.config.work_dir, "merged-")?;
            layers::unpack_merged(&self.inner.store, layers, merged.path())?;
            return Ok(LayerView::merged(merged));
        }
        let cache = self.inner.layer_cache()?;
        let dirs = layers
            .iter()
            .map(|l| cache.unpacked(&self.inner.store, l))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LayerView::new(dirs))
    }

    /// Stores the staged tree as a layer of this build, and keeps the tree itself as the
    /// layer's unpacked copy (see [`LayerCache::adopt`](crate::sandbox::LayerCache::adopt)).
    pub(crate) fn store_staged(&self, tree: tempfile::TempDir) -> Result<LayerRecord, ExecError> {
        let layer = self.store_and_keep(LayerSource::Tree(tree.path()), tree.path())?;
        // Still there when the layer had its tree already.
        if tree.path().exists() {
            self.removed_beside.remove(tree);
        }
        Ok(layer)
    }

    /// Commits the target stage as an image; tags it or keeps it under a final cache key.
    fn commit(&self) -> Result<(StoredImage, Option<String>), ExecError> {
        let store = &self.inner.store;
        let target = *self.plan.stages.last().ok_or(ExecError::NoStages)?;
        let state = &self.results[&target];
        let mut config = state.config.clone();
        let mut default_cmd = None;
        if config.config.entrypoint.is_none()
            && config.config.cmd.is_none()
            && self.options.default_cmd.applies_to(self.image.origin())
        {
            let argv: Vec<String> = SANDBOX_DEFAULT_CMD.map(String::from).to_vec();
            config.push_history(history::default_cmd_text(&argv), true, &self.created);
            config.config.cmd = Some(argv.clone());
            default_cmd = Some(argv);
        }
        config.created = Some(self.created.clone());
        config.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.to_string()).collect();
        lock(&self.variants_beside).wait();
        let (layers, compression) = self.image_layers(&state.layers)?;
        if let Some(inline) = self.inline_document(&layers, &self.shape, compression) {
            config.extra.insert(
                lamina_image::cache_records::INLINE_MEMBER.to_owned(),
                inline,
            );
        }
        // The Docker-shaped config as it is: the OCI type would drop Healthcheck, Shell
        // and OnBuild.
        let config_bytes = lamina_image::image::canonical_json(&config, "config")?;
        let stored_variants = lock(&self.stored_variants).clone();
        let stored = self.inner.last_config.commit(
            store,
            &config_bytes,
            &layers,
            compression,
            // All hits so far: the read section protects the build, with no lease.
            self.lease.get(),
            &stored_variants,
        )?;
        let final_key = key::final_key(&state.key, default_cmd.as_deref());
        // Untagged images live as long as these entries (the store's TTL); tagged ones too
        // are kept this way, so that an untag does not lose a recent build at once.
        for (k, blob) in [
            (final_key, stored.manifest_blob),
            (key::derived_key(&final_key, "config"), stored.config_blob),
        ] {
            store.put_cache_entry(
                &k,
                &CacheEntry {
                    layer: None,
                    config: blob,
                    ttl: None,
                },
            )?;
        }
        if let Some(tag) = &self.options.tag {
            stored.tag(store, tag, true)?;
        }
        self.emit(BuildEvent::Committed {
            digest: stored.digest,
        });
        Ok((stored, self.options.tag.clone()))
    }
}

/// Whether a COPY's layer is independent of the image below it (`--link`, as Docker has
/// it): owners by number only, since a name would be looked up in the image.
fn linkable(copy: &lamina_spec::Copy) -> bool {
    let numeric = |s: &str| s.split(':').all(|p| p.parse::<u32>().is_ok());
    copy.link && copy.chown.as_deref().is_none_or(numeric)
}

/// Makes `ARG` values visible to the stage's later RUN steps.
pub(crate) fn record_args(state: &mut StageState, decls: &[lamina_spec::ArgDecl]) {
    for decl in decls {
        if let Some(value) = &decl.default {
            state.args.insert(decl.name.clone(), value.clone());
        }
        // A declared-again ARG keeps its place (and its value unless given a new one), as
        // BuildKit lists it.
        match state
            .declared_args
            .iter_mut()
            .find(|(n, _)| *n == decl.name)
        {
            Some(slot) => {
                if decl.default.is_some() {
                    slot.1 = decl.default.clone();
                }
            }
            None => state
                .declared_args
                .push((decl.name.clone(), decl.default.clone())),
        }
    }
}
