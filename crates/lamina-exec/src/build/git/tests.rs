use std::time::Instant;

use super::*;

fn add(keep: Option<bool>, checksum: Option<&str>) -> Copy {
    let mut copy = Copy::new(Vec::new(), "/src");
    copy.add = true;
    copy.keep_git_dir = keep;
    copy.checksum = checksum.map(str::to_string);
    copy
}

fn parsed(source: &str) -> GitSource {
    parse(source, &add(None, None)).unwrap_or_else(|e| panic!("{source}: {e}"))
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn recognises_git_sources_as_buildkit_does() {
    for yes in [
        "https://h/org/repo.git",
        "https://h/org/repo.git#v1:sub",
        "http://127.0.0.1:9/r.git?ref=main",
        "git://h/repo",
        "ssh://git@h/org/repo",
        "git@github.com:org/repo.git#main",
    ] {
        assert!(is_git_source(yes), "{yes}");
    }
    for no in [
        "https://h/org/repo.tgz",
        "https://h/dl?file=x.git",
        "https://h.git",
        "git@nocolon",
        "src/repo.git",
    ] {
        assert!(!is_git_source(no), "{no}");
    }
}

#[test]
fn fragments_name_ref_and_subdir() {
    let s = parsed("https://h/org/repo.git#v1.2:docs/./api/");
    assert_eq!(s.remote, "https://h/org/repo.git");
    assert_eq!(s.reference, GitRef::Named("v1.2".into()));
    assert_eq!(s.subdir, "docs/api");
    assert!(!s.keep_git_dir && s.submodules && s.checksum.is_none());

    let s = parsed("https://h/org/repo.git");
    assert_eq!((s.reference, s.subdir.as_str()), (GitRef::Default, ""));
    let s = parsed("https://h/org/repo.git#:sub");
    assert_eq!((s.reference, s.subdir.as_str()), (GitRef::Default, "sub"));
    let s = parsed(&format!("git://h/r#{}", SHA.to_uppercase()));
    assert_eq!(s.reference, GitRef::Commit(SHA.into()));

    let s = parsed("git@github.com:org/repo.git#feature/x:sub");
    assert_eq!(s.remote, "git@github.com:org/repo.git");
    assert_eq!(s.reference, GitRef::Named("feature/x".into()));
    assert_eq!(s.subdir, "sub");

    let s = parsed(&format!("https://h/r.git##ref=main,subdir=/a,commit={SHA}"));
    assert_eq!(s.reference, GitRef::Named("main".into()));
    assert_eq!((s.subdir.as_str(), s.checksum.as_deref()), ("a", Some(SHA)));
}

#[test]
fn queries_name_ref_subdir_and_flags() {
    let s = parsed("https://h/r.git?branch=main&subdir=sub&keep-git-dir=true&submodules=false");
    assert_eq!(s.remote, "https://h/r.git");
    assert_eq!(s.reference, GitRef::Branch("main".into()));
    assert_eq!(s.subdir, "sub");
    assert!(s.keep_git_dir && !s.submodules);
    assert_eq!(
        parsed("https://h/r.git?tag=v1#refs/tags/v1").reference,
        GitRef::Tag("v1".into())
    );
    assert_eq!(
        parsed(&format!("https://h/r.git?checksum={SHA}")).reference,
        GitRef::Commit(SHA.into())
    );
    // A query without BuildKit's keys stays part of the URL.
    assert_eq!(
        parsed("https://h/r.git?token=x#v1").remote,
        "https://h/r.git?token=x"
    );
    let fails = |source: &str, copy: &Copy, part: &str| {
        let err = parse(source, copy).unwrap_err();
        assert!(err.contains(part), "{source}: {err}");
    };
    let plain = add(None, None);
    fails(
        "https://h/r.git?tag=v1#refs/heads/master",
        &plain,
        "ref conflicts",
    );
    fails("https://h/r.git?ref=a&color=red", &plain, "`color`");
    fails(
        "https://h/r.git?ref=a&branch=b",
        &plain,
        "more than one ref",
    );
    fails(
        "https://h/r.git#main:../up",
        &plain,
        "leaves the repository",
    );
    fails("https://h/r.git#-oops", &plain, "not a ref name");
    fails(
        "https://h/r.git",
        &add(None, Some("sha256:abcd")),
        "expected hex commit hash",
    );
    fails(
        "https://h/r.git?checksum=abcd",
        &add(None, Some("beef")),
        "conflicts with --checksum",
    );
}

#[test]
fn flags_and_credentials() {
    let s = parse("https://h/r.git#v1", &add(Some(true), Some("ABCD12"))).unwrap();
    assert!(s.keep_git_dir);
    assert_eq!(s.checksum.as_deref(), Some("abcd12"));
    assert_eq!(
        redacted("https://user:token@h/r.git#v1"),
        "https://h/r.git#v1"
    );
    assert_eq!(
        redacted("ssh://git:secret@h:22/r.git"),
        "ssh://git@h:22/r.git"
    );
    assert_eq!(redacted("git@h:org/r.git"), "git@h:org/r.git");
    assert!(over_ssh("git@h:org/r.git") && over_ssh("ssh://h/r") && !over_ssh("git://h/r"));
}

#[test]
fn ssh_sources_need_the_builds_agent() {
    let copy = add(None, None);
    let err = resolve(
        "git@example.invalid:org/r.git#main",
        &copy,
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert!(err.contains("--ssh default"), "{err}");
}

#[test]
fn ls_remote_picks_tags_before_branches_and_peels_annotated_tags() {
    let listing = format!(
        "{a}\trefs/heads/v1\n{b}\trefs/tags/v1\n{c}\trefs/tags/v1^{{}}\n",
        a = "a".repeat(40),
        b = "b".repeat(40),
        c = "c".repeat(40)
    );
    let candidates = ["v1", "refs/v1", "refs/tags/v1", "refs/heads/v1"].map(String::from);
    assert_eq!(
        pick(&listing, &candidates),
        Some(("refs/tags/v1".into(), "b".repeat(40), Some("c".repeat(40))))
    );
    assert_eq!(
        pick(&listing, &["refs/heads/v1".to_string()]),
        Some(("refs/heads/v1".into(), "a".repeat(40), None))
    );
    assert_eq!(pick(&listing, &["refs/heads/main".to_string()]), None);
}

/// A kept repository that is not whole (a build killed while making it by hand, or a
/// damaged one) is made again; a whole one is kept, its stale lock files removed.
#[test]
fn a_broken_kept_repository_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("git-cache-v1");
    std::fs::create_dir_all(cache.join("abc/objects")).unwrap();
    std::fs::write(cache.join("abc/HEAD"), "garbage").unwrap();
    std::fs::create_dir_all(cache.join("abc.new")).unwrap();
    let git = Git { ssh_socket: None };
    ensure_repo(&git, &cache, "abc", false).unwrap();
    let bare = |path: &Path| {
        git.run(
            None,
            &[
                "--git-dir",
                path.to_str().unwrap(),
                "rev-parse",
                "--is-bare-repository",
            ],
            LOCAL_TIMEOUT,
        )
        .map(|o| o.trim().to_string())
    };
    assert_eq!(bare(&cache.join("abc")).as_deref(), Ok("true"));
    assert!(!cache.join("abc.new").exists());
    std::fs::write(cache.join("abc/shallow.lock"), "").unwrap();
    std::fs::create_dir_all(cache.join("abc/refs/lamina")).unwrap();
    std::fs::write(cache.join("abc/refs/lamina/x.lock"), "").unwrap();
    std::fs::write(cache.join("abc/kept"), "").unwrap();
    ensure_repo(&git, &cache, "abc", false).unwrap();
    assert!(
        cache.join("abc/kept").exists(),
        "a whole repository is kept"
    );
    assert!(!cache.join("abc/shallow.lock").exists());
    assert!(!cache.join("abc/refs/lamina/x.lock").exists());
}

#[test]
fn a_stalled_git_command_is_stopped() {
    let git = Git { ssh_socket: None };
    // `git -c alias.x='!sleep 5' x` stands for a transfer that never ends.
    let started = Instant::now();
    let err = git
        .run(
            None,
            &["-c", "alias.stall=!sleep 5", "stall"],
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(err.contains("did not finish"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
