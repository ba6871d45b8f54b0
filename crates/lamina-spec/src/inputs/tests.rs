use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn copy(sources: &[&str]) -> Copy {
    Copy::new(sources.iter().map(|s| s.to_string()).collect(), "/dest/")
}

fn names(matches: &[SourceMatch]) -> Vec<String> {
    matches
        .iter()
        .flat_map(|m| m.entries.iter().map(|e| e.name.clone()))
        .collect()
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "app/main.py", b"print('hi')\n");
    write(dir.path(), "app/pkg/mod.py", b"x = 1\n");
    write(dir.path(), "app/pkg/data.bin", &[7u8; 70_000]);
    write(dir.path(), "README.md", b"# readme\n");
    write(dir.path(), "notes.txt", b"notes\n");
    write(dir.path(), "b.txt", b"b\n");
    fs::create_dir_all(dir.path().join("app/empty")).expect("mkdir");
    dir
}

#[test]
fn directory_source_lists_contents_relative_to_itself() {
    let ctx = context();
    let matches = resolve_copy_inputs(&copy(&["app/"]), ctx.path()).expect("resolve");
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].path, "app");
    assert_eq!(matches[0].source, 0);
    assert_eq!(
        names(&matches),
        [".", "empty", "main.py", "pkg", "pkg/data.bin", "pkg/mod.py"]
    );
    let entries = &matches[0].entries;
    assert_eq!(entries[0].kind, EntryKind::Dir);
    let data = entries
        .iter()
        .find(|e| e.name == "pkg/data.bin")
        .expect("data.bin");
    assert_eq!(
        data.kind,
        EntryKind::File {
            size: 70_000,
            hash: *blake3::hash(&[7u8; 70_000]).as_bytes()
        }
    );
    assert_eq!(
        data.host_path,
        ctx.path()
            .canonicalize()
            .expect("canon")
            .join("app/pkg/data.bin")
    );
    assert_eq!(matches[0].file_bytes(), 70_000 + 12 + 6);
}

#[test]
fn file_sources_are_named_by_base_name_and_keep_source_order() {
    let ctx = context();
    let matches =
        resolve_copy_inputs(&copy(&["notes.txt", "./app/../app/main.py"]), ctx.path()).expect("ok");
    assert_eq!(
        matches.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        ["notes.txt", "app/main.py"]
    );
    assert_eq!(names(&matches), ["notes.txt", "main.py"]);
    assert_eq!(matches[1].source, 1);
}

#[test]
fn leading_slash_and_dot_resolve_against_the_root() {
    let ctx = context();
    let abs = resolve_copy_inputs(&copy(&["/notes.txt"]), ctx.path()).expect("ok");
    assert_eq!(abs[0].path, "notes.txt");
    let all = resolve_copy_inputs(&copy(&["."]), ctx.path()).expect("ok");
    assert_eq!(all[0].path, ".");
    assert!(names(&all).contains(&"app/pkg/mod.py".to_string()));
}

#[test]
fn globs_match_per_component_in_byte_order() {
    let ctx = context();
    write(ctx.path(), ".hidden.txt", b"h");
    write(ctx.path(), "sub/c.txt", b"c");
    let matches = resolve_copy_inputs(&copy(&["*.txt"]), ctx.path()).expect("ok");
    assert_eq!(
        matches.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        [".hidden.txt", "b.txt", "notes.txt"]
    );
    let nested = resolve_copy_inputs(&copy(&["*/[a-z]*.py"]), ctx.path()).expect("ok");
    assert_eq!(
        nested.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        ["app/main.py"]
    );
    let dirs = resolve_copy_inputs(&copy(&["ap?"]), ctx.path()).expect("ok");
    assert_eq!(dirs[0].entries[0].name, ".");
}

#[test]
fn missing_literal_sources_are_errors() {
    let ctx = context();
    for source in ["nope.txt", "notes.txt/x", "cwallet.sso"] {
        match resolve_copy_inputs(&copy(&[source]), ctx.path()) {
            Err(SpecError::CopySourceNotFound { source_name, .. }) => {
                assert_eq!(source_name, source)
            }
            other => panic!("{source}: unexpected {other:?}"),
        }
    }
}

/// BuildKit copies nothing for a wildcard that matches nothing (`COPY cwallet.ss[o] ./`).
#[test]
fn wildcards_that_match_nothing_copy_nothing() {
    let ctx = context();
    for source in ["*.nothing", "app/nope/*.py", "cwallet.ss[o]"] {
        let found = resolve_copy_inputs(&copy(&[source, "notes.txt"]), ctx.path());
        let paths: Vec<String> = found.expect(source).into_iter().map(|m| m.path).collect();
        assert_eq!(paths, ["notes.txt"], "{source}");
    }
    write(ctx.path(), "cwallet.sso", b"wallet");
    let found = resolve_copy_inputs(&copy(&["cwallet.ss[o]"]), ctx.path()).expect("ok");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "cwallet.sso");
}

#[test]
fn escaping_sources_are_errors() {
    let ctx = context();
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret", b"s");
    symlink(outside.path().join("secret"), ctx.path().join("link")).expect("symlink");
    symlink(outside.path(), ctx.path().join("linkdir")).expect("symlink");
    for source in ["../x", "app/../../x", "link", "linkdir/secret", "linkdir/*"] {
        match resolve_copy_inputs(&copy(&[source]), ctx.path()) {
            Err(SpecError::CopySourceOutsideContext { source_name, .. }) => {
                assert_eq!(source_name, source);
            }
            other => panic!("{source}: unexpected {other:?}"),
        }
    }
}

#[test]
fn symlink_sources_inside_the_root_are_followed() {
    let ctx = context();
    symlink("app/main.py", ctx.path().join("entry.py")).expect("symlink");
    let matches = resolve_copy_inputs(&copy(&["entry.py"]), ctx.path()).expect("ok");
    assert_eq!(matches[0].path, "entry.py");
    assert_eq!(matches[0].entries[0].name, "entry.py");
    assert!(matches!(
        matches[0].entries[0].kind,
        EntryKind::File { size: 12, .. }
    ));
}

#[test]
fn symlinks_inside_directories_are_kept() {
    let ctx = context();
    symlink("../../outside/target", ctx.path().join("app/pkg/ln")).expect("symlink");
    let matches = resolve_copy_inputs(&copy(&["app"]), ctx.path()).expect("ok");
    let link = matches[0]
        .entries
        .iter()
        .find(|e| e.name == "pkg/ln")
        .expect("link");
    assert_eq!(
        link.kind,
        EntryKind::Symlink {
            target: b"../../outside/target".to_vec()
        }
    );
}

#[test]
fn dockerignore_hides_files_and_directories() {
    let ctx = context();
    write(
        ctx.path(),
        ".dockerignore",
        b"# build output\napp/pkg\n!app/pkg/mod.py\n*.md\n",
    );
    let matches = resolve_copy_inputs(&copy(&["."]), ctx.path()).expect("ok");
    let got = names(&matches);
    assert!(got.contains(&"app/pkg/mod.py".to_string()), "{got:?}");
    assert!(
        got.contains(&"app/pkg".to_string()),
        "parent of a re-included file is kept"
    );
    assert!(!got.contains(&"app/pkg/data.bin".to_string()), "{got:?}");
    assert!(!got.contains(&"README.md".to_string()), "{got:?}");
    assert!(got.contains(&".dockerignore".to_string()));

    // A source that is itself ignored is not in the context.
    match resolve_copy_inputs(&copy(&["README.md"]), ctx.path()) {
        Err(SpecError::CopySourceNotFound { .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // Globs skip ignored matches (and may then match nothing).
    let md = resolve_copy_inputs(&copy(&["*.md", "notes.txt"]), ctx.path()).expect("ok");
    assert_eq!(names(&md), ["notes.txt"]);
}

#[test]
fn ignored_directory_without_exceptions_is_skipped_entirely() {
    let ctx = context();
    write(ctx.path(), ".dockerignore", b"app/pkg\n");
    let matches = resolve_copy_inputs(&copy(&["app"]), ctx.path()).expect("ok");
    assert_eq!(names(&matches), [".", "empty", "main.py"]);
}

#[test]
fn excludes_apply_relative_to_the_match() {
    let ctx = context();
    let mut c = copy(&["app", "*.txt"]);
    c.excludes = vec!["**/*.bin".into(), "notes.txt".into()];
    let matches = resolve_copy_inputs(&c, ctx.path()).expect("ok");
    assert_eq!(
        names(&matches),
        [".", "empty", "main.py", "pkg", "pkg/mod.py", "b.txt"]
    );
    c.excludes = vec!["pkg".into()];
    let matches = resolve_copy_inputs(&c, ctx.path()).expect("ok");
    assert!(!names(&matches).iter().any(|n| n.starts_with("pkg")));
    c.excludes = vec!["[".into()];
    assert!(matches!(
        resolve_copy_inputs(&c, ctx.path()),
        Err(SpecError::InvalidIgnorePattern { ref origin, .. }) if origin == "COPY --exclude"
    ));
}

#[test]
fn parents_keep_the_matched_path_below_the_pivot() {
    let ctx = context();
    let mut c = copy(&["app/pkg/mod.py", "app/./pkg"]);
    c.parents = true;
    let matches = resolve_copy_inputs(&c, ctx.path()).expect("ok");
    assert_eq!(
        names(&matches),
        ["app/pkg/mod.py", "pkg", "pkg/data.bin", "pkg/mod.py"]
    );
}

#[test]
fn remote_from_and_heredoc_sources_are_skipped() {
    let ctx = context();
    let mut c = copy(&["https://example.invalid/x.tar", "<<EOF", "notes.txt"]);
    c.add = true;
    let matches = resolve_copy_inputs(&c, ctx.path()).expect("ok");
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].source, 2);
    let mut from = copy(&["/does/not/exist"]);
    from.from = Some("builder".into());
    assert!(
        resolve_copy_inputs(&from, ctx.path())
            .expect("ok")
            .is_empty()
    );
    // In the JSON form `<<EOF` is a file name.
    let mut json = copy(&["<<EOF"]);
    json.json_form = true;
    assert!(matches!(
        resolve_copy_inputs(&json, ctx.path()),
        Err(SpecError::CopySourceNotFound { .. })
    ));
}

#[test]
fn modes_and_empty_files_are_recorded() {
    let ctx = context();
    write(ctx.path(), "run.sh", b"");
    fs::set_permissions(
        ctx.path().join("run.sh"),
        fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
    let matches = resolve_copy_inputs(&copy(&["run.sh"]), ctx.path()).expect("ok");
    let entry = &matches[0].entries[0];
    assert_eq!(entry.mode, 0o4755);
    assert_eq!(
        entry.kind,
        EntryKind::File {
            size: 0,
            hash: *blake3::hash(b"").as_bytes()
        }
    );
}

#[test]
fn invalid_source_glob_is_an_error() {
    let ctx = context();
    assert!(matches!(
        resolve_copy_inputs(&copy(&["app/[a-"]), ctx.path()),
        Err(SpecError::InvalidCopySource { .. })
    ));
}

#[test]
fn unsupported_files_are_errors_unless_ignored() {
    let ctx = context();
    let socket_path = ctx.path().join("app/sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");
    assert!(matches!(
        resolve_copy_inputs(&copy(&["app"]), ctx.path()),
        Err(SpecError::UnsupportedInput { .. })
    ));
    write(ctx.path(), ".dockerignore", b"app/sock\n");
    assert!(resolve_copy_inputs(&copy(&["app"]), ctx.path()).is_ok());
}

#[test]
fn hash_tree_walks_in_byte_order_and_honours_rules() {
    let ctx = context();
    write(ctx.path(), "app/a.txt", b"a");
    write(ctx.path(), "app/a/b", b"b");
    write(ctx.path(), "app/a-z", b"z");
    let rules = IgnoreRules::from_patterns(["pkg/*.bin"], "test").expect("rules");
    let entries = hash_tree(&ctx.path().join("app"), &rules).expect("tree");
    let got: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        got,
        [
            ".",
            "a",
            "a-z",
            "a.txt",
            "a/b",
            "empty",
            "main.py",
            "pkg",
            "pkg/mod.py"
        ]
    );
    assert!(matches!(
        hash_tree(&ctx.path().join("notes.txt"), &rules),
        Err(SpecError::NotADirectory { .. })
    ));
    assert!(matches!(
        hash_tree(&ctx.path().join("nope"), &rules),
        Err(SpecError::LocalPathMissing { .. })
    ));
}

#[test]
fn parallel_hashing_equals_a_sequential_reference() {
    let ctx = tempfile::tempdir().expect("tempdir");
    // Sizes around the read / mmap / multi-thread thresholds.
    let sizes = [
        0usize,
        1,
        16 * 1024 - 1,
        16 * 1024,
        200_000,
        (1 << 20) + 3,
        3 << 20,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let content: Vec<u8> = (0..*size).map(|j| (j * 31 + i * 7) as u8).collect();
        write(ctx.path(), &format!("d{}/f{i}", i % 3), &content);
    }
    let parallel = hash_tree(ctx.path(), &IgnoreRules::new()).expect("parallel");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let single = pool
        .install(|| hash_tree(ctx.path(), &IgnoreRules::new()))
        .expect("single");
    assert_eq!(parallel, single);
    let mut files = 0;
    for entry in &parallel {
        if let EntryKind::File { size, hash } = &entry.kind {
            let content = fs::read(&entry.host_path).expect("read");
            assert_eq!(*size, content.len() as u64);
            assert_eq!(hash, blake3::hash(&content).as_bytes(), "{}", entry.name);
            files += 1;
        }
    }
    assert_eq!(files, sizes.len());
}

#[test]
fn missing_root_is_reported() {
    let err = resolve_copy_inputs(&copy(&["x"]), Path::new("/nonexistent/lamina/ctx")).unwrap_err();
    assert!(matches!(err, SpecError::LocalPathMissing { .. }), "{err:?}");
}

#[test]
fn non_utf8_names_are_refused_when_copied() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let ctx = context();
    let bad = OsStr::from_bytes(b"bad\xff.txt");
    if fs::write(ctx.path().join(bad), b"x").is_err() {
        return; // the file system refuses such names: nothing to test
    }
    assert!(matches!(
        resolve_copy_inputs(&copy(&["*.txt"]), ctx.path()),
        Err(SpecError::UnsupportedInput { .. })
    ));
    assert!(matches!(
        resolve_copy_inputs(&copy(&["."]), ctx.path()),
        Err(SpecError::UnsupportedInput { .. })
    ));
    // A pattern that cannot match it is unaffected.
    assert!(resolve_copy_inputs(&copy(&["n*.txt"]), ctx.path()).is_ok());
}
