//! The image config as a build carries it from step to step, and how config-only steps
//! change it.
//!
//! The config is kept in Docker's JSON shape (a superset of the OCI image config: it also
//! has `Healthcheck`, `Shell` and `OnBuild`), with sorted maps so that the same config always
//! serializes to the same bytes. Each step's config is stored as a blob under its cache key;
//! the final image stores it whole (OCI readers ignore the Docker-only fields).
//!
//! Configs come from every tool that writes images, so parsing is lenient where they differ
//! and strict where they agree: `null` or a missing member reads as absent/empty (Docker
//! writes `"OnBuild": null`, `"Volumes": null`), fields this type does not know are kept as
//! they are (`container_config`, `docker_version`, `moby.buildkit.*`...), `Cmd`, `Entrypoint`
//! and `Shell` may be one string as in Docker's own types, and anything else of the wrong
//! type is an error naming the field.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use lamina_spec::{Command, Healthcheck, Instruction};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::ExecError;

/// The shell of shell-form commands when the stage sets none.
pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// An empty JSON object: the value type of Docker's `ExposedPorts` and `Volumes` maps.
/// Whatever a tool wrote there (`{}`, `null`) means the same, so any value reads as this.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(Empty {})
    }
}

/// Labels, where a `null` value is no label (as other readers drop it).
fn labels<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let map: Option<BTreeMap<String, Option<String>>> = Option::deserialize(deserializer)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

/// `config.Healthcheck` as Docker writes it (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HealthConfig {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub interval: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: u64,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub retries: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `null` as the type's empty value (Go's encoder writes `null` for empty slices and maps).
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An argv that Docker also accepts as one string (its `StrSlice`): `"x"` is `["x"]`.
fn argv<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a list of strings, a string or null")]
    enum StrSlice {
        List(Vec<String>),
        One(String),
    }
    Ok(
        Option::<StrSlice>::deserialize(deserializer)?.map(|s| match s {
            StrSlice::List(list) => list,
            StrSlice::One(one) => vec![one],
        }),
    )
}

/// The `config` object: what a container of the image runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        default,
        deserialize_with = "argv",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "argv",
        skip_serializing_if = "Option::is_none"
    )]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "labels",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(
        default,
        deserialize_with = "argv",
        skip_serializing_if = "Option::is_none"
    )]
    pub shell: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    /// Members this type does not know (`Hostname`, `AttachStdin`, `ArgsEscaped`...), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `rootfs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default, deserialize_with = "nullable")]
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
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub empty_layer: bool,
    /// Members this type does not know (`author`...), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An image config (Docker's JSON shape, deterministic serialization).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    #[serde(default, deserialize_with = "nullable")]
    pub config: RunConfig,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Members this type does not know (`author`, `container_config`, `docker_version`,
    /// `moby.buildkit.buildinfo.v1`, `variant`...), kept as they are.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
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
            extra: BTreeMap::new(),
        }
    }

    /// Parses stored config bytes (a step's); see the module docs for what is accepted.
    pub fn parse(bytes: &[u8], digest: &lamina_store::Digest) -> Result<Self, ExecError> {
        ImageConfig::parse_lenient(bytes).map_err(|(field, reason)| {
            ExecError::InvalidStoredConfig {
                digest: digest.to_string(),
                reason: format!("field {field}: {reason}"),
            }
        })
    }

    /// Parses a base image's config bytes; an error names the image and the field.
    pub fn parse_base(bytes: &[u8], image: &str) -> Result<Self, ExecError> {
        ImageConfig::parse_lenient(bytes).map_err(|(field, reason)| ExecError::InvalidBaseConfig {
            image: image.to_owned(),
            field,
            reason,
        })
    }

    /// The parse both entry points share: the config, or the field path and what is wrong.
    /// The text is read as a JSON value first, so a member given twice counts once (the
    /// last), as for every other reader of configs.
    pub fn parse_lenient(bytes: &[u8]) -> Result<Self, (String, String)> {
        // Straight from the bytes first: a cache hit parses every step's config, and the
        // JSON value doubled the cost. A member given twice fails here (serde's derive
        // refuses duplicate fields) and takes the value path, as does any error, for its
        // field path. One difference is accepted: the values of `ExposedPorts` and
        // `Volumes` members, which are ignored, are skipped here without being checked (an
        // invalid escape or an out-of-range number in one parses here and not there).
        let mut config = match serde_json::from_slice::<ImageConfig>(bytes) {
            Ok(config) => config,
            Err(_) => {
                let value: Value = serde_json::from_slice(bytes)
                    .map_err(|e| ("(document)".to_owned(), e.to_string()))?;
                serde_path_to_error::deserialize(value)
                    .map_err(|e| (field_path(e.path()), e.inner().to_string()))?
            }
        };
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
            extra: BTreeMap::new(),
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

/// Parses config bytes as a build reads a base's config and returns the bytes the build
/// would store for it unchanged (canonical form), or the field and what is wrong with it.
/// For checks and fuzzing: every config an import or pull accepts must read here.
pub fn canonical_config(bytes: &[u8]) -> Result<Vec<u8>, String> {
    ImageConfig::parse_lenient(bytes)
        .map(|config| config.to_bytes())
        .map_err(|(field, reason)| format!("config field {field}: {reason}"))
}

/// A serde path as a config field name (`config.Env`, `history[2].created_by`); the whole
/// document when the error is at its top.
fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." || text.is_empty() {
        "(document)".to_owned()
    } else {
        text
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

    /// Every config of the export crate's fixtures: real ones from dockerd (BuildKit and
    /// classic), podman and skopeo, and the shapes kaniko, ko, Jib and apko write.
    fn fixture_configs() -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                if path.is_dir() {
                    walk(&path, out);
                } else if name.ends_with("config.json") {
                    out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../lamina-export/tests/fixtures");
        let mut out = Vec::new();
        walk(&root, &mut out);
        assert!(out.len() >= 20, "fixtures missing under {}", root.display());
        out
    }

    #[test]
    fn configs_of_every_tool_parse_and_round_trip() {
        for (path, bytes) in fixture_configs() {
            let config = ImageConfig::parse_base(&bytes, &path).unwrap_or_else(|e| panic!("{e}"));
            let again = ImageConfig::parse_lenient(&config.to_bytes()).unwrap();
            assert_eq!(again, config, "{path}");
            // OCI readers read what Lamina writes back.
            serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&config.to_bytes())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn docker_nulls_read_as_empty_and_unknown_fields_stay() {
        // What Docker 20.10's classic builder writes for a FROM scratch image (issue 10's
        // `"OnBuild": null` failure).
        let text = br#"{"architecture":"amd64","config":{"Hostname":"","User":"","Env":["PATH=/bin"],"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"ExposedPorts":null,"Healthcheck":null,"Shell":null},"container_config":{"Cmd":["/bin/sh"]},"docker_version":"20.10.24","history":null,"os":"linux","rootfs":{"type":"layers","diff_ids":null}}"#;
        let config = ImageConfig::parse_base(text, "base").unwrap();
        let c = &config.config;
        assert!(c.on_build.is_empty() && c.volumes.is_empty() && c.labels.is_empty());
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.env, ["PATH=/bin"]);
        assert!(config.rootfs.diff_ids.is_empty());
        assert_eq!(config.extra["docker_version"], "20.10.24");
        assert_eq!(c.extra["Hostname"], "");
        let bytes = String::from_utf8(config.to_bytes()).unwrap();
        assert!(
            bytes.contains(r#""container_config":{"Cmd":["/bin/sh"]}"#),
            "{bytes}"
        );
        // Docker's StrSlice: one string is a one-word command.
        let one = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":"serve"},"rootfs":{"type":"layers"}}"#;
        let config = ImageConfig::parse_base(one, "base").unwrap();
        assert_eq!(config.config.cmd.as_deref().unwrap(), ["serve"]);
    }

    #[test]
    fn a_malformed_base_config_names_the_image_and_field() {
        let text = br#"{"architecture":"amd64","os":"linux","config":{"Env":"PATH=/bin"},"rootfs":{"type":"layers"}}"#;
        let err = ImageConfig::parse_base(text, "sha256:abc").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("base image sha256:abc: config field config.Env is malformed (invalid type: string \"PATH=/bin\""),
            "{message}"
        );
        let digest = lamina_store::Digest::blake3_of(text);
        let err = ImageConfig::parse(text, &digest).unwrap_err();
        assert!(err.to_string().contains("field config.Env"), "{err}");
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
