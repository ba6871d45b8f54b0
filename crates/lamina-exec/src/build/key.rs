//! Step cache keys: what decides whether a step can be reused.
//!
//! Every key is blake3 over a length-prefixed encoding that opens with `KEY_VERSION`.
//!
//! | key | goes in | why |
//! |---|---|---|
//! | base | `scratch`, or the base image by content: its config sha256 and its diff_ids in order (`image_identity`); the `SOURCE_DATE_EPOCH` clamp | everything built on a base depends on its content; the clamp changes every layer's tar |
//! | step | the parent key, the step's canonical text after variable expansion, the digest of its inputs | the chain makes a step depend on everything before it (ENV, USER, WORKDIR, ARG values, the base); the expanded text catches build arguments used in `FROM`/`COPY`/... |
//! | COPY/ADD inputs | each match (source index, path relative to its source directory) and entry (name, kind, permission bits, size, blake3 of content, symlink target), as `lamina-spec` resolves them under `.dockerignore` and `--exclude`; which files are hard links of an earlier one (by position) | they are the bytes the step copies, and links stay links in its layer |
//! | ADD URL inputs | the `--checksum` when given, else the content's sha256 and the `Last-Modified` header | as BuildKit keys them: the content, and the date that becomes the file's mtime |
//! | `COPY --from` inputs | the source stage's last key, or the source image by content (`image_identity`) | that stage's result is the input |
//! | `RUN --mount=type=bind` inputs | each bind mount's target and source with its content: the context files as COPY hashes them, the source stage's last key, or the image by content | the step reads them (no bind mount: no inputs, so plain RUN keys are unchanged) |
//! | final | the last step key, the default command, `final` | the default `CMD` is applied to the image only |
//! | `COPY --link` layer | the layer settings, the working directory, the step's text and inputs, but no parent key | a linked layer does not depend on what is below it (Docker's `--link`), so it is reused on any base; only the layer is taken from it, the step's config is still made from its parent |
//!
//! | left out | why |
//! |---|---|
//! | absolute paths (context roots, `host_path`s) | the same project in another checkout must hit |
//! | mtimes, owners of inputs, inode numbers | `git clone`/`touch` change them; layers clamp mtimes and COPY sets owners itself |
//! | secrets, cache mounts, the host CA bundle, the network | build-time mounts never land in a layer; like Docker, a secret change does not rebuild |
//! | build arguments not declared with `ARG` in the stage | they are invisible to its steps |
//! | the step's index | moving a step keeps its key if what precedes it is the same |
//! | a base's manifest bytes and layer compression | the same base pulled on one machine and imported from a `docker save` archive (or re-compressed) on another has other manifest and blob digests but the same config and tars, so keys travel between stores (`--cache-from`) |
//! | the compression of the layers a build writes | a cache entry names a layer record (the tar), whose variants are compressions of it; a missing one is made when an image needs it |

use lamina_spec::inputs::{EntryKind, SourceMatch};

/// Opens every key encoding: changing the encoding must change every key.
pub(crate) const KEY_VERSION: &str = "lamina-step-v2";

/// A step cache key.
pub type CacheKey = [u8; 32];

/// Settings that change the bytes of every layer and config a build writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySettings {
    /// The mtime clamp and creation time (seconds since the epoch).
    pub epoch: u64,
}

/// Streams a length-prefixed encoding into blake3, through a buffer: an input digest writes
/// a few bytes at a time for every entry of a context, and each `Hasher::update` call costs
/// more than the bytes it hashes (fed one write at a time, hashing was a tenth of an all-hit
/// rebuild). blake3 does not depend on how its input is split, so keys are what they were.
struct Enc {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
}

/// Bytes gathered before they go to the hasher: large enough for blake3's SIMD paths.
const ENC_BUFFER: usize = 64 * 1024;

impl Enc {
    fn new(kind: &str) -> Enc {
        let mut enc = Enc {
            hasher: blake3::Hasher::new(),
            pending: Vec::new(),
        };
        enc.str(KEY_VERSION);
        enc.str(kind);
        enc
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.pending.len() + bytes.len() > ENC_BUFFER {
            self.hasher.update(&self.pending);
            self.pending.clear();
            if bytes.len() > ENC_BUFFER {
                self.hasher.update(bytes);
                return;
            }
        }
        self.pending.extend_from_slice(bytes);
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
        self
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn u64(&mut self, n: u64) -> &mut Self {
        self.write(&n.to_le_bytes());
        self
    }

    fn finish(&mut self) -> CacheKey {
        self.hasher.update(&self.pending);
        self.pending.clear();
        *self.hasher.finalize().as_bytes()
    }
}

/// The key a stage starts from: `base` is `scratch` or [`image_identity`] of the base image.
pub(crate) fn base_key(base: &str, settings: KeySettings) -> CacheKey {
    Enc::new("base").str(base).u64(settings.epoch).finish()
}

/// An image named by content: its config's sha256 and its layers' diff_ids, bottom first.
/// Neither the manifest nor the layers' compression enters, so one base pulled here and
/// imported from an archive there is the same base.
pub(crate) fn image_identity(config_sha256: &str, diff_ids: &[String]) -> String {
    let mut text = format!("config {config_sha256}");
    for diff_id in diff_ids {
        text.push_str(" layer ");
        text.push_str(diff_id);
    }
    text
}

/// The key of a step: its parent's key, its expanded text and its inputs.
pub(crate) fn step_key(parent: &CacheKey, text: &str, inputs: &CacheKey) -> CacheKey {
    Enc::new("step")
        .bytes(parent)
        .str(text)
        .bytes(inputs)
        .finish()
}

/// The key of a `COPY --link` layer: like [`step_key`] without the parent, with the working
/// directory (a relative destination depends on it) and the layer settings instead.
pub(crate) fn link_key(
    settings: KeySettings,
    workdir: &str,
    text: &str,
    inputs: &CacheKey,
) -> CacheKey {
    let parent = Enc::new("link").str(workdir).u64(settings.epoch).finish();
    step_key(&parent, text, inputs)
}

/// The key under which a finished image is kept (untagged images live as long as it).
pub(crate) fn final_key(last: &CacheKey, default_cmd: Option<&[String]>) -> CacheKey {
    let mut enc = Enc::new("final");
    enc.bytes(last);
    match default_cmd {
        None => enc.u64(0),
        Some(argv) => {
            enc.u64(1).u64(argv.len() as u64);
            for arg in argv {
                enc.str(arg);
            }
            &mut enc
        }
    };
    enc.finish()
}

/// A second key derived from `key` (e.g. to keep the final config next to the manifest).
pub(crate) fn derived_key(key: &CacheKey, purpose: &str) -> CacheKey {
    Enc::new("derived").bytes(key).str(purpose).finish()
}

/// The inputs digest of a step without inputs.
pub(crate) const NO_INPUTS: CacheKey = [0; 32];

/// The inputs of a `COPY --from`: the source stage's key or image digest, tagged.
pub(crate) fn from_inputs(source: &str) -> CacheKey {
    Enc::new("from").str(source).finish()
}

/// The digest of a COPY/ADD's local inputs (see the module docs for what goes in).
pub(crate) fn inputs_digest(matches: &[SourceMatch]) -> CacheKey {
    let mut enc = Enc::new("inputs");
    enc.u64(matches.len() as u64);
    for m in matches {
        enc.u64(m.source as u64)
            .str(&m.path)
            .u64(m.entries.len() as u64);
        for entry in &m.entries {
            enc.str(&entry.name).u64(u64::from(entry.mode));
            entry_kind(&mut enc, &entry.kind);
        }
    }
    // Which files are links of an earlier one (COPY keeps them linked), by position, so
    // that inode numbers never enter the key. Without links nothing is added, so keys of
    // inputs without links are what they were.
    let links = link_structure(matches);
    if !links.is_empty() {
        enc.str("links").u64(links.len() as u64);
        for (entry, first) in links {
            enc.u64(entry).u64(first);
        }
    }
    enc.finish()
}

/// For each input file that is a hard link of an earlier input file: its position and the
/// earlier one's, counting entries across all matches in order.
fn link_structure(matches: &[SourceMatch]) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut first_of = std::collections::HashMap::new();
    let mut links = Vec::new();
    let entries = matches.iter().flat_map(|m| &m.entries);
    for (position, entry) in (0u64..).zip(entries) {
        if !matches!(entry.kind, EntryKind::File { .. }) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&entry.host_path) else {
            continue;
        };
        if meta.nlink() < 2 {
            continue;
        }
        match first_of.entry((meta.dev(), meta.ino())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                links.push((position, *first.get()));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(position);
            }
        }
    }
    links
}

fn entry_kind(enc: &mut Enc, kind: &EntryKind) {
    match kind {
        EntryKind::File { size, hash } => {
            enc.u64(1).u64(*size).bytes(hash);
        }
        EntryKind::Dir => {
            enc.u64(2);
        }
        EntryKind::Symlink { target } => {
            enc.u64(3).bytes(target);
        }
    }
}

/// Each input path (relative to its source directory) with a fingerprint of its kind, mode
/// and content, for naming what changed between two builds.
pub(crate) fn input_fingerprints(matches: &[SourceMatch]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for m in matches {
        let is_dir_match = m.entries.first().is_some_and(|e| e.name == ".");
        for entry in &m.entries {
            let path = if entry.name == "." || (!is_dir_match && m.entries.len() == 1) {
                m.path.clone()
            } else if !is_dir_match {
                // `--parents`: names already keep the matched path.
                entry.name.clone()
            } else if m.path == "." {
                entry.name.clone()
            } else {
                format!("{}/{}", m.path, entry.name)
            };
            let mut enc = Enc::new("entry");
            enc.u64(u64::from(entry.mode));
            entry_kind(&mut enc, &entry.kind);
            out.push((path, hex(&enc.finish())));
        }
    }
    out
}

/// Lowercase hex of a key.
pub fn hex(key: &CacheKey) -> String {
    // By table: a warm rebuild formats every input's digest, and `write!` per byte was a
    // tenth of its time.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in key {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_spec::inputs::TreeEntry;
    use std::path::PathBuf;

    fn file(name: &str, content: &[u8], host: &str) -> TreeEntry {
        TreeEntry {
            name: name.into(),
            kind: EntryKind::File {
                size: content.len() as u64,
                hash: *blake3::hash(content).as_bytes(),
            },
            mode: 0o644,
            host_path: PathBuf::from(host),
        }
    }

    fn dir_match(files: &[(&str, &[u8])], host_root: &str) -> SourceMatch {
        let mut entries = vec![TreeEntry {
            name: ".".into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            host_path: PathBuf::from(host_root),
        }];
        entries.extend(
            files
                .iter()
                .map(|(n, c)| file(n, c, &format!("{host_root}/{n}"))),
        );
        SourceMatch {
            source: 0,
            path: "src".into(),
            entries,
        }
    }

    #[test]
    fn the_buffered_encoding_hashes_as_one_stream() {
        // Past the buffer, inside it and across its end: the key is blake3 of the bytes.
        let long = vec![7u8; ENC_BUFFER + 5];
        let mut enc = Enc::new("t");
        enc.u64(1).bytes(&long).str("x");
        for i in 0..20_000u64 {
            enc.u64(i).str("entry");
        }
        let mut plain = Vec::new();
        for part in [KEY_VERSION.as_bytes(), b"t"] {
            plain.extend((part.len() as u64).to_le_bytes());
            plain.extend(part);
        }
        plain.extend(1u64.to_le_bytes());
        plain.extend((long.len() as u64).to_le_bytes());
        plain.extend(&long);
        plain.extend(1u64.to_le_bytes());
        plain.extend(b"x");
        for i in 0..20_000u64 {
            plain.extend(i.to_le_bytes());
            plain.extend(5u64.to_le_bytes());
            plain.extend(b"entry");
        }
        assert_eq!(enc.finish(), *blake3::hash(&plain).as_bytes());
    }

    #[test]
    fn inputs_digest_ignores_host_paths_but_not_content_or_mode() {
        let a = dir_match(&[("a.py", b"print(1)")], "/one/src");
        let b = dir_match(&[("a.py", b"print(1)")], "/elsewhere/src");
        assert_eq!(inputs_digest(std::slice::from_ref(&a)), inputs_digest(&[b]));
        let changed = dir_match(&[("a.py", b"print(2)")], "/one/src");
        assert_ne!(
            inputs_digest(std::slice::from_ref(&a)),
            inputs_digest(&[changed])
        );
        let mut chmod = a.clone();
        chmod.entries[1].mode = 0o755;
        assert_ne!(inputs_digest(&[a]), inputs_digest(&[chmod]));
    }

    #[test]
    fn keys_chain_and_separate_their_parts() {
        let settings = KeySettings { epoch: 0 };
        let base = base_key("scratch", settings);
        assert_ne!(base, base_key("scratch", KeySettings { epoch: 1 }));
        let one = step_key(&base, "RUN a", &NO_INPUTS);
        assert_ne!(one, step_key(&base, "RUN b", &NO_INPUTS));
        assert_ne!(one, step_key(&one, "RUN a", &NO_INPUTS));
        assert_ne!(one, step_key(&base, "RUN a", &from_inputs("x")));
        assert_ne!(
            final_key(&one, None),
            final_key(&one, Some(&["sleep".into()]))
        );
    }

    #[test]
    fn images_are_named_by_config_and_diff_ids() {
        let layers = ["sha256:aa".to_string(), "sha256:bb".to_string()];
        let one = image_identity("sha256:c1", &layers);
        assert_eq!(one, image_identity("sha256:c1", &layers));
        assert_ne!(one, image_identity("sha256:c2", &layers));
        assert_ne!(one, image_identity("sha256:c1", &layers[..1]));
        let settings = KeySettings { epoch: 0 };
        assert_ne!(
            base_key(&one, settings),
            base_key(&image_identity("sha256:c1", &layers[1..]), settings)
        );
    }

    #[test]
    fn hard_links_enter_the_key_by_position_not_inode() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let write = |name: &str| std::fs::write(dir.path().join(name), b"same").unwrap();
        write("a");
        write("b");
        let files: [(&str, &[u8]); 2] = [("a", b"same"), ("b", b"same")];
        let plain = inputs_digest(&[dir_match(&files, &root)]);
        std::fs::remove_file(dir.path().join("b")).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        let linked = inputs_digest(&[dir_match(&files, &root)]);
        assert_ne!(plain, linked);
        // Another inode with the same link structure gives the same key.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("a"), b"same").unwrap();
        std::fs::hard_link(other.path().join("a"), other.path().join("b")).unwrap();
        let moved = inputs_digest(&[dir_match(&files, other.path().to_str().unwrap())]);
        assert_eq!(linked, moved);
    }

    #[test]
    fn fingerprints_name_paths_relative_to_the_source_directory() {
        let m = dir_match(&[("a.py", b"1"), ("pkg/b.py", b"2")], "/x/src");
        let names: Vec<String> = input_fingerprints(&[m]).into_iter().map(|p| p.0).collect();
        assert_eq!(names, ["src", "src/a.py", "src/pkg/b.py"]);
    }
}
