//! The shape of a TOML definition file, as serde reads it. Every value keeps its span so
//! errors found later (by the builder) can point at it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

/// The whole file: one `[image]` table and any number of `[[step]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DefinitionFile {
    pub image: Spanned<ImageTable>,
    #[serde(default)]
    pub step: Vec<Spanned<StepTable>>,
}

/// `[image]`: exactly one of `base`, `debian_slim`, `dockerfile`, `scratch`, and an
/// optional `context`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImageTable {
    pub base: Option<Spanned<String>>,
    pub debian_slim: Option<Spanned<PythonChoice>>,
    pub dockerfile: Option<Spanned<String>>,
    pub scratch: Option<Spanned<bool>>,
    pub context: Option<Spanned<String>>,
}

/// A string map with spanned keys; TOML order is recovered from the key spans.
pub(super) type SpannedMap = BTreeMap<Spanned<String>, Spanned<String>>;

/// `[[step]]`: one step key, plus the options that step takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StepTable {
    pub pip_install: Option<Spanned<Vec<Spanned<String>>>>,
    pub pip_install_from_requirements: Option<Spanned<String>>,
    pub pip_install_from_pyproject: Option<Spanned<String>>,
    pub add_local_file: Option<Spanned<LocalFile>>,
    pub add_local_dir: Option<Spanned<LocalDir>>,
    pub run: Option<Spanned<RunValue>>,
    pub env: Option<Spanned<SpannedMap>>,
    pub workdir: Option<Spanned<String>>,
    pub entrypoint: Option<Spanned<Vec<String>>>,
    pub cmd: Option<Spanned<Vec<String>>>,
    pub dockerfile_commands: Option<Spanned<Lines>>,
    pub apt_install: Option<Spanned<Vec<Spanned<String>>>>,
    pub user: Option<Spanned<String>>,
    pub label: Option<Spanned<SpannedMap>>,
    pub expose: Option<Spanned<Vec<Spanned<Port>>>>,

    // Options of the pip steps.
    pub find_links: Option<Spanned<Vec<Spanned<String>>>>,
    pub index_url: Option<Spanned<String>>,
    pub extra_index_urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub pre: Option<Spanned<bool>>,
    pub extra_options: Option<Spanned<String>>,
    // Option of pip_install_from_pyproject.
    pub optional_dependencies: Option<Spanned<Vec<Spanned<String>>>>,
    // Option of dockerfile_commands.
    pub context_dir: Option<Spanned<String>>,
}

/// `add_local_file = { local = "...", remote = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LocalFile {
    pub local: Spanned<String>,
    pub remote: Spanned<String>,
}

/// `add_local_dir = { local = "...", remote = "...", ignore = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LocalDir {
    pub local: Spanned<String>,
    pub remote: Spanned<String>,
    #[serde(default)]
    pub ignore: Vec<Spanned<String>>,
}

/// `debian_slim = "3.12"` or `debian_slim = true` (the newest supported series).
#[derive(Debug)]
pub(super) enum PythonChoice {
    Version(String),
    Newest,
    /// `false`: rejected with a position once the span is known.
    False,
}

/// `run = "cmd"` (one command) or `run = ["cmd", ["word", "word"], ...]` (several).
#[derive(Debug)]
pub(super) enum RunValue {
    One(String),
    Many(Vec<Spanned<RunItem>>),
}

/// One command of a `run` list: a shell command line or a list of words.
#[derive(Debug)]
pub(super) enum RunItem {
    Shell(String),
    Words(Vec<String>),
}

/// `dockerfile_commands = "..."` (multi-line string) or a list of lines.
#[derive(Debug)]
pub(super) enum Lines {
    Text(String),
    List(Vec<Spanned<String>>),
}

/// An `expose` entry: `8080` or `"53/udp"`.
#[derive(Debug)]
pub(super) struct Port(pub String);

impl<'de> Deserialize<'de> for PythonChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PythonChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a python version string like \"3.12\", or true for the newest")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PythonChoice, E> {
                Ok(PythonChoice::Version(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<PythonChoice, E> {
                Ok(if v {
                    PythonChoice::Newest
                } else {
                    PythonChoice::False
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RunValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RunValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string, or a list of commands (strings or word lists)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RunValue, E> {
                Ok(RunValue::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RunValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RunValue::Many(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RunItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RunItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command string or a list of words")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RunItem, E> {
                Ok(RunItem::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RunItem, A::Error> {
                Ok(RunItem::Words(strings(seq)?))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Lines {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Lines;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("Dockerfile lines: a (multi-line) string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lines, E> {
                Ok(Lines::Text(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lines, A::Error> {
                let mut lines = Vec::new();
                while let Some(line) = seq.next_element()? {
                    lines.push(line);
                }
                Ok(Lines::List(lines))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a string like \"53/udp\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Ok(Port(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Ok(Port(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                Ok(Port(v.to_string()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn strings<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<String>, A::Error> {
    let mut out = Vec::new();
    while let Some(item) = seq.next_element::<String>()? {
        out.push(item);
    }
    Ok(out)
}
