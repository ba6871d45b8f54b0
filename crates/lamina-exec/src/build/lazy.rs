//! Stages built only when read: with a `--cache-from` source, a stage outside the target's
//! `FROM` chain (a builder read by `COPY --from` or a `RUN --mount=from=`) is first walked
//! for its step keys only ([`Build::probe_stage`]: inputs hashed, nothing looked up, run or
//! fetched). A key needs no step's output (docs/format.md: parent key, expanded text,
//! inputs), so the stage's final key, which is what a reading step's key names, is exact.
//! When a step reading the stage hits, the stage never runs and none of its layers is
//! fetched (mode=min records hold only the target chain's steps); when one misses, the stage
//! is built first ([`Build::realize_sources`]), its steps hitting or running as usual.

use lamina_spec::Instruction;
use lamina_spec::inputs::{
    ContentHashCache, SourceMatch, is_local_source, resolve_copy_inputs_cached,
};

use super::key::{self, CacheKey};
use super::plan::{Base, stage_ref};
use super::run_mounts::RunMount;
use super::steps::{Build, StageState, record_args};
use crate::ExecError;

/// What a step's key takes from its inputs, and what running it needs of them.
pub(crate) struct StepInputs {
    /// The inputs digest.
    pub inputs: CacheKey,
    /// The COPY/ADD sources matched (context files, a download).
    pub matches: Vec<SourceMatch>,
    /// Per-input fingerprints, for `--explain`, when they are not made from `matches`.
    pub fingerprints: Vec<(String, String)>,
    /// The fingerprints are made from `matches`, when needed (`RecordedStep::fill`).
    pub fingerprint_matches: bool,
    /// An ADD URL downloaded to learn its content, kept for the step.
    pub download: Option<super::remote::Download>,
}

impl Build<'_> {
    /// The inputs of step `i` of stage `s` (numbered `index`, rendered `text`), in a stage
    /// whose working directory is `workdir`.
    pub(crate) fn step_inputs(
        &mut self,
        s: usize,
        i: usize,
        index: usize,
        instruction: &Instruction,
        text: &str,
        workdir: &str,
    ) -> Result<StepInputs, ExecError> {
        let text = text.to_owned();
        let mut matches: Vec<SourceMatch> = Vec::new();
        let mut fingerprints = Vec::new();
        let mut fingerprint_matches = false;
        self.git = None;
        // An ADD URL without a checksum is downloaded to learn its content (kept for the step).
        let mut held = None;
        let inputs = match instruction {
            Instruction::Copy(copy) => match &copy.from {
                // A named directory context is read as the build context is.
                Some(from) if let Some(root) = self.context_dir(from) => {
                    let mut local = copy.clone();
                    local.from = None;
                    let cache = self.hash_cache.get() as &dyn ContentHashCache;
                    matches = resolve_copy_inputs_cached(&local, root, Some(cache))?;
                    fingerprint_matches = true;
                    key::inputs_digest(&matches)
                }
                Some(from) => key::from_inputs(&self.source_identity(s, from)),
                None if let Some(url) = super::remote::http_source(copy)
                    && super::support::remote_refusal(copy).is_none() =>
                {
                    let sum = match &copy.checksum {
                        Some(sum) => sum.to_ascii_lowercase(),
                        None => {
                            // A download: never inside a read section.
                            self.lease()?;
                            let config = &self.inner.config;
                            let download =
                                super::remote::fetch(url, None, &self.inner.store, config)
                                    .map_err(|reason| ExecError::InvalidStep {
                                        index,
                                        text: text.clone(),
                                        reason,
                                    })?;
                            self.note_offline(index, &download);
                            matches = vec![download.as_match(url)];
                            let sum = download.identity();
                            held = Some(download);
                            sum
                        }
                    };
                    key::from_inputs(&format!("url {sum}"))
                }
                // A git source: its commit (one `git ls-remote` unless the ref is a commit).
                None if let Some(source) = super::git::git_source(copy)
                    && super::support::remote_refusal(copy).is_none() =>
                {
                    // Network (`git ls-remote`): never inside a read section.
                    self.lease()?;
                    let resolved =
                        super::git::resolve(source, copy, &self.options.ssh).map_err(|reason| {
                            ExecError::InvalidStep {
                                index,
                                text: text.clone(),
                                reason,
                            }
                        })?;
                    let inputs = key::from_inputs(&resolved.key_text());
                    // `--explain` names the source when its commit changed.
                    fingerprints = vec![(super::git::redacted(source), resolved.commit.clone())];
                    self.git = Some(resolved);
                    inputs
                }
                None => {
                    // A base's ONBUILD trigger reads this build's context root.
                    let context = self.image.context();
                    let root = match self.plan.own_step(s, i) {
                        Some(step) => context.root_for(step),
                        None => context.root(),
                    };
                    // Load the hash cache only for a COPY/ADD that has files to hash.
                    let cache = copy
                        .sources
                        .iter()
                        .any(|s| is_local_source(copy, s))
                        .then(|| self.hash_cache.get() as &dyn ContentHashCache);
                    matches = resolve_copy_inputs_cached(copy, root, cache)?;
                    fingerprint_matches = true;
                    key::inputs_digest(&matches)
                }
            },
            Instruction::Run(run) => self.run_inputs(s, i, run, workdir)?,
            _ => key::NO_INPUTS,
        };
        Ok(StepInputs {
            inputs,
            matches,
            fingerprints,
            fingerprint_matches,
            download: held,
        })
    }

    /// Builds stage `s`: its base, then each step hit or run.
    pub(crate) fn run_stage(&mut self, s: usize) -> Result<StageState, ExecError> {
        let mut state = self.start_stage(s)?;
        let first = self.plan.first_step[&s];
        for i in 0..self.plan.df.stages[s].instructions.len() {
            self.step(s, i, first + i, &mut state)?;
        }
        Ok(state)
    }

    /// Stage `s` with its final key and config (but not its layers): every step's key
    /// computed, nothing looked up, run or fetched.
    pub(crate) fn probe_stage(&mut self, s: usize) -> Result<StageState, ExecError> {
        let mut state = self.start_stage(s)?;
        let first = self.plan.first_step[&s];
        let escape = self.plan.df.escape;
        for (i, instruction) in self.plan.df.stages[s]
            .instructions
            .clone()
            .iter()
            .enumerate()
        {
            let text = instruction.render(escape).trim_end().to_string();
            let workdir = state.config.workdir().to_owned();
            let found = self.step_inputs(s, i, first + i, instruction, &text, &workdir)?;
            state.key = key::step_key(&state.key, &text, &found.inputs);
            match instruction {
                Instruction::Arg(decls) => record_args(&mut state, decls),
                Instruction::Run(_) | Instruction::Copy(_) => {}
                other => {
                    state.config.apply(other, escape, &mut state.cmd_set);
                }
            }
        }
        self.git = None;
        Ok(state)
    }

    /// Builds the skipped stages that step `instruction` of stage `s` reads (`COPY --from`,
    /// `RUN --mount=from=`), before it runs.
    pub(crate) fn realize_sources(
        &mut self,
        s: usize,
        instruction: &Instruction,
    ) -> Result<(), ExecError> {
        if self.lazy.is_empty() {
            return Ok(());
        }
        let mut froms: Vec<String> = Vec::new();
        match instruction {
            Instruction::Copy(copy) => froms.extend(copy.from.clone()),
            Instruction::Run(run) => {
                for spec in &run.mounts {
                    if let Ok(mount) = RunMount::parse_in(spec, "/") {
                        froms.extend(mount.from);
                    }
                }
            }
            _ => {}
        }
        let stages: Vec<usize> = froms
            .iter()
            .filter(|from| !self.options.contexts.contains_key(from.as_str()))
            .filter_map(|from| stage_ref(&self.plan.df, s, from))
            .collect();
        if stages.is_empty() {
            return Ok(());
        }
        // Building them moves the step in progress; this one's is put back.
        let current = self.current;
        let git = self.git.take();
        for p in stages {
            self.realize(p)?;
        }
        self.current = current;
        self.git = git;
        Ok(())
    }

    /// Builds skipped stage `p` (and a skipped stage it is built `FROM`).
    fn realize(&mut self, p: usize) -> Result<(), ExecError> {
        if !self.lazy.remove(&p) {
            return Ok(());
        }
        if let Base::Stage(parent) = self.plan.bases[p] {
            self.realize(parent)?;
        }
        let probed = self.results.get(&p).map(|r| r.key);
        let state = self.run_stage(p)?;
        debug_assert_eq!(probed, Some(state.key), "a probed key is the built one");
        self.results.insert(p, state);
        Ok(())
    }
}
