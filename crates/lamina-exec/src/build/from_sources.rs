//! What `COPY --from`, `RUN --mount=from=` and named contexts read: an earlier stage of the
//! build, an image, or a directory given with `--build-context`.

use lamina_store::LayerRecord;

use super::key::hex;
use super::layers;
use super::plan::stage_ref;
use super::steps::Build;

impl Build<'_> {
    /// What `COPY --from=<from>` in stage `s` copies from, as a stable identity: the
    /// source stage's key or the image's digest.
    pub(crate) fn source_identity(&self, s: usize, from: &str) -> String {
        match self.stage_of(s, from) {
            Some(p) => format!(
                "stage:{}",
                self.results
                    .get(&p)
                    .map(|r| hex(&r.key))
                    .unwrap_or_default()
            ),
            None => self
                .plan
                .from_images
                .get(from)
                .map(|i| format!("image:{}", layers::image_identity(i)))
                .unwrap_or_default(),
        }
    }

    /// The earlier stage `from` names in stage `s`, unless a named context stands in for it.
    fn stage_of(&self, s: usize, from: &str) -> Option<usize> {
        if self.options.contexts.contains_key(from) {
            return None;
        }
        stage_ref(&self.plan.df, s, from)
    }

    /// The directory of the named context `from`, if it is one.
    pub(crate) fn context_dir(&self, from: &str) -> Option<&std::path::Path> {
        match self.options.contexts.get(from)? {
            super::NamedContext::Dir(dir) => Some(dir),
            super::NamedContext::Image(_) => None,
        }
    }

    /// The layers `COPY --from=<from>` in stage `s` reads.
    pub(crate) fn source_layers(&self, s: usize, from: &str) -> Vec<LayerRecord> {
        match self.stage_of(s, from) {
            Some(p) => self
                .results
                .get(&p)
                .map(|r| r.layers.clone())
                .unwrap_or_default(),
            None => self
                .plan
                .from_images
                .get(from)
                .map(|i| i.layers.iter().map(|l| l.record.clone()).collect())
                .unwrap_or_default(),
        }
    }
}
