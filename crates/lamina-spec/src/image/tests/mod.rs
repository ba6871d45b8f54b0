//! The builder's rendered text against the Daytona SDK's, its path rules and its errors.

mod daytona;
mod local;
mod pip;
mod props;
mod text;

use std::path::{Path, PathBuf};

use super::*;
use crate::instruction::{Command, Copy};

const SLIM_312: &str = "FROM python:3.12.10-slim-bookworm\n\
                        RUN apt-get update\n\
                        RUN apt-get install -y gcc gfortran build-essential\n\
                        RUN pip install --upgrade pip\n\
                        RUN echo 'debconf debconf/frontend select Noninteractive' | \
                        debconf-set-selections\n";

/// `Image::scratch()` with its context root at `dir`.
fn scratch_in(dir: &Path) -> Image {
    Image::scratch().unwrap().context_dir(dir).unwrap()
}

/// The text after the `FROM scratch` line.
fn steps(image: &Image) -> String {
    image
        .dockerfile()
        .strip_prefix("FROM scratch\n")
        .expect("starts from scratch")
        .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Asserts `result` is an `InvalidArgument` from `method` about `value`.
fn assert_invalid(result: Result<Image>, method: &str, value: &str) {
    match result {
        Err(SpecError::InvalidArgument {
            method: m,
            value: v,
            ..
        }) => {
            assert_eq!((m, v.as_str()), (method, value));
        }
        other => panic!("expected InvalidArgument from {method} about {value:?}, got {other:?}"),
    }
}

/// The rendered text reads back as the same definition.
fn assert_round_trips(image: &Image) {
    let back = Dockerfile::parse(&image.dockerfile()).expect("rendered text parses");
    assert_eq!(&back, image.definition());
}

#[test]
fn debian_slim_matches_the_sdk() {
    let image = Image::debian_slim(Some("3.12")).unwrap();
    assert_eq!(image.dockerfile(), SLIM_312);
    assert_eq!(Image::debian_slim("3.12").unwrap(), image);
    let newest = Image::debian_slim(None).unwrap().dockerfile();
    assert!(newest.starts_with("FROM python:3.13.3-slim-bookworm\nRUN apt-get update\n"));
    let exact = Image::debian_slim("3.11.4").unwrap().dockerfile();
    assert!(
        exact.starts_with("FROM python:3.11.4-slim-bookworm\n"),
        "{exact}"
    );
    assert_round_trips(&image);
}

#[test]
fn debian_slim_rejects_bad_versions() {
    assert!(matches!(
        Image::debian_slim("2.7"),
        Err(SpecError::InvalidPythonVersion { version }) if version == "2.7"
    ));
    assert!(matches!(
        Image::debian_slim("3.8"),
        Err(SpecError::UnsupportedPythonVersion { version, .. }) if version == "3.8"
    ));
}

#[test]
fn base_and_scratch() {
    assert_eq!(
        Image::base("ubuntu:22.04").unwrap().dockerfile(),
        "FROM ubuntu:22.04\n"
    );
    assert_eq!(Image::base("alpine").unwrap().dockerfile(), "FROM alpine\n");
    assert_eq!(Image::scratch().unwrap().dockerfile(), "FROM scratch\n");
    assert_invalid(Image::base("Ubuntu"), "base", "Ubuntu");
    assert_invalid(Image::base(""), "base", "");
    assert_invalid(Image::base("ubuntu 22.04"), "base", "ubuntu 22.04");
}

#[test]
fn context_root_defaults_to_the_current_directory() {
    let image = Image::scratch().unwrap();
    assert_eq!(
        image.context().root(),
        paths::normalize(&std::env::current_dir().unwrap())
    );
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("f"), "");
    assert!(matches!(
        Image::scratch().unwrap().context_dir(dir.path().join("f")),
        Err(SpecError::NotADirectory { path }) if path == dir.path().join("f")
    ));
    assert!(matches!(
        Image::scratch()
            .unwrap()
            .context_dir(dir.path().join("nope")),
        Err(SpecError::LocalPathMissing { .. })
    ));
}

#[test]
fn from_dockerfile_uses_its_folder_as_context() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker/Dockerfile");
    write(
        &file,
        "FROM alpine:3.20 AS base\nCOPY app /app\nFROM base\nRUN ls /app\n",
    );
    let image = Image::from_dockerfile(&file)
        .unwrap()
        .workdir("/srv")
        .unwrap();
    assert_eq!(image.context().root(), dir.path().join("docker"));
    assert_eq!(image.definition().stages.len(), 2);
    // A Dockerfile stays one after builder steps; builder images are Builder.
    assert_eq!(image.origin(), crate::Origin::Dockerfile);
    assert_eq!(Image::scratch().unwrap().origin(), crate::Origin::Builder);
    assert_eq!(
        image.dockerfile(),
        "FROM alpine:3.20 AS base\nCOPY app /app\nFROM base\nRUN ls /app\nWORKDIR /srv\n"
    );
    let moved = image.context_dir(dir.path()).unwrap();
    assert_eq!(moved.context().root(), dir.path());
    assert!(matches!(
        Image::from_dockerfile(dir.path().join("nope")),
        Err(SpecError::LocalPathMissing { .. })
    ));
    assert!(matches!(
        Image::from_dockerfile(dir.path()),
        Err(SpecError::NotAFile { .. })
    ));
}

#[test]
fn dockerfile_commands_append_and_take_a_context() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("vendor/lib.tar"), "");
    let image = scratch_in(dir.path())
        .run_commands(["true"])
        .unwrap()
        .dockerfile_commands(
            [
                "RUN echo one",
                "COPY lib.tar /lib/",
                "COPY --from=builder /x /y",
            ],
            Some(Path::new("vendor")),
        )
        .unwrap();
    assert_eq!(
        steps(&image),
        "RUN true\nRUN echo one\nCOPY lib.tar /lib/\nCOPY --from=builder /x /y\n"
    );
    let roots: Vec<StepRef> = image.context().step_roots().map(|(s, _)| s).collect();
    assert_eq!(
        roots,
        [StepRef {
            stage: 0,
            instruction: 2
        }]
    );
    assert_eq!(
        image.context().root_for(roots[0]),
        dir.path().join("vendor")
    );

    let plain = scratch_in(dir.path())
        .dockerfile_commands(["COPY a /a"], None)
        .unwrap();
    assert_eq!(plain.context().step_roots().count(), 0);
    let Instruction::Copy(copy) = &plain.definition().stages[0].instructions[0] else {
        panic!("a COPY")
    };
    assert_eq!(copy, &Copy::new(vec!["a".into()], "/a"));
}

#[test]
fn dockerfile_commands_heredoc_and_new_stage() {
    let image = Image::scratch()
        .unwrap()
        .dockerfile_commands(
            [
                "RUN <<EOF\necho hi\nEOF",
                "FROM alpine AS final",
                "USER app",
            ],
            None,
        )
        .unwrap();
    assert_eq!(image.definition().stages.len(), 2);
    assert_eq!(image.definition().stages[1].base, "alpine");
    assert_eq!(
        image.dockerfile(),
        "FROM scratch\nRUN <<EOF\necho hi\nEOF\nFROM alpine AS final\nUSER app\n"
    );
    assert_round_trips(&image);
}

#[test]
fn dockerfile_commands_errors_name_the_line() {
    let result = Image::scratch()
        .unwrap()
        .dockerfile_commands(["RUN ok", "", "BOGUS x"], None);
    match result {
        Err(SpecError::DockerfileSyntax { file, line, .. }) => {
            assert_eq!(file, PathBuf::from("dockerfile_commands"));
            assert_eq!(line, 3);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Image::scratch()
            .unwrap()
            .dockerfile_commands(["RUN x"], Some(Path::new("/nonexistent/dir"))),
        Err(SpecError::LocalPathMissing { .. })
    ));
}

#[test]
fn steps_need_a_stage() {
    let empty = Image::from_parts(Dockerfile::default(), Context::new("/"));
    assert_invalid(empty.workdir("/x"), "workdir", "");
}

#[test]
fn a_long_chain_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("requirements.txt"), "x\n");
    write(&dir.path().join("app/main.py"), "");
    let image = Image::debian_slim("3.11")
        .unwrap()
        .context_dir(dir.path())
        .unwrap()
        .apt_install(["git"])
        .unwrap()
        .pip_install_from_requirements("requirements.txt", &PipOptions::default())
        .unwrap()
        .add_local_dir("app", "/app")
        .unwrap()
        .env([("MODE", "prod it's")])
        .unwrap()
        .workdir("/app")
        .unwrap()
        .cmd(["python", "main.py"])
        .unwrap();
    assert_round_trips(&image);
}

#[test]
fn digest_does_not_depend_on_the_folder() {
    let make = |dir: &Path, content: &str| {
        write(&dir.join("ctx/app.py"), content);
        write(&dir.join("shared/x.txt"), "x");
        scratch_in(&dir.join("ctx"))
            .add_local_file("app.py", "/app/")
            .unwrap()
            .add_local_file("../shared/x.txt", "/x")
            .unwrap()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = make(a.path(), "print(1)\n");
    let second = make(b.path(), "print(1)\n");
    assert_eq!(first.dockerfile(), second.dockerfile());
    assert_eq!(first.digest().unwrap(), second.digest().unwrap());
    let changed = make(b.path(), "print(2)\n");
    assert_ne!(first.digest().unwrap(), changed.digest().unwrap());
}
