//! One registry repository as seen by a pull or push: the `oci-client` clients, the
//! credentials, retries and the mapping of HTTP failures to [`ExportError`]s.
//!
//! `oci-client` does the HTTP and the token flow but neither retries nor tells 429 from
//! other client errors in a typed way, so both live here: a [`Fault`] says whether a
//! failure is worth another try (5xx, 408, 429, timeouts, dropped connections, cut bodies)
//! and what to tell the user when it is not.

use std::future::Future;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference, RegistryOperation};

use super::RegistryConfig;
use super::auth::credentials_for;
use crate::ExportError;

/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Parses `reference` with docker's defaults (`docker.io`, `library/`, `:latest`).
pub(crate) fn parse_reference(reference: &str) -> Result<Reference, ExportError> {
    reference
        .parse::<Reference>()
        .map_err(|e| ExportError::InvalidReference {
            reference: reference.to_owned(),
            reason: e.to_string(),
        })
}

/// Whether `registry` (`host[:port]`) is a loopback address, always reachable over http.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Whether `registry` may be reached over plain http: loopback, or listed as insecure.
fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    is_loopback(registry) || insecure.iter().any(|h| h == registry)
}

/// A repository on a registry, with clients and credentials ready.
pub(crate) struct Remote {
    /// The reference as the user wrote it (for messages).
    pub display: String,
    /// Where requests go (mirror applied).
    pub reference: Reference,
    /// Chunked uploads (`PATCH` per 4 MiB) and everything else.
    pub client: Client,
    /// Uploads in one streamed `PUT`.
    pub monolithic: Client,
    retries: u32,
    retry_delay: Duration,
}

impl Remote {
    /// Connects to the repository of `display` and authenticates for `operation`.
    pub(crate) async fn open(
        display: &str,
        config: &RegistryConfig,
        operation: RegistryOperation,
    ) -> Result<Remote, ExportError> {
        let mut reference = parse_reference(display)?;
        if let Some(mirror) = config.mirrors.get(reference.registry()) {
            reference.set_mirror_registry(mirror.clone());
        }
        let host = reference.resolve_registry().to_owned();
        let plain_http = plain_http_allowed(&host, &config.insecure);
        let client_config = |monolithic: bool| ClientConfig {
            protocol: if plain_http {
                ClientProtocol::HttpsExcept(vec![host.clone()])
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: monolithic,
            // Indexes are resolved by the pull itself, which names the platforms on offer.
            platform_resolver: None,
            read_timeout: Some(config.timeout),
            connect_timeout: Some(config.timeout.min(Duration::from_secs(30))),
            max_concurrent_upload: config.max_parallel.max(1),
            max_concurrent_download: config.max_parallel.max(1),
            user_agent: concat!("lamina/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let remote = Remote {
            display: display.to_owned(),
            client: client_from(client_config(false), &reference, display)?,
            monolithic: client_from(client_config(true), &reference, display)?,
            reference,
            retries: config.retries,
            retry_delay: config.retry_delay,
        };
        let credentials =
            credentials_for(config.credentials.as_ref(), &host, config.docker_config)?;
        let auth = credentials.to_auth();
        // Both clients need the token: the push one also checks and mounts blobs, which
        // `oci-client` authorises as pulls.
        let mut ops = vec![RegistryOperation::Pull];
        if operation == RegistryOperation::Push {
            ops.push(RegistryOperation::Push);
        }
        for client in [&remote.client, &remote.monolithic] {
            for op in &ops {
                remote
                    .retry("authenticate", || async {
                        client
                            .auth(&remote.reference, &auth, *op)
                            .await
                            .map_err(Fault::Oci)
                    })
                    .await?;
            }
        }
        Ok(remote)
    }

    /// The registry host requests go to.
    pub(crate) fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Runs `op` until it succeeds, fails for good, or the retries run out (exponential
    /// backoff from the configured delay).
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ExportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(fault) if fault.retryable() && attempt < self.retries => {
                    let delay = self
                        .retry_delay
                        .saturating_mul(1 << attempt.min(16))
                        .min(MAX_BACKOFF);
                    attempt += 1;
                    tracing::warn!(
                        reference = %self.display,
                        what,
                        attempt,
                        ?delay,
                        error = %fault.describe(),
                        "registry request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(fault) => return Err(self.error(fault, what)),
            }
        }
    }

    /// Turns a failure into the error the user sees.
    pub(crate) fn error(&self, fault: Fault, what: &str) -> ExportError {
        let registry = self.reference.resolve_registry().to_owned();
        let reference = self.display.clone();
        let operation = if what.starts_with("push") || what.starts_with("upload") {
            "push"
        } else {
            "pull"
        };
        match fault.status() {
            Some(401) => {
                return ExportError::Unauthorized {
                    registry,
                    reference,
                };
            }
            Some(403) => {
                return ExportError::Forbidden {
                    registry,
                    reference,
                    operation,
                };
            }
            Some(404) => {
                return ExportError::RemoteNotFound {
                    registry,
                    reference,
                    what: what.to_owned(),
                };
            }
            Some(429) => {
                return ExportError::RateLimited {
                    registry,
                    reference,
                };
            }
            _ => {}
        }
        if fault.is_digest_mismatch() || matches!(fault, Fault::Stream(_)) {
            // Bodies that arrived wrong or cut short: nothing of them was kept.
            return ExportError::BlobRejected {
                what: what.to_owned(),
                reason: fault.describe(),
                reference,
            };
        }
        match fault {
            Fault::Export(e) => e,
            Fault::Oci(OciDistributionError::AuthenticationFailure(_)) => {
                ExportError::Unauthorized {
                    registry,
                    reference,
                }
            }
            fault => ExportError::Registry {
                registry,
                reference,
                reason: format!("{what}: {}", fault.describe()),
            },
        }
    }
}

fn client_from(
    config: ClientConfig,
    reference: &Reference,
    display: &str,
) -> Result<Client, ExportError> {
    Client::try_from(config).map_err(|e| ExportError::Registry {
        registry: reference.resolve_registry().to_owned(),
        reference: display.to_owned(),
        reason: format!("cannot set up the http client: {e}"),
    })
}

/// A failed registry operation, before it becomes an [`ExportError`].
#[derive(Debug)]
pub(crate) enum Fault {
    /// `oci-client` failed.
    Oci(OciDistributionError),
    /// A streamed body failed (cut short, reset, or a digest mismatch at its end).
    Stream(std::io::Error),
    /// Already decided: not retried, shown as is.
    Export(ExportError),
}

impl From<ExportError> for Fault {
    fn from(e: ExportError) -> Self {
        Fault::Export(e)
    }
}

impl Fault {
    /// The HTTP status behind the failure, if one is known.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Fault::Oci(OciDistributionError::ServerError { code, .. }) => Some(*code),
            Fault::Oci(OciDistributionError::UnauthorizedError { .. }) => Some(401),
            Fault::Oci(OciDistributionError::RequestError(e)) => e.status().map(|s| s.as_u16()),
            Fault::Oci(OciDistributionError::RegistryError { envelope, .. }) => {
                envelope.errors.iter().find_map(|e| match e.code {
                    OciErrorCode::Unauthorized => Some(401),
                    OciErrorCode::Denied => Some(403),
                    OciErrorCode::Toomanyrequests => Some(429),
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::NotFound => Some(404),
                    _ => None,
                })
            }
            Fault::Oci(OciDistributionError::ImageManifestNotFoundError(_)) => Some(404),
            _ => None,
        }
    }

    /// Whether another try may succeed.
    pub(crate) fn retryable(&self) -> bool {
        if let Some(code) = self.status() {
            return code == 408 || code == 429 || code >= 500;
        }
        match self {
            Fault::Oci(OciDistributionError::RequestError(e)) => {
                e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
            }
            Fault::Oci(OciDistributionError::IoError(e)) | Fault::Stream(e) => !is_digest_error(e),
            _ => false,
        }
    }

    /// Whether the registry (or a proxy before it) refused an upload as one request while it
    /// may take the same blob in chunks: body too large, or the method, the length or the
    /// body's type not accepted. Not 400: registries answer a wrong digest so.
    pub(crate) fn refuses_one_request(&self) -> bool {
        matches!(self.status(), Some(405 | 411 | 413 | 415 | 501))
    }

    /// A one-line description without secrets (URLs carry no credentials here).
    pub(crate) fn describe(&self) -> String {
        match self {
            Fault::Oci(OciDistributionError::ServerError { code, message, .. }) => {
                let message = message.trim();
                let message: String = message.chars().take(300).collect();
                format!("http {code}: {message}")
            }
            Fault::Oci(e) => error_chain(e),
            Fault::Stream(e) => error_chain(e),
            Fault::Export(e) => e.to_string(),
        }
    }

    /// Whether the failure is a content digest mismatch.
    pub(crate) fn is_digest_mismatch(&self) -> bool {
        match self {
            Fault::Oci(OciDistributionError::DigestError(_)) => true,
            Fault::Oci(OciDistributionError::IoError(e)) | Fault::Stream(e) => is_digest_error(e),
            _ => false,
        }
    }
}

fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<DigestError>().is_some())
}

/// `error: cause: cause`, so transport failures say what actually broke.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("localhost:8080"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("docker.io"));
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        let insecure = vec!["registry.lan:5000".to_owned()];
        assert!(plain_http_allowed("127.0.0.1:5000", &[]));
        assert!(plain_http_allowed("registry.lan:5000", &insecure));
        assert!(!plain_http_allowed("registry.lan:5001", &insecure));
        assert!(!plain_http_allowed("registry.lan", &insecure));
        assert!(!plain_http_allowed("docker.io", &insecure));
    }

    #[test]
    fn statuses_decide_retries() {
        let server = |code| {
            Fault::Oci(OciDistributionError::ServerError {
                code,
                url: "http://x/v2/".into(),
                message: String::new(),
            })
        };
        assert!(server(500).retryable());
        assert!(server(503).retryable());
        assert!(server(429).retryable());
        assert!(!server(404).retryable());
        assert!(!server(401).retryable());
        let digest = Fault::Stream(std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        }));
        assert!(!digest.retryable());
        assert!(digest.is_digest_mismatch());
        let cut = Fault::Stream(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "cut",
        ));
        assert!(cut.retryable());
        assert!(!cut.refuses_one_request());
    }

    #[test]
    fn refused_single_requests_are_told_from_other_failures() {
        let server = |code| {
            Fault::Oci(OciDistributionError::ServerError {
                code,
                url: "http://x/v2/app/blobs/uploads/1".into(),
                message: String::new(),
            })
        };
        for code in [405, 411, 413, 415, 501] {
            assert!(server(code).refuses_one_request(), "{code}");
        }
        for code in [400, 401, 403, 404, 429, 500, 503] {
            assert!(!server(code).refuses_one_request(), "{code}");
        }
    }

    #[test]
    fn references_take_docker_defaults() {
        let r = parse_reference("alpine").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        let r = parse_reference("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        assert!(matches!(
            parse_reference("UPPER/Case"),
            Err(ExportError::InvalidReference { .. })
        ));
    }
}
