//! Local files and folders: where paths resolve and how COPY names them.

use super::*;

#[test]
fn add_local_file_relative_and_trailing_slash() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("src/app.py"), "print()\n");
    let image = scratch_in(dir.path())
        .add_local_file("src/app.py", "/app/")
        .unwrap()
        .add_local_file("./src/../src/app.py", "/opt/main.py")
        .unwrap();
    assert_eq!(
        steps(&image),
        "COPY [\"src/app.py\", \"/app/app.py\"]\nCOPY [\"src/app.py\", \"/opt/main.py\"]\n"
    );
    assert_eq!(image.context().step_roots().count(), 0);
    assert_round_trips(&image);
}

#[test]
fn add_local_file_absolute_inside_the_root_is_relative() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a/b.txt"), "");
    let image = scratch_in(dir.path())
        .add_local_file(dir.path().join("a/b.txt"), "/b")
        .unwrap();
    assert_eq!(steps(&image), "COPY [\"a/b.txt\", \"/b\"]\n");
    assert!(!image.dockerfile().contains(dir.path().to_str().unwrap()));
}

#[test]
fn add_local_file_outside_the_root_gets_its_own_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    std::fs::create_dir(&root).unwrap();
    write(&dir.path().join("other/data.txt"), "x");
    let image = scratch_in(&root)
        .run_commands(["true"])
        .unwrap()
        .add_local_file("../other/data.txt", "/data/")
        .unwrap()
        .add_local_file(dir.path().join("other/data.txt"), "/d2")
        .unwrap();
    assert_eq!(
        steps(&image),
        "RUN true\nCOPY [\"data.txt\", \"/data/data.txt\"]\nCOPY [\"data.txt\", \"/d2\"]\n"
    );
    let roots: Vec<(StepRef, PathBuf)> = image
        .context()
        .step_roots()
        .map(|(s, p)| (s, p.to_path_buf()))
        .collect();
    let other = dir.path().join("other");
    assert_eq!(
        roots,
        [
            (
                StepRef {
                    stage: 0,
                    instruction: 1
                },
                other.clone()
            ),
            (
                StepRef {
                    stage: 0,
                    instruction: 2
                },
                other
            )
        ]
    );
    assert_eq!(image.context().root(), root);
    assert!(!image.dockerfile().contains(dir.path().to_str().unwrap()));
}

#[test]
fn add_local_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("d/f"), "");
    write(&dir.path().join("data[1].csv"), "");
    let image = scratch_in(dir.path());
    assert!(matches!(
        image.clone().add_local_file("missing.txt", "/x"),
        Err(SpecError::LocalPathMissing { path }) if path == dir.path().join("missing.txt")
    ));
    assert!(matches!(
        image.clone().add_local_file("d", "/x"),
        Err(SpecError::NotAFile { path }) if path == dir.path().join("d")
    ));
    assert_invalid(
        image.clone().add_local_file("d/f", ""),
        "add_local_file",
        "",
    );
    assert_invalid(
        image.clone().add_local_file("d/f", "/a\nb"),
        "add_local_file",
        "/a\nb",
    );
    assert_invalid(
        image.add_local_file("data[1].csv", "/x"),
        "add_local_file",
        "data[1].csv",
    );
}

#[test]
fn whitespace_in_paths_uses_json_form() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("my file.txt"), "");
    let image = scratch_in(dir.path())
        .add_local_file("my file.txt", "/my app/")
        .unwrap();
    assert_eq!(
        steps(&image),
        "COPY [\"my file.txt\", \"/my app/my file.txt\"]\n"
    );
    let Instruction::Copy(copy) = &image.definition().stages[0].instructions[0] else {
        panic!("a COPY")
    };
    assert!(copy.json_form);
    assert_round_trips(&image);
}

#[test]
fn add_local_dir_and_ignore_patterns() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("src/app.py"), "");
    let options = LocalDirOptions {
        ignore: vec!["*.pyc".into(), "**/__pycache__".into()],
    };
    let image = scratch_in(dir.path())
        .add_local_dir(".", "/ctx")
        .unwrap()
        .add_local_dir("src", "/app")
        .unwrap()
        .add_local_dir_with("src/", "/app", &options)
        .unwrap();
    assert_eq!(
        steps(&image),
        "COPY [\".\", \"/ctx\"]\nCOPY [\"src\", \"/app\"]\n\
         COPY --exclude=*.pyc --exclude=**/__pycache__ [\"src\", \"/app\"]\n"
    );
    assert_round_trips(&image);
    assert!(matches!(
        scratch_in(dir.path()).add_local_dir("src/app.py", "/app"),
        Err(SpecError::NotADirectory { .. })
    ));
    let bad = LocalDirOptions {
        ignore: vec!["a[".into()],
    };
    assert!(matches!(
        scratch_in(dir.path()).add_local_dir_with("src", "/app", &bad),
        Err(SpecError::InvalidIgnorePattern { pattern, .. }) if pattern == "a["
    ));
    let spaced = LocalDirOptions {
        ignore: vec!["a b".into()],
    };
    assert!(
        scratch_in(dir.path())
            .add_local_dir_with("src", "/app", &spaced)
            .is_err()
    );
}

#[test]
fn add_local_dir_outside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    write(&root.join("keep"), "");
    write(&dir.path().join("assets/logo.png"), "");
    let image = scratch_in(&root)
        .add_local_dir("../assets", "/srv/assets")
        .unwrap();
    assert_eq!(steps(&image), "COPY [\"assets\", \"/srv/assets\"]\n");
    let step = StepRef {
        stage: 0,
        instruction: 0,
    };
    assert_eq!(image.context().root_for(step), dir.path());
}
