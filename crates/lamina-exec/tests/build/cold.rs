//! The cold path writes each layer once: a RUN's upper directory and a COPY's staged tree
//! become their layers' unpacked copies, and WORKDIR, `--chown` by name and `COPY --from`
//! read those copies in place. What a build unpacks from blobs is counted in its report.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use lamina_exec::sandbox::LayerCache;
use lamina_exec::{BuildOptions, ExecConfig, Executor};
use lamina_image::StoredImage;
use lamina_store::Compression;

use super::{Env, build, can_run};

const STAGES: &str = "FROM scratch AS base\nCOPY rootfs/ /\n\
    RUN echo 'app:x:1234:1235::/home/app:/bin/sh' >> /etc/passwd && \
        echo 'app:x:1235:' >> /etc/group && mkdir -p /srv/out && echo made > /srv/out/a && \
        rm /bin/wc && mkdir /gone && touch /gone/x && rm -r /gone\n\
    WORKDIR /srv/work\n\
    COPY --chown=app:app f.txt ./\n\
    RUN stat -c %u:%g /srv/work/f.txt > /srv/owner && ! test -e /bin/wc && \
        rm -r /srv/out && mkdir /srv/out && echo again > /srv/out/b\n\
    FROM scratch\nCOPY --from=base /srv/ /srv/\n";

#[test]
fn a_cold_build_unpacks_no_layer_it_made() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[("f.txt", "f\n")]);
    let report = build(
        &env.executor(),
        &env.image(&ctx, STAGES),
        BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.layers_unpacked, 0, "{:?}", report.steps);
    assert_eq!(env.read(&report, "/srv/owner").unwrap(), "1234:1235\n");
    // The second RUN replaced /srv/out: an opaque directory in its layer.
    assert_eq!(env.read(&report, "/srv/out/b").unwrap(), "again\n");
    assert_eq!(env.read(&report, "/srv/out/a"), None);
    assert_eq!(env.read(&report, "/srv/work/f.txt").unwrap(), "f\n");

    // A rebuild on a fresh executor hits every step and unpacks nothing either.
    let again = build(
        &env.executor(),
        &env.image(&ctx, STAGES),
        BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.steps.iter().all(|s| s.cached));
    assert_eq!(again.layers_unpacked, 0);
    assert_eq!(again.digest, report.digest);
}

#[test]
fn a_kept_copy_reads_as_its_blob_unpacks() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[("f.txt", "f\n")]);
    let options = BuildOptions {
        target_stage: Some("base".into()),
        ..BuildOptions::default()
    };
    let report =
        build(&env.executor(), &env.image(&ctx, STAGES), options).unwrap_or_else(|e| panic!("{e}"));
    let image = StoredImage::load(&env.store, &report.manifest_blob).unwrap();
    let kept = LayerCache::new(&env.root.join("work")).unwrap();
    let fresh = LayerCache::new(&env.root.join("elsewhere")).unwrap();
    // COPY rootfs, RUN (with whiteouts and an opaque-free delete), WORKDIR, COPY, RUN.
    assert_eq!(image.layers.len(), 5);
    for layer in &image.layers {
        let adopted = kept.dir_of(&layer.record);
        assert!(adopted.is_dir(), "layer {} was kept", layer.record.digest);
        let unpacked = fresh.unpacked(&env.store, &layer.record).unwrap();
        assert_eq!(
            listing(&adopted),
            listing(&unpacked),
            "layer {}",
            layer.record.digest
        );
    }
    assert_eq!(fresh.unpacks(), 5);
}

const TOOLS_AND_APP: &str = "FROM scratch AS tools\nCOPY rootfs/ /\nRUN echo tool > /tool && echo only > /only-in-tools\n\
    FROM scratch\nCOPY rootfs/ /\nCOPY --from=tools /tool /tool\nRUN echo app > /app\n";

/// With the layer cache in the store (the engine's layout) a zstd build's layers are
/// tree-backed, their zstd variants made beside the next steps: the image is byte for byte
/// the one a build that stores zstd blobs in each step makes, and a builder stage's layer
/// gets no compressed variant.
#[test]
fn a_compressed_build_keeps_trees_and_makes_the_image_variants_beside() {
    if !can_run() {
        return;
    }
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    let in_store = Executor::new(
        env.store.clone(),
        ExecConfig::new(env.store.path().join("exec")),
    )
    .unwrap();
    let report = build(
        &in_store,
        &env.image(&ctx, TOOLS_AND_APP),
        BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let image = StoredImage::load(&env.store, &report.manifest_blob).unwrap();
    assert_eq!(image.layers.len(), 3);
    for layer in &image.layers {
        let record = env.store.layer(&layer.record.digest).unwrap().unwrap();
        assert!(record.is_tree_backed(), "layer {}", record.digest);
        assert_eq!(layer.variant.compression, Compression::Zstd);
        assert!(env.store.contains(&layer.variant.digest).unwrap());
    }
    // The tools stage's RUN layer: named by no image, so never compressed.
    let step = report.steps.iter().find(|s| s.text.contains("echo tool"));
    let tool = step.and_then(|s| s.layer).unwrap();
    assert!(image.layers.iter().all(|l| l.record.digest != tool));
    let record = env.store.layer(&tool).unwrap().unwrap();
    assert!(record.is_tree_backed());
    assert!(record.variant_in(Compression::Zstd).is_none(), "{record:?}");

    // The same build where the store keeps no trees stores zstd blobs in its steps.
    let elsewhere = Env::new();
    let ctx = elsewhere.context("ctx", &[]);
    let direct = build(
        &elsewhere.executor(),
        &elsewhere.image(&ctx, TOOLS_AND_APP),
        BuildOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(direct.digest, report.digest);
    let direct_layer = elsewhere.store.layer(&tool).unwrap().unwrap();
    assert!(!direct_layer.is_tree_backed());
}

/// Every entry below `dir` with what a later step can see of it.
fn listing(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        let what = if kind.is_dir() {
            walk(root, &path, out);
            "dir".to_string()
        } else if kind.is_symlink() {
            format!("link {}", std::fs::read_link(&path).unwrap().display())
        } else if kind.is_char_device() {
            format!("char {}", meta.rdev())
        } else {
            format!("file {:?}", std::fs::read(&path).unwrap())
        };
        let mtime = if kind.is_symlink() {
            (0, 0)
        } else {
            (meta.mtime(), meta.mtime_nsec())
        };
        let mut opaque = [0u8; 1];
        let opaque = rustix::fs::lgetxattr(&path, "trusted.overlay.opaque", &mut opaque)
            .is_ok_and(|n| n == 1 && opaque[0] == b'y');
        out.insert(
            path.strip_prefix(root).unwrap().display().to_string(),
            format!(
                "{what} mode={:o} owner={}:{} mtime={mtime:?} opaque={opaque}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ),
        );
    }
}
