//! The parsed form of a Dockerfile: the one model that the builder produces, the parser
//! produces, the renderer prints and the digest encodes.
//!
//! Values are kept as written (variables unexpanded, quotes of shell-form commands intact), so
//! `Dockerfile::parse(&dockerfile.render()) == dockerfile`. Expansion of `ARG`/`ENV`
//! references is a separate step (`Dockerfile::expand`) done when a build needs the values.

/// A whole Dockerfile: parser directives, `ARG`s before the first `FROM`, and the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `# escape=` directive; `\` unless set to `` ` ``.
    pub escape: char,
    /// `# syntax=` directive, kept so that rendering gives it back.
    pub syntax: Option<String>,
    /// `ARG` instructions that come before the first `FROM` (usable in `FROM` lines only).
    pub global_args: Vec<ArgDecl>,
    /// At least one stage once parsed or built.
    pub stages: Vec<Stage>,
}

impl Default for Dockerfile {
    fn default() -> Self {
        Dockerfile {
            escape: '\\',
            syntax: None,
            global_args: Vec::new(),
            stages: Vec::new(),
        }
    }
}

/// One stage: `FROM [--platform=<p>] <base> [AS <name>]` and the instructions up to the next
/// `FROM`. `base` is `scratch`, a registry reference, or the name of an earlier stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub base: String,
    pub platform: Option<String>,
    /// The `AS <name>` alias, as written.
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// `FROM <base>` with no platform, no name and no instructions yet.
    pub fn from_base(base: impl Into<String>) -> Self {
        Stage {
            base: base.into(),
            platform: None,
            name: None,
            instructions: Vec::new(),
        }
    }
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// A command as `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD` take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exec form, a JSON array: `["python", "-m", "app"]`.
    Exec(Vec<String>),
    /// Shell form: the text run by the stage's `SHELL` (default `/bin/sh -c`). Line
    /// continuations are removed; the text is otherwise kept as written.
    Shell(String),
}

/// A here-document attached to `RUN`, `COPY` or `ADD` (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes or `-`.
    pub delimiter: String,
    /// The body: every line between the instruction and the delimiter line, each ending in
    /// `\n`, exactly as written (with `<<-`, leading tabs are kept here and stripped on use).
    pub body: String,
    /// `<<-`: strip leading tabs from body lines.
    pub strip_tabs: bool,
    /// A quoted delimiter (`<<"EOF"` or `<<'EOF'`) turns off variable expansion in the body.
    pub expand: bool,
}

/// `RUN`, with its BuildKit flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    /// Each `--mount=<spec>` value, as written.
    pub mounts: Vec<String>,
    /// `--network=<mode>`.
    pub network: Option<String>,
    /// `--security=<mode>`.
    pub security: Option<String>,
    /// Here-documents named in the command, in order.
    pub heredocs: Vec<Heredoc>,
}

impl Run {
    /// A plain shell-form `RUN` with no flags.
    pub fn shell(command: impl Into<String>) -> Self {
        Run {
            command: Command::Shell(command.into()),
            mounts: Vec::new(),
            network: None,
            security: None,
            heredocs: Vec::new(),
        }
    }
}

/// `COPY` and `ADD`: they share syntax; `ADD` also takes URLs, git sources and archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// `ADD` rather than `COPY`.
    pub add: bool,
    /// Sources as written: context paths (possibly globs), URLs for `ADD`, or heredoc
    /// delimiters (for `COPY <<EOF /dest`), each source once.
    pub sources: Vec<String>,
    pub dest: String,
    /// The instruction was written in JSON-array form.
    pub json_form: bool,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (keep source directory structure).
    pub parents: bool,
    /// `--exclude=<pattern>`, each in order.
    pub excludes: Vec<String>,
    /// `ADD --checksum=<digest>`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir=<bool>`.
    pub keep_git_dir: Option<bool>,
    /// `ADD --unpack=<bool>` (Dockerfile 1.17): whether an archive source is extracted.
    pub unpack: Option<bool>,
    pub heredocs: Vec<Heredoc>,
}

impl Copy {
    /// A plain `COPY <sources..> <dest>` with no flags.
    pub fn new(sources: Vec<String>, dest: impl Into<String>) -> Self {
        Copy {
            add: false,
            sources,
            dest: dest.into(),
            json_form: false,
            from: None,
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: Vec::new(),
            checksum: None,
            keep_git_dir: None,
            unpack: None,
            heredocs: Vec::new(),
        }
    }
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD <command>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    None,
    Check {
        command: Command,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<u32>,
    },
}

/// One instruction of a stage (everything but `FROM`, which starts a stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Copy(Copy),
    /// `ENV k=v ...` (or the legacy `ENV k v`, stored as one pair).
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    /// Ports as written: `80`, `443/tcp`, `${PORT}`.
    Expose(Vec<String>),
    Volume(Vec<String>),
    Shell(Vec<String>),
    Entrypoint(Command),
    Cmd(Command),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: stored, executed only by images built on this one.
    Onbuild(Box<Instruction>),
    /// The deprecated `MAINTAINER <name>`.
    Maintainer(String),
}

impl Instruction {
    /// The instruction keyword as written in a Dockerfile (`RUN`, `COPY`, ...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Copy(c) if c.add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Shell(_) => "SHELL",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Cmd(_) => "CMD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}
