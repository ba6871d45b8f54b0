//! ADD of a git repository, as BuildKit has it: `ADD <repo>[#<ref>[:<subdir>]] <dest>`
//! copies the tree of one commit (its contents go into the destination directory).
//!
//! Sources: http(s) URLs whose path ends in `.git`, `git://`, `ssh://`, and the scp-like
//! `git@host:org/repo.git`; the ref is a branch, a tag or a full commit hash (default: the
//! remote's HEAD), also written as BuildKit's `##ref=…,subdir=…` or its URL query
//! (`?ref=`, `?branch=`, `?tag=`, `?subdir=`, `?checksum=`/`?commit=`, `?keep-git-dir=`,
//! `?submodules=`). The git CLI does the work:
//! - the ref is resolved with `git ls-remote` (a full commit hash needs no request), and
//!   the step key holds the commit, the subdir, `--keep-git-dir` and the URL without its
//!   credentials: a branch that moved misses, one that did not hits after one ls-remote;
//! - `--checksum=<hex>` must be a prefix of the resolved commit (or of the annotated tag);
//! - on a miss the commit is fetched (`--depth 1`) into a bare repository kept per URL
//!   under `<work_dir>/git-cache-v1` (made in a side directory and renamed into place, so
//!   a killed build never leaves a half-made one), then checked out into a fresh
//!   repository; submodules are checked out (`--depth 1`) as BuildKit does;
//!   `lamina cache gc` removes a kept repository unused past the store's TTL (`prune`);
//! - `--keep-git-dir=true` keeps that repository's `.git`: HEAD detached at the commit, the
//!   branch or tag kept under its name, `origin` the URL without its password (as BuildKit;
//!   ignored with a subdir, as BuildKit ignores it); without it no `.git` is copied.
//!
//! Over ssh (`git@…`, `ssh://`) git uses the agent the build was given with `--ssh
//! default`, in batch mode (known hosts as the user's ssh has them); without `--ssh` the
//! step fails saying so. https trusts what git trusts (the system CA store, or
//! `GIT_SSL_CAINFO`; `SSL_CERT_FILE` when only that is set) and follows the proxy
//! environment. git never prompts, a stalled transfer fails (`GIT_HTTP_LOW_SPEED_*`), and
//! every git command has a time limit.

mod cli;
mod prune;
mod source;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lamina_spec::Copy;

use super::layers::{self, KeyLock};
use cli::Git;
pub use prune::{GitCachePruned, prune_git_cache};
pub(crate) use source::{GitRef, GitSource, git_refusal, git_source, is_git_source, redacted};
use source::{is_full_hash, over_ssh, parse};

/// How long `git ls-remote` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long fetching one commit (and its submodules) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a git command that stays on this machine may take.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A source resolved to its commit.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub source: GitSource,
    pub commit: String,
    /// The annotated tag object the ref named, if it named one.
    tag_object: Option<String>,
    /// The full name of the ref (`refs/heads/main`, `refs/tags/v1`), when known.
    ref_name: Option<String>,
    /// The build's SSH agent socket.
    ssh_socket: Option<PathBuf>,
}

impl Resolved {
    /// What the step key holds of the source.
    pub(crate) fn key_text(&self) -> String {
        let s = &self.source;
        format!(
            "git {} commit={} subdir={} keep-git-dir={} submodules={}",
            redacted(&s.remote),
            self.commit,
            s.subdir,
            s.keep_git_dir,
            s.submodules
        )
    }
}

/// Resolves `source` (an ADD's, with its flags in `copy`) to a commit: `git ls-remote`
/// unless the ref is a commit hash; checks `--checksum`. `ssh` holds the build's agents.
pub(crate) fn resolve(
    source: &str,
    copy: &Copy,
    ssh: &BTreeMap<String, PathBuf>,
) -> Result<Resolved, String> {
    let parsed = parse(source, copy)?;
    let shown = redacted(source);
    let ssh_socket = ssh.get("default").cloned();
    if over_ssh(&parsed.remote) && ssh_socket.is_none() {
        return Err(format!(
            "{shown} is fetched over ssh with your SSH agent: pass --ssh default to the build"
        ));
    }
    let git = Git {
        ssh_socket: ssh_socket.clone(),
    };
    let (commit, tag_object, ref_name) = match &parsed.reference {
        GitRef::Commit(c) => (c.clone(), None, None),
        GitRef::Default => {
            let listing = git
                .run(
                    None,
                    &["ls-remote", "--symref", &parsed.remote, "HEAD"],
                    RESOLVE_TIMEOUT,
                )
                .map_err(|e| format!("{shown}: {e}"))?;
            let mut commit = None;
            let mut branch = None;
            for line in listing.lines() {
                match line.split_once('\t') {
                    Some((target, "HEAD")) if target.starts_with("ref: ") => {
                        branch = Some(target["ref: ".len()..].to_string());
                    }
                    Some((sha, "HEAD")) => commit = Some(sha.to_string()),
                    _ => {}
                }
            }
            let commit =
                commit.ok_or_else(|| format!("{shown}: the repository has no HEAD commit"))?;
            (commit, None, branch)
        }
        GitRef::Named(name) | GitRef::Branch(name) | GitRef::Tag(name) => {
            let candidates: Vec<String> = match &parsed.reference {
                GitRef::Branch(b) => vec![format!("refs/heads/{b}")],
                GitRef::Tag(t) => vec![format!("refs/tags/{t}")],
                // The order git resolves a short name in.
                _ => vec![
                    name.clone(),
                    format!("refs/{name}"),
                    format!("refs/tags/{name}"),
                    format!("refs/heads/{name}"),
                ],
            };
            let peeled = format!("{name}^{{}}");
            let listing = git
                .run(
                    None,
                    &["ls-remote", &parsed.remote, name, &peeled],
                    RESOLVE_TIMEOUT,
                )
                .map_err(|e| format!("{shown}: {e}"))?;
            let (full, sha, peeled) = pick(&listing, &candidates).ok_or_else(|| {
                format!("{shown}: repository does not contain ref {name} (no such branch or tag)")
            })?;
            match peeled {
                Some(commit) => (commit, Some(sha), Some(full)),
                None => (sha, None, Some(full)),
            }
        }
    };
    if !is_full_hash(&commit) {
        return Err(format!(
            "{shown}: the remote answered {commit:?}, not a commit"
        ));
    }
    if let Some(sum) = &parsed.checksum {
        let matches = |o: &String| o.starts_with(sum.as_str());
        if !matches(&commit) && !tag_object.as_ref().is_some_and(matches) {
            return Err(format!(
                "{shown} is commit {commit}, which does not match --checksum={sum} (expected \
                 checksum to match); nothing was stored"
            ));
        }
    }
    Ok(Resolved {
        source: parsed,
        commit,
        tag_object,
        ref_name,
        ssh_socket,
    })
}

/// The first of `candidates` in an `ls-remote` listing: its name, object and (for an
/// annotated tag) the commit it peels to.
fn pick(listing: &str, candidates: &[String]) -> Option<(String, String, Option<String>)> {
    let refs: BTreeMap<&str, &str> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, name)| (name, sha))
        .collect();
    candidates.iter().find_map(|name| {
        let sha = refs.get(name.as_str())?;
        let peeled = refs.get(format!("{name}^{{}}").as_str());
        Some((name.clone(), sha.to_string(), peeled.map(|p| p.to_string())))
    })
}

/// A checked-out tree; removed on drop.
#[derive(Debug)]
pub(crate) struct Checkout {
    _dir: tempfile::TempDir,
    /// The directory whose contents the ADD copies.
    pub tree: PathBuf,
}

/// Fetches the commit of `resolved` (through the kept bare repository of its URL) and
/// checks it out under `work_dir`.
pub(crate) fn check_out(resolved: &Resolved, work_dir: &Path) -> Result<Checkout, String> {
    let shown = redacted(&resolved.source.remote);
    let git = Git {
        ssh_socket: resolved.ssh_socket.clone(),
    };
    let remote = &resolved.source.remote;
    let name = blake3::hash(remote.as_bytes()).to_hex().to_string();
    let _lock = KeyLock::acquire(work_dir, &prune::lock_key(&name)).map_err(|e| e.to_string())?;
    let cache = work_dir.join("git-cache-v1");
    let repo = cache.join(&name);
    // A second attempt starts from a new bare repository, in case the kept one is damaged.
    for attempt in 0..2 {
        ensure_repo(&git, &cache, &name, attempt > 0)?;
        fetch(&git, &repo, resolved).map_err(|e| format!("{shown}: {e}"))?;
        let subdir = &resolved.source.subdir;
        if !subdir.is_empty() {
            let spec = format!("{}:{subdir}", resolved.commit);
            let kind = git.run(
                None,
                &["--git-dir", path_str(&repo)?, "cat-file", "-t", &spec],
                LOCAL_TIMEOUT,
            );
            if kind.as_deref().map(str::trim) != Ok("tree") {
                return Err(format!(
                    "{shown}: subdir {subdir} is not a directory in commit {}",
                    resolved.commit
                ));
            }
        }
        match check_out_from(&git, &repo, resolved, work_dir) {
            Ok(checkout) => {
                // For GC: when this repository was last needed.
                let stamp = prune::used_stamp(&cache, &name);
                let touched = std::fs::File::create(&stamp)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                if let Err(e) = touched {
                    tracing::warn!("cannot write {}: {e}", stamp.display());
                }
                return Ok(checkout);
            }
            Err(e) if attempt == 0 => {
                tracing::warn!("checking out {shown} from its kept repository failed: {e}")
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    }
    unreachable!("the second attempt returns")
}

/// Makes sure `<cache>/<name>` is a bare repository: made aside and renamed into place,
/// so that a killed build leaves either none or a whole one; a broken one (or any, with
/// `fresh`) is made again.
fn ensure_repo(git: &Git, cache: &Path, name: &str, fresh: bool) -> Result<(), String> {
    let repo = cache.join(name);
    let aside = cache.join(format!("{name}.new"));
    // Under the lock, anything aside is left from a killed build.
    remove(&aside)?;
    let healthy = !fresh
        && repo.is_dir()
        && git
            .run(
                None,
                &[
                    "--git-dir",
                    path_str(&repo)?,
                    "rev-parse",
                    "--is-bare-repository",
                ],
                LOCAL_TIMEOUT,
            )
            .is_ok_and(|out| out.trim() == "true");
    if healthy {
        // Lock files of git commands killed with the build.
        for lock in [
            "shallow.lock",
            "packed-refs.lock",
            "config.lock",
            "HEAD.lock",
        ] {
            remove(&repo.join(lock))?;
        }
        remove_lock_files(&repo.join("refs"))?;
        return Ok(());
    }
    remove(&repo)?;
    std::fs::create_dir_all(cache)
        .map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    git.run(
        None,
        &["init", "--quiet", "--bare", path_str(&aside)?],
        LOCAL_TIMEOUT,
    )?;
    std::fs::rename(&aside, &repo)
        .map_err(|e| format!("cannot move {} into place: {e}", aside.display()))
}

fn remove(path: &Path) -> Result<(), String> {
    let gone = match std::fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    gone.map_err(|e| format!("cannot remove {}: {e}", path.display()))
}

fn remove_lock_files(dir: &Path) -> Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_lock_files(&path)?;
        } else if path.extension().is_some_and(|e| e == "lock") {
            remove(&path)?;
        }
    }
    Ok(())
}

/// Fetches what `resolved` needs into `repo` unless it is there: the commit, and the
/// annotated tag object. Each object stays named by `refs/lamina/<object>`.
fn fetch(git: &Git, repo: &Path, resolved: &Resolved) -> Result<(), String> {
    let dir = path_str(repo)?;
    let has = |object: &str| {
        git.run(
            None,
            &["--git-dir", dir, "cat-file", "-e", object],
            LOCAL_TIMEOUT,
        )
        .is_ok()
    };
    let needed: Vec<&String> = std::iter::once(&resolved.commit)
        .chain(&resolved.tag_object)
        .collect();
    let named = |o: &String| has(&format!("refs/lamina/{o}"));
    if !needed.iter().all(|o| named(o)) {
        if !needed.iter().all(|o| has(o)) {
            let source = resolved.ref_name.as_ref().unwrap_or(&resolved.commit);
            let refspec = format!("+{source}:refs/lamina/fetched");
            let mut args = vec![
                "--git-dir",
                dir,
                "fetch",
                "--quiet",
                "--no-tags",
                "--depth",
                "1",
                resolved.source.remote.as_str(),
                refspec.as_str(),
            ];
            if let Err(e) = git.run(None, &args, FETCH_TIMEOUT) {
                // Dumb http servers cannot make shallow packs: fetch the history then.
                if !(e.contains("shallow") || e.contains("depth")) {
                    return Err(e);
                }
                args.retain(|a| *a != "--depth" && *a != "1");
                git.run(None, &args, FETCH_TIMEOUT)?;
            }
            if let Some(missing) = needed.iter().find(|o| !has(o)) {
                return Err(format!(
                    "{} moved away from {missing} while it was fetched; build again",
                    resolved.ref_name.as_deref().unwrap_or("the ref")
                ));
            }
        }
        for object in needed {
            git.run(
                None,
                &[
                    "--git-dir",
                    dir,
                    "update-ref",
                    &format!("refs/lamina/{object}"),
                    object,
                ],
                LOCAL_TIMEOUT,
            )?;
        }
    }
    Ok(())
}

/// A new repository at the commit, made from the bare `repo` (over `file://`, as BuildKit
/// does, so nothing of the host beyond the repository is read); then submodules, then
/// the `.git` directories removed unless kept.
fn check_out_from(
    git: &Git,
    repo: &Path,
    resolved: &Resolved,
    work_dir: &Path,
) -> Result<Checkout, String> {
    let source = &resolved.source;
    let dir = layers::temp_dir(work_dir, "git-").map_err(|e| e.to_string())?;
    let tree = dir.path().join("tree");
    let tree_str = path_str(&tree)?;
    let at = |args: &[&str], timeout| {
        let mut all = vec!["-C", tree_str];
        all.extend_from_slice(args);
        git.run(None, &all, timeout)
    };
    git.run(None, &["init", "--quiet", tree_str], LOCAL_TIMEOUT)?;
    let commit = &resolved.commit;
    // The ref the source named, under its own name (an annotated tag as its tag object).
    let refspec = match resolved.ref_name.as_deref() {
        Some(name) if name.starts_with("refs/heads/") => format!("+refs/lamina/{commit}:{name}"),
        Some(name) if name.starts_with("refs/tags/") => format!(
            "+refs/lamina/{}:{name}",
            resolved.tag_object.as_ref().unwrap_or(commit)
        ),
        _ => format!("refs/lamina/{commit}"),
    };
    let url = format!("file://{}", path_str(repo)?);
    at(
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--update-head-ok",
            "--depth",
            "1",
            &url,
            &refspec,
        ],
        LOCAL_TIMEOUT,
    )?;
    at(&["checkout", "--quiet", "--detach", commit], LOCAL_TIMEOUT)?;
    at(
        &["remote", "add", "origin", &redacted(&source.remote)],
        LOCAL_TIMEOUT,
    )?;
    at(
        &["reflog", "expire", "--all", "--expire=now"],
        LOCAL_TIMEOUT,
    )?;
    remove(&tree.join(".git/FETCH_HEAD"))?;
    if source.submodules && tree.join(".gitmodules").is_file() {
        at(
            &[
                "submodule",
                "update",
                "--init",
                "--recursive",
                "--depth",
                "1",
            ],
            FETCH_TIMEOUT,
        )
        .map_err(|e| format!("cannot check out the submodules: {e}"))?;
    }
    // BuildKit keeps `.git` only for a whole repository.
    let keep = source.keep_git_dir && source.subdir.is_empty();
    if !keep {
        remove_git_dirs(&tree)?;
    }
    normalize_modes(&tree)?;
    let copied = tree.join(&source.subdir);
    Ok(Checkout {
        _dir: dir,
        tree: copied,
    })
}

/// Removes `.git` (the repository's and each submodule's link) everywhere in `dir`; git
/// never tracks a path named `.git`, so nothing of the commit goes.
fn remove_git_dirs(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == ".git" {
            remove(&path)?;
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_git_dirs(&path)?;
        }
    }
    Ok(())
}

/// Modes as git records them, whatever the umask: directories 0755, files 0644 or (when
/// executable) 0755; the `.git` directory as git left it.
fn normalize_modes(dir: &Path) -> Result<(), String> {
    let set = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    set(dir, 0o755)?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if entry.file_name() == ".git" || meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            normalize_modes(&path)?;
        } else {
            let executable = meta.permissions().mode() & 0o100 != 0;
            set(&path, if executable { 0o755 } else { 0o644 })?;
        }
    }
    Ok(())
}

fn path_str(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests;
