//! The `lamina` command-line tool.

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // Before any thread starts: a user who is not root enters a user namespace of their own
    // for RUN steps (or goes on without, and RUN steps say why).
    if let Err(err) = lamina::rootless::enter() {
        let _ = writeln!(std::io::stderr(), "error: {err}");
        return ExitCode::FAILURE;
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Broken pipes (e.g. `lamina dockerfile x | head`) are not worth a message.
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {}", message(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each cause left out when an outer message
/// already quotes it (many errors put their source in their own message, and the chain
/// would repeat it: `Permission denied (os error 13): Permission denied (os error 13)`).
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{}: {source}", path)]
    struct Quoting {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn causes_are_not_repeated() {
        let denied = std::io::Error::from_raw_os_error(13);
        let err = anyhow::Error::new(Quoting {
            path: "/x",
            source: denied,
        })
        .context("writing /x");
        assert_eq!(
            message(&err),
            "writing /x: /x: Permission denied (os error 13)"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&plain), "outer: inner");
    }
}
