//! The build tests' environment, shared by the `build` and `docker_output` test binaries
//! (each includes this file with `#[path]`; a binary that leaves a helper unused is fine).
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lamina_exec::{BuildOptions, BuildReport, ExecConfig, Executor};
use lamina_image::StoredImage;
use lamina_spec::{Context, Dockerfile, Image};
use lamina_store::{Compression, Store, StoreOptions};

/// A store, a work directory and context directories, all temporary.
pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub store: Arc<Store>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let store = Store::open(root.join("store"), StoreOptions::default()).unwrap();
        Env {
            _dir: dir,
            root,
            store: Arc::new(store),
        }
    }

    /// A fresh executor over the shared store and work directory (like another process).
    pub fn executor(&self) -> Executor {
        Executor::new(self.store.clone(), ExecConfig::new(self.root.join("work"))).unwrap()
    }

    /// A context directory `name` with a busybox rootfs and `files`.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.root.join(name);
        busybox_rootfs(&ctx.join("rootfs"));
        for (path, content) in files {
            let path = ctx.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        ctx
    }

    pub fn image(&self, ctx: &Path, dockerfile: &str) -> Image {
        Image::from_parts(Dockerfile::parse(dockerfile).unwrap(), Context::new(ctx))
    }

    /// Builds `image` with a fresh executor; panics on failure.
    pub fn build(&self, image: &Image, options: BuildOptions) -> BuildReport {
        self.executor().build_blocking(image, &options).unwrap()
    }

    /// Reads `path` from the image's merged filesystem.
    pub fn read(&self, report: &BuildReport, path: &str) -> Option<String> {
        let rootfs = self.rootfs(report);
        std::fs::read_to_string(rootfs.path().join(path.trim_start_matches('/'))).ok()
    }

    /// The image's merged filesystem, unpacked.
    pub fn rootfs(&self, report: &BuildReport) -> tempfile::TempDir {
        let image = StoredImage::load(&self.store, &report.manifest_blob).unwrap();
        let out = tempfile::tempdir().unwrap();
        for layer in &image.layers {
            let blob = self.store.get(&layer.variant.digest).unwrap().unwrap();
            lamina_layer::Unpacker::default()
                .unpack(blob.into_file(), out.path())
                .unwrap();
        }
        out
    }

    /// The final config as stored (raw JSON).
    pub fn config(&self, report: &BuildReport) -> serde_json::Value {
        let image = StoredImage::load(&self.store, &report.manifest_blob).unwrap();
        let bytes = self.store.read(&image.config_blob).unwrap().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The entries of the image's last layer: (path, tar entry type, link target).
    pub fn last_layer_entries(
        &self,
        report: &BuildReport,
    ) -> Vec<(String, tar::EntryType, String)> {
        let image = StoredImage::load(&self.store, &report.manifest_blob).unwrap();
        let layer = image.layers.last().unwrap();
        assert_eq!(layer.variant.compression, Compression::Zstd);
        let blob = self.store.get(&layer.variant.digest).unwrap().unwrap();
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(blob.into_file())
            .unwrap()
            .read_to_end(&mut raw)
            .unwrap();
        let mut archive = tar::Archive::new(raw.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (path, e.header().entry_type(), link)
            })
            .collect()
    }
}

/// Debian's static busybox with the applets the tests use, and a 1777 /tmp.
fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "cat", "echo", "ls", "mkdir", "touch", "sleep", "true", "false", "id", "rm", "wc",
        "stat",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}
