//! Which process owns a work file: the store's owner tokens (`lamina_store::owner`), here
//! for the executor's work directory (`<work_dir>/owners/<token>.lock`).

use std::path::Path;

use crate::ExecError;

/// Takes (once per work directory) the lock that says this process owns what carries its
/// token below `work_dir`, and returns the token.
pub(crate) fn claim(work_dir: &Path) -> Result<&'static str, ExecError> {
    lamina_store::owner::claim(work_dir).map_err(|(path, source)| ExecError::Io { path, source })
}

/// Whether the process with `token` may still be using its files below `work_dir`.
pub(crate) fn alive(work_dir: &Path, token: &str) -> bool {
    lamina_store::owner::alive(work_dir, token)
}

/// Removes the lock files of owners that are gone (their files were reclaimed first).
pub(crate) fn forget_dead(work_dir: &Path) -> Result<(), ExecError> {
    lamina_store::owner::forget_dead(work_dir)
        .map_err(|(path, source)| ExecError::Io { path, source })
}
