//! Importing: detect the form, store what the archive holds, then tag (only if all of it
//! checked out).

use std::path::Path;

use lamina_store::{Compression, Digest, LayerRecord, Store};
use oci_spec::image::{Arch, ImageConfiguration, Os};

use super::codec::{self, IngestError};
use super::source::Source;
use super::{ImportedImage, docker, oci};
use crate::image::image_name;
use crate::{ExportError, StoredImage};

/// An image read from an archive, with the names the archive gives it.
pub(crate) struct Found {
    pub(crate) names: Vec<String>,
    pub(crate) image: StoredImage,
}

pub(crate) fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ExportError> {
    // A bad name is refused before anything is read or stored.
    let name = name.map(image_name).transpose()?;
    let source = Source::open(path)?;
    let found = if source.has("oci-layout") {
        oci::read(store, &source)?
    } else if source.has("manifest.json") {
        docker::read(store, &source)?
    } else {
        return Err(ExportError::UnknownArchive {
            path: path.to_path_buf(),
        });
    };
    let invalid = |reason: String| ExportError::InvalidArchive {
        path: path.to_path_buf(),
        reason,
    };
    let mut tags = Vec::new();
    match name {
        Some(name) => match found.as_slice() {
            [one] => tags.push((name, one.image.clone())),
            [] => return Err(invalid("it holds no image".to_owned())),
            many => {
                return Err(invalid(format!(
                    "it holds {} images, so one name cannot tag them; import it without a name",
                    many.len()
                )));
            }
        },
        None => {
            if found.is_empty() {
                return Err(invalid("it holds no image".to_owned()));
            }
            // Check every image has a name before tagging any.
            if let Some(unnamed) = found.iter().find(|f| f.names.is_empty()) {
                return Err(ExportError::NoImageName {
                    path: path.to_path_buf(),
                    digest: unnamed.image.digest.to_string(),
                });
            }
            for f in &found {
                for n in &f.names {
                    tags.push((image_name(n)?, f.image.clone()));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(tags.len());
    for (name, image) in tags {
        image.tag(store, &name.to_string(), false)?;
        tracing::debug!(%name, digest = %image.digest, "imported an image");
        out.push(ImportedImage {
            name: name.familiar(),
            image,
        });
    }
    Ok(out)
}

/// Stores the layer in archive file `file` (its descriptor `digest`/`size` when the archive
/// gives them), checking it against `diff_id`. A layer already stored with these exact bytes
/// is not read again. Returns its record and the compression of the archive's blob.
pub(crate) fn layer(
    store: &Store,
    source: &Source,
    file: &str,
    digest: Option<(&Digest, u64)>,
    diff_id: &Digest,
    image: &str,
) -> Result<(LayerRecord, Compression), ExportError> {
    if let (Some((d, _)), Some(record)) = (digest, store.layer_by_diff_id(diff_id)?)
        && let Some(v) = record.variants.iter().find(|v| v.sha256 == *d)
        && store.contains(&v.digest)?
    {
        let compression = v.compression;
        return Ok((record, compression));
    }
    let (reader, _) = source.open_file(file)?;
    let ingested = codec::ingest(
        store,
        reader,
        digest.map(|(d, _)| d),
        digest.map(|(_, s)| s),
        diff_id,
    );
    match ingested {
        Ok(i) => {
            // The store adds this variant beside any it knows (it never replaces one), so
            // the archive's manifest, which names these exact bytes, stays valid.
            let compression = i.record.variants[0].compression;
            Ok((store.put_layer(&i.record)?, compression))
        }
        Err(IngestError::Mismatch(reason)) => Err(ExportError::CorruptLayer {
            image: image.to_owned(),
            layer: digest.map_or_else(|| file.to_owned(), |(d, _)| d.to_string()),
            reason,
        }),
        Err(IngestError::Io(source_err)) => Err(ExportError::CorruptLayer {
            image: image.to_owned(),
            layer: file.to_owned(),
            reason: format!("reading it failed: {source_err}"),
        }),
        Err(IngestError::Export(e)) => Err(e),
    }
}

/// Writes an OCI manifest for layers read from an archive whose own manifest cannot be kept
/// (a docker one). The first layer's compression is used for all; a layer in another
/// compression gets a variant in it.
pub(crate) fn commit_converted(
    store: &Store,
    config: &ImageConfiguration,
    layers: &[(LayerRecord, Compression)],
) -> Result<StoredImage, ExportError> {
    let compression = layers.first().map_or(Compression::None, |(_, c)| *c);
    let mut records = Vec::with_capacity(layers.len());
    for (record, c) in layers {
        if *c == compression {
            records.push(record.clone());
        } else {
            records.push(codec::recompress(store, record, compression)?.0);
        }
    }
    StoredImage::commit(store, config, &records, compression)
}

/// Fails unless `config` is a linux/amd64 image.
pub(crate) fn check_platform(
    config: &ImageConfiguration,
    reference: &str,
) -> Result<(), ExportError> {
    if *config.architecture() == Arch::Amd64 && *config.os() == Os::Linux {
        return Ok(());
    }
    let architecture = if *config.os() == Os::Linux {
        config.architecture().to_string()
    } else {
        format!("{}/{}", config.os(), config.architecture())
    };
    Err(ExportError::NotAmd64 {
        reference: reference.to_owned(),
        architecture,
    })
}

/// Parses a JSON document of the archive, naming the file when it does not parse.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    source: &Source,
    name: &str,
    bytes: &[u8],
) -> Result<T, ExportError> {
    serde_json::from_slice(bytes).map_err(|e| ExportError::InvalidArchive {
        path: source.path().to_path_buf(),
        reason: format!("{name} does not parse: {e}"),
    })
}
