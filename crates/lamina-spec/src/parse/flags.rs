//! Instruction flags (`--name=value`), checked the way BuildKit's `BFlags` checks them.

/// The type of a flag an instruction accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagType {
    /// `--link`, `--link=true`, `--link=false`.
    Bool,
    /// `--from=<value>`, at most once.
    String,
    /// `--mount=<value>`, any number of times.
    Strings,
}

/// The flags given to one instruction, checked against what it accepts.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    entries: Vec<(&'static str, Option<String>)>,
}

impl Flags {
    /// Checks unquoted flag words (each starting with `--`) against `accepted`.
    pub(crate) fn parse(
        keyword: &str,
        words: &[String],
        accepted: &[(&'static str, FlagType)],
    ) -> Result<Flags, String> {
        let mut flags = Flags::default();
        for word in words {
            let body = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(&(name, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                return Err(unknown_flag(keyword, name, accepted));
            };
            if kind != FlagType::Strings && flags.entries.iter().any(|(n, _)| *n == name) {
                return Err(format!("{keyword} has --{name} twice; give it once"));
            }
            let value = match (kind, value) {
                (FlagType::Bool, None) => None,
                (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => Some(v.to_ascii_lowercase()),
                    "" => return Err(format!("{keyword} --{name}= has no value; write --{name}")),
                    _ => {
                        return Err(format!("{keyword} --{name} takes true or false, not {v:?}"));
                    }
                },
                (_, None) => {
                    return Err(format!(
                        "{keyword} --{name} needs a value; write --{name}=<value>"
                    ));
                }
                (_, Some(v)) => Some(v.to_string()),
            };
            flags.entries.push((name, value));
        }
        Ok(flags)
    }

    /// The value of a single-valued flag.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean flag: `None` when absent.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.entries
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_deref().is_none_or(|v| v == "true"))
    }
}

fn unknown_flag(keyword: &str, name: &str, accepted: &[(&'static str, FlagType)]) -> String {
    if accepted.is_empty() {
        return format!("unknown flag --{name}: {keyword} takes no flags");
    }
    let names: Vec<String> = accepted.iter().map(|(n, _)| format!("--{n}")).collect();
    format!(
        "unknown flag --{name} for {keyword}; it takes {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, FlagType)] = &[
        ("from", FlagType::String),
        ("link", FlagType::Bool),
        ("exclude", FlagType::Strings),
    ];

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepted_flags() {
        let flags = Flags::parse(
            "COPY",
            &words(&["--from=build", "--link=FALSE", "--exclude=a", "--exclude=b"]),
            COPY,
        )
        .unwrap();
        assert_eq!(flags.string("from").as_deref(), Some("build"));
        assert_eq!(flags.bool("link"), Some(false));
        assert_eq!(flags.strings("exclude"), vec!["a", "b"]);
        let flags = Flags::parse("COPY", &words(&["--link", "--from="]), COPY).unwrap();
        assert_eq!(flags.bool("link"), Some(true));
        assert_eq!(flags.string("from").as_deref(), Some(""));
    }

    #[test]
    fn rejected_flags() {
        let err = |w: &[&str]| Flags::parse("COPY", &words(w), COPY).unwrap_err();
        assert!(err(&["--chmod=1"]).contains("unknown flag --chmod for COPY"));
        assert!(err(&["--from=a", "--from=b"]).contains("twice"));
        assert!(err(&["--link=yes"]).contains("true or false"));
        assert!(err(&["--link="]).contains("no value"));
        assert!(err(&["--from"]).contains("needs a value"));
        let none = Flags::parse("ENV", &words(&["--x"]), &[]).unwrap_err();
        assert!(none.contains("ENV takes no flags"), "{none}");
    }
}
