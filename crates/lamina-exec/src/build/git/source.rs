//! Git sources as written: which sources are repositories, and their parts (remote,
//! ref, subdir, flags) from BuildKit's fragment, CSV-fragment and query forms.

use lamina_spec::Copy;

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
pub(super) fn scp_like(source: &str) -> bool {
    source.starts_with("git@")
        && !source.contains("://")
        && source.split('#').next().is_some_and(|s| s.contains(':'))
}

/// Whether git reaches `remote` over ssh.
pub(super) fn over_ssh(remote: &str) -> bool {
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

pub(super) fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A full SHA-1 or SHA-256 object name.
pub(super) fn is_full_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && is_hex(s)
}

pub(super) fn clean_subdir(subdir: &str) -> Result<String, String> {
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
