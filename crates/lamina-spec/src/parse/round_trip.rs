//! Round trips: realistic Dockerfiles, odd but valid ones (several found by fuzzing), and
//! `parse(render(df)) == df` over generated models and over hostile text.

use proptest::prelude::*;

use super::strategy;
use super::tests::{pair, parse, shell, strings};
use crate::instruction::{Copy, Dockerfile, Instruction, Run};

const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
ARG PY=3.12
ARG BASE=python:${PY}-slim

FROM --platform=$BUILDPLATFORM ${BASE} AS build
ARG PIP_INDEX
ENV PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY --chown=app:app requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv && \
    pip install ${PIP_INDEX:+--index-url $PIP_INDEX} -r requirements.txt
COPY <<EOF /src/settings.py
DEBUG = False
NAME = "${APP_NAME:-demo}"
EOF
RUN <<-"SCRIPT" bash
	set -eu
	echo building
	SCRIPT

FROM ${BASE}
LABEL org.opencontainers.image.title="demo app" version=1
COPY --from=build --link /opt/venv /opt/venv
COPY --from=build /src /app
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=30s --retries=3 CMD ["python", "-c", "import urllib.request"]
ENTRYPOINT ["/opt/venv/bin/python"]
CMD ["/app/main.py"]
"#;

#[test]
fn realistic_multi_stage() {
    let df = parse(MULTI_STAGE);
    assert_eq!(df.global_args.len(), 2);
    assert_eq!(df.stages.len(), 2);
    let build = &df.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, "${BASE}");
    assert_eq!(
        build.instructions[1],
        Instruction::Env(vec![
            pair("PIP_NO_CACHE_DIR", "1"),
            pair("PATH", "/opt/venv/bin:$PATH"),
        ])
    );
    let Instruction::Run(run) = &build.instructions[4] else {
        panic!()
    };
    assert_eq!(
        run.command,
        shell(
            "python -m venv /opt/venv &&     pip install ${PIP_INDEX:+--index-url $PIP_INDEX} -r requirements.txt"
        )
    );
    let Instruction::Copy(settings) = &build.instructions[5] else {
        panic!()
    };
    assert_eq!(
        settings.heredocs[0].body,
        "DEBUG = False\nNAME = \"${APP_NAME:-demo}\"\n"
    );
    let Instruction::Run(script) = &build.instructions[6] else {
        panic!()
    };
    assert_eq!(script.heredocs[0].body, "\tset -eu\n\techo building\n");
    assert!(script.heredocs[0].strip_tabs && !script.heredocs[0].expand);
    let Instruction::Copy(venv) = &df.stages[1].instructions[1] else {
        panic!()
    };
    assert_eq!(venv.from.as_deref(), Some("build"));
    assert_eq!(parse(&df.render()), df);
}

#[test]
fn realistic_windows_escape() {
    let text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022\n\
                SHELL [\"powershell\", \"-Command\"]\nRUN New-Item -ItemType Directory C:\\app ; `\n    \
                Write-Host done\nCOPY app\\ C:\\app\\\nWORKDIR C:\\app\n";
    let df = parse(text);
    assert_eq!(df.escape, '`');
    assert_eq!(
        df.stages[0].instructions[1],
        Instruction::Run(Run::shell(
            "New-Item -ItemType Directory C:\\app ;     Write-Host done"
        ))
    );
    assert_eq!(
        df.stages[0].instructions[2],
        Instruction::Copy(Copy::new(strings(&["app\\"]), "C:\\app\\"))
    );
    assert_eq!(parse(&df.render()), df);
}

#[test]
fn render_then_parse_keeps_odd_but_valid_models() {
    let odd = [
        "FROM x\nENV A b=c\n",
        "FROM x\nRUN -- --help\n",
        "FROM x\nWORKDIR -- --x\n",
        "FROM x\nCOPY [x <<EOF /d\nbody\nEOF\n",
        "FROM x\nVOLUME [abc\n",
        "FROM x\nCMD [\"a\"] # trailing note\n",
        "FROM x\nRUN --mount=\"a \\\"b\\\" \\\\c\" x\n",
        "FROM x\nLABEL \"a b\"=c\n",
        "FROM x\nENV A \"unclosed\n",
        "FROM x\nHEALTHCHECK --retries= --interval= CMD x\n",
        "FROM x\nHEALTHCHECK CMD --x\n",
        "FROM x\nONBUILD RUN -- --x\n",
        "FROM -- --x AS y\n",
        // Found by fuzzing: a word ending in an escaped escape must not end a line.
        "ARG a\\\\ b\nARG c\nFROM x\n",
        // Found by fuzzing: an escaped escape ending a word that opened a quote.
        "ARG \"a\\\\\nARG b\nFROM x\n",
        // An odd run of escapes ending a word in an escaped blank.
        "ARG a\\\\\\  b\nFROM x\n",
        "ARG a\\  b\\\\\\\u{b} c\nFROM x\n",
        "ARG a \"b c\nARG d\nFROM x\n",
        "ARG a\\\t b\nFROM x\n",
        "ARG a\\\u{b} b\nFROM x\n",
        "FROM x\nCOPY [[\u{b}]] y\nVOLUME [[\u{b}]]\n",
        "FROM x\nCOPY a\u{a0}b c\n",
        "FROM x\nCOPY a\\\t\r<<EOF /d\nbody\nEOF\n",
        "FROM x\nCOPY a\\ <<EOF /d\n",
        // An escaped escape ends the line; text after a JSON array makes shell form.
        "FROM x\nWORKDIR C:\\\\\nENV X a\\\\\nRUN echo \\\\\\\nCMD [\"a\"] \\\n  # c\n  && b\n",
        "FROM x\nONBUILD RUN <<EOF\nbody\nEOF\nONBUILD COPY <<-A <<\"B\" /d/\n\ta\n\tA\nb\nB\n",
    ];
    for text in odd {
        let df = parse(text);
        assert_eq!(
            parse(&df.render()),
            df,
            "{text:?} rendered as {:?}",
            df.render()
        );
    }
}

proptest! {
    #[test]
    fn render_then_parse_is_identity(df in strategy::dockerfile()) {
        let text = df.render();
        let back = Dockerfile::parse(&text);
        prop_assert!(back.is_ok(), "{text}\n{back:?}");
        prop_assert_eq!(back.ok(), Some(df), "{}", text);
    }

    #[test]
    fn whatever_parses_round_trips(text in hostile_text()) {
        if let Ok(df) = Dockerfile::parse(&text) {
            let rendered = df.render();
            prop_assert_eq!(Dockerfile::parse(&rendered).ok(), Some(df), "{:?}", rendered);
        }
    }
}

/// Dockerfile-shaped text full of the characters that matter to the parser: quotes,
/// escapes, brackets, `<<`, `--`, `=`, `#`, blanks and line breaks.
fn hostile_text() -> impl Strategy<Value = String> {
    let keyword = prop_oneof![
        Just("FROM"),
        Just("RUN"),
        Just("COPY"),
        Just("ADD"),
        Just("ENV"),
        Just("ARG"),
        Just("LABEL"),
        Just("WORKDIR"),
        Just("EXPOSE"),
        Just("VOLUME"),
        Just("CMD"),
        Just("ENTRYPOINT"),
        Just("HEALTHCHECK"),
        Just("ONBUILD"),
        Just("SHELL"),
        Just("USER"),
        Just("# escape=`"),
        Just("# syntax=x"),
        Just("#"),
        Just(""),
    ];
    let word = prop_oneof![
        3 => "[a-c/.]{1,3}",
        2 => "(--|<<-?|[=\\\\`\"'\\[\\]$,{}#a-c]|EOF|CMD|NONE|RUN|\\[\"a\"\\]){0,4}",
    ];
    let sep = prop_oneof![
        Just(" "),
        Just("  "),
        Just("\t"),
        Just(" \\\n"),
        Just("\n"),
        Just(" `\n")
    ];
    let line = (keyword, proptest::collection::vec((sep, word), 0..5)).prop_map(|(k, parts)| {
        let mut line = k.to_string();
        for (sep, word) in parts {
            line.push_str(sep);
            line.push_str(&word);
        }
        line
    });
    let prefix = prop_oneof![Just(""), Just("# escape=`\n")];
    (prefix, proptest::collection::vec(line, 1..4))
        .prop_map(|(prefix, lines)| format!("{prefix}FROM x\n{}\n", lines.join("\n")))
}
