//! The pip steps: packages by name, from a requirements file, from a pyproject.toml.

use std::path::Path;

use super::Image;
use super::paths::{self, Kind};
use super::steps::{packages_sorted, run};
use super::validate;
use crate::error::{Result, SpecError};
use crate::instruction::{Copy, Instruction};
use crate::quote::{shell_join, shell_quote};

/// Where the requirements file is copied in the image, as Daytona's SDK does.
const REQUIREMENTS_IN_IMAGE: &str = "/.requirements.txt";

/// Options of the pip steps, appended to `pip install` in this order: each
/// `--find-links X`, `--index-url X`, each `--extra-index-url X`, `--pre`, then
/// `extra_options` as written (trimmed). URLs are shell-quoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipOptions {
    /// `--find-links` locations.
    pub find_links: Vec<String>,
    /// `--index-url`: replaces the default package index.
    pub index_url: Option<String>,
    /// `--extra-index-url` locations.
    pub extra_index_urls: Vec<String>,
    /// `--pre`: allow pre-release versions.
    pub pre: bool,
    /// More pip options, written as is after the others.
    pub extra_options: String,
}

impl PipOptions {
    /// The options as pip arguments, each with a leading space (empty if none).
    fn arguments(&self, method: &'static str) -> Result<String> {
        let mut out = String::new();
        let mut push = |flag: &str, what: &'static str, value: &str| -> Result<()> {
            validate::non_empty(method, what, value)?;
            validate::one_line(method, what, value)?;
            out.push_str(&format!(" {flag} {}", shell_quote(value)));
            Ok(())
        };
        for link in &self.find_links {
            push("--find-links", "find_links entry", link)?;
        }
        if let Some(url) = &self.index_url {
            push("--index-url", "index_url", url)?;
        }
        for url in &self.extra_index_urls {
            push("--extra-index-url", "extra_index_urls entry", url)?;
        }
        if self.pre {
            out.push_str(" --pre");
        }
        validate::one_line(method, "extra_options", &self.extra_options)?;
        // Daytona appends a lone space for whitespace-only options; nothing is cleaner.
        let extra = self.extra_options.trim();
        if !extra.is_empty() {
            out.push(' ');
            out.push_str(extra);
        }
        Ok(out)
    }
}

impl Image {
    /// `RUN python -m pip install <packages>`, packages sorted and shell-quoted; nothing if
    /// there are none.
    pub fn pip_install<I, S>(self, packages: I) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.pip_install_with(packages, &PipOptions::default())
    }

    /// [`Image::pip_install`] with pip options.
    pub fn pip_install_with<I, S>(self, packages: I, options: &PipOptions) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.pip_install_as("pip_install", packages, options)
    }

    /// `COPY <file> /.requirements.txt` then `RUN python -m pip install -r
    /// /.requirements.txt <options>`. The file is a local input of the image.
    pub fn pip_install_from_requirements(
        self,
        path: impl AsRef<Path>,
        options: &PipOptions,
    ) -> Result<Image> {
        const METHOD: &str = "pip_install_from_requirements";
        let arguments = options.arguments(METHOD)?;
        let local = match paths::resolve(METHOD, self.context.root(), path.as_ref(), Kind::File) {
            Err(SpecError::LocalPathMissing { path }) => {
                return Err(SpecError::RequirementsMissing { path });
            }
            other => other?,
        };
        let shown = path.as_ref().display().to_string();
        let copy = copy_instruction(
            local.source,
            REQUIREMENTS_IN_IMAGE.to_string(),
            Vec::new(),
            CopyForm::Plain,
        );
        let line = format!("python -m pip install -r {REQUIREMENTS_IN_IMAGE}{arguments}");
        self.append(METHOD, "requirements file", &shown, copy, local.root)?
            .append(METHOD, "options", &arguments, run(line), None)
    }

    /// One pip install of `[project].dependencies` and the named `[project.optional-
    /// dependencies]` groups (unknown groups are skipped, as in Daytona's SDK). The file is
    /// read now and not copied into the image.
    pub fn pip_install_from_pyproject<I, S>(
        self,
        path: impl AsRef<Path>,
        optional_dependencies: I,
        options: &PipOptions,
    ) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        const METHOD: &str = "pip_install_from_pyproject";
        let path = paths::resolve_path(self.context.root(), path.as_ref());
        paths::check_kind(&path, Kind::File)?;
        let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Io {
            path: path.clone(),
            source,
        })?;
        let groups: Vec<String> = optional_dependencies
            .into_iter()
            .map(|g| g.as_ref().to_string())
            .collect();
        let packages =
            pyproject_packages(&text, &groups).map_err(|reason| SpecError::InvalidPyproject {
                path: path.clone(),
                reason,
            })?;
        self.pip_install_as(METHOD, packages, options)
    }

    fn pip_install_as<I, S>(
        self,
        method: &'static str,
        packages: I,
        options: &PipOptions,
    ) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let arguments = options.arguments(method)?;
        let packages = packages_sorted(method, packages)?;
        if packages.is_empty() {
            return Ok(self);
        }
        let line = format!("python -m pip install {}{arguments}", shell_join(&packages));
        self.append(method, "packages", &packages.join(" "), run(line), None)
    }
}

/// How a builder `COPY` is written, as Daytona's SDK writes each step's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CopyForm {
    /// `COPY src dest` (the requirements file), in JSON form only when a word would not
    /// survive the plain form.
    Plain,
    /// `COPY ["src", "dest"]` (local files and directories).
    Json,
}

/// A `COPY` of one source.
pub(super) fn copy_instruction(
    source: String,
    dest: String,
    excludes: Vec<String>,
    form: CopyForm,
) -> Instruction {
    let awkward = |word: &str| word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let json_form = form == CopyForm::Json || awkward(&source) || awkward(&dest);
    let mut copy = Copy::new(vec![source], dest);
    copy.json_form = json_form;
    copy.excludes = excludes;
    Instruction::Copy(copy)
}

/// The dependencies a pyproject.toml lists in `[project].dependencies` and in the
/// `[project.optional-dependencies]` groups named in `groups`.
fn pyproject_packages(text: &str, groups: &[String]) -> std::result::Result<Vec<String>, String> {
    let document: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let Some(project) = document.get("project") else {
        return Err("no [project] section; add one with a dependencies list".to_string());
    };
    let Some(project) = project.as_table() else {
        return Err("[project] is not a table".to_string());
    };
    let Some(dependencies) = project.get("dependencies") else {
        return Err(
            "no [project.dependencies] list; add `dependencies = [...]` under [project]"
                .to_string(),
        );
    };
    let mut packages = strings(dependencies, "project.dependencies")?;
    if let Some(optional) = project.get("optional-dependencies") {
        let Some(optional) = optional.as_table() else {
            return Err("[project.optional-dependencies] is not a table".to_string());
        };
        for (group, members) in optional {
            if groups.contains(group) {
                packages.extend(strings(
                    members,
                    &format!("project.optional-dependencies.{group}"),
                )?);
            }
        }
    }
    Ok(packages)
}

fn strings(value: &toml::Value, key: &str) -> std::result::Result<Vec<String>, String> {
    let not_strings = || format!("{key} must be a list of strings");
    let array = value.as_array().ok_or_else(not_strings)?;
    array
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(not_strings))
        .collect()
}
