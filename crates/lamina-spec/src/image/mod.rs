//! The [`Image`] builder: a base plus an ordered list of steps, each appending Dockerfile
//! instructions exactly as the Daytona SDK's `Image` renders them.
//!
//! Every constructor and step takes `self` and returns `Result<Image>`, so a definition reads
//! as one chain:
//!
//! ```
//! # fn main() -> lamina_spec::Result<()> {
//! use lamina_spec::Image;
//! let image = Image::debian_slim("3.12")?.pip_install(["numpy"])?.workdir("/app")?;
//! assert!(image.dockerfile().contains("RUN python -m pip install numpy"));
//! # Ok(())
//! # }
//! ```
//!
//! Arguments are checked when the step is added: a missing local file, a command with a
//! newline or a malformed port fails there, naming the method and the input, not later in a
//! build. Steps append to the last stage of the definition.

mod local;
pub(crate) mod paths;
mod pip;
mod steps;
mod validate;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::context::{Context, StepRef};
use crate::digest::DefinitionDigest;
use crate::error::{Result, SpecError};
use crate::instruction::{Dockerfile, Instruction, Stage};
use crate::python;

pub use local::LocalDirOptions;
pub use pip::PipOptions;
pub use steps::RunCommand;

/// The shell commands `debian_slim` runs after its `FROM`, as Daytona's SDK has them.
const DEBIAN_SLIM_SETUP: [&str; 4] = [
    "apt-get update",
    "apt-get install -y gcc gfortran build-essential",
    "pip install --upgrade pip",
    "echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections",
];

/// A container image definition: the instructions ([`Dockerfile`]) and where their local
/// inputs live ([`Context`]).
///
/// Local paths given to steps resolve against the context root: the current directory when
/// the image was created, the Dockerfile's folder for [`Image::from_dockerfile`], or whatever
/// [`Image::context_dir`] set. The rendered Dockerfile only ever names inputs relative to
/// their root, so the same definition gives the same text (and digest) from any folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    dockerfile: Dockerfile,
    context: Context,
    origin: Origin,
}

/// Where a definition came from, for the rules that differ between Daytona's sandbox
/// images and plain Dockerfiles (the executor gives a sandbox image that sets neither
/// `ENTRYPOINT` nor `CMD` a default command; a Dockerfile's image stays as `docker build`
/// makes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// The builder API, or a TOML definition (its file form).
    #[default]
    Builder,
    /// A Dockerfile read by [`Image::from_dockerfile`].
    Dockerfile,
}

impl Image {
    /// Starts from a registry image: `FROM <reference>`.
    ///
    /// The reference must have the shape `[registry/]repository[:tag][@digest]` with a
    /// lowercase repository. A moving tag (`:latest`, or none) is accepted: the executor
    /// resolves tags to digests when it builds.
    pub fn base(reference: &str) -> Result<Image> {
        validate::image_reference("base", reference)?;
        Image::start(Stage::from_base(reference))
    }

    /// Starts from the empty image: `FROM scratch`.
    pub fn scratch() -> Result<Image> {
        Image::start(Stage::from_base("scratch"))
    }

    /// Starts from Debian bookworm with Python, as Daytona's `debian_slim`: `FROM
    /// python:<X.Y.Z>-slim-bookworm`, then apt compilers, an upgraded pip and a
    /// non-interactive debconf.
    ///
    /// `python` is a series (`"3.12"`, mapped to its pinned release, see
    /// [`crate::python::resolve`]), an exact version (`"3.12.4"`), or `None` for the newest
    /// supported series (never the Python of the machine running this).
    pub fn debian_slim<'a>(python: impl Into<Option<&'a str>>) -> Result<Image> {
        let version = python::resolve(python.into())?;
        Image::start(Stage::from_base(format!("python:{version}-slim-bookworm")))?
            .run_commands(DEBIAN_SLIM_SETUP)
    }

    /// Starts from an existing Dockerfile: all its stages and instructions. Its `COPY`/`ADD`
    /// sources resolve against the Dockerfile's folder unless [`Image::context_dir`] says
    /// otherwise. A relative `path` resolves against the current directory.
    pub fn from_dockerfile(path: impl AsRef<Path>) -> Result<Image> {
        let path = paths::absolute(path.as_ref())?;
        paths::check_kind(&path, paths::Kind::File)?;
        let dockerfile = Dockerfile::parse_file(&path)?;
        if dockerfile.stages.is_empty() {
            return Err(SpecError::DockerfileSyntax {
                file: path,
                line: 1,
                reason: "the Dockerfile has no FROM instruction; start it with FROM <image>"
                    .to_string(),
            });
        }
        let root = path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        Ok(Image::from_parts(dockerfile, Context::new(root)).with_origin(Origin::Dockerfile))
    }

    /// An image from an already built model, for layers that assemble definitions
    /// themselves (the TOML format, the command line). Nothing is checked. Its origin is
    /// [`Origin::Builder`]; see [`Image::with_origin`].
    pub fn from_parts(dockerfile: Dockerfile, context: Context) -> Image {
        Image {
            dockerfile,
            context,
            origin: Origin::Builder,
        }
    }

    /// The same definition, recorded as coming from `origin`.
    pub fn with_origin(self, origin: Origin) -> Image {
        Image { origin, ..self }
    }

    /// Where this definition came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Sets the context root: the directory that relative local paths of later steps, and
    /// the sources of every `COPY`/`ADD` without a root of its own (including those of a
    /// Dockerfile given to [`Image::from_dockerfile`]), resolve against.
    ///
    /// Call it right after the constructor: a step added earlier wrote its source relative
    /// to the old root. A relative `dir` resolves against the current root.
    pub fn context_dir(self, dir: impl AsRef<Path>) -> Result<Image> {
        let dir = paths::resolve_path(self.context.root(), dir.as_ref());
        paths::check_kind(&dir, paths::Kind::Dir)?;
        let mut context = Context::new(dir);
        for (step, root) in self.context.step_roots() {
            context.set_step_root(step, root);
        }
        Ok(Image { context, ..self })
    }

    /// The Dockerfile text of this definition, like Daytona's `Image.dockerfile()`.
    pub fn dockerfile(&self) -> String {
        self.dockerfile.render()
    }

    /// The instructions of this definition.
    pub fn definition(&self) -> &Dockerfile {
        &self.dockerfile
    }

    /// Where the local inputs of this definition live.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The definition digest: the identity of this definition, from its instructions and
    /// the content of its local inputs, independent of where they sit on disk (see
    /// [`crate::digest`]). Reads every local input.
    pub fn digest(&self) -> Result<DefinitionDigest> {
        crate::digest::definition_digest(&self.dockerfile, &self.context)
    }

    /// [`Image::digest`] for a build given `build_args` (`--build-arg` values): sources
    /// expand with them as the build expands them, and they are part of the digest.
    pub fn digest_with_args(
        &self,
        build_args: &std::collections::BTreeMap<String, String>,
    ) -> Result<DefinitionDigest> {
        crate::digest::definition_digest_with_args(
            &self.dockerfile,
            &self.context,
            build_args,
            None,
        )
    }

    /// The instructions and the context, by value.
    pub fn into_parts(self) -> (Dockerfile, Context) {
        (self.dockerfile, self.context)
    }

    /// Appends instructions parsed from Dockerfile `lines` to the last stage, as Daytona's
    /// `dockerfile_commands`. A `FROM` among them starts a new stage, as in a Dockerfile.
    ///
    /// `COPY`/`ADD` sources among them resolve against `context_dir` if given (relative to
    /// the context root), else against the context root. A syntax error names the line
    /// within `lines` (counting the lines inside each item).
    pub fn dockerfile_commands<I, S>(
        mut self,
        lines: I,
        context_dir: Option<&Path>,
    ) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        const METHOD: &str = "dockerfile_commands";
        let lines: Vec<String> = lines.into_iter().map(|l| l.as_ref().to_string()).collect();
        let step_root = match context_dir {
            Some(dir) => {
                let dir = paths::resolve_path(self.context.root(), dir);
                paths::check_kind(&dir, paths::Kind::Dir)?;
                Some(dir)
            }
            None => None,
        };
        if lines.iter().all(|l| l.trim().is_empty()) {
            return Ok(self);
        }
        let last = self.last_stage(METHOD)?;
        // Parse the lines after a FROM (and the image's escape directive) so they read as
        // instructions of a stage, then move them onto this image.
        let mut prefix = String::new();
        if self.dockerfile.escape != '\\' {
            prefix.push_str(&format!("# escape={}\n", self.dockerfile.escape));
        }
        prefix.push_str("FROM scratch\n");
        let prefix_lines = prefix.lines().count();
        let text = format!("{prefix}{}\n", lines.join("\n"));
        let parsed = Dockerfile::parse(&text).map_err(|error| match error {
            SpecError::DockerfileSyntax { line, reason, .. } => SpecError::DockerfileSyntax {
                file: PathBuf::from(METHOD),
                line: line.saturating_sub(prefix_lines).max(1),
                reason,
            },
            other => other,
        })?;
        let mut copies = Vec::new();
        for (index, mut stage) in parsed.stages.into_iter().enumerate() {
            let instructions = std::mem::take(&mut stage.instructions);
            // The first parsed stage is the FROM added above: its instructions join the
            // last stage; any further stage is a FROM among the lines.
            let (target, offset) = if index == 0 {
                (last, self.dockerfile.stages[last].instructions.len())
            } else {
                self.dockerfile.stages.push(stage);
                (self.dockerfile.stages.len() - 1, 0)
            };
            for (i, instruction) in instructions.into_iter().enumerate() {
                if matches!(&instruction, Instruction::Copy(c) if c.from.is_none()) {
                    copies.push(StepRef {
                        stage: target,
                        instruction: offset + i,
                    });
                }
                self.dockerfile.stages[target]
                    .instructions
                    .push(instruction);
            }
        }
        if let Some(root) = step_root {
            for step in copies {
                self.context.set_step_root(step, root.clone());
            }
        }
        Ok(self)
    }

    /// An image with one stage `stage`, its context root the current directory.
    fn start(stage: Stage) -> Result<Image> {
        let cwd = std::env::current_dir().map_err(|source| SpecError::Io {
            path: PathBuf::from("."),
            source,
        })?;
        let dockerfile = Dockerfile {
            stages: vec![stage],
            ..Dockerfile::default()
        };
        Ok(Image {
            dockerfile,
            context: Context::new(paths::normalize(&cwd)),
            origin: Origin::Builder,
        })
    }

    /// The index of the stage that steps append to.
    fn last_stage(&self, method: &'static str) -> Result<usize> {
        self.dockerfile
            .stages
            .len()
            .checked_sub(1)
            .ok_or_else(|| SpecError::InvalidArgument {
                method,
                what: "image",
                value: String::new(),
                reason: "the definition has no stage; start from base, scratch, debian_slim or a \
                     Dockerfile with a FROM"
                    .to_string(),
            })
    }

    /// Appends `instruction` to the last stage, with `root` as the root of its sources if
    /// given. `what`/`value` name the argument it came from, for the error raised when the
    /// instruction would not read back the same from the rendered text.
    fn append(
        mut self,
        method: &'static str,
        what: &'static str,
        value: &str,
        instruction: Instruction,
        root: Option<PathBuf>,
    ) -> Result<Image> {
        let stage = self.last_stage(method)?;
        validate::round_trips(self.dockerfile.escape, &instruction).map_err(|reason| {
            SpecError::InvalidArgument {
                method,
                what,
                value: value.to_string(),
                reason,
            }
        })?;
        let instructions = &mut self.dockerfile.stages[stage].instructions;
        if let Some(root) = root {
            let step = StepRef {
                stage,
                instruction: instructions.len(),
            };
            self.context.set_step_root(step, root);
        }
        instructions.push(instruction);
        Ok(self)
    }
}
