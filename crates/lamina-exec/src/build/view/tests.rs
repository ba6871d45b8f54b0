use super::*;

#[path = "../../../../../tests/require.rs"]
mod require;

fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .unwrap();
}

/// Two layers: the lower has /etc/{passwd,gone}, /opt/a, /lib → usr/lib, /usr/lib/x;
/// the upper replaces passwd, whites out `gone`, and adds /etc/new.
fn layers(dir: &Path) -> LayerView {
    let (lower, upper) = (dir.join("lower"), dir.join("upper"));
    for d in ["etc", "opt", "usr/lib"] {
        std::fs::create_dir_all(lower.join(d)).unwrap();
    }
    std::fs::write(lower.join("etc/passwd"), "old").unwrap();
    std::fs::write(lower.join("etc/gone"), "x").unwrap();
    std::fs::write(lower.join("opt/a"), "a").unwrap();
    std::fs::write(lower.join("usr/lib/x"), "x").unwrap();
    std::os::unix::fs::symlink("usr/lib", lower.join("lib")).unwrap();
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("etc/passwd"), "new").unwrap();
    std::fs::write(upper.join("etc/new"), "n").unwrap();
    LayerView::of_dirs(vec![lower, upper].into_iter())
}

#[test]
fn the_top_layer_decides_and_directories_merge() {
    // mknod of a whiteout needs root.
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let view = layers(dir.path());
    whiteout(&dir.path().join("upper/etc/gone"));
    assert_eq!(view.read("/etc/passwd").unwrap().unwrap(), b"new");
    assert!(view.lookup("etc/gone", false).unwrap().is_none());
    let etc = view.lookup("/etc", true).unwrap().unwrap();
    let names: Vec<_> = list(&etc).unwrap().into_keys().collect();
    assert_eq!(names, ["new", "passwd"]);
    assert_eq!(view.read("/lib/x").unwrap().unwrap(), b"x");
    assert_eq!(view.read("/etc/../opt/a").unwrap().unwrap(), b"a");
    // As the kernel resolves it: `..` after a followed symlink leaves the link's target.
    assert!(view.read("/lib/../opt/a").unwrap().is_none());
    assert_eq!(view.read("/lib/../lib/x").unwrap().unwrap(), b"x");
    assert!(
        view.lookup("/lib", false)
            .unwrap()
            .unwrap()
            .meta
            .is_symlink()
    );
    assert!(view.lookup("/lib", true).unwrap().unwrap().is_dir());
    assert!(view.lookup("/etc/passwd/x", true).unwrap().is_none());
}

/// How a COPY's destination is resolved in the image: `/lib/` on a merged-/usr base is
/// `/usr/lib`, not a directory that would hide the symlink.
#[test]
fn paths_resolve_through_the_views_symlinks_and_keep_missing_tails() {
    let dir = tempfile::tempdir().unwrap();
    let view = layers(dir.path());
    let lower = dir.path().join("lower");
    std::os::unix::fs::symlink("/usr/sbin", lower.join("sbin")).unwrap();
    std::os::unix::fs::symlink("../../etc", lower.join("usr/lib/up")).unwrap();
    std::os::unix::fs::symlink("loop", lower.join("loop")).unwrap();
    let resolve = |path: &str| view.resolve(path).unwrap().0;
    assert_eq!(resolve("/lib/"), "/usr/lib");
    assert_eq!(resolve("/lib/new/file"), "/usr/lib/new/file");
    assert_eq!(resolve("lib/x"), "/usr/lib/x");
    // An absolute target from the view's root, missing parts kept as written.
    assert_eq!(resolve("/sbin/tool"), "/usr/sbin/tool");
    assert_eq!(resolve("/lib/up/passwd"), "/etc/passwd");
    assert_eq!(resolve("/../../lib"), "/usr/lib");
    assert_eq!(resolve("/missing/../lib/x"), "/usr/lib/x");
    assert_eq!(resolve("/etc/passwd/below"), "/etc/passwd/below");
    assert_eq!(resolve("/"), "/");
    assert!(view.resolve("/loop/x").is_err());
    // With the node there, found in the same walk.
    assert!(view.resolve("/lib/x").unwrap().1.unwrap().meta.is_file());
    assert!(view.resolve("/lib/").unwrap().1.unwrap().is_dir());
    assert!(view.resolve("/lib/new/file").unwrap().1.is_none());
    // Without layers only the spelling changes.
    let empty = LayerView::of_dirs(Vec::<PathBuf>::new().into_iter());
    assert_eq!(empty.resolve("a/./b/../c").unwrap().0, "/a/c");
}

#[test]
fn an_opaque_directory_hides_the_layers_below() {
    // trusted.* attributes need root.
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let view = layers(dir.path());
    rustix::fs::setxattr(
        dir.path().join("upper/etc"),
        opaque_xattr(),
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let etc = view.lookup("/etc", true).unwrap().unwrap();
    let names: Vec<_> = list(&etc).unwrap().into_keys().collect();
    assert_eq!(names, ["new", "passwd"]);
    assert!(view.lookup("/etc/gone", false).unwrap().is_none());
}

#[test]
fn absolute_links_resolve_in_the_view_and_wildcards_match_last() {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("l");
    std::fs::create_dir_all(layer.join("real/dir")).unwrap();
    std::fs::write(layer.join("real/dir/f.txt"), "x").unwrap();
    std::fs::write(layer.join("real/dir/g.bin"), "x").unwrap();
    std::os::unix::fs::symlink("/real", layer.join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../..", layer.join("real/up")).unwrap();
    let view = LayerView::of_dirs(vec![layer.clone()].into_iter());
    let glob = |p: &[u8], n: &[u8]| n.ends_with(&p[1..]);
    let found = find(&view, "/abs/dir/*.txt", glob).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].host(), layer.join("real/dir/f.txt"));
    let up = view.lookup("real/up/real", true).unwrap().unwrap();
    assert_eq!(up.host(), layer.join("real"));
    assert_eq!(up.name, "real");
    assert!(find(&view, "missing", glob).unwrap().is_empty());
}

#[test]
fn symlink_loops_end_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("l");
    std::fs::create_dir(&layer).unwrap();
    std::os::unix::fs::symlink("/b", layer.join("a")).unwrap();
    std::os::unix::fs::symlink("/a", layer.join("b")).unwrap();
    let view = LayerView::of_dirs(vec![layer].into_iter());
    assert!(view.lookup("/a/x", true).is_err());
    assert!(view.lookup("/a", false).unwrap().unwrap().meta.is_symlink());
}

#[test]
fn kinds_replace_each_other_across_layers() {
    // mknod of whiteouts needs root.
    if require::missing(&[require::Need::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (low, mid, top) = (
        dir.path().join("low"),
        dir.path().join("mid"),
        dir.path().join("top"),
    );
    // low: /a is a file, /b a directory with b/x, /c a directory with c/y.
    std::fs::create_dir_all(low.join("b")).unwrap();
    std::fs::create_dir_all(low.join("c")).unwrap();
    std::fs::write(low.join("a"), "file").unwrap();
    std::fs::write(low.join("b/x"), "x").unwrap();
    std::fs::write(low.join("c/y"), "y").unwrap();
    // mid: /a becomes a directory, /b a file, /c is whited out.
    std::fs::create_dir_all(mid.join("a")).unwrap();
    std::fs::write(mid.join("a/in"), "in").unwrap();
    std::fs::write(mid.join("b"), "now a file").unwrap();
    whiteout(&mid.join("c"));
    // top: /c comes back as a directory of its own.
    std::fs::create_dir_all(top.join("c")).unwrap();
    std::fs::write(top.join("c/z"), "z").unwrap();
    let view = LayerView::of_dirs(vec![low, mid, top].into_iter());

    let a = view.lookup("/a", false).unwrap().unwrap();
    assert!(a.is_dir());
    assert_eq!(list(&a).unwrap().into_keys().collect::<Vec<_>>(), ["in"]);
    assert_eq!(view.read("/b").unwrap().unwrap(), b"now a file");
    assert!(view.lookup("/b/x", false).unwrap().is_none());
    // The whiteout in the middle hides the lower /c: only the top's entries remain.
    let c = view.lookup("/c", false).unwrap().unwrap();
    assert_eq!(list(&c).unwrap().into_keys().collect::<Vec<_>>(), ["z"]);
    assert!(view.lookup("/c/y", false).unwrap().is_none());
}

#[test]
fn relative_links_cannot_climb_out_of_the_view() {
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("l");
    std::fs::create_dir_all(layer.join("real")).unwrap();
    std::fs::write(dir.path().join("outside"), "host file").unwrap();
    std::os::unix::fs::symlink("../../../../../../outside", layer.join("real/up")).unwrap();
    std::os::unix::fs::symlink("/../../outside", layer.join("abs")).unwrap();
    let view = LayerView::of_dirs(vec![layer].into_iter());
    assert!(view.read("/real/up").unwrap().is_none());
    assert!(view.read("/abs").unwrap().is_none());
    assert!(view.read("/../outside").unwrap().is_none());
}
