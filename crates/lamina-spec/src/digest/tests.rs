use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

/// A project: a few files, nested and empty directories, a symlink and a .dockerignore.
fn project(root: &Path) {
    write(root, "app/main.py", b"print('hello')\n");
    write(root, "app/lib/util.py", b"def f():\n    return 1\n");
    write(root, "app/lib/deep/er/data.json", b"{}\n");
    write(root, "app/empty.txt", b"");
    write(root, "app/big.bin", &vec![42u8; 300_000]);
    write(root, "requirements.txt", b"numpy==2.0\n");
    write(root, "app/cache/tmp.log", b"log\n");
    write(root, ".dockerignore", b"app/cache\n**/*.pyc\n");
    fs::create_dir_all(root.join("app/empty_dir")).expect("mkdir");
    symlink("main.py", root.join("app/entry.py")).expect("symlink");
}

fn dockerfile() -> Dockerfile {
    let mut stage = Stage::from_base("python:3.12.10-slim-bookworm");
    stage
        .instructions
        .push(Instruction::Run(Run::shell("apt-get update")));
    stage.instructions.push(Instruction::Copy(Copy::new(
        vec!["requirements.txt".into()],
        "/.requirements.txt",
    )));
    stage.instructions.push(Instruction::Run(Run::shell(
        "python -m pip install -r /.requirements.txt",
    )));
    let mut app = Copy::new(vec!["app".into()], "/srv/app");
    app.excludes = vec!["**/*.tmp".into()];
    stage.instructions.push(Instruction::Copy(app));
    stage
        .instructions
        .push(Instruction::Workdir("/srv/app".into()));
    stage.instructions.push(Instruction::Cmd(Command::Exec(vec![
        "python".into(),
        "main.py".into(),
    ])));
    Dockerfile {
        stages: vec![stage],
        ..Dockerfile::default()
    }
}

fn digest_of(root: &Path) -> DefinitionDigest {
    definition_digest(&dockerfile(), &Context::new(root)).expect("digest")
}

/// A digest of the standard project, then of the same project after `change`.
fn before_after(change: impl FnOnce(&Path)) -> (DefinitionDigest, DefinitionDigest) {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let before = digest_of(dir.path());
    change(dir.path());
    (before, digest_of(dir.path()))
}

#[test]
fn same_definition_in_two_directories_has_one_digest() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    project(a.path());
    project(&b.path().join("nested/elsewhere"));
    assert_eq!(
        digest_of(a.path()),
        digest_of(&b.path().join("nested/elsewhere"))
    );
}

#[test]
fn digest_is_stable_across_calls_and_thread_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let single = pool.install(|| digest_of(dir.path()));
    assert_eq!(digest_of(dir.path()), single);
    assert_eq!(digest_of(dir.path()), digest_of(dir.path()));
}

#[test]
fn touching_mtimes_keeps_the_digest() {
    let (before, after) = before_after(|root| {
        let later = SystemTime::now() + Duration::from_secs(3600);
        for rel in ["app/main.py", "requirements.txt", "app/lib"] {
            let file = fs::File::options()
                .read(true)
                .open(root.join(rel))
                .expect("open");
            file.set_modified(later).expect("set mtime");
        }
    });
    assert_eq!(before, after);
}

#[test]
fn one_changed_byte_changes_the_digest() {
    let (before, after) = before_after(|root| {
        let mut big = fs::read(root.join("app/big.bin")).expect("read");
        big[150_000] ^= 1;
        fs::write(root.join("app/big.bin"), big).expect("write");
    });
    assert_ne!(before, after);
    let (before, after) = before_after(|root| write(root, "requirements.txt", b"numpy==2.1\n"));
    assert_ne!(before, after);
}

#[test]
fn renaming_a_file_changes_the_digest() {
    let (before, after) = before_after(|root| {
        fs::rename(root.join("app/lib/util.py"), root.join("app/lib/utils.py")).expect("rename");
    });
    assert_ne!(before, after);
}

#[test]
fn chmod_changes_the_digest() {
    let (before, after) = before_after(|root| {
        let path = root.join("app/main.py");
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o111)).expect("chmod");
    });
    assert_ne!(before, after);
}

#[test]
fn symlink_target_change_changes_the_digest() {
    let (before, after) = before_after(|root| {
        fs::remove_file(root.join("app/entry.py")).expect("rm");
        symlink("lib/util.py", root.join("app/entry.py")).expect("symlink");
    });
    assert_ne!(before, after);
}

#[test]
fn ignored_and_excluded_files_do_not_count() {
    let (before, after) = before_after(|root| {
        write(root, "app/cache/tmp.log", b"changed\n");
        write(root, "app/cache/new.log", b"new\n");
        write(root, "app/lib/util.pyc", b"bytecode");
        write(root, "app/scratch.tmp", b"excluded by --exclude");
        write(root, "unrelated.txt", b"not copied by any step");
    });
    assert_eq!(before, after);
}

#[test]
fn changing_dockerignore_to_reveal_a_file_changes_the_digest() {
    let (before, after) = before_after(|root| write(root, ".dockerignore", b"**/*.pyc\n"));
    assert_ne!(before, after);
}

#[test]
fn empty_files_and_directories_count() {
    let (before, after) = before_after(|root| {
        fs::create_dir(root.join("app/another_empty_dir")).expect("mkdir");
    });
    assert_ne!(before, after);
    let (before, after) = before_after(|root| write(root, "app/lib/deep/new_empty", b""));
    assert_ne!(before, after);
    let (before, after) = before_after(|root| {
        fs::remove_dir(root.join("app/empty_dir")).expect("rmdir");
    });
    assert_ne!(before, after);
}

#[test]
fn creation_order_on_disk_is_irrelevant() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("app/d{}/f{i:02}", i % 4), vec![i as u8; i * 10]))
        .collect();
    for root in [a.path(), b.path()] {
        write(root, "requirements.txt", b"x\n");
    }
    for (rel, content) in &files {
        write(a.path(), rel, content);
    }
    for (rel, content) in files.iter().rev() {
        write(b.path(), rel, content);
    }
    assert_eq!(digest_of(a.path()), digest_of(b.path()));
}

#[test]
fn instructions_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let context = Context::new(dir.path());
    let base = definition_digest(&dockerfile(), &context).expect("digest");

    let mut more = dockerfile();
    more.stages[0]
        .instructions
        .push(Instruction::Env(vec![("A".into(), "1".into())]));
    assert_ne!(base, definition_digest(&more, &context).expect("digest"));

    // Whitespace inside a shell command counts.
    let mut spaced = dockerfile();
    spaced.stages[0].instructions[0] = Instruction::Run(Run::shell("apt-get  update"));
    assert_ne!(base, definition_digest(&spaced, &context).expect("digest"));

    // Exec and shell forms differ.
    let mut shell = dockerfile();
    shell.stages[0].instructions[5] = Instruction::Cmd(Command::Shell("python main.py".into()));
    assert_ne!(base, definition_digest(&shell, &context).expect("digest"));

    // Flags count.
    let mut chown = dockerfile();
    if let Instruction::Copy(copy) = &mut chown.stages[0].instructions[1] {
        copy.chown = Some("1000:1000".into());
    }
    assert_ne!(base, definition_digest(&chown, &context).expect("digest"));

    // The escape directive counts; the syntax directive does not.
    let mut escape = dockerfile();
    escape.escape = '`';
    assert_ne!(base, definition_digest(&escape, &context).expect("digest"));
    let mut syntax = dockerfile();
    syntax.syntax = Some("docker/dockerfile:1".into());
    assert_eq!(base, definition_digest(&syntax, &context).expect("digest"));

    // Stage headers and global args count.
    let mut named = dockerfile();
    named.stages[0].name = Some("final".into());
    assert_ne!(base, definition_digest(&named, &context).expect("digest"));
    let mut args = dockerfile();
    args.global_args.push(ArgDecl {
        name: "V".into(),
        default: None,
    });
    assert_ne!(base, definition_digest(&args, &context).expect("digest"));
}

#[test]
fn moving_an_instruction_between_stages_changes_the_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let context = Context::new(dir.path());
    let mut one = Dockerfile::default();
    let mut first = Stage::from_base("alpine:3.20");
    first
        .instructions
        .push(Instruction::Run(Run::shell("true")));
    one.stages = vec![first, Stage::from_base("scratch")];
    let mut two = one.clone();
    let moved = two.stages[0].instructions.remove(0);
    two.stages[1].instructions.push(moved);
    assert_ne!(
        definition_digest(&one, &context).expect("digest"),
        definition_digest(&two, &context).expect("digest")
    );
}

#[test]
fn step_roots_resolve_sources_elsewhere_without_changing_the_digest() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    project(a.path());
    // Same files, but the app step's source directory is set per step.
    project(&b.path().join("ctx"));
    fs::rename(b.path().join("ctx/app"), b.path().join("elsewhere")).expect("move");
    fs::create_dir(b.path().join("elsewhere_root")).expect("mkdir");
    fs::rename(
        b.path().join("elsewhere"),
        b.path().join("elsewhere_root/app"),
    )
    .expect("move");
    fs::write(b.path().join("elsewhere_root/.dockerignore"), "app/cache\n").expect("write");
    let mut context = Context::new(b.path().join("ctx"));
    context.set_step_root(
        StepRef {
            stage: 0,
            instruction: 3,
        },
        b.path().join("elsewhere_root"),
    );
    assert_eq!(
        definition_digest(&dockerfile(), &Context::new(a.path())).expect("digest"),
        definition_digest(&dockerfile(), &context).expect("digest")
    );
}

#[test]
fn bad_sources_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    project(dir.path());
    let context = Context::new(dir.path());
    let mut escaping = dockerfile();
    escaping.stages[0]
        .instructions
        .push(Instruction::Copy(Copy::new(vec!["../x".into()], "/x")));
    assert!(matches!(
        definition_digest(&escaping, &context),
        Err(SpecError::CopySourceOutsideContext { .. })
    ));
    let mut missing = dockerfile();
    missing.stages[0]
        .instructions
        .push(Instruction::Copy(Copy::new(vec!["nope".into()], "/x")));
    assert!(matches!(
        definition_digest(&missing, &context),
        Err(SpecError::CopySourceNotFound { .. })
    ));
}

#[test]
fn copies_from_other_stages_need_no_local_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut df = Dockerfile::default();
    let mut stage = Stage::from_base("scratch");
    let mut from = Copy::new(vec!["/usr/bin/app".into()], "/app");
    from.from = Some("builder".into());
    stage.instructions.push(Instruction::Copy(from));
    let mut onbuild_copy = Copy::new(vec!["not-here".into()], "/x");
    onbuild_copy.add = true;
    stage
        .instructions
        .push(Instruction::Onbuild(Box::new(Instruction::Copy(
            onbuild_copy,
        ))));
    df.stages.push(stage);
    assert!(definition_digest(&df, &Context::new(dir.path())).is_ok());
}

/// The digest of Dockerfile `text` with its context at `root`.
fn digest_text(text: &str, root: &Path, build_args: &[(&str, &str)]) -> Result<DefinitionDigest> {
    let args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let df = Dockerfile::parse(text).expect("parses");
    definition_digest_with_args(&df, &Context::new(root), &args, None)
}

/// The sources are read after the build's expansion: the automatic platform arguments,
/// ARG defaults and build arguments pick the files, so the digest follows the files the
/// build copies and nothing else.
#[test]
fn sources_are_read_after_the_builds_expansion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "dist/linux/amd64/app", b"amd64 app\n");
    write(root, "dist/linux/arm64/app", b"arm64 app\n");
    write(root, "conf/release.conf", b"release\n");
    let text = "FROM scratch\nARG TARGETOS\nARG TARGETARCH\nARG MODE=release\n\
                COPY dist/$TARGETOS/$TARGETARCH/app /app\nCOPY conf/${MODE}.conf /etc/\n";
    let before = digest_text(text, root, &[]).expect("digest");
    // An unrelated file: same digest.
    write(root, "dist/linux/arm64/app", b"arm64 app, rebuilt\n");
    assert_eq!(digest_text(text, root, &[]).expect("digest"), before);
    // The file the build copies: another digest.
    write(root, "dist/linux/amd64/app", b"amd64 app, rebuilt\n");
    let after = digest_text(text, root, &[]).expect("digest");
    assert_ne!(after, before);
    // A build argument picks other files (and is part of the digest).
    write(root, "conf/debug.conf", b"debug\n");
    let debug = digest_text(text, root, &[("MODE", "debug")]).expect("digest");
    assert_ne!(debug, after);
    write(root, "conf/debug.conf", b"debug, changed\n");
    assert_ne!(
        digest_text(text, root, &[("MODE", "debug")]).expect("digest"),
        debug
    );
    // Without `ARG TARGETARCH` in the stage the variable is unset, as in BuildKit: the
    // source is `dist//app`, which does not exist.
    let unscoped = "FROM scratch\nCOPY dist/$TARGETARCH/app /app\n";
    assert!(matches!(
        digest_text(unscoped, root, &[]),
        Err(SpecError::ExpandedSourceNotFound { source_name, .. }) if source_name == "dist//app"
    ));
}

/// A source whose variables only the base image's ENV sets cannot be found here; the error
/// says so and names the source as written.
#[test]
fn a_missing_expanded_source_is_named_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "FROM python:3.12\nCOPY req-${PYTHON_VERSION}.txt /\n";
    match digest_text(text, dir.path(), &[]) {
        Err(err @ SpecError::ExpandedSourceNotFound { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("'req-${PYTHON_VERSION}.txt' (expanded to 'req-.txt')")
                    && message.contains("--build-arg"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    write(dir.path(), "req-3.12.txt", b"x\n");
    let declared = "FROM python:3.12\nARG PYTHON_VERSION\nCOPY req-${PYTHON_VERSION}.txt /\n";
    assert!(digest_text(declared, dir.path(), &[("PYTHON_VERSION", "3.12")]).is_ok());
}

/// `COPY cwallet.ss[o] ./` copies the file if it is there and nothing otherwise
/// (BuildKit's allow-empty-wildcard); a literal path that is missing stays an error.
#[test]
fn wildcards_may_match_nothing_literal_paths_may_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "app.py", b"x\n");
    let optional = "FROM scratch\nCOPY cwallet.ss[o] ./\nCOPY *.whl /wheels/\nCOPY app.py /\n";
    let without = digest_text(optional, root, &[]).expect("nothing to match is fine");
    write(root, "cwallet.sso", b"wallet\n");
    let with = digest_text(optional, root, &[]).expect("digest");
    assert_ne!(with, without);
    assert!(matches!(
        digest_text(
            "FROM scratch\nCOPY cwallet.sso ./\n",
            tempfile::tempdir().expect("tempdir").path(),
            &[]
        ),
        Err(SpecError::CopySourceNotFound { .. })
    ));
}

/// A URL source is recognised after quote removal and expansion, is never downloaded, and
/// enters the digest as its checksum when one is given, else as its URL.
#[test]
fn url_sources_enter_as_checksum_or_url_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let add = |flags: &str, version: &str| {
        format!(
            "FROM scratch\nARG PYTHON_VERSION={version}\n\
             ADD {flags} \"https://example.invalid/Python-${{PYTHON_VERSION}}.tar.xz\" /x\n"
        )
    };
    let plain = digest_text(&add("", "3.12.1"), root, &[]).expect("a quoted URL is no file");
    assert_ne!(
        digest_text(&add("", "3.12.2"), root, &[]).expect("digest"),
        plain,
        "the expanded URL text counts"
    );
    let pinned = |sum: &str, version: &str| {
        digest_text(
            &add(&format!("--checksum=sha256:{sum}"), version),
            root,
            &[],
        )
        .expect("digest")
    };
    assert_ne!(pinned("aa", "3.12.1"), pinned("bb", "3.12.1"));
    assert_eq!(pinned("aa", "3.12.1"), pinned("aa", "3.12.1"));
    // A git source too.
    assert!(
        digest_text(
            "FROM scratch\nADD git@example.invalid:org/repo.git#v1 /src\n",
            root,
            &[]
        )
        .is_ok()
    );
}

/// The documented encoding, written out byte by byte.
#[test]
fn encoding_is_stable() {
    // If this fails, the encoding changed: bump DIGEST_VERSION and update this test.
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.txt", b"a\n");
    fs::set_permissions(dir.path().join("a.txt"), fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let mut stage = Stage::from_base("scratch");
    stage
        .instructions
        .push(Instruction::Copy(Copy::new(vec!["a.txt".into()], "/a.txt")));
    stage
        .instructions
        .push(Instruction::Run(Run::shell("true")));
    let df = Dockerfile {
        stages: vec![stage],
        ..Dockerfile::default()
    };
    let digest = definition_digest(&df, &Context::new(dir.path())).expect("digest");

    let mut bytes: Vec<u8> = Vec::new();
    let u64 = |bytes: &mut Vec<u8>, v: u64| bytes.extend_from_slice(&v.to_le_bytes());
    let text = |bytes: &mut Vec<u8>, s: &str| {
        bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
        bytes.extend_from_slice(s.as_bytes());
    };
    text(&mut bytes, "lamina-definition-v2");
    bytes.push(1);
    u64(&mut bytes, u64::from('\\'));
    bytes.push(2);
    u64(&mut bytes, 0); // global args
    bytes.push(3);
    u64(&mut bytes, 1); // stages
    bytes.push(1);
    text(&mut bytes, "scratch");
    bytes.extend_from_slice(&[2, 0, 3, 0, 4]); // no platform, no name, then instructions
    u64(&mut bytes, 2);
    // COPY a.txt /a.txt
    bytes.extend_from_slice(&[0x02, 1, 0, 2]);
    u64(&mut bytes, 1);
    text(&mut bytes, "a.txt");
    bytes.push(3);
    text(&mut bytes, "/a.txt");
    bytes.extend_from_slice(&[4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10]);
    u64(&mut bytes, 0); // excludes
    bytes.extend_from_slice(&[11, 0, 12, 0, 13]);
    u64(&mut bytes, 0); // heredocs
    bytes.push(14);
    u64(&mut bytes, 1); // one match
    u64(&mut bytes, 0); // of source 0
    text(&mut bytes, "a.txt");
    u64(&mut bytes, 1); // one entry
    text(&mut bytes, "a.txt");
    bytes.push(1); // a file
    u64(&mut bytes, 2);
    bytes.extend_from_slice(blake3::hash(b"a\n").as_bytes());
    u64(&mut bytes, 0o644);
    bytes.push(15);
    u64(&mut bytes, 0); // no URL sources
    // RUN true
    bytes.extend_from_slice(&[0x01, 1, 2]);
    text(&mut bytes, "true");
    bytes.push(2);
    u64(&mut bytes, 0); // mounts
    bytes.extend_from_slice(&[3, 0, 4, 0, 5]);
    u64(&mut bytes, 0); // heredocs
    bytes.push(4);
    u64(&mut bytes, 0); // build args

    assert_eq!(digest.as_bytes(), blake3::hash(&bytes).as_bytes());
}

#[test]
fn digest_text_round_trips() {
    let digest = DefinitionDigest::from_bytes(*blake3::hash(b"x").as_bytes());
    let text = digest.to_string();
    assert!(text.starts_with("blake3:") && text.len() == 71, "{text}");
    assert_eq!(text.parse::<DefinitionDigest>().expect("parse"), digest);
    assert_eq!(format!("{digest:?}"), format!("DefinitionDigest({text})"));
    assert_eq!(digest.as_bytes(), blake3::hash(b"x").as_bytes());
    // The same value and text as the workspace's digest type.
    let plain = lamina_types::Digest::blake3_of(b"x");
    assert_eq!(digest.digest(), plain);
    assert_eq!(lamina_types::Digest::from(digest), plain);
    assert_eq!(plain.to_string(), text);
    assert_eq!(digest.to_hex(), plain.hex());
    for bad in [
        "",
        "blake3:",
        "sha256:00",
        &text.to_uppercase(),
        &text[..70],
        &format!("{text}0"),
    ] {
        assert!(
            matches!(
                bad.parse::<DefinitionDigest>(),
                Err(SpecError::InvalidDigest { .. })
            ),
            "{bad}"
        );
    }
}
