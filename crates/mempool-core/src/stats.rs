//! [`Stats`]: what a pool holds and has done.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A snapshot of a pool's accounting and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Values resident in memory (counted against `max_memsize`).
    pub mem_values: u64,
    /// Bytes of resident values.
    pub mem_bytes: u64,
    /// The part of `mem_bytes` that is mapped from spill files (values read
    /// back from disk); the rest is heap.
    pub mem_mapped_bytes: u64,
    /// Bytes of values being written out of memory (still in memory and
    /// readable, not in `mem_bytes`). `mem_bytes + spilling_bytes` never
    /// exceeds `max_memsize`.
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
    /// Spill files made (by evictions, `move_to_disk`, `copy_to_disk`, and
    /// values too large for memory). A write that lost a race to another
    /// write of the same value is not counted (its bytes are, in
    /// `bytes_written`).
    pub spills: u64,
    /// Spills that failed (the value stayed in memory).
    pub spill_failures: u64,
    /// Values read back from disk into memory.
    pub restores: u64,
    /// Bytes written to spill files (every write, including ones discarded
    /// because another write of the same value won).
    pub bytes_written: u64,
    /// Bytes of spill files read back.
    pub bytes_read: u64,
    /// Segment files in the session directory (spilled values share them).
    pub segment_files: u64,
    /// Bytes of spilled frames alive in segments: those of values on disk,
    /// writes in flight, and ranges of deleted values still read by someone
    /// (a `Ref` mapping them).
    pub segment_live_bytes: u64,
    /// Bytes of freed frames still taking space in segments (block edges
    /// that could not be given back, until their segment empties): the
    /// fragmentation.
    pub segment_dead_bytes: u64,
    /// Bytes that compression kept off the disk (frame bytes minus
    /// compressed bytes, over every spill write), with
    /// [`PoolConfig::compression`](crate::PoolConfig::compression).
    pub compression_saved_bytes: u64,
}

/// One handle to a pool's [`Counters`], held by each of its values in
/// memory: a pool has one per shard and a thread takes its own, so that
/// threads storing values do not all count references on one cache line.
#[repr(align(64))]
pub(crate) struct CounterHandle(pub(crate) Arc<Counters>);

/// The handles of one pool's counters (see [`CounterHandle`]).
pub(crate) fn handles(counters: &Arc<Counters>, n: usize) -> Box<[Arc<CounterHandle>]> {
    (0..n)
        .map(|_| Arc::new(CounterHandle(Arc::clone(counters))))
        .collect()
}

/// Counters updated without the pool lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes_written: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) detached_bytes: AtomicU64,
    pub(crate) compression_saved: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
