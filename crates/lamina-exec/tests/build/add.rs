//! ADD of local archives: extracted (plain tar, gzip, bzip2, xz, zstd, made here with GNU
//! tar), copied as is with `--unpack=false` or when not an archive, refused when an entry
//! escapes the destination.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use lamina_exec::{BuildOptions, ExecError};

use super::{Env, build, cached};

/// Runs GNU tar in `dir` with `args`.
fn tar(dir: &Path, args: &[&str]) {
    let status = Command::new("tar")
        .args([
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@1000000",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("GNU tar runs");
    assert!(status.success(), "tar {args:?}");
}

/// `tree/a/hello.txt` (0640, `content`) and a symlink to it, archived in every format whose
/// name `only` accepts.
fn archives(ctx: &Path, content: &str, only: fn(&str) -> bool) {
    let tree = ctx.join("tree");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::write(tree.join("a/hello.txt"), content).unwrap();
    std::fs::set_permissions(
        tree.join("a/hello.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let _ = std::fs::remove_file(tree.join("a/link"));
    std::os::unix::fs::symlink("hello.txt", tree.join("a/link")).unwrap();
    for (name, flag) in [
        ("app.tar", None),
        ("app.tar.gz", Some("--gzip")),
        ("app.tar.bz2", Some("--bzip2")),
        ("app.tar.xz", Some("--xz")),
        ("app.tar.zst", Some("--zstd")),
    ] {
        if !only(name) {
            continue;
        }
        let out = format!("../{name}");
        let mut args = vec!["-cf", out.as_str()];
        args.extend(flag);
        args.extend(["--sort=name", "a"]);
        tar(&tree, &args);
    }
}

const ADDS: &str = "FROM scratch\nADD app.tar /plain/\nADD app.tar.gz /gz\n\
    ADD app.tar.bz2 /bz/\nADD app.tar.xz /xz/\nADD app.tar.zst /zst/\n\
    ADD --unpack=false app.tar.gz /kept/\nADD notes.gz /notes.gz\n";

#[test]
fn add_extracts_local_archives_of_every_format_deterministically() {
    let env = Env::new();
    let ctx = env.context("ctx", &[]);
    archives(&ctx, "hello\n", |_| true);
    // Gzip-compressed text is not an archive: copied as is.
    let notes = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"just notes, no tar\n").unwrap();
        e.finish().unwrap()
    };
    std::fs::write(ctx.join("notes.gz"), &notes).unwrap();
    let exec = env.executor();
    let image = env.image(&ctx, ADDS);
    let first = build(&exec, &image, BuildOptions::default()).unwrap();
    let rootfs = env.rootfs(&first);
    for dir in ["plain", "gz", "bz", "xz", "zst"] {
        let file = rootfs.path().join(dir).join("a/hello.txt");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello\n", "{dir}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "{dir}: the archive's mode is kept");
        let link = std::fs::read_link(rootfs.path().join(dir).join("a/link")).unwrap();
        assert_eq!(link, Path::new("hello.txt"), "{dir}");
    }
    assert_eq!(
        std::fs::read(rootfs.path().join("kept/app.tar.gz")).unwrap(),
        std::fs::read(ctx.join("app.tar.gz")).unwrap(),
        "--unpack=false copies the archive as is"
    );
    assert_eq!(
        std::fs::read(rootfs.path().join("notes.gz")).unwrap(),
        notes
    );

    // Deterministic: a build without the cache makes the same image; a second build hits.
    let again = build(&exec, &image, BuildOptions::default()).unwrap();
    assert!(cached(&again).iter().all(|c| *c), "{:?}", cached(&again));
    let fresh = Env::new();
    let other = fresh.context("ctx", &[]);
    for name in [
        "app.tar",
        "app.tar.gz",
        "app.tar.bz2",
        "app.tar.xz",
        "app.tar.zst",
    ] {
        std::fs::copy(ctx.join(name), other.join(name)).unwrap();
    }
    std::fs::write(other.join("notes.gz"), &notes).unwrap();
    let rebuilt = build(
        &fresh.executor(),
        &fresh.image(&other, ADDS),
        BuildOptions::default(),
    )
    .unwrap();
    assert_eq!(rebuilt.digest, first.digest);

    // The archive's content is the step's input: changing it misses that step on.
    archives(&ctx, "changed\n", |name| name == "app.tar.zst");
    let changed = build(&exec, &image, BuildOptions::default()).unwrap();
    assert_eq!(
        cached(&changed),
        [true, true, true, true, false, false, false]
    );
    assert_eq!(
        env.read(&changed, "/zst/a/hello.txt").as_deref(),
        Some("changed\n")
    );
}

#[test]
fn add_refuses_an_archive_entry_escaping_the_destination() {
    let env = Env::new();
    let ctx = env.context("ctx", &[("escape.txt", "out\n")]);
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    // -P keeps the `../` GNU tar would strip.
    tar(
        &ctx.join("sub"),
        &["-P", "-cf", "../evil.tar", "../escape.txt"],
    );
    let exec = env.executor();
    let text = "FROM scratch\nADD evil.tar /x/\n";
    let err = build(&exec, &env.image(&ctx, text), BuildOptions::default()).unwrap_err();
    assert!(
        matches!(err, ExecError::InvalidStep { index: 1, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("ADD evil.tar /x/") && message.contains("../escape.txt"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    // As is, it is only a file.
    let kept = "FROM scratch\nADD --unpack=false evil.tar /x/\n";
    let report = build(&exec, &env.image(&ctx, kept), BuildOptions::default()).unwrap();
    assert!(env.rootfs(&report).path().join("x/evil.tar").is_file());
}
