//! What a build refuses, found before building: `lamina check` reports these as warnings,
//! and the steps refuse with the same reasons when they run.
//!
//! Found here: a URL or git source in COPY, an ADD source that does not parse (a git URL
//! with an unknown query key, a checksum of the wrong kind), a `RUN <<EOF` script starting
//! with `#!`, and `RUN --mount=` values the build would refuse: a value that does not parse
//! (unknown type or option, bad `sharing=`, `size=`, `mode=`, `uid=`, missing `target=`), a
//! `from=` that names no earlier stage and no image, a context `source=` that is missing, an
//! ssh agent or a required secret the options do not give. Not found here: whatever depends
//! on the base image or the registry (a `from=` image that cannot be pulled, a mount the
//! sandbox cannot set up), which only the build can tell.

use std::collections::BTreeMap;

use std::path::Path;

use lamina_image::image::image_name;
use lamina_spec::inputs::is_remote_source;
use lamina_spec::{Copy, Dockerfile, Image, Instruction, StepRef};

use super::BuildOptions;
use super::config::ImageConfig;
use super::plan::stage_ref;
use super::run_mounts::{MountType, RunMount, context_source};
use crate::ExecError;

/// One instruction a build would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Where it is: 0-based stage and instruction indexes of the definition.
    pub step: StepRef,
    /// The instruction keyword (`ADD`, `RUN`, ...).
    pub keyword: &'static str,
    /// Why, and what to do instead.
    pub reason: String,
}

/// Everything in `image` that a build with `build_args` (and no secrets or ssh agents)
/// would refuse and can be told without building, in definition order; fails only where
/// the build's expansion would.
pub fn refusals(
    image: &Image,
    build_args: &BTreeMap<String, String>,
) -> Result<Vec<Refusal>, ExecError> {
    let options = BuildOptions {
        build_args: build_args.clone(),
        ..BuildOptions::default()
    };
    refusals_with(image, &options)
}

/// [`refusals`] for a build with `options`: its build arguments, secrets and ssh agents.
pub fn refusals_with(image: &Image, options: &BuildOptions) -> Result<Vec<Refusal>, ExecError> {
    let df = image.definition().expand(&options.build_args)?;
    let mut found = Vec::new();
    // Each stage's final working directory where the definition alone tells it (a scratch
    // base, or WORKDIR to an absolute path); `None` where it comes from a base image.
    let mut final_workdirs: Vec<Option<String>> = Vec::new();
    for (s, stage) in df.stages.iter().enumerate() {
        let mut workdir = match stage_ref(&df, s, &stage.base) {
            Some(parent) => final_workdirs.get(parent).cloned().flatten(),
            None if stage.base == "scratch" => Some("/".to_string()),
            None => None,
        };
        for (i, instruction) in stage.instructions.iter().enumerate() {
            if let Instruction::Workdir(dir) = instruction {
                workdir = match (&workdir, dir.starts_with('/')) {
                    (_, true) => Some(super::config::resolve_path("/", dir)),
                    (Some(current), false) => Some(super::config::resolve_path(current, dir)),
                    (None, false) => None,
                };
            }
            let step = StepRef {
                stage: s,
                instruction: i,
            };
            let reasons = match instruction {
                Instruction::Copy(copy) => remote_refusal(copy).into_iter().collect(),
                Instruction::Run(run) => {
                    let mut reasons: Vec<String> = super::run::argv(&ImageConfig::scratch(), run)
                        .err()
                        .into_iter()
                        .collect();
                    let root = image.context().root_for(step);
                    reasons.extend(run.mounts.iter().filter_map(|spec| {
                        mount_refusal(&df, s, root, spec, options, workdir.as_deref())
                    }));
                    reasons
                }
                _ => Vec::new(),
            };
            found.extend(reasons.into_iter().map(|reason| Refusal {
                step,
                keyword: instruction.keyword(),
                reason,
            }));
        }
        final_workdirs.push(workdir);
    }
    Ok(found)
}

/// Why a build of stage `s` with `options` would refuse the `RUN --mount=` value `spec`,
/// if it would, as the build says it (`context` is the stage's build context).
fn mount_refusal(
    df: &Dockerfile,
    s: usize,
    context: &Path,
    spec: &str,
    options: &BuildOptions,
    workdir: Option<&str>,
) -> Option<String> {
    // Placed in the working directory when the definition tells it (else the base's decides).
    let parsed = match workdir {
        Some(workdir) => RunMount::parse_in(spec, workdir),
        None => RunMount::parse(spec),
    };
    let mount = match parsed {
        Ok(mount) => mount,
        Err(e) => return Some(e.to_string()),
    };
    let invalid = |reason: String| {
        Some(
            ExecError::InvalidMount {
                spec: spec.to_string(),
                reason,
            }
            .to_string(),
        )
    };
    match (mount.kind, &mount.from) {
        (MountType::Bind | MountType::Cache, Some(from)) => {
            if options.contexts.contains_key(from) || stage_ref(df, s, from).is_some() {
                return None;
            }
            let named = |stage: &lamina_spec::Stage| {
                stage
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(from))
            };
            if df.stages[s..].iter().any(named) {
                return invalid(format!(
                    "`from={from}` names this stage or a later one; a mount reads only \
                     earlier stages (or images)"
                ));
            }
            match image_name(from) {
                Ok(_) => None,
                Err(e) => invalid(format!(
                    "`from={from}` names no earlier stage and no image: {e}"
                )),
            }
        }
        (MountType::Bind, None) => {
            let source = mount.source.as_deref().unwrap_or("/");
            context_source(context, source).err().and_then(invalid)
        }
        (MountType::Ssh, _) => {
            let id = mount.id.unwrap_or_else(|| "default".into());
            if options.ssh.contains_key(&id) {
                return None;
            }
            invalid(format!(
                "no ssh agent `{id}` was given to the build; pass --ssh {id} (the agent of \
                 $SSH_AUTH_SOCK) or --ssh {id}=SOCKET"
            ))
        }
        (MountType::Secret, _) if mount.required => {
            let target = mount.target.unwrap_or_default();
            let id = mount
                .id
                .unwrap_or_else(|| target.rsplit('/').next().unwrap_or_default().to_owned());
            (!options.secrets.contains_key(&id))
                .then(|| ExecError::MissingSecret { id }.to_string())
        }
        _ => None,
    }
}

/// The refusal of a remote source the build cannot take: an http(s) or git source it
/// cannot parse, or any remote source of a COPY (after expansion, so
/// `"https://…/${V}.git"` counts).
pub(crate) fn remote_refusal(copy: &Copy) -> Option<String> {
    if copy.from.is_some() {
        return None;
    }
    if let Some(reason) = super::remote::http_refusal(copy) {
        return Some(reason);
    }
    if let Some(reason) = super::git::git_refusal(copy) {
        return Some(reason);
    }
    let http = super::remote::http_source(copy);
    let git = super::git::git_source(copy);
    copy.sources
        .iter()
        .find(|s| is_remote_source(s) && Some(s.as_str()) != http && Some(s.as_str()) != git)
        .map(|source| {
            format!(
                "COPY cannot take the remote source {source}: use ADD for URLs and git \
                 repositories"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals_of(text: &str, dir: &std::path::Path) -> Vec<Refusal> {
        std::fs::write(dir.join("Dockerfile"), text).unwrap();
        let image = Image::from_dockerfile(dir.join("Dockerfile")).unwrap();
        refusals(&image, &BTreeMap::new()).unwrap()
    }

    #[test]
    fn git_sources_build_after_expansion_and_copy_or_bad_queries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain.txt"), "x").unwrap();
        let found = refusals_of(
            "FROM scratch\nARG V=3.12.1\nCOPY plain.txt /\n\
             ADD \"https://example.invalid/Python-${V}.git#v1\" /x\n\
             ADD git@example.invalid:org/repo.git /src\n\
             ADD https://example.invalid/f.tgz /f\n\
             COPY https://example.invalid/r-${V}.git /c\n\
             ADD https://example.invalid/r.git?ref=v1&color=red /q\n\
             ADD --checksum=sha256:abcd https://example.invalid/r.git /k\n",
            dir.path(),
        );
        let places: Vec<usize> = found.iter().map(|r| r.step.instruction).collect();
        assert_eq!(places, [5, 6, 7], "{found:?}");
        assert_eq!(found[0].keyword, "COPY");
        assert!(
            found[0]
                .reason
                .contains("https://example.invalid/r-3.12.1.git"),
            "{}",
            found[0].reason
        );
        assert!(found[1].reason.contains("`color`"), "{}", found[1].reason);
        assert!(
            found[2].reason.contains("expected hex commit hash"),
            "{}",
            found[2].reason
        );
    }

    #[test]
    fn shebang_scripts_are_found_and_local_archives_are_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar.gz"), [0x1f, 0x8b, 8, 0]).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "text").unwrap();
        let found = refusals_of(
            "FROM scratch\nADD a.tar.gz /x/\nADD notes.txt /y\nCOPY a.tar.gz /z\n\
             RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN <<EOF\necho ok\nEOF\n",
            dir.path(),
        );
        let places: Vec<(usize, &str)> = found
            .iter()
            .map(|r| (r.step.instruction, r.keyword))
            .collect();
        assert_eq!(places, [(3, "RUN")], "{found:?}");
        assert!(found[0].reason.contains("#!"), "{}", found[0].reason);
    }
}
