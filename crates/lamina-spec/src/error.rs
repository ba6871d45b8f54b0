//! The one error type of `lamina-spec`.
//!
//! Each variant names the input at fault (a path, a method argument, a line) so a user can
//! fix it. Kinds: bad user input (most), and I/O failures reading inputs (`Io`).

use std::path::PathBuf;

/// Why a definition could not be built, parsed, rendered or digested.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    // ---- reading inputs -------------------------------------------------------------
    /// Reading a local input failed for a reason other than it being absent.
    #[error("cannot read '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // ---- builder arguments ----------------------------------------------------------
    /// A local file or directory named in the definition does not exist.
    #[error("local path '{}' does not exist; check the path (relative paths resolve against the context directory)", path.display())]
    LocalPathMissing { path: PathBuf },
    /// The path exists but is not a regular file (e.g. a directory given to add_local_file).
    #[error("'{}' is not a file; use add_local_dir for directories", path.display())]
    NotAFile { path: PathBuf },
    /// The path exists but is not a directory.
    #[error("'{}' is not a directory; use add_local_file for files", path.display())]
    NotADirectory { path: PathBuf },
    /// A Python version that is not of the form 3.X or 3.X.Y.
    #[error(
        "invalid python version '{version}': use a series like 3.12 or an exact version like 3.12.10"
    )]
    InvalidPythonVersion { version: String },
    /// A well-formed Python version outside the supported series.
    #[error("unsupported python version '{version}': supported series are {}", supported.join(", "))]
    UnsupportedPythonVersion {
        version: String,
        supported: Vec<&'static str>,
    },
    /// `pip_install_from_requirements` named a file that does not exist.
    #[error("requirements file '{}' does not exist", path.display())]
    RequirementsMissing { path: PathBuf },
    /// A pyproject.toml that is not valid TOML or has the wrong shape.
    #[error("invalid pyproject.toml '{}': {reason}", path.display())]
    InvalidPyproject { path: PathBuf, reason: String },
    /// A builder argument that cannot be rendered into a valid instruction.
    #[error("{method}: invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        method: &'static str,
        what: &'static str,
        value: String,
        reason: String,
    },

    /// The definition path given does not exist.
    #[error("definition '{}' does not exist; name a Dockerfile, a .toml definition or a directory holding one (a relative path resolves against the current directory)", path.display())]
    DefinitionMissing { path: PathBuf },

    /// A definition directory with neither `lamina.toml` nor `Dockerfile` in it.
    #[error("no lamina.toml or Dockerfile in '{}'; name the definition file itself", dir.display())]
    DefinitionNotFound { dir: PathBuf },

    // ---- Dockerfiles ----------------------------------------------------------------
    /// A Dockerfile that does not parse; `line` is 1-based.
    #[error("{}:{line}: {reason}", file.display())]
    DockerfileSyntax {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    /// An `ONBUILD` trigger from a base image's config that is not one valid instruction.
    #[error(
        "ONBUILD trigger {trigger:?} of the base image {base}: {reason}; rebuild the base image without it"
    )]
    InvalidTrigger {
        base: String,
        trigger: String,
        reason: String,
    },
    /// A `${VAR:?message}` reference to an unset variable, or a malformed reference.
    #[error("line {line}: cannot expand variables in {word:?}: {reason}")]
    Expansion {
        line: usize,
        word: String,
        reason: String,
    },
    /// Like `Expansion`, for a parsed model, which has no line numbers: `location` names the
    /// instruction (`stage 2 (build), instruction 3 (COPY)`) or the function called.
    #[error("{location}: cannot expand variables in {word:?}: {reason}")]
    ExpansionAt {
        location: String,
        word: String,
        reason: String,
    },

    // ---- TOML definitions -------------------------------------------------------------
    /// A TOML definition file that does not parse or has the wrong shape; 1-based position.
    #[error("{}:{line}:{column}: {reason}", file.display())]
    TomlDefinition {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },

    // ---- local inputs and digests -----------------------------------------------------
    /// A COPY/ADD source that matches nothing in its context directory.
    #[error("COPY source '{source_name}' matches no file in the context '{}'", context.display())]
    CopySourceNotFound {
        source_name: String,
        context: PathBuf,
    },
    /// A COPY/ADD source written with variables whose expansion matches nothing.
    #[error(
        "COPY source '{written}' (expanded to '{source_name}') matches no file in the context '{}'; a variable that only the base image's ENV sets expands to nothing here, as no image is fetched: declare it with ARG <name> and pass --build-arg <name>=<value>",
        context.display()
    )]
    ExpandedSourceNotFound {
        written: String,
        source_name: String,
        context: PathBuf,
    },
    /// A COPY/ADD source that climbs out of its context directory.
    #[error("COPY source '{source_name}' is outside the context '{}'", context.display())]
    CopySourceOutsideContext {
        source_name: String,
        context: PathBuf,
    },
    /// An ignore pattern (from .dockerignore or an ignore list) that is not a valid glob.
    #[error("invalid ignore pattern '{pattern}' in {origin}: {reason}")]
    InvalidIgnorePattern {
        pattern: String,
        origin: String,
        reason: String,
    },
    /// A COPY/ADD source whose wildcards do not form a valid pattern.
    #[error(
        "COPY source '{source_name}' is not a valid pattern: {reason}; escape '*', '?' and '[' with '\\' to use them literally"
    )]
    InvalidCopySource { source_name: String, reason: String },
    /// A local input that cannot be copied or hashed (a socket or device, a name that is
    /// not UTF-8).
    #[error("cannot use '{}' as a COPY input: {reason}; remove or rename it, or add it to .dockerignore", path.display())]
    UnsupportedInput { path: PathBuf, reason: &'static str },
    /// A definition digest string that is not `blake3:` and 64 lowercase hex digits.
    #[error(
        "invalid definition digest '{digest}': {reason}; expected 'blake3:' followed by 64 lowercase hex digits"
    )]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
}

impl SpecError {
    /// The error for a failed read of a local input: `LocalPathMissing` when it is absent,
    /// `Io` otherwise.
    pub fn reading(path: &std::path::Path, source: std::io::Error) -> SpecError {
        if source.kind() == std::io::ErrorKind::NotFound {
            SpecError::LocalPathMissing {
                path: path.to_path_buf(),
            }
        } else {
            SpecError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// `Result` with [`SpecError`].
pub type Result<T, E = SpecError> = std::result::Result<T, E>;
