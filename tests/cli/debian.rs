//! A Debian bookworm base for tests that need Debian's own CA tooling and apt: debootstrap
//! (minbase) from the mirror in this machine's apt sources, wrapped as an OCI layout with
//! umoci. Made once per machine and day under `$HOME/.cache/lamina/test-bases/` (outside the
//! clone), so test runs reuse it. It cannot be skipped: when it cannot be made, the test fails
//! and says what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The first Debian mirror URI serving bookworm in the apt sources (one-line `.list` files and
/// deb822 `.sources` files), e.g. `http://host/debian`.
pub fn bookworm_mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let found = if file.extension().is_some_and(|e| e == "sources") {
            deb822_mirror(&text)
        } else {
            one_line_mirror(&text)
        };
        if let Some(uri) = found {
            return uri.trim_end_matches('/').to_string();
        }
    }
    panic!(
        "no apt source serves Debian bookworm on this machine: add one to /etc/apt/sources.list"
    );
}

fn one_line_mirror(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        match words.as_slice() {
            ["deb", uri, "bookworm", ..] if uri.starts_with("http") => Some(uri.to_string()),
            _ => None,
        }
    })
}

fn deb822_mirror(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
                .unwrap_or_default()
        };
        let serves = field("Suites:").split_whitespace().any(|s| s == "bookworm");
        let deb = field("Types:").split_whitespace().any(|t| t == "deb");
        let uri = field("URIs:").split_whitespace().next()?;
        (serves && deb && uri.starts_with("http")).then(|| uri.to_string())
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start it ({e}); install it (Debian package)"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OCI layout (ref `base`) of a Debian bookworm minbase root filesystem.
pub fn bookworm_layout() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let cache = Path::new(&home).join(".cache/lamina/test-bases");
    std::fs::create_dir_all(&cache).unwrap();
    let day = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let name = format!("debian-bookworm-minbase-{}", day[..10].replace('-', ""));
    let done = cache.join(&name);
    let layout = done.join("oci");
    // One maker at a time, across test threads and processes.
    let lock = std::fs::File::create(cache.join("debian.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if layout.join("index.json").is_file() {
        return layout;
    }
    let tmp = cache.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).unwrap();
    }
    std::fs::create_dir_all(&tmp).unwrap();
    let rootfs = tmp.join("rootfs");
    run(
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs)
            .arg(bookworm_mirror()),
        "debootstrap",
    );
    let oci = tmp.join("oci");
    let image = format!("{}:base", oci.display());
    run(
        Command::new("umoci").arg("init").arg("--layout").arg(&oci),
        "umoci init",
    );
    run(
        Command::new("umoci").args(["new", "--image", &image]),
        "umoci new",
    );
    run(
        Command::new("umoci")
            .args(["insert", "--image", &image])
            .arg(&rootfs)
            .arg("/"),
        "umoci insert",
    );
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::rename(&tmp, &done).unwrap();
    // Older days' trees are stale.
    for entry in std::fs::read_dir(&cache).unwrap().flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other.starts_with("debian-bookworm-minbase-") && other != name {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    layout
}

#[test]
fn mirrors_are_read_from_both_source_formats() {
    let list = "# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n";
    assert_eq!(
        one_line_mirror(list).as_deref(),
        Some("http://m.example/debian")
    );
    let sources = "Types: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\n\n\
                   Types: deb\nURIs: https://m.example/debian\nSuites: bookworm bookworm-updates\n";
    assert_eq!(
        deb822_mirror(sources).as_deref(),
        Some("https://m.example/debian")
    );
}
