//! What killed processes left in a work directory, reclaimed by the next process that opens
//! it: run directories (their runc containers deleted and overlay mounts unmounted first),
//! staging trees in `tmp/`, half-unpacked layers in `layers/`. A file is reclaimed only when
//! its owner (named by the token in its name, see `crate::owner`) is gone.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::ExecError;
use crate::owner;
use crate::sandbox::fsutil::io_err;
use crate::sandbox::{overlay, runc};

/// What [`reclaim_leftovers`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Run directories of dead processes (with their containers and mounts).
    pub runs: u64,
    /// Staging trees and temporary files of dead processes, half-unpacked layers included.
    pub temp: u64,
    /// Bytes of the files in them.
    pub bytes: u64,
}

impl std::ops::AddAssign for Reclaimed {
    fn add_assign(&mut self, other: Reclaimed) {
        self.runs += other.runs;
        self.temp += other.temp;
        self.bytes += other.bytes;
    }
}

/// Temporary entries without an owner token (written by older versions) are removed once
/// they are this old.
const UNOWNED_GRACE: Duration = Duration::from_secs(3600);

/// Reclaims what dead processes left below `work_dir`. Run directories need root (their
/// mounts and containers); without it they are left for a root process. What cannot be
/// removed (another process reclaiming it at the same time) is logged and left; only a
/// directory that cannot be listed is an error.
pub fn reclaim_leftovers(work_dir: &Path) -> Result<Reclaimed, ExecError> {
    let mut done = Reclaimed::default();
    let root = rustix::process::geteuid().is_root();
    let runs = work_dir.join("runs");
    for (path, name) in entries(&runs)? {
        // `lamina-<token>-<n>`
        let token = name.split('-').nth(1).unwrap_or_default();
        if !root || owner::alive(work_dir, token) {
            continue;
        }
        runc::delete(&work_dir.join("runc"), &name);
        // Another process may be reclaiming the same run: what fails here is left to it, or
        // to the next command, never an error of this one.
        if let Err(e) = overlay::unmount_all_under(&path) {
            tracing::warn!("cannot unmount what {} holds: {e}", path.display());
            continue;
        }
        let bytes = crate::usage::bytes_of(&path);
        if overlay::mounts_under(&path).is_ok_and(|m| m.is_empty()) && remove(&path).is_ok() {
            done.bytes += bytes;
            done.runs += 1;
        }
    }
    let tmp = work_dir.join("tmp");
    for (path, name) in entries(&tmp)? {
        // `<prefix><token>.<random>`
        let token = name
            .split_once('-')
            .and_then(|(_, rest)| rest.split_once('.'))
            .map(|(token, _)| token);
        let gone = match token {
            Some(token) => !owner::alive(work_dir, token),
            None => older_than(&path, UNOWNED_GRACE),
        };
        if gone {
            let bytes = crate::usage::bytes_of(&path);
            if remove(&path).is_ok() {
                done.bytes += bytes;
                done.temp += 1;
            }
        }
    }
    let layers_tmp = work_dir.join("layers").join(crate::sandbox::LAYERS_TMP_DIR);
    for (path, name) in entries(&layers_tmp)? {
        // `<layer hex>-<token>-<n>`
        if !owner::alive(work_dir, name.split('-').nth(1).unwrap_or_default()) {
            let bytes = crate::usage::bytes_of(&path);
            if remove(&path).is_ok() {
                done.bytes += bytes;
                done.temp += 1;
            }
        }
    }
    owner::forget_dead(work_dir)?;
    Ok(done)
}

/// The entries of `dir` with their names (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<(std::path::PathBuf, String)>, ExecError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(io_err(dir))?;
        out.push((
            entry.path(),
            entry.file_name().to_string_lossy().into_owned(),
        ));
    }
    Ok(out)
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).is_ok_and(|d| d > age))
}

/// Removes `path`; an error is logged (another process may be removing it too).
fn remove(path: &Path) -> Result<(), ()> {
    let removed = if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("cannot remove {}: {e}", path.display());
            Err(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_dead_owners_left_goes() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let mine = owner::claim(work).unwrap();
        let tmp = work.join("tmp");
        fs::create_dir_all(tmp.join(format!("copy-{mine}.aaa/etc"))).unwrap();
        fs::write(tmp.join(format!("copy-{mine}.aaa/etc/f")), "x").unwrap();
        fs::create_dir_all(tmp.join("copy-dead01.bbb/etc")).unwrap();
        fs::write(tmp.join("copy-dead01.bbb/etc/f"), "12345").unwrap();
        fs::write(tmp.join("download-dead02.ccc"), "123").unwrap();
        // An entry of an older version, too young to go.
        fs::create_dir_all(tmp.join("copy-xyz")).unwrap();
        let layers = work.join("layers");
        fs::create_dir_all(layers.join(format!(".tmp/ab12-{mine}-0"))).unwrap();
        fs::create_dir_all(layers.join(".tmp/ab12-dead03-0")).unwrap();
        fs::create_dir_all(layers.join("ab12")).unwrap();

        let done = reclaim_leftovers(work).unwrap();
        assert_eq!(
            done,
            Reclaimed {
                runs: 0,
                temp: 3,
                bytes: 8
            }
        );
        let mut left: Vec<_> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [format!("copy-{mine}.aaa"), "copy-xyz".to_string()]);
        assert!(layers.join(format!(".tmp/ab12-{mine}-0")).exists());
        assert!(!layers.join(".tmp/ab12-dead03-0").exists());
        assert!(layers.join("ab12").exists());
    }
}
