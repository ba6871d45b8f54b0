//! The RocksDB index: one key space, each kind of record under its own one-byte tag
//! (see docs/format.md).

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, CompactOptions, DB, DBCompactionStyle,
    DataBlockIndexType, Direction, IteratorMode, LogLevel, MergeOperands, Options, ReadOptions,
    UniversalCompactOptions, WaitForCompactOptions, WriteBatch, WriteOptions,
};

use crate::StoreError;

/// Blob records: blake3 → [`crate::BlobInfo`].
pub(crate) const BLOBS: &str = "blobs";
/// sha256 → blake3 aliases.
pub(crate) const SHA256: &str = "sha256";
/// Layer records: blake3 of the uncompressed tar → [`crate::LayerRecord`].
pub(crate) const LAYERS: &str = "layers";
/// diff_id (sha256 of the uncompressed tar) → layer key (blake3 of the same tar).
pub(crate) const DIFF_IDS: &str = "diff_ids";
/// Cache entries: step cache key → [`crate::CacheRecord`].
pub(crate) const CACHE: &str = "cache";
/// Images: `name:tag` → [`crate::ImageRecord`].
pub(crate) const IMAGES: &str = "images";
/// Leases: id (16 bytes) → header; id ‖ blake3 → empty (a protected blob).
pub(crate) const LEASES: &str = "leases";
/// Blob files that may exist without a record (a put or GC in flight): blake3 → empty.
pub(crate) const PENDING: &str = "pending";
/// Counters (merged as i64 additions) and small settings.
pub(crate) const META: &str = "meta";

/// Every kind of record with the tag byte its keys start with: the index of format v3 is
/// one RocksDB key space (its default column family). Format v2 kept one column family per
/// kind, named as here: every open set up nine families, every flush wrote a table file
/// into each family written (nine fsyncs), and an aged store kept up to 12 table files per
/// large family (docs/benchmarks-warm.md). The tags never change: they are on disk.
pub(crate) const FAMILIES: [(&str, u8); 9] = [
    (BLOBS, 1),
    (SHA256, 2),
    (LAYERS, 3),
    (DIFF_IDS, 4),
    (CACHE, 5),
    (IMAGES, 6),
    (LEASES, 7),
    (PENDING, 8),
    (META, 9),
];

/// The tag byte of a kind of record.
fn tag(family: &str) -> u8 {
    FAMILIES
        .iter()
        .find(|(name, _)| *name == family)
        .map(|(_, tag)| *tag)
        // Every caller passes one of the constants above.
        .unwrap_or_else(|| panic!("unknown index family {family:?}"))
}

/// `key` under the tag of `family`: the key as stored.
pub(crate) fn tagged(family: &str, key: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(1 + key.len());
    stored.push(tag(family));
    stored.extend_from_slice(key);
    stored
}

/// Counter keys in [`META`].
pub(crate) const STORED_BYTES: &[u8] = b"counter/stored_bytes";
pub(crate) const BLOB_COUNT: &[u8] = b"counter/blob_count";
pub(crate) const LOGICAL_BYTES: &[u8] = b"counter/logical_bytes";
pub(crate) const HITS: &[u8] = b"counter/dedupe_hits";
pub(crate) const MISSES: &[u8] = b"counter/dedupe_misses";
/// Last GC time (ms since epoch, 8 bytes LE), for rate-limiting automatic GC across opens.
pub(crate) const LAST_GC: &[u8] = b"last_gc";

/// Block cache for the whole index: a million cache entries take ~100 MB of SST data; the
/// cache keeps the hot part and every filter and index block in memory.
const BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Sorted runs (table files written by flushes, or merged from them) the index holds
/// before RocksDB merges recent ones. The index uses universal compaction: each flush adds
/// a run, and runs of similar size are merged together, so the many small runs
/// short-lived commands leave are merged with each other, not with the whole index
/// (leveled compaction rewrote everything below level 0 for every merge, since keys are
/// random digests). A read-write index waits for these merges before it closes:
/// background work does not get to run in processes that live a few milliseconds.
pub(crate) const MERGE_TRIGGER_RUNS: i32 = 4;

/// How large (percent of the oldest run) the newer runs may grow before RocksDB merges
/// every run into one. Merges of recent runs keep the deletions they carry (an older run
/// may hold the key), and short-lived records (leases, pending blobs) are deleted by every
/// build: lookups skip them through bloom filters, but a writer's recovery scan of pending
/// blobs reads them all. RocksDB's default, 200%, keeps them until the newer runs are twice
/// the size of the oldest. Every process also opens each newer run and reads its filter
/// (a 5 MB run's is ~90 KiB), so they are kept small: at 10% an index of 36 MB is rewritten
/// once per ~3.6 MB of new runs (under a second, about every thousand builds of the aging
/// benchmark, whose 10,000 builds took as long as at 25%).
const MAX_NEWER_RUNS_PCT: i32 = 10;

/// Sorted runs past which [`Index::open`] merges the whole index into one: a bound that
/// holds even when merges keep being cut short (killed processes). Runs, not files: a
/// large index's merged run may span several table files, and merging it again would
/// not make it fewer.
pub(crate) const MAX_SORTED_RUNS: u64 = 12;

/// How long a closing writer waits for the merges in flight. Merging small runs takes
/// milliseconds; merging a large index (an aged one's occasional full merge) a second or
/// so. One cut short by the close is redone by a later writer.
const MERGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// MANIFEST size past which RocksDB's next MANIFEST write (a flush or compaction) starts a
/// new, compacted one — if the MANIFEST is also more than [`MANIFEST_SPACE_AMP_PCT`] over
/// the last compacted one's size. Every open, read-only ones included, replays the whole
/// MANIFEST: at 64 KiB a store aged by 1,387 builds spent 15% of an `image ls` there
/// (docs/benchmarks-warm.md); a compacted one is 1–4 KiB.
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 << 10;

/// How far (percent) the MANIFEST may grow past its last compacted size before a rewrite.
/// RocksDB's default, 500, let a store aged by 10,000 builds (3.7 KiB compacted) keep a
/// 21–23 KiB MANIFEST whatever `MAX_MANIFEST_BYTES` said; 100 keeps it within twice the
/// compacted size, for one small rewrite every few flushes.
const MANIFEST_SPACE_AMP_PCT: u32 = 100;

/// WAL files the index directory may hold before [`Index::open`] flushes them into a table.
/// Every open, read-only ones included, replays them all (about half a microsecond a
/// record, ~150 records a writing build); a flush writes one table file, and runs merge
/// cheaply (see [`MERGE_TRIGGER_RUNS`]), so writers flush often rather than leave readers
/// a long log.
pub(crate) const MAX_WAL_FILES: usize = 2;

/// WAL bytes past which a read-write open or close flushes them into tables. Every open
/// replays the whole WAL into memtables: 200 KB of touches from a long-lived process made a
/// later `image ls` spend a fifth of its time there (docs/benchmarks.md).
pub(crate) const MAX_WAL_BYTES: u64 = 64 << 10;

/// A key/value pair read from the index.
pub(crate) type Entry = (Box<[u8]>, Box<[u8]>);

/// The open database.
pub(crate) struct Index {
    db: DB,
    path: PathBuf,
    write_opts: WriteOptions,
    /// Opened read-only: last-used touches are skipped, other writes fail.
    read_only: bool,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Index {
    /// A read-write index leaves at most [`MAX_WAL_BYTES`] of WAL for the next open to
    /// replay (a long-lived process's touches would otherwise slow every reader after it
    /// until the next writer's open), and lets the merges in flight finish, up to
    /// [`MERGE_WAIT`] (closing the database would abandon them).
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        // A failed flush loses nothing: the WAL stays, and the next open replays it.
        let _ = self.bound_wal(usize::MAX, MAX_WAL_BYTES);
        let mut wait = WaitForCompactOptions::default();
        wait.set_timeout(MERGE_WAIT.as_micros() as u64);
        // A merge cut short loses nothing either: the runs it read stay.
        let _ = self.db.wait_for_compact(&wait);
    }
}

/// Sums i64 little-endian operands onto the existing value; malformed values count as 0 so a
/// damaged counter degrades to a wrong statistic, never to a failed write.
pub(crate) fn add_i64(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let read = |v: &[u8]| <[u8; 8]>::try_from(v).map_or(0, i64::from_le_bytes);
    let mut total = existing.map_or(0, read);
    for op in operands {
        total = total.wrapping_add(read(op));
    }
    Some(total.to_le_bytes().to_vec())
}

impl Index {
    /// Opens (creating if needed) the database at `path` for reading and writing.
    pub(crate) fn open(path: &Path, sync: bool) -> Result<Self, StoreError> {
        Index::open_mode(path, sync, false)
    }

    /// Opens the database at `path` read-only: no lock, no file written, no fsync; the WAL
    /// other processes left is replayed in memory. A writer's compaction may delete a table
    /// file between reading the MANIFEST and opening the file: the caller retries.
    pub(crate) fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        Index::open_mode(path, false, true)
    }

    fn open_mode(path: &Path, sync: bool, read_only: bool) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(2);
        // RocksDB's `LOG` keeps warnings and errors. At its default level every read-write
        // open wrote ~400 lines (the options dump): CPU beside a build's first step.
        opts.set_log_level(LogLevel::Warn);
        // RocksDB opens every table file at open with up to 16 threads; the index holds a
        // few small files, which one thread opens faster than it can start the others.
        opts.set_max_file_opening_threads(1);
        // No periodic statistics dumps: they only start a timer thread in short commands.
        opts.set_stats_dump_period_sec(0);
        opts.set_stats_persist_period_sec(0);
        // Lookups are point gets of random 32-byte digests: bloom filters let a get skip the
        // files that cannot hold the key, and a hash index inside each block finds the key
        // without a binary search.
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        opts.set_block_based_table_factory(&table);
        // The last level holds nearly all keys (files there are what `bound_runs` and GC
        // merge into), and every command loaded the filter of each last-level table a lookup
        // touched: the bulk of the metadata an aged index reads (500 KB of 625 on a store
        // aged by 10,000 builds). Without them, a lookup that misses there (a new blob's
        // dedupe check, a cold step's cache key, the blobs lookup before the layers one)
        // reads an index and a data block instead, a few microseconds from the page cache;
        // the hits of a warm rebuild need neither.
        opts.set_optimize_filters_for_hits(true);
        opts.set_compaction_style(DBCompactionStyle::Universal);
        opts.set_level_zero_file_num_compaction_trigger(MERGE_TRIGGER_RUNS);
        let mut universal = UniversalCompactOptions::default();
        universal.set_max_size_amplification_percent(MAX_NEWER_RUNS_PCT);
        opts.set_universal_compaction_options(&universal);
        // Counters are the only keys written with merges.
        opts.set_merge_operator_associative("lamina-add-i64", add_i64);
        // Most opens are short commands that write a few records. By default each open
        // flushes the WAL the last one left into a new table file (with its fsyncs) and
        // writes a fresh MANIFEST; instead the WAL stays the record of small writes until
        // `MAX_WAL_FILES` pile up (then one flush), and the MANIFEST is appended to. The
        // MANIFEST options are marked experimental in RocksDB 11.8 (best effort: RocksDB
        // falls back to a fresh MANIFEST when it cannot reuse one); the kill -9 tests of
        // this crate and tests/kill-sweep.sh run with them. Appending to the MANIFEST at
        // every open makes it grow by a record per open; past this size the next open
        // writes a fresh, compacted one, so recovery (which reads it all) stays short
        // however many commands ran.
        opts.set_max_manifest_file_size(MAX_MANIFEST_BYTES);
        let opts = opts
            .get_options_from_string(format!(
                "avoid_flush_during_recovery=true;reuse_manifest_on_open=true;\
                 optimize_manifest_for_recovery=true;\
                 max_manifest_space_amp_pct={MANIFEST_SPACE_AMP_PCT}"
            ))
            .map_err(|source| StoreError::Index {
                path: path.to_path_buf(),
                source,
            })?;
        let opened = if read_only {
            DB::open_for_read_only(&opts, path, false)
        } else {
            DB::open(&opts, path)
        };
        let db = opened.map_err(|source| StoreError::Index {
            path: path.to_path_buf(),
            source,
        })?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(sync);
        let index = Index {
            db,
            path: path.to_path_buf(),
            write_opts,
            read_only,
        };
        if read_only {
            return Ok(index);
        }
        // A failed flush loses nothing (the WAL stays and is replayed): not worth failing
        // the command for.
        let _ = index.bound_wal(MAX_WAL_FILES, MAX_WAL_BYTES);
        index.bound_runs(MAX_SORTED_RUNS)?;
        Ok(index)
    }

    /// Flushes the memtable into a table file when the index directory holds more than
    /// `max_files` WAL files or more than `max_bytes` of them (opens keep the WAL they
    /// recover rather than flushing it, and start a new one), so opens never replay a long
    /// log; the flush lets RocksDB delete them.
    pub(crate) fn bound_wal(&self, max_files: usize, max_bytes: u64) -> Result<(), StoreError> {
        let (files, bytes) = std::fs::read_dir(&self.path).map_or((0, 0), |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .fold((0, 0), |(files, bytes), e| {
                    (files + 1, bytes + e.metadata().map_or(0, |m| m.len()))
                })
        });
        if files <= max_files && bytes <= max_bytes {
            return Ok(());
        }
        self.flush()
    }

    /// Writes the memtable into a table file (synced, with the MANIFEST record naming it).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush_opt(&rocksdb::FlushOptions::default())
            .map_err(self.err())
    }

    /// The index's sorted runs: each level-0 file is one (a flush or a merge of recent
    /// runs), each other level holding files is one.
    pub(crate) fn sorted_runs(&self) -> Result<u64, StoreError> {
        let mut runs = 0;
        for level in 0..7 {
            let property = format!("rocksdb.num-files-at-level{level}");
            let files = self
                .db
                .property_int_value(property.as_str())
                .map_err(self.err())?
                .unwrap_or(0);
            runs += if level == 0 { files } else { files.min(1) };
        }
        Ok(runs)
    }

    /// Merges the index into one sorted run when it holds more than `max`, in this call:
    /// background merges may keep being cut short, and this rewrites the whole index,
    /// which is why it waits until runs pile up.
    pub(crate) fn bound_runs(&self, max: u64) -> Result<(), StoreError> {
        if self.sorted_runs()? > max {
            self.merge_all();
        }
        Ok(())
    }

    /// Table files (`.sst`) in the index directory.
    #[cfg(test)]
    pub(crate) fn table_files(&self) -> usize {
        std::fs::read_dir(&self.path).map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
                .count()
        })
    }

    /// Merges every run into one at the last level, dropping deleted records: a
    /// level-0 file (what a flush writes) keeps its bloom filter and index pinned in memory
    /// for every lookup of every open, where a last-level one has no filter.
    pub(crate) fn merge_all(&self) {
        let mut compact = CompactOptions::default();
        compact.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        self.db
            .compact_range_opt(None::<&[u8]>, None::<&[u8]>, &compact);
    }

    fn err(&self) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        |source| StoreError::Index {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn get(&self, family: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get(tagged(family, key)).map_err(self.err())
    }

    pub(crate) fn put(&self, family: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_opt(tagged(family, key), value, &self.write_opts)
            .map_err(self.err())
    }

    pub(crate) fn write(&self, batch: IndexBatch) -> Result<(), StoreError> {
        self.db
            .write_opt(batch.into_write_batch(), &self.write_opts)
            .map_err(self.err())
    }

    /// [`Index::put`] without fsync: for last-used times, where losing the last few updates
    /// to a power cut is harmless (a killed process loses nothing: the WAL is written).
    pub(crate) fn put_relaxed(
        &self,
        family: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.db.put(tagged(family, key), value).map_err(self.err())
    }

    /// Writes without fsync: for statistics and last-used times, where losing the last
    /// few updates to a power cut is harmless.
    pub(crate) fn write_relaxed(&self, batch: IndexBatch) -> Result<(), StoreError> {
        self.db.write(batch.into_write_batch()).map_err(self.err())
    }

    /// A counter's value (0 if never written).
    pub(crate) fn counter(&self, key: &[u8]) -> Result<i64, StoreError> {
        Ok(self
            .get(META, key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_le_bytes))
    }

    /// Every entry of a kind of record, in key order (keys without their tag).
    pub(crate) fn scan(
        &self,
        family: &str,
    ) -> impl Iterator<Item = Result<Entry, StoreError>> + '_ {
        self.scan_prefix(family, &[])
    }

    /// The entries of a kind of record whose key starts with `prefix` (keys without their
    /// tag).
    pub(crate) fn scan_prefix(
        &self,
        family: &str,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<Entry, StoreError>> + '_ {
        let start = tagged(family, prefix);
        // The iterator stops at the bound instead of reading past the last match: past it
        // lie other kinds of record, and the deleted keys of short-lived ones (leases,
        // pending blobs) that merges of recent runs keep, which a step past the end would
        // skip one by one (a store aged by 10,000 builds: an `image ls` took 2.7 times as
        // long).
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(successor(&start));
        self.db
            .iterator_opt(IteratorMode::From(&start, Direction::Forward), read)
            .map(|r| r.map_err(self.err()))
            .map(|r| r.map(|(k, v)| (Box::from(&k[1..]), v)))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a read-only open (see [`Index::open_read_only`]).
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
    }
}

/// The first key after every key that starts with `prefix` (which starts with a tag, never
/// 0xff).
fn successor(prefix: &[u8]) -> Vec<u8> {
    let mut bound = prefix.to_vec();
    while bound.last() == Some(&0xff) {
        bound.pop();
    }
    if let Some(last) = bound.last_mut() {
        *last += 1;
    }
    bound
}

/// Writes applied together by [`Index::write`]: each key under its family's tag.
#[derive(Default)]
pub(crate) struct IndexBatch {
    batch: WriteBatch,
    /// Counter deltas, summed per counter and written as one merge operand each: every
    /// open replays the WAL and every read of a counter folds its operands, and a batch
    /// may add to a counter thousands of times (a merged touch log, a GC sweep).
    counts: Vec<(Vec<u8>, i64)>,
}

impl IndexBatch {
    pub(crate) fn put(&mut self, family: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put(tagged(family, key.as_ref()), value);
    }

    pub(crate) fn delete(&mut self, family: &str, key: impl AsRef<[u8]>) {
        self.batch.delete(tagged(family, key.as_ref()));
    }

    /// Adds `delta` to a counter in [`META`].
    pub(crate) fn count(&mut self, counter: &[u8], delta: i64) {
        match self.counts.iter_mut().find(|(key, _)| key == counter) {
            // As the merge operator adds: wrapping (a delta comes from the touch log too).
            Some((_, sum)) => *sum = sum.wrapping_add(delta),
            None => self.counts.push((counter.to_vec(), delta)),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.counts.is_empty()
    }

    /// The batch to write, the counters' operands last: no batch that counts also puts or
    /// deletes a counter key (only the migration's copy puts them, in batches of its own).
    fn into_write_batch(self) -> WriteBatch {
        let mut batch = self.batch;
        for (counter, delta) in self.counts {
            if delta != 0 {
                batch.merge(tagged(META, &counter), delta.to_le_bytes());
            }
        }
        batch
    }
}

/// A key from the index as a fixed 32-byte digest, or a corruption error naming it.
pub(crate) fn key32(kind: &'static str, key: &[u8]) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(key).map_err(|_| StoreError::CorruptRecord {
        kind,
        key: crate::digest::hex(key),
        reason: format!("key has {} bytes, expected 32", key.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_writes_one_operand_per_counter() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), false).unwrap();
        let mut batch = IndexBatch::default();
        for _ in 0..1000 {
            batch.count(HITS, 1);
            batch.count(STORED_BYTES, 7);
            batch.count(BLOB_COUNT, 1);
            batch.count(BLOB_COUNT, -1);
        }
        batch.put(BLOBS, [1u8; 32], b"x");
        let write = std::mem::take(&mut batch).into_write_batch();
        // The put, then one operand each for the two counters that moved.
        assert_eq!(write.len(), 3);
        let mut again = IndexBatch::default();
        again.count(HITS, 5);
        index.write(again).unwrap();
        index.db.write(write).unwrap();
        assert_eq!(index.counter(HITS).unwrap(), 1005);
        assert_eq!(index.counter(STORED_BYTES).unwrap(), 7000);
        assert_eq!(index.counter(BLOB_COUNT).unwrap(), 0);
    }

    #[test]
    fn a_prefix_successor_is_past_every_key_with_the_prefix() {
        assert_eq!(successor(&[6]), [7]);
        assert_eq!(successor(&[7, 1, 0xff]), [7, 2]);
        assert_eq!(successor(&[7, 0xff, 0xff]), [8]);
        assert!(successor(&[7, 1, 0xff]).as_slice() > [7, 1, 0xff, 0xff, 0xff].as_slice());
    }
}
