//! The registry client against a real registry (Debian's `docker-registry`), skopeo on the
//! other end, and a fault-injecting proxy.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use lamina_export::registry::{Credentials, PushEvent, RegistryConfig, pull, push};
use lamina_export::{ExportError, StoredImage};
use lamina_store::Store;
use support::image::{build, build_with, config_for, open_store};
use support::proxy::{Fault, FaultProxy};
use support::server::{self, Registry};

/// Test settings: no docker config, no waiting between retries.
fn config() -> RegistryConfig {
    RegistryConfig {
        docker_config: false,
        credentials: Some(Credentials::Anonymous),
        retry_delay: Duration::from_millis(10),
        retries: 3,
        ..RegistryConfig::default()
    }
}

/// Whether the test must return now because a tool is missing (see `require`).
fn tools_missing(tools: &[&str]) -> bool {
    let needs: Vec<_> = tools
        .iter()
        .map(|tool| support::require::Need::Tool(tool))
        .collect();
    support::require::missing(&needs)
}

fn skopeo(args: &[&str]) -> String {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_store_empty(store: &Store) {
    assert_eq!(store.stats().unwrap().blobs, 0, "blobs were kept");
    assert!(store.images().unwrap().is_empty(), "an image was named");
}

async fn push_quiet(
    store: &Store,
    image: &StoredImage,
    reference: &str,
    config: &RegistryConfig,
) -> Result<lamina_export::registry::PushReport, ExportError> {
    push(store, image, reference, config, &|_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_skip_mount_pull_round_trip() {
    if tools_missing(&[server::BINARY]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // One layer above the monolithic limit so the chunked path runs too.
    let image = build(&store, 1, 2, 6, 2 << 20);
    let big = build(&store, 2, 1, 1, 10 << 20);

    let events = Mutex::new(Vec::new());
    let first = format!("{host}/app:v1");
    let report = push(&store, &image, &first, &config(), &|e| {
        events.lock().unwrap().push(e)
    })
    .await
    .unwrap();
    assert_eq!(report.digest, image.digest);
    assert_eq!(
        (
            report.blobs_pushed,
            report.blobs_skipped,
            report.blobs_mounted
        ),
        (3, 0, 0)
    );
    let expected_bytes: u64 = image.layers.iter().map(|l| l.variant.size).sum::<u64>()
        + store.stat(&image.config_blob).unwrap().unwrap().size;
    assert_eq!(report.bytes_pushed, expected_bytes);
    let events = events.into_inner().unwrap();
    let uploaded = events
        .iter()
        .filter(|e| matches!(e, PushEvent::Uploaded { .. }))
        .count();
    assert_eq!(uploaded, 3);
    assert!(
        matches!(events.last(), Some(PushEvent::Manifest { digest, .. }) if *digest == image.digest)
    );

    // Again: the registry has every blob.
    let again = push_quiet(&store, &image, &first, &config()).await.unwrap();
    assert_eq!(
        (again.blobs_pushed, again.blobs_skipped, again.blobs_mounted),
        (0, 3, 0)
    );
    assert_eq!(again.bytes_pushed, 0);

    // Another repository of the same registry: mounted from the first.
    let second = format!("{host}/team/other:v1");
    let mounted = push_quiet(&store, &image, &second, &config())
        .await
        .unwrap();
    assert_eq!(
        (
            mounted.blobs_pushed,
            mounted.blobs_skipped,
            mounted.blobs_mounted
        ),
        (0, 0, 3)
    );

    // A 10 MiB layer goes up in one streamed PUT like the small config (watched through the
    // proxy).
    let proxy = FaultProxy::start(registry.port).await;
    let big_layer = &big.layers[0].variant;
    assert!(big_layer.size > 8 << 20);
    let big_report = push_quiet(&store, &big, &format!("{}/big:1", proxy.host()), &config())
        .await
        .unwrap();
    assert_eq!(big_report.blobs_pushed, 2);
    assert_eq!(proxy.count("PATCH /v2/big/blobs/uploads/"), 0);
    assert_eq!(proxy.count("POST /v2/big/blobs/uploads/"), 2);
    assert_eq!(proxy.count("PUT /v2/big/blobs/uploads/"), 2);
    // A registry that refuses the layer in one request (413, as a proxy with a body limit
    // answers) gets it in 4 MiB PATCH chunks. A registry of its own, so nothing is mounted.
    let limited = Registry::start();
    let limiting = FaultProxy::start(limited.port).await;
    let refused = format!(
        "digest={}",
        big_layer.sha256.to_string().replace(':', "%3A")
    );
    limiting.inject(&refused, Fault::Status(413), Some(1));
    let chunked = push_quiet(
        &store,
        &big,
        &format!("{}/big:1", limiting.host()),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(chunked.blobs_pushed, 2);
    assert_eq!(chunked.bytes_pushed, big_report.bytes_pushed);
    // The refused PUT, then the one that closes the chunked upload.
    assert_eq!(limiting.count(&refused), 2);
    assert_eq!(
        limiting.count("PATCH /v2/big/blobs/uploads/"),
        big_layer.size.div_ceil(4 << 20) as usize
    );
    let dir_limited = tempfile::tempdir().unwrap();
    let from_limited = open_store(dir_limited.path());
    let pulled = pull(
        &from_limited,
        &format!("{}/big:1", limited.host()),
        &config(),
    )
    .await
    .unwrap();
    assert_eq!(pulled.digest, big.digest);
    from_limited
        .verify(&pulled.layers[0].variant.digest)
        .unwrap();
    let big_ref = format!("{host}/big:1");

    // Pull into an empty store: same digest, same layers, named as asked.
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = open_store(dir2.path());
    for reference in [&first, &second, &big_ref] {
        let pulled = pull(&fresh, reference, &config()).await.unwrap();
        let source = if reference == &big_ref { &big } else { &image };
        assert_eq!(pulled.digest, source.digest);
        assert_eq!(pulled.config, source.config);
        assert_eq!(pulled.layers.len(), source.layers.len());
        for (a, b) in pulled.layers.iter().zip(&source.layers) {
            assert_eq!(a.record.digest, b.record.digest);
            assert_eq!(a.record.diff_id, b.record.diff_id);
            assert_eq!(a.variant.sha256, b.variant.sha256);
            fresh.verify(&a.variant.digest).unwrap();
        }
        let named = StoredImage::load_named(&fresh, reference).unwrap().unwrap();
        assert_eq!(named.digest, source.digest);
    }
    // Through a mirror: `docker.io/library/big:1` comes from the local registry and keeps
    // its name in the store.
    let mirrored = RegistryConfig {
        mirrors: [("docker.io".to_owned(), host.clone())]
            .into_iter()
            .collect(),
        ..config()
    };
    push_quiet(&store, &big, &format!("{host}/library/big:1"), &config())
        .await
        .unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    let via_mirror = open_store(dir3.path());
    let pulled = pull(&via_mirror, "big:1", &mirrored).await.unwrap();
    assert_eq!(pulled.digest, big.digest);
    assert!(
        StoredImage::load_named(&via_mirror, "big:1")
            .unwrap()
            .is_some()
    );

    // Pulling again finds everything in the store.
    let blobs = fresh.stats().unwrap().blobs;
    let again = pull(&fresh, &first, &config()).await.unwrap();
    assert_eq!(again.digest, image.digest);
    assert_eq!(fresh.stats().unwrap().blobs, blobs);
    assert!(fresh.fsck(Default::default()).unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_reads_our_pushes_and_we_pull_its() {
    if tools_missing(&[server::BINARY, "skopeo"]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build(&store, 3, 2, 3, 64 << 10);
    let reference = format!("{host}/lamina/app:v1");
    push_quiet(&store, &image, &reference, &config())
        .await
        .unwrap();

    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], image.digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);

    // skopeo copies what we pushed into an OCI layout, byte for byte.
    let layout = dir.path().join("layout");
    let oci = format!("oci:{}:v1", layout.display());
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{reference}"),
        &oci,
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], image.digest.to_string());

    // skopeo pushes that layout back, once as OCI and once converted to Docker v2 schema 2;
    // we pull both and land on what skopeo reports.
    for (repo, format) in [("from-skopeo/oci", "oci"), ("from-skopeo/docker", "v2s2")] {
        let target = format!("{host}/{repo}:v1");
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--format",
            format,
            &oci,
            &format!("docker://{target}"),
        ]);
        let theirs = skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{target}"),
        ]);
        let theirs: serde_json::Value = serde_json::from_str(&theirs).unwrap();
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = open_store(fresh_dir.path());
        let pulled = pull(&fresh, &target, &config()).await.unwrap();
        assert_eq!(theirs["Digest"], pulled.digest.to_string(), "{format}");
        assert_eq!(pulled.config.rootfs(), image.config.rootfs(), "{format}");
        for (a, b) in pulled.layers.iter().zip(&image.layers) {
            assert_eq!(a.record.digest, b.record.digest, "{format}");
        }
        if format == "v2s2" {
            let bytes = fresh.read(&pulled.manifest_blob).unwrap().unwrap();
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains("application/vnd.docker.distribution.manifest.v2+json"));
        }
    }
}

/// Pushes `manifest` bytes under `reference` with plain HTTP (to stage indexes).
async fn put_manifest(host: &str, repo: &str, tag: &str, media_type: &'static str, body: Vec<u8>) {
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let reference: oci_client::Reference = format!("{host}/{repo}:{tag}").parse().unwrap();
    client
        .push_manifest_raw(&reference, body, http::HeaderValue::from_static(media_type))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_resolve_to_amd64_or_name_what_is_there() {
    if tools_missing(&[server::BINARY]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let amd = build(&store, 4, 1, 2, 1024);
    let arm_config = config_for(oci_spec::image::Arch::ARM64, "arm");
    let arm = build_with(
        &store,
        5,
        1,
        2,
        1024,
        lamina_layer::Compression::Zstd,
        &arm_config,
    );
    push_quiet(&store, &amd, &format!("{host}/multi:amd"), &config())
        .await
        .unwrap();
    push_quiet(&store, &arm, &format!("{host}/multi:arm"), &config())
        .await
        .unwrap();

    let entry = |image: &StoredImage, arch: &str| {
        let size = store.stat(&image.manifest_blob).unwrap().unwrap().size;
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.digest.to_string(),
            "size": size,
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let index = |entries: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap()
    };
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    put_manifest(
        &host,
        "multi",
        "both",
        INDEX,
        index(vec![entry(&arm, "arm64"), entry(&amd, "amd64")]),
    )
    .await;
    put_manifest(
        &host,
        "multi",
        "armonly",
        INDEX,
        index(vec![entry(&arm, "arm64")]),
    )
    .await;

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let pulled = pull(&fresh, &format!("{host}/multi:both"), &config())
        .await
        .unwrap();
    assert_eq!(pulled.digest, amd.digest);

    let reference = format!("{host}/multi:armonly");
    let err = pull(&fresh, &reference, &config()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("image {reference} architecture (linux/arm64) is not amd64")
    );
    // A plain arm64 manifest is refused the same way, from its config.
    let err = pull(&fresh, &format!("{host}/multi:arm"), &config())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExportError::Architecture { ref found, .. } if found == "linux/arm64"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_used() {
    if tools_missing(&[server::BINARY, "htpasswd"]) {
        return;
    }
    let registry = Registry::start_with_auth("lamina", "s3cret-pw");
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build(&store, 6, 1, 2, 4096);
    let reference = format!("{host}/private/app:v1");

    let err = push_quiet(&store, &image, &reference, &config())
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("LAMINA_REGISTRY_USER"), "{text}");

    let wrong = RegistryConfig {
        credentials: Some(Credentials::Basic {
            username: "lamina".into(),
            password: "wrong".into(),
        }),
        ..config()
    };
    let err = push_quiet(&store, &image, &reference, &wrong)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Unauthorized { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("wrong"),
        "secret in error"
    );

    let right = RegistryConfig {
        credentials: Some(Credentials::Basic {
            username: "lamina".into(),
            password: "s3cret-pw".into(),
        }),
        ..config()
    };
    let report = push_quiet(&store, &image, &reference, &right)
        .await
        .unwrap();
    assert_eq!(report.blobs_pushed, 2);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let err = pull(&fresh, &reference, &config()).await.unwrap_err();
    assert!(matches!(err, ExportError::Unauthorized { .. }), "{err:?}");
    assert_store_empty(&fresh);
    let pulled = pull(&fresh, &reference, &right).await.unwrap();
    assert_eq!(pulled.digest, image.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_registry_is_survived_or_refused() {
    if tools_missing(&[server::BINARY]) {
        return;
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build(&store, 7, 2, 4, 32 << 10);
    push_quiet(
        &store,
        &image,
        &format!("{}/app:v1", registry.host()),
        &config(),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(registry.port).await;
    let reference = format!("{}/app:v1", proxy.host());
    let layer = image.layers[1].variant.sha256.to_string();
    let config_blob = image.manifest.config().digest().to_string();

    // Cut short, every time: refused, nothing kept.
    for (pattern, fault) in [
        (layer.as_str(), Fault::Truncate),
        (layer.as_str(), Fault::Corrupt),
        (config_blob.as_str(), Fault::Corrupt),
        ("/manifests/v1", Fault::Corrupt),
    ] {
        proxy.reset();
        proxy.inject(pattern, fault, None);
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh = open_store(fresh_dir.path());
        let err = pull(&fresh, &reference, &config()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ExportError::BlobRejected { .. } | ExportError::Registry { .. }
            ),
            "{fault:?} on {pattern}: {err:?}"
        );
        assert_store_empty(&fresh);
    }

    // 500 twice, then fine: retried and pulled.
    proxy.reset();
    proxy.inject(&layer, Fault::Status(500), Some(2));
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let pulled = pull(&fresh, &reference, &config()).await.unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(proxy.count(&format!("GET /v2/app/blobs/{layer}")), 3);

    // 429 once on the manifest: retried.
    proxy.reset();
    proxy.inject("/manifests/v1", Fault::Status(429), Some(1));
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    pull(&fresh, &reference, &config()).await.unwrap();
    assert_eq!(proxy.count("/manifests/v1"), 2);

    // 429 for good: a clear error once the retries run out, nothing kept.
    proxy.reset();
    proxy.inject("/manifests/v1", Fault::Status(429), None);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let err = pull(&fresh, &reference, &config()).await.unwrap_err();
    assert!(matches!(err, ExportError::RateLimited { .. }), "{err:?}");
    assert!(err.to_string().contains("429"), "{err}");
    assert_eq!(proxy.count("/manifests/v1"), 4);
    assert_store_empty(&fresh);

    // A missing tag is a 404 that says so, without retries.
    proxy.reset();
    let err = pull(&fresh, &format!("{}/app:nope", proxy.host()), &config())
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::RemoteNotFound { .. }), "{err:?}");
    assert_eq!(proxy.count("/manifests/nope"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_already_in_the_store_are_not_downloaded() {
    if tools_missing(&[server::BINARY]) {
        return;
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build_with(
        &store,
        8,
        2,
        3,
        16 << 10,
        lamina_layer::Compression::Zstd,
        &support::image::config("zstd"),
    );
    push_quiet(
        &store,
        &image,
        &format!("{}/zstd:1", registry.host()),
        &config(),
    )
    .await
    .unwrap();
    let proxy = FaultProxy::start(registry.port).await;
    let reference = format!("{}/zstd:1", proxy.host());

    // The second layer's blob is there, but no layer record says what it holds: it is
    // recognised by its sha256 and its record rebuilt locally, not downloaded.
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let second = &image.layers[1].variant;
    let bytes = store.read(&second.digest).unwrap().unwrap();
    fresh
        .put_bytes(lamina_store::BlobKind::Layer, &bytes)
        .unwrap();
    assert!(
        fresh
            .layer_by_diff_id(&image.layers[1].record.diff_id)
            .unwrap()
            .is_none()
    );
    let pulled = pull(&fresh, &reference, &config()).await.unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(
        pulled.layers[1].record.digest,
        image.layers[1].record.digest
    );
    assert_eq!(
        proxy.count(&format!("GET /v2/zstd/blobs/{}", second.sha256)),
        0
    );
    assert_eq!(proxy.count("GET /v2/zstd/blobs/"), 2);

    // Everything is there now: a second pull only reads the manifest.
    proxy.reset();
    let again = pull(&fresh, &reference, &config()).await.unwrap();
    assert_eq!(again.digest, image.digest);
    assert_eq!(proxy.count("GET /v2/zstd/blobs/"), 0);
    assert_eq!(proxy.count("GET /v2/zstd/manifests/1"), 1);
}

/// `pull` futures can be spawned (lamina-exec pulls bases from its tasks).
#[allow(dead_code)]
fn pull_is_send(store: &Store, config: &RegistryConfig) {
    fn assert_send<T: Send>(_: &T) {}
    let future = pull(store, "alpine:3.19", config);
    assert_send(&future);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_configs_pull_with_their_bytes_and_malformed_ones_store_nothing() {
    if tools_missing(&[server::BINARY, "skopeo"]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    // A `docker save` archive from dockerd 20.10's classic builder: its config has
    // `"OnBuild": null` and the like.
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/generated/classic-minimal/docker-save.tar");
    let config_bytes = {
        let text = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/generated/classic-minimal/config.json"),
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&text).contains(r#""OnBuild":null"#));
        text
    };
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", good.display()),
        &format!("docker://{host}/docker/nulls:1"),
    ]);
    let store_dir = tempfile::tempdir().unwrap();
    let store = open_store(store_dir.path());
    let pulled = pull(&store, &format!("{host}/docker/nulls:1"), &config())
        .await
        .unwrap();
    assert_eq!(
        store.read(&pulled.config_blob).unwrap().unwrap(),
        config_bytes,
        "the config was not kept byte for byte"
    );

    // The same image with a string where the environment list belongs. skopeo refuses to
    // read such a config, so the blob and a manifest naming it are put in place directly.
    let text = String::from_utf8(config_bytes.clone()).unwrap();
    let bad = text.replacen(
        r#""Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]"#,
        r#""Env":"PATH=/bin""#,
        1,
    );
    assert_ne!(bad, text);
    let bad_digest = lamina_store::Digest::sha256_of(bad.as_bytes()).to_string();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/docker/nulls:1"),
    ]);
    let mut manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["config"]["digest"] = bad_digest.clone().into();
    manifest["config"]["size"] = bad.len().into();
    let media_type = manifest["mediaType"].as_str().unwrap().to_owned();
    assert_eq!(
        media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let repo: oci_client::Reference = format!("{host}/docker/nulls:bad").parse().unwrap();
    client
        .push_blob(&repo, bad.clone().into_bytes(), &bad_digest)
        .await
        .unwrap();
    put_manifest(
        &host,
        "docker/nulls",
        "bad",
        "application/vnd.docker.distribution.manifest.v2+json",
        serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
    let target = format!("{host}/docker/nulls:bad");
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let err = pull(&fresh, &target, &config()).await.unwrap_err();
    match &err {
        ExportError::MalformedConfig { field, reason, .. } => {
            assert_eq!(field, "config.Env");
            assert!(reason.contains("\"PATH=/bin\""), "{reason}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_store_empty(&fresh);
}
