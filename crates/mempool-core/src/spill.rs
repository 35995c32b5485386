//! The spill pipeline: writing values out of memory (evictions,
//! `move_to_disk`) and disk copies of resident ones (write-behind,
//! `copy_to_disk`) as frame files in the session directory, against the
//! disk budget `max_disksize`, and settling each write in the index.
//!
//! Every write settles: with its file, or — on an error or a panic while
//! encoding — without, which puts the value back where it was (resident,
//! first in line to leave). So nothing is lost and every waiter wakes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use mempool_serde::{UnsealedFrame, HEADER_LEN};

use crate::error::{PoolError, Result};
use crate::held::{release, Stored};
use crate::index::{SpillFile, State};
use crate::pool::Pool;
use crate::room::{Locked, Undo};
use crate::stats::Counters;

/// Why a value is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Out of memory, to make room (counts as an eviction).
    Evict,
    /// Out of memory, by `move_to_disk`.
    Move,
    /// A disk copy of a resident value (write-behind, `copy_to_disk`).
    Flush,
}

/// A value being written, outside the lock.
pub(crate) struct Victim {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
    pub(crate) value: Arc<dyn Stored>,
    /// Bytes it counts in memory.
    pub(crate) size: u64,
    pub(crate) why: Why,
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
    /// Puts every victim not written back in memory: first every index
    /// transition, under one lock, then (unlocked) the drops of the
    /// victims' references, which may run user code that panics — by then
    /// nothing is left `Spilling`.
    fn put_back(&mut self) {
        let mut all = std::mem::take(&mut self.rest);
        all.extend(self.current.take());
        if all.is_empty() {
            return;
        }
        let mut st = self.pool.lock();
        for v in &all {
            let (released, orphan) = self.pool.settle_index(&mut st, v, None);
            debug_assert!(released.is_none() && orphan.is_none());
        }
        drop(st);
        drop(all);
    }
}

impl Drop for Victims<'_> {
    fn drop(&mut self) {
        self.put_back();
    }
}

impl Pool {
    /// Writes a laid-out frame to a new file in the session directory. Its
    /// bytes are reserved against `max_disksize` before the checksum pass
    /// and the write, so that a full disk costs neither.
    ///
    /// Room is made as [`Pool::disk_room`] says.
    pub(crate) fn write_frame(
        &self,
        layout: UnsealedFrame<'_>,
        why: Why,
        mem_size: u64,
        frame_name: Option<Arc<str>>,
    ) -> Result<SpillFile> {
        let len = layout.len() as u64;
        let reserved = &self.inner.segments.stats().reserved;
        let reservation = {
            let mut st = self.disk_room(len, why)?;
            st.disk_bytes += len;
            reserved.fetch_add(len, Ordering::Relaxed);
            Undo::new(self, move |st: &mut State| st.disk_bytes -= len)
        };
        // The reservation moves to the segment's live bytes at the append
        // (or goes, with the write).
        let _unreserve = Unreserve(reserved, len);
        let frame = layout.seal();
        let io = |source| {
            PoolError::Frame(mempool_serde::FrameError::Io {
                path: Some(self.session_dir().to_owned()),
                source,
            })
        };
        // Compressed only where that shrinks it: an incompressible frame's
        // container is larger than the frame, and the reservation (and so
        // `max_disksize`) covers the frame's length. The reader tells them
        // apart by their magic (`mempool_serde::is_compressed`).
        let packed = match self.config().compression {
            None => None,
            Some(codec) => Some(mempool_serde::compress_frame(&frame, codec)?)
                .filter(|packed| (packed.len() as u64) < len),
        };
        let extent = match &packed {
            None => self.inner.segments.append(&frame),
            Some(packed) => self
                .inner
                .segments
                .append_chunks(packed.len() as u64, std::iter::once(packed.as_slice())),
        }
        .map_err(io)?;
        let written = extent.len();
        debug_assert!(written <= len);
        if written < len {
            // The reservation was for the frame; the disk holds less.
            let saved = len - written;
            self.lock().disk_bytes -= saved;
            Counters::add(&self.inner.counters.compression_saved, saved);
        }
        reservation.keep();
        Counters::add(&self.inner.counters.bytes_written, written);
        Ok(SpillFile {
            path: extent.path().to_owned(),
            offset: extent.offset(),
            len: written,
            extent: Some(extent),
            mem_size,
            frame_name,
            handed_out: false,
        })
    }

    /// Waits until `len` more bytes fit under `max_disksize` and returns the
    /// lock under which they do. A write that must happen (not a disk copy
    /// of a resident value) first drops the disk copies of resident values
    /// that were not handed out, waiting for copies being written to settle
    /// if needed: write-behind must never make a `set` fail that would
    /// succeed without it.
    ///
    /// # Errors
    /// [`PoolError::DiskFull`].
    pub(crate) fn disk_room(&self, len: u64, why: Why) -> Result<Locked<'_>> {
        let mut st = self.lock();
        let Some(max) = self.config().max_disksize else {
            return Ok(st);
        };
        while self.disk_held() + len > max && why != Why::Flush {
            let dropped = st.drop_resident_copies();
            if !dropped.is_empty() {
                drop(st);
                // Freed (their blocks given back) unless someone reads them.
                drop(dropped);
                st = self.lock();
            } else if st.flushes > 0 {
                // Disk copies being written hold reservations that become
                // droppable once they settle (which wakes us).
                st = st.wait();
            } else {
                break;
            }
        }
        let held = self.disk_held();
        if held + len > max {
            return Err(PoolError::DiskFull {
                needed: len,
                used: held,
                max,
            });
        }
        Ok(st)
    }

    /// Bytes held on disk against `max_disksize`: every range in place
    /// (values', writes in flight, ranges of deleted values still read by
    /// someone), the unpunched remains of freed ones, and reservations of
    /// writes not appended yet. Checked under the pool lock, where
    /// reservations are taken; other changes (frees) only lower it.
    fn disk_held(&self) -> u64 {
        self.inner.segments.stats().held()
    }

    /// Lays out and writes a value in memory to a new spill file.
    fn write_value(&self, value: &dyn Stored, why: Why) -> Result<SpillFile> {
        // A full disk costs no encoding: first check for room for the
        // smallest frame (its header) or, for an optional copy, the value's
        // size.
        let least = match why {
            Why::Flush => value.size().max(HEADER_LEN as u64),
            Why::Evict | Why::Move => HEADER_LEN as u64,
        };
        if self.config().max_disksize.is_some() {
            drop(self.disk_room(least, why)?);
        }
        let name = value.as_frame().map(|f| Arc::from(f.type_name()));
        self.write_frame(value.layout()?, why, value.size(), name)
    }

    /// Writes victims out (outside the lock), in pick order, and settles
    /// each. At the first failure it stops: the failed victim and those not
    /// written go back in memory in their places in line, and the failure is
    /// returned (as [`PoolError::Spill`], but for flushes). A panic puts them
    /// back the same way.
    pub(crate) fn spill_all(&self, mut victims: Vec<Victim>) -> Option<PoolError> {
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

    /// Writes disk copies of resident values (write-behind) together
    /// ([`Pool::try_batch`]); when that fails (a value that does not encode,
    /// a full disk, an I/O error), one at a time in order as without
    /// batches, up to the first failure, which is returned (the ones not
    /// written go back, resident without a copy, queued again).
    pub(crate) fn write_flushes(&self, victims: Vec<Victim>) -> Result<()> {
        debug_assert!(victims.iter().all(|v| v.why == Why::Flush));
        let victims = if victims.len() > 1 {
            match self.try_batch(victims) {
                Ok(()) => return Ok(()),
                Err(back) => back,
            }
        } else {
            victims
        };
        match self.spill_all(victims) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Writes a caller's victims out of memory and, in the same batch,
    /// `copies`: disk copies of other resident values that write-behind
    /// would write next (so that when write-behind lags, the caller's one
    /// write carries many values, and the next evictions find copies).
    /// Returns the first failure of the victims, as [`Pool::spill_all`]
    /// does; a failure of the copies is write-behind's (it backs off), not
    /// this caller's, even a panic in their encoders. Not under
    /// `max_disksize` (`copies` must then be empty): there a must-happen
    /// write may drop copies or wait for them, one by one.
    pub(crate) fn write_evictions(
        &self,
        victims: Vec<Victim>,
        copies: Vec<Victim>,
    ) -> Option<PoolError> {
        debug_assert!(copies.is_empty() || self.config().max_disksize.is_none());
        // Large victims go one by one: a batch lays out (and compresses)
        // every frame before the first byte is written and frees room only
        // at its end, so its memory peak is the sum of its frames.
        let victim_bytes: u64 = victims.iter().map(|v| v.size).sum();
        let small = victim_bytes <= crate::flusher::FLUSH_BATCH_BYTES;
        if copies.is_empty()
            && (victims.len() <= 1 || !small || self.config().max_disksize.is_some())
        {
            return self.spill_all(victims);
        }
        if !small {
            let failed = self.spill_all(victims);
            self.write_copies(copies);
            return failed;
        }
        let mut all = victims;
        all.extend(copies);
        let Err(mut back) = self.try_batch(all) else {
            return None;
        };
        let copies = back.split_off(
            back.iter()
                .position(|v| v.why == Why::Flush)
                .unwrap_or(back.len()),
        );
        let failed = self.spill_all(back);
        self.write_copies(copies);
        failed
    }

    /// Writes write-behind's copies one by one; their failures (a panic in
    /// an encoder included) are write-behind's: it backs off.
    fn write_copies(&self, copies: Vec<Victim>) {
        if copies.is_empty() {
            return;
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spill_all(copies)))
            .is_ok_and(|e| e.is_none());
        if !ok {
            self.inner.backoff.lock().failed();
        }
    }

    /// Writes victims as one batch: their frames laid out, reserved against
    /// `max_disksize` together, appended with as few writes as their
    /// placement allows (one, in the common case), and settled under one
    /// lock. On a failure — a value that does not encode (or whose encoder
    /// panics), a full disk, an I/O error — nothing is written and the
    /// victims are handed back, still marked as being written, for the
    /// caller to write one by one (which settles each, and reports each
    /// failure where it belongs). Victims out of memory only without
    /// `max_disksize` (see [`Pool::write_evictions`]).
    fn try_batch(&self, victims: Vec<Victim>) -> std::result::Result<(), Vec<Victim>> {
        let why = if victims.iter().all(|v| v.why == Why::Flush) {
            Why::Flush
        } else {
            debug_assert!(self.config().max_disksize.is_none());
            Why::Evict
        };
        // Puts every victim back only on a panic (none is expected here:
        // encoders run under `catch_unwind`).
        let mut vs = Victims {
            pool: self,
            rest: victims,
            current: None,
        };
        let values: Vec<Arc<dyn Stored>> = vs.rest.iter().map(|v| Arc::clone(&v.value)).collect();
        if self.config().max_disksize.is_some() {
            // A full disk costs no encoding (as in `write_value`).
            let least = values.iter().map(|v| v.size().max(HEADER_LEN as u64)).sum();
            if self.disk_room(least, why).is_err() {
                return Err(std::mem::take(&mut vs.rest));
            }
        }
        let layouts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            values
                .iter()
                .map(|v| v.layout())
                .collect::<std::result::Result<Vec<_>, _>>()
        }));
        let Ok(Ok(layouts)) = layouts else {
            return Err(std::mem::take(&mut vs.rest));
        };
        let total: u64 = layouts.iter().map(|l| l.len() as u64).sum();
        let reserved = &self.inner.segments.stats().reserved;
        let reservation = match self.disk_room(total, why) {
            Ok(mut st) => {
                st.disk_bytes += total;
                reserved.fetch_add(total, Ordering::Relaxed);
                Undo::new(self, move |st: &mut State| st.disk_bytes -= total)
            }
            Err(_) => {
                drop(layouts);
                return Err(std::mem::take(&mut vs.rest));
            }
        };
        let unreserve = Unreserve(reserved, total);
        let frames: Vec<_> = layouts.into_iter().map(UnsealedFrame::seal).collect();
        // Each frame compressed only where that shrinks it (as in
        // `write_frame`): what is written never exceeds the reservation.
        let packed = match self.config().compression {
            None => Vec::new(),
            Some(codec) => match frames
                .iter()
                .map(|f| {
                    mempool_serde::compress_frame(f, codec)
                        .map(|p| Some(p).filter(|p| p.len() < f.len()))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
            {
                Ok(packed) => packed,
                Err(_) => {
                    drop(reservation);
                    return Err(std::mem::take(&mut vs.rest));
                }
            },
        };
        let parts: Vec<(u64, Vec<&[u8]>)> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| match packed.get(i).and_then(Option::as_ref) {
                Some(p) => (p.len() as u64, vec![p.as_slice()]),
                None => (f.len() as u64, f.chunks().collect()),
            })
            .collect();
        let appended = self.inner.segments.append_many(&parts).ok();
        drop(parts);
        let Some(extents) = appended else {
            drop(reservation);
            return Err(std::mem::take(&mut vs.rest));
        };
        // The reservation was for the frames; compressed, the disk holds
        // what was written, never more (each file counts its own length
        // when it goes).
        let written: u64 = extents.iter().map(|e| e.len()).sum();
        debug_assert!(written <= total);
        if written < total {
            self.lock().disk_bytes -= total - written;
            Counters::add(&self.inner.counters.compression_saved, total - written);
        }
        reservation.keep();
        // The bytes are live in their segments now: give the reservation
        // back before settling wakes waiters, or a must-happen write in
        // between would see the batch counted twice (live and reserved)
        // and fail at max_disksize.
        drop(unreserve);
        Counters::add(&self.inner.counters.bytes_written, written);
        let victims = std::mem::take(&mut vs.rest);
        let mut released = Vec::new();
        let mut orphans = Vec::new();
        {
            let mut st = self.lock();
            for (v, extent) in victims.iter().zip(extents) {
                let file = SpillFile {
                    path: extent.path().to_owned(),
                    offset: extent.offset(),
                    len: extent.len(),
                    extent: Some(extent),
                    mem_size: v.size,
                    frame_name: v.value.as_frame().map(|f| Arc::from(f.type_name())),
                    handed_out: false,
                };
                let (value, orphan) = self.settle_index(&mut st, v, Some(file));
                released.extend(value);
                orphans.extend(orphan);
            }
        }
        // Files first: dropping a value runs user code, which may panic.
        drop(orphans);
        drop(frames);
        drop(values);
        drop(victims);
        release(released);
        Ok(())
    }

    /// Writes one victim and settles it; the write's own error on failure.
    pub(crate) fn write_one(&self, v: Victim) -> Result<()> {
        match self.spill_all(vec![v]) {
            None => Ok(()),
            Some(PoolError::Spill { source, .. }) => Err(*source),
            Some(e) => Err(e),
        }
    }

    /// Ends a write: with its file, a value written out of memory leaves it
    /// and a flushed one keeps the file as its disk copy; without (the write
    /// failed), the value is resident as before (first in line to leave,
    /// or queued to be copied again). A file whose value was deleted
    /// meanwhile is removed.
    pub(crate) fn settle(&self, v: Victim, written: Option<SpillFile>) {
        let (released, orphan) = self.settle_index(&mut self.lock(), &v, written);
        // Files first: dropping a value runs user code, which may panic.
        drop(orphan);
        drop(v.value);
        release(released);
    }

    /// The index half of [`Pool::settle`]: returns the value to let go of
    /// and the file to remove, for after unlocking.
    fn settle_index(
        &self,
        st: &mut State,
        v: &Victim,
        written: Option<SpillFile>,
    ) -> (Option<Arc<dyn Stored>>, Option<SpillFile>) {
        if v.why == Why::Flush {
            (None, st.finish_flush(v.idx, v.gen, written))
        } else {
            let (released, orphan) = st.finish_spill(v.idx, v.gen, v.size, written);
            if released.is_some() && v.why == Why::Evict {
                st.evictions += 1;
            }
            (released, orphan)
        }
    }
}

/// Gives a write's reservation back when the write ends (appended: its
/// bytes are live then; failed: gone).
struct Unreserve<'a>(&'a std::sync::atomic::AtomicU64, u64);

impl Drop for Unreserve<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}
