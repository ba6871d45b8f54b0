//! The sandbox that runs RUN steps: [`LayerCache`] (stored layers unpacked once into overlay
//! lower directories), [`Sandbox`] (an overlayfs rootfs per run, a runc bundle, `runc run`),
//! and [`BuildMount`] (build-time mounts that never land in the layer). The host's CAs reach a
//! run through a trust lower directory, never a mount over the image's bundle (see `ca`).
//!
//! A run lives in `work_dir/runs/<id>/`: `upper/` and `work/` of the overlay, `scaffold/` (a
//! lower directory with the mount points the image lacks, so runc creates nothing in the upper
//! directory), `rootfs/` (the mount point) and the bundle's `config.json`. After the run
//! everything is unmounted; `upper/` holds exactly the change (0:0 character devices for
//! deletions, `trusted.overlay.opaque` directories, or `user.overlay.opaque` in a user
//! namespace, also after fuse-overlayfs, see `fuse`), ready for
//! `lamina_layer::LayerWriter::write_overlay_upper`. [`UpperDir`] removes the run directory
//! (what is left of `upper/` included) when dropped.
//!
//! Running needs root, of the host or of a user namespace (see [`crate::rootless`]);
//! [`Sandbox::new`] checks that up front.

mod ca;
mod cache_gc;
mod cgroup_warmup;
pub(crate) mod fsutil;
mod fuse;
mod layer_budget;
mod layers;
mod mounts;
pub(crate) mod overlay;
pub(crate) mod runc;
mod tree_backing;
mod user;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use ca::{CA_BUNDLE, CA_ENV, ENV_BUNDLE};
pub use cache_gc::{CacheMountsPruned, prune_cache_mounts};
pub use fuse::OVERLAY_ENV;
pub(crate) use fuse::take_notice as take_fuse_notice;
pub(crate) use layers::TMP_DIR as LAYERS_TMP_DIR;
pub(crate) use layers::opaque_xattr;
pub use layers::{LayerCache, LayerInUse, PruneReport};
pub use mounts::{BuildMount, CacheSharing, MountSource, Ownership};

use crate::ExecError;
use fsutil::io_err;

/// The network a run sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only a loopback device, left down.
    None,
}

/// Which stream an output line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One RUN step to execute.
pub struct RunRequest<'a> {
    /// Unpacked layers, bottom first (may be empty: scratch).
    pub lower_dirs: Vec<PathBuf>,
    /// argv (shell form already turned into `[shell.., text]` by the caller).
    pub args: Vec<String>,
    /// `KEY=VALUE`. `PATH` and `HOME` get defaults when missing.
    pub env: Vec<String>,
    /// Absolute working directory in the container; created if missing.
    pub cwd: String,
    /// `name`, `uid`, `uid:gid` or `name:group`, resolved from the rootfs's `/etc/passwd` and
    /// `/etc/group`; `None` is root.
    pub user: Option<String>,
    /// Build-time mounts; never land in the layer.
    pub mounts: Vec<BuildMount>,
    /// The network.
    pub network: Network,
    /// Called with each output line (without its newline) as it arrives.
    pub on_output: &'a mut (dyn FnMut(OutputStream, &str) + Send),
    /// When cancelled, the container is killed and the run fails with
    /// [`ExecError::Cancelled`] (everything torn down as on any failure).
    pub cancel: Option<&'a crate::CancelToken>,
}

impl std::fmt::Debug for RunRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("lower_dirs", &self.lower_dirs)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("mounts", &self.mounts)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// An overlay upper directory holding a run's changes; removed (with its run directory) on
/// drop.
#[derive(Debug)]
pub struct UpperDir {
    run_dir: PathBuf,
    path: PathBuf,
}

impl UpperDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UpperDir {
    fn drop(&mut self) {
        remove_run_dir(&self.run_dir);
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The process's exit code (128 + signal when killed by a signal).
    pub exit_code: i32,
    /// The changes the run made.
    pub upper: UpperDir,
    /// The last lines of output (up to 20), both streams in arrival order.
    pub last_lines: Vec<String>,
}

/// Runs commands under runc on an overlayfs rootfs.
#[derive(Debug)]
pub struct Sandbox {
    work_dir: PathBuf,
    runs: PathBuf,
    /// runc's state directory (`runc --root`), private to lamina.
    state: PathBuf,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Sandbox {
    /// A sandbox working in `work_dir`. Checks that we are root and runc is on PATH, and
    /// reclaims what killed processes left there (their containers, mounts and directories;
    /// see [`crate::reclaim`]).
    pub fn new(work_dir: &Path) -> Result<Self, ExecError> {
        if !rustix::process::geteuid().is_root() {
            return Err(match crate::rootless::unavailable() {
                Some(reason) => ExecError::NoUserNamespace {
                    reason: reason.to_owned(),
                },
                None => ExecError::NotRoot,
            });
        }
        let on_path = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("runc").is_file()));
        if !on_path {
            return Err(ExecError::RuncMissing);
        }
        let work_dir = std::path::absolute(work_dir).map_err(io_err(work_dir))?;
        let sandbox = Sandbox {
            runs: work_dir.join("runs"),
            state: work_dir.join("runc"),
            work_dir,
        };
        for dir in [&sandbox.runs, &sandbox.state] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        if let Err(e) = crate::reclaim::reclaim_leftovers(&sandbox.work_dir) {
            tracing::warn!("cannot reclaim what killed builds left: {e}");
        }
        Ok(sandbox)
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// Runs one request to completion (blocking) and returns its exit code, its change and
    /// its last output lines. A non-zero exit code is an outcome, not an error; errors are
    /// failures to set the run up or runc failing to start the process. Mounts and the
    /// container are cleaned up on every path, panics included.
    pub fn run(&self, request: RunRequest<'_>) -> Result<RunOutcome, ExecError> {
        if request.args.is_empty() {
            return Err(ExecError::EmptyCommand);
        }
        if fsutil::container_components(&request.cwd).is_none() {
            return Err(ExecError::UnusablePath {
                path: PathBuf::from(&request.cwd),
                reason: "the working directory must be an absolute path without `..`".into(),
            });
        }
        cgroup_warmup::start();
        // The owner's token ties the run to this process (see `crate::owner`).
        let id = format!(
            "lamina-{}-{}",
            crate::owner::claim(&self.work_dir)?,
            RUN_COUNTER.fetch_add(1, Ordering::Relaxed),
        );
        let mut guard = RunGuard {
            state: &self.state,
            dir: self.runs.join(&id),
            id,
            running: None,
            runc_exited: false,
            finished: false,
        };
        let dir = guard.dir.clone();
        let (upper, work, scaffold, rootfs) = (
            dir.join("upper"),
            dir.join("work"),
            dir.join("scaffold"),
            dir.join("rootfs"),
        );
        for d in [&dir, &upper, &work, &scaffold, &rootfs] {
            fs::create_dir(d).map_err(io_err(d))?;
        }
        // Held until the process has exited: cache locks live in `prepared`.
        let mut prepared = mounts::prepare(&request.mounts, &self.work_dir, &dir)?;
        let image_lowers: Vec<PathBuf> = request.lower_dirs.iter().rev().cloned().collect();
        let host_ca = request.mounts.iter().find_map(|m| match m {
            BuildMount::HostCaBundle { path } => Some(path),
            _ => None,
        });
        let trust = match host_ca {
            Some(host) => ca::prepare(&dir, &image_lowers, host)?,
            None => None,
        };
        let mut lowers = vec![scaffold.clone()];
        if let Some(trust) = &trust {
            prepared.mounts.push(trust.mount.clone());
            prepared.targets.push(trust.target.clone());
            prepared.env.extend(trust.env.iter().cloned());
            lowers.extend(trust.lower().map(Path::to_path_buf));
        }
        lowers.extend(image_lowers.iter().cloned());
        let mut targets = runc::system_targets();
        targets.extend(prepared.targets.iter().cloned());
        overlay::build_scaffold(&scaffold, &lowers[1..], &targets)?;
        overlay::mount_overlay(&lowers, &upper, &work, &rootfs)?;
        let fused = fuse::used_for(&rootfs);

        let identity = user::resolve(request.user.as_deref(), &rootfs)?;
        let spec = runc::spec(
            runc::SpecInput {
                rootfs: &rootfs,
                args: &request.args,
                env: request.env,
                cwd: &request.cwd,
                identity: &identity,
                network: request.network,
                mounts: prepared.mounts.clone(),
                user_namespace: crate::rootless::in_user_namespace(),
            },
            &prepared.env,
        )?;
        let config = dir.join("config.json");
        spec.save(&config)?;

        let running = guard
            .running
            .insert(runc::start(&self.state, &dir, &guard.id)?);
        let (status, last_lines) = running.wait(request.on_output, request.cancel)?;
        guard.running = None;
        guard.runc_exited = status.code().is_some();
        drop(prepared);
        let exit_code = runc::exit_code(status);
        if exit_code != 0 {
            let errors = runc::runc_errors(&dir.join("runc.log"));
            if !errors.is_empty() {
                return Err(ExecError::Runtime {
                    container: guard.id.clone(),
                    message: errors.join("; "),
                });
            }
        }
        guard.finish()?;
        // From here the run directory goes with `upper`, on every path.
        let upper = UpperDir {
            path: upper,
            run_dir: dir,
        };
        if fused {
            // Against the image's layers only: the run's own lowers (scaffold, trust) are not
            // part of the image the change applies to.
            fuse::normalize_upper(upper.path(), &image_lowers)?;
        }
        if let Some(trust) = &trust {
            trust.restore(upper.path(), &image_lowers)?;
        }
        Ok(RunOutcome {
            exit_code,
            upper,
            last_lines,
        })
    }
}

/// Removes a run directory unless something is still mounted below it (removing through a
/// mount would reach into the mounted file system). What cannot be removed is left, with a
/// warning, to the reclaim of a later process (see [`crate::reclaim`]).
fn remove_run_dir(dir: &Path) {
    let removed = match overlay::mounts_under(dir) {
        Ok(mounts) if mounts.is_empty() => fs::remove_dir_all(dir).map_err(|e| e.to_string()),
        Ok(mounts) => Err(format!("{} is still mounted", mounts[0].display())),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = removed {
        tracing::warn!("cannot remove the run directory {}: {why}", dir.display());
    }
}

/// Tears a run down on every path: kills and deletes the container, unmounts, removes the run
/// directory (unless [`RunGuard::finish`] handed it to the run's [`UpperDir`]).
struct RunGuard<'s> {
    state: &'s Path,
    id: String,
    dir: PathBuf,
    running: Option<runc::Running>,
    /// `runc run` ended by itself (not by a signal), so it has destroyed the container.
    runc_exited: bool,
    finished: bool,
}

impl RunGuard<'_> {
    fn teardown(&mut self) -> Result<(), ExecError> {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        // A `runc delete` is a process start (~4 ms a RUN): needed only when `runc run` did
        // not end by itself or left its state behind.
        if !self.runc_exited || self.state.join(&self.id).exists() {
            runc::delete(self.state, &self.id);
        }
        overlay::unmount_all_under(&self.dir)
    }

    /// Tears down but keeps the run directory: the [`UpperDir`] made of it removes it all
    /// when dropped (a build drops it on a thread beside its next steps).
    fn finish(&mut self) -> Result<(), ExecError> {
        self.teardown()?;
        // Secret copies go as the run ends, not with the rest of the run directory, which a
        // build removes later on a thread.
        let secrets = self.dir.join(mounts::SECRETS_DIR);
        match fs::remove_dir_all(&secrets) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(&secrets)(e));
            }
            _ => {}
        }
        self.finished = true;
        Ok(())
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if !self.finished && self.teardown().is_ok() {
            remove_run_dir(&self.dir);
        }
    }
}
