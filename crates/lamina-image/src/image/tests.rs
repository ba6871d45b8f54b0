//! Tests of committing, loading and tagging stored images.

use super::*;
use lamina_store::StoreOptions;
use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os};
use std::collections::HashMap;
use std::time::SystemTime;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, store)
}

/// A fake layer: `tar` stands for the uncompressed bytes, `zstd` for its zstd variant.
fn layer(store: &Store, tar: &[u8], zstd: &[u8]) -> LayerRecord {
    let plain = store.put_bytes(BlobKind::Layer, tar).unwrap();
    let packed = store.put_bytes(BlobKind::Layer, zstd).unwrap();
    let variant = LayerVariant::stored;
    store
        .put_layer(&LayerRecord {
            digest: plain.digest,
            diff_id: plain.sha256,
            size: plain.size,
            variants: vec![
                variant(Compression::Zstd, &packed),
                variant(Compression::None, &plain),
            ],
            created: SystemTime::now(),
            tar_split: None,
        })
        .unwrap()
}

/// Commits an image of the one layer `layer` with a config of `labels`.
fn commit_one(
    store: &Store,
    labels: &[(&str, &str)],
    layer: &LayerRecord,
    compression: Compression,
) -> Result<StoredImage, ImageError> {
    StoredImage::commit(
        store,
        &config(labels),
        std::slice::from_ref(layer),
        compression,
    )
}

fn config(labels: &[(&str, &str)]) -> ImageConfiguration {
    let labels: HashMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .env(vec!["PATH=/bin".to_owned()])
                .labels(labels)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
fn commit_then_load_round_trips() {
    let (_dir, store) = store();
    let a = layer(&store, b"tar a", b"zst a");
    let b = layer(&store, b"tar b", b"zst b");
    let image = StoredImage::commit(
        &store,
        &config(&[("x", "1")]),
        &[a.clone(), b.clone()],
        Compression::Zstd,
    )
    .unwrap();

    let m = &image.manifest;
    assert_eq!(m.media_type(), &Some(MediaType::ImageManifest));
    assert_eq!(m.config().media_type(), &MediaType::ImageConfig);
    assert_eq!(m.layers().len(), 2);
    for (d, rec) in m.layers().iter().zip([&a, &b]) {
        assert_eq!(d.media_type(), &MediaType::ImageLayerZstd);
        let zstd = &rec.variants[0];
        assert_eq!(d.digest().to_string(), zstd.sha256.to_string());
        assert_eq!(d.size(), zstd.size);
    }
    assert_eq!(
        image.config.rootfs().diff_ids(),
        &vec![a.diff_id.to_string(), b.diff_id.to_string()]
    );
    // The digest is the sha256 of the stored manifest bytes.
    let bytes = store.read(&image.manifest_blob).unwrap().unwrap();
    assert_eq!(Digest::sha256_of(&bytes), image.digest);
    assert_eq!(
        store.stat(&image.digest).unwrap().unwrap().kind,
        BlobKind::Manifest
    );
    let config_info = store.stat(&image.config_blob).unwrap().unwrap();
    assert_eq!(config_info.kind, BlobKind::Config);
    assert_eq!(
        m.config().digest().to_string(),
        config_info.sha256.to_string()
    );

    let zstd_sizes: u64 = [&a, &b].iter().map(|l| l.variants[0].size).sum();
    let mut last_use = None;
    for key in [image.digest, image.manifest_blob] {
        let summary = StoredImage::summary(&store, &key).unwrap().unwrap();
        assert_eq!((summary.digest, summary.size), (image.digest, zstd_sizes));
        last_use.get_or_insert(summary.last_used);
        let loaded = StoredImage::load(&store, &key).unwrap();
        assert_eq!(loaded.digest, image.digest);
        assert_eq!(loaded.manifest, image.manifest);
        assert_eq!(loaded.config, image.config);
        assert_eq!(loaded.layers, image.layers);
        assert_eq!(loaded.references(), image.references());
    }
    assert_eq!(image.layers[1].variant.compression, Compression::Zstd);
    assert_eq!(
        image.references(),
        vec![image.config_blob, a.digest, b.digest]
    );
    let info = store.stat(&image.manifest_blob).unwrap().unwrap();
    assert_eq!(last_use, Some(info.last_used), "the use before the read");
    assert!(
        StoredImage::summary(&store, &a.digest).is_err(),
        "not a manifest"
    );
    let absent = Digest::blake3([7; 32]);
    assert!(StoredImage::summary(&store, &absent).unwrap().is_none());
}

#[test]
fn commit_is_deterministic_and_compression_changes_only_the_manifest() {
    let (_dir, store) = store();
    let a = layer(&store, b"tar a", b"zst a");
    // Many labels: a hash map's iteration order would show up here.
    let labels: Vec<(String, String)> = (0..32)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (&**k, &**v)).collect();
    let one = commit_one(&store, &refs, &a, Compression::Zstd).unwrap();
    let mut reversed = refs.clone();
    reversed.reverse();
    let two = commit_one(&store, &reversed, &a, Compression::Zstd).unwrap();
    assert_eq!(one.digest, two.digest);
    assert_eq!(one.config_blob, two.config_blob);

    let plain = StoredImage::commit(&store, &config(&refs), &[a], Compression::None).unwrap();
    assert_ne!(plain.digest, one.digest);
    assert_eq!(plain.config_blob, one.config_blob);
    assert_eq!(
        plain.manifest.layers()[0].media_type(),
        &MediaType::ImageLayer
    );
}

#[test]
fn a_missing_variant_is_an_error_naming_the_layer() {
    let (_dir, store) = store();
    let a = layer(&store, b"tar a", b"zst a");
    let err = commit_one(&store, &[], &a, Compression::Gzip).unwrap_err();
    match &err {
        ImageError::MissingVariant { layer, compression } => {
            assert_eq!(*layer, a.digest);
            assert_eq!(*compression, "gzip");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains(&a.digest.to_string()), "{err}");
}

#[test]
fn a_variant_the_caller_found_stored_is_named_without_asking_the_store_if_it_is_the_first() {
    let (_dir, store) = store();
    let (_other_dir, other) = self::store();
    // Two zstd encodings of one tar; the first is not in this store.
    let plain = store.put_bytes(BlobKind::Layer, b"tar a").unwrap();
    let absent = other.put_bytes(BlobKind::Layer, b"zst a, 1").unwrap();
    let present = store.put_bytes(BlobKind::Layer, b"zst a, 2").unwrap();
    let record = LayerRecord {
        digest: plain.digest,
        diff_id: plain.sha256,
        size: plain.size,
        variants: vec![
            LayerVariant::stored(Compression::Zstd, &absent),
            LayerVariant::stored(Compression::Zstd, &present),
        ],
        created: SystemTime::now(),
        tar_split: None,
    };
    let mut config = config(&[]);
    config.rootfs_mut().set_typ("layers".to_owned());
    config
        .rootfs_mut()
        .set_diff_ids(vec![plain.sha256.to_string()]);
    let bytes = canonical_json(&config, "config").unwrap();
    let commit = |seen: &[Digest]| {
        let (config, layers) = (config.clone(), std::slice::from_ref(&record));
        StoredImage::commit_parsed(
            &store,
            &bytes,
            config,
            layers,
            Compression::Zstd,
            None,
            seen,
        )
    };
    // The caller vouches for the first zstd variant: named as it is, the store not asked
    // (which would say it lacks it).
    let image = commit(&[absent.digest]).unwrap();
    assert_eq!(image.layers[0].variant.digest, absent.digest);
    assert_eq!(
        image.manifest.layers()[0].digest().to_string(),
        absent.sha256.to_string()
    );
    // Another variant seen does not change which one an image names (the same layers give
    // the same manifest whatever a build saw): the store is asked about the first.
    for seen in [&[present.digest][..], &[]] {
        assert!(matches!(
            commit(seen),
            Err(ImageError::MissingVariant { .. })
        ));
    }
}

#[test]
fn load_of_unknown_digest_or_garbage_fails_cleanly() {
    let (_dir, store) = store();
    let missing = Digest::sha256_of(b"nothing");
    assert!(matches!(
        StoredImage::load(&store, &missing),
        Err(ImageError::ImageNotFound { .. })
    ));
    let junk = store.put_bytes(BlobKind::Manifest, b"{not json").unwrap();
    assert!(matches!(
        StoredImage::load(&store, &junk.digest),
        Err(ImageError::InvalidImage { .. })
    ));
}

#[test]
fn tag_then_load_named_with_default_tag() {
    let (_dir, store) = store();
    let a = layer(&store, b"tar a", b"zst a");
    let image = commit_one(&store, &[], &a, Compression::Zstd).unwrap();
    assert!(StoredImage::load_named(&store, "app").unwrap().is_none());
    image.tag(&store, "app", true).unwrap();
    let record = store
        .image("docker.io/library/app:latest")
        .unwrap()
        .unwrap();
    assert!(record.pinned);
    assert_eq!(record.manifest, image.manifest_blob);
    assert!(record.references.contains(&a.digest));
    for name in [
        "app",
        "app:latest",
        "docker.io/library/app",
        "library/app:latest",
    ] {
        let loaded = StoredImage::load_named(&store, name).unwrap().unwrap();
        assert_eq!(loaded.digest, image.digest);
    }
    // The tag keeps the image through GC.
    store.gc().unwrap();
    assert!(StoredImage::load_named(&store, "app").unwrap().is_some());
}

#[test]
fn names_are_stored_in_full_form_with_latest_only_without_tag_or_digest() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    for (name, key) in [
        ("app", "docker.io/library/app:latest"),
        ("app:1", "docker.io/library/app:1"),
        ("org/app", "docker.io/org/app:latest"),
        ("host:5000/app", "host:5000/app:latest"),
        ("host:5000/app:2", "host:5000/app:2"),
        (
            &format!("app@{digest}"),
            &format!("docker.io/library/app@{digest}"),
        ),
    ] {
        assert_eq!(normalize_name(name), key, "{name}");
        assert_eq!(image_name(name).unwrap().to_string(), key, "{name}");
    }
}

#[test]
fn invalid_names_are_refused_naming_them() {
    for bad in ["BAD NAME", ":", "x@sha256:zz", ""] {
        let err = image_name(bad).unwrap_err();
        assert!(
            matches!(&err, ImageError::InvalidReference { reference, .. } if reference == bad),
            "{bad:?}: {err}"
        );
    }
}

/// Stores written before names were canonical keyed images by the name as typed
/// (`python:3.12`); those records are still found, and a new tag of the same name
/// replaces the old key (keeping its pin).
#[test]
fn records_under_old_short_keys_are_found_and_replaced() {
    let (_dir, store) = store();
    let a = layer(&store, b"tar a", b"zst a");
    let image = commit_one(&store, &[], &a, Compression::Zstd).unwrap();
    store
        .tag_image(
            "python:3.12",
            &image.manifest_blob,
            &image.references(),
            ImageState::Complete,
        )
        .unwrap();
    store.set_pinned("python:3.12", true).unwrap();
    for name in ["python:3.12", "docker.io/library/python:3.12"] {
        let found = StoredImage::load_named(&store, name).unwrap().unwrap();
        assert_eq!(found.digest, image.digest, "{name}");
    }
    image
        .tag(&store, "docker.io/library/python:3.12", false)
        .unwrap();
    let names: Vec<_> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["docker.io/library/python:3.12"]);
    assert!(store.image(&names[0]).unwrap().unwrap().pinned);
}
