//! Steps that take only text.

use super::*;

#[test]
fn run_commands_strings_and_word_lists() {
    let image = Image::scratch()
        .unwrap()
        .run_commands(["apt-get update", "  echo hi  "])
        .unwrap()
        .run_commands([RunCommand::from([
            "echo",
            "a b",
            "$HOME",
            "say \"x\"",
            "it's",
            "b\\s",
        ])])
        .unwrap();
    // Daytona's SDK text for the same call: quotes escaped its way, nothing else.
    assert_eq!(
        steps(&image),
        r#"RUN apt-get update
RUN echo hi
RUN "echo" "a b" "$HOME" "say \\\"x\\\"" "it\'s" "b\s"
"#
    );
    assert_round_trips(&image);
}

#[test]
fn run_commands_errors() {
    let image = Image::scratch().unwrap();
    let error = image.clone().run_commands(["echo a\necho b"]).unwrap_err();
    assert!(error.to_string().contains("&&"), "{error}");
    assert_invalid(
        image.clone().run_commands(["echo a\necho b"]),
        "run_commands",
        "echo a\necho b",
    );
    assert_invalid(image.clone().run_commands(["   "]), "run_commands", "   ");
    assert_invalid(
        image.clone().run_commands([r#"["echo", "x"]"#]),
        "run_commands",
        r#"["echo", "x"]"#,
    );
    let empty: Vec<String> = Vec::new();
    assert_invalid(
        image.clone().run_commands([RunCommand::from(empty)]),
        "run_commands",
        "[]",
    );
    assert_invalid(
        image.run_commands([RunCommand::from(["a\nb"])]),
        "run_commands",
        "a\nb",
    );
}

#[test]
fn lines_that_would_not_read_back_say_why() {
    let image = Image::scratch().unwrap();
    let error = image.clone().run_commands(["echo \\"]).unwrap_err();
    assert!(error.to_string().contains("escape character"), "{error}");
    let error = image.clone().user("me\\").unwrap_err();
    assert!(error.to_string().contains("escape character"), "{error}");
    let error = image.run_commands(["cat <<EOF"]).unwrap_err();
    assert!(error.to_string().contains("heredoc"), "{error}");
    // Under a backtick escape, a trailing backslash is plain text.
    let text = "# escape=`\nFROM scratch\n";
    let ticked = Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new("/"));
    let image = ticked.run_commands(["echo \\"]).unwrap();
    assert_eq!(
        image.dockerfile(),
        "# escape=`\nFROM scratch\nRUN echo \\\n"
    );
    assert!(image.run_commands(["echo `"]).is_err());
}

#[test]
fn env_keeps_order_and_quotes_values() {
    let image = Image::scratch()
        .unwrap()
        .env([("B", "2"), ("A", "a b"), ("PATH", "/opt/bin:$PATH")])
        .unwrap();
    assert_eq!(
        steps(&image),
        "ENV B=2\nENV A='a b'\nENV PATH='/opt/bin:$PATH'\n"
    );
    assert_round_trips(&image);
    for bad in ["", "A=B", "A B"] {
        assert_invalid(Image::scratch().unwrap().env([(bad, "1")]), "env", bad);
    }
    assert_invalid(
        Image::scratch().unwrap().env([("A", "x\ny")]),
        "env",
        "x\ny",
    );
}

#[test]
fn workdir_entrypoint_cmd() {
    let image = Image::scratch()
        .unwrap()
        .workdir("/app")
        .unwrap()
        .workdir("/my app")
        .unwrap()
        .entrypoint(["python", "-m", "app"])
        .unwrap()
        .cmd(["--port", "8080"])
        .unwrap();
    assert_eq!(
        steps(&image),
        "WORKDIR /app\nWORKDIR '/my app'\nENTRYPOINT [\"python\", \"-m\", \"app\"]\n\
         CMD [\"--port\", \"8080\"]\n"
    );
    let entry = &image.definition().stages[0].instructions[2];
    assert_eq!(
        entry,
        &Instruction::Entrypoint(Command::Exec(vec![
            "python".into(),
            "-m".into(),
            "app".into()
        ]))
    );
    assert_round_trips(&image);
    assert_invalid(Image::scratch().unwrap().workdir(""), "workdir", "");
    assert_invalid(
        Image::scratch().unwrap().workdir("/a\nb"),
        "workdir",
        "/a\nb",
    );
}

#[test]
fn apt_user_label_expose() {
    let image = Image::scratch()
        .unwrap()
        .apt_install(["git", "curl"])
        .unwrap()
        .user("app:app")
        .unwrap()
        .label([
            ("org.opencontainers.image.title", "My App"),
            ("tier", "web"),
        ])
        .unwrap()
        .expose(["8080", "53/udp"])
        .unwrap()
        .expose([9000])
        .unwrap();
    assert_eq!(
        steps(&image),
        "RUN apt-get update && apt-get install -y curl git && rm -rf /var/lib/apt/lists/*\n\
         USER app:app\n\
         LABEL org.opencontainers.image.title='My App' tier=web\n\
         EXPOSE 8080 53/udp\n\
         EXPOSE 9000\n"
    );
    assert_round_trips(&image);
    let none: [&str; 0] = [];
    assert_eq!(
        Image::scratch().unwrap().apt_install(none).unwrap(),
        Image::scratch().unwrap()
    );
    assert_invalid(Image::scratch().unwrap().user("a b"), "user", "a b");
    assert_invalid(Image::scratch().unwrap().user(""), "user", "");
    assert_invalid(
        Image::scratch().unwrap().label([("a b", "x")]),
        "label",
        "a b",
    );
    assert_invalid(Image::scratch().unwrap().expose([0]), "expose", "0");
    assert_invalid(
        Image::scratch().unwrap().expose(["80/http"]),
        "expose",
        "80/http",
    );
    assert_invalid(Image::scratch().unwrap().expose([70000]), "expose", "70000");
}
