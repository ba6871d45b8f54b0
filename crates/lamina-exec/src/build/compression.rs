//! The compression of a build's new layers (docs/format.md, "What a stored layer is"): a
//! manifest names one compression for all its layers, so it follows the bases.

use lamina_image::cache_records::RemoteCache;
use lamina_store::{Compression, LayerRecord};

use super::plan::{Base, Plan};
use super::{BuildOptions, Inner};

/// The configured compression when every base layer has a variant in it (a build FROM
/// scratch, or on images built so). Otherwise none where the store keeps trees (as root, of
/// the host or of a user namespace; without root the layer cache cannot be filled): a base
/// unpacked here is tree-backed, its tar served from the tree, as Docker keeps layers
/// uncompressed until a push, so a cold build compresses nothing; its base layers without a
/// plain variant are unpacked first. Not decided by whether the bases have plain variants
/// yet: that changes when they are unpacked, and a rebuild must name the same layers. Else
/// (no trees, or a registry cache, whose image names its layers as the registry holds them,
/// compressed) what the bases have.
pub(super) fn choose(
    inner: &Inner,
    plan: &Plan,
    options: &BuildOptions,
    remote_sources: &[Option<RemoteCache>],
) -> Compression {
    let wanted = inner.config.layer_compression;
    let has =
        |c: Compression| base_layers(plan).all(|l| l.variants.iter().any(|v| v.compression == c));
    if has(wanted) {
        return wanted;
    }
    let remote = !remote_sources.is_empty() || !options.cache_to.is_empty();
    let holds_trees = || {
        rustix::process::geteuid().is_root()
            && inner
                .layer_cache()
                .is_ok_and(|c| c.holds_trees_of(&inner.store))
    };
    if !remote && holds_trees() {
        back_bases_by_trees(inner, plan);
        return Compression::None;
    }
    [Compression::Gzip, Compression::Zstd, Compression::None]
        .into_iter()
        .find(|c| has(*c))
        .unwrap_or(wanted)
}

fn base_layers(plan: &Plan) -> impl Iterator<Item = &LayerRecord> {
    plan.bases
        .iter()
        .flat_map(|base| match base {
            Base::Image(image) => image.layers.as_slice(),
            _ => &[],
        })
        .map(|l| &l.record)
}

/// Unpacks the base layers that have no plain variant yet (received compressed, not unpacked
/// at pull or import, e.g. a base this build fetched), which makes them tree-backed, as the
/// first RUN on them would. Best effort: a layer left without one (its tar cannot be backed
/// by its tree, or it was unpacked before as a copy) gets a plain blob at the commit.
fn back_bases_by_trees(inner: &Inner, plan: &Plan) {
    for layer in base_layers(plan).filter(|l| l.variant_in(Compression::None).is_none()) {
        let unpacked = inner
            .layer_cache()
            .and_then(|cache| cache.unpacked(&inner.store, layer).map(drop));
        if let Err(e) = unpacked {
            tracing::debug!("base layer {} left for the commit: {e}", layer.digest);
        }
    }
}
