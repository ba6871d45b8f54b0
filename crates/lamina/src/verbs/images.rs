//! Named images: list, inspect, history, tag, remove, import and export.

use std::path::Path;
use std::time::SystemTime;

use lamina_exec::BuildState;
use lamina_export::archive::{ExportReport, ExportTarget, ImportedImage};
use lamina_export::{ArchiveFormat, StoredImage};
use lamina_image::image::{display_name, find_named, image_name, normalize_name};
use lamina_store::{Compression, Digest, ImageState};

use crate::{Engine, Error};

/// One named image, as `lamina image ls` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The short name (`busybox:1`), as `docker images` shows it.
    pub name: String,
    /// The full name the store keys it by (`docker.io/library/busybox:1`).
    pub reference: String,
    /// Building, failed, incomplete or active.
    pub state: ImageStatus,
    /// The image digest (sha256 of the manifest); the manifest's store address when the
    /// manifest cannot be read.
    pub digest: Digest,
    /// Bytes of its layers as the manifest gives them (those of its stored variants).
    pub size: u64,
    /// When the name was first given.
    pub created: SystemTime,
    /// When the name last changed.
    pub updated: SystemTime,
    /// When the image was last used (built on, exported, pushed).
    pub last_used: SystemTime,
    /// Pinned against eviction (every named image is).
    pub pinned: bool,
}

/// The state of a named image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    /// A build that will give it this name is running.
    Building,
    /// The last build meant to give it this name failed; the name keeps the previous image.
    BuildFailed,
    /// Some of its blobs are missing.
    Incomplete,
    /// Complete and usable.
    Active,
}

impl ImageStatus {
    /// The name `lamina image ls` shows.
    pub fn name(self) -> &'static str {
        match self {
            ImageStatus::Building => "building",
            ImageStatus::BuildFailed => "build_failed",
            ImageStatus::Incomplete => "incomplete",
            ImageStatus::Active => "active",
        }
    }
}

/// An image with its manifest and config exactly as stored.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    /// The short name.
    pub name: String,
    /// The full name.
    pub reference: String,
    /// The image, parsed.
    pub image: StoredImage,
    /// The manifest bytes (their sha256 is the image digest).
    pub manifest: Vec<u8>,
    /// The config bytes (their sha256 is the config digest).
    pub config: Vec<u8>,
}

/// One entry of an image's history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The step that made it, as BuildKit writes it.
    pub created_by: String,
    /// When, as the config records it (RFC 3339).
    pub created: Option<String>,
    /// The layer's stored size; `None` for a step without a layer, or whose layer the
    /// image lacks.
    pub size: Option<u64>,
    /// The config marks the step as making no layer.
    pub empty_layer: bool,
}

/// What [`Engine::tag`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The image digest.
    pub digest: Digest,
    /// The new name, short form.
    pub name: String,
}

/// What [`Engine::remove`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The name, short form.
    pub name: String,
    /// The manifest's store address the name pointed at.
    pub manifest: Digest,
}

/// One image [`Engine::import`] stored.
#[derive(Debug)]
pub struct Imported {
    /// The name it was given (short form) and the image.
    pub image: ImportedImage,
    /// Why its layers could not be unpacked ahead of builds, if they could not (the image
    /// is stored either way; the first build on it unpacks them).
    pub unpack_error: Option<Error>,
}

/// Options of [`Engine::export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// OCI layout directory, oci-archive or docker-archive.
    pub format: ArchiveFormat,
    /// Layer compression in the output (stored variants reused, a missing one made once).
    pub compression: Compression,
    /// Write through a symlink, device or FIFO at the output path instead of refusing it.
    pub force: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            format: ArchiveFormat::OciArchive,
            compression: Compression::Gzip,
            force: false,
        }
    }
}

impl Engine {
    /// The named images, as `lamina image ls` lists them.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let images = engine.list()?;
    /// assert_eq!(images[0].name, "app:1");
    /// assert_eq!(images[0].state, lamina::ImageStatus::Active);
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self) -> Result<Vec<ImageSummary>, Error> {
        self.store
            .images()?
            .into_iter()
            .map(|record| {
                // The manifest alone: a listing looks up no config or layer.
                let summary = match StoredImage::summary(&self.store, &record.manifest) {
                    Ok(summary) => summary,
                    // The index failing (a lock, a corrupt record) fails the listing; a
                    // manifest blob missing or unreadable shows as such.
                    Err(lamina_image::ImageError::Store(e)) if !blob_problem(&e) => {
                        return Err(e.into());
                    }
                    Err(_) => None,
                };
                let (digest, size, last_used) = match summary {
                    Some(s) => (s.digest, s.size, s.last_used.max(record.updated)),
                    None => {
                        let blob = self.store.stat(&record.manifest)?;
                        let used = blob.map_or(record.updated, |b| b.last_used.max(record.updated));
                        (record.manifest, 0, used)
                    }
                };
                let state = match self.executor.build_state(&record.name) {
                    Some(BuildState::Building) => ImageStatus::Building,
                    Some(BuildState::BuildFailed { .. }) => ImageStatus::BuildFailed,
                    _ if record.state == ImageState::Incomplete => ImageStatus::Incomplete,
                    _ => ImageStatus::Active,
                };
                Ok(ImageSummary {
                    name: display_name(&record.name),
                    reference: record.name,
                    state,
                    digest,
                    size,
                    created: record.created,
                    updated: record.updated,
                    last_used,
                    pinned: record.pinned,
                })
            })
            .collect()
    }

    /// The image named `name`, or [`Error::ImageNotFound`].
    pub fn require_image(&self, name: &str) -> Result<StoredImage, Error> {
        self.image(name)?.ok_or_else(|| Error::ImageNotFound {
            name: display_name(&normalize_name(name)),
        })
    }

    /// The image named `name` with its manifest and config bytes as stored.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let details = engine.inspect("app:1")?;
    /// assert_eq!(details.reference, "docker.io/library/app:1");
    /// assert!(details.config.starts_with(b"{"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn inspect(&self, name: &str) -> Result<ImageDetails, Error> {
        let reference = image_name(name)?;
        let image = self.require_image(name)?;
        let read = |blob: &Digest, what: &'static str| -> Result<Vec<u8>, Error> {
            self.store.read(blob)?.ok_or_else(|| Error::BlobMissing {
                what,
                image: reference.familiar(),
                blob: *blob,
            })
        };
        Ok(ImageDetails {
            name: reference.familiar(),
            reference: reference.to_string(),
            manifest: read(&image.manifest_blob, "manifest")?,
            config: read(&image.config_blob, "config")?,
            image,
        })
    }

    /// The steps that made the image named `name`, newest first, with their layer sizes.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let history = engine.history("app:1")?;
    /// // Newest first: the sandbox default command (no layer), then the COPY.
    /// assert_eq!(history[0].size, None);
    /// assert!(history[1].created_by.starts_with("COPY"));
    /// assert!(history[1].size.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, Error> {
        let image = self.require_image(name)?;
        let mut layers = image.layers.iter().rev();
        Ok(image
            .config
            .history()
            .iter()
            .flatten()
            .rev()
            .map(|entry| {
                let empty_layer = entry.empty_layer().unwrap_or(false);
                HistoryEntry {
                    created_by: entry.created_by().clone().unwrap_or_default(),
                    created: entry.created().clone(),
                    size: if empty_layer {
                        None
                    } else {
                        layers.next().map(|l| l.variant.size)
                    },
                    empty_layer,
                }
            })
            .collect())
    }

    /// Gives the image named `source` the name `target` as well (replacing what `target`
    /// named). An invalid `target` changes nothing.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let tagged = engine.tag("app:1", "registry.example/app:v1")?;
    /// assert_eq!(tagged.name, "registry.example/app:v1");
    /// assert_eq!(engine.require_image("registry.example/app:v1")?.digest, tagged.digest);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag(&self, source: &str, target: &str) -> Result<Tagged, Error> {
        let target = image_name(target)?;
        let image = self.require_image(source)?;
        image.tag(&self.store, &target.to_string(), true)?;
        Ok(Tagged {
            digest: image.digest,
            name: target.familiar(),
        })
    }

    /// Removes the name `name`; its layers go at the next [`Engine::gc`] unless something
    /// else needs them.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let removed = engine.remove("app:1")?;
    /// assert_eq!(removed.name, "app:1");
    /// assert!(engine.image("app:1")?.is_none());
    /// assert!(matches!(engine.remove("app:1"), Err(lamina::Error::ImageNotFound { .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove(&self, name: &str) -> Result<Removed, Error> {
        let found = match image_name(name) {
            Ok(reference) => find_named(&self.store, &reference)?,
            // An invalid name an older version stored as it was typed can still go.
            Err(invalid) => match self.store.image(name)? {
                Some(record) => Some(record),
                None => return Err(invalid.into()),
            },
        };
        let Some(record) = found else {
            return Err(Error::ImageNotFound {
                name: display_name(&normalize_name(name)),
            });
        };
        // Named images are pinned against eviction; removing the name unpins it.
        self.store.set_pinned(&record.name, false)?;
        let record = self.store.remove_image(&record.name)?;
        Ok(Removed {
            name: display_name(&record.name),
            manifest: record.manifest,
        })
    }

    /// Stores and names the images of an OCI layout directory, oci-archive or
    /// docker-archive at `path` (named `name`, else as the archive names them), and unpacks
    /// their layers ahead of builds.
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// let archive = dir.path().join("app.tar");
    /// engine.export("app:1", &archive, &lamina::ExportOptions::default())?;
    /// let imported = engine.import(&archive, Some("copy:1"))?;
    /// assert_eq!(imported[0].image.name, "copy:1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<Imported>, Error> {
        let images = lamina_export::archive::import(&self.store, path, name)?;
        Ok(images
            .into_iter()
            .map(|image| {
                let unpack_error = self.unpack_layers(&image.image).err();
                Imported {
                    image,
                    unpack_error,
                }
            })
            .collect())
    }

    /// Writes the image named `name` to `output` (a file written atomically, a directory for
    /// [`ArchiveFormat::OciDir`], or `-` for standard output).
    ///
    /// ```
    /// # fn main() -> Result<(), lamina::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    /// # let engine = lamina::Engine::open(dir.path().join("store"))?;
    /// # let image = lamina::spec::Image::scratch()?
    /// #     .context_dir(dir.path())?
    /// #     .add_local_file("hello.txt", "/hello.txt")?;
    /// # let tag = Some("app:1".to_string());
    /// # engine.build_blocking(&image, &lamina::BuildOptions { tag, ..Default::default() })?;
    /// use lamina::{ExportOptions, export::ArchiveFormat};
    ///
    /// let options = ExportOptions { format: ArchiveFormat::DockerArchive, ..Default::default() };
    /// let report = engine.export("app:1", &dir.path().join("app.tar"), &options)?;
    /// assert!(report.bytes > 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn export(
        &self,
        name: &str,
        output: &Path,
        options: &ExportOptions,
    ) -> Result<ExportReport, Error> {
        let image = self.require_image(name)?;
        let target = ExportTarget::parse(output, options.force);
        Ok(lamina_export::archive::export_to(
            &self.store,
            &image,
            name,
            options.format,
            options.compression,
            &target,
        )?)
    }
}

/// A store error about one blob's file (gone, or not what the index says), not the index.
fn blob_problem(error: &lamina_store::StoreError) -> bool {
    matches!(
        error,
        lamina_store::StoreError::MissingBlob { .. } | lamina_store::StoreError::CorruptBlob { .. }
    )
}
