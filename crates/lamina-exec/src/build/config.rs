//! The image config as a build carries it from step to step, and how config-only steps
//! change it.
//!
//! The config is kept in Docker's JSON shape (a superset of the OCI image config: it also
//! has `Healthcheck`, `Shell` and `OnBuild`), with sorted maps so that the same config always
//! serializes to the same bytes. Each step's config is stored as a blob under its cache key;
//! the final image stores it whole (OCI readers ignore the Docker-only fields).

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use lamina_spec::{Command, Healthcheck, Instruction};
use serde::{Deserialize, Serialize};

use crate::ExecError;

/// The shell of shell-form commands when the stage sets none.
pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// An empty JSON object: the value type of Docker's `ExposedPorts` and `Volumes` maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Empty {}

/// `config.Healthcheck` as Docker writes it (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The `config` object: what a container of the image runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_build: Vec<String>,
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image config (Docker's JSON shape, deterministic serialization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

impl ImageConfig {
    /// The config of `FROM scratch`.
    pub fn scratch() -> Self {
        ImageConfig {
            created: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            config: RunConfig::default(),
            rootfs: RootFs {
                typ: "layers".into(),
                diff_ids: Vec::new(),
            },
            history: Vec::new(),
        }
    }

    /// Parses stored config bytes (a base image's or a step's); unknown fields are dropped.
    pub fn parse(bytes: &[u8], digest: &lamina_store::Digest) -> Result<Self, ExecError> {
        let mut config: ImageConfig =
            serde_json::from_slice(bytes).map_err(|e| ExecError::InvalidStoredConfig {
                digest: digest.to_string(),
                reason: e.to_string(),
            })?;
        // Lamina builds linux/amd64 images whatever the base said.
        config.architecture = "amd64".into();
        config.os = "linux".into();
        Ok(config)
    }

    /// The canonical bytes of this config.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs, strings and BTreeMaps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.config.env.iter().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
    }

    /// The environment as pairs, for expanding the stages built on this image.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.config
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Sets (or replaces) environment variable `name`.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        let prefix = format!("{name}=");
        match self
            .config
            .env
            .iter_mut()
            .find(|kv| kv.starts_with(&prefix))
        {
            Some(kv) => *kv = entry,
            None => self.config.env.push(entry),
        }
    }

    /// The working directory (default `/`).
    pub fn workdir(&self) -> &str {
        self.config
            .working_dir
            .as_deref()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
    }

    /// The shell for shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
    }

    /// Appends a history entry for a step.
    pub fn push_history(&mut self, created_by: String, empty_layer: bool, created: &str) {
        self.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(created_by),
            comment: Some("lamina".into()),
            empty_layer,
        });
    }

    /// Applies a step that only changes the config. `cmd_set` says whether this stage has
    /// set `CMD` already (an `ENTRYPOINT` clears an inherited `CMD`, as in Docker). Returns
    /// `false` for instructions that are not config-only (`RUN`, `COPY`, `ADD`).
    pub fn apply(&mut self, instruction: &Instruction, escape: char, cmd_set: &mut bool) -> bool {
        let c = &mut self.config;
        match instruction {
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    self.set_env(k, v);
                }
            }
            Instruction::Workdir(dir) => {
                let dir = resolve_path(self.workdir(), dir);
                self.config.working_dir = Some(dir);
            }
            Instruction::User(user) => c.user = Some(user.clone()),
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    c.labels.insert(k.clone(), v.clone());
                }
            }
            Instruction::Expose(ports) => {
                for port in ports {
                    let port = if port.contains('/') {
                        port.to_ascii_lowercase()
                    } else {
                        format!("{port}/tcp")
                    };
                    c.exposed_ports.insert(port, Empty {});
                }
            }
            Instruction::Volume(paths) => {
                for path in paths {
                    c.volumes.insert(path.clone(), Empty {});
                }
            }
            Instruction::Shell(words) => c.shell = Some(words.clone()),
            Instruction::Entrypoint(command) => {
                let argv = self.argv(command);
                self.config.entrypoint = Some(argv);
                if !*cmd_set {
                    self.config.cmd = None;
                }
            }
            Instruction::Cmd(command) => {
                let argv = self.argv(command);
                self.config.cmd = Some(argv);
                *cmd_set = true;
            }
            Instruction::StopSignal(signal) => c.stop_signal = Some(signal.clone()),
            Instruction::Healthcheck(check) => {
                let health = self.health(check);
                self.config.healthcheck = Some(health);
            }
            Instruction::Onbuild(inner) => {
                c.on_build.push(inner.render(escape).trim_end().to_string());
            }
            Instruction::Arg(_) | Instruction::Maintainer(_) => {}
            Instruction::Run(_) | Instruction::Copy(_) => return false,
        }
        true
    }

    /// A command as argv: exec form as is, shell form through the stage's shell.
    pub fn argv(&self, command: &Command) -> Vec<String> {
        match command {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(text) => {
                let mut argv = self.shell();
                argv.push(text.clone());
                argv
            }
        }
    }

    fn health(&self, check: &Healthcheck) -> HealthConfig {
        match check {
            Healthcheck::None => HealthConfig {
                test: vec!["NONE".into()],
                ..HealthConfig::default()
            },
            Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                let test = match command {
                    Command::Exec(argv) => std::iter::once("CMD".to_string())
                        .chain(argv.iter().cloned())
                        .collect(),
                    Command::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
                };
                let nanos = |d: &Option<String>| d.as_deref().and_then(go_duration_nanos);
                HealthConfig {
                    test,
                    interval: nanos(interval).unwrap_or(0),
                    timeout: nanos(timeout).unwrap_or(0),
                    start_period: nanos(start_period).unwrap_or(0),
                    start_interval: nanos(start_interval).unwrap_or(0),
                    retries: u64::from(retries.unwrap_or(0)),
                }
            }
        }
    }
}

/// `path` made absolute against `base` and cleaned lexically (`..` stops at `/`).
pub(crate) fn resolve_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{base}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds; `None` if it does not parse or is
/// negative. HEALTHCHECK flags were validated by the parser, so a bad one only loses its value.
fn go_duration_nanos(text: &str) -> Option<u64> {
    lamina_spec::parse::go_duration_nanos(text.trim())
        .filter(|nanos| *nanos >= 0.0)
        .map(|nanos| nanos as u64)
}

/// The fixed creation time of everything a build writes: `SOURCE_DATE_EPOCH` when set to a
/// number of seconds, else the epoch, so that digests are reproducible.
pub(crate) fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `epoch` as RFC 3339 (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(epoch)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_spec::Dockerfile;

    fn apply_all(text: &str) -> ImageConfig {
        let df = Dockerfile::parse(text).unwrap();
        let mut config = ImageConfig::scratch();
        let mut cmd_set = false;
        for instruction in &df.stages[0].instructions {
            assert!(config.apply(instruction, '\\', &mut cmd_set));
        }
        config
    }

    #[test]
    fn config_only_steps_change_the_config_docker_style() {
        let config = apply_all(
            "FROM scratch\nENV A=1 B=2\nENV A=3\nWORKDIR /app\nWORKDIR sub/../src\nUSER 1000:1000\n\
             LABEL x=y\nEXPOSE 80 53/UDP\nVOLUME /data\nSHELL [\"/bin/bash\", \"-c\"]\n\
             CMD echo hi\nSTOPSIGNAL SIGTERM\nHEALTHCHECK --interval=1m30s CMD [\"true\"]\n",
        );
        let c = &config.config;
        assert_eq!(c.env, ["A=3", "B=2"]);
        assert_eq!(c.working_dir.as_deref(), Some("/app/src"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.labels["x"], "y");
        assert_eq!(
            c.exposed_ports.keys().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert!(c.volumes.contains_key("/data"));
        assert_eq!(c.cmd.as_deref().unwrap(), ["/bin/bash", "-c", "echo hi"]);
        let health = c.healthcheck.as_ref().unwrap();
        assert_eq!(health.test, ["CMD", "true"]);
        assert_eq!(health.interval, 90_000_000_000);
        // OCI readers see what OCI has in the same bytes.
        let oci: oci_spec::image::ImageConfiguration =
            serde_json::from_slice(&config.to_bytes()).unwrap();
        let oci_config = oci.config().as_ref().unwrap();
        assert_eq!(oci_config.working_dir().as_deref(), Some("/app/src"));
        assert_eq!(oci_config.exposed_ports().as_ref().unwrap().len(), 2);
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_but_not_one_set_in_the_stage() {
        let mut config = ImageConfig::scratch();
        config.config.cmd = Some(vec!["inherited".into()]);
        let mut cmd_set = false;
        let entry = Instruction::Entrypoint(Command::Exec(vec!["app".into()]));
        config.apply(&entry, '\\', &mut cmd_set);
        assert_eq!(config.config.cmd, None);
        config.apply(
            &Instruction::Cmd(Command::Exec(vec!["x".into()])),
            '\\',
            &mut cmd_set,
        );
        config.apply(&entry, '\\', &mut cmd_set);
        assert_eq!(config.config.cmd.as_deref().unwrap(), ["x"]);
    }

    #[test]
    fn serialization_is_deterministic_and_round_trips() {
        let config = apply_all("FROM scratch\nLABEL b=2 a=1 c=3\nEXPOSE 9 1 5\n");
        let bytes = config.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
        let digest = lamina_store::Digest::blake3_of(&bytes);
        assert_eq!(ImageConfig::parse(&bytes, &digest).unwrap(), config);
    }

    #[test]
    fn paths_and_durations() {
        assert_eq!(resolve_path("/", "a/./b/../c"), "/a/c");
        assert_eq!(resolve_path("/x", "../../.."), "/");
        assert_eq!(resolve_path("/x", "/abs/"), "/abs");
        assert_eq!(go_duration_nanos("500ms"), Some(500_000_000));
        assert_eq!(go_duration_nanos("1h"), Some(3_600_000_000_000));
        assert_eq!(go_duration_nanos("soon"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
