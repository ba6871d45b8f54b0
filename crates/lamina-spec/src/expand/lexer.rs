//! A port of BuildKit's shell word lexer (`frontend/dockerfile/shell/lex.go`): quote removal,
//! escapes and `$VAR` / `${VAR...}` substitution for one Dockerfile word.

use super::pattern::Pattern;

/// How a [`Lexer`] treats quotes, escapes and unset variables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    /// The Dockerfile's escape character (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the result (the quoted text is still not expanded or split
    /// differently).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to "".
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (for here-document bodies).
    pub skip_quotes: bool,
}

/// A variable lookup: `None` when the variable is unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Lexer {
    /// Plain Dockerfile word expansion with `escape`.
    pub(crate) fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expands `word` into one string (quotes removed, no splitting).
    pub(crate) fn word(&self, word: &str, lookup: Lookup<'_>) -> Result<String, String> {
        Ok(self.run(word, lookup)?.0)
    }

    /// Expands `word` and splits the result into fields on unquoted whitespace.
    pub(crate) fn words(&self, word: &str, lookup: Lookup<'_>) -> Result<Vec<String>, String> {
        Ok(self.run(word, lookup)?.1)
    }

    fn run(&self, word: &str, lookup: Lookup<'_>) -> Result<(String, Vec<String>), String> {
        let mut state = State {
            lexer: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
        };
        state.process_until(&[])
    }
}

/// Words being collected: unquoted whitespace (also from expanded variables) separates them.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct State<'a> {
    lexer: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: Lookup<'a>,
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes characters up to (and consuming) one of `stops`, or to the end when `stops`
    /// is empty. Returns the expanded text and its fields.
    fn process_until(&mut self, stops: &[char]) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                self.pos += 1;
                return Ok((result, fields.finish()));
            }
            match c {
                '$' => {
                    let value = self.dollar()?;
                    result.push_str(&value);
                    if result.len() > MAX_EXPANDED_LEN {
                        return Err(TOO_LONG.to_string());
                    }
                    fields.add_string(&value);
                }
                '\'' if !self.lexer.skip_quotes => {
                    let text = self.single_quoted()?;
                    result.push_str(&text);
                    fields.add_raw_string(&text);
                }
                '"' if !self.lexer.skip_quotes => {
                    let text = self.double_quoted()?;
                    result.push_str(&text);
                    fields.add_raw_string(&text);
                }
                _ => {
                    self.pos += 1;
                    if c == self.lexer.escape {
                        if self.lexer.raw_escapes {
                            fields.add_raw_char(c);
                            result.push(c);
                        }
                        // An escape at the very end escapes nothing and is dropped.
                        let Some(escaped) = self.next() else { break };
                        fields.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        fields.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stops.first() {
            return Err(format!(
                "unexpected end of text while looking for a matching '{stop}'"
            ));
        }
        Ok((result, fields.finish()))
    }

    /// `'...'`: everything literal up to the next `'`.
    fn single_quoted(&mut self) -> Result<String, String> {
        let mut text = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lexer.raw_quotes {
            text.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err("unterminated single quote; add the closing '".to_string());
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        text.push('\'');
                    }
                    return Ok(text);
                }
                Some(c) => text.push(c),
            }
        }
    }

    /// `"..."`: literal except `$` references and escapes of `"`, `$` and the escape
    /// character itself.
    fn double_quoted(&mut self) -> Result<String, String> {
        let mut text = String::new();
        let open = self.next().unwrap_or('"');
        if self.lexer.raw_quotes {
            text.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err("unterminated double quote; add the closing \"".to_string());
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        text.push('"');
                    }
                    return Ok(text);
                }
                Some('$') => {
                    let value = self.dollar()?;
                    text.push_str(&value);
                    if text.len() > MAX_EXPANDED_LEN {
                        return Err(TOO_LONG.to_string());
                    }
                }
                Some(c) => {
                    self.pos += 1;
                    if c == self.lexer.escape {
                        match self.peek() {
                            // Loops back to report the missing closing quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == c => {
                                self.pos += 1;
                                if self.lexer.raw_escapes {
                                    text.push(c);
                                }
                                text.push(next);
                                continue;
                            }
                            // Any other escape stays as written.
                            Some(_) => {}
                        }
                    }
                    text.push(c);
                }
            }
        }
    }

    /// A variable name after `$`: letters, digits and `_`, a run of digits (positional
    /// parameter), or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// `$NAME`, `${NAME}` or `${NAME<modifier>word}`, starting at the `$`.
    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(MISSING_BRACE.to_string()),
            Some('{' | '}' | ':') => {
                return Err("bad substitution: a variable name must follow '${'".to_string());
            }
            Some(_) => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err(MISSING_BRACE.to_string());
        };
        match op {
            '}' => Ok(match self.get(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let Some(op) = self.next() else {
                    return Err(MISSING_BRACE.to_string());
                };
                if !matches!(op, '-' | '+' | '?') {
                    return Err(unsupported(&format!(":{op}")));
                }
                self.modifier(&name, op, true)
            }
            '-' | '+' | '?' | '#' | '%' => self.modifier(&name, op, false),
            '/' => self.replace(&name),
            other => Err(unsupported(&other.to_string())),
        }
    }

    /// The text after a modifier, up to the closing `}`.
    fn modifier_word(&mut self, raw_escapes: bool) -> Result<String, String> {
        let saved = self.lexer.raw_escapes;
        self.lexer.raw_escapes = raw_escapes;
        let word = self.process_until(&['}']);
        self.lexer.raw_escapes = saved;
        let at_end = self.peek().is_none();
        word.map(|(text, _)| text)
            .map_err(|e| if at_end { MISSING_BRACE.to_string() } else { e })
    }

    /// `${NAME-word}`, `${NAME+word}`, `${NAME?word}` (with `:`, an empty value counts as
    /// unset), and the pattern trims `${NAME#pat}`, `##`, `%`, `%%`.
    fn modifier(&mut self, name: &str, op: char, null_is_unset: bool) -> Result<String, String> {
        let trims = op == '#' || op == '%';
        let word = self.modifier_word(trims)?;
        let value = self.get(name);
        if value.is_none() && self.lexer.skip_unset {
            let colon = if null_is_unset { ":" } else { "" };
            return Ok(format!("${{{name}{colon}{op}{word}}}"));
        }
        let unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if !unset {
                    return Ok(value.unwrap_or_default());
                }
                let message = match (&value, word.is_empty()) {
                    (_, false) => word,
                    (None, true) => "is not allowed to be unset".to_string(),
                    (Some(_), true) => "is not allowed to be empty".to_string(),
                };
                Err(format!("{name}: {message}"))
            }
            _ => {
                let value = value.unwrap_or_default();
                // A doubled operator (`##`, `%%`) removes the longest match.
                let (longest, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = Pattern::new(pattern, self.lexer.escape)?;
                Ok(if op == '#' {
                    pattern.trim_prefix(&value, longest)
                } else {
                    pattern.trim_suffix(&value, longest)
                })
            }
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}`.
    fn replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let saved = self.lexer.raw_escapes;
        self.lexer.raw_escapes = true;
        let pattern = self.process_until(&['/', '}']);
        let result = pattern.and_then(|(pattern, _)| {
            let replacement = if self.chars.get(self.pos - 1) == Some(&'/') {
                self.process_until(&['}'])?.0
            } else {
                String::new()
            };
            Ok((pattern, replacement))
        });
        self.lexer.raw_escapes = saved;
        let (pattern, replacement) = result.map_err(|_| MISSING_BRACE.to_string())?;
        let Some(value) = self.get(name) else {
            if self.lexer.skip_unset {
                let slash = if all { "//" } else { "/" };
                return Ok(format!("${{{name}{slash}{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        Ok(Pattern::new(&pattern, self.lexer.escape)?.replace(&value, &replacement, all))
    }
}

/// The longest text one word may expand to: variables that repeat each other
/// (`ARG B=$A$A`, `ARG C=$B$B`, ...) grow exponentially.
const MAX_EXPANDED_LEN: usize = 1 << 20;

const TOO_LONG: &str =
    "the expanded text is longer than 1 MiB; check for variables built from each other";

const MISSING_BRACE: &str = "missing '}' after a '${' reference";

fn unsupported(op: &str) -> String {
    format!("unsupported modifier ({op}) in substitution; use one of -, +, ?, :-, :+, :?, #, %, /")
}
