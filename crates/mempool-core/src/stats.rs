//! [`Stats`]: what a pool holds and has done.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pool's accounting and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Values resident in memory (counted against `max_memsize`).
    pub mem_values: u64,
    /// Bytes of resident values; at most `max_memsize` whenever no call is in
    /// the middle of making room.
    pub mem_bytes: u64,
    /// Bytes of values being written out by spills in progress (still readable
    /// from memory, no longer counted in `mem_bytes`).
    pub spilling_bytes: u64,
    /// Bytes of values that left the pool's memory (evicted or deleted) but that
    /// callers still hold through a [`Ref`](crate::Ref); freed when the last
    /// `Ref` drops.
    pub detached_bytes: u64,
    /// Values with a spill file (on disk only, or on disk and in memory).
    pub disk_values: u64,
    /// Bytes of spill files (including writes in progress).
    pub disk_bytes: u64,
    /// `get`s answered from memory.
    pub hits: u64,
    /// `get`s that read the value from disk.
    pub misses: u64,
    /// Values that left memory to make room (written, or dropped because a
    /// disk copy already existed).
    pub evictions: u64,
    /// Spill files written (evictions and `move_to_disk`/`copy_to_disk`).
    pub spills: u64,
    /// Spills that failed (the value stayed in memory).
    pub spill_failures: u64,
    /// Values read back from disk into memory.
    pub restores: u64,
    /// Bytes written to spill files.
    pub bytes_written: u64,
    /// Bytes of spill files read back.
    pub bytes_read: u64,
}

/// Counters updated without the pool lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spills: AtomicU64,
    pub(crate) spill_failures: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) detached_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
