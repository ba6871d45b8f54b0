//! A layer's variant in another compression, made once and recorded beside the others
//! (docs/format.md, "What a stored layer is"). lamina-export's `with_compression` converts
//! whole images with it; a build whose hits name layers of another compression commits
//! through [`ensure_variant`].

use std::sync::atomic::AtomicBool;

use lamina_store::{Compression, Store};

use crate::ImageError;

/// `layer` as recorded in the store with a stored variant in `compression`: the record as
/// it is when it has one, else after making it from another variant (checked against the
/// diff_id) and recording it. A build whose cache hits name layers stored in another
/// compression commits its image through this.
pub fn ensure_variant(
    store: &Store,
    layer: &lamina_store::LayerRecord,
    compression: Compression,
) -> Result<lamina_store::LayerRecord, ImageError> {
    ensure(store, layer, compression, true, None)
}

/// [`ensure_variant`] for the variant an image a build commits names: one made here is kept
/// as long as its layer, not dropped under a size budget as a push's or export's may be
/// (an untagged image, kept by its cache entries only, must load as it was stored). Once
/// `stop` is set, making it ends early with an error.
pub fn ensure_named_variant(
    store: &Store,
    layer: &lamina_store::LayerRecord,
    compression: Compression,
    stop: Option<&AtomicBool>,
) -> Result<lamina_store::LayerRecord, ImageError> {
    ensure(store, layer, compression, false, stop)
}

fn ensure(
    store: &Store,
    layer: &lamina_store::LayerRecord,
    compression: Compression,
    reproducible: bool,
    stop: Option<&AtomicBool>,
) -> Result<lamina_store::LayerRecord, ImageError> {
    let record = store.layer(&layer.digest)?.unwrap_or_else(|| layer.clone());
    for variant in record
        .variants
        .iter()
        .filter(|v| v.compression == compression)
    {
        if crate::layer_tar::has_variant(store, &record, variant)? {
            return Ok(record);
        }
    }
    let (record, _) = crate::codec::recompress_as(store, &record, compression, reproducible, stop)?;
    Ok(record)
}
