//! COPY and ADD: the sources are staged into a temporary tree laid out as the rootfs (the
//! destination below its root), which then becomes the layer.
//!
//! Destination rules, as Docker's: a relative destination is relative to `WORKDIR`, and it
//! resolves through the image's symlinks, the last component's too (not with `--link`); the
//! destination is a directory with `--parents`, when it ends in `/` (or is `.`), when there
//! are several sources or matches, when a source has a wildcard, or when the source is a
//! directory (whose contents are copied); otherwise a single file is written at the
//! destination path, unless the image has a directory there (symlinks followed), which
//! takes the file as BuildKit does. A wildcard that matches nothing copies nothing (no
//! layer). Copied entries are owned by 0:0 unless `--chown` says otherwise (names resolve
//! against the image's `/etc/passwd` and `/etc/group`); `--chmod` takes octal modes.
//! Directories created on the way to the destination are 0755 root. Files that are hard
//! links of one another among one COPY's sources stay linked (one inode; the layer holds one
//! file entry and hard link entries, as BuildKit writes it); a link to a file outside the
//! copied set becomes a plain file.
//!
//! ADD extracts a local source file that is a tar archive into the destination directory
//! (see the `archive` module) unless `--unpack=false`; entries extracted keep the archive's
//! owners and modes (`--chown`/`--chmod` apply to copied entries only).
//! ADD of an http(s) URL stages the download (see the `remote` module) as a local file;
//! ADD of a git repository stages its checkout (see the `git` module) as a directory.
//! Not supported, with an error saying so: URLs and repositories in COPY (as BuildKit).

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lamina_spec::Copy;
use lamina_spec::inputs::{EntryKind, SourceMatch};
use lamina_store::LayerRecord;

use super::config::resolve_path;
use super::layers::{self, io};
use super::steps::{Build, StageState};
use super::view::{self, Node};
use crate::ExecError;

/// The most a COPY stages before its build takes the lease (see `Build::lease`): about
/// 20 ms of work here, which a GC waiting for the read section does not notice.
const STAGED_UNLEASED_ENTRIES: usize = 1000;
const STAGED_UNLEASED_BYTES: u64 = 16 << 20;

/// Where staged entries go and who owns them.
struct Stage {
    root: PathBuf,
    /// The destination inside `root`.
    dest: PathBuf,
    dest_is_dir: bool,
    chmod: Option<u32>,
    /// Every entry placed (for `--chown`).
    placed: Vec<PathBuf>,
    /// Directories and their final modes, applied last so that read-only directories can
    /// still be filled.
    dir_modes: Vec<(PathBuf, u32)>,
    /// Source files with several links (by device and inode) and where the first was
    /// staged, with the staged inode: later links to them become links to it.
    links: HashMap<(u64, u64), (PathBuf, u64)>,
    /// Directories this step made or checked in the staging tree (symlinks to one inside it
    /// included; all forgotten when an entry is replaced): an entry below one needs no
    /// `mkdir -p` of its parent, a few system calls per entry otherwise.
    dirs: HashSet<PathBuf>,
    /// `root` with symlinks resolved, to tell where a symlink in the tree leads.
    real_root: PathBuf,
}

impl Build<'_> {
    /// Runs a COPY/ADD that missed the cache; `matches` are its resolved local inputs.
    pub(crate) fn copy_step(
        &self,
        s: usize,
        index: usize,
        text: &str,
        copy: &Copy,
        state: &mut StageState,
        matches: &[SourceMatch],
    ) -> Result<Option<LayerRecord>, ExecError> {
        let invalid = |reason: String| ExecError::InvalidStep {
            index,
            text: text.to_string(),
            reason,
        };
        let unsupported = |reason: String| ExecError::UnsupportedStep {
            index,
            text: text.to_string(),
            reason,
        };
        if let Some(reason) = super::support::remote_refusal(copy) {
            return Err(unsupported(reason));
        }
        // An ADD URL with a checksum is downloaded only now, on a miss.
        let url = super::remote::http_source(copy);
        let mut fetched = None;
        let mut downloaded = Vec::new();
        let matches = match url {
            Some(url) if matches.is_empty() => {
                // GC may run during the download: leased from here.
                self.lease()?;
                let download = super::remote::fetch(
                    url,
                    copy.checksum.as_deref(),
                    &self.inner.store,
                    &self.inner.config,
                )
                .map_err(&invalid)?;
                self.note_offline(index, &download);
                downloaded.push(download.as_match(url));
                fetched = Some(download);
                &downloaded[..]
            }
            _ => matches,
        };
        let chmod = copy
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| invalid(format!("--chmod={m} is not an octal mode like 0755")))
            })
            .transpose()?;
        let owner = match &copy.chown {
            None => None,
            Some(spec) => Some(self.resolve_owner(spec, state).map_err(invalid)?),
        };

        // A small COPY stages beside the index opening for writing, under the read section;
        // a large one could hold GC off for seconds: leased first.
        let (entries, bytes) =
            matches
                .iter()
                .flat_map(|m| &m.entries)
                .fold((0usize, 0u64), |(n, b), e| match e.kind {
                    EntryKind::File { size, .. } => (n + 1, b + size),
                    _ => (n + 1, b),
                });
        if entries > STAGED_UNLEASED_ENTRIES || bytes > STAGED_UNLEASED_BYTES {
            self.lease()?;
        }
        let work_dir = &self.inner.config.work_dir;
        let staging = layers::temp_dir(work_dir, "copy-")?;
        let dest = resolve_path(state.config.workdir(), &copy.dest);
        // Through the image's symlinks, as BuildKit resolves a destination: `COPY f /lib/` on a
        // merged-/usr base writes `/usr/lib/f`; staged as `/lib/f`, its directory would hide
        // the image's `/lib` symlink and all of `/usr/lib` below it. Not with `--link`, whose
        // layer does not depend on the image (as in BuildKit).
        let (dest, dir_in_image) = if copy.link {
            (dest, false)
        } else {
            self.dest_in_image(&dest, state)?
        };
        let wildcard = url.is_none() && copy.sources.iter().any(|s| s.contains(['*', '?', '[']));
        let raw_dest = copy.dest.as_str();
        // `--parents` copies the matched paths below the destination (BuildKit copies the
        // source root's contents, filtered to them), so the destination is a directory.
        // `..` and `/` name directories as `.` does (`COPY f /app/..` copies into `/`).
        let dest_is_dir = raw_dest.ends_with('/')
            || copy.parents
            || dest == "/"
            || [".", ".."].contains(&raw_dest)
            || raw_dest.ends_with("/.")
            || raw_dest.ends_with("/..")
            || copy.sources.len() > 1
            || wildcard
            || matches.len() > 1
            || matches
                .first()
                .is_some_and(|m| m.entries.first().is_some_and(|e| e.kind == EntryKind::Dir));
        // A destination the image has as a directory (symlinks followed) takes the source
        // into it, as in BuildKit: `WORKDIR /app` then `COPY f /app` gives `/app/f`.
        let dest_is_dir = dest_is_dir || dir_in_image;
        let mut stage = Stage {
            dest: staging.path().join(dest.trim_start_matches('/')),
            root: staging.path().to_path_buf(),
            dest_is_dir,
            chmod,
            placed: Vec::new(),
            dir_modes: Vec::new(),
            links: HashMap::new(),
            dirs: HashSet::new(),
            real_root: std::fs::canonicalize(staging.path()).map_err(|e| io(staging.path(), e))?,
        };

        self.stage_heredocs(copy, &mut stage).map_err(&invalid)?;
        // A named directory context was resolved into `matches` as the build context is.
        match copy
            .from
            .as_ref()
            .filter(|from| self.context_dir(from).is_none())
        {
            // A git source: the checked-out tree, copied as a directory source.
            None if let Some(git) = self
                .git
                .as_ref()
                .filter(|_| super::git::git_source(copy).is_some()) =>
            {
                let checkout = super::git::check_out(git, work_dir).map_err(&invalid)?;
                // Its contents, as of a context directory (`--exclude` applies; the
                // repository's `.dockerignore` does not, as in BuildKit).
                let mut tree = copy.clone();
                tree.sources = vec![".".into()];
                let ignore = lamina_spec::inputs::IgnoreRules::new();
                let found =
                    lamina_spec::inputs::resolve_copy_inputs_with(&tree, &checkout.tree, &ignore)?;
                stage.dest_is_dir = true;
                stage_matches(&found, &mut stage, false, &invalid)?;
            }
            None => {
                // Local archives are extracted unless told not to, downloads only if told to.
                let extract = match url {
                    Some(_) => copy.unpack == Some(true),
                    None => copy.add && copy.unpack != Some(false),
                };
                stage_matches(matches, &mut stage, extract, &invalid)?;
                // A download not extracted gets its Last-Modified time, as BuildKit does.
                if let Some(url) = url
                    && let Some(file) = stage.placed.last()
                    && std::fs::symlink_metadata(file).is_ok_and(|m| m.is_file())
                {
                    let modified = match &fetched {
                        Some(download) => download.modified(),
                        None => super::remote::kept_modified(work_dir, url, matches),
                    };
                    std::fs::File::open(file)
                        .and_then(|f| f.set_modified(modified))
                        .map_err(|e| io(file, e))?;
                }
            }
            Some(from) => {
                let view = self.view(&self.source_layers(s, from))?;
                for source in copy.sources.iter() {
                    // Cleaned first, as BuildKit joins and cleans a source path: `a/link/..`
                    // is `a`, whatever `link` points at.
                    let source = &resolve_path("/", source);
                    let found = view::find(&view, source, glob_match)
                        .map_err(|e| invalid(format!("{source} in {from}: {e}")))?;
                    // As BuildKit: a wildcard may match nothing; a literal path must exist.
                    if found.is_empty() && !source.contains(['*', '?']) {
                        return Err(invalid(format!("{source} does not exist in {from}")));
                    }
                    if found.len() > 1 {
                        stage.dest_is_dir = true;
                    }
                    for node in found {
                        stage_node(&node, &mut stage)?;
                    }
                }
            }
        }
        // A later source may have re-pointed a symlink on these paths since they were
        // placed: each is checked again before its mode (followed to the end) or owner (all
        // but the last component) changes.
        for (dir, mode) in stage.dir_modes.iter().rev() {
            stage.check_inside(dir)?;
            set_mode(dir, *mode)?;
        }
        if let Some((uid, gid)) = owner {
            let mut checked: Option<&Path> = None;
            for path in &stage.placed {
                // Entries come directory by directory: each parent is checked once in a row.
                if let Some(parent) = path.parent()
                    && checked != Some(parent)
                {
                    stage.check_inside(parent)?;
                    checked = Some(parent);
                }
                std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| io(path, e))?;
            }
        }
        // Wildcards that matched nothing copy nothing, and make no layer.
        let nothing = std::fs::read_dir(staging.path())
            .map_err(|e| io(staging.path(), e))?
            .next()
            .is_none();
        if nothing {
            return Ok(None);
        }
        Ok(Some(self.store_staged(staging)?))
    }

    /// Says on the step's error stream that a kept download stood in for an unreachable URL.
    pub(crate) fn note_offline(&self, index: usize, download: &super::remote::Download) {
        if let Some(why) = &download.offline {
            self.emit(super::BuildEvent::StepLog {
                index,
                stream: crate::sandbox::OutputStream::Stderr,
                line: format!("{why}; using the copy kept from an earlier download"),
            });
        }
    }

    /// `COPY <<EOF /dest`: each here-document source becomes a file.
    fn stage_heredocs(&self, copy: &Copy, stage: &mut Stage) -> Result<(), String> {
        if copy.json_form {
            return Ok(());
        }
        for source in copy.sources.iter().filter(|s| s.starts_with("<<")) {
            let name = source
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(|c| c == '"' || c == '\'');
            let doc = copy
                .heredocs
                .iter()
                .find(|d| d.delimiter == name)
                .ok_or_else(|| format!("here-document {name} has no body"))?;
            let target = if stage.dest_is_dir {
                stage.dest.join(name)
            } else {
                stage.dest.clone()
            };
            make_parents(&target, stage).map_err(|e| e.to_string())?;
            std::fs::write(&target, doc.body.as_bytes()).map_err(|e| e.to_string())?;
            set_mode(&target, stage.chmod.unwrap_or(0o644)).map_err(|e| e.to_string())?;
            stage.placed.push(target);
        }
        Ok(())
    }

    /// `dest` as the stage's image so far resolves it (see `LayerView::resolve`), and whether
    /// it is a directory there.
    fn dest_in_image(&self, dest: &str, state: &StageState) -> Result<(String, bool), ExecError> {
        if state.layers.is_empty() {
            return Ok((dest.to_owned(), false));
        }
        let view = self.view(&state.layers)?;
        let in_image = |e| io(Path::new(dest), e);
        let (resolved, node) = view.resolve(dest).map_err(in_image)?;
        Ok((resolved, node.is_some_and(|node| node.is_dir())))
    }

    /// `--chown=user[:group]`: numbers as they are, names from the image's
    /// `/etc/passwd` and `/etc/group`. A user without group takes the user's group (its
    /// primary group for a name, the same number for a uid).
    fn resolve_owner(&self, spec: &str, state: &StageState) -> Result<(u32, u32), String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let numeric = |s: &str| s.parse::<u32>().ok();
        match (numeric(user), group) {
            (Some(uid), None) => return Ok((uid, uid)),
            (Some(uid), Some(g)) if numeric(g).is_some() => {
                return Ok((uid, numeric(g).unwrap_or(uid)));
            }
            _ => {}
        }
        // Names: read the image's account files.
        let view = self.view(&state.layers).map_err(|e| e.to_string())?;
        let read = |path: &str| -> Result<String, String> {
            let bytes = view
                .read(path)
                .map_err(|e| format!("--chown: cannot read the image's {path}: {e}"))?;
            Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
        };
        let passwd = read("/etc/passwd")?;
        let groups = read("/etc/group")?;
        let lookup = |file: &str, name: &str, field: usize| {
            file.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&name))
                    .then(|| fields.get(field).and_then(|f| f.parse::<u32>().ok()))
                    .flatten()
            })
        };
        let uid = numeric(user)
            .or_else(|| lookup(&passwd, user, 2))
            .ok_or_else(|| format!("--chown: no user {user} in the image's /etc/passwd"))?;
        let gid = match group {
            Some(g) => numeric(g)
                .or_else(|| lookup(&groups, g, 2))
                .ok_or_else(|| format!("--chown: no group {g} in the image's /etc/group"))?,
            None => lookup(&passwd, user, 3).unwrap_or(uid),
        };
        Ok((uid, gid))
    }
}

/// Places resolved local inputs; with `extract` (ADD), a source file that is a tar archive
/// is extracted into the destination instead (`invalid` makes the step's error).
fn stage_matches(
    matches: &[SourceMatch],
    stage: &mut Stage,
    extract: bool,
    invalid: &dyn Fn(String) -> ExecError,
) -> Result<(), ExecError> {
    for m in matches {
        if extract
            && let [entry] = m.entries.as_slice()
            && matches!(entry.kind, EntryKind::File { .. })
            && let Some(tar) =
                super::archive::open_tar(&entry.host_path).map_err(|e| io(&entry.host_path, e))?
        {
            super::archive::extract(tar, &stage.dest, &m.path).map_err(invalid)?;
            // The archive may have put anything anywhere below the destination.
            stage.dirs.clear();
            continue;
        }
        for entry in &m.entries {
            let target = if !stage.dest_is_dir || entry.name == "." {
                stage.dest.clone()
            } else {
                stage.dest.join(&entry.name)
            };
            let mode = stage.chmod.unwrap_or(entry.mode);
            match &entry.kind {
                EntryKind::Dir => make_dir(&target, mode, stage)?,
                EntryKind::File { .. } => copy_file(&entry.host_path, &target, mode, stage)?,
                EntryKind::Symlink { target: link } => {
                    make_symlink(Path::new(std::ffi::OsStr::from_bytes(link)), &target, stage)?
                }
            }
        }
    }
    Ok(())
}

/// Places one path of a materialized rootfs (`COPY --from`): a directory's contents go
/// into the destination, a file to it.
/// Places what a `COPY --from` source names: a directory's contents into the destination,
/// a file into it (or as it).
fn stage_node(node: &Node, stage: &mut Stage) -> Result<(), ExecError> {
    let mode = stage
        .chmod
        .unwrap_or(node.meta.permissions().mode() & 0o7777);
    if node.is_dir() {
        let dest = stage.dest.clone();
        make_dir(&dest, mode, stage)?;
        return copy_dir_contents(node, &dest, stage);
    }
    let target = if stage.dest_is_dir {
        stage.dest.join(&node.name)
    } else {
        stage.dest.clone()
    };
    copy_file(node.host(), &target, mode, stage)
}

fn copy_dir_contents(dir: &Node, dest: &Path, stage: &mut Stage) -> Result<(), ExecError> {
    for (name, node) in view::list(dir).map_err(|e| io(dir.host(), e))? {
        let target = dest.join(&name);
        let mode = stage
            .chmod
            .unwrap_or(node.meta.permissions().mode() & 0o7777);
        let kind = node.meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(node.host()).map_err(|e| io(node.host(), e))?;
            make_symlink(&link, &target, stage)?;
        } else if kind.is_dir() {
            make_dir(&target, mode, stage)?;
            copy_dir_contents(&node, &target, stage)?;
        } else if kind.is_file() {
            copy_file(node.host(), &target, mode, stage)?;
        }
        // Devices, fifos and sockets are not copied, as COPY does not create them.
    }
    Ok(())
}

/// `*` and `?` wildcards (no character classes).
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn make_parents(target: &Path, stage: &mut Stage) -> Result<(), ExecError> {
    match target.parent() {
        Some(parent) => ensure_dir(parent, stage),
        None => Ok(()),
    }
}

/// Makes `dir` of the staging tree a directory, as `mkdir -p` does, but never through a
/// symlink an earlier source placed that leads out of the tree: an entry written through it
/// would land on the host (the build runs as root). One inside the tree is followed, as
/// BuildKit does.
fn ensure_dir(dir: &Path, stage: &mut Stage) -> Result<(), ExecError> {
    if dir == stage.root || stage.dirs.contains(dir) {
        return Ok(());
    }
    let Some(parent) = dir.parent().filter(|p| p.starts_with(&stage.root)) else {
        return Err(io(dir, std::io::Error::other("outside the staging tree")));
    };
    ensure_dir(parent, stage)?;
    // Errors name the path in the image, not the staging tree's on the host.
    let in_image = |e| io(stage.in_image(dir), e);
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(meta) if meta.file_type().is_symlink() => {
            stage.check_inside(dir)?;
        }
        Ok(_) => {
            return Err(in_image(std::io::Error::other(
                "an earlier source of this COPY placed a file here, and a later one puts \
                 entries below it: copy the sources to separate destinations",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(dir).map_err(in_image)?;
        }
        Err(e) => return Err(in_image(e)),
    }
    stage.dirs.insert(dir.to_path_buf());
    Ok(())
}

impl Stage {
    /// Where `path` of the staging tree is in the image.
    fn in_image(&self, path: &Path) -> PathBuf {
        Path::new("/").join(path.strip_prefix(&self.root).unwrap_or(path))
    }

    /// Fails unless `path` resolves to a directory inside the staging tree: a symlink an
    /// earlier source placed may lead out of it (to the host: the build runs as root).
    fn check_inside(&self, path: &Path) -> Result<(), ExecError> {
        let inside = std::fs::canonicalize(path)
            .is_ok_and(|real| real.starts_with(&self.real_root) && real.is_dir());
        if inside {
            return Ok(());
        }
        Err(io(
            self.in_image(path),
            std::io::Error::other(
                "a symlink a source of this COPY placed, leading out of the image or nowhere: \
                 not written through (copy the sources to separate destinations)",
            ),
        ))
    }
}

/// Removes the entry at `target` that a new one replaces. What was known of the tree's
/// directories is forgotten: a cached directory may lie through a symlink replaced here,
/// even one its own path does not name (a symlink inside the tree resolved through it).
fn replace_entry(target: &Path, stage: &mut Stage) -> Result<(), ExecError> {
    std::fs::remove_file(target).map_err(|e| io(target, e))?;
    stage.dirs.clear();
    Ok(())
}

fn make_dir(target: &Path, mode: u32, stage: &mut Stage) -> Result<(), ExecError> {
    if target == stage.root {
        return Ok(());
    }
    ensure_dir(target, stage)?;
    stage.dir_modes.push((target.to_path_buf(), mode));
    stage.placed.push(target.to_path_buf());
    Ok(())
}

fn copy_file(source: &Path, target: &Path, mode: u32, stage: &mut Stage) -> Result<(), ExecError> {
    make_parents(target, stage)?;
    if std::fs::symlink_metadata(target).is_ok_and(|m| !m.is_dir()) {
        replace_entry(target, stage)?;
    }
    let meta = std::fs::metadata(source).map_err(|e| io(source, e))?;
    let source_id = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    if let Some(first) = source_id.and_then(|id| stage.links.get(&id)) {
        // Only while the first staged copy is still that file (a later source may have
        // replaced it at the same path).
        let (first_path, first_ino) = first;
        if first_path != target
            && std::fs::symlink_metadata(first_path).is_ok_and(|m| m.ino() == *first_ino)
            && first_path
                .parent()
                .is_some_and(|parent| stage.check_inside(parent).is_ok())
        {
            std::fs::hard_link(first_path, target).map_err(|e| io(target, e))?;
            stage.placed.push(target.to_path_buf());
            return Ok(());
        }
    }
    copy_contents(source, target)?;
    set_mode(target, mode)?;
    if let Some(id) = source_id {
        let staged = std::fs::symlink_metadata(target).map_err(|e| io(target, e))?;
        stage.links.insert(id, (target.to_path_buf(), staged.ino()));
    }
    stage.placed.push(target.to_path_buf());
    Ok(())
}

/// Copies the bytes of `source` to a new `target`, naming the side that failed: a full disk
/// is the work directory's being written, not the input's.
fn copy_contents(source: &Path, target: &Path) -> Result<(), ExecError> {
    let mut from = std::fs::File::open(source).map_err(|e| io(source, e))?;
    let mut to = std::fs::File::create(target).map_err(|e| io(target, e))?;
    std::io::copy(&mut from, &mut to).map_err(|e| {
        use std::io::ErrorKind as K;
        let writing = matches!(
            e.kind(),
            K::StorageFull | K::QuotaExceeded | K::FileTooLarge | K::ReadOnlyFilesystem
        );
        io(if writing { target } else { source }, e)
    })?;
    Ok(())
}

fn make_symlink(link: &Path, target: &Path, stage: &mut Stage) -> Result<(), ExecError> {
    make_parents(target, stage)?;
    // An earlier source's entry at the same path is replaced (found by the failed attempt:
    // no lookup before every link).
    let placed = match std::os::unix::fs::symlink(link, target) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            replace_entry(target, stage)?;
            std::os::unix::fs::symlink(link, target)
        }
        other => other,
    };
    placed.map_err(|e| io(target, e))?;
    stage.placed.push(target.to_path_buf());
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ExecError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.txt", b"a.txt"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"*.txt", b"a.txz"));
    }
}
