//! Host CA trust for RUN steps that never blocks the image's own CA tooling.
//!
//! A file bind-mounted over the image's bundle cannot be renamed over or removed, so
//! `update-ca-certificates` and `apt-get install ca-certificates` would fail. Instead each run
//! gets a *trust lower*: a tiny overlay lower directory, stacked above the image's layers and
//! below the upper directory, holding one file at the system bundle path (symlinks resolved
//! through the image): the image's own bundle followed by the host's. Everything that reads the
//! system store (OpenSSL, GnuTLS, so apt too) trusts both, and the step may rewrite, rename or
//! delete the file as any other (overlayfs copies it up or whites it out).
//!
//! After the run, [`Trust::restore`] takes the host's CAs back out of the upper directory, so
//! the change is what the step did to the image's own files:
//! - a file whose content starts with the merged bundle (the bundle copied up untouched, copied
//!   elsewhere, or appended to) gets that prefix replaced by the image's bundle; the bundle
//!   itself, when it then equals the image's file (content, mode, owner), is dropped from the
//!   upper directory, so a step that left it alone leaves no entry;
//! - a whiteout or opaque mark on the bundle path or a directory on its way that only the
//!   trust lower had (the image lacks it) is removed: it would hide nothing;
//! - directories on the way that only the trust lower had and that are left empty are removed.
//!
//! The upper directory is then exactly the layer (the layer cache can adopt it as is), and it
//! does not depend on the host's bundle. The same merged bundle is also bind-mounted at
//! [`ENV_BUNDLE`] (outside every layer) for the [`CA_ENV`] variables, so tools that honour them
//! keep trusting the host's CAs after a step regenerated the system bundle.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::fsutil::io_err;
use super::layers::opaque_xattr;
use super::overlay::{self, Target};
use crate::ExecError;

/// Where the host CA bundle is read from by default, and the system bundle path in images.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where the merged bundle the [`CA_ENV`] variables name is mounted in the container.
pub const ENV_BUNDLE: &str = "/run/lamina/ca.pem";
/// Environment variables that point common tools at the merged bundle ([`ENV_BUNDLE`]).
pub const CA_ENV: [&str; 6] = [
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
];

/// The image's bundle as the step starts.
#[derive(Debug)]
struct ImageBundle {
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The trust set up for one run.
#[derive(Debug)]
pub(crate) struct Trust {
    /// The trust lower directory.
    lower: PathBuf,
    /// The bind mount for [`ENV_BUNDLE`] and its target.
    pub mount: Mount,
    pub target: Target,
    /// `KEY=VALUE` for the [`CA_ENV`] variables.
    pub env: Vec<String>,
    /// The system bundle's path in the rootfs, symlinks resolved (`None`: not placed).
    bundle: Option<Vec<String>>,
    image: Option<ImageBundle>,
    merged: Vec<u8>,
}

/// Sets up the trust of a run in `run_dir` for the image `lowers` (topmost first) and the host
/// bundle `host`; `None` when the host has no bundle.
pub(crate) fn prepare(
    run_dir: &Path,
    lowers: &[PathBuf],
    host: &Path,
) -> Result<Option<Trust>, ExecError> {
    let host_bytes = match fs::read(host) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(host)(e)),
    };
    let lower = run_dir.join("trust");
    fs::create_dir(&lower).map_err(io_err(&lower))?;

    let comps: Vec<&str> = CA_BUNDLE.split('/').filter(|c| !c.is_empty()).collect();
    let bundle = overlay::resolve(lowers, &comps);
    let found = overlay::lookup(lowers, &bundle);
    let image = match &found {
        Some((meta, path)) if meta.is_file() => Some(ImageBundle {
            bytes: fs::read(path).map_err(io_err(path))?,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        }),
        _ => None,
    };
    let mut merged = image.as_ref().map(|i| i.bytes.clone()).unwrap_or_default();
    if merged.last().is_some_and(|b| *b != b'\n') {
        merged.push(b'\n');
    }
    merged.extend_from_slice(&host_bytes);

    // A place for the system bundle: a file there already, or nothing but directories (or
    // nothing) on the way.
    let placeable = !bundle.is_empty()
        && found.as_ref().is_none_or(|(m, _)| m.is_file())
        && (1..bundle.len())
            .all(|k| overlay::lookup(lowers, &bundle[..k]).is_none_or(|(m, _)| m.is_dir()));
    if placeable {
        write_bundle(&lower, lowers, &bundle, found.as_ref(), &merged)?;
    }

    let env_file = run_dir.join("trust.pem");
    fs::write(&env_file, &merged).map_err(io_err(&env_file))?;
    fs::set_permissions(&env_file, fs::Permissions::from_mode(0o444)).map_err(io_err(&env_file))?;
    Ok(Some(Trust {
        lower,
        mount: super::mounts::bind(ENV_BUNDLE, &env_file, true)?,
        target: Target::file(ENV_BUNDLE),
        env: CA_ENV.iter().map(|k| format!("{k}={ENV_BUNDLE}")).collect(),
        bundle: placeable.then_some(bundle),
        image,
        merged,
    }))
}

/// Writes `merged` at `bundle` below `lower`, directories and the file taking the image's
/// metadata where the image has them, so copy-ups look like the image's own entries.
fn write_bundle(
    lower: &Path,
    lowers: &[PathBuf],
    bundle: &[String],
    found: Option<&(fs::Metadata, PathBuf)>,
    merged: &[u8],
) -> Result<(), ExecError> {
    let mut dir = lower.to_path_buf();
    for k in 1..bundle.len() {
        dir.push(&bundle[k - 1]);
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        match overlay::lookup(lowers, &bundle[..k]) {
            Some((meta, _)) => overlay::copy_dir_meta(&dir, &meta)?,
            None => fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                .map_err(io_err(&dir))?,
        }
    }
    let file = dir.join(&bundle[bundle.len() - 1]);
    fs::write(&file, merged).map_err(io_err(&file))?;
    let (mode, owner, mtime) = match found {
        Some((meta, _)) => (
            meta.mode() & 0o7777,
            Some((meta.uid(), meta.gid())),
            meta.modified().ok(),
        ),
        None => (0o644, None, None),
    };
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(&file, Some(uid), Some(gid)).map_err(io_err(&file))?;
    }
    fs::set_permissions(&file, fs::Permissions::from_mode(mode)).map_err(io_err(&file))?;
    if let Some(mtime) = mtime {
        fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(mtime)))
            .map_err(io_err(&file))?;
    }
    Ok(())
}

impl Trust {
    /// The trust lower directory, if it holds a system bundle.
    pub(crate) fn lower(&self) -> Option<&Path> {
        self.bundle.is_some().then_some(self.lower.as_path())
    }

    /// Takes the host's CAs and the trust lower's traces out of `upper` after the run (see the
    /// module docs); `lowers` are the image's layers, topmost first.
    pub(crate) fn restore(&self, upper: &Path, lowers: &[PathBuf]) -> Result<(), ExecError> {
        self.replace_merged_copies(upper, upper)?;
        let Some(bundle) = &self.bundle else {
            return Ok(());
        };
        // Whiteouts and opaque marks of paths only the trust lower had, shallowest first.
        for k in 1..=bundle.len() {
            let path = join(upper, &bundle[..k]);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                break;
            };
            let in_image = overlay::lookup(lowers, &bundle[..k]).is_some();
            if overlay::is_whiteout(&meta) {
                if !in_image {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                break;
            }
            if !meta.is_dir() {
                break;
            }
            if !in_image {
                match rustix::fs::lremovexattr(&path, opaque_xattr()) {
                    Ok(()) | Err(rustix::io::Errno::NODATA) => {}
                    Err(e) => return Err(io_err(&path)(e.into())),
                }
            }
        }
        // Directories on the way left empty: copied up for the bundle alone. They go when the
        // image lacks them or has them alike (no opaque mark, same mode and owner).
        for k in (1..bundle.len()).rev() {
            let path = join(upper, &bundle[..k]);
            let empty_dir = fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none());
            if !empty_dir || overlay::is_opaque(&path) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let alike = match overlay::lookup(lowers, &bundle[..k]) {
                None => true,
                Some((image, _)) => {
                    image.is_dir()
                        && (image.mode(), image.uid(), image.gid())
                            == (meta.mode(), meta.uid(), meta.gid())
                }
            };
            if alike {
                fs::remove_dir(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    /// Replaces the merged prefix of every regular file below `dir` by the image's bundle;
    /// drops the system bundle when that makes it the image's own file again.
    fn replace_merged_copies(&self, upper: &Path, dir: &Path) -> Result<(), ExecError> {
        let min = self.merged.len() as u64;
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let kind = entry.file_type().map_err(io_err(dir))?;
            let path = entry.path();
            if kind.is_dir() {
                self.replace_merged_copies(upper, &path)?;
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let meta = entry.metadata().map_err(io_err(&path))?;
            if meta.len() < min || !starts_with(&path, &self.merged)? {
                continue;
            }
            let is_bundle = self.bundle.as_ref().is_some_and(|b| path == join(upper, b));
            let own: &[u8] = self.image.as_ref().map_or(&[], |i| &i.bytes);
            if is_bundle && meta.len() == min {
                let untouched = self.image.as_ref().is_none_or(|i| {
                    (meta.mode() & 0o7777, meta.uid(), meta.gid()) == (i.mode, i.uid, i.gid)
                });
                if untouched {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                    continue;
                }
            }
            rewrite_prefix(&path, &meta, self.merged.len(), own)?;
        }
        Ok(())
    }
}

fn join(root: &Path, comps: &[String]) -> PathBuf {
    comps.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

/// Whether the file at `path` starts with `prefix`.
fn starts_with(path: &Path, prefix: &[u8]) -> Result<bool, ExecError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < prefix.len() {
        let want = (prefix.len() - done).min(buf.len());
        let n = file.read(&mut buf[..want]).map_err(io_err(path))?;
        if n == 0 || buf[..n] != prefix[done..done + n] {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

/// Replaces the first `skip` bytes of the file at `path` by `head`, through a new file renamed
/// over it (hard links to it keep the old content), keeping mode, owner and mtime.
fn rewrite_prefix(
    path: &Path,
    meta: &fs::Metadata,
    skip: usize,
    head: &[u8],
) -> Result<(), ExecError> {
    let mut rest = Vec::new();
    {
        let mut file = fs::File::open(path).map_err(io_err(path))?;
        std::io::copy(&mut (&mut file).take(skip as u64), &mut std::io::sink())
            .map_err(io_err(path))?;
        file.read_to_end(&mut rest).map_err(io_err(path))?;
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.lamina-trust"));
    let mut content = head.to_vec();
    content.extend_from_slice(&rest);
    fs::write(&tmp, &content).map_err(io_err(&tmp))?;
    std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid())).map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err(&tmp))?;
    if let Ok(mtime) = meta.modified() {
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_times(fs::FileTimes::new().set_modified(mtime)))
            .map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests;
