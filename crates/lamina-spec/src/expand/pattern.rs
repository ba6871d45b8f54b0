//! Shell patterns (`*`, `?`, `[...]`) as the `${VAR#pattern}`, `${VAR%pattern}` and
//! `${VAR/pattern/replacement}` substitutions use them.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: any one character.
    Any,
    /// `*`: any run of characters.
    Star,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled shell pattern.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `pattern`; `escape` makes the next character literal.
    pub(crate) fn new(pattern: &str, escape: char) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                _ if c == escape => match chars.get(i) {
                    Some(&next) => {
                        tokens.push(Token::Char(next));
                        i += 1;
                    }
                    None => {
                        return Err(format!(
                            "pattern {pattern:?} ends with the escape character; remove it"
                        ));
                    }
                },
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '[' => match class(&chars[i..]) {
                    Some((token, used)) => {
                        tokens.push(token);
                        i += used;
                    }
                    // An unclosed `[` is an ordinary character.
                    None => tokens.push(Token::Char('[')),
                },
                _ => tokens.push(Token::Char(c)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// For each `j` in `0..=text.len()`, whether the pattern matches `text[..j]`: one pass
    /// over the text per token.
    fn prefix_matches(tokens: &[Token], text: &[char]) -> Vec<bool> {
        let mut can = vec![false; text.len() + 1];
        can[0] = true;
        for token in tokens {
            let mut next = vec![false; text.len() + 1];
            for j in 0..=text.len() {
                next[j] = match token {
                    Token::Star => can[j] || (j > 0 && next[j - 1]),
                    _ => j > 0 && can[j - 1] && token_matches(token, text[j - 1]),
                };
            }
            if !next.contains(&true) {
                return next;
            }
            can = next;
        }
        can
    }

    /// `value` without its shortest (or longest) matching prefix.
    pub(crate) fn trim_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let can = Self::prefix_matches(&self.tokens, &chars);
        match pick(&can, longest) {
            Some(n) => chars[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// `value` without its shortest (or longest) matching suffix: a prefix match of the
    /// reversed pattern on the reversed text.
    pub(crate) fn trim_suffix(&self, value: &str, longest: bool) -> String {
        let reversed: Vec<char> = value.chars().rev().collect();
        let tokens: Vec<Token> = self.tokens.iter().rev().cloned().collect();
        let can = Self::prefix_matches(&tokens, &reversed);
        match pick(&can, longest) {
            Some(n) => reversed[n..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the first (or every) leftmost-longest match in `value`.
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0;
        while pos <= chars.len() {
            let found = (pos..=chars.len()).find_map(|start| {
                let can = Self::prefix_matches(&self.tokens, &chars[start..]);
                pick(&can, true).map(|len| (start, start + len))
            });
            let Some((start, end)) = found else { break };
            out.extend(&chars[pos..start]);
            out.push_str(replacement);
            if end == start {
                // An empty match: keep the next character and move past it.
                if let Some(&c) = chars.get(start) {
                    out.push(c);
                }
                pos = start + 1;
            } else {
                pos = end;
            }
            if !all {
                break;
            }
        }
        if pos < chars.len() {
            out.extend(&chars[pos..]);
        }
        out
    }
}

/// The shortest (or longest) length that matched.
fn pick(can: &[bool], longest: bool) -> Option<usize> {
    if longest {
        can.iter().rposition(|&m| m)
    } else {
        can.iter().position(|&m| m)
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(expected) => *expected == c,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// Parses a class after its `[`; returns the token and the characters used (`]` included).
fn class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let start = i;
    while i < chars.len() {
        let c = chars[i];
        // A `]` right after the opening (or its negation) is literal.
        if c == ']' && i > start {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&hi| hi != ']') {
            ranges.push((c, chars[i + 2]));
            i += 3;
        } else {
            ranges.push((c, c));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pattern: &str) -> Pattern {
        Pattern::new(pattern, '\\').unwrap()
    }

    #[test]
    fn trims() {
        assert_eq!(p("*/").trim_prefix("a/b/c", false), "b/c");
        assert_eq!(p("*/").trim_prefix("a/b/c", true), "c");
        assert_eq!(p(".*").trim_suffix("f.tar.gz", false), "f.tar");
        assert_eq!(p(".*").trim_suffix("f.tar.gz", true), "f");
        assert_eq!(p("x").trim_suffix("abc", true), "abc");
        assert_eq!(p("[a-c]?").trim_prefix("bzq", false), "q");
        assert_eq!(p("[!a]").trim_prefix("bzq", false), "zq");
        assert_eq!(p(r"\*").trim_prefix("*a", false), "a");
    }

    #[test]
    fn replaces() {
        assert_eq!(p("o").replace("foo boo", "0", false), "f0o boo");
        assert_eq!(p("o").replace("foo boo", "0", true), "f00 b00");
        assert_eq!(p("b*").replace("abcabc", "X", false), "aX");
        assert_eq!(p("z").replace("abc", "X", true), "abc");
    }
}
