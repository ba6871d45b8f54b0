//! One verify-and-stage pipeline for every image that enters the store, whether read from an
//! archive or layout ([`crate::archive::import`]) or received from a registry
//! ([`crate::registry::pull`]).
//!
//! Given an image manifest (an index is first resolved to its linux/amd64 entry with
//! [`documents::amd64_entry`]) and the config bytes, an `ImagePlan` checks the config
//! against its descriptor (sha256 and size), parses it leniently (see
//! [`documents::parse_config`]), checks the platform and that the config has one diff_id per
//! layer, and lists the layers to receive. Each layer stream goes into a staged store blob
//! while being decompressed and hashed (`layer::LayerIngest`); `ImagePlan::verify`
//! checks its size, digest and diff_id. Only when every layer of every image has checked out
//! does `ImagePlan::commit` store the config, the layers and the manifest (under a lease
//! the caller releases after tagging), so a failure anywhere stores nothing.
//!
//! Config and manifest bytes are stored as they arrived, never re-serialized: the image
//! digest and the Docker image ID (sha256 of the config) stay the source's. Only a
//! `docker save` archive, which has no manifest, gets one written for it
//! (`synthesize_manifest`), deterministically; its config bytes stay as they are too.
//!
//! Non-distributable ("foreign") layers are received like any other when the source has
//! their bytes (a registry serving them, an archive holding them); a note is logged, since
//! their descriptors also name URLs elsewhere. A source that lacks one (an archive without
//! the file, a registry answering 404) is refused with an error naming the layer and its
//! URLs: Lamina fetches nothing from other hosts, and an image without all its layers
//! cannot be built on.

pub use lamina_image::documents;
pub(crate) mod layer;

use std::io::{Read, Write};

use lamina_store::{
    BlobInfo, BlobKind, Compression, Digest, LayerRecord, LayerVariant, Lease, Store,
};
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION};

use crate::image::{canonical_json, invalid, oci_digest, store_digest};
use crate::registry::media;
use crate::{ExportError, StoredImage};
use layer::{IngestError, LayerIngest, StagedLayer, UncompressedDigests, hash_uncompressed};

pub use documents::{amd64_entry, check_platform, parse_config, parse_index, parse_manifest};

/// Largest config accepted (they are a few KiB; this bounds memory on a hostile source).
pub(crate) const MAX_CONFIG: u64 = 32 << 20;

/// One layer of an image to receive.
#[derive(Debug, Clone)]
pub(crate) struct LayerJob {
    /// The descriptor's digest as written (how a registry names the blob).
    pub digest: String,
    /// The same as a store digest.
    pub sha256: Digest,
    /// The blob's size.
    pub size: u64,
    /// The blob's compression, from its media type.
    pub compression: Compression,
    /// The sha256 of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// The URLs a non-distributable layer's descriptor names (empty for ordinary layers).
    pub urls: Vec<String>,
}

/// A layer ready to commit.
pub(crate) enum Fetched<'s> {
    /// Record and blob are in the store already.
    Present(LayerVariant),
    /// The blob was in the store, its layer record was not: recomputed locally.
    Local(LayerRecord),
    /// Received and checked, staged but not committed.
    Staged(Box<StagedLayer<'s>>),
}

/// An image whose manifest and config checked out against each other, with the layers to
/// receive.
#[derive(Debug)]
pub(crate) struct ImagePlan {
    /// The image's name or digest, for messages.
    pub reference: String,
    manifest_bytes: Vec<u8>,
    manifest_sha256: Digest,
    config_bytes: Vec<u8>,
    config_sha256: Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerJob>,
}

impl ImagePlan {
    /// Checks `config_bytes` against the config descriptor of `manifest` (whose bytes are
    /// `manifest_bytes`), parses the config, checks its platform and diff_ids, and lists the
    /// layers. Nothing is stored.
    pub(crate) fn new(
        reference: &str,
        manifest_bytes: Vec<u8>,
        manifest: &ImageManifest,
        config_bytes: Vec<u8>,
    ) -> Result<ImagePlan, ExportError> {
        let descriptor = manifest.config();
        let config_type = descriptor.media_type().to_string();
        if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
            return Err(ExportError::UnsupportedMediaType {
                reference: reference.to_owned(),
                media_type: config_type,
            });
        }
        let config_sha256 = store_digest(descriptor.digest())
            .map_err(|reason| invalid(reference, format!("config {reason}")))?;
        let actual = Digest::sha256_of(&config_bytes);
        if actual != config_sha256 || config_bytes.len() as u64 != descriptor.size() {
            return Err(rejected(
                reference,
                &format!("config {config_sha256}"),
                format!(
                    "it has {} bytes and digest {actual}, the manifest says {} bytes",
                    config_bytes.len(),
                    descriptor.size()
                ),
            ));
        }
        let config = parse_config(reference, &config_bytes)?;
        documents::check_platform(reference, &config)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(invalid(
                reference,
                format!(
                    "manifest lists {} layers but config has {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(descriptor, diff_id)| layer_job(reference, descriptor, diff_id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ImagePlan {
            reference: reference.to_owned(),
            manifest_sha256: Digest::sha256_of(&manifest_bytes),
            manifest_bytes,
            config_bytes,
            config_sha256,
            layers,
        })
    }

    /// The sha256 of the manifest: the image digest.
    pub(crate) fn manifest_digest(&self) -> Digest {
        self.manifest_sha256
    }

    /// The layer when the store has it already (record and blob, or just the blob, then
    /// checked against the diff_id): nothing to receive. The descriptor's size is checked
    /// against the stored blob too, so a manifest with a wrong size is refused even when its
    /// layer needs no receiving (it would otherwise be stored and exported as it is).
    pub(crate) fn present<'s>(
        &self,
        store: &'s Store,
        job: &LayerJob,
    ) -> Result<Option<Fetched<'s>>, ExportError> {
        if let Some(record) = store.layer_by_diff_id(&job.diff_id)?
            && let Some(v) = record.variants.iter().find(|v| v.sha256 == job.sha256)
            && crate::layer_tar::has_variant(store, &record, v)?
        {
            self.check_stored_size(job, v.size)?;
            return Ok(Some(Fetched::Present(v.clone())));
        }
        let Some(blob) = store.get(&job.sha256)? else {
            return Ok(None);
        };
        let info = blob.info.clone();
        self.check_stored_size(job, info.size)?;
        let uncompressed = hash_uncompressed(job.compression, blob).map_err(|e| {
            rejected(
                &self.reference,
                &format!("layer {}", job.digest),
                format!("the stored copy does not decompress: {e}"),
            )
        })?;
        self.check_diff_id(job, &uncompressed)?;
        Ok(Some(Fetched::Local(layer_record(
            job.compression,
            &info,
            uncompressed,
        ))))
    }

    /// Refuses a descriptor whose size is not the stored blob's of the same digest.
    fn check_stored_size(&self, job: &LayerJob, stored: u64) -> Result<(), ExportError> {
        if stored == job.size {
            return Ok(());
        }
        Err(rejected(
            &self.reference,
            &format!("layer {}", job.digest),
            format!(
                "the manifest says {} bytes, the blob with that digest has {stored}",
                job.size
            ),
        ))
    }

    /// A staging stream for the layer's bytes.
    pub(crate) fn receiver<'s>(
        &self,
        store: &'s Store,
        job: &LayerJob,
    ) -> Result<LayerIngest<'s>, ExportError> {
        LayerIngest::new(store, job.compression).map_err(|e| self.ingest_error(job, e))
    }

    /// Checks a received layer against its descriptor's size and its diff_id (the digest is
    /// checked when it is committed).
    pub(crate) fn verify<'s>(
        &self,
        job: &LayerJob,
        staged: StagedLayer<'s>,
    ) -> Result<Fetched<'s>, ExportError> {
        if staged.size != job.size {
            return Err(rejected(
                &self.reference,
                &format!("layer {}", job.digest),
                format!("got {} bytes, the manifest says {}", staged.size, job.size),
            ));
        }
        self.check_diff_id(job, &staged.uncompressed)?;
        Ok(Fetched::Staged(Box::new(staged)))
    }

    /// Receives the layer from a reader (an archive's file): staged, then verified.
    pub(crate) fn receive<'s>(
        &self,
        store: &'s Store,
        job: &LayerJob,
        mut reader: impl Read,
    ) -> Result<Fetched<'s>, ExportError> {
        let mut ingest = self.receiver(store, job)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(rejected(
                        &self.reference,
                        &format!("layer {}", job.digest),
                        format!("reading it failed: {e}"),
                    ));
                }
            };
            ingest
                .write(&buf[..n])
                .map_err(|e| self.ingest_error(job, e))?;
        }
        let staged = ingest.finish().map_err(|e| self.ingest_error(job, e))?;
        self.verify(job, staged)
    }

    /// Turns a staging failure into the error that names this image and layer.
    pub(crate) fn ingest_error(&self, job: &LayerJob, e: IngestError) -> ExportError {
        match e {
            IngestError::Store(e) => e.into(),
            IngestError::Stage(source) => ExportError::Io {
                path: "store staging file".into(),
                source,
            },
            IngestError::Decode(e) => rejected(
                &self.reference,
                &format!("layer {}", job.digest),
                format!("it is not a valid {} stream: {e}", job.compression.name()),
            ),
        }
    }

    fn check_diff_id(
        &self,
        job: &LayerJob,
        uncompressed: &UncompressedDigests,
    ) -> Result<(), ExportError> {
        if uncompressed.diff_id != job.diff_id {
            return Err(rejected(
                &self.reference,
                &format!("layer {}", job.digest),
                format!(
                    "its tar has digest {}, the config's diff_id is {}",
                    uncompressed.diff_id, job.diff_id
                ),
            ));
        }
        Ok(())
    }

    /// Stores the config, the layers (`fetched`, one per [`ImagePlan::layers`] entry) and the
    /// manifest, all as they arrived, under `lease`; the caller tags the image, then releases
    /// the lease.
    pub(crate) fn commit(
        &self,
        store: &Store,
        lease: &Lease<'_>,
        fetched: Vec<Fetched<'_>>,
    ) -> Result<StoredImage, ExportError> {
        put_leased(
            store,
            lease,
            BlobKind::Config,
            &self.config_bytes,
            &self.config_sha256,
        )?;
        for (job, fetched) in self.layers.iter().zip(fetched) {
            let record = match fetched {
                Fetched::Present(variant) => {
                    lease.add(&variant.digest)?;
                    continue;
                }
                Fetched::Local(record) => {
                    for v in &record.variants {
                        lease.add(&v.digest)?;
                    }
                    record
                }
                Fetched::Staged(staged) => {
                    let uncompressed = staged.uncompressed;
                    let info =
                        staged
                            .commit(&job.sha256, job.size, lease)
                            .map_err(|e| match e {
                                lamina_store::StoreError::DigestMismatch { .. }
                                | lamina_store::StoreError::SizeMismatch { .. } => rejected(
                                    &self.reference,
                                    &format!("layer {}", job.digest),
                                    e.to_string(),
                                ),
                                other => other.into(),
                            })?;
                    layer_record(job.compression, &info, uncompressed)
                }
            };
            store.put_layer(&record)?;
        }
        let manifest = put_leased(
            store,
            lease,
            BlobKind::Manifest,
            &self.manifest_bytes,
            &self.manifest_sha256,
        )?;
        StoredImage::load(store, &manifest.digest)
    }
}

/// The job for one layer descriptor.
fn layer_job(
    reference: &str,
    descriptor: &Descriptor,
    diff_id: &str,
) -> Result<LayerJob, ExportError> {
    let media_type = descriptor.media_type().to_string();
    let compression =
        layer::layer_compression(&media_type).ok_or_else(|| ExportError::UnsupportedMediaType {
            reference: reference.to_owned(),
            media_type: media_type.clone(),
        })?;
    let urls = descriptor.urls().clone().unwrap_or_default();
    if layer::is_foreign(&media_type) {
        tracing::info!(
            reference,
            layer = %descriptor.digest(),
            ?urls,
            "non-distributable layer: received from this source like any other"
        );
    }
    Ok(LayerJob {
        digest: descriptor.digest().to_string(),
        sha256: store_digest(descriptor.digest())
            .map_err(|reason| invalid(reference, format!("layer {reason}")))?,
        size: descriptor.size(),
        compression,
        diff_id: Digest::parse(diff_id)
            .map_err(|e| invalid(reference, format!("diff_id {diff_id:?}: {e}")))?,
        urls,
    })
}

/// The OCI manifest of an image whose source has none (`docker save`): the config as it is
/// (`config_bytes`), the layers as `(compression, sha256, size)`. Same inputs, same bytes.
pub(crate) fn synthesize_manifest(
    config_bytes: &[u8],
    layers: &[(Compression, Digest, u64)],
) -> Result<(ImageManifest, Vec<u8>), ExportError> {
    let descriptors = layers
        .iter()
        .map(|(compression, sha256, size)| {
            Ok(Descriptor::new(
                crate::image::layer_media_type(*compression),
                *size,
                oci_digest(sha256)?,
            ))
        })
        .collect::<Result<Vec<_>, ExportError>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            oci_digest(&Digest::sha256_of(config_bytes))?,
        ))
        .layers(descriptors)
        .build()
        .map_err(|e| invalid("imported image", format!("cannot build its manifest: {e}")))?;
    let bytes = canonical_json(&manifest, "manifest")?;
    Ok((manifest, bytes))
}

/// `digest` names what was rejected (`config sha256:…`, `layer sha256:…`, `manifest`).
pub(crate) fn rejected(reference: &str, what: &str, reason: String) -> ExportError {
    ExportError::BlobRejected {
        reference: reference.to_owned(),
        what: what.to_owned(),
        reason,
    }
}

fn layer_record(
    compression: Compression,
    info: &BlobInfo,
    uncompressed: UncompressedDigests,
) -> LayerRecord {
    LayerRecord {
        digest: uncompressed.blake3,
        diff_id: uncompressed.diff_id,
        size: uncompressed.size,
        variants: vec![LayerVariant::stored(compression, info)],
        created: std::time::SystemTime::now(),
        tar_split: None,
    }
}

/// Stores `bytes` under `lease` only if they hash to `sha256`.
fn put_leased(
    store: &Store,
    lease: &Lease<'_>,
    kind: BlobKind,
    bytes: &[u8],
    sha256: &Digest,
) -> Result<BlobInfo, ExportError> {
    let mut writer = store.writer(kind)?.lease(lease);
    writer.write_all(bytes).map_err(|source| ExportError::Io {
        path: store.path().to_path_buf(),
        source,
    })?;
    Ok(writer.commit_verified(sha256, Some(bytes.len() as u64))?)
}
