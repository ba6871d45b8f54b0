//! The registry client's bearer-token flow end to end: a token gate (401 challenge, token
//! endpoint taking basic credentials, `Authorization: Bearer`) in front of a real open
//! registry (Debian's `docker-registry`).

#[path = "support/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "support/image.rs"]
mod image;
#[path = "../../../tests/require.rs"]
mod require;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod server;
#[path = "support/token_gate.rs"]
mod token_gate;

use std::time::Duration;

use image::{build, open_store};
use lamina_export::ExportError;
use lamina_export::registry::{Credentials, RegistryConfig, pull, push};
use server::Registry;
use token_gate::{SERVICE, TokenGate};

const USER: &str = "lamina";
const PASSWORD: &str = "t0ken-gate-pw";

/// Test settings with `credentials`: no docker config, no waiting between retries.
fn config(credentials: Credentials) -> RegistryConfig {
    RegistryConfig {
        docker_config: false,
        credentials: Some(credentials),
        retry_delay: Duration::from_millis(10),
        retries: 2,
        ..RegistryConfig::default()
    }
}

fn basic(password: &str) -> RegistryConfig {
    config(Credentials::Basic {
        username: USER.into(),
        password: password.into(),
    })
}

/// Whether the test must return now because `docker-registry` is missing (see `require`).
fn registry_missing() -> bool {
    require::missing(&[require::Need::Tool(server::BINARY)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_and_pull_through_a_token_gate() {
    if registry_missing() {
        return;
    }
    let registry = Registry::start();
    let gate = TokenGate::start(registry.port, USER, PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build(&store, 1, 2, 3, 64 << 10);
    let reference = format!("{}/team/app:v1", gate.host());

    let report = push(&store, &image, &reference, &basic(PASSWORD), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.digest, image.digest);
    assert_eq!(report.blobs_pushed, 3);

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_store(fresh_dir.path());
    let pulled = pull(&fresh, &reference, &basic(PASSWORD)).await.unwrap();
    assert_eq!(pulled.digest, image.digest);
    // The image really went through to the registry behind the gate.
    let direct = format!("{}/team/app:v1", registry.host());
    let other_dir = tempfile::tempdir().unwrap();
    let other = open_store(other_dir.path());
    let behind = pull(&other, &direct, &config(Credentials::Anonymous))
        .await
        .unwrap();
    assert_eq!(behind.digest, image.digest);

    let log = gate.log();
    // The client first asked without a token and was told where to get one.
    assert!(log.challenged.iter().any(|l| l == "GET /v2/"), "{log:?}");
    for scope in ["repository:team/app:pull,push", "repository:team/app:pull"] {
        assert!(
            log.token_requests.iter().any(|t| t.granted
                && t.scope.as_deref() == Some(scope)
                && t.service.as_deref() == Some(SERVICE)),
            "no token for {scope}: {log:?}"
        );
    }
    assert!(log.token_requests.iter().all(|t| t.granted), "{log:?}");
    for line in [
        "POST /v2/team/app/blobs/uploads/",
        "PUT /v2/team/app/manifests/v1",
        "GET /v2/team/app/manifests/v1",
    ] {
        assert!(
            log.authorized.iter().any(|l| l == line),
            "{line} was not authorised: {log:?}"
        );
    }
    // Uploads continue at a `Location` pointed back at the gate, with the token.
    assert!(
        log.authorized
            .iter()
            .any(|l| l.starts_with("PUT /v2/team/app/blobs/uploads/")),
        "{log:?}"
    );
    assert!(
        !log.challenged.iter().any(|l| l.contains("/uploads/")),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_without_leaking_it() {
    if registry_missing() {
        return;
    }
    let registry = Registry::start();
    let gate = TokenGate::start(registry.port, USER, PASSWORD).await;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let image = build(&store, 2, 1, 2, 4096);
    let reference = format!("{}/team/app:v1", gate.host());

    let wrong = "wr0ng-Secret-pw";
    let err = push(&store, &image, &reference, &basic(wrong), &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Unauthorized { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(wrong), "secret in error: {text}");
    assert!(text.contains("401"), "{text}");

    let log = gate.log();
    assert!(!log.token_requests.is_empty(), "{log:?}");
    assert!(log.token_requests.iter().all(|t| !t.granted), "{log:?}");
    assert!(log.authorized.is_empty(), "{log:?}");

    // Without credentials the token endpoint refuses too.
    let err = pull(&store, &reference, &config(Credentials::Anonymous))
        .await
        .unwrap_err();
    assert!(matches!(err, ExportError::Unauthorized { .. }), "{err:?}");
}
