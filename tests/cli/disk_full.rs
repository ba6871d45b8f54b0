//! A full disk never locks the store: the reserve it keeps lets it open, so the commands that
//! free space (`cache gc`, `image rm`) and `cache fsck` work with no space left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::require::{Need, missing};
use crate::support::{lamina_in_store, write_tree};

/// A tmpfs of `size` mounted on `dir` while it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Writes `path` until the file system has no byte left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let buf = vec![0u8; chunk];
        while file.write_all(&buf).is_ok() {}
    }
    let _ = file.sync_all();
}

#[test]
fn gc_rm_and_fsck_work_on_a_full_disk() {
    if missing(&[Need::Root, Need::File("/bin/busybox")]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            ("base/Dockerfile", "FROM scratch\nCOPY rootfs/ /\n"),
            ("base/rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ],
    );
    std::fs::create_dir_all(root.join("base/rootfs/bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("base/rootfs/bin/busybox")).unwrap();
    // An image of 12 MB that does not compress, as an archive made on a roomy disk.
    let mut noise = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 12_000_000),
        &mut noise,
    )
    .unwrap();
    std::fs::create_dir_all(root.join("big")).unwrap();
    std::fs::write(root.join("big/noise"), noise).unwrap();
    std::fs::write(
        root.join("big/Dockerfile"),
        "FROM scratch\nCOPY noise /noise\n",
    )
    .unwrap();
    let roomy = root.join("roomy");
    let roomy = roomy.to_str().unwrap();
    let archive = root.join("big.tar");
    lamina_in_store(
        root,
        roomy,
        &["build", "big", "--tag", "big:1", "--progress", "plain"],
    );
    lamina_in_store(
        root,
        roomy,
        &["image", "export", "big:1", "-o", archive.to_str().unwrap()],
    );
    let disk = Tmpfs::mount(&root.join("disk"), "40m");
    let store = disk.0.join("store");
    let store = store.to_str().unwrap();
    lamina_in_store(
        root,
        store,
        &["build", "base", "--tag", "base:1", "--progress", "plain"],
    );
    assert!(
        disk.0.join("store/RESERVE").is_file(),
        "the store keeps a reserve"
    );

    fill(&disk.0.join("filler"));
    // A write that runs out of space says so, naming the store and what it needed, and
    // leaves the store as it was.
    let out = crate::support::lamina(
        root,
        &[
            "--store",
            store,
            "image",
            "import",
            archive.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("no space left for the store at {store}")),
        "{stderr}"
    );
    lamina_in_store(root, store, &["cache", "fsck"]);
    let gc = lamina_in_store(root, store, &["cache", "gc"]);
    assert!(gc.contains("removed"), "{gc}");
    lamina_in_store(root, store, &["image", "rm", "base:1"]);
    lamina_in_store(root, store, &["cache", "fsck"]);

    // With room again, the next command that writes makes the reserve anew (readers such
    // as `image ls` write nothing).
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    lamina_in_store(root, store, &["image", "ls"]);
    assert!(!disk.0.join("store/RESERVE").is_file());
    lamina_in_store(root, store, &["cache", "gc"]);
    assert!(disk.0.join("store/RESERVE").is_file());
}
