//! ADD of an http(s) URL: the file is downloaded at build time (TLS trusts the host's CA
//! store, as the registry client does), checked against `--checksum=sha256:<hex>` when
//! given, and then copied as a local file would be, with mode 0600; a destination ending
//! in `/` gets the file name from the URL's path. The step key holds the checksum when
//! given (a hit makes no request), else the sha256 of the content, learnt by revalidating
//! the copy kept from the last download (a 304 costs no transfer). Downloads are kept as
//! store blobs, named by a record per URL in `<work_dir>/url-cache-v1` (a blob removed by
//! GC means a fresh download). Not extracted unless `--unpack=true`. The file's mtime is
//! the `Last-Modified` time (the epoch without one), as BuildKit sets it; it enters the
//! step key with the content, and the layer's mtime clamp applies to it as to any file.
//! Each download is bounded (see `transfer`): [`ExecConfig::download_timeout`] per wait,
//! [`ExecConfig::download_attempts`] tries.

mod transfer;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lamina_spec::Copy;
use lamina_spec::inputs::{EntryKind, SourceMatch, TreeEntry};
use lamina_store::{BlobKind, Digest, Store};
use serde::{Deserialize, Serialize};

use super::ExecConfig;
use transfer::{Fault, Limits};

/// A downloaded file: a temporary file, or the copy kept in the store.
#[derive(Debug)]
pub(crate) struct Download {
    path: PathBuf,
    _temp: Option<tempfile::TempPath>,
    /// `sha256:<hex>` of the content.
    pub sha256: String,
    size: u64,
    blake3: [u8; 32],
    /// The server's `Last-Modified` header, as sent.
    last_modified: Option<String>,
    /// Set when the server could not be reached and the kept copy was used: why.
    pub offline: Option<String>,
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
                host_path: self.path.clone(),
            }],
        }
    }

    /// The file's mtime, as BuildKit sets it: the `Last-Modified` time, else the epoch.
    pub(crate) fn modified(&self) -> SystemTime {
        self.last_modified
            .as_deref()
            .and_then(|date| httpdate::parse_http_date(date).ok())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// What identifies the download in a step key when no checksum pins it: the content
    /// and, as BuildKit keys it, the `Last-Modified` time that becomes the file's mtime.
    pub(crate) fn identity(&self) -> String {
        match &self.last_modified {
            Some(date) => format!("{} {date}", self.sha256),
            None => self.sha256.clone(),
        }
    }
}

/// What is remembered of a URL's last download: its validators and the blob holding it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    sha256: String,
    size: u64,
    blake3: String,
}

fn kept_path(work_dir: &Path, url: &str) -> PathBuf {
    let name = blake3::hash(url.as_bytes()).to_hex();
    work_dir.join("url-cache-v1").join(format!("{name}.json"))
}

/// The kept copy of `url`, if its record and its blob are both still there.
fn kept(store: &Store, work_dir: &Path, url: &str) -> Option<(Kept, PathBuf)> {
    let text = std::fs::read(kept_path(work_dir, url)).ok()?;
    let kept: Kept = serde_json::from_slice(&text).ok()?;
    let digest = Digest::parse(&kept.sha256).ok()?;
    let info = store.stat(&digest).ok()??;
    (kept.url == url).then(|| (kept.clone(), store.blob_path(&info)))
}

impl Kept {
    fn download(self, path: PathBuf, offline: Option<String>) -> Option<Download> {
        let mut blake3 = [0u8; 32];
        for (i, byte) in blake3.iter_mut().enumerate() {
            *byte = u8::from_str_radix(self.blake3.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Download {
            path,
            _temp: None,
            sha256: self.sha256,
            size: self.size,
            blake3,
            last_modified: self.last_modified,
            offline,
        })
    }
}

/// The mtime of `url`'s download as `matches` holds it (see [`Download::as_match`]), from
/// the record kept with it: a step whose download was made before it ran finds it there.
/// The epoch when the record is gone or holds other content.
pub(crate) fn kept_modified(work_dir: &Path, url: &str, matches: &[SourceMatch]) -> SystemTime {
    let content = matches
        .first()
        .and_then(|m| m.entries.first())
        .and_then(|entry| match entry.kind {
            EntryKind::File { hash, .. } => Some(hash),
            _ => None,
        });
    std::fs::read(kept_path(work_dir, url))
        .ok()
        .and_then(|text| serde_json::from_slice::<Kept>(&text).ok())
        .filter(|kept| kept.url == url)
        .and_then(|kept| kept.download(PathBuf::new(), None))
        .filter(|download| Some(download.blake3) == content)
        .map_or(SystemTime::UNIX_EPOCH, |download| download.modified())
}

/// The http(s) URL source of an ADD, if it has one that is not a git repository.
pub(crate) fn http_source(copy: &Copy) -> Option<&str> {
    if !copy.add || copy.from.is_some() {
        return None;
    }
    copy.sources.iter().map(String::as_str).find(|s| {
        (s.starts_with("http://") || s.starts_with("https://")) && !super::git::is_git_source(s)
    })
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

/// The content of `url`, verified against `checksum` (`sha256:<hex>`) when given; errors
/// name the URL. A copy kept from an earlier build is used without a request when it has
/// the checksum, and otherwise revalidated (`If-None-Match`, `If-Modified-Since`): a 304
/// uses it, new content replaces it; when the server cannot be reached the kept copy is
/// used and [`Download::offline`] says why.
pub(crate) fn fetch(
    url: &str,
    checksum: Option<&str>,
    store: &Store,
    config: &ExecConfig,
) -> Result<Download, String> {
    let work_dir = config.work_dir.as_path();
    let limits = Limits {
        timeout: config.download_timeout,
        attempts: config.download_attempts,
    };
    let expected = match checksum {
        Some(sum) => Some(
            expected_sha256(sum)
                .map(|hex| format!("sha256:{}", hex.to_ascii_lowercase()))
                .ok_or_else(|| format!("--checksum={sum} is not sha256:<64 hex digits>"))?,
        ),
        None => None,
    };
    let kept = kept(store, work_dir, url);
    if let (Some(expected), Some((record, path))) = (&expected, &kept)
        && record.sha256 == *expected
        && let Some(download) = record.clone().download(path.clone(), None)
    {
        return Ok(download);
    }
    let validators = kept
        .as_ref()
        .map(|(k, _)| (k.etag.clone(), k.last_modified.clone()));
    // The build runs on a blocking thread: the download gets its own runtime, on its own
    // thread, so it works whether or not the caller is inside one.
    let outcome = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Fault::Other(format!("cannot start the download of {url}: {e}"))
                    })?;
                runtime.block_on(transfer::download(url, work_dir, validators, limits))
            })
            .join()
            .unwrap_or_else(|_| Err(Fault::Other(format!("the download of {url} panicked"))))
    });
    let fetched = match outcome {
        Ok(Some(fetched)) => fetched,
        Ok(None) | Err(Fault::Unreachable(_)) if kept.is_some() => {
            let offline = match outcome {
                Err(Fault::Unreachable(why)) => Some(why),
                _ => None,
            };
            let (record, path) = kept.expect("checked above");
            let download = record
                .download(path, offline)
                .ok_or_else(|| format!("the kept copy of {url} is unreadable"))?;
            return verified(download, url, checksum, expected.as_deref());
        }
        Ok(None) => {
            return Err(format!(
                "{url} answered 304 to a request without validators"
            ));
        }
        Err(Fault::Unreachable(why) | Fault::Other(why)) => return Err(why),
    };
    let download = Download {
        path: fetched.file.path().to_path_buf(),
        sha256: fetched.sha256.clone(),
        size: fetched.size,
        blake3: fetched.blake3,
        last_modified: fetched.last_modified.clone(),
        offline: None,
        _temp: None,
    };
    let download = verified(download, url, checksum, expected.as_deref())?;
    // Keep it for the next build: the blob, then the record naming it (atomically).
    let temp = fetched.file.into_temp_path();
    let keep = || -> Result<(), String> {
        store
            .put_file(BlobKind::Other, &temp)
            .map_err(|e| e.to_string())?;
        let record = Kept {
            url: url.to_string(),
            etag: fetched.etag,
            last_modified: fetched.last_modified,
            sha256: fetched.sha256,
            size: fetched.size,
            blake3: fetched.blake3.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let path = kept_path(work_dir, url);
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut out = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
        serde_json::to_writer(&mut out, &record).map_err(|e| e.to_string())?;
        out.persist(&path).map_err(|e| e.to_string())?;
        Ok(())
    };
    if let Err(e) = keep() {
        // The build goes on; only the next one's revalidation is lost.
        tracing::warn!("cannot keep the download of {url}: {e}");
    }
    Ok(Download {
        _temp: Some(temp),
        ..download
    })
}

fn verified(
    download: Download,
    url: &str,
    checksum: Option<&str>,
    expected: Option<&str>,
) -> Result<Download, String> {
    match (checksum, expected) {
        (Some(sum), Some(expected)) if download.sha256 != expected => Err(format!(
            "{url} does not match --checksum={sum}: its content is {}; nothing was stored",
            download.sha256
        )),
        _ => Ok(download),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_downloads_and_checksums() {
        assert_eq!(file_name("https://h/a/b/tool.tar.gz?x=1#f"), "tool.tar.gz");
        assert_eq!(file_name("https://h/"), "index.html");
        assert_eq!(file_name("http://h"), "index.html");
        assert!(expected_sha256(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(expected_sha256("sha256:abc").is_none());
        assert!(expected_sha256(&format!("sha512:{}", "a".repeat(64))).is_none());
    }
}
