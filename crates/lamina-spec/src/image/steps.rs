//! Steps that take only text: commands, environment, metadata.

use std::fmt::Display;

use super::Image;
use super::validate::{self, invalid};
use crate::error::Result;
use crate::instruction::{Command, Instruction, Run};
use crate::quote::{shell_join, shell_quote};

/// One argument of [`Image::run_commands`]: a shell command, or a list of words.
///
/// A string is written as is (`RUN <command>`). A list is written as its words, each in
/// double quotes (`RUN "echo" "a b"`), exactly as Daytona's SDK writes it: `"` becomes
/// `\\\"` and `'` becomes `\'`, nothing else is escaped, so `$HOME` in a word is expanded by
/// the shell and a quote inside a word reaches the command with the backslashes the SDK adds
/// (the same image as Daytona's for the same call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCommand {
    /// A shell command line.
    Shell(String),
    /// Words of a command line.
    Words(Vec<String>),
}

impl From<&str> for RunCommand {
    fn from(command: &str) -> Self {
        RunCommand::Shell(command.to_string())
    }
}

impl From<String> for RunCommand {
    fn from(command: String) -> Self {
        RunCommand::Shell(command)
    }
}

impl From<&String> for RunCommand {
    fn from(command: &String) -> Self {
        RunCommand::Shell(command.clone())
    }
}

impl From<Vec<String>> for RunCommand {
    fn from(words: Vec<String>) -> Self {
        RunCommand::Words(words)
    }
}

impl From<Vec<&str>> for RunCommand {
    fn from(words: Vec<&str>) -> Self {
        RunCommand::Words(words.into_iter().map(str::to_string).collect())
    }
}

impl From<&[&str]> for RunCommand {
    fn from(words: &[&str]) -> Self {
        RunCommand::Words(words.iter().map(|w| w.to_string()).collect())
    }
}

impl<const N: usize> From<[&str; N]> for RunCommand {
    fn from(words: [&str; N]) -> Self {
        RunCommand::Words(words.iter().map(|w| w.to_string()).collect())
    }
}

impl RunCommand {
    /// The command line as `RUN` gets it, checked.
    fn line(&self) -> Result<String> {
        const METHOD: &str = "run_commands";
        match self {
            RunCommand::Shell(command) => {
                validate::one_line(METHOD, "command", command)?;
                validate::non_empty(METHOD, "command", command)?;
                let command = command.trim();
                if command.starts_with('[') && serde_json::from_str::<Vec<String>>(command).is_ok()
                {
                    return Err(invalid(
                        METHOD,
                        "command",
                        command,
                        "RUN would read it as an exec-form JSON array; pass the words as a \
                         list instead",
                    ));
                }
                Ok(command.to_string())
            }
            RunCommand::Words(words) => {
                if words.is_empty() {
                    return Err(invalid(METHOD, "command", "[]", "the word list is empty"));
                }
                for word in words {
                    validate::one_line(METHOD, "word", word)?;
                }
                Ok(words
                    .iter()
                    .map(|w| daytona_quote(w))
                    .collect::<Vec<_>>()
                    .join(" "))
            }
        }
    }
}

impl Image {
    /// One `RUN` per command, as Daytona's `run_commands`: a string is written as is, a word
    /// list as double-quoted words (see [`RunCommand`]). Commands must fit on one line.
    pub fn run_commands<I, C>(self, commands: I) -> Result<Image>
    where
        I: IntoIterator<Item = C>,
        C: Into<RunCommand>,
    {
        let mut image = self;
        for command in commands {
            let line = command.into().line()?;
            let instruction = run(line.clone());
            image = image.append("run_commands", "command", &line, instruction, None)?;
        }
        Ok(image)
    }

    /// One `ENV K=<shell-quoted value>` per variable, in the order given.
    pub fn env<I, K, V>(self, vars: I) -> Result<Image>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut image = self;
        for (key, value) in vars {
            let (key, value) = (key.as_ref(), value.as_ref());
            validate::key("env", "key", key)?;
            validate::one_line("env", "value", value)?;
            let instruction = Instruction::Env(vec![(key.to_string(), shell_quote(value))]);
            image = image.append("env", "value", value, instruction, None)?;
        }
        Ok(image)
    }

    /// `WORKDIR <shell-quoted path>`.
    pub fn workdir(self, path: &str) -> Result<Image> {
        validate::non_empty("workdir", "path", path)?;
        validate::one_line("workdir", "path", path)?;
        self.append(
            "workdir",
            "path",
            path,
            Instruction::Workdir(shell_quote(path)),
            None,
        )
    }

    /// `ENTRYPOINT ["a", "b"]` (exec form).
    pub fn entrypoint<I, S>(self, argv: I) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.exec_form("entrypoint", argv, Instruction::Entrypoint)
    }

    /// `CMD ["a", "b"]` (exec form).
    pub fn cmd<I, S>(self, argv: I) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.exec_form("cmd", argv, Instruction::Cmd)
    }

    fn exec_form<I, S>(
        self,
        method: &'static str,
        argv: I,
        instruction: fn(Command) -> Instruction,
    ) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let argv: Vec<String> = argv.into_iter().map(|a| a.as_ref().to_string()).collect();
        let shown = format!("{argv:?}");
        self.append(
            method,
            "argv",
            &shown,
            instruction(Command::Exec(argv)),
            None,
        )
    }

    /// `RUN apt-get update && apt-get install -y <packages> && rm -rf /var/lib/apt/lists/*`,
    /// packages sorted and shell-quoted; nothing if there are none.
    pub fn apt_install<I, S>(self, packages: I) -> Result<Image>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let packages = packages_sorted("apt_install", packages)?;
        if packages.is_empty() {
            return Ok(self);
        }
        let line = format!(
            "apt-get update && apt-get install -y {} && rm -rf /var/lib/apt/lists/*",
            shell_join(&packages)
        );
        self.append(
            "apt_install",
            "packages",
            &packages.join(" "),
            run(line),
            None,
        )
    }

    /// `USER <name>` (`name`, `name:group`, `uid[:gid]`).
    pub fn user(self, name: &str) -> Result<Image> {
        validate::non_empty("user", "user", name)?;
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "user",
                "user",
                name,
                "the user must not contain whitespace",
            ));
        }
        self.append(
            "user",
            "user",
            name,
            Instruction::User(name.to_string()),
            None,
        )
    }

    /// One `LABEL k=<shell-quoted value> ...` with every label, in the order given; nothing
    /// if there are none.
    pub fn label<I, K, V>(self, labels: I) -> Result<Image>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut pairs = Vec::new();
        for (key, value) in labels {
            let (key, value) = (key.as_ref(), value.as_ref());
            validate::key("label", "key", key)?;
            validate::one_line("label", "value", value)?;
            pairs.push((key.to_string(), shell_quote(value)));
        }
        if pairs.is_empty() {
            return Ok(self);
        }
        let shown = format!("{pairs:?}");
        self.append("label", "labels", &shown, Instruction::Label(pairs), None)
    }

    /// `EXPOSE <port> ...`: ports as numbers or strings (`8080`, `"53/udp"`,
    /// `"8000-8010"`), 1..=65535, protocol tcp (default), udp or sctp; nothing if none.
    pub fn expose<I, P>(self, ports: I) -> Result<Image>
    where
        I: IntoIterator<Item = P>,
        P: Display,
    {
        let ports: Vec<String> = ports.into_iter().map(|p| p.to_string()).collect();
        for port in &ports {
            validate::port("expose", port)?;
        }
        if ports.is_empty() {
            return Ok(self);
        }
        let shown = ports.join(" ");
        self.append("expose", "ports", &shown, Instruction::Expose(ports), None)
    }
}

/// A word of a `run_commands` list as Daytona's SDK quotes it.
fn daytona_quote(word: &str) -> String {
    format!("\"{}\"", word.replace('"', "\\\\\\\"").replace('\'', "\\'"))
}

/// A plain shell-form `RUN`.
pub(super) fn run(line: String) -> Instruction {
    Instruction::Run(Run::shell(line))
}

/// Package names checked (non-empty, one line) and sorted, as the SDK's pip and apt steps.
pub(super) fn packages_sorted<I, S>(method: &'static str, packages: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut sorted = Vec::new();
    for package in packages {
        let package = package.as_ref();
        validate::non_empty(method, "package", package)?;
        validate::one_line(method, "package", package)?;
        sorted.push(package.to_string());
    }
    sorted.sort();
    Ok(sorted)
}
