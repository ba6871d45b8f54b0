//! The TOML definition format: an [`Image`] written as a file, one `[[step]]` table per
//! builder call. The format is described in `docs/definition.md`.
//!
//! ```toml
//! [image]
//! debian_slim = "3.12"
//!
//! [[step]]
//! pip_install = ["numpy", "pandas"]
//!
//! [[step]]
//! workdir = "/app"
//! ```
//!
//! Every error, whether the file does not parse or a step is refused by the builder (a
//! missing local file, a bad Python version), is a [`SpecError::TomlDefinition`] with the
//! 1-based line and column of the offending value.

mod schema;

#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::error::{Result, SpecError};
use crate::image::{Image, LocalDirOptions, PipOptions, RunCommand};
use schema::{
    DefinitionFile, ImageTable, Lines, LocalDir, LocalFile, Port, PythonChoice, RunItem, RunValue,
    SpannedMap, StepTable,
};

/// The step keys, in the order the docs list them.
const STEP_KEYS: &str = "pip_install, pip_install_from_requirements, pip_install_from_pyproject, \
                         add_local_file, add_local_dir, run, env, workdir, entrypoint, cmd, \
                         dockerfile_commands, apt_install, user, label, expose";

/// Reads a definition file; relative paths in it resolve against the file's folder.
pub fn load_definition(path: &Path) -> Result<Image> {
    let text = std::fs::read_to_string(path).map_err(|error| SpecError::reading(path, error))?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let base_dir = if base_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base_dir
    };
    parse_definition(&text, path, base_dir)
}

/// Parses a definition from `text`. `file` names it in errors; `base_dir` is the folder that
/// `context` and the `[image]` paths resolve against (relative to the current directory if
/// relative itself). Without `context`, the context root is `base_dir` (for `dockerfile`:
/// the Dockerfile's folder).
pub fn parse_definition(text: &str, file: &Path, base_dir: &Path) -> Result<Image> {
    let at = Locator { text, file };
    let base_dir = crate::image::paths::absolute(base_dir)?;
    let definition: DefinitionFile = toml::from_str(text)
        .map_err(|error| at.error(error.span().map_or(0, |s| s.start), error.message()))?;
    let mut image = start(&at, &base_dir, &definition.image)?;
    for step in &definition.step {
        image = apply(&at, image, step)?;
    }
    // A TOML definition is a sandbox image even when its steps start from a Dockerfile.
    Ok(image.with_origin(crate::image::Origin::Builder))
}

/// Turns byte offsets of the text into `SpecError::TomlDefinition` positions.
struct Locator<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Locator<'_> {
    fn error(&self, offset: usize, reason: impl Into<String>) -> SpecError {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SpecError::TomlDefinition {
            file: self.file.to_path_buf(),
            line,
            column,
            reason: reason.into(),
        }
    }
}

/// The `[image]` table: the constructor and the context root.
fn start(at: &Locator<'_>, base_dir: &Path, table: &Spanned<ImageTable>) -> Result<Image> {
    let t = table.get_ref();
    let kinds: Vec<(&str, usize)> = [
        ("base", t.base.as_ref().map(|v| v.span().start)),
        (
            "debian_slim",
            t.debian_slim.as_ref().map(|v| v.span().start),
        ),
        ("dockerfile", t.dockerfile.as_ref().map(|v| v.span().start)),
        ("scratch", t.scratch.as_ref().map(|v| v.span().start)),
    ]
    .into_iter()
    .filter_map(|(name, start)| start.map(|s| (name, s)))
    .collect();
    match kinds.as_slice() {
        [] => {
            return Err(at.error(
                table.span().start,
                "[image] needs one of base, debian_slim, dockerfile or scratch",
            ));
        }
        [_] => {}
        [(first, _), (second, offset), ..] => {
            return Err(at.error(
                *offset,
                format!("[image] takes one of base, debian_slim, dockerfile and scratch, but both {first} and {second} are set"),
            ));
        }
    }
    let fail = |span: Range<usize>| move |error: SpecError| at.error(span.start, error.to_string());
    let context = t
        .context
        .as_ref()
        .map(|c| (base_dir.join(c.get_ref()), c.span()));
    let image = if let Some(reference) = &t.base {
        Image::base(reference.get_ref()).map_err(fail(reference.span()))?
    } else if let Some(python) = &t.debian_slim {
        let version = match python.get_ref() {
            PythonChoice::Version(version) => Some(version.as_str()),
            PythonChoice::Newest => None,
            PythonChoice::False => {
                let reason = "debian_slim = false picks nothing; give a version like \"3.12\" \
                              or true for the newest";
                return Err(at.error(python.span().start, reason));
            }
        };
        Image::debian_slim(version).map_err(fail(python.span()))?
    } else if let Some(scratch) = &t.scratch {
        if !scratch.get_ref() {
            let reason = "scratch = false picks nothing; remove it and name a base";
            return Err(at.error(scratch.span().start, reason));
        }
        Image::scratch().map_err(fail(scratch.span()))?
    } else if let Some(dockerfile) = &t.dockerfile {
        let image = Image::from_dockerfile(base_dir.join(dockerfile.get_ref()))
            .map_err(fail(dockerfile.span()))?;
        // A Dockerfile's own folder is its context unless the definition says otherwise.
        return match context {
            Some((dir, span)) => image.context_dir(dir).map_err(fail(span)),
            None => Ok(image),
        };
    } else {
        return Err(at.error(
            table.span().start,
            "[image] needs one of base, debian_slim, dockerfile or scratch",
        ));
    };
    match context {
        Some((dir, span)) => image.context_dir(dir).map_err(fail(span)),
        None => image.context_dir(base_dir).map_err(fail(table.span())),
    }
}

/// Where in the text the arguments of one step are, to point a builder error at the value
/// it names.
struct Spans {
    /// The value of the step key.
    primary: usize,
    /// The local path the step reads, if any.
    path: Option<usize>,
    /// Every string argument, to match the value an `InvalidArgument` names.
    values: Vec<(String, usize)>,
}

impl Spans {
    fn new(primary: usize) -> Self {
        Spans {
            primary,
            path: None,
            values: Vec::new(),
        }
    }

    fn value(&mut self, value: &Spanned<String>) {
        self.values
            .push((value.get_ref().clone(), value.span().start));
    }

    fn values<'a>(&mut self, values: impl IntoIterator<Item = &'a Spanned<String>>) {
        for value in values {
            self.value(value);
        }
    }

    fn path(&mut self, path: &Spanned<String>) {
        self.path = Some(path.span().start);
        self.value(path);
    }

    fn offset_for(&self, error: &SpecError) -> usize {
        let find = |wanted: &str| {
            self.values
                .iter()
                .find(|(value, _)| value == wanted)
                .map(|(_, offset)| *offset)
        };
        match error {
            SpecError::InvalidArgument { value, .. } => find(value).unwrap_or(self.primary),
            SpecError::InvalidIgnorePattern { pattern, .. } => {
                find(pattern).unwrap_or(self.primary)
            }
            SpecError::LocalPathMissing { .. }
            | SpecError::NotAFile { .. }
            | SpecError::NotADirectory { .. }
            | SpecError::RequirementsMissing { .. }
            | SpecError::InvalidPyproject { .. }
            | SpecError::Io { .. } => self.path.unwrap_or(self.primary),
            _ => self.primary,
        }
    }
}

/// The step a `[[step]]` table names, borrowing its value.
enum Step<'a> {
    PipInstall(&'a [Spanned<String>]),
    PipInstallFromRequirements(&'a Spanned<String>),
    PipInstallFromPyproject(&'a Spanned<String>),
    AddLocalFile(&'a LocalFile),
    AddLocalDir(&'a LocalDir),
    Run(&'a RunValue),
    Env(&'a SpannedMap),
    Workdir(&'a String),
    Entrypoint(&'a [String]),
    Cmd(&'a [String]),
    DockerfileCommands(&'a Spanned<Lines>),
    AptInstall(&'a [Spanned<String>]),
    User(&'a String),
    Label(&'a SpannedMap),
    Expose(&'a [Spanned<Port>]),
}

/// The steps set in `s`, each with its key and the offset of its value.
fn steps_of(s: &StepTable) -> Vec<(&'static str, usize, Step<'_>)> {
    fn add<'a, T>(
        out: &mut Vec<(&'static str, usize, Step<'a>)>,
        key: &'static str,
        value: &'a Option<Spanned<T>>,
        step: impl FnOnce(&'a Spanned<T>) -> Step<'a>,
    ) {
        if let Some(value) = value {
            out.push((key, value.span().start, step(value)));
        }
    }
    let mut out = Vec::new();
    add(&mut out, "pip_install", &s.pip_install, |v| {
        Step::PipInstall(v.get_ref())
    });
    add(
        &mut out,
        "pip_install_from_requirements",
        &s.pip_install_from_requirements,
        Step::PipInstallFromRequirements,
    );
    add(
        &mut out,
        "pip_install_from_pyproject",
        &s.pip_install_from_pyproject,
        Step::PipInstallFromPyproject,
    );
    add(&mut out, "add_local_file", &s.add_local_file, |v| {
        Step::AddLocalFile(v.get_ref())
    });
    add(&mut out, "add_local_dir", &s.add_local_dir, |v| {
        Step::AddLocalDir(v.get_ref())
    });
    add(&mut out, "run", &s.run, |v| Step::Run(v.get_ref()));
    add(&mut out, "env", &s.env, |v| Step::Env(v.get_ref()));
    add(&mut out, "workdir", &s.workdir, |v| {
        Step::Workdir(v.get_ref())
    });
    add(&mut out, "entrypoint", &s.entrypoint, |v| {
        Step::Entrypoint(v.get_ref())
    });
    add(&mut out, "cmd", &s.cmd, |v| Step::Cmd(v.get_ref()));
    add(
        &mut out,
        "dockerfile_commands",
        &s.dockerfile_commands,
        Step::DockerfileCommands,
    );
    add(&mut out, "apt_install", &s.apt_install, |v| {
        Step::AptInstall(v.get_ref())
    });
    add(&mut out, "user", &s.user, |v| Step::User(v.get_ref()));
    add(&mut out, "label", &s.label, |v| Step::Label(v.get_ref()));
    add(&mut out, "expose", &s.expose, |v| Step::Expose(v.get_ref()));
    out
}

/// Fails if an option is set on a step that does not take it.
fn check_options(at: &Locator<'_>, s: &StepTable, key: &str) -> Result<()> {
    fn offset<T>(value: &Option<Spanned<T>>) -> Option<usize> {
        value.as_ref().map(|v| v.span().start)
    }
    let pip: &[&str] = &[
        "pip_install",
        "pip_install_from_requirements",
        "pip_install_from_pyproject",
    ];
    let options: [(&str, Option<usize>, &[&str]); 7] = [
        ("find_links", offset(&s.find_links), pip),
        ("index_url", offset(&s.index_url), pip),
        ("extra_index_urls", offset(&s.extra_index_urls), pip),
        ("pre", offset(&s.pre), pip),
        ("extra_options", offset(&s.extra_options), pip),
        (
            "optional_dependencies",
            offset(&s.optional_dependencies),
            &["pip_install_from_pyproject"],
        ),
        (
            "context_dir",
            offset(&s.context_dir),
            &["dockerfile_commands"],
        ),
    ];
    for (option, offset, steps) in options {
        if let Some(offset) = offset
            && !steps.contains(&key)
        {
            let reason = format!(
                "{option} applies to {} steps, not to {key}",
                steps.join(", ")
            );
            return Err(at.error(offset, reason));
        }
    }
    Ok(())
}

/// The entries of a TOML map in the order they were written.
fn in_written_order(map: &SpannedMap) -> Vec<(&Spanned<String>, &Spanned<String>)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

fn texts(list: &[Spanned<String>]) -> impl Iterator<Item = &String> + Clone {
    list.iter().map(Spanned::get_ref)
}

/// The pip options of a step.
fn pip_options(s: &StepTable) -> PipOptions {
    let list = |l: &Option<Spanned<Vec<Spanned<String>>>>| -> Vec<String> {
        l.iter().flat_map(|l| texts(l.get_ref()).cloned()).collect()
    };
    PipOptions {
        find_links: list(&s.find_links),
        index_url: s.index_url.as_ref().map(|v| v.get_ref().clone()),
        extra_index_urls: list(&s.extra_index_urls),
        pre: s.pre.as_ref().is_some_and(|v| *v.get_ref()),
        extra_options: s
            .extra_options
            .as_ref()
            .map(|v| v.get_ref().clone())
            .unwrap_or_default(),
    }
}

/// Applies one `[[step]]` table to `image`.
fn apply(at: &Locator<'_>, image: Image, table: &Spanned<StepTable>) -> Result<Image> {
    let s = table.get_ref();
    let mut steps = steps_of(s);
    if steps.len() > 1 {
        let reason = format!(
            "a [[step]] has one step key, but both {} and {} are set; put each in its own \
             [[step]]",
            steps[0].0, steps[1].0
        );
        return Err(at.error(steps[1].1, reason));
    }
    let Some((key, offset, step)) = steps.pop() else {
        let reason = format!("a [[step]] needs one step key: one of {STEP_KEYS}");
        return Err(at.error(table.span().start, reason));
    };
    check_options(at, s, key)?;
    let mut spans = Spans::new(offset);
    for list in [&s.find_links, &s.extra_index_urls, &s.optional_dependencies] {
        spans.values(list.iter().flat_map(|l| l.get_ref()));
    }
    spans.values(s.index_url.iter().chain(&s.extra_options));
    let options = pip_options(s);

    let result = match step {
        Step::PipInstall(packages) => {
            spans.values(packages);
            image.pip_install_with(texts(packages), &options)
        }
        Step::PipInstallFromRequirements(path) => {
            spans.path(path);
            image.pip_install_from_requirements(path.get_ref(), &options)
        }
        Step::PipInstallFromPyproject(path) => {
            spans.path(path);
            let groups = s
                .optional_dependencies
                .iter()
                .flat_map(|g| texts(g.get_ref()));
            image.pip_install_from_pyproject(path.get_ref(), groups, &options)
        }
        Step::AddLocalFile(file) => {
            spans.path(&file.local);
            spans.value(&file.remote);
            image.add_local_file(file.local.get_ref(), file.remote.get_ref())
        }
        Step::AddLocalDir(dir) => {
            spans.path(&dir.local);
            spans.value(&dir.remote);
            spans.values(&dir.ignore);
            let ignore = texts(&dir.ignore).cloned().collect();
            let options = LocalDirOptions { ignore };
            image.add_local_dir_with(dir.local.get_ref(), dir.remote.get_ref(), &options)
        }
        Step::Run(RunValue::One(command)) => image.run_commands([command]),
        Step::Run(RunValue::Many(items)) => {
            let mut commands = Vec::new();
            for item in items {
                commands.push(match item.get_ref() {
                    RunItem::Shell(command) => {
                        spans
                            .values
                            .push((command.trim().to_string(), item.span().start));
                        RunCommand::from(command)
                    }
                    RunItem::Words(words) => RunCommand::from(words.clone()),
                });
            }
            image.run_commands(commands)
        }
        Step::Env(map) | Step::Label(map) => {
            let entries = in_written_order(map);
            for (name, value) in &entries {
                spans.value(name);
                spans.value(value);
            }
            let pairs = entries.iter().map(|(k, v)| (k.get_ref(), v.get_ref()));
            if key == "env" {
                image.env(pairs)
            } else {
                image.label(pairs)
            }
        }
        Step::Workdir(path) => image.workdir(path),
        Step::Entrypoint(argv) => image.entrypoint(argv),
        Step::Cmd(argv) => image.cmd(argv),
        Step::DockerfileCommands(lines) => {
            return dockerfile_commands(at, image, lines, s, &mut spans);
        }
        Step::AptInstall(packages) => {
            spans.values(packages);
            image.apt_install(texts(packages))
        }
        Step::User(name) => image.user(name),
        Step::Expose(ports) => {
            for port in ports {
                spans
                    .values
                    .push((port.get_ref().0.clone(), port.span().start));
            }
            image.expose(ports.iter().map(|p| &p.get_ref().0))
        }
    };
    result.map_err(|error| at.error(spans.offset_for(&error), error.to_string()))
}

/// The `dockerfile_commands` step: a syntax error points at the list item holding the line.
fn dockerfile_commands(
    at: &Locator<'_>,
    image: Image,
    lines: &Spanned<Lines>,
    s: &StepTable,
    spans: &mut Spans,
) -> Result<Image> {
    if let Some(dir) = &s.context_dir {
        spans.path(dir);
    }
    let context_dir = s.context_dir.as_ref().map(|d| PathBuf::from(d.get_ref()));
    let items: Vec<&String> = match lines.get_ref() {
        Lines::Text(text) => vec![text],
        Lines::List(list) => texts(list).collect(),
    };
    image
        .dockerfile_commands(&items, context_dir.as_deref())
        .map_err(|error| {
            let offset = match (&error, lines.get_ref()) {
                (SpecError::DockerfileSyntax { line, .. }, Lines::List(list)) => {
                    item_holding(list, *line).unwrap_or(spans.primary)
                }
                _ => spans.offset_for(&error),
            };
            at.error(offset, error.to_string())
        })
}

/// The offset of the list item that holds line `line` of the items joined by newlines.
fn item_holding(items: &[Spanned<String>], line: usize) -> Option<usize> {
    let mut first_line = 1;
    for item in items {
        let count = item.get_ref().split('\n').count();
        if line < first_line + count {
            return Some(item.span().start);
        }
        first_line += count;
    }
    None
}
