//! Holding the index only while it is used, so many processes share one store.
//!
//! RocksDB lets one process open a database read-write at a time. Rather than keep it open
//! for a `Store`'s whole life (which made every other process wait for a build's RUN
//! steps), the store opens the index on demand — taking `LOCK` first — and closes it
//! (releasing `LOCK`) once no operation has used it for [`crate::StoreOptions::idle_close`],
//! or at once on [`crate::Store::release_index`]. An operation holds an [`OpenIndex`]
//! (an `Arc`) for its duration, so the index is never closed under it; a burst of lookups
//! (a warm rebuild) pays one open.
//!
//! Every open runs recovery (temp files of dead owners, half-done puts and GCs), which is
//! safe because a put or a GC keeps the index open from its first `pending` write to its
//! last: `pending` keys seen at open belong to a process that died mid-operation.

use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::fsutil::Layout;
use crate::index::Index;
use crate::lock::StoreLock;
use crate::store::WaitNotice;
use crate::touchlog::{self, Touch, TouchLog};
use crate::{StoreError, StoreOptions};

/// The open index and the `LOCK` that lets this process write it (none for a read-only
/// open).
#[derive(Debug)]
pub(crate) struct OpenIndex {
    index: Index,
    /// A read-only open of a read-first store: the uses it sees, for the touch log.
    session: Option<Session>,
    /// Declared last: released after the index is closed.
    _lock: Option<StoreLock>,
}

/// What a read-only open of a read-first store records: the uses (last-used marks,
/// dedupe counters) it could not write, appended to the touch log at the latest when the
/// open ends, with the log held shared from the open until then (see `touchlog`).
#[derive(Debug)]
struct Session {
    touches: Mutex<Vec<Touch>>,
    log: touchlog::Held,
}

impl OpenIndex {
    /// Records a use this open cannot write (a read-only open); a plain reader's is not
    /// recorded, as before the touch log.
    pub(crate) fn record(&self, touch: Touch) {
        if let Some(session) = &self.session {
            lock(&session.touches).push(touch);
        }
    }

    /// Appends the uses recorded so far to the touch log; returns the log's size after it
    /// (0 if nothing was appended).
    fn flush(&self) -> u64 {
        let Some(session) = &self.session else {
            return 0;
        };
        let touches = std::mem::take(&mut *lock(&session.touches));
        if touches.is_empty() {
            return 0;
        }
        // Best effort: a lost touch only makes an entry look older than it is.
        session.log.append(&touches).unwrap_or(0)
    }

    /// Puts back uses taken by [`OpenIndex::take_touches`] that could not be written.
    fn give_back(&self, touches: Vec<Touch>) {
        if let Some(session) = &self.session {
            lock(&session.touches).extend(touches);
        }
    }

    /// Takes the uses recorded so far (to write them into a read-write open instead).
    fn take_touches(&self) -> Vec<Touch> {
        self.session
            .as_ref()
            .map_or_else(Vec::new, |s| std::mem::take(&mut *lock(&s.touches)))
    }
}

impl Drop for OpenIndex {
    fn drop(&mut self) {
        // Before the log's lock is released with the session.
        self.flush();
    }
}

impl Deref for OpenIndex {
    type Target = Index;

    fn deref(&self) -> &Index {
        &self.index
    }
}

/// What runs once after each open, with the lock held: recovery and reading settings.
pub(crate) type AfterOpen = dyn Fn(&Index) -> Result<(), StoreError> + Send + Sync;

/// How long an open waits silently before saying what it waits for.
pub(crate) const NOTICE_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct State {
    open: Option<Arc<OpenIndex>>,
    last_use: Instant,
    closer_running: bool,
    /// How many times the index was opened, for tests and statistics.
    opens: u64,
    /// Set by [`Slot::shutdown`]: a background open that has not begun stays undone.
    shut: bool,
}

pub(crate) struct Slot {
    layout: Layout,
    sync: bool,
    lock_timeout: Duration,
    idle_close: Option<Duration>,
    read_only: bool,
    read_first: bool,
    touch_log: TouchLog,
    state: Mutex<State>,
    /// Held from taking the open index out of `state` until it is closed, by whichever
    /// thread closes it, so that [`Slot::shutdown`] (a dropped store, right before a
    /// process may exit) waits for a close the idle closer has begun: RocksDB aborts the
    /// process ("pthread lock: Invalid argument") when it exits in the middle of a close.
    /// Taken before `state`, never after.
    closing: Mutex<()>,
    /// Held by the thread that opens the index read-write (a background open included,
    /// see [`Slot::open_writable_in_background`]): one open serves every writer waiting
    /// here, while readers go on through the open index. Taken before `closing`.
    opening: Mutex<()>,
    wake: Condvar,
    after_open: Box<AfterOpen>,
    notice: Option<WaitNotice>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("index", &self.layout.index)
            .field("idle_close", &self.idle_close)
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub(crate) fn new(
        layout: Layout,
        options: &StoreOptions,
        after_open: Box<AfterOpen>,
    ) -> Arc<Slot> {
        Arc::new(Slot {
            touch_log: TouchLog::new(&layout.root),
            layout,
            sync: options.sync,
            lock_timeout: options.lock_timeout,
            idle_close: options.idle_close,
            read_only: options.read_only,
            read_first: options.read_first,
            state: Mutex::new(State {
                open: None,
                last_use: Instant::now(),
                closer_running: false,
                opens: 0,
                shut: false,
            }),
            closing: Mutex::new(()),
            opening: Mutex::new(()),
            wake: Condvar::new(),
            after_open,
            notice: options.wait_notice.clone(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn closing(&self) -> MutexGuard<'_, ()> {
        lock(&self.closing)
    }

    /// The open index, opening it (and waiting for `LOCK`) if needed. A read-first store
    /// opens it read-only (holding the touch log shared) while its index exists.
    pub(crate) fn get(self: &Arc<Self>) -> Result<Arc<OpenIndex>, StoreError> {
        {
            let mut state = self.state();
            state.last_use = Instant::now();
            if let Some(open) = &state.open {
                return Ok(open.clone());
            }
        }
        // The touch log is taken before the state mutex: a GC in this process holds it
        // exclusive while it waits for the mutex to open the index read-write.
        let log =
            if !self.read_only && self.read_first && self.layout.index.join("CURRENT").is_file() {
                Some(self.lock_log(touchlog::Mode::Shared)?)
            } else {
                None
            };
        let mut state = self.state();
        if let Some(open) = &state.open {
            return Ok(open.clone());
        }
        // Other threads of this process wait on the state mutex meanwhile: one open serves
        // them all.
        let open = if self.read_only {
            Arc::new(OpenIndex {
                index: self.open_read_only()?,
                session: None,
                _lock: None,
            })
        } else if let Some(log) = log {
            Arc::new(OpenIndex {
                index: self.open_read_only()?,
                session: Some(Session {
                    touches: Mutex::new(Vec::new()),
                    log,
                }),
                _lock: None,
            })
        } else {
            // Through `opening`, as every read-write open: one may be under way already.
            drop(state);
            return self.get_writable();
        };
        self.install(&mut state, open.clone());
        Ok(open)
    }

    /// The index opened read-write: the open one if it is, else a new read-write open that
    /// takes over from a read-only one (whose recorded uses it writes at once). Readers use
    /// the read-only open while this one is made.
    pub(crate) fn get_writable(self: &Arc<Self>) -> Result<Arc<OpenIndex>, StoreError> {
        if let Some(open) = self.writable_open() {
            return Ok(open);
        }
        let _opening = lock(&self.opening);
        // Opened by the thread this one waited for (a background open).
        if let Some(open) = self.writable_open() {
            return Ok(open);
        }
        self.take_over_writable(true)
    }

    /// Opens the index read-write and makes it the process's open index; the caller holds
    /// `opening`. Without `wait`, gives up at once when another process holds `LOCK`.
    fn take_over_writable(self: &Arc<Self>, wait: bool) -> Result<Arc<OpenIndex>, StoreError> {
        // The read-only open stays alive (and keeps the touch log shared) for as long as an
        // operation holds it; this process reads through the new open from here on.
        let writable = Arc::new(self.open_read_write(wait)?);
        let mut state = self.state();
        if let Some(reading) = &state.open {
            let touches = reading.take_touches();
            if !touches.is_empty()
                && let Err(e) = touchlog::apply(&writable.index, &touches)
            {
                // Kept for the touch log, where the read-only open appends them.
                reading.give_back(touches);
                return Err(e);
            }
        }
        let reading = state.open.take();
        self.install(&mut state, writable.clone());
        drop(state);
        let _closing = self.closing();
        drop(reading);
        Ok(writable)
    }

    /// The open index if it can be written (or the store is read-only), marked as used.
    fn writable_open(&self) -> Option<Arc<OpenIndex>> {
        let mut state = self.state();
        state.last_use = Instant::now();
        match &state.open {
            Some(open) if !open.index.is_read_only() || self.read_only => Some(open.clone()),
            _ => None,
        }
    }

    /// Starts opening the index read-write on a thread of its own, so that the caller's next
    /// work (a build step's, before its first write) runs meanwhile; the first writer then
    /// waits for that open instead of making its own. Readers keep the open index until it
    /// is done. While another process holds `LOCK` it gives up at once, and a failed open is
    /// left to that writer: it waits (up to the lock timeout, with the notice) or meets the
    /// error again.
    pub(crate) fn open_writable_in_background(self: &Arc<Self>) {
        if self.read_only || self.writable_open().is_some() {
            return;
        }
        let slot = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("lamina-store-open".into())
            .spawn(move || {
                let _opening = lock(&slot.opening);
                if !slot.state().shut && slot.writable_open().is_none() {
                    let _ = slot.take_over_writable(false);
                }
            });
        // No thread: the first writer opens it, as it would have.
        drop(spawned);
    }

    /// Makes `open` the process's open index and starts the idle closer if needed.
    fn install(self: &Arc<Self>, state: &mut State, open: Arc<OpenIndex>) {
        state.open = Some(open);
        state.opens += 1;
        state.last_use = Instant::now();
        if let Some(idle) = self.idle_close
            && !state.closer_running
        {
            state.closer_running = true;
            let weak = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("lamina-store-idle".into())
                .spawn(move || close_when_idle(&weak, idle));
            if spawned.is_err() {
                // No thread: the index stays open until released or the store is dropped.
                state.closer_running = false;
            }
        }
    }

    /// The touch log locked in `mode`, waiting up to the lock timeout and saying what it
    /// waits for: shared for readers that record uses, exclusive for GC.
    pub(crate) fn lock_log(&self, mode: touchlog::Mode) -> Result<touchlog::Held, StoreError> {
        self.touch_log
            .lock(mode, self.lock_timeout, NOTICE_AFTER, |holder| {
                if let Some(notice) = &self.notice {
                    notice.call(holder);
                }
            })
    }

    /// Appends the uses the open read-only index recorded so far to the touch log (a read
    /// section's end or drop); returns the log's size after it, 0 if nothing was appended.
    pub(crate) fn flush_touches(&self) -> u64 {
        let open = self.state().open.clone();
        open.map_or(0, |open| open.flush())
    }

    /// The store's touch log.
    pub(crate) fn touch_log(&self) -> &TouchLog {
        &self.touch_log
    }

    /// Opens the index read-write, with `LOCK` (waiting for other processes' sections) and
    /// recovery.
    fn open_read_write(&self, wait: bool) -> Result<OpenIndex, StoreError> {
        let lock = StoreLock::acquire(
            &self.layout.lock,
            if wait {
                self.lock_timeout
            } else {
                Duration::ZERO
            },
            NOTICE_AFTER,
            |holder| {
                if let Some(notice) = &self.notice {
                    notice.call(holder);
                }
            },
        )?;
        let index = match Index::open(&self.layout.index, self.sync) {
            // A full disk: the reserve makes room for the open, so that the commands that
            // free space can run.
            Err(e)
                if crate::reserve::is_out_of_space(&e) && crate::reserve::release(&self.layout) =>
            {
                Index::open(&self.layout.index, self.sync)?
            }
            other => other?,
        };
        crate::reserve::release_if_nearly_full(&self.layout);
        (self.after_open)(&index)?;
        Ok(OpenIndex {
            index,
            session: None,
            _lock: Some(lock),
        })
    }

    /// Opens the index read-only, retrying while a writer's compaction races the open
    /// (a table file the MANIFEST named deleted before it was opened); after a few tries,
    /// the last error.
    fn open_read_only(&self) -> Result<Index, StoreError> {
        let mut tries = 0;
        loop {
            match Index::open_read_only(&self.layout.index) {
                Ok(index) => return Ok(index),
                Err(e) if tries < 20 => {
                    tries += 1;
                    pause_before_retry(tries, &e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the index if no operation uses it; `true` if it is closed now.
    pub(crate) fn release(&self) -> bool {
        let _closing = self.closing();
        let closing = {
            let mut state = self.state();
            match &state.open {
                Some(open) if Arc::strong_count(open) == 1 => state.open.take(),
                Some(_) => return false,
                None => return true,
            }
        };
        // Closed outside the state mutex: closing a database takes a few milliseconds.
        drop(closing);
        self.wake.notify_all();
        true
    }

    /// Ends this process's read-only session if no operation uses it, so that its hold on
    /// the touch log does not stand in the way of this process's own GC.
    pub(crate) fn release_session(&self) {
        let _closing = self.closing();
        let closing = {
            let mut state = self.state();
            match &state.open {
                Some(open) if open.session.is_some() && Arc::strong_count(open) == 1 => {
                    state.open.take()
                }
                _ => None,
            }
        };
        drop(closing);
        self.wake.notify_all();
    }

    /// Closes the index whatever the idle time (the store is being dropped).
    pub(crate) fn shutdown(&self) {
        // A background open that has not begun stays undone; one in progress (it does not
        // wait for `LOCK`) is waited for: a process must not exit in its middle either.
        self.state().shut = true;
        let _opening = lock(&self.opening);
        let _closing = self.closing();
        let closing = self.state().open.take();
        drop(closing);
        self.wake.notify_all();
    }

    /// Whether the index is open in this process now.
    pub(crate) fn is_open(&self) -> bool {
        self.state().open.is_some()
    }

    /// How many times this process opened the index.
    pub(crate) fn opens(&self) -> u64 {
        self.state().opens
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A short pause between read-only open attempts, longer each time.
fn pause_before_retry(tries: u32, _error: &StoreError) {
    std::thread::sleep(Duration::from_millis(u64::from(tries) * 2));
}

/// The idle closer: one thread per open store, gone once the index is closed or the store
/// dropped.
fn close_when_idle(slot: &Weak<Slot>, idle: Duration) {
    loop {
        let Some(slot) = slot.upgrade() else { return };
        let closing_guard = slot.closing();
        let mut state = slot.state();
        let Some(open) = &state.open else {
            state.closer_running = false;
            return;
        };
        let idle_for = state.last_use.elapsed();
        if idle_for >= idle && Arc::strong_count(open) == 1 {
            let closing = state.open.take();
            state.closer_running = false;
            drop(state);
            drop(closing);
            drop(closing_guard);
            return;
        }
        drop(closing_guard);
        // In use past the idle time (a long GC): look again an idle period later rather than
        // spin.
        let wait = if idle_for >= idle {
            idle
        } else {
            idle - idle_for
        };
        let (state, _) = slot
            .wake
            .wait_timeout(state, wait)
            .unwrap_or_else(|p| p.into_inner());
        drop(state);
    }
}
