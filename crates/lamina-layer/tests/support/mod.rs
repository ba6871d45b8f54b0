//! Fixtures and tree snapshots shared by the integration tests.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../../../tests/require.rs"]
pub mod require;

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Everything a layer should preserve about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    /// File contents or symlink target.
    pub data: Vec<u8>,
    pub rdev: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first path (in byte order) sharing this inode, when another path does.
    pub link: Option<Vec<u8>>,
}

pub type Snapshot = BTreeMap<Vec<u8>, Item>;

pub fn snapshot(root: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    let mut inodes: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    walk(root, b"", &mut out, &mut inodes);
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().unwrap().clone();
        for p in paths {
            out.get_mut(p).unwrap().link = Some(first.clone());
        }
    }
    out
}

fn walk(dir: &Path, prefix: &[u8], out: &mut Snapshot, inodes: &mut HashMap<u64, Vec<Vec<u8>>>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().as_bytes().to_vec();
        let rel = if prefix.is_empty() {
            name
        } else {
            [prefix, b"/", &name].concat()
        };
        let path = e.path();
        let m = fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let (kind, data) = if ft.is_dir() {
            walk(&path, &rel, out, inodes);
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_file() {
            ("file", fs::read(&path).unwrap())
        } else if ft.is_fifo() {
            ("fifo", Vec::new())
        } else if ft.is_char_device() {
            ("char", Vec::new())
        } else if ft.is_block_device() {
            ("block", Vec::new())
        } else {
            ("other", Vec::new())
        };
        if !ft.is_dir() {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        let item = Item {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: m.mtime(),
            data,
            rdev: m.rdev(),
            xattrs: xattrs(&path),
            link: None,
        };
        out.insert(rel, item);
    }
}

pub fn xattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut list = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut list[..]).unwrap_or(0);
    let mut out = Vec::new();
    for name in list[..n].split(|&c| c == 0).filter(|s| !s.is_empty()) {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let mut v = vec![0u8; 4096];
        let len = rustix::fs::lgetxattr(path, name, &mut v[..]).unwrap();
        v.truncate(len);
        out.push((name.to_vec(), v));
    }
    out.sort();
    out
}

/// A v2 file capability granting cap_net_raw, as `setcap cap_net_raw+ep` writes it.
pub const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

pub const MTIME: i64 = 1_600_000_000;

/// A tree exercising every kind of entry; owners, devices and `security.*` need root.
pub fn rich_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    for d in ["etc", "bin", "tmp", "run", "empty", "lib"] {
        fs::create_dir(p(d)).unwrap();
    }
    fs::write(p("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(p("etc/empty"), "").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    fs::write(p("lib/big.so"), &big).unwrap();
    fs::write(p("bin/ping"), "#!/bin/sh\necho ping\n").unwrap();
    chmod(&p("bin/ping"), 0o4755);
    fs::write(p("bin/busybox"), "multi-call").unwrap();
    fs::hard_link(p("bin/busybox"), p("bin/sh")).unwrap();
    fs::hard_link(p("bin/busybox"), p("bin/ls")).unwrap();
    chmod(&p("tmp"), 0o1777);
    chmod(&p("empty"), 0o700);
    symlink("lib", p("lib64")).unwrap();
    symlink("/etc/passwd", p("etc/abs-link")).unwrap();
    let long_target = format!("{}/target", "t".repeat(150));
    symlink(&long_target, p("lib/long-link")).unwrap();
    let deep = p(&format!("deep/{}/{}", "x".repeat(60), "y".repeat(60)));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("file-with-a-long-path"), "deep").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), "latin-1 name").unwrap();
    rustix::fs::mknodat(
        CWD,
        p("run/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    rustix::fs::setxattr(
        p("etc/passwd"),
        "user.comment",
        b"hello\0world",
        XattrFlags::empty(),
    )
    .unwrap();
    if is_root() {
        fs::create_dir(p("dev")).unwrap();
        mknod(&p("dev/null"), FileType::CharacterDevice, 0o666, 1, 3);
        mknod(&p("dev/loop0"), FileType::BlockDevice, 0o660, 7, 0);
        chown(&p("etc/passwd"), 1000, 1000);
        chown(&p("tmp"), 0, 5);
        chown(&p("lib64"), 42, 43);
        chown(&p("lib/big.so"), 3_000_000, 3_000_001); // beyond ustar's 7 octal digits
        chown(&p("bin/ping"), 0, 0);
        chmod(&p("bin/ping"), 0o4755);
        rustix::fs::setxattr(
            p("bin/ping"),
            "security.capability",
            &CAP_NET_RAW,
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::setxattr(p("empty"), "trusted.note", b"t", XattrFlags::empty()).unwrap();
    }
    set_mtimes(root, MTIME);
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

pub fn mknod(path: &Path, ft: FileType, mode: u32, major: u32, minor: u32) {
    let dev = rustix::fs::makedev(major, minor);
    rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(mode), dev).unwrap();
    chmod(path, mode);
}

/// Sets every mtime below `root` (children before their directory).
pub fn set_mtimes(root: &Path, mtime: i64) {
    for e in fs::read_dir(root).unwrap() {
        let path = e.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            set_mtimes(&path, mtime);
        }
        set_mtime(&path, mtime);
    }
}

pub fn set_mtime(path: &Path, mtime: i64) {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Asserts two snapshots are equal, listing the differing paths first.
pub fn assert_same(expected: &Snapshot, actual: &Snapshot, what: &str) {
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => diffs.push(format!("missing {}", String::from_utf8_lossy(k))),
            Some(a) if a != v => diffs.push(format!(
                "{}: expected {:?}\n      got {:?}",
                String::from_utf8_lossy(k),
                short(v),
                short(a)
            )),
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        diffs.push(format!("extra {}", String::from_utf8_lossy(k)));
    }
    assert!(
        diffs.is_empty(),
        "{what}: trees differ:\n{}",
        diffs.join("\n")
    );
}

fn short(i: &Item) -> Item {
    let mut i = i.clone();
    if i.data.len() > 64 {
        i.data.truncate(64);
    }
    i
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn sub(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    let p = dir.path().join(name);
    fs::create_dir_all(&p).unwrap();
    p
}
