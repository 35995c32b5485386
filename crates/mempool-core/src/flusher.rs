//! Write-behind ([`PoolConfig::write_behind`](crate::PoolConfig::write_behind),
//! LRU only): once memory is three-quarters full, a flusher thread writes
//! disk copies of the resident values that have none, oldest stored first
//! (the order values were stored, not the recency order; a value whose
//! write failed, or whose copy was dropped at the disk bound, is queued
//! again at the back),
//! while they stay resident, so that evicting them is just dropping them.
//! Eviction never skips a value: when the next victim is being flushed, the
//! caller helps by flushing another one, or waits for it.
//!
//! After a failed write (a full disk, an unwritable directory, an encoder
//! that fails) write-behind backs off — 50 ms, doubling up to 5 s, reset by
//! the next success — instead of retrying on every store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::index::State;
use crate::pool::{Handle, Pool};
use crate::spill::{Victim, Why};

/// First pause after a failed write-behind write.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most values written by one write-behind batch: small values are copied
/// with one write for the batch rather than one each (W5: 1,000-byte
/// values).
const FLUSH_BATCH: usize = 64;
/// Values are added to a batch while it holds fewer bytes than this (a
/// large value goes alone).
pub(crate) const FLUSH_BATCH_BYTES: u64 = 256 << 10;

/// The flusher thread's controls, shared by the pool and the thread.
#[derive(Default)]
pub(crate) struct FlushCtl {
    /// Work may be waiting; set by `kick`, cleared by the flusher.
    pending: AtomicBool,
    /// The pool is shutting down.
    stopping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    cv: Condvar,
}

impl FlushCtl {
    /// Stops and joins the flusher thread, if one runs.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let thread = {
            let mut t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
            // Taking the lock orders this with the flusher's check-then-wait.
            self.cv.notify_all();
            t.take()
        };
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// When write-behind may write again after failures.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    delay: Duration,
    until: Option<Instant>,
}

impl Backoff {
    fn active(&self) -> bool {
        self.remaining().is_some()
    }

    /// How long writes must still wait, if they must.
    fn remaining(&self) -> Option<Duration> {
        let left = self.until?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    pub(crate) fn failed(&mut self) {
        self.delay = (self.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        self.until = Some(Instant::now() + self.delay);
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
        self.until = None;
    }
}

impl Pool {
    /// Whether write-behind should run: LRU, enabled, memory three-quarters
    /// full, and values queued for a copy (not when every resident value has
    /// one, as after restores: a wake-up then costs a futex call and a
    /// context switch for nothing).
    pub(crate) fn wants_flush(&self, st: &mut State) -> bool {
        let c = self.config();
        c.write_behind
            && st.policy() == crate::Policy::Lru
            && st.used() > c.max_memsize / 4 * 3
            && st.has_dirty()
    }

    /// Picks the oldest stored values still resident without a disk copy,
    /// up to [`FLUSH_BATCH`] of them or [`FLUSH_BATCH_BYTES`] (at least one),
    /// and marks them flushing, to be written together
    /// ([`Pool::write_flushes`]); none while write-behind backs off after a
    /// failure.
    pub(crate) fn pick_flushes(&self, st: &mut State) -> Vec<Victim> {
        let mut picked = Vec::new();
        if !self.wants_flush(st) || self.inner.backoff.lock().active() {
            return picked;
        }
        let mut bytes = 0;
        while picked.len() < FLUSH_BATCH && bytes < FLUSH_BATCH_BYTES {
            let Some(idx) = st.pop_dirty() else {
                break;
            };
            let gen = st.gen(idx);
            let Some(value) = st.start_flush(idx) else {
                continue;
            };
            bytes += value.size();
            picked.push(Victim {
                idx,
                gen,
                size: value.size(),
                value,
                why: Why::Flush,
            });
        }
        picked
    }

    /// Wakes the flusher (starting it on first need). Cheap when it is
    /// already awake.
    pub(crate) fn kick_flusher(&self) {
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
}

/// The flusher thread: waits for a kick, then writes disk copies while
/// write-behind wants them. After a failed write it backs off (see the
/// module docs), so that a full disk is not retried in a loop.
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
        // Backing off: sleep it out (a kick meanwhile must not be lost, so
        // the work is picked up after the pause, not at the next kick).
        let pause = pool.inner.backoff.lock().remaining();
        if let Some(pause) = pause {
            let t = ctl.thread.lock().unwrap_or_else(|e| e.into_inner());
            if !ctl.stopping.load(Ordering::SeqCst) {
                drop(ctl.cv.wait_timeout(t, pause));
            }
            if ctl.stopping.load(Ordering::SeqCst) {
                return;
            }
        }
        loop {
            let batch = pool.pick_flushes(&mut pool.lock());
            if batch.is_empty() {
                break;
            }
            // A panic in a user's encoder must not end write-behind: the
            // victims' guard has already put them back.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.write_flushes(batch)
            }))
            .is_ok_and(|r| r.is_ok());
            let mut backoff = pool.inner.backoff.lock();
            if ok {
                backoff.succeeded();
            } else {
                backoff.failed();
                // Come back after the pause even if nothing kicks again.
                ctl.pending.store(true, Ordering::Release);
                break;
            }
            drop(backoff);
            if ctl.stopping.load(Ordering::SeqCst) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(!b.active());
        b.failed();
        assert!(b.active());
        assert_eq!(b.delay, BACKOFF_MIN);
        for _ in 0..20 {
            b.failed();
        }
        assert_eq!(b.delay, BACKOFF_MAX);
        b.succeeded();
        assert!(!b.active());
        b.failed();
        assert_eq!(b.delay, BACKOFF_MIN);
    }
}
