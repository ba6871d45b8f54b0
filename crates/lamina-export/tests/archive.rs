//! Archives against the real tools: images exported by Lamina are read by `skopeo` and
//! `umoci`, and archives those tools write are imported back. The Debian packages `skopeo`
//! and `umoci` must be installed (CI installs them).

#[path = "archive/support.rs"]
mod support;

use lamina_export::archive::{self, ArchiveFormat};
use lamina_export::{ExportError, StoredImage};
use lamina_layer::{LayerOptions, LayerWriter};
use lamina_store::{Compression, LayerRecord, Store};
use oci_spec::image::Arch;
use support::*;
#[test]
fn oci_dir_is_read_by_skopeo_and_umoci() {
    let f = fixture();
    for compression in [Compression::Zstd, Compression::Gzip] {
        let out = f.dir.path().join(format!("oci-{compression:?}"));
        let report = archive::export(
            &f.store,
            &f.image,
            NAME,
            ArchiveFormat::OciDir,
            compression,
            &out,
        )
        .unwrap();
        assert_eq!(report.compression, compression);
        let layout = format!("oci:{}:1.0", path_str(&out));
        let inspect = json("skopeo", &["inspect", &layout]);
        assert_eq!(inspect["Digest"], report.image.digest.to_string());
        assert_eq!(strings(&inspect["Layers"]), layer_digests(&report.image));
        assert_eq!(inspect["Architecture"], "amd64");

        let copy = f.dir.path().join(format!("copy-{compression:?}"));
        run(
            "skopeo",
            &["copy", &layout, &format!("oci:{}:copied", path_str(&copy))],
        );
        let copied = json(
            "skopeo",
            &["inspect", &format!("oci:{}:copied", path_str(&copy))],
        );
        assert_eq!(strings(&copied["Layers"]).len(), 2);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1.0"
        );
    }
    // umoci 0.4 reads gzip layers (not zstd).
    let out = f.dir.path().join("oci-Gzip");
    assert_eq!(umoci_unpack(&format!("{}:1.0", path_str(&out))), f.expected);
}

#[test]
fn oci_archive_is_read_by_skopeo() {
    let f = fixture();
    let out = f.dir.path().join("image.oci.tar");
    let report = archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciArchive,
        Compression::Zstd,
        &out,
    )
    .unwrap();
    // Zstd was stored: the image goes out as it is, nothing compressed.
    assert_eq!(report.image.digest, f.image.digest);
    assert_eq!(report.layers_compressed, 0);
    let reference = format!("oci-archive:{}", path_str(&out));
    let inspect = json("skopeo", &["inspect", &reference]);
    assert_eq!(inspect["Digest"], f.image.digest.to_string());
    assert_eq!(strings(&inspect["Layers"]), layer_digests(&f.image));
    let copy = f.dir.path().join("copy");
    run(
        "skopeo",
        &["copy", &reference, &format!("oci:{}:c", path_str(&copy))],
    );
    let copied = json(
        "skopeo",
        &["inspect", &format!("oci:{}:c", path_str(&copy))],
    );
    assert_eq!(copied["Digest"], f.image.digest.to_string());
}

#[test]
fn docker_archive_is_read_by_skopeo_and_gets_gzip_for_zstd() {
    let f = fixture();
    let out = f.dir.path().join("image.docker.tar");
    let report = archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::DockerArchive,
        Compression::Zstd,
        &out,
    )
    .unwrap();
    assert_eq!(report.compression, Compression::Gzip);
    assert_eq!(report.layers_compressed, 2);
    let reference = format!("docker-archive:{}", path_str(&out));
    let inspect = json("skopeo", &["inspect", &reference]);
    let config = json("skopeo", &["inspect", "--config", &reference]);
    let diff_ids: Vec<String> = f
        .image
        .layers
        .iter()
        .map(|l| l.record.diff_id.to_string())
        .collect();
    // skopeo names docker-archive layers by their uncompressed digests.
    assert_eq!(strings(&inspect["Layers"]), diff_ids);
    assert_eq!(strings(&config["rootfs"]["diff_ids"]), diff_ids);
    // The image is found by the name in manifest.json's RepoTags.
    let tagged = json("skopeo", &["inspect", &format!("{reference}:{NAME}")]);
    assert_eq!(tagged["Layers"], inspect["Layers"]);

    let copy = f.dir.path().join("copy");
    run(
        "skopeo",
        &["copy", &reference, &format!("oci:{}:c", path_str(&copy))],
    );
    assert_eq!(umoci_unpack(&format!("{}:c", path_str(&copy))), f.expected);
}

#[test]
fn archives_written_by_skopeo_import_to_the_same_tree() {
    let f = fixture();
    let layout = f.dir.path().join("layout");
    archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciDir,
        Compression::Gzip,
        &layout,
    )
    .unwrap();
    let source = format!("oci:{}:1.0", path_str(&layout));
    let docker = f.dir.path().join("skopeo.docker.tar");
    let oci = f.dir.path().join("skopeo.oci.tar");
    run(
        "skopeo",
        &[
            "copy",
            &source,
            &format!("docker-archive:{}:other/name:2", path_str(&docker)),
        ],
    );
    run(
        "skopeo",
        &[
            "copy",
            &source,
            &format!("oci-archive:{}:v2", path_str(&oci)),
        ],
    );

    // skopeo writes docker-archive tags fully qualified; imported names are shown short.
    for (archive_path, name) in [(&docker, "other/name:2"), (&oci, "v2:latest")] {
        let fresh = tempfile::tempdir().unwrap();
        let store = open_store(fresh.path());
        let imported = archive::import(&store, archive_path, None).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].name, name);
        let loaded = StoredImage::load_named(&store, name).unwrap().unwrap();
        assert_eq!(loaded.digest, imported[0].image.digest);
        assert_eq!(
            unpack(&store, &loaded),
            f.expected,
            "{}",
            archive_path.display()
        );
        let diff_ids: Vec<_> = loaded.layers.iter().map(|l| l.record.diff_id).collect();
        let want: Vec<_> = f.image.layers.iter().map(|l| l.record.diff_id).collect();
        assert_eq!(diff_ids, want);
        assert!(store.fsck(Default::default()).unwrap().is_clean());
    }
    // An OCI archive keeps its manifest: same digest as skopeo reports.
    let fresh = tempfile::tempdir().unwrap();
    let store = open_store(fresh.path());
    let imported = archive::import(&store, &oci, Some("mine")).unwrap();
    assert_eq!(imported[0].name, "mine:latest");
    let inspect = json(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", path_str(&oci))],
    );
    assert_eq!(inspect["Digest"], imported[0].image.digest.to_string());
}

#[test]
fn layouts_written_by_umoci_import_to_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let files = dir.path().join("files");
    write(&files.join("motd"), "from umoci\n", 0o644);
    write(&files.join("tree/a.txt"), "a\n", 0o640);
    write(&files.join("tree/sub/b.sh"), "b\n", 0o755);
    let image = format!("{}:base", path_str(&layout));
    run("umoci", &["init", "--layout", path_str(&layout)]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            path_str(&files.join("motd")),
            "/etc/motd",
        ],
    );
    run(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            path_str(&files.join("tree")),
            "/data",
        ],
    );
    let expected = umoci_unpack(&image);
    assert!(expected.contains_key("data/sub/b.sh"), "{expected:?}");

    // `umoci repack` adds a layer on top.
    let bundle = dir.path().join("bundle");
    run("umoci", &["unpack", "--image", &image, path_str(&bundle)]);
    write(&bundle.join("rootfs/etc/extra"), "x\n", 0o644);
    std::fs::remove_file(bundle.join("rootfs/data/a.txt")).unwrap();
    let repacked = format!("{}:next", path_str(&layout));
    run(
        "umoci",
        &["repack", "--image", &repacked, path_str(&bundle)],
    );
    let expected_next = umoci_unpack(&repacked);
    assert!(!expected_next.contains_key("data/a.txt"));

    let store = open_store(&dir.path().join("store"));
    let mut imported = archive::import(&store, &layout, None).unwrap();
    imported.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = imported.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["base:latest", "next:latest"]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    for (i, want) in imported.iter().zip([&expected, &expected_next]) {
        let loaded = &i.image;
        assert!(
            loaded
                .layers
                .iter()
                .all(|l| l.variant.compression == Compression::Gzip)
        );
        // The manifest is kept as umoci wrote it.
        let listed = index["manifests"].as_array().unwrap();
        assert!(
            listed
                .iter()
                .any(|m| m["digest"] == loaded.digest.to_string())
        );
        // umoci 0.4's `insert` writes layers without tar padding and trailer, which umoci
        // reads but strict unpackers do not: so the imported image goes back out (the stored
        // blobs, nothing recompressed) and umoci unpacks it.
        let out = dir.path().join(format!("re-{}", i.name.replace(':', "-")));
        let report = archive::export(
            &store,
            loaded,
            &i.name,
            ArchiveFormat::OciDir,
            Compression::Gzip,
            &out,
        )
        .unwrap();
        assert_eq!(report.layers_compressed, 0);
        assert_eq!(report.image.digest, loaded.digest);
        let tag = i.name.split(':').nth(1).unwrap();
        assert_eq!(&umoci_unpack(&format!("{}:{tag}", path_str(&out))), want);
    }
    assert_eq!(imported[0].image.layers.len(), 2);
    assert_eq!(imported[1].image.layers.len(), 3);
}

#[test]
fn a_corrupt_layer_fails_the_import_and_tags_nothing() {
    let f = fixture();
    let layout = f.dir.path().join("layout");
    archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciDir,
        Compression::None,
        &layout,
    )
    .unwrap();
    // Change one byte of file content inside the top layer (a plain tar): digest and diff_id
    // no longer match.
    let top = &f.image.layers[1].record.diff_id;
    let blob = layout.join("blobs/sha256").join(top.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    let at = bytes.windows(8).position(|w| w == b"changed\n").unwrap();
    bytes[at] = b'C';
    std::fs::write(&blob, &bytes).unwrap();

    let fresh = tempfile::tempdir().unwrap();
    let store = open_store(fresh.path());
    let err = archive::import(&store, &layout, None).unwrap_err();
    match &err {
        ExportError::BlobRejected { what, .. } => assert_eq!(what, &format!("layer {top}")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains(&top.to_string()), "{err}");
    assert!(store.images().unwrap().is_empty());

    // A docker-archive whose layer differs from the config's diff_id, same outcome.
    let good = f.dir.path().join("good.docker.tar");
    archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::DockerArchive,
        Compression::None,
        &good,
    )
    .unwrap();
    let bad = f.dir.path().join("bad.docker.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&bad).unwrap());
    let mut input = tar::Archive::new(std::fs::File::open(&good).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        let path = entry.path().unwrap().into_owned();
        if path.to_str().unwrap() == format!("{}.tar", top.hex()) {
            let at = data.windows(8).position(|w| w == b"changed\n").unwrap();
            data[at] = b'C';
        }
        let mut header = entry.header().clone();
        builder.append_data(&mut header, &path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap();
    let err = archive::import(&store, &bad, None).unwrap_err();
    // The same error as a registry pull gives for the same fault: one pipeline.
    assert!(matches!(err, ExportError::BlobRejected { .. }), "{err:?}");
    assert!(err.to_string().contains(&top.to_string()), "{err}");
    assert_eq!(store.stats().unwrap().blobs, 0, "blobs were left behind");
    assert!(store.images().unwrap().is_empty());
    // The untouched archive imports.
    let imported = archive::import(&store, &good, None).unwrap();
    assert_eq!(imported[0].name, NAME);
    assert_eq!(unpack(&store, &imported[0].image), f.expected);
}

#[test]
fn export_reuses_stored_variants_instead_of_recompressing() {
    let f = fixture();
    let first = f.dir.path().join("one.tar");
    let report = archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciArchive,
        Compression::Gzip,
        &first,
    )
    .unwrap();
    assert_eq!(report.layers_compressed, 2);
    assert_ne!(report.image.digest, f.image.digest);
    assert_eq!(report.image.config_blob, f.image.config_blob);
    let variants = |store: &Store| -> Vec<usize> {
        f.image
            .layers
            .iter()
            .map(|l| {
                store
                    .layer(&l.record.digest)
                    .unwrap()
                    .unwrap()
                    .variants
                    .len()
            })
            .collect()
    };
    assert_eq!(variants(&f.store), [2, 2]);
    let blobs = f.store.stats().unwrap().blobs;

    // Same request, from the original image again: nothing compressed, same bytes.
    let second = f.dir.path().join("two.tar");
    let again = archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciArchive,
        Compression::Gzip,
        &second,
    )
    .unwrap();
    assert_eq!(again.layers_compressed, 0);
    assert_eq!(again.image.digest, report.image.digest);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    assert_eq!(variants(&f.store), [2, 2]);
    assert_eq!(f.store.stats().unwrap().blobs, blobs);

    // The variant made on export equals what the layer writer makes for the same tree.
    let (_t, base, _upper) = trees();
    let direct = LayerWriter::new(
        LayerOptions::default()
            .compression(lamina_layer::Compression::Gzip)
            .mtime_clamp(Some(0)),
    )
    .write_tree(&base, std::io::sink())
    .unwrap();
    assert_eq!(report.image.layers[0].record.diff_id, direct.diff_id);
    assert_eq!(report.image.layers[0].variant.sha256, direct.digest);

    // Exporting over an existing output replaces it.
    let dir_out = f.dir.path().join("layout");
    for c in [Compression::Zstd, Compression::None] {
        archive::export(&f.store, &f.image, NAME, ArchiveFormat::OciDir, c, &dir_out).unwrap();
    }
    let blobs_dir: Vec<_> = std::fs::read_dir(dir_out.join("blobs/sha256"))
        .unwrap()
        .collect();
    assert_eq!(blobs_dir.len(), 4, "two layers, config, manifest");
}

#[test]
fn import_refuses_other_architectures_and_unnamed_images() {
    let f = fixture();
    let layers: Vec<LayerRecord> = f.image.layers.iter().map(|l| l.record.clone()).collect();
    let arm =
        StoredImage::commit(&f.store, &config(Arch::ARM64), &layers, Compression::Zstd).unwrap();
    let out = f.dir.path().join("arm.tar");
    archive::export(
        &f.store,
        &arm,
        "arm:1",
        ArchiveFormat::OciArchive,
        Compression::Zstd,
        &out,
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let store = open_store(fresh.path());
    let err = archive::import(&store, &out, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "image docker.io/library/arm:1 architecture (linux/arm64) is not amd64"
    );

    // skopeo without a reference writes no name into index.json.
    let layout = f.dir.path().join("named");
    archive::export(
        &f.store,
        &f.image,
        NAME,
        ArchiveFormat::OciDir,
        Compression::Zstd,
        &layout,
    )
    .unwrap();
    let unnamed = f.dir.path().join("unnamed");
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:1.0", path_str(&layout)),
            &format!("oci:{}", path_str(&unnamed)),
        ],
    );
    let err = archive::import(&store, &unnamed, None).unwrap_err();
    assert!(matches!(err, ExportError::NoImageName { .. }), "{err:?}");
    assert!(err.to_string().contains("pass a name"), "{err}");
    assert!(store.images().unwrap().is_empty());
    let imported = archive::import(&store, &unnamed, Some("given")).unwrap();
    assert_eq!(imported[0].name, "given:latest");
    assert_eq!(imported[0].image.digest, f.image.digest);

    let err = archive::import(&store, fresh.path(), None).unwrap_err();
    assert!(matches!(err, ExportError::UnknownArchive { .. }), "{err:?}");
}
