//! Build-time mounts of RUN steps ([`BuildMount`]): parsing `RUN --mount=` values and turning
//! them into runtime mounts for one run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use rustix::fs::FlockOperation;

use super::fsutil::{container_components, io_err, lock_file, try_lock_file};
use super::overlay::{self, Target};
use crate::ExecError;

/// Where the host CA bundle is read from and shown in the container.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Environment variables that point common tools at the CA bundle ([`BuildMount::HostCaBundle`]).
pub const CA_ENV: [&str; 4] = [
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
];

/// How a cache mount is shared between concurrent runs (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheSharing {
    /// Concurrent runs use the directory at the same time.
    #[default]
    Shared,
    /// One run at a time holds the directory; others wait.
    Locked,
    /// A run finding the directory in use gets another instance of it.
    Private,
}

/// A build-time mount of a RUN step. Its target never lands in the step's layer: mount points
/// the image lacks are provided by a scratch lower directory, not created in the upper one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildMount {
    /// The host CA bundle, read-only at [`CA_BUNDLE`], plus the [`CA_ENV`] variables pointing at
    /// it (for the process only). Nothing is mounted when the host has no bundle.
    HostCaBundle,
    /// A secret file, readable by root only (mode 0400) at `target`.
    Secret {
        /// The secret's id.
        id: String,
        /// The file on the host.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
    },
    /// A persistent cache directory, `work_dir/cache-mounts/<id>/`.
    Cache {
        /// The cache's id (defaults to the target).
        id: String,
        /// Absolute path in the container.
        target: String,
        /// Concurrency mode.
        sharing: CacheSharing,
    },
    /// A host file or directory. `source` as parsed is relative to the build context: the
    /// caller resolves it before running.
    Bind {
        /// The host path.
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only. Otherwise the process may write, but (as in BuildKit) its writes go to
        /// a throwaway copy and the host path is never changed.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

impl BuildMount {
    /// Parses a Dockerfile `RUN --mount=` value: `type=bind|cache|secret|tmpfs` (default bind)
    /// with `target` (`dst`, `destination`), `source` (`src`), `id`, `sharing`, `readonly`
    /// (`ro`), `rw` (`readwrite`), `required`, `size`. Secrets are looked up by id in `secrets`.
    pub fn parse(spec: &str, secrets: &BTreeMap<String, PathBuf>) -> Result<BuildMount, ExecError> {
        let fail = |reason: String| ExecError::InvalidMount {
            spec: spec.to_owned(),
            reason,
        };
        let mut opts: BTreeMap<&str, Option<&str>> = BTreeMap::new();
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (field, None),
            };
            let key = match key.to_ascii_lowercase().as_str() {
                "type" => "type",
                "target" | "dst" | "destination" => "target",
                "source" | "src" => "source",
                "id" => "id",
                "sharing" => "sharing",
                "readonly" | "ro" => "readonly",
                "rw" | "readwrite" => "rw",
                "required" => "required",
                "size" => "size",
                "from" => return Err(fail("`from=` (mounting from another stage or image) is not supported; COPY --from the files instead".into())),
                _ => return Err(fail(format!("unknown option `{key}`; use type, target, source, id, sharing, readonly, rw, required or size"))),
            };
            if opts.insert(key, value).is_some() {
                return Err(fail(format!("option `{key}` is given twice")));
            }
        }
        let flag = |key: &str| -> Result<Option<bool>, ExecError> {
            match opts.get(key) {
                None => Ok(None),
                Some(None) => Ok(Some(true)),
                Some(Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(Some(true)),
                    "false" | "0" => Ok(Some(false)),
                    _ => Err(fail(format!("`{key}={v}` must be true or false"))),
                },
            }
        };
        let value = |key: &str| opts.get(key).copied().flatten().filter(|v| !v.is_empty());
        let allow = |allowed: &[&str]| -> Result<(), ExecError> {
            match opts.keys().find(|k| **k != "type" && !allowed.contains(k)) {
                Some(k) => Err(fail(format!(
                    "option `{k}` does not apply to this mount type"
                ))),
                None => Ok(()),
            }
        };
        let target = |required: bool| -> Result<Option<String>, ExecError> {
            match value("target") {
                Some(t) if container_components(t).is_some() => Ok(Some(t.to_owned())),
                Some(t) => Err(fail(format!(
                    "target `{t}` must be an absolute path without `..`"
                ))),
                None if required => Err(fail("a target is required: add target=/path".into())),
                None => Ok(None),
            }
        };
        let readonly = match (flag("readonly")?, flag("rw")?) {
            (Some(true), Some(true)) => {
                return Err(fail("`readonly` and `rw` contradict each other".into()));
            }
            (Some(ro), _) => Some(ro),
            (None, Some(rw)) => Some(!rw),
            (None, None) => None,
        };
        match value("type").unwrap_or("bind") {
            "bind" => {
                allow(&["target", "source", "readonly", "rw"])?;
                Ok(BuildMount::Bind {
                    source: PathBuf::from(value("source").unwrap_or(".")),
                    target: target(true)?.unwrap_or_default(),
                    readonly: readonly.unwrap_or(true),
                })
            }
            "cache" => {
                allow(&["target", "id", "sharing"])?;
                let target = target(true)?.unwrap_or_default();
                let sharing = match value("sharing").unwrap_or("shared") {
                    "shared" => CacheSharing::Shared,
                    "locked" => CacheSharing::Locked,
                    "private" => CacheSharing::Private,
                    other => {
                        return Err(fail(format!(
                            "sharing `{other}` is not one of shared, locked, private"
                        )));
                    }
                };
                let id = value("id").map_or_else(|| target.clone(), str::to_owned);
                Ok(BuildMount::Cache {
                    id,
                    target,
                    sharing,
                })
            }
            "secret" => {
                allow(&["target", "id", "required", "source"])?;
                if value("source").is_some() {
                    return Err(fail(
                        "secrets take no source here; pass the file with --secret id=ID,src=PATH"
                            .into(),
                    ));
                }
                let target = target(false)?;
                let id = match (value("id"), &target) {
                    (Some(id), _) => id.to_owned(),
                    (None, Some(t)) => t.rsplit('/').next().unwrap_or_default().to_owned(),
                    (None, None) => return Err(fail("a secret needs id= or target=".into())),
                };
                let Some(source) = secrets.get(&id) else {
                    return Err(ExecError::MissingSecret { id });
                };
                Ok(BuildMount::Secret {
                    target: target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                    source: source.clone(),
                    id,
                })
            }
            "tmpfs" => {
                allow(&["target", "size"])?;
                let size = value("size")
                    .map(|s| {
                        s.parse::<u64>()
                            .map_err(|_| fail(format!("size `{s}` must be a number of bytes")))
                    })
                    .transpose()?;
                Ok(BuildMount::Tmpfs {
                    target: target(true)?.unwrap_or_default(),
                    size,
                })
            }
            "ssh" => Err(fail("ssh mounts are not supported".into())),
            other => Err(fail(format!(
                "unknown type `{other}`; use bind, cache, secret or tmpfs"
            ))),
        }
    }
}

/// The runtime side of a run's build mounts.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Runtime mounts, in order.
    pub mounts: Vec<Mount>,
    /// Their targets, for the scaffold.
    pub targets: Vec<Target>,
    /// Environment for the process only.
    pub env: Vec<String>,
    /// Cache locks held for the run.
    pub locks: Vec<File>,
}

fn bind(target: &str, source: &Path, readonly: bool) -> Result<Mount, ExecError> {
    let mode = if readonly { "ro" } else { "rw" };
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(source)
        .options(vec![
            "rbind".to_owned(),
            mode.to_owned(),
            "nosuid".to_owned(),
        ])
        .build()?)
}

/// A file name for a cache id: the id itself when it is a plain name, else a hash of it.
fn cache_name(id: &str) -> String {
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        id.to_owned()
    } else {
        format!("h-{}", &blake3::hash(id.as_bytes()).to_hex()[..32])
    }
}

/// Sets up `mounts` for a run in `run_dir` (copies of secrets, throwaway overlays for writable
/// binds, cache directories under `work_dir/cache-mounts/`).
pub(crate) fn prepare(
    mounts: &[BuildMount],
    work_dir: &Path,
    run_dir: &Path,
) -> Result<Prepared, ExecError> {
    let mut out = Prepared::default();
    for (n, mount) in mounts.iter().enumerate() {
        match mount {
            BuildMount::HostCaBundle => {
                let host = Path::new(CA_BUNDLE);
                if !host.is_file() {
                    continue;
                }
                out.mounts.push(bind(CA_BUNDLE, host, true)?);
                out.targets.push(Target::file(CA_BUNDLE));
                out.env
                    .extend(CA_ENV.iter().map(|k| format!("{k}={CA_BUNDLE}")));
            }
            BuildMount::Secret { source, target, .. } => {
                let dir = run_dir.join("secrets");
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                let copy = dir.join(n.to_string());
                fs::copy(source, &copy).map_err(io_err(source))?;
                set_mode(&copy, 0o400)?;
                out.mounts.push(bind(target, &copy, true)?);
                out.targets.push(Target::file(target));
            }
            BuildMount::Cache {
                id,
                target,
                sharing,
            } => {
                let root = work_dir.join("cache-mounts");
                fs::create_dir_all(&root).map_err(io_err(&root))?;
                let name = cache_name(id);
                let dir = match sharing {
                    CacheSharing::Shared => root.join(&name),
                    CacheSharing::Locked => {
                        let lock = root.join(format!("{name}.lock"));
                        out.locks
                            .push(lock_file(&lock, FlockOperation::LockExclusive)?);
                        root.join(&name)
                    }
                    CacheSharing::Private => {
                        let mut i = 0;
                        loop {
                            let inst = if i == 0 {
                                name.clone()
                            } else {
                                format!("{name}~{i}")
                            };
                            if let Some(lock) = try_lock_file(&root.join(format!("{inst}.lock")))? {
                                out.locks.push(lock);
                                break root.join(inst);
                            }
                            i += 1;
                        }
                    }
                };
                fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                out.mounts.push(bind(target, &dir, false)?);
                out.targets.push(Target::dir(target));
            }
            BuildMount::Bind {
                source,
                target,
                readonly,
            } => {
                if !source.is_absolute() {
                    return Err(ExecError::UnusablePath {
                        path: source.clone(),
                        reason: "bind mount sources must be absolute; resolve them against the build context first".into(),
                    });
                }
                let meta = fs::metadata(source).map_err(io_err(source))?;
                let source = if *readonly {
                    source.clone()
                } else if meta.is_dir() {
                    let base = run_dir.join(format!("bind-{n}"));
                    overlay::mount_throwaway(source, &base)?
                } else {
                    let copy = run_dir.join(format!("bind-{n}"));
                    fs::copy(source, &copy).map_err(io_err(source))?;
                    copy
                };
                out.mounts.push(bind(target, &source, *readonly)?);
                out.targets.push(if meta.is_dir() {
                    Target::dir(target)
                } else {
                    Target::file(target)
                });
            }
            BuildMount::Tmpfs { target, size } => {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned()];
                if let Some(size) = size {
                    options.push(format!("size={size}"));
                }
                out.mounts.push(
                    MountBuilder::default()
                        .destination(target)
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(options)
                        .build()?,
                );
                out.targets.push(Target::dir(target));
            }
        }
    }
    Ok(out)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<BuildMount, ExecError> {
        let secrets = BTreeMap::from([("tok".to_owned(), PathBuf::from("/s/tok"))]);
        BuildMount::parse(spec, &secrets)
    }

    #[test]
    fn cache_mounts_default_their_id_and_sharing() {
        assert_eq!(
            parse("type=cache,target=/root/.cache").unwrap(),
            BuildMount::Cache {
                id: "/root/.cache".into(),
                target: "/root/.cache".into(),
                sharing: CacheSharing::Shared
            }
        );
        assert_eq!(
            parse("type=cache,dst=/c,id=pip,sharing=locked").unwrap(),
            BuildMount::Cache {
                id: "pip".into(),
                target: "/c".into(),
                sharing: CacheSharing::Locked
            }
        );
    }

    #[test]
    fn secrets_resolve_by_id_or_target_name() {
        let expected = BuildMount::Secret {
            id: "tok".into(),
            source: "/s/tok".into(),
            target: "/run/secrets/tok".into(),
        };
        assert_eq!(parse("type=secret,id=tok").unwrap(), expected);
        assert_eq!(
            parse("type=secret,target=/run/secrets/tok").unwrap(),
            expected
        );
        assert!(matches!(
            parse("type=secret,id=nope"),
            Err(ExecError::MissingSecret { id }) if id == "nope"
        ));
    }

    #[test]
    fn binds_default_to_read_only_and_rw_flips_it() {
        assert_eq!(
            parse("target=/src,source=app").unwrap(),
            BuildMount::Bind {
                source: "app".into(),
                target: "/src".into(),
                readonly: true
            }
        );
        assert!(matches!(
            parse("type=bind,target=/src,rw").unwrap(),
            BuildMount::Bind {
                readonly: false,
                ..
            }
        ));
        assert_eq!(
            parse("type=tmpfs,target=/t,size=1024").unwrap(),
            BuildMount::Tmpfs {
                target: "/t".into(),
                size: Some(1024)
            }
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (spec, needle) in [
            ("type=cache", "target is required"),
            ("type=cache,target=relative", "absolute"),
            ("type=cache,target=/a/../b", "absolute"),
            ("type=cache,target=/c,sharing=weird", "sharing `weird`"),
            ("type=cache,target=/c,from=base", "not supported"),
            ("type=nfs,target=/c", "unknown type"),
            ("type=ssh", "ssh"),
            ("type=bind,target=/c,bogus=1", "unknown option `bogus`"),
            ("type=bind,target=/c,target=/d", "twice"),
            ("type=bind,target=/c,ro,rw", "contradict"),
            ("type=tmpfs,target=/c,id=x", "does not apply"),
            ("type=tmpfs,target=/c,size=big", "number of bytes"),
            ("type=bind,target=/c,readonly=maybe", "true or false"),
        ] {
            let err = parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }

    #[test]
    fn cache_names_are_safe_file_names() {
        assert_eq!(cache_name("pip"), "pip");
        let hashed = cache_name("/root/.cache");
        assert!(hashed.starts_with("h-") && !hashed.contains('/'));
        assert_ne!(cache_name(".."), "..");
    }
}
