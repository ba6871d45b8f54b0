//! The RocksDB index: one column family per kind of record (see docs/format.md).

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor,
    CompactOptions, DB, DataBlockIndexType, Direction, IteratorMode, MergeOperands, Options,
    WriteBatch, WriteOptions,
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

const FAMILIES: [&str; 9] = [
    BLOBS, SHA256, LAYERS, DIFF_IDS, CACHE, IMAGES, LEASES, PENDING, META,
];

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

/// Table files a column family may hold before [`Index::open`] merges them into one. Every
/// open that finds writes in the WAL flushes them into new level-0 files (one per family
/// written); a short-lived process exits before RocksDB's background compaction merges them,
/// and what it does compact, files of a few random digests whose key ranges do not overlap,
/// it moves to the last level unmerged. Without this bound a store used by many small
/// commands grows by ~2 files per command and every open reads them all.
pub(crate) const MAX_FAMILY_FILES: u64 = 12;

/// Table files a small family (under [`SMALL_FAMILY_BYTES`]) may hold before
/// [`Index::open`] merges them. Every flush writes a file into each family written since the
/// last one, the small ones included (images, leases, pending, counters), and every open
/// opens each file: merging a few kilobytes costs a writer little, where the bound for
/// large families trades a whole-family rewrite against reads.
pub(crate) const MAX_SMALL_FAMILY_FILES: u64 = 2;

/// Table bytes under which a family counts as small for [`MAX_SMALL_FAMILY_FILES`].
pub(crate) const SMALL_FAMILY_BYTES: u64 = 1 << 20;

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

/// WAL files the index directory may hold before [`Index::open`] flushes them into tables.
pub(crate) const MAX_WAL_FILES: usize = 8;

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
    /// replay: a long-lived process's touches would otherwise slow every reader after it
    /// until the next writer's open.
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        // A failed flush loses nothing: the WAL stays, and the next open replays it.
        let _ = self.bound_wal(usize::MAX, MAX_WAL_BYTES);
    }
}

/// Sums i64 little-endian operands onto the existing value; malformed values count as 0 so a
/// damaged counter degrades to a wrong statistic, never to a failed write.
fn add_i64(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
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
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(2);
        // RocksDB opens every table file at open with up to 16 threads per column family
        // (144 threads for 9 families); the index holds a few small files per family, which
        // one thread opens faster than it can start the others.
        opts.set_max_file_opening_threads(1);
        // No periodic statistics dumps: they only start a timer thread in short commands.
        opts.set_stats_dump_period_sec(0);
        opts.set_stats_persist_period_sec(0);
        // Lookups are point gets of random 32-byte digests: bloom filters let a get skip the
        // files that cannot hold the key, and a hash index inside each block finds the key
        // without a binary search. One block cache is shared by every family.
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(true);
        table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Most opens are short commands that write a few records. By default each open
        // flushes the WAL the last one left into new table files (one per family written,
        // each with its fsyncs) and writes a fresh MANIFEST; instead the WAL stays the
        // record of small writes until `MAX_WAL_FILES` pile up (then one flush), and the
        // MANIFEST is appended to. The MANIFEST options are marked experimental in RocksDB
        // 11.8 (best effort: RocksDB falls back to a fresh MANIFEST when it cannot reuse
        // one); the kill -9 tests of this crate and tests/kill-sweep.sh run with them.
        // Appending to the MANIFEST at every open makes it grow by a record per open; past
        // this size the next open writes a fresh, compacted one, so recovery (which reads it
        // all) stays short however many commands ran.
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
        let families = FAMILIES.iter().map(|name| {
            let mut cf = Options::default();
            cf.set_block_based_table_factory(&table);
            // The last level holds nearly all keys (files there are what `bound_files` and
            // GC merge into), and every command loaded the filter of each last-level table
            // a lookup touched: the bulk of the metadata an aged index reads (500 KB of 625
            // on a store aged by 10,000 builds). Without them, a lookup that misses there
            // (a new blob's dedupe check, a cold step's cache key, the blobs lookup before
            // the layers one) reads an index and a data block instead, a few microseconds
            // from the page cache; the hits of a warm rebuild need neither. RocksDB skips
            // last-level filters at read time, so tables written before keep theirs unused.
            cf.set_optimize_filters_for_hits(true);
            if *name == META {
                cf.set_merge_operator_associative("lamina-add-i64", add_i64);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let opened = if read_only {
            DB::open_cf_descriptors_read_only(&opts, path, families, false)
        } else {
            DB::open_cf_descriptors(&opts, path, families)
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
        index.bound_files(MAX_FAMILY_FILES, MAX_SMALL_FAMILY_FILES)?;
        Ok(index)
    }

    /// Flushes every family into table files when the index directory holds more than
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
        let families: Vec<_> = FAMILIES.iter().map(|name| self.cf(name)).collect();
        self.db
            .flush_cfs_opt(&families, &rocksdb::FlushOptions::default())
            .map_err(self.err())
    }

    /// Table files of a column family, over every level.
    pub(crate) fn family_files(&self, cf: &str) -> Result<u64, StoreError> {
        let mut files = 0;
        for level in 0..7 {
            let property = format!("rocksdb.num-files-at-level{level}");
            files += self
                .db
                .property_int_value_cf(self.cf(cf), property.as_str())
                .map_err(self.err())?
                .unwrap_or(0);
        }
        Ok(files)
    }

    /// Merges every column family holding more than `max` table files (`max_small` if the
    /// family's tables are under [`SMALL_FAMILY_BYTES`]) into one file, in this call: the
    /// files are small, and background compaction does not get to run in processes that
    /// live a few milliseconds. This rewrites the whole family, which is why a large one
    /// waits until files pile up rather than being merged at every open.
    pub(crate) fn bound_files(&self, max: u64, max_small: u64) -> Result<(), StoreError> {
        let mut compact = CompactOptions::default();
        compact.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        for name in FAMILIES {
            let files = self.family_files(name)?;
            if files <= max_small {
                continue;
            }
            // Unknown counts as large: merged only past `max`, as before this bound.
            let bytes = self
                .db
                .property_int_value_cf(self.cf(name), "rocksdb.live-sst-files-size")
                .ok()
                .flatten()
                .unwrap_or(u64::MAX);
            if files > max || bytes < SMALL_FAMILY_BYTES {
                self.db
                    .compact_range_cf_opt(self.cf(name), None::<&[u8]>, None::<&[u8]>, &compact);
            }
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

    fn err(&self) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        |source| StoreError::Index {
            path: self.path.clone(),
            source,
        }
    }

    /// The handle of a column family opened in [`Index::open`].
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        // Every name in FAMILIES is opened (or created) by `open`, so this cannot fail.
        self.db
            .cf_handle(name)
            .expect("column family opened at start")
    }

    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf), key).map_err(self.err())
    }

    pub(crate) fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(cf), key, value, &self.write_opts)
            .map_err(self.err())
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db
            .write_opt(batch, &self.write_opts)
            .map_err(self.err())
    }

    /// [`Index::put`] without fsync: for last-used times, where losing the last few updates
    /// to a power cut is harmless (a killed process loses nothing: the WAL is written).
    pub(crate) fn put_relaxed(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db.put_cf(self.cf(cf), key, value).map_err(self.err())
    }

    /// Writes without fsync: for statistics and last-used times, where losing the last
    /// few updates to a power cut is harmless.
    pub(crate) fn write_relaxed(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db.write(batch).map_err(self.err())
    }

    /// Adds `delta` to a counter in `batch`.
    pub(crate) fn count(&self, batch: &mut WriteBatch, key: &[u8], delta: i64) {
        batch.merge_cf(self.cf(META), key, delta.to_le_bytes());
    }

    /// A counter's value (0 if never written).
    pub(crate) fn counter(&self, key: &[u8]) -> Result<i64, StoreError> {
        Ok(self
            .get(META, key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, i64::from_le_bytes))
    }

    /// Every entry of a column family, in key order.
    pub(crate) fn scan(&self, cf: &str) -> impl Iterator<Item = Result<Entry, StoreError>> + '_ {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::Start)
            .map(|r| r.map_err(self.err()))
    }

    /// The entries whose key starts with `prefix`.
    pub(crate) fn scan_prefix<'a>(
        &'a self,
        cf: &str,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = Result<Entry, StoreError>> + 'a {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::From(prefix, Direction::Forward))
            .map(|r| r.map_err(self.err()))
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a read-only open (see [`Index::open_read_only`]).
    pub(crate) fn is_read_only(&self) -> bool {
        self.read_only
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
