//! Importing: detect the form, check and stage every image the archive holds through the
//! shared ingest pipeline, then commit and tag (only if all of it checked out).

use std::path::Path;
use std::time::Duration;

use lamina_store::Store;

use super::source::Source;
use super::{ImportedImage, docker, oci};
use crate::ExportError;
use crate::image::image_name;
use crate::ingest::{Fetched, ImagePlan};

/// How long the import's lease protects committed blobs until the tags land.
const LEASE_TTL: Duration = Duration::from_secs(3600);

/// An image read from an archive and staged, with the names the archive gives it.
pub(crate) struct Found<'s> {
    pub(crate) names: Vec<String>,
    pub(crate) plan: ImagePlan,
    pub(crate) fetched: Vec<Fetched<'s>>,
}

pub(crate) fn import(
    store: &Store,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<ImportedImage>, ExportError> {
    // A bad name is refused before anything is read or stored.
    let name = name.map(image_name).transpose()?;
    let source = Source::open(path)?;
    // `docker save` of Docker 25 and later writes an OCI layout beside manifest.json; the
    // layout has the manifests, so it is preferred.
    let found = if source.has("oci-layout") && source.has("index.json") {
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
    // Which names go to which image, all decided before anything is committed.
    let names: Vec<Vec<lamina_types::Reference>> = match name {
        Some(name) => match found.as_slice() {
            [_] => vec![vec![name]],
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
            if let Some(unnamed) = found.iter().find(|f| f.names.is_empty()) {
                return Err(ExportError::NoImageName {
                    path: path.to_path_buf(),
                    digest: unnamed.plan.manifest_digest().to_string(),
                });
            }
            found
                .iter()
                .map(|f| f.names.iter().map(|n| image_name(n)).collect())
                .collect::<Result<_, _>>()?
        }
    };
    let lease = store.lease(LEASE_TTL)?;
    let mut images = Vec::with_capacity(found.len());
    for f in found {
        images.push(f.plan.commit(store, &lease, f.fetched)?);
    }
    let mut out = Vec::new();
    for (image, names) in images.into_iter().zip(names) {
        for name in names {
            image.tag(store, &name.to_string(), false)?;
            tracing::debug!(%name, digest = %image.digest, "imported an image");
            out.push(ImportedImage {
                name: name.familiar(),
                image: image.clone(),
            });
        }
    }
    lease.release()?;
    Ok(out)
}

/// Receives every layer of `plan` from the archive (`file_of` names each job's file), or
/// takes it from the store when it is there already.
pub(crate) fn receive_layers<'s>(
    store: &'s Store,
    source: &Source,
    plan: &ImagePlan,
    file_of: impl Fn(usize) -> String,
) -> Result<Vec<Fetched<'s>>, ExportError> {
    let mut fetched = Vec::with_capacity(plan.layers.len());
    for (i, job) in plan.layers.iter().enumerate() {
        if let Some(present) = plan.present(store, job)? {
            fetched.push(present);
            continue;
        }
        let file = file_of(i);
        if !source.has(&file) && !job.urls.is_empty() {
            return Err(ExportError::InvalidArchive {
                path: source.path().to_path_buf(),
                reason: format!(
                    "image {}: non-distributable layer {} is not in the archive (its descriptor points to {}); fetch it into the archive, e.g. with skopeo copy, and import again",
                    plan.reference,
                    job.digest,
                    job.urls.join(", ")
                ),
            });
        }
        let (reader, _) = source.open_file(&file)?;
        fetched.push(plan.receive(store, job, reader)?);
    }
    Ok(fetched)
}
