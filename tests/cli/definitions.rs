//! `lamina dockerfile`, `lamina digest` and `lamina check` on TOML definitions and Dockerfiles.

use std::path::Path;

use crate::support::{lamina_err, lamina_ok, write_tree};

const APP_TOML: &str = r#"[image]
debian_slim = "3.12"

[[step]]
pip_install = ["requests", "numpy"]

[[step]]
run = "apt-get update && apt-get install -y git"

[[step]]
workdir = "/home/app"

[[step]]
env = { APP_MODE = "production run" }

[[step]]
add_local_file = { local = "app.py", remote = "/home/app/" }

[[step]]
entrypoint = ["python", "app.py"]
"#;

fn write_app(dir: &Path) {
    write_tree(
        dir,
        &[("lamina.toml", APP_TOML), ("app.py", "print('hello')\n")],
    );
}

#[test]
fn dockerfile_renders_the_sdk_text() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let text = lamina_ok(dir.path(), &["dockerfile", "lamina.toml"]);
    assert_eq!(
        text,
        "FROM python:3.12.10-slim-bookworm\n\
         RUN apt-get update\n\
         RUN apt-get install -y gcc gfortran build-essential\n\
         RUN pip install --upgrade pip\n\
         RUN echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections\n\
         RUN python -m pip install numpy requests\n\
         RUN apt-get update && apt-get install -y git\n\
         WORKDIR /home/app\n\
         ENV APP_MODE='production run'\n\
         COPY [\"app.py\", \"/home/app/app.py\"]\n\
         ENTRYPOINT [\"python\", \"app.py\"]\n"
    );
}

#[test]
fn digest_ignores_location_and_mtimes_but_not_content() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    write_app(first.path());
    write_app(&second.path().join("nested/checkout"));

    let digest = lamina_ok(first.path(), &["digest", "lamina.toml"]);
    assert!(
        digest.starts_with("blake3:") && digest.trim().len() == 7 + 64,
        "{digest}"
    );
    // Same definition elsewhere, named by absolute path from another working directory.
    let elsewhere = second.path().join("nested/checkout/lamina.toml");
    assert_eq!(
        lamina_ok(first.path(), &["digest", elsewhere.to_str().unwrap()]),
        digest
    );

    // New mtime, same bytes: same digest.
    let app = first.path().join("app.py");
    let file = std::fs::File::options().write(true).open(&app).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(lamina_ok(first.path(), &["digest", "lamina.toml"]), digest);

    // One byte changed: new digest.
    std::fs::write(&app, "print('hellO')\n").unwrap();
    assert_ne!(lamina_ok(first.path(), &["digest", "lamina.toml"]), digest);
}

#[test]
fn check_accepts_a_directory_holding_a_definition() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path());
    let out = lamina_ok(dir.path(), &["check", "."]);
    assert!(out.starts_with("ok: ."), "{out}");
    assert!(out.contains("1 stage, 10 instructions"), "{out}");
}

#[test]
fn bad_python_version_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("lamina.toml", "[image]\ndebian_slim = \"2.7\"\n")],
    );
    let err = lamina_err(dir.path(), &["check", "lamina.toml"]);
    assert!(err.contains("lamina.toml:2:"), "{err}");
    assert!(err.contains("'2.7'"), "{err}");
}

#[test]
fn missing_local_file_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("lamina.toml", APP_TOML)]);
    let err = lamina_err(dir.path(), &["check", "lamina.toml"]);
    assert!(err.contains("app.py"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

const MULTI_STAGE: &str = "# syntax=docker/dockerfile:1\n\
ARG RUST_VERSION=1.85\n\
FROM rust:${RUST_VERSION}-slim AS build\n\
WORKDIR /src\n\
COPY Cargo.toml src/ ./\n\
RUN <<EOF\n\
set -e\n\
cargo build --release\n\
EOF\n\
\n\
FROM debian:bookworm-slim\n\
COPY --from=build /src/target/release/app /usr/local/bin/app\n\
# comments and continuations are dropped from the canonical form\n\
ENV PATH=/usr/local/bin:$PATH \\\n    \
    RUST_LOG=info\n\
CMD [\"app\"]\n";

#[test]
fn dockerfile_definitions_parse_render_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[
            ("Dockerfile", MULTI_STAGE),
            ("Cargo.toml", "[package]\n"),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    let rendered = lamina_ok(dir.path(), &["dockerfile", "Dockerfile"]);
    assert!(
        rendered.contains("FROM rust:${RUST_VERSION}-slim AS build\n"),
        "{rendered}"
    );
    assert!(
        rendered.contains("RUN <<EOF\nset -e\ncargo build --release\nEOF\n"),
        "{rendered}"
    );
    assert!(!rendered.contains("# comments"), "{rendered}");
    let out = lamina_ok(dir.path(), &["check", "Dockerfile"]);
    assert!(out.contains("2 stages"), "{out}");

    // The canonical rendering is itself a Dockerfile with the same digest.
    let digest = lamina_ok(dir.path(), &["digest", "Dockerfile"]);
    std::fs::write(dir.path().join("Dockerfile"), &rendered).unwrap();
    assert_eq!(lamina_ok(dir.path(), &["digest", "Dockerfile"]), digest);

    // A source the context does not hold fails the check and names the source.
    std::fs::remove_file(dir.path().join("Cargo.toml")).unwrap();
    let err = lamina_err(dir.path(), &["check", "Dockerfile"]);
    assert!(err.contains("Cargo.toml"), "{err}");
}

#[test]
fn dockerfile_syntax_errors_carry_the_line_number() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(
        dir.path(),
        &[("Dockerfile", "FROM alpine\nRUN true\nFROBNICATE now\n")],
    );
    let err = lamina_err(dir.path(), &["check", "Dockerfile"]);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.to_lowercase().contains("frobnicate"), "{err}");
}

#[test]
fn a_directory_without_definition_says_what_to_name() {
    let dir = tempfile::tempdir().unwrap();
    let err = lamina_err(dir.path(), &["dockerfile", "."]);
    assert!(err.contains("no lamina.toml or Dockerfile"), "{err}");
}
