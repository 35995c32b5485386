//! The pool's index: one slot per value (its recency links, generation and
//! entry on one cache line), the recency list, and the byte counts.
//!
//! Everything here runs under the pool's lock and is O(1); nothing here does
//! I/O, encodes, or drops a value.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use crate::dref::DRef;
use crate::error::{PoolError, Result};
use crate::eviction::{Link, Links, Policy, Recency};
use crate::held::Stored;
use crate::storable::Storable;

/// A value's spill file.
#[derive(Debug, Clone)]
pub(crate) struct SpillFile {
    pub(crate) path: PathBuf,
    pub(crate) len: u64,
}

/// The type of a stored value, kept in its slot (a static vtable, no allocation).
pub(crate) trait TypeTag: Sync {
    fn type_id(&self) -> TypeId;
    fn type_name(&self) -> Cow<'static, str>;
}

struct Tag<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Storable> TypeTag for Tag<T> {
    fn type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }
    fn type_name(&self) -> Cow<'static, str> {
        T::type_name()
    }
}

/// The tag of `T`.
pub(crate) fn tag_of<T: Storable>() -> &'static dyn TypeTag {
    struct Get<T>(std::marker::PhantomData<T>);
    impl<T: Storable> Get<T> {
        const TAG: &'static Tag<T> = &Tag(std::marker::PhantomData);
    }
    Get::<T>::TAG
}

/// One stored value.
pub(crate) struct Entry {
    /// Bytes it counts while in memory.
    pub(crate) size: u64,
    /// The value in memory: resident (linked), or being written out (spilling).
    pub(crate) mem: Option<Arc<dyn Stored>>,
    pub(crate) tag: &'static dyn TypeTag,
    /// The spill file, once written.
    pub(crate) file: Option<Box<SpillFile>>,
}

impl Entry {
    /// Checks that the entry holds a `T`.
    pub(crate) fn check_type<T: Storable>(&self, dref: &DRef) -> Result<()> {
        if self.tag.type_id() == TypeId::of::<T>() {
            Ok(())
        } else {
            Err(PoolError::TypeMismatch {
                dref: *dref,
                expected: T::type_name().into_owned(),
                found: self.tag.type_name().into_owned(),
            })
        }
    }
}

const LINKED: u8 = 1;
const SPILLING: u8 = 2;
const FLUSHING: u8 = 4;
const RESTORING: u8 = 8;

/// One value's slot: the recency links and the entry share one cache line.
#[repr(C, align(64))]
pub(crate) struct Slot {
    prev: u32,
    next: u32,
    gen: u32,
    flags: u8,
    pub(crate) entry: Option<Entry>,
}

impl Slot {
    /// Whether a write of this value out of memory is in flight.
    pub(crate) fn spilling(&self) -> bool {
        self.flags & SPILLING != 0
    }

    /// Whether a disk copy of this resident value is being written
    /// (write-behind or `copy_to_disk`); it stays resident meanwhile.
    pub(crate) fn flushing(&self) -> bool {
        self.flags & FLUSHING != 0
    }

    pub(crate) fn set_flushing(&mut self, on: bool) {
        if on {
            self.flags |= FLUSHING;
        } else {
            self.flags &= !FLUSHING;
        }
    }

    /// Whether a caller is reading this value back from disk (others wait
    /// for it rather than read it too).
    pub(crate) fn restoring(&self) -> bool {
        self.flags & RESTORING != 0
    }

    pub(crate) fn set_restoring(&mut self, on: bool) {
        if on {
            self.flags |= RESTORING;
        } else {
            self.flags &= !RESTORING;
        }
    }

    /// Whether any write of this value is in flight.
    pub(crate) fn writing(&self) -> bool {
        self.flags & (SPILLING | FLUSHING) != 0
    }

    /// Whether the value is resident (in the recency list).
    pub(crate) fn linked(&self) -> bool {
        self.flags & LINKED != 0
    }

    /// The slot's generation (the high half of its value's id).
    pub(crate) fn gen(&self) -> u32 {
        self.gen
    }

    pub(crate) fn set_spilling(&mut self, on: bool) {
        if on {
            self.flags |= SPILLING;
        } else {
            self.flags &= !SPILLING;
        }
    }

    pub(crate) fn entry_mut(&mut self) -> &mut Entry {
        self.entry.as_mut().expect("a live slot has an entry")
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

/// Reads buffered before they are applied to the recency list.
const TOUCH_BATCH: usize = 128;

/// A value's id: its slot in the low 32 bits, the slot's generation in the high.
pub(crate) fn make_id(idx: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(idx)
}

/// The slot and generation of an id.
pub(crate) fn split_id(id: u64) -> (u32, u32) {
    (id as u32, (id >> 32) as u32)
}

/// The index and its accounting. Invariants, whenever the lock is free:
/// - `mem_bytes` is the sum of the sizes of the linked slots, `mem_values`
///   their number;
/// - `spilling_bytes` is the sum of the sizes of the slots being written out
///   (and of deleted values whose write is still in flight);
/// - `mem_bytes + spilling_bytes <= max_memsize`;
/// - `disk_bytes` counts every spill file, including writes in flight;
///   `disk_values` the entries with a file.
pub(crate) struct State {
    pub(crate) slots: Vec<Slot>,
    free: Vec<u32>,
    recency: Recency,
    /// Reads of resident values not yet applied to the recency list, oldest
    /// first (slot, generation). Applying them in order before anything that
    /// depends on the order (picking a victim, linking a value) gives exactly
    /// the list that eager moves would; a read meanwhile costs no write to
    /// its neighbours' slots.
    touched: Vec<(u32, u32)>,
    /// Values stored without a disk copy, in the order stored (slot,
    /// generation), for write-behind; stale entries (values since deleted,
    /// written, or out of memory) are skipped when popped.
    dirty: Option<VecDeque<(u32, u32)>>,
    pub(crate) mem_values: u64,
    pub(crate) mem_bytes: u64,
    pub(crate) spilling_bytes: u64,
    /// Bytes that callers waiting for writes in flight to settle will link
    /// then: room already claimed, which others must not count on.
    pub(crate) promised: u64,
    pub(crate) disk_values: u64,
    pub(crate) disk_bytes: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) spills: u64,
    pub(crate) spill_failures: u64,
    pub(crate) restores: u64,
}

impl State {
    /// An empty index; `write_behind` keeps the queue of values to copy.
    pub(crate) fn new(policy: Policy, write_behind: bool) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            recency: Recency::new(policy),
            touched: Vec::with_capacity(TOUCH_BATCH),
            dirty: write_behind.then(VecDeque::new),
            mem_values: 0,
            mem_bytes: 0,
            spilling_bytes: 0,
            promised: 0,
            disk_values: 0,
            disk_bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            spills: 0,
            spill_failures: 0,
            restores: 0,
        }
    }

    /// The slot of a live value of pool `owner`.
    pub(crate) fn find(&self, owner: u64, r: &DRef) -> Result<u32> {
        let (idx, gen) = split_id(r.id);
        match self.slots.get(idx as usize) {
            Some(s) if r.owner == owner && s.gen == gen && s.entry.is_some() => Ok(idx),
            _ => Err(PoolError::NotFound { dref: *r }),
        }
    }

    /// The slot at `idx` if it still holds generation `gen`.
    pub(crate) fn live(&mut self, idx: u32, gen: u32) -> Option<&mut Slot> {
        match self.slots.get_mut(idx as usize) {
            Some(s) if s.gen == gen && s.entry.is_some() => Some(s),
            _ => None,
        }
    }

    /// Stores `entry` in a free slot; returns its index and generation.
    ///
    /// # Panics
    /// With 2^32 - 1 values in one pool.
    pub(crate) fn insert(&mut self, entry: Entry) -> (u32, u32) {
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.entry = Some(entry);
            slot.flags = 0;
            (idx, slot.gen)
        } else {
            let idx = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i != u32::MAX)
                .expect("more than 2^32 - 1 values in one pool");
            self.slots.push(Slot {
                prev: u32::MAX,
                next: u32::MAX,
                gen: 1,
                flags: 0,
                entry: Some(entry),
            });
            (idx, 1)
        }
    }

    /// Empties slot `idx`, which must be out of the recency list. A slot whose
    /// generation would wrap is retired, so that an old id never names a new
    /// value.
    pub(crate) fn remove(&mut self, idx: u32) -> Option<Entry> {
        let slot = &mut self.slots[idx as usize];
        debug_assert!(!slot.linked());
        let e = slot.entry.take()?;
        slot.flags = 0;
        if slot.gen == u32::MAX {
            return Some(e);
        }
        slot.gen += 1;
        self.free.push(idx);
        Some(e)
    }

    /// Applies the buffered reads to the recency list, in order; reads of
    /// values that left memory (or whose slot now holds another value) are
    /// dropped.
    pub(crate) fn apply_touches(&mut self) {
        let State {
            slots,
            recency,
            touched,
            ..
        } = self;
        for (idx, gen) in touched.drain(..) {
            let s = &slots[idx as usize];
            if s.gen == gen && s.linked() {
                recency.touch(slots, idx);
            }
        }
    }

    /// Queues a value without a disk copy for write-behind. When the queue
    /// has grown to twice the resident values (entries of values since
    /// deleted or written pile up while memory is below the mark), it is
    /// compacted: amortized O(1), and its length stays O(resident values).
    pub(crate) fn push_dirty(&mut self, idx: u32) {
        let gen = self.slots[idx as usize].gen;
        let Some(q) = &mut self.dirty else {
            return;
        };
        q.push_back((idx, gen));
        if q.len() as u64 > 2 * self.mem_values + 64 {
            let slots = &self.slots;
            q.retain(|&(i, g)| Self::is_dirty(slots, i, g));
        }
    }

    fn is_dirty(slots: &[Slot], idx: u32, gen: u32) -> bool {
        let s = &slots[idx as usize];
        s.gen == gen
            && s.linked()
            && !s.flushing()
            && s.entry.as_ref().is_some_and(|e| e.file.is_none())
    }

    /// The oldest queued value that is still resident, without a disk copy,
    /// and not being written.
    pub(crate) fn pop_dirty(&mut self) -> Option<u32> {
        let q = self.dirty.as_mut()?;
        while let Some((idx, gen)) = q.pop_front() {
            if Self::is_dirty(&self.slots, idx, gen) {
                return Some(idx);
            }
        }
        None
    }

    /// The next value to leave memory, per the policy.
    pub(crate) fn victim(&mut self) -> Option<u32> {
        self.apply_touches();
        self.recency.victim()
    }

    /// The eviction policy.
    pub(crate) fn policy(&self) -> Policy {
        self.recency.policy()
    }

    /// Takes a resident value out of the recency list and the memory count;
    /// false if it was not resident. (Buffered reads of it are dropped when
    /// applied.)
    pub(crate) fn unlink_resident(&mut self, idx: u32) -> bool {
        if self.recency.remove(&mut self.slots, idx) {
            let size = self.slots[idx as usize].entry_mut().size;
            self.mem_bytes -= size;
            self.mem_values -= 1;
            true
        } else {
            false
        }
    }

    /// Makes a value resident and most recent.
    pub(crate) fn link_resident(&mut self, idx: u32) {
        self.apply_touches();
        let size = self.slots[idx as usize].entry_mut().size;
        self.recency.insert(&mut self.slots, idx);
        self.mem_bytes += size;
        self.mem_values += 1;
    }

    /// Makes a value resident again after a failed write, first in line to
    /// leave.
    pub(crate) fn relink_as_victim(&mut self, idx: u32) {
        self.apply_touches();
        let size = self.slots[idx as usize].entry_mut().size;
        let State { slots, recency, .. } = self;
        recency.reinsert_as_victim(slots, idx);
        self.mem_bytes += size;
        self.mem_values += 1;
    }

    /// Records a read of a resident value (applied to the recency list in
    /// batches, in order).
    pub(crate) fn touch(&mut self, idx: u32) {
        let gen = self.slots[idx as usize].gen;
        self.touched.push((idx, gen));
        if self.touched.len() == TOUCH_BATCH {
            self.apply_touches();
        }
    }

    /// Bytes in memory that count against the bound.
    pub(crate) fn used(&self) -> u64 {
        self.mem_bytes + self.spilling_bytes
    }

    /// Drops the disk copies of resident values (they are in memory; the
    /// copies only save a write at eviction), queueing the values for
    /// write-behind again. For when the disk bound is reached. Returns the
    /// files to remove (after unlocking). O(n).
    pub(crate) fn drop_resident_copies(&mut self) -> Vec<SpillFile> {
        let mut files = Vec::new();
        for idx in 0..self.slots.len() as u32 {
            let s = &mut self.slots[idx as usize];
            if !s.linked() || s.flushing() {
                continue;
            }
            if let Some(f) = s.entry.as_mut().and_then(|e| e.file.take()) {
                self.disk_bytes -= f.len;
                self.disk_values -= 1;
                files.push(*f);
                self.push_dirty(idx);
            }
        }
        files
    }

    /// Sets a slot's generation (to test wrapping).
    #[cfg(test)]
    pub(crate) fn set_gen(&mut self, idx: u32, gen: u32) {
        self.slots[idx as usize].gen = gen;
    }

    /// Checks every invariant in O(n) (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self, max_memsize: u64) {
        let (mut mem_values, mut mem_bytes, mut disk_values, mut spilling) = (0, 0, 0, 0);
        for s in &self.slots {
            let Some(e) = &s.entry else {
                assert!(!s.linked() && !s.spilling(), "an empty slot is unlinked");
                continue;
            };
            assert!(
                !(s.linked() && s.spilling()),
                "a value is resident or spilling, not both"
            );
            assert!(
                !s.flushing() || s.linked(),
                "only a resident value is flushed"
            );
            assert!(
                !s.restoring() || (!s.linked() && e.mem.is_none()),
                "only a value on disk only is restored"
            );
            if s.linked() || s.spilling() {
                assert!(e.mem.is_some(), "a resident or spilling value is in memory");
            } else {
                assert!(
                    e.mem.is_none() && e.file.is_some(),
                    "a value neither resident nor spilling is on disk only"
                );
            }
            if s.linked() {
                mem_values += 1;
                mem_bytes += e.size;
            }
            if s.spilling() {
                spilling += e.size;
            }
            if e.file.is_some() {
                disk_values += 1;
            }
        }
        assert!(spilling <= self.spilling_bytes, "spilling_bytes");
        assert_eq!(mem_values, self.mem_values, "mem_values");
        assert_eq!(mem_bytes, self.mem_bytes, "mem_bytes");
        assert_eq!(disk_values, self.disk_values, "disk_values");
        assert!(
            self.used() <= max_memsize,
            "{} bytes in memory over the bound {max_memsize}",
            self.used()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64) -> Entry {
        Entry {
            size,
            mem: None,
            tag: tag_of::<Vec<u8>>(),
            file: None,
        }
    }

    /// Buffered reads, applied at batch boundaries and before links and
    /// victim picks, give exactly the order of eager moves.
    #[test]
    fn buffered_touches_match_eager_lru() {
        let mut st = State::new(Policy::Lru, true);
        let mut model: Vec<u32> = Vec::new(); // most recent first
        let mut x = 42u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        for step in 0..5_000 {
            match next() % 10 {
                0 | 1 => {
                    let (idx, _) = st.insert(entry(1));
                    st.link_resident(idx);
                    st.push_dirty(idx);
                    model.insert(0, idx);
                }
                2 if !model.is_empty() => {
                    let v = st.victim().expect("resident values");
                    assert_eq!(Some(&v), model.last(), "step {step}: victim");
                    model.pop();
                    assert!(st.unlink_resident(v));
                    st.remove(v);
                }
                3 if !model.is_empty() => {
                    // delete a random resident value
                    let i = (next() as usize) % model.len();
                    let idx = model.remove(i);
                    assert!(st.unlink_resident(idx));
                    st.remove(idx);
                }
                _ if !model.is_empty() => {
                    let i = (next() as usize) % model.len();
                    let idx = model.remove(i);
                    model.insert(0, idx);
                    st.touch(idx);
                }
                _ => {}
            }
        }
        st.apply_touches();
        assert_eq!(st.recency.order(&st.slots), model);
        // The write-behind queue stayed O(resident values) through the churn.
        let q = st.dirty.as_ref().expect("write-behind on").len() as u64;
        assert!(
            q <= 2 * st.mem_values + 64,
            "{q} queued for {} resident",
            st.mem_values
        );
    }
}
