//! The one error type of `lamina-exec`.

use std::path::PathBuf;

/// What can go wrong executing a build.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The definition is invalid.
    #[error(transparent)]
    Spec(#[from] lamina_spec::SpecError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] lamina_store::StoreError),
    /// A layer could not be written or unpacked.
    #[error(transparent)]
    Layer(#[from] lamina_layer::LayerError),
    /// Reading or writing an image or layer record failed, or the base source or remote
    /// cache client did (their errors keep their kind and text).
    #[error(transparent)]
    Export(#[from] lamina_image::ImageError),
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    // ---- sandbox (sandbox/) ------------------------------------------------------------
    /// `runc` is not installed.
    #[error("runc was not found on PATH; install the Debian package runc")]
    RuncMissing,
    /// RUN steps need root, of the host or of a user namespace, and the process is neither.
    #[error(
        "running RUN steps needs root or a user namespace (overlayfs mounts and runc); run lamina as root, or call lamina::rootless::enter() at the start of main (the lamina binary does)"
    )]
    NotRoot,
    /// RUN steps cannot run: no user namespace could be made for this user.
    #[error(
        "cannot run RUN steps without root: {reason}; definitions without RUN steps still build"
    )]
    NoUserNamespace {
        /// Why (see `rootless::unavailable`).
        reason: String,
    },
    /// The user has no subordinate ids for a user namespace.
    #[error(
        "user `{user}` has no subordinate ids in /etc/subuid and /etc/subgid; add them once as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
    )]
    NoSubordinateIds {
        /// The user's name (or uid).
        user: String,
    },
    /// `newuidmap` or `newgidmap` is missing.
    #[error("{tool} was not found on PATH; install the Debian package uidmap")]
    IdMapToolMissing {
        /// The missing tool.
        tool: String,
    },
    /// The kernel refused to create a user namespace.
    #[error("cannot create a user namespace: {cause}")]
    UserNamespaceRefused {
        /// The cause and what to do.
        cause: String,
    },
    /// The store belongs to another user (a store made by root, opened by a user).
    #[error(
        "{} is not writable by this user: the store belongs to another user (one made by root is root's); use a store of your own (--store DIR or $LAMINA_STORE; the default is ~/.cache/lamina/store), or have its owner run chown -R on it",
        dir.display()
    )]
    StoreNotWritable {
        /// The first directory of the store this process cannot write.
        dir: PathBuf,
    },
    /// `newuidmap`/`newgidmap` refused this process's id maps.
    #[error(
        "cannot map the user namespace's ids (newuidmap/newgidmap): {message}; check the user's ranges in /etc/subuid and /etc/subgid"
    )]
    IdMapFailed {
        /// The tools' own messages.
        message: String,
    },
    /// A `RUN --mount=` value is invalid.
    #[error("invalid --mount={spec}: {reason}")]
    InvalidMount {
        /// The mount value as written.
        spec: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A secret mount names a secret that was not provided.
    #[error("secret `{id}` was not provided; pass it with --secret id={id},src=PATH")]
    MissingSecret {
        /// The secret's id.
        id: String,
    },
    /// The `USER` of a step does not resolve in the rootfs.
    #[error("user `{user}`: {reason}")]
    UnknownUser {
        /// The user as written.
        user: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// None of a layer's compressed variants is in the store.
    #[error("layer {layer} has no stored blob; pull or rebuild the image that uses it")]
    LayerBlobMissing {
        /// The layer (blake3 of its uncompressed tar).
        layer: String,
    },
    /// A tree-backed layer's unpacked tree is gone: the store kept only it and its
    /// tar-split.
    #[error(
        "layer {layer} is kept as its unpacked tree {}, which is missing; run `lamina cache fsck`, then pull or rebuild the image that uses it",
        tree.display()
    )]
    LayerTreeMissing {
        /// The layer (blake3 of its uncompressed tar).
        layer: String,
        /// Where its tree should be.
        tree: PathBuf,
    },
    /// A stored layer does not unpack to its recorded diff_id.
    #[error("layer {layer} unpacks to {actual}, not its diff_id {expected}; run lamina fsck")]
    LayerDiffIdMismatch {
        /// The layer (blake3 of its uncompressed tar).
        layer: String,
        /// The recorded diff_id.
        expected: String,
        /// The sha256 of the unpacked tar.
        actual: String,
    },
    /// A layer cannot be turned into an overlay lower directory.
    #[error("layer {layer}: entry {entry}: {reason}")]
    InvalidLayerEntry {
        /// The layer (blake3 of its uncompressed tar).
        layer: String,
        /// The tar entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// A path cannot be used in overlayfs mount options.
    #[error("{}: {reason}", path.display())]
    UnusablePath {
        /// The path.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// `LAMINA_OVERLAY` holds a value it cannot.
    #[error("LAMINA_OVERLAY={value} is not a choice: use `native`, `fuse` or `auto` (or unset it)")]
    OverlaySetting {
        /// The value as set.
        value: String,
    },
    /// Mounting or unmounting failed.
    #[error("mounting {what} at {}: {source}", target.display())]
    Mount {
        /// What was mounted.
        what: String,
        /// The mount point.
        target: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The runtime config could not be built.
    #[error("building the runc config: {source}")]
    RuntimeSpec {
        /// The cause.
        #[from]
        source: oci_spec::OciSpecError,
    },
    /// A run was requested with no command.
    #[error("the RUN command is empty; give it a command to run")]
    EmptyCommand,
    /// runc could not start the process (as opposed to the process failing).
    #[error("runc could not run container {container}: {message}")]
    Runtime {
        /// The container id.
        container: String,
        /// runc's error message.
        message: String,
    },
    // ---- build orchestration (build/) ------------------------------------------------
    /// A RUN step exited with a non-zero code.
    #[error(
        "step {index} ({}) failed with exit code {exit_code}; fix the command{}",
        brief_step(text),
        last_output(last_lines)
    )]
    StepFailed {
        /// 1-based step index.
        index: usize,
        /// The step as Dockerfile text.
        text: String,
        /// The exit code (128 + signal when killed).
        exit_code: i32,
        /// The last lines of its output.
        last_lines: Vec<String>,
    },
    /// A step asks for something the executor does not do.
    #[error("step {index} ({}) is not supported: {reason}", brief_step(text))]
    UnsupportedStep {
        /// 1-based step index.
        index: usize,
        /// The step as Dockerfile text.
        text: String,
        /// What is missing, and what to do instead.
        reason: String,
    },
    /// A step is wrong for the image it runs on (bad `--chown`, missing `--from` path, ...).
    #[error("step {index} ({}): {reason}", brief_step(text))]
    InvalidStep {
        /// 1-based step index.
        index: usize,
        /// The step as Dockerfile text.
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// The target stage named in the build options does not exist.
    #[error("no stage is named {name:?}; {}", stage_choice(known))]
    UnknownTargetStage {
        /// The name asked for.
        name: String,
        /// The stage names of the definition.
        known: Vec<String>,
    },
    /// A base image is neither in the store nor obtainable.
    #[error("base image {reference} is not available: {reason}")]
    BaseUnavailable {
        /// The `FROM` reference, expanded.
        reference: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A base image's config has a field of the wrong type.
    #[error(
        "base image {image}: config field {field} is malformed ({reason}); fix the image that wrote it or use another base"
    )]
    InvalidBaseConfig {
        /// The image (digest or name).
        image: String,
        /// The field's path in the config (`config.Env`).
        field: String,
        /// What was found instead.
        reason: String,
    },
    /// A config blob recorded by an earlier step does not parse.
    #[error("stored config {digest} does not parse ({reason}); rebuild with --no-cache")]
    InvalidStoredConfig {
        /// The blob's digest.
        digest: String,
        /// The parse error.
        reason: String,
    },
    /// The definition has no stage.
    #[error("the definition has no FROM instruction; start it with FROM <image>")]
    NoStages,
    /// The caller cancelled the build ([`crate::CancelToken`]).
    #[error("the build was cancelled")]
    Cancelled,
    /// The blocking build task panicked or was cancelled.
    #[error("the build task stopped abnormally: {reason}")]
    TaskFailed {
        /// The join error.
        reason: String,
    },
    /// A layer a remote cache record names could not be fetched or did not verify. The
    /// build retries without that cache, so this reaches a caller only from inside a build.
    #[error("remote cache {reference}: {reason}")]
    RemoteCacheLayer {
        /// Which `--cache-from` source (0-based).
        source_index: usize,
        /// The cache ref.
        reference: String,
        /// What failed.
        reason: String,
    },
    /// `--cache-to` failed; the image itself was built and stored.
    #[error(
        "the image {digest} was built and stored, but exporting its cache to {reference} failed: {reason}; fix the registry access or add ignore-error=true to --cache-to"
    )]
    CacheExport {
        /// The image digest.
        digest: String,
        /// The cache ref.
        reference: String,
        /// What failed.
        reason: String,
    },
}

/// Longest step text a message or progress line shows.
const BRIEF_STEP_CHARS: usize = 200;

/// A step's text as messages and progress show it: its first line, at most 200 characters,
/// saying how much was left out (a generated RUN line can be megabytes).
pub fn brief_step(text: &str) -> std::borrow::Cow<'_, str> {
    let first = text.lines().next().unwrap_or_default();
    let head_end = first
        .char_indices()
        .nth(BRIEF_STEP_CHARS)
        .map_or(first.len(), |(at, _)| at);
    if head_end == text.len() {
        return text.into();
    }
    let cut = text[head_end..].chars().count();
    format!("{} [{cut} more characters not shown]", &first[..head_end]).into()
}

/// The tail of a failed step's output for its message, or a note that it printed nothing.
fn last_output(lines: &[String]) -> String {
    if lines.iter().all(|l| l.trim().is_empty()) {
        " (it printed nothing)".to_owned()
    } else {
        format!(" (last output:\n{})", lines.join("\n"))
    }
}

/// What `--target` can name instead.
fn stage_choice(known: &[String]) -> String {
    if known.is_empty() {
        "the definition names no stages (name one with `FROM image AS name`), so build without --target".to_owned()
    } else {
        format!("name one of: {}", known.join(", "))
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn long_steps_are_shortened_and_say_how_much() {
        assert_eq!(brief_step("RUN true"), "RUN true");
        let long = format!("RUN echo {}", "x".repeat(1000));
        let brief = brief_step(&long);
        assert!(brief.starts_with("RUN echo xx"));
        assert!(
            brief.ends_with("[809 more characters not shown]"),
            "{brief}"
        );
        assert_eq!(
            brief_step("RUN a\\\nb"),
            "RUN a\\ [2 more characters not shown]"
        );
    }

    #[test]
    fn silent_failures_and_unnamed_stages_read_well() {
        let failed = ExecError::StepFailed {
            index: 2,
            text: "RUN exit 3".into(),
            exit_code: 3,
            last_lines: vec![],
        };
        assert_eq!(
            failed.to_string(),
            "step 2 (RUN exit 3) failed with exit code 3; fix the command (it printed nothing)"
        );
        let unknown = ExecError::UnknownTargetStage {
            name: "nostage".into(),
            known: vec![],
        };
        assert!(unknown.to_string().contains("names no stages"), "{unknown}");
        let unknown = ExecError::UnknownTargetStage {
            name: "nostage".into(),
            known: vec!["base".into(), "app".into()],
        };
        assert!(
            unknown.to_string().ends_with("name one of: base, app"),
            "{unknown}"
        );
    }
}
