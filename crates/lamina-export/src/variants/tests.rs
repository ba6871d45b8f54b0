use std::io::Read;

use lamina_layer::{LayerOptions, LayerWriter};
use lamina_store::{Digest, LayerRecord, StoreOptions};
use oci_spec::image::{Arch, ImageConfigurationBuilder, Os};

use super::*;
use crate::layer_store::{LayerSource, store_layer};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, store)
}

/// A layer of a few compressible files, stored in `compression`.
fn layer(store: &Store, seed: u8, compression: lamina_layer::Compression) -> LayerRecord {
    let tree = tempfile::tempdir().unwrap();
    for i in 0..4u8 {
        let text = format!("file {i} of layer {seed}\n").repeat(20_000);
        std::fs::write(tree.path().join(format!("f{i}")), text).unwrap();
    }
    let options = LayerOptions::default()
        .mtime_clamp(Some(0))
        .compression(compression);
    store_layer(
        store,
        &LayerWriter::new(options),
        LayerSource::Tree(tree.path()),
        None,
    )
    .unwrap()
}

fn manifest_json(store: &Store, image: &StoredImage) -> Value {
    serde_json::from_slice(&store.read(&image.manifest_blob).unwrap().unwrap()).unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_built_image_goes_out_as_gzip_made_once_and_reused() {
    let (_dir, store) = store();
    let layers = [
        layer(&store, 1, lamina_layer::Compression::Zstd),
        layer(&store, 2, lamina_layer::Compression::Zstd),
    ];
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .build()
        .unwrap();
    let built = StoredImage::commit(&store, &config, &layers, Compression::Zstd).unwrap();

    // Already zstd: the image itself.
    let same = with_compression(&store, &built, Compression::Zstd).unwrap();
    assert_eq!(same.image.digest, built.digest);
    assert_eq!(same.layers_compressed, 0);

    let gzip = with_compression(&store, &built, Compression::Gzip).unwrap();
    assert_eq!(gzip.layers_compressed, 2);
    assert_ne!(gzip.image.digest, built.digest);
    assert_eq!(gzip.image.config_blob, built.config_blob);
    let manifest = manifest_json(&store, &gzip.image);
    for (descriptor, layer) in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&gzip.image.layers)
    {
        assert_eq!(
            descriptor["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(descriptor["digest"], layer.variant.sha256.to_string());
        let bytes = store.read(&layer.variant.digest).unwrap().unwrap();
        assert_eq!(Digest::sha256_of(&gunzip(&bytes)), layer.record.diff_id);
        // Recorded beside the zstd variant.
        let record = store.layer(&layer.record.digest).unwrap().unwrap();
        assert_eq!(record.variants.len(), 2);
    }

    // Again: nothing made, nothing stored, the same manifest.
    let blobs = store.stats().unwrap().blobs;
    let again = with_compression(&store, &built, Compression::Gzip).unwrap();
    assert_eq!(again.layers_compressed, 0);
    assert_eq!(again.image.digest, gzip.image.digest);
    assert_eq!(store.stats().unwrap().blobs, blobs);

    // Plain: the variant is the tar itself.
    let plain = with_compression(&store, &gzip.image, Compression::None).unwrap();
    assert_eq!(plain.layers_compressed, 2);
    for layer in &plain.image.layers {
        assert_eq!(layer.variant.sha256, layer.record.diff_id);
    }
}

#[test]
fn a_docker_manifest_keeps_its_form_and_config_bytes() {
    let (_dir, store) = store();
    let record = layer(&store, 3, lamina_layer::Compression::Gzip);
    let variant = &record.variants[0];
    // Key order and spacing as a client might write them: these bytes must survive.
    let config = format!(
        r#"{{"rootfs": {{"type": "layers", "diff_ids": ["{}"]}}, "os": "linux", "architecture": "amd64"}}"#,
        record.diff_id
    );
    let config_info = store
        .put_bytes(BlobKind::Config, config.as_bytes())
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": config_info.size,
                   "digest": config_info.sha256.to_string()},
        "layers": [{"mediaType": Compression::Gzip.docker_media_type().unwrap(), "size": variant.size,
                    "digest": variant.sha256.to_string(),
                    "annotations": {"note": "kept"}}],
    });
    let info = store
        .put_bytes(BlobKind::Manifest, &serde_json::to_vec(&manifest).unwrap())
        .unwrap();
    let pulled = StoredImage::load(&store, &info.digest).unwrap();

    let gzip = with_compression(&store, &pulled, Compression::Gzip).unwrap();
    assert_eq!(gzip.image.digest, pulled.digest, "already gzip: unchanged");

    let plain = with_compression(&store, &pulled, Compression::None).unwrap();
    let m = manifest_json(&store, &plain.image);
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(
        m["layers"][0]["mediaType"],
        Compression::None.docker_media_type().unwrap()
    );
    assert_eq!(m["layers"][0]["annotations"]["note"], "kept");
    assert_eq!(m["layers"][0]["digest"], record.diff_id.to_string());

    // Docker's format has no zstd layer type: an OCI manifest over the same config bytes.
    let zstd = with_compression(&store, &pulled, Compression::Zstd).unwrap();
    let m = manifest_json(&store, &zstd.image);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(m["config"]["digest"], config_info.sha256.to_string());
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(zstd.image.config_blob, config_info.digest);
    assert_eq!(
        store.read(&zstd.image.config_blob).unwrap().unwrap(),
        config.as_bytes()
    );
}
