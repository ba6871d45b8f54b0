//! Expansion tests: the lexer against BuildKit's documented behaviour, and Docker's scoping
//! rules over whole Dockerfiles.

use std::collections::BTreeMap;

use super::*;
use crate::instruction::{Command, Run};

fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

fn x(word: &str) -> String {
    let lookup = vars(&[
        ("V", "val"),
        ("EMPTY", ""),
        ("SP", "a  b"),
        ("PATH", "/usr/bin"),
    ]);
    match expand_word(word, &lookup, '\\') {
        Ok(s) => s,
        Err(err) => panic!("{word:?}: {err}"),
    }
}

fn x_err(word: &str) -> String {
    let lookup = vars(&[("EMPTY", "")]);
    match expand_word(word, &lookup, '\\') {
        Err(SpecError::ExpansionAt {
            location,
            word: w,
            reason,
        }) => {
            assert_eq!(location, "expand_word");
            assert_eq!(w, word);
            reason
        }
        other => panic!("{word:?}: {other:?}"),
    }
}

#[test]
fn plain_references() {
    assert_eq!(x("$V"), "val");
    assert_eq!(x("${V}/x"), "val/x");
    assert_eq!(x("a$V-b"), "aval-b");
    assert_eq!(x("$UNSET|${UNSET}"), "|");
    assert_eq!(x("$"), "$");
    assert_eq!(x("a$/b"), "a$/b");
    assert_eq!(x("$PATH:/opt"), "/usr/bin:/opt");
}

#[test]
fn modifiers() {
    assert_eq!(x("${UNSET:-d}|${EMPTY:-d}|${V:-d}"), "d|d|val");
    assert_eq!(x("${UNSET-d}|${EMPTY-d}|${V-d}"), "d||val");
    assert_eq!(x("${UNSET:+a}|${EMPTY:+a}|${V:+a}"), "||a");
    assert_eq!(x("${UNSET+a}|${EMPTY+a}|${V+a}"), "|a|a");
    assert_eq!(x("${V:?oops}|${EMPTY?oops}"), "val|");
    assert_eq!(x("${UNSET:-${V}-x}"), "val-x");
    assert_eq!(x("${UNSET:-'q  w'}"), "q  w");
    assert_eq!(x("${V:+--flag=$V}"), "--flag=val");
}

#[test]
fn pattern_modifiers() {
    let lookup = vars(&[("F", "dir/sub/file.tar.gz")]);
    let e = |w: &str| expand_word(w, &lookup, '\\').unwrap();
    assert_eq!(e("${F#*/}"), "sub/file.tar.gz");
    assert_eq!(e("${F##*/}"), "file.tar.gz");
    assert_eq!(e("${F%.*}"), "dir/sub/file.tar");
    assert_eq!(e("${F%%.*}"), "dir/sub/file");
    assert_eq!(e("${F/sub/X}"), "dir/X/file.tar.gz");
    assert_eq!(e("${F//[.]/_}"), "dir/sub/file_tar_gz");
    assert_eq!(e("${F/nothing}"), "dir/sub/file.tar.gz");
}

#[test]
fn quotes_and_escapes() {
    assert_eq!(x("'$V'"), "$V");
    assert_eq!(x("\"$V\""), "val");
    assert_eq!(x("\"a 'b' \\\"c\\\" \\$V \\n\""), "a 'b' \"c\" $V \\n");
    assert_eq!(x("\\$V"), "$V");
    assert_eq!(x("a\\ b"), "a b");
    assert_eq!(x("it\\'s"), "it's");
    assert_eq!(x("'a'\"b\"c"), "abc");
    let lookup = vars(&[("V", "val")]);
    assert_eq!(expand_word("`$V\\$V", &lookup, '`').unwrap(), "$V\\val");
}

#[test]
fn errors_say_what_is_wrong() {
    assert_eq!(x_err("${UNSET:?set UNSET first}"), "UNSET: set UNSET first");
    assert_eq!(x_err("${EMPTY:?}"), "EMPTY: is not allowed to be empty");
    assert_eq!(x_err("${UNSET?}"), "UNSET: is not allowed to be unset");
    assert!(x_err("${V").contains("missing '}'"));
    assert!(x_err("${V:-x").contains("missing '}'"));
    assert!(x_err("${}").contains("bad substitution"));
    assert!(x_err("${:-x}").contains("bad substitution"));
    assert!(x_err("${V:x}").contains("unsupported modifier (:x)"));
    assert!(x_err("${V^}").contains("unsupported modifier (^)"));
    assert!(x_err("'open").contains("single quote"));
    assert!(x_err("\"open").contains("double quote"));
    assert!(x_err("${UNSET:-${X:?inner}}").contains("X: inner"));
}

#[test]
fn runaway_expansion_is_bounded() {
    let mut text = String::from("ARG A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        text.push_str(&format!("ARG A{i}=$A{p}$A{p}$A{p}$A{p}\n", p = i - 1));
    }
    text.push_str("FROM x\n");
    let err = Dockerfile::parse(&text)
        .unwrap()
        .expand(&BTreeMap::new())
        .unwrap_err();
    assert!(err.to_string().contains("longer than 1 MiB"), "{err}");
}

#[test]
fn field_splitting() {
    let lookup = vars(&[("PORTS", "80  443/tcp"), ("E", "")]);
    let words = |w: &str| expand_words(w, &lookup, '\\').unwrap();
    assert_eq!(words("$PORTS"), vec!["80", "443/tcp"]);
    assert_eq!(words("\"$PORTS\""), vec!["80  443/tcp"]);
    assert_eq!(words("$E"), Vec::<String>::new());
    assert_eq!(words("a\\ b c"), vec!["a b", "c"]);
}

#[test]
fn heredoc_content_strips_tabs() {
    let doc = Heredoc {
        delimiter: "EOF".into(),
        body: "\t\ta\n\tb\nc\t\n".into(),
        strip_tabs: true,
        expand: true,
    };
    assert_eq!(doc.content(), "a\nb\nc\t\n");
    assert_eq!(
        Heredoc {
            strip_tabs: false,
            ..doc.clone()
        }
        .content(),
        doc.body
    );
}

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const DOCKERFILE: &str = r#"ARG PY=3.12
ARG BASE=python:${PY}-slim
ARG UNUSED
FROM --platform=$BUILDPLATFORM ${BASE} AS build
ARG PY
ARG MODE=${MODE_DEFAULT:-release}
ARG EXTRA PORTS
ENV APP=/app HOME=/root
ENV A=1 B=$A CONF=${APP}/conf
WORKDIR ${APP}/src
RUN --mount=type=cache,target=$HOME/.cache echo $APP $PY
COPY --chown=${USER_ID:-1000} "${APP}/in" $CONF/
COPY <<-EOF <<"RAW" ${APP}/
	mode=${MODE} py=$PY extra=${EXTRA:+yes}
EOF
$NOT_EXPANDED
RAW
LABEL version="${PY}" "build mode"=$MODE
EXPOSE $PORTS 9000
USER ${UID:-1000}:${GID:-1000}
VOLUME ["$APP/data"]
STOPSIGNAL ${SIG:-SIGTERM}
CMD echo $APP
ONBUILD RUN echo $APP

FROM build AS test
ENV B=${B}-child
WORKDIR $CONF
RUN echo ${PY}

FROM ${BASE}
ARG PY
WORKDIR /x${APP}
"#;

fn decl(name: &str, value: Option<&str>) -> ArgDecl {
    ArgDecl {
        name: name.into(),
        default: value.map(str::to_string),
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn whole_dockerfile_scoping() {
    let df = Dockerfile::parse(DOCKERFILE).unwrap();
    let ex = df
        .expand(&args(&[
            ("PY", "3.13"),
            ("EXTRA", "1"),
            ("PORTS", "80 443"),
            ("BUILDPLATFORM", "linux/amd64"),
            ("NOT_DECLARED", "x"),
        ]))
        .unwrap();
    assert_eq!(
        ex.global_args,
        vec![
            decl("PY", Some("3.13")),
            decl("BASE", Some("python:3.13-slim")),
            decl("UNUSED", None),
        ]
    );
    let build = &ex.stages[0];
    assert_eq!(build.base, "python:3.13-slim");
    assert_eq!(build.platform.as_deref(), Some("linux/amd64"));
    let i = &build.instructions;
    assert_eq!(i[0], Instruction::Arg(vec![decl("PY", Some("3.13"))]));
    assert_eq!(i[1], Instruction::Arg(vec![decl("MODE", Some("release"))]));
    assert_eq!(
        i[2],
        Instruction::Arg(vec![
            decl("EXTRA", Some("1")),
            decl("PORTS", Some("80 443"))
        ])
    );
    // The pairs of one ENV see the variables as they were before it.
    assert_eq!(
        i[4],
        Instruction::Env(pairs(&[("A", "1"), ("B", ""), ("CONF", "/app/conf")]))
    );
    assert_eq!(i[5], Instruction::Workdir("/app/src".into()));
    let Instruction::Run(run) = &i[6] else {
        panic!("{:?}", i[6])
    };
    assert_eq!(
        run.mounts,
        vec!["type=cache,target=/root/.cache".to_string()]
    );
    assert_eq!(run.command, Command::Shell("echo $APP $PY".into()));
    let Instruction::Copy(copy) = &i[7] else {
        panic!("{:?}", i[7])
    };
    assert_eq!(copy.chown.as_deref(), Some("1000"));
    assert_eq!(copy.sources, vec!["/app/in".to_string()]);
    assert_eq!(copy.dest, "/app/conf/");
    let Instruction::Copy(docs) = &i[8] else {
        panic!("{:?}", i[8])
    };
    assert_eq!(
        docs.sources,
        vec!["<<-EOF".to_string(), "<<\"RAW\"".to_string()]
    );
    assert_eq!(docs.dest, "/app/");
    assert_eq!(docs.heredocs[0].body, "mode=release py=3.13 extra=yes\n");
    assert_eq!(docs.heredocs[1].body, "$NOT_EXPANDED\n");
    assert_eq!(
        i[9],
        Instruction::Label(pairs(&[("version", "3.13"), ("build mode", "release")]))
    );
    assert_eq!(
        i[10],
        Instruction::Expose(vec!["80".into(), "443".into(), "9000".into()])
    );
    assert_eq!(i[11], Instruction::User("1000:1000".into()));
    assert_eq!(i[12], Instruction::Volume(vec!["/app/data".into()]));
    assert_eq!(i[13], Instruction::StopSignal("SIGTERM".into()));
    // CMD and ONBUILD are left alone.
    assert_eq!(i[14], df.stages[0].instructions[14]);
    assert_eq!(i[15], df.stages[0].instructions[15]);

    // A stage on a stage inherits its ENV, not its ARGs.
    let test = &ex.stages[1];
    assert_eq!(test.base, "build");
    assert_eq!(
        test.instructions[0],
        Instruction::Env(pairs(&[("B", "-child")]))
    );
    assert_eq!(
        test.instructions[1],
        Instruction::Workdir("/app/conf".into())
    );
    assert_eq!(
        test.instructions[2],
        Instruction::Run(Run::shell("echo ${PY}"))
    );

    // A stage on an image starts empty; `ARG PY` imports the global value.
    let last = &ex.stages[2];
    assert_eq!(
        last.instructions[0],
        Instruction::Arg(vec![decl("PY", Some("3.13"))])
    );
    assert_eq!(last.instructions[1], Instruction::Workdir("/x".into()));
}

#[test]
fn defaults_without_build_args_and_base_env() {
    let text = "ARG V=1\nFROM img:$V\nENV PATH=/opt/bin:$PATH\nARG V\nWORKDIR /w$V\n";
    let df = Dockerfile::parse(text).unwrap();
    let ex = df
        .expand_with_base_env(&BTreeMap::new(), &|base| {
            assert_eq!(base, "img:1");
            vec![("PATH".to_string(), "/usr/bin".to_string())]
        })
        .unwrap();
    assert_eq!(ex.stages[0].base, "img:1");
    assert_eq!(
        ex.stages[0].instructions[0],
        Instruction::Env(pairs(&[("PATH", "/opt/bin:/usr/bin")]))
    );
    assert_eq!(
        ex.stages[0].instructions[2],
        Instruction::Workdir("/w1".into())
    );
    // Global ARGs are not visible in a stage until declared there; a later ARG or ENV of a
    // name wins.
    let df =
        Dockerfile::parse("ARG V=1\nFROM x\nWORKDIR /w$V\nENV V=e\nARG V=a\nUSER $V\n").unwrap();
    let ex = df.expand(&BTreeMap::new()).unwrap();
    assert_eq!(
        ex.stages[0].instructions[0],
        Instruction::Workdir("/w".into())
    );
    assert_eq!(ex.stages[0].instructions[3], Instruction::User("a".into()));
}

#[test]
fn errors_name_the_instruction() {
    let text = "FROM x AS app\nENV A=1\nCOPY [\"${SRC:?pass --build-arg SRC}\", \"/d\"]\n";
    let df = Dockerfile::parse(text).unwrap();
    match df.expand(&BTreeMap::new()) {
        Err(SpecError::ExpansionAt {
            location,
            word,
            reason,
        }) => {
            assert_eq!(location, "stage 1 (app), instruction 2 (COPY)");
            assert_eq!(word, "${SRC:?pass --build-arg SRC}");
            assert_eq!(reason, "SRC: pass --build-arg SRC");
        }
        other => panic!("{other:?}"),
    }
    let df = Dockerfile::parse("ARG B\nFROM ${B:?set-B}\n").unwrap();
    let err = df.expand(&BTreeMap::new()).unwrap_err().to_string();
    assert_eq!(
        err,
        "stage 1 FROM: cannot expand variables in \"${B:?set-B}\": B: set-B"
    );
    let df = Dockerfile::parse("ARG B=${X:?}\nFROM x\n").unwrap();
    let err = df.expand(&BTreeMap::new()).unwrap_err().to_string();
    assert!(err.starts_with("global ARG B:"), "{err}");
}

/// BuildKit's automatic platform arguments: global (usable in `FROM`), visible in a stage
/// only after a bare `ARG`, linux/amd64 unless a build argument says otherwise.
#[test]
fn platform_arguments_are_global_and_need_a_bare_arg_in_a_stage() {
    let df = Dockerfile::parse(
        "ARG TARGETARCH\nFROM --platform=$BUILDPLATFORM base-$TARGETOS-$TARGETARCH$TARGETVARIANT\n\
         COPY dist/$TARGETARCH/app /before\nARG TARGETARCH\nARG TARGETPLATFORM BUILDARCH\n\
         COPY dist/$TARGETARCH/app /$TARGETPLATFORM/$BUILDARCH\n",
    )
    .unwrap();
    let ex = df.expand(&BTreeMap::new()).unwrap();
    assert_eq!(ex.global_args, vec![decl("TARGETARCH", Some("amd64"))]);
    let stage = &ex.stages[0];
    assert_eq!(stage.base, "base-linux-amd64");
    assert_eq!(stage.platform.as_deref(), Some("linux/amd64"));
    let copies: Vec<(Vec<String>, String)> = stage
        .instructions
        .iter()
        .filter_map(|i| match i {
            Instruction::Copy(c) => Some((c.sources.clone(), c.dest.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        copies,
        vec![
            (vec!["dist//app".to_string()], "/before".to_string()),
            (
                vec!["dist/amd64/app".to_string()],
                "/linux/amd64/amd64".to_string()
            ),
        ]
    );
    // A build argument overrides the automatic value.
    let ex = df.expand(&args(&[("TARGETARCH", "arm64")])).unwrap();
    assert_eq!(ex.stages[0].base, "base-linux-arm64");
}
