//! Room admission: how a caller with `incoming` bytes to make resident gets
//! room under `max_memsize`, and how it waits when it cannot.
//!
//! # The bound
//! `mem_bytes + spilling_bytes <= max_memsize` at every instant: a value
//! being written out of memory still counts until its write settles, and a
//! new or restored value is linked only once room for it exists. A caller
//! that needs room picks victims — just enough that,
//! once every write in flight settles, the resident values, the room other
//! callers have claimed (`promised`) and its own value fit — claims its
//! room, writes its victims outside the lock, gives the claim back and tries
//! again. A caller with nothing to write either helps write-behind (when the
//! next victim is being flushed) or waits. Each decision is [`step`], pure
//! index logic with no I/O, which the model test below drives without
//! threads through random interleavings of callers, writes that succeed or
//! fail, flushes, restores and deletes.
//!
//! # Waits and their wakers
//! A waiting caller sleeps on the pool's one condition variable until the
//! index changes in a way that can let it on: memory or claimed room going
//! down, a value becoming resident (a victim it can pick), a write or a
//! restore settling, a value removed. Every such transition is a method of
//! [`State`](crate::index::State) that sets its `wake` flag, and the lock
//! guard ([`Locked`]) notifies every waiter when it is released with the
//! flag set — so a transition cannot forget its wake-up (the bug this
//! replaced: giving back a claim, or linking a value, woke nobody).
//!
//! Every wait ends: what a waiter waits for is always in flight in another
//! caller (a write, which always settles — failures and panics included —
//! or a claim, whose holder is writing) and ends with a transition that
//! wakes it.

use std::sync::Arc;

use parking_lot::{Condvar, MutexGuard};

use crate::error::Result;
use crate::held::{release, Stored};
use crate::index::{Leaving, State};
use crate::pool::Pool;
use crate::spill::{Victim, Why};

/// The pool's lock guard: notifies waiters, when released, of the changes
/// made under it (see the module docs).
pub(crate) struct Locked<'p> {
    guard: MutexGuard<'p, State>,
    cv: &'p Condvar,
}

impl<'p> Locked<'p> {
    /// The guard of the index lock (shard locks are taken as the critical
    /// section needs them, and released with it: see index.rs).
    pub(crate) fn new(guard: MutexGuard<'p, State>, cv: &'p Condvar) -> Self {
        Self { guard, cv }
    }

    /// Wakes the waiters if something they may wait for changed.
    fn deliver(&mut self) {
        if std::mem::take(&mut self.guard.wake) && self.guard.waiters > 0 {
            self.cv.notify_all();
        }
    }

    /// Waits until the index changes in a way a waiter may care about.
    pub(crate) fn wait(mut self) -> Self {
        self.deliver();
        self.guard.waiters += 1;
        self.guard.unlock_shards();
        self.cv.wait(&mut self.guard);
        self.guard.waiters -= 1;
        self
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.deliver();
        self.guard.unlock_shards();
    }
}

/// One step of room admission, decided under the lock by [`step`]: what a
/// caller with `incoming` bytes to link does next.
pub(crate) enum Step {
    /// The bytes fit: link now, under the same lock, then let go of these
    /// values (dropped from memory because they had disk copies).
    Fits(Vec<Arc<dyn Stored>>),
    /// Room for `incoming` is claimed: write these victims (outside the
    /// lock), let go of `released`, give the claim back
    /// ([`State::unclaim`]), and step again.
    Write {
        victims: Vec<Victim>,
        released: Vec<Arc<dyn Stored>>,
    },
    /// Let go of these values (outside the lock) and step again.
    Release(Vec<Arc<dyn Stored>>),
    /// The next victim is being flushed: help write-behind by flushing
    /// another value, or wait; then step again.
    Blocked,
    /// Wait for a wake-up (see the module docs), then step again.
    Wait,
}

/// Whether `incoming` bytes can be linked now without taking room that
/// writes in flight have not freed yet or that others have claimed.
pub(crate) fn fits_now(st: &State, max: u64, incoming: u64) -> bool {
    st.used() + st.promised() + incoming <= max
}

/// Decides a caller's next step (pure index logic, no I/O, so that the model
/// test drives it without threads). Takes values out of memory, in policy
/// order, until, once every write in flight settles, the resident values,
/// the room claimed by others and `incoming` fit. Values that already have a
/// disk copy leave at once; the others become `Spilling` (still counted) for
/// the caller to write. Stops at a value being flushed: eviction never skips
/// one.
///
/// A caller without victims claims nothing: the room it waits for is claimed
/// by the callers whose writes free it, and waiting callers that claimed
/// room nobody is freeing could wait for each other forever.
pub(crate) fn step(st: &mut State, max: u64, incoming: u64) -> Step {
    // Past half the bound the shards' credit goes back (see index.rs): the
    // figures below are then exact.
    if st.credit() > 0 && st.used() + st.promised() + incoming > max / 2 {
        st.reclaim_credit();
    }
    if fits_now(st, max, incoming) {
        return Step::Fits(Vec::new());
    }
    let mut victims = Vec::new();
    let mut released = Vec::new();
    let mut blocked = false;
    while st.mem_bytes + st.promised() + incoming > max {
        let Some(idx) = st.victim() else {
            break;
        };
        let gen = st.gen(idx);
        match st.start_spill(idx) {
            None => {
                blocked = true;
                break;
            }
            Some(Leaving::Dropped(value)) => {
                st.evictions += 1;
                released.push(value);
            }
            Some(Leaving::Write(value)) => victims.push(Victim {
                idx,
                gen,
                size: value.size(),
                value,
                why: Why::Evict,
            }),
        }
    }
    if !victims.is_empty() {
        st.claim(incoming);
        Step::Write { victims, released }
    } else if fits_now(st, max, incoming) {
        Step::Fits(released)
    } else if !released.is_empty() {
        Step::Release(released)
    } else if blocked {
        Step::Blocked
    } else {
        Step::Wait
    }
}

/// An index change to undo if the caller leaves between two critical
/// sections (an error, or a panic in user code): the reservation of disk
/// bytes for a write, room claimed while victims are written, the mark of a
/// value being read back. `run` undoes it inside a critical section the
/// caller holds, `keep` drops it without undoing; otherwise the drop locks
/// and undoes (and the lock guard wakes the waiters).
pub(crate) struct Undo<'p, F: FnOnce(&mut State)> {
    pool: &'p Pool,
    undo: Option<F>,
}

impl<'p, F: FnOnce(&mut State)> Undo<'p, F> {
    pub(crate) fn new(pool: &'p Pool, undo: F) -> Self {
        Self {
            pool,
            undo: Some(undo),
        }
    }

    pub(crate) fn run(mut self, st: &mut State) {
        if let Some(f) = self.undo.take() {
            f(st);
        }
    }

    pub(crate) fn keep(mut self) {
        self.undo = None;
    }
}

impl<F: FnOnce(&mut State)> Drop for Undo<'_, F> {
    fn drop(&mut self) {
        if let Some(f) = self.undo.take() {
            f(&mut self.pool.lock());
        }
    }
}

/// The outcome of [`Pool::admit`].
pub(crate) enum Admitted<'p> {
    /// The bytes fit: link under this lock, then let go of `released`.
    Fits(Locked<'p>, Vec<Arc<dyn Stored>>),
    /// The caller's reason to link is gone (the value was deleted).
    Gone,
}

impl Pool {
    /// Gets room for `incoming` bytes: returns the lock under which they fit
    /// (the caller links its value before releasing it) and the values to
    /// let go of after that, or [`Admitted::Gone`] once `gone` says the
    /// caller no longer needs it (checked at each step).
    ///
    /// # Errors
    /// The first failed victim write, as [`PoolError::Spill`](crate::PoolError::Spill):
    /// nothing was linked, and the victims not written are resident again.
    pub(crate) fn admit<'p>(
        &'p self,
        mut st: Locked<'p>,
        incoming: u64,
        gone: impl Fn(&mut State) -> bool,
    ) -> Result<Admitted<'p>> {
        let max = self.config().max_memsize;
        loop {
            if gone(&mut st) {
                return Ok(Admitted::Gone);
            }
            match step(&mut st, max, incoming) {
                Step::Fits(released) => return Ok(Admitted::Fits(st, released)),
                Step::Write { victims, released } => {
                    let claim = Undo::new(self, move |st: &mut State| st.unclaim(incoming));
                    // Write-behind lags (the caller writes): the next copies
                    // go in the same write (not under max_disksize, where
                    // must-happen writes go one by one).
                    // Small victims only: a large one is a write of its own,
                    // and the copies stay the flusher's work.
                    let small = victims.iter().map(|v| v.size).sum::<u64>()
                        < crate::flusher::FLUSH_BATCH_BYTES / 4;
                    let copies = if small && self.config().max_disksize.is_none() {
                        self.pick_flushes(&mut st)
                    } else {
                        Vec::new()
                    };
                    drop(st);
                    // Victims first (guarded), then the values to let go of,
                    // whose drops run user code.
                    let failed = self.write_evictions(victims, copies);
                    release(released);
                    st = self.lock();
                    claim.run(&mut st);
                    if let Some(err) = failed {
                        return Err(err);
                    }
                }
                Step::Release(released) => {
                    drop(st);
                    release(released);
                    st = self.lock();
                }
                Step::Blocked => {
                    // Rather than only wait for the flush of the next victim,
                    // flush others.
                    let batch = self.pick_flushes(&mut st);
                    if batch.is_empty() {
                        st = st.wait();
                    } else {
                        drop(st);
                        // Another value's encoder may fail or panic: that is
                        // write-behind's failure (it backs off), not this
                        // caller's.
                        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.write_flushes(batch)
                        }))
                        .is_ok_and(|r| r.is_ok());
                        if !ok {
                            self.inner.backoff.lock().failed();
                        }
                        st = self.lock();
                    }
                }
                Step::Wait => st = st.wait(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The model test of room admission: callers, writes, flushes, restores
    //! and deletes interleaved at random by a seeded scheduler over the real
    //! index and [`step`], with wake-ups delivered exactly as [`Locked`]
    //! delivers them. A state where every unfinished caller waits and
    //! nothing is in flight is a lost wake-up: the test fails with its seed.

    use std::path::PathBuf;

    use super::*;
    use crate::eviction::Policy;
    use crate::held::Held;
    use crate::index::{tag_of, Place, SpillFile, Tag};
    use crate::stats::{CounterHandle, Counters};

    const SEEDS: u64 = 20_000;
    const CALLERS: usize = 4;
    const OPS_PER_CALLER: usize = 6;
    const MAX: u64 = 1000;
    /// Shards of the index: victims and copies are picked across them.
    const SHARDS: usize = 4;
    /// Scheduling steps per seed, far more than a run needs.
    const STEP_LIMIT: usize = 100_000;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn value(size: u64) -> Arc<dyn Stored> {
        Arc::new(Held::new(
            Vec::<u8>::new(),
            size,
            Arc::new(CounterHandle(Arc::new(Counters::default()))),
        ))
    }

    fn tag() -> &'static Tag {
        tag_of::<Vec<u8>>()
    }

    /// A file "written" for `size` bytes: its disk bytes reserved as the
    /// spill pipeline reserves them.
    fn written(st: &mut State, size: u64) -> SpillFile {
        st.disk_bytes += size;
        SpillFile {
            path: PathBuf::from("model.seg"),
            offset: 0,
            len: size,
            extent: None,
            mem_size: size,
            frame_name: None,
            handed_out: false,
        }
    }

    enum Op {
        Set(u64),
        /// Read back a value on disk (slot, generation, size).
        Restore(u32, u32, u64),
    }

    enum Phase {
        /// About to step.
        Ready,
        /// Parked until a wake-up.
        Waiting,
        /// Writing its victims (the next one last), room claimed.
        Writing(Vec<Victim>),
        Finished,
    }

    struct Caller {
        op: Option<Op>,
        done: usize,
        phase: Phase,
    }

    struct Model {
        rng: Rng,
        st: State,
        callers: Vec<Caller>,
        /// Flushes in flight (the write-behind thread, or a helper).
        flushes: Vec<Victim>,
        log: Vec<String>,
        /// How often the shards' credit was handed out, linked into and
        /// taken back (the test checks that the seeds reach all three).
        grants: usize,
        credit_links: usize,
        reclaims: usize,
    }

    impl Model {
        fn new(seed: u64) -> Self {
            let mut rng = Rng(seed);
            let mut st = State::new(Policy::Lru, true, SHARDS);
            // Start with memory mostly full, some values with disk copies;
            // one seed in three a quarter full, where sets get credit.
            let fill = if seed.is_multiple_of(3) {
                MAX / 4
            } else {
                MAX - 300
            };
            let mut used = 0;
            while used < fill {
                let size = 1 + rng.below(250);
                let (idx, gen) = st.insert_resident(value(size), tag());
                if rng.below(3) == 0 {
                    st.start_flush(idx).unwrap();
                    let f = written(&mut st, size);
                    st.finish_flush(idx, gen, Some(f));
                }
                used += size;
            }
            st.wake = false;
            let callers = (0..CALLERS)
                .map(|_| Caller {
                    op: None,
                    done: 0,
                    phase: Phase::Ready,
                })
                .collect();
            Self {
                rng,
                st,
                callers,
                flushes: Vec::new(),
                log: Vec::new(),
                grants: 0,
                credit_links: 0,
                reclaims: 0,
            }
        }

        /// Delivers a pending wake-up, as the lock guard does on release.
        fn deliver(&mut self) {
            if std::mem::take(&mut self.st.wake) && self.st.waiters > 0 {
                for c in &mut self.callers {
                    if matches!(c.phase, Phase::Waiting) {
                        c.phase = Phase::Ready;
                        self.st.waiters -= 1;
                    }
                }
            }
        }

        /// A new operation for caller `i`: a set, or a read back of a value
        /// on disk.
        fn new_op(&mut self, i: usize) -> Option<Op> {
            if self.rng.below(3) == 0 {
                let on_disk: Vec<u32> = self
                    .st
                    .live_slots()
                    .into_iter()
                    .filter(|&s| matches!(self.st.entry(s).place, Place::OnDisk { .. }))
                    .collect();
                if !on_disk.is_empty() {
                    let idx = on_disk[self.rng.below(on_disk.len() as u64) as usize];
                    let gen = self.st.gen(idx);
                    let mem_size = self.st.entry(idx).file().unwrap().mem_size;
                    self.st.start_restore(idx).unwrap();
                    self.log.push(format!("caller {i}: restore {idx}"));
                    return Some(Op::Restore(idx, gen, mem_size));
                }
            }
            // Small sets (which credit can cover) and large ones.
            let size = if self.rng.below(2) == 0 {
                1 + self.rng.below(8)
            } else {
                1 + self.rng.below(MAX / 4 * 3)
            };
            self.log.push(format!("caller {i}: set {size}"));
            Some(Op::Set(size))
        }

        fn step_caller(&mut self, i: usize) {
            if self.callers[i].op.is_none() {
                if self.callers[i].done == OPS_PER_CALLER {
                    self.callers[i].phase = Phase::Finished;
                    return;
                }
                self.callers[i].op = self.new_op(i);
            }
            let (incoming, restore) = match self.callers[i].op {
                Some(Op::Set(size)) => (size, None),
                Some(Op::Restore(idx, gen, size)) => (size, Some((idx, gen))),
                None => unreachable!(),
            };
            if let Some((idx, gen)) = restore {
                if !self.st.is_live(idx, gen) {
                    self.log.push(format!("caller {i}: restored value deleted"));
                    self.finish_op(i);
                    return;
                }
            }
            let credit = self.st.credit();
            let stepped = step(&mut self.st, MAX, incoming);
            if credit > 0 && self.st.credit() == 0 {
                self.reclaims += 1;
            }
            match stepped {
                Step::Fits(_) => {
                    match restore {
                        Some((idx, _)) => self.st.finish_restore(idx, value(incoming)),
                        None => {
                            let (idx, _) = self.st.insert_resident(value(incoming), tag());
                            // As `link_new` does.
                            let credit = self.st.credit();
                            self.st.grant_credit(idx, MAX, incoming);
                            if self.st.credit() > credit {
                                self.grants += 1;
                            }
                        }
                    }
                    self.log.push(format!("caller {i}: linked {incoming}"));
                    self.finish_op(i);
                }
                Step::Write { mut victims, .. } => {
                    self.log
                        .push(format!("caller {i}: writes {}", victims.len()));
                    victims.reverse();
                    self.callers[i].phase = Phase::Writing(victims);
                }
                Step::Release(_) => {}
                // Help write-behind, as `admit` does.
                Step::Blocked if self.rng.below(2) == 0 => self.start_flush(&format!("caller {i}")),
                Step::Blocked | Step::Wait => {
                    self.log.push(format!("caller {i}: waits"));
                    self.deliver();
                    self.st.waiters += 1;
                    self.callers[i].phase = Phase::Waiting;
                }
            }
        }

        fn finish_op(&mut self, i: usize) {
            if let Some(Op::Restore(idx, gen, _)) = self.callers[i].op {
                self.st.abort_restore(idx, gen);
            }
            self.callers[i].op = None;
            self.callers[i].done += 1;
            self.callers[i].phase = Phase::Ready;
        }

        /// Caller `i` writes its next victim: it succeeds, or it fails and
        /// puts that one and the rest back.
        fn write_next(&mut self, i: usize) {
            let incoming = match self.callers[i].op {
                Some(Op::Set(s) | Op::Restore(_, _, s)) => s,
                None => unreachable!(),
            };
            let Phase::Writing(victims) = &mut self.callers[i].phase else {
                unreachable!()
            };
            let Some(v) = victims.pop() else {
                // All written (each settled in its own critical section):
                // relock, give the claim back and step again, under one lock,
                // as `admit` does.
                self.log.push(format!("caller {i}: unclaims"));
                self.st.unclaim(incoming);
                self.callers[i].phase = Phase::Ready;
                self.step_caller(i);
                return;
            };
            if self.rng.below(8) == 0 {
                self.log
                    .push(format!("caller {i}: write of {} fails", v.idx));
                let Phase::Writing(rest) =
                    std::mem::replace(&mut self.callers[i].phase, Phase::Ready)
                else {
                    unreachable!()
                };
                for r in rest {
                    self.st.finish_spill(r.idx, r.gen, r.size, None);
                }
                self.st.finish_spill(v.idx, v.gen, v.size, None);
                self.st.unclaim(incoming);
                // The set fails: the caller moves on.
                self.finish_op(i);
                return;
            }
            let f = written(&mut self.st, v.size);
            self.st.finish_spill(v.idx, v.gen, v.size, Some(f));
            self.log.push(format!("caller {i}: wrote {}", v.idx));
        }

        /// `who` starts a disk copy of the oldest value without one.
        fn start_flush(&mut self, who: &str) {
            let Some(idx) = self.st.pop_dirty() else {
                return;
            };
            let gen = self.st.gen(idx);
            if let Some(v) = self.st.start_flush(idx) {
                self.log.push(format!("{who}: flushes {idx}"));
                self.flushes.push(Victim {
                    idx,
                    gen,
                    size: v.size(),
                    value: v,
                    why: Why::Flush,
                });
            }
        }

        fn background(&mut self) {
            match self.rng.below(4) {
                // Write-behind starts a flush.
                0 => self.start_flush("flusher"),
                // A set links into a shard's credit (pool.rs's fast path).
                3 => {
                    let size = 1 + self.rng.below(8);
                    if self.st.link_in_credit(value(size), tag()).is_some() {
                        self.log.push(format!("a set links {size} in credit"));
                        self.credit_links += 1;
                    }
                }
                // A flush settles.
                1 if !self.flushes.is_empty() => {
                    let k = self.rng.below(self.flushes.len() as u64) as usize;
                    let v = self.flushes.swap_remove(k);
                    let f = (self.rng.below(4) != 0).then(|| written(&mut self.st, v.size));
                    self.log.push(format!("flush of {} settles", v.idx));
                    self.st.finish_flush(v.idx, v.gen, f);
                }
                // A get of a resident value (a read applied to its shard's
                // recency list in batches).
                2 if self.rng.below(2) == 0 => {
                    let resident: Vec<u32> = self
                        .st
                        .live_slots()
                        .into_iter()
                        .filter(|&s| self.st.linked(s))
                        .collect();
                    if !resident.is_empty() {
                        let idx = resident[self.rng.below(resident.len() as u64) as usize];
                        self.log.push(format!("get {idx}"));
                        self.st.touch(idx);
                    }
                }
                // A delete of any value.
                _ => {
                    let live: Vec<u32> = self.st.live_slots();
                    if !live.is_empty() && self.rng.below(4) == 0 {
                        let idx = live[self.rng.below(live.len() as u64) as usize];
                        self.log.push(format!("delete {idx}"));
                        self.st.remove(idx);
                    }
                }
            }
        }

        /// Runs to the end; `Err` with the trace on a lost wake-up.
        fn run(&mut self) -> std::result::Result<(), String> {
            for _ in 0..STEP_LIMIT {
                let runnable: Vec<usize> = (0..CALLERS)
                    .filter(|&i| matches!(self.callers[i].phase, Phase::Ready | Phase::Writing(_)))
                    .collect();
                let waiting = self
                    .callers
                    .iter()
                    .filter(|c| matches!(c.phase, Phase::Waiting))
                    .count();
                if runnable.is_empty() && self.flushes.is_empty() {
                    if waiting == 0 {
                        return Ok(());
                    }
                    return Err(format!(
                        "{waiting} callers wait and nothing will wake them: a lost wake-up.\n\
                         used {} promised {} of {MAX}, {} resident\n{}",
                        self.st.used(),
                        self.st.promised(),
                        self.st.mem_values(),
                        self.log[self.log.len().saturating_sub(30)..].join("\n")
                    ));
                }
                let pick = self.rng.below(runnable.len() as u64 + 1) as usize;
                match runnable.get(pick) {
                    Some(&i) if matches!(self.callers[i].phase, Phase::Writing(_)) => {
                        self.write_next(i)
                    }
                    Some(&i) => self.step_caller(i),
                    None => self.background(),
                }
                self.deliver();
                self.st.check_invariants(MAX);
            }
            Err(format!("no end after {STEP_LIMIT} steps: a livelock"))
        }
    }

    #[test]
    fn admission_never_loses_a_wake_up() {
        let mut finished = 0;
        let (mut grants, mut credit_links, mut reclaims) = (0, 0, 0);
        for seed in 0..SEEDS {
            let mut m = Model::new(seed);
            if let Err(e) = m.run() {
                panic!("seed {seed}: {e}");
            }
            finished += m.callers.iter().map(|c| c.done).sum::<usize>();
            grants += m.grants;
            credit_links += m.credit_links;
            reclaims += m.reclaims;
        }
        assert_eq!(finished, SEEDS as usize * CALLERS * OPS_PER_CALLER);
        // The seeds drive the shards' credit through its states.
        assert!(
            grants > SEEDS as usize / 10
                && credit_links > SEEDS as usize / 100
                && reclaims > SEEDS as usize / 10,
            "credit granted {grants}, linked into {credit_links}, taken back {reclaims} times"
        );
    }
}
