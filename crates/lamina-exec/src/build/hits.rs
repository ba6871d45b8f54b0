//! A build's cache lookups and saves: hits join the build's lease, so GC in another process
//! cannot take what the build goes on to use.
//!
//! Until the first miss a build holds a read section of the store instead of a lease: no GC
//! in any process decides while it is held, so hits need no index write at all (a rebuild
//! whose steps all hit opens the index read-only in a read-first store, and records its
//! uses in the touch log). At the first miss (or before network work) the build takes its
//! lease, adds what it used so far, and ends the section, so GC can run beside the step:
//! not as the miss is found but before anything long or written (a wait for another
//! process's run of the step, an unpack, a download, a RUN, a large COPY's staging, the
//! step's first write), since the lease needs the index opened for writing, which opens
//! meanwhile (`steps.rs`, `step`).

use std::sync::MutexGuard;

use lamina_store::{BlobKind, CacheEntry, Digest, LayerRecord, Lease, ReadSection, StoreError};

use super::config::ImageConfig;
use super::key::CacheKey;
use super::layers;
use super::lock;
use super::steps::{BUILD_LEASE_TTL, Build, StageState};
use crate::ExecError;

impl<'a> Build<'a> {
    /// A cache hit: the step's config and layer, if both are still in the store (the layer
    /// in any compression: a missing variant is made when the image is committed).
    pub(crate) fn lookup(
        &self,
        step_key: &CacheKey,
    ) -> Result<Option<(ImageConfig, Option<LayerRecord>)>, ExecError> {
        let store = &self.inner.store;
        let Some(entry) = store.cache_entry(step_key)? else {
            return Ok(None);
        };
        let config = match self.inner.step_configs.get(&entry.config) {
            // Its digest names its bytes: only whether the store still holds it is asked.
            Some(config) => match store.mark_used(&entry.config)? {
                Some(_) => config,
                None => return Ok(None),
            },
            None => {
                let Some(bytes) = store.read(&entry.config)? else {
                    return Ok(None);
                };
                let config = ImageConfig::parse(&bytes, &entry.config)?;
                self.inner.step_configs.insert(entry.config, &config);
                config
            }
        };
        let mut seen = None;
        let layer = match entry.layer {
            None => None,
            Some(digest) => match store.layer(&digest)? {
                Some(l) => match layers::stored_variant(store, &l)? {
                    Some(variant) => {
                        seen = Some(variant);
                        Some(l)
                    }
                    // Only in a registry (an earlier remote hit): fetched if something
                    // reads it.
                    None if store.remote_variant(&l)?.is_some() => Some(l),
                    None => return Ok(None),
                },
                None => return Ok(None),
            },
        };
        // In use from here on; collected since the lookup is a miss.
        for digest in std::iter::once(&entry.config).chain(layer.as_ref().map(|l| &l.digest)) {
            match self.use_digest(digest) {
                Ok(()) => {}
                Err(lamina_store::StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        // Seen under the read section (no lease yet: the section was held all along, as a
        // lease once taken stays), so no GC ran since, and the layer, now in use, keeps its
        // variants: the commit need not ask again. Under a lease, a GC between the check and
        // `use_digest` could have dropped a compressed variant, so the commit asks.
        if let Some(variant) = seen
            && self.lease.get().is_none()
        {
            let mut stored = lock(&self.stored_variants);
            if !stored.contains(&variant) {
                stored.push(variant);
            }
        }
        Ok(Some((config, layer)))
    }

    /// The layer a `COPY --link` step with `link` key made on any base, if still stored.
    pub(crate) fn linked_layer(&self, link: &CacheKey) -> Result<Option<LayerRecord>, ExecError> {
        let store = &self.inner.store;
        let Some(entry) = store.cache_entry(link)? else {
            return Ok(None);
        };
        let Some(digest) = entry.layer else {
            return Ok(None);
        };
        let layer = match store.layer(&digest)? {
            Some(l) if layers::has_stored_variant(store, &l)? => l,
            _ => return Ok(None),
        };
        match self.use_digest(&layer.digest) {
            Ok(()) => Ok(Some(layer)),
            Err(lamina_store::StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The build's lease, taken now if the build has none yet: with what the build used so
    /// far in it, and the read section ended.
    pub(crate) fn lease(&self) -> Result<&Lease<'a>, ExecError> {
        if let Some(lease) = self.lease.get() {
            return Ok(lease);
        }
        // Held until the lease is set: a digest noted meanwhile by another thread of the
        // build joins this lease, never a vector already emptied.
        let mut used = lock(&self.used_before_lease);
        if let Some(lease) = self.lease.get() {
            return Ok(lease);
        }
        let lease = self.inner.store.lease(BUILD_LEASE_TTL)?;
        for digest in used.drain(..) {
            // Found under the read section, so still stored; a base layer may be missing.
            match lease.add(&digest) {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let lease = self.lease.get_or_init(|| lease);
        drop(used);
        // Taken out first: the guard is not held while the section ends.
        let section = self.section().take();
        if let Some(section) = section {
            section.end()?;
        }
        Ok(lease)
    }

    /// Protects `digest` for the rest of the build: in the lease, or (while the read section
    /// holds GC off) noted for the lease taken at the first miss.
    pub(crate) fn use_digest(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut used = lock(&self.used_before_lease);
        match self.lease.get() {
            Some(lease) => {
                drop(used);
                lease.add(digest)
            }
            None => {
                used.push(*digest);
                Ok(())
            }
        }
    }

    /// The read section, if the build still holds one.
    pub(crate) fn section(&self) -> MutexGuard<'_, Option<ReadSection<'a>>> {
        lock(&self.section)
    }

    /// Stores a step's config and its cache entry.
    pub(crate) fn save(
        &self,
        step_key: &CacheKey,
        state: &StageState,
        layer: Option<&LayerRecord>,
    ) -> Result<(), ExecError> {
        let store = &self.inner.store;
        let config =
            store.put_bytes_leased(BlobKind::Config, &state.config.to_bytes(), self.lease()?)?;
        store.put_cache_entry(
            step_key,
            &CacheEntry {
                layer: layer.map(|l| l.digest),
                config: config.digest,
                ttl: None,
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lamina_spec::{Context, Dockerfile, Image};
    use lamina_store::{Store, StoreOptions};

    use crate::{BuildOptions, ExecConfig, Executor};

    #[test]
    fn an_executor_reads_each_step_config_once() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(dir.path().join("store"), StoreOptions::default()).unwrap());
        let work = dir.path().join("work");
        let text = "FROM scratch\nENV A=1\nWORKDIR /app\nLABEL x=y\n";
        let image = Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(dir.path()));
        let exec = Executor::new(store.clone(), ExecConfig::new(&work)).unwrap();
        let build = |exec: &Executor| exec.build_blocking(&image, &BuildOptions::default());
        let first = build(&exec).unwrap();
        assert_eq!(build(&exec).unwrap().digest, first.digest);

        // Each step's config blob overwritten with bytes of its length that are not JSON:
        // the executor that read them goes on from what it read (the blobs are still in the
        // store); a new one reads the files and fails.
        for step in &first.steps {
            let entry = store.cache_entry(&step.key).unwrap().unwrap();
            let info = store.stat(&entry.config).unwrap().unwrap();
            std::fs::write(store.blob_path(&info), vec![b'x'; info.size as usize]).unwrap();
        }
        let again = build(&exec).unwrap();
        assert_eq!(again.digest, first.digest);
        assert!(again.steps.iter().all(|s| s.cached));
        let fresh = Executor::new(store, ExecConfig::new(&work)).unwrap();
        assert!(build(&fresh).is_err());
    }
}
