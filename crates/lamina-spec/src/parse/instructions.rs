//! Parsing one instruction from its keyword, flags and argument text.

use super::flags::{FlagType, Flags};
use super::heredoc::is_heredoc_word;
use super::words::{Json, extract_flags, json_array, parse_name_val, parse_words, split_blanks};
use crate::instruction::{ArgDecl, Command, Copy, Healthcheck, Heredoc, Instruction, Run};

/// The instruction keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    From,
    Run,
    Copy,
    Add,
    Env,
    Arg,
    Workdir,
    User,
    Label,
    Expose,
    Volume,
    Shell,
    Entrypoint,
    Cmd,
    StopSignal,
    Healthcheck,
    Onbuild,
    Maintainer,
}

impl Kind {
    /// The keyword for `word`, in any case.
    pub(crate) fn from_keyword(word: &str) -> Option<Kind> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FROM" => Kind::From,
            "RUN" => Kind::Run,
            "COPY" => Kind::Copy,
            "ADD" => Kind::Add,
            "ENV" => Kind::Env,
            "ARG" => Kind::Arg,
            "WORKDIR" => Kind::Workdir,
            "USER" => Kind::User,
            "LABEL" => Kind::Label,
            "EXPOSE" => Kind::Expose,
            "VOLUME" => Kind::Volume,
            "SHELL" => Kind::Shell,
            "ENTRYPOINT" => Kind::Entrypoint,
            "CMD" => Kind::Cmd,
            "STOPSIGNAL" => Kind::StopSignal,
            "HEALTHCHECK" => Kind::Healthcheck,
            "ONBUILD" => Kind::Onbuild,
            "MAINTAINER" => Kind::Maintainer,
            _ => return None,
        })
    }

    /// Whether this instruction can name here-documents.
    pub(crate) fn takes_heredocs(self) -> bool {
        matches!(self, Kind::Run | Kind::Copy | Kind::Add)
    }
}

/// A `FROM` line: starts a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct From {
    pub base: String,
    pub platform: Option<String>,
    pub name: Option<String>,
}

/// What one line parses to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    From(From),
    Instruction(Instruction),
}

/// One instruction line, split.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pub kind: Kind,
    /// The keyword as written.
    pub keyword: &'a str,
    /// Unquoted flag words, each starting with `--`.
    pub flags: Vec<String>,
    /// The text after the flags, trimmed.
    pub args: &'a str,
}

/// Splits `text` (a whole logical line, continuations joined) into keyword, flags and
/// arguments.
pub(crate) fn split_line(text: &str) -> Result<Line<'_>, String> {
    let text = text.trim();
    let (keyword, rest) = super::words::split_first_blank(text);
    let Some(kind) = Kind::from_keyword(keyword) else {
        return Err(format!(
            "unknown instruction {keyword:?}; see the Dockerfile reference for the instructions"
        ));
    };
    let (flags, args) = extract_flags(rest);
    Ok(Line {
        kind,
        keyword,
        flags,
        args: args.trim(),
    })
}

const RUN_FLAGS: &[(&str, FlagType)] = &[
    ("mount", FlagType::Strings),
    ("network", FlagType::String),
    ("security", FlagType::String),
];
const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("from", FlagType::String),
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("parents", FlagType::Bool),
    ("exclude", FlagType::Strings),
];
const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("exclude", FlagType::Strings),
    ("checksum", FlagType::String),
    ("keep-git-dir", FlagType::Bool),
    ("unpack", FlagType::Bool),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagType)] = &[
    ("interval", FlagType::String),
    ("timeout", FlagType::String),
    ("start-period", FlagType::String),
    ("start-interval", FlagType::String),
    ("retries", FlagType::String),
];

/// Parses one split line. `heredocs` are the bodies already read for it.
pub(crate) fn parse_line(
    line: &Line<'_>,
    heredocs: Vec<Heredoc>,
    escape: char,
) -> Result<Parsed, String> {
    let kw = line.keyword.to_ascii_uppercase();
    let kw = kw.as_str();
    let args = line.args;
    let no_flags = || Flags::parse(kw, &line.flags, &[]).map(|_| ());
    let need_args = || {
        if args.is_empty() {
            Err(format!(
                "{kw} needs an argument; see the Dockerfile reference for its syntax"
            ))
        } else {
            Ok(())
        }
    };
    let instruction = match line.kind {
        Kind::From => {
            let flags = Flags::parse(kw, &line.flags, &[("platform", FlagType::String)])?;
            return parse_from(args, flags.string("platform")).map(Parsed::From);
        }
        Kind::Run => {
            let flags = Flags::parse(kw, &line.flags, RUN_FLAGS)?;
            need_args()?;
            Instruction::Run(parse_run(args, &flags, heredocs)?)
        }
        Kind::Copy | Kind::Add => {
            let accepted = if line.kind == Kind::Copy {
                COPY_FLAGS
            } else {
                ADD_FLAGS
            };
            let flags = Flags::parse(kw, &line.flags, accepted)?;
            Instruction::Copy(parse_copy(kw, args, &flags, heredocs)?)
        }
        Kind::Env => {
            no_flags()?;
            Instruction::Env(parse_name_val(args, kw, escape)?)
        }
        Kind::Label => {
            no_flags()?;
            Instruction::Label(parse_name_val(args, kw, escape)?)
        }
        Kind::Arg => {
            no_flags()?;
            Instruction::Arg(parse_args(args, escape)?)
        }
        Kind::Workdir | Kind::User | Kind::StopSignal | Kind::Maintainer => {
            no_flags()?;
            need_args()?;
            let text = args.to_string();
            match line.kind {
                Kind::Workdir => Instruction::Workdir(text),
                Kind::User => Instruction::User(text),
                Kind::StopSignal => Instruction::StopSignal(text),
                _ => Instruction::Maintainer(text),
            }
        }
        Kind::Expose => {
            no_flags()?;
            need_args()?;
            Instruction::Expose(split_blanks(args))
        }
        Kind::Volume => {
            no_flags()?;
            need_args()?;
            let paths = list_or_json(kw, args)?.0;
            if paths.is_empty() || paths.iter().any(String::is_empty) {
                return Err("VOLUME paths can not be empty; name at least one path".to_string());
            }
            Instruction::Volume(paths)
        }
        Kind::Shell => {
            no_flags()?;
            match json_array(args) {
                Json::Strings(words) if !words.is_empty() => Instruction::Shell(words),
                Json::Strings(_) => {
                    return Err("SHELL needs at least one word, as in [\"/bin/sh\", \"-c\"]".into());
                }
                _ => {
                    return Err(
                        "SHELL needs a JSON array of strings, as in [\"/bin/sh\", \"-c\"]".into(),
                    );
                }
            }
        }
        Kind::Entrypoint | Kind::Cmd => {
            no_flags()?;
            need_args()?;
            let command = parse_command(kw, args)?;
            if line.kind == Kind::Cmd {
                Instruction::Cmd(command)
            } else {
                Instruction::Entrypoint(command)
            }
        }
        Kind::Healthcheck => Instruction::Healthcheck(parse_healthcheck(&line.flags, args)?),
        Kind::Onbuild => {
            no_flags()?;
            need_args()?;
            Instruction::Onbuild(Box::new(parse_onbuild(args, heredocs, escape)?))
        }
    };
    Ok(Parsed::Instruction(instruction))
}

fn parse_from(args: &str, platform: Option<String>) -> Result<From, String> {
    let words = split_blanks(args);
    match words.as_slice() {
        [base] => Ok(From {
            base: base.clone(),
            platform,
            name: None,
        }),
        [base, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            if !valid_stage_name(name) {
                return Err(format!(
                    "invalid stage name {name:?}: start with a letter and use only letters, \
                     digits, '-', '_' and '.'"
                ));
            }
            Ok(From {
                base: base.clone(),
                platform,
                name: Some(name.clone()),
            })
        }
        _ => Err("FROM takes an image and an optional AS <name>: FROM <image> [AS <name>]".into()),
    }
}

/// Docker's rule for stage names (`^[a-z][a-z0-9-_.]*$`, compared in lower case).
fn valid_stage_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let mut chars = lower.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn parse_run(args: &str, flags: &Flags, heredocs: Vec<Heredoc>) -> Result<Run, String> {
    let network = flags.string("network");
    if let Some(mode) = &network
        && !matches!(mode.as_str(), "default" | "none" | "host")
    {
        return Err(format!(
            "RUN --network={mode} is not a mode; use default, none or host"
        ));
    }
    let security = flags.string("security");
    if let Some(mode) = &security
        && !matches!(mode.as_str(), "sandbox" | "insecure")
    {
        return Err(format!(
            "RUN --security={mode} is not a mode; use sandbox or insecure"
        ));
    }
    let command = parse_command("RUN", args)?;
    if command == Command::Exec(Vec::new()) {
        return Err("RUN [] runs nothing; name the program to run".into());
    }
    Ok(Run {
        command,
        mounts: flags.strings("mount"),
        network,
        security,
        heredocs,
    })
}

/// Exec form (a JSON array of strings) or shell form (any other text).
fn parse_command(kw: &str, args: &str) -> Result<Command, String> {
    match json_array(args) {
        Json::Strings(words) => Ok(Command::Exec(words)),
        Json::NotStrings => Err(not_strings(kw)),
        Json::Invalid => Ok(Command::Shell(args.to_string())),
    }
}

fn not_strings(kw: &str) -> String {
    format!("{kw} has a JSON array with items that are not strings; quote every item")
}

/// Blank-separated words, or a JSON array of strings. The flag says which.
fn list_or_json(kw: &str, args: &str) -> Result<(Vec<String>, bool), String> {
    match json_array(args) {
        Json::Strings(words) => Ok((words, true)),
        Json::NotStrings => Err(not_strings(kw)),
        Json::Invalid => Ok((split_blanks(args), false)),
    }
}

fn parse_copy(kw: &str, args: &str, flags: &Flags, heredocs: Vec<Heredoc>) -> Result<Copy, String> {
    let (mut words, json_form) = list_or_json(kw, args)?;
    if words.len() < 2 {
        return Err(format!("{kw} needs at least one source and a destination"));
    }
    let dest = words.pop().unwrap_or_default();
    if !json_form && is_heredoc_word(&dest) {
        return Err(format!(
            "{kw} cannot take a here-document as its destination"
        ));
    }
    let mut copy = Copy::new(words, dest);
    copy.add = kw == "ADD";
    copy.json_form = json_form;
    copy.from = flags.string("from");
    copy.chown = flags.string("chown");
    copy.chmod = flags.string("chmod");
    copy.link = flags.bool("link").unwrap_or(false);
    copy.parents = flags.bool("parents").unwrap_or(false);
    copy.excludes = flags.strings("exclude");
    copy.checksum = flags.string("checksum");
    copy.keep_git_dir = flags.bool("keep-git-dir");
    copy.unpack = flags.bool("unpack");
    copy.heredocs = heredocs;
    Ok(copy)
}

fn parse_args(args: &str, escape: char) -> Result<Vec<ArgDecl>, String> {
    let words = parse_words(args, escape);
    if words.is_empty() {
        return Err("ARG needs a name: ARG <name>[=<default>]".into());
    }
    words
        .into_iter()
        .map(|word| {
            let decl = match word.split_once('=') {
                Some((name, default)) => ArgDecl {
                    name: name.to_string(),
                    default: Some(default.to_string()),
                },
                None => ArgDecl {
                    name: word.clone(),
                    default: None,
                },
            };
            if decl.name.is_empty() {
                return Err(format!("ARG argument {word:?} has an empty name"));
            }
            Ok(decl)
        })
        .collect()
}

fn parse_healthcheck(flag_words: &[String], args: &str) -> Result<Healthcheck, String> {
    let (kind, rest) = match args.find(char::is_whitespace) {
        Some(at) => (&args[..at], args[at..].trim_start()),
        None => (args, ""),
    };
    if kind.is_empty() {
        return Err("HEALTHCHECK needs NONE or CMD <command>".into());
    }
    if kind.eq_ignore_ascii_case("NONE") {
        if !flag_words.is_empty() {
            return Err("HEALTHCHECK NONE takes no options; remove them".into());
        }
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments; remove them".into());
        }
        return Ok(Healthcheck::None);
    }
    if !kind.eq_ignore_ascii_case("CMD") {
        return Err(format!(
            "unknown HEALTHCHECK type {kind:?}; use CMD or NONE"
        ));
    }
    let flags = Flags::parse("HEALTHCHECK", flag_words, HEALTHCHECK_FLAGS)?;
    let command = match json_array(rest) {
        Json::Strings(words) if !words.is_empty() => Command::Exec(words),
        Json::NotStrings => return Err(not_strings("HEALTHCHECK")),
        Json::Invalid if !rest.is_empty() => Command::Shell(rest.to_string()),
        _ => return Err("HEALTHCHECK CMD needs a command to run".into()),
    };
    let duration = |name: &str| -> Result<Option<String>, String> {
        match flags.string(name).filter(|v| !v.is_empty()) {
            Some(value) => check_duration(name, &value).map(|()| Some(value)),
            None => Ok(None),
        }
    };
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(value) => match value.parse::<i64>() {
            Ok(n) if n < 0 => {
                return Err(format!("HEALTHCHECK --retries={value} cannot be negative"));
            }
            Ok(n) if n <= i64::from(i32::MAX) => u32::try_from(n).ok(),
            _ => return Err(format!("HEALTHCHECK --retries={value} is not a count")),
        },
    };
    Ok(Healthcheck::Check {
        command,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// Checks a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`) of at least 1ms (or 0).
fn check_duration(name: &str, value: &str) -> Result<(), String> {
    let Some(nanos) = go_duration_nanos(value) else {
        return Err(format!(
            "HEALTHCHECK --{name}={value} is not a duration; write one like 30s, 1m30s or 500ms"
        ));
    };
    if nanos != 0.0 && nanos < 1e6 {
        return Err(format!(
            "HEALTHCHECK --{name}={value} is shorter than 1ms or negative"
        ));
    }
    Ok(())
}

/// The length in nanoseconds of a Go `time.ParseDuration` string (`30s`, `1m30s`, `.5h`,
/// `-2s`), as HEALTHCHECK flags take them; `None` if it does not parse.
pub fn go_duration_nanos(s: &str) -> Option<f64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number
            .parse()
            .ok()
            .or_else(|| format!("0{number}").parse().ok())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(if negative { -total } else { total })
}

/// `ONBUILD <instruction>`: any instruction but `ONBUILD`, `FROM` and `MAINTAINER`. A `RUN`,
/// `COPY` or `ADD` trigger takes here-documents as it would on its own, as BuildKit reads
/// it (the image's config then holds the trigger with its bodies).
fn parse_onbuild(args: &str, heredocs: Vec<Heredoc>, escape: char) -> Result<Instruction, String> {
    let inner = split_line(args)?;
    if matches!(inner.kind, Kind::Onbuild | Kind::From | Kind::Maintainer) {
        return Err(format!(
            "{} is not allowed as an ONBUILD trigger",
            inner.keyword.to_ascii_uppercase()
        ));
    }
    match parse_line(&inner, heredocs, escape)? {
        Parsed::Instruction(instruction) => Ok(instruction),
        Parsed::From(_) => Err("FROM is not allowed as an ONBUILD trigger".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_nanos("30s"), Some(30e9));
        assert_eq!(go_duration_nanos("1m30s"), Some(90e9));
        assert_eq!(go_duration_nanos("1.5h"), Some(5400e9));
        assert_eq!(go_duration_nanos(".5s"), Some(0.5e9));
        assert_eq!(go_duration_nanos("0"), Some(0.0));
        assert_eq!(go_duration_nanos("-2s"), Some(-2e9));
        for bad in ["", "5", "s", "1x", "1..2s", ".s", "1s2"] {
            assert_eq!(go_duration_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-1.x_y"));
        assert!(valid_stage_name("Build"));
        assert!(!valid_stage_name("1build"));
        assert!(!valid_stage_name("b$x"));
    }
}
