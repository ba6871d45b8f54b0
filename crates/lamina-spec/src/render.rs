//! Printing a [`Dockerfile`] as canonical Dockerfile text.
//!
//! The text is canonical: one instruction per line (here-document bodies follow their
//! line), keywords in upper case, flags in a fixed order, exec forms as JSON arrays with
//! `", "` separators. Raw words are printed exactly as stored, so for every model that
//! [`Dockerfile::parse`] can produce, `Dockerfile::parse(&df.render())` gives `df` back.
//!
//! Where the model has no memory of the form that was written, the renderer picks one that
//! reads back to the same model: `VOLUME` and `COPY` fall back to JSON form when a path holds
//! whitespace, `ENV`/`LABEL` use the legacy `ENV name value` form only when `name=value`
//! would not read back, and a text starting with `--` is preceded by `-- ` so that it is not
//! taken for a flag.

use crate::instruction::{
    ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction, Run, Stage,
};
use crate::parse::heredocs_in;
use crate::parse::words::{Json, is_blank, json_array, parse_name_val, parse_words};

impl Dockerfile {
    /// The Dockerfile as text: parser directives, global `ARG`s, then each stage's `FROM`
    /// and instructions, each line ending in `\n`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(syntax) = &self.syntax {
            out.push_str("# syntax=");
            out.push_str(syntax);
            out.push('\n');
        }
        if self.escape != '\\' {
            out.push_str("# escape=");
            out.push(self.escape);
            out.push('\n');
        }
        // One `ARG` per line (a word with an unclosed quote runs to the end of its line),
        // except that a word ending in whitespace (only an escaped blank can end one: `a\<tab>`)
        // stays on the line of the word after it, as it was written: a line ending so is
        // trimmed, and the parser takes it for a continuation or drops the escape. A word
        // ending otherwise may end a line, and must when it opened a quote: gluing the next
        // word on would put it inside the quote.
        let mut line: Vec<String> = Vec::new();
        for arg in &self.global_args {
            let word = render_arg(arg);
            let glued = word.ends_with(char::is_whitespace);
            line.push(word);
            if !glued {
                out.push_str("ARG ");
                push_text(&mut out, &line.join(" "));
                out.push('\n');
                line.clear();
            }
        }
        if !line.is_empty() {
            out.push_str("ARG ");
            push_text(&mut out, &line.join(" "));
            out.push('\n');
        }
        for stage in &self.stages {
            render_stage(stage, self.escape, &mut out);
        }
        out
    }
}

impl Instruction {
    /// This instruction as Dockerfile text (here-document bodies included), every line
    /// ending in `\n`. `escape` is the Dockerfile's escape character, which decides how
    /// `ENV` and `LABEL` values are split.
    pub fn render(&self, escape: char) -> String {
        let mut out = String::new();
        render_instruction(self, escape, &mut out);
        out
    }
}

fn render_stage(stage: &Stage, escape: char, out: &mut String) {
    out.push_str("FROM");
    if let Some(platform) = &stage.platform {
        push_flag(out, "platform", platform);
    }
    out.push(' ');
    let mut text = stage.base.clone();
    if let Some(name) = &stage.name {
        text.push_str(" AS ");
        text.push_str(name);
    }
    push_text(out, &text);
    out.push('\n');
    for instruction in &stage.instructions {
        render_instruction(instruction, escape, out);
    }
}

/// Appends `instruction` to `out`, here-document bodies after its line.
fn render_instruction(instruction: &Instruction, escape: char, out: &mut String) {
    out.push_str(instruction.keyword());
    let mut docs: &[Heredoc] = &[];
    match instruction {
        Instruction::Run(run) => {
            render_run(run, out);
            docs = &run.heredocs;
        }
        Instruction::Copy(copy) => {
            render_copy(copy, out);
            docs = &copy.heredocs;
        }
        Instruction::Env(pairs) | Instruction::Label(pairs) => {
            out.push(' ');
            push_text(out, &render_pairs(instruction.keyword(), pairs, escape));
        }
        Instruction::Arg(args) => {
            out.push(' ');
            let words: Vec<String> = args.iter().map(render_arg).collect();
            push_text(out, &words.join(" "));
        }
        Instruction::Workdir(text)
        | Instruction::User(text)
        | Instruction::StopSignal(text)
        | Instruction::Maintainer(text) => {
            out.push(' ');
            push_text(out, text);
        }
        Instruction::Expose(ports) => {
            out.push(' ');
            push_text(out, &ports.join(" "));
        }
        Instruction::Volume(paths) => {
            out.push(' ');
            match plain_lists(paths).into_iter().next() {
                Some(text) => push_text(out, &text),
                None => out.push_str(&json_list(paths)),
            }
        }
        Instruction::Shell(words) => {
            out.push(' ');
            out.push_str(&json_list(words));
        }
        Instruction::Entrypoint(command) | Instruction::Cmd(command) => {
            out.push(' ');
            push_command(out, command);
        }
        Instruction::Healthcheck(check) => render_healthcheck(check, out),
        Instruction::Onbuild(inner) => {
            out.push(' ');
            render_instruction(inner, escape, out);
            // The inner call ended the line already.
            return;
        }
    }
    out.push('\n');
    for doc in docs {
        out.push_str(&doc.body);
        out.push_str(&doc.delimiter);
        out.push('\n');
    }
}

fn render_run(run: &Run, out: &mut String) {
    for mount in &run.mounts {
        push_flag(out, "mount", mount);
    }
    if let Some(network) = &run.network {
        push_flag(out, "network", network);
    }
    if let Some(security) = &run.security {
        push_flag(out, "security", security);
    }
    out.push(' ');
    push_command(out, &run.command);
}

fn render_copy(copy: &Copy, out: &mut String) {
    if let Some(from) = &copy.from {
        push_flag(out, "from", from);
    }
    if let Some(chown) = &copy.chown {
        push_flag(out, "chown", chown);
    }
    if let Some(chmod) = &copy.chmod {
        push_flag(out, "chmod", chmod);
    }
    if copy.link {
        out.push_str(" --link");
    }
    if copy.parents {
        out.push_str(" --parents");
    }
    for exclude in &copy.excludes {
        push_flag(out, "exclude", exclude);
    }
    if let Some(checksum) = &copy.checksum {
        push_flag(out, "checksum", checksum);
    }
    if let Some(keep) = copy.keep_git_dir {
        push_flag(out, "keep-git-dir", if keep { "true" } else { "false" });
    }
    if let Some(unpack) = copy.unpack {
        push_flag(out, "unpack", if unpack { "true" } else { "false" });
    }
    out.push(' ');
    let paths: Vec<String> = copy.sources.iter().chain([&copy.dest]).cloned().collect();
    let candidates = if copy.json_form {
        Vec::new()
    } else {
        plain_lists(&paths)
    };
    // Docker finds here-documents with a shell lexer, where `\` escapes the blank after it:
    // take the spacing under which the lexer finds exactly this instruction's documents.
    let names_docs = |text: &String| {
        let found = heredocs_in(text).unwrap_or_default();
        found.len() == copy.heredocs.len()
            && found.iter().zip(&copy.heredocs).all(|(spec, doc)| {
                spec.name == doc.delimiter
                    && spec.strip_tabs == doc.strip_tabs
                    && spec.expand == doc.expand
            })
    };
    let chosen = candidates
        .iter()
        .find(|text| names_docs(text))
        .or(candidates.first());
    match chosen {
        Some(text) => push_text(out, text),
        None => out.push_str(&json_list_ascii(&paths)),
    }
}

fn render_healthcheck(check: &Healthcheck, out: &mut String) {
    match check {
        Healthcheck::None => out.push_str(" NONE"),
        Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let durations = [
                ("interval", interval),
                ("timeout", timeout),
                ("start-period", start_period),
                ("start-interval", start_interval),
            ];
            for (name, value) in durations {
                if let Some(value) = value {
                    push_flag(out, name, value);
                }
            }
            if let Some(retries) = retries {
                push_flag(out, "retries", &retries.to_string());
            }
            out.push_str(" CMD ");
            // After `CMD` no flag can start, so no `--` marker either.
            match command {
                Command::Exec(words) => out.push_str(&json_list(words)),
                Command::Shell(text) => out.push_str(text),
            }
        }
    }
}

fn render_arg(arg: &ArgDecl) -> String {
    match &arg.default {
        Some(default) => format!("{}={default}", arg.name),
        None => arg.name.clone(),
    }
}

/// `ENV`/`LABEL` arguments: `k=v k2=v2`, unless a single pair only reads back in the legacy
/// `k v` form (a value with unquoted blanks, parsed from `ENV k some value`).
fn render_pairs(keyword: &str, pairs: &[(String, String)], escape: char) -> String {
    let equals: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let equals = equals.join(" ");
    let reads_back =
        |text: &str| parse_name_val(text, keyword, escape).ok().as_deref() == Some(pairs);
    if reads_back(&equals) {
        return equals;
    }
    if let [(name, value)] = pairs {
        // One blank, or two after a name ending in the escape character: the word splitter
        // (which decides the form) takes the first blank as escaped, the legacy split (which
        // then cuts name from value at the first blank) does not.
        for blank in [" ", "  "] {
            let legacy = format!("{name}{blank}{value}");
            // The legacy form applies only when the first word has no `=`.
            let first_has_eq = parse_words(&legacy, escape)
                .first()
                .is_some_and(|w| w.contains('='));
            if !first_has_eq && reads_back(&legacy) {
                return legacy;
            }
        }
    }
    equals
}

/// A list of paths in blank-separated form, in each spacing that reads back (none when the
/// form cannot hold the paths: it cannot hold empty words or blanks, and text that reads
/// as a JSON array is taken for one). Words are joined with spaces, or, when that makes
/// JSON (`[[` and `]]`), with vertical tabs, a blank for Docker but not whitespace for JSON;
/// and with one or two blanks after a word ending in `\`, where the lexer that looks for
/// here-documents takes the first blank as escaped.
fn plain_lists(words: &[String]) -> Vec<String> {
    if words.iter().any(|w| w.is_empty() || w.contains(is_blank)) {
        return Vec::new();
    }
    let mut texts = Vec::new();
    for blank in [" ", "\u{b}"] {
        for double_after_escape in [false, true] {
            let mut text = String::new();
            for (i, word) in words.iter().enumerate() {
                if i > 0 {
                    text.push_str(blank);
                    if double_after_escape && words[i - 1].ends_with('\\') {
                        text.push_str(blank);
                    }
                }
                text.push_str(word);
            }
            // Other whitespace (say U+00A0) splits nothing, but is trimmed at the ends.
            if text.trim() == text && json_array(&text) == Json::Invalid {
                texts.push(text);
            }
        }
    }
    texts
}

/// `["a", "b"]`, each string JSON-escaped.
pub(crate) fn json_list(words: &[String]) -> String {
    let items: Vec<String> = words
        .iter()
        .map(|w| serde_json::to_string(w).unwrap_or_else(|_| String::from("\"\"")))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A JSON list as Python's `json.dumps` writes it (every non-ASCII character as `\\uXXXX`):
/// `COPY`'s JSON form, the way Daytona's SDK writes local files and directories.
pub(crate) fn json_list_ascii(words: &[String]) -> String {
    let items: Vec<String> = words.iter().map(|w| json_string_ascii(w)).collect();
    format!("[{}]", items.join(", "))
}

fn json_string_ascii(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='\u{7f}' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

fn push_command(out: &mut String, command: &Command) {
    match command {
        Command::Exec(words) => out.push_str(&json_list(words)),
        Command::Shell(text) => push_text(out, text),
    }
}

/// Appends an instruction's text; a text starting with `--` would be read as a flag, so `--`
/// (Docker's end-of-flags marker) goes first.
fn push_text(out: &mut String, text: &str) {
    if text.starts_with("--") {
        out.push_str("-- ");
    }
    out.push_str(text);
}

/// Appends ` --name=value`, quoting the value when Docker's flag reader would otherwise
/// change it (flags are stored unquoted).
fn push_flag(out: &mut String, name: &str, value: &str) {
    out.push_str(" --");
    out.push_str(name);
    out.push('=');
    if value
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
    {
        out.push('"');
        for c in value.chars() {
            if matches!(c, '"' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(instruction: Instruction) -> String {
        instruction.render('\\')
    }

    #[test]
    fn builder_instructions_match_the_sdk_text() {
        assert_eq!(
            one(Instruction::Run(Run::shell("python -m pip install numpy"))),
            "RUN python -m pip install numpy\n"
        );
        assert_eq!(
            one(Instruction::Env(vec![("A".into(), "'a b'".into())])),
            "ENV A='a b'\n"
        );
        assert_eq!(
            one(Instruction::Entrypoint(Command::Exec(vec![
                "/bin/bash".into()
            ]))),
            "ENTRYPOINT [\"/bin/bash\"]\n"
        );
        assert_eq!(one(Instruction::Cmd(Command::Exec(vec![]))), "CMD []\n");
        assert_eq!(
            one(Instruction::Workdir("/home/app".into())),
            "WORKDIR /home/app\n"
        );
        assert_eq!(
            one(Instruction::Copy(Copy::new(
                vec!["app.py".into()],
                "/app/app.py"
            ))),
            "COPY app.py /app/app.py\n"
        );
    }

    #[test]
    fn whole_dockerfile_in_canonical_order() {
        let mut build = Stage::from_base("golang:1.22");
        build.name = Some("build".into());
        build.platform = Some("$BUILDPLATFORM".into());
        build.instructions.push(Instruction::Run(Run {
            command: Command::Shell("go build ./...".into()),
            mounts: vec!["type=cache,target=/root/.cache".into()],
            network: Some("none".into()),
            security: None,
            heredocs: vec![],
        }));
        let mut run = Stage::from_base("scratch");
        let mut copy = Copy::new(vec!["/out/app".into()], "/app");
        copy.from = Some("build".into());
        copy.link = true;
        copy.excludes = vec!["*.tmp".into()];
        run.instructions.push(Instruction::Copy(copy));
        let df = Dockerfile {
            escape: '`',
            syntax: Some("docker/dockerfile:1".into()),
            global_args: vec![ArgDecl {
                name: "V".into(),
                default: Some("1".into()),
            }],
            stages: vec![build, run],
        };
        assert_eq!(
            df.render(),
            "# syntax=docker/dockerfile:1\n# escape=`\nARG V=1\n\
             FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n\
             RUN --mount=type=cache,target=/root/.cache --network=none go build ./...\n\
             FROM scratch\n\
             COPY --from=build --link --exclude=*.tmp /out/app /app\n"
        );
    }

    #[test]
    fn heredocs_follow_their_line() {
        let run = Run {
            command: Command::Shell("<<EOF".into()),
            mounts: vec![],
            network: None,
            security: None,
            heredocs: vec![Heredoc {
                delimiter: "EOF".into(),
                body: "echo hi\n".into(),
                strip_tabs: false,
                expand: true,
            }],
        };
        assert_eq!(one(Instruction::Run(run)), "RUN <<EOF\necho hi\nEOF\n");
    }

    #[test]
    fn forms_chosen_to_read_back() {
        assert_eq!(
            one(Instruction::Env(vec![("A".into(), "hello world".into())])),
            "ENV A hello world\n"
        );
        // Legacy form, the name ending in the escape character (found by the fuzzer): the
        // first blank reads as escaped when deciding the form, so two.
        let text = "FROM x\nENV M\\\u{c}\u{b}v=1 w\n";
        let parsed = crate::Dockerfile::parse(text).unwrap();
        let rendered = parsed.render();
        assert_eq!(rendered, "FROM x\nENV M\\  v=1 w\n");
        assert_eq!(crate::Dockerfile::parse(&rendered).unwrap(), parsed);
        assert_eq!(
            one(Instruction::Volume(vec!["/a b".into()])),
            "VOLUME [\"/a b\"]\n"
        );
        assert_eq!(
            one(Instruction::Volume(vec!["/a".into(), "/b".into()])),
            "VOLUME /a /b\n"
        );
        assert_eq!(
            one(Instruction::Copy(Copy::new(vec!["my file".into()], "/x/"))),
            "COPY [\"my file\", \"/x/\"]\n"
        );
        assert_eq!(
            one(Instruction::Workdir("--odd".into())),
            "WORKDIR -- --odd\n"
        );
        let mut copy = Copy::new(vec!["a".into()], "/b");
        copy.chown = Some("my user".into());
        assert_eq!(
            one(Instruction::Copy(copy)),
            "COPY --chown=\"my user\" a /b\n"
        );
    }

    #[test]
    fn healthcheck_and_onbuild() {
        let check = Healthcheck::Check {
            command: Command::Shell("curl -f http://localhost/".into()),
            interval: Some("30s".into()),
            timeout: None,
            start_period: Some("5s".into()),
            start_interval: None,
            retries: Some(3),
        };
        assert_eq!(
            one(Instruction::Healthcheck(check)),
            "HEALTHCHECK --interval=30s --start-period=5s --retries=3 CMD curl -f http://localhost/\n"
        );
        assert_eq!(
            one(Instruction::Healthcheck(Healthcheck::None)),
            "HEALTHCHECK NONE\n"
        );
        assert_eq!(
            one(Instruction::Onbuild(Box::new(Instruction::Run(
                Run::shell("make")
            )))),
            "ONBUILD RUN make\n"
        );
    }
}
