//! Why a step missed the cache (`--explain`), and the small records that make the answer
//! possible.
//!
//! After each successful build the executor writes a [`BuildRecord`] listing every step's
//! text, key, parent key, base and input fingerprints, under `work_dir/builds/`, once by
//! tag (if any) and once by the shape of the definition (its unexpanded text and target).
//! The next build of the same tag or definition compares its first miss against it to name
//! what changed: the step text, an input path, or the base. Tagged builds also leave a
//! [`BuildState`] under `work_dir/states/`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use lamina_spec::inputs::SourceMatch;

use super::key::{CacheKey, hex};
use super::layers::io;
use crate::ExecError;

/// Why the first step that missed the cache missed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissReason {
    /// The build ignored the cache (`--no-cache`).
    NoCache {
        /// 1-based step index.
        index: usize,
        /// The step.
        text: String,
    },
    /// This step was asked to run (`no_cache_steps`).
    NoCacheStep {
        /// 1-based step index.
        index: usize,
        /// The step.
        text: String,
    },
    /// No entry for the key and nothing earlier to compare with (first build of this
    /// definition, or a step that was not there before).
    NewStep {
        /// 1-based step index.
        index: usize,
        /// The step.
        text: String,
    },
    /// The step's text (after expansion: build arguments included) differs from last time.
    StepChanged {
        /// 1-based step index.
        index: usize,
        /// The step now.
        text: String,
        /// The step last time.
        previous: String,
    },
    /// A local input of a COPY/ADD changed.
    InputsChanged {
        /// 1-based step index.
        index: usize,
        /// The step.
        text: String,
        /// Paths relative to the source directory that changed, appeared or disappeared.
        paths: Vec<String>,
    },
    /// The stage's base image is another image than last time.
    BaseChanged {
        /// 1-based step index (the stage's first step).
        index: usize,
        /// The step.
        text: String,
        /// The base last time.
        previous: String,
        /// The base now.
        current: String,
    },
    /// Same key as last time, but its entry is gone (expired or collected).
    Evicted {
        /// 1-based step index.
        index: usize,
        /// The step.
        text: String,
    },
}

impl MissReason {
    /// The 1-based index of the step that missed.
    pub fn index(&self) -> usize {
        match self {
            MissReason::NoCache { index, .. }
            | MissReason::NoCacheStep { index, .. }
            | MissReason::NewStep { index, .. }
            | MissReason::StepChanged { index, .. }
            | MissReason::InputsChanged { index, .. }
            | MissReason::BaseChanged { index, .. }
            | MissReason::Evicted { index, .. } => *index,
        }
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache { index, text } => {
                write!(f, "step {index} ({text}): the cache is off (--no-cache)")
            }
            MissReason::NoCacheStep { index, text } => {
                write!(f, "step {index} ({text}): asked to run without the cache")
            }
            MissReason::NewStep { index, text } => {
                write!(f, "step {index} ({text}): not built before")
            }
            MissReason::StepChanged {
                index,
                text,
                previous,
            } => write!(
                f,
                "step {index} ({text}): the step changed (was: {previous})"
            ),
            MissReason::InputsChanged { index, text, paths } => write!(
                f,
                "step {index} ({text}): inputs changed: {}",
                paths.join(", ")
            ),
            MissReason::BaseChanged {
                index,
                text,
                previous,
                current,
            } => write!(
                f,
                "step {index} ({text}): the base changed from {previous} to {current}"
            ),
            MissReason::Evicted { index, text } => write!(
                f,
                "step {index} ({text}): built before, but its cache entry expired or was collected"
            ),
        }
    }
}

/// One step as recorded after a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordedStep {
    pub index: usize,
    pub text: String,
    pub key: String,
    pub parent: String,
    /// The stage's base, for a stage's first step.
    pub base: Option<String>,
    /// Input path and fingerprint, for COPY/ADD.
    pub inputs: Vec<(String, String)>,
    /// The matched inputs `inputs` is made from when it is needed ([`RecordedStep::fill`]):
    /// a hit only needs them if the record is written.
    #[serde(skip)]
    pub pending: Vec<SourceMatch>,
}

impl RecordedStep {
    /// Fills `inputs` from `pending`, if any.
    pub(crate) fn fill(&mut self) {
        if !self.pending.is_empty() {
            self.inputs = super::key::input_fingerprints(&std::mem::take(&mut self.pending));
        }
    }
}

/// The steps of one build, for the next build to compare against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BuildRecord {
    /// What identifies the record without its inputs: a hash of every step's index, text,
    /// key, parent and base. Written first, so a rebuild compares it and nothing else (a
    /// key covers the step's inputs).
    #[serde(default)]
    pub id: String,
    pub steps: Vec<RecordedStep>,
}

impl BuildRecord {
    /// Fills every step's inputs (see [`RecordedStep::fill`]).
    pub(crate) fn fill(&mut self) {
        self.steps.iter_mut().for_each(RecordedStep::fill);
    }

    fn compute_id(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        for step in &self.steps {
            for field in [&step.text, &step.key, &step.parent] {
                hasher.update(&(field.len() as u64).to_le_bytes());
                hasher.update(field.as_bytes());
            }
            let base = step.base.as_deref().unwrap_or("\0none");
            hasher.update(&(step.index as u64).to_le_bytes());
            hasher.update(&(base.len() as u64).to_le_bytes());
            hasher.update(base.as_bytes());
        }
        hex(hasher.finalize().as_bytes())
    }
}

/// Why `now` missed, given the previous build's record.
pub(crate) fn explain(previous: Option<&BuildRecord>, now: &RecordedStep) -> MissReason {
    let (index, text) = (now.index, now.text.clone());
    let Some(before) = previous.and_then(|p| p.steps.iter().find(|s| s.index == now.index)) else {
        return MissReason::NewStep { index, text };
    };
    if let (Some(previous), Some(current)) = (&before.base, &now.base)
        && previous != current
    {
        return MissReason::BaseChanged {
            index,
            text,
            previous: previous.clone(),
            current: current.clone(),
        };
    }
    if before.text != now.text {
        return MissReason::StepChanged {
            index,
            text,
            previous: before.text.clone(),
        };
    }
    if before.inputs != now.inputs {
        let mut paths: Vec<String> = now
            .inputs
            .iter()
            .filter(|i| !before.inputs.contains(i))
            .chain(
                before
                    .inputs
                    .iter()
                    .filter(|i| !now.inputs.iter().any(|n| n.0 == i.0)),
            )
            .map(|(path, _)| path.clone())
            .collect();
        paths.sort();
        paths.dedup();
        return MissReason::InputsChanged { index, text, paths };
    }
    if before.key == now.key {
        return MissReason::Evicted { index, text };
    }
    MissReason::NewStep { index, text }
}

/// The record files of a build: by tag, then by definition shape.
pub(crate) fn record_paths(work_dir: &Path, tag: Option<&str>, shape: &CacheKey) -> Vec<PathBuf> {
    let dir = work_dir.join("builds");
    let mut paths = Vec::new();
    if let Some(tag) = tag {
        // Records written before tags were stored in full form sit under the short name.
        for name in [tag.to_owned(), lamina_image::image::display_name(tag)] {
            let path = dir.join(format!(
                "tag-{}.json",
                hex(blake3::hash(name.as_bytes()).as_bytes())
            ));
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths.push(dir.join(format!("def-{}.json", hex(shape))));
    paths
}

/// The first readable record among `paths`.
pub(crate) fn read_record(paths: &[PathBuf]) -> Option<BuildRecord> {
    paths.iter().find_map(|p| {
        let bytes = std::fs::read(p).ok()?;
        serde_json::from_slice(&bytes).ok()
    })
}

/// Writes `value` as JSON to every path, atomically (temp file, then rename); a path that
/// holds these bytes already is left alone (a rebuild writes nothing).
fn write_json<T: Serialize>(paths: &[PathBuf], value: &T) -> Result<(), ExecError> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    for path in paths {
        if std::fs::read(path).is_ok_and(|old| old == bytes) {
            continue;
        }
        write_atomically(path, &bytes)?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ExecError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| io(dir, source))?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(|source| io(path, source))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// Saves the record of a finished build, to each path that does not hold a record of the
/// same id already (the id is the first member, so only the file's start is read); fills
/// the inputs of `record` if it writes.
pub(crate) fn write_record(paths: &[PathBuf], record: &mut BuildRecord) -> Result<(), ExecError> {
    record.id = record.compute_id();
    // How `to_vec_pretty` starts the document.
    let start = format!("{{\n  \"id\": \"{}\",", record.id);
    let mut bytes = None;
    for path in paths {
        if starts_with(path, start.as_bytes()) {
            continue;
        }
        let bytes = bytes.get_or_insert_with(|| {
            record.fill();
            serde_json::to_vec_pretty(&*record).unwrap_or_default()
        });
        write_atomically(path, bytes)?;
    }
    Ok(())
}

/// Whether the file at `path` starts with `prefix`.
fn starts_with(path: &Path, prefix: &[u8]) -> bool {
    let mut head = vec![0; prefix.len()];
    std::fs::File::open(path)
        .and_then(|mut file| std::io::Read::read_exact(&mut file, &mut head))
        .is_ok_and(|()| head == prefix)
}

/// The state of a tagged build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuildState {
    /// A build of this tag is running (or died without saying otherwise).
    Building,
    /// The tag names a finished image.
    Active {
        /// Its manifest sha256 (`sha256:...`).
        digest: String,
    },
    /// The last build of this tag failed; the tag still names the image before it, if any.
    BuildFailed {
        /// The error message.
        error: String,
    },
}

fn state_path(work_dir: &Path, tag: &str) -> PathBuf {
    work_dir.join("states").join(format!(
        "{}.json",
        hex(blake3::hash(tag.as_bytes()).as_bytes())
    ))
}

/// A state as stored: `building` names the owner token of the process building (see
/// `crate::owner`), so a build whose process died reads as failed, not as running forever.
#[derive(Serialize, Deserialize)]
struct StoredState {
    #[serde(flatten)]
    state: BuildState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

/// Records the state of a tagged build.
pub(crate) fn write_state(work_dir: &Path, tag: &str, state: &BuildState) -> Result<(), ExecError> {
    let owner = match state {
        BuildState::Building => Some(crate::owner::claim(work_dir)?.to_owned()),
        _ => None,
    };
    let stored = StoredState {
        state: state.clone(),
        owner,
    };
    write_json(&[state_path(work_dir, tag)], &stored)
}

/// The recorded state of `tag`, if any. A `building` state whose process is gone is a
/// failure (interrupted).
pub(crate) fn read_state(work_dir: &Path, tag: &str) -> Option<BuildState> {
    // A state written before tags were stored in full form sits under the short name.
    let stored: StoredState = [tag.to_owned(), lamina_image::image::display_name(tag)]
        .iter()
        .find_map(|name| std::fs::read(state_path(work_dir, name)).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())?;
    match (&stored.state, &stored.owner) {
        (BuildState::Building, Some(owner)) if !crate::owner::alive(work_dir, owner) => {
            Some(BuildState::BuildFailed {
                error: "interrupted: the process building it ended before it finished".into(),
            })
        }
        _ => Some(stored.state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str, key: &str, inputs: &[(&str, &str)]) -> RecordedStep {
        RecordedStep {
            index: 2,
            text: text.into(),
            key: key.into(),
            parent: "p".into(),
            base: None,
            inputs: inputs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            pending: Vec::new(),
        }
    }

    #[test]
    fn explain_names_what_changed() {
        let before = BuildRecord {
            id: String::new(),
            steps: vec![step(
                "COPY src /app",
                "k1",
                &[("src/a", "1"), ("src/gone", "2")],
            )],
        };
        let now = step("COPY src /app", "k2", &[("src/a", "9"), ("src/new", "3")]);
        match explain(Some(&before), &now) {
            MissReason::InputsChanged { paths, index, .. } => {
                assert_eq!(index, 2);
                assert_eq!(paths, ["src/a", "src/gone", "src/new"]);
            }
            other => panic!("{other:?}"),
        }
        let text = step("COPY other /app", "k3", &[]);
        assert!(matches!(
            explain(Some(&before), &text),
            MissReason::StepChanged { .. }
        ));
        let same = step("COPY src /app", "k1", &[("src/a", "1"), ("src/gone", "2")]);
        assert!(matches!(
            explain(Some(&before), &same),
            MissReason::Evicted { .. }
        ));
        assert!(matches!(explain(None, &same), MissReason::NewStep { .. }));
    }

    #[test]
    fn records_and_states_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let paths = record_paths(dir.path(), Some("app:1"), &[1; 32]);
        assert_eq!(paths.len(), 2);
        let mut record = BuildRecord {
            id: String::new(),
            steps: vec![step("RUN x", "k", &[])],
        };
        write_record(&paths, &mut record).unwrap();
        assert_eq!(read_record(&paths[1..]).unwrap(), record);
        assert_eq!(read_state(dir.path(), "app:1"), None);
        write_state(dir.path(), "app:1", &BuildState::Building).unwrap();
        assert_eq!(read_state(dir.path(), "app:1"), Some(BuildState::Building));
    }

    #[test]
    fn a_building_state_whose_process_is_gone_reads_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        // Written by a process (token `dead42`) that no longer holds its owner lock.
        let path = state_path(dir.path(), "app:2");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"state":"building","owner":"dead42"}"#).unwrap();
        match read_state(dir.path(), "app:2") {
            Some(BuildState::BuildFailed { error }) => assert!(error.contains("interrupted")),
            other => panic!("{other:?}"),
        }
        // One without an owner (an older version's) stays as written.
        std::fs::write(&path, r#"{"state":"building"}"#).unwrap();
        assert_eq!(read_state(dir.path(), "app:2"), Some(BuildState::Building));
    }

    #[test]
    fn states_and_records_under_an_older_short_tag_are_still_found() {
        let dir = tempfile::tempdir().unwrap();
        // What a store written before full-form tags holds.
        write_state(dir.path(), "app:1", &BuildState::Building).unwrap();
        let legacy = record_paths(dir.path(), Some("app:1"), &[7; 32]);
        let mut record = BuildRecord {
            id: String::new(),
            steps: vec![step("RUN x", "k", &[])],
        };
        write_record(&legacy[..1], &mut record).unwrap();
        let full = "docker.io/library/app:1";
        assert_eq!(read_state(dir.path(), full), Some(BuildState::Building));
        let paths = record_paths(dir.path(), Some(full), &[8; 32]);
        assert_eq!(read_record(&paths).unwrap(), record);
    }

    #[test]
    fn a_record_of_the_same_id_is_not_rewritten_and_inputs_are_filled_when_written() {
        use lamina_spec::inputs::{EntryKind, TreeEntry};
        let dir = tempfile::tempdir().unwrap();
        let paths = record_paths(dir.path(), Some("app:1"), &[3; 32]);
        let copy = |content: u8| {
            let mut s = step("COPY a /", "k1", &[]);
            s.pending = vec![SourceMatch {
                source: 0,
                path: "a".into(),
                entries: vec![TreeEntry {
                    name: "a".into(),
                    kind: EntryKind::File {
                        size: 1,
                        hash: [content; 32],
                    },
                    mode: 0o644,
                    host_path: "/ctx/a".into(),
                }],
            }];
            s
        };
        let mut first = BuildRecord {
            id: String::new(),
            steps: vec![copy(1)],
        };
        write_record(&paths, &mut first).unwrap();
        let written = read_record(&paths).unwrap();
        assert_eq!(
            written.steps[0].inputs.len(),
            1,
            "inputs filled from the matches"
        );
        assert_eq!(written.steps[0].inputs, first.steps[0].inputs);
        assert!(written.steps[0].pending.is_empty());

        // Same steps (so the same inputs, which the key covers): nothing written, the
        // pending matches never turned into fingerprints.
        let before = std::fs::read(&paths[0]).unwrap();
        let mut again = BuildRecord {
            id: String::new(),
            steps: vec![copy(1)],
        };
        std::fs::write(&paths[1], b"{}").unwrap();
        write_record(&paths[..1], &mut again).unwrap();
        assert_eq!(std::fs::read(&paths[0]).unwrap(), before);
        assert!(again.steps[0].inputs.is_empty());
        // A path holding another record is rewritten.
        write_record(&paths, &mut again).unwrap();
        assert_eq!(read_record(&paths[1..]).unwrap().id, first.id);

        // Another key: another id, written.
        let mut changed = BuildRecord {
            id: String::new(),
            steps: vec![copy(2)],
        };
        changed.steps[0].key = "k2".into();
        write_record(&paths, &mut changed).unwrap();
        let written = read_record(&paths).unwrap();
        assert_ne!(written.id, first.id);
        assert_eq!(written.steps[0].key, "k2");
        assert_ne!(written.steps[0].inputs, first.steps[0].inputs);
    }
}
