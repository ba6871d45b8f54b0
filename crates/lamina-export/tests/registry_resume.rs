//! Resumable chunked uploads against a real registry (Debian's `docker-registry`) behind the
//! fault-injecting proxy: a cut `PATCH` goes on from where the registry stands, a registry
//! that lost the session gets the blob again from byte 0, and a one-request `PUT` cut
//! mid-body is retried in chunks.

mod support;

use std::time::Duration;

use lamina_export::StoredImage;
use lamina_export::registry::{Credentials, RegistryConfig, pull, push};
use lamina_store::Store;
use support::image::{build, open_store};
use support::proxy::{Fault, FaultProxy};
use support::server::{self, Registry};

const CHUNK: u64 = 4 << 20;

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

/// `a-b` as numbers.
fn range(text: &Option<String>) -> (u64, u64) {
    let text = text.as_deref().expect("a Content-Range header");
    let (a, b) = text.split_once('-').expect("a-b");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The `PATCH` ranges cover `from..size` back to back.
fn assert_contiguous(ranges: &[(u64, u64)], from: u64, size: u64) {
    let mut next = from;
    for &(start, end) in ranges {
        assert_eq!(start, next, "ranges {ranges:?}");
        assert!(end >= start && end - start < CHUNK, "ranges {ranges:?}");
        next = end + 1;
    }
    assert_eq!(next, size, "ranges {ranges:?}");
}

/// Pulls `reference` into a fresh store and checks it is `image`, bytes verified.
async fn assert_pulls_back(reference: &str, image: &StoredImage) {
    let dir = tempfile::tempdir().unwrap();
    let fresh: Store = open_store(dir.path());
    let pulled = pull(&fresh, reference, &config()).await.unwrap();
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(pulled.layers.len(), image.layers.len());
    for (a, b) in pulled.layers.iter().zip(&image.layers) {
        assert_eq!(a.variant.sha256, b.variant.sha256);
        fresh.verify(&a.variant.digest).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_chunked_uploads_resume_where_the_registry_stands() {
    if support::require::missing(&[support::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Noise, so the gzip layer stays about 14 MiB: four chunks.
    let image = build(&store, 7, 1, 1, 14 << 20);
    let layer = &image.layers[0].variant;
    assert!(layer.size > 3 * CHUNK);
    let refused = format!("digest={}", layer.sha256.to_string().replace(':', "%3A"));

    // The one-request PUT refused (413), then the connection cut during the 3rd PATCH.
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.port).await;
    proxy.inject(&refused, Fault::Status(413), Some(1));
    proxy.inject_nth("PATCH /v2/resume/blobs/uploads/", Fault::Cut, 3);
    let reference = format!("{}/resume:1", proxy.host());
    let report = push(&store, &image, &reference, &config(), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.blobs_pushed, 2);
    let patches: Vec<(u64, u64)> = proxy
        .request_headers("PATCH /v2/resume/blobs/uploads/", "content-range")
        .iter()
        .map(range)
        .collect();
    assert_eq!(
        &patches[..3],
        &[
            (0, CHUNK - 1),
            (CHUNK, 2 * CHUNK - 1),
            (2 * CHUNK, 3 * CHUNK - 1)
        ]
    );
    // The retry asked where the upload stands and went on from there, in the same session.
    let status = proxy.response_headers("GET /v2/resume/blobs/uploads/", "range");
    assert_eq!(status.len(), 1, "one status request");
    let held = range(&status[0]).1 + 1;
    assert!(
        (2 * CHUNK..3 * CHUNK).contains(&held),
        "the registry holds {held} bytes"
    );
    assert_eq!(patches[3].0, held, "resumed at the registry's offset");
    assert_contiguous(&patches[3..], held, layer.size);
    // Config, the refused one-request upload, the chunked one: no new session.
    assert_eq!(proxy.count("POST /v2/resume/blobs/uploads/"), 3);
    assert_pulls_back(&format!("{}/resume:1", registry.host()), &image).await;

    // A registry that lost the session (404 on the status request) gets the blob anew.
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.port).await;
    proxy.inject(&refused, Fault::Status(413), Some(1));
    proxy.inject_nth("PATCH /v2/lost/blobs/uploads/", Fault::Cut, 3);
    proxy.inject("GET /v2/lost/blobs/uploads/", Fault::Status(404), Some(1));
    let reference = format!("{}/lost:1", proxy.host());
    push(&store, &image, &reference, &config(), &|_| {})
        .await
        .unwrap();
    let patches: Vec<(u64, u64)> = proxy
        .request_headers("PATCH /v2/lost/blobs/uploads/", "content-range")
        .iter()
        .map(range)
        .collect();
    assert_eq!(patches[3].0, 0, "started over: {patches:?}");
    assert_contiguous(&patches[3..], 0, layer.size);
    // As above, plus the layer's second chunked session.
    assert_eq!(proxy.count("POST /v2/lost/blobs/uploads/"), 4);
    assert_pulls_back(&format!("{}/lost:1", registry.host()), &image).await;

    // The one-request PUT cut mid-body: the retry goes in chunks, all of them.
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.port).await;
    proxy.inject(&refused, Fault::Cut, Some(1));
    let reference = format!("{}/flaky:1", proxy.host());
    push(&store, &image, &reference, &config(), &|_| {})
        .await
        .unwrap();
    let patches: Vec<(u64, u64)> = proxy
        .request_headers("PATCH /v2/flaky/blobs/uploads/", "content-range")
        .iter()
        .map(range)
        .collect();
    assert_contiguous(&patches, 0, layer.size);
    // The cut PUT, then the one closing the chunked upload.
    assert_eq!(proxy.count(&refused), 2);
    assert_eq!(proxy.count("POST /v2/flaky/blobs/uploads/"), 3);
    assert_pulls_back(&format!("{}/flaky:1", registry.host()), &image).await;
}
