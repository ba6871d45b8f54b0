//! Configs and manifests as real tools write them (tests/fixtures/generated, made by
//! tests/fixtures/generate.sh with dockerd, podman and skopeo) and in the shapes kaniko, ko,
//! Jib and apko document (tests/fixtures/handwritten): every one parses, and a real `docker
//! save` archive imports and exports with its config bytes, so its Docker image ID, intact.

use std::io::Read;
use std::path::{Path, PathBuf};

use lamina_export::ExportError;
use lamina_export::archive::{self, ArchiveFormat};
use lamina_export::ingest::{
    amd64_entry, check_platform, parse_config, parse_index, parse_manifest,
};
use lamina_store::{Compression, Digest, Store, StoreOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn every_fixture_parses() {
    let mut files = Vec::new();
    json_files(&fixtures(), &mut files);
    let (mut configs, mut manifests, mut indexes) = (0, 0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(file).unwrap();
        let what = file.display().to_string();
        if name == "save-manifest.json" {
            // docker save's own manifest.json: a list of {Config, RepoTags, Layers}.
            let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(value[0]["Config"].is_string(), "{what}");
        } else if name.contains("config") {
            let config = parse_config(&what, &bytes).unwrap_or_else(|e| panic!("{e}"));
            check_platform(&what, &config).unwrap();
            configs += 1;
        } else if name.contains("index") || name.contains("list") {
            let index = parse_index(&what, &bytes).unwrap_or_else(|e| panic!("{e}"));
            let chosen = amd64_entry(&what, &index).unwrap();
            assert!(chosen.platform().is_some(), "{what}");
            indexes += 1;
        } else {
            let manifest = parse_manifest(&what, &bytes).unwrap_or_else(|e| panic!("{e}"));
            assert!(!manifest.layers().is_empty(), "{what}");
            manifests += 1;
        }
    }
    // Docker (BuildKit, classic) x (full, minimal) x (save, skopeo v2s2, skopeo oci), podman
    // x 2 formats x 2 images, and the four hand-written tools.
    assert!(configs >= 20, "only {configs} configs found");
    assert!(manifests >= 16, "only {manifests} manifests found");
    assert!(indexes >= 2, "only {indexes} indexes found");
}

#[test]
fn docker_configs_really_carry_nulls() {
    // Guards the fixtures themselves: regenerated ones must keep what makes them worth having.
    let text =
        std::fs::read_to_string(fixtures().join("generated/classic-minimal/config.json")).unwrap();
    for null in [
        r#""OnBuild":null"#,
        r#""Volumes":null"#,
        r#""Entrypoint":null"#,
        r#""Cmd":null"#,
    ] {
        assert!(text.contains(null), "{null} missing");
    }
    let full =
        std::fs::read_to_string(fixtures().join("generated/buildkit-full/config.json")).unwrap();
    for field in [
        "\"Healthcheck\"",
        "\"OnBuild\":[",
        "\"ExposedPorts\"",
        "\"StopSignal\"",
    ] {
        assert!(full.contains(field), "{field} missing");
    }
}

fn docker_save() -> PathBuf {
    fixtures().join("generated/classic-minimal/docker-save.tar")
}

/// The files of a tar, by name.
fn tar_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn file<'a>(files: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &files.iter().find(|(n, _)| n == name).unwrap().1
}

/// The config a docker-archive holds: its file name in manifest.json and its bytes.
fn archive_config(path: &Path) -> (String, Vec<u8>) {
    let files = tar_files(path);
    let manifest: serde_json::Value =
        serde_json::from_slice(file(&files, "manifest.json")).unwrap();
    let name = manifest[0]["Config"].as_str().unwrap().to_owned();
    let bytes = file(&files, &name).to_vec();
    (name, bytes)
}

fn store(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

#[test]
fn docker_save_imports_and_exports_with_the_same_image_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir.path().join("store"));
    let (config_name, config_bytes) = archive_config(&docker_save());
    let image_id = Digest::sha256_of(&config_bytes);
    assert!(config_name.contains(&image_id.hex()));

    let imported = archive::import(&store, &docker_save(), None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "fixture/classic-minimal:1");
    let image = &imported[0].image;
    assert_eq!(
        store.read(&image.config_blob).unwrap().unwrap(),
        config_bytes
    );
    // The manifest written for it is the same in any store: deterministic.
    let other = store_in(&dir.path().join("other"));
    let again = archive::import(&other, &docker_save(), None).unwrap();
    assert_eq!(again[0].image.digest, image.digest);

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let out = dir.path().join(format!("out-{compression:?}.tar"));
        archive::export(
            &store,
            image,
            "fixture/back:1",
            ArchiveFormat::DockerArchive,
            compression,
            &out,
        )
        .unwrap();
        let (name, bytes) = archive_config(&out);
        assert_eq!(bytes, config_bytes, "{compression:?}");
        assert!(name.contains(&image_id.hex()), "{name}");
        // And it reads back as the same image.
        let fresh = tempfile::tempdir().unwrap();
        let back = store_in(fresh.path());
        let reimported = archive::import(&back, &out, None).unwrap();
        assert_eq!(
            back.read(&reimported[0].image.config_blob)
                .unwrap()
                .unwrap(),
            config_bytes
        );
    }
    // OCI layouts keep the config too, and the manifest as it is.
    let layout = dir.path().join("layout");
    let report = archive::export(
        &store,
        image,
        "fixture/back:1",
        ArchiveFormat::OciDir,
        Compression::Gzip,
        &layout,
    )
    .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let back = store_in(fresh.path());
    let reimported = archive::import(&back, &layout, None).unwrap();
    assert_eq!(reimported[0].image.digest, report.image.digest);
    assert_eq!(
        back.read(&reimported[0].image.config_blob)
            .unwrap()
            .unwrap(),
        config_bytes
    );
}

fn store_in(dir: &Path) -> Store {
    store(dir)
}

/// Writes a tar of `files`.
fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.into_inner().unwrap();
}

#[test]
fn docker_25_save_output_imports_through_its_oci_layout() {
    // Docker 25 and later put an OCI layout beside manifest.json: blobs/sha256/<hex>,
    // index.json naming the image, oci-layout. Made here from the real archive's parts.
    let files = tar_files(&docker_save());
    let (config_name, config_bytes) = archive_config(&docker_save());
    let legacy: serde_json::Value = serde_json::from_slice(file(&files, "manifest.json")).unwrap();
    let layer_name = legacy[0]["Layers"][0].as_str().unwrap();
    let layer = file(&files, layer_name).to_vec();
    let layer_sha = Digest::sha256_of(&layer);
    let config_sha = Digest::sha256_of(&config_bytes);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_sha}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_sha}","size":{}}}]}}"#,
        config_bytes.len(),
        layer.len()
    );
    let manifest_sha = Digest::sha256_of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_sha}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/fixture/modern:1","org.opencontainers.image.ref.name":"1"}}}}]}}"#,
        manifest.len()
    );
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let modern_manifest = format!(
        r#"[{{"Config":"{}","RepoTags":["fixture/modern:1"],"Layers":["{}"]}}]"#,
        blob(&config_sha),
        blob(&layer_sha)
    );
    let out = vec![
        (blob(&config_sha), config_bytes.clone()),
        (blob(&layer_sha), layer),
        (blob(&manifest_sha), manifest.into_bytes()),
        ("index.json".to_owned(), index.into_bytes()),
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("manifest.json".to_owned(), modern_manifest.into_bytes()),
    ];
    assert!(config_name.ends_with(".json"));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("modern.tar");
    write_tar(&tar, &out);
    let store = store(&dir.path().join("store"));
    let imported = archive::import(&store, &tar, None).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "fixture/modern:1");
    assert_eq!(imported[0].image.digest, manifest_sha);
    assert_eq!(
        store.read(&imported[0].image.config_blob).unwrap().unwrap(),
        config_bytes
    );
}

#[test]
fn a_malformed_config_fails_naming_the_field_and_stores_nothing() {
    let files = tar_files(&docker_save());
    let (config_name, config_bytes) = archive_config(&docker_save());
    let text = String::from_utf8(config_bytes).unwrap();
    let bad = text.replacen(
        r#""Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]"#,
        r#""Env":"PATH=/bin""#,
        1,
    );
    assert_ne!(bad, text);
    let bad_name = format!("{}.json", Digest::sha256_of(bad.as_bytes()).hex());
    let rewritten: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|(name, data)| {
            if name == config_name {
                (bad_name.clone(), bad.clone().into_bytes())
            } else if name == "manifest.json" {
                let text = String::from_utf8(data)
                    .unwrap()
                    .replace(&config_name, &bad_name);
                (name, text.into_bytes())
            } else {
                (name, data)
            }
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("bad.tar");
    write_tar(&tar, &rewritten);
    let store = store(&dir.path().join("store"));
    let err = archive::import(&store, &tar, None).unwrap_err();
    match &err {
        ExportError::MalformedConfig {
            reference,
            field,
            reason,
        } => {
            assert_eq!(reference, "fixture/classic-minimal:1");
            assert_eq!(field, "config.Env");
            assert!(reason.contains("string \"PATH=/bin\""), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(store.images().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().blobs, 0, "blobs were left behind");
}

#[test]
fn a_non_distributable_layer_imports_when_present_and_is_named_when_missing() {
    let files = tar_files(&docker_save());
    let (_, config_bytes) = archive_config(&docker_save());
    let legacy: serde_json::Value = serde_json::from_slice(file(&files, "manifest.json")).unwrap();
    let layer = file(&files, legacy[0]["Layers"][0].as_str().unwrap()).to_vec();
    let layer_sha = Digest::sha256_of(&layer);
    let config_sha = Digest::sha256_of(&config_bytes);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_sha}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{layer_sha}","size":{},"urls":["https://layers.example.invalid/base"]}}]}}"#,
        config_bytes.len(),
        layer.len()
    );
    let manifest_sha = Digest::sha256_of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_sha}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"foreign:1"}}}}]}}"#,
        manifest.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(layout.join("index.json"), index).unwrap();
    std::fs::write(blobs.join(config_sha.hex()), &config_bytes).unwrap();
    std::fs::write(blobs.join(manifest_sha.hex()), manifest).unwrap();

    let store = store(&dir.path().join("store"));
    let err = archive::import(&store, &layout, None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("non-distributable layer")
            && message.contains("https://layers.example.invalid/base"),
        "{message}"
    );
    assert!(store.images().unwrap().is_empty());

    std::fs::write(blobs.join(layer_sha.hex()), &layer).unwrap();
    let imported = archive::import(&store, &layout, None).unwrap();
    assert_eq!(imported[0].name, "foreign:1");
    assert_eq!(imported[0].image.digest, manifest_sha);
}
