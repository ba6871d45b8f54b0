//! RUN: the command under the sandbox on the stage's layers; its changes become the layer.

use lamina_spec::{Command, Run};
use lamina_store::LayerRecord;

use super::BuildEvent;
use super::config::ImageConfig;
use super::layers;
use super::steps::{Build, StageState};
use crate::ExecError;
use crate::sandbox::{BuildMount, Network, RunRequest};
use lamina_image::layer_store::LayerSource;

impl Build<'_> {
    /// Runs a RUN step that missed the cache; returns its layer (`None` if it changed
    /// nothing).
    pub(crate) fn run_step(
        &self,
        s: usize,
        index: usize,
        text: &str,
        run: &Run,
        state: &StageState,
    ) -> Result<Option<LayerRecord>, ExecError> {
        let unsupported = |reason: &str| ExecError::UnsupportedStep {
            index,
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let args = argv(&state.config, run).map_err(|r| unsupported(&r))?;
        // GC may run while the step does (its mounts and lower layers may need unpacking,
        // its command may run for minutes): this build's layers are leased from here.
        self.lease()?;
        let mut mounts = Vec::new();
        if self.inner.config.host_ca_bundle {
            mounts.push(BuildMount::HostCaBundle {
                path: self.inner.config.host_ca_file.clone(),
            });
        }
        let i = index - self.plan.first_step[&s];
        mounts.extend(self.run_mounts(s, i, run, state.config.workdir())?);
        let network = match run.network.as_deref() {
            Some("none") => Network::None,
            _ => Network::Host,
        };
        let cache = self.inner.layer_cache()?;
        // Held until the step ends: GC in any process leaves layers in use alone.
        let lowers_in_use = state
            .layers
            .iter()
            .map(|l| cache.unpacked(&self.inner.store, l))
            .collect::<Result<Vec<_>, _>>()?;
        let lower_dirs = lowers_in_use
            .iter()
            .map(|l| l.path().to_path_buf())
            .collect();
        let sandbox = self.inner.sandbox()?;
        // The command may run for minutes; other processes get the store once nothing here
        // has used it for `StoreOptions::idle_close` (50 ms): closing it now would cost a
        // short command (most are) a reopen, with its OPTIONS file, fsyncs and recovery,
        // when its layer is stored.
        let mut on_output = |stream, line: &str| {
            self.emit(BuildEvent::StepLog {
                index,
                stream,
                line: line.to_string(),
            });
        };
        let outcome = sandbox.run(RunRequest {
            lower_dirs,
            args,
            env: run_env(state),
            cwd: state.config.workdir().to_string(),
            user: state.config.config.user.clone().filter(|u| !u.is_empty()),
            mounts,
            network,
            on_output: &mut on_output,
            cancel: self.options.cancel.as_ref(),
        });
        if let Some(message) = crate::sandbox::take_fuse_notice() {
            self.emit(BuildEvent::Warning { message });
        }
        let outcome = outcome?;
        if outcome.exit_code != 0 {
            return Err(ExecError::StepFailed {
                index,
                text: text.to_string(),
                exit_code: outcome.exit_code,
                last_lines: outcome.last_lines,
            });
        }
        // A command longer than the index's idle close (50 ms) had it closed: it opens again
        // while the upper directory is read for the layer, before the layer's first write.
        self.inner.store.open_for_writes_in_background();
        let upper = outcome.upper.path();
        let empty = std::fs::read_dir(upper)
            .map_err(|e| layers::io(upper, e))?
            .next()
            .is_none();
        // The upper directory, whiteouts in overlay form, is the layer's unpacked copy.
        let layer = if empty {
            None
        } else {
            Some(self.store_and_keep(LayerSource::OverlayUpper(upper), upper)?)
        };
        self.removed_beside.remove(outcome.upper);
        Ok(layer)
    }
}

/// The environment of a RUN: the config's `Env`, plus the stage's `ARG` values that no
/// `ENV` shadows (ARG values are for the build only and never reach the config).
fn run_env(state: &StageState) -> Vec<String> {
    let mut env = state.config.config.env.clone();
    for (name, value) in &state.args {
        if state.config.env_var(name).is_none() {
            env.push(format!("{name}={value}"));
        }
    }
    if state.config.env_var("PATH").is_none() {
        // Docker's default, so that a scratch-based image finds its tools.
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    env
}

/// The argv of a RUN: exec form as is; shell form through the stage's `SHELL`, with its
/// here-documents handed to the shell as the shell would read them.
///
/// `RUN <<EOF` alone runs the body as the script (as BuildKit does); a command that names
/// here-documents (`RUN cat <<EOF > file`) gets them appended after its line, so the shell
/// itself handles `<<-` and quoted delimiters. A body starting with `#!` would need to be
/// written to a file and executed: that is refused.
pub(super) fn argv(config: &ImageConfig, run: &Run) -> Result<Vec<String>, String> {
    let text = match &run.command {
        Command::Exec(argv) => return Ok(argv.clone()),
        Command::Shell(text) => text,
    };
    let mut script = text.clone();
    if let [doc] = run.heredocs.as_slice()
        && is_lone_heredoc(text, &doc.delimiter)
    {
        let body = doc.content();
        if body.starts_with("#!") {
            return Err(format!(
                "the here-document {} starts with #!, and running it as a script file is not \
                 supported; write RUN <interpreter> <<{} instead",
                doc.delimiter, doc.delimiter
            ));
        }
        script = body;
    } else if !run.heredocs.is_empty() {
        for doc in &run.heredocs {
            script.push('\n');
            script.push_str(&doc.body);
            script.push_str(&doc.delimiter);
        }
        script.push('\n');
    }
    let mut argv = config.shell();
    argv.push(script);
    Ok(argv)
}

/// Whether the whole command is one here-document word (`<<EOF`, `<<-EOF`, `<<"EOF"`).
fn is_lone_heredoc(text: &str, delimiter: &str) -> bool {
    let word = text.trim();
    let Some(rest) = word.strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let unquoted = rest.trim_matches(|c| c == '"' || c == '\'');
    unquoted == delimiter
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_spec::{Dockerfile, Instruction};

    fn run_of(text: &str) -> Run {
        let df = Dockerfile::parse(text).unwrap();
        match &df.stages[0].instructions[0] {
            Instruction::Run(run) => run.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shell_form_goes_through_the_shell_and_heredocs_reach_it() {
        let config = ImageConfig::scratch();
        assert_eq!(
            argv(&config, &run_of("FROM scratch\nRUN echo hi\n")).unwrap(),
            ["/bin/sh", "-c", "echo hi"]
        );
        assert_eq!(
            argv(
                &config,
                &run_of("FROM scratch\nRUN [\"/bin/true\", \"x\"]\n")
            )
            .unwrap(),
            ["/bin/true", "x"]
        );
        let lone = argv(
            &config,
            &run_of("FROM scratch\nRUN <<EOF\necho a\necho b\nEOF\n"),
        );
        assert_eq!(lone.unwrap(), ["/bin/sh", "-c", "echo a\necho b\n"]);
        let named = argv(
            &config,
            &run_of("FROM scratch\nRUN cat <<EOF > /f\nline\nEOF\n"),
        );
        assert_eq!(
            named.unwrap(),
            ["/bin/sh", "-c", "cat <<EOF > /f\nline\nEOF\n"]
        );
        let shebang = argv(
            &config,
            &run_of("FROM scratch\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n"),
        );
        assert!(shebang.unwrap_err().contains("#!"));
    }

    #[test]
    fn args_reach_the_run_environment_unless_env_shadows_them() {
        let mut state = StageState {
            config: ImageConfig::scratch(),
            layers: Vec::new(),
            key: [0; 32],
            base_name: String::new(),
            args: [
                ("A".to_string(), "arg".to_string()),
                ("B".into(), "arg".into()),
            ]
            .into_iter()
            .collect(),
            declared_args: Vec::new(),
            cmd_set: false,
        };
        state.config.set_env("A", "env");
        let env = run_env(&state);
        assert!(env.contains(&"A=env".to_string()));
        assert!(env.contains(&"B=arg".to_string()));
        assert!(!env.contains(&"A=arg".to_string()));
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
    }
}
