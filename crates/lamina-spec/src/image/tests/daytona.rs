//! Whole chains against the text the Daytona SDK (0.226.1) renders for the same calls; the
//! Python package's test suite checks every method against the installed SDK itself.

use super::*;

/// A context holding the files the chains below name.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("app.py"), "print(1)\n");
    write(&dir.path().join("my file.py"), "x\n");
    write(&dir.path().join("h\u{e9}llo.py"), "x\n");
    write(&dir.path().join("src/mod.py"), "x\n");
    write(&dir.path().join("requirements.txt"), "numpy\n");
    write(
        &dir.path().join("pyproject.toml"),
        "[project]\nname = \"demo\"\ndependencies = [\"requests>=2\", \"numpy\"]\n\
         [project.optional-dependencies]\ndev = [\"pytest\"]\ndocs = [\"sphinx\"]\n",
    );
    dir
}

fn alpine_in(dir: &Path) -> Image {
    Image::base("alpine").unwrap().context_dir(dir).unwrap()
}

#[test]
fn local_files_and_dirs_render_in_json_form() {
    let dir = project();
    let image = alpine_in(dir.path())
        .add_local_file("app.py", "/app/app.py")
        .and_then(|i| i.add_local_file("./src/mod.py", "/app/"))
        .and_then(|i| i.add_local_file("my file.py", "/app/x y.py"))
        .and_then(|i| i.add_local_file("h\u{e9}llo.py", "/app/"))
        .and_then(|i| i.add_local_dir("src", "/app/src"))
        .and_then(|i| i.add_local_dir(".", "/app"))
        .unwrap();
    assert_eq!(
        image.dockerfile(),
        r#"FROM alpine
COPY ["app.py", "/app/app.py"]
COPY ["src/mod.py", "/app/mod.py"]
COPY ["my file.py", "/app/x y.py"]
COPY ["h\u00e9llo.py", "/app/h\u00e9llo.py"]
COPY ["src", "/app/src"]
COPY [".", "/app"]
"#
    );
    assert_round_trips(&image);
}

#[test]
fn pip_steps_render_as_the_sdk() {
    let dir = project();
    let options = PipOptions {
        find_links: vec!["/x y".into(), "f".into()],
        index_url: Some("https://i/simple".into()),
        extra_index_urls: vec!["https://e1".into(), "https://e 2".into()],
        pre: true,
        extra_options: "  --no-cache-dir  ".into(),
    };
    let index = PipOptions {
        index_url: Some("https://i".into()),
        ..PipOptions::default()
    };
    let pyproject = PipOptions {
        find_links: vec!["f l".into()],
        extra_index_urls: vec!["https://x".into()],
        ..PipOptions::default()
    };
    let image = alpine_in(dir.path())
        .pip_install_with(["requests", "numpy", "a b", "zz<3"], &options)
        .and_then(|i| i.pip_install(Vec::<String>::new()))
        .and_then(|i| i.pip_install_from_requirements("requirements.txt", &index))
        .and_then(|i| {
            i.pip_install_from_requirements("./src/../requirements.txt", &PipOptions::default())
        })
        .and_then(|i| i.pip_install_from_pyproject("pyproject.toml", ["dev", "nope"], &pyproject))
        .unwrap();
    assert_eq!(
        image.dockerfile(),
        "FROM alpine
RUN python -m pip install 'a b' numpy requests 'zz<3' --find-links '/x y' --find-links f \
--index-url https://i/simple --extra-index-url https://e1 --extra-index-url 'https://e 2' --pre \
--no-cache-dir
COPY requirements.txt /.requirements.txt
RUN python -m pip install -r /.requirements.txt --index-url https://i
COPY requirements.txt /.requirements.txt
RUN python -m pip install -r /.requirements.txt
RUN python -m pip install numpy pytest 'requests>=2' --find-links 'f l' --extra-index-url https://x
"
    );
    assert_round_trips(&image);
}

#[test]
fn text_steps_render_as_the_sdk() {
    let image = Image::base("alpine")
        .unwrap()
        .run_commands([
            RunCommand::from("echo hi"),
            RunCommand::from(["echo", "a b", "$HOME", "q\"x", "s'y", "b\\s"]),
        ])
        .and_then(|i| {
            i.env([
                ("A", "1"),
                ("B", "a b"),
                ("C", ""),
                ("D", "it's"),
                ("E", "\u{e9}"),
                ("F", "x=y:z,@%+-./"),
            ])
        })
        .and_then(|i| i.workdir("/app dir"))
        .and_then(|i| i.workdir("/w"))
        .and_then(|i| i.entrypoint(["python", "-m", "x"]))
        .and_then(|i| i.cmd(["--port", "80"]))
        .and_then(|i| i.entrypoint(Vec::<String>::new()))
        .and_then(|i| i.cmd(Vec::<String>::new()))
        .and_then(|i| i.dockerfile_commands(["RUN echo a", "COPY src /src", "ENV X=1"], None))
        .unwrap();
    assert_eq!(
        image.dockerfile(),
        r#"FROM alpine
RUN echo hi
RUN "echo" "a b" "$HOME" "q\\\"x" "s\'y" "b\s"
ENV A=1
ENV B='a b'
ENV C=''
ENV D='it'"'"'s'
ENV E='é'
ENV F=x=y:z,@%+-./
WORKDIR '/app dir'
WORKDIR /w
ENTRYPOINT ["python", "-m", "x"]
CMD ["--port", "80"]
ENTRYPOINT []
CMD []
RUN echo a
COPY src /src
ENV X=1
"#
    );
    assert_round_trips(&image);
}

#[test]
fn debian_slim_versions_render_as_the_sdk() {
    for (asked, release) in [
        ("3.9", "3.9.22"),
        ("3.10", "3.10.17"),
        ("3.11", "3.11.12"),
        ("3.12", "3.12.10"),
        ("3.13", "3.13.3"),
        ("3.13.4", "3.13.4"),
        ("3.11.0rc2", "3.11.0rc2"),
    ] {
        let text = Image::debian_slim(asked).unwrap().dockerfile();
        let expected = SLIM_312.replace("3.12.10", release);
        assert_eq!(text, expected, "{asked}");
    }
}
