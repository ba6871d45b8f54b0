//! Parsing Dockerfile text into a [`Dockerfile`], following the Dockerfile reference and
//! BuildKit's parser where the reference is silent.
//!
//! What is read, in order:
//! - parser directives (`# syntax=`, `# escape=`, `# check=`; case-insensitive, only before
//!   anything else; `check` is accepted and dropped, it only tunes linting);
//! - logical lines: a line ending in the escape character (then only blanks and tabs)
//!   continues on the next line, unless that escape character is itself escaped
//!   (`WORKDIR C:\\` ends the instruction), as BuildKit's `([^\\])\\[ \t]*$|^\\[ \t]*$`
//!   has it; comment lines and blank lines inside a continuation are skipped, as BuildKit
//!   does;
//! - here-document bodies after `RUN`, `COPY` and `ADD` lines that name them (`<<EOF`,
//!   `<<-EOF`, `<<"EOF"`, `<<'EOF'`, several per line), also under `ONBUILD`;
//! - exec (JSON) form: the text must be exactly one JSON array of strings; with anything
//!   after the `]` it is shell form, as in BuildKit's Dockerfile syntax 1.9 and later;
//! - each instruction, with its flags checked.
//!
//! Values are kept raw (see [`crate::instruction`]): quotes intact, variables unexpanded.
//! Flag values are the exception: they are stored as Docker's flag reader returns them,
//! quotes removed but variables unexpanded (`--chown="$USER"` is stored as `$USER`).
//!
//! Deviations from Docker, each to keep `parse(render(df)) == df`:
//! - a logical line whose trimmed text would read as a continuation (only possible when the
//!   file ends inside a line continuation whose last part ends in an escaped blank) is an
//!   error.

mod flags;
mod heredoc;
mod instructions;
pub(crate) mod words;

#[cfg(test)]
mod round_trip;
#[cfg(test)]
pub(crate) mod strategy;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::{Result, SpecError};
use crate::instruction::{Dockerfile, Heredoc, Instruction, Stage};
pub use instructions::go_duration_nanos;
use instructions::{Kind, Line, Parsed, parse_line, split_line};
use words::{Json, json_array};

pub(crate) use heredoc::{heredocs_in, is_heredoc_word};

impl Dockerfile {
    /// Parses Dockerfile text. Errors name the file as `Dockerfile` and the 1-based line of
    /// the instruction at fault.
    pub fn parse(text: &str) -> Result<Dockerfile> {
        parse_text(text, Path::new("Dockerfile")).map(|(df, _)| df)
    }

    /// [`Dockerfile::parse`], also giving the 1-based line where each instruction starts:
    /// `lines[stage][instruction]`, in the shape of [`Dockerfile::stages`].
    pub fn parse_with_lines(text: &str) -> Result<(Dockerfile, Vec<Vec<usize>>)> {
        parse_text(text, Path::new("Dockerfile"))
    }

    /// Reads and parses the Dockerfile at `path`.
    pub fn parse_file(path: &Path) -> Result<Dockerfile> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match String::from_utf8(bytes) {
            Ok(text) => parse_text(&text, path).map(|(df, _)| df),
            Err(err) => {
                let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                Err(SpecError::DockerfileSyntax {
                    file: path.to_path_buf(),
                    line,
                    reason: "the text is not valid UTF-8; save the file as UTF-8".to_string(),
                })
            }
        }
    }
}

impl Instruction {
    /// Reads one `ONBUILD` trigger as an image config's `OnBuild` holds it (`RUN make`; a
    /// trigger with here-documents carries their bodies and delimiters on the lines after
    /// it), as BuildKit reads it: one instruction, parsed with the default escape, and not
    /// `ONBUILD`, `FROM` or `MAINTAINER`. `base` names the image, for errors.
    pub fn parse_trigger(text: &str, base: &str) -> Result<Instruction> {
        let invalid = |reason: String| SpecError::InvalidTrigger {
            base: base.to_string(),
            trigger: text.to_string(),
            reason,
        };
        let (mut df, _) = match parse_text(&format!("FROM scratch\n{text}\n"), Path::new("")) {
            Ok(parsed) => parsed,
            Err(SpecError::DockerfileSyntax { reason, .. }) => return Err(invalid(reason)),
            Err(other) => return Err(other),
        };
        if df.stages.len() != 1 {
            return Err(invalid("FROM is not allowed as an ONBUILD trigger".into()));
        }
        let mut instructions = std::mem::take(&mut df.stages[0].instructions);
        match (instructions.pop(), instructions.is_empty()) {
            (Some(Instruction::Onbuild(_)), true) => Err(invalid(
                "ONBUILD is not allowed as an ONBUILD trigger".into(),
            )),
            (Some(Instruction::Maintainer(_)), true) => Err(invalid(
                "MAINTAINER is not allowed as an ONBUILD trigger".into(),
            )),
            (Some(instruction), true) => Ok(instruction),
            _ => Err(invalid("a trigger must be exactly one instruction".into())),
        }
    }
}

/// Parser directives seen so far.
struct Directives {
    escape: char,
    syntax: Option<String>,
    seen: Vec<String>,
    /// Set at the first line that is not a directive: later ones are plain comments.
    done: bool,
}

impl Directives {
    /// Looks at `line` (left-trimmed, newline removed) while directives are still allowed.
    fn check(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        if !matches!(name.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err(format!(
                "the {name} parser directive is given twice; keep one"
            ));
        }
        match name.as_str() {
            "escape" => {
                self.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(format!("invalid escape character {value:?}: use \\ or `"));
                    }
                };
            }
            "syntax" => self.syntax = Some(value.to_string()),
            _ => {}
        }
        self.seen.push(name);
        Ok(())
    }
}

/// `# name=value` as BuildKit matches it
/// (`^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$`), name in lower case.
fn directive(line: &str) -> Option<(String, &str)> {
    let blank = [' ', '\t'];
    let rest = line.strip_prefix('#')?.trim_start_matches(blank);
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_len..]
        .trim_start_matches(blank)
        .strip_prefix('=')?;
    let value = value.trim_matches(blank);
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a trailing line continuation; the flag says whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    match continued(line, escape) {
        Some(kept) => (kept, false),
        None => (line, true),
    }
}

/// The text before a line continuation, if `line` ends in one: the escape character, then
/// only blanks and tabs, where that escape character is not preceded by another (`a\\`
/// ends the line: the escape is escaped).
fn continued(line: &str, escape: char) -> Option<&str> {
    let kept = line.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    (!kept.ends_with(escape)).then_some(kept)
}

fn parse_text(text: &str, file: &Path) -> Result<(Dockerfile, Vec<Vec<usize>>)> {
    let error = |line: usize, reason: String| SpecError::DockerfileSyntax {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut directives = Directives {
        escape: '\\',
        syntax: None,
        seen: Vec::new(),
        done: false,
    };
    let mut builder = Builder::default();
    let mut next = 0;
    while next < lines.len() {
        let start = next + 1;
        let first = trim_newline(lines[next]).trim_start();
        next += 1;
        directives
            .check(first)
            .map_err(|reason| error(start, reason))?;
        if is_comment(first) {
            continue;
        }
        let escape = directives.escape;
        let (head, mut ended) = trim_continuation(first, escape);
        if ended && head.is_empty() {
            continue;
        }
        let mut logical = head.to_string();
        while !ended && next < lines.len() {
            let line = trim_newline(lines[next]);
            next += 1;
            if is_comment(line) || line.trim_start().is_empty() {
                continue;
            }
            let (part, end) = trim_continuation(line, escape);
            logical.push_str(part);
            ended = end;
        }
        if continued(logical.trim(), escape).is_some() {
            return Err(error(
                start,
                format!(
                    "the instruction ends with the escape character {escape:?} at the end of \
                     the file; remove it or finish the instruction"
                ),
            ));
        }
        if logical.trim().is_empty() {
            continue;
        }
        let line = split_line(&logical).map_err(|reason| error(start, reason))?;
        let mut heredocs = Vec::new();
        if names_heredocs(&line) {
            let specs = heredocs_in(line.args).map_err(|reason| error(start, reason))?;
            for spec in specs {
                let (doc, after) = read_heredoc(&lines, next, spec).ok_or_else(|| {
                    error(start, "a here-document is not terminated; end it with a line holding only its delimiter".to_string())
                })?;
                heredocs.push(doc);
                next = after;
            }
        }
        let parsed = parse_line(&line, heredocs, escape).map_err(|reason| error(start, reason))?;
        builder
            .add(parsed, start)
            .map_err(|reason| error(start, reason))?;
    }
    let last_line = lines.len().max(1);
    builder
        .finish(directives)
        .map_err(|reason| error(last_line, reason))
}

/// Whether here-document bodies follow `line`: a `RUN`, `COPY` or `ADD` (also as an
/// `ONBUILD` trigger, as BuildKit reads it) that is not in exec form.
fn names_heredocs(line: &Line<'_>) -> bool {
    let inner;
    let line = if line.kind == Kind::Onbuild {
        match split_line(line.args) {
            Ok(split) => {
                inner = split;
                &inner
            }
            Err(_) => return false,
        }
    } else {
        line
    };
    line.kind.takes_heredocs() && json_array(line.args) == Json::Invalid
}

/// Reads the body of one here-document starting at `lines[from]`; returns it and the index
/// of the line after its delimiter, or `None` when the file ends first.
fn read_heredoc(
    lines: &[&str],
    from: usize,
    spec: heredoc::HeredocSpec,
) -> Option<(Heredoc, usize)> {
    let mut body = String::new();
    for (index, line) in lines.iter().enumerate().skip(from) {
        let mut candidate = trim_newline(line);
        if spec.strip_tabs {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == spec.name {
            let doc = Heredoc {
                delimiter: spec.name,
                body,
                strip_tabs: spec.strip_tabs,
                expand: spec.expand,
            };
            return Some((doc, index + 1));
        }
        body.push_str(line);
    }
    None
}

/// Puts parsed lines together into stages.
#[derive(Default)]
struct Builder {
    global_args: Vec<crate::instruction::ArgDecl>,
    stages: Vec<Stage>,
    /// The line of each stage's instructions.
    lines: Vec<Vec<usize>>,
}

impl Builder {
    fn add(&mut self, parsed: Parsed, line: usize) -> Result<(), String> {
        match parsed {
            Parsed::From(from) => {
                if let Some(name) = &from.name {
                    let taken = self.stages.iter().filter_map(|s| s.name.as_deref());
                    if taken.into_iter().any(|n| n.eq_ignore_ascii_case(name)) {
                        return Err(format!("stage name {name:?} is used twice; rename one"));
                    }
                }
                let mut stage = Stage::from_base(from.base);
                stage.platform = from.platform;
                stage.name = from.name;
                self.stages.push(stage);
                self.lines.push(Vec::new());
            }
            Parsed::Instruction(instruction) => match self.stages.last_mut() {
                Some(stage) => {
                    stage.instructions.push(instruction);
                    self.lines.last_mut().into_iter().for_each(|l| l.push(line));
                }
                None => match instruction {
                    crate::instruction::Instruction::Arg(args) => self.global_args.extend(args),
                    _ => {
                        return Err(format!(
                            "{} comes before the first FROM; only ARG may come before FROM",
                            instruction.keyword()
                        ));
                    }
                },
            },
        }
        Ok(())
    }

    fn finish(self, directives: Directives) -> Result<(Dockerfile, Vec<Vec<usize>>), String> {
        if self.stages.is_empty() {
            return Err(
                "the Dockerfile has no FROM instruction; start a stage with FROM <image>"
                    .to_string(),
            );
        }
        let df = Dockerfile {
            escape: directives.escape,
            syntax: directives.syntax,
            global_args: self.global_args,
            stages: self.stages,
        };
        Ok((df, self.lines))
    }
}
