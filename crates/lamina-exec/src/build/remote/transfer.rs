//! One download over http(s), bounded: an attempt waits at most [`Limits::timeout`] to
//! connect and between two reads (so a stalled server fails within it), and connection
//! errors, timeouts, bodies cut short and 5xx/429 answers are tried again, up to
//! [`Limits::attempts`] in all with a short backoff. Other answers (4xx) and certificate
//! failures are final at once. Every error is one line naming the URL.

use std::error::Error as StdError;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// How long and how often a download is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// The longest wait to connect, and between two reads.
    pub timeout: Duration,
    /// Attempts in all (at least 1).
    pub attempts: u32,
}

pub(super) enum Fault {
    /// The server could not be reached (a kept copy may stand in).
    Unreachable(String),
    Other(String),
}

pub(super) struct Fetched {
    pub file: tempfile::NamedTempFile,
    pub sha256: String,
    pub size: u64,
    pub blake3: [u8; 32],
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt; `unreachable` when no answer came at all.
    Transient { cause: String, unreachable: bool },
    /// Another attempt would fail the same way.
    Final(String),
}

/// GETs `url` into a new file under `work_dir`, conditional on `validators` (ETag,
/// Last-Modified) when given; `None` for a 304.
pub(super) async fn download(
    url: &str,
    work_dir: &Path,
    validators: Option<(Option<String>, Option<String>)>,
    limits: Limits,
) -> Result<Option<Fetched>, Fault> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("lamina/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(limits.timeout)
        .read_timeout(limits.timeout)
        .build()
        .map_err(|e| Fault::Other(format!("cannot download {url}: {}", root_cause(&e))))?;
    let attempts = limits.attempts.max(1);
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A fresh file each time: what a failed attempt wrote is dropped with it.
        // In `tmp/`, named with this process's owner token: a killed download is reclaimed.
        let token = crate::owner::claim(work_dir).map_err(|e| Fault::Other(e.to_string()))?;
        let tmp = work_dir.join("tmp");
        let _ = std::fs::create_dir_all(&tmp);
        let file = tempfile::Builder::new()
            .prefix(&format!("download-{token}."))
            .tempfile_in(&tmp)
            .map_err(|e| {
                Fault::Other(format!(
                    "cannot create a file in {}: {e}",
                    work_dir.display()
                ))
            })?;
        match once(&client, url, file, validators.clone(), limits.timeout).await {
            Ok(fetched) => return Ok(fetched),
            Err(Failure::Final(why)) => {
                return Err(Fault::Other(format!("cannot download {url}: {why}")));
            }
            Err(Failure::Transient { cause, unreachable }) if attempt >= attempts => {
                let why = if attempts == 1 {
                    format!("cannot download {url}: {cause}")
                } else {
                    format!("cannot download {url} after {attempts} attempts: {cause}")
                };
                return Err(if unreachable {
                    Fault::Unreachable(why)
                } else {
                    Fault::Other(why)
                });
            }
            Err(Failure::Transient { cause, .. }) => {
                tracing::debug!("download of {url}, attempt {attempt}: {cause}; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
        }
    }
}

/// One attempt.
async fn once(
    client: &reqwest::Client,
    url: &str,
    mut file: tempfile::NamedTempFile,
    validators: Option<(Option<String>, Option<String>)>,
    timeout: Duration,
) -> Result<Option<Fetched>, Failure> {
    let mut get = client.get(url);
    if let Some((etag, last_modified)) = validators {
        if let Some(etag) = etag {
            get = get.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(date) = last_modified {
            get = get.header(reqwest::header::IF_MODIFIED_SINCE, date);
        }
    }
    let response = get.send().await.map_err(|e| failure(&e, timeout))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !status.is_success() {
        let answer = format!("the server answered {status}");
        return Err(
            if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                Failure::Transient {
                    cause: answer,
                    unreachable: false,
                }
            } else {
                Failure::Final(answer)
            },
        );
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let mut response = response;
    let mut sha = Sha256::new();
    let mut blake = blake3::Hasher::new();
    let mut size = 0u64;
    let local = |e: std::io::Error| Failure::Final(format!("cannot write the download: {e}"));
    while let Some(chunk) = response.chunk().await.map_err(|e| failure(&e, timeout))? {
        sha.update(&chunk);
        blake.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).map_err(local)?;
    }
    file.flush().map_err(local)?;
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(Fetched {
        file,
        sha256: format!("sha256:{hex}"),
        size,
        blake3: *blake.finalize().as_bytes(),
        etag,
        last_modified,
    }))
}

/// What a failed request or body read means: a certificate the host does not trust is
/// final; no answer in time, no connection, or a body cut short are worth another try.
fn failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    if let Some(tls) = chain(e).find_map(|e| e.downcast_ref::<rustls::Error>()) {
        return Failure::Final(certificate_advice(tls));
    }
    if e.is_timeout() {
        return Failure::Transient {
            cause: format!(
                "the server sent nothing for {}",
                humantime::format_duration(timeout)
            ),
            unreachable: true,
        };
    }
    if e.is_builder() || e.is_redirect() {
        return Failure::Final(root_cause(e));
    }
    if e.is_connect() {
        return Failure::Transient {
            cause: format!("cannot reach the server: {}", root_cause(e)),
            unreachable: true,
        };
    }
    let cause = if e.is_body() || e.is_decode() {
        format!("the transfer broke off: {}", root_cause(e))
    } else {
        root_cause(e)
    };
    Failure::Transient {
        cause,
        unreachable: false,
    }
}

/// The line for a TLS failure: what is wrong with the certificate and what to do.
fn certificate_advice(tls: &rustls::Error) -> String {
    use rustls::CertificateError;
    match tls {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the server's certificate is not trusted by this host ({tls}); add the CA that \
             signed it to the host's CA store (e.g. copy it to /usr/local/share/ca-certificates/ \
             and run update-ca-certificates)"
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the server's certificate is not accepted ({tls})")
        }
        other => format!("the TLS handshake failed ({other})"),
    }
}

/// `e` and its sources, looking inside I/O errors (whose `source()` skips the error they
/// wrap).
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static))
                .or_else(|| current.source()),
            None => current.source(),
        };
        Some(current)
    })
}

/// The innermost message of `e`'s chain: reqwest's own lines repeat the URL and wrap the
/// real cause several times over.
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    chain(e)
        .last()
        .map(|inner| inner.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cause_inside_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let found = chain(&io).find_map(|e| e.downcast_ref::<rustls::Error>());
        assert!(found.is_some());
        assert_eq!(root_cause(&io), "invalid peer certificate: UnknownIssuer");
        let advice = certificate_advice(found.unwrap());
        assert!(advice.contains("not trusted") && advice.contains("update-ca-certificates"));
    }
}
