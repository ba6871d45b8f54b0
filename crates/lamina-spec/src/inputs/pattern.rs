//! The two glob dialects that Docker uses for local inputs, matched by one small engine.
//!
//! - COPY/ADD sources: Go's `filepath.Match`, one path component at a time (`*`, `?`,
//!   `[...]` with `^` negation, `\` escapes). [`Glob::component`].
//! - `.dockerignore` and `--exclude`: the moby pattern matcher, which is `filepath.Match`
//!   plus `**` (any number of directories, zero included), matched against whole
//!   `/`-separated paths. [`Glob::docker`] follows its translation rules, including which
//!   patterns it checks as plain prefix or suffix comparisons, because those give slightly
//!   different answers from the regular expression (`**foo` matches `barfoo`).
//!
//! Written by hand rather than with a glob crate so that these dialect details hold; the
//! engine is a tiny NFA simulation, linear in pattern × path length, with no backtracking.

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One exact character.
    Lit(char),
    /// `?`: one character other than `/`.
    AnyOne,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**` at the end of a pattern: any run of characters, `/` included.
    AnyRun,
    /// `**` elsewhere (the regex `(.*/)?`): nothing, or any run that ends in `/`.
    DirPrefix,
    /// `[...]`: one character in (or, negated, outside) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// How a pattern is checked; the moby matcher picks one of these per pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard: the path equals the pattern.
    Exact(String),
    /// `foo**` / `foo/**`: the path starts with the text before `**`.
    Prefix(String),
    /// `**foo` / `**/foo`: the path ends with the text after `**` (and `**/foo` matches `foo`).
    Suffix(String),
    /// Anything else.
    Tokens(Vec<Token>),
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    kind: Kind,
}

impl Glob {
    /// Compiles one `.dockerignore` / `--exclude` pattern that is already cleaned (no `!`,
    /// no leading `/`). The error says what is wrong with it.
    pub(crate) fn docker(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut detected = Detected::Exact;
        let mut pos = 0;
        let mut step = 0;
        while pos < chars.len() {
            let ch = chars[pos];
            pos += 1;
            match ch {
                '*' if chars.get(pos) == Some(&'*') => {
                    pos += 1;
                    // `**/` is read as `**`.
                    if chars.get(pos) == Some(&'/') {
                        pos += 1;
                    }
                    if pos == chars.len() {
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            tokens.push(Token::AnyRun);
                            detected = Detected::Tokens;
                        }
                    } else {
                        tokens.push(Token::DirPrefix);
                        detected = Detected::Tokens;
                    }
                    if step == 0 {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    detected = Detected::Tokens;
                }
                '?' => {
                    tokens.push(Token::AnyOne);
                    detected = Detected::Tokens;
                }
                '\\' => match chars.get(pos) {
                    Some(&escaped) => {
                        pos += 1;
                        tokens.push(Token::Lit(escaped));
                        detected = Detected::Tokens;
                    }
                    None => return Err("pattern ends with an unfinished '\\' escape".into()),
                },
                '[' => {
                    let (class, next) = parse_class(&chars, pos)?;
                    tokens.push(class);
                    pos = next;
                    detected = Detected::Tokens;
                }
                ']' => {
                    tokens.push(Token::Lit(']'));
                    detected = Detected::Tokens;
                }
                other => tokens.push(Token::Lit(other)),
            }
            step += 1;
        }
        let kind = match detected {
            Detected::Exact => Kind::Exact(pattern.to_string()),
            Detected::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
            Detected::Suffix => Kind::Suffix(pattern[2..].to_string()),
            Detected::Tokens => Kind::Tokens(tokens),
        };
        Ok(Glob { kind })
    }

    /// Compiles one path component of a COPY source with `filepath.Match` rules (`**` is
    /// two stars, each stopping at `/`).
    pub(crate) fn component(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut pos = 0;
        while pos < chars.len() {
            let ch = chars[pos];
            pos += 1;
            match ch {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyOne),
                '\\' => match chars.get(pos) {
                    Some(&escaped) => {
                        pos += 1;
                        tokens.push(Token::Lit(escaped));
                    }
                    None => return Err("pattern ends with an unfinished '\\' escape".into()),
                },
                '[' => {
                    let (class, next) = parse_class(&chars, pos)?;
                    tokens.push(class);
                    pos = next;
                }
                other => tokens.push(Token::Lit(other)),
            }
        }
        Ok(Glob {
            kind: Kind::Tokens(tokens),
        })
    }

    /// Whether `path` (`/`-separated, relative) matches the whole pattern.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact(exact) => path == exact,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Kind::Tokens(tokens) => match_tokens(tokens, path),
        }
    }
}

/// Whether a COPY source component has a wildcard that is not escaped; a component without
/// one is used literally, backslashes included (as BuildKit does).
pub(crate) fn has_wildcard(component: &str) -> bool {
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Tokens,
}

/// Parses a character class whose `[` is just before `start`, with `filepath.Match` rules:
/// optional `^`, then ranges `a` or `a-z` (each end may be `\`-escaped), closed by a `]`
/// that is not the first item. Returns the token and the position after `]`.
fn parse_class(chars: &[char], start: usize) -> Result<(Token, usize), String> {
    let mut pos = start;
    let negated = chars.get(pos) == Some(&'^');
    if negated {
        pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(pos) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, pos + 1));
        }
        let (lo, next) = class_char(chars, pos)?;
        pos = next;
        let mut hi = lo;
        if chars.get(pos) == Some(&'-') {
            let (end, next) = class_char(chars, pos + 1)?;
            hi = end;
            pos = next;
        }
        if hi < lo {
            return Err(format!("character range '{lo}-{hi}' is reversed"));
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly escaped) character of a class; a class must not end here.
fn class_char(chars: &[char], mut pos: usize) -> Result<(char, usize), String> {
    let unclosed = || "character class is empty, malformed or not closed with ']'".to_string();
    match chars.get(pos) {
        None | Some('-') | Some(']') => return Err(unclosed()),
        Some('\\') => pos += 1,
        Some(_) => {}
    }
    let c = *chars.get(pos).ok_or_else(unclosed)?;
    pos += 1;
    if pos >= chars.len() {
        return Err(unclosed());
    }
    Ok((c, pos))
}

/// Runs the token NFA over `text`: `states[i]` means "the first `i` tokens can match what
/// was read so far"; `inside[i]` means "token `i` (a `DirPrefix`) has started matching and
/// still needs a `/` to finish".
fn match_tokens(tokens: &[Token], text: &str) -> bool {
    let n = tokens.len();
    let mut current = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    let mut inside = vec![false; n];
    let mut inside_next = vec![false; n];
    current[0] = true;
    close(tokens, &mut current);
    for c in text.chars() {
        next.fill(false);
        inside_next.fill(false);
        for (i, token) in tokens.iter().enumerate() {
            if inside[i] || (current[i] && *token == Token::DirPrefix) {
                inside_next[i] = true;
                next[i + 1] |= c == '/';
            }
            if !current[i] {
                continue;
            }
            match token {
                Token::Lit(l) => next[i + 1] |= c == *l,
                Token::AnyOne => next[i + 1] |= c != '/',
                Token::Class { negated, ranges } => {
                    let matched = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    next[i + 1] |= matched != *negated;
                }
                Token::Star => next[i] |= c != '/',
                Token::AnyRun => next[i] = true,
                Token::DirPrefix => {}
            }
        }
        close(tokens, &mut next);
        std::mem::swap(&mut current, &mut next);
        std::mem::swap(&mut inside, &mut inside_next);
        if !current.iter().chain(&inside).any(|&s| s) {
            return false;
        }
    }
    current[n]
}

/// Adds the states reachable without reading: the repeating tokens may match nothing (a
/// `DirPrefix` only before it has read anything).
fn close(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        if states[i] && matches!(token, Token::Star | Token::AnyRun | Token::DirPrefix) {
            states[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(pattern: &str, path: &str) -> bool {
        Glob::docker(pattern).expect("valid pattern").matches(path)
    }

    fn component(pattern: &str, name: &str) -> bool {
        Glob::component(pattern)
            .expect("valid pattern")
            .matches(name)
    }

    #[test]
    fn star_and_question_stop_at_slash() {
        assert!(docker("*.md", "README.md"));
        assert!(!docker("*.md", "docs/README.md"));
        assert!(docker("*/temp*", "somedir/temporary.txt"));
        assert!(!docker("*/temp*", "a/b/temporary.txt"));
        assert!(docker("temp?", "tempa"));
        assert!(!docker("temp?", "temp/"));
        assert!(!docker("temp?", "temp"));
        assert!(docker("a*b", "ab"));
        assert!(docker("a*b", "axxb"));
        assert!(!docker("a*b", "a/b"));
    }

    #[test]
    fn double_star_spans_directories() {
        assert!(docker("**/*.go", "main.go"));
        assert!(docker("**/*.go", "a/b/c.go"));
        assert!(!docker("**/*.go", "a/b/c.gox"));
        assert!(docker("a/**/b", "a/b"));
        assert!(docker("a/**/b", "a/x/y/b"));
        assert!(!docker("a/**/b", "a/xb"));
        assert!(docker("a/**", "a/x/y"));
        assert!(!docker("a/**", "a"));
        assert!(docker("a*/**", "ab/c"));
        assert!(docker("**", "anything/at/all"));
        assert!(docker("**/foo", "foo"));
        assert!(docker("**/foo", "x/y/foo"));
        assert!(!docker("**/foo", "x/yfoo"));
        // The suffix shortcut of the moby matcher: `**foo` is "ends with foo".
        assert!(docker("**foo", "barfoo"));
        assert!(docker("**/foo/**", "a/foo/b"));
        assert!(!docker("**/foo/**", "a/foo"));
        // A `**` inside a component is `(.*/)?`: it cannot stand for plain characters.
        assert!(docker("a**b", "ab"));
        assert!(docker("a**b", "ax/b"));
        assert!(!docker("a**b", "axb"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(docker("file[0-9].txt", "file7.txt"));
        assert!(!docker("file[0-9].txt", "filex.txt"));
        assert!(docker("file[^0-9].txt", "filex.txt"));
        assert!(!docker("file[^0-9].txt", "file1.txt"));
        assert!(docker("[ab]", "b"));
        assert!(docker(r"[\]]", "]"));
        assert!(docker(r"a\*b", "a*b"));
        assert!(!docker(r"a\*b", "axb"));
        assert!(docker("a.b", "a.b"));
        assert!(!docker("a.b", "axb"));
        assert!(docker("x+(y)", "x+(y)"));
        assert!(docker("[!a]", "!"), "'!' does not negate in Go patterns");
        assert!(!docker("[!a]", "b"));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in ["[", "[]", "[a", "[a-]", "[]a]", r"a\", "[z-a]", r"[\", "[^"] {
            assert!(Glob::docker(bad).is_err(), "{bad:?} should be invalid");
            assert!(Glob::component(bad).is_err(), "{bad:?} should be invalid");
        }
        assert!(Glob::docker("a]").is_ok());
    }

    #[test]
    fn exact_patterns_compare_whole_paths() {
        assert!(docker("foo/bar", "foo/bar"));
        assert!(!docker("foo/bar", "foo/barx"));
        assert!(
            !docker("foo", "foo/bar"),
            "parents are handled by IgnoreRules"
        );
    }

    #[test]
    fn component_globs_follow_filepath_match() {
        assert!(component("*.txt", ".hidden.txt"));
        assert!(component("*", ""));
        assert!(component("**", "abc"));
        assert!(component("a?c", "abc"));
        assert!(
            component("a?c", "aéc"),
            "? matches one character, not one byte"
        );
        assert!(!component("a?c", "ac"));
        assert!(component(r"\[x\]", "[x]"));
    }

    /// Backtracking reference for the NFA: the obvious recursive reading of each token.
    fn reference(tokens: &[Token], text: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return text.is_empty();
        };
        let one = |ok: bool| ok && reference(rest, &text[1..]);
        match token {
            Token::Lit(l) => one(text.first() == Some(l)),
            Token::AnyOne => one(text.first().is_some_and(|&c| c != '/')),
            Token::Class { negated, ranges } => one(text
                .first()
                .is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)),
            Token::Star => (0..=text.len())
                .take_while(|&k| k == 0 || text[k - 1] != '/')
                .any(|k| reference(rest, &text[k..])),
            Token::AnyRun => (0..=text.len()).any(|k| reference(rest, &text[k..])),
            Token::DirPrefix => {
                reference(rest, text)
                    || (1..=text.len()).any(|k| text[k - 1] == '/' && reference(rest, &text[k..]))
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn nfa_agrees_with_backtracking(
            pattern in "[ab/*?]{0,8}",
            path in "[ab/]{0,10}",
        ) {
            let glob = Glob::docker(&pattern).expect("no classes or escapes, always valid");
            if let Kind::Tokens(tokens) = &glob.kind {
                let chars: Vec<char> = path.chars().collect();
                proptest::prop_assert_eq!(match_tokens(tokens, &path), reference(tokens, &chars));
            }
        }
    }

    #[test]
    fn wildcards_are_detected_unless_escaped() {
        assert!(has_wildcard("*.txt"));
        assert!(has_wildcard("a[bc]"));
        assert!(has_wildcard("a?"));
        assert!(!has_wildcard("plain.txt"));
        assert!(!has_wildcard(r"a\*b"));
    }
}
