//! Docker's variable expansion: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:+alt}`, `${VAR+alt}`, `${VAR:?message}`, `${VAR?message}`, the pattern forms
//! `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}`, `${VAR//p/r}`, with quote
//! removal and escapes, as BuildKit's shell lexer does it.
//!
//! [`Dockerfile::expand`] applies it to a whole model with Docker's scoping rules and returns
//! a *build-time product*: word fields hold final values (expanded, quotes removed), which
//! is what an executor needs, and which no longer round-trips through render and parse.
//!
//! Scoping, as in Docker:
//! - global `ARG`s (before the first `FROM`) are visible in `FROM` lines only; their value is
//!   the build argument of the same name, else their default (expanded with the global
//!   `ARG`s before them). The automatic platform arguments ([`PLATFORM_ARGS`]:
//!   `TARGETPLATFORM`, `TARGETARCH`, `BUILDPLATFORM`, ...) are global too, with the values of
//!   linux/amd64 unless `build_args` gives one; a stage sees one only after a bare
//!   `ARG TARGETARCH`, as in BuildKit;
//! - in a stage, `ARG name[=default]` makes `name` visible: the build argument if given, else
//!   the default (expanded), else the global `ARG`'s value when one of that name exists;
//! - `ENV` sets variables for the rest of the stage; an `ENV` expands all its pairs with the
//!   variables as they were before it (`ENV A=1 B=$A` gives `B` the old `A`); the latest
//!   `ARG` or `ENV` of a name wins;
//! - a stage built `FROM` an earlier stage starts with that stage's `ENV`s (not its `ARG`s);
//!   other stages start with the base image's environment, which only the caller knows
//!   ([`Dockerfile::expand_with_base_env`]);
//! - expanded: `FROM` (base, `--platform`), `ADD`/`COPY` (sources, destination, `--from`,
//!   `--chown`, `--chmod`, `--exclude`, `--checksum`, here-document bodies whose delimiter
//!   was not quoted), `ENV`, `ARG` defaults, `EXPOSE` (split into fields), `LABEL`,
//!   `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`, `RUN --mount`. Not expanded: the commands of
//!   `RUN`/`CMD`/`ENTRYPOINT`/`HEALTHCHECK` (the shell sees the variables at run time),
//!   `RUN` here-documents, `SHELL`, `ONBUILD` (expanded in the image that triggers it) and
//!   `MAINTAINER`.

pub(crate) mod lexer;
mod pattern;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::error::{Result, SpecError};
use crate::instruction::{ArgDecl, Copy, Dockerfile, Heredoc, Instruction, Stage};
use lexer::Lexer;

/// Expands the variables in one Dockerfile word and removes its quotes; `lookup` returns
/// `None` for unset variables (which expand to nothing). `escape` is the Dockerfile's escape
/// character.
pub fn expand_word(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String> {
    Lexer::new(escape)
        .word(word, lookup)
        .map_err(|reason| at("expand_word", word, reason))
}

/// Like [`expand_word`], then splits the result into fields on whitespace that was not
/// quoted, as Docker does for `EXPOSE` (`EXPOSE $PORTS` with `PORTS="80 443"` is two ports).
pub fn expand_words(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>> {
    Lexer::new(escape)
        .words(word, lookup)
        .map_err(|reason| at("expand_words", word, reason))
}

fn at(location: &str, word: &str, reason: String) -> SpecError {
    SpecError::ExpansionAt {
        location: location.to_string(),
        word: word.to_string(),
        reason,
    }
}

impl Heredoc {
    /// The body as the instruction uses it: with `<<-`, leading tabs removed from each line.
    pub fn content(&self) -> String {
        if !self.strip_tabs {
            return self.body.clone();
        }
        self.body
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// The arguments BuildKit defines for every build, usable in `FROM` without an `ARG` and in
/// a stage after a bare `ARG <name>`, with their values: Lamina builds for linux/amd64 on
/// linux/amd64.
pub const PLATFORM_ARGS: &[(&str, &str)] = &[
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

impl Dockerfile {
    /// Expands variables with Docker's scoping rules (see the [module docs](self)), taking
    /// `build_args` as `--build-arg` values and an empty environment for base images.
    pub fn expand(&self, build_args: &BTreeMap<String, String>) -> Result<Dockerfile> {
        self.expand_with_base_env(build_args, &|_| Vec::new())
    }

    /// Like [`Dockerfile::expand`]; `base_env` gives the environment of a base image (its
    /// config's `Env`) from its expanded reference, for stages not built on another stage.
    pub fn expand_with_base_env(
        &self,
        build_args: &BTreeMap<String, String>,
        base_env: &dyn Fn(&str) -> Vec<(String, String)>,
    ) -> Result<Dockerfile> {
        let lexer = Lexer::new(self.escape);
        // Global scope: the automatic platform arguments plus the declared global ARGs.
        let mut globals: BTreeMap<String, Option<String>> = PLATFORM_ARGS
            .iter()
            .map(|(name, value)| {
                let value = build_args.get(*name).map_or(*value, String::as_str);
                (name.to_string(), Some(value.to_string()))
            })
            .collect();
        let mut global_args = Vec::with_capacity(self.global_args.len());
        for arg in &self.global_args {
            let value = match (build_args.get(&arg.name), &arg.default) {
                (Some(given), _) => Some(given.clone()),
                (None, Some(default)) => {
                    let lookup = |name: &str| globals.get(name).cloned().flatten();
                    let location = format!("global ARG {}", arg.name);
                    Some(
                        lexer
                            .word(default, &lookup)
                            .map_err(|r| at(&location, default, r))?,
                    )
                }
                // A bare `ARG TARGETARCH` keeps the automatic value.
                (None, None) => globals
                    .get(&arg.name)
                    .cloned()
                    .flatten()
                    .filter(|_| PLATFORM_ARGS.iter().any(|(name, _)| *name == arg.name)),
            };
            globals.insert(arg.name.clone(), value.clone());
            global_args.push(ArgDecl {
                name: arg.name.clone(),
                default: value,
            });
        }
        let global_lookup = |name: &str| globals.get(name).cloned().flatten();

        let mut stages: Vec<Stage> = Vec::with_capacity(self.stages.len());
        // The ENV of each finished stage, for stages built on it.
        let mut stage_envs: Vec<BTreeMap<String, String>> = Vec::new();
        for (index, stage) in self.stages.iter().enumerate() {
            let from = format!("stage {} FROM", index + 1);
            let base = lexer
                .word(&stage.base, &global_lookup)
                .map_err(|r| at(&from, &stage.base, r))?;
            let platform = match &stage.platform {
                Some(p) => Some(lexer.word(p, &global_lookup).map_err(|r| at(&from, p, r))?),
                None => None,
            };
            let parent = stages.iter().position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&base))
            });
            let env: BTreeMap<String, String> = match parent {
                Some(parent) => stage_envs[parent].clone(),
                None => base_env(&base).into_iter().collect(),
            };
            let mut scope = Scope {
                vars: env.clone(),
                env,
                build_args,
                globals: &globals,
            };
            let mut instructions = Vec::with_capacity(stage.instructions.len());
            for (i, instruction) in stage.instructions.iter().enumerate() {
                let location = format!(
                    "stage {}{}, instruction {} ({})",
                    index + 1,
                    stage
                        .name
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    i + 1,
                    instruction.keyword()
                );
                let expanded = scope
                    .apply(instruction, &lexer)
                    .map_err(|(word, reason)| at(&location, &word, reason))?;
                instructions.push(expanded);
            }
            stage_envs.push(scope.env);
            stages.push(Stage {
                base,
                platform,
                name: stage.name.clone(),
                instructions,
            });
        }
        Ok(Dockerfile {
            escape: self.escape,
            syntax: self.syntax.clone(),
            global_args,
            stages,
        })
    }
}

/// The variables visible at one point of a stage.
struct Scope<'a> {
    /// Everything `$NAME` can see (ARG and ENV values).
    vars: BTreeMap<String, String>,
    /// The image environment (ENV only), inherited by stages built on this one.
    env: BTreeMap<String, String>,
    build_args: &'a BTreeMap<String, String>,
    globals: &'a BTreeMap<String, Option<String>>,
}

/// An expansion failure: the word and why.
type Failure = (String, String);

impl Scope<'_> {
    /// The expanded form of `instruction`; updates the scope for `ARG` and `ENV`.
    fn apply(&mut self, instruction: &Instruction, lexer: &Lexer) -> Result<Instruction, Failure> {
        let vars = &self.vars;
        let lookup = |name: &str| vars.get(name).cloned();
        let word = |w: &String| lexer.word(w, &lookup).map_err(|r| (w.clone(), r));
        let opt = |w: &Option<String>| w.as_ref().map(word).transpose();
        let pairs = |pairs: &Vec<(String, String)>| -> Result<Vec<(String, String)>, Failure> {
            pairs
                .iter()
                .map(|(k, v)| Ok((word(k)?, word(v)?)))
                .collect()
        };
        Ok(match instruction {
            Instruction::Env(list) => {
                let expanded = pairs(list)?;
                for (k, v) in &expanded {
                    self.vars.insert(k.clone(), v.clone());
                    self.env.insert(k.clone(), v.clone());
                }
                Instruction::Env(expanded)
            }
            Instruction::Arg(args) => Instruction::Arg(self.declare(args, lexer)?),
            Instruction::Label(list) => Instruction::Label(pairs(list)?),
            Instruction::Workdir(w) => Instruction::Workdir(word(w)?),
            Instruction::User(u) => Instruction::User(word(u)?),
            Instruction::StopSignal(s) => Instruction::StopSignal(word(s)?),
            Instruction::Volume(paths) => {
                Instruction::Volume(paths.iter().map(word).collect::<Result<_, _>>()?)
            }
            Instruction::Expose(ports) => {
                let mut out = Vec::new();
                for port in ports {
                    out.extend(lexer.words(port, &lookup).map_err(|r| (port.clone(), r))?);
                }
                Instruction::Expose(out)
            }
            Instruction::Run(run) => {
                let mut run = run.clone();
                run.mounts = run.mounts.iter().map(word).collect::<Result<_, _>>()?;
                Instruction::Run(run)
            }
            Instruction::Copy(copy) => {
                let heredoc_sources: Vec<&String> = copy
                    .sources
                    .iter()
                    .filter(|s| is_heredoc_source(copy, s))
                    .collect();
                let sources = copy
                    .sources
                    .iter()
                    .map(|s| {
                        if heredoc_sources.contains(&s) {
                            Ok(s.clone())
                        } else {
                            word(s)
                        }
                    })
                    .collect::<Result<_, _>>()?;
                let heredocs = copy
                    .heredocs
                    .iter()
                    .map(|doc| expand_heredoc(doc, &lookup))
                    .collect::<Result<_, _>>()?;
                Instruction::Copy(Copy {
                    sources,
                    dest: word(&copy.dest)?,
                    from: opt(&copy.from)?,
                    chown: opt(&copy.chown)?,
                    chmod: opt(&copy.chmod)?,
                    excludes: copy.excludes.iter().map(word).collect::<Result<_, _>>()?,
                    checksum: opt(&copy.checksum)?,
                    heredocs,
                    ..copy.clone()
                })
            }
            Instruction::Shell(_)
            | Instruction::Entrypoint(_)
            | Instruction::Cmd(_)
            | Instruction::Healthcheck(_)
            | Instruction::Onbuild(_)
            | Instruction::Maintainer(_) => instruction.clone(),
        })
    }

    /// `ARG` declarations: each takes the build argument, else its default (expanded with
    /// the ARGs before it), else the global ARG's value.
    fn declare(&mut self, args: &[ArgDecl], lexer: &Lexer) -> Result<Vec<ArgDecl>, Failure> {
        let mut out = Vec::with_capacity(args.len());
        for arg in args {
            let value = if let Some(given) = self.build_args.get(&arg.name) {
                Some(given.clone())
            } else if let Some(default) = &arg.default {
                let vars = &self.vars;
                let lookup = |name: &str| vars.get(name).cloned();
                Some(
                    lexer
                        .word(default, &lookup)
                        .map_err(|r| (default.clone(), r))?,
                )
            } else {
                self.globals.get(&arg.name).cloned().flatten()
            };
            if let Some(value) = &value {
                self.vars.insert(arg.name.clone(), value.clone());
            }
            out.push(ArgDecl {
                name: arg.name.clone(),
                default: value,
            });
        }
        Ok(out)
    }
}

/// Whether `source` names one of the instruction's here-documents (`<<EOF`).
fn is_heredoc_source(copy: &Copy, source: &str) -> bool {
    !copy.json_form && !copy.heredocs.is_empty() && crate::parse::is_heredoc_word(source)
}

/// A `COPY`/`ADD` here-document as it is written to the file: tabs stripped for `<<-`, and,
/// unless the delimiter was quoted, variables expanded the way BuildKit does it (escape
/// `\`, quotes kept as they are).
fn expand_heredoc(doc: &Heredoc, lookup: lexer::Lookup<'_>) -> Result<Heredoc, Failure> {
    let mut content = doc.content();
    if doc.expand {
        let lexer = Lexer {
            skip_quotes: true,
            ..Lexer::new('\\')
        };
        content = lexer
            .word(&content, lookup)
            .map_err(|r| (doc.body.clone(), r))?;
    }
    Ok(Heredoc {
        delimiter: doc.delimiter.clone(),
        body: content,
        strip_tabs: false,
        expand: false,
    })
}
