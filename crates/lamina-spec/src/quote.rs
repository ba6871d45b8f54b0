//! Shell quoting as Python's `shlex.quote`/`shlex.join` do it, so rendered Dockerfiles match
//! the SDKs that Lamina mirrors byte for byte.

/// Quotes `word` for a POSIX shell: unchanged if it is non-empty and has only characters
/// that need no quoting, else wrapped in single quotes (embedded `'` as `'"'"'`).
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r#"'"'"'"#))
}

/// Quotes each word and joins them with single spaces.
pub fn shell_join<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wraps `word` in double quotes for a POSIX shell, escaping `\`, `"`, `$` and `` ` `` so the
/// shell sees exactly `word`.
pub fn shell_double_quote(word: &str) -> String {
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('"');
    for c in word.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_python_shlex() {
        assert_eq!(shell_quote("numpy"), "numpy");
        assert_eq!(shell_quote("numpy>=1.2"), "'numpy>=1.2'");
        assert_eq!(shell_quote("pandas==2.0"), "pandas==2.0");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r#"'it'"'"'s'"#);
        assert_eq!(shell_quote("/home/my app"), "'/home/my app'");
        assert_eq!(shell_join(["a", "b c"]), "a 'b c'");
    }

    #[test]
    fn double_quote_escapes_shell_specials() {
        assert_eq!(
            shell_double_quote(r#"say "hi" $HOME `x` \n"#),
            r#""say \"hi\" \$HOME \`x\` \\n""#
        );
    }
}
