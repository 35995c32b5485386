//! [`Pool`]: the public face of the memory-bounded store.
//!
//! The work is split by responsibility: the index and each value's
//! [`Place`](crate::index::Place) in `index.rs`, room admission and waits in
//! `room.rs`, the spill pipeline and disk budget in `spill.rs`, write-behind
//! in `flusher.rs`. This file holds the operations users call.
//!
//! # Locking
//! The index is sharded (shard.rs): each shard's slots and recency list
//! have their own lock. A `get` of a value in memory and a `set` that fits
//! in its shard's credit take only that shard's lock; every other
//! operation takes the index lock, and under it the shard locks it needs
//! (index.rs). Values leave memory in the order of one recency list for
//! the operations of one thread and for those of one shard; operations of
//! different threads on different shards in the order of a coarse clock,
//! those within one tick of it (4 ms on Linux) either way round (shard.rs,
//! "The order kept").
//! Every operation holds its locks only for O(1) index changes and to pick
//! victims; encoding, file writes, reads, and drops of values happen after
//! they are released.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mempool_arrays::Buffer;
use mempool_serde::{EncodedFrame, Frame, ReadOptions, UnsealedFrame};
use parking_lot::{Condvar, Mutex};

use crate::config::PoolConfig;
use crate::dref::{DRef, FileRef};
use crate::error::{PoolError, Result, SetError};
use crate::flusher::{Backoff, FlushCtl};
use crate::frames::StoredFrame;
use crate::held::{downcast, release, FrameValue, Held, Ref, Stored};
use crate::index::{make_id, split_id, tag_of, Place, SpillFile, State, Tag, FRAME_TAG};
use crate::room::{Admitted, Locked, Undo};
use crate::segments::Extent;
use crate::session::SessionDir;
use crate::shard::{next_shard, Shards};
use crate::spill::{Victim, Why};
use crate::stats::{CounterHandle, Counters, Stats};
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
    /// Whether it is stored as a frame (bytes, from [`Pool::set_frame`])
    /// rather than as a live typed value.
    pub is_frame: bool,
}

pub(crate) struct Inner {
    pub(crate) config: PoolConfig,
    owner: u64,
    session: SessionDir,
    state: Mutex<State>,
    /// The index's shards, for the paths that take one shard's lock only.
    shards: Arc<Shards>,
    /// Waiters for room, for a write to settle, for a restore (see room.rs).
    changed: Condvar,
    pub(crate) counters: Arc<Counters>,
    /// Handles to `counters` for the values in memory (see
    /// [`CounterHandle`]).
    handles: Box<[Arc<CounterHandle>]>,
    /// Where spilled frames go.
    pub(crate) segments: crate::segments::Segments,
    pub(crate) backoff: Mutex<Backoff>,
    swept: usize,
}

/// What user clones of a [`Pool`] share beyond the index: dropping the last
/// one stops and joins the flusher thread (which holds the index), so that
/// the index, and with it the session directory, goes when the user's last
/// `Pool` does.
pub(crate) struct Handle {
    pub(crate) flush: Option<Arc<FlushCtl>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(ctl) = &self.flush {
            ctl.stop();
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
/// A pool holds live typed values ([`Pool::set`]) and frames: the bytes of a
/// value whose type this process may not know ([`Pool::set_frame`]), which
/// spill as they are and are read with `get::<T>` by a process that knows
/// `T`. [`Pool::frame`] gives any entry as frame bytes, to send.
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
    pub(crate) handle: Arc<Handle>,
    pub(crate) inner: Arc<Inner>,
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
        let shards = match config.shards {
            0 => Shards::default_count(),
            n if n.is_power_of_two() && n <= 1024 => n,
            n => {
                return Err(PoolError::Config(format!(
                    "shards is {n}; give a power of two up to 1024, or 0 for 32 per core"
                )))
            }
        };
        let owner = random_u64();
        let counters = Arc::new(Counters::default());
        let handles = crate::stats::handles(&counters, shards);
        let (session, swept) = SessionDir::create(&config.spill_dir, owner)?;
        let segments = crate::segments::Segments::new(session.path());
        let mut state = State::new(
            config.policy,
            config.write_behind && config.policy == crate::Policy::Lru,
            shards,
        );
        let shards = Arc::clone(state.shards());
        state.unlock_shards();
        Ok(Self {
            handle: Arc::new(Handle {
                flush: Some(Arc::new(FlushCtl::default())),
            }),
            inner: Arc::new(Inner {
                config,
                owner,
                session,
                state: Mutex::new(state),
                shards,
                changed: Condvar::new(),
                counters,
                handles,
                segments,
                backoff: Mutex::new(Backoff::default()),
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
    /// Its guard wakes waiters when released (see room.rs).
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked::new(self.inner.state.lock(), &self.inner.changed)
    }

    /// This thread's handle to the pool's counters, for a new value in memory.
    fn counter_handle(&self) -> Arc<CounterHandle> {
        let handles = &self.inner.handles;
        Arc::clone(&handles[crate::shard::home(handles.len())])
    }

    pub(crate) fn dref(&self, idx: u32, gen: u32, size: u64) -> DRef {
        DRef {
            owner: self.inner.owner,
            id: make_id(idx, gen),
            size,
        }
    }

    fn read_options(&self) -> ReadOptions {
        ReadOptions {
            verify_checksum: self.inner.config.verify_checksums,
        }
    }

    /// Stores `value` (MemPool.jl's `poolset`) and returns its reference.
    ///
    /// If memory is full, values leave memory first, in policy order
    /// (written to disk unless they already have a disk copy); the new value
    /// is linked only once it fits. A value larger than `max_memsize` goes
    /// straight to disk.
    ///
    /// # Errors
    /// A [`SetError`] holding the value, unchanged, and why (`?` turns it
    /// into that [`PoolError`]):
    /// - [`PoolError::Spill`] when making room failed (disk full, unwritable
    ///   directory, `max_disksize` reached — the cause is its `source`): every
    ///   value stored before stays readable (those that could not be written
    ///   stay in memory);
    /// - for a value larger than `max_memsize`, [`PoolError::DiskFull`] when
    ///   `max_disksize` is reached, [`PoolError::Frame`] when writing fails;
    /// - [`PoolError::Frame`] when the value cannot be encoded.
    pub fn set<T: Storable>(&self, value: T) -> Result<DRef, SetError<T>> {
        let size = value.mem_size();
        if size > self.inner.config.max_memsize {
            // A full disk costs no encoding: room for a header at least first.
            let room = match self.config().max_disksize {
                Some(_) => self
                    .disk_room(mempool_serde::HEADER_LEN as u64, Why::Evict)
                    .map(drop),
                None => Ok(()),
            };
            let written = room
                .and_then(|()| Ok(EncodedFrame::layout(&value)?))
                .and_then(|layout| self.set_on_disk(layout, size, None, tag_of::<T>()));
            return match written {
                Ok(r) => {
                    // Dropping the value runs user code, which may panic: it
                    // is stored by then, so on a panic it is deleted again
                    // (its file removed) before the panic goes on.
                    let dropped =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
                    if let Err(panic) = dropped {
                        let _ = self.delete(&r);
                        std::panic::resume_unwind(panic);
                    }
                    Ok(r)
                }
                Err(error) => Err(SetError { error, value }),
            };
        }
        let held = Arc::new(Held::new(value, size, self.counter_handle()));
        let stored: Arc<dyn Stored> = Arc::clone(&held) as _;
        if let Some(r) = self.link_in_credit(&stored, tag_of::<T>()) {
            return Ok(r);
        }
        match self.admit(self.lock(), size, |_| false) {
            Ok(Admitted::Fits(st, released)) => {
                Ok(self.link_new(st, released, stored, tag_of::<T>()))
            }
            Ok(Admitted::Gone) => unreachable!("a new value cannot be gone"),
            Err(error) => {
                drop(stored);
                let value = Held::unlinked_value(held);
                Err(SetError { error, value })
            }
        }
    }

    /// The fast path of a set: links a new value into the next shard of
    /// this thread's turn under that shard's lock only, if the shard's
    /// credit covers it (see index.rs); `None` otherwise.
    fn link_in_credit(&self, value: &Arc<dyn Stored>, tag: &'static Tag) -> Option<DRef> {
        let shards = &self.inner.shards;
        if !shards.credit_out() {
            return None;
        }
        let s = next_shard(shards.len());
        let (local, gen) = shards.list[s]
            .lock()
            .link_in_credit(value, tag, shards.slot_limit())?;
        crate::shard::stored();
        Some(self.dref(shards.join(s, local), gen, value.size()))
    }

    /// Stores a frame (the bytes of a mempool-serde frame, heap or mapped)
    /// without decoding it: how a process that does not know a value's type
    /// (a worker serving others) stores it. The header and the checksum are
    /// checked first. It counts its bytes against `max_memsize`, spills as
    /// it is (the spill file is the frame), comes back by mapping, and is
    /// read with [`get::<T>`](Pool::get) by a process whose `T` has the
    /// frame's type name.
    ///
    /// # Errors
    /// A [`SetError`] holding the buffer: [`PoolError::Frame`] for bytes that
    /// are not a valid frame (truncated, corrupt, bad checksum), and the
    /// errors of [`Pool::set`].
    pub fn set_frame(&self, bytes: Buffer) -> Result<DRef, SetError<Buffer>> {
        let strict = ReadOptions {
            verify_checksum: true,
        };
        let frame = match Frame::parse(&bytes, &strict) {
            Ok(f) => f,
            Err(e) => {
                return Err(SetError {
                    error: e.into(),
                    value: bytes,
                })
            }
        };
        let size = frame.len() as u64;
        if size > self.inner.config.max_memsize {
            let name = Arc::from(frame.type_name());
            let layout = EncodedFrame::from_frame(&frame).into();
            return self
                .set_on_disk(layout, size, Some(name), FRAME_TAG)
                .map_err(|error| SetError {
                    error,
                    value: bytes,
                });
        }
        let held = Arc::new(Held::new(FrameValue(frame), size, self.counter_handle()));
        let stored: Arc<dyn Stored> = Arc::clone(&held) as _;
        if let Some(r) = self.link_in_credit(&stored, FRAME_TAG) {
            return Ok(r);
        }
        match self.admit(self.lock(), size, |_| false) {
            Ok(Admitted::Fits(st, released)) => Ok(self.link_new(st, released, stored, FRAME_TAG)),
            Ok(Admitted::Gone) => unreachable!("a new value cannot be gone"),
            Err(error) => {
                // Never the pool's: its drop must not count as heap freed.
                drop(stored);
                drop(Held::unlinked_value(held));
                Err(SetError {
                    error,
                    value: bytes,
                })
            }
        }
    }

    /// Links a new value under the lock that admitted it, then lets go of
    /// the values that made room and wakes write-behind if it is wanted.
    fn link_new(
        &self,
        mut st: Locked<'_>,
        released: Vec<Arc<dyn Stored>>,
        value: Arc<dyn Stored>,
        tag: &'static Tag,
    ) -> DRef {
        let size = value.size();
        let (idx, gen) = st.insert_resident(value, tag);
        st.grant_credit(idx, self.inner.config.max_memsize, size);
        let flush = self.wants_flush(&mut st);
        drop(st);
        let r = self.dref(idx, gen, size);
        // Dropping the released values runs user code, which may panic: the
        // new value is stored by then, and its ref would be lost with the
        // panic, so it is deleted again before the panic goes on.
        if let Err(panic) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| release(released)))
        {
            let _ = self.delete(&r);
            std::panic::resume_unwind(panic);
        }
        if flush {
            self.kick_flusher();
        }
        r
    }

    /// Writes a value straight to disk and publishes it as on disk only.
    fn set_on_disk(
        &self,
        layout: UnsealedFrame<'_>,
        size: u64,
        frame_name: Option<Arc<str>>,
        tag: &'static Tag,
    ) -> Result<DRef> {
        let file = self.write_frame(layout, Why::Evict, size, frame_name)?;
        let (idx, gen) = self.lock().insert_on_disk(file, tag);
        Ok(self.dref(idx, gen, size))
    }

    /// Reads a value (MemPool.jl's `poolget`): from memory without a copy, or
    /// from disk by mapping its spill file (the value then becomes resident and
    /// most recent, which may spill others). The returned [`Ref`] keeps the
    /// value alive even if the pool evicts or deletes it meanwhile.
    ///
    /// A value stored as a frame ([`Pool::set_frame`]) is decoded from its
    /// bytes — without a copy for mempool-arrays types, whose buffers share
    /// the frame's — when the frame's type name is `T`'s.
    ///
    /// A value read from disk that does not fit (larger than `max_memsize`, or
    /// memory could not be made: a failed spill) is returned without becoming
    /// resident; it stays on disk.
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::TypeMismatch`] naming both types;
    /// [`PoolError::Frame`] when the spill file is unreadable or corrupt
    /// (checksum mismatch), or a frame does not decode as `T` — never wrong data.
    pub fn get<T: Storable>(&self, r: &DRef) -> Result<Ref<T>> {
        if let Some(got) = self.get_in_memory::<T>(r) {
            return got;
        }
        let mut st = self.lock();
        loop {
            let idx = st.find(self.inner.owner, r)?;
            let linked = st.linked(idx);
            let e = st.entry(idx);
            e.check_type::<T>(r)?;
            if let Some(v) = e.value() {
                let v = Arc::clone(v);
                if linked {
                    st.touch(idx);
                }
                st.hits += 1;
                drop(st);
                return match v.as_frame() {
                    Some(frame) => Ok(self.decode_frame::<T>(frame)?.keeping(v)),
                    None => Ok(downcast(v)),
                };
            }
            if matches!(e.place, Place::Restoring { .. }) {
                // Another caller is reading it back: wait for its copy.
                st = st.wait();
                continue;
            }
            let is_frame = e.is_frame();
            let from = st.start_restore(idx).expect("on disk when not in memory");
            st.misses += 1;
            drop(st);
            let (idx, gen) = split_id(r.id);
            let guard = Undo::new(self, move |st: &mut State| st.abort_restore(idx, gen));
            let extent = from.expect("a pool's spill file has its extent");
            return self.restore::<T>(r, &extent, is_frame, guard);
        }
    }

    /// The fast path of a get: under the value's shard's lock only, a value
    /// in memory (or the error of a ref that names none, or of the wrong
    /// type); `None` for a value not in memory, which takes the index lock.
    fn get_in_memory<T: Storable>(&self, r: &DRef) -> Option<Result<Ref<T>>> {
        let (idx, gen) = split_id(r.id);
        let shards = &self.inner.shards;
        let (s, local) = shards.split(idx);
        let v = {
            let mut sh = shards.list[s].lock();
            let Some(slot) = sh.live(local, gen).filter(|_| r.owner == self.inner.owner) else {
                return Some(Err(PoolError::NotFound { dref: *r }));
            };
            let e = slot.entry();
            if let Err(mismatch) = e.check_type::<T>(r) {
                return Some(Err(mismatch));
            }
            let v = Arc::clone(e.value()?);
            if slot.linked() {
                sh.touch(local);
            }
            sh.hits += 1;
            v
        };
        Some(match v.as_frame() {
            Some(frame) => self.decode_frame::<T>(frame).map(|out| out.keeping(v)),
            None => Ok(downcast(v)),
        })
    }

    /// Decodes a `T` from a frame entry (its name was checked).
    fn decode_frame<T: Storable>(&self, frame: &Frame) -> Result<Ref<T>> {
        let value: T = frame.decode()?;
        let size = value.mem_size();
        let held = Held::new(value, size, self.counter_handle());
        Ok(Ref::from_held(Arc::new(held)))
    }

    /// Reads a spilled value and makes it resident if it fits. `guard` ends
    /// the slot's restore (set by this caller) when the value is linked, or
    /// when this call gives up.
    fn restore<T: Storable>(
        &self,
        r: &DRef,
        extent: &Arc<Extent>,
        is_frame: bool,
        guard: Undo<'_, impl FnOnce(&mut State)>,
    ) -> Result<Ref<T>> {
        let (idx, gen) = split_id(r.id);
        let mapped = |b: &Buffer| b.memory_kind() == mempool_arrays::MemoryKind::Mapped;
        let read = if is_frame {
            self.read_frame_file(extent, self.inner.config.verify_checksums)
                .and_then(|frame| {
                    let out = self.decode_frame::<T>(&frame)?;
                    let size = frame.len() as u64;
                    let is_mapped = mapped(frame.buffer());
                    let held =
                        Held::new(FrameValue(frame), size, self.counter_handle()).mapped(is_mapped);
                    let stored: Arc<dyn Stored> = Arc::new(held);
                    Ok((Arc::clone(&stored), out.keeping(stored)))
                })
        } else {
            self.extent_bytes(extent).and_then(|bytes| {
                let value = mempool_serde::decode_with::<T>(&bytes, &self.read_options())?;
                let size = value.mem_size();
                let held = Held::new(value, size, self.counter_handle()).mapped(mapped(&bytes));
                let held = Arc::new(held);
                Ok((Arc::clone(&held) as Arc<dyn Stored>, Ref::from_held(held)))
            })
        };
        let (stored, out) = match read {
            Ok(v) => v,
            Err(e) => {
                drop(guard);
                // Deleted while we read: report that rather than the I/O error.
                if !self.contains(r) {
                    return Err(PoolError::NotFound { dref: *r });
                }
                return Err(e);
            }
        };
        Counters::add(&self.inner.counters.bytes_read, extent.len());
        let size = stored.size();
        if size > self.inner.config.max_memsize {
            drop(guard);
            stored.detach();
            return Ok(out);
        }
        let gone = |st: &mut State| !st.is_live(idx, gen);
        match self.admit(self.lock(), size, gone) {
            Ok(Admitted::Fits(mut st, released)) => {
                st.finish_restore(idx, stored);
                guard.keep();
                let flush = self.wants_flush(&mut st);
                drop(st);
                release(released);
                if flush {
                    self.kick_flusher();
                }
                Ok(out)
            }
            // Deleted meanwhile (the value read was valid when asked for),
            // or memory could not be made (a failed spill): hand the value
            // out without making it resident; it stays on disk.
            Ok(Admitted::Gone) | Err(_) => {
                drop(guard);
                stored.detach();
                Ok(out)
            }
        }
    }

    /// A spilled frame's bytes: a mapping of its range of its segment that
    /// keeps the range in place while it (or anything decoded from it) lives,
    /// or a copy of a small one (see [`Extent::buffer`]); decompressed into
    /// memory if it was stored compressed.
    fn extent_bytes(&self, extent: &Arc<Extent>) -> Result<Buffer> {
        let bytes = extent.buffer().map_err(|source| {
            PoolError::Frame(mempool_serde::FrameError::Io {
                path: Some(extent.path().to_owned()),
                source,
            })
        })?;
        if mempool_serde::is_compressed(bytes.as_slice()) {
            // Decompressed into memory (never mapped); the raw length is
            // bounded by the container (LZ4 expands at most 255 times).
            return Ok(mempool_serde::decompress_frame(bytes.as_slice(), u64::MAX)?);
        }
        Ok(bytes)
    }

    /// [`Pool::extent_bytes`], and whether they were stored compressed (so
    /// that the file's range is not the frame).
    fn spill_bytes_as_is(&self, file: &SpillFile) -> Result<(Buffer, bool)> {
        let extent = file
            .extent
            .as_ref()
            .expect("a pool's spill file has its extent");
        let bytes = extent.buffer().map_err(|source| {
            PoolError::Frame(mempool_serde::FrameError::Io {
                path: Some(file.path.clone()),
                source,
            })
        })?;
        if mempool_serde::is_compressed(bytes.as_slice()) {
            // Decompressed into memory (never mapped); the raw length is
            // bounded by the container (LZ4 expands at most 255 times).
            return Ok((
                mempool_serde::decompress_frame(bytes.as_slice(), u64::MAX)?,
                true,
            ));
        }
        Ok((bytes, false))
    }

    /// Reads a frame entry's spilled frame and checks it (the checksum too
    /// with `verify`).
    fn read_frame_file(&self, extent: &Arc<Extent>, verify: bool) -> Result<Frame> {
        let bytes = self.extent_bytes(extent)?;
        let opts = ReadOptions {
            verify_checksum: verify,
        };
        Ok(Frame::parse(&bytes, &opts)?)
    }

    /// Any entry as frame bytes, without decoding it — what a worker sends:
    /// for a value on disk, its spill file (mapped, its structure checked; the
    /// body checksum is left to the receiver, which checks it in
    /// [`Pool::set_frame`], or to [`StoredFrame::verify`]; the value does not
    /// become resident and its recency does not change); for a frame entry in
    /// memory, its bytes; for a live typed value, an encoding whose sections
    /// borrow the value's buffers where its writer can ([`StoredFrame::encode`]
    /// computes the checksums, one pass). Send it in chunks with
    /// [`EncodedFrame::chunks`](mempool_serde::EncodedFrame::chunks).
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::Frame`] when the spill file is
    /// unreadable or corrupt.
    pub fn frame(&self, r: &DRef) -> Result<StoredFrame> {
        let mut st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let e = st.entry(idx);
        if let Some(v) = e.value() {
            return Ok(StoredFrame::from_value(Arc::clone(v)));
        }
        let file = e.file().expect("on disk when not in memory").clone();
        drop(st);
        let read = self
            .spill_bytes_as_is(&file)
            .and_then(|(bytes, compressed)| {
                let opts = ReadOptions {
                    verify_checksum: false,
                };
                Ok((Frame::parse(&bytes, &opts)?, compressed))
            });
        match read {
            Ok((frame, frame_was_compressed)) => {
                // The file's range is the frame itself unless it was stored
                // compressed (then the frame is a decompressed heap copy).
                let as_is = !frame_was_compressed && frame.len() as u64 == file.len;
                let range = file.extent.as_ref().filter(|_| as_is).map(Arc::clone);
                Ok(StoredFrame::from_frame(frame, range))
            }
            Err(_) if !self.contains(r) => Err(PoolError::NotFound { dref: *r }),
            Err(e) => Err(e),
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
        let e = st.remove(idx);
        drop(st);
        // The range first: dropping the value runs user code, which may panic.
        // A write in flight of this value settles later and frees its range.
        let value = e.value().cloned();
        drop(e); // frees its range on disk, unless someone reads it
        release(value);
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
        let mut st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        let e = st.entry(idx);
        Ok(ValueInfo {
            mem_size: e.mem_size(),
            in_memory: e.value().is_some(),
            spilling: matches!(e.place, Place::Spilling { .. }),
            disk_size: e.file().map(|f| f.len),
            type_name: e.type_name().into_owned(),
            is_frame: e.is_frame(),
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

    /// Locks and finds `r`, waiting while a write of it is in flight.
    fn lock_settled(&self, r: &DRef) -> Result<(Locked<'_>, u32)> {
        let mut st = self.lock();
        loop {
            let idx = st.find(self.inner.owner, r)?;
            if !st.entry(idx).writing() {
                return Ok((st, idx));
            }
            st = st.wait();
        }
    }

    /// The `FileRef` of `r`'s file once a write of it settled.
    fn file_after_write(&self, r: &DRef) -> Result<FileRef> {
        let mut st = self.lock();
        let idx = st.find(self.inner.owner, r)?;
        st.hand_out(idx)
            // Only a delete (then `find` fails) removes a written file.
            .ok_or(PoolError::NotFound { dref: *r })
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
        if st.entry(idx).value().is_none() {
            return st.hand_out(idx).ok_or(PoolError::NotFound { dref: *r });
        }
        let gen = split_id(r.id).1;
        match st.start_spill(idx) {
            Some(crate::index::Leaving::Dropped(value)) => {
                let f = st.hand_out(idx);
                drop(st);
                release([value]);
                f.ok_or(PoolError::NotFound { dref: *r })
            }
            Some(crate::index::Leaving::Write(value)) => {
                drop(st);
                let victim = Victim {
                    idx,
                    gen,
                    size: value.size(),
                    value,
                    why: Why::Move,
                };
                if let Some(err) = self.spill_all(vec![victim]) {
                    return Err(err);
                }
                self.file_after_write(r)
            }
            None => unreachable!("a settled value in memory is resident"),
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
        if st.entry(idx).file().is_some() {
            return st.hand_out(idx).ok_or(PoolError::NotFound { dref: *r });
        }
        let gen = split_id(r.id).1;
        let value = st
            .start_flush(idx)
            .expect("a settled value without a file is resident");
        drop(st);
        self.write_one(Victim {
            idx,
            gen,
            size: value.size(),
            value,
            why: Why::Flush,
        })?;
        self.file_after_write(r)
    }

    /// Writes the value to `path` as a frame (MemPool.jl's `savetodisk`): to a
    /// temporary name first, then renamed (and, with
    /// [`PoolConfig::sync_saves`], synced). The pool neither tracks nor ever
    /// removes this file, and the value's place in the eviction order and the
    /// accounting do not change. Read it back with [`FileRef::read`].
    ///
    /// # Errors
    /// [`PoolError::NotFound`]; [`PoolError::InvalidPath`] for a path inside
    /// a pool's session directory (this pool's or another's under the same
    /// spill directory: its pool removes it at shutdown);
    /// [`PoolError::Frame`] for I/O errors naming the file, or when the
    /// value's spill file is corrupt (it is verified before being copied).
    pub fn save_to_disk(&self, r: &DRef, path: impl AsRef<Path>) -> Result<FileRef> {
        let path = path.as_ref();
        if self.inside_a_session_dir(path)? {
            return Err(PoolError::InvalidPath {
                path: path.to_owned(),
                reason:
                    "it is inside a pool's session directory, which its pool removes at shutdown",
            });
        }
        let sync = self.inner.config.sync_saves;
        let src = self.frame(r)?;
        // Verify a spill file before copying it: a corrupt one is an error,
        // not a save.
        src.verify()?;
        let size = mempool_serde::write_encoded_file(&src.encode()?, path, sync)?;
        Ok(FileRef {
            path: path.to_owned(),
            offset: 0,
            size,
        })
    }

    /// Whether `path` names a file in a session directory — this pool's or
    /// another's under the same spill directory, which that pool may remove
    /// or whose spill files it reads — however it is spelled (`..`, symbolic
    /// links): its directory is resolved first.
    fn inside_a_session_dir(&self, path: &Path) -> Result<bool> {
        let io = |op, p: &Path| {
            let p = p.to_owned();
            move |source| PoolError::Io {
                op,
                path: p,
                source,
            }
        };
        let abs = std::path::absolute(path).map_err(io("resolving", path))?;
        let own = self.session_dir();
        let root = own.parent().unwrap_or(own);
        let root = std::fs::canonicalize(root).map_err(io("resolving", root))?;
        let dir = match abs.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => return Ok(false),
        };
        // A directory that does not exist holds no spill file; the write
        // reports it.
        let Ok(dir) = std::fs::canonicalize(dir) else {
            return Ok(abs.starts_with(own));
        };
        let Ok(rest) = dir.strip_prefix(&root) else {
            return Ok(false);
        };
        Ok(rest
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .is_some_and(|name| crate::session::parse_entry_name(name).is_some()))
    }

    /// A snapshot of the accounting and counters.
    pub fn stats(&self) -> Stats {
        let mut st = self.lock();
        let c = &self.inner.counters;
        let seg = self.inner.segments.stats();
        Stats {
            mem_values: st.mem_values(),
            mem_bytes: st.resident_bytes(),
            mem_mapped_bytes: st.mem_mapped_bytes(),
            spilling_bytes: st.spilling_bytes,
            disk_values: st.disk_values,
            disk_bytes: st.disk_bytes,
            detached_bytes: Counters::get(&c.detached_bytes),
            hits: st.all_hits(),
            misses: st.misses,
            evictions: st.evictions,
            spills: st.spills,
            spill_failures: st.spill_failures,
            restores: st.restores,
            bytes_written: Counters::get(&c.bytes_written),
            bytes_read: Counters::get(&c.bytes_read),
            segment_files: seg.files.load(Ordering::Relaxed),
            segment_live_bytes: seg.live_bytes.load(Ordering::Relaxed),
            segment_dead_bytes: seg.dead_bytes.load(Ordering::Relaxed),
            compression_saved_bytes: Counters::get(&c.compression_saved),
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
