use std::sync::Arc;
use std::time::Duration;

use lamina_spec::{Context, Dockerfile, Image};
use lamina_store::{Store, StoreOptions};

use super::*;
use crate::{BuildOptions, BuildReport, ExecConfig, Executor};

fn stamp(path: &str, size: u64) -> FileStamp {
    FileStamp {
        path: PathBuf::from(path),
        size,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_001,
        inode: 42,
        dev: 7,
    }
}

fn hash(byte: u8) -> [u8; 32] {
    [byte; 32]
}

#[test]
fn saved_entries_load_back_and_answer_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HashCache::open(dir.path());
    assert!(cache.is_empty());
    cache.record(stamp("/ctx/src/a.txt", 4), hash(1));
    cache.record(stamp("/ctx/src/ab.txt", 5), hash(2));
    cache.record(stamp("/other/b", 6), hash(3));
    assert!(cache.save().unwrap());
    assert!(
        !cache.save().unwrap(),
        "nothing changed since the last save"
    );

    let again = HashCache::open(dir.path());
    assert_eq!(again.stats().loaded, 3);
    assert_eq!(again.lookup(&stamp("/ctx/src/a.txt", 4)), Some(hash(1)));
    assert_eq!(again.lookup(&stamp("/ctx/src/ab.txt", 5)), Some(hash(2)));
    assert_eq!(again.lookup(&stamp("/other/b", 6)), Some(hash(3)));
    // Any field differing is a miss.
    assert_eq!(again.lookup(&stamp("/ctx/src/a.txt", 5)), None);
    let mut moved = stamp("/ctx/src/a.txt", 4);
    moved.inode = 43;
    assert_eq!(again.lookup(&moved), None);
    let mut touched = stamp("/ctx/src/a.txt", 4);
    touched.ctime_ns += 1;
    assert_eq!(again.lookup(&touched), None);
    assert_eq!(again.lookup(&stamp("/ctx/src/c.txt", 4)), None);
    let stats = again.stats();
    assert_eq!((stats.lookups, stats.hits, stats.recorded), (7, 3, 0));
}

fn listing(names: &[(&str, Option<&str>)]) -> DirListing {
    DirListing {
        children: names
            .iter()
            .map(|(name, target)| ListedChild {
                name: name.to_string(),
                kind: match target {
                    Some(target) => ListedKind::Symlink {
                        target: target.as_bytes().to_vec(),
                        mode: 0o777,
                    },
                    None => ListedKind::Other,
                },
            })
            .collect(),
    }
}

#[test]
fn saved_directory_listings_load_back_and_answer_exact_stamps() {
    let dir = tempfile::tempdir().unwrap();
    // A store of the previous format: its file goes with the first save.
    std::fs::write(dir.path().join(OLD_FILE_NAME), b"LMHASH01...").unwrap();
    let cache = HashCache::open(dir.path());
    let bin = listing(&[
        ("busybox", None),
        ("ls", Some("busybox")),
        ("sh", Some("/bin/busybox")),
    ]);
    cache.record_dir(stamp("/ctx/rootfs/bin", 4096), bin.clone());
    cache.record_dir(stamp("/ctx/rootfs/etc", 4096), DirListing::default());
    cache.record(stamp("/ctx/rootfs/bin/busybox", 9), hash(1));
    assert!(cache.save().unwrap());
    assert!(!dir.path().join(OLD_FILE_NAME).exists());

    let again = HashCache::open(dir.path());
    assert_eq!(
        again.lookup_dir(&stamp("/ctx/rootfs/bin", 4096)).as_deref(),
        Some(&bin)
    );
    assert_eq!(
        again.lookup_dir(&stamp("/ctx/rootfs/etc", 4096)).as_deref(),
        Some(&DirListing::default())
    );
    assert_eq!(
        again.lookup(&stamp("/ctx/rootfs/bin/busybox", 9)),
        Some(hash(1))
    );
    // A directory whose entries changed has a new mtime and ctime: a miss.
    let mut changed = stamp("/ctx/rootfs/bin", 4096);
    changed.ctime_ns += 1;
    assert_eq!(again.lookup_dir(&changed), None);
    let mut replaced = stamp("/ctx/rootfs/bin", 4096);
    replaced.inode += 1;
    assert_eq!(again.lookup_dir(&replaced), None);
    // Files and directories are apart: a file's stamp never answers for a directory.
    assert_eq!(again.lookup_dir(&stamp("/ctx/rootfs/bin/busybox", 9)), None);
    assert_eq!(again.stats().dirs_from_cache, 2);
}

#[test]
fn corrupt_or_truncated_files_are_ignored_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HashCache::open(dir.path());
    cache.record(stamp("/ctx/a", 1), hash(1));
    cache.save().unwrap();
    let path = dir.path().join(FILE_NAME);
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    flipped[20] ^= 1;
    let mut bad_checksum_but_valid_body = good.clone();
    let last = bad_checksum_but_valid_body.len() - 1;
    bad_checksum_but_valid_body[last] ^= 1;
    // A valid checksum over a body that lies about its entry count, or has a prefix
    // longer than the previous path.
    let checksummed = |body: &[u8]| {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(blake3::hash(body).as_bytes());
        bytes
    };
    let body = &good[..good.len() - 32];
    let mut lying_count = body.to_vec();
    lying_count[8..16].copy_from_slice(&2u64.to_le_bytes());
    let mut bad_prefix = body.to_vec();
    bad_prefix[16..18].copy_from_slice(&1u16.to_le_bytes());
    for bad in [
        checksummed(&lying_count),
        checksummed(&bad_prefix),
        checksummed(b"LMHASH02\0\0\0\0\0\0\0\0"),
        b"garbage".to_vec(),
        Vec::new(),
        good[..good.len() - 1].to_vec(),
        flipped,
        bad_checksum_but_valid_body,
    ] {
        std::fs::write(&path, &bad).unwrap();
        let cache = HashCache::open(dir.path());
        assert!(cache.is_empty());
        assert_eq!(cache.lookup(&stamp("/ctx/a", 1)), None);
        // Rewritten at the next save even with nothing new.
        assert!(cache.save().unwrap());
        assert_eq!(decode(&std::fs::read(&path).unwrap()).unwrap().0.len(), 0);
    }

    // A directory where the file should be: unreadable, ignored, and the write fails
    // without panicking.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let cache = HashCache::open(dir.path());
    assert!(cache.is_empty());
    cache.record(stamp("/ctx/a", 1), hash(1));
    assert!(cache.save().is_err());
}

#[test]
fn entries_unused_for_max_age_days_are_dropped_on_save() {
    let dir = tempfile::tempdir().unwrap();
    let cache = HashCache::open(dir.path());
    cache.record(stamp("/old", 1), hash(1));
    cache.record(stamp("/recent", 1), hash(2));
    {
        let entries = cache.read();
        entries[Path::new("/old")]
            .seen
            .store(cache.today - MAX_AGE_DAYS - 1, Ordering::Relaxed);
        entries[Path::new("/recent")]
            .seen
            .store(cache.today - MAX_AGE_DAYS, Ordering::Relaxed);
    }
    cache.save().unwrap();
    let again = HashCache::open(dir.path());
    assert_eq!(again.len(), 1);
    assert_eq!(again.lookup(&stamp("/recent", 1)), Some(hash(2)));
    // The hit refreshed the entry's day, which is a change worth saving.
    assert!(again.save().unwrap());
    let entries = HashCache::open(dir.path());
    assert_eq!(
        entries.read()[Path::new("/recent")]
            .seen
            .load(Ordering::Relaxed),
        today()
    );
}

fn set_mtime(path: &Path, secs_ago: u64) {
    let file = File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs_ago))
        .unwrap();
}

/// A temporary directory with a store in it.
fn temp_store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, Arc::new(store))
}

#[test]
fn a_second_build_of_an_unchanged_context_reads_hashes_from_the_cache() {
    let (dir, store) = temp_store();
    let (work, ctx) = (dir.path().join("work"), dir.path().join("ctx"));
    let files = 20;
    for i in 0..files {
        let path = ctx.join(format!("src/d{}/f{i}.txt", i % 3));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("file {i}\n").repeat(i + 1)).unwrap();
    }
    std::fs::write(ctx.join("top.txt"), "top\n").unwrap();
    std::os::unix::fs::symlink("f0.txt", ctx.join("src/d0/link")).unwrap();
    let files = files as u64 + 1;
    // `src` and its three subdirectories.
    let dirs = 4;
    // Fresh files are racy and never recorded: let the ctimes age past the window.
    std::thread::sleep(lamina_spec::inputs::RACY_WINDOW + Duration::from_millis(200));

    let text = "FROM scratch\nCOPY src/ /src/\nCOPY top.txt /\nCOPY <<EOF /motd\nhi\nEOF\n";
    let image = Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(&ctx));
    let build = || -> BuildReport {
        let exec = Executor::new(store.clone(), ExecConfig::new(&work)).unwrap();
        exec.build_blocking(&image, &BuildOptions::default())
            .unwrap()
    };
    let cached = |r: &BuildReport| r.steps.iter().map(|s| s.cached).collect::<Vec<_>>();
    let counts = |r: &BuildReport| {
        let s = r.input_hashing;
        (s.loaded, s.lookups, s.hits, s.recorded)
    };

    let first = build();
    assert_eq!(counts(&first), (0, files, 0, files));
    assert!(work.join(FILE_NAME).is_file());

    assert_eq!(first.input_hashing.dirs_from_cache, 0);
    assert_eq!(HashCache::open(&work).dirs.read().unwrap().len(), dirs);

    let second = build();
    assert_eq!(counts(&second), (files, files, files, 0));
    assert_eq!(second.input_hashing.dirs_from_cache, dirs as u64);
    assert_eq!(cached(&second), [true; 3]);
    assert_eq!(second.digest, first.digest);

    // Touched, same content: a cache miss, read again, same hash, so the step still hits;
    // its ctime is now, so the new stamp is not recorded yet.
    set_mtime(&ctx.join("src/d1/f1.txt"), 7200);
    let third = build();
    assert_eq!(counts(&third), (files, files, files - 1, 0));
    assert_eq!(cached(&third), [true; 3]);
    assert_eq!(third.digest, first.digest);

    // A corrupt cache file: ignored, every file read, same keys, file rebuilt.
    std::fs::write(work.join(FILE_NAME), b"LMHASH01 but not really").unwrap();
    let fourth = build();
    assert_eq!(counts(&fourth), (0, files, 0, files - 1));
    assert_eq!(cached(&fourth), [true; 3]);
    assert_eq!(fourth.digest, first.digest);
    assert_eq!(HashCache::open(&work).len() as u64, files - 1);

    // A symlink pointed elsewhere is a new inode in a changed directory: that directory is
    // listed again and the link read, so the step misses.
    std::fs::remove_file(ctx.join("src/d0/link")).unwrap();
    std::os::unix::fs::symlink("f3.txt", ctx.join("src/d0/link")).unwrap();
    let fifth = build();
    assert_eq!(fifth.input_hashing.dirs_from_cache, dirs as u64 - 1);
    assert!(!fifth.steps[0].cached);
    assert_ne!(fifth.digest, first.digest);
}

#[test]
fn a_build_without_local_inputs_does_not_load_the_cache() {
    let (dir, store) = temp_store();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join(FILE_NAME), b"corrupt").unwrap();
    let text = "FROM scratch\nCOPY <<EOF /motd\nhi\nEOF\nENV A=1\n";
    let image = Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(dir.path()));
    let exec = Executor::new(store, ExecConfig::new(&work)).unwrap();
    let report = exec
        .build_blocking(&image, &BuildOptions::default())
        .unwrap();
    assert_eq!(report.input_hashing, HashCacheStats::default());
    // Never loaded, so never rewritten.
    assert_eq!(std::fs::read(work.join(FILE_NAME)).unwrap(), b"corrupt");
}

#[test]
fn an_executor_keeps_its_hash_cache_between_builds_until_the_file_changes() {
    let (dir, store) = temp_store();
    let (work, ctx) = (dir.path().join("work"), dir.path().join("ctx"));
    let files = 5u64;
    for i in 0..files {
        std::fs::create_dir_all(ctx.join("src")).unwrap();
        std::fs::write(ctx.join(format!("src/f{i}")), format!("file {i}\n")).unwrap();
    }
    std::thread::sleep(lamina_spec::inputs::RACY_WINDOW + Duration::from_millis(200));
    let text = "FROM scratch\nCOPY src/ /src/\n";
    let image = Image::from_parts(Dockerfile::parse(text).unwrap(), Context::new(&ctx));
    let exec = Executor::new(store.clone(), ExecConfig::new(&work)).unwrap();
    let build = || {
        let r = exec
            .build_blocking(&image, &BuildOptions::default())
            .unwrap();
        let s = r.input_hashing;
        (s.loaded, s.lookups, s.hits, s.recorded)
    };
    assert_eq!(build(), (0, files, 0, files));
    // Counts are each build's own, though the cache in memory is the same.
    assert_eq!(build(), (files, files, files, 0));

    // The file overwritten in place with bytes of the same length and its mtime put back:
    // the same file as far as the executor can tell, so it keeps what it has in memory
    // (reading the file again would find it corrupt and hit nothing).
    let path = work.join(FILE_NAME);
    let meta = std::fs::metadata(&path).unwrap();
    let garbage = vec![b'x'; meta.len() as usize];
    let file = File::options().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &garbage, 0).unwrap();
    file.set_modified(meta.modified().unwrap()).unwrap();
    drop(file);
    assert_eq!(build(), (files, files, files, 0));

    // Rewritten with a different length (another process's save is a new file renamed over
    // it, a new inode; here the file is truncated in place): read again, found corrupt,
    // every input hashed and the file rewritten.
    std::fs::write(&path, b"corrupt").unwrap();
    assert_eq!(build(), (0, files, 0, files));
    let fresh = Executor::new(store, ExecConfig::new(&work)).unwrap();
    let report = fresh
        .build_blocking(&image, &BuildOptions::default())
        .unwrap();
    assert_eq!(report.input_hashing.hits, files);
}
