//! [`Pool`]: the memory-bounded store, its bookkeeping and its spills.
//!
//! Locking: one mutex guards the index (slots, the eviction list, the byte
//! counts). Every operation holds it only for O(1) index changes and to pick
//! victims; encoding, file writes, reads and drops of values happen after it
//! is released.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mempool_serde::{EncodedFrame, FrameError, ReadOptions};

use crate::config::PoolConfig;
use crate::dref::{DRef, FileRef};
use crate::error::{PoolError, Result};
use crate::eviction::{Link, Links, Recency};
use crate::session::SessionDir;
use crate::stats::{Counters, Stats};
use crate::storable::Storable;

/// A value as the pool holds it: the value, its counted size, and the flag
/// that moves its bytes to `detached_bytes` once the pool lets go of it.
struct Held<T> {
    value: T,
    size: u64,
    detached: AtomicBool,
    counters: Arc<Counters>,
}

impl<T> Held<T> {
    fn new(value: T, size: u64, counters: Arc<Counters>) -> Self {
        Self {
            value,
            size,
            detached: AtomicBool::new(false),
            counters,
        }
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if *self.detached.get_mut() {
            self.counters
                .detached_bytes
                .fetch_sub(self.size, Ordering::Relaxed);
        }
    }
}

/// The type-erased face of a `Held<T>`.
trait Stored: Send + Sync + 'static {
    fn encode(&self) -> Result<EncodedFrame<'_>, FrameError>;
    /// The pool lets go of this value: its bytes count as detached until the
    /// last reference drops.
    fn detach(&self);
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: Storable> Stored for Held<T> {
    fn encode(&self) -> Result<EncodedFrame<'_>, FrameError> {
        EncodedFrame::new(&self.value)
    }
    fn detach(&self) {
        if !self.detached.swap(true, Ordering::Relaxed) {
            Counters::add(&self.counters.detached_bytes, self.size);
        }
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// Lets go of values the pool no longer holds (after the lock is released).
fn release(values: Vec<Arc<dyn Stored>>) {
    for v in values {
        v.detach();
        drop(v);
    }
}

/// A value read from a pool: shared, immutable, cheap to clone. The value stays
/// alive while any `Ref` to it does, even if the pool evicts or deletes it
/// meanwhile; its bytes are then reported in [`Stats::detached_bytes`] until
/// the last `Ref` drops.
pub struct Ref<T> {
    held: Arc<Held<T>>,
}

impl<T> Clone for Ref<T> {
    fn clone(&self) -> Self {
        Self {
            held: Arc::clone(&self.held),
        }
    }
}

impl<T> std::ops::Deref for Ref<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.held.value
    }
}

impl<T> AsRef<T> for Ref<T> {
    fn as_ref(&self) -> &T {
        &self.held.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.held.value.fmt(f)
    }
}

impl<T: Clone> Ref<T> {
    /// A copy of the value.
    pub fn to_owned_value(&self) -> T {
        self.held.value.clone()
    }
}

/// Where one value is, from [`Pool::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValueInfo {
    /// Bytes the value counts in memory (its size when last resident; a value
    /// read back from a mapped file counts the mapped bytes).
    pub mem_size: u64,
    /// Whether it is in memory.
    pub in_memory: bool,
    /// Whether a spill of it is in progress.
    pub spilling: bool,
    /// Length of its spill file, if it has one.
    pub disk_size: Option<u64>,
    /// Its type's frame name.
    pub type_name: String,
}

#[derive(Debug, Clone)]
struct SpillFile {
    path: PathBuf,
    len: u64,
}

/// The type of a stored value, kept in its slot (a static vtable, no allocation).
trait TypeTag: Sync {
    fn type_id(&self) -> TypeId;
    fn type_name(&self) -> Cow<'static, str>;
}

struct Tag<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Storable> Tag<T> {
    const TAG: &'static Self = &Tag(std::marker::PhantomData);
}

impl<T: Storable> TypeTag for Tag<T> {
    fn type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }
    fn type_name(&self) -> Cow<'static, str> {
        T::type_name()
    }
}

struct Entry {
    size: u64,
    /// The value in memory (resident, or being spilled).
    mem: Option<Arc<dyn Stored>>,
    tag: &'static dyn TypeTag,
    /// The spill file, once written.
    file: Option<Box<SpillFile>>,
}

const LINKED: u8 = 1;
const SPILLING: u8 = 2;

/// One value's slot: the recency links and the entry share one cache line.
#[repr(C, align(64))]
struct Slot {
    prev: u32,
    next: u32,
    gen: u32,
    flags: u8,
    entry: Option<Entry>,
}

impl Slot {
    fn spilling(&self) -> bool {
        self.flags & SPILLING != 0
    }
    fn set_spilling(&mut self, on: bool) {
        if on {
            self.flags |= SPILLING;
        } else {
            self.flags &= !SPILLING;
        }
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

struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    recency: Recency,
    mem_values: u64,
    mem_bytes: u64,
    spilling_bytes: u64,
    disk_values: u64,
    disk_bytes: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    restores: u64,
}

impl State {
    fn find(&self, owner: u64, r: &DRef) -> Result<u32> {
        let (idx, gen) = split_id(r.id);
        match self.slots.get(idx as usize) {
            Some(s) if r.owner == owner && s.gen == gen && s.entry.is_some() => Ok(idx),
            _ => Err(PoolError::NotFound { dref: *r }),
        }
    }

    fn entry(&self, owner: u64, r: &DRef) -> Result<(u32, &Entry)> {
        let idx = self.find(owner, r)?;
        Ok((idx, self.slots[idx as usize].entry.as_ref().expect("found")))
    }

    /// The slot at `idx` if it still holds generation `gen`.
    fn live(&mut self, idx: u32, gen: u32) -> Option<&mut Slot> {
        match self.slots.get_mut(idx as usize) {
            Some(s) if s.gen == gen && s.entry.is_some() => Some(s),
            _ => None,
        }
    }

    fn insert(&mut self, entry: Entry, flags: u8) -> (u32, u32) {
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.entry = Some(entry);
            slot.flags = flags;
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
                flags,
                entry: Some(entry),
            });
            (idx, 1)
        }
    }

    /// Empties slot `idx` (which must be out of the recency list).
    fn remove(&mut self, idx: u32) -> Option<Entry> {
        let slot = &mut self.slots[idx as usize];
        let e = slot.entry.take()?;
        slot.gen = slot.gen.wrapping_add(1).max(1);
        slot.flags = 0;
        self.free.push(idx);
        Some(e)
    }

    /// Takes a resident value out of the recency list and the memory count.
    fn unlink_resident(&mut self, idx: u32) -> bool {
        if self.recency.remove(&mut self.slots, idx) {
            let size = self.slots[idx as usize]
                .entry
                .as_ref()
                .map_or(0, |e| e.size);
            self.mem_bytes -= size;
            self.mem_values -= 1;
            true
        } else {
            false
        }
    }

    /// Puts a value into the recency list and the memory count.
    fn link_resident(&mut self, idx: u32) {
        let size = self.slots[idx as usize]
            .entry
            .as_ref()
            .map_or(0, |e| e.size);
        self.recency.insert(&mut self.slots, idx);
        self.mem_bytes += size;
        self.mem_values += 1;
    }
}

fn make_id(idx: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(idx)
}

fn split_id(id: u64) -> (u32, u32) {
    (id as u32, (id >> 32) as u32)
}

/// A spill to perform outside the lock.
struct Victim {
    idx: u32,
    gen: u32,
    value: Arc<dyn Stored>,
    size: u64,
    dref: DRef,
    /// What to do if the write fails: put the value back in memory, or (for a
    /// value too large for memory) forget it.
    keep_on_failure: bool,
}

struct Inner {
    config: PoolConfig,
    owner: u64,
    session: SessionDir,
    state: Mutex<State>,
    counters: Arc<Counters>,
    file_seq: AtomicU64,
    swept: usize,
}

/// One process's memory-bounded object pool (MemPool.jl's `poolset`/`poolget`).
///
/// `Pool` is `Send + Sync` and cheap to clone (clones share the pool). Values
/// are immutable once stored. When the bytes in memory would pass
/// `max_memsize`, the least recently used values (per the policy) are written
/// to the session directory as frames and dropped from memory; a later
/// [`get`](Pool::get) maps the file back — without copying for mempool-arrays
/// types. The session directory is removed when the last clone drops.
///
/// ```
/// use mempool_arrays::PrimitiveArray;
/// use mempool_core::{Pool, PoolConfig};
///
/// let dir = tempfile::tempdir().unwrap();
/// let pool = Pool::new(PoolConfig::default().max_memsize(1 << 20).spill_dir(dir.path())).unwrap();
/// let a = pool.set(PrimitiveArray::from(vec![1.0f64; 100_000])).unwrap(); // 800 kB
/// let b = pool.set(PrimitiveArray::from(vec![2.0f64; 100_000])).unwrap(); // spills `a`
/// assert_eq!(pool.stats().disk_values, 1);
/// let back = pool.get::<PrimitiveArray<f64>>(&a).unwrap(); // mapped back, spills `b`
/// assert_eq!(back.values()[0], 1.0);
/// pool.delete(&a).unwrap();
/// pool.delete(&b).unwrap();
/// ```
#[derive(Clone)]
pub struct Pool {
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
        let state = State {
            slots: Vec::new(),
            free: Vec::new(),
            recency: Recency::new(config.policy),
            mem_values: 0,
            mem_bytes: 0,
            spilling_bytes: 0,
            disk_values: 0,
            disk_bytes: 0,
            hits: 0,
            misses: 0,
            evictions: 0,
            restores: 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                owner,
                session,
                state: Mutex::new(state),
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // Index updates are completed before any call that could panic, so a
        // poisoned lock still guards a consistent index.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dref(&self, idx: u32, gen: u32, size: u64) -> DRef {
        DRef {
            owner: self.inner.owner,
            id: make_id(idx, gen),
            size,
        }
    }

    /// Takes values out of memory (per the policy) until `incoming` more bytes
    /// fit. Values that already have a disk copy are simply dropped (returned
    /// in `release`); the others become victims to write.
    fn make_room(
        &self,
        st: &mut State,
        incoming: u64,
        victims: &mut Vec<Victim>,
        release: &mut Vec<Arc<dyn Stored>>,
    ) {
        let max = self.inner.config.max_memsize;
        while st.mem_bytes + incoming > max {
            let Some(idx) = st.recency.victim() else {
                break;
            };
            st.unlink_resident(idx);
            st.evictions += 1;
            let slot = &mut st.slots[idx as usize];
            let gen = slot.gen;
            let Some(e) = slot.entry.as_mut() else {
                continue;
            };
            if e.file.is_some() {
                if let Some(v) = e.mem.take() {
                    release.push(v);
                }
            } else if let Some(v) = e.mem.clone() {
                let size = e.size;
                slot.set_spilling(true);
                st.spilling_bytes += size;
                victims.push(Victim {
                    idx,
                    gen,
                    value: v,
                    size,
                    dref: DRef {
                        owner: self.inner.owner,
                        id: make_id(idx, gen),
                        size,
                    },
                    keep_on_failure: true,
                });
            }
        }
    }

    fn reserve_disk(&self, st: &mut State, len: u64) -> Result<()> {
        if let Some(max) = self.inner.config.max_disksize {
            if st.disk_bytes + len > max {
                return Err(PoolError::DiskFull {
                    needed: len,
                    used: st.disk_bytes,
                    max,
                });
            }
        }
        st.disk_bytes += len;
        Ok(())
    }

    fn new_file_path(&self, dref: &DRef) -> PathBuf {
        let seq = self.inner.file_seq.fetch_add(1, Ordering::Relaxed);
        self.session_dir()
            .join(format!("{:x}-{}.frame", dref.id, seq))
    }

    /// Encodes and writes `value` to a new spill file, with the disk bytes
    /// reserved first. Returns the file.
    fn write_spill_file(&self, value: &dyn Stored, dref: &DRef) -> Result<SpillFile> {
        let frame = value.encode()?;
        let len = frame.len() as u64;
        self.reserve_disk(&mut self.lock(), len)?;
        let path = self.new_file_path(dref);
        match mempool_serde::write_encoded_file(&frame, &path, false) {
            Ok(_) => {
                Counters::add(&self.inner.counters.spills, 1);
                Counters::add(&self.inner.counters.bytes_written, len);
                Ok(SpillFile { path, len })
            }
            Err(e) => {
                self.lock().disk_bytes -= len;
                Err(e.into())
            }
        }
    }

    /// Writes a victim out and settles the index. On failure the value stays
    /// in memory (or, for a value too large for memory, is forgotten) and the
    /// error is returned.
    fn spill(&self, v: Victim) -> Result<()> {
        let written = self.write_spill_file(&*v.value, &v.dref);
        let mut st = self.lock();
        st.spilling_bytes -= v.size;
        match written {
            Ok(file) => {
                let mut release = vec![v.value];
                let orphan = match st.live(v.idx, v.gen) {
                    Some(slot) => {
                        slot.set_spilling(false);
                        let e = slot.entry.as_mut().expect("live");
                        release.extend(e.mem.take());
                        if e.file.is_some() {
                            // A copy_to_disk finished first: keep its file.
                            st.disk_bytes -= file.len;
                            Some(file.path)
                        } else {
                            e.file = Some(Box::new(file));
                            st.disk_values += 1;
                            None
                        }
                    }
                    None => {
                        // Deleted while we wrote: the file is nobody's.
                        st.disk_bytes -= file.len;
                        Some(file.path)
                    }
                };
                drop(st);
                release_all(release);
                if let Some(p) = orphan {
                    let _ = std::fs::remove_file(p);
                }
                Ok(())
            }
            Err(err) => {
                Counters::add(&self.inner.counters.spill_failures, 1);
                let mut dropped = None;
                if st.live(v.idx, v.gen).is_some() {
                    if v.keep_on_failure {
                        st.slots[v.idx as usize].set_spilling(false);
                        let State { slots, recency, .. } = &mut *st;
                        recency.reinsert_as_victim(slots, v.idx);
                        st.mem_bytes += v.size;
                        st.mem_values += 1;
                    } else {
                        dropped = st.remove(v.idx);
                    }
                }
                drop(st);
                drop(dropped);
                drop(v.value);
                Err(PoolError::Spill {
                    dref: v.dref,
                    source: Box::new(err),
                })
            }
        }
    }

    /// Stores `value` (MemPool.jl's `poolset`) and returns its reference. If
    /// memory is full, values leave memory first (written to disk unless they
    /// already have a disk copy). A value larger than `max_memsize` goes
    /// straight to disk.
    ///
    /// # Errors
    /// - [`PoolError::Spill`] when making room failed (disk full, unwritable
    ///   directory): the new value is not stored, and every value stored before
    ///   stays readable (those that could not be written stay in memory);
    /// - [`PoolError::DiskFull`] (inside `Spill`) when `max_disksize` is reached;
    /// - [`PoolError::Frame`] when the value cannot be encoded.
    pub fn set<T: Storable>(&self, value: T) -> Result<DRef> {
        let size = value.mem_size();
        let held: Arc<dyn Stored> =
            Arc::new(Held::new(value, size, Arc::clone(&self.inner.counters)));
        let entry = Entry {
            size,
            mem: Some(Arc::clone(&held)),
            tag: Tag::<T>::TAG,
            file: None,
        };
        if size > self.inner.config.max_memsize {
            // Too large for memory: straight to disk.
            let mut st = self.lock();
            let (idx, gen) = st.insert(entry, SPILLING);
            st.spilling_bytes += size;
            drop(st);
            let dref = self.dref(idx, gen, size);
            self.spill(Victim {
                idx,
                gen,
                value: held,
                size,
                dref,
                keep_on_failure: false,
            })?;
            return Ok(dref);
        }
        drop(held);
        let mut victims = Vec::new();
        let mut release = Vec::new();
        let mut st = self.lock();
        self.make_room(&mut st, size, &mut victims, &mut release);
        let (idx, gen) = st.insert(entry, 0);
        st.link_resident(idx);
        drop(st);
        let dref = self.dref(idx, gen, size);
        if victims.is_empty() && release.is_empty() {
            return Ok(dref);
        }
        release_all(release);
        let mut first_err = None;
        for v in victims {
            if let Err(e) = self.spill(v) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(err) = first_err {
            // Memory may be over the bound with the failed victims back: undo
            // this set so that the bound holds again.
            let mut st = self.lock();
            let mut removed = None;
            if st.live(idx, gen).is_some_and(|s| !s.spilling()) {
                st.unlink_resident(idx);
                removed = st.remove(idx);
            }
            drop(st);
            drop(removed);
            return Err(err);
        }
        Ok(dref)
    }

    fn type_check<T: Storable>(r: &DRef, e: &Entry) -> Result<()> {
        if e.tag.type_id() == TypeId::of::<T>() {
            Ok(())
        } else {
            Err(PoolError::TypeMismatch {
                dref: *r,
                expected: T::type_name().into_owned(),
                found: e.tag.type_name().into_owned(),
            })
        }
    }

    fn downcast<T: Storable>(v: Arc<dyn Stored>) -> Ref<T> {
        match v.into_any().downcast::<Held<T>>() {
            Ok(held) => Ref { held },
            // The entry's type was checked against T before.
            Err(_) => unreachable!("type checked before downcast"),
        }
    }

    /// Reads a value (MemPool.jl's `poolget`): from memory without a copy, or
    /// from disk by mapping its spill file (the value then becomes resident and
    /// most recent, which may spill others). The returned [`Ref`] keeps the
    /// value alive even if the pool evicts or deletes it meanwhile.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::TypeMismatch`] naming both types;
    /// [`PoolError::Frame`] when the spill file is unreadable or corrupt
    /// (checksum mismatch) — never wrong data.
    pub fn get<T: Storable>(&self, r: &DRef) -> Result<Ref<T>> {
        let mut st = self.lock();
        let (idx, e) = st.entry(self.inner.owner, r)?;
        Self::type_check::<T>(r, e)?;
        if let Some(v) = &e.mem {
            let v = Arc::clone(v);
            let State { slots, recency, .. } = &mut *st;
            if slots[idx as usize].flags & LINKED != 0 {
                recency.touch(slots, idx);
            }
            st.hits += 1;
            drop(st);
            return Ok(Self::downcast(v));
        }
        let Some(file) = e.file.as_deref().cloned() else {
            unreachable!("an entry is in memory or on disk");
        };
        st.misses += 1;
        drop(st);
        self.restore::<T>(r, idx, split_id(r.id).1, &file)
    }

    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            verify_checksum: self.inner.config.verify_checksums,
        }
    }

    fn restore<T: Storable>(
        &self,
        r: &DRef,
        idx: u32,
        gen: u32,
        file: &SpillFile,
    ) -> Result<Ref<T>> {
        let value: T = match mempool_serde::read_file_with(&file.path, &self.read_options()) {
            Ok(v) => v,
            Err(e) => {
                // Deleted while we read: report that rather than the I/O error.
                if self.lock().find(self.inner.owner, r).is_err() {
                    return Err(PoolError::NotFound { dref: *r });
                }
                return Err(e.into());
            }
        };
        Counters::add(&self.inner.counters.bytes_read, file.len);
        let size = value.mem_size();
        let held = Arc::new(Held::new(value, size, Arc::clone(&self.inner.counters)));
        if size > self.inner.config.max_memsize {
            held.detach();
            return Ok(Ref { held });
        }
        let mut victims = Vec::new();
        let mut release = Vec::new();
        let mut st = self.lock();
        let shared = match st.live(idx, gen) {
            None => None,
            Some(slot) => slot.entry.as_ref().expect("live").mem.clone(),
        };
        if let Some(v) = shared {
            // Another thread restored it first: share that copy.
            drop(st);
            held.detach();
            return Ok(Self::downcast(v));
        }
        if st.live(idx, gen).is_none() {
            // Deleted meanwhile; the value read was valid when asked for.
            drop(st);
            held.detach();
            return Ok(Ref { held });
        }
        self.make_room(&mut st, size, &mut victims, &mut release);
        let e = st.slots[idx as usize].entry.as_mut().expect("live");
        e.size = size;
        e.mem = Some(Arc::clone(&held) as Arc<dyn Stored>);
        st.link_resident(idx);
        st.restores += 1;
        drop(st);
        release_all(release);
        let mut failed = false;
        for v in victims {
            failed |= self.spill(v).is_err();
        }
        if failed {
            // Keep the bound: this value goes back to living on disk only.
            let mut st = self.lock();
            let mut back = None;
            if st.live(idx, gen).is_some() && st.unlink_resident(idx) {
                back = st.slots[idx as usize]
                    .entry
                    .as_mut()
                    .and_then(|e| e.mem.take());
            }
            drop(st);
            release_all(back.into_iter().collect());
        }
        Ok(Ref { held })
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
        let Some(mut e) = st.remove(idx) else {
            unreachable!("entry exists");
        };
        if let Some(f) = &e.file {
            st.disk_bytes -= f.len;
            st.disk_values -= 1;
        }
        drop(st);
        if let Some(m) = e.mem.take() {
            release_all(vec![m]);
        }
        if let Some(f) = e.file {
            let _ = std::fs::remove_file(&f.path);
        }
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
        let (idx, e) = st.entry(self.inner.owner, r)?;
        Ok(ValueInfo {
            mem_size: e.size,
            in_memory: e.mem.is_some(),
            spilling: st.slots[idx as usize].spilling(),
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

    /// Waits (briefly) for a spill of `r` in progress to finish; returns the
    /// lock and the value's slot index.
    fn wait_not_spilling(&self, r: &DRef) -> Result<(MutexGuard<'_, State>, u32)> {
        loop {
            let st = self.lock();
            let idx = st.find(self.inner.owner, r)?;
            if !st.slots[idx as usize].spilling() {
                return Ok((st, idx));
            }
            drop(st);
            std::thread::yield_now();
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
        let (mut st, idx) = self.wait_not_spilling(r)?;
        st.unlink_resident(idx);
        let slot = &mut st.slots[idx as usize];
        let e = slot.entry.as_mut().expect("found");
        if let Some(f) = e.file.as_deref().cloned() {
            let m = e.mem.take();
            drop(st);
            release_all(m.into_iter().collect());
            return Ok(FileRef {
                path: f.path,
                size: f.len,
            });
        }
        let value = Arc::clone(e.mem.as_ref().expect("in memory when not on disk"));
        let size = e.size;
        slot.set_spilling(true);
        st.spilling_bytes += size;
        drop(st);
        self.spill(Victim {
            idx,
            gen: split_id(r.id).1,
            value,
            size,
            dref: *r,
            keep_on_failure: true,
        })?;
        let st = self.lock();
        let (_, e) = st.entry(self.inner.owner, r)?;
        let f = e.file.as_deref().expect("spilled");
        Ok(FileRef {
            path: f.path.clone(),
            size: f.len,
        })
    }

    /// Writes a disk copy of the value and keeps it in memory (MemPool.jl's
    /// `copytodisk`). Later evictions of the value need not write it again.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::DiskFull`] or [`PoolError::Frame`]
    /// when the write fails (nothing changes).
    pub fn copy_to_disk(&self, r: &DRef) -> Result<FileRef> {
        let (st, idx) = self.wait_not_spilling(r)?;
        let e = st.slots[idx as usize].entry.as_ref().expect("found");
        if let Some(f) = &e.file {
            return Ok(FileRef {
                path: f.path.clone(),
                size: f.len,
            });
        }
        let value = Arc::clone(e.mem.as_ref().expect("in memory when not on disk"));
        drop(st);
        let file = self.write_spill_file(&*value, r)?;
        let mut st = self.lock();
        let gen = split_id(r.id).1;
        let mut orphan = None;
        let result = match st.live(idx, gen).map(|s| s.entry.as_mut().expect("live")) {
            Some(e) if e.file.is_none() => {
                e.file = Some(Box::new(file.clone()));
                st.disk_values += 1;
                Ok(FileRef {
                    path: file.path,
                    size: file.len,
                })
            }
            Some(e) => {
                // Another thread wrote a copy first; keep that one.
                let f = e.file.as_deref().cloned().expect("checked");
                st.disk_bytes -= file.len;
                orphan = Some(file.path);
                Ok(FileRef {
                    path: f.path,
                    size: f.len,
                })
            }
            None => {
                st.disk_bytes -= file.len;
                orphan = Some(file.path);
                Err(PoolError::NotFound { dref: *r })
            }
        };
        drop(st);
        drop(value);
        if let Some(p) = orphan {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    /// Writes the value to `path` as a frame (MemPool.jl's `savetodisk`): to a
    /// temporary name first, then renamed. The pool neither tracks nor ever
    /// removes this file, and the value's place in the eviction order and the
    /// accounting do not change. Read it back with [`FileRef::read`].
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::Frame`] for I/O errors naming the file.
    pub fn save_to_disk(&self, r: &DRef, path: impl AsRef<Path>) -> Result<FileRef> {
        let path = path.as_ref();
        let st = self.lock();
        let (_, e) = st.entry(self.inner.owner, r)?;
        let mem = e.mem.clone();
        let file = e.file.as_deref().cloned();
        drop(st);
        let size = if let Some(v) = mem {
            let frame = v.encode()?;
            mempool_serde::write_encoded_file(&frame, path, self.inner.config.sync_saves)?
        } else {
            let file = file.expect("an entry is in memory or on disk");
            copy_file_atomic(&file.path, path, self.inner.config.sync_saves)?
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
            spills: Counters::get(&c.spills),
            spill_failures: Counters::get(&c.spill_failures),
            restores: st.restores,
            bytes_written: Counters::get(&c.bytes_written),
            bytes_read: Counters::get(&c.bytes_read),
        }
    }
}

fn release_all(values: Vec<Arc<dyn Stored>>) {
    release(values);
}

/// Copies a spill file to `dest` through a temporary name and a rename.
fn copy_file_atomic(src: &Path, dest: &Path, sync: bool) -> Result<u64> {
    let io = |source, p: &Path| {
        PoolError::Frame(FrameError::Io {
            path: Some(p.to_owned()),
            source,
        })
    };
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let n = std::fs::copy(src, &tmp).map_err(|e| io(e, src))?;
    if sync {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(e, &tmp))?;
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e, dest)
    })?;
    Ok(n)
}
