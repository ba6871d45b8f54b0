//! Builds without root: the process enters a user namespace of its own, where it is root.
//!
//! [`enter`], called at the start of `main` (the `lamina` binary does; embedders call it
//! themselves), moves a process that is not root into a new user namespace and mount
//! namespace, in place: no re-execution. The namespace maps container id 0 to the user's own
//! id and ids 1.. to the user's subordinate ranges (`/etc/subuid`, `/etc/subgid`), written by
//! the setuid `newuidmap`/`newgidmap`, which must run outside the namespace: a shell spawned
//! before the `unshare` waits on a pipe and runs them on this process once it is in. The
//! namespace is then kept for the user's next commands, which join it (see `kept`).
//!
//! Inside, the process is root of its namespace, so everything that needs root works as for
//! a root build, with these differences (all keyed on [`in_user_namespace`]):
//! overlayfs is mounted with `userxattr` and keeps its attributes under `user.overlay.*`
//! (`trusted.*` needs host root), or is fuse-overlayfs where the kernel refuses it
//! (`LAMINA_OVERLAY`, see the sandbox's `fuse`); runc gets a bind mount of the host's `/sys` instead of a
//! sysfs mount when the run uses the host's network, and no cgroup settings; device nodes other than whiteouts cannot be created, so unpacked
//! base layers skip them and a RUN's `mknod` fails, as with BuildKit rootless (the stored
//! layers keep their devices). Files a container creates as a non-root id belong to a
//! subordinate id on the host, which the user cannot read outside the namespace; packing,
//! hashing, GC and reclaiming all run inside it.
//!
//! When a namespace cannot be had (no subordinate ids, no `newuidmap`, user namespaces
//! disabled or refused by seccomp/AppArmor), the process goes on unprivileged: everything but
//! RUN works (a build without root reads layers through temporary merged trees), and a RUN
//! step fails with the reason and its fix ([`unavailable`]).

mod access;
mod ids;
mod kept;

pub use access::check_store_access;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::ExecError;

/// How this process runs RUN steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Root of the host: runc and overlayfs as they are.
    Root,
    /// Root of a user namespace (entered by [`enter`], or one the process started in, such
    /// as a rootless container's).
    UserNamespace,
    /// Neither: RUN steps fail with [`unavailable`]'s reason; everything else works.
    Unprivileged,
}

/// Why RUN steps cannot run here, when [`enter`] could not make a namespace.
static UNAVAILABLE: OnceLock<String> = OnceLock::new();
/// Whether the process is in a user namespace: 0 not known yet, 1 no, 2 yes. Read lazily from
/// `/proc/self/uid_map`; [`enter`] sets it once inside, whatever was read before.
static IN_USER_NAMESPACE: AtomicU8 = AtomicU8::new(0);

const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";

/// Enters a user namespace when the process is not root (see the module docs). Call it at
/// the start of `main`, before any thread starts (`unshare` refuses a process with several
/// threads). Root, and a process already in a user namespace as its root, stay as they are.
///
/// `Ok(Mode::Unprivileged)` means no namespace could be had: the process is unchanged and
/// [`unavailable`] says why. An error means the namespace was made but its id maps could not
/// be written; the process cannot create files any more and should exit with the message.
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     // First, before an async runtime or any other thread starts.
///     let mode = lamina_exec::rootless::enter()?;
///     eprintln!("RUN steps run as {mode:?}");
///     // ... then start the runtime, open the store, build.
///     Ok(())
/// }
/// ```
pub fn enter() -> Result<Mode, ExecError> {
    if rustix::process::geteuid().is_root() {
        return Ok(if in_user_namespace() {
            Mode::UserNamespace
        } else {
            Mode::Root
        });
    }
    match prepare() {
        Ok(maps) => enter_with(maps),
        Err(reason) => {
            let _ = UNAVAILABLE.set(reason);
            Ok(Mode::Unprivileged)
        }
    }
}

/// Why this process cannot run RUN steps, when [`enter`] found no way to; `None` when it is
/// root (of the host or a namespace) or `enter` was not called.
pub fn unavailable() -> Option<&'static str> {
    UNAVAILABLE.get().map(String::as_str)
}

/// Whether this process is in a user namespace other than the host's (its uid map is not the
/// identity over all ids).
pub fn in_user_namespace() -> bool {
    match IN_USER_NAMESPACE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let inside = std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
                let fields: Vec<&str> = map.split_whitespace().collect();
                fields != ["0", "0", "4294967295"]
            });
            IN_USER_NAMESPACE.store(if inside { 2 } else { 1 }, Ordering::Relaxed);
            inside
        }
    }
}

/// The extended attribute overlayfs marks opaque directories with here: `user.overlay.opaque`
/// in a user namespace (mounted with `userxattr`), `trusted.overlay.opaque` otherwise.
pub(crate) fn opaque_xattr() -> &'static str {
    if in_user_namespace() {
        "user.overlay.opaque"
    } else {
        "trusted.overlay.opaque"
    }
}

/// The `newuidmap` and `newgidmap` arguments (after the pid) for this user.
#[derive(Debug)]
struct Maps {
    uid: Vec<String>,
    gid: Vec<String>,
}

/// Checks everything that can be checked before `unshare` (after it, a failure leaves the
/// process in a namespace without ids), and returns the maps, or why there is no namespace.
fn prepare() -> Result<Maps, String> {
    let (uid, gid) = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| ids::user_name(&passwd, uid))
        .or_else(|| std::env::var("USER").ok());
    let who = name.clone().unwrap_or_else(|| uid.to_string());
    let uids = ids::read_ranges(Path::new(SUBUID), name.as_deref(), uid);
    let gids = ids::read_ranges(Path::new(SUBGID), name.as_deref(), uid);
    if uids.is_empty() || gids.is_empty() {
        return Err(ExecError::NoSubordinateIds { user: who }.to_string());
    }
    for tool in ["newuidmap", "newgidmap"] {
        if !on_path(tool) {
            return Err(ExecError::IdMapToolMissing {
                tool: tool.to_owned(),
            }
            .to_string());
        }
    }
    Ok(Maps {
        uid: ids::map_args(uid, &uids),
        gid: ids::map_args(gid, &gids),
    })
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

fn enter_with(maps: Maps) -> Result<Mode, ExecError> {
    let runtime = kept::runtime_dir();
    let _lock = runtime.as_deref().and_then(kept::lock);
    if let Some(dir) = &runtime
        && kept::join(dir, &maps)
    {
        return finish();
    }
    let pid = std::process::id().to_string();
    // Spawned before the unshare, so it stays in the host's namespace where the setuid tools
    // work; it waits for a line and maps this process, both maps at once (each tool costs a
    // setuid exec). The maps are numbers only, so the shell's word
    // splitting of `$1` and `$2` is what turns them into arguments.
    let helper = Command::new("sh")
        .arg("-c")
        .arg(r#"read -r _ || exit 1; newuidmap "$0" $1 & u=$!; newgidmap "$0" $2 || exit 1; wait $u"#)
        .arg(&pid)
        .arg(maps.uid.join(" "))
        .arg(maps.gid.join(" "))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut helper = match helper {
        Ok(child) => child,
        Err(e) => {
            let _ = UNAVAILABLE.set(format!("cannot start the id-mapping helper `sh`: {e}"));
            return Ok(Mode::Unprivileged);
        }
    };
    // SAFETY: without `FILES` the descriptor table stays shared; no thread can observe a
    // difference (the namespace is process-wide state the kernel switches atomically).
    let unshared = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) };
    if let Err(errno) = unshared {
        drop(helper.stdin.take());
        let _ = helper.wait();
        let _ = UNAVAILABLE.set(
            ExecError::UserNamespaceRefused {
                cause: refusal_cause(errno),
            }
            .to_string(),
        );
        return Ok(Mode::Unprivileged);
    }
    if let Some(mut stdin) = helper.stdin.take() {
        let _ = stdin.write_all(b"go\n");
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = helper.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let status = helper.wait().map_err(|source| ExecError::Io {
        path: "newuidmap".into(),
        source,
    })?;
    if !status.success() {
        return Err(ExecError::IdMapFailed {
            message: stderr.trim().replace('\n', "; "),
        });
    }
    // Kept for the next commands, outside this process's mount namespace (made next), so
    // that its mounts end with it.
    if let Some(dir) = &runtime {
        kept::keep(dir);
    }
    finish()
}

/// In the user namespace: a mount namespace of this process's own, private.
fn finish() -> Result<Mode, ExecError> {
    // SAFETY: as for the user namespace above.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.map_err(
        |e| ExecError::Io {
            path: "/proc/self/ns/mnt".into(),
            source: e.into(),
        },
    )?;
    IN_USER_NAMESPACE.store(2, Ordering::Relaxed);
    // Mounts made here must never reach the host's namespace (they would not be allowed to,
    // but make it explicit): everything below `/` becomes private to this namespace.
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|e| ExecError::Io {
        path: "/".into(),
        source: e.into(),
    })?;
    Ok(Mode::UserNamespace)
}

/// Why `unshare(CLONE_NEWUSER)` failed, and what to do.
fn refusal_cause(errno: rustix::io::Errno) -> String {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    match errno {
        rustix::io::Errno::INVAL => {
            "the process already runs several threads; call lamina_exec::rootless::enter() at the \
             start of main"
                .to_owned()
        }
        rustix::io::Errno::NOSPC | rustix::io::Errno::USERS => {
            let max = sysctl("user.max_user_namespaces").unwrap_or_else(|| "?".into());
            format!(
                "the sysctl user.max_user_namespaces is {max} (or its limit is reached); raise it \
                 as root: sysctl -w user.max_user_namespaces=15000"
            )
        }
        _ if sysctl("kernel.unprivileged_userns_clone").as_deref() == Some("0") => {
            "the sysctl kernel.unprivileged_userns_clone is 0; enable it as root: sysctl -w \
             kernel.unprivileged_userns_clone=1"
                .to_owned()
        }
        _ if sysctl("kernel.apparmor_restrict_unprivileged_userns").as_deref() == Some("1") => {
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns=1); give lamina an AppArmor profile \
             that allows `userns`, or set that sysctl to 0"
                .to_owned()
        }
        errno => format!(
            "unshare(CLONE_NEWUSER) was refused ({errno}): inside a container, its seccomp or \
             AppArmor profile blocks user namespaces; run the container with a profile that \
             allows them (docker/podman: --security-opt seccomp=unconfined --security-opt \
             apparmor=unconfined), or run lamina as root"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_cause_and_what_to_do() {
        let limit = refusal_cause(rustix::io::Errno::NOSPC);
        assert!(
            limit.contains("user.max_user_namespaces") && limit.contains("sysctl -w"),
            "{limit}"
        );
        let threads = refusal_cause(rustix::io::Errno::INVAL);
        assert!(threads.contains("start of main"), "{threads}");
        // EPERM: a sysctl when one says so, else the container's profile.
        let denied = refusal_cause(rustix::io::Errno::PERM);
        assert!(
            denied.contains("unprivileged_userns_clone")
                || denied.contains("AppArmor")
                || denied.contains("seccomp"),
            "{denied}"
        );
    }

    #[test]
    fn no_subordinate_ids_give_the_usermod_line() {
        let message = ExecError::NoSubordinateIds {
            user: "alice".into(),
        }
        .to_string();
        assert!(
            message
                .ends_with("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice"),
            "{message}"
        );
    }
}
