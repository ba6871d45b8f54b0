//! Each expected string is what BuildKit's Dockerfile frontend writes for the same
//! instruction: moby/buildkit frontend/dockerfile/dockerfile2llb/convert.go (the
//! `dispatch*` functions and `commitToHistory`), convert_copy.go (`dispatchCopy`) and
//! convert_expose.go (`dispatchExpose`).

use std::collections::BTreeMap;

use lamina_spec::{Dockerfile, Instruction};

use super::*;

/// The history of every instruction of the last stage of `text`, built on `scratch` (ARGs
/// tracked as the executor tracks them).
fn history(text: &str) -> Vec<Option<String>> {
    let df = Dockerfile::parse(text)
        .unwrap()
        .expand(&BTreeMap::new())
        .unwrap();
    let mut config = ImageConfig::scratch();
    let mut cmd_set = false;
    let mut args: Vec<(String, Option<String>)> = Vec::new();
    let stage = df.stages.last().unwrap();
    stage
        .instructions
        .iter()
        .map(|instruction| {
            match instruction {
                Instruction::Arg(decls) => {
                    for d in decls {
                        args.push((d.name.clone(), d.default.clone()));
                    }
                }
                Instruction::Run(_) | Instruction::Copy(_) => {}
                other => {
                    config.apply(other, '\\', &mut cmd_set);
                }
            }
            created_by(instruction, &config, &args)
        })
        .collect()
}

fn one(instruction: &str) -> String {
    history(&format!("FROM scratch\n{instruction}\n"))
        .pop()
        .flatten()
        .unwrap()
}

#[test]
fn env_and_label_are_key_equals_value_after_quote_removal() {
    assert_eq!(one("ENV A=1 B=\"two words\""), "ENV A=1 B=two words");
    // The legacy form becomes the key=value form.
    assert_eq!(one("ENV K v w"), "ENV K=v w");
    assert_eq!(
        one("LABEL org.example.name=app description=\"a b\""),
        "LABEL org.example.name=app description=a b"
    );
}

#[test]
fn run_lists_the_shell_argv_and_the_stage_args() {
    assert_eq!(one("RUN echo hi"), "RUN /bin/sh -c echo hi # buildkit");
    assert_eq!(
        one("RUN [\"echo\", \"two words\"]"),
        "RUN echo two words # buildkit"
    );
    let h = history("FROM scratch\nARG VERSION=1.0\nARG EMPTY\nRUN echo $VERSION\n");
    assert_eq!(h[0].as_deref(), Some("ARG VERSION=1.0"));
    assert_eq!(h[1].as_deref(), Some("ARG EMPTY"));
    assert_eq!(
        h[2].as_deref(),
        Some("RUN |2 VERSION=1.0 EMPTY= /bin/sh -c echo $VERSION # buildkit")
    );
    let h = history("FROM scratch\nSHELL [\"/bin/bash\", \"-ec\"]\nRUN <<EOF\necho a\nEOF\n");
    assert_eq!(
        h[1].as_deref(),
        Some("RUN /bin/bash -ec echo a\n # buildkit")
    );
}

#[test]
fn copy_and_add_list_flags_sources_and_destination() {
    assert_eq!(
        one("COPY --chown=1000:1001 --chmod=0755 app.sh conf/ /srv/"),
        "COPY --chown=1000:1001 --chmod=0755 app.sh conf/ /srv/ # buildkit"
    );
    // --from, --link and --exclude are not written.
    let h = history(
        "FROM scratch AS build\nFROM scratch\nCOPY --from=build --link /out/bin.txt /app/\n",
    );
    assert_eq!(h[0].as_deref(), Some("COPY /out/bin.txt /app/ # buildkit"));
    assert_eq!(
        one("COPY <<EOF /etc/motd\nhello\nEOF"),
        "COPY <<EOF /etc/motd # buildkit"
    );
    assert_eq!(one("ADD a.txt /a.txt"), "ADD a.txt /a.txt # buildkit");
}

#[test]
fn config_steps_use_go_formatting() {
    let h = history(
        "FROM scratch\nWORKDIR app\nWORKDIR ../srv/./x\nUSER 1000:1000\nEXPOSE 8080 53/UDP\n\
         VOLUME /data /logs\nSHELL [\"/bin/sh\", \"-ec\"]\nSTOPSIGNAL SIGINT\n\
         CMD echo \"hi\"\nENTRYPOINT [\"/app.sh\", \"tab\\there\"]\nMAINTAINER someone\n",
    );
    let h: Vec<&str> = h.iter().map(|t| t.as_deref().unwrap()).collect();
    assert_eq!(
        h,
        [
            "WORKDIR /app",
            "WORKDIR /srv/x",
            "USER 1000:1000",
            "EXPOSE [53/udp 8080/tcp]",
            "VOLUME [/data /logs]",
            "SHELL [/bin/sh -ec]",
            "STOPSIGNAL SIGINT",
            "CMD [\"/bin/sh\" \"-ec\" \"echo \\\"hi\\\"\"]",
            "ENTRYPOINT [\"/app.sh\" \"tab\\there\"]",
            "MAINTAINER someone",
        ]
    );
}

#[test]
fn healthcheck_is_the_struct_with_go_durations() {
    assert_eq!(
        one("HEALTHCHECK --interval=1m30s --timeout=5s --retries=3 CMD curl -f http://localhost/"),
        "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/] Interval:1m30s Timeout:5s \
         StartPeriod:0s StartInterval:0s Retries:3}"
    );
    assert_eq!(
        one("HEALTHCHECK NONE"),
        "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"
    );
}

#[test]
fn onbuild_writes_no_history() {
    assert_eq!(
        history("FROM scratch\nONBUILD RUN echo hi\n"),
        [None::<String>]
    );
}

#[test]
fn the_default_command_says_it_is_the_default() {
    let argv = ["sleep".to_string(), "infinity".to_string()];
    assert_eq!(
        default_cmd_text(&argv),
        "CMD [\"sleep\" \"infinity\"] # lamina: default command for sandbox images"
    );
}

#[test]
fn go_durations_and_quotes() {
    let cases = [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
    ];
    for (nanos, text) in cases {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
    assert_eq!(go_quote("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\x01é\"");
    assert_eq!(go_quoted_list(&[]), "[]");
}
