//! TOML definitions against the builder, and the position of every kind of error.

use std::path::{Path, PathBuf};

use super::*;
use crate::image::{LocalDirOptions, PipOptions, RunCommand};
use crate::{Dockerfile, StepRef};

/// The format's documentation, whose examples are checked here.
const DOCS: &str = include_str!("../../../../docs/definition.md");

/// The body of the first fenced block of `language` in the docs.
fn docs_block(language: &str) -> &'static str {
    let fence = format!("```{language}\n");
    let start = DOCS.find(&fence).expect("block in docs") + fence.len();
    let end = start + DOCS[start..].find("```").expect("closing fence");
    &DOCS[start..end]
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A folder with the local inputs the docs example names.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("requirements.txt"), "requests\n");
    write(
        &dir.path().join("pyproject.toml"),
        "[project]\ndependencies = [\"click\"]\n[project.optional-dependencies]\ndev = [\"pytest\"]\n",
    );
    write(&dir.path().join("src/lib.py"), "");
    write(&dir.path().join("main.py"), "");
    dir
}

fn parse(text: &str, base: &Path) -> Result<Image> {
    parse_definition(text, Path::new("lamina.toml"), base)
}

/// The (line, column, reason) of the error that `text` gives.
fn error_at(text: &str, base: &Path) -> (usize, usize, String) {
    match parse(text, base) {
        Err(SpecError::TomlDefinition {
            file,
            line,
            column,
            reason,
        }) => {
            assert_eq!(file, PathBuf::from("lamina.toml"));
            (line, column, reason)
        }
        other => panic!("expected a TomlDefinition error, got {other:?}"),
    }
}

/// Asserts the error of `text` is at `line`:`column` and its reason contains `words`.
#[track_caller]
fn assert_error(text: &str, base: &Path, line: usize, column: usize, words: &str) {
    let (l, c, reason) = error_at(text, base);
    assert_eq!((l, c), (line, column), "{reason}");
    assert!(
        reason.contains(words),
        "{reason:?} should contain {words:?}"
    );
}

#[test]
fn complete_example_equals_the_builder_chain() {
    let dir = project();
    let from_toml = parse(docs_block("toml"), dir.path()).unwrap();
    let pip = PipOptions {
        index_url: Some("https://pypi.example.invalid/simple".into()),
        extra_index_urls: vec!["https://extra.example.invalid/simple".into()],
        pre: true,
        ..PipOptions::default()
    };
    let requirements = PipOptions {
        extra_options: "--no-cache-dir".into(),
        ..PipOptions::default()
    };
    let ignore = LocalDirOptions {
        ignore: vec!["**/__pycache__".into()],
    };
    let built = Image::debian_slim("3.12")
        .and_then(|i| i.context_dir(dir.path()))
        .and_then(|i| i.apt_install(["git", "curl"]))
        .and_then(|i| i.pip_install_with(["pandas>=2", "numpy"], &pip))
        .and_then(|i| i.pip_install_from_requirements("requirements.txt", &requirements))
        .and_then(|i| {
            i.pip_install_from_pyproject("pyproject.toml", ["dev"], &PipOptions::default())
        })
        .and_then(|i| i.add_local_dir_with("src", "/app/src", &ignore))
        .and_then(|i| i.add_local_file("main.py", "/app/"))
        .and_then(|i| i.run_commands(["python -m compileall /app"]))
        .and_then(|i| {
            i.run_commands([
                RunCommand::from("echo one"),
                RunCommand::from(["echo", "two words"]),
            ])
        })
        .and_then(|i| i.env([("ZED", "last letter"), ("ALPHA", "1")]))
        .and_then(|i| i.label([("org.opencontainers.image.title", "demo")]))
        .and_then(|i| i.dockerfile_commands(["RUN <<EOF\necho built > /built\nEOF\n"], None))
        .and_then(|i| i.workdir("/app"))
        .and_then(|i| i.user("nobody"))
        .and_then(|i| i.expose(["8080", "53/udp"]))
        .and_then(|i| i.entrypoint(["python"]))
        .and_then(|i| i.cmd(["main.py"]))
        .unwrap();
    assert_eq!(from_toml, built);
    let text = from_toml.dockerfile();
    // Keys keep the order they were written in, not alphabetical order.
    assert!(
        text.contains("ENV ZED='last letter'\nENV ALPHA=1\n"),
        "{text}"
    );
    assert!(
        text.contains("COPY --exclude=**/__pycache__ [\"src\", \"/app/src\"]\n"),
        "{text}"
    );
    assert!(!text.contains(dir.path().to_str().unwrap()));
    assert_eq!(&Dockerfile::parse(&text).unwrap(), from_toml.definition());
    assert_eq!(text, docs_block("dockerfile"));
}

#[test]
fn load_definition_resolves_against_the_file_folder() {
    let dir = project();
    let file = dir.path().join("lamina.toml");
    write(
        &file,
        "[image]\nbase = \"alpine:3.20\"\n[[step]]\nadd_local_file = { local = \"main.py\", remote = \"/m.py\" }\n",
    );
    let image = load_definition(&file).unwrap();
    assert_eq!(image.context().root(), dir.path());
    assert_eq!(
        image.dockerfile(),
        "FROM alpine:3.20\nCOPY [\"main.py\", \"/m.py\"]\n"
    );
    assert!(matches!(
        load_definition(&dir.path().join("absent.toml")),
        Err(SpecError::LocalPathMissing { .. })
    ));
}

#[test]
fn context_moves_the_root_for_steps() {
    let dir = project();
    let text = "[image]\nscratch = true\ncontext = \"src\"\n[[step]]\nadd_local_file = { local = \"lib.py\", remote = \"/lib.py\" }\n";
    let image = parse(text, dir.path()).unwrap();
    assert_eq!(image.context().root(), dir.path().join("src"));
    assert_eq!(
        image.dockerfile(),
        "FROM scratch\nCOPY [\"lib.py\", \"/lib.py\"]\n"
    );
}

#[test]
fn dockerfile_base_uses_its_folder_unless_context_is_set() {
    let dir = project();
    write(
        &dir.path().join("docker/Dockerfile"),
        "FROM alpine\nCOPY main.py /main.py\n",
    );
    let text = "[image]\ndockerfile = \"docker/Dockerfile\"\n[[step]]\nrun = \"true\"\n";
    let image = parse(text, dir.path()).unwrap();
    assert_eq!(image.context().root(), dir.path().join("docker"));
    // A TOML file is a sandbox definition even when it starts from a Dockerfile.
    assert_eq!(image.origin(), crate::Origin::Builder);
    assert_eq!(
        image.dockerfile(),
        "FROM alpine\nCOPY main.py /main.py\nRUN true\n"
    );
    let text = "[image]\ndockerfile = \"docker/Dockerfile\"\ncontext = \".\"\n";
    assert_eq!(
        parse(text, dir.path()).unwrap().context().root(),
        dir.path()
    );
}

#[test]
fn debian_slim_true_is_the_newest_series() {
    let dir = tempfile::tempdir().unwrap();
    let image = parse("[image]\ndebian_slim = true\n", dir.path()).unwrap();
    assert!(
        image
            .dockerfile()
            .starts_with("FROM python:3.13.3-slim-bookworm\n")
    );
}

#[test]
fn dockerfile_commands_context_dir_sets_step_roots() {
    let dir = project();
    let text = "[image]\nscratch = true\n[[step]]\ndockerfile_commands = [\"COPY lib.py /lib.py\"]\ncontext_dir = \"src\"\n";
    let image = parse(text, dir.path()).unwrap();
    assert_eq!(
        image.context().root_for(StepRef {
            stage: 0,
            instruction: 0
        }),
        dir.path().join("src")
    );
}

#[test]
fn syntax_and_shape_errors_point_at_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    assert_error("[image\nbase = \"x\"\n", base, 1, 7, "");
    assert_error(
        "[image]\nbse = \"alpine\"\n",
        base,
        2,
        1,
        "unknown field `bse`",
    );
    assert_error(
        "[image]\nbase = \"alpine\"\n[[step]]\nrun_it = \"x\"\n",
        base,
        4,
        1,
        "unknown field `run_it`",
    );
    assert_error(
        "[image]\nbase = \"alpine\"\n[[step]]\npip_install = \"numpy\"\n",
        base,
        4,
        15,
        "",
    );
    assert_error("[image]\nbase = 3\n", base, 2, 8, "");
    assert_error("[[step]]\nrun = \"x\"\n", base, 1, 1, "image");
}

#[test]
fn image_table_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    assert_error(
        "[image]\ncontext = \".\"\n",
        base,
        1,
        1,
        "needs one of base",
    );
    assert_error(
        "[image]\nbase = \"alpine\"\nscratch = true\n",
        base,
        3,
        11,
        "both base and scratch",
    );
    assert_error(
        "[image]\ndebian_slim = \"2.7\"\n",
        base,
        2,
        15,
        "invalid python version '2.7'",
    );
    assert_error(
        "[image]\ndebian_slim = \"3.8\"\n",
        base,
        2,
        15,
        "unsupported python version",
    );
    assert_error(
        "[image]\ndebian_slim = false\n",
        base,
        2,
        15,
        "true for the newest",
    );
    assert_error("[image]\nscratch = false\n", base, 2, 11, "picks nothing");
    assert_error("[image]\nbase = \"Alpine\"\n", base, 2, 8, "lowercase");
    assert_error(
        "[image]\nscratch = true\ncontext = \"nope\"\n",
        base,
        3,
        11,
        "does not exist",
    );
    assert_error(
        "[image]\ndockerfile = \"nope/Dockerfile\"\n",
        base,
        2,
        14,
        "does not exist",
    );
}

#[test]
fn step_shape_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let head = "[image]\nscratch = true\n";
    assert_error(
        &format!("{head}[[step]]\n"),
        base,
        3,
        1,
        "needs one step key",
    );
    assert_error(
        &format!("{head}[[step]]\nrun = \"a\"\nworkdir = \"/x\"\n"),
        base,
        5,
        11,
        "both run and workdir",
    );
    assert_error(
        &format!("{head}[[step]]\nrun = \"a\"\nindex_url = \"https://x.invalid\"\n"),
        base,
        5,
        13,
        "index_url applies to pip_install",
    );
    assert_error(
        &format!("{head}[[step]]\npip_install = [\"a\"]\noptional_dependencies = [\"dev\"]\n"),
        base,
        5,
        25,
        "optional_dependencies applies to pip_install_from_pyproject",
    );
    assert_error(
        &format!("{head}[[step]]\nrun = \"a\"\ncontext_dir = \"x\"\n"),
        base,
        5,
        15,
        "context_dir applies to dockerfile_commands",
    );
}

#[test]
fn builder_errors_point_at_the_value() {
    let dir = project();
    let base = dir.path();
    let head = "[image]\nscratch = true\n[[step]]\n";
    let cases: [(&str, usize, usize, &str); 12] = [
        (
            "add_local_file = { local = \"absent.py\", remote = \"/a\" }",
            4,
            28,
            "does not exist",
        ),
        (
            "add_local_file = { local = \"main.py\", remote = \"\" }",
            4,
            48,
            "remote path",
        ),
        (
            "add_local_file = { local = \"src\", remote = \"/a\" }",
            4,
            28,
            "is not a file",
        ),
        (
            "add_local_dir = { local = \"main.py\", remote = \"/a\" }",
            4,
            27,
            "is not a directory",
        ),
        (
            "add_local_dir = { local = \"src\", remote = \"/a\", ignore = [\"ok\", \"a[\"] }",
            4,
            65,
            "invalid ignore pattern",
        ),
        ("pip_install = [\"numpy\", \"\"]", 4, 25, "package"),
        (
            "pip_install_from_requirements = \"absent.txt\"",
            4,
            33,
            "requirements file",
        ),
        ("run = [\"ok\", \"a\\nb\"]", 4, 14, "&&"),
        (
            "env = { GOOD = \"1\", \"BAD KEY\" = \"2\" }",
            4,
            21,
            "must not contain",
        ),
        ("expose = [80, 70000]", 4, 15, "port"),
        ("workdir = \"\"", 4, 11, "must not be empty"),
        ("user = \"a b\"", 4, 8, "whitespace"),
    ];
    for (step, line, column, words) in cases {
        assert_error(&format!("{head}{step}\n"), base, line, column, words);
    }
    assert_error(
        &format!("{head}pip_install_from_pyproject = \"main.py\"\n"),
        base,
        4,
        30,
        "invalid pyproject.toml",
    );
}

#[test]
fn dockerfile_commands_errors_point_at_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[image]\nscratch = true\n[[step]]\ndockerfile_commands = [\n  \"RUN a\",\n  \"BOGUS b\",\n]\n";
    let (line, column, reason) = error_at(text, dir.path());
    assert_eq!((line, column), (6, 3), "{reason}");
    assert!(reason.starts_with("dockerfile_commands:2:"), "{reason}");
}

#[test]
fn columns_count_characters() {
    let dir = tempfile::tempdir().unwrap();
    // The stray `x` is the 12th character of its line but its 13th byte.
    let (line, column, _) = error_at("[image]\nbase = \"é\" x\n", dir.path());
    assert_eq!((line, column), (2, 12));
    let at = Locator {
        text: "aé\nxyz",
        file: Path::new("f"),
    };
    match at.error(7, "r") {
        SpecError::TomlDefinition { line, column, .. } => assert_eq!((line, column), (2, 4)),
        other => panic!("{other:?}"),
    }
    match at.error(3, "r") {
        SpecError::TomlDefinition { line, column, .. } => assert_eq!((line, column), (1, 3)),
        other => panic!("{other:?}"),
    }
}
