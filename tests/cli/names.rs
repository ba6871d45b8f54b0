//! Short and full image names are one (issue 10, item 5), and invalid names change nothing.

use serde_json::Value;

use crate::support::{digest_of, lamina_err, lamina_in_store as run, write_tree};

/// Any pull is sent to a port nothing listens on, so a build that would need a registry
/// fails at once instead of reaching out to the network.
const NO_REGISTRY: &str = "docker.io=127.0.0.1:9";

/// A store holding a small image (built FROM scratch, no sandbox needed), exported as a
/// docker-archive to `image.tar`.
fn exported_image(dir: &std::path::Path, store: &str) -> (String, std::path::PathBuf) {
    write_tree(
        dir,
        &[
            ("base/etc/motd", "hello\n"),
            ("base/Dockerfile", "FROM scratch\nCOPY etc /etc\nENV A=1\n"),
        ],
    );
    let built = run(
        dir,
        store,
        &["build", "base", "--tag", "seed:1", "--progress", "plain"],
    );
    let tar = dir.join("image.tar");
    let out = tar.to_str().unwrap();
    run(
        dir,
        store,
        &[
            "image",
            "export",
            "seed:1",
            "--format",
            "docker-archive",
            "-o",
            out,
        ],
    );
    (digest_of(&built), tar)
}

fn names_in(dir: &std::path::Path, store: &str) -> Vec<(String, String)> {
    let listing: Value =
        serde_json::from_str(&run(dir, store, &["image", "ls", "--json"])).unwrap();
    listing
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["reference"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Imports `tar` as `import_as` into a fresh store, then builds `FROM from` offline.
fn import_then_build_from(dir: &std::path::Path, tar: &str, import_as: &str, from: &str) {
    let store = dir.join(format!("store-{}", import_as.len()));
    let store = store.to_str().unwrap();
    run(dir, store, &["image", "import", tar, import_as]);
    let ctx = format!("on-{}", from.len());
    write_tree(
        dir,
        &[(
            &format!("{ctx}/Dockerfile"),
            &format!("FROM {from}\nENV B=2\n"),
        )],
    );
    let built = run(
        dir,
        store,
        &[
            "build",
            &ctx,
            "--registry-mirror",
            NO_REGISTRY,
            "--progress",
            "plain",
        ],
    );
    assert!(
        built.contains("built sha256:"),
        "FROM {from} after import as {import_as}: {built}"
    );
}

#[test]
fn an_image_imported_under_its_full_name_is_found_by_its_short_name_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    let (_, tar) = exported_image(dir.path(), seed.to_str().unwrap());
    let tar = tar.to_str().unwrap();

    let full = "docker.io/library/python:3.12.10-slim-bookworm";
    let short = "python:3.12.10-slim-bookworm";
    import_then_build_from(dir.path(), tar, full, short);
    import_then_build_from(dir.path(), tar, short, full);

    // Both spellings are one key; `image ls` shows the short form, --json also the full one
    // (rows sorted by the full name).
    let store = dir.path().join("both");
    let store = store.to_str().unwrap();
    run(dir.path(), store, &["image", "import", tar, full]);
    run(dir.path(), store, &["image", "import", tar, short]);
    run(dir.path(), store, &["image", "import", tar, "org/app"]);
    assert_eq!(
        names_in(dir.path(), store),
        [
            (short.to_owned(), full.to_owned()),
            (
                "org/app:latest".to_owned(),
                "docker.io/org/app:latest".to_owned()
            ),
        ]
    );
    let listing = run(dir.path(), store, &["image", "ls"]);
    assert!(
        listing.contains(short) && !listing.contains(full),
        "{listing}"
    );
    run(
        dir.path(),
        store,
        &["image", "inspect", "docker.io/org/app:latest"],
    );
    run(
        dir.path(),
        store,
        &["image", "history", "library/python:3.12.10-slim-bookworm"],
    );
    let removed = run(dir.path(), store, &["image", "rm", "docker.io/org/app"]);
    assert!(removed.contains("removed org/app:latest"), "{removed}");
    assert_eq!(names_in(dir.path(), store).len(), 1);
}

#[test]
fn invalid_names_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let (_, tar) = exported_image(dir.path(), store);
    let before = names_in(dir.path(), store);
    assert_eq!(
        before,
        [("seed:1".to_owned(), "docker.io/library/seed:1".to_owned())]
    );

    for bad in [
        "BAD NAME",
        "a b",
        ":",
        "UPPER:tag",
        "x@sha256:zz",
        "Upper/Case",
        "app:-tag",
    ] {
        let commands: [&[&str]; 4] = [
            &["image", "tag", "seed:1", bad],
            &["image", "import", tar.to_str().unwrap(), bad],
            &["image", "inspect", bad],
            &["build", "base", "--tag", bad, "--progress", "plain"],
        ];
        for args in commands {
            let mut all = vec!["--store", store];
            all.extend_from_slice(args);
            let err = lamina_err(dir.path(), &all);
            let message = err.trim_end();
            assert!(
                message.contains(&format!("invalid image reference {bad:?}")),
                "{args:?}: {err}"
            );
            assert_eq!(message.lines().count(), 1, "{args:?}: one line: {err}");
        }
    }
    assert_eq!(names_in(dir.path(), store), before);
}

/// A store written before names were canonical holds keys as users typed them
/// (`python:3.12`), even invalid ones. Those are still found by either spelling, removable,
/// and replaced by the full key when the name is tagged again.
#[test]
fn a_store_with_old_short_keys_still_finds_its_images() {
    use lamina::store::{ImageState, Store, StoreOptions};

    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = store_dir.to_str().unwrap();
    exported_image(dir.path(), store);
    {
        let opened = Store::open(&store_dir, StoreOptions::default()).unwrap();
        let seed = opened.image("docker.io/library/seed:1").unwrap().unwrap();
        for old_key in ["python:3.12", "BAD NAME:latest"] {
            opened
                .tag_image(
                    old_key,
                    &seed.manifest,
                    &seed.references,
                    ImageState::Complete,
                )
                .unwrap();
        }
    }
    let listing = run(dir.path(), store, &["image", "ls"]);
    assert!(listing.contains("python:3.12"), "{listing}");

    let ctx = "on-old";
    write_tree(
        dir.path(),
        &[(
            "on-old/Dockerfile",
            "FROM docker.io/library/python:3.12\nENV B=2\n",
        )],
    );
    let built = run(
        dir.path(),
        store,
        &[
            "build",
            ctx,
            "--registry-mirror",
            NO_REGISTRY,
            "--progress",
            "plain",
        ],
    );
    assert!(built.contains("built sha256:"), "{built}");
    run(dir.path(), store, &["image", "inspect", "python:3.12"]);

    let removed = run(dir.path(), store, &["image", "rm", "BAD NAME:latest"]);
    assert!(removed.contains("removed BAD NAME:latest"), "{removed}");

    run(
        dir.path(),
        store,
        &["image", "tag", "seed:1", "python:3.12"],
    );
    assert_eq!(
        names_in(dir.path(), store),
        [
            (
                "python:3.12".to_owned(),
                "docker.io/library/python:3.12".to_owned()
            ),
            ("seed:1".to_owned(), "docker.io/library/seed:1".to_owned()),
        ]
    );
}
