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

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lamina_spec::Copy;

use super::layers::{self, KeyLock};

/// How long `git ls-remote` may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long fetching one commit (and its submodules) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a git command that stays on this machine may take.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Which commit of the repository a source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GitRef {
    /// The remote's HEAD.
    Default,
    /// A branch, a tag or a full ref name (`refs/…`), as git resolves a name.
    Named(String),
    /// `?branch=`: only a branch.
    Branch(String),
    /// `?tag=`: only a tag.
    Tag(String),
    /// A full commit hash.
    Commit(String),
}

/// A git source of an ADD, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitSource {
    /// The repository as git is given it (no fragment, no BuildKit query).
    pub remote: String,
    pub reference: GitRef,
    /// The directory of the repository copied, cleaned (`""` for the root).
    pub subdir: String,
    pub keep_git_dir: bool,
    /// A hex prefix of the commit (or annotated tag) the ref must resolve to.
    pub checksum: Option<String>,
    pub submodules: bool,
}

/// Whether `source` (expanded) names a git repository: `git://`, `ssh://`, `git@host:…`,
/// or an http(s) URL whose path ends in `.git`.
pub(crate) fn is_git_source(source: &str) -> bool {
    if source.starts_with("git://") || source.starts_with("ssh://") || scp_like(source) {
        return true;
    }
    let Some(rest) = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
    else {
        return false;
    };
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    path.contains('/') && (path.ends_with(".git") || path.ends_with(".git/"))
}

/// `git@host:path`: not a URL, so never split on `?`.
fn scp_like(source: &str) -> bool {
    source.starts_with("git@")
        && !source.contains("://")
        && source.split('#').next().is_some_and(|s| s.contains(':'))
}

/// Whether git reaches `remote` over ssh.
fn over_ssh(remote: &str) -> bool {
    remote.starts_with("ssh://") || scp_like(remote)
}

/// The git source of an ADD, if it has one.
pub(crate) fn git_source(copy: &Copy) -> Option<&str> {
    if !copy.add || copy.from.is_some() {
        return None;
    }
    copy.sources
        .iter()
        .map(String::as_str)
        .find(|s| is_git_source(s))
}

/// Why an ADD of a git source cannot be built, found without the network: other sources
/// beside it, or a source or checksum that does not parse.
pub(crate) fn git_refusal(copy: &Copy) -> Option<String> {
    let source = git_source(copy)?;
    if copy.sources.len() > 1 {
        return Some(format!(
            "ADD of {} with other sources is not supported: give the repository its own ADD",
            redacted(source)
        ));
    }
    parse(source, copy).err()
}

/// `source` with the flags of `copy` (`--keep-git-dir`, `--checksum`).
pub(crate) fn parse(source: &str, copy: &Copy) -> Result<GitSource, String> {
    let shown = redacted(source);
    let fail = |why: String| format!("{shown}: {why}");
    let (before_fragment, fragment) = match source.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (source, None),
    };
    let mut remote = before_fragment.to_string();
    let mut query_ref = None;
    let mut subdir = None;
    let mut keep_git_dir = copy.keep_git_dir.unwrap_or(false);
    let mut checksum = copy.checksum.clone();
    let mut submodules = true;
    if !scp_like(source)
        && let Some((base, query)) = before_fragment.split_once('?')
    {
        const KEYS: [&str; 8] = [
            "ref",
            "branch",
            "tag",
            "subdir",
            "checksum",
            "commit",
            "keep-git-dir",
            "submodules",
        ];
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        // A query without BuildKit's keys belongs to the URL.
        if pairs.iter().any(|(k, _)| KEYS.contains(k)) {
            remote = base.to_string();
            let flag = |k: &str, v: &str| match v {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(fail(format!("?{k}={v} is not true or false"))),
            };
            for (key, value) in pairs {
                let reference = match key {
                    "ref" => GitRef::Named(value.to_string()),
                    "branch" => GitRef::Branch(value.to_string()),
                    "tag" => GitRef::Tag(value.to_string()),
                    "subdir" => {
                        subdir = Some(value.to_string());
                        continue;
                    }
                    "checksum" | "commit" => {
                        if checksum.as_deref().is_some_and(|c| c != value) {
                            return Err(fail(format!(
                                "?{key}={value} conflicts with --checksum={}",
                                checksum.unwrap_or_default()
                            )));
                        }
                        checksum = Some(value.to_string());
                        continue;
                    }
                    "keep-git-dir" => {
                        keep_git_dir = flag(key, value)?;
                        continue;
                    }
                    "submodules" => {
                        submodules = flag(key, value)?;
                        continue;
                    }
                    other => {
                        return Err(fail(format!(
                            "unknown query key `{other}`; use {}",
                            KEYS.join(", ")
                        )));
                    }
                };
                if query_ref.is_some() {
                    return Err(fail("the query names more than one ref".into()));
                }
                query_ref = Some(reference);
            }
        }
    }
    let (fragment_ref, fragment_subdir) = match fragment {
        None | Some("") => (None, None),
        // `##ref=…,subdir=…,commit=…`
        Some(csv) if csv.starts_with('#') => {
            let (mut r, mut s) = (None, None);
            for field in csv[1..].split(',').filter(|f| !f.is_empty()) {
                match field.split_once('=') {
                    Some(("ref", v)) => r = Some(v.to_string()),
                    Some(("subdir", v)) => s = Some(v.to_string()),
                    Some(("commit", v)) => {
                        checksum = Some(v.to_string());
                    }
                    _ => {
                        return Err(fail(format!(
                            "fragment field `{field}` is not ref=, subdir= or commit="
                        )));
                    }
                }
            }
            (r, s)
        }
        Some(f) => {
            let (r, s) = f.split_once(':').unwrap_or((f, ""));
            (
                (!r.is_empty()).then(|| r.to_string()),
                (!s.is_empty()).then(|| s.to_string()),
            )
        }
    };
    let reference = match (query_ref, fragment_ref) {
        (Some(q), Some(f)) => {
            let agrees = match &q {
                GitRef::Named(n) => *n == f,
                GitRef::Branch(b) => f == *b || f == format!("refs/heads/{b}"),
                GitRef::Tag(t) => f == *t || f == format!("refs/tags/{t}"),
                _ => false,
            };
            if !agrees {
                return Err(fail(format!("ref conflicts: the query and #{f} differ")));
            }
            q
        }
        (Some(q), None) => q,
        (None, Some(f)) => GitRef::Named(f),
        (None, None) => GitRef::Default,
    };
    let checksum = match checksum {
        None => None,
        Some(sum) if is_hex(&sum) && sum.len() <= 64 => Some(sum.to_ascii_lowercase()),
        Some(sum) => {
            return Err(fail(format!(
                "invalid checksum {sum}: expected hex commit hash"
            )));
        }
    };
    let reference = match reference {
        GitRef::Named(n) if is_full_hash(&n) => GitRef::Commit(n.to_ascii_lowercase()),
        // `?checksum=<commit>` alone names the commit.
        GitRef::Default if checksum.as_deref().is_some_and(is_full_hash) => {
            GitRef::Commit(checksum.clone().unwrap_or_default())
        }
        other => other,
    };
    if let GitRef::Named(n) | GitRef::Branch(n) | GitRef::Tag(n) = &reference
        && (n.is_empty() || n.starts_with('-') || n.contains(['\0', ' ', '\n']))
    {
        return Err(fail(format!("`{n}` is not a ref name")));
    }
    let subdir =
        clean_subdir(fragment_subdir.or(subdir).as_deref().unwrap_or("")).map_err(&fail)?;
    if remote.is_empty() || remote.starts_with('-') {
        return Err(fail("no repository is named".into()));
    }
    Ok(GitSource {
        remote,
        reference,
        subdir,
        keep_git_dir,
        checksum,
        submodules,
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A full SHA-1 or SHA-256 object name.
fn is_full_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && is_hex(s)
}

fn clean_subdir(subdir: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("subdir {subdir} leaves the repository")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// `remote` without credentials: no user info for http(s), no password for others.
pub(crate) fn redacted(remote: &str) -> String {
    let Some((scheme, rest)) = remote.split_once("://") else {
        return remote.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let Some((user, host)) = authority.rsplit_once('@') else {
        return remote.to_string();
    };
    match scheme {
        "http" | "https" => format!("{scheme}://{host}{path}"),
        _ => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}@{host}{path}")
        }
    }
}

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
    let lock_key = *blake3::hash(format!("git-cache-v1\0{remote}").as_bytes()).as_bytes();
    let _lock = KeyLock::acquire(work_dir, &lock_key).map_err(|e| e.to_string())?;
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
            Ok(checkout) => return Ok(checkout),
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

/// How git is run: never prompting, in batch mode over ssh, with a time limit.
struct Git {
    ssh_socket: Option<PathBuf>,
}

impl Git {
    /// Runs `git args` and returns its standard output, or its last error line.
    fn run(&self, cwd: Option<&Path>, args: &[&str], timeout: Duration) -> Result<String, String> {
        let mut cmd = Command::new("git");
        cmd.args([
            "-c",
            "protocol.file.allow=user",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "advice.detachedHead=false",
            "-c",
            "init.defaultBranch=master",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env(
            "GIT_SSH_COMMAND",
            "ssh -o BatchMode=yes -o ConnectTimeout=30 -o ServerAliveInterval=15 \
             -o ServerAliveCountMax=4",
        )
        // The user's own git environment must not redirect these commands.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .process_group(0);
        for (name, default) in [
            ("GIT_HTTP_LOW_SPEED_LIMIT", "1000"),
            ("GIT_HTTP_LOW_SPEED_TIME", "60"),
        ] {
            if std::env::var_os(name).is_none() {
                cmd.env(name, default);
            }
        }
        // git's TLS (GnuTLS on Debian) does not read SSL_CERT_FILE.
        if std::env::var_os("GIT_SSL_CAINFO").is_none()
            && let Some(file) = std::env::var_os("SSL_CERT_FILE")
            && Path::new(&file).is_file()
        {
            cmd.env("GIT_SSL_CAINFO", file);
        }
        match &self.ssh_socket {
            Some(socket) => cmd.env("SSH_AUTH_SOCK", socket),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "git is not installed (Debian package git); ADD of a repository needs it"
                    .to_string()
            } else {
                format!("cannot run git: {e}")
            }
        })?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    // The whole group: git's helpers (ssh, remote-http) hold the pipes.
                    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                        let _ =
                            rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                    }
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        let what = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('/'))
            .unwrap_or(&"git");
        match status {
            None => Err(format!(
                "git {what} did not finish within {} s",
                timeout.as_secs()
            )),
            Some(s) if s.success() => Ok(String::from_utf8_lossy(&out).into_owned()),
            Some(s) => {
                // Everything git (and ssh) said, joined into one line; the end if long.
                let err = String::from_utf8_lossy(&err);
                let mut line = err
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(cut) = line.len().checked_sub(500)
                    && let Some(start) = (cut..line.len()).find(|i| line.is_char_boundary(*i))
                {
                    line = format!("…{}", &line[start..]);
                }
                if line.is_empty() {
                    line = format!("exited with {s}");
                }
                Err(format!("git {what} failed: {line}"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
