//! Finding and loading an image definition named on the command line or by an embedder.

use std::path::{Path, PathBuf};

use lamina_spec::{Image, SpecError};

/// The file names looked for, in order, when a definition path is a directory.
const DEFINITION_FILE_NAMES: [&str; 2] = ["lamina.toml", "Dockerfile"];

/// How a definition file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionKind {
    /// A TOML definition (`*.toml`), see docs/definition.md.
    Toml,
    /// Any other file is read as a Dockerfile.
    Dockerfile,
}

impl DefinitionKind {
    /// Decides by file name: `.toml` is TOML, anything else a Dockerfile.
    pub fn of(path: &Path) -> Self {
        match path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("toml") => DefinitionKind::Toml,
            _ => DefinitionKind::Dockerfile,
        }
    }
}

/// Loads the definition at `path`: a `.toml` definition, a Dockerfile, or a directory holding
/// `lamina.toml` or `Dockerfile`. Local inputs resolve against the definition's folder.
pub fn load_definition(path: &Path) -> Result<Image, SpecError> {
    let file = resolve_definition_path(path)?;
    match DefinitionKind::of(&file) {
        DefinitionKind::Toml => lamina_spec::toml_def::load_definition(&file),
        DefinitionKind::Dockerfile => Image::from_dockerfile(&file),
    }
}

/// The file a definition path names: `path` itself, or for a directory the `lamina.toml` or
/// `Dockerfile` in it.
pub fn resolve_definition_path(path: &Path) -> Result<PathBuf, SpecError> {
    if !path.exists() {
        return Err(SpecError::DefinitionMissing {
            path: path.to_path_buf(),
        });
    }
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    DEFINITION_FILE_NAMES
        .iter()
        .map(|name| path.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| SpecError::DefinitionNotFound {
            dir: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_decided_by_extension() {
        assert_eq!(
            DefinitionKind::of(Path::new("a/lamina.toml")),
            DefinitionKind::Toml
        );
        assert_eq!(
            DefinitionKind::of(Path::new("a/image.TOML")),
            DefinitionKind::Toml
        );
        assert_eq!(
            DefinitionKind::of(Path::new("a/Dockerfile")),
            DefinitionKind::Dockerfile
        );
        assert_eq!(
            DefinitionKind::of(Path::new("a/build.dockerfile")),
            DefinitionKind::Dockerfile
        );
    }

    #[test]
    fn directory_prefers_lamina_toml_then_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(
            resolve_definition_path(dir.path()).unwrap(),
            dir.path().join("Dockerfile")
        );
        std::fs::write(dir.path().join("lamina.toml"), "").unwrap();
        assert_eq!(
            resolve_definition_path(dir.path()).unwrap(),
            dir.path().join("lamina.toml")
        );
    }

    #[test]
    fn missing_path_and_empty_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            resolve_definition_path(&missing),
            Err(SpecError::DefinitionMissing { path }) if path == missing
        ));
        assert!(matches!(
            resolve_definition_path(dir.path()),
            Err(SpecError::DefinitionNotFound { dir: d }) if d == dir.path()
        ));
    }
}
