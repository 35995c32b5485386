//! The pool's index: the shards of slots (shard.rs) and the global byte
//! counts, under the index lock, which holds every shard's lock.
//!
//! Everything here runs under the index lock and is O(1) but for the O(shards)
//! picks across shards (the next victim, the next value to copy); nothing
//! here does I/O, encodes, or drops a value.

use std::any::TypeId;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::MutexGuard;

use crate::dref::DRef;
use crate::error::{PoolError, Result};
use crate::eviction::Policy;
use crate::held::Stored;
use crate::shard::{next_shard, stored, Shard, Shards, Slot, STAMP_BASE};
use crate::storable::Storable;

/// A value's spill file.
#[derive(Debug, Clone)]
pub(crate) struct SpillFile {
    /// The segment file holding it.
    pub(crate) path: PathBuf,
    /// Where the frame starts in the file.
    pub(crate) offset: u64,
    /// Bytes of the frame.
    pub(crate) len: u64,
    /// The frame's range in its segment: held, it keeps the bytes in place
    /// (`None` only in the index's own tests, which do no I/O).
    pub(crate) extent: Option<Arc<crate::segments::Extent>>,
    /// Bytes the value counted in memory when it was written.
    pub(crate) mem_size: u64,
    /// The frame's type name, for a value stored as a frame (whose type the
    /// pool may not know); `None` for a typed value (see the entry's tag).
    pub(crate) frame_name: Option<Arc<str>>,
    /// A [`FileRef`](crate::FileRef) to it was handed out (`move_to_disk`,
    /// `copy_to_disk`): it stays until the value is deleted, even when the
    /// disk bound makes the pool drop the copies of resident values.
    pub(crate) handed_out: bool,
}

/// The type of a stored value, kept in its slot (a static vtable, no allocation).
pub(crate) trait TypeTag: Sync {
    fn type_id(&self) -> TypeId;
    fn type_name(&self) -> Cow<'static, str>;
}

struct TagOf<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Storable> TypeTag for TagOf<T> {
    fn type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }
    fn type_name(&self) -> Cow<'static, str> {
        T::type_name()
    }
}

/// A type tag behind a thin pointer, so that an entry (and with it a slot,
/// stamp included) fits a cache line.
pub(crate) struct Tag(&'static dyn TypeTag);

impl std::ops::Deref for Tag {
    type Target = dyn TypeTag;
    fn deref(&self) -> &(dyn TypeTag + 'static) {
        self.0
    }
}

/// The tag of `T`.
pub(crate) fn tag_of<T: Storable>() -> &'static Tag {
    struct Get<T>(std::marker::PhantomData<T>);
    impl<T: Storable> Get<T> {
        const TAG: &'static Tag = &Tag(&TagOf::<T>(std::marker::PhantomData));
    }
    Get::<T>::TAG
}

/// The tag of every value stored as a frame: its type is the frame's name.
struct FrameTag;

impl TypeTag for FrameTag {
    fn type_id(&self) -> TypeId {
        TypeId::of::<FrameTag>()
    }
    fn type_name(&self) -> Cow<'static, str> {
        "<frame>".into()
    }
}

/// The tag of values stored as frames.
pub(crate) const FRAME_TAG: &Tag = &Tag(&FrameTag);

/// Where a stored value is: one state, its transitions in [`State`]'s
/// `move_*`/`start_*`/`finish_*` methods.
///
/// ```text
///             set, restore                start_spill          finish_spill(ok)
///   (new) ───────────────────> Resident ──────────────> Spilling ──────────> OnDisk
///                               │  ^  ^ finish_spill(failed) │                 │ ^
///               start_flush     │  │  └──────────────────────┘  start_restore │ │ abort_restore
///                               v  │ finish_flush                             v │
///                             Flushing                                     Restoring
///                                                   finish_restore ──> Resident (with its copy)
/// ```
/// A resident value with a disk copy leaves memory by dropping its value
/// (`Resident { copy: Some }` → `OnDisk`), no write.
pub(crate) enum Place {
    /// In memory and in the recency list, counted in `mem_bytes`; `copy` is
    /// a disk copy already written (after a restore, `copy_to_disk`, or
    /// write-behind), so that leaving memory is just dropping the value.
    Resident {
        value: Arc<dyn Stored>,
        copy: Option<Box<SpillFile>>,
    },
    /// Resident, without a disk copy, one being written (write-behind,
    /// `copy_to_disk`); it stays readable and counted in `mem_bytes`.
    Flushing { value: Arc<dyn Stored> },
    /// Being written out of memory: out of the recency list, counted in
    /// `spilling_bytes` until the write settles; still readable.
    Spilling { value: Arc<dyn Stored> },
    /// On disk only.
    OnDisk { file: Box<SpillFile> },
    /// On disk only, and one caller is reading it back (others wait for it).
    Restoring { file: Box<SpillFile> },
}

/// One stored value.
pub(crate) struct Entry {
    pub(crate) place: Place,
    pub(crate) tag: &'static Tag,
}

impl Entry {
    /// The value, if it is in memory (resident, flushing or spilling).
    pub(crate) fn value(&self) -> Option<&Arc<dyn Stored>> {
        match &self.place {
            Place::Resident { value, .. }
            | Place::Flushing { value }
            | Place::Spilling { value } => Some(value),
            Place::OnDisk { .. } | Place::Restoring { .. } => None,
        }
    }

    /// Its file on disk, if it has one.
    pub(crate) fn file(&self) -> Option<&SpillFile> {
        match &self.place {
            Place::Resident { copy, .. } => copy.as_deref(),
            Place::OnDisk { file } | Place::Restoring { file } => Some(file),
            Place::Flushing { .. } | Place::Spilling { .. } => None,
        }
    }

    /// Bytes the value counts in memory (when last resident, for a value on disk).
    pub(crate) fn mem_size(&self) -> u64 {
        match (self.value(), self.file()) {
            (Some(v), _) => v.size(),
            (None, Some(f)) => f.mem_size,
            (None, None) => unreachable!("an entry is in memory or on disk"),
        }
    }

    /// Whether a write of this value (out of memory, or a disk copy) is in flight.
    pub(crate) fn writing(&self) -> bool {
        matches!(self.place, Place::Spilling { .. } | Place::Flushing { .. })
    }

    /// The value's frame type name.
    pub(crate) fn type_name(&self) -> Cow<'static, str> {
        if self.tag.type_id() != FRAME_TAG.type_id() {
            return self.tag.type_name();
        }
        match (self.value(), self.file()) {
            (Some(v), _) => v.type_name(),
            (None, Some(f)) => f
                .frame_name
                .as_deref()
                .map_or_else(|| FRAME_TAG.type_name(), |n| n.to_owned().into()),
            (None, None) => unreachable!("an entry is in memory or on disk"),
        }
    }

    /// Whether this entry is a frame (stored as bytes).
    pub(crate) fn is_frame(&self) -> bool {
        self.tag.type_id() == FRAME_TAG.type_id()
    }

    /// Checks that the entry holds a `T`: a typed value of type `T`, or a
    /// frame whose type name is `T`'s.
    pub(crate) fn check_type<T: Storable>(&self, dref: &DRef) -> Result<()> {
        let ok = if self.is_frame() {
            T::type_name() == self.type_name()
        } else {
            self.tag.type_id() == TypeId::of::<T>()
        };
        if ok {
            Ok(())
        } else {
            Err(PoolError::TypeMismatch {
                dref: *dref,
                expected: T::type_name().into_owned(),
                found: self.type_name().into_owned(),
            })
        }
    }
}

/// A value's id: its slot in the low 32 bits, the slot's generation in the high.
pub(crate) fn make_id(idx: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(idx)
}

/// The slot and generation of an id.
pub(crate) fn split_id(id: u64) -> (u32, u32) {
    (id as u32, (id >> 32) as u32)
}

/// The shard (of `n`) showing the least stamp, and that stamp; `None` if
/// every shard shows none.
fn least(shown: &[AtomicU64]) -> Option<(usize, u64)> {
    let mut best = (usize::MAX, u64::MAX);
    for (s, stamp) in shown.iter().enumerate() {
        let stamp = stamp.load(Ordering::Relaxed);
        if stamp < best.1 {
            best = (s, stamp);
        }
    }
    (best.1 != u64::MAX).then_some(best)
}

/// The least stamp shown by the shards but `but`.
fn others_least(shown: &[AtomicU64], but: usize) -> u64 {
    let mut least = u64::MAX;
    for (s, stamp) in shown.iter().enumerate() {
        if s != but {
            least = least.min(stamp.load(Ordering::Relaxed));
        }
    }
    least
}

/// A value leaving memory, picked by [`State::start_spill`].
pub(crate) enum Leaving {
    /// It had a disk copy: it is on disk now, and this is the value to let go
    /// of (after unlocking).
    Dropped(Arc<dyn Stored>),
    /// It must be written: it is `Spilling`, counted in `spilling_bytes`.
    Write(Arc<dyn Stored>),
}

/// The index and its accounting. A slot index (`idx` below) names a shard
/// in its low bits and a slot of that shard in the rest (see shard.rs).
/// Invariants, whenever the lock is free:
/// - `mem_bytes` is the sum of the sizes of the linked slots (`Resident` and
///   `Flushing`) plus the shards' credit; each shard counts its own resident
///   values and bytes;
/// - credit exists only while `mem_bytes + spilling_bytes + promised` is at
///   most half of `max_memsize`: any admission that would pass that takes
///   it all back first ([`State::reclaim_credit`]), so every eviction
///   decision and the write-behind mark see exact figures;
/// - `spilling_bytes` is the sum of the sizes of the `Spilling` slots (and of
///   deleted values whose write is still in flight);
/// - `mem_bytes + spilling_bytes <= max_memsize`;
/// - `disk_bytes` counts every spill file, including writes in flight;
///   `disk_values` the entries with a file.
///
/// # The index lock and the shard locks
/// The index lock is this struct's mutex. Under it, the first access to a
/// shard takes that shard's lock, which stays taken (marked in `held`)
/// until [`State::unlock_shards`] (when the pool's lock guard is released
/// or waits): a value's shard when the value is found (or stored); the
/// shard of the next LRU victim or of the next value to copy, found by the
/// stamps the shards show ([`Shown`](crate::shard::Shown)) without the
/// others' locks; every shard for sums (`stats`), for taking credit back,
/// and for an MRU victim. So what a critical section has seen of a shard
/// stays as it saw it until the section ends, as with one lock; and an
/// operation on one value, an eviction included, takes two or three locks,
/// not one per shard. The fast
/// paths (pool.rs) take one shard's lock and never the index lock: a read
/// of a value in memory, and the link of a new value into the shard's
/// credit — neither of which any waiter waits for (credit is taken back
/// before a caller can wait for room, and none is handed out while anyone
/// waits). No deadlock: one critical section at a time holds the index
/// lock, and a fast path holds one shard lock and waits for no other.
///
/// # Wake-ups
/// Callers wait on one condition variable for room, for a value's write to
/// settle, or for a value being read back by another caller. Every method
/// here that can make such a wait's condition true — memory or claimed room
/// going down, a value becoming resident (a new victim to pick), a write or
/// a restore ending, a value removed — sets `wake`; the pool's lock guard
/// notifies the waiters when it is released with `wake` set and someone
/// waiting. So no transition can forget its wake-up.
pub(crate) struct State {
    shards: Arc<Shards>,
    /// The shards whose locks this critical section holds (see above), and
    /// how many: their guards are leaked when taken and the locks released
    /// by [`State::unlock_shards`] — a guard kept here would need an `Arc`
    /// of its mutex, two more atomic operations per shard and section.
    held: Box<[bool]>,
    n_held: usize,
    /// The shards held, in the order taken (so that releasing them costs
    /// O(held), not O(shards): most sections hold one to three of 16+).
    held_list: Vec<usize>,
    policy: Policy,
    pub(crate) mem_bytes: u64,
    /// Credit handed to shards and not taken back since (what they still
    /// hold is at most this).
    credit: u64,
    pub(crate) spilling_bytes: u64,
    /// Bytes that callers whose victims are being written will link then:
    /// room already claimed, which others must not count on.
    promised: u64,
    pub(crate) disk_values: u64,
    pub(crate) disk_bytes: u64,
    /// `get`s answered from memory under the index lock (the shards count
    /// their own).
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
    pub(crate) spills: u64,
    pub(crate) spill_failures: u64,
    pub(crate) restores: u64,
    /// Entries in the shards' write-behind queues (see [`State::has_dirty`]).
    queued: u64,
    /// Values put back first in line to leave after a failed write (LRU):
    /// their stamps count down from [`STAMP_BASE`].
    relinks: u64,
    /// Disk copies being written (`Flushing` values, and flushes of values
    /// deleted meanwhile): their disk bytes are reserved, and they become
    /// droppable copies once they settle.
    pub(crate) flushes: u32,
    /// Callers waiting on the pool's condition variable.
    pub(crate) waiters: u32,
    /// Something changed that a waiter may be waiting for (see Wake-ups).
    pub(crate) wake: bool,
}

impl State {
    /// An empty index of `shards` shards (a power of two), its shards locked;
    /// `write_behind` keeps the queues of values to copy.
    pub(crate) fn new(policy: Policy, write_behind: bool, shards: usize) -> Self {
        let shards = Arc::new(Shards::new(shards, policy, write_behind));
        let mut st = Self {
            held: vec![false; shards.len()].into_boxed_slice(),
            n_held: 0,
            held_list: Vec::with_capacity(shards.len()),
            shards,
            policy,
            mem_bytes: 0,
            credit: 0,
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
            queued: 0,
            relinks: 0,
            flushes: 0,
            waiters: 0,
            wake: false,
        };
        st.lock_shards();
        st
    }

    /// The shards, for the fast paths.
    pub(crate) fn shards(&self) -> &Arc<Shards> {
        &self.shards
    }

    /// Takes every shard's lock (the index lock is held).
    pub(crate) fn lock_shards(&mut self) {
        if self.n_held < self.held.len() {
            for s in 0..self.held.len() {
                self.take(s);
            }
        }
    }

    /// Lets go of the shard locks held (before the index lock is released
    /// or waited on).
    #[allow(unsafe_code, reason = "releases the locks whose guards `take` leaked")]
    pub(crate) fn unlock_shards(&mut self) {
        for s in self.held_list.drain(..) {
            self.held[s] = false;
            // SAFETY: `s` was put in `held_list` by `take`, which locked
            // shard `s` and leaked its guard; nothing else unlocks it, and
            // `held[s]` (now false) kept `take` from locking it twice.
            unsafe { self.shards.list[s].force_unlock() };
        }
        self.n_held = 0;
    }

    /// Takes shard `s`'s lock if this critical section does not hold it.
    #[inline]
    fn take(&mut self, s: usize) {
        if !self.held[s] {
            // Leaked: the lock stays taken until `unlock_shards`.
            let _ = MutexGuard::leak(self.shards.list[s].lock());
            self.held[s] = true;
            self.n_held += 1;
            self.held_list.push(s);
        }
    }

    /// Shard `s`, whose lock this critical section holds.
    #[allow(unsafe_code, reason = "the data of a mutex whose lock is held")]
    #[inline]
    fn shard(&self, s: usize) -> &Shard {
        assert!(
            self.held[s],
            "a value's shard is held once the value was found"
        );
        // SAFETY: this critical section holds shard `s`'s lock (`take`)
        // until `unlock_shards`, which takes `&mut self`: no other thread
        // reaches the shard meanwhile, and on this one the reference's
        // borrow of `self` excludes any `&mut` to it.
        unsafe { &*self.shards.list[s].data_ptr() }
    }

    /// Shard `s`, its lock taken if this critical section does not hold it.
    #[allow(unsafe_code, reason = "the data of a mutex whose lock is held")]
    #[inline]
    fn hold(&mut self, s: usize) -> &mut Shard {
        self.take(s);
        // SAFETY: as in `shard`; the borrow of `self` is exclusive.
        unsafe { &mut *self.shards.list[s].data_ptr() }
    }

    /// The shard of slot `idx` (which this critical section holds: it
    /// found or stored the value, or picked it) and the slot in it.
    #[inline]
    fn at(&self, idx: u32) -> (&Shard, u32) {
        let (s, local) = self.shards.split(idx);
        (self.shard(s), local)
    }

    /// The shard of slot `idx`, its lock taken if needed, and the slot in it.
    #[inline]
    fn at_mut(&mut self, idx: u32) -> (&mut Shard, u32) {
        let (s, local) = self.shards.split(idx);
        (self.hold(s), local)
    }

    /// Every shard, their locks taken.
    #[allow(unsafe_code, reason = "the data of mutexes whose locks are held")]
    fn all(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.lock_shards();
        self.shards.list.iter().map(|m| {
            // SAFETY: as in `shard`: every shard's lock is held, the borrow
            // of `self` is exclusive, and each shard is yielded once.
            unsafe { &mut *m.data_ptr() }
        })
    }

    /// Every shard, their locks held (shared).
    #[cfg(test)]
    #[allow(unsafe_code, reason = "the data of mutexes whose locks are held")]
    fn all_ref(&self) -> impl Iterator<Item = &Shard> {
        assert_eq!(self.n_held, self.held.len(), "every shard is held");
        self.shards.list.iter().map(|m| {
            // SAFETY: as in `shard`.
            unsafe { &*m.data_ptr() }
        })
    }

    #[inline]
    fn slot(&self, idx: u32) -> &Slot {
        let (sh, local) = self.at(idx);
        &sh.slots[local as usize]
    }

    #[inline]
    fn slot_mut(&mut self, idx: u32) -> &mut Slot {
        let (sh, local) = self.at_mut(idx);
        &mut sh.slots[local as usize]
    }

    /// The generation of slot `idx`.
    #[inline]
    pub(crate) fn gen(&self, idx: u32) -> u32 {
        self.slot(idx).gen()
    }

    /// Whether the value in slot `idx` is resident (in a recency list).
    #[inline]
    pub(crate) fn linked(&self, idx: u32) -> bool {
        self.slot(idx).linked()
    }

    /// The slot of a live value of pool `owner`.
    pub(crate) fn find(&mut self, owner: u64, r: &DRef) -> Result<u32> {
        let (idx, gen) = split_id(r.id);
        let (sh, local) = self.at_mut(idx);
        match sh.live(local, gen) {
            Some(_) if r.owner == owner => Ok(idx),
            _ => Err(PoolError::NotFound { dref: *r }),
        }
    }

    /// Whether slot `idx` still holds generation `gen`.
    pub(crate) fn is_live(&mut self, idx: u32, gen: u32) -> bool {
        let (sh, local) = self.at_mut(idx);
        sh.live(local, gen).is_some()
    }

    #[inline]
    pub(crate) fn entry(&self, idx: u32) -> &Entry {
        self.slot(idx).entry()
    }

    /// Moves slot `idx` from one place to the next: `f` gets the place by
    /// value and returns the new one (it must not panic: its arms only move
    /// fields, and an impossible place is a bug).
    fn transition<R>(&mut self, idx: u32, f: impl FnOnce(Place) -> (Place, R)) -> R {
        let slot = self.slot_mut(idx);
        let Entry { place, tag } = slot.entry.take().expect("a live slot has an entry");
        let (place, r) = f(place);
        slot.entry = Some(Entry { place, tag });
        r
    }

    /// Room claimed by callers whose victims are being written.
    pub(crate) fn promised(&self) -> u64 {
        self.promised
    }

    /// Claims `bytes` of room while this caller's victims are written.
    pub(crate) fn claim(&mut self, bytes: u64) {
        self.promised += bytes;
    }

    /// Gives back room claimed with [`State::claim`].
    pub(crate) fn unclaim(&mut self, bytes: u64) {
        self.promised -= bytes;
        self.wake = true;
    }

    /// Puts an entry in a slot of the next shard of this thread's turn that
    /// has one.
    ///
    /// # Panics
    /// With 2^32 - 1 values in one pool.
    fn insert(&mut self, entry: Entry) -> (u32, u32) {
        let n = self.held.len();
        let limit = self.shards.slot_limit();
        let first = next_shard(n);
        let s = (0..n)
            .map(|k| (first + k) & (n - 1))
            .find(|&s| self.hold(s).has_room(limit))
            .expect("more than 2^32 - 1 values in one pool");
        let (local, gen) = self
            .hold(s)
            .insert(entry, limit)
            .expect("the shard has room");
        stored();
        (self.shards.join(s, local), gen)
    }

    /// Stores a value in memory, resident and most recent, queued for
    /// write-behind; returns its slot and generation.
    ///
    /// # Panics
    /// With 2^32 - 1 values in one pool.
    pub(crate) fn insert_resident(
        &mut self,
        value: Arc<dyn Stored>,
        tag: &'static Tag,
    ) -> (u32, u32) {
        let (idx, gen) = self.insert(Entry {
            place: Place::Resident { value, copy: None },
            tag,
        });
        self.link_resident(idx);
        let (sh, local) = self.at_mut(idx);
        let before = sh.dirty_len();
        sh.push_dirty_linked(local);
        let after = sh.dirty_len();
        self.requeued(before, after);
        (idx, gen)
    }

    /// Stores a value that is on disk only.
    ///
    /// # Panics
    /// With 2^32 - 1 values in one pool.
    pub(crate) fn insert_on_disk(&mut self, file: SpillFile, tag: &'static Tag) -> (u32, u32) {
        self.disk_values += 1;
        self.spills += 1;
        self.insert(Entry {
            place: Place::OnDisk {
                file: Box::new(file),
            },
            tag,
        })
    }

    /// Removes the value in slot `idx` (taking it out of the recency list and
    /// the counts). A slot whose generation would wrap is retired, so that
    /// an old id never names a new value. A write of the value in flight
    /// settles later and finds the slot gone.
    pub(crate) fn remove(&mut self, idx: u32) -> Entry {
        self.unlink_resident(idx);
        let (sh, local) = self.at_mut(idx);
        let e = sh.vacate(local);
        if let Some(f) = e.file() {
            self.disk_bytes -= f.len;
            self.disk_values -= 1;
        }
        self.wake = true;
        e
    }

    /// Takes a resident value out of memory (to make room, or
    /// `move_to_disk`): with a disk copy it is on disk at once; without, it
    /// becomes `Spilling` for the caller to write. `None` for a value not
    /// resident or being flushed (which must not be skipped or doubled).
    pub(crate) fn start_spill(&mut self, idx: u32) -> Option<Leaving> {
        if !matches!(self.entry(idx).place, Place::Resident { .. }) {
            return None;
        }
        self.unlink_resident(idx);
        let leaving = self.transition(idx, |place| match place {
            Place::Resident {
                value,
                copy: Some(file),
            } => (Place::OnDisk { file }, Leaving::Dropped(value)),
            Place::Resident { value, copy: None } => (
                Place::Spilling {
                    value: Arc::clone(&value),
                },
                Leaving::Write(value),
            ),
            _ => unreachable!("checked above"),
        });
        if let Leaving::Write(v) = &leaving {
            self.spilling_bytes += v.size();
        }
        Some(leaving)
    }

    /// Ends a write out of memory of slot `idx` (if it still holds
    /// generation `gen`; `size` is what the write counted). With its file,
    /// the value is on disk only and the value is returned to let go of;
    /// without (the write failed) it is resident again, first in line to
    /// leave. Returns the file if nobody wants it (the value was deleted
    /// meanwhile) for the caller to remove.
    pub(crate) fn finish_spill(
        &mut self,
        idx: u32,
        gen: u32,
        size: u64,
        written: Option<SpillFile>,
    ) -> (Option<Arc<dyn Stored>>, Option<SpillFile>) {
        self.spilling_bytes -= size;
        self.wake = true;
        if !self.is_live(idx, gen) {
            return (None, self.orphan(written));
        }
        let failed = written.is_none();
        let value = self.transition(idx, |place| {
            let Place::Spilling { value } = place else {
                unreachable!("only the spiller ends a spill")
            };
            match written {
                Some(file) => (
                    Place::OnDisk {
                        file: Box::new(file),
                    },
                    Some(value),
                ),
                None => (Place::Resident { value, copy: None }, None),
            }
        });
        if failed {
            self.spill_failures += 1;
            self.relink_as_victim(idx);
            // Still without a disk copy: write-behind may try again.
            self.push_dirty(idx);
        } else {
            self.disk_values += 1;
            self.spills += 1;
        }
        (value, None)
    }

    /// Marks a resident value without a disk copy as having one written
    /// (write-behind, `copy_to_disk`); it stays resident. Returns the value,
    /// or `None` if it is not resident without a copy.
    pub(crate) fn start_flush(&mut self, idx: u32) -> Option<Arc<dyn Stored>> {
        let Place::Resident { value, copy: None } = &self.entry(idx).place else {
            return None;
        };
        let value = Arc::clone(value);
        self.flushes += 1;
        self.transition(idx, |_| {
            (
                Place::Flushing {
                    value: Arc::clone(&value),
                },
                (),
            )
        });
        Some(value)
    }

    /// Ends the write of a disk copy of slot `idx`: it is resident with its
    /// copy, or, if the write failed, without one (and queued to be copied
    /// again). Returns the file if nobody wants it.
    pub(crate) fn finish_flush(
        &mut self,
        idx: u32,
        gen: u32,
        written: Option<SpillFile>,
    ) -> Option<SpillFile> {
        self.wake = true;
        self.flushes -= 1;
        if !self.is_live(idx, gen) {
            return self.orphan(written);
        }
        let failed = written.is_none();
        self.transition(idx, |place| {
            let Place::Flushing { value } = place else {
                unreachable!("only the flusher ends a flush")
            };
            let copy = written.map(Box::new);
            (Place::Resident { value, copy }, ())
        });
        if failed {
            self.spill_failures += 1;
            self.push_dirty(idx);
        } else {
            self.disk_values += 1;
            self.spills += 1;
        }
        None
    }

    /// A write nobody wants any more: its bytes leave the disk count.
    fn orphan(&mut self, written: Option<SpillFile>) -> Option<SpillFile> {
        if let Some(f) = &written {
            self.disk_bytes -= f.len;
        }
        written
    }

    /// Marks a value on disk only as being read back by this caller; returns
    /// what the read needs of its file — its range, one reference count (not
    /// a copy of the record and its path) — or `None` if it is not on disk
    /// only. (The range is `None` only in the index's own tests.)
    #[expect(clippy::option_option, reason = "the inner None is for tests only")]
    pub(crate) fn start_restore(
        &mut self,
        idx: u32,
    ) -> Option<Option<Arc<crate::segments::Extent>>> {
        let Place::OnDisk { file } = &self.entry(idx).place else {
            return None;
        };
        let copy = file.extent.clone();
        self.transition(idx, |place| {
            let Place::OnDisk { file } = place else {
                unreachable!("checked above")
            };
            (Place::Restoring { file }, ())
        });
        Some(copy)
    }

    /// The value read back by this caller becomes resident and most recent,
    /// keeping its file as its disk copy.
    pub(crate) fn finish_restore(&mut self, idx: u32, value: Arc<dyn Stored>) {
        self.transition(idx, |place| {
            let Place::Restoring { file } = place else {
                unreachable!("only the restorer ends a restore")
            };
            let copy = Some(file);
            (Place::Resident { value, copy }, ())
        });
        self.link_resident(idx);
        self.restores += 1;
        self.wake = true;
    }

    /// This caller gives up reading back slot `idx` (if it still holds
    /// generation `gen`): it stays on disk only.
    pub(crate) fn abort_restore(&mut self, idx: u32, gen: u32) {
        self.wake = true;
        if !self.is_live(idx, gen) {
            return;
        }
        self.transition(idx, |place| match place {
            Place::Restoring { file } => (Place::OnDisk { file }, ()),
            other => (other, ()),
        });
    }

    /// Applies every shard's buffered reads to its recency list.
    #[cfg(test)]
    pub(crate) fn apply_touches(&mut self) {
        for sh in self.all() {
            sh.apply_touches();
        }
    }

    /// Queues a value without a disk copy for write-behind (in its shard's
    /// queue, stamped: [`State::pop_dirty`] takes the oldest of all).
    pub(crate) fn push_dirty(&mut self, idx: u32) {
        let (sh, local) = self.at_mut(idx);
        let before = sh.dirty_len();
        sh.push_dirty(local);
        let after = sh.dirty_len();
        self.requeued(before, after);
    }

    /// A shard's write-behind queue went from `before` to `after` entries.
    /// (Wrapping: while shards hold credit the count is not kept, and
    /// taking the credit back counts again.)
    fn requeued(&mut self, before: usize, after: usize) {
        self.queued = self
            .queued
            .wrapping_add(after as u64)
            .wrapping_sub(before as u64);
    }

    /// Whether values are queued for write-behind (some entries may be
    /// stale: the flusher skips them). Exact when no shard holds credit
    /// (the write-behind mark is above half the bound, where none does);
    /// otherwise it looks at every shard.
    pub(crate) fn has_dirty(&mut self) -> bool {
        if self.credit == 0 {
            return self.queued > 0;
        }
        self.all().any(|sh| sh.has_dirty())
    }

    /// The oldest queued value (least stamp of the shards' queue heads) that
    /// is still resident, without a disk copy, and not being written. Takes
    /// the lock of the shard it comes from, not every shard's (see
    /// [`Shown`](crate::shard::Shown)).
    pub(crate) fn pop_dirty(&mut self) -> Option<u32> {
        for _ in 0..2 * self.held.len() {
            let (s, shown) = least(&self.shards.shown.dirty)?;
            let sh = self.hold(s);
            let before = sh.dirty_len();
            let head = sh.dirty_head();
            let dropped = before - sh.dirty_len();
            self.requeued(dropped, 0);
            let Some((local, stamp)) = head else {
                continue;
            };
            if stamp == shown || stamp <= others_least(&self.shards.shown.dirty, s) {
                self.hold(s).pop_dirty_head();
                self.requeued(1, 0);
                return Some(self.shards.join(s, local));
            }
        }
        // Shards kept showing heads below what they held (values linked
        // into emptied shards meanwhile): look at every shard.
        self.pop_dirty_all()
    }

    /// [`State::pop_dirty`] under every shard's lock.
    fn pop_dirty_all(&mut self) -> Option<u32> {
        let mut best: Option<(usize, u32, u64)> = None;
        let mut dropped = 0;
        for (s, sh) in self.all().enumerate() {
            let before = sh.dirty_len();
            let head = sh.dirty_head();
            dropped += before - sh.dirty_len();
            if let Some((local, stamp)) = head {
                if best.is_none_or(|(_, _, b)| stamp < b) {
                    best = Some((s, local, stamp));
                }
            }
        }
        self.requeued(dropped, 0);
        let (s, local, _) = best?;
        self.hold(s).pop_dirty_head();
        self.requeued(1, 0);
        Some(self.shards.join(s, local))
    }

    /// The next value to leave memory, per the policy: of the shards'
    /// candidates, for LRU the one read or stored longest ago, for MRU the
    /// one most recently (see shard.rs). For LRU, takes the lock of the
    /// shard it comes from, not every shard's (see [`Shown`](crate::shard::Shown)).
    pub(crate) fn victim(&mut self) -> Option<u32> {
        if self.policy == Policy::Lru {
            for _ in 0..2 * self.held.len() {
                let (s, shown) = least(&self.shards.shown.victim)?;
                let Some((local, stamp)) = self.hold(s).candidate() else {
                    continue;
                };
                if stamp == shown || stamp <= others_least(&self.shards.shown.victim, s) {
                    return Some(self.shards.join(s, local));
                }
            }
        }
        self.victim_all()
    }

    /// [`State::victim`] under every shard's lock.
    fn victim_all(&mut self) -> Option<u32> {
        let policy = self.policy;
        let mut best: Option<(usize, u32, u64)> = None;
        for (s, sh) in self.all().enumerate() {
            if let Some((local, stamp)) = sh.candidate() {
                let better = match (best, policy) {
                    (None, _) => true,
                    (Some((_, _, b)), Policy::Lru) => stamp < b,
                    (Some((_, _, b)), Policy::Mru) => stamp > b,
                };
                if better {
                    best = Some((s, local, stamp));
                }
            }
        }
        best.map(|(s, local, _)| self.shards.join(s, local))
    }

    /// The eviction policy.
    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    /// Takes a resident value out of its recency list and the memory count;
    /// false if it was not resident.
    fn unlink_resident(&mut self, idx: u32) -> bool {
        let (sh, local) = self.at_mut(idx);
        let Some(size) = sh.unlink(local) else {
            return false;
        };
        self.mem_bytes -= size;
        self.wake = true;
        true
    }

    /// Makes a value resident and most recent.
    fn link_resident(&mut self, idx: u32) {
        let (sh, local) = self.at_mut(idx);
        self.mem_bytes += sh.link(local);
        self.wake = true;
    }

    /// Makes a value resident again after a failed write, first in line to
    /// leave: for LRU at the least recent end with a stamp below every
    /// other, for MRU at the most recent end with one above every other.
    fn relink_as_victim(&mut self, idx: u32) {
        let stamp = match self.policy {
            Policy::Lru => {
                self.relinks += 1;
                STAMP_BASE - self.relinks
            }
            Policy::Mru => {
                let floor = self.all().map(|sh| sh.last_stamp()).max();
                let (sh, _) = self.at_mut(idx);
                sh.stamp_above(floor.unwrap_or(0))
            }
        };
        let (sh, local) = self.at_mut(idx);
        self.mem_bytes += sh.relink_as_victim(local, stamp);
        self.wake = true;
    }

    /// Records a read of a resident value (applied to its shard's recency
    /// list in batches, in order).
    pub(crate) fn touch(&mut self, idx: u32) {
        let (sh, local) = self.at_mut(idx);
        sh.touch(local);
    }

    /// Bytes in memory that count against the bound (the shards' credit
    /// included).
    pub(crate) fn used(&self) -> u64 {
        self.mem_bytes + self.spilling_bytes
    }

    /// Credit handed to shards and not taken back.
    pub(crate) fn credit(&self) -> u64 {
        self.credit
    }

    /// Hands the shard of slot `idx` (where a value of `size` bytes was just
    /// linked under the index lock) credit for the values it links next
    /// without the index lock: an eighth of what is left below half of
    /// `max` per shard, if that is at least `size`; none while anyone waits.
    pub(crate) fn grant_credit(&mut self, idx: u32, max: u64, size: u64) {
        let load = self.used() + self.promised;
        if self.waiters > 0 || load >= max / 2 {
            return;
        }
        let grant = (max / 2 - load) / (8 * self.held.len() as u64);
        if grant < size.max(1) {
            return;
        }
        let (sh, _) = self.at_mut(idx);
        sh.credit += grant;
        self.mem_bytes += grant;
        self.credit += grant;
        self.shards.set_credit_out(true);
    }

    /// Takes back every shard's credit (what it did not use).
    pub(crate) fn reclaim_credit(&mut self) {
        if self.credit == 0 {
            return;
        }
        let taken: u64 = self.all().map(|sh| std::mem::take(&mut sh.credit)).sum();
        self.mem_bytes -= taken;
        self.credit = 0;
        // Values linked on credit were queued without the index lock.
        self.queued = self.all().map(|sh| sh.dirty_len() as u64).sum();
        self.shards.set_credit_out(false);
        self.wake = true;
    }

    /// Resident values.
    pub(crate) fn mem_values(&mut self) -> u64 {
        self.all().map(|sh| sh.mem_values).sum()
    }

    /// Bytes of resident values (without the shards' credit).
    pub(crate) fn resident_bytes(&mut self) -> u64 {
        self.all().map(|sh| sh.mem_bytes).sum()
    }

    /// The part of the resident bytes that maps spilled ranges.
    pub(crate) fn mem_mapped_bytes(&mut self) -> u64 {
        self.all().map(|sh| sh.mem_mapped_bytes).sum()
    }

    /// `get`s answered from memory.
    pub(crate) fn all_hits(&mut self) -> u64 {
        self.hits + self.all().map(|sh| sh.hits).sum::<u64>()
    }

    /// Drops the disk copies of resident values (they are in memory; the
    /// copies only save a write at eviction) but those handed out as a
    /// `FileRef`, queueing the values for
    /// write-behind again. For when the disk bound is reached. Returns the
    /// files to remove (after unlocking). O(n).
    ///
    /// Still needed with segments: copies nobody reads (not handed out, no
    /// reader pinning the range) are optional, and without dropping them a
    /// must-happen eviction fails at `max_disksize` where it would succeed
    /// without write-behind (tests/write_behind_disk_budget.rs fails when
    /// this is removed). What issue 8 removed is dropping ranges in use.
    pub(crate) fn drop_resident_copies(&mut self) -> Vec<SpillFile> {
        let mut files = Vec::new();
        let mut queued = self.queued;
        let (mut disk_bytes, mut disk_values) = (self.disk_bytes, self.disk_values);
        for sh in self.all() {
            for local in 0..sh.slots.len() as u32 {
                let Some(Entry {
                    place: Place::Resident { copy, .. },
                    ..
                }) = &mut sh.slots[local as usize].entry
                else {
                    continue;
                };
                // A copy handed out as a FileRef stays; one whose range is
                // read by someone (the value itself, restored from it) would
                // free nothing.
                if copy.as_ref().is_some_and(|f| {
                    f.handed_out || f.extent.as_ref().is_some_and(|e| Arc::strong_count(e) > 1)
                }) {
                    continue;
                }
                if let Some(f) = copy.take() {
                    disk_bytes -= f.len;
                    disk_values -= 1;
                    files.push(*f);
                    let before = sh.dirty_len();
                    sh.push_dirty(local);
                    queued = queued
                        .wrapping_add(sh.dirty_len() as u64)
                        .wrapping_sub(before as u64);
                }
            }
        }
        self.queued = queued;
        self.disk_bytes = disk_bytes;
        self.disk_values = disk_values;
        self.wake = true;
        files
    }

    /// A `FileRef` to slot `idx`'s file, which is kept from then on until
    /// the value is deleted; `None` if it has no file.
    pub(crate) fn hand_out(&mut self, idx: u32) -> Option<crate::FileRef> {
        let Entry { place, .. } = self.slot_mut(idx).entry.as_mut()?;
        let file = match place {
            Place::Resident { copy, .. } => copy.as_deref_mut(),
            Place::OnDisk { file } | Place::Restoring { file } => Some(&mut **file),
            Place::Flushing { .. } | Place::Spilling { .. } => None,
        }?;
        file.handed_out = true;
        Some(crate::FileRef {
            path: file.path.clone(),
            offset: file.offset,
            size: file.len,
        })
    }

    /// Sets a slot's generation (to test wrapping).
    #[cfg(test)]
    pub(crate) fn set_gen(&mut self, idx: u32, gen: u32) {
        self.slot_mut(idx).gen = gen;
    }

    /// The slot indices of every live value (tests; O(n)).
    #[cfg(test)]
    pub(crate) fn live_slots(&mut self) -> Vec<u32> {
        let mut v = Vec::new();
        self.lock_shards();
        for (s, sh) in self.all_ref().enumerate() {
            for (local, slot) in sh.slots.iter().enumerate() {
                if slot.entry.is_some() {
                    v.push(self.shards.join(s, local as u32));
                }
            }
        }
        v
    }

    /// The resident values from most to least recent, by stamp (tests;
    /// `check_invariants` checks that each shard's list is in stamp order).
    #[cfg(test)]
    pub(crate) fn order(&mut self) -> Vec<u32> {
        self.apply_touches();
        let mut v: Vec<(u64, u32)> = self
            .live_slots()
            .into_iter()
            .filter(|&i| self.linked(i))
            .map(|i| (self.slot(i).stamp, i))
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// A set's fast path (pool.rs) on the first shard whose credit covers
    /// the value (tests, which hold every shard).
    #[cfg(test)]
    pub(crate) fn link_in_credit(
        &mut self,
        value: Arc<dyn Stored>,
        tag: &'static Tag,
    ) -> Option<(u32, u32)> {
        let limit = self.shards.slot_limit();
        let (s, (local, gen)) = self
            .all()
            .enumerate()
            .find_map(|(s, sh)| Some((s, sh.link_in_credit(&value, tag, limit)?)))?;
        Some((self.shards.join(s, local), gen))
    }

    /// Values queued for write-behind, stale ones included (tests).
    #[cfg(test)]
    pub(crate) fn dirty_len(&mut self) -> usize {
        let n = self.all().map(|sh| sh.dirty_len()).sum();
        if self.credit == 0 {
            assert_eq!(n as u64, self.queued, "queued");
        }
        n
    }

    /// Checks every invariant in O(n) (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&mut self, max_memsize: u64) {
        let (mut mem_values, mut mem_bytes, mut disk_values, mut spilling) = (0, 0, 0, 0);
        let mut mem_mapped = 0;
        let mut credit = 0;
        self.lock_shards();
        for sh in self.all_ref() {
            let (mut values, mut bytes) = (0, 0);
            for s in &sh.slots {
                let Some(e) = &s.entry else {
                    assert!(!s.linked(), "an empty slot is unlinked");
                    continue;
                };
                let resident = matches!(e.place, Place::Resident { .. } | Place::Flushing { .. });
                assert_eq!(
                    s.linked(),
                    resident,
                    "a value is in the recency list exactly when it is resident"
                );
                if resident {
                    values += 1;
                    bytes += e.mem_size();
                    if e.value().is_some_and(|v| v.is_mapped()) {
                        mem_mapped += e.mem_size();
                    }
                }
                if let Place::Spilling { value } = &e.place {
                    spilling += value.size();
                }
                if e.file().is_some() {
                    disk_values += 1;
                }
            }
            assert_eq!(values, sh.mem_values, "a shard's mem_values");
            assert_eq!(bytes, sh.mem_bytes, "a shard's mem_bytes");
            mem_values += values;
            mem_bytes += bytes;
            credit += sh.credit;
            let stamps: Vec<u64> = sh
                .recency
                .order(&sh.slots)
                .iter()
                .map(|&l| sh.slots[l as usize].stamp)
                .collect();
            assert!(
                stamps.windows(2).all(|w| w[0] >= w[1]),
                "a shard's recency list is in stamp order"
            );
        }
        // What the shards show the index lock (see `Shown`) is never above
        // their heads.
        let shown = Arc::clone(&self.shards.shown);
        let mut dropped = 0;
        for (s, sh) in self.all().enumerate() {
            // What was shown before the shard's reads are applied and its
            // stale queue entries dropped is at most its heads then...
            let (shown_victim, shown_dirty) = (shown.victim(s), shown.dirty(s));
            let victim = sh.candidate().map_or(u64::MAX, |(_, stamp)| stamp);
            assert!(shown_victim <= victim, "shown victim stamp above the head");
            // ...and exactly them after.
            assert_eq!(shown.victim(s), victim, "shown victim stamp");
            let before = sh.dirty_len();
            let dirty = sh.dirty_head().map_or(u64::MAX, |(_, stamp)| stamp);
            dropped += before - sh.dirty_len();
            assert!(
                shown_dirty <= dirty,
                "shown write-behind head stamp above the head"
            );
            assert_eq!(shown.dirty(s), dirty, "shown write-behind head stamp");
        }
        self.requeued(dropped, 0);
        assert!(credit <= self.credit, "credit");
        let queued: u64 = self.all_ref().map(|sh| sh.dirty_len() as u64).sum();
        assert!(self.credit > 0 || queued == self.queued, "queued");
        assert!(
            self.credit == 0 || self.used() + self.promised <= max_memsize / 2,
            "credit above half the bound"
        );
        assert!(spilling <= self.spilling_bytes, "spilling_bytes");
        assert_eq!(mem_values, self.mem_values(), "mem_values");
        assert_eq!(mem_bytes + credit, self.mem_bytes, "mem_bytes");
        assert_eq!(mem_mapped, self.mem_mapped_bytes(), "mem_mapped_bytes");
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

    fn value() -> Arc<dyn Stored> {
        let counters = Arc::new(crate::stats::Counters::default());
        let handle = Arc::new(crate::stats::CounterHandle(counters));
        Arc::new(crate::held::Held::new(vec![0u8], 1, handle))
    }

    fn file(len: u64) -> SpillFile {
        SpillFile {
            path: PathBuf::from("x.seg"),
            offset: 0,
            len,
            extent: None,
            mem_size: 1,
            frame_name: None,
            handed_out: false,
        }
    }

    /// Every transition that can let a waiter on (memory or claimed room
    /// going down, a value becoming resident, a write or restore ending, a
    /// removal) raises `wake`, which the pool's lock guard turns into a
    /// notification: the rule that makes a lost wake-up impossible, checked
    /// transition by transition, without threads.
    #[test]
    fn every_transition_a_waiter_may_wait_for_raises_wake() {
        let mut st = State::new(Policy::Lru, true, 4);
        let tag = tag_of::<Vec<u8>>();
        let check = |st: &mut State, what: &str, f: &mut dyn FnMut(&mut State)| {
            st.wake = false;
            f(st);
            assert!(st.wake, "{what} does not wake waiters");
        };
        let mut a = (0, 0);
        check(&mut st, "linking a new value", &mut |st| {
            a = st.insert_resident(value(), tag);
        });
        st.claim(10);
        check(&mut st, "giving back claimed room", &mut |st| {
            st.unclaim(10)
        });
        // A write out of memory that fails, then one that succeeds.
        assert!(matches!(st.start_spill(a.0), Some(Leaving::Write(_))));
        check(&mut st, "a failed spill settling", &mut |st| {
            st.finish_spill(a.0, a.1, 1, None);
        });
        assert!(st.linked(a.0));
        st.start_spill(a.0);
        st.disk_bytes += 5;
        check(&mut st, "a spill settling", &mut |st| {
            st.finish_spill(a.0, a.1, 1, Some(file(5)));
        });
        assert_eq!((st.used(), st.disk_values), (0, 1));
        // A restore that gives up, then one that links.
        assert!(st.start_restore(a.0).is_some());
        check(&mut st, "a restore giving up", &mut |st| {
            st.abort_restore(a.0, a.1)
        });
        st.start_restore(a.0);
        check(&mut st, "a restore linking", &mut |st| {
            st.finish_restore(a.0, value())
        });
        // A resident value with a copy leaves without a write.
        check(&mut st, "a value dropped from memory", &mut |st| {
            assert!(matches!(st.start_spill(a.0), Some(Leaving::Dropped(_))));
        });
        // Flushes settle, failed or not.
        let b = st.insert_resident(value(), tag);
        st.start_flush(b.0).unwrap();
        check(&mut st, "a failed flush settling", &mut |st| {
            st.finish_flush(b.0, b.1, None);
        });
        st.start_flush(b.0).unwrap();
        st.disk_bytes += 5;
        check(&mut st, "a flush settling", &mut |st| {
            st.finish_flush(b.0, b.1, Some(file(5)));
        });
        check(&mut st, "a delete", &mut |st| {
            st.remove(b.0);
        });
        // A write whose value was deleted meanwhile still frees its room.
        let c = st.insert_resident(value(), tag);
        st.start_spill(c.0);
        st.remove(c.0);
        st.disk_bytes += 5;
        check(&mut st, "an orphaned spill settling", &mut |st| {
            assert!(st.finish_spill(c.0, c.1, 1, Some(file(5))).1.is_some());
        });
        assert_eq!((st.spilling_bytes, st.mem_bytes), (0, 0));
        st.check_invariants(u64::MAX);
    }

    /// Buffered reads, applied at batch boundaries and before links and
    /// victim picks, give exactly the order of eager moves.
    #[test]
    fn buffered_touches_match_eager_lru() {
        let mut st = State::new(Policy::Lru, true, 4);
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
                    let (idx, _) = st.insert_resident(value(), tag_of::<Vec<u8>>());
                    model.insert(0, idx);
                }
                2 if !model.is_empty() => {
                    let v = st.victim().expect("resident values");
                    assert_eq!(Some(&v), model.last(), "step {step}: victim");
                    model.pop();
                    st.remove(v);
                }
                3 if !model.is_empty() => {
                    // delete a random resident value
                    let i = (next() as usize) % model.len();
                    let idx = model.remove(i);
                    assert!(st.linked(idx));
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
        assert_eq!(st.order(), model);
        st.check_invariants(u64::MAX);
        // The write-behind queues stayed O(resident values) through the churn.
        let q = st.dirty_len() as u64;
        assert!(
            q <= 2 * st.mem_values() + 64 * 4,
            "{q} queued for {} resident",
            st.mem_values()
        );
    }
}
