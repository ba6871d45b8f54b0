//! The `lamina` command-line tool.

mod cli;

use std::io::Write;

use clap::Parser;

/// mimalloc rather than glibc's malloc: see the allocator note in docs/ARCHITECTURE.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUCCESS: i32 = libc::EXIT_SUCCESS;
const FAILURE: i32 = libc::EXIT_FAILURE;

fn main() {
    exit_now(run_command_line())
}

fn run_command_line() -> i32 {
    // Not `parse`: clap's own exit (help, version, usage errors) would run the destructors
    // `exit_now` skips.
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            return err.exit_code();
        }
    };
    // Before any thread starts: a user who is not root enters a user namespace of their own
    // for RUN steps (or goes on without, and RUN steps say why).
    if let Err(err) = lamina::rootless::enter() {
        let _ = writeln!(std::io::stderr(), "error: {err}");
        return FAILURE;
    }
    match cli::run(args) {
        Ok(()) => SUCCESS,
        Err(err) => {
            // Broken pipes (e.g. `lamina dockerfile x | head`) are not worth a message.
            if let Some(io) = err.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return SUCCESS;
            }
            let _ = writeln!(std::io::stderr(), "error: {}", message(&err));
            FAILURE
        }
    }
}

/// Ends the process without running atexit handlers, the C++ static destructors among them:
/// freeing RocksDB's option tables at exit took ~0.3 ms of every command (issue 13's warm
/// figures). Nothing of ours registers one. The engine, its store (index closed) and its
/// runtime are dropped inside `cli::run`; the store's idle-closer thread may still be
/// ending, with nothing left to close. Only the standard streams are left to flush.
fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes any status and never returns; nothing of this process is used
    // after it.
    unsafe { libc::_exit(code) }
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
