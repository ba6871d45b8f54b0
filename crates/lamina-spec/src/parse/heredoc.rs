//! Finding here-documents (`<<EOF`) in a `RUN`, `COPY` or `ADD` line, as BuildKit does.

use crate::expand::lexer::Lexer;

/// A here-document named on an instruction line; its body follows the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocSpec {
    /// The delimiter, quotes removed.
    pub name: String,
    /// `<<-`: leading tabs are stripped (also from the delimiter line).
    pub strip_tabs: bool,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
}

/// The here-documents named in `text`, in order. BuildKit splits the line into shell words
/// (variables expanded to nothing) and takes every word of the form `[n]<<[-]delimiter`.
pub(crate) fn heredocs_in(text: &str) -> Result<Vec<HeredocSpec>, String> {
    if !text.contains("<<") {
        return Ok(Vec::new());
    }
    let lexer = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        ..Lexer::new('\\')
    };
    // A line that does not lex (say, an unclosed quote) names no here-documents, as in
    // BuildKit.
    let Ok(words) = lexer.words(text, &|_| None) else {
        return Ok(Vec::new());
    };
    let mut specs = Vec::new();
    for word in &words {
        if let Some(spec) = heredoc_word(word)? {
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// Whether `word` (a raw word of the line) names a here-document.
pub(crate) fn is_heredoc_word(word: &str) -> bool {
    matches!(heredoc_word(word), Ok(Some(_)))
}

/// Reads `[n]<<[-]delimiter`; `None` when `word` is not of that form.
fn heredoc_word(word: &str) -> Result<Option<HeredocSpec>, String> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = after_fd.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // Lexed with and without quote removal: if the two differ in quotes, part of the
    // delimiter was quoted and the body is not expanded.
    let plain = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let words = plain
        .words(rest, &|_| None)
        .map_err(|reason| format!("bad here-document delimiter {word:?}: {reason}"))?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer {
        raw_quotes: true,
        ..plain
    };
    let raw_words = raw
        .words(rest, &|_| None)
        .map_err(|reason| format!("bad here-document delimiter {word:?}: {reason}"))?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '"' || *c == '\'').count();
    let expand = raw_words
        .first()
        .is_some_and(|raw| quotes(raw) == quotes(name));
    Ok(Some(HeredocSpec {
        name: name.clone(),
        strip_tabs,
        expand,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, strip_tabs: bool, expand: bool) -> HeredocSpec {
        HeredocSpec {
            name: name.to_string(),
            strip_tabs,
            expand,
        }
    }

    #[test]
    fn delimiter_forms() {
        assert_eq!(
            heredocs_in("<<EOF").unwrap(),
            vec![spec("EOF", false, true)]
        );
        assert_eq!(
            heredocs_in("<<-EOF").unwrap(),
            vec![spec("EOF", true, true)]
        );
        assert_eq!(
            heredocs_in("<<\"EOF\"").unwrap(),
            vec![spec("EOF", false, false)]
        );
        assert_eq!(
            heredocs_in("<<'EOF'").unwrap(),
            vec![spec("EOF", false, false)]
        );
        assert_eq!(
            heredocs_in("cat 3<<A >x <<-'B'").unwrap(),
            vec![spec("A", false, true), spec("B", true, false)]
        );
    }

    #[test]
    fn not_heredocs() {
        assert!(heredocs_in("echo '<<EOF'").unwrap().is_empty());
        assert!(heredocs_in("echo \"a <<EOF\"").unwrap().is_empty());
        assert!(heredocs_in("cat<<EOF").unwrap().is_empty());
        assert!(heredocs_in("cat <<<here").unwrap().is_empty());
        assert!(heredocs_in("cat <<").unwrap().is_empty());
        assert!(heredocs_in("cat <<$X").unwrap().is_empty());
        assert!(heredocs_in("echo 'unclosed <<EOF").unwrap().is_empty());
        assert!(is_heredoc_word("<<EOF"));
        assert!(!is_heredoc_word("/dest"));
    }
}
