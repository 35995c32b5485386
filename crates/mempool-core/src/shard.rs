//! One shard of the pool's index: its slots (recency links, generation,
//! stamp and entry on one cache line), its recency list, its buffered reads,
//! its write-behind queue, and the counts that reads and stores of resident
//! values change.
//!
//! # Sharding
//! A value's slot lives in one shard, named by the low bits of the slot
//! index in its id. Each shard has its own lock. Two operations take only
//! their shard's lock (the fast paths, in pool.rs): a `get` of a value in
//! memory, and a `set` that fits in the shard's *credit* — room under
//! `max_memsize` handed to the shard in advance (see index.rs, which keeps
//! the global counts, and room.rs). Everything else takes the index lock,
//! and under it the shard locks it needs ([`crate::index::State`]): a
//! value's shard; the shard of the next LRU victim or of the next value to
//! copy, found through what the shards show ([`Shown`]) without taking the
//! others' locks; every shard for sums (`stats`), for taking credit back,
//! and for an MRU victim.
//!
//! # The order kept
//! Each shard keeps its resident values in an exact recency list: the order
//! in which its links and reads took its lock. Every link and every read
//! takes a *stamp* under the shard lock: nanoseconds of the coarse
//! monotonic clock, raised to be above the shard's last stamp and the
//! calling thread's last stamp. So within a shard the list is sorted by
//! stamp, and on one thread stamps follow program order whatever the
//! shards. The victim is the resident value with the least stamp (LRU; for
//! MRU the greatest), of all shards. So values leave in the order of one
//! recency list for the operations of one thread, and for those of one
//! shard; operations of different threads on different shards leave in the
//! clock's order, and those within one clock tick of each other (4 ms on
//! Linux, where the coarse clock moves by ticks) may be either way round: a
//! stamp runs ahead of the clock by at most 1 ns per stamp its shard or
//! thread took in that tick.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
use std::sync::OnceLock;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
use std::time::Instant;

use parking_lot::Mutex;

use crate::eviction::{Link, Links, Policy, Recency};
use crate::held::Stored;
use crate::index::{Entry, Place, Tag};

/// Recency-list membership (the list's own bit; a value is in the list
/// exactly when its place is `Resident` or `Flushing`).
const LINKED: u8 = 1;

/// One value's slot: the recency links, the stamp and the entry share one
/// cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) gen: u32,
    flags: u8,
    /// When the value was last linked or read (see the module docs).
    pub(crate) stamp: u64,
    pub(crate) entry: Option<Entry>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

impl Slot {
    /// Whether the value is resident (in the recency list).
    pub(crate) fn linked(&self) -> bool {
        self.flags & LINKED != 0
    }

    /// The slot's generation (the high half of its value's id).
    pub(crate) fn gen(&self) -> u32 {
        self.gen
    }

    pub(crate) fn entry(&self) -> &Entry {
        self.entry.as_ref().expect("a live slot has an entry")
    }
}

impl Links for Vec<Slot> {
    fn link(&self, idx: u32) -> Link {
        let s = &self[idx as usize];
        Link {
            prev: s.prev,
            next: s.next,
            linked: s.flags & LINKED != 0,
        }
    }
    fn set_link(&mut self, idx: u32, link: Link) {
        let s = &mut self[idx as usize];
        s.prev = link.prev;
        s.next = link.next;
        if link.linked {
            s.flags |= LINKED;
        } else {
            s.flags &= !LINKED;
        }
    }
    fn set_prev(&mut self, idx: u32, prev: u32) {
        self[idx as usize].prev = prev;
    }
    fn set_next(&mut self, idx: u32, next: u32) {
        self[idx as usize].next = next;
    }
}

/// Reads buffered in a shard before they are applied to its recency list.
/// Each shard buffers its own: with 128 (the unsharded index's batch) four
/// shards applied a read some 512 gets after it, when its slot had left L1;
/// 32 keeps the window of one unsharded batch.
const TOUCH_BATCH: usize = 32;

/// Stamps of links and reads start here; below are the stamps of values put
/// back first in line to leave after a failed write (LRU), counting down.
pub(crate) const STAMP_BASE: u64 = 1 << 62;

thread_local! {
    /// The last stamp this thread took (any pool, any shard).
    static LAST_STAMP: Cell<u64> = const { Cell::new(0) };
    /// This thread's number among those that used a pool.
    static HOME: usize = first_shard();
    /// Values this thread stored, counted from where its turn starts: its
    /// next new value goes to shard `NEXT_SHARD / STORE_RUN` (of `n`).
    static NEXT_SHARD: Cell<usize> = Cell::new(HOME.with(|h| *h) * STORE_RUN);
}

/// New values a thread stores in one shard before it moves to the next.
/// One value per shard in turn made two threads storing at once move each
/// shard's lines (its lock, its recency list's newest slot, the tail of its
/// write-behind queue) between their cores on every set, since each stored
/// into the shard the other had just used; runs keep each on its own shard
/// but once every `STORE_RUN` sets, and still spread values over all.
const STORE_RUN: usize = 64;

/// This thread's own one of `n` (a power of two) per-pool things, threads
/// spread over them.
pub(crate) fn home(n: usize) -> usize {
    HOME.with(|h| *h) & (n - 1)
}

fn first_shard() -> usize {
    static THREADS: AtomicUsize = AtomicUsize::new(0);
    // Threads spread over the shards (an odd stride visits all of them).
    THREADS.fetch_add(1, Ordering::Relaxed).wrapping_mul(5)
}

/// Nanoseconds of the coarse monotonic clock (one read of the kernel's
/// last tick, no time-stamp counter: a precise clock read waits for every
/// load before it, which in a get is the cache misses of the value's slot
/// and reference count — it doubled a get's time). Through glibc, which
/// finds the kernel's vDSO itself: rustix's own lookup (its check of the
/// vDSO's ELF header) took a SIGSEGV under valgrind, on a pool's first
/// stored value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "clock_gettime: glibc's call, through its vDSO")]
fn clock_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    let ns = u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000
        + u64::try_from(t.tv_nsec).unwrap_or(0);
    ns.min(STAMP_BASE - 1)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn clock_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).map_or(STAMP_BASE - 1, |ns| ns.min(STAMP_BASE - 1))
}

/// The shard this thread stores its next new value in (of `n`, a power of
/// two): the same until [`stored`] — a set whose fast path found no credit
/// there links there under the index lock, which hands that shard credit.
pub(crate) fn next_shard(n: usize) -> usize {
    (NEXT_SHARD.with(Cell::get) / STORE_RUN) & (n - 1)
}

/// This thread stored a value (after `STORE_RUN` of them, its next one goes
/// to the next shard).
pub(crate) fn stored() {
    NEXT_SHARD.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Slots a shard has room for from the start.
const RESERVED_SLOTS: usize = 1 << 16;

/// An empty slot vector with room for [`RESERVED_SLOTS`]: 4 MiB of address
/// space, whose pages the system gives only as slots are used (a block that
/// large is mapped on its own). A vector of 64-byte aligned slots grows by
/// allocating, copying and freeing (`realloc` cannot keep the alignment):
/// fresh pages to fault in, and an unmap of the old block that stops the
/// other cores (a TLB shootdown). In W2's put on two threads, growing the
/// shards' slot vectors took 21% of the time; with the room reserved, W2's
/// put went from 5.1-5.2 to 6.1-6.6 M ops/s on two threads and from 4.2-4.3
/// to 4.6-4.7 on one. Where the system refuses the reservation (strict
/// overcommit), the vector starts empty and grows.
fn reserved_slots() -> Vec<Slot> {
    let mut v = Vec::new();
    let _ = v.try_reserve_exact(RESERVED_SLOTS);
    v
}

/// An empty write-behind queue with room for [`RESERVED_SLOTS`] entries (1
/// MiB of address space, paged in as used), for the reasons of
/// [`reserved_slots`]: W2's put on two threads went from 6.0-6.9 to
/// 6.5-7.3 M ops/s with it.
fn reserved_queue() -> VecDeque<(u32, u32, u64)> {
    let mut q = VecDeque::new();
    let _ = q.try_reserve_exact(RESERVED_SLOTS);
    q
}

/// One shard (see the module docs). `repr(C)` with what every get reads
/// and writes first, so that with its lock (see [`ShardLock`]) it fills one
/// cache line: when threads read at random, each get moves its shard's
/// lines from the core that used them last.
#[repr(C)]
pub(crate) struct Shard {
    pub(crate) slots: Vec<Slot>,
    /// Reads of resident values not yet applied to the recency list, oldest
    /// first (slot, generation, stamp): the first `n_touched`. Applying them
    /// in order before anything that depends on the order (picking a
    /// victim, linking a value) gives exactly the list that eager moves
    /// would; a read meanwhile costs no write to its neighbours' slots.
    touched: Box<[(u32, u32, u64); TOUCH_BATCH]>,
    n_touched: usize,
    /// The greatest stamp taken in this shard.
    last_stamp: u64,
    /// `get`s answered here without the index lock.
    pub(crate) hits: u64,
    free: Vec<u32>,
    pub(crate) recency: Recency,
    /// Values stored without a disk copy, in the order stored (slot,
    /// generation, stamp), for write-behind; stale entries (values since
    /// deleted, written, or out of memory) are skipped when popped.
    dirty: Option<VecDeque<(u32, u32, u64)>>,
    /// Resident values here, their bytes, and the part of those that maps
    /// spilled ranges.
    pub(crate) mem_values: u64,
    pub(crate) mem_bytes: u64,
    pub(crate) mem_mapped_bytes: u64,
    /// Room under `max_memsize` this shard may link new values into without
    /// the index lock; counted in the index's `mem_bytes` (see index.rs).
    pub(crate) credit: u64,
    /// Where this shard shows its heads to the index lock (see [`Shown`]),
    /// and its place there.
    shown: Arc<Shown>,
    me: usize,
}

/// The stamps of every shard's next victim (the head of its recency list
/// for LRU) and of the head of its write-behind queue, `u64::MAX` for none:
/// stored under the shard's lock whenever a head changes, read by the index
/// lock without it, to find the shard holding the least one — and take that
/// shard's lock only, not every shard's (index.rs: `victim`, `pop_dirty`).
///
/// A shard's shown stamp is never above the stamp its head has once its
/// buffered reads are applied and stale queue entries dropped: buffered
/// reads only raise the head's stamp (a read value moves to the most recent
/// end, with a stamp above every other of its shard), as dropping stale
/// entries does; and the paths that run without the index lock (a read of
/// a value in memory, a link into credit) lower a head only by linking into
/// an empty shard — a value linked concurrently with the pick, as if after
/// it. So the shard whose least stamp, its reads applied under its lock,
/// is at most every other shard's shown stamp holds the least of all.
pub(crate) struct Shown {
    pub(crate) victim: Box<[AtomicU64]>,
    pub(crate) dirty: Box<[AtomicU64]>,
}

impl Shown {
    fn new(n: usize) -> Self {
        let none = || (0..n).map(|_| AtomicU64::new(u64::MAX)).collect();
        Self {
            victim: none(),
            dirty: none(),
        }
    }

    /// Shard `s`'s shown victim stamp.
    #[cfg(test)]
    pub(crate) fn victim(&self, s: usize) -> u64 {
        self.victim[s].load(Ordering::Relaxed)
    }

    /// Shard `s`'s shown write-behind head stamp.
    #[cfg(test)]
    pub(crate) fn dirty(&self, s: usize) -> u64 {
        self.dirty[s].load(Ordering::Relaxed)
    }
}

impl Shard {
    fn new(policy: Policy, write_behind: bool, shown: Arc<Shown>, me: usize) -> Self {
        Self {
            slots: reserved_slots(),
            free: Vec::new(),
            recency: Recency::new(policy),
            touched: Box::new([(0, 0, 0); TOUCH_BATCH]),
            n_touched: 0,
            dirty: write_behind.then(reserved_queue),
            last_stamp: 0,
            mem_values: 0,
            mem_bytes: 0,
            mem_mapped_bytes: 0,
            hits: 0,
            credit: 0,
            shown,
            me,
        }
    }

    /// Shows this shard's next victim's stamp (see [`Shown`]).
    fn show_victim(&self) {
        let stamp = self
            .recency
            .victim()
            .map_or(u64::MAX, |l| self.slots[l as usize].stamp);
        self.shown.victim[self.me].store(stamp, Ordering::Relaxed);
    }

    /// Shows the stamp of this shard's write-behind queue's head (stale or
    /// not: a stale entry's stamp is below the live head's).
    fn show_dirty(&self) {
        let stamp = self
            .dirty
            .as_ref()
            .and_then(VecDeque::front)
            .map_or(u64::MAX, |e| e.2);
        self.shown.dirty[self.me].store(stamp, Ordering::Relaxed);
    }

    /// A new stamp: now, above every stamp of this shard and of this thread.
    pub(crate) fn stamp(&mut self) -> u64 {
        let s = LAST_STAMP.with(|last| {
            let s = (STAMP_BASE + clock_ns())
                .max(self.last_stamp + 1)
                .max(last.get() + 1);
            last.set(s);
            s
        });
        self.last_stamp = s;
        s
    }

    /// A new stamp above `floor` too (see [`crate::index::State`]'s
    /// `relink_as_victim`).
    pub(crate) fn stamp_above(&mut self, floor: u64) -> u64 {
        let s = self.stamp().max(floor + 1);
        self.last_stamp = s;
        LAST_STAMP.with(|last| last.set(last.get().max(s)));
        s
    }

    /// The greatest stamp taken here.
    pub(crate) fn last_stamp(&self) -> u64 {
        self.last_stamp
    }

    /// The live slot `local` holding generation `gen`.
    pub(crate) fn live(&self, local: u32, gen: u32) -> Option<&Slot> {
        self.slots
            .get(local as usize)
            .filter(|s| s.gen == gen && s.entry.is_some())
    }

    /// Whether [`Shard::insert`] would find a slot.
    pub(crate) fn has_room(&self, limit: u32) -> bool {
        !self.free.is_empty() || self.slots.len() < limit as usize
    }

    /// Puts an entry in a free slot (or a new one below `limit`); returns the
    /// slot and its generation, or `None` when the shard is full.
    pub(crate) fn insert(&mut self, entry: Entry, limit: u32) -> Option<(u32, u32)> {
        if let Some(local) = self.free.pop() {
            let slot = &mut self.slots[local as usize];
            slot.entry = Some(entry);
            slot.flags = 0;
            return Some((local, slot.gen));
        }
        let local = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i < limit)?;
        self.slots.push(Slot {
            prev: u32::MAX,
            next: u32::MAX,
            gen: 1,
            flags: 0,
            stamp: 0,
            entry: Some(entry),
        });
        Some((local, 1))
    }

    /// Empties slot `local` (already out of the recency list); a slot whose
    /// generation would wrap is retired, so that an old id never names a new
    /// value.
    pub(crate) fn vacate(&mut self, local: u32) -> Entry {
        let slot = &mut self.slots[local as usize];
        let e = slot.entry.take().expect("a live slot has an entry");
        slot.flags = 0;
        if slot.gen != u32::MAX {
            slot.gen += 1;
            self.free.push(local);
        }
        e
    }

    /// The size of the value in slot `local` and whether its bytes map a
    /// spilled range.
    fn sizes(&self, local: u32) -> (u64, u64) {
        let e = self.slots[local as usize].entry();
        let size = e.mem_size();
        let mapped = e.value().filter(|v| v.is_mapped()).map_or(0, |_| size);
        (size, mapped)
    }

    /// Makes slot `local` resident and most recent; returns its size.
    pub(crate) fn link(&mut self, local: u32) -> u64 {
        self.apply_touches();
        let stamp = self.stamp();
        self.slots[local as usize].stamp = stamp;
        self.recency.insert(&mut self.slots, local);
        // A link is most recent: the LRU victim changes only in an empty
        // shard.
        if self.mem_values == 0 || self.recency.policy() == Policy::Mru {
            self.show_victim();
        }
        self.count_in(local)
    }

    /// Makes slot `local` resident again after a failed write, first in
    /// line to leave, with `stamp` (see index.rs); returns its size.
    pub(crate) fn relink_as_victim(&mut self, local: u32, stamp: u64) -> u64 {
        self.apply_touches();
        self.slots[local as usize].stamp = stamp;
        let Shard { slots, recency, .. } = self;
        recency.reinsert_as_victim(slots, local);
        self.show_victim();
        self.count_in(local)
    }

    fn count_in(&mut self, local: u32) -> u64 {
        let (size, mapped) = self.sizes(local);
        self.mem_bytes += size;
        self.mem_mapped_bytes += mapped;
        self.mem_values += 1;
        size
    }

    /// Takes slot `local` out of the recency list and the counts; its size,
    /// or `None` if it was not resident. (Buffered reads of it are dropped
    /// when applied.)
    pub(crate) fn unlink(&mut self, local: u32) -> Option<u64> {
        if !self.recency.remove(&mut self.slots, local) {
            return None;
        }
        self.show_victim();
        let (size, mapped) = self.sizes(local);
        self.mem_bytes -= size;
        self.mem_mapped_bytes -= mapped;
        self.mem_values -= 1;
        Some(size)
    }

    /// Links a new value (of `value.size()` bytes) if this shard's credit
    /// covers it: the fast path of a `set` (pool.rs). Returns its slot and
    /// generation.
    pub(crate) fn link_in_credit(
        &mut self,
        value: &Arc<dyn Stored>,
        tag: &'static Tag,
        limit: u32,
    ) -> Option<(u32, u32)> {
        let size = value.size();
        if self.credit < size || !self.has_room(limit) {
            return None;
        }
        let entry = Entry {
            place: Place::Resident {
                value: Arc::clone(value),
                copy: None,
            },
            tag,
        };
        let (local, gen) = self.insert(entry, limit)?;
        self.credit -= size;
        self.link(local);
        self.push_dirty_linked(local);
        Some((local, gen))
    }

    /// Records a read of resident slot `local` (applied to the recency list
    /// in batches, in order).
    pub(crate) fn touch(&mut self, local: u32) {
        let gen = self.slots[local as usize].gen;
        let stamp = self.stamp();
        self.touched[self.n_touched] = (local, gen, stamp);
        self.n_touched += 1;
        if self.n_touched == TOUCH_BATCH {
            self.apply_touches();
        }
    }

    /// Applies the buffered reads to the recency list, in order; reads of
    /// values that left memory (or whose slot now holds another value) are
    /// dropped.
    pub(crate) fn apply_touches(&mut self) {
        if self.n_touched == 0 {
            return;
        }
        let Shard {
            slots,
            recency,
            touched,
            n_touched,
            ..
        } = self;
        let touched = &touched[..std::mem::take(n_touched)];
        // First load the read slots, then their neighbours in the list, each
        // pass's loads independent of each other: the moves below then find
        // their lines in cache, and the misses overlap instead of coming one
        // move at a time under the lock. With two threads reading at random,
        // half those lines are on the other core; applying a batch without
        // this held the lock long enough that the other thread parked on it
        // (3,100-5,100 futex calls in W2 against 1,300-1,700 with it) and
        // W2's get on 2 cores went from 2.9-3.3 to 3.4-3.7 M ops/s.
        let mut sum = 0u32;
        for &(local, _, _) in touched {
            let s = &slots[local as usize];
            sum ^= s.prev ^ s.next;
        }
        for &(local, _, _) in touched {
            let s = &slots[local as usize];
            for n in [s.prev, s.next] {
                if let Some(n) = slots.get(n as usize) {
                    sum ^= n.gen;
                }
            }
        }
        std::hint::black_box(sum);
        for &(local, gen, stamp) in touched {
            let s = &mut slots[local as usize];
            if s.gen == gen && s.linked() {
                s.stamp = stamp;
                recency.touch(slots, local);
            }
        }
        self.show_victim();
    }

    /// This shard's next victim per the policy and its stamp.
    pub(crate) fn candidate(&mut self) -> Option<(u32, u64)> {
        self.apply_touches();
        let Some(local) = self.recency.victim() else {
            self.show_victim();
            return None;
        };
        Some((local, self.slots[local as usize].stamp))
    }

    /// Queues slot `local` (without a disk copy) for write-behind. When the
    /// queue has grown to twice the shard's resident values (entries of
    /// values since deleted or written pile up while memory is below the
    /// mark), it is compacted: amortized O(1), and its length stays
    /// O(resident values).
    pub(crate) fn push_dirty(&mut self, local: u32) {
        if self.dirty.is_some() {
            let stamp = self.stamp();
            self.push_dirty_at(local, stamp);
        }
    }

    /// [`Shard::push_dirty`] of a value linked just now, with the stamp of
    /// its link (no later stamp was taken here).
    pub(crate) fn push_dirty_linked(&mut self, local: u32) {
        let stamp = self.slots[local as usize].stamp;
        debug_assert_eq!(stamp, self.last_stamp);
        self.push_dirty_at(local, stamp);
    }

    fn push_dirty_at(&mut self, local: u32, stamp: u64) {
        let gen = self.slots[local as usize].gen;
        let Some(q) = &mut self.dirty else {
            return;
        };
        q.push_back((local, gen, stamp));
        if q.len() == 1 {
            self.show_dirty();
        } else if q.len() as u64 > 2 * self.mem_values + 64 {
            let slots = &self.slots;
            q.retain(|&(i, g, _)| is_dirty(slots, i, g));
            self.show_dirty();
        }
    }

    /// The oldest queued value still resident without a disk copy (stale
    /// entries before it are dropped): its slot and stamp.
    pub(crate) fn dirty_head(&mut self) -> Option<(u32, u64)> {
        let q = self.dirty.as_mut()?;
        let mut head = None;
        let mut dropped = false;
        while let Some(&(local, gen, stamp)) = q.front() {
            if is_dirty(&self.slots, local, gen) {
                head = Some((local, stamp));
                break;
            }
            q.pop_front();
            dropped = true;
        }
        if dropped || head.is_none() {
            self.show_dirty();
        }
        head
    }

    /// Takes the head of the write-behind queue (after [`Shard::dirty_head`]).
    pub(crate) fn pop_dirty_head(&mut self) {
        if let Some(q) = &mut self.dirty {
            q.pop_front();
        }
        self.show_dirty();
    }

    /// Whether values are queued for write-behind (some may be stale).
    pub(crate) fn has_dirty(&self) -> bool {
        self.dirty.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Entries in the write-behind queue (stale ones included).
    pub(crate) fn dirty_len(&self) -> usize {
        self.dirty.as_ref().map_or(0, VecDeque::len)
    }
}

fn is_dirty(slots: &[Slot], local: u32, gen: u32) -> bool {
    let s = &slots[local as usize];
    s.gen == gen
        && s.entry
            .as_ref()
            .is_some_and(|e| matches!(e.place, Place::Resident { copy: None, .. }))
}

/// A shard and its lock, the lock's byte on the line of the fields every
/// get writes (a `Mutex`'s data follows its lock); aligned so that two
/// shards never share a line (nor the pair of lines adjacent-line
/// prefetchers fetch together).
#[repr(align(128))]
pub(crate) struct ShardLock(Mutex<Shard>);

impl std::ops::Deref for ShardLock {
    type Target = Mutex<Shard>;
    fn deref(&self) -> &Mutex<Shard> {
        &self.0
    }
}

/// The shards of one pool: `1 << bits` of them.
pub(crate) struct Shards {
    pub(crate) list: Box<[ShardLock]>,
    pub(crate) shown: Arc<Shown>,
    pub(crate) bits: u32,
    /// Whether some shard may hold credit: a hint, so that a `set` in a
    /// full pool does not take a shard lock to find none.
    credit_out: AtomicBool,
}

impl Shards {
    pub(crate) fn new(n: usize, policy: Policy, write_behind: bool) -> Self {
        assert!(n.is_power_of_two() && n <= 1 << 10, "shards: {n}");
        let shown = Arc::new(Shown::new(n));
        Self {
            list: (0..n)
                .map(|s| {
                    ShardLock(Mutex::new(Shard::new(
                        policy,
                        write_behind,
                        Arc::clone(&shown),
                        s,
                    )))
                })
                .collect(),
            shown,
            bits: n.trailing_zeros(),
            credit_out: AtomicBool::new(false),
        }
    }

    /// Whether some shard may hold credit (stale either way at worst: a
    /// `set` then takes the index lock, or one shard lock for nothing).
    pub(crate) fn credit_out(&self) -> bool {
        self.credit_out.load(Ordering::Relaxed)
    }

    pub(crate) fn set_credit_out(&self, out: bool) {
        self.credit_out.store(out, Ordering::Relaxed);
    }

    /// How many shards a pool has on this machine: 32 per core, a power of
    /// two from 32 to 64. Fewer make threads meet on one lock more often: a
    /// get holds its shard's lock through its two cache misses (the slot,
    /// the value's reference count), and now and then through applying a
    /// batch of reads, so with two threads on 4 shards about one get in
    /// eight found the lock taken and spun or parked (parking_lot's
    /// lock_slow, futex wake-ups in a profile); on 2 cores W2's gets went
    /// from 1.6x one thread to 1.9x with 16, and from 3.3-3.6 to 3.7-3.8 M
    /// ops/s with 64 against 16 (one thread unchanged). More make dearer
    /// what looks at every shard (a victim pick reads one shown stamp per
    /// shard, eight to a cache line; `stats`, taking credit back and MRU
    /// picks take every shard's lock), and hand each shard a smaller
    /// credit: W5 (one thread, almost all spilled) was 2-5% slower with 64
    /// than with 16.
    pub(crate) fn default_count() -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 32).next_power_of_two().clamp(32, 64)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// The shard and slot in it of slot index `idx`.
    pub(crate) fn split(&self, idx: u32) -> (usize, u32) {
        ((idx & ((1 << self.bits) - 1)) as usize, idx >> self.bits)
    }

    /// The slot index of slot `local` of shard `s`.
    pub(crate) fn join(&self, s: usize, local: u32) -> u32 {
        (local << self.bits) | s as u32
    }

    /// Slots a shard may have: slot indices stay below `u32::MAX`.
    pub(crate) fn slot_limit(&self) -> u32 {
        u32::MAX >> self.bits
    }
}

// The lock's byte and what a get reads and writes in its shard (the slots'
// vector, the buffered reads and their count, the last stamp, the hits)
// share the first cache line of a `ShardLock`.
const _: () = assert!(std::mem::offset_of!(Shard, hits) + 8 + 8 <= 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gets_lock_and_fields_share_one_line() {
        let shards = Shards::new(4, Policy::Lru, true);
        for lock in &*shards.list {
            let base = std::ptr::from_ref(lock) as usize;
            assert_eq!(base % 128, 0, "a shard starts a line pair");
            let data = lock.data_ptr() as usize;
            assert!(data - base + std::mem::offset_of!(Shard, hits) + 8 <= 64);
        }
    }
}
