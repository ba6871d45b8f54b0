//! Layers a store holds only as remote (a registry cache hit nothing has read), against the
//! real registry: an image naming them is pushed to the same registry by mounts alone, the
//! bytes are fetched verified into the caller's lease when something needs them, and a
//! remote layer whose bytes do not match its record never lands.

mod support;

use std::time::Duration;

use lamina_export::registry::remote_layers::{self, Localized};
use lamina_export::registry::{Credentials, RegistryConfig, push};
use lamina_export::{ExportError, StoredImage};
use lamina_store::{Compression, LayerRecord, LayerVariant, RemoteSource, Store, StoreOptions};
use support::image::{build, open_store};
use support::server::{self, Registry};

fn config() -> RegistryConfig {
    RegistryConfig {
        docker_config: false,
        credentials: Some(Credentials::Anonymous),
        retry_delay: Duration::from_millis(10),
        retries: 1,
        ..RegistryConfig::default()
    }
}

/// `layers` as a store that never held their bytes records them: remote, in `repository`.
fn as_remote(store: &Store, layers: &[LayerRecord], host: &str, repository: &str) {
    let source = RemoteSource {
        registry: host.to_owned(),
        repository: repository.to_owned(),
    };
    for layer in layers {
        let v = &layer.variants[0];
        let remote = LayerRecord {
            variants: vec![LayerVariant::remote(v.compression, v.sha256, v.size)],
            ..layer.clone()
        };
        store.put_remote_layer(&remote, &source).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_layers_are_mounted_on_push_and_fetched_verified_into_a_lease() {
    if support::require::missing(&[support::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = Registry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let writer = open_store(dir.path());
    let image = build(&writer, 7, 2, 3, 64 << 10);
    push(
        &writer,
        &image,
        &format!("{host}/cache:1"),
        &config(),
        &|_| {},
    )
    .await
    .unwrap();
    let layers: Vec<LayerRecord> = image.layers.iter().map(|l| l.record.clone()).collect();

    // The reader holds the config and the layers as remote: the same image, no layer bytes.
    let reader = Store::open(
        dir.path().join("reader"),
        // GC only when the test runs it: nothing but the lease below names these layers.
        StoreOptions {
            min_age: Duration::ZERO,
            auto_gc: false,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    as_remote(&reader, &layers, &host, "cache");
    let recorded: Vec<LayerRecord> = (layers.iter())
        .map(|l| reader.layer(&l.digest).unwrap().unwrap())
        .collect();
    let config_bytes = writer.read(&image.config_blob).unwrap().unwrap();
    let remote_image =
        StoredImage::commit_config_bytes(&reader, &config_bytes, &recorded, Compression::Gzip)
            .unwrap();
    assert_eq!(remote_image.digest, image.digest);
    // From here on, the layers as the reader records them.
    let layers: Vec<LayerRecord> = (remote_image.layers.iter())
        .map(|l| l.record.clone())
        .collect();
    assert!(remote_layers::any_remote(&reader, &layers).unwrap());
    assert_eq!(reader.stats().unwrap().remote_layers, 2);

    // Pushed to another repository of the same registry: mounted, nothing uploaded or
    // downloaded but the config.
    let report = push(
        &reader,
        &remote_image,
        &format!("{host}/other:1"),
        &config(),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.digest, image.digest);
    assert_eq!(report.blobs_mounted, 2);
    assert_eq!(report.blobs_pushed, 1, "the config");
    assert!(
        remote_layers::any_remote(&reader, &layers).unwrap(),
        "still remote"
    );

    // Fetched into a lease: GC keeps them while it lives (no image names them), and the
    // records are local now.
    let lease = reader.lease(Duration::from_secs(60)).unwrap();
    let fetched = remote_layers::localize(&reader, &layers, &config(), Some(&lease))
        .await
        .unwrap();
    assert_eq!(fetched.layers, 2);
    assert!(fetched.bytes > 0);
    assert!(!remote_layers::any_remote(&reader, &layers).unwrap());
    assert_eq!(reader.stats().unwrap().remote_layers, 0);
    reader.gc().unwrap();
    for layer in &layers {
        assert!(
            reader.contains(&layer.variants[0].sha256).unwrap(),
            "leased"
        );
    }
    assert_eq!(
        remote_layers::localize(&reader, &layers, &config(), None)
            .await
            .unwrap(),
        Localized::default(),
        "nothing left to fetch"
    );
    drop(lease);
    reader.gc().unwrap();
    assert!(!reader.contains(&layers[0].variants[0].sha256).unwrap());
    assert!(reader.fsck(Default::default()).unwrap().is_clean());

    // A record whose diff_id the bytes do not have: refused, nothing stored.
    let liar = Store::open(dir.path().join("liar"), StoreOptions::default()).unwrap();
    let mut lying = image.layers[0].record.clone();
    lying.diff_id = image.layers[1].record.diff_id;
    as_remote(&liar, &[lying.clone()], &host, "cache");
    let lying = liar.layer(&lying.digest).unwrap().unwrap();
    let err = remote_layers::localize(&liar, &[lying], &config(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::RemoteLayer { .. }), "{err}");
    assert!(err.to_string().contains("cache"), "{err}");
    assert_eq!(liar.stats().unwrap().blobs, 0);
}
