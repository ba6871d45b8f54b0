//! Splitting an instruction's text into words, the way BuildKit's Dockerfile parser does it.
//!
//! Each instruction family splits its arguments its own way (that is Docker's behaviour, not
//! a choice of ours): `ENV`/`LABEL`/`ARG` with a quote-aware splitter that keeps quotes and
//! escapes, `COPY`/`ADD`/`VOLUME`/`EXPOSE`/`FROM` on blanks only, `RUN`/`CMD`/`ENTRYPOINT`
//! as JSON or raw text. The renderer calls the same functions to check that what it prints
//! reads back as the model it came from.

/// The separators of Docker's "whitespace delimited" splitter (`[\t\v\f\r ]+`).
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Splits already-trimmed `rest` on runs of blanks (`COPY`, `ADD`, `VOLUME`, `EXPOSE`,
/// `FROM`). Quotes mean nothing here.
pub(crate) fn split_blanks(rest: &str) -> Vec<String> {
    rest.split(is_blank)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits `s` at its first run of blanks: (`first`, `rest`), `rest` empty if there is none.
pub(crate) fn split_first_blank(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(at) => (&s[..at], s[at..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// Docker's quote-aware splitter for `ENV`, `LABEL` and `ARG`: splits on whitespace outside
/// quotes and keeps every quote and escape character in the words. An escape character at
/// the very end is dropped, as Docker does.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A quoted empty string (`""`) still makes a word.
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
            }
            None => {
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    match chars.next() {
                        // An escape that escapes nothing is dropped.
                        None => continue,
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                // Inside double quotes the escape character escapes; inside single quotes
                // nothing does.
                if c == escape && q != '\'' {
                    match chars.next() {
                        None => continue,
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(c);
            }
        }
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Splits the leading `--flag[=value]` words off an instruction's arguments, as BuildKit's
/// `extractBuilderFlags` does: flag words are unquoted (`"` and `'` removed, `\` escapes the
/// next character) and a lone `--` ends the flags. Returns the unquoted flag words (each
/// still starting with `--`) and the text after the flags, untrimmed.
pub(crate) fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut pos = 0;
    let bytes_len = line.len();
    loop {
        // Skip blanks before the next word.
        let rest = &line[pos..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if pos == bytes_len || !trimmed.starts_with("--") {
            return (flags, &line[pos..]);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        let mut iter = line[pos..].char_indices();
        let mut end = bytes_len;
        while let Some((i, c)) = iter.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = pos + i;
                    break;
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    if let Some((_, next)) = iter.next() {
                        word.push(next);
                    } else if quote.is_some() {
                        quote = None;
                    }
                }
                _ => word.push(c),
            }
        }
        pos = end;
        if word == "--" {
            // `--` ends the flags; what follows is the instruction's text even if it
            // starts with `--`.
            return (flags, &line[pos..]);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// The result of reading an instruction's text as a JSON array.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Json {
    /// A JSON array of strings, and nothing but blanks after its closing `]`.
    Strings(Vec<String>),
    /// Valid JSON that is not an array of strings: Docker rejects it.
    NotStrings,
    /// Not one JSON value (including an array followed by more text): Docker falls back to
    /// the shell or blank-separated form.
    Invalid,
}

/// Reads `rest` as BuildKit (Dockerfile syntax 1.9 and later) reads exec-form arguments:
/// the whole text must be one JSON value. Text after the array (`["a"] # note`) makes the
/// line shell form; Docker 20.10's older frontend ignored it and kept the exec form.
pub(crate) fn json_array(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::Invalid;
    }
    match serde_json::from_str::<serde_json::Value>(rest) {
        Ok(serde_json::Value::Array(items)) => {
            let strings: Option<Vec<String>> = items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            strings.map_or(Json::NotStrings, Json::Strings)
        }
        Ok(_) => Json::NotStrings,
        Err(_) => Json::Invalid,
    }
}

/// Parses the `name=value ...` (or legacy `name value`) arguments of `ENV` and `LABEL` into
/// raw pairs, as Docker's `parseNameVal` does.
pub(crate) fn parse_name_val(
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(format!("{keyword} needs at least one name=value pair"));
    };
    if !first.contains('=') {
        // Legacy form: the first blank-separated word is the name, the rest of the line
        // (blanks and quotes included) the value.
        let (name, value) = split_first_blank(rest);
        if value.is_empty() {
            return Err(format!(
                "{keyword} {name} has no value; write {keyword} {name}=<value>"
            ));
        }
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    let mut pairs = Vec::with_capacity(words.len());
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!(
                "{keyword} argument {word:?} has no '='; write every pair as name=value"
            ));
        };
        if name.is_empty() {
            return Err(format!("{keyword} argument {word:?} has an empty name"));
        }
        pairs.push((name.to_string(), value.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"A="a b" B='c d' C=e\ f"#, '\\'),
            vec![r#"A="a b""#, "B='c d'", r"C=e\ f"]
        );
        assert_eq!(parse_words(r#"A="" B"#, '\\'), vec![r#"A="""#, "B"]);
        assert_eq!(parse_words(r"A=x\", '\\'), vec!["A=x"]);
        assert_eq!(parse_words("A=x` y", '`'), vec!["A=x` y"]);
        assert_eq!(parse_words(r#"A="x\" y""#, '\\'), vec![r#"A="x\" y""#]);
        assert_eq!(parse_words(r"A='x\' y", '\\'), vec![r"A='x\'", "y"]);
    }

    #[test]
    fn flags_are_unquoted_and_stop_at_double_dash() {
        let (flags, rest) = extract_flags("--mount=type=cache,target=/x --network=none echo hi");
        assert_eq!(
            flags,
            vec!["--mount=type=cache,target=/x", "--network=none"]
        );
        assert_eq!(rest, "echo hi");
        let (flags, rest) = extract_flags(r#"--from="a b" --chown=\"u -- --x y"#);
        assert_eq!(flags, vec!["--from=a b", "--chown=\"u"]);
        assert_eq!(rest, " --x y");
        let (flags, rest) = extract_flags("--link");
        assert_eq!(flags, vec!["--link"]);
        assert_eq!(rest, "");
        let (flags, rest) = extract_flags("echo --x");
        assert!(flags.is_empty());
        assert_eq!(rest, "echo --x");
    }

    #[test]
    fn json_arrays() {
        assert_eq!(
            json_array(r#"["a", "b"]"#),
            Json::Strings(vec!["a".into(), "b".into()])
        );
        // BuildKit 1.9+: anything after the array makes the text shell form.
        assert_eq!(json_array(r#"["a"] trailing"#), Json::Invalid);
        assert_eq!(json_array(r#"["a"] # note"#), Json::Invalid);
        assert_eq!(json_array(r#"[1] x"#), Json::Invalid);
        assert_eq!(json_array("[\"a\"]  \t"), Json::Strings(vec!["a".into()]));
        assert_eq!(json_array("[1]"), Json::NotStrings);
        assert_eq!(json_array(r#"["a", {"b": 1}]"#), Json::NotStrings);
        assert_eq!(json_array("[ -f x ]"), Json::Invalid);
        assert_eq!(json_array("echo"), Json::Invalid);
        assert_eq!(json_array("[]"), Json::Strings(vec![]));
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(
            parse_name_val("A=1 B='x y'", "ENV", '\\').unwrap(),
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "'x y'".to_string())
            ]
        );
        assert_eq!(
            parse_name_val("A hello   world", "ENV", '\\').unwrap(),
            vec![("A".to_string(), "hello   world".to_string())]
        );
        assert!(
            parse_name_val("A", "ENV", '\\')
                .unwrap_err()
                .contains("no value")
        );
        assert!(
            parse_name_val("A=1 B", "ENV", '\\')
                .unwrap_err()
                .contains("no '='")
        );
        assert!(
            parse_name_val("=1", "LABEL", '\\')
                .unwrap_err()
                .contains("empty name")
        );
    }
}
