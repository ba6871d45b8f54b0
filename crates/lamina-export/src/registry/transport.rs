//! One registry repository as seen by a pull or push: the `oci-client` clients, the
//! credentials, retries and the mapping of HTTP failures to [`ExportError`]s.
//!
//! `oci-client` does the HTTP and the token flow but neither retries nor tells 429 from
//! other client errors in a typed way, so both live here: a [`Fault`] says whether a
//! failure is worth another try (5xx, 408, 429, timeouts, dropped connections, cut bodies)
//! and what to tell the user when it is not.
//!
//! Chunked uploads are sent from here too (`begin_upload`, `upload_chunk`, `upload_status`,
//! `finish_upload`): `oci-client` keeps its upload session to itself, so a cut `PATCH` could
//! only start the blob over. They go through the same HTTP client `oci-client` is built on,
//! with the token it obtained.

use std::future::Future;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::{Method, StatusCode, Url};

use super::RegistryConfig;
use super::auth::credentials_for;
use crate::ExportError;

/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Parses `reference` with docker's defaults (`docker.io`, `library/`, `:latest`).
/// Validated and normalised by `lamina-types` first, so a pull or push names exactly the
/// repository the store's key names (and a mirror is chosen by the canonical registry host).
pub(crate) fn parse_reference(reference: &str) -> Result<Reference, ExportError> {
    crate::image::image_name(reference)?
        .to_string()
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
    /// Resumable chunked uploads.
    http: reqwest::Client,
    /// `http` or `https`, as `oci-client` reaches the registry.
    scheme: &'static str,
    /// What authorises `http`'s requests to the registry.
    upload_auth: UploadAuth,
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
        let http = reqwest::Client::builder()
            .user_agent(concat!("lamina/", env!("CARGO_PKG_VERSION")))
            .read_timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(30)))
            .build()
            .map_err(|e| setup_error(&reference, display, &e))?;
        let mut remote = Remote {
            display: display.to_owned(),
            client: client_from(client_config(false), &reference, display)?,
            monolithic: client_from(client_config(true), &reference, display)?,
            http,
            scheme: if plain_http { "http" } else { "https" },
            upload_auth: UploadAuth::Anonymous,
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
        let mut push_token = None;
        for client in [&remote.client, &remote.monolithic] {
            for op in &ops {
                let token = remote
                    .retry("authenticate", || async {
                        client
                            .auth(&remote.reference, &auth, *op)
                            .await
                            .map_err(Fault::Oci)
                    })
                    .await?;
                if *op == RegistryOperation::Push {
                    push_token = token;
                }
            }
        }
        // `oci-client` answers a registry that asked for basic auth with no token.
        remote.upload_auth = match (push_token, auth) {
            (Some(token), _) => UploadAuth::Bearer(token),
            (None, RegistryAuth::Basic(user, password)) => UploadAuth::Basic(user, password),
            _ => UploadAuth::Anonymous,
        };
        Ok(remote)
    }

    /// The registry host requests go to.
    pub(crate) fn registry(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Puts a manifest under this remote's reference, retried as every request is (`what`
    /// names it in errors).
    pub(crate) async fn put_manifest(
        &self,
        what: &str,
        body: bytes::Bytes,
        content_type: http::HeaderValue,
    ) -> Result<(), ExportError> {
        self.retry(what, || async {
            self.client
                .push_manifest_raw(&self.reference, body.clone(), content_type.clone())
                .await
                .map(drop)
                .map_err(Fault::Oci)
        })
        .await
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
    Client::try_from(config).map_err(|e| setup_error(reference, display, &e))
}

fn setup_error(reference: &Reference, display: &str, e: &dyn std::fmt::Display) -> ExportError {
    ExportError::Registry {
        registry: reference.resolve_registry().to_owned(),
        reference: display.to_owned(),
        reason: format!("cannot set up the http client: {e}"),
    }
}

/// Credentials for the upload requests sent without `oci-client`.
enum UploadAuth {
    Anonymous,
    Bearer(String),
    Basic(String, String),
}

/// The chunked upload protocol of the distribution spec, on `Remote::http`.
impl Remote {
    /// A request to `url`, authorised when it goes to the registry itself: an upload
    /// `Location` may point elsewhere (a storage bucket), and credentials must not follow.
    fn upload_request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        // Same host and port, and no drop from https to http.
        let own = Url::parse(&format!("{}://{}", self.scheme, self.registry())).is_ok_and(|r| {
            r.host_str() == url.host_str()
                && r.port_or_known_default() == url.port_or_known_default()
                && (r.scheme() == url.scheme() || url.scheme() == "https")
        });
        let request = self.http.request(method, url);
        match &self.upload_auth {
            _ if !own => request,
            UploadAuth::Anonymous => request,
            UploadAuth::Bearer(token) => request.bearer_auth(token),
            UploadAuth::Basic(user, password) => request.basic_auth(user, Some(password)),
        }
    }

    /// Opens an upload session (`POST`); its location.
    pub(crate) async fn begin_upload(&self) -> Result<String, Fault> {
        let url = format!(
            "{}://{}/v2/{}/blobs/uploads/",
            self.scheme,
            self.registry(),
            self.reference.repository()
        );
        let url = parse_url(&url)?;
        let response = self
            .upload_request(Method::POST, url)
            .header(http::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(request_fault)?;
        location(response, StatusCode::ACCEPTED).await
    }

    /// Sends `chunk` as bytes `offset..` of the upload at `at` (`PATCH`); the location for
    /// the next request.
    pub(crate) async fn upload_chunk(
        &self,
        at: &str,
        offset: u64,
        chunk: bytes::Bytes,
    ) -> Result<String, Fault> {
        let end = offset + chunk.len() as u64 - 1;
        let response = self
            .upload_request(Method::PATCH, parse_url(at)?)
            .header(http::header::CONTENT_RANGE, format!("{offset}-{end}"))
            .header(http::header::CONTENT_LENGTH, chunk.len())
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(chunk)
            .send()
            .await
            .map_err(request_fault)?;
        location(response, StatusCode::ACCEPTED).await
    }

    /// How much of the upload at `at` the registry holds (`GET`, "Resuming an upload" in
    /// the distribution spec): the location to go on with and the next byte it wants, or
    /// `None` when the session is gone (404) or the registry does not say (no `Range`).
    pub(crate) async fn upload_status(&self, at: &str) -> Result<Option<(String, u64)>, Fault> {
        let response = self
            .upload_request(Method::GET, parse_url(at)?)
            .send()
            .await
            .map_err(request_fault)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let range = response
            .headers()
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(next_byte);
        let next = location(response, StatusCode::NO_CONTENT).await?;
        Ok(range.map(|offset| (next, offset)))
    }

    /// Closes the upload at `at` as the blob `digest` (`PUT`).
    pub(crate) async fn finish_upload(&self, at: &str, digest: &str) -> Result<(), Fault> {
        let mut url = parse_url(at)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let response = self
            .upload_request(Method::PUT, url)
            .header(http::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(request_fault)?;
        location(response, StatusCode::CREATED).await.map(drop)
    }
}

/// The next byte wanted after `Range: 0-<last>`. `0-0` is what a registry answers for an
/// empty upload as well as for one byte, so it counts as nothing held.
fn next_byte(range: &str) -> Option<u64> {
    let (start, last) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    let last: u64 = last.trim().parse().ok()?;
    (start.trim() == "0").then_some(if last == 0 { 0 } else { last + 1 })
}

fn parse_url(url: &str) -> Result<Url, Fault> {
    Url::parse(url).map_err(|e| Fault::Oci(OciDistributionError::UrlParseError(e.to_string())))
}

fn request_fault(e: reqwest::Error) -> Fault {
    Fault::Oci(OciDistributionError::RequestError(e))
}

/// The `Location` of a response with status `expected` (relative ones resolved against the
/// request), or the failure the response stands for.
async fn location(response: reqwest::Response, expected: StatusCode) -> Result<String, Fault> {
    let status = response.status();
    if status != expected {
        let url = response.url().to_string();
        let message = response.text().await.unwrap_or_default();
        return Err(Fault::Oci(if status.is_success() {
            OciDistributionError::SpecViolationError(format!(
                "expected http {expected}, got {status} from {url}"
            ))
        } else {
            OciDistributionError::ServerError {
                url,
                code: status.as_u16(),
                message,
            }
        }));
    }
    let Some(header) = response.headers().get(http::header::LOCATION) else {
        // Only a chunk's answer must say where the next one goes; otherwise the request's
        // own URL will do.
        if expected != StatusCode::ACCEPTED {
            return Ok(response.url().to_string());
        }
        return Err(Fault::Oci(OciDistributionError::RegistryNoLocationError));
    };
    let header = header
        .to_str()
        .map_err(|e| Fault::Oci(OciDistributionError::UrlParseError(e.to_string())))?;
    response
        .url()
        .join(header)
        .map(String::from)
        .map_err(|e| Fault::Oci(OciDistributionError::UrlParseError(e.to_string())))
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
    fn upload_ranges_give_the_next_byte() {
        assert_eq!(next_byte("0-4194303"), Some(4 << 20));
        assert_eq!(next_byte("bytes=0-9"), Some(10));
        assert_eq!(next_byte("0-0"), Some(0));
        assert_eq!(next_byte("5-9"), None);
        assert_eq!(next_byte("garbage"), None);
        assert_eq!(next_byte("0-"), None);
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
        for bad in ["UPPER/Case", "BAD NAME", ":", "x@sha256:zz"] {
            assert!(
                matches!(parse_reference(bad), Err(ExportError::InvalidReference { ref reference, .. }) if reference == bad),
                "{bad}"
            );
        }
    }
}
