//! Proptest strategies that generate valid [`Dockerfile`] models: every model they produce
//! is one the parser could have produced, so `parse(render(df)) == df` must hold for it.
//!
//! Invariants kept: raw words hold no unquoted whitespace, `COPY` paths with whitespace are in
//! JSON form, commands are not empty, shell text does not start with `[` or end with an
//! escape character, here-document bodies never contain their delimiter line, flags appear
//! only on the instructions that take them.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::instruction::{
    ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction, Run, Stage,
};

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./:@%+,$}{-]{0,8}[a-zA-Z0-9_/]"
}

fn quoted() -> impl Strategy<Value = String> {
    prop_oneof![
        "'[a-z $\"]{0,6}'",
        "\"[a-z '$]{0,6}\"",
        "[a-z]{1,3}'[a-z ]{0,4}'[a-z]{0,2}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![4 => word(), 2 => quoted(), 1 => Just(String::new())]
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,6}"
}

/// A decoded flag value: anything on one line.
fn flag_value() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9=,/.]{1,12}", 1 => "[a-z =,/\"'\\\\$]{0,10}"]
}

fn shell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,6}( [a-zA-Z0-9_./'\"=$\\\\-]{0,6}[a-z0-9]){0,4}",
        // An escaped escape at the end (`dir C:\\`) ends the line.
        1 => "[a-z]{1,6} [a-zA-Z0-9:]{0,6}\\\\\\\\",
        // Text after a JSON array makes shell form.
        1 => "\\[\"[a-z]{1,4}\"\\] [#&|] [a-z]{1,4}",
    ]
}

fn text_line() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_$.-]{1,8}( [a-z]{1,4}){0,2}"
}

fn any_strings(min: usize) -> impl Strategy<Value = Vec<String>> {
    vec(".{0,8}", min..4)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        vec(".{0,8}", 1..4).prop_map(Command::Exec),
        shell_text().prop_map(Command::Shell),
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        4 => vec((name(), value()), 1..4),
        1 => (name(), "[a-z]{1,5}( [a-z]{1,5}){1,3}").prop_map(|p| vec![p]),
    ]
}

fn args() -> impl Strategy<Value = Vec<ArgDecl>> {
    vec(
        (name(), option::of(value())).prop_map(|(name, default)| ArgDecl { name, default }),
        1..3,
    )
}

/// A path for COPY/VOLUME: a plain word, or one with a space (JSON form only).
fn path() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-zA-Z0-9_.*$-]{0,6}[a-z/]", 1 => "[a-z]{1,4} [a-z]{1,4}"]
}

/// Here-documents and the shell text that names them.
fn heredocs() -> impl Strategy<Value = (String, Vec<Heredoc>)> {
    let one = (
        0..4u8,
        "EOF|END|DATA",
        vec("\t{0,2}[a-z $\"]{0,10}\r?\n", 0..4),
    );
    (vec(one, 1..3), "cat|python3 -|sh -s").prop_map(|(docs, program)| {
        let mut words = Vec::new();
        let mut out = Vec::new();
        for (i, (form, delimiter, lines)) in docs.into_iter().enumerate() {
            let delimiter = format!("{delimiter}{i}");
            let (written, strip_tabs, expand) = match form {
                0 => (format!("<<{delimiter}"), false, true),
                1 => (format!("<<-{delimiter}"), true, true),
                2 => (format!("<<\"{delimiter}\""), false, false),
                _ => (format!("<<'{delimiter}'"), false, false),
            };
            words.push(written);
            out.push(Heredoc {
                delimiter,
                body: lines.concat(),
                strip_tabs,
                expand,
            });
        }
        (format!("{program} {}", words.join(" ")), out)
    })
}

fn run() -> impl Strategy<Value = Run> {
    let flags = (
        vec(flag_value(), 0..3),
        option::of(prop_oneof![Just("default"), Just("none"), Just("host")]),
        option::of(prop_oneof![Just("sandbox"), Just("insecure")]),
    );
    let body = prop_oneof![
        3 => command().prop_map(|c| (c, Vec::new())),
        1 => heredocs().prop_map(|(text, docs)| (Command::Shell(text), docs)),
    ];
    (flags, body).prop_map(|((mounts, network, security), (command, heredocs))| Run {
        command,
        mounts,
        network: network.map(str::to_string),
        security: security.map(str::to_string),
        heredocs,
    })
}

fn copy() -> impl Strategy<Value = Copy> {
    let common = (
        option::of(flag_value()),
        option::of(flag_value()),
        any::<bool>(),
        vec("[a-z*.]{1,6}", 0..3),
    );
    let add_only = (
        option::of(flag_value()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    let copy_only = (option::of(flag_value()), any::<bool>());
    let paths = prop_oneof![
        3 => (vec(path(), 1..3), path(), any::<bool>()).prop_map(|(sources, dest, json)| {
            let spaced = sources.iter().chain([&dest]).any(|p| p.contains(' '));
            (sources, dest, json || spaced, Vec::new())
        }),
        1 => (heredocs(), path().prop_filter("plain", |p| !p.contains(' '))).prop_map(
            |((text, docs), dest)| {
                let sources = text.split(' ').skip(1).map(str::to_string).collect();
                (sources, dest, false, docs)
            }
        ),
    ];
    (any::<bool>(), common, add_only, copy_only, paths).prop_map(
        |(
            add,
            (chown, chmod, link, excludes),
            (checksum, keep, unpack),
            (from, parents),
            paths,
        )| {
            let (sources, dest, json_form, heredocs) = paths;
            let mut copy = Copy::new(sources, dest);
            copy.add = add;
            copy.json_form = json_form;
            copy.chown = chown;
            copy.chmod = chmod;
            copy.link = link;
            copy.excludes = excludes;
            copy.heredocs = heredocs;
            if add {
                copy.checksum = checksum;
                copy.keep_git_dir = keep;
                copy.unpack = unpack;
            } else {
                copy.from = from;
                copy.parents = parents;
            }
            copy
        },
    )
}

fn healthcheck() -> impl Strategy<Value = Healthcheck> {
    let duration = || option::of(prop_oneof![Just("30s"), Just("1m30s"), Just("500ms")]);
    prop_oneof![
        1 => Just(Healthcheck::None),
        3 => (command(), duration(), duration(), duration(), duration(), option::of(0..10u32))
            .prop_map(|(command, interval, timeout, start_period, start_interval, retries)| {
                Healthcheck::Check {
                    command,
                    interval: interval.map(str::to_string),
                    timeout: timeout.map(str::to_string),
                    start_period: start_period.map(str::to_string),
                    start_interval: start_interval.map(str::to_string),
                    retries,
                }
            }),
    ]
}

/// Any instruction but `ONBUILD` and `MAINTAINER`, without here-documents.
fn simple_instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        run().prop_map(|mut r| {
            if !r.heredocs.is_empty() {
                r = Run::shell("true");
            }
            Instruction::Run(r)
        }),
        copy()
            .prop_filter_map("no heredocs", |c| c.heredocs.is_empty().then_some(c))
            .prop_map(Instruction::Copy),
        pairs().prop_map(Instruction::Env),
        args().prop_map(Instruction::Arg),
        text_line().prop_map(Instruction::Workdir),
        text_line().prop_map(Instruction::User),
        pairs().prop_map(Instruction::Label),
        vec("[0-9]{2,4}(/tcp|/udp)?|[$][{]P[}]", 1..3).prop_map(Instruction::Expose),
        vec(path(), 1..3).prop_map(Instruction::Volume),
        any_strings(1).prop_map(Instruction::Shell),
        command().prop_map(Instruction::Entrypoint),
        prop_oneof![command(), Just(Command::Exec(Vec::new()))].prop_map(Instruction::Cmd),
        "SIG[A-Z]{3,4}|[0-9]{1,2}".prop_map(Instruction::StopSignal),
        healthcheck().prop_map(Instruction::Healthcheck),
    ]
}

/// Any instruction a stage can hold.
pub(crate) fn instruction() -> impl Strategy<Value = Instruction> {
    prop_oneof![
        8 => simple_instruction(),
        2 => run().prop_map(Instruction::Run),
        2 => copy().prop_map(Instruction::Copy),
        1 => simple_instruction().prop_map(|i| Instruction::Onbuild(Box::new(i))),
        1 => prop_oneof![run().prop_map(Instruction::Run), copy().prop_map(Instruction::Copy)]
            .prop_map(|i| Instruction::Onbuild(Box::new(i))),
        1 => text_line().prop_map(Instruction::Maintainer),
    ]
}

/// A whole valid Dockerfile model.
pub(crate) fn dockerfile() -> impl Strategy<Value = Dockerfile> {
    let stage = (
        "[a-z0-9]{1,6}(:[a-z0-9.]{1,5})?|scratch|[$][{]BASE[}]",
        option::of(prop_oneof![Just("linux/amd64"), Just("$BUILDPLATFORM")]),
        any::<bool>(),
        vec(instruction(), 0..6),
    );
    (
        prop_oneof![Just('\\'), Just('`')],
        option::of("docker/dockerfile:1(\\.[0-9])?"),
        vec((name(), option::of(value())), 0..3),
        vec(stage, 1..4),
    )
        .prop_map(|(escape, syntax, global_args, stages)| Dockerfile {
            escape,
            syntax,
            global_args: global_args
                .into_iter()
                .map(|(name, default)| ArgDecl { name, default })
                .collect(),
            stages: stages
                .into_iter()
                .enumerate()
                .map(|(i, (base, platform, named, instructions))| Stage {
                    base,
                    platform: platform.map(str::to_string),
                    name: named.then(|| format!("stage-{i}")),
                    instructions,
                })
                .collect(),
        })
}
