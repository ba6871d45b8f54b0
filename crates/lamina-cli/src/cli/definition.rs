//! `lamina dockerfile`, `lamina digest`, `lamina check`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use lamina::spec::Dockerfile;
use lamina::{DefinitionKind, resolve_definition_path};
use lamina::{Refusal, refusals_with};

pub fn dockerfile(definition: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    out.write_all(image.dockerfile().as_bytes())?;
    Ok(out.flush()?)
}

pub fn digest(
    definition: &Path,
    build_args: &BTreeMap<String, String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    writeln!(out, "{}", image.digest_with_args(build_args)?)?;
    Ok(out.flush()?)
}

pub fn check(
    definition: &Path,
    options: &lamina::BuildOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    // The digest reads every local input, so a missing or unreadable one fails here.
    let digest = image.digest_with_args(&options.build_args)?;
    // What `build` would refuse is a warning: the definition itself is valid.
    let lines = dockerfile_lines(definition);
    let mut stderr = std::io::stderr().lock();
    for refusal in refusals_with(&image, options)? {
        writeln!(stderr, "warning: {}", describe(&refusal, lines.as_deref()))?;
    }
    let stages = &image.definition().stages;
    let steps: usize = stages.iter().map(|stage| stage.instructions.len()).sum();
    writeln!(
        out,
        "ok: {} ({} stage{}, {} instruction{}, {digest})",
        definition.display(),
        stages.len(),
        plural(stages.len()),
        steps,
        plural(steps),
    )?;
    Ok(out.flush()?)
}

/// The line of each instruction when the definition is a Dockerfile.
fn dockerfile_lines(definition: &Path) -> Option<Vec<Vec<usize>>> {
    let file = resolve_definition_path(definition).ok()?;
    if DefinitionKind::of(&file) != DefinitionKind::Dockerfile {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    Dockerfile::parse_with_lines(&text)
        .ok()
        .map(|(_, lines)| lines)
}

fn describe(refusal: &Refusal, lines: Option<&[Vec<usize>]>) -> String {
    let step = refusal.step;
    let place = match lines.and_then(|l| l.get(step.stage)?.get(step.instruction)) {
        Some(line) => format!("line {line}"),
        None => format!(
            "stage {}, instruction {}",
            step.stage + 1,
            step.instruction + 1
        ),
    };
    format!(
        "{place}: {} would fail in `lamina build`: {}",
        refusal.keyword, refusal.reason
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
