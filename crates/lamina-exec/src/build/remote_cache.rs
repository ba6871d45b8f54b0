//! A registry as a shared build cache (`--cache-from`, `--cache-to`; the records are
//! lamina-image's `cache_records`, docs/format.md "Remote build cache"), reached through the
//! executor's [`RemoteCacheClient`](crate::seams::RemoteCacheClient).
//!
//! Import: the records of every `--cache-from` source are read once, before the blocking
//! build starts.
//! A step whose key misses locally but is found remotely is a hit: its config comes from the
//! record and nothing runs. Its layer stays remote (a placeholder record naming the blob's
//! sha256) until something reads its bytes: a later step that runs on it, a `COPY --from`
//! of it, or the final image. Those layers are then fetched in parallel and verified against
//! the record's digest, size and diff_id. A damaged, missing or unauthorized cache is a miss
//! with a warning: a source that cannot be read is skipped; a layer that fails to fetch or
//! verify makes the build start again without that source (steps already run are local
//! hits by then).
//!
//! Export: after the image is stored, the build hands back a document per `--cache-to` ref,
//! sent once the blocking build has ended. Each gets the records of every step
//! (`mode=max`) or of the target stage and the stages it is built on (`mode=min`), the
//! explain record, and the final image's layers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use lamina_image::StoredImage;
use lamina_image::cache_records::{
    self as cache, CacheBuild, CacheDocument, CacheLayer, CacheRecord, ExportBlob, RemoteCache,
};
use lamina_store::{BlobKind, CacheEntry, Compression, Digest, LayerRecord, LayerVariant};

use super::BuildEvent;
use super::config::ImageConfig;
use super::explain::BuildRecord;
use super::key::{CacheKey, hex};
use super::lock;
use super::steps::Build;
use crate::ExecError;

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The target stage and the stages it is built `FROM` (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage built (what a reader needs to skip `COPY --from` stages).
    Max,
}

/// One `--cache-to` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    /// The cache ref (`registry/repository:tag`); each store writes its own tag beside it.
    /// Empty for `inline`.
    pub reference: String,
    /// `inline`: the records go into the image's own config (member `lamina.cache.v1`),
    /// naming the image's layers, so pushing the image publishes them and `--cache-from`
    /// the image reads them. It changes the image's config, so its digest: opt-in.
    pub inline: bool,
    /// Which steps.
    pub mode: CacheMode,
    /// Whether a failed export only warns (else the build fails after storing the image).
    pub ignore_error: bool,
}

impl CacheTo {
    /// Parses `REF[,mode=min|max][,ignore-error=true|false]` (BuildKit's
    /// `type=registry,ref=REF` spelling is read too).
    pub fn parse(spec: &str) -> Result<CacheTo, String> {
        if spec == "inline" || spec == "type=inline" {
            return Ok(CacheTo {
                reference: String::new(),
                inline: true,
                mode: CacheMode::Min,
                ignore_error: false,
            });
        }
        let mut reference = None;
        let mut mode = CacheMode::Min;
        let mut ignore_error = false;
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("ref", value)) => reference = Some(value.to_owned()),
                Some(("type", "registry")) => {}
                Some(("type", other)) => {
                    return Err(format!(
                        "`{spec}`: cache type {other} is not supported; give a registry ref"
                    ));
                }
                Some(("mode", "min")) => mode = CacheMode::Min,
                Some(("mode", "max")) => mode = CacheMode::Max,
                Some(("ignore-error", value)) => {
                    ignore_error = value.parse().map_err(|_| {
                        format!("`{spec}`: ignore-error takes true or false, not {value}")
                    })?;
                }
                Some((name, value)) if reference.is_none() && !part.contains('/') => {
                    return Err(format!(
                        "`{spec}`: unknown option {name}={value}; expected REF[,mode=min|max][,ignore-error=true]"
                    ));
                }
                _ if reference.is_none() && !part.is_empty() => reference = Some(part.to_owned()),
                _ => {
                    return Err(format!(
                        "`{spec}`: unexpected `{part}`; expected REF[,mode=min|max][,ignore-error=true]"
                    ));
                }
            }
        }
        match reference {
            Some(reference) if !reference.is_empty() => Ok(CacheTo {
                reference,
                inline: false,
                mode,
                ignore_error,
            }),
            _ => Err(format!("`{spec}` names no cache ref")),
        }
    }
}

/// Runs `attempt` with the `--cache-from` sources (read before the build); when a layer of
/// one fails to fetch or verify, warns and runs it again without that source (a miss, not a
/// failure: the steps the failed attempt ran are local hits on the next).
pub(crate) fn with_sources<T>(
    options: &super::BuildOptions,
    mut sources: Vec<Option<RemoteCache>>,
    mut attempt: impl FnMut(&[Option<RemoteCache>]) -> Result<T, ExecError>,
) -> Result<T, ExecError> {
    loop {
        match attempt(&sources) {
            Err(ExecError::RemoteCacheLayer {
                source_index,
                reference,
                reason,
            }) if sources.get(source_index).is_some_and(Option::is_some) => {
                emit(
                    options,
                    BuildEvent::Warning {
                        message: format!(
                            "remote cache {reference}: {reason}; building again without it"
                        ),
                    },
                );
                sources[source_index] = None;
            }
            result => return result,
        }
    }
}

fn emit(options: &super::BuildOptions, event: BuildEvent) {
    if let Some(on_event) = &options.on_event {
        on_event(event);
    }
}

/// Reads every `--cache-from` source; one that cannot be read is `None`, with a warning.
pub(crate) async fn load_sources(
    inner: &super::Inner,
    options: &super::BuildOptions,
) -> Vec<Option<RemoteCache>> {
    let mut loaded = Vec::with_capacity(options.cache_from.len());
    for reference in &options.cache_from {
        let found = match &inner.config.remote_cache {
            Some(client) => (client.import(inner.store.clone(), reference.clone()).await)
                .map_err(|e| e.to_string()),
            None => Err(NO_CLIENT.to_owned()),
        };
        match found {
            Ok(found) => {
                if found.records.is_empty() && found.warnings.is_empty() {
                    emit(
                        options,
                        BuildEvent::Warning {
                            message: format!(
                                "remote cache {reference} holds no records (no writer tags, no inline record); building without it"
                            ),
                        },
                    );
                }
                for warning in &found.warnings {
                    emit(
                        options,
                        BuildEvent::Warning {
                            message: format!(
                                "remote cache {reference}: {warning}; its records are skipped"
                            ),
                        },
                    );
                }
                loaded.push(Some(found));
            }
            Err(e) => {
                emit(
                    options,
                    BuildEvent::Warning {
                        message: format!(
                            "remote cache {reference} cannot be read ({e}); building without it"
                        ),
                    },
                );
                loaded.push(None);
            }
        }
    }
    loaded
}

/// Why a remote cache operation cannot be done by an executor without a client.
const NO_CLIENT: &str = "this executor has no remote cache client";

/// A `--cache-to` document ready to send.
#[derive(Debug)]
pub(crate) struct PendingExport {
    target: CacheTo,
    document: CacheDocument,
    blobs: Vec<ExportBlob>,
}

/// Writes each document to its `--cache-to` ref, after the build. A failure fails the build
/// (the image is stored by now) unless the ref says `ignore-error=true`. The time it takes
/// counts in the report's duration, as it did when exports ran inside the build.
pub(crate) async fn export_caches(
    inner: &super::Inner,
    options: &super::BuildOptions,
    report: &mut super::BuildReport,
    exports: Vec<PendingExport>,
) -> Result<(), ExecError> {
    let started = std::time::Instant::now();
    // The build's lease ended with its blocking part: the layers the documents name are
    // leased again until their uploads end, so that a GC under a size budget cannot drop a
    // variant an export is sending.
    let lease = match exports.iter().flat_map(|e| &e.blobs).next() {
        None => None,
        Some(_) => {
            let lease = inner.store.lease(super::steps::BUILD_LEASE_TTL)?;
            for blob in exports.iter().flat_map(|e| &e.blobs) {
                lease.add(&blob.owner)?;
            }
            Some(lease)
        }
    };
    for PendingExport {
        target,
        document,
        blobs,
    } in exports
    {
        let exported = match &inner.config.remote_cache {
            Some(client) => {
                let store = inner.store.clone();
                (client
                    .export(store, target.reference.clone(), document, blobs)
                    .await)
                    .map_err(|e| e.to_string())
            }
            None => Err(NO_CLIENT.to_owned()),
        };
        match exported {
            Ok(done) => emit(
                options,
                BuildEvent::CacheExported {
                    reference: done.reference,
                    records: done.records,
                    bytes_uploaded: done.bytes_uploaded,
                },
            ),
            Err(e) if target.ignore_error => emit(
                options,
                BuildEvent::Warning {
                    message: format!(
                        "exporting the cache to {} failed ({e}); ignored (ignore-error=true)",
                        target.reference
                    ),
                },
            ),
            Err(reason) => {
                return Err(ExecError::CacheExport {
                    digest: report.digest.to_string(),
                    reference: target.reference.clone(),
                    reason,
                });
            }
        }
    }
    if let Some(lease) = lease {
        lease.release()?;
    }
    report.duration += started.elapsed();
    Ok(())
}

/// The explain record a source exported for this definition shape, else its latest.
pub(crate) fn remote_record(
    sources: &[Option<RemoteCache>],
    shape: &CacheKey,
) -> Option<BuildRecord> {
    let shape = hex(shape);
    let builds: Vec<&CacheBuild> = sources.iter().flatten().flat_map(|s| &s.builds).collect();
    let build = builds
        .iter()
        .find(|b| b.shape == shape)
        .or_else(|| builds.first())?;
    serde_json::from_value(build.steps.clone()).ok()
}

/// A step as an export needs it.
#[derive(Debug, Clone)]
pub(crate) struct ExportStep {
    pub key: CacheKey,
    pub text: String,
    pub inputs: CacheKey,
    pub config: Vec<u8>,
    pub layer: Option<LayerRecord>,
    pub stage: usize,
}

/// A build's remote-cache bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct RemoteState {
    /// Layers this build recorded as remote from a `--cache-from` source: tar key → source.
    taken: Mutex<BTreeMap<Digest, usize>>,
    /// Local cache entries written for remote hits with a layer: key and source, so that a
    /// source whose layer fails to fetch or verify leaves none behind.
    entries: Mutex<Vec<(CacheKey, usize)>>,
    /// Steps taken from a remote cache.
    pub hits: usize,
    /// Layers fetched and their bytes.
    pub fetched: Mutex<(usize, u64)>,
    /// Every step, for `--cache-to`.
    pub steps: Vec<ExportStep>,
}

impl Build<'_> {
    /// A hit in a `--cache-from` source for `key`: the config after the step and its layer
    /// (remote until needed). `below` are the layers under the step, for checking the
    /// record's config against them.
    pub(crate) fn remote_hit(
        &mut self,
        key: &CacheKey,
        below: &[LayerRecord],
    ) -> Result<Option<(ImageConfig, Option<LayerRecord>)>, ExecError> {
        let key_hex = hex(key);
        let sources = self.remote_sources;
        for (i, source) in sources.iter().enumerate() {
            let Some(source) = source else { continue };
            let Some(record) = source.records.get(&key_hex) else {
                continue;
            };
            match self.take_record(i, record, key, below) {
                Ok(Some(hit)) => {
                    self.remote.hits += 1;
                    return Ok(Some(hit));
                }
                Ok(None) => {}
                Err(reason) => self.emit(BuildEvent::Warning {
                    message: format!(
                        "remote cache {}: the record of step `{}` is unusable ({reason}); running it instead",
                        source.reference,
                        crate::error::brief_step(&record.text)
                    ),
                }),
            }
        }
        Ok(None)
    }

    fn take_record(
        &self,
        source: usize,
        record: &CacheRecord,
        key: &CacheKey,
        below: &[LayerRecord],
    ) -> Result<Option<(ImageConfig, Option<LayerRecord>)>, String> {
        let store = &self.inner.store;
        let info = store
            .put_bytes(BlobKind::Config, record.config.as_bytes())
            .map_err(|e| e.to_string())?;
        let config = ImageConfig::parse(record.config.as_bytes(), &info.digest)
            .map_err(|e| e.to_string())?;
        let mut expected: Vec<String> = below.iter().map(|l| l.diff_id.to_string()).collect();
        let Some(layer) = &record.layer else {
            if config.rootfs.diff_ids != expected {
                return Err("its config lists other layers than the build has".into());
            }
            self.save_entry(key, info.digest, None)
                .map_err(|e| e.to_string())?;
            return Ok(Some((config, None)));
        };
        let parse = |what: &str, text: &str| {
            Digest::parse(text).map_err(|e| format!("its layer {what} `{text}`: {e}"))
        };
        let tar = parse("tar digest", &layer.tar)?;
        let diff_id = parse("diff_id", &layer.diff_id)?;
        let sha256 = parse("digest", &layer.digest)?;
        let compression: Compression = layer
            .compression()
            .ok_or_else(|| format!("unknown compression {}", layer.compression))?;
        expected.push(diff_id.to_string());
        if config.rootfs.diff_ids != expected {
            return Err("its config lists other layers than the build has".into());
        }
        if let Some(local) = store.layer(&tar).map_err(|e| e.to_string())?
            && local.diff_id == diff_id
            && super::layers::has_stored_variant(store, &local).map_err(|e| e.to_string())?
        {
            self.save_entry(key, info.digest, Some(tar))
                .map_err(|e| e.to_string())?;
            return Ok(Some((config, Some(local))));
        }
        // Remote until read: recorded in the store as a layer only the source's
        // repository holds, so this build, later builds and pushes of the image can name
        // it without its bytes (docs/format.md, "Remote layers").
        let remote = LayerRecord {
            digest: tar,
            diff_id,
            size: layer.tar_size,
            variants: vec![LayerVariant::remote(compression, sha256, layer.size)],
            created: std::time::SystemTime::now(),
            tar_split: None,
        };
        let holder = self.remote_sources[source]
            .as_ref()
            .map(|s| s.source.clone())
            .ok_or("the source was dropped")?;
        let record = store
            .put_remote_layer(&remote, &holder)
            .map_err(|e| e.to_string())?;
        self.lease()
            .map_err(|e| e.to_string())?
            .add(&tar)
            .map_err(|e| e.to_string())?;
        self.save_entry(key, info.digest, Some(tar))
            .map_err(|e| e.to_string())?;
        lock(&self.remote.taken).insert(tar, source);
        lock(&self.remote.entries).push((*key, source));
        Ok(Some((config, Some(record))))
    }

    fn save_entry(
        &self,
        key: &CacheKey,
        config: Digest,
        layer: Option<Digest>,
    ) -> Result<(), ExecError> {
        self.inner.store.put_cache_entry(
            key,
            &CacheEntry {
                layer,
                config,
                ttl: None,
            },
        )?;
        Ok(())
    }

    /// Fetches the layers among `layers` the store holds only as remote (this build's
    /// remote hits, or earlier ones), in parallel, verified, into the build's lease. When one
    /// this build took from a source fails, the entries made from that source go and the
    /// build starts again without it.
    pub(crate) fn ensure_local(&self, layers: &[LayerRecord]) -> Result<(), ExecError> {
        let store = &self.inner.store;
        let mut by_source: BTreeMap<Option<usize>, Vec<LayerRecord>> = BTreeMap::new();
        for layer in layers {
            if store.remote_variant(layer)?.is_some() {
                let source = lock(&self.remote.taken).get(&layer.digest).copied();
                by_source.entry(source).or_default().push(layer.clone());
            }
        }
        for (source, wanted) in by_source {
            let reference = source
                .and_then(|i| self.remote_sources[i].as_ref())
                .map_or_else(
                    || "the registry recorded".to_owned(),
                    |s| s.reference.clone(),
                );
            // In the build's lease before the fetch: the layer keeps whatever variant
            // the fetch records for it (the fetch's own lease ends when it returns).
            let lease = self.lease()?;
            for layer in &wanted {
                lease.add(&layer.digest)?;
            }
            let fetched = match &self.inner.config.remote_cache {
                Some(client) => {
                    (self.bridge).wait(client.localize(store.clone(), wanted.clone()))?
                }
                None => Err(lamina_image::ImageError::RemoteLayer {
                    diff_id: (wanted.iter().map(|l| l.diff_id.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    source_repository: reference.clone(),
                    reason: NO_CLIENT.into(),
                }),
            };
            let done = match (fetched, source) {
                (Ok(done), _) => done,
                (Err(e), Some(source_index)) => {
                    for (key, _) in lock(&self.remote.entries)
                        .iter()
                        .filter(|(_, s)| *s == source_index)
                    {
                        store.remove_cache_entry(key)?;
                    }
                    return Err(ExecError::RemoteCacheLayer {
                        source_index,
                        reference,
                        reason: e.to_string(),
                    });
                }
                (Err(e), None) => return Err(e.into()),
            };
            let mut fetched = lock(&self.remote.fetched);
            fetched.0 += done.layers;
            fetched.1 += done.bytes;
            self.emit(BuildEvent::RemoteLayersFetched {
                reference,
                layers: done.layers,
                bytes: done.bytes,
            });
        }
        Ok(())
    }

    /// The final image's layers, each with a variant in the compression its manifest names,
    /// and that compression. Layers held only as remote stay remote when they agree on a
    /// compression (the one they were pushed in, so the image is the writer's): the image
    /// names them as they are and the local layers get a variant in it. Otherwise the
    /// remote ones are fetched and every layer gets a variant in this build's compression
    /// (a cache entry names the tar, not its encoding; a missing variant is made once).
    pub(crate) fn image_layers(
        &self,
        layers: &[LayerRecord],
    ) -> Result<(Vec<LayerRecord>, Compression), ExecError> {
        let store = &self.inner.store;
        let mut remote = Vec::new();
        for layer in layers {
            if let Some((variant, _)) = store.remote_variant(layer)? {
                remote.push(variant.compression);
            }
        }
        let compression = match remote.first() {
            Some(&first) if remote.iter().all(|&c| c == first) => first,
            _ => {
                self.ensure_local(layers)?;
                self.compression
            }
        };
        let mut out = Vec::with_capacity(layers.len());
        let seen = lock(&self.stored_variants).clone();
        let seen_in = |l: &LayerRecord| {
            l.variant_in(compression)
                .is_some_and(|v| seen.contains(&v.digest))
        };
        for layer in layers {
            out.push(match store.remote_variant(layer)? {
                Some(_) => store.layer(&layer.digest)?.unwrap_or_else(|| layer.clone()),
                // The variant the image names, found stored by a hit of this build.
                None if seen_in(layer) => layer.clone(),
                None => {
                    lamina_image::variants::ensure_named_variant(store, layer, compression, None)?
                }
            });
        }
        Ok((out, compression))
    }

    /// Keeps what `--cache-to` needs of a finished step.
    pub(crate) fn note_for_export(
        &mut self,
        key: CacheKey,
        text: &str,
        state: &super::steps::StageState,
        layer: Option<&LayerRecord>,
    ) {
        if self.options.cache_to.is_empty() {
            return;
        }
        self.remote.steps.push(ExportStep {
            key,
            text: text.to_owned(),
            inputs: self.current.0,
            config: state.config.to_bytes(),
            layer: layer.cloned(),
            stage: self.current.1,
        });
    }

    /// The cache document of this build for every `--cache-to` ref (sent by
    /// [`export_caches`] once the build has ended).
    pub(crate) fn cache_exports(
        &self,
        stored: &StoredImage,
        shape: &CacheKey,
        record: &BuildRecord,
    ) -> Result<Vec<PendingExport>, ExecError> {
        let mut exports = Vec::new();
        for target in self.options.cache_to.iter().filter(|t| !t.inline) {
            let chain = self.plan.target_chain();
            let steps = self
                .remote
                .steps
                .iter()
                .filter(|s| target.mode == CacheMode::Max || chain.contains(&s.stage));
            let (document, blobs) = self.cache_document(steps, stored, shape, record)?;
            exports.push(PendingExport {
                target: target.clone(),
                document,
                blobs,
            });
        }
        Ok(exports)
    }

    fn cache_document<'s>(
        &self,
        steps: impl Iterator<Item = &'s ExportStep>,
        stored: &StoredImage,
        shape: &CacheKey,
        record: &BuildRecord,
    ) -> Result<(CacheDocument, Vec<ExportBlob>), ExecError> {
        let store = &self.inner.store;
        let now = cache::now_secs();
        let mut blobs: Vec<ExportBlob> = Vec::new();
        let mut add_blob = |record: &LayerRecord, variant: &LayerVariant| {
            if !blobs.iter().any(|b| b.sha256 == variant.sha256) {
                blobs.push(ExportBlob {
                    blob: variant.digest,
                    sha256: variant.sha256,
                    owner: record.digest,
                    size: variant.size,
                });
            }
            cache_layer(record, variant)
        };
        let mut records = Vec::new();
        for step in steps {
            let layer = match &step.layer {
                None => None,
                Some(layer) => {
                    // A layer still remote (a hit never read here) is not re-exported.
                    let Some((record, variant)) = self.stored_variant(layer)? else {
                        continue;
                    };
                    Some(add_blob(&record, &variant))
                }
            };
            records.push(CacheRecord {
                key: hex(&step.key),
                created: now,
                text: step.text.clone(),
                inputs: hex(&step.inputs),
                config: String::from_utf8_lossy(&step.config).into_owned(),
                layer,
            });
        }
        let mut image_layers = Vec::new();
        for layer in &stored.layers {
            if lamina_image::layer_tar::has_variant(store, &layer.record, &layer.variant)? {
                image_layers.push(add_blob(&layer.record, &layer.variant));
            }
        }
        let build = CacheBuild {
            shape: hex(shape),
            created: now,
            steps: serde_json::to_value(record).unwrap_or_default(),
            layers: image_layers,
        };
        Ok((
            CacheDocument {
                version: cache::VERSION,
                records,
                builds: vec![build],
            },
            blobs,
        ))
    }

    /// The inline cache record (`--cache-to inline`) for an image of `layers` (each with the
    /// variant its manifest will name, in this build's compression): the records of the
    /// target stage and the stages it is built on whose layer is one of the image's.
    pub(crate) fn inline_document(
        &self,
        layers: &[LayerRecord],
        shape: &CacheKey,
        compression: Compression,
    ) -> Option<serde_json::Value> {
        if !self.options.cache_to.iter().any(|t| t.inline) {
            return None;
        }
        let variant_of = |tar: &Digest| {
            let record = layers.iter().find(|l| l.digest == *tar)?;
            let variant = record
                .variants
                .iter()
                .find(|v| v.compression == compression)?;
            Some(cache_layer(record, variant))
        };
        let chain = self.plan.target_chain();
        let now = cache::now_secs();
        let mut records = Vec::new();
        for step in self
            .remote
            .steps
            .iter()
            .filter(|s| chain.contains(&s.stage))
        {
            let layer = match &step.layer {
                None => None,
                Some(layer) => match variant_of(&layer.digest) {
                    Some(found) => Some(found),
                    None => continue,
                },
            };
            records.push(CacheRecord {
                key: hex(&step.key),
                created: now,
                text: step.text.clone(),
                inputs: hex(&step.inputs),
                config: String::from_utf8_lossy(&step.config).into_owned(),
                layer,
            });
        }
        let document = CacheDocument {
            version: cache::VERSION,
            records,
            builds: vec![CacheBuild {
                shape: hex(shape),
                created: now,
                steps: serde_json::to_value(&self.record).unwrap_or_default(),
                layers: layers
                    .iter()
                    .filter_map(|l| variant_of(&l.digest))
                    .collect(),
            }],
        };
        serde_json::to_value(document).ok()
    }

    /// The layer's variant to export: this build's compression when stored (made first for a
    /// tree-backed layer that lacks it: a builder stage's layer, or one whose variant the
    /// build did not make), else any stored.
    fn stored_variant(
        &self,
        layer: &LayerRecord,
    ) -> Result<Option<(LayerRecord, LayerVariant)>, ExecError> {
        let store = &self.inner.store;
        let Some(mut record) = store.layer(&layer.digest)? else {
            return Ok(None);
        };
        if self.compression != Compression::None
            && record.is_tree_backed()
            && record.variant_in(self.compression).is_none()
        {
            record = lamina_image::variants::ensure_variant(store, &record, self.compression)?;
        }
        let mut variants: Vec<&LayerVariant> = record.variants.iter().collect();
        variants.sort_by_key(|v| v.compression != self.compression);
        for variant in variants {
            if lamina_image::layer_tar::has_variant(store, &record, variant)? {
                let variant = variant.clone();
                return Ok(Some((record, variant)));
            }
        }
        Ok(None)
    }
}

fn cache_layer(record: &LayerRecord, variant: &LayerVariant) -> CacheLayer {
    CacheLayer {
        digest: variant.sha256.to_string(),
        size: variant.size,
        compression: variant.compression.name().to_owned(),
        diff_id: record.diff_id.to_string(),
        tar: record.digest.to_string(),
        tar_size: record.size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_specs_parse_as_buildkit_writes_them() {
        assert!(CacheTo::parse("inline").unwrap().inline);
        let plain = CacheTo::parse("127.0.0.1:5000/cache:main").unwrap();
        assert!(!plain.inline);
        assert_eq!(plain.reference, "127.0.0.1:5000/cache:main");
        assert_eq!(plain.mode, CacheMode::Min);
        assert!(!plain.ignore_error);
        let full = CacheTo::parse("r:5000/c:1,mode=max,ignore-error=true").unwrap();
        assert_eq!(full.mode, CacheMode::Max);
        assert!(full.ignore_error);
        let buildkit = CacheTo::parse("type=registry,ref=r:5000/c:1,mode=max").unwrap();
        assert_eq!(buildkit.reference, "r:5000/c:1");
        assert!(CacheTo::parse("r/c:1,mode=all").is_err());
        assert!(CacheTo::parse("type=local,dest=x").is_err());
        assert!(CacheTo::parse("mode=max").is_err());
        assert!(CacheTo::parse("r/c:1,ignore-error=yes").is_err());
    }
}
