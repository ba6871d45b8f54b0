//! Checks on builder arguments, so that a bad input fails at the call that took it.

use crate::error::{Result, SpecError};
use crate::instruction::{Dockerfile, Instruction, Stage};

/// `SpecError::InvalidArgument` for `value`, given to `method` as its `what`.
pub(super) fn invalid(
    method: &'static str,
    what: &'static str,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> SpecError {
    SpecError::InvalidArgument {
        method,
        what,
        value: value.into(),
        reason: reason.into(),
    }
}

/// Fails if `value` is empty (or only whitespace).
pub(super) fn non_empty(method: &'static str, what: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(
            method,
            what,
            value,
            format!("the {what} must not be empty"),
        ));
    }
    Ok(())
}

/// Fails if `value` has a line break or another control character (tabs are fine): an
/// instruction is one line of the Dockerfile.
pub(super) fn one_line(method: &'static str, what: &'static str, value: &str) -> Result<()> {
    if value.contains(['\n', '\r']) {
        let hint = if method == "run_commands" {
            "a command must fit on one line; join commands with && or pass each separately, \
             or use dockerfile_commands with a heredoc"
        } else {
            "a Dockerfile instruction is one line; remove the line break"
        };
        return Err(invalid(method, what, value, hint));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(invalid(
            method,
            what,
            value,
            format!("remove the control character {c:?}"),
        ));
    }
    Ok(())
}

/// A key of `ENV` or `LABEL`: non-empty, no whitespace, `=`, quotes, `\` or `$`.
pub(super) fn key(method: &'static str, what: &'static str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid(
            method,
            what,
            key,
            format!("the {what} must not be empty"),
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "='\"\\$".contains(*c))
    {
        return Err(invalid(
            method,
            what,
            key,
            format!("the {what} must not contain {c:?}"),
        ));
    }
    Ok(())
}

/// An `EXPOSE` port: `<port>[/tcp|/udp|/sctp]` or a range `<from>-<to>[/proto]`, ports in
/// 1..=65535.
pub(super) fn port(method: &'static str, spec: &str) -> Result<()> {
    let (ports, protocol) = spec.split_once('/').unwrap_or((spec, "tcp"));
    if !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(invalid(
            method,
            "port",
            spec,
            "the protocol must be tcp, udp or sctp",
        ));
    }
    let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
    let number = |text: &str| -> Option<u16> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<u16>().ok().filter(|p| *p >= 1)
    };
    match (number(from), number(to)) {
        (Some(from), Some(to)) if from <= to => Ok(()),
        (Some(_), Some(_)) => Err(invalid(method, "port", spec, "the range must go upwards")),
        _ => Err(invalid(
            method,
            "port",
            spec,
            "use a port number 1..=65535, optionally a range and /tcp, /udp or /sctp (80, \
             53/udp, 8000-8010)",
        )),
    }
}

/// A registry image reference: `[registry[:port]/]path[:tag][@algorithm:hex]` by Docker's
/// grammar, checked by the workspace's one parser (`lamina_types::Reference`).
pub(super) fn image_reference(method: &'static str, reference: &str) -> Result<()> {
    match lamina_types::Reference::parse(reference) {
        Ok(_) => Ok(()),
        Err(lamina_types::ParseError::Reference { reason, .. }) => {
            Err(invalid(method, "image reference", reference, reason))
        }
        Err(other) => Err(invalid(
            method,
            "image reference",
            reference,
            other.to_string(),
        )),
    }
}

/// Checks that `instruction`, rendered into a Dockerfile with escape character `escape`,
/// reads back as the same instruction, so `Dockerfile::parse(&image.dockerfile())` gives
/// the image's definition. The reason says what to do otherwise.
pub(super) fn round_trips(
    escape: char,
    instruction: &Instruction,
) -> std::result::Result<(), String> {
    let mut stage = Stage::from_base("scratch");
    stage.instructions.push(instruction.clone());
    let probe = Dockerfile {
        escape,
        stages: vec![stage],
        ..Dockerfile::default()
    };
    let text = probe.render();
    if matches!(Dockerfile::parse(&text), Ok(back) if back == probe) {
        return Ok(());
    }
    let keyword = instruction.keyword();
    let rendered = instruction.render(escape);
    let line = rendered.lines().next().unwrap_or_default();
    Err(if line.ends_with(escape) {
        format!(
            "it ends with the escape character {escape:?}, which would continue the {keyword} \
             instruction on the next line; remove it"
        )
    } else if matches!(instruction, Instruction::Run(_) | Instruction::Copy(_))
        && line.contains("<<")
    {
        format!(
            "{keyword} would read <<WORD as a heredoc whose body is missing; write heredocs with \
             dockerfile_commands"
        )
    } else {
        format!(
            "the {keyword} instruction would not read back the same from the Dockerfile text; \
             use dockerfile_commands to write it yourself"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for good in [
            "python:3.12-slim",
            "ubuntu",
            "library/ubuntu:22.04",
            "ghcr.io/org/app:v1.2.3",
            "localhost:5000/app",
            "localhost/app:latest",
            "my-registry.example:443/a/b__c/d-e--f:tag_1",
            "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "alpine:3.20@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example/app",
        ] {
            assert!(image_reference("base", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Ubuntu",
            "org/App",
            "python 3.12",
            "python:",
            "python:-x",
            "a//b",
            "app@sha256:xyz",
            "app@sha256",
            "-app",
            "app-",
            "a...b",
            "a___b",
            "host:port/app",
            "ubuntu\n",
        ] {
            match image_reference("base", bad) {
                Err(SpecError::InvalidArgument {
                    method: "base",
                    value,
                    ..
                }) => {
                    assert_eq!(value, bad)
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ports() {
        for good in [
            "80",
            "443/tcp",
            "53/udp",
            "9/sctp",
            "65535",
            "8000-8010",
            "1-2/udp",
        ] {
            assert!(port("expose", good).is_ok(), "{good}");
        }
        for bad in [
            "0",
            "65536",
            "80/http",
            "",
            "/tcp",
            "+80",
            "8010-8000",
            "80-",
            "a",
        ] {
            assert!(port("expose", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(key("env", "key", "PATH").is_ok());
        assert!(key("env", "key", "org.example.v-1").is_ok());
        for bad in ["", "A=B", "A B", "A\tB", "A'", "A\"", "A$B", "A\\B", "A\nB"] {
            assert!(key("env", "key", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_line_rejects_line_breaks_with_a_hint() {
        assert!(one_line("run_commands", "command", "echo a\techo").is_ok());
        let error = one_line("run_commands", "command", "echo a\necho b").unwrap_err();
        assert!(error.to_string().contains("&&"), "{error}");
        assert!(one_line("workdir", "path", "/a\rb").is_err());
        assert!(one_line("workdir", "path", "/a\u{7}b").is_err());
    }
}
