//! Steps that copy local files and directories into the image.

use std::path::Path;

use super::Image;
use super::paths::{self, Kind};
use super::pip::{CopyForm, copy_instruction};
use super::validate;
use crate::error::{Result, SpecError};

/// Options of [`Image::add_local_dir_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalDirOptions {
    /// Patterns of files to leave out, relative to the directory, as `.dockerignore` writes
    /// them (`*.pyc`, `**/__pycache__`); each becomes a `COPY --exclude=<pattern>`.
    pub ignore: Vec<String>,
}

impl Image {
    /// `COPY ["<file>", "<remote>"]`; a `remote` ending in `/` gets the file's name appended.
    pub fn add_local_file(self, local: impl AsRef<Path>, remote: &str) -> Result<Image> {
        const METHOD: &str = "add_local_file";
        check_remote(METHOD, remote)?;
        let local_path = local.as_ref();
        let local = paths::resolve(METHOD, self.context.root(), local_path, Kind::File)?;
        let dest = if remote.ends_with('/') {
            format!("{remote}{}", local.name)
        } else {
            remote.to_string()
        };
        let shown = local_path.display().to_string();
        let copy = copy_instruction(local.source, dest, Vec::new(), CopyForm::Json);
        self.append(METHOD, "local path", &shown, copy, local.root)
    }

    /// `COPY ["<dir>", "<remote>"]`: the directory's content goes into `remote`.
    pub fn add_local_dir(self, local: impl AsRef<Path>, remote: &str) -> Result<Image> {
        self.add_local_dir_as(
            "add_local_dir",
            local.as_ref(),
            remote,
            &LocalDirOptions::default(),
        )
    }

    /// [`Image::add_local_dir`] leaving out the files that match `options.ignore`.
    pub fn add_local_dir_with(
        self,
        local: impl AsRef<Path>,
        remote: &str,
        options: &LocalDirOptions,
    ) -> Result<Image> {
        self.add_local_dir_as("add_local_dir_with", local.as_ref(), remote, options)
    }

    fn add_local_dir_as(
        self,
        method: &'static str,
        local_path: &Path,
        remote: &str,
        options: &LocalDirOptions,
    ) -> Result<Image> {
        check_remote(method, remote)?;
        for pattern in &options.ignore {
            check_pattern(method, pattern)?;
        }
        let local = paths::resolve(method, self.context.root(), local_path, Kind::Dir)?;
        let shown = local_path.display().to_string();
        let copy = copy_instruction(
            local.source,
            remote.to_string(),
            options.ignore.clone(),
            CopyForm::Json,
        );
        self.append(method, "local path", &shown, copy, local.root)
    }
}

fn check_remote(method: &'static str, remote: &str) -> Result<()> {
    validate::non_empty(method, "remote path", remote)?;
    validate::one_line(method, "remote path", remote)
}

/// An ignore pattern: a valid glob, one word (it becomes one `--exclude=` flag).
fn check_pattern(method: &'static str, pattern: &str) -> Result<()> {
    let fail = |reason: String| SpecError::InvalidIgnorePattern {
        pattern: pattern.to_string(),
        origin: method.to_string(),
        reason,
    };
    if pattern.trim().is_empty() {
        return Err(fail("the pattern is empty".to_string()));
    }
    if pattern
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
    {
        return Err(fail(
            "the pattern must not contain whitespace or quotes".to_string(),
        ));
    }
    globset::Glob::new(pattern).map_err(|e| fail(e.kind().to_string()))?;
    Ok(())
}
