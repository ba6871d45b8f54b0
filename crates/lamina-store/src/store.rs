//! [`Store`]: opening, recovery, blob lookups and reads.

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::fsutil::{Layout, Marker, remove_if_exists, temp_owner};
use crate::index::{self, Index, IndexBatch};
use crate::lock::StoreLock;
use crate::records::{from_ms, now_ms, to_ms};
use crate::slot::{OpenIndex, Slot};
use crate::{Algorithm, BlobInfo, Digest, StoreError};

/// Last-used times are rewritten at most this often, so hot reads stay read-only.
pub(crate) const TOUCH_GRANULARITY_MS: u64 = 60_000;
const STRIPES: usize = 64;

/// How a [`Store`] behaves; `StoreOptions::default()` suits a developer machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Cache entries expire this long after their last use unless they set their own TTL
    /// (default 24 h).
    pub default_ttl: Duration,
    /// Nothing created or used more recently than this is ever evicted (default 10 min).
    pub min_age: Duration,
    /// Evict least-recently-used cache entries while stored bytes exceed this.
    pub max_size: Option<u64>,
    /// How long an operation waits for another process to finish its index section
    /// (default 30 s). Processes hold the index only while they read or write it, so a
    /// wait is normally milliseconds; a GC of a large store holds it longest.
    pub lock_timeout: Duration,
    /// Close the index (letting other processes write) once no operation has used it for
    /// this long (default 50 ms); `None` keeps it open until [`Store::release_index`] or
    /// the store is dropped.
    pub idle_close: Option<Duration>,
    /// Open the index read-only (default off): no `LOCK`, no file written, no fsync, so a
    /// reader never waits for writers and costs them nothing. Only for commands that read
    /// (list, inspect, statistics, export); writes fail, last-used times are not updated.
    /// A store that does not exist yet is created read-write first.
    pub read_only: bool,
    /// Open the index read-only until the first write (default off). Reads, and the
    /// last-used marks and dedupe counts of what they find, then cost no read-write open
    /// (RocksDB writes an OPTIONS file, a MANIFEST record and a WAL at every one): the marks
    /// go to the touch log (`touches-v1`) and the next writer merges them into the index.
    /// The first write opens the index read-write as usual. Recovery from crashed processes
    /// then runs at that first read-write open rather than at [`Store::open`]. For commands
    /// that usually only read but may write, such as a rebuild that usually hits.
    pub read_first: bool,
    /// Called once per wait that lasts half a second, with the holder (`process <pid>`),
    /// so a command can say what it waits for (default none).
    pub wait_notice: Option<WaitNotice>,
    /// Run GC automatically after writes, at most once per `gc_interval` (default on).
    pub auto_gc: bool,
    /// Minimum time between automatic GCs (default 10 min).
    pub gc_interval: Duration,
    /// fsync index writes (default on); off trades power-loss safety for speed, a killed
    /// process still loses nothing.
    pub sync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            default_ttl: Duration::from_secs(24 * 60 * 60),
            min_age: Duration::from_secs(10 * 60),
            max_size: None,
            lock_timeout: Duration::from_secs(30),
            idle_close: Some(Duration::from_millis(50)),
            read_only: false,
            read_first: false,
            wait_notice: None,
            auto_gc: true,
            gc_interval: Duration::from_secs(10 * 60),
            sync: true,
        }
    }
}

/// What [`StoreOptions::wait_notice`] calls: `WaitNotice::new(|holder| eprintln!(...))`.
#[derive(Clone)]
pub struct WaitNotice(Arc<dyn Fn(&str) + Send + Sync>);

impl WaitNotice {
    /// A notice that calls `notice` with the holder.
    pub fn new(notice: impl Fn(&str) + Send + Sync + 'static) -> WaitNotice {
        WaitNotice(Arc::new(notice))
    }

    pub(crate) fn call(&self, holder: &str) {
        (self.0)(holder);
    }
}

impl std::fmt::Debug for WaitNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitNotice")
    }
}

/// Two notices are equal when they are the same closure.
impl PartialEq for WaitNotice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WaitNotice {}

/// The content-addressed store: blobs by blake3 in files, records in a RocksDB index.
///
/// `Store` is `Send + Sync`: share it between threads by reference or `Arc`. Any number of
/// processes may have a store open: each holds the index (and `LOCK`) only while it reads
/// or writes it; see [`StoreOptions::idle_close`] and [`StoreOptions::lock_timeout`].
#[derive(Debug)]
pub struct Store {
    pub(crate) layout: Layout,
    slot: Arc<Slot>,
    pub(crate) options: StoreOptions,
    /// Writers that add records or blobs hold it shared; GC and fsck hold it exclusively,
    /// so a sweep never races a put or a new reference.
    pub(crate) gate: RwLock<()>,
    /// Serialises commits (and touches) of the same digest within the process.
    stripes: Vec<Mutex<()>>,
    pub(crate) last_gc_ms: Arc<AtomicU64>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.slot.shutdown();
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path`, waiting up to
    /// `options.lock_timeout` for another process's index section, and recovers from any
    /// crash of an earlier holder (temp files, half-done puts and GCs).
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let root = path.as_ref();
        std::fs::create_dir_all(root).map_err(StoreError::io(root))?;
        let layout = Layout::new(root);
        let exists = layout.format.is_file();
        // Before a migration's or leftover removal's temp files are made in it.
        std::fs::create_dir_all(&layout.tmp).map_err(StoreError::io(&layout.tmp))?;
        let lock = || {
            StoreLock::acquire(
                &layout.lock,
                options.lock_timeout,
                crate::slot::NOTICE_AFTER,
                |holder| {
                    if let Some(notice) = &options.wait_notice {
                        notice.call(holder);
                    }
                },
            )
        };
        if !exists {
            // Creating the layout races with other processes opening a new store.
            let _lock = lock()?;
            layout.create()?;
        } else if layout.marker()? == Marker::BeforeIndexV2 {
            // Read-only opens too: this version reads only the new index.
            let _lock = lock()?;
            crate::migrate::migrate(&layout)?;
        } else if !options.read_only && crate::migrate::left_behind(&layout) {
            // Best effort, and never by a read-only open (no `LOCK` to wait for): a later
            // read-write open tries again.
            if let Ok(_lock) = lock() {
                let _ = crate::migrate::remove_leftovers(&layout);
            }
        }
        // A store made just now has no index to open read-only yet.
        let options = StoreOptions {
            read_only: options.read_only && exists && layout.index.join("CURRENT").is_file(),
            ..options
        };
        let last_gc_ms = Arc::new(AtomicU64::new(0));
        let after_open = {
            let layout = layout.clone();
            let last_gc_ms = last_gc_ms.clone();
            Box::new(move |index: &Index| {
                recover(&layout, index)?;
                // Uses readers recorded: merged now unless a reader or GC holds the log (the
                // next writer or GC merges them then; this one holds `LOCK`, so it never
                // waits for the log).
                if let Some(log) = crate::touchlog::TouchLog::new(&layout.root).try_exclusive()? {
                    log.merge_into(index)?;
                }
                let last_gc = index
                    .get(index::META, index::LAST_GC)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map_or(0, u64::from_le_bytes);
                last_gc_ms.fetch_max(last_gc, Ordering::Relaxed);
                Ok(())
            })
        };
        let slot = Slot::new(layout.clone(), &options, after_open);
        let store = Store {
            layout,
            slot,
            options,
            gate: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            last_gc_ms,
        };
        // Opened once now: recovery runs (read-write), and a store that cannot open fails
        // here.
        drop(store.index()?);
        if !store.options.read_only {
            crate::reserve::ensure(&store.layout);
        }
        Ok(store)
    }

    /// The index, opened (waiting for other processes' sections) if this process does not
    /// have it open. Hold the returned handle for the whole of an operation that must see
    /// one consistent index (a put from `pending` to commit, a GC from mark to sweep).
    pub(crate) fn index(&self) -> Result<Arc<OpenIndex>, StoreError> {
        self.slot.get()
    }

    /// The index opened read-write (a read-first store's read-only open gives way to it).
    /// Every operation that writes takes its index through this.
    pub(crate) fn writable(&self) -> Result<Arc<OpenIndex>, StoreError> {
        self.slot.get_writable()
    }

    /// Merges the touch log into the index when appending made it `log_size` bytes, past
    /// the bound, so a store that only sees warm rebuilds keeps it small. Best effort, like
    /// the append itself: skipped while anyone else holds the log (another process's read
    /// section, a GC, which merges it anyway), and a failure leaves it to the next writer.
    fn merge_touches_past_bound(&self, log_size: u64) {
        if log_size <= crate::touchlog::MERGE_ABOVE_BYTES {
            return;
        }
        // This process's own read-only session holds the log shared until it ends.
        self.end_read_session();
        // The log before `LOCK`, as GC takes them.
        let Ok(Some(log)) = self.touch_log().try_exclusive() else {
            return;
        };
        if let Ok(db) = self.writable() {
            let _ = log.merge_into(&db);
        }
        drop(log);
        // Not held until the idle close: other processes may write at once.
        self.release_index();
    }

    pub(crate) fn touch_log(&self) -> &crate::touchlog::TouchLog {
        self.slot.touch_log()
    }

    /// The touch log locked in `mode` (see `touchlog`).
    pub(crate) fn lock_touch_log(
        &self,
        mode: crate::touchlog::Mode,
    ) -> Result<crate::touchlog::Held, StoreError> {
        self.slot.lock_log(mode)
    }

    /// Ends this process's idle read-only session, if no operation uses it.
    pub(crate) fn end_read_session(&self) {
        self.slot.release_session();
    }

    /// Starts a read section: until it is dropped, no GC in any process or thread decides
    /// what to delete, so what the caller looks up stays stored without a lease and without
    /// writing to the index. Dropping it appends the uses a read-only open recorded to the
    /// touch log. For short runs of lookups (a rebuild's cache hits), not for long work:
    /// GC waits for it, up to its `lock_timeout`.
    pub fn read_section(&self) -> Result<ReadSection<'_>, StoreError> {
        let log = self.lock_touch_log(crate::touchlog::Mode::Shared)?;
        Ok(ReadSection {
            store: self,
            _log: log,
        })
    }

    /// Closes the index now if no operation in this process uses it, so other processes
    /// can write; the next operation opens it again. For long work that needs no index
    /// and must not wait for [`StoreOptions::idle_close`] (the store's own close after
    /// that idle time, which is what frees it during a RUN step). Returns whether it is
    /// closed.
    pub fn release_index(&self) -> bool {
        self.slot.release()
    }

    /// Starts opening the index for writing on a thread of its own and returns at once: a
    /// caller that will write soon (a build at its first missed step) does its next work
    /// while the open (recovery, RocksDB's own files: milliseconds) runs, and its first
    /// write waits for that open instead of making its own. Lookups meanwhile go through the
    /// open already in place. Does nothing when the index is open for writing; gives up when
    /// another process holds `LOCK` (the first write then waits for it, as without this).
    pub fn open_for_writes_in_background(&self) {
        self.slot.open_writable_in_background();
    }

    /// Whether this process has the index open now.
    pub fn index_is_open(&self) -> bool {
        self.slot.is_open()
    }

    /// How many times this `Store` opened its index (the first open included).
    pub fn index_opens(&self) -> u64 {
        self.slot.opens()
    }

    /// Opens the store at [`crate::default_location`].
    pub fn open_default(options: StoreOptions) -> Result<Store, StoreError> {
        Store::open(crate::default_location()?, options)
    }

    /// The store's root directory.
    pub fn path(&self) -> &Path {
        &self.layout.root
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn stripe(&self, digest: &[u8; 32]) -> MutexGuard<'_, ()> {
        let i = usize::from(digest[0]) % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The blake3 key for `digest`, following the sha256 alias if needed.
    pub(crate) fn resolve(&self, digest: &Digest) -> Result<Option<[u8; 32]>, StoreError> {
        let db = self.index()?;
        match digest.algorithm() {
            Algorithm::Blake3 => Ok(Some(*digest.as_bytes())),
            Algorithm::Sha256 => match db.get(index::SHA256, digest.as_bytes())? {
                None => Ok(None),
                Some(v) => index::key32(index::SHA256, &v).map(Some),
            },
        }
    }

    /// The blob record under a blake3 key.
    pub(crate) fn record(&self, key: &[u8; 32]) -> Result<Option<BlobInfo>, StoreError> {
        let db = self.index()?;
        match db.get(index::BLOBS, key)? {
            None => Ok(None),
            Some(v) => BlobInfo::decode(key, &v)
                .map(Some)
                .map_err(|e| StoreError::CorruptRecord {
                    kind: index::BLOBS,
                    key: Digest::blake3(*key).to_string(),
                    reason: e.0,
                }),
        }
    }

    /// Looks a blob up by blake3 or sha256 digest; a miss is `Ok(None)`.
    pub fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        match self.resolve(digest)? {
            Some(key) => self.record(&key),
            None => Ok(None),
        }
    }

    /// Marks a blob used now, as reading it would, and returns its record; a miss is
    /// `Ok(None)`. For a caller that already holds what the blob says (its digest names its
    /// bytes) and needs only the store's word that it is still there.
    pub fn mark_used(&self, digest: &Digest) -> Result<Option<BlobInfo>, StoreError> {
        let Some(info) = self.stat(digest)? else {
            return Ok(None);
        };
        self.touch(&info)?;
        Ok(Some(info))
    }

    /// Whether the store holds the blob.
    pub fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.stat(digest)?.is_some())
    }

    /// Where a stored blob's file lives (for hard-linking or handing to other tools; never
    /// write to it).
    pub fn blob_path(&self, info: &BlobInfo) -> PathBuf {
        self.layout.blob_path(info.digest.as_bytes())
    }

    /// Marks a blob used now if its record is older than the touch granularity.
    pub(crate) fn touch(&self, info: &BlobInfo) -> Result<(), StoreError> {
        let db = self.index()?;
        let now = now_ms();
        if now.saturating_sub(to_ms(info.last_used)) < TOUCH_GRANULARITY_MS {
            return Ok(());
        }
        let key = *info.digest.as_bytes();
        if db.is_read_only() {
            // Into the touch log (a plain reader's use is not recorded: last-used times
            // only order eviction).
            db.record(crate::touchlog::Touch::Blob { key, ms: now });
            return Ok(());
        }
        let _gate = self.shared();
        let _stripe = self.stripe(&key);
        // Re-read under the locks: GC may have removed it since.
        if let Some(mut current) = self.record(&key)? {
            current.last_used = from_ms(now);
            db.put_relaxed(index::BLOBS, &key, &current.encode())?;
        }
        Ok(())
    }

    fn open_file(&self, digest: &Digest) -> Result<Option<(BlobInfo, File)>, StoreError> {
        let Some(info) = self.stat(digest)? else {
            return Ok(None);
        };
        let path = self.blob_path(&info);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    digest: info.digest,
                    path,
                });
            }
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        if len != info.size {
            return Err(StoreError::CorruptBlob {
                digest: info.digest,
                path,
                reason: format!("file has {len} bytes, the index says {}", info.size),
            });
        }
        self.touch(&info)?;
        Ok(Some((info, file)))
    }

    /// Opens a blob for reading; a miss is `Ok(None)`. Bytes are not re-hashed (see
    /// [`Store::verify`]), but a size mismatch or a missing file is an error.
    pub fn get(&self, digest: &Digest) -> Result<Option<Blob>, StoreError> {
        Ok(self
            .open_file(digest)?
            .map(|(info, file)| Blob { info, file }))
    }

    /// Reads a whole blob into memory.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut blob) = self.get(digest)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(usize::try_from(blob.info.size).unwrap_or(0));
        let path = self.blob_path(&blob.info);
        blob.read_to_end(&mut out).map_err(StoreError::io(path))?;
        Ok(Some(out))
    }

    /// Memory-maps a blob; a miss is `Ok(None)`.
    pub fn map(&self, digest: &Digest) -> Result<Option<BlobMap>, StoreError> {
        let Some((info, file)) = self.open_file(digest)? else {
            return Ok(None);
        };
        if info.size == 0 {
            return Ok(Some(BlobMap { info, map: None }));
        }
        // SAFETY: blob files are immutable once renamed into place: the store never writes
        // to them again, and GC only unlinks them, which leaves existing mappings valid.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(StoreError::io(
            self.layout.blob_path(info.digest.as_bytes()),
        ))?;
        Ok(Some(BlobMap {
            info,
            map: Some(map),
        }))
    }

    /// Re-hashes a blob and checks size, blake3 and sha256 against its record.
    pub fn verify(&self, digest: &Digest) -> Result<BlobInfo, StoreError> {
        let info = self
            .stat(digest)?
            .ok_or(StoreError::NotFound { digest: *digest })?;
        verify_file(&self.blob_path(&info), &info)?;
        Ok(info)
    }
}

/// A read section of a [`Store`] (see [`Store::read_section`]); ends on drop.
#[derive(Debug)]
pub struct ReadSection<'s> {
    store: &'s Store,
    /// The touch log held shared: GC holds it exclusive while it decides.
    _log: crate::touchlog::Held,
}

impl ReadSection<'_> {
    /// Ends the section, appending recorded uses first (also what dropping it does); when
    /// that takes the touch log past its bound and nobody else holds it, merges it into
    /// the index (a short read-write section).
    pub fn end(self) -> Result<(), StoreError> {
        let store = self.store;
        // Appended here, not by the drop: only the append tells how large the log is now.
        let log_size = store.slot.flush_touches();
        drop(self);
        store.merge_touches_past_bound(log_size);
        Ok(())
    }
}

impl Drop for ReadSection<'_> {
    fn drop(&mut self) {
        // Before the log's lock goes: a lost touch only makes an entry look older.
        let _ = self.store.slot.flush_touches();
    }
}

/// Removes leftovers of crashed processes, with `LOCK` held: temp files whose owner is gone,
/// and blob files whose put or GC did not reach its index commit (listed in the `pending`
/// family; a live process never leaves one behind a closed index).
fn recover(layout: &Layout, index: &Index) -> Result<(), StoreError> {
    let tmp = &layout.tmp;
    for entry in std::fs::read_dir(tmp).map_err(StoreError::io(tmp))? {
        let entry = entry.map_err(StoreError::io(tmp))?;
        let name = entry.file_name();
        if !crate::owner::alive(&layout.root, temp_owner(&name.to_string_lossy())) {
            remove_if_exists(&entry.path())?;
        }
    }
    crate::owner::forget_dead(&layout.root)
        .map_err(|(path, source)| StoreError::Io { path, source })?;
    let mut batch = IndexBatch::default();
    for item in index.scan(index::PENDING) {
        let (key, _) = item?;
        batch.delete(index::PENDING, &key);
        let Ok(digest) = <[u8; 32]>::try_from(&key[..]) else {
            continue;
        };
        if index.get(index::BLOBS, &digest)?.is_none() {
            remove_if_exists(&layout.blob_path(&digest))?;
        }
    }
    if !batch.is_empty() {
        index.write(batch)?;
    }
    Ok(())
}

/// Hashes the file at `path` and compares it with `info`.
pub(crate) fn verify_file(path: &Path, info: &BlobInfo) -> Result<(), StoreError> {
    use sha2::Digest as _;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::MissingBlob {
                digest: info.digest,
                path: path.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(StoreError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let mut b3 = blake3::Hasher::new();
    let mut s2 = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(StoreError::io(path))?;
        if n == 0 {
            break;
        }
        b3.update(&buf[..n]);
        s2.update(&buf[..n]);
        size += n as u64;
    }
    let corrupt = |reason: String| StoreError::CorruptBlob {
        digest: info.digest,
        path: path.to_path_buf(),
        reason,
    };
    if size != info.size {
        return Err(corrupt(format!(
            "file has {size} bytes, the index says {}",
            info.size
        )));
    }
    let actual = Digest::blake3(*b3.finalize().as_bytes());
    if actual != info.digest {
        return Err(corrupt(format!("content hashes to {actual}")));
    }
    let actual = Digest::sha256(s2.finalize().into());
    if actual != info.sha256 {
        return Err(corrupt(format!(
            "content's sha256 is {actual}, the index says {}",
            info.sha256
        )));
    }
    Ok(())
}

/// An open blob: its record and a reader over its bytes.
#[derive(Debug)]
pub struct Blob {
    /// The blob's record.
    pub info: BlobInfo,
    file: File,
}

impl Blob {
    /// The underlying file.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

/// A memory-mapped blob; derefs to its bytes.
#[derive(Debug)]
pub struct BlobMap {
    /// The blob's record.
    pub info: BlobInfo,
    /// `None` for the empty blob (empty files cannot be mapped).
    map: Option<memmap2::Mmap>,
}

impl Deref for BlobMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl AsRef<[u8]> for BlobMap {
    fn as_ref(&self) -> &[u8] {
        self
    }
}
