//! The runc side of a run: the bundle's `config.json` and the `runc run` process, with its
//! output streamed line by line.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder, get_default_maskedpaths,
    get_default_readonly_paths,
};

use super::overlay::Target;
use super::user::Identity;
use super::{Network, OutputStream};
use crate::ExecError;

/// How many trailing output lines a run keeps.
pub(crate) const LAST_LINES: usize = 20;
/// Longest line passed on; longer ones are split.
const MAX_LINE: usize = 64 * 1024;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host files bind-mounted read-only so name resolution works as on the host.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// Docker's default capability set.
const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// What goes into a bundle's config.
#[derive(Debug)]
pub(crate) struct SpecInput<'a> {
    pub rootfs: &'a Path,
    pub args: &'a [String],
    pub env: Vec<String>,
    pub cwd: &'a str,
    pub identity: &'a Identity,
    pub network: Network,
    /// Build mounts, after the system ones.
    pub mounts: Vec<Mount>,
    /// lamina runs as root of a user namespace (see [`crate::rootless`]).
    pub user_namespace: bool,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, ExecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()?)
}

/// The host files that will be bind-mounted (those the host has).
fn host_files() -> impl Iterator<Item = &'static str> {
    HOST_FILES.into_iter().filter(|f| Path::new(f).is_file())
}

/// Mount points every run needs besides its build mounts.
pub(crate) fn system_targets() -> Vec<Target> {
    let mut targets = vec![
        Target::dir("/proc"),
        Target::dir("/dev"),
        Target::dir("/sys"),
    ];
    targets.extend(host_files().map(Target::file));
    targets
}

/// Sets `KEY=VALUE` in `env` unless `KEY` is there already (`force` replaces it).
fn set_env(env: &mut Vec<String>, entry: &str, force: bool) {
    let key = entry.split('=').next().unwrap_or_default();
    let pos = env.iter().position(|e| e.split('=').next() == Some(key));
    match pos {
        Some(i) if force => env[i] = entry.to_owned(),
        Some(_) => {}
        None => env.push(entry.to_owned()),
    }
}

/// The runtime config: no terminal, the host network namespace unless [`Network::None`],
/// Docker's default capabilities (bounding only for non-root users), no new privileges.
pub(crate) fn spec(input: SpecInput<'_>, extra_env: &[String]) -> Result<Spec, ExecError> {
    let id = input.identity;
    let mut env = input.env;
    set_env(&mut env, &format!("PATH={DEFAULT_PATH}"), false);
    set_env(&mut env, &format!("HOME={}", id.home), false);
    for e in extra_env {
        set_env(&mut env, e, true);
    }
    let all: Capabilities = DEFAULT_CAPS.into_iter().collect();
    let granted = if id.uid == 0 {
        all.clone()
    } else {
        Capabilities::new()
    };
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(all)
        .effective(granted.clone())
        .permitted(granted)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(id.uid)
        .gid(id.gid)
        .additional_gids(id.additional_gids.clone())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(input.args.to_vec())
        .env(env)
        .cwd(input.cwd)
        .capabilities(caps)
        .no_new_privileges(true)
        .build()?;

    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    // sysfs can only be mounted by the owner of the network namespace: in a user namespace
    // with the host's network, the host's `/sys` is bound instead (as rootless Podman and
    // BuildKit do); a network namespace of the run's own is the user namespace's.
    mounts.push(if input.user_namespace && input.network == Network::Host {
        mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?
    });
    for file in host_files() {
        mounts.push(mount(
            file,
            "bind",
            file,
            &["rbind", "ro", "nosuid", "nodev"],
        )?);
    }
    mounts.extend(input.mounts);

    let mut kinds = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if input.network == Network::None {
        kinds.push(LinuxNamespaceType::Network);
    }
    let namespaces = kinds
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;
    let deny_devices = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()?;
    // In a user namespace no cgroup settings (no delegated cgroup is assumed, as with cgroup
    // v1); device nodes cannot be created there either, and runc binds the host's standard
    // ones instead.
    linux.set_resources(if input.user_namespace {
        None
    } else {
        Some(
            LinuxResourcesBuilder::default()
                .devices(vec![deny_devices])
                .build()?,
        )
    });
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(false)
                .build()?,
        )
        .process(process)
        .hostname("lamina")
        .mounts(mounts)
        .linux(linux)
        .build()?)
}

/// A started `runc run`; [`Running::wait`] streams its output.
#[derive(Debug)]
pub(crate) struct Running {
    pub child: Child,
    /// Deletes the container if this process dies first (see [`watchdog`]); told to stand
    /// down when the run ends here.
    watchdog: Option<Child>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            if let Some(mut stdin) = watchdog.stdin.take() {
                let _ = stdin.write_all(b"done\n");
            }
            let _ = watchdog.wait();
        }
    }
}

/// A process that outlives a killed lamina and deletes its container: `runc run`'s
/// container init survives the death of `runc run` and of lamina (a parent-death signal
/// reaches neither), so a shell in its own process group (a terminal's Ctrl-C does not
/// reach it) waits on a pipe only this process writes: end of file without `done` means
/// this process is gone, and it runs `runc delete --force`.
fn watchdog(state: &Path, id: &str) -> Option<Child> {
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .arg("-c")
        .arg(r#"read -r word; [ "$word" = done ] || exec runc --root "$0" delete --force "$1""#)
        .arg(state)
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

/// `runc --root <state> [--log FILE --log-format json]`.
pub(crate) fn runc(state: &Path, log: Option<&Path>) -> Command {
    let mut cmd = Command::new("runc");
    cmd.arg("--root").arg(state);
    if let Some(log) = log {
        cmd.arg("--log").arg(log).args(["--log-format", "json"]);
    }
    cmd
}

/// Starts `runc run --bundle <bundle> <id>` with stdout and stderr piped.
pub(crate) fn start(state: &Path, bundle: &Path, id: &str) -> Result<Running, ExecError> {
    let child = runc(state, Some(&bundle.join("runc.log")))
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::Io {
            path: PathBuf::from("runc"),
            source,
        })?;
    Ok(Running {
        child,
        watchdog: watchdog(state, id),
    })
}

fn pump(
    reader: impl Read,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, String)>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        if tx.send((stream, line)).is_err() {
            return Ok(());
        }
    }
}

impl Running {
    /// Passes each output line to `on_output` as it arrives, waits for runc, and returns the
    /// exit status with the last [`LAST_LINES`] lines.
    /// A cancelled `cancel` ends the wait with [`ExecError::Cancelled`] within
    /// [`crate::CANCEL_POLL`]; the caller's guard then kills and deletes the container.
    pub(crate) fn wait(
        &mut self,
        on_output: &mut (dyn FnMut(OutputStream, &str) + Send),
        cancel: Option<&crate::CancelToken>,
    ) -> Result<(ExitStatus, Vec<String>), ExecError> {
        let (tx, rx) = mpsc::channel();
        let mut readers = Vec::new();
        if let Some(out) = self.child.stdout.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                pump(out, OutputStream::Stdout, tx)
            }));
        }
        if let Some(err) = self.child.stderr.take() {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                pump(err, OutputStream::Stderr, tx)
            }));
        }
        drop(tx);
        let mut last = VecDeque::with_capacity(LAST_LINES);
        // Ends when both pipes close: the container's processes all die with its pid
        // namespace, so nothing keeps them open past runc. The readers of a cancelled run
        // end the same way once the guard has deleted the container.
        loop {
            if cancel.is_some_and(|c| c.is_cancelled()) {
                return Err(ExecError::Cancelled);
            }
            let (stream, line) = match rx.recv_timeout(crate::CANCEL_POLL) {
                Ok(next) => next,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
            };
            on_output(stream, &line);
            if last.len() == LAST_LINES {
                last.pop_front();
            }
            last.push_back(line);
        }
        for r in readers {
            let _ = r.join();
        }
        let status = self.child.wait().map_err(|source| ExecError::Io {
            path: PathBuf::from("runc"),
            source,
        })?;
        Ok((status, last.into()))
    }
}

/// The exit code of a status: the code, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// runc's own error messages from its JSON log (empty when it only passed on the process's
/// exit code).
pub(crate) fn runc_errors(log: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .collect()
}

/// `runc delete --force <id>`, ignoring a container that does not exist.
pub(crate) fn delete(state: &Path, id: &str) {
    let _ = runc(state, None)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(uid: u32) -> Identity {
        Identity {
            uid,
            gid: uid,
            additional_gids: vec![],
            home: "/home/u".into(),
        }
    }

    fn build(uid: u32, network: Network, env: Vec<String>) -> serde_json::Value {
        build_in(uid, network, env, false)
    }

    fn build_in(
        uid: u32,
        network: Network,
        env: Vec<String>,
        user_namespace: bool,
    ) -> serde_json::Value {
        let id = identity(uid);
        let args = vec!["/bin/sh".to_owned()];
        let input = SpecInput {
            rootfs: Path::new("/r"),
            args: &args,
            env,
            cwd: "/w",
            identity: &id,
            network,
            mounts: vec![],
            user_namespace,
        };
        let spec = spec(input, &["SSL_CERT_FILE=/ca".to_owned()]).unwrap();
        serde_json::to_value(&spec).unwrap()
    }

    #[test]
    fn config_has_the_process_and_host_network_by_default() {
        let v = build(0, Network::Host, vec!["PATH=/x".into()]);
        assert_eq!(v["process"]["terminal"], false);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["cwd"], "/w");
        assert_eq!(v["root"]["path"], "/r");
        let env: Vec<&str> = v["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(env, ["PATH=/x", "HOME=/home/u", "SSL_CERT_FILE=/ca"]);
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"mount") && !ns.contains(&"network"), "{ns:?}");
        let effective = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert_eq!(effective.len(), DEFAULT_CAPS.len());
    }

    #[test]
    fn no_network_gets_its_own_namespace_and_non_root_no_effective_caps() {
        let v = build(1000, Network::None, vec![]);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        assert!(
            v["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["env"][0], format!("PATH={DEFAULT_PATH}"));
    }

    #[test]
    fn user_namespace_binds_sys_and_sets_no_cgroup() {
        let sys = |v: &serde_json::Value| {
            v["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["destination"] == "/sys")
                .unwrap()["type"]
                .clone()
        };
        let rootful = build(0, Network::Host, vec![]);
        assert_eq!(sys(&rootful), "sysfs");
        assert!(rootful["linux"]["resources"].is_object());
        let rootless = build_in(0, Network::Host, vec![], true);
        assert_eq!(sys(&rootless), "bind");
        assert!(rootless["linux"]["resources"].is_null());
        let own_network = build_in(0, Network::None, vec![], true);
        assert_eq!(sys(&own_network), "sysfs");
    }
}
