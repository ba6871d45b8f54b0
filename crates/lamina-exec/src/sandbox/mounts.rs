//! Build-time mounts of RUN steps ([`BuildMount`]), their sources resolved by the caller,
//! turned into runtime mounts for one run. Parsing `RUN --mount=` values is the build's job
//! (`build/run_mounts.rs`).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};
use rustix::fs::FlockOperation;

use super::fsutil::{container_components, copy_tree, io_err, lock_named, try_lock_named};
use super::overlay::{self, Target};
use crate::ExecError;

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

/// Where the files of a bind mount (or the seed of a cache mount) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A file or directory on the host (a path in the build context).
    Host(PathBuf),
    /// A path inside the filesystem that unpacked layers describe (an earlier stage or an
    /// image); symlinks on the way resolve inside it.
    Layers {
        /// Unpacked layers, bottom first (may be empty: an empty filesystem), held in use.
        lowers: Vec<super::LayerInUse>,
        /// Absolute path inside that filesystem.
        path: String,
    },
}

/// Owner and permission bits of a mounted secret, ssh socket or new cache directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// A build-time mount of a RUN step. Its target never lands in the step's layer: mount points
/// the image lacks are provided by a scratch lower directory, not created in the upper one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildMount {
    /// Trust the CAs of the host bundle `path` besides the image's own: the run sees the image's
    /// bundle with the host's appended at the system path (through an overlay lower, so the
    /// step may rewrite, rename or delete it) and at [`super::ENV_BUNDLE`], named by the
    /// [`super::CA_ENV`] variables; the host's CAs are taken back out of the change (see the
    /// `ca` module). Nothing happens when `path` does not exist.
    HostCaBundle {
        /// The host's bundle, usually [`super::CA_BUNDLE`].
        path: PathBuf,
    },
    /// A secret: a file at `target` and/or the environment variable `env`.
    Secret {
        /// The file on the host.
        source: PathBuf,
        /// Absolute path in the container, if it is shown as a file.
        target: Option<String>,
        /// The environment variable holding it, if any.
        env: Option<String>,
        /// The file's owner and mode (BuildKit's default: 0400 root).
        ownership: Ownership,
    },
    /// A persistent cache directory, `work_dir/cache-mounts/<id>/`.
    Cache {
        /// The cache's id (defaults to the target).
        id: String,
        /// Absolute path in the container.
        target: String,
        /// Concurrency mode.
        sharing: CacheSharing,
        /// Owner and mode of the directory when it is created (BuildKit's default: 0755 root).
        ownership: Ownership,
        /// What a new cache directory starts with (a copy), if not empty.
        seed: Option<MountSource>,
        /// Mounted read-only.
        readonly: bool,
    },
    /// Files of the build context, a stage or an image.
    Bind {
        /// Where they come from.
        source: MountSource,
        /// Absolute path in the container.
        target: String,
        /// Read-only. Otherwise the process may write, but (as in BuildKit) its writes go to
        /// a throwaway copy and the source is never changed.
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
    /// An SSH agent socket of the host at `target`, named by `SSH_AUTH_SOCK`.
    Ssh {
        /// The agent's socket on the host.
        socket: PathBuf,
        /// Absolute path in the container.
        target: String,
    },
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

pub(crate) fn bind(target: &str, source: &Path, readonly: bool) -> Result<Mount, ExecError> {
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

/// Where a run's secret copies go in its run directory (removed as the run ends).
pub(crate) const SECRETS_DIR: &str = "secrets";

/// Sets up `mounts` for a run in `run_dir` (copies of secrets, overlays of stages and images,
/// throwaway overlays for writable binds, cache directories under `work_dir/cache-mounts/`).
pub(crate) fn prepare(
    mounts: &[BuildMount],
    work_dir: &Path,
    run_dir: &Path,
) -> Result<Prepared, ExecError> {
    let mut out = Prepared::default();
    for (n, mount) in mounts.iter().enumerate() {
        match mount {
            // Set up by the sandbox with the image's lowers: see the `ca` module.
            BuildMount::HostCaBundle { .. } => {}
            BuildMount::Secret {
                source,
                target,
                env,
                ownership,
            } => {
                if let Some(name) = env {
                    let value = fs::read_to_string(source).map_err(io_err(source))?;
                    out.env.push(format!("{name}={value}"));
                }
                if let Some(target) = target {
                    let dir = run_dir.join(SECRETS_DIR);
                    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                    let copy = dir.join(n.to_string());
                    fs::copy(source, &copy).map_err(io_err(source))?;
                    set_ownership(&copy, *ownership)?;
                    out.mounts.push(bind(target, &copy, true)?);
                    out.targets.push(Target::file(target));
                }
            }
            BuildMount::Cache {
                id,
                target,
                sharing,
                ownership,
                seed,
                readonly,
            } => {
                let dir = cache_dir(id, *sharing, work_dir, run_dir, n, &mut out.locks)?;
                if !dir.is_dir() {
                    create_cache_dir(&dir, *ownership, seed.as_ref(), run_dir, n)?;
                }
                out.mounts.push(bind(target, &dir, *readonly)?);
                out.targets.push(Target::dir(target));
            }
            BuildMount::Bind {
                source,
                target,
                readonly,
            } => {
                let base = run_dir.join(format!("bind-{n}"));
                let host = match source {
                    MountSource::Host(path) => path.clone(),
                    MountSource::Layers { lowers, path } => mount_layers(lowers, path, &base)?,
                };
                if !host.is_absolute() {
                    return Err(ExecError::UnusablePath {
                        path: host,
                        reason: "bind mount sources must be absolute; resolve them against the build context first".into(),
                    });
                }
                let meta = fs::metadata(&host).map_err(io_err(&host))?;
                let host = match source {
                    _ if *readonly => host,
                    // Already a throwaway overlay.
                    MountSource::Layers { .. } => host,
                    MountSource::Host(_) if meta.is_dir() => {
                        overlay::mount_throwaway(&host, &base)?
                    }
                    MountSource::Host(_) => {
                        let copy = run_dir.join(format!("bind-{n}.file"));
                        fs::copy(&host, &copy).map_err(io_err(&host))?;
                        copy
                    }
                };
                out.mounts.push(bind(target, &host, *readonly)?);
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
            BuildMount::Ssh { socket, target } => {
                fs::metadata(socket).map_err(io_err(socket))?;
                out.mounts.push(bind(target, socket, false)?);
                out.targets.push(Target::file(target));
                out.env.push(format!("SSH_AUTH_SOCK={target}"));
            }
        }
    }
    Ok(out)
}

/// The directory of cache `id` for this run, taking the locks its sharing mode needs.
fn cache_dir(
    id: &str,
    sharing: CacheSharing,
    work_dir: &Path,
    run_dir: &Path,
    n: usize,
    locks: &mut Vec<File>,
) -> Result<PathBuf, ExecError> {
    let root = work_dir.join("cache-mounts");
    fs::create_dir_all(&root).map_err(io_err(&root))?;
    let name = cache_name(id);
    super::cache_gc::mark_used(&root, &name)?;
    Ok(match sharing {
        CacheSharing::Shared => {
            // Shared with other shared runs, but held: `cache gc` in any process (which
            // takes it exclusively) leaves a cache in use alone.
            let lock = root.join(format!("{name}.lock"));
            locks.push(lock_named(&lock, FlockOperation::LockShared)?);
            root.join(&name)
        }
        CacheSharing::Locked => {
            let lock = root.join(format!("{name}.lock"));
            locks.push(lock_named(&lock, FlockOperation::LockExclusive)?);
            root.join(&name)
        }
        // BuildKit's private mode: a run that finds the cache in use gets a fresh instance of
        // its own, thrown away afterwards.
        CacheSharing::Private => match try_lock_named(&root.join(format!("{name}.lock")))? {
            Some(lock) => {
                locks.push(lock);
                root.join(&name)
            }
            None => run_dir.join(format!("cache-{n}")),
        },
    })
}

/// Creates a cache directory with `ownership`, holding a copy of `seed`; atomically, so
/// concurrent runs see it whole (the first one wins).
fn create_cache_dir(
    dir: &Path,
    ownership: Ownership,
    seed: Option<&MountSource>,
    run_dir: &Path,
    n: usize,
) -> Result<(), ExecError> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    // `<work_dir>/cache-mounts/<name>`: named with the owner token of this process.
    let work_dir = dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let token = crate::owner::claim(work_dir)?;
    let tmp = dir.with_file_name(format!(".{name}.tmp-{token}-{n}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    match seed {
        None => fs::create_dir(&tmp).map_err(io_err(&tmp))?,
        Some(source) => {
            let from = match source {
                MountSource::Host(path) => path.clone(),
                MountSource::Layers { lowers, path } => {
                    mount_layers(lowers, path, &run_dir.join(format!("seed-{n}")))?
                }
            };
            if !fs::metadata(&from).map_err(io_err(&from))?.is_dir() {
                return Err(ExecError::UnusablePath {
                    path: from,
                    reason: "a cache mount's source must be a directory".into(),
                });
            }
            copy_tree(&from, &tmp)?;
        }
    }
    set_ownership(&tmp, ownership)?;
    match fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => fs::remove_dir_all(&tmp).map_err(io_err(&tmp)),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Mounts a throwaway writable overlay of `lowers` (bottom first) below `base` and returns the
/// host path of `path` inside it, symlinks resolved inside the overlay's root.
fn mount_layers(
    lowers: &[super::LayerInUse],
    path: &str,
    base: &Path,
) -> Result<PathBuf, ExecError> {
    let Some(comps) = container_components(path) else {
        return Err(ExecError::UnusablePath {
            path: PathBuf::from(path),
            reason: "mount sources must not leave the stage or image with `..`".into(),
        });
    };
    let mut top_first: Vec<PathBuf> = lowers
        .iter()
        .rev()
        .map(|l| l.path().to_path_buf())
        .collect();
    let empty = base.join("empty");
    if top_first.is_empty() {
        fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        top_first.push(empty);
    }
    let resolved = overlay::resolve(&top_first, &comps);
    let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
    for dir in [&upper, &work, &merged] {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    overlay::mount_overlay(&top_first, &upper, &work, &merged)?;
    let host = resolved.iter().fold(merged, |p, c| p.join(c));
    if fs::symlink_metadata(&host).is_err() {
        return Err(ExecError::UnusablePath {
            path: PathBuf::from(path),
            reason: "the mount source does not exist in that stage or image".into(),
        });
    }
    Ok(host)
}

fn set_ownership(path: &Path, ownership: Ownership) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(ownership.uid), Some(ownership.gid))
        .map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(ownership.mode)).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_are_safe_file_names() {
        assert_eq!(cache_name("pip"), "pip");
        let hashed = cache_name("/root/.cache");
        assert!(hashed.starts_with("h-") && !hashed.contains('/'));
        assert_ne!(cache_name(".."), "..");
    }
}
