//! Helpers of the archive tests: a store with a two-layer image, tree snapshots, tools.

use std::collections::BTreeMap;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use lamina_export::StoredImage;
use lamina_export::layer_store::LayerSource;
use lamina_layer::{LayerOptions, LayerWriter, Unpacker};
use lamina_store::{Compression, LayerRecord, Store, StoreOptions};
use oci_spec::image::{Arch, ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder, Os};
use tempfile::TempDir;

pub const NAME: &str = "test/app:1.0";

pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install the Debian package): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(program: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run(program, args)).unwrap()
}

pub fn open_store(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Streams a layer made from `source` into the store.
pub fn store_layer(
    store: &Store,
    c: lamina_layer::Compression,
    source: LayerSource<'_>,
) -> LayerRecord {
    let writer = LayerWriter::new(LayerOptions::default().compression(c).mtime_clamp(Some(0)));
    lamina_export::layer_store::store_layer(store, &writer, source, None).unwrap()
}

pub fn write(path: &Path, data: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Two trees: `base`, and `upper` = base with a file changed, one removed, one added.
pub fn trees() -> (TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let upper = dir.path().join("upper");
    for root in [&base, &upper] {
        write(&root.join("etc/motd"), "hello\n", 0o644);
        write(&root.join("bin/tool"), "#!/bin/sh\necho hi\n", 0o755);
        std::fs::create_dir_all(root.join("usr")).unwrap();
        symlink("../bin/tool", root.join("usr/tool")).unwrap();
    }
    write(&base.join("etc/old"), "remove me\n", 0o644);
    write(&upper.join("etc/motd"), "changed\n", 0o644);
    write(&upper.join("data/new.txt"), "new\n", 0o600);
    (dir, base, upper)
}

pub fn config(arch: Arch) -> ImageConfiguration {
    ImageConfigurationBuilder::default()
        .architecture(arch)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .cmd(vec!["/bin/tool".to_owned()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

pub struct Fixture {
    pub dir: TempDir,
    pub store: Store,
    pub image: StoredImage,
    /// What the image's filesystem holds.
    pub expected: BTreeMap<String, String>,
    _trees: TempDir,
}

/// A store with a two-layer zstd image tagged [`NAME`].
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("store"));
    let (trees, base, upper) = trees();
    let zstd = lamina_layer::Compression::Zstd;
    let l1 = store_layer(&store, zstd, LayerSource::Tree(&base));
    let l2 = store_layer(
        &store,
        zstd,
        LayerSource::Diff {
            lower: &base,
            upper: &upper,
        },
    );
    let image =
        StoredImage::commit(&store, &config(Arch::Amd64), &[l1, l2], Compression::Zstd).unwrap();
    image.tag(&store, NAME, false).unwrap();
    Fixture {
        expected: snapshot(&upper),
        dir,
        store,
        image,
        _trees: trees,
    }
}

/// A tree as `path → kind:mode:content`, to compare trees made by different tools.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let value = if meta.is_symlink() {
                format!("l:{}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                walk(root, &path, out);
                "d".to_owned()
            } else {
                format!("f:{mode:o}:{}", std::fs::read_to_string(&path).unwrap())
            };
            out.insert(rel, value);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Applies an image's layers (as stored) to a fresh directory.
pub fn unpack(store: &Store, image: &StoredImage) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    for layer in &image.layers {
        let blob = store.get(&layer.variant.digest).unwrap().unwrap();
        Unpacker::default().unpack(blob, dir.path()).unwrap();
    }
    snapshot(dir.path())
}

/// `umoci unpack` of `image` (`DIR:ref`), as a snapshot of the rootfs.
pub fn umoci_unpack(image: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    run("umoci", &["unpack", "--image", image, path_str(&bundle)]);
    snapshot(&bundle.join("rootfs"))
}

pub fn layer_digests(image: &StoredImage) -> Vec<String> {
    image
        .layers
        .iter()
        .map(|l| l.variant.sha256.to_string())
        .collect()
}

pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}
