//! The pip steps.

use super::*;

#[test]
fn pip_install_sorts_and_quotes() {
    let image = Image::scratch()
        .unwrap()
        .pip_install(["pandas", "numpy>=1.2", "attrs"])
        .unwrap();
    assert_eq!(
        steps(&image),
        "RUN python -m pip install attrs 'numpy>=1.2' pandas\n"
    );
    let none: [&str; 0] = [];
    assert_eq!(
        Image::scratch().unwrap().pip_install(none).unwrap(),
        Image::scratch().unwrap()
    );
    assert_round_trips(&image);
}

#[test]
fn pip_options_in_sdk_order() {
    let options = PipOptions {
        find_links: vec!["/wheels".into(), "https://example.invalid/f?x=1".into()],
        index_url: Some("https://example.invalid/simple".into()),
        extra_index_urls: vec!["https://a.invalid".into(), "https://b.invalid".into()],
        pre: true,
        extra_options: "  --no-cache-dir -v ".into(),
    };
    let image = Image::scratch()
        .unwrap()
        .pip_install_with(["numpy"], &options)
        .unwrap();
    assert_eq!(
        steps(&image),
        "RUN python -m pip install numpy --find-links /wheels --find-links \
         'https://example.invalid/f?x=1' --index-url https://example.invalid/simple \
         --extra-index-url https://a.invalid --extra-index-url https://b.invalid --pre \
         --no-cache-dir -v\n"
    );
    let pre = PipOptions {
        pre: true,
        ..PipOptions::default()
    };
    let image = Image::scratch()
        .unwrap()
        .pip_install_with(["a"], &pre)
        .unwrap();
    assert_eq!(steps(&image), "RUN python -m pip install a --pre\n");
}

#[test]
fn pip_rejects_bad_arguments() {
    assert_invalid(
        Image::scratch().unwrap().pip_install(["ok", ""]),
        "pip_install",
        "",
    );
    assert_invalid(
        Image::scratch().unwrap().pip_install(["a\nb"]),
        "pip_install",
        "a\nb",
    );
    let options = PipOptions {
        index_url: Some(String::new()),
        ..PipOptions::default()
    };
    assert_invalid(
        Image::scratch().unwrap().pip_install_with(["a"], &options),
        "pip_install",
        "",
    );
    let options = PipOptions {
        extra_options: "-v\nRUN x".into(),
        ..PipOptions::default()
    };
    assert_invalid(
        Image::scratch().unwrap().pip_install_with(["a"], &options),
        "pip_install",
        "-v\nRUN x",
    );
}

#[test]
fn pip_install_from_requirements_copies_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("requirements.txt"), "numpy\n");
    let pre = PipOptions {
        pre: true,
        ..PipOptions::default()
    };
    let image = scratch_in(dir.path())
        .pip_install_from_requirements("requirements.txt", &pre)
        .unwrap();
    assert_eq!(
        steps(&image),
        "COPY requirements.txt /.requirements.txt\n\
         RUN python -m pip install -r /.requirements.txt --pre\n"
    );
    let plain = scratch_in(dir.path())
        .pip_install_from_requirements(dir.path().join("requirements.txt"), &PipOptions::default())
        .unwrap();
    assert!(steps(&plain).ends_with("RUN python -m pip install -r /.requirements.txt\n"));
    assert!(matches!(
        scratch_in(dir.path()).pip_install_from_requirements("nope.txt", &PipOptions::default()),
        Err(SpecError::RequirementsMissing { path }) if path == dir.path().join("nope.txt")
    ));
    assert_round_trips(&image);
}

const PYPROJECT: &str = r#"
[project]
name = "demo"
dependencies = ["requests>=2", "click"]

[project.optional-dependencies]
dev = ["pytest"]
docs = ["sphinx"]
"#;

#[test]
fn pyproject_with_optional_groups() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("pyproject.toml"), PYPROJECT);
    let opts = PipOptions::default();
    let image =
        scratch_in(dir.path()).pip_install_from_pyproject("pyproject.toml", ["dev", "nope"], &opts);
    assert_eq!(
        steps(&image.unwrap()),
        "RUN python -m pip install click pytest 'requests>=2'\n"
    );
    let no_groups: [&str; 0] = [];
    let image =
        scratch_in(dir.path()).pip_install_from_pyproject("pyproject.toml", no_groups, &opts);
    assert_eq!(
        steps(&image.unwrap()),
        "RUN python -m pip install click 'requests>=2'\n"
    );
    let both =
        scratch_in(dir.path()).pip_install_from_pyproject("pyproject.toml", ["docs", "dev"], &opts);
    assert_eq!(
        steps(&both.unwrap()),
        "RUN python -m pip install click pytest 'requests>=2' sphinx\n"
    );
}

#[test]
fn pyproject_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "no-project.toml",
            "[tool.x]\na = 1\n",
            "no [project] section",
        ),
        (
            "no-deps.toml",
            "[project]\nname = \"x\"\n",
            "no [project.dependencies]",
        ),
        (
            "not-list.toml",
            "[project]\ndependencies = \"numpy\"\n",
            "must be a list of strings",
        ),
        ("bad.toml", "[project\n", ""),
    ];
    let none: [&str; 0] = [];
    for (name, text, expected) in cases {
        write(&dir.path().join(name), text);
        let result =
            scratch_in(dir.path()).pip_install_from_pyproject(name, none, &PipOptions::default());
        match result {
            Err(SpecError::InvalidPyproject { path, reason }) => {
                assert_eq!(path, dir.path().join(name));
                assert!(reason.contains(expected), "{name}: {reason}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        scratch_in(dir.path()).pip_install_from_pyproject(
            "absent.toml",
            none,
            &PipOptions::default()
        ),
        Err(SpecError::LocalPathMissing { .. })
    ));
}
