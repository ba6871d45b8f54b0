//! The definition digest: the identity of an image definition, the same on every machine.
//!
//! | goes in | why |
//! |---|---|
//! | version tag `lamina-definition-v2` | any change to this encoding must change every digest, so old cache entries are never misread |
//! | the `# escape=` character | it changes how `\` and `` ` `` read in the values kept unexpanded |
//! | global `ARG`s (name, default) | they feed `FROM` lines |
//! | each stage: base, `--platform`, `AS` name | they pick what the stage starts from and how later stages refer to it |
//! | each instruction with all its fields, in order (flags, heredoc bodies, exec vs shell form, the JSON spelling of `COPY`) | they are the build; the JSON form counts because a `<<` source is a heredoc only outside it |
//! | whitespace and quotes inside shell commands | the shell sees them: `echo  a` and `echo a` may differ for a program |
//! | for each `COPY`/`ADD` with local sources: every match (source index, path relative to the source directory) and every entry (name, kind, permission bits, size, blake3 of the content, symlink target), in order | they are the files the step copies |
//! | for each URL or git source of `ADD`: its `--checksum` when one is given, else the URL text, both after expansion | the digest never downloads: a checksum pins the content, a URL without one is identified by its text only |
//! | the `--build-arg` values given, sorted by name | with them, sources and values expand differently |
//!
//! Sources are read after the build's own variable expansion ([`Dockerfile::expand`]: the
//! same `ARG`/`ENV` scoping, build arguments and automatic platform arguments, linux/amd64),
//! so `COPY dist/$TARGETARCH/app` hashes `dist/amd64/app`, the file the build copies. The
//! one difference: variables set only by a base image's `ENV` are unknown here (they read
//! as unset), as no image is fetched; a source written with variables that then matches
//! nothing is reported as written and as expanded ([`SpecError::ExpandedSourceNotFound`]). Quotes are removed by that expansion, so a quoted
//! URL is a URL. A wildcard source that matches nothing adds no input, as it copies
//! nothing; a missing literal source is an error.
//!
//! | left out | why |
//! |---|---|
//! | absolute paths (the source directories, `host_path`s) | location independence: the same project in another folder or on another machine has the same digest |
//! | mtimes, ctimes, inode numbers | checkouts and `touch` change them without changing content |
//! | owners (uid/gid) of inputs | COPY sets 0:0 unless `--chown` says otherwise, and `--chown` is in the instruction |
//! | files hidden by `.dockerignore` or `--exclude` | they are never copied |
//! | the host's interpreter, OS or platform | the build runs in the image, not on the host |
//! | comments, blank lines, line continuations, keyword case, the `# syntax=` directive | the model is canonical: two spellings that parse to the same model are the same definition; Lamina runs the model itself, not the frontend `# syntax=` names |
//! | remote content (what URL and git sources of `ADD` download, `--from` images, a base image's `ONBUILD` triggers) | not local, and the digest never downloads |
//!
//! The encoding is hand-written, not derived, so that it only changes on purpose: every
//! variant and field has a tag byte, strings and lists are prefixed with their length as a
//! little-endian `u64`, and optional values with a presence byte. A change to the model
//! (a new field or instruction) that cannot be encoded as before must bump the version tag.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use lamina_types::Digest;
use lamina_types::digest::unhex32;

use crate::context::{Context, StepRef};
use crate::error::{Result, SpecError};
use crate::inputs::{
    ContentHashCache, EntryKind, IgnoreRules, SourceMatch, is_local_source, is_remote_source,
    resolve_copy_inputs_with_cached,
};
use crate::instruction::{
    ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction, Run, Stage,
};

/// The version tag that opens every encoding.
pub const DIGEST_VERSION: &str = "lamina-definition-v2";

/// The blake3 digest of a definition's canonical encoding; written `blake3:<64 hex>`.
///
/// A thin wrapper over the workspace's [`Digest`] rather than a bare `Digest`: it names a
/// definition, not content, so no blob has it as its address, and the type keeps it from
/// being handed to a store lookup by mistake. It is always blake3. [`Self::digest`] gives the
/// plain `Digest` where one is wanted (a cache key, a label).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefinitionDigest(Digest);

impl DefinitionDigest {
    /// Wraps raw blake3 digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DefinitionDigest(Digest::blake3(bytes))
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The 64 lowercase hex digits, without the `blake3:` prefix.
    pub fn to_hex(&self) -> String {
        self.0.hex()
    }

    /// The digest as the workspace's [`Digest`] (algorithm blake3).
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl From<DefinitionDigest> for Digest {
    fn from(definition: DefinitionDigest) -> Digest {
        definition.0
    }
}

impl fmt::Display for DefinitionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for DefinitionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DefinitionDigest({self})")
    }
}

impl FromStr for DefinitionDigest {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason| SpecError::InvalidDigest {
            digest: s.to_string(),
            reason,
        };
        let hex = s
            .strip_prefix("blake3:")
            .ok_or_else(|| invalid("missing 'blake3:' prefix"))?;
        if hex.len() != 64 {
            return Err(invalid("wrong length"));
        }
        let bytes = unhex32(hex).ok_or_else(|| invalid("not a lowercase hex digit"))?;
        Ok(DefinitionDigest::from_bytes(bytes))
    }
}

/// Digests `dockerfile` with the local inputs of its `COPY`/`ADD` steps, each resolved
/// against `context.root_for(step)` under that directory's `.dockerignore` (see
/// [`crate::inputs`]). Fails if a local source is missing, escapes its directory, or cannot
/// be read.
pub fn definition_digest(dockerfile: &Dockerfile, context: &Context) -> Result<DefinitionDigest> {
    definition_digest_cached(dockerfile, context, None)
}

/// [`definition_digest`], taking the hashes of unchanged input files from `cache` (the
/// digest is the same with or without it; see [`crate::inputs`]).
pub fn definition_digest_cached(
    dockerfile: &Dockerfile,
    context: &Context,
    cache: Option<&dyn ContentHashCache>,
) -> Result<DefinitionDigest> {
    definition_digest_with_args(dockerfile, context, &BTreeMap::new(), cache)
}

/// [`definition_digest_cached`] for a build given `build_args` (`--build-arg`): sources
/// expand with them, and they are part of the digest.
pub fn definition_digest_with_args(
    dockerfile: &Dockerfile,
    context: &Context,
    build_args: &BTreeMap<String, String>,
    cache: Option<&dyn ContentHashCache>,
) -> Result<DefinitionDigest> {
    // The build's own expansion decides which files and URLs the sources name.
    let expanded = dockerfile.expand(build_args)?;
    let mut ignores: HashMap<PathBuf, IgnoreRules> = HashMap::new();
    let mut enc = Encoder::new();
    enc.str(DIGEST_VERSION);
    enc.tag(1);
    enc.u64(u64::from(dockerfile.escape));
    enc.tag(2);
    enc.len(dockerfile.global_args.len());
    for arg in &dockerfile.global_args {
        enc.arg(arg);
    }
    enc.tag(3);
    enc.len(dockerfile.stages.len());
    for (stage_index, stage) in dockerfile.stages.iter().enumerate() {
        enc.stage_header(stage);
        for (instruction_index, instruction) in stage.instructions.iter().enumerate() {
            let step = StepRef {
                stage: stage_index,
                instruction: instruction_index,
            };
            let (inputs, remote) =
                match &expanded.stages[stage_index].instructions[instruction_index] {
                    Instruction::Copy(copy) => (
                        local_inputs(copy, context.root_for(step), &mut ignores, cache)
                            .map_err(|e| name_written_source(e, instruction, copy))?,
                        remote_identities(copy),
                    ),
                    _ => (Vec::new(), Vec::new()),
                };
            enc.instruction(instruction, &inputs);
            if let Instruction::Copy(_) = instruction {
                enc.tag(15);
                enc.len(remote.len());
                for (index, identity) in &remote {
                    enc.len(*index);
                    enc.str(identity);
                }
            }
        }
    }
    enc.tag(4);
    let build_args: Vec<(String, String)> = build_args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    enc.pairs(&build_args);
    Ok(DefinitionDigest::from_bytes(
        *enc.hasher.finalize().as_bytes(),
    ))
}

/// A source that matches nothing, named as written when it was written with variables
/// (`req-${PYTHON_VERSION}.txt`, expanded to `req-.txt` when only the base image sets it).
fn name_written_source(err: SpecError, raw: &Instruction, expanded: &Copy) -> SpecError {
    let (SpecError::CopySourceNotFound { source_name, .. }, Instruction::Copy(raw)) = (&err, raw)
    else {
        return err;
    };
    let written = expanded
        .sources
        .iter()
        .position(|s| s == source_name)
        .and_then(|i| raw.sources.get(i))
        .filter(|w| w.contains('$'))
        .cloned();
    match (written, err) {
        (
            Some(written),
            SpecError::CopySourceNotFound {
                source_name,
                context,
            },
        ) => SpecError::ExpandedSourceNotFound {
            written,
            source_name,
            context,
        },
        (_, err) => err,
    }
}

/// How each URL or git source of an (expanded) COPY/ADD enters the digest, with its index
/// in the sources: the `--checksum` when given, else the URL text. Nothing is downloaded.
fn remote_identities(copy: &Copy) -> Vec<(usize, String)> {
    if copy.from.is_some() {
        return Vec::new();
    }
    copy.sources
        .iter()
        .enumerate()
        .filter(|(_, source)| is_remote_source(source))
        .map(|(index, source)| {
            let identity = match &copy.checksum {
                Some(checksum) => format!("checksum:{checksum}"),
                None => format!("url:{source}"),
            };
            (index, identity)
        })
        .collect()
}

/// The inputs of one COPY/ADD, loading each source directory's ignore rules once.
fn local_inputs(
    copy: &Copy,
    root: &Path,
    ignores: &mut HashMap<PathBuf, IgnoreRules>,
    cache: Option<&dyn ContentHashCache>,
) -> Result<Vec<SourceMatch>> {
    if copy.from.is_some() || !copy.sources.iter().any(|s| is_local_source(copy, s)) {
        return Ok(Vec::new());
    }
    let ignore = match ignores.entry(root.to_path_buf()) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(slot) => slot.insert(IgnoreRules::load(root)?),
    };
    resolve_copy_inputs_with_cached(copy, root, ignore, cache)
}

/// Streams the canonical encoding into blake3.
struct Encoder {
    hasher: blake3::Hasher,
}

impl Encoder {
    fn new() -> Self {
        Encoder {
            hasher: blake3::Hasher::new(),
        }
    }

    fn tag(&mut self, tag: u8) {
        self.hasher.update(&[tag]);
    }

    fn u64(&mut self, value: u64) {
        self.hasher.update(&value.to_le_bytes());
    }

    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.hasher.update(bytes);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn bool(&mut self, b: bool) {
        self.tag(u8::from(b));
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }

    fn strs(&mut self, list: &[String]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }

    fn pairs(&mut self, pairs: &[(String, String)]) {
        self.len(pairs.len());
        for (k, v) in pairs {
            self.str(k);
            self.str(v);
        }
    }

    fn arg(&mut self, arg: &ArgDecl) {
        self.str(&arg.name);
        self.opt_str(arg.default.as_deref());
    }

    fn stage_header(&mut self, stage: &Stage) {
        self.tag(1);
        self.str(&stage.base);
        self.tag(2);
        self.opt_str(stage.platform.as_deref());
        self.tag(3);
        self.opt_str(stage.name.as_deref());
        self.tag(4);
        self.len(stage.instructions.len());
    }

    fn command(&mut self, command: &Command) {
        match command {
            Command::Exec(argv) => {
                self.tag(1);
                self.strs(argv);
            }
            Command::Shell(text) => {
                self.tag(2);
                self.str(text);
            }
        }
    }

    fn heredocs(&mut self, heredocs: &[Heredoc]) {
        self.len(heredocs.len());
        for h in heredocs {
            self.str(&h.delimiter);
            self.str(&h.body);
            self.bool(h.strip_tabs);
            self.bool(h.expand);
        }
    }

    /// One instruction; `inputs` are its resolved local inputs (empty for all but COPY/ADD).
    fn instruction(&mut self, instruction: &Instruction, inputs: &[SourceMatch]) {
        match instruction {
            Instruction::Run(run) => self.run(run),
            Instruction::Copy(copy) => self.copy(copy, inputs),
            Instruction::Env(pairs) => {
                self.tag(0x03);
                self.pairs(pairs);
            }
            Instruction::Arg(args) => {
                self.tag(0x04);
                self.len(args.len());
                for arg in args {
                    self.arg(arg);
                }
            }
            Instruction::Workdir(path) => {
                self.tag(0x05);
                self.str(path);
            }
            Instruction::User(user) => {
                self.tag(0x06);
                self.str(user);
            }
            Instruction::Label(pairs) => {
                self.tag(0x07);
                self.pairs(pairs);
            }
            Instruction::Expose(ports) => {
                self.tag(0x08);
                self.strs(ports);
            }
            Instruction::Volume(paths) => {
                self.tag(0x09);
                self.strs(paths);
            }
            Instruction::Shell(argv) => {
                self.tag(0x0a);
                self.strs(argv);
            }
            Instruction::Entrypoint(command) => {
                self.tag(0x0b);
                self.command(command);
            }
            Instruction::Cmd(command) => {
                self.tag(0x0c);
                self.command(command);
            }
            Instruction::StopSignal(signal) => {
                self.tag(0x0d);
                self.str(signal);
            }
            Instruction::Healthcheck(check) => {
                self.tag(0x0e);
                self.healthcheck(check);
            }
            Instruction::Onbuild(inner) => {
                // Runs in images built on this one, with their context: no inputs here.
                self.tag(0x0f);
                self.instruction(inner, &[]);
            }
            Instruction::Maintainer(name) => {
                self.tag(0x10);
                self.str(name);
            }
        }
    }

    fn run(&mut self, run: &Run) {
        self.tag(0x01);
        self.tag(1);
        self.command(&run.command);
        self.tag(2);
        self.strs(&run.mounts);
        self.tag(3);
        self.opt_str(run.network.as_deref());
        self.tag(4);
        self.opt_str(run.security.as_deref());
        self.tag(5);
        self.heredocs(&run.heredocs);
    }

    fn copy(&mut self, copy: &Copy, inputs: &[SourceMatch]) {
        self.tag(0x02);
        self.tag(1);
        self.bool(copy.add);
        self.tag(2);
        self.strs(&copy.sources);
        self.tag(3);
        self.str(&copy.dest);
        self.tag(4);
        self.bool(copy.json_form);
        self.tag(5);
        self.opt_str(copy.from.as_deref());
        self.tag(6);
        self.opt_str(copy.chown.as_deref());
        self.tag(7);
        self.opt_str(copy.chmod.as_deref());
        self.tag(8);
        self.bool(copy.link);
        self.tag(9);
        self.bool(copy.parents);
        self.tag(10);
        self.strs(&copy.excludes);
        self.tag(11);
        self.opt_str(copy.checksum.as_deref());
        self.tag(12);
        match copy.keep_git_dir {
            None => self.tag(0),
            Some(keep) => {
                self.tag(1);
                self.bool(keep);
            }
        }
        self.tag(13);
        self.heredocs(&copy.heredocs);
        self.tag(14);
        self.inputs(inputs);
        // Only when written, so definitions without it keep their digests.
        if let Some(unpack) = copy.unpack {
            self.tag(15);
            self.bool(unpack);
        }
    }

    fn inputs(&mut self, inputs: &[SourceMatch]) {
        self.len(inputs.len());
        for m in inputs {
            self.len(m.source);
            self.str(&m.path);
            self.len(m.entries.len());
            for entry in &m.entries {
                self.str(&entry.name);
                match &entry.kind {
                    EntryKind::File { size, hash } => {
                        self.tag(1);
                        self.u64(*size);
                        self.hasher.update(hash);
                    }
                    EntryKind::Dir => self.tag(2),
                    EntryKind::Symlink { target } => {
                        self.tag(3);
                        self.bytes(target);
                    }
                }
                self.u64(u64::from(entry.mode));
            }
        }
    }

    fn healthcheck(&mut self, check: &Healthcheck) {
        match check {
            Healthcheck::None => self.tag(0),
            Healthcheck::Check {
                command,
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
            } => {
                self.tag(1);
                self.command(command);
                self.opt_str(interval.as_deref());
                self.opt_str(timeout.as_deref());
                self.opt_str(start_period.as_deref());
                self.opt_str(start_interval.as_deref());
                match retries {
                    None => self.tag(0),
                    Some(n) => {
                        self.tag(1);
                        self.u64(u64::from(*n));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
