//! [`CancelToken`]: how a caller stops a running build.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared flag a build checks before each step and while a RUN step runs. Cancelling stops
/// the running container (killed and deleted, its mounts and run directory removed) within
/// [`CANCEL_POLL`] and fails the build with [`crate::ExecError::Cancelled`]; steps already
/// stored stay in the cache.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

/// How often a running RUN step looks at its token.
pub const CANCEL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every build holding this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
