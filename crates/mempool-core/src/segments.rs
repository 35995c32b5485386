//! Segment files: spilled frames appended to a few large files, a value on
//! disk addressed by (segment, offset, length) — the storage that replaces
//! one file per spilled value (issue "Spill storage that scales"; not wired
//! into the pool yet).
//!
//! # Layout
//! A segment is a file `<id>.seg` in the session directory, sized to its
//! capacity when it is made (sparse: only written blocks take disk space)
//! and never resized. Frames are appended at 64-byte aligned offsets, so a
//! frame read by mapping its range (from its page) yields aligned
//! sections. A frame of at least [`OWN_SEGMENT_MIN`] bytes gets a segment of
//! its own. Appends go to one of a few active segments (see [`Lane`]); a
//! full one is sealed.
//!
//! # Extents and pins
//! An appended frame is an [`Extent`], shared by `Arc`: the pool's entry
//! holds one, and every buffer read from it holds one
//! ([`Buffer::with_guard`]). A read maps the frame's own range (one `mmap`),
//! so its pages leave the process's memory when the last view goes: a
//! mapping of a whole segment would keep every page ever read resident. A
//! frame under [`COPY_BELOW`] is copied instead (one `pread`). When the last goes, the extent is freed: the
//! whole 4 KiB blocks inside it are given back to the file system
//! (`fallocate(FALLOC_FL_PUNCH_HOLE)`, where the file system has it), its
//! header is wiped, and a sealed segment whose extents are all freed is
//! removed; the active one, emptied, is kept and punched whole (see
//! `Segment::release_one`), so churn at low occupancy makes no new files. So
//! bytes stay in place while anyone uses them, and a delete never pulls them
//! from under a reader. Small frames share blocks: their space comes back
//! only when their segment empties (what is held meanwhile is
//! [`SegmentStats::dead_bytes`], counted against the disk bound; compacting
//! segments that stragglers keep alive is not done yet).
//!
//! # Crash safety
//! A range is never reused: it is written once, before its extent is handed
//! out, and never written again. A torn append leaves a range that no extent
//! names (a failed write frees its extent); whatever such bytes hold, a
//! frame's length and checksums reject them if they are ever parsed, and
//! the session directory of a crashed process is swept at the next start.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use mempool_arrays::{AlignedVec, Buffer};
use mempool_serde::EncodedFrame;
use parking_lot::Mutex;

/// Capacity of a shared segment: large enough that a file is made rarely
/// (file creation costs 60 µs to 1 ms here), small enough that a segment
/// kept alive by one straggler holds little.
pub(crate) const SEGMENT_CAPACITY: u64 = 64 << 20;
/// Frames at least this large get a segment of their own (removed with
/// them).
pub(crate) const OWN_SEGMENT_MIN: u64 = 8 << 20;
/// Alignment of frames in a segment (the frame format's section alignment).
const FRAME_ALIGN: u64 = 64;
/// Frames smaller than this are read back by copying (one `pread`) rather
/// than mapped: cheaper below a few pages, measured with W5 (1,000-byte
/// values: 37,000 gets a second mapped, 212,000 copied).
const COPY_BELOW: u64 = 64 << 10;
/// The sealed bit of `Segment::state`.
const SEALED: u64 = 1 << 63;
/// The bit of `Segment::state` held while an emptied active segment is
/// being cleared for reuse (appends treat it as sealed).
const CLEARING: u64 = 1 << 62;
/// The file-system block: hole punching frees whole blocks only.
const BLOCK: u64 = 4096;

/// Counters shared by a store and its segments.
#[derive(Debug, Default)]
pub(crate) struct SegmentStats {
    /// Segment files in existence.
    pub(crate) files: AtomicU64,
    /// Bytes of extents alive (held by an entry or a reader).
    pub(crate) live_bytes: AtomicU64,
    /// Bytes of freed extents still taking space: the parts of blocks that
    /// could not be punched, in segments not yet removed (fragmentation).
    pub(crate) dead_bytes: AtomicU64,
    /// Bytes reserved by writes not appended yet (the pool's disk budget).
    pub(crate) reserved: AtomicU64,
}

impl SegmentStats {
    /// Everything held on disk or about to be: live and dead bytes of
    /// segments, and reservations.
    pub(crate) fn held(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
            + self.dead_bytes.load(Ordering::Relaxed)
            + self.reserved.load(Ordering::Relaxed)
    }
}

/// The segment files of one session directory.
pub(crate) struct Segments {
    dir: PathBuf,
    capacity: u64,
    own_min: u64,
    next_id: AtomicU64,
    /// Where appends go (see [`Lane`]).
    lanes: Box<[Lane]>,
    stats: Arc<SegmentStats>,
}

/// A segment taking appends, one of a few: an append takes a lane no
/// other append is writing into, if there is one, so that writers at the
/// same time (write-behind and a caller making room) write different
/// files. A buffered write holds its file's lock throughout (ext4's inode
/// lock), so two writers of one file take turns, and the waiting one spins
/// on the lock: in W3's get phase, 14% of the time went to that spinning.
struct Lane {
    /// The segment taking appends, and where the next append goes.
    active: Mutex<Option<(Arc<Segment>, u64)>>,
    /// Appends placed here whose writes are not over.
    writing: AtomicUsize,
}

/// A lane taken for one append or batch: its write counted until dropped.
struct Writing<'a>(&'a Lane);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Ordering::Release);
    }
}

/// Lanes of a store: one per core, from 2 to 8 (so at most as many
/// segments are kept, emptied, for appends to come).
pub(crate) fn lane_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .clamp(2, 8)
}

/// One segment file.
pub(crate) struct Segment {
    path: PathBuf,
    file: File,
    capacity: u64,
    /// Extents not yet freed (the low bits) and whether appends are over
    /// (`SEALED`: full, emptied, or a frame's own), in one word, so that an
    /// append's count and an emptied segment's sealing cannot cross.
    state: AtomicU64,
    removed: AtomicBool,
    /// Bytes of freed extents not punched, counted in `dead_bytes`.
    dead: AtomicU64,
    stats: Arc<SegmentStats>,
}

/// A frame in a segment. Freed (its blocks punched, its segment removed if
/// it was the last) when the last `Arc` of it goes.
pub(crate) struct Extent {
    seg: Arc<Segment>,
    off: u64,
    len: u64,
}

impl Segments {
    /// Segments in `dir` (which exists and is private to this process).
    pub(crate) fn new(dir: &Path) -> Self {
        Self::with_sizes(dir, SEGMENT_CAPACITY, OWN_SEGMENT_MIN)
    }

    /// With a segment capacity and an own-segment threshold of the caller's
    /// (tests use small ones).
    pub(crate) fn with_sizes(dir: &Path, capacity: u64, own_min: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            capacity,
            own_min,
            next_id: AtomicU64::new(0),
            lanes: (0..lane_count())
                .map(|_| Lane {
                    active: Mutex::new(None),
                    writing: AtomicUsize::new(0),
                })
                .collect(),
            stats: Arc::default(),
        }
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &SegmentStats {
        &self.stats
    }

    fn create(&self, capacity: u64) -> std::io::Result<Arc<Segment>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{id:x}.seg"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        if let Err(e) = file.set_len(capacity) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(Segment {
            path,
            file,
            capacity,
            state: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            dead: AtomicU64::new(0),
            stats: Arc::clone(&self.stats),
        }))
    }

    /// The first lane no append is writing into, or, when every one is,
    /// the first.
    fn lane(&self) -> Writing<'_> {
        let free = self.lanes.iter().find(|l| {
            l.writing
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        });
        Writing(free.unwrap_or_else(|| {
            let first = &self.lanes[0];
            first.writing.fetch_add(1, Ordering::Acquire);
            first
        }))
    }

    /// Whether a frame of `len` bytes gets a segment of its own.
    fn own(&self, len: u64) -> bool {
        len >= self.own_min || len > self.capacity
    }

    /// A lane for frames of these lengths, if one goes to a shared segment
    /// (a frame with a segment of its own writes no lane's file).
    fn lane_for(&self, mut lens: impl Iterator<Item = u64>) -> Option<Writing<'_>> {
        lens.any(|len| !self.own(len)).then(|| self.lane())
    }

    /// Places `len` bytes: a new segment of their own, or the end of the
    /// lane's active segment (sealing it and starting another when full).
    fn place(&self, lane: Option<&Writing<'_>>, len: u64) -> std::io::Result<(Arc<Segment>, u64)> {
        if self.own(len) {
            let seg = self.create(len.next_multiple_of(BLOCK))?;
            seg.state.store(SEALED | 1, Ordering::Release);
            return Ok((seg, 0));
        }
        let lane = lane.expect("a lane for a frame in a shared segment");
        let mut active = lane.0.active.lock();
        loop {
            if let Some((seg, cursor)) = active.as_mut() {
                let off = cursor.next_multiple_of(FRAME_ALIGN);
                if off + len <= seg.capacity && seg.count_append() {
                    // The alignment padding takes space too: count it dead.
                    let pad = off - *cursor;
                    seg.dead.fetch_add(pad, Ordering::Relaxed);
                    self.stats.dead_bytes.fetch_add(pad, Ordering::Relaxed);
                    *cursor = off + len;
                    return Ok((Arc::clone(seg), off));
                }
            }
            // Full, or sealed by its last extent's free: start another.
            let fresh = self.create(self.capacity)?;
            if let Some((old, _)) = active.replace((fresh, 0)) {
                old.seal();
            }
        }
    }

    /// Appends a frame, writing its chunks in place (no assembled copy).
    /// A failed write frees the range it had.
    ///
    /// # Errors
    /// The I/O error of making a segment or writing.
    pub(crate) fn append(&self, frame: &EncodedFrame<'_>) -> std::io::Result<Arc<Extent>> {
        self.append_chunks(frame.len() as u64, frame.chunks())
    }

    /// Appends `len` bytes given as chunks (a frame's, or a compressed
    /// frame's one).
    ///
    /// # Errors
    /// As [`Segments::append`].
    pub(crate) fn append_chunks<'c>(
        &self,
        len: u64,
        chunks: impl Iterator<Item = &'c [u8]>,
    ) -> std::io::Result<Arc<Extent>> {
        let lane = self.lane_for(std::iter::once(len));
        let (seg, off) = self.place(lane.as_ref(), len)?;
        self.stats.live_bytes.fetch_add(len, Ordering::Relaxed);
        let extent = Arc::new(Extent { seg, off, len });
        // One vectored write for the whole frame (not one per chunk).
        let chunks: Vec<&[u8]> = chunks.collect();
        write_all_vectored_at(&extent.seg.file, &chunks, off)?;
        Ok(extent)
    }

    /// Appends several frames, each given as its length and its chunks:
    /// frames placed next to each other in one segment (all of them, unless
    /// the batch crosses into a new segment or other appends interleave) are
    /// written with one vectored write, the padding between them zeros.
    /// All or nothing: on an error every range of the batch is freed (no
    /// extent of it was handed out), and the error is returned.
    ///
    /// # Errors
    /// As [`Segments::append`].
    pub(crate) fn append_many(
        &self,
        frames: &[(u64, Vec<&[u8]>)],
    ) -> std::io::Result<Vec<Arc<Extent>>> {
        let mut extents: Vec<Arc<Extent>> = Vec::with_capacity(frames.len());
        let lane = self.lane_for(frames.iter().map(|&(len, _)| len));
        for &(len, _) in frames {
            let (seg, off) = self.place(lane.as_ref(), len)?;
            self.stats.live_bytes.fetch_add(len, Ordering::Relaxed);
            extents.push(Arc::new(Extent { seg, off, len }));
        }
        let mut run: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for (i, (e, (len, chunks))) in extents.iter().zip(frames).enumerate() {
            debug_assert_eq!(*len, chunks.iter().map(|c| c.len() as u64).sum::<u64>());
            let follows = i > 0 && {
                let prev = &extents[i - 1];
                Arc::ptr_eq(&prev.seg, &e.seg)
                    && (prev.off + prev.len).next_multiple_of(FRAME_ALIGN) == e.off
            };
            if follows {
                let prev = &extents[i - 1];
                let pad = (e.off - (prev.off + prev.len)) as usize;
                if pad > 0 {
                    run.push(&ZEROS[..pad]);
                }
            } else {
                if !run.is_empty() {
                    write_all_vectored_at(&extents[i - 1].seg.file, &run, start)?;
                    run.clear();
                }
                start = e.off;
            }
            run.extend(chunks.iter().copied());
        }
        if let Some(last) = extents.last() {
            write_all_vectored_at(&last.seg.file, &run, start)?;
        }
        Ok(extents)
    }
}

/// Zeros for the padding between frames written together.
static ZEROS: [u8; FRAME_ALIGN as usize] = [0; FRAME_ALIGN as usize];

/// Most slices one `pwritev` takes (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Writes `bufs` one after another at `off`, with as few `pwritev` calls as
/// the kernel allows (a short write continues where it stopped).
fn write_all_vectored_at(file: &File, mut bufs: &[&[u8]], mut off: u64) -> std::io::Result<()> {
    // Bytes of `bufs[0]` already written.
    let mut skip = 0;
    let mut iov = Vec::with_capacity(bufs.len().min(IOV_MAX));
    while let Some(first) = bufs.first() {
        if first.len() == skip {
            // Empty (or done): a write of nothing would read as an error.
            bufs = &bufs[1..];
            skip = 0;
            continue;
        }
        iov.clear();
        iov.push(std::io::IoSlice::new(&first[skip..]));
        iov.extend(
            bufs[1..bufs.len().min(IOV_MAX)]
                .iter()
                .map(|b| std::io::IoSlice::new(b)),
        );
        let mut n = match rustix::io::pwritev(file, &iov, off) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        off += n as u64;
        while let Some(b) = bufs.first() {
            let rest = b.len() - skip;
            if n < rest {
                skip += n;
                break;
            }
            n -= rest;
            skip = 0;
            bufs = &bufs[1..];
        }
    }
    Ok(())
}

impl Segment {
    /// Counts one more extent, unless the segment is sealed (or being
    /// cleared).
    fn count_append(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & (SEALED | CLEARING) != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// No more appends; removed now if nothing in it is alive (or, when
    /// it is being cleared, once that ends).
    fn seal(&self) {
        let prev = self.state.fetch_or(SEALED, Ordering::AcqRel);
        if prev == 0 {
            self.remove();
        }
    }

    /// One extent freed: a sealed segment goes with its last extent. The
    /// active segment, emptied (unless an append counted itself in first),
    /// stays and keeps taking appends after its last one: its whole file
    /// is punched, so that the remains of freed frames (block edges,
    /// padding) no longer take space — a pool that spills a value, deletes
    /// it and spills again makes no new file each time. Its ranges are
    /// still never reused. Where the file system cannot punch holes it is
    /// sealed and removed instead (the next append starts another).
    fn release_one(&self) {
        let now = self.state.fetch_sub(1, Ordering::AcqRel) - 1;
        if now == SEALED {
            self.remove();
        } else if now == 0
            && self
                .state
                .compare_exchange(0, CLEARING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.clear();
        }
    }

    /// Clears an emptied active segment (`CLEARING` held: no append can
    /// count itself in, and no extent of it is alive).
    fn clear(&self) {
        if punch_hole(&self.file, 0, self.capacity) {
            let dead = self.dead.swap(0, Ordering::Relaxed);
            self.stats.dead_bytes.fetch_sub(dead, Ordering::Relaxed);
        } else {
            self.state.fetch_or(SEALED, Ordering::AcqRel);
        }
        let prev = self.state.fetch_and(!CLEARING, Ordering::AcqRel);
        // Sealed meanwhile (an append took it for sealed and started
        // another segment), or not punched: it goes.
        if prev & SEALED != 0 {
            self.remove();
        }
    }

    /// Removes the file (once). Mappings of it stay valid.
    fn remove(&self) {
        if !self.removed.swap(true, Ordering::AcqRel) {
            let _ = std::fs::remove_file(&self.path);
            self.stats.files.fetch_sub(1, Ordering::Relaxed);
            let dead = self.dead.swap(0, Ordering::Relaxed);
            self.stats.dead_bytes.fetch_sub(dead, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Extent({:?} @ {} + {})",
            self.seg.path, self.off, self.len
        )
    }
}

impl Extent {
    /// The segment file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.seg.path
    }

    /// Where the frame starts in the file.
    pub(crate) fn offset(&self) -> u64 {
        self.off
    }

    /// The frame's length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The frame's bytes, mapped (its range only: unmapped, and its pages
    /// out of the process's memory, when the last view goes), holding this
    /// extent: its bytes stay in place while the buffer or any slice of it
    /// lives.
    ///
    /// # Errors
    /// The I/O error of mapping.
    pub(crate) fn buffer(self: &Arc<Self>) -> std::io::Result<Buffer> {
        let len = usize::try_from(self.len).map_err(std::io::Error::other)?;
        if self.len < COPY_BELOW {
            // Small: one read into the heap costs less than a mapping's
            // syscalls and page faults, and holds nothing of the file.
            let mut bytes = AlignedVec::with_capacity(len);
            bytes.resize(len);
            self.seg
                .file
                .read_exact_at(bytes.as_mut_slice(), self.off)?;
            return Ok(bytes.into_buffer());
        }
        let map = crate::mapped::map_segment_range(&self.seg.file, self.off, len)?;
        Ok(map.with_guard(Arc::clone(self) as _))
    }
}

impl Drop for Extent {
    fn drop(&mut self) {
        let stats = &self.seg.stats;
        stats.live_bytes.fetch_sub(self.len, Ordering::Relaxed);
        // Nobody reads the range any more: wipe its header, so that a FileRef
        // kept past the delete reads no frame (not a frame of zeros where the
        // body was punched, nor the old value where nothing was).
        let head = self.len.min(64) as usize;
        let _ = self.seg.file.write_all_at(&[0u8; 64][..head], self.off);
        let (start, end) = (
            self.off.next_multiple_of(BLOCK),
            (self.off + self.len) / BLOCK * BLOCK,
        );
        let punched = if end > start && punch_hole(&self.seg.file, start, end - start) {
            end - start
        } else {
            0
        };
        let dead = self.len - punched;
        self.seg.dead.fetch_add(dead, Ordering::Relaxed);
        stats.dead_bytes.fetch_add(dead, Ordering::Relaxed);
        self.seg.release_one();
    }
}

/// Gives `len` bytes at `off` back to the file system, keeping the file's
/// size; false where the file system cannot.
fn punch_hole(file: &File, off: u64, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        rustix::fs::fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            off,
            len,
        )
        .is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, off, len);
        false
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    use mempool_arrays::PrimitiveArray;
    use mempool_serde::{decode, Frame, ReadOptions};

    use super::*;

    const MIB: u64 = 1 << 20;

    fn frame_of(v: &PrimitiveArray<u64>) -> EncodedFrame<'_> {
        EncodedFrame::new(v).unwrap()
    }

    fn values(n: usize, seed: u64) -> PrimitiveArray<u64> {
        PrimitiveArray::from((0..n as u64).map(|i| i ^ seed).collect::<Vec<_>>())
    }

    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn frames_share_a_segment_aligned_and_read_back_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::with_sizes(dir.path(), 4 * MIB, MIB);
        let vals: Vec<_> = (0..20).map(|i| values(100 + i * 37, i as u64)).collect();
        let extents: Vec<_> = vals
            .iter()
            .map(|v| segs.append(&frame_of(v)).unwrap())
            .collect();
        assert_eq!(files(dir.path()), 1, "one segment for small frames");
        for (v, e) in vals.iter().zip(&extents) {
            assert_eq!(e.offset() % FRAME_ALIGN, 0);
            let b = e.buffer().unwrap();
            // Small frames are copied out (one pread), not mapped.
            assert_eq!(b.memory_kind(), mempool_arrays::MemoryKind::Heap);
            assert_eq!(&decode::<PrimitiveArray<u64>>(&b).unwrap(), v);
        }
        assert_eq!(
            segs.stats().live_bytes.load(Ordering::Relaxed),
            extents.iter().map(|e| e.len()).sum::<u64>()
        );
        let end = extents.last().map(|e| e.offset() + e.len()).unwrap();
        drop(extents);
        assert_eq!(segs.stats().live_bytes.load(Ordering::Relaxed), 0);
        let e = segs.append(&frame_of(&values(10, 1))).unwrap();
        if !punch_hole(&e.seg.file, 0, BLOCK) {
            eprintln!("skipping: this file system does not punch holes (fallocate PUNCH_HOLE)");
            return;
        }
        // The emptied active segment is kept, cleared; appends go on after
        // its last range (ranges are never reused).
        assert_eq!(files(dir.path()), 1, "the emptied segment is kept");
        assert!(
            e.offset() >= end,
            "{} reuses a range before {end}",
            e.offset()
        );
        assert!(segs.stats().dead_bytes.load(Ordering::Relaxed) < FRAME_ALIGN);
    }

    #[test]
    fn full_segments_rotate_and_large_frames_get_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::with_sizes(dir.path(), MIB, MIB / 2);
        let v = values(40_000, 7); // 320 kB: three fit in a segment
        let es: Vec<_> = (0..7)
            .map(|_| segs.append(&frame_of(&v)).unwrap())
            .collect();
        assert_eq!(files(dir.path()), 3);
        let big = values(100_000, 9); // 800 kB: its own segment
        let b = segs.append(&frame_of(&big)).unwrap();
        assert_eq!((files(dir.path()), b.offset()), (4, 0));
        assert_eq!(
            &decode::<PrimitiveArray<u64>>(&b.buffer().unwrap()).unwrap(),
            &big
        );
        drop(b);
        assert_eq!(files(dir.path()), 3, "a frame's own segment goes with it");
        // A sealed segment goes when its last frame does; the active one
        // (the third) stays, cleared, where holes can be punched.
        drop(es);
        assert!(files(dir.path()) <= 1);
    }

    #[test]
    fn a_reader_pins_the_bytes_after_the_extent_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::with_sizes(dir.path(), 4 * MIB, 2 * MIB);
        let v = values(300_000, 3); // 2.4 MB: its own segment
        let e = segs.append(&frame_of(&v)).unwrap();
        let bytes = e.buffer().unwrap();
        assert_eq!(bytes.memory_kind(), mempool_arrays::MemoryKind::Mapped);
        let read: PrimitiveArray<u64> = decode(&bytes).unwrap();
        drop(bytes);
        drop(e); // the pool lets go (a delete)
        assert_eq!(files(dir.path()), 1, "pinned by the reader");
        assert!(segs.stats().live_bytes.load(Ordering::Relaxed) > 0);
        assert_eq!(read, v, "the bytes are still in place");
        drop(read);
        assert_eq!(files(dir.path()), 0, "freed with the last reader");
        assert_eq!(segs.stats().live_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn freed_blocks_go_back_to_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::with_sizes(dir.path(), 16 * MIB, 8 * MIB);
        let v = values(131_072, 5); // 1 MiB of data
        let mut es: Vec<_> = (0..4)
            .map(|_| segs.append(&frame_of(&v)).unwrap())
            .collect();
        let path = es[0].path().to_owned();
        let used = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
        let before = used(&path);
        assert!(
            before >= 4 * MIB,
            "{before} bytes allocated for 4 MiB written"
        );
        let first = es.remove(0);
        let len = first.len();
        drop(es);
        let after = used(&path);
        if after == before {
            eprintln!("skipping: this file system does not punch holes (fallocate PUNCH_HOLE)");
            return;
        }
        assert!(
            before - after >= 3 * (len - 2 * BLOCK),
            "punching freed {} bytes of {}",
            before - after,
            3 * len
        );
        let dead = segs.stats().dead_bytes.load(Ordering::Relaxed);
        assert!(dead < 3 * 2 * BLOCK, "{dead} bytes dead: only block edges");
        // The survivor still reads back.
        assert_eq!(
            &decode::<PrimitiveArray<u64>>(&first.buffer().unwrap()).unwrap(),
            &v
        );
    }

    #[test]
    fn a_batch_is_written_together_aligned_and_split_at_segment_ends() {
        let dir = tempfile::tempdir().unwrap();
        // Room for about 60 of these frames a segment: the batch of 150
        // crosses into two more segments.
        let segs = Segments::with_sizes(dir.path(), 64 << 10, 32 << 10);
        let vals: Vec<_> = (0..150).map(|i| values(100 + i % 50, i as u64)).collect();
        let frames: Vec<_> = vals.iter().map(frame_of).collect();
        let parts: Vec<(u64, Vec<&[u8]>)> = frames
            .iter()
            .map(|f| (f.len() as u64, f.chunks().collect()))
            .collect();
        let extents = segs.append_many(&parts).unwrap();
        assert_eq!(extents.len(), vals.len());
        assert_eq!(files(dir.path()), 3);
        for (i, (v, e)) in vals.iter().zip(&extents).enumerate() {
            assert_eq!(e.offset() % FRAME_ALIGN, 0, "frame {i}");
            assert_eq!(e.len(), frames[i].len() as u64);
            assert_eq!(
                &decode::<PrimitiveArray<u64>>(&e.buffer().unwrap()).unwrap(),
                v,
                "frame {i}"
            );
        }
        // The padding between neighbours is zeros.
        let (a, b) = (&extents[0], &extents[1]);
        let mut pad = vec![1u8; (b.offset() - a.offset() - a.len()) as usize];
        a.seg
            .file
            .read_exact_at(&mut pad, a.offset() + a.len())
            .unwrap();
        assert!(pad.iter().all(|&x| x == 0));
        assert_eq!(
            segs.stats().live_bytes.load(Ordering::Relaxed),
            extents.iter().map(|e| e.len()).sum::<u64>()
        );
        drop(extents);
        assert_eq!(segs.stats().live_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_failed_batch_frees_every_range() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("s");
        std::fs::create_dir(&sub).unwrap();
        let segs = Segments::with_sizes(&sub, 16 << 10, 8 << 10);
        let v = values(500, 1); // about 4 kB a frame: four fill a segment
        let f = frame_of(&v);
        let part = (f.len() as u64, f.chunks().collect::<Vec<_>>());
        let first = segs.append_many(&vec![part.clone(); 2]).unwrap();
        // The next segment cannot be made: the batch fails half placed.
        std::fs::remove_dir_all(&sub).unwrap();
        let err = segs.append_many(&vec![part; 6]);
        assert!(err.is_err());
        assert_eq!(
            segs.stats().live_bytes.load(Ordering::Relaxed),
            first.iter().map(|e| e.len()).sum::<u64>(),
            "the failed batch's ranges are freed"
        );
    }

    #[test]
    fn vectored_writes_take_more_slices_than_one_call_can() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create_new(dir.path().join("f")).unwrap();
        let bytes: Vec<u8> = (0..3 * IOV_MAX + 7).map(|i| (i % 251) as u8).collect();
        // Slices of one byte, and some empty ones.
        let slices: Vec<&[u8]> = bytes
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                let one = std::slice::from_ref(b);
                if i % 100 == 0 {
                    vec![&one[..0], one]
                } else {
                    vec![one]
                }
            })
            .collect();
        write_all_vectored_at(&file, &slices, 10).unwrap();
        let back = std::fs::read(dir.path().join("f")).unwrap();
        assert_eq!(&back[10..], &bytes[..]);
        assert!(back[..10].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_torn_append_never_reads_back_as_valid() {
        // A crash in the middle of an append leaves the frame's first bytes
        // and zeros (a sparse segment) after them: never a valid frame, unless
        // the bytes not written were zeros anyway.
        let v = values(5000, 11);
        let bytes = frame_of(&v).to_buffer();
        let whole = bytes.as_slice();
        let opts = ReadOptions::default();
        for cut in (0..whole.len()).step_by(61).chain([whole.len() - 1]) {
            let mut torn = whole[..cut].to_vec();
            torn.resize(whole.len(), 0);
            if torn == whole {
                continue; // the bytes not written were zeros anyway
            }
            let torn = Buffer::copy_aligned(&torn);
            assert!(
                Frame::parse(&torn, &opts).is_err(),
                "cut at {cut} reads as valid"
            );
        }
    }

    #[test]
    fn an_append_while_another_writes_goes_to_another_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::with_sizes(dir.path(), 1 << 20, 512 << 10);
        let v = values(100, 1);
        let a = segs.append(&frame_of(&v)).unwrap();
        // A write in flight in the first lane (as write-behind's would be).
        let busy = segs.lane();
        assert!(std::ptr::eq(busy.0, &segs.lanes[0]));
        let b = segs.append(&frame_of(&v)).unwrap();
        assert_ne!(a.path(), b.path(), "a second writer writes another file");
        assert_eq!(files(dir.path()), 2);
        drop(busy);
        // Alone again: the first lane's segment, after the first frame.
        let c = segs.append(&frame_of(&v)).unwrap();
        assert_eq!(c.path(), a.path());
        assert!(c.offset() > a.offset());
        // A frame with a segment of its own takes no lane (a small append
        // at the same time keeps the first); a batch with a shared one does.
        assert!(segs.lane_for([512 << 10, 600 << 10].into_iter()).is_none());
        let one = segs.lane_for([512 << 10, 100].into_iter());
        assert!(one.is_some_and(|w| std::ptr::eq(w.0, &segs.lanes[0])));
        // Every lane taken: the first one is shared.
        let held: Vec<_> = (0..segs.lanes.len()).map(|_| segs.lane()).collect();
        assert!(held
            .iter()
            .all(|w| w.0.writing.load(Ordering::Relaxed) == 1));
        let d = segs.append(&frame_of(&v)).unwrap();
        assert_eq!(d.path(), a.path());
        drop(held);
        assert!(segs
            .lanes
            .iter()
            .all(|l| l.writing.load(Ordering::Relaxed) == 0));
        for e in [&a, &b, &c, &d] {
            assert_eq!(
                decode::<PrimitiveArray<u64>>(&e.buffer().unwrap()).unwrap(),
                v
            );
        }
    }

    #[test]
    fn concurrent_appends_reads_and_frees() {
        const THREADS: u64 = 6;
        const OPS: u64 = 400;
        let dir = tempfile::tempdir().unwrap();
        let segs = Arc::new(Segments::with_sizes(dir.path(), 256 << 10, 64 << 10));
        let deadline = Instant::now() + Duration::from_secs(60);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let segs = Arc::clone(&segs);
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..OPS {
                        assert!(Instant::now() < deadline, "thread {t} too slow");
                        let n = 10 + ((t * 7919 + i * 104_729) % 12_000) as usize;
                        let v = values(n, t * OPS + i);
                        mine.push((segs.append(&frame_of(&v)).unwrap(), v));
                        if i % 3 == 0 {
                            let k = (i as usize * 31) % mine.len();
                            let (e, v) = mine.swap_remove(k);
                            let back: PrimitiveArray<u64> = decode(&e.buffer().unwrap()).unwrap();
                            drop(e);
                            assert_eq!(back, v, "thread {t} op {i}");
                        }
                    }
                    for (e, v) in &mine {
                        assert_eq!(
                            &decode::<PrimitiveArray<u64>>(&e.buffer().unwrap()).unwrap(),
                            v
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = segs.stats();
        assert_eq!(s.live_bytes.load(Ordering::Relaxed), 0);
        // At most the active segments (one a lane) are left, cleared.
        assert!(s.files.load(Ordering::Relaxed) <= lane_count() as u64);
        assert!(files(dir.path()) <= lane_count());
    }
}
