//! What the engine's methods return to Python: plain read-only records.

use pyo3::prelude::*;

/// What `Engine.build` did.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image digest, `sha256:<hex>`.
    pub digest: String,
    /// The name given (`name:tag`), if any.
    pub tag: Option<String>,
    /// Seconds the build took.
    pub duration: f64,
    /// Steps built.
    pub steps: usize,
    /// Steps found in the cache (nothing run), in the store or a `cache_from` registry.
    pub steps_cached: usize,
    /// Of those, the steps taken from a `cache_from` registry cache.
    pub steps_from_registry_cache: usize,
}

#[pymethods]
impl BuildResult {
    fn __repr__(&self) -> String {
        format!(
            "BuildResult(digest={:?}, tag={:?}, duration={:.3}, steps={}, steps_cached={}, \
             steps_from_registry_cache={})",
            self.digest,
            self.tag,
            self.duration,
            self.steps,
            self.steps_cached,
            self.steps_from_registry_cache
        )
    }
}

/// What `Engine.push` did.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct PushResult {
    /// The image digest on the registry.
    pub digest: String,
    /// The reference pushed to.
    pub reference: String,
    /// Blobs uploaded.
    pub blobs_pushed: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Bytes uploaded.
    pub bytes_pushed: u64,
    /// Layers compressed for this push.
    pub layers_compressed: usize,
}

#[pymethods]
impl PushResult {
    fn __repr__(&self) -> String {
        format!(
            "PushResult(digest={:?}, reference={:?}, blobs_pushed={}, bytes_pushed={})",
            self.digest, self.reference, self.blobs_pushed, self.bytes_pushed
        )
    }
}

/// What `Engine.export` wrote.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct ExportResult {
    /// The path written.
    pub path: String,
    /// The exported image's digest.
    pub digest: String,
    /// `oci-dir`, `oci-archive` or `docker-archive`.
    pub format: String,
    /// The layers' compression in the output.
    pub compression: String,
    /// Bytes written.
    pub bytes: u64,
}

#[pymethods]
impl ExportResult {
    fn __repr__(&self) -> String {
        format!(
            "ExportResult(path={:?}, digest={:?}, format={:?}, bytes={})",
            self.path, self.digest, self.format, self.bytes
        )
    }
}

/// One named image in the store.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The short name (`app:1`).
    pub name: String,
    /// The full name (`docker.io/library/app:1`).
    pub reference: String,
    /// The image digest.
    pub digest: String,
    /// `active`, `building`, `build_failed` or `incomplete`.
    pub state: String,
    /// Bytes of its layers as stored.
    pub size: u64,
    /// When the name was first given, seconds since the epoch.
    pub created: f64,
    /// When the image was last used, seconds since the epoch.
    pub last_used: f64,
}

#[pymethods]
impl ImageInfo {
    fn __repr__(&self) -> String {
        format!(
            "ImageInfo(name={:?}, digest={:?}, state={:?}, size={})",
            self.name, self.digest, self.state, self.size
        )
    }
}

/// What `Engine.gc` removed.
#[pyclass(frozen, get_all, module = "lamina._native")]
#[derive(Debug, Clone)]
pub struct GcResult {
    /// Blobs removed from the store.
    pub blobs_removed: u64,
    /// Bytes those blobs held.
    pub bytes_freed: u64,
    /// Blobs kept.
    pub blobs_kept: u64,
    /// Cache entries removed for their age.
    pub cache_expired: u64,
    /// Cache entries removed for the size budget.
    pub cache_evicted: u64,
    /// Unpacked layer copies removed.
    pub unpacked_layers_removed: u64,
    /// Bytes of work files (unpacked layers, cache mounts, git repositories, leftovers)
    /// freed.
    pub work_bytes_freed: u64,
}

#[pymethods]
impl GcResult {
    fn __repr__(&self) -> String {
        format!(
            "GcResult(blobs_removed={}, bytes_freed={}, blobs_kept={})",
            self.blobs_removed, self.bytes_freed, self.blobs_kept
        )
    }
}
