//! [`Pool`]: the memory-bounded store, its bookkeeping and its spills.
//!
//! # Locking
//! One mutex guards the index ([`State`]): slots, the recency list, the byte
//! counts. Every operation holds it only for O(1) index changes and to pick
//! victims; encoding, file writes, reads, and drops of values happen after it
//! is released.
//!
//! # The memory bound
//! `mem_bytes + spilling_bytes <= max_memsize` at every instant: a value being
//! written out of memory still counts until its write settles, and a new or
//! restored value is linked only once room for it exists. A caller that needs
//! room picks victims — just enough that, once every write in flight settles,
//! the resident values, the room other callers have claimed (`promised`) and
//! its own value fit — claims its room, writes its victims outside the lock,
//! and tries again; when there is nothing for it to write, it waits on
//! `settled`, which every settling write signals. Every write settles — a
//! failure or a panic while encoding puts the value back in memory — so a
//! waiter always wakes. Two callers reading the same value from disk do not
//! both make room: the second waits for the first (`RESTORING`).
//!
//! # Write-behind
//! With [`PoolConfig::write_behind`] (LRU only), once memory is
//! three-quarters full a flusher thread writes disk copies of resident values
//! that have none, oldest stored first, while they stay resident (marked
//! flushing, like `copy_to_disk`), so that evicting them is just dropping
//! them. Eviction never skips a value: when the next victim is being
//! flushed, the caller helps by flushing another one, or waits for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use parking_lot::{Condvar as StateCondvar, Mutex as StateMutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mempool_serde::{EncodedFrame, Frame, FrameError, ReadOptions};

use crate::config::PoolConfig;
use crate::dref::{DRef, FileRef};
use crate::error::{PoolError, Result};
use crate::held::{downcast, release, Held, Ref, Stored};
use crate::index::{make_id, split_id, tag_of, Entry, SpillFile, State};
use crate::session::SessionDir;
use crate::stats::{Counters, Stats};
use crate::storable::Storable;

/// Where one value is, from [`Pool::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValueInfo {
    /// Bytes the value counts in memory (its size when last resident; a value
    /// read back from a mapped file counts the mapped bytes).
    pub mem_size: u64,
    /// Whether it is in memory (resident, or being written out).
    pub in_memory: bool,
    /// Whether a write of it out of memory is in progress.
    pub spilling: bool,
    /// Length of its spill file, if it has one.
    pub disk_size: Option<u64>,
    /// Its type's frame name.
    pub type_name: String,
}

/// Why a value is being written out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// To make room (counts as an eviction).
    Evict,
    /// `move_to_disk`.
    Move,
    /// A disk copy of a resident value (write-behind, `copy_to_disk`).
    Flush,
}

/// A value being written out of memory, outside the lock.
struct Victim {
    idx: u32,
    gen: u32,
    value: Arc<dyn Stored>,
    size: u64,
    why: Why,
}

/// What a caller that needs room for `incoming` bytes does next.
struct Room {
    /// The bytes fit now (the caller links its value under the same lock).
    fits: bool,
    /// Values this caller must write out (already marked as spilling).
    victims: Vec<Victim>,
    /// Values dropped from memory that already had a disk copy.
    released: Vec<Arc<dyn Stored>>,
    /// The next victim is being flushed: its write must settle first.
    blocked: bool,
}

/// The flusher thread's controls, shared by the pool and the thread.
#[derive(Default)]
struct FlushCtl {
    /// Work may be waiting; set by `kick`, cleared by the flusher.
    pending: AtomicBool,
    /// The pool is shutting down.
    stopping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    cv: Condvar,
}

struct Inner {
    config: PoolConfig,
    owner: u64,
    session: SessionDir,
    state: StateMutex<State>,
    /// Signalled whenever a write out of memory settles.
    settled: StateCondvar,
    counters: Arc<Counters>,
    file_seq: AtomicU64,
    swept: usize,
}

/// What user clones of a [`Pool`] share beyond the index: dropping the last
/// one stops and joins the flusher thread (which holds the index), so that
/// the index, and with it the session directory, goes when the user's last
/// `Pool` does.
struct Handle {
    flush: Option<Arc<FlushCtl>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let Some(ctl) = &self.flush else {
            return;
        };
        ctl.stopping.store(true, Ordering::SeqCst);
        let thread = {
            let mut t = ctl.thread.lock().unwrap_or_else(|e| e.into_inner());
            // Taking the lock orders this with the flusher's check-then-wait.
            ctl.cv.notify_all();
            t.take()
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// One process's memory-bounded object pool (MemPool.jl's `poolset`/`poolget`).
///
/// `Pool` is `Send + Sync` and cheap to clone (clones share the pool). Values
/// are immutable once stored. When the bytes in memory would pass
/// `max_memsize`, values leave memory in policy order (least recently used
/// first by default): written to the session directory as frames, then
/// dropped; a later [`get`](Pool::get) maps the file back — without copying
/// for mempool-arrays types. A value that already has a disk copy (restored
/// and unchanged, or after [`copy_to_disk`](Pool::copy_to_disk)) is simply
/// dropped. The session directory is removed when the last clone drops.
///
/// ```
/// use mempool_arrays::PrimitiveArray;
/// use mempool_core::{Pool, PoolConfig};
///
/// let dir = tempfile::tempdir().unwrap();
/// let pool = Pool::new(PoolConfig::default().max_memsize(1 << 20).spill_dir(dir.path())).unwrap();
/// let a = pool.set(PrimitiveArray::from(vec![1.0f64; 100_000])).unwrap(); // 800 kB
/// let b = pool.set(PrimitiveArray::from(vec![2.0f64; 100_000])).unwrap(); // spills `a`
/// assert!(pool.is_on_disk(&a).unwrap() && !pool.is_in_memory(&a).unwrap());
/// let back = pool.get::<PrimitiveArray<f64>>(&a).unwrap(); // mapped back, spills `b`
/// assert_eq!(back.values()[0], 1.0);
/// pool.delete(&a).unwrap();
/// pool.delete(&b).unwrap();
/// ```
#[derive(Clone)]
pub struct Pool {
    // Declared before `inner`: see [`Handle`].
    handle: Arc<Handle>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("owner", &format_args!("{:08x}", self.inner.owner as u32))
            .field("dir", &self.inner.session.path())
            .field("stats", &self.stats())
            .finish()
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQ.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// An index change to undo if the caller leaves between two critical
/// sections (an error, or a panic in user code): the reservation of disk
/// bytes for a write, room claimed while victims are written, the RESTORING
/// mark of a value being read back. `run` undoes it inside a critical
/// section the caller holds, `keep` drops it without undoing; otherwise the
/// drop locks, undoes, and wakes every waiter.
struct Undo<'p, F: FnOnce(&mut State)> {
    pool: &'p Pool,
    undo: Option<F>,
}

impl<'p, F: FnOnce(&mut State)> Undo<'p, F> {
    fn new(pool: &'p Pool, undo: F) -> Self {
        Self {
            pool,
            undo: Some(undo),
        }
    }

    fn run(mut self, st: &mut State) {
        if let Some(f) = self.undo.take() {
            f(st);
        }
    }

    fn keep(mut self) {
        self.undo = None;
    }
}

impl<F: FnOnce(&mut State)> Drop for Undo<'_, F> {
    fn drop(&mut self) {
        if let Some(f) = self.undo.take() {
            f(&mut self.pool.lock());
            self.pool.inner.settled.notify_all();
        }
    }
}

/// Clears the RESTORING mark of slot `idx` if it still holds generation `gen`.
fn clear_restoring(idx: u32, gen: u32) -> impl FnOnce(&mut State) {
    move |st: &mut State| {
        if let Some(slot) = st.live(idx, gen) {
            slot.set_restoring(false);
        }
    }
}

/// Victims of one caller: the one being written and those after it. On a
/// failure (or a panic) the ones not written go back in reverse pick order,
/// then the failed one, so that they keep their places in line to leave.
struct Victims<'p> {
    pool: &'p Pool,
    /// Still to write, the next one last.
    rest: Vec<Victim>,
    current: Option<Victim>,
}

impl Victims<'_> {
    fn put_back(&mut self) {
        for v in std::mem::take(&mut self.rest) {
            self.pool.settle(v, None);
        }
        if let Some(v) = self.current.take() {
            self.pool.settle(v, None);
        }
    }
}

impl Drop for Victims<'_> {
    fn drop(&mut self) {
        self.put_back();
    }
}

impl Pool {
    /// Makes a pool: creates `spill_dir` if needed, removes session
    /// directories of processes that no longer exist, and makes this pool's
    /// session directory.
    ///
    /// # Errors
    /// [`PoolError::Config`] for `max_memsize == 0`; [`PoolError::Io`] when the
    /// directories cannot be made.
    pub fn new(config: PoolConfig) -> Result<Self> {
        if config.max_memsize == 0 {
            return Err(PoolError::Config(
                "max_memsize is 0; give the pool some memory (e.g. 1 GiB)".into(),
            ));
        }
        let owner = random_u64();
        let (session, swept) = SessionDir::create(&config.spill_dir, owner)?;
        let state = State::new(
            config.policy,
            config.write_behind && config.policy == crate::Policy::Lru,
        );
        let flush = Arc::new(FlushCtl::default());
        Ok(Self {
            handle: Arc::new(Handle { flush: Some(flush) }),
            inner: Arc::new(Inner {
                config,
                owner,
                session,
                state: StateMutex::new(state),
                settled: StateCondvar::new(),
                counters: Arc::new(Counters::default()),
                file_seq: AtomicU64::new(0),
                swept,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// This pool's session directory, where its spill files live.
    pub fn session_dir(&self) -> &Path {
        self.inner.session.path()
    }

    /// How many stale session directories (of dead processes) were removed
    /// when this pool started.
    pub fn swept_sessions(&self) -> usize {
        self.inner.swept
    }

    /// The identity written into this pool's [`DRef`]s.
    pub fn owner(&self) -> u64 {
        self.inner.owner
    }

    /// The index lock. (parking_lot's: it spins briefly before parking,
    /// which suits critical sections of a few cache misses, and it does not
    /// poison — index updates complete before any call that could panic.)
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// Waits until some write out of memory settles.
    fn wait<'g>(&self, mut guard: MutexGuard<'g, State>) -> MutexGuard<'g, State> {
        self.inner.settled.wait(&mut guard);
        guard
    }

    fn dref(&self, idx: u32, gen: u32, size: u64) -> DRef {
        DRef {
            owner: self.inner.owner,
            id: make_id(idx, gen),
            size,
        }
    }

    /// Whether `incoming` bytes can be linked now without taking room that
    /// writes in flight have not freed yet or that others have claimed.
    fn fits_now(&self, st: &State, incoming: u64) -> bool {
        st.used() + st.promised + incoming <= self.inner.config.max_memsize
    }

    /// Takes values out of memory, in policy order, until, once every write
    /// in flight settles, the resident values, the room claimed by others and
    /// `incoming` fit. Values that already have a disk copy leave at once; the
    /// others are marked as spilling (still counted) and returned for the
    /// caller to write. Stops at a value being flushed (`blocked`): eviction
    /// never skips one.
    fn make_room(&self, st: &mut State, incoming: u64) -> Room {
        let max = self.inner.config.max_memsize;
        let mut victims = Vec::new();
        let mut released = Vec::new();
        let mut blocked = false;
        while st.mem_bytes + st.promised + incoming > max {
            let Some(idx) = st.victim() else {
                break;
            };
            if st.slots[idx as usize].flushing() {
                blocked = true;
                break;
            }
            st.unlink_resident(idx);
            let slot = &mut st.slots[idx as usize];
            let gen = slot.gen();
            let e = slot.entry_mut();
            if e.file.is_some() {
                released.extend(e.mem.take());
                st.evictions += 1;
            } else {
                let value = Arc::clone(e.mem.as_ref().expect("a resident value is in memory"));
                let size = e.size;
                slot.set_spilling(true);
                st.spilling_bytes += size;
                victims.push(Victim {
                    idx,
                    gen,
                    value,
                    size,
                    why: Why::Evict,
                });
            }
        }
        Room {
            fits: self.fits_now(st, incoming),
            victims,
            released,
            blocked,
        }
    }

    /// Whether write-behind should run: LRU, enabled, memory three-quarters full.
    fn wants_flush(&self, st: &State) -> bool {
        let c = &self.inner.config;
        c.write_behind && st.policy() == crate::Policy::Lru && st.used() > c.max_memsize / 4 * 3
    }

    /// Picks the oldest stored value still resident without a disk copy and
    /// marks it flushing.
    fn pick_flush(&self, st: &mut State) -> Option<Victim> {
        if !self.wants_flush(st) {
            return None;
        }
        let idx = st.pop_dirty()?;
        let slot = &mut st.slots[idx as usize];
        let gen = slot.gen();
        let e = slot.entry.as_ref()?;
        let value = Arc::clone(e.mem.as_ref()?);
        let size = e.size;
        slot.set_flushing(true);
        Some(Victim {
            idx,
            gen,
            value,
            size,
            why: Why::Flush,
        })
    }

    /// Wakes the flusher (starting it on first need) if write-behind wants to
    /// run. Cheap when it is already awake.
    fn kick_flusher(&self) {
        let Some(ctl) = &self.handle.flush else {
            return;
        };
        if ctl.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut t = ctl.thread.lock().unwrap_or_else(|e| e.into_inner());
        if ctl.stopping.load(Ordering::SeqCst) {
            return;
        }
        if t.as_ref().is_none_or(JoinHandle::is_finished) {
            let pool = Pool {
                handle: Arc::new(Handle { flush: None }),
                inner: Arc::clone(&self.inner),
            };
            let ctl2 = Arc::clone(ctl);
            *t = std::thread::Builder::new()
                .name("mempool-flush".into())
                .spawn(move || flusher(&pool, &ctl2))
                .ok();
            if t.is_none() {
                // No thread: evictions write for themselves; a later kick
                // tries to start one again.
                ctl.pending.store(false, Ordering::Release);
                return;
            }
        }
        drop(t);
        ctl.cv.notify_all();
    }

    /// Writes a frame to a new file in the session directory, with its bytes
    /// reserved against `max_disksize` first.
    ///
    /// A write that must happen (not a write-behind copy) that would pass the
    /// bound first drops the disk copies of resident values: write-behind
    /// must never make a `set` fail that would succeed without it.
    fn write_frame(&self, frame: &EncodedFrame<'_>, why: Why) -> Result<SpillFile> {
        let len = frame.len() as u64;
        let reservation = {
            let mut st = self.lock();
            if let Some(max) = self.inner.config.max_disksize {
                if st.disk_bytes + len > max && why != Why::Flush {
                    let dropped = st.drop_resident_copies();
                    if !dropped.is_empty() {
                        drop(st);
                        for f in dropped {
                            let _ = std::fs::remove_file(&f.path);
                        }
                        st = self.lock();
                    }
                }
                if st.disk_bytes + len > max {
                    return Err(PoolError::DiskFull {
                        needed: len,
                        used: st.disk_bytes,
                        max,
                    });
                }
            }
            st.disk_bytes += len;
            Undo::new(self, move |st: &mut State| st.disk_bytes -= len)
        };
        let seq = self.inner.file_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.session_dir().join(format!("{seq:x}.frame"));
        mempool_serde::write_encoded_file(frame, &path, false)?;
        reservation.keep();
        Counters::add(&self.inner.counters.bytes_written, len);
        Ok(SpillFile { path, len })
    }

    /// Encodes and writes a value to a new spill file.
    fn write_value(&self, value: &dyn Stored, why: Why) -> Result<SpillFile> {
        let frame = value.encode()?;
        self.write_frame(&frame, why)
    }

    /// Writes victims out (outside the lock), in pick order, and settles
    /// each. At the first failure it stops: the failed victim and those not
    /// written go back in memory in their places in line, and the failure is
    /// returned (as [`PoolError::Spill`], but for flushes). A panic puts them
    /// back the same way.
    fn spill_all(&self, mut victims: Vec<Victim>) -> Option<PoolError> {
        victims.reverse();
        let mut vs = Victims {
            pool: self,
            rest: victims,
            current: None,
        };
        while let Some(v) = vs.rest.pop() {
            let v = vs.current.insert(v);
            let (dref, why) = (self.dref(v.idx, v.gen, v.size), v.why);
            match self.write_value(&*v.value, why) {
                Ok(file) => {
                    let v = vs.current.take().expect("current");
                    self.settle(v, Some(file));
                }
                Err(source) => {
                    vs.put_back();
                    return Some(match why {
                        Why::Flush => source,
                        Why::Evict | Why::Move => PoolError::Spill {
                            dref,
                            source: Box::new(source),
                        },
                    });
                }
            }
        }
        None
    }

    /// Writes one victim and settles it; the write's own error on failure.
    fn write_one(&self, v: Victim) -> Result<()> {
        match self.spill_all(vec![v]) {
            None => Ok(()),
            Some(PoolError::Spill { source, .. }) => Err(*source),
            Some(e) => Err(e),
        }
    }

    /// Ends a write out of memory: with its file the value leaves memory;
    /// without (the write failed) it is resident again, first in line to
    /// leave. Wakes every caller waiting for room.
    fn settle(&self, v: Victim, written: Option<SpillFile>) {
        if v.why == Why::Flush {
            return self.settle_flush(v, written);
        }
        let mut st = self.lock();
        st.spilling_bytes -= v.size;
        let mut released: Vec<Arc<dyn Stored>> = Vec::new();
        let mut orphan = None;
        let failed = written.is_none();
        match written {
            Some(file) => {
                released.push(Arc::clone(&v.value));
                match st.live(v.idx, v.gen) {
                    Some(slot) => {
                        slot.set_spilling(false);
                        let e = slot.entry_mut();
                        released.extend(e.mem.take());
                        if e.file.is_some() {
                            // A copy_to_disk finished first: keep its file.
                            orphan = Some(file);
                        } else {
                            e.file = Some(Box::new(file));
                            st.disk_values += 1;
                            st.spills += 1;
                        }
                        if v.why == Why::Evict {
                            st.evictions += 1;
                        }
                    }
                    // Deleted while we wrote: the file is nobody's.
                    None => orphan = Some(file),
                }
            }
            None => {
                st.spill_failures += 1;
                if let Some(slot) = st.live(v.idx, v.gen) {
                    slot.set_spilling(false);
                    st.relink_as_victim(v.idx);
                }
            }
        }
        if let Some(f) = &orphan {
            st.disk_bytes -= f.len;
        }
        drop(st);
        self.inner.settled.notify_all();
        // Files first: dropping a value runs user code, which may panic.
        if let Some(f) = orphan {
            let _ = std::fs::remove_file(&f.path);
        }
        if failed {
            // The pool still holds the value (or delete already let it go).
            drop(v.value);
        } else {
            drop(v.value);
            release(released);
        }
    }

    /// Ends a write of a disk copy of a resident value: the value gets its file
    /// (unless another write won) and stays resident.
    fn settle_flush(&self, v: Victim, written: Option<SpillFile>) {
        let mut st = self.lock();
        let mut orphan = None;
        match st.live(v.idx, v.gen) {
            Some(slot) => {
                slot.set_flushing(false);
                match written {
                    Some(file) => {
                        let e = slot.entry_mut();
                        if e.file.is_some() {
                            orphan = Some(file);
                        } else {
                            e.file = Some(Box::new(file));
                            st.disk_values += 1;
                            st.spills += 1;
                        }
                    }
                    None => {
                        // Stays resident without a copy: copy it later.
                        st.spill_failures += 1;
                        st.push_dirty(v.idx);
                    }
                }
            }
            None => orphan = written,
        }
        if let Some(f) = &orphan {
            st.disk_bytes -= f.len;
        }
        drop(st);
        self.inner.settled.notify_all();
        if let Some(f) = orphan {
            let _ = std::fs::remove_file(&f.path);
        }
        // The pool still holds the value, or delete already let it go.
        drop(v.value);
    }

    /// Stores `value` (MemPool.jl's `poolset`) and returns its reference.
    ///
    /// If memory is full, values leave memory first, in policy order
    /// (written to disk unless they already have a disk copy); the new value
    /// is linked only once it fits. A value larger than `max_memsize` goes
    /// straight to disk.
    ///
    /// # Errors
    /// - [`PoolError::Spill`] when making room failed (disk full, unwritable
    ///   directory, `max_disksize` reached — the cause is its `source`): the
    ///   new value is not stored, and every value stored before stays
    ///   readable (those that could not be written stay in memory);
    /// - for a value larger than `max_memsize`, [`PoolError::DiskFull`] when
    ///   `max_disksize` is reached, [`PoolError::Frame`] when writing fails;
    /// - [`PoolError::Frame`] when the value cannot be encoded.
    pub fn set<T: Storable>(&self, value: T) -> Result<DRef> {
        let size = value.mem_size();
        if size > self.inner.config.max_memsize {
            return self.set_on_disk(value, size);
        }
        let held: Arc<dyn Stored> =
            Arc::new(Held::new(value, size, Arc::clone(&self.inner.counters)));
        let mut st = self.lock();
        loop {
            let room = if self.fits_now(&st, size) {
                None
            } else {
                Some(self.make_room(&mut st, size))
            };
            if room.as_ref().is_none_or(|r| r.fits && r.victims.is_empty()) {
                // Values with disk copies made the room: link now, drop them after.
                let (idx, gen) = st.insert(Entry {
                    size,
                    mem: Some(held),
                    tag: tag_of::<T>(),
                    file: None,
                });
                st.link_resident(idx);
                st.push_dirty(idx);
                let flush = self.wants_flush(&st);
                drop(st);
                if let Some(room) = room {
                    release(room.released);
                }
                if flush {
                    self.kick_flusher();
                }
                return Ok(self.dref(idx, gen, size));
            }
            st = self.await_room(st, room.expect("needed room"), size)?;
        }
    }

    /// After `make_room`, with `incoming` bytes still to link: writes this
    /// caller's victims, claiming the room they free meanwhile (so that
    /// callers arriving meanwhile make their own), or, with none, helps
    /// write-behind or waits for other callers' writes; then lets go of the
    /// released values and relocks.
    ///
    /// A caller without victims claims nothing: the room it waits for is
    /// claimed by the callers whose writes free it, and waiting callers that
    /// claimed room nobody is freeing could wait for each other forever.
    ///
    /// # Errors
    /// The first failed victim write, as [`PoolError::Spill`].
    fn await_room<'g>(
        &'g self,
        mut st: MutexGuard<'g, State>,
        room: Room,
        incoming: u64,
    ) -> Result<MutexGuard<'g, State>> {
        if room.victims.is_empty() && room.released.is_empty() {
            // Rather than only wait for the flush of the next victim, flush
            // another.
            if room.blocked {
                if let Some(v) = self.pick_flush(&mut st) {
                    drop(st);
                    let _ = self.write_one(v);
                    return Ok(self.lock());
                }
            }
            return Ok(self.wait(st));
        }
        // Room claimed while this caller's victims are written.
        let claim = (!room.victims.is_empty()).then(|| {
            st.promised += incoming;
            Undo::new(self, move |st: &mut State| st.promised -= incoming)
        });
        drop(st);
        // Victims first (guarded), then the values to let go of, whose drops
        // run user code.
        let failed = self.spill_all(room.victims);
        release(room.released);
        let mut st = self.lock();
        if let Some(claim) = claim {
            claim.run(&mut st);
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(st),
        }
    }

    /// `set` of a value larger than the memory bound: written first, then
    /// published as a value on disk only.
    fn set_on_disk<T: Storable>(&self, value: T, size: u64) -> Result<DRef> {
        let frame = EncodedFrame::new(&value)?;
        let file = self.write_frame(&frame, Why::Evict)?;
        drop(frame);
        drop(value);
        let mut st = self.lock();
        let (idx, gen) = st.insert(Entry {
            size,
            mem: None,
            tag: tag_of::<T>(),
            file: Some(Box::new(file)),
        });
        st.disk_values += 1;
        st.spills += 1;
        Ok(self.dref(idx, gen, size))
    }

    /// Reads a value (MemPool.jl's `poolget`): from memory without a copy, or
    /// from disk by mapping its spill file (the value then becomes resident and
    /// most recent, which may spill others). The returned [`Ref`] keeps the
    /// value alive even if the pool evicts or deletes it meanwhile.
    ///
    /// A value read from disk that does not fit (larger than `max_memsize`, or
    /// memory could not be made: a failed spill) is returned without becoming
    /// resident; it stays on disk.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::TypeMismatch`] naming both types;
    /// [`PoolError::Frame`] when the spill file is unreadable or corrupt
    /// (checksum mismatch) — never wrong data.
    pub fn get<T: Storable>(&self, r: &DRef) -> Result<Ref<T>> {
        let mut st = self.lock();
        loop {
            let idx = st.find(self.inner.owner, r)?;
            let slot = &st.slots[idx as usize];
            let (linked, restoring) = (slot.linked(), slot.restoring());
            let e = slot.entry.as_ref().expect("found");
            e.check_type::<T>(r)?;
            if let Some(v) = &e.mem {
                let v = Arc::clone(v);
                if linked {
                    st.touch(idx);
                }
                st.hits += 1;
                drop(st);
                return Ok(downcast(v));
            }
            if restoring {
                // Another caller is reading it back: wait for its copy.
                st = self.wait(st);
                continue;
            }
            let file = e
                .file
                .as_deref()
                .cloned()
                .expect("on disk when not in memory");
            st.slots[idx as usize].set_restoring(true);
            st.misses += 1;
            drop(st);
            let (idx, gen) = split_id(r.id);
            let guard = Undo::new(self, clear_restoring(idx, gen));
            return self.restore::<T>(r, &file, guard);
        }
    }

    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            verify_checksum: self.inner.config.verify_checksums,
        }
    }

    /// Reads a spilled value and makes it resident if it fits. `guard` clears
    /// the slot's RESTORING mark (set by this caller) when the value is
    /// linked, or when this call gives up.
    fn restore<T: Storable>(
        &self,
        r: &DRef,
        file: &SpillFile,
        guard: Undo<'_, impl FnOnce(&mut State)>,
    ) -> Result<Ref<T>> {
        let (idx, gen) = split_id(r.id);
        let value: T = match crate::mapped::read_spill(&file.path, &self.read_options()) {
            Ok(v) => v,
            Err(e) => {
                drop(guard);
                // Deleted while we read: report that rather than the I/O error.
                if !self.contains(r) {
                    return Err(PoolError::NotFound { dref: *r });
                }
                return Err(e.into());
            }
        };
        Counters::add(&self.inner.counters.bytes_read, file.len);
        let size = value.mem_size();
        let held = Arc::new(Held::new(value, size, Arc::clone(&self.inner.counters)));
        if size > self.inner.config.max_memsize {
            drop(guard);
            return Ok(Ref::new_detached(held));
        }
        let mut st = self.lock();
        loop {
            if st.live(idx, gen).is_none() {
                // Deleted meanwhile; the value read was valid when asked for.
                drop(st);
                drop(guard);
                return Ok(Ref::new_detached(held));
            }
            let room = if self.fits_now(&st, size) {
                None
            } else {
                Some(self.make_room(&mut st, size))
            };
            if room.as_ref().is_none_or(|r| r.fits && r.victims.is_empty()) {
                let e = st.slots[idx as usize].entry_mut();
                e.size = size;
                e.mem = Some(Arc::clone(&held) as Arc<dyn Stored>);
                st.link_resident(idx);
                st.restores += 1;
                guard.run(&mut st);
                self.inner.settled.notify_all();
                let flush = self.wants_flush(&st);
                drop(st);
                if let Some(room) = room {
                    release(room.released);
                }
                if flush {
                    self.kick_flusher();
                }
                return Ok(Ref::from_held(held));
            }
            match self.await_room(st, room.expect("needed room"), size) {
                Ok(g) => st = g,
                // Memory could not be made: hand the value out without
                // making it resident; it stays on disk.
                Err(_) => {
                    drop(guard);
                    return Ok(Ref::new_detached(held));
                }
            }
        }
    }

    /// Removes a value (MemPool.jl's `pooldelete`) from memory and its spill
    /// file from disk. Files written by [`save_to_disk`](Pool::save_to_disk)
    /// are not touched. `Ref`s still held keep the value alive.
    ///
    /// # Errors
    /// [`PoolError::NotFound`] if the reference names no value of this pool.
    pub fn delete(&self, r: &DRef) -> Result<()> {
        let mut st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        st.unlink_resident(idx);
        let mut e = st.remove(idx).expect("found");
        if let Some(f) = &e.file {
            st.disk_bytes -= f.len;
            st.disk_values -= 1;
        }
        drop(st);
        // The file first: dropping the value runs user code, which may panic.
        // A write in flight of this value settles later and removes its file.
        if let Some(f) = &e.file {
            let _ = std::fs::remove_file(&f.path);
        }
        release(e.mem.take());
        Ok(())
    }

    /// Whether the reference names a live value of this pool.
    pub fn contains(&self, r: &DRef) -> bool {
        self.lock().find(self.inner.owner, r).is_ok()
    }

    /// Where a value is and how much it counts (MemPool.jl's `isinmemory` /
    /// `isondisk`, plus sizes).
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn info(&self, r: &DRef) -> Result<ValueInfo> {
        let st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let slot = &st.slots[idx as usize];
        let e = slot.entry.as_ref().expect("found");
        Ok(ValueInfo {
            mem_size: e.size,
            in_memory: e.mem.is_some(),
            spilling: slot.spilling(),
            disk_size: e.file.as_ref().map(|f| f.len),
            type_name: e.tag.type_name().into_owned(),
        })
    }

    /// Whether the value is in memory (resident, or being spilled).
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn is_in_memory(&self, r: &DRef) -> Result<bool> {
        Ok(self.info(r)?.in_memory)
    }

    /// Whether the value has a spill file.
    ///
    /// # Errors
    /// [`PoolError::NotFound`].
    pub fn is_on_disk(&self, r: &DRef) -> Result<bool> {
        Ok(self.info(r)?.disk_size.is_some())
    }

    /// Locks and finds `r`, waiting while a write of it out of memory is in
    /// flight.
    fn lock_settled(&self, r: &DRef) -> Result<(MutexGuard<'_, State>, u32)> {
        let mut st = self.lock();
        loop {
            let idx = st.find(self.inner.owner, r)?;
            if !st.slots[idx as usize].writing() {
                return Ok((st, idx));
            }
            st = self.wait(st);
        }
    }

    fn file_ref(f: &SpillFile) -> FileRef {
        FileRef {
            path: f.path.clone(),
            size: f.len,
        }
    }

    /// Writes the value to disk and drops it from memory (MemPool.jl's
    /// `movetodisk`); a later [`get`](Pool::get) reads it back and makes it most
    /// recent. A value already on disk is not written again.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::Spill`] when the write fails (the
    /// value stays in memory).
    pub fn move_to_disk(&self, r: &DRef) -> Result<FileRef> {
        let (mut st, idx) = self.lock_settled(r)?;
        st.unlink_resident(idx);
        let slot = &mut st.slots[idx as usize];
        let e = slot.entry_mut();
        if let Some(f) = e.file.as_deref() {
            let f = Self::file_ref(f);
            let m = e.mem.take();
            drop(st);
            release(m);
            return Ok(f);
        }
        let value = Arc::clone(e.mem.as_ref().expect("in memory when not on disk"));
        let size = e.size;
        slot.set_spilling(true);
        st.spilling_bytes += size;
        drop(st);
        let victim = Victim {
            idx,
            gen: split_id(r.id).1,
            value,
            size,
            why: Why::Move,
        };
        if let Some(err) = self.spill_all(vec![victim]) {
            return Err(err);
        }
        let st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let e = st.slots[idx as usize].entry.as_ref().expect("found");
        match e.file.as_deref() {
            Some(f) => Ok(Self::file_ref(f)),
            // Restored and evicted again meanwhile cannot lose the file; only
            // a delete (handled above) removes it.
            None => Err(PoolError::NotFound { dref: *r }),
        }
    }

    /// Writes a disk copy of the value and keeps it in memory (MemPool.jl's
    /// `copytodisk`). Later evictions of the value need not write it again.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::DiskFull`] or [`PoolError::Frame`]
    /// when the write fails (nothing changes).
    pub fn copy_to_disk(&self, r: &DRef) -> Result<FileRef> {
        let (mut st, idx) = self.lock_settled(r)?;
        let slot = &mut st.slots[idx as usize];
        let gen = slot.gen();
        let e = slot.entry_mut();
        if let Some(f) = e.file.as_deref() {
            return Ok(Self::file_ref(f));
        }
        let value = Arc::clone(e.mem.as_ref().expect("in memory when not on disk"));
        let size = e.size;
        slot.set_flushing(true);
        drop(st);
        self.write_one(Victim {
            idx,
            gen,
            value,
            size,
            why: Why::Flush,
        })?;
        let st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let e = st.slots[idx as usize].entry.as_ref().expect("found");
        e.file
            .as_deref()
            .map(Self::file_ref)
            .ok_or(PoolError::NotFound { dref: *r })
    }

    /// Writes the value to `path` as a frame (MemPool.jl's `savetodisk`): to a
    /// temporary name first, then renamed (and, with
    /// [`PoolConfig::sync_saves`], synced). The pool neither tracks nor ever
    /// removes this file, and the value's place in the eviction order and the
    /// accounting do not change. Read it back with [`FileRef::read`].
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::InvalidPath`] for a path inside
    /// the pool's session directory (which is removed at shutdown);
    /// [`PoolError::Frame`] for I/O errors naming the file, or when the
    /// value's spill file is corrupt (it is verified before being copied).
    pub fn save_to_disk(&self, r: &DRef, path: impl AsRef<Path>) -> Result<FileRef> {
        let path = path.as_ref();
        let abs = std::path::absolute(path).map_err(|source| PoolError::Io {
            op: "resolving",
            path: path.to_owned(),
            source,
        })?;
        if abs.starts_with(self.session_dir()) {
            return Err(PoolError::InvalidPath {
                path: path.to_owned(),
                reason: "it is inside the pool's session directory, which is removed at shutdown",
            });
        }
        let st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let e = st.slots[idx as usize].entry.as_ref().expect("found");
        let mem = e.mem.clone();
        let file = e.file.as_deref().cloned();
        drop(st);
        let sync = self.inner.config.sync_saves;
        let size = if let Some(v) = mem {
            let frame = v.encode()?;
            mempool_serde::write_encoded_file(&frame, path, sync)?
        } else {
            let file = file.expect("an entry is in memory or on disk");
            let bytes = match crate::mapped::map_spill(&file.path) {
                Ok(b) => b,
                Err(_) if !self.contains(r) => return Err(PoolError::NotFound { dref: *r }),
                Err(e) => return Err(e.into()),
            };
            // Verify before copying: a corrupt spill file is an error, not a save.
            Frame::parse(&bytes, &ReadOptions::default())?;
            write_bytes_atomic(bytes.as_slice(), path, sync)?
        };
        Ok(FileRef {
            path: path.to_owned(),
            size,
        })
    }

    /// A snapshot of the accounting and counters.
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        let c = &self.inner.counters;
        Stats {
            mem_values: st.mem_values,
            mem_bytes: st.mem_bytes,
            spilling_bytes: st.spilling_bytes,
            disk_values: st.disk_values,
            disk_bytes: st.disk_bytes,
            detached_bytes: Counters::get(&c.detached_bytes),
            hits: st.hits,
            misses: st.misses,
            evictions: st.evictions,
            spills: st.spills,
            spill_failures: st.spill_failures,
            restores: st.restores,
            bytes_written: Counters::get(&c.bytes_written),
            bytes_read: Counters::get(&c.bytes_read),
        }
    }
}

/// The flusher thread: waits for a kick, then writes disk copies while
/// write-behind wants them. After a failed write it pauses, so that a full
/// disk is not retried in a loop.
fn flusher(pool: &Pool, ctl: &FlushCtl) {
    loop {
        {
            let mut t = ctl.thread.lock().unwrap_or_else(|e| e.into_inner());
            while !ctl.pending.load(Ordering::Acquire) && !ctl.stopping.load(Ordering::SeqCst) {
                t = ctl.cv.wait(t).unwrap_or_else(|e| e.into_inner());
            }
        }
        if ctl.stopping.load(Ordering::SeqCst) {
            return;
        }
        ctl.pending.store(false, Ordering::Release);
        loop {
            let Some(v) = pool.pick_flush(&mut pool.lock()) else {
                break;
            };
            // A panic in a user's encoder must not end write-behind: the
            // victim's guard has already put it back.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.write_one(v)))
                .is_ok_and(|r| r.is_ok());
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            if ctl.stopping.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

/// Writes `bytes` to `dest` through a unique temporary name in the same
/// directory and a rename; the temporary file is removed on any error.
fn write_bytes_atomic(bytes: &[u8], dest: &Path, sync: bool) -> Result<u64> {
    use std::io::Write as _;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let io = |source, p: &Path| {
        PoolError::Frame(FrameError::Io {
            path: Some(p.to_owned()),
            source,
        })
    };
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, dest)?;
        if sync {
            if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(bytes.len() as u64),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(io(e, dest))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::AtomicU8;
    use std::time::{Duration, Instant};

    use mempool_serde::{FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter};

    use super::*;

    /// How a [`Flaky`] value behaves when written.
    const OK: u8 = 0;
    const FAIL: u8 = 1;
    const PANIC: u8 = 2;
    const SLOW_FAIL: u8 = 3;

    /// A value whose writes succeed, fail, panic or fail slowly on command.
    #[derive(Debug, Clone)]
    struct Flaky {
        bytes: Vec<u8>,
        mode: Arc<AtomicU8>,
    }

    impl Flaky {
        fn new(seed: u8, len: usize, mode: &Arc<AtomicU8>) -> Self {
            Self {
                bytes: (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect(),
                mode: Arc::clone(mode),
            }
        }
    }

    impl FrameType for Flaky {
        fn type_name() -> Cow<'static, str> {
            "test::Flaky".into()
        }
    }

    impl MmWrite for Flaky {
        fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
            match self.mode.load(Ordering::SeqCst) {
                OK => {
                    w.bytes(&self.bytes);
                    Ok(())
                }
                PANIC => panic!("Flaky: told to panic"),
                m => {
                    if m == SLOW_FAIL {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(FrameError::Io {
                        path: None,
                        source: std::io::Error::other("Flaky: told to fail"),
                    })
                }
            }
        }
    }

    impl MmRead for Flaky {
        fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
            Ok(Self {
                bytes: r.bytes()?.to_vec(),
                mode: Arc::new(AtomicU8::new(OK)),
            })
        }
    }

    impl MemSize for Flaky {
        fn mem_size(&self) -> u64 {
            self.bytes.len() as u64
        }
    }

    fn pool(dir: &tempfile::TempDir, max: u64, policy: crate::Policy) -> Pool {
        Pool::new(
            PoolConfig::default()
                .max_memsize(max)
                .policy(policy)
                .spill_dir(dir.path()),
        )
        .unwrap()
    }

    fn check(p: &Pool) {
        p.lock().check_invariants(p.config().max_memsize);
    }

    fn spill_files(p: &Pool) -> usize {
        std::fs::read_dir(p.session_dir())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "frame")
            })
            .count()
    }

    #[test]
    fn pool_is_send_sync_clone() {
        fn assert<T: Send + Sync + Clone + 'static>() {}
        assert::<Pool>();
        assert::<Ref<Vec<u8>>>();
    }

    #[test]
    fn failed_victim_write_stores_nothing_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 1000, crate::Policy::Lru);
        let mode = Arc::new(AtomicU8::new(FAIL));
        let a = p.set(Flaky::new(1, 600, &mode)).unwrap();
        let err = p.set(Flaky::new(2, 600, &mode)).unwrap_err();
        assert!(
            matches!(err, PoolError::Spill { dref, .. } if dref == a),
            "{err}"
        );
        check(&p);
        let s = p.stats();
        assert_eq!((s.mem_values, s.mem_bytes, s.spilling_bytes), (1, 600, 0));
        assert_eq!((s.disk_values, s.disk_bytes, s.spill_failures), (0, 0, 1));
        assert_eq!(
            p.get::<Flaky>(&a).unwrap().bytes,
            Flaky::new(1, 600, &mode).bytes
        );
        // Once writes work again, the same set succeeds.
        mode.store(OK, Ordering::SeqCst);
        let b = p.set(Flaky::new(2, 600, &mode)).unwrap();
        check(&p);
        assert!(p.is_on_disk(&a).unwrap() && !p.is_in_memory(&a).unwrap());
        assert!(p.is_in_memory(&b).unwrap());
        assert_eq!(spill_files(&p), 1);
    }

    #[test]
    fn panic_while_encoding_puts_the_victim_back() {
        let dir = tempfile::tempdir().unwrap();
        // Write-behind off: the panic must reach this caller, not the flusher
        // (flusher_failures.rs covers that one).
        let p = Pool::new(
            PoolConfig::default()
                .max_memsize(1000)
                .write_behind(false)
                .spill_dir(dir.path()),
        )
        .unwrap();
        let bad = Arc::new(AtomicU8::new(PANIC));
        let good = Arc::new(AtomicU8::new(OK));
        let a = p.set(Flaky::new(1, 400, &bad)).unwrap();
        let b = p.set(Flaky::new(2, 400, &good)).unwrap();
        // Needs both out of memory: `a` panics first, `b` is never reached.
        let p2 = p.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            p2.set(Flaky::new(3, 900, &Arc::new(AtomicU8::new(OK))))
        }));
        assert!(r.is_err(), "the encode panic reaches the caller");
        check(&p);
        let s = p.stats();
        assert_eq!(s.spilling_bytes, 0, "{s:?}");
        assert_eq!((s.mem_values, s.mem_bytes), (2, 800), "{s:?}");
        // Nothing is stuck: both can be moved or read, and set works again.
        bad.store(OK, Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let p3 = p.clone();
        std::thread::spawn(move || {
            let r = p3.move_to_disk(&a).map(|_| ());
            tx.send(r.is_ok()).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "move_to_disk hangs or fails"
        );
        assert_eq!(p.get::<Flaky>(&b).unwrap().bytes.len(), 400);
        p.set(Flaky::new(3, 900, &good)).unwrap();
        check(&p);
    }

    #[test]
    fn a_reused_slot_never_answers_for_an_old_ref() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 1 << 20, crate::Policy::Lru);
        let a = p.set(vec![1u8; 10]).unwrap();
        let (idx, _) = split_id(a.id);
        p.delete(&a).unwrap();
        let b = p.set(vec![2u8; 10]).unwrap();
        assert_eq!(split_id(b.id).0, idx, "the slot is reused");
        assert!(matches!(
            p.get::<Vec<u8>>(&a),
            Err(PoolError::NotFound { .. })
        ));
        // At the last generation the slot retires instead of wrapping.
        p.lock().set_gen(idx, u32::MAX);
        let last = p.dref(idx, u32::MAX, 10);
        p.delete(&last).unwrap();
        let c = p.set(vec![3u8; 10]).unwrap();
        assert_ne!(split_id(c.id).0, idx, "a retired slot is not reused");
        check(&p);
    }

    #[test]
    fn set_that_failed_slowly_leaves_no_orphan_under_mru() {
        // While one set's victim fails slowly, other sets
        // run; afterwards everything is accounted and no file is orphaned.
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 1000, crate::Policy::Mru);
        let slow = Arc::new(AtomicU8::new(SLOW_FAIL));
        let ok = Arc::new(AtomicU8::new(OK));
        let a = p.set(Flaky::new(1, 400, &slow)).unwrap();
        let b = p.set(Flaky::new(2, 400, &ok)).unwrap();
        let t = {
            let p = p.clone();
            let ok = Arc::clone(&ok);
            std::thread::spawn(move || {
                let mut refs = Vec::new();
                for i in 0..20 {
                    if let Ok(r) = p.set(Flaky::new(10 + i, 300, &ok)) {
                        refs.push(r);
                    }
                }
                refs
            })
        };
        let _ = p.set(Flaky::new(3, 700, &ok));
        let refs = t.join().unwrap();
        check(&p);
        for r in refs.iter().chain([&a, &b]) {
            p.delete(r).unwrap();
        }
        // Whatever else got stored is reachable only through info; delete
        // what is left by scanning the index.
        let left: Vec<DRef> = {
            let st = p.lock();
            (0..st.slots.len() as u32)
                .filter(|&i| st.slots[i as usize].entry.is_some())
                .map(|i| p.dref(i, st.slots[i as usize].gen(), 0))
                .collect()
        };
        for r in &left {
            p.delete(r).unwrap();
        }
        let s = p.stats();
        assert_eq!(
            (s.mem_bytes, s.spilling_bytes, s.disk_values, s.disk_bytes),
            (0, 0, 0, 0)
        );
        assert_eq!(spill_files(&p), 0);
    }

    #[test]
    fn invariants_hold_under_concurrent_churn() {
        const THREADS: usize = 6;
        const OPS: usize = 400;
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 64 << 10, crate::Policy::Lru);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checker = {
            let p = p.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    check(&p);
                    n += 1;
                    std::thread::yield_now();
                }
                n
            })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut mine: Vec<(DRef, u8)> = Vec::new();
                    for i in 0..OPS {
                        assert!(Instant::now() < deadline, "worker {t} too slow: livelock?");
                        let k = (t * 7919 + i * 104_729) % 10;
                        let seed = (t * OPS + i) as u8;
                        match k {
                            0..=3 => mine.push((p.set(vec![seed; 9000 + k * 1000]).unwrap(), seed)),
                            4..=6 if !mine.is_empty() => {
                                let (r, s) = mine[i % mine.len()];
                                let v = p.get::<Vec<u8>>(&r).unwrap();
                                assert!(v.iter().all(|&x| x == s), "value {r:?} changed");
                            }
                            7 if !mine.is_empty() => {
                                let (r, _) = mine.swap_remove(i % mine.len());
                                p.delete(&r).unwrap();
                            }
                            8 if !mine.is_empty() => {
                                p.move_to_disk(&mine[i % mine.len()].0).unwrap();
                            }
                            9 if !mine.is_empty() => {
                                p.copy_to_disk(&mine[i % mine.len()].0).unwrap();
                            }
                            _ => {}
                        }
                    }
                    for (r, _) in mine {
                        p.delete(&r).unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(checker.join().unwrap() > 0);
        check(&p);
        let s = p.stats();
        assert_eq!(
            (s.mem_bytes, s.spilling_bytes, s.disk_values, s.disk_bytes),
            (0, 0, 0, 0),
            "{s:?}"
        );
        assert_eq!(spill_files(&p), 0);
    }

    #[test]
    fn save_to_disk_refuses_the_session_directory_and_verifies_spill_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 1 << 20, crate::Policy::Lru);
        let r = p.set(vec![7u8; 1000]).unwrap();
        let inside = p.session_dir().join("mine.frame");
        assert!(matches!(
            p.save_to_disk(&r, &inside),
            Err(PoolError::InvalidPath { .. })
        ));
        let f = p.move_to_disk(&r).unwrap();
        let mut bytes = std::fs::read(&f.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&f.path, &bytes).unwrap();
        let target = dir.path().join("saved.frame");
        let err = p.save_to_disk(&r, &target).unwrap_err();
        assert!(
            matches!(err, PoolError::Frame(FrameError::BodyChecksum { .. })),
            "{err}"
        );
        assert!(!target.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
