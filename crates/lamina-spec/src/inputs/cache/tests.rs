use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::inputs::{
    EntryKind, IgnoreRules, SourceMatch, TreeEntry, hash_tree, hash_tree_cached,
    resolve_copy_inputs, resolve_copy_inputs_cached,
};
use crate::instruction::Copy;

/// An in-memory cache that counts, with a settable racy window and a hook run on each
/// lookup.
struct MemoryCache {
    entries: Mutex<HashMap<PathBuf, (FileStamp, [u8; 32])>>,
    dirs: Mutex<HashMap<PathBuf, (FileStamp, Arc<DirListing>)>>,
    lookups: AtomicUsize,
    hits: AtomicUsize,
    records: AtomicUsize,
    window: Duration,
    on_lookup: Box<dyn Fn(&FileStamp) + Sync>,
}

impl MemoryCache {
    fn new(window: Duration) -> Self {
        MemoryCache {
            entries: Mutex::default(),
            dirs: Mutex::default(),
            lookups: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            records: AtomicUsize::new(0),
            window,
            on_lookup: Box::new(|_| {}),
        }
    }

    /// Replaces every recorded hash with `hash`, as a cache that lies would.
    fn poison(&self, hash: [u8; 32]) {
        for entry in self.entries.lock().unwrap().values_mut() {
            entry.1 = hash;
        }
    }

    fn counts(&self) -> (usize, usize, usize) {
        (
            self.lookups.swap(0, Ordering::SeqCst),
            self.hits.swap(0, Ordering::SeqCst),
            self.records.swap(0, Ordering::SeqCst),
        )
    }
}

impl ContentHashCache for MemoryCache {
    fn lookup(&self, stamp: &FileStamp) -> Option<[u8; 32]> {
        (self.on_lookup)(stamp);
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let entries = self.entries.lock().unwrap();
        let (known, hash) = entries.get(&stamp.path)?;
        (known == stamp).then(|| {
            self.hits.fetch_add(1, Ordering::SeqCst);
            *hash
        })
    }

    fn record(&self, stamp: FileStamp, blake3: [u8; 32]) {
        self.records.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap()
            .insert(stamp.path.clone(), (stamp, blake3));
    }

    fn racy_window(&self) -> Duration {
        self.window
    }

    fn lookup_dir(&self, stamp: &FileStamp) -> Option<Arc<DirListing>> {
        let dirs = self.dirs.lock().unwrap();
        let (known, listing) = dirs.get(&stamp.path)?;
        (known == stamp).then(|| Arc::clone(listing))
    }

    fn record_dir(&self, stamp: FileStamp, listing: DirListing) {
        self.dirs
            .lock()
            .unwrap()
            .insert(stamp.path.clone(), (stamp, Arc::new(listing)));
    }
}

const POISON: [u8; 32] = [0xab; 32];

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |rel: &str, content: &[u8]| {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    write("src/a.txt", b"aaaa");
    write("src/b.txt", b"bbbb");
    write("src/big.bin", &[5u8; 100_000]);
    write("top.txt", b"top");
    dir
}

fn copy(sources: &[&str]) -> Copy {
    Copy::new(sources.iter().map(|s| s.to_string()).collect(), "/dest/")
}

fn hashes(matches: &[SourceMatch]) -> Vec<(String, [u8; 32])> {
    matches
        .iter()
        .flat_map(|m| file_hashes(&m.entries))
        .collect()
}

fn file_hashes(entries: &[TreeEntry]) -> Vec<(String, [u8; 32])> {
    entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { hash, .. } => Some((e.name.clone(), hash)),
            _ => None,
        })
        .collect()
}

fn hash_of(found: &[(String, [u8; 32])], name: &str) -> [u8; 32] {
    found.iter().find(|(n, _)| n == name).unwrap().1
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

#[test]
fn a_hit_takes_the_hash_from_the_cache_without_reading() {
    let ctx = context();
    let cache = MemoryCache::new(Duration::ZERO);
    let sources = copy(&["src/", "*.txt"]);
    let plain = resolve_copy_inputs(&sources, ctx.path()).unwrap();
    let first = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(first, plain, "a cache must not change the result");
    assert_eq!(cache.counts(), (4, 0, 4));

    // Every later answer comes from the cache: a lying cache shows through, so the
    // files were not read (walked files and glob file matches alike).
    cache.poison(POISON);
    let second = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(cache.counts(), (4, 4, 0));
    assert!(hashes(&second).iter().all(|(_, h)| *h == POISON));
    assert_eq!(names_and_sizes(&second), names_and_sizes(&plain));
}

fn names_and_sizes(matches: &[SourceMatch]) -> Vec<(String, EntryKind)> {
    matches
        .iter()
        .flat_map(|m| &m.entries)
        .map(|e| {
            let kind = match &e.kind {
                EntryKind::File { size, .. } => EntryKind::File {
                    size: *size,
                    hash: [0; 32],
                },
                other => other.clone(),
            };
            (e.name.clone(), kind)
        })
        .collect()
}

#[test]
fn a_changed_size_or_mtime_misses_and_is_read_again() {
    let ctx = context();
    let cache = MemoryCache::new(Duration::ZERO);
    let sources = copy(&["src/"]);
    resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    cache.poison(POISON);
    cache.counts();

    fs::write(ctx.path().join("src/a.txt"), b"aaaaa").unwrap(); // size
    set_mtime(&ctx.path().join("src/b.txt"), 3600); // touched, same content
    let found = hashes(&resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap());
    assert_eq!(hash_of(&found, "a.txt"), *blake3::hash(b"aaaaa").as_bytes());
    assert_eq!(hash_of(&found, "b.txt"), *blake3::hash(b"bbbb").as_bytes());
    assert_eq!(hash_of(&found, "big.bin"), POISON);
    assert_eq!(cache.counts(), (3, 1, 2));
}

#[test]
fn racy_files_are_hashed_but_not_recorded() {
    let ctx = context();
    // Just written: mtime and ctime are now.
    let cache = MemoryCache::new(RACY_WINDOW);
    let plain = hash_tree(ctx.path(), &IgnoreRules::new()).unwrap();
    let cached = hash_tree_cached(ctx.path(), &IgnoreRules::new(), Some(&cache)).unwrap();
    assert_eq!(file_hashes(&cached), file_hashes(&plain));
    assert_eq!(cache.counts(), (4, 0, 0));

    // An old mtime does not help: the ctime is still now.
    set_mtime(&ctx.path().join("top.txt"), 3600);
    hash_tree_cached(ctx.path(), &IgnoreRules::new(), Some(&cache)).unwrap();
    assert_eq!(cache.counts(), (4, 0, 0));
}

#[test]
fn racy_window_covers_mtime_ctime_and_the_future() {
    let now = SystemTime::now();
    let now_ns = now.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let stamp = |mtime_ago: i64, ctime_ago: i64| FileStamp {
        path: PathBuf::from("/f"),
        size: 1,
        mtime_ns: now_ns - mtime_ago * 1_000_000_000,
        ctime_ns: now_ns - ctime_ago * 1_000_000_000,
        inode: 1,
        dev: 1,
    };
    assert!(!stamp(10, 10).is_racy(now, RACY_WINDOW));
    assert!(stamp(1, 10).is_racy(now, RACY_WINDOW));
    assert!(stamp(10, 1).is_racy(now, RACY_WINDOW));
    assert!(
        stamp(-60, 10).is_racy(now, RACY_WINDOW),
        "mtime in the future"
    );
    assert!(!stamp(1, 1).is_racy(now, Duration::ZERO));
}

#[test]
fn a_file_that_changes_while_hashed_is_not_recorded() {
    let ctx = context();
    let victim = fs::canonicalize(ctx.path().join("src/a.txt")).unwrap();
    let mut cache = MemoryCache::new(Duration::ZERO);
    // The lookup comes after the stamp is taken and before the read: a write there is
    // a write during hashing.
    let target = victim.clone();
    cache.on_lookup = Box::new(move |stamp| {
        if stamp.path == target {
            fs::write(&target, b"changed!").unwrap();
        }
    });
    let found =
        hashes(&resolve_copy_inputs_cached(&copy(&["src/"]), ctx.path(), Some(&cache)).unwrap());
    assert_eq!(
        hash_of(&found, "a.txt"),
        *blake3::hash(b"changed!").as_bytes()
    );
    assert_eq!(cache.counts(), (3, 0, 2));
    assert!(!cache.entries.lock().unwrap().contains_key(&victim));
}

#[test]
fn the_definition_digest_is_the_same_with_a_cache() {
    let ctx = context();
    let df = crate::Dockerfile::parse("FROM scratch\nCOPY src/ /src/\nCOPY top.txt /\n").unwrap();
    let context = crate::Context::new(ctx.path());
    let cache = MemoryCache::new(Duration::ZERO);
    let plain = crate::digest::definition_digest(&df, &context).unwrap();
    let cold = crate::digest::definition_digest_cached(&df, &context, Some(&cache)).unwrap();
    let warm = crate::digest::definition_digest_cached(&df, &context, Some(&cache)).unwrap();
    assert_eq!(cold, plain);
    assert_eq!(warm, plain);
    assert_eq!(cache.counts(), (8, 4, 4));
}

/// A context with a directory of symlinks (as a root filesystem's `bin` has), a file and a
/// subdirectory beside them.
fn links_context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("rootfs/bin");
    fs::create_dir_all(bin.join("sub")).unwrap();
    fs::write(bin.join("busybox"), b"#!/bin/true\n").unwrap();
    fs::write(bin.join("sub/inner"), b"inner").unwrap();
    for applet in ["ls", "sh", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    dir
}

fn symlink_targets(matches: &[SourceMatch]) -> Vec<(String, Vec<u8>)> {
    matches
        .iter()
        .flat_map(|m| &m.entries)
        .filter_map(|e| match &e.kind {
            EntryKind::Symlink { target } => Some((e.name.clone(), target.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unchanged_directory_is_not_listed_again_nor_its_symlinks_read() {
    let ctx = links_context();
    let cache = MemoryCache::new(Duration::ZERO);
    let sources = copy(&["rootfs/"]);
    let plain = resolve_copy_inputs(&sources, ctx.path()).unwrap();
    let first = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(first, plain);
    // rootfs, rootfs/bin and rootfs/bin/sub.
    assert_eq!(cache.dirs.lock().unwrap().len(), 3);

    // A lying listing shows through: the walk took the names and targets from it. The
    // file and the subdirectory beside the links are still looked at.
    let bin = fs::canonicalize(ctx.path().join("rootfs/bin")).unwrap();
    {
        let mut dirs = cache.dirs.lock().unwrap();
        let listing = Arc::make_mut(&mut dirs.get_mut(&bin).unwrap().1);
        for child in &mut listing.children {
            if let ListedKind::Symlink { target, .. } = &mut child.kind {
                *target = b"lie".to_vec();
            }
        }
    }
    fs::write(ctx.path().join("rootfs/bin/sub/inner"), b"changed").unwrap();
    let second = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert!(
        symlink_targets(&second)
            .iter()
            .all(|(_, target)| target == b"lie")
    );
    let found = hashes(&second);
    assert_eq!(
        hash_of(&found, "bin/sub/inner"),
        *blake3::hash(b"changed").as_bytes()
    );
    assert_eq!(
        names_and_sizes(&second).len(),
        names_and_sizes(&plain).len()
    );

    // Pointing a link elsewhere changes the directory's stamp (after the timestamp tick
    // the listing was recorded in): listed and read again.
    std::thread::sleep(Duration::from_millis(50));
    fs::remove_file(bin.join("sh")).unwrap();
    std::os::unix::fs::symlink("/bin/dash", bin.join("sh")).unwrap();
    let third = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(third, resolve_copy_inputs(&sources, ctx.path()).unwrap());
    let targets = symlink_targets(&third);
    assert!(targets.contains(&("bin/sh".to_string(), b"/bin/dash".to_vec())));
    assert!(targets.contains(&("bin/ls".to_string(), b"busybox".to_vec())));
}

#[test]
fn racy_directories_are_walked_but_not_recorded() {
    let ctx = links_context();
    let cache = MemoryCache::new(RACY_WINDOW);
    let sources = copy(&["rootfs/"]);
    let cached = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(cached, resolve_copy_inputs(&sources, ctx.path()).unwrap());
    assert!(cache.dirs.lock().unwrap().is_empty());
}

#[test]
fn a_directory_with_an_ignored_symlink_is_not_recorded() {
    let ctx = links_context();
    fs::write(ctx.path().join(".dockerignore"), "rootfs/bin/ls\n").unwrap();
    let cache = MemoryCache::new(Duration::ZERO);
    let sources = copy(&["rootfs/"]);
    let cached = resolve_copy_inputs_cached(&sources, ctx.path(), Some(&cache)).unwrap();
    assert_eq!(cached, resolve_copy_inputs(&sources, ctx.path()).unwrap());
    assert!(
        !symlink_targets(&cached)
            .iter()
            .any(|(name, _)| name == "bin/ls")
    );
    // Its target was never read, so the listing would be incomplete.
    let bin = fs::canonicalize(ctx.path().join("rootfs/bin")).unwrap();
    let dirs = cache.dirs.lock().unwrap();
    assert!(!dirs.contains_key(&bin));
    assert_eq!(dirs.len(), 2);
}
