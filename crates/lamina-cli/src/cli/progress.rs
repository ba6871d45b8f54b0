//! The live build display on a terminal: one line per step with a spinner while it runs,
//! then its outcome (cached, or done with its time); RUN output scrolls above the lines.

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lamina::BuildEvent;

use super::units;

/// Draws build events on stderr.
pub struct TtyProgress {
    multi: MultiProgress,
    steps: BTreeMap<usize, ProgressBar>,
}

impl TtyProgress {
    pub fn new() -> Self {
        TtyProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            steps: BTreeMap::new(),
        }
    }

    pub fn event(&mut self, event: &BuildEvent) {
        match event {
            BuildEvent::StageStarted { stage, name, base } => {
                let label = name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                let _ = self
                    .multi
                    .println(format!("stage {stage}{label} from {base}"));
            }
            BuildEvent::StepStarted { index, total, text } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} [{prefix}] {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{index}/{total}"));
                bar.set_message(text.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.steps.insert(*index, bar);
            }
            BuildEvent::StepLog { index, line, .. } => {
                let _ = self.multi.println(format!("#{index} | {line}"));
            }
            BuildEvent::StepFinished {
                index,
                cached,
                duration,
            } => {
                if let Some(bar) = self.steps.remove(index) {
                    bar.set_style(
                        ProgressStyle::with_template("  [{prefix}] {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    let outcome = if *cached {
                        "cached".to_string()
                    } else {
                        format!("done in {}", units::elapsed(*duration))
                    };
                    bar.finish_with_message(format!("{} ({outcome})", bar.message()));
                }
            }
            _ => {}
        }
    }

    /// Stops every spinner still running (a failed build leaves its step's line behind).
    pub fn finish(&mut self) {
        for (_, bar) in std::mem::take(&mut self.steps) {
            bar.abandon();
        }
    }
}
