//! `.dockerignore` files and `COPY --exclude` lists, with Docker's semantics.
//!
//! - Patterns are relative to the directory they filter (the context root for
//!   `.dockerignore`); a leading `/` or `./` is stripped and each pattern is cleaned like Go's
//!   `filepath.Clean` (`a//b/../c/` is `a/c`).
//! - A pattern matches a path if it matches the path itself or any of its parent
//!   directories: `build` hides `build/out/x.o`. There is no implicit "anywhere" match as in
//!   `.gitignore`: `*.md` only matches at the top; `**/*.md` matches at any depth.
//! - `!pattern` re-includes; the last pattern that matches a path decides.
//! - In `.dockerignore`, a line starting with `#` (in the first column) is a comment; blank
//!   lines are skipped; surrounding whitespace is trimmed.
//!
//! Only `<root>/.dockerignore` is read; BuildKit's per-Dockerfile `<name>.dockerignore` is not
//! (yet) looked for.

use std::path::Path;

use super::pattern::Glob;
use crate::error::{Result, SpecError};

/// An ordered list of ignore patterns. The default is empty (ignores nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    patterns: Vec<IgnorePattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct IgnorePattern {
    /// The cleaned pattern, without `!`.
    text: String,
    /// `!pattern`: re-include what earlier patterns ignored.
    exception: bool,
    glob: Glob,
}

/// Per pattern: whether it matched a path or one of the path's parent directories. Kept per
/// directory during a walk so that each child costs one match per pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MatchState(Vec<bool>);

impl IgnoreRules {
    /// Rules that ignore nothing.
    pub fn new() -> Self {
        IgnoreRules::default()
    }

    /// Reads `<root>/.dockerignore`; no file means no rules.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                IgnoreRules::parse_dockerignore(&text, &path.display().to_string())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(IgnoreRules::new()),
            Err(source) => Err(SpecError::Io { path, source }),
        }
    }

    /// Parses the text of a `.dockerignore` file; `origin` names the file in errors.
    pub fn parse_dockerignore(text: &str, origin: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let where_ = || format!("{origin} line {}", index + 1);
            if let Some(pattern) = IgnorePattern::parse(line, &where_)? {
                patterns.push(pattern);
            }
        }
        Ok(IgnoreRules { patterns })
    }

    /// Rules from a list of patterns such as `COPY --exclude` values; `origin` names the list
    /// in errors.
    pub fn from_patterns<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = S>,
        origin: &str,
    ) -> Result<Self> {
        let mut parsed = Vec::new();
        for pattern in patterns {
            if let Some(pattern) = IgnorePattern::parse(pattern.as_ref(), &|| origin.to_string())? {
                parsed.push(pattern);
            }
        }
        Ok(IgnoreRules { patterns: parsed })
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Some pattern is an exception (`!pattern`), so an ignored directory may still hold
    /// included files.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// The cleaned patterns in order, exceptions with their `!`.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exception {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }

    /// Whether `path` (relative, `/`-separated) is ignored. The root itself (`""` or `.`)
    /// never is.
    pub fn is_ignored(&self, path: &str) -> bool {
        let cleaned = clean(path);
        if cleaned == "." || cleaned.starts_with("../") || cleaned == ".." {
            return false;
        }
        self.decide(&self.state_for(&cleaned))
    }

    /// The match state of `path` (cleaned, relative, not the root), checking every parent.
    pub(crate) fn state_for(&self, path: &str) -> MatchState {
        let mut state = MatchState(vec![false; self.patterns.len()]);
        if self.patterns.is_empty() {
            return state;
        }
        let mut end = 0;
        loop {
            let next = path[end..].find('/').map(|i| end + i);
            let prefix = &path[..next.unwrap_or(path.len())];
            for (seen, pattern) in state.0.iter_mut().zip(&self.patterns) {
                *seen = *seen || pattern.glob.matches(prefix);
            }
            match next {
                Some(slash) => end = slash + 1,
                None => return state,
            }
        }
    }

    /// The state of `path` given the state of its parent directory.
    pub(crate) fn child_state(&self, parent: &MatchState, path: &str) -> MatchState {
        MatchState(
            self.patterns
                .iter()
                .zip(&parent.0)
                .map(|(pattern, &seen)| seen || pattern.glob.matches(path))
                .collect(),
        )
    }

    /// Last match wins.
    pub(crate) fn decide(&self, state: &MatchState) -> bool {
        let mut ignored = false;
        for (pattern, &matched) in self.patterns.iter().zip(&state.0) {
            if matched {
                ignored = !pattern.exception;
            }
        }
        ignored
    }
}

impl IgnorePattern {
    /// One pattern line; `None` for a blank one.
    fn parse(line: &str, origin: &dyn Fn() -> String) -> Result<Option<IgnorePattern>> {
        let mut pattern = line.trim();
        if pattern.is_empty() {
            return Ok(None);
        }
        let exception = pattern.starts_with('!');
        if exception {
            pattern = pattern[1..].trim();
        }
        let invalid = |reason: &str| SpecError::InvalidIgnorePattern {
            pattern: line.trim().to_string(),
            origin: origin(),
            reason: reason.to_string(),
        };
        if pattern.is_empty() {
            return Err(invalid("'!' needs a pattern after it"));
        }
        let mut text = clean(pattern);
        if text.len() > 1 && text.starts_with('/') {
            text.remove(0);
        }
        let glob = Glob::docker(&text).map_err(|reason| invalid(&reason))?;
        Ok(Some(IgnorePattern {
            text,
            exception,
            glob,
        }))
    }
}

/// Lexical path cleaning as Go's `filepath.Clean` does it on Unix: collapse `//`, drop `.`,
/// resolve `..` against earlier components, drop a trailing `/`; empty becomes `.`.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse_dockerignore(text, ".dockerignore").expect("valid rules")
    }

    #[test]
    fn clean_matches_go() {
        assert_eq!(clean("a//b/./c/"), "a/b/c");
        assert_eq!(clean("./a"), "a");
        assert_eq!(clean("a/../../b"), "../b");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("/"), "/");
    }

    #[test]
    fn patterns_match_parents_and_are_anchored_at_the_root() {
        let r = rules("build\n*.md\n");
        assert!(r.is_ignored("build"));
        assert!(r.is_ignored("build/out/x.o"));
        assert!(!r.is_ignored("src/build"), "no implicit match at any depth");
        assert!(r.is_ignored("README.md"));
        assert!(!r.is_ignored("docs/README.md"));
        assert!(!r.is_ignored("buildx"));
        assert!(!r.is_ignored("."));
        assert!(!r.is_ignored(""));
    }

    #[test]
    fn comments_blank_lines_whitespace_and_leading_slashes() {
        let r = rules("\u{feff}# comment\n\n   \n  /secret.txt  \n./tmp/\n # not a comment\n");
        assert_eq!(
            r.patterns().collect::<Vec<_>>(),
            ["secret.txt", "tmp", "# not a comment"]
        );
        assert!(r.is_ignored("secret.txt"));
        assert!(r.is_ignored("tmp/x"));
        assert!(r.is_ignored("# not a comment"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let r = rules("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(r.is_ignored("CHANGES.md"));
        assert!(!r.is_ignored("README.md"));
        assert!(r.is_ignored("README-secret.md"));

        let r = rules("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!r.is_ignored("README-secret.md"));
        assert!(r.has_exceptions());
    }

    #[test]
    fn exception_inside_an_ignored_directory() {
        let r = rules("vendor\n!vendor/keep\n");
        assert!(r.is_ignored("vendor"));
        assert!(r.is_ignored("vendor/other.txt"));
        assert!(!r.is_ignored("vendor/keep"));
        assert!(!r.is_ignored("vendor/keep/deep/file"));
    }

    #[test]
    fn ignore_everything_but() {
        let r = rules("*\n!src\n!Cargo.toml\n");
        assert!(r.is_ignored("target"));
        assert!(r.is_ignored("target/debug/x"));
        assert!(!r.is_ignored("src/main.rs"));
        assert!(!r.is_ignored("Cargo.toml"));
    }

    #[test]
    fn double_star_patterns() {
        let r = rules("**/*.pyc\n**/__pycache__\n");
        assert!(r.is_ignored("a.pyc"));
        assert!(r.is_ignored("pkg/mod/a.pyc"));
        assert!(r.is_ignored("pkg/__pycache__/x.txt"));
        assert!(!r.is_ignored("pkg/a.py"));
    }

    #[test]
    fn child_state_agrees_with_full_check() {
        let r = rules("a\n!a/b\na/b/c*\n**/z\n");
        let paths = ["a", "a/b", "a/b/c1", "a/b/d", "a/b/d/z", "q/z", "q"];
        for path in paths {
            let (parent, _) = path.rsplit_once('/').unwrap_or(("", path));
            let parent_state = if parent.is_empty() {
                MatchState(vec![false; 4])
            } else {
                r.state_for(parent)
            };
            let incremental = r.decide(&r.child_state(&parent_state, path));
            assert_eq!(incremental, r.is_ignored(path), "{path}");
        }
    }

    #[test]
    fn invalid_patterns_name_their_origin() {
        let err = IgnoreRules::parse_dockerignore("ok\nbad[\n", "ctx/.dockerignore").unwrap_err();
        match err {
            SpecError::InvalidIgnorePattern {
                pattern, origin, ..
            } => {
                assert_eq!(pattern, "bad[");
                assert_eq!(origin, "ctx/.dockerignore line 2");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let err = IgnoreRules::from_patterns(["!"], "COPY --exclude").unwrap_err();
        assert!(err.to_string().contains("COPY --exclude"), "{err}");
    }

    #[test]
    fn load_reads_the_root_file_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(IgnoreRules::load(dir.path()).expect("no file").is_empty());
        std::fs::write(dir.path().join(".dockerignore"), "target\n").expect("write");
        assert!(
            IgnoreRules::load(dir.path())
                .expect("file")
                .is_ignored("target/x")
        );
    }
}
