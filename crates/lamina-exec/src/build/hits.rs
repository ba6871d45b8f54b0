//! A build's cache lookups and saves: hits join the build's lease, so GC in another process
//! cannot take what the build goes on to use.

use lamina_store::{BlobKind, CacheEntry, LayerRecord};

use super::config::ImageConfig;
use super::key::CacheKey;
use super::layers;
use super::steps::{Build, StageState};
use crate::ExecError;

impl Build<'_> {
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
        let Some(bytes) = store.read(&entry.config)? else {
            return Ok(None);
        };
        let config = ImageConfig::parse(&bytes, &entry.config)?;
        let layer = match entry.layer {
            None => None,
            Some(digest) => match store.layer(&digest)? {
                Some(l) if layers::has_stored_variant(store, &l)? => Some(l),
                // Only in a registry (an earlier remote hit): fetched if something reads it.
                Some(l) if store.remote_variant(&l)?.is_some() => Some(l),
                _ => return Ok(None),
            },
        };
        // In use from here on; collected since the lookup is a miss.
        for digest in std::iter::once(&entry.config).chain(layer.as_ref().map(|l| &l.digest)) {
            match self.lease.add(digest) {
                Ok(()) => {}
                Err(lamina_store::StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
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
        match self.lease.add(&layer.digest) {
            Ok(()) => Ok(Some(layer)),
            Err(lamina_store::StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
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
            store.put_bytes_leased(BlobKind::Config, &state.config.to_bytes(), &self.lease)?;
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
