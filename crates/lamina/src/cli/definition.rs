//! `lamina dockerfile`, `lamina digest`, `lamina check`.

use std::io::Write;
use std::path::Path;

pub fn dockerfile(definition: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    out.write_all(image.dockerfile().as_bytes())?;
    Ok(out.flush()?)
}

pub fn digest(definition: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    writeln!(out, "{}", image.digest()?)?;
    Ok(out.flush()?)
}

pub fn check(definition: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let image = lamina::load_definition(definition)?;
    // The digest reads every local input, so a missing or unreadable one fails here.
    let digest = image.digest()?;
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

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
