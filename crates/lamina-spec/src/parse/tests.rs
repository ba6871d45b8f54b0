//! Parser tests: every instruction form and every error (with its line). Realistic
//! Dockerfiles and round trips are in `round_trip.rs`.

use crate::error::SpecError;
use crate::instruction::{
    ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction, Run, Stage,
};

pub(super) fn parse(text: &str) -> Dockerfile {
    match Dockerfile::parse(text) {
        Ok(df) => df,
        Err(err) => panic!("{text:?} does not parse: {err}"),
    }
}

/// The instructions of the only stage of `FROM x` followed by `body`.
fn body(body: &str) -> Vec<Instruction> {
    let df = parse(&format!("FROM x\n{body}"));
    assert_eq!(df.stages.len(), 1);
    df.stages
        .into_iter()
        .next()
        .map(|s| s.instructions)
        .unwrap_or_default()
}

fn one(line: &str) -> Instruction {
    let mut all = body(line);
    assert_eq!(all.len(), 1, "{line:?} gave {all:?}");
    all.remove(0)
}

/// The (line, reason) of the error `text` gives.
fn error(text: &str) -> (usize, String) {
    match Dockerfile::parse(text) {
        Err(SpecError::DockerfileSyntax { file, line, reason }) => {
            assert_eq!(file, std::path::Path::new("Dockerfile"));
            (line, reason)
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(df) => panic!("{text:?} parsed: {df:?}"),
    }
}

fn assert_error(text: &str, line: usize, contains: &str) {
    let (at, reason) = error(text);
    assert_eq!(at, line, "{text:?}: {reason}");
    assert!(
        reason.contains(contains),
        "{text:?}: {reason:?} lacks {contains:?}"
    );
    assert!(!reason.ends_with('.'), "{reason}");
}

pub(super) fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

pub(super) fn pair(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn doc(delimiter: &str, body: &str, strip_tabs: bool, expand: bool) -> Heredoc {
    Heredoc {
        delimiter: delimiter.into(),
        body: body.into(),
        strip_tabs,
        expand,
    }
}

pub(super) fn shell(text: &str) -> Command {
    Command::Shell(text.to_string())
}

#[test]
fn from_forms() {
    let df = parse("from --platform=linux/arm64 golang:1.22 as Build\nFROM build\nFROM scratch");
    assert_eq!(df.stages[0].base, "golang:1.22");
    assert_eq!(df.stages[0].platform.as_deref(), Some("linux/arm64"));
    assert_eq!(df.stages[0].name.as_deref(), Some("Build"));
    assert_eq!(df.stages[1], Stage::from_base("build"));
    assert_eq!(df.stages[2], Stage::from_base("scratch"));
    assert_eq!(df.escape, '\\');
    assert_eq!(df.syntax, None);
}

#[test]
fn global_args_and_directives() {
    let df = parse(
        "# syntax=docker/dockerfile:1.7\n# Escape=`\n# a comment\nARG A=1 B\nARG C\nFROM ${A}",
    );
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.global_args,
        vec![
            ArgDecl {
                name: "A".into(),
                default: Some("1".into())
            },
            ArgDecl {
                name: "B".into(),
                default: None
            },
            ArgDecl {
                name: "C".into(),
                default: None
            },
        ]
    );
    // After the first non-directive line, directives are plain comments.
    let df = parse("FROM x\n# escape=`\nRUN a \\\n b");
    assert_eq!(df.escape, '\\');
    assert_eq!(
        df.stages[0].instructions,
        vec![Instruction::Run(Run::shell("a  b"))]
    );
    let df = parse("# unknown=1\n# escape=`\nFROM x");
    assert_eq!(df.escape, '\\');
    // `check` is accepted and dropped; a BOM is skipped.
    let df = parse("\u{feff}# check=skip=all\n#escape = `\nFROM x");
    assert_eq!(df.escape, '`');
}

#[test]
fn run_forms() {
    assert_eq!(
        one("RUN echo hi  there"),
        Instruction::Run(Run::shell("echo hi  there"))
    );
    assert_eq!(
        one(r#"RUN ["echo", "a b"]"#),
        Instruction::Run(Run {
            command: Command::Exec(strings(&["echo", "a b"])),
            ..Run::shell("")
        })
    );
    // Not JSON: shell form, as Docker does.
    assert_eq!(
        one("RUN [ -f x ] && echo"),
        Instruction::Run(Run::shell("[ -f x ] && echo"))
    );
    assert_eq!(
        one(r#"RUN ["a", "b""#),
        Instruction::Run(Run::shell(r#"["a", "b""#))
    );
    let Instruction::Run(run) = one(
        "RUN --mount=type=cache,target=/root/.cache --mount=\"type=secret,id=a b\" \
         --network=none --security=insecure make",
    ) else {
        panic!()
    };
    assert_eq!(
        run.mounts,
        strings(&["type=cache,target=/root/.cache", "type=secret,id=a b"])
    );
    assert_eq!(run.network.as_deref(), Some("none"));
    assert_eq!(run.security.as_deref(), Some("insecure"));
    assert_eq!(run.command, shell("make"));
    // `--` ends the flags.
    assert_eq!(
        one("RUN -- --version"),
        Instruction::Run(Run::shell("--version"))
    );
}

#[test]
fn continuations_comments_and_blank_lines() {
    let text = "FROM x\nRUN apt-get update \\\n  # a comment inside\n\n    && apt-get install -y \\\n      curl\n# trailing comment\n\nRUN b";
    let df = parse(text);
    assert_eq!(
        df.stages[0].instructions,
        vec![
            Instruction::Run(Run::shell(
                "apt-get update     && apt-get install -y       curl"
            )),
            Instruction::Run(Run::shell("b")),
        ]
    );
    // CRLF line ends and continuation followed by blanks.
    let df = parse("FROM x\r\nRUN a \\  \r\n b\r\n");
    assert_eq!(
        df.stages[0].instructions,
        vec![Instruction::Run(Run::shell("a  b"))]
    );
    // With the backtick escape, a backslash is ordinary.
    let df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\nWORKDIR c:\\app");
    assert_eq!(
        df.stages[0].instructions,
        vec![
            Instruction::Run(Run::shell("dir c:\\   /w")),
            Instruction::Workdir("c:\\app".into()),
        ]
    );
}

#[test]
fn heredocs() {
    let text = "FROM x\nRUN <<EOF\necho $HOME\nEOF\nRUN cat <<-'A' >/x 3<<\"B\"\n\tone\n\tA\ntwo\nB\nCOPY <<conf /etc/x.conf\nk=v\nconf\n";
    let ins = parse(text).stages.remove(0).instructions;
    assert_eq!(
        ins[0],
        Instruction::Run(Run {
            heredocs: vec![doc("EOF", "echo $HOME\n", false, true)],
            ..Run::shell("<<EOF")
        })
    );
    assert_eq!(
        ins[1],
        Instruction::Run(Run {
            heredocs: vec![
                doc("A", "\tone\n", true, false),
                doc("B", "two\n", false, false)
            ],
            ..Run::shell("cat <<-'A' >/x 3<<\"B\"")
        })
    );
    let mut copy = Copy::new(strings(&["<<conf"]), "/etc/x.conf");
    copy.heredocs = vec![doc("conf", "k=v\n", false, true)];
    assert_eq!(ins[2], Instruction::Copy(copy));
    // Quoted `<<` is not a here-document.
    assert_eq!(
        one("RUN echo '<<EOF'"),
        Instruction::Run(Run::shell("echo '<<EOF'"))
    );
}

/// BuildKit reads here-documents of an `ONBUILD` trigger (its `testOnBuildHeredoc` builds
/// `ONBUILD RUN <<EOF` / `echo "hello world" >> /dest` / `EOF`); exec form names none.
#[test]
fn onbuild_triggers_take_heredocs() {
    assert_eq!(
        body("ONBUILD RUN <<EOF\necho \"hello world\" >> /dest\nEOF\nRUN y"),
        vec![
            Instruction::Onbuild(Box::new(Instruction::Run(Run {
                heredocs: vec![doc("EOF", "echo \"hello world\" >> /dest\n", false, true)],
                ..Run::shell("<<EOF")
            }))),
            Instruction::Run(Run::shell("y"))
        ]
    );
    let mut copy = Copy::new(strings(&["<<'conf'"]), "/etc/x.conf");
    copy.heredocs = vec![doc("conf", "k=$v\n", false, false)];
    assert_eq!(
        one("onbuild copy <<'conf' /etc/x.conf\nk=$v\nconf"),
        Instruction::Onbuild(Box::new(Instruction::Copy(copy)))
    );
    assert_eq!(
        body("ONBUILD RUN [\"cat\", \"<<EOF\"]\nRUN y"),
        vec![
            Instruction::Onbuild(Box::new(Instruction::Run(Run {
                command: Command::Exec(strings(&["cat", "<<EOF"])),
                ..Run::shell("")
            }))),
            Instruction::Run(Run::shell("y"))
        ]
    );
    assert_error("FROM x\nONBUILD RUN <<EOF\necho", 2, "not terminated");
}

/// BuildKit's continuation test is `([^\\])\\[ \t]*$|^\\[ \t]*$`: an escape character
/// that is itself escaped ends the instruction (`WORKDIR C:\\`, `ENV X a\\`).
#[test]
fn escaped_escape_ends_the_instruction() {
    assert_eq!(
        body("WORKDIR C:\\\\\nENV X a\\\\\nRUN echo \\\\  \nRUN b"),
        vec![
            Instruction::Workdir("C:\\\\".into()),
            Instruction::Env(vec![pair("X", "a\\\\")]),
            Instruction::Run(Run::shell("echo \\\\")),
            Instruction::Run(Run::shell("b")),
        ]
    );
    // A continuation still works after a blank, and a line holding only the escape
    // continues too.
    assert_eq!(
        body("RUN a \\\n\\\n b\nRUN c"),
        vec![
            Instruction::Run(Run::shell("a  b")),
            Instruction::Run(Run::shell("c"))
        ]
    );
    // Three escapes: the last is escaped by the one before it (the regex does not look
    // further back), so the line ends.
    assert_eq!(
        body("RUN echo \\\\\\\nRUN b"),
        vec![
            Instruction::Run(Run::shell("echo \\\\\\")),
            Instruction::Run(Run::shell("b"))
        ]
    );
    // With `# escape=``, a doubled backtick ends the line and a backslash is ordinary.
    let df = parse("# escape=`\nFROM x\nRUN echo ``\nWORKDIR C:\\\nRUN b");
    assert_eq!(
        df.stages[0].instructions,
        vec![
            Instruction::Run(Run::shell("echo ``")),
            Instruction::Workdir("C:\\".into()),
            Instruction::Run(Run::shell("b")),
        ]
    );
}

/// Dockerfile syntax 1.9 and later: text after the JSON array makes the line shell form
/// (`CMD ["a"] # note` runs `/bin/sh -c '["a"] # note'`), also across continued lines; a
/// valid array holding non-strings is an error.
#[test]
fn json_followed_by_text_is_shell_form() {
    assert_eq!(
        one("CMD [\"a\"] # note"),
        Instruction::Cmd(shell("[\"a\"] # note"))
    );
    assert_eq!(
        one("RUN [\"echo\", \"a\"] \\\n  && echo b"),
        Instruction::Run(Run::shell("[\"echo\", \"a\"]   && echo b"))
    );
    assert_eq!(
        one("ENTRYPOINT [\"a\"]  "),
        Instruction::Entrypoint(Command::Exec(strings(&["a"])))
    );
    // COPY falls back to blank-separated words.
    assert_eq!(
        one("COPY [\"a\"] b"),
        Instruction::Copy(Copy::new(strings(&["[\"a\"]"]), "b"))
    );
    // Here-documents are read once the line is shell form.
    let Instruction::Run(run) = one("RUN [\"cat\"] <<EOF\nx\nEOF") else {
        panic!()
    };
    assert_eq!(run.heredocs, vec![doc("EOF", "x\n", false, true)]);
    assert_error("FROM x\nCMD [\"a\", true]", 2, "not strings");
    assert_error("FROM x\nCOPY [\"a\", 1]", 2, "not strings");
}

#[test]
fn copy_and_add_forms() {
    let Instruction::Copy(c) = one(
        "COPY --from=build --chown=app:app --chmod=755 --link --parents --exclude=*.md \
         --exclude=.git a b/ /dst/",
    ) else {
        panic!()
    };
    assert!(!c.add && !c.json_form && c.link && c.parents);
    assert_eq!(c.sources, strings(&["a", "b/"]));
    assert_eq!(c.dest, "/dst/");
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("755"));
    assert_eq!(c.excludes, strings(&["*.md", ".git"]));
    let Instruction::Copy(c) =
        one("ADD --checksum=sha256:abc --keep-git-dir=false --link=false https://x/y.tgz /y")
    else {
        panic!()
    };
    assert!(c.add && !c.link);
    assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(c.keep_git_dir, Some(false));
    assert_eq!(c.unpack, None);
    let Instruction::Copy(c) = one("ADD --unpack=false a.tgz /y/") else {
        panic!()
    };
    assert_eq!(c.unpack, Some(false));
    let Instruction::Copy(c) = one(r#"COPY ["my file", "$HOME/x y"]"#) else {
        panic!()
    };
    assert!(c.json_form);
    assert_eq!(c.sources, strings(&["my file"]));
    assert_eq!(c.dest, "$HOME/x y");
    // Blank splitting ignores quotes, as Docker does.
    let Instruction::Copy(c) = one(r#"COPY "a b" /c"#) else {
        panic!()
    };
    assert_eq!(c.sources, strings(&["\"a", "b\""]));
}

#[test]
fn env_label_arg_forms() {
    assert_eq!(
        one(r#"ENV A=1 B="two words" C=x\ y D="#),
        Instruction::Env(vec![
            pair("A", "1"),
            pair("B", "\"two words\""),
            pair("C", "x\\ y"),
            pair("D", "")
        ])
    );
    assert_eq!(
        one("ENV A  hello   world"),
        Instruction::Env(vec![pair("A", "hello   world")])
    );
    assert_eq!(
        one(r#"LABEL "com.example.v"="1.0" multi="a \
 b""#),
        Instruction::Label(vec![
            pair("\"com.example.v\"", "\"1.0\""),
            pair("multi", "\"a  b\"")
        ])
    );
    assert_eq!(
        one("LABEL maintainer me"),
        Instruction::Label(vec![pair("maintainer", "me")])
    );
    assert_eq!(
        one("ARG A B=${A:-x}"),
        Instruction::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("${A:-x}".into())
            },
        ])
    );
}

#[test]
fn simple_instructions() {
    let ins = body(
        "WORKDIR /my app\nUSER app:app\nEXPOSE 80 443/tcp ${PORT}\nVOLUME /a /b\nVOLUME [\"/c d\"]\n\
         SHELL [\"powershell\", \"-c\"]\nENTRYPOINT [\"/bin/app\"]\nCMD python app.py\nCMD []\n\
         STOPSIGNAL SIGTERM\nMAINTAINER Jane <j@x>\nonbuild copy . /src",
    );
    assert_eq!(
        ins,
        vec![
            Instruction::Workdir("/my app".into()),
            Instruction::User("app:app".into()),
            Instruction::Expose(strings(&["80", "443/tcp", "${PORT}"])),
            Instruction::Volume(strings(&["/a", "/b"])),
            Instruction::Volume(strings(&["/c d"])),
            Instruction::Shell(strings(&["powershell", "-c"])),
            Instruction::Entrypoint(Command::Exec(strings(&["/bin/app"]))),
            Instruction::Cmd(shell("python app.py")),
            Instruction::Cmd(Command::Exec(vec![])),
            Instruction::StopSignal("SIGTERM".into()),
            Instruction::Maintainer("Jane <j@x>".into()),
            Instruction::Onbuild(Box::new(Instruction::Copy(Copy::new(
                strings(&["."]),
                "/src"
            )))),
        ]
    );
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        one("HEALTHCHECK none"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=500ms \
             --retries=3 CMD curl -f http://localhost/ || exit 1"
        ),
        Instruction::Healthcheck(Healthcheck::Check {
            command: shell("curl -f http://localhost/ || exit 1"),
            interval: Some("30s".into()),
            timeout: Some("1m30s".into()),
            start_period: Some("5s".into()),
            start_interval: Some("500ms".into()),
            retries: Some(3),
        })
    );
    assert_eq!(
        one(r#"HEALTHCHECK cmd ["/bin/check"]"#),
        Instruction::Healthcheck(Healthcheck::Check {
            command: Command::Exec(strings(&["/bin/check"])),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("FROM x\nFOO bar", 2, "unknown instruction \"FOO\""),
        ("RUN x\nFROM y", 1, "RUN comes before the first FROM"),
        ("# only a comment\n", 1, "no FROM"),
        ("", 1, "no FROM"),
        ("FROM", 1, "FROM takes an image"),
        ("FROM a b", 1, "FROM takes an image"),
        ("FROM a AS 1x", 1, "invalid stage name"),
        ("FROM a AS b\nFROM c AS B", 2, "used twice"),
        ("FROM --platform x", 1, "needs a value"),
        ("FROM x\n\nRUN", 3, "RUN needs an argument"),
        ("FROM x\nRUN --foo=1 x", 2, "unknown flag --foo for RUN"),
        ("FROM x\nRUN --network=bridge x", 2, "not a mode"),
        ("FROM x\nRUN --security=x y", 2, "not a mode"),
        ("FROM x\nRUN []", 2, "runs nothing"),
        ("FROM x\nRUN [1, 2]", 2, "not strings"),
        ("FROM x\nRUN <<EOF\necho", 2, "not terminated"),
        ("FROM x\nRUN a \\\n b <<EOF\nbody\n", 2, "not terminated"),
        ("FROM x\nCOPY a", 2, "at least one source and a destination"),
        (
            "FROM x\nCOPY --checksum=x a b",
            2,
            "unknown flag --checksum for COPY",
        ),
        ("FROM x\nADD --from=x a b", 2, "unknown flag --from for ADD"),
        ("FROM x\nCOPY --link=maybe a b", 2, "true or false"),
        ("FROM x\nCOPY --from=a --from=b a b", 2, "twice"),
        ("FROM x\nCOPY a <<EOF\nx\nEOF", 2, "destination"),
        ("FROM x\nENV", 2, "ENV needs"),
        ("FROM x\nENV A", 2, "no value"),
        ("FROM x\nENV A=1 B", 2, "no '='"),
        ("FROM x\nENV --x A=1", 2, "ENV takes no flags"),
        ("FROM x\nLABEL =x", 2, "empty name"),
        ("FROM x\nARG", 2, "ARG needs a name"),
        ("FROM x\nARG =1", 2, "empty name"),
        ("FROM x\nWORKDIR", 2, "WORKDIR needs an argument"),
        ("FROM x\nUSER", 2, "USER needs"),
        ("FROM x\nEXPOSE", 2, "EXPOSE needs"),
        ("FROM x\nVOLUME []", 2, "can not be empty"),
        ("FROM x\nVOLUME [\"\"]", 2, "can not be empty"),
        ("FROM x\nSHELL /bin/sh -c", 2, "JSON array"),
        ("FROM x\nSHELL []", 2, "at least one word"),
        ("FROM x\nCMD", 2, "CMD needs"),
        ("FROM x\nENTRYPOINT [true]", 2, "not strings"),
        ("FROM x\nSTOPSIGNAL", 2, "STOPSIGNAL needs"),
        ("FROM x\nHEALTHCHECK", 2, "needs NONE or CMD"),
        ("FROM x\nHEALTHCHECK NONE x", 2, "no arguments"),
        ("FROM x\nHEALTHCHECK --interval=1s NONE", 2, "no options"),
        ("FROM x\nHEALTHCHECK CHECK x", 2, "unknown HEALTHCHECK type"),
        ("FROM x\nHEALTHCHECK CMD", 2, "needs a command"),
        ("FROM x\nHEALTHCHECK CMD []", 2, "needs a command"),
        (
            "FROM x\nHEALTHCHECK --interval=5 CMD x",
            2,
            "not a duration",
        ),
        (
            "FROM x\nHEALTHCHECK --timeout=10us CMD x",
            2,
            "shorter than 1ms",
        ),
        ("FROM x\nHEALTHCHECK --retries=-1 CMD x", 2, "negative"),
        ("FROM x\nHEALTHCHECK --retries=x CMD x", 2, "not a count"),
        (
            "FROM x\nHEALTHCHECK --bogus=1 CMD x",
            2,
            "unknown flag --bogus",
        ),
        ("FROM x\nONBUILD", 2, "ONBUILD needs"),
        (
            "FROM x\nONBUILD ONBUILD RUN x",
            2,
            "not allowed as an ONBUILD trigger",
        ),
        (
            "FROM x\nONBUILD FROM y",
            2,
            "not allowed as an ONBUILD trigger",
        ),
        (
            "FROM x\nONBUILD MAINTAINER y",
            2,
            "not allowed as an ONBUILD trigger",
        ),
        ("FROM x\nONBUILD BOGUS y", 2, "unknown instruction"),
        ("# escape=x\nFROM x", 1, "invalid escape character"),
        ("# escape=`\n# escape=\\\nFROM x", 2, "given twice"),
        ("FROM x\nRUN echo a\\ \\", 2, "escape character"),
    ];
    for (text, line, contains) in cases {
        assert_error(text, *line, contains);
    }
}

#[test]
fn parse_file_reads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Dockerfile.dev");
    std::fs::write(&path, "FROM x\nRUN true\n").unwrap();
    let df = Dockerfile::parse_file(&path).unwrap();
    assert_eq!(
        df.stages[0].instructions,
        vec![Instruction::Run(Run::shell("true"))]
    );
    std::fs::write(&path, "FROM x\nBAD\n").unwrap();
    match Dockerfile::parse_file(&path) {
        Err(SpecError::DockerfileSyntax { file, line: 2, .. }) => assert_eq!(file, path),
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, b"FROM x\nRUN \xff\n").unwrap();
    match Dockerfile::parse_file(&path) {
        Err(SpecError::DockerfileSyntax {
            line: 2, reason, ..
        }) => assert!(reason.contains("UTF-8")),
        other => panic!("{other:?}"),
    }
    match Dockerfile::parse_file(&dir.path().join("missing")) {
        Err(SpecError::Io { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Triggers as an image config's `OnBuild` holds them (BuildKit stores the instruction text,
/// here-document bodies on the lines after it).
#[test]
fn triggers_from_image_configs() {
    assert_eq!(
        Instruction::parse_trigger("RUN echo hi > /onbuild.txt", "base:1").unwrap(),
        Instruction::Run(Run::shell("echo hi > /onbuild.txt"))
    );
    assert_eq!(
        Instruction::parse_trigger("RUN <<EOF\necho \"hello world\" >> /dest\nEOF", "b").unwrap(),
        Instruction::Run(Run {
            heredocs: vec![doc("EOF", "echo \"hello world\" >> /dest\n", false, true)],
            ..Run::shell("<<EOF")
        })
    );
    for (bad, reason) in [
        ("ONBUILD RUN x", "ONBUILD is not allowed"),
        ("FROM x", "FROM is not allowed"),
        ("MAINTAINER x", "MAINTAINER is not allowed"),
        ("RUN a\nRUN b", "exactly one instruction"),
        ("", "exactly one instruction"),
        ("BOGUS x", "unknown instruction"),
    ] {
        match Instruction::parse_trigger(bad, "base:1") {
            Err(err @ SpecError::InvalidTrigger { .. }) => {
                let text = err.to_string();
                assert!(text.contains(reason) && text.contains("base:1"), "{text}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn lines_of_instructions() {
    let (df, lines) = Dockerfile::parse_with_lines(
        "ARG A\n# c\nFROM x\nRUN a \\\n  b\n\nCOPY <<EOF /x\nbody\nEOF\nFROM y AS z\nUSER 1\n",
    )
    .unwrap();
    assert_eq!(df.stages.len(), 2);
    assert_eq!(lines, vec![vec![4, 7], vec![11]]);
}
