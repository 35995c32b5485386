//! [`PoolConfig`]: a plain struct with documented defaults.

use std::path::PathBuf;

use crate::Policy;

/// How a [`Pool`](crate::Pool) bounds and places its data. Start from
/// [`PoolConfig::default`] and change what you need with the setters (the
/// struct is `#[non_exhaustive]`, so new settings can come without breaking
/// you); every field stays public for reading.
///
/// ```
/// use mempool_core::{Policy, PoolConfig};
///
/// let config = PoolConfig::default()
///     .max_memsize(256 << 20)
///     .max_disksize(Some(10 << 30))
///     .policy(Policy::Lru);
/// assert_eq!(config.max_memsize, 256 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Bytes of values the pool keeps in memory; past it the least recently
    /// used (or, with [`Policy::Mru`], most recently used) values spill to disk.
    /// A single value larger than this goes straight to disk.
    /// Default: 1 GiB (MemPool.jl's `max_memsize[]` is 2^30 too).
    pub max_memsize: u64,
    /// Bytes of spill files the pool may keep; `None` (the default) for no
    /// bound. When it is reached, `set` fails — with
    /// [`PoolError::Spill`](crate::PoolError::Spill) whose source is
    /// [`PoolError::DiskFull`](crate::PoolError::DiskFull) when room in memory
    /// could not be made, with `DiskFull` itself for a value written straight
    /// to disk — and everything already stored stays readable.
    pub max_disksize: Option<u64>,
    /// Directory under which the pool makes its session directory
    /// `<session>-<pid>`. Default: `.mempool` in the working directory.
    pub spill_dir: PathBuf,
    /// Eviction policy. Default: [`Policy::Lru`].
    pub policy: Policy,
    /// Verify the checksum of every frame read back from disk (one pass over
    /// the data, at memory speed). Default: `true`.
    pub verify_checksums: bool,
    /// `fsync` files written by `save_to_disk` before renaming them into place
    /// (spill files need not survive a crash: the session directory is
    /// discarded). Default: `true`.
    pub sync_saves: bool,
    /// Write-behind (LRU only): once memory is three-quarters full, a
    /// background thread writes disk copies of the resident values that have
    /// none, oldest stored first. Evicting a value with a disk copy is just
    /// dropping it, so `set` and `get` rarely wait for a write. Costs: one
    /// thread per pool (started on first need), 16 bytes per stored value
    /// for its queue, and disk writes of values that are deleted before they
    /// would have left memory. Default: `true`.
    pub write_behind: bool,
    /// Shards of the index, each with its own lock. A `get` of a value in
    /// memory and a `set` that fits take only their shard's lock, so threads
    /// scale until two meet on one shard; what moves values between memory
    /// and disk (evictions, restores, deletes) takes a lock over the whole
    /// index and the locks of the shards it changes, `stats` every shard's.
    /// The eviction order is global (see [`Policy`] for exactly which). A
    /// power of two up to 1024; `0` (the default) picks 32 per core,
    /// from 32 to 64.
    pub shards: usize,
    /// Compress spilled frames (MemPool.jl's serialization filters): `None`
    /// (the default) writes frames as they are, so that they map back
    /// without a copy; `Some(codec)` writes them compressed where that
    /// makes them smaller (an incompressible frame is written as it is, and
    /// maps back as without compression), and a value read back from a
    /// compressed frame is decompressed into memory (never mapped).
    /// [`Stats::compression_saved_bytes`](crate::Stats::compression_saved_bytes)
    /// says what it saved. Default: `None`.
    pub compression: Option<mempool_serde::Codec>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_memsize: 1 << 30,
            max_disksize: None,
            spill_dir: PathBuf::from(".mempool"),
            policy: Policy::Lru,
            verify_checksums: true,
            sync_saves: true,
            write_behind: true,
            shards: 0,
            compression: None,
        }
    }
}

impl PoolConfig {
    /// Sets [`PoolConfig::max_memsize`], in bytes (default 1 GiB). Larger
    /// means fewer spills and restores; the pool's resident memory stays at
    /// or under it.
    pub fn max_memsize(mut self, bytes: u64) -> Self {
        self.max_memsize = bytes;
        self
    }

    /// Sets [`PoolConfig::max_disksize`], in bytes of spill files (default
    /// `None`, unbounded). When reached, sets that need a spill fail with a
    /// typed error instead of filling the disk.
    pub fn max_disksize(mut self, bytes: Option<u64>) -> Self {
        self.max_disksize = bytes;
        self
    }

    /// Sets [`PoolConfig::spill_dir`] (default `.mempool`, made absolute at
    /// [`Pool::new`](crate::Pool::new)). Put it on a fast local disk; it
    /// needs room for what does not fit in memory.
    pub fn spill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spill_dir = dir.into();
        self
    }

    /// Sets [`PoolConfig::policy`] (default LRU). O(1) per operation either
    /// way; write-behind works with LRU only.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets [`PoolConfig::verify_checksums`] (default `true`). Costs one pass
    /// over each value read back from disk (about 25 GB/s here); turning it
    /// off makes a mapped read O(structure) but lets disk corruption through.
    pub fn verify_checksums(mut self, verify: bool) -> Self {
        self.verify_checksums = verify;
        self
    }

    /// Sets [`PoolConfig::write_behind`] (default `true`). Costs a thread per
    /// pool once memory is three-quarters full, and writes of some values
    /// that are deleted before they would have been evicted.
    pub fn write_behind(mut self, on: bool) -> Self {
        self.write_behind = on;
        self
    }

    /// Sets [`PoolConfig::shards`].
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Sets [`PoolConfig::compression`] (default `None`). LZ4 costs about
    /// 1 ms a MB to write and a third of that to read back, and turns mapped
    /// reads into decompressed copies; it pays where disk space or disk
    /// bandwidth is short and values compress (strings, repetitive columns).
    pub fn compression(mut self, codec: Option<mempool_serde::Codec>) -> Self {
        self.compression = codec;
        self
    }

    /// Sets [`PoolConfig::sync_saves`] (default `true`). Costs an `fsync` of
    /// each saved file and its directory (milliseconds on a real disk).
    pub fn sync_saves(mut self, sync: bool) -> Self {
        self.sync_saves = sync;
        self
    }
}
