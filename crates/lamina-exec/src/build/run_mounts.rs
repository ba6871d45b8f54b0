//! `RUN --mount=` as BuildKit has it: parsing a value ([`RunMount::parse`]), resolving its
//! sources (the build context, an earlier stage, an image) into sandbox [`BuildMount`]s, and
//! what bind mounts add to the step's key (the content they show; cache mounts, secrets and
//! ssh sockets add nothing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lamina_spec::inputs::{ContentHashCache, resolve_copy_inputs_cached};
use lamina_spec::{Copy, Run, StepRef};
use lamina_store::LayerRecord;

use super::key::{self, CacheKey, hex};
use super::steps::Build;
use crate::ExecError;
use crate::sandbox::{BuildMount, CacheSharing, MountSource, Ownership};

/// The mount types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// One `RUN --mount=` value, parsed (sources not resolved yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunMount {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readonly: Option<bool>,
    pub id: Option<String>,
    pub sharing: CacheSharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    pub size: Option<u64>,
    pub env: Option<String>,
}

/// The fields of a mount value: comma-separated, a field in double quotes may hold commas.
fn fields(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out.into_iter()
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

/// A size like BuildKit's: bytes, or a number with `k`, `m`, `g`, `t` (optionally `b`/`kb`...),
/// powers of 1024.
fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let shift = match unit {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    let number: f64 = digits.parse().ok()?;
    (number >= 0.0).then(|| (number * (1u64 << shift) as f64) as u64)
}

impl RunMount {
    /// [`RunMount::parse`] with the target placed as BuildKit places it in a stage whose
    /// working directory is `workdir`: a relative target (or none, for bind, cache and tmpfs)
    /// is taken from the working directory; `/` is refused.
    pub(crate) fn parse_in(spec: &str, workdir: &str) -> Result<RunMount, ExecError> {
        let mut mount = RunMount::parse(spec)?;
        // BuildKit names a cache by its target as written (cleaned), before placing it: the
        // same `target=.npm` under two working directories is one cache.
        if mount.kind == MountType::Cache && mount.id.is_none() {
            let raw = mount.target.as_deref().unwrap_or_default();
            let clean = super::config::resolve_path("/", raw);
            mount.id = Some(if raw.starts_with('/') {
                clean
            } else if clean == "/" {
                ".".to_string()
            } else {
                clean.trim_start_matches('/').to_string()
            });
        }
        let placed = match (&mount.target, mount.kind) {
            (Some(target), _) => Some(super::config::resolve_path(workdir, target)),
            (None, MountType::Bind | MountType::Cache | MountType::Tmpfs) => {
                Some(super::config::resolve_path(workdir, "."))
            }
            (None, _) => None,
        };
        if placed.as_deref() == Some("/") {
            return Err(ExecError::InvalidMount {
                spec: spec.to_owned(),
                reason: format!(
                    "the target is `/` (from the working directory {workdir}); give target=/path"
                ),
            });
        }
        mount.target = placed;
        Ok(mount)
    }

    /// Parses a `RUN --mount=` value: `type=bind|cache|tmpfs|secret|ssh` (default bind) and
    /// the options BuildKit documents for each type. A relative or missing target stays as
    /// given: [`RunMount::parse_in`] places it in the working directory.
    pub(crate) fn parse(spec: &str) -> Result<RunMount, ExecError> {
        let fail = |reason: String| ExecError::InvalidMount {
            spec: spec.to_owned(),
            reason,
        };
        let mut opts: BTreeMap<&'static str, Option<String>> = BTreeMap::new();
        for field in fields(spec) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                None => (field.to_ascii_lowercase(), None),
            };
            let key = match key.as_str() {
                "type" => "type",
                "target" | "dst" | "destination" => "target",
                "source" | "src" => "source",
                "from" => "from",
                "id" => "id",
                "sharing" => "sharing",
                "readonly" | "ro" => "readonly",
                "rw" | "readwrite" => "rw",
                "required" => "required",
                "size" => "size",
                "mode" => "mode",
                "uid" => "uid",
                "gid" => "gid",
                "env" => "env",
                // Docker-for-Mac and propagation options: no meaning for a build on Linux.
                "consistency" | "bind-propagation" => continue,
                _ => {
                    return Err(fail(format!(
                        "unknown option `{key}`; use type, target, source, from, id, sharing, \
                         readonly, rw, required, size, mode, uid, gid or env"
                    )));
                }
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
        let value = |key: &str| opts.get(key).cloned().flatten().filter(|v| !v.is_empty());
        let number = |key: &str, radix: u32| -> Result<Option<u32>, ExecError> {
            value(key)
                .map(|v| {
                    u32::from_str_radix(&v, radix).map_err(|_| {
                        let kind = if radix == 8 {
                            "an octal mode"
                        } else {
                            "a number"
                        };
                        fail(format!("`{key}={v}` must be {kind}"))
                    })
                })
                .transpose()
        };
        let kind = match value("type").as_deref().unwrap_or("bind") {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            other => {
                return Err(fail(format!(
                    "unknown type `{other}`; use bind, cache, tmpfs, secret or ssh"
                )));
            }
        };
        let allowed: &[&str] = match kind {
            MountType::Bind => &["target", "source", "from", "readonly", "rw"],
            MountType::Cache => &[
                "target", "id", "sharing", "from", "source", "mode", "uid", "gid", "readonly", "rw",
            ],
            MountType::Tmpfs => &["target", "size"],
            MountType::Secret => &["target", "id", "env", "required", "mode", "uid", "gid"],
            MountType::Ssh => &["target", "id", "required", "mode", "uid", "gid"],
        };
        if let Some(k) = opts.keys().find(|k| **k != "type" && !allowed.contains(k)) {
            return Err(fail(format!(
                "option `{k}` does not apply to a {} mount",
                value("type").unwrap_or_else(|| "bind".into())
            )));
        }
        let target = value("target").filter(|t| !t.is_empty());
        let readonly = match (flag("readonly")?, flag("rw")?) {
            (Some(true), Some(true)) => {
                return Err(fail("`readonly` and `rw` contradict each other".into()));
            }
            (Some(ro), _) => Some(ro),
            (None, Some(rw)) => Some(!rw),
            (None, None) => None,
        };
        let sharing = match value("sharing").as_deref().unwrap_or("shared") {
            "shared" => CacheSharing::Shared,
            "locked" => CacheSharing::Locked,
            "private" => CacheSharing::Private,
            other => {
                return Err(fail(format!(
                    "sharing `{other}` is not one of shared, locked, private"
                )));
            }
        };
        let size = value("size")
            .map(|s| {
                parse_size(&s).ok_or_else(|| {
                    fail(format!(
                        "size `{s}` must be bytes or a number with k, m, g or t"
                    ))
                })
            })
            .transpose()?;
        let env = value("env");
        if kind == MountType::Secret && value("id").is_none() && target.is_none() {
            return Err(fail("a secret needs id= or target=".into()));
        }
        Ok(RunMount {
            kind,
            target,
            source: value("source"),
            from: value("from"),
            readonly,
            id: value("id"),
            sharing,
            mode: number("mode", 8)?,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
            required: flag("required")?.unwrap_or(false),
            size,
            env,
        })
    }
}

/// Checks a `RUN --mount=` value as a build would parse it (for `lamina check`): the same
/// error the build gives, before anything runs. Sources are not resolved here.
pub fn validate_run_mount(spec: &str) -> Result<(), ExecError> {
    RunMount::parse(spec).map(|_| ())
}

/// The `from=` of a mount value, if it parses and has one (for planning which stages and
/// images a build needs).
pub(crate) fn mount_from(spec: &str) -> Option<String> {
    RunMount::parse(spec).ok().and_then(|m| m.from)
}

/// A bind source in the build context as a relative path (`.` for the root), refusing `..`.
fn context_relative(source: &str) -> Result<String, String> {
    let rel = source.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return Err(format!(
            "source `{source}` must stay inside the build context"
        ));
    }
    Ok(if rel.is_empty() {
        ".".into()
    } else {
        rel.into()
    })
}

/// The host path of a bind source in the build context at `root`: it must exist and stay
/// inside the context, symlinks followed.
pub(crate) fn context_source(root: &Path, source: &str) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| format!("the build context {}: {e}", root.display()))?;
    let rel = context_relative(source)?;
    let path = std::fs::canonicalize(root.join(rel))
        .map_err(|e| format!("source `{source}` in the build context: {e}"))?;
    if !path.starts_with(&root) {
        return Err(format!(
            "source `{source}` leads outside the build context through a symlink"
        ));
    }
    Ok(path)
}

/// Where a `from=` (or its absence) points.
enum Origin {
    Context(PathBuf),
    Layers(Vec<LayerRecord>, String),
}

impl Build<'_> {
    fn origin(&self, s: usize, i: usize, from: Option<&str>) -> Origin {
        match from {
            None => Origin::Context(
                self.image
                    .context()
                    .root_for(StepRef {
                        stage: s,
                        instruction: i,
                    })
                    .to_path_buf(),
            ),
            Some(from) if let Some(dir) = self.context_dir(from) => Origin::Context(dir.into()),
            Some(from) => {
                Origin::Layers(self.source_layers(s, from), self.source_identity(s, from))
            }
        }
    }

    /// What the bind mounts of a RUN add to its key: for each, its target and options, and
    /// the content it shows (the context files as COPY hashes them, or the source stage's key
    /// or image's digest). [`key::NO_INPUTS`] when it has none.
    pub(crate) fn run_inputs(
        &self,
        s: usize,
        i: usize,
        run: &Run,
        workdir: &str,
    ) -> Result<CacheKey, ExecError> {
        let mut parts = Vec::new();
        for spec in &run.mounts {
            let mount = RunMount::parse_in(spec, workdir)?;
            if mount.kind != MountType::Bind {
                continue;
            }
            let source = mount.source.clone().unwrap_or_default();
            let content = match self.origin(s, i, mount.from.as_deref()) {
                Origin::Context(root) => {
                    let rel =
                        context_relative(&source).map_err(|reason| ExecError::InvalidMount {
                            spec: spec.clone(),
                            reason,
                        })?;
                    let copy = Copy::new(vec![rel], "/");
                    let cache = self.hash_cache.get() as &dyn ContentHashCache;
                    let matches = resolve_copy_inputs_cached(&copy, &root, Some(cache))?;
                    hex(&key::inputs_digest(&matches))
                }
                Origin::Layers(_, id) => id,
            };
            parts.push(format!(
                "bind\0{}\0{source}\0{content}",
                mount.target.unwrap_or_default()
            ));
        }
        if parts.is_empty() {
            return Ok(key::NO_INPUTS);
        }
        Ok(key::from_inputs(&parts.join("\0\0")))
    }

    /// The sandbox mounts of a RUN's `--mount=` values, sources resolved.
    pub(crate) fn run_mounts(
        &self,
        s: usize,
        i: usize,
        run: &Run,
        workdir: &str,
    ) -> Result<Vec<BuildMount>, ExecError> {
        let mut out = Vec::new();
        for (n, spec) in run.mounts.iter().enumerate() {
            let mount = RunMount::parse_in(spec, workdir)?;
            let fail = |reason: String| ExecError::InvalidMount {
                spec: spec.clone(),
                reason,
            };
            let ownership = |mode: u32| Ownership {
                mode: mount.mode.unwrap_or(mode),
                uid: mount.uid.unwrap_or(0),
                gid: mount.gid.unwrap_or(0),
            };
            let target = mount.target.clone().unwrap_or_default();
            match mount.kind {
                MountType::Bind => out.push(BuildMount::Bind {
                    source: self.mount_source(s, i, &mount).map_err(fail)?,
                    target,
                    readonly: mount.readonly.unwrap_or(true),
                }),
                MountType::Cache => {
                    let seed = match mount.from {
                        Some(_) => Some(self.mount_source(s, i, &mount).map_err(fail)?),
                        None => None,
                    };
                    // A cache seeded from elsewhere is another cache.
                    let mut id = mount.id.clone().unwrap_or_else(|| target.clone());
                    if let Some(from) = &mount.from {
                        let source = mount.source.as_deref().unwrap_or("/");
                        id = format!("{id}\0{}\0{source}", self.source_identity(s, from));
                    }
                    out.push(BuildMount::Cache {
                        id,
                        target,
                        sharing: mount.sharing,
                        ownership: ownership(0o755),
                        seed,
                        readonly: mount.readonly.unwrap_or(false),
                    });
                }
                MountType::Tmpfs => out.push(BuildMount::Tmpfs {
                    target,
                    size: mount.size,
                }),
                MountType::Secret => {
                    let id = mount.id.clone().unwrap_or_else(|| {
                        target.rsplit('/').next().unwrap_or_default().to_owned()
                    });
                    let Some(source) = self.options.secrets.get(&id) else {
                        if mount.required {
                            return Err(ExecError::MissingSecret { id });
                        }
                        continue; // BuildKit: an optional secret that is not given is absent
                    };
                    let target = match (&mount.target, &mount.env) {
                        (Some(t), _) => Some(t.clone()),
                        (None, Some(_)) => None,
                        (None, None) => Some(format!("/run/secrets/{id}")),
                    };
                    out.push(BuildMount::Secret {
                        source: source.clone(),
                        target,
                        env: mount.env.clone(),
                        ownership: ownership(0o400),
                    });
                }
                MountType::Ssh => {
                    let id = mount.id.clone().unwrap_or_else(|| "default".into());
                    let Some(socket) = self.options.ssh.get(&id) else {
                        return Err(fail(format!(
                            "no ssh agent `{id}` was given to the build; pass --ssh {id} (the \
                             agent of $SSH_AUTH_SOCK) or --ssh {id}=SOCKET"
                        )));
                    };
                    out.push(BuildMount::Ssh {
                        socket: socket.clone(),
                        target: mount
                            .target
                            .clone()
                            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The source of a bind mount or a cache seed: a context path (confined to the context)
    /// or a path in a stage or image.
    fn mount_source(&self, s: usize, i: usize, mount: &RunMount) -> Result<MountSource, String> {
        let source = mount.source.as_deref().unwrap_or("/");
        match self.origin(s, i, mount.from.as_deref()) {
            Origin::Context(root) => context_source(&root, source).map(MountSource::Host),
            Origin::Layers(layers, id) => {
                if id.is_empty() || id == "stage:" {
                    return Err(format!(
                        "`from={}` names no earlier stage or image",
                        mount.from.as_deref().unwrap_or_default()
                    ));
                }
                self.ensure_local(&layers).map_err(|e| e.to_string())?;
                let cache = self.inner.layer_cache().map_err(|e| e.to_string())?;
                let lowers = layers
                    .iter()
                    .map(|l| cache.unpacked(&self.inner.store, l))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                Ok(MountSource::Layers {
                    lowers,
                    path: format!("/{}", source.trim_start_matches('/')),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<RunMount, ExecError> {
        RunMount::parse(spec)
    }

    #[test]
    fn each_type_takes_buildkits_options() {
        let cache = parse("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1000,gid=1000,from=base,source=/c").unwrap();
        assert_eq!(cache.kind, MountType::Cache);
        assert_eq!(cache.sharing, CacheSharing::Locked);
        assert_eq!(
            (cache.mode, cache.uid, cache.gid),
            (Some(0o700), Some(1000), Some(1000))
        );
        assert_eq!(cache.from.as_deref(), Some("base"));
        let bind = parse("target=/src,source=app,from=build,rw").unwrap();
        assert_eq!(bind.kind, MountType::Bind);
        assert_eq!(bind.readonly, Some(false));
        let secret = parse("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert_eq!(
            (secret.env.as_deref(), secret.required),
            (Some("TOKEN"), true)
        );
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap().size,
            Some(64 << 20)
        );
        assert_eq!(
            parse("type=tmpfs,dst=/t,size=1024").unwrap().size,
            Some(1024)
        );
        assert_eq!(parse("type=ssh").unwrap().kind, MountType::Ssh);
        let quoted = parse("type=bind,\"source=a,b\",target=/x").unwrap();
        assert_eq!(quoted.source.as_deref(), Some("a,b"));
        assert_eq!(
            mount_from("type=bind,from=builder,target=/b").as_deref(),
            Some("builder")
        );
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (spec, needle) in [
            ("type=cache,target=/c,sharing=weird", "sharing `weird`"),
            ("type=nfs,target=/c", "unknown type"),
            ("type=bind,target=/c,bogus=1", "unknown option `bogus`"),
            ("type=bind,target=/c,target=/d", "twice"),
            ("type=bind,target=/c,ro,rw", "contradict"),
            ("type=tmpfs,target=/c,id=x", "does not apply"),
            ("type=tmpfs,target=/c,size=big", "size `big`"),
            ("type=bind,target=/c,readonly=maybe", "true or false"),
            ("type=cache,target=/c,mode=999", "octal"),
            ("type=cache,target=/c,uid=root", "a number"),
            ("type=secret", "id= or target="),
        ] {
            let err = parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
            assert!(err.contains(spec), "{spec}: {err}");
        }
    }

    #[test]
    fn relative_and_missing_targets_are_placed_in_the_working_directory() {
        let placed = |spec: &str, workdir: &str| {
            RunMount::parse_in(spec, workdir)
                .map(|m| m.target)
                .map_err(|e| e.to_string())
        };
        // As BuildKit's frontend: `filepath.Join("/", workdir, target)`.
        assert_eq!(placed("target=.", "/src"), Ok(Some("/src".into())));
        assert_eq!(placed("ro", "/src"), Ok(Some("/src".into())));
        assert_eq!(
            placed("type=cache,target=target/", "/app"),
            Ok(Some("/app/target".into()))
        );
        assert_eq!(
            placed("target=./bin/x,from=exits", "/w"),
            Ok(Some("/w/bin/x".into()))
        );
        assert_eq!(
            placed("type=tmpfs,target=/a/../b", "/w"),
            Ok(Some("/b".into()))
        );
        assert_eq!(placed("type=secret,id=tok", "/w"), Ok(None));
        // A cache is named by its target as written, as BuildKit names it.
        let id = |spec: &str, workdir: &str| RunMount::parse_in(spec, workdir).unwrap().id;
        assert_eq!(id("type=cache,target=.npm", "/a"), Some(".npm".into()));
        assert_eq!(id("type=cache,target=.npm", "/b"), Some(".npm".into()));
        assert_eq!(
            id("type=cache,target=/root/.cache/", "/b"),
            Some("/root/.cache".into())
        );
        assert_eq!(id("type=cache,target=x,id=mine", "/b"), Some("mine".into()));
        let root = placed("type=cache", "/").unwrap_err();
        assert!(root.contains("target is `/`"), "{root}");
    }
}
