//! What a build will do before it does anything: the expanded definition, the stages the
//! target needs, each stage's base, the images `COPY --from` names, and step numbering.
//!
//! `ONBUILD` triggers, as Docker runs them: a stage whose base carries triggers (in its
//! image config's `OnBuild`, or the `ONBUILD` instructions of the earlier stage it is built
//! on) starts with them, in order, as if written right after its `FROM`; they expand and
//! resolve their sources like the stage's own instructions (against the build context, not
//! a per-step source directory). The stage's config then holds no `OnBuild` of its base:
//! triggers are not inherited further.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use lamina_image::StoredImage;
use lamina_image::image::{find_named, image_name};
use lamina_spec::{Dockerfile, Image, Instruction, StepRef};
use lamina_store::Store;

use super::config::ImageConfig;
use super::{BuildOptions, NamedContext};
use crate::ExecError;

/// Where a stage starts.
#[derive(Debug, Clone)]
pub(crate) enum Base {
    /// `FROM scratch`.
    Scratch,
    /// `FROM <earlier stage>`.
    Stage(usize),
    /// An image from the store (already there, or pulled for this build).
    Image(Box<StoredImage>),
}

/// A build, planned.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The definition with variables expanded.
    pub df: Arc<Dockerfile>,
    /// Each stage's base (`Scratch` for stages not built).
    pub bases: Vec<Base>,
    /// The stages to build, in order; the last is the target.
    pub stages: Vec<usize>,
    /// The 1-based index of each built stage's first step, by stage.
    pub first_step: BTreeMap<usize, usize>,
    /// Steps in this build.
    pub total: usize,
    /// Images named by `COPY --from=<image>` and `RUN --mount=from=<image>`, by reference.
    pub from_images: BTreeMap<String, StoredImage>,
    /// How many `ONBUILD` triggers of its base each stage starts with (stages without are
    /// absent): `df`'s instruction `i` of such a stage is the definition's `i - n`.
    pub triggers: BTreeMap<usize, usize>,
}

impl Plan {
    /// The target stage and the stages it is built `FROM`, target first.
    pub fn target_chain(&self) -> Vec<usize> {
        let mut chain = Vec::new();
        let mut stage = self.stages.last().copied();
        while let Some(s) = stage {
            chain.push(s);
            stage = match self.bases.get(s) {
                Some(Base::Stage(parent)) if !chain.contains(parent) => Some(*parent),
                _ => None,
            };
        }
        chain
    }

    /// Expands `image` and resolves every base and `--from` image the target stage needs
    /// from `fetched` (images the base source fetched for this build, by full name) or the
    /// store; the first image neither holds stops planning ([`Planned::Missing`]): the
    /// executor fetches it and plans again (a base's `ENV` and `ONBUILD` shape what comes
    /// after it, so planning cannot go on without it).
    pub fn resolve(
        store: &Store,
        image: &Image,
        options: &BuildOptions,
        fetched: &BTreeMap<String, StoredImage>,
        expansions: &Expansions,
    ) -> Result<Planned, ExecError> {
        let raw = image.definition();
        if raw.stages.is_empty() {
            return Err(ExecError::NoStages);
        }
        // First pass: base references and `--from` values (they only see global ARGs).
        let pre = expansions.expand(raw, &options.build_args, &BTreeMap::new())?;
        let target = target_stage(&pre, options.target_stage.as_deref())?;
        let stages = needed_stages(&pre, target, &options.contexts);

        let mut bases = vec![Base::Scratch; pre.stages.len()];
        let mut base_env = BaseEnv::new();
        let mut stage_triggers: BTreeMap<usize, Vec<Instruction>> = BTreeMap::new();
        for &s in &stages {
            let reference = &pre.stages[s].base;
            // A named image context stands in for a stage or image of its name.
            let context_image = match options.contexts.get(reference) {
                Some(NamedContext::Image(image)) => Some(image.as_str()),
                Some(NamedContext::Dir(dir)) => {
                    return Err(ExecError::BaseUnavailable {
                        reference: reference.clone(),
                        reason: format!(
                            "the build context `{reference}` is the directory {}; FROM takes \
                             only an image context (--build-context {reference}=docker-image://REF)",
                            dir.display()
                        ),
                    });
                }
                None => None,
            };
            let mut triggers = Vec::new();
            bases[s] = if context_image.is_none() && reference.eq_ignore_ascii_case("scratch") {
                Base::Scratch
            } else if context_image.is_none()
                && let Some(parent) = stage_ref(&pre, s, reference)
            {
                triggers = onbuild_of(&raw.stages[parent].instructions);
                Base::Stage(parent)
            } else {
                let found = match resolve_image(store, fetched, context_image.unwrap_or(reference))?
                {
                    Resolved::Stored(image) => *image,
                    Resolved::Missing(name) => return Ok(Planned::Missing(name)),
                };
                let config = base_config(store, &found)?;
                base_env.insert(reference.clone(), config.env_pairs());
                for trigger in &config.config.on_build {
                    triggers.push(Instruction::parse_trigger(trigger, reference)?);
                }
                Base::Image(Box::new(found))
            };
            if !triggers.is_empty() {
                stage_triggers.insert(s, triggers);
            }
        }
        let with_triggers;
        let raw = if stage_triggers.is_empty() {
            raw
        } else {
            let mut copy = raw.clone();
            for (s, triggers) in &stage_triggers {
                let own = std::mem::take(&mut copy.stages[*s].instructions);
                copy.stages[*s].instructions = triggers.iter().cloned().chain(own).collect();
            }
            with_triggers = copy;
            &with_triggers
        };
        let df = expansions.expand(raw, &options.build_args, &base_env)?;

        let mut from_images = BTreeMap::new();
        let mut first_step = BTreeMap::new();
        let mut total = 0;
        for &s in &stages {
            first_step.insert(s, total + 1);
            total += df.stages[s].instructions.len();
            for from in df.stages[s].instructions.iter().flat_map(from_refs) {
                if from_images.contains_key(&from) {
                    continue;
                }
                let reference = match options.contexts.get(&from) {
                    Some(NamedContext::Dir(_)) => continue,
                    Some(NamedContext::Image(image)) => image.as_str(),
                    None if stage_ref(&df, s, &from).is_some() => continue,
                    None => from.as_str(),
                };
                match resolve_image(store, fetched, reference)? {
                    Resolved::Stored(image) => from_images.insert(from, *image),
                    Resolved::Missing(name) => return Ok(Planned::Missing(name)),
                };
            }
        }
        Ok(Planned::Ready(Plan {
            df,
            bases,
            stages,
            first_step,
            total,
            from_images,
            triggers: stage_triggers
                .into_iter()
                .map(|(s, t)| (s, t.len()))
                .collect(),
        }))
    }

    /// The definition's own step of `df`'s instruction `i` of stage `s`; `None` for an
    /// `ONBUILD` trigger the stage starts with.
    pub fn own_step(&self, s: usize, i: usize) -> Option<StepRef> {
        let instruction = i.checked_sub(self.triggers.get(&s).copied().unwrap_or(0))?;
        Some(StepRef {
            stage: s,
            instruction,
        })
    }
}

/// The definitions an executor expanded last, with what they were expanded with: a rebuild
/// expands the same definition with the same arguments and base environments, twice
/// (references first, then everything), which was a twelfth of an all-hit rebuild in
/// process. Expansion is a function of those three, so an equal input gives the kept result.
#[derive(Debug, Default)]
pub(crate) struct Expansions {
    kept: Mutex<Vec<Expansion>>,
}

/// One kept expansion: its inputs and the expanded definition.
#[derive(Debug)]
struct Expansion {
    raw: Dockerfile,
    build_args: BTreeMap<String, String>,
    base_env: BaseEnv,
    expanded: Arc<Dockerfile>,
}

/// Each base image's environment (its config's `Env`), by the reference `FROM` gives.
type BaseEnv = BTreeMap<String, Vec<(String, String)>>;

impl Expansions {
    /// At most this many are kept (a build makes two).
    const MAX: usize = 4;

    /// `raw` expanded with `build_args` and `base_env` ([`Dockerfile::expand_with_base_env`]).
    pub(crate) fn expand(
        &self,
        raw: &Dockerfile,
        build_args: &BTreeMap<String, String>,
        base_env: &BaseEnv,
    ) -> Result<Arc<Dockerfile>, ExecError> {
        let lock = || self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let same =
            |e: &Expansion| e.raw == *raw && e.build_args == *build_args && e.base_env == *base_env;
        {
            let mut kept = lock();
            if let Some(at) = kept.iter().position(same) {
                // The last used goes last: the first is the one dropped.
                let hit = kept.remove(at);
                let expanded = hit.expanded.clone();
                kept.push(hit);
                return Ok(expanded);
            }
        }
        let expanded = Arc::new(raw.expand_with_base_env(build_args, &|r| {
            base_env.get(r).cloned().unwrap_or_default()
        })?);
        let mut kept = lock();
        if kept.len() >= Expansions::MAX {
            kept.remove(0);
        }
        kept.push(Expansion {
            raw: raw.clone(),
            build_args: build_args.clone(),
            base_env: base_env.clone(),
            expanded: expanded.clone(),
        });
        Ok(expanded)
    }
}

/// The triggers that `ONBUILD` instructions of a stage leave for stages built on it.
fn onbuild_of(instructions: &[Instruction]) -> Vec<Instruction> {
    instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Onbuild(inner) => Some((**inner).clone()),
            _ => None,
        })
        .collect()
}

/// The stage `value` names among the stages before `before`: an `AS` name (any case) or a
/// 0-based index.
pub(crate) fn stage_ref(df: &Dockerfile, before: usize, value: &str) -> Option<usize> {
    let earlier = &df.stages[..before.min(df.stages.len())];
    earlier
        .iter()
        .position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(value))
        })
        .or_else(|| value.parse::<usize>().ok().filter(|i| *i < earlier.len()))
}

fn target_stage(df: &Dockerfile, target: Option<&str>) -> Result<usize, ExecError> {
    let Some(target) = target else {
        return Ok(df.stages.len() - 1);
    };
    stage_ref(df, df.stages.len(), target).ok_or_else(|| ExecError::UnknownTargetStage {
        name: target.to_string(),
        known: df.stages.iter().filter_map(|s| s.name.clone()).collect(),
    })
}

/// What an instruction reads from another stage or an image: `COPY --from` and
/// `RUN --mount=...,from=`.
fn from_refs(instruction: &Instruction) -> Vec<String> {
    match instruction {
        Instruction::Copy(copy) => copy.from.iter().cloned().collect(),
        Instruction::Run(run) => run
            .mounts
            .iter()
            .filter_map(|m| super::run_mounts::mount_from(m))
            .collect(),
        _ => Vec::new(),
    }
}

/// The stages `target` depends on (through `FROM`, `COPY --from` and `RUN --mount=from=`),
/// with it, in order.
fn needed_stages(
    df: &Dockerfile,
    target: usize,
    contexts: &BTreeMap<String, NamedContext>,
) -> Vec<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(s) = todo.pop() {
        if !needed.insert(s) {
            continue;
        }
        let stage = &df.stages[s];
        let refs = std::iter::once(stage.base.clone())
            .chain(stage.instructions.iter().flat_map(from_refs))
            // A named context stands in for a stage of its name.
            .filter(|from| !contexts.contains_key(from));
        for from in refs {
            todo.extend(stage_ref(df, s, &from));
        }
    }
    needed.into_iter().collect()
}

/// What planning found.
#[derive(Debug)]
pub(crate) enum Planned {
    /// Every image the build needs is in the store.
    Ready(Plan),
    /// The store lacks this image (its full name, as [`image_name`] gives it).
    Missing(String),
}

/// An image looked up for `FROM` or `COPY --from`.
enum Resolved {
    Stored(Box<StoredImage>),
    Missing(String),
}

/// An image for `FROM` or `COPY --from`: by digest (`name@sha256:...`) or name from the
/// store, never contacting a registry; [`Resolved::Missing`] names what the executor's base
/// source is to fetch (and name in the store, so the next build finds it there).
fn resolve_image(
    store: &Store,
    fetched: &BTreeMap<String, StoredImage>,
    reference: &str,
) -> Result<Resolved, ExecError> {
    // Short and full names are one (`python:3.12` is `docker.io/library/python:3.12`).
    let name = image_name(reference).map_err(|e| ExecError::BaseUnavailable {
        reference: reference.to_string(),
        reason: e.to_string(),
    })?;
    // As fetched, not looked up again: a digest may name an index, and the store holds the
    // platform's manifest it resolved to.
    if let Some(image) = fetched.get(&name.to_string()) {
        return Ok(Resolved::Stored(Box::new(image.clone())));
    }
    if let Some(digest) = name.digest() {
        if store.contains(digest)? {
            return Ok(Resolved::Stored(Box::new(StoredImage::load(
                store, digest,
            )?)));
        }
    } else if let Some(record) = find_named(store, &name)? {
        let image = StoredImage::load(store, &record.manifest)?;
        return Ok(Resolved::Stored(Box::new(image)));
    }
    Ok(Resolved::Missing(name.to_string()))
}

/// A stored image's config, in the build's shape (Docker fields kept).
pub(crate) fn base_config(store: &Store, image: &StoredImage) -> Result<ImageConfig, ExecError> {
    let bytes = store
        .read(&image.config_blob)?
        .ok_or(lamina_store::StoreError::NotFound {
            digest: image.config_blob,
        })?;
    ImageConfig::parse_base(&bytes, &image.digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn df(text: &str) -> Dockerfile {
        Dockerfile::parse(text).unwrap()
    }

    #[test]
    fn only_the_stages_the_target_needs_are_built() {
        let d = df("FROM scratch AS a\nFROM scratch AS unused\nFROM a AS b\n\
             FROM scratch AS c\nCOPY --from=b /x /x\nCOPY --from=0 /y /y\n");
        let none = BTreeMap::new();
        assert_eq!(needed_stages(&d, 3, &none), [0, 2, 3]);
        assert_eq!(needed_stages(&d, 1, &none), [1]);
        // A named context stands in for stage `b`: it is not built.
        let b = BTreeMap::from([("b".to_string(), NamedContext::Dir("/ctx".into()))]);
        assert_eq!(needed_stages(&d, 3, &b), [0, 3]);
        assert_eq!(target_stage(&d, Some("B")).unwrap(), 2);
        assert_eq!(target_stage(&d, Some("1")).unwrap(), 1);
        assert_eq!(target_stage(&d, None).unwrap(), 3);
        let err = target_stage(&d, Some("nope")).unwrap_err();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn stage_names_only_refer_backwards() {
        let d = df("FROM scratch AS a\nFROM scratch AS b\n");
        assert_eq!(stage_ref(&d, 1, "a"), Some(0));
        assert_eq!(stage_ref(&d, 0, "a"), None);
        assert_eq!(stage_ref(&d, 1, "b"), None);
        assert_eq!(stage_ref(&d, 2, "busybox"), None);
    }

    #[test]
    fn an_expansion_is_kept_for_equal_inputs_only() {
        let raw = Dockerfile::parse("ARG V=1\nFROM base\nENV A=$V B=$HOME\n").unwrap();
        let expansions = Expansions::default();
        let args = |v: &str| BTreeMap::from([("V".to_string(), v.to_string())]);
        let env = |home: &str| BaseEnv::from([("base".into(), vec![("HOME".into(), home.into())])]);
        let first = expansions.expand(&raw, &args("2"), &env("/root")).unwrap();
        let again = expansions.expand(&raw, &args("2"), &env("/root")).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // What it gives is the expansion itself.
        let direct = raw
            .expand_with_base_env(&args("2"), &|_| vec![("HOME".into(), "/root".into())])
            .unwrap();
        assert_eq!(*first, direct);
        // Any other input is expanded anew.
        for (other_args, other_env) in [(args("3"), env("/root")), (args("2"), env("/home/u"))] {
            let other = expansions.expand(&raw, &other_args, &other_env).unwrap();
            assert_ne!(*other, *first);
        }
        let edited = Dockerfile::parse("ARG V=1\nFROM base\nENV A=$V\n").unwrap();
        assert_ne!(
            *expansions
                .expand(&edited, &args("2"), &env("/root"))
                .unwrap(),
            *first
        );
    }
}
