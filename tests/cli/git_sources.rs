//! `ADD <git repository>` through the binary, against a repository made with the real git
//! and served on 127.0.0.1 by `git http-backend` (smart http) and `git daemon` (git://):
//! tags, branches, commits, subdirs, `--keep-git-dir`, BuildKit's query form, submodules,
//! the cache (a branch that moved misses, one that did not hits), `--checksum`, the
//! one-line errors, and a `digest` that never contacts the server.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde_json::Value;

use crate::add_sources::rootfs;
use crate::git_servers::{Daemon, Repo, free_port, git, smart_http};
use crate::require::{Need, missing};
use crate::support::{lamina, lamina_ok, write_tree};

fn build(root: &Path, store: &str, ctx: &str, tag: &str) -> Vec<Value> {
    let out = lamina_ok(
        root,
        &[
            "--store",
            store,
            "build",
            ctx,
            "--tag",
            tag,
            "--progress",
            "json",
        ],
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The texts of the steps that came from the cache, and of those that ran.
fn hits_and_misses(events: &[Value]) -> (Vec<String>, Vec<String>) {
    let text = |index: &Value| {
        events
            .iter()
            .find(|e| e["event"] == "step_started" && e["index"] == *index)
            .and_then(|e| e["text"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (mut hits, mut misses) = (Vec::new(), Vec::new());
    for e in events.iter().filter(|e| e["event"] == "step_finished") {
        if e["cached"] == true {
            hits.push(text(&e["index"]));
        } else {
            misses.push(text(&e["index"]));
        }
    }
    (hits, misses)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn add_checks_out_tags_branches_commits_and_subdirs_over_smart_http() {
    if missing(&[Need::Tool("git")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = Repo::new(root);
    std::fs::write(repo.work.join("tool.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        repo.work.join("tool.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let first = repo.commit(
        &[("README", "one\n"), ("sub/inner.txt", "inner one\n")],
        "one",
    );
    git(&repo.work, &["tag", "-a", "v1", "-m", "release one"]);
    let second = repo.commit(&[("README", "two\n")], "two");
    git(&repo.work, &["checkout", "--quiet", "-b", "dev", &first]);
    let dev = repo.commit(&[("README", "dev\n")], "dev");
    let (base, requests) = smart_http(&repo.srv);
    let url = format!("{base}/repo.git");
    let dockerfile = format!(
        "FROM scratch\n\
         ADD --checksum={short} {url}#v1 /at-tag\n\
         ADD {url}#{second} /at-commit\n\
         ADD {url}#v1:sub /sub\n\
         ADD {url}#dev /at-branch\n\
         ADD --keep-git-dir=true {url}#dev /kept\n\
         ADD {url}?branch=dev&subdir=sub /query\n",
        short = &first[..12]
    );
    write_tree(root, &[("ctx/Dockerfile", &dockerfile)]);
    let check = lamina(root, &["check", "ctx/Dockerfile"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );

    let store = root.join("store");
    let store = store.to_str().unwrap();
    let cold = build(root, store, "ctx", "git:1");
    assert_eq!(hits_and_misses(&cold).0, Vec::<String>::new());
    let fs = rootfs(root, store, "git:1");
    assert_eq!(read(&fs.join("at-tag/README")), "one\n");
    assert!(!fs.join("at-tag/.git").exists(), "no .git without the flag");
    let mode = std::fs::metadata(fs.join("at-tag/tool.sh")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o755
    );
    assert_eq!(read(&fs.join("at-branch/README")), "dev\n");
    assert_eq!(read(&fs.join("at-commit/README")), "two\n");
    assert_eq!(read(&fs.join("sub/inner.txt")), "inner one\n");
    assert!(!fs.join("sub/README").exists(), "only the subdir");
    assert_eq!(read(&fs.join("query/inner.txt")), "inner one\n");
    // A real repository at the commit, the branch under its name, origin the URL.
    let kept = fs.join("kept");
    let kept_git = |args: &[&str]| {
        let mut all = vec!["-c", "safe.directory=*", "-C", kept.to_str().unwrap()];
        all.extend_from_slice(args);
        git(root, &all)
    };
    assert_eq!(kept_git(&["rev-parse", "HEAD"]), dev);
    assert_eq!(kept_git(&["rev-parse", "refs/heads/dev"]), dev);
    assert_eq!(kept_git(&["remote", "get-url", "origin"]), url);
    assert_eq!(kept_git(&["status", "--porcelain"]), "");

    // `digest` reads the URL text: not one request.
    let before = requests.load(Ordering::SeqCst);
    lamina_ok(root, &["digest", "ctx/Dockerfile"]);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        before,
        "digest made a request"
    );

    let warm = build(root, store, "ctx", "git:2");
    let (hits, misses) = hits_and_misses(&warm);
    assert_eq!((hits.len(), misses), (6, Vec::<String>::new()));

    // The branch moves: its three steps miss (the last three), the others hit.
    let moved = repo.commit(&[("README", "dev moved\n")], "dev again");
    let after = build(root, store, "ctx", "git:3");
    let (hits, misses) = hits_and_misses(&after);
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(
        misses.len() == 3 && misses.iter().all(|m| m.contains("dev")),
        "{misses:?}"
    );
    let result = after.last().unwrap();
    let miss = result["first_miss"].as_str().unwrap_or_default();
    assert!(
        miss.contains("inputs changed") && miss.contains(&format!("{url}#dev")),
        "{result}"
    );
    let fs = rootfs(root, store, "git:3");
    assert_eq!(read(&fs.join("at-branch/README")), "dev moved\n");
    let kept = fs.join("kept");
    let head = git(
        root,
        &[
            "-c",
            "safe.directory=*",
            "-C",
            kept.to_str().unwrap(),
            "rev-parse",
            "HEAD",
        ],
    );
    assert_eq!(head, moved);
}

/// Runs `lamina build` of a one-ADD Dockerfile that must fail; returns the error line
/// that names the step.
fn failing_add(root: &Path, store: &str, add: &str) -> String {
    write_tree(
        root,
        &[("bad/Dockerfile", &format!("FROM scratch\n{add}\n"))],
    );
    let output = lamina(root, &["--store", store, "build", "bad", "--tag", "bad:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(!output.status.success(), "{add} built: {stderr}");
    stderr
        .lines()
        .rfind(|l| l.contains("ADD "))
        .unwrap_or_else(|| panic!("no line names the step: {stderr}"))
        .to_string()
}

#[test]
fn git_daemon_sources_submodules_errors_and_a_digest_without_the_server() {
    if missing(&[Need::Tool("git")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = Repo::new(root);
    let first = repo.commit(&[("README", "one\n"), ("sub/inner.txt", "in\n")], "one");
    git(&repo.work, &["tag", "v1"]);
    let second = repo.commit(&[("README", "two\n")], "two");
    let daemon = Daemon::start(&repo.srv);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    // A second repository with the first as a submodule, both over git://.
    let outer = root.join("outer");
    std::fs::create_dir_all(&outer).unwrap();
    git(&outer, &["init", "--quiet"]);
    git(&outer, &["submodule", "--quiet", "add", &url, "lib"]);
    std::fs::write(outer.join("main.txt"), "outer\n").unwrap();
    git(&outer, &["add", "-A"]);
    git(&outer, &["commit", "--quiet", "-m", "outer"]);
    git(
        &repo.srv,
        &["clone", "--quiet", "--bare", "../outer", "outer.git"],
    );
    let outer_url = format!("git://127.0.0.1:{}/outer.git", daemon.port);

    let good = format!(
        "FROM scratch\nADD {url}#v1 /src\nADD {outer_url} /outer\n\
         ADD --exclude=sub {url}#v1 /excluded\n"
    );
    write_tree(root, &[("ctx/Dockerfile", &good)]);
    let store = root.join("store");
    let store = store.to_str().unwrap();
    build(root, store, "ctx", "daemon:1");
    let fs = rootfs(root, store, "daemon:1");
    assert_eq!(read(&fs.join("src/README")), "one\n");
    assert_eq!(read(&fs.join("src/sub/inner.txt")), "in\n");
    assert_eq!(read(&fs.join("excluded/README")), "one\n");
    assert!(!fs.join("excluded/sub").exists(), "--exclude applies");
    assert_eq!(read(&fs.join("outer/main.txt")), "outer\n");
    assert_eq!(read(&fs.join("outer/lib/README")), "two\n", "the submodule");
    assert!(!fs.join("outer/lib/.git").exists() && !fs.join("outer/.git").exists());

    for (add, expected) in [
        (format!("ADD {url}#nope /x"), "does not contain ref nope"),
        (
            format!("ADD --checksum={second} {url}#v1 /x"),
            "does not match --checksum",
        ),
        (
            format!("ADD --checksum=zz {url}#v1 /x"),
            "expected hex commit hash",
        ),
        (
            format!("ADD {url}#v1:nothere /x"),
            "subdir nothere is not a directory",
        ),
        (
            "ADD git@127.0.0.1:org/repo.git#v1 /x".to_string(),
            "pass --ssh default",
        ),
        (
            format!("ADD git://127.0.0.1:{}/repo.git#v1 /x", free_port()),
            "git ls-remote failed",
        ),
    ] {
        let line = failing_add(root, store, &add);
        assert!(line.contains(expected), "{add}: {line}");
        let source = add.split_whitespace().rev().nth(1).unwrap();
        assert!(line.contains(source), "{add}: {line}");
    }
    // The checksum of the right commit passes.
    write_tree(
        root,
        &[(
            "sum/Dockerfile",
            &format!("FROM scratch\nADD --checksum={first} {url}#v1 /src\n"),
        )],
    );
    build(root, store, "sum", "sum:1");

    let digest = lamina_ok(root, &["digest", "ctx/Dockerfile"]);
    drop(daemon);
    assert_eq!(
        lamina_ok(root, &["digest", "ctx/Dockerfile"]),
        digest,
        "digest needs no server"
    );
    // A branch or tag needs the server; the kept commit of a hash does not.
    write_tree(
        root,
        &[(
            "pinned/Dockerfile",
            &format!("FROM scratch\nADD {url}#{first} /src\nADD {url}#{first}:sub /sub\n"),
        )],
    );
    let line = failing_add(root, store, &format!("ADD {url}#v1 /x"));
    assert!(line.contains("git ls-remote failed"), "{line}");
    build(root, store, "pinned", "pinned:1");
    let fs = rootfs(root, store, "pinned:1");
    assert_eq!(read(&fs.join("sub/inner.txt")), "in\n");
}

/// `ssh://` and `git@` sources reach git's ssh with the agent given by `--ssh` and in
/// batch mode: an `ssh` first on PATH records what it was given (no sshd is needed).
#[test]
fn ssh_sources_use_the_builds_agent_in_batch_mode() {
    if missing(&[Need::Tool("git"), Need::Tool("sh")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let record = root.join("ssh-called");
    write_tree(
        root,
        &[
            (
                "bin/ssh",
                &format!(
                    "#!/bin/sh\necho \"$SSH_AUTH_SOCK $*\" >> {}\necho 'ssh: no route' >&2\nexit 255\n",
                    record.display()
                ),
            ),
            (
                "ctx/Dockerfile",
                "FROM scratch\nADD git@git.example.invalid:org/repo.git#v1 /src\n",
            ),
        ],
    );
    std::fs::set_permissions(
        root.join("bin/ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let store = root.join("store");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(["--store", store.to_str().unwrap(), "build", "ctx"])
        .args(["--ssh", "default=/run/agent.sock"])
        .env("PATH", path)
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .rfind(|l| l.contains("ADD "))
        .unwrap_or_default();
    assert!(
        line.contains("git ls-remote failed") && line.contains("ssh: no route"),
        "{stderr}"
    );
    let called = read(&record);
    assert!(
        called.starts_with("/run/agent.sock ")
            && called.contains("BatchMode=yes")
            && called.contains("git@git.example.invalid"),
        "{called}"
    );
}

/// A server of plain files (git's dumb http) cannot make a shallow pack: the fetch falls
/// back to the whole history. A kept repository broken on disk is made again, and one
/// unused past the TTL is removed by `cache gc`.
#[test]
fn dumb_http_and_a_broken_kept_repository() {
    if missing(&[Need::Tool("git")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let repo = Repo::new(root);
    repo.commit(&[("README", "one\n")], "one");
    git(&repo.work, &["tag", "v1"]);
    repo.commit(&[("README", "two\n")], "two");
    git(&repo.srv.join("repo.git"), &["update-server-info"]);
    let url = format!("{}/repo.git", crate::git_servers::static_http(&repo.srv));
    write_tree(
        root,
        &[(
            "ctx/Dockerfile",
            &format!("FROM scratch\nADD {url}#v1 /one\nADD {url} /head\n"),
        )],
    );
    let store = root.join("store");
    let store = store.to_str().unwrap();
    build(root, store, "ctx", "dumb:1");
    let fs = rootfs(root, store, "dumb:1");
    assert_eq!(read(&fs.join("one/README")), "one\n");
    assert_eq!(read(&fs.join("head/README")), "two\n");

    // Break every kept repository (as a disk error would), then build without the cache.
    let mut broken = 0;
    for entry in walk(Path::new(store)) {
        if entry.ends_with("git-cache-v1") {
            for repo in std::fs::read_dir(&entry).unwrap().flatten() {
                if !repo.path().is_dir() {
                    continue; // the stamp of its last use
                }
                std::fs::remove_dir_all(repo.path().join("objects")).unwrap();
                std::fs::write(repo.path().join("HEAD"), "garbage").unwrap();
                broken += 1;
            }
        }
    }
    assert_eq!(broken, 1, "one kept repository per URL");
    let out = lamina_ok(
        root,
        &[
            "--store",
            store,
            "build",
            "ctx",
            "--no-cache",
            "--tag",
            "dumb:2",
        ],
    );
    assert!(out.contains("sha256:"), "{out}");
    let fs = rootfs(root, store, "dumb:2");
    assert_eq!(read(&fs.join("one/README")), "one\n");

    // GC drops a kept repository unused past the TTL; the next miss fetches again.
    let gc = lamina_ok(
        root,
        &[
            "--store",
            store,
            "cache",
            "gc",
            "--ttl",
            "0s",
            "--min-age",
            "0s",
            "--json",
        ],
    );
    let gc: Value = serde_json::from_str(&gc).unwrap();
    assert_eq!(gc["git_repos_removed"], 1, "{gc}");
    let out = lamina_ok(
        root,
        &[
            "--store",
            store,
            "build",
            "ctx",
            "--no-cache",
            "--tag",
            "dumb:3",
        ],
    );
    assert!(out.contains("sha256:"), "{out}");
}

/// Every directory below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

/// A server that accepts and never answers fails the step once git's low-speed limit runs
/// out (the user's `GIT_HTTP_LOW_SPEED_TIME` wins over lamina's 60 s).
#[test]
fn a_stalled_server_fails_the_step_in_bounded_time() {
    if missing(&[Need::Tool("git")]) {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stalled.git", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.extend(stream.ok());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[(
            "ctx/Dockerfile",
            &format!("FROM scratch\nADD {url}#v1 /x\n"),
        )],
    );
    let store = root.join("store");
    let started = std::time::Instant::now();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lamina"))
        .args(["--store", store.to_str().unwrap(), "build", "ctx"])
        .env("GIT_HTTP_LOW_SPEED_TIME", "2")
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .rfind(|l| l.contains("ADD "))
        .unwrap_or_default();
    assert!(line.contains(&url) && line.contains("too slow"), "{stderr}");
}
