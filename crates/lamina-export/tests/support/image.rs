//! Small images built straight into a store: layers through `LayerWriter`, then
//! `StoredImage::commit`.

use std::path::Path;

use lamina_export::StoredImage;
use lamina_export::layer_store::LayerSource;
use lamina_layer::{LayerOptions, LayerWriter};
use lamina_store::{Compression, LayerRecord, Store, StoreOptions};
use oci_spec::image::{Arch, ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder, Os};

/// Opens a fresh store in `dir`.
pub fn open_store(dir: &Path) -> Store {
    Store::open(dir.join("store"), StoreOptions::default()).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so layers differ between seeds.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `files` files of `size` bytes under `root`.
pub fn fill_tree(root: &Path, seed: u64, files: usize, size: usize) {
    std::fs::create_dir_all(root.join("data")).unwrap();
    for i in 0..files {
        let name = root.join("data").join(format!("f{seed}-{i}"));
        std::fs::write(name, noise(seed * 1000 + i as u64, size)).unwrap();
    }
    std::fs::write(root.join("seed"), format!("{seed}\n")).unwrap();
}

/// Writes the tree at `root` as a layer into the store.
pub fn store_layer(
    store: &Store,
    root: &Path,
    compression: lamina_layer::Compression,
) -> LayerRecord {
    let writer = LayerWriter::new(
        LayerOptions::default()
            .mtime_clamp(Some(0))
            .compression(compression),
    );
    lamina_export::layer_store::store_layer(store, &writer, LayerSource::Tree(root), None).unwrap()
}

/// An amd64 linux config.
pub fn config(label: &str) -> ImageConfiguration {
    config_for(Arch::Amd64, label)
}

/// A linux config for `arch`.
pub fn config_for(arch: Arch, label: &str) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .architecture(arch)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .env(vec!["PATH=/bin".to_owned()])
                .labels(
                    [("test".to_owned(), label.to_owned())]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// An image of `layers` layers (each `files` files of `size` bytes), gzip-compressed.
pub fn build(store: &Store, seed: u64, layers: usize, files: usize, size: usize) -> StoredImage {
    build_with(
        store,
        seed,
        layers,
        files,
        size,
        lamina_layer::Compression::Gzip,
        &config("x"),
    )
}

/// As [`build`], with the compression and config chosen.
pub fn build_with(
    store: &Store,
    seed: u64,
    layers: usize,
    files: usize,
    size: usize,
    compression: lamina_layer::Compression,
    config: &ImageConfiguration,
) -> StoredImage {
    let mut records = Vec::new();
    for l in 0..layers {
        let tree = tempfile::tempdir().unwrap();
        fill_tree(tree.path(), seed * 100 + l as u64, files, size);
        records.push(store_layer(store, tree.path(), compression));
    }
    let store_compression = match compression {
        lamina_layer::Compression::Zstd => Compression::Zstd,
        lamina_layer::Compression::None => Compression::None,
        _ => Compression::Gzip,
    };
    StoredImage::commit(store, config, &records, store_compression).unwrap()
}
