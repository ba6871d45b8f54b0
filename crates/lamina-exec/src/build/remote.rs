//! ADD of an http(s) URL: the file is downloaded at build time (TLS trusts the host's CA
//! store, as the registry client does), checked against `--checksum=sha256:<hex>` when
//! given, and then copied as a local file would be, with mode 0600; a destination ending
//! in `/` gets the file name from the URL's path. The step key holds the checksum when
//! given (a hit downloads nothing), else the sha256 of the content (every build downloads
//! to learn it). Not extracted unless `--unpack=true`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use lamina_spec::Copy;
use lamina_spec::inputs::{EntryKind, SourceMatch, TreeEntry};
use sha2::{Digest, Sha256};

/// A downloaded file, deleted when dropped.
#[derive(Debug)]
pub(crate) struct Download {
    file: tempfile::TempPath,
    /// `sha256:<hex>` of the content.
    pub sha256: String,
    size: u64,
    blake3: [u8; 32],
}

impl Download {
    /// The download as the one input of the step, named after the URL's last path segment.
    pub(crate) fn as_match(&self, url: &str) -> SourceMatch {
        let name = file_name(url);
        SourceMatch {
            source: 0,
            path: url.to_string(),
            entries: vec![TreeEntry {
                name,
                kind: EntryKind::File {
                    size: self.size,
                    hash: self.blake3,
                },
                mode: 0o600,
                host_path: self.file.to_path_buf(),
            }],
        }
    }
}

/// Whether `source` is a git repository given as an https URL (`….git`, `….git#ref`).
fn is_git_url(source: &str) -> bool {
    let path = source.split('#').next().unwrap_or(source);
    path.ends_with(".git") || path.ends_with(".git/")
}

/// The http(s) URL source of an ADD, if it has one that is not a git repository.
pub(crate) fn http_source(copy: &Copy) -> Option<&str> {
    if !copy.add || copy.from.is_some() {
        return None;
    }
    copy.sources
        .iter()
        .map(String::as_str)
        .find(|s| (s.starts_with("http://") || s.starts_with("https://")) && !is_git_url(s))
}

/// Why an ADD with an http(s) source cannot be built (it has other sources too, or a
/// checksum of another kind), if it cannot.
pub(crate) fn http_refusal(copy: &Copy) -> Option<String> {
    let url = http_source(copy)?;
    if copy.sources.len() > 1 {
        return Some(format!(
            "ADD of {url} with other sources is not supported yet: give the URL its own ADD"
        ));
    }
    match copy.checksum.as_deref() {
        Some(sum) if expected_sha256(sum).is_none() => Some(format!(
            "--checksum={sum} is not sha256:<64 hex digits>, the only checksum supported"
        )),
        _ => None,
    }
}

fn expected_sha256(sum: &str) -> Option<&str> {
    let hex = sum.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The last segment of the URL's path (`index.html` for an empty one, as Docker names it).
fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    let name = path
        .split_once('/')
        .map_or("", |(_, p)| p)
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if name.is_empty() {
        "index.html".to_string()
    } else {
        name.to_string()
    }
}

/// Downloads `url` into a temporary file under `dir`, verified against `checksum`
/// (`sha256:<hex>`) when given; errors name the URL.
pub(crate) fn download(url: &str, checksum: Option<&str>, dir: &Path) -> Result<Download, String> {
    let file = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
    // The build runs on a blocking thread: the download gets its own runtime, on its own
    // thread, so it works whether or not the caller is inside one.
    let (file, sha256, size, blake3) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the download of {url}: {e}"))?;
                runtime.block_on(fetch(url, file))
            })
            .join()
            .unwrap_or_else(|_| Err(format!("the download of {url} panicked")))
    })?;
    if let Some(sum) = checksum {
        let expected = expected_sha256(sum)
            .ok_or_else(|| format!("--checksum={sum} is not sha256:<64 hex digits>"))?;
        if !sha256.eq_ignore_ascii_case(&format!("sha256:{expected}")) {
            return Err(format!(
                "{url} does not match --checksum={sum}: its content is {sha256}; nothing was stored"
            ));
        }
    }
    Ok(Download {
        file: file.into_temp_path(),
        sha256,
        size,
        blake3,
    })
}

async fn fetch(
    url: &str,
    mut file: tempfile::NamedTempFile,
) -> Result<(tempfile::NamedTempFile, String, u64, [u8; 32]), String> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot download {url}: {e}");
    let client = reqwest::Client::builder()
        .user_agent(concat!("lamina/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| failed(&e))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| failed(&e))?;
    let mut sha = Sha256::new();
    let mut blake = blake3::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(&e))? {
        sha.update(&chunk);
        blake.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).map_err(|e| failed(&e))?;
    }
    file.flush().map_err(|e| failed(&e))?;
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((
        file,
        format!("sha256:{hex}"),
        size,
        *blake.finalize().as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_git_urls_and_checksums() {
        assert_eq!(file_name("https://h/a/b/tool.tar.gz?x=1#f"), "tool.tar.gz");
        assert_eq!(file_name("https://h/"), "index.html");
        assert_eq!(file_name("http://h"), "index.html");
        assert!(is_git_url("https://h/org/repo.git#v1:sub"));
        assert!(!is_git_url("https://h/org/repo.tgz"));
        assert!(expected_sha256(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(expected_sha256("sha256:abc").is_none());
        assert!(expected_sha256(&format!("sha512:{}", "a".repeat(64))).is_none());
    }
}
