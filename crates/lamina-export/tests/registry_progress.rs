//! Byte progress of push and pull against a real registry (Debian's `docker-registry`).

mod support;

use std::sync::Mutex;
use std::time::Duration;

use lamina_export::registry::{
    Credentials, PullEvent, PushEvent, RegistryConfig, pull_with_progress, push,
};
use lamina_store::Digest;
use support::image::{build, open_store};
use support::server::{self, Registry};

fn config() -> RegistryConfig {
    RegistryConfig {
        docker_config: false,
        credentials: Some(Credentials::Anonymous),
        retry_delay: Duration::from_millis(10),
        ..RegistryConfig::default()
    }
}

/// The byte counts reported for `digest`, in order.
fn counts<E>(
    events: &[E],
    digest: &Digest,
    count: impl Fn(&E) -> Option<(Digest, u64)>,
) -> Vec<u64> {
    events
        .iter()
        .filter_map(&count)
        .filter(|(d, _)| d == digest)
        .map(|(_, n)| n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_report_bytes_up_to_each_blob_size() {
    if support::require::missing(&[support::require::Need::Tool(server::BINARY)]) {
        return;
    }
    let registry = Registry::start();
    let reference = format!("{}/progress:v1", registry.host());
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    // Layers of several MiB, so each takes more than one read of the store file.
    let image = build(&store, 5, 2, 3, 3 << 20);
    let config_size = store.stat(&image.config_blob).unwrap().unwrap().size;
    let config_sha = store.stat(&image.config_blob).unwrap().unwrap().sha256;
    let mut blobs: Vec<(Digest, u64)> = image
        .layers
        .iter()
        .map(|l| (l.variant.sha256, l.variant.size))
        .collect();
    blobs.push((config_sha, config_size));

    let pushed = Mutex::new(Vec::new());
    push(&store, &image, &reference, &config(), &|e| {
        pushed.lock().unwrap().push(e)
    })
    .await
    .unwrap();
    let pushed = pushed.into_inner().unwrap();
    for (digest, size) in &blobs {
        let sent = counts(&pushed, digest, |e| match e {
            PushEvent::Progress { digest, sent, .. } => Some((*digest, *sent)),
            _ => None,
        });
        assert!(!sent.is_empty(), "no progress for {digest}: {pushed:?}");
        assert!(
            sent.is_sorted(),
            "progress went back for {digest}: {sent:?}"
        );
        assert_eq!(sent.last(), Some(size), "push of {digest}");
        // Progress comes between the start and the end of its upload.
        let at = |want: &dyn Fn(&PushEvent) -> bool| pushed.iter().position(want).unwrap();
        let start = at(&|e| matches!(e, PushEvent::Uploading { digest: d, .. } if d == digest));
        let first = at(&|e| matches!(e, PushEvent::Progress { digest: d, .. } if d == digest));
        let end = at(&|e| matches!(e, PushEvent::Uploaded { digest: d, .. } if d == digest));
        assert!(start < first && first < end, "out of order: {pushed:?}");
    }

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let pulled = Mutex::new(Vec::new());
    let record = |e| pulled.lock().unwrap().push(e);
    let image_back = pull_with_progress(&fresh, &reference, &config(), &record)
        .await
        .unwrap();
    assert_eq!(image_back.digest, image.digest);
    let events = std::mem::take(&mut *pulled.lock().unwrap());
    for (digest, size) in &blobs {
        let received = counts(&events, digest, |e| match e {
            PullEvent::Progress {
                digest, received, ..
            } => Some((*digest, *received)),
            _ => None,
        });
        assert!(!received.is_empty(), "no progress for {digest}: {events:?}");
        assert!(received.is_sorted(), "went back for {digest}: {received:?}");
        assert_eq!(received.last(), Some(size), "pull of {digest}");
        assert!(events.contains(&PullEvent::Downloading {
            digest: *digest,
            size: *size
        }));
        assert!(events.contains(&PullEvent::Downloaded {
            digest: *digest,
            size: *size
        }));
    }

    // Everything is in the store now: every blob is skipped, no bytes move.
    pull_with_progress(&fresh, &reference, &config(), &record)
        .await
        .unwrap();
    let again = std::mem::take(&mut *pulled.lock().unwrap());
    let mut skipped: Vec<(Digest, u64)> = again
        .iter()
        .map(|e| match e {
            PullEvent::Skipped { digest, size } => (*digest, *size),
            other => panic!("a second pull did more than skip: {other:?}"),
        })
        .collect();
    skipped.sort();
    blobs.sort();
    assert_eq!(skipped, blobs);
}
