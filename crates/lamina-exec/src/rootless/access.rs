//! A store another user made (root's, opened by an ordinary user or from a user namespace)
//! fails deep inside with "permission denied" on some file; this names the directory first.

use std::path::{Path, PathBuf};

use rustix::fs::Access;

use crate::ExecError;

/// The store's directories whose write access every command needs: the store itself, its
/// top-level directories and the executor's (`exec/` and its parts).
fn needed_dirs(store: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![store.to_path_buf()];
    for parent in [store.to_path_buf(), store.join("exec")] {
        let Ok(entries) = std::fs::read_dir(&parent) else {
            continue;
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        children.sort();
        dirs.extend(children);
    }
    dirs
}

/// Checks, when the process is not the host's root, that it can write the store at `store`
/// (when it exists), naming the first directory it cannot write.
pub fn check_store_access(store: &Path) -> Result<(), ExecError> {
    let host_root = rustix::process::geteuid().is_root() && !super::in_user_namespace();
    if host_root || !store.exists() {
        return Ok(());
    }
    for dir in needed_dirs(store) {
        if rustix::fs::access(&dir, Access::WRITE_OK | Access::EXEC_OK).is_err() {
            return Err(ExecError::StoreNotWritable { dir });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_store_its_directories_and_the_executors() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["blobs-v1", "exec/layers", "exec/runs"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("LOCK"), "").unwrap();
        let dirs = needed_dirs(dir.path());
        let rel: Vec<_> = dirs
            .iter()
            .map(|d| d.strip_prefix(dir.path()).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(rel, ["", "blobs-v1", "exec", "exec/layers", "exec/runs"]);
    }
}
