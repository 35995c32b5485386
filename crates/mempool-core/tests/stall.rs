//! Seeded randomized runs that must never stall.
//!
//! THREADS threads share a pool of BOUND bytes and do random `set`s (sizes
//! up to three-quarters of the bound, so that nearly every `set` and every
//! read back from disk makes room), verified `get`s, `delete`s and now and
//! then `move_to_disk` / `copy_to_disk` of their own values. A third of the
//! values are slow: their encode sleeps SLOW_ENCODE and their drop sleeps
//! SLOW_DROP (values read back from disk stay slow), which opens the windows
//! in which a waiter can miss its wakeup (see `lost_wakeup.rs`).
//!
//! A watchdog (the test's own thread) fails the run when no call has
//! returned for STALL, naming the seed, the mode (write-behind on or off),
//! what each thread was doing and the pool's stats; stuck threads are
//! abandoned. Each seed runs with write-behind off and on (one test each).
//! SEEDS is chosen so that a stall in one run of ten is caught with
//! probability above 99.99% (0.9^100 < 10^-4); a seed fixes each thread's
//! operations, not the interleaving, so a stalled seed may pass when re-run.
//!
//! By default a test stops at its first stall. With `STALL_ALL_SEEDS=1` in
//! the environment it runs every seed and reports all the stalls (to measure
//! how often a run stalls; each stall costs STALL).

mod common;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mempool_core::{DRef, Pool, PoolConfig};
use mempool_serde::{FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter};

// Knobs.
/// Worker threads sharing one pool.
const THREADS: usize = 6;
/// The pool's memory bound.
const BOUND: u64 = 64 << 10;
/// Values are 1 to MAX_VALUE bytes.
const MAX_VALUE: u64 = BOUND / 4 * 3;
/// Operations per thread and seed (then each thread deletes what it holds).
/// Short runs: on the pool before the lost-wakeup fix, a run of 25
/// operations per thread stalled more often than one of 400 (which took ten
/// times as long), so many short runs catch more stalls per second.
const OPS: usize = 25;
/// Seeds per mode. On the pool before the lost-wakeup fix, at these knobs,
/// one run in five stalled with write-behind and one in three without (at
/// OPS = 50, half as many): even at one in ten, 0.9^100 < 10^-4.
const SEEDS: u64 = 100;
/// No call returning for this long is a stall.
const STALL: Duration = Duration::from_secs(10);
/// How long a slow value's encode and drop sleep.
const SLOW_ENCODE: Duration = Duration::from_millis(1);
const SLOW_DROP: Duration = Duration::from_millis(2);
/// Values a thread holds at most (then it deletes instead of setting).
const MAX_OWN: usize = 8;
/// How long the end-of-seed check waits for write-behind to settle.
const QUIESCE: Duration = Duration::from_secs(10);

const G: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(G);
        mix(self.0)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Bytes made from a key; the low bit of the first byte says whether the
/// value is slow, so that a value read back from disk is slow too.
#[derive(Debug)]
struct Blob {
    bytes: Vec<u8>,
}

impl Blob {
    fn new(key: u64, len: usize, slow: bool) -> Self {
        Self {
            bytes: blob_bytes(key, len, slow),
        }
    }

    fn slow(&self) -> bool {
        self.bytes.first().is_some_and(|b| b & 1 == 1)
    }
}

fn blob_bytes(key: u64, len: usize, slow: bool) -> Vec<u8> {
    let mut rng = Rng(mix(key));
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let word = rng.next_u64().to_le_bytes();
        bytes.extend_from_slice(&word[..(len - bytes.len()).min(8)]);
    }
    if let Some(b) = bytes.first_mut() {
        *b = (*b & !1) | u8::from(slow);
    }
    bytes
}

impl Drop for Blob {
    fn drop(&mut self) {
        if self.slow() {
            std::thread::sleep(SLOW_DROP);
        }
    }
}

impl FrameType for Blob {
    fn type_name() -> Cow<'static, str> {
        "test::stall::Blob".into()
    }
}

impl MmWrite for Blob {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        if self.slow() {
            std::thread::sleep(SLOW_ENCODE);
        }
        w.bytes(&self.bytes);
        Ok(())
    }
}

impl MmRead for Blob {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self {
            bytes: r.bytes()?.to_vec(),
        })
    }
}

impl MemSize for Blob {
    fn mem_size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// What a worker is doing, for the stall report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Idle = 0,
    Set,
    Get,
    Delete,
    MoveToDisk,
    CopyToDisk,
    Stats,
    /// Deleting what it holds, after its OPS.
    Cleanup,
    Done,
}

impl Op {
    fn from_u8(v: u8) -> Self {
        [
            Op::Idle,
            Op::Set,
            Op::Get,
            Op::Delete,
            Op::MoveToDisk,
            Op::CopyToDisk,
            Op::Stats,
            Op::Cleanup,
            Op::Done,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Op::Idle)
    }
}

/// What the workers report to the watchdog.
struct Watch {
    start: Instant,
    /// Milliseconds since `start` at which a call last returned.
    last_ms: AtomicU64,
    /// Per worker: its current operation, the size involved, and how many
    /// operations it has done.
    doing: [AtomicU8; THREADS],
    size: [AtomicU64; THREADS],
    done: [AtomicU64; THREADS],
}

impl Watch {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            doing: std::array::from_fn(|_| AtomicU8::new(Op::Idle as u8)),
            size: std::array::from_fn(|_| AtomicU64::new(0)),
            done: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn begin(&self, t: usize, op: Op, size: u64) {
        self.size[t].store(size, Ordering::Relaxed);
        self.doing[t].store(op as u8, Ordering::Relaxed);
    }

    /// A call returned.
    fn progress(&self, t: usize) {
        self.done[t].fetch_add(1, Ordering::Relaxed);
        self.doing[t].store(Op::Idle as u8, Ordering::Relaxed);
        self.last_ms.fetch_max(self.now_ms(), Ordering::Relaxed);
    }

    fn report(&self) -> String {
        (0..THREADS)
            .map(|t| {
                format!(
                    "  thread {t}: {:?} ({} bytes) after {} calls\n",
                    Op::from_u8(self.doing[t].load(Ordering::Relaxed)),
                    self.size[t].load(Ordering::Relaxed),
                    self.done[t].load(Ordering::Relaxed)
                )
            })
            .collect()
    }
}

/// A value a worker stored.
#[derive(Clone, Copy)]
struct Own {
    dref: DRef,
    key: u64,
    len: usize,
    slow: bool,
}

fn verify(what: &str, v: &Blob, own: &Own) {
    assert_eq!(
        v.bytes.len(),
        own.len,
        "{what} {:?}: wrong length",
        own.dref
    );
    let want = blob_bytes(own.key, own.len, own.slow);
    if let Some(i) = (0..own.len).find(|&i| v.bytes[i] != want[i]) {
        panic!(
            "{what} {:?}: byte {i} is {:#x}, expected {:#x}",
            own.dref, v.bytes[i], want[i]
        );
    }
}

fn check_bound(pool: &Pool) {
    let s = pool.stats();
    assert!(
        s.mem_bytes + s.spilling_bytes <= BOUND,
        "mem_bytes {} + spilling_bytes {} over the bound {BOUND}: {s:?}",
        s.mem_bytes,
        s.spilling_bytes
    );
}

fn worker(seed: u64, t: usize, pool: &Pool, watch: &Watch) {
    let mut rng = Rng(mix(seed.wrapping_mul(G) ^ (t as u64 + 1)));
    let mut own: Vec<Own> = Vec::new();
    for i in 0..OPS {
        let r = rng.below(100);
        if own.is_empty() || (r < 40 && own.len() < MAX_OWN) {
            let len = 1 + rng.below(MAX_VALUE) as usize;
            let slow = rng.below(3) == 0;
            let key = mix(seed ^ ((t as u64) << 48) ^ (i as u64) << 16);
            watch.begin(t, Op::Set, len as u64);
            let dref = pool
                .set(Blob::new(key, len, slow))
                .unwrap_or_else(|e| panic!("thread {t}: set of {len} bytes: {e:?}"));
            watch.progress(t);
            own.push(Own {
                dref,
                key,
                len,
                slow,
            });
        } else {
            let k = rng.below(own.len() as u64) as usize;
            let o = own[k];
            if r < 70 {
                watch.begin(t, Op::Get, o.len as u64);
                let v = pool
                    .get::<Blob>(&o.dref)
                    .unwrap_or_else(|e| panic!("thread {t}: get {:?}: {e}", o.dref));
                verify("get", &v, &o);
                // A value evicted meanwhile is dropped here: slow too.
                drop(v);
                watch.progress(t);
            } else if r < 92 || own.len() >= MAX_OWN {
                watch.begin(t, Op::Delete, o.len as u64);
                pool.delete(&o.dref)
                    .unwrap_or_else(|e| panic!("thread {t}: delete {:?}: {e}", o.dref));
                watch.progress(t);
                own.swap_remove(k);
            } else if r < 96 {
                watch.begin(t, Op::MoveToDisk, o.len as u64);
                pool.move_to_disk(&o.dref)
                    .unwrap_or_else(|e| panic!("thread {t}: move_to_disk {:?}: {e}", o.dref));
                watch.progress(t);
            } else {
                watch.begin(t, Op::CopyToDisk, o.len as u64);
                pool.copy_to_disk(&o.dref)
                    .unwrap_or_else(|e| panic!("thread {t}: copy_to_disk {:?}: {e}", o.dref));
                watch.progress(t);
            }
        }
        watch.begin(t, Op::Stats, 0);
        check_bound(pool);
        watch.progress(t);
    }
    for o in own {
        watch.begin(t, Op::Cleanup, o.len as u64);
        pool.delete(&o.dref).unwrap();
        watch.progress(t);
    }
    watch.begin(t, Op::Done, 0);
}

/// The pool's stats, or a note if taking them blocks.
fn stats_or_timeout(pool: &Pool) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    let pool = pool.clone();
    std::thread::spawn(move || {
        let _ = tx.send(format!("{:?}", pool.stats()));
    });
    rx.recv_timeout(Duration::from_secs(2))
        .unwrap_or_else(|_| "<stats blocked: the index lock is held>".into())
}

/// Once everything is deleted: no memory, no disk, no files (write-behind
/// may still be finishing a copy of a deleted value: retried until QUIESCE).
fn check_empty(pool: &Pool) -> std::result::Result<(), String> {
    let deadline = Instant::now() + QUIESCE;
    loop {
        let s = pool.stats();
        let files = common::files_holding_bytes(pool.session_dir());
        let counts = (
            s.mem_values,
            s.mem_bytes,
            s.spilling_bytes,
            s.disk_values,
            s.disk_bytes,
            s.detached_bytes,
        );
        if counts == (0, 0, 0, 0, 0, 0) && files.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after deleting everything, (mem_values, mem_bytes, spilling_bytes, \
                 disk_values, disk_bytes, detached_bytes) = {counts:?}, files {files:?}: {s:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A run that stalled: its threads are abandoned, its pool and directory
/// kept until the test ends.
struct Stalled {
    report: String,
    _pool: Pool,
    _dir: tempfile::TempDir,
}

/// Runs one seed; `Err` if it stalled.
fn run_seed(seed: u64, write_behind: bool) -> std::result::Result<(), Stalled> {
    let mode = if write_behind {
        "write-behind on"
    } else {
        "write-behind off"
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(BOUND)
            .write_behind(write_behind)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let watch = Arc::new(Watch::new());
    let mut handles: Vec<Option<JoinHandle<()>>> = (0..THREADS)
        .map(|t| {
            let (pool, watch) = (pool.clone(), Arc::clone(&watch));
            Some(
                std::thread::Builder::new()
                    .name(format!("stall-{seed}-{t}"))
                    .spawn(move || worker(seed, t, &pool, &watch))
                    .unwrap(),
            )
        })
        .collect();
    loop {
        for h in &mut handles {
            if h.as_ref().is_some_and(JoinHandle::is_finished) {
                if let Err(p) = h.take().expect("some").join() {
                    eprintln!("seed {seed} ({mode}): a worker panicked");
                    std::panic::resume_unwind(p);
                }
            }
        }
        if handles.iter().all(Option::is_none) {
            break;
        }
        let idle = watch
            .now_ms()
            .saturating_sub(watch.last_ms.load(Ordering::Relaxed));
        if idle > STALL.as_millis() as u64 {
            let report = format!(
                "seed {seed} ({mode}) stalled: no call returned for {STALL:?} \
                 ({:.1} s into the run)\n{}  stats: {}",
                watch.start.elapsed().as_secs_f64(),
                watch.report(),
                stats_or_timeout(&pool)
            );
            return Err(Stalled {
                report,
                _pool: pool,
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = check_empty(&pool) {
        panic!("seed {seed} ({mode}): {e}");
    }
    let s = pool.stats();
    eprintln!(
        "seed {seed:2} ({mode}): {:.2} s, {} evictions, {} spills, {} restores",
        watch.start.elapsed().as_secs_f64(),
        s.evictions,
        s.spills,
        s.restores
    );
    Ok(())
}

fn run_all(write_behind: bool) {
    let all = std::env::var_os("STALL_ALL_SEEDS").is_some_and(|v| v != "0" && !v.is_empty());
    let mode = if write_behind { "on" } else { "off" };
    let start = Instant::now();
    let mut stalled = Vec::new();
    let mut ran = 0;
    for seed in 0..SEEDS {
        ran += 1;
        if let Err(s) = run_seed(seed, write_behind) {
            if all {
                eprintln!("{}", s.report);
            }
            stalled.push(s);
            if !all {
                break;
            }
        }
    }
    eprintln!(
        "write-behind {mode}: {} of {ran} runs stalled ({:.1} s){}",
        stalled.len(),
        start.elapsed().as_secs_f64(),
        if stalled.is_empty() || all {
            ""
        } else {
            "; stopped at the first stall (STALL_ALL_SEEDS=1 runs every seed)"
        }
    );
    if !stalled.is_empty() {
        let reports: Vec<&str> = stalled.iter().map(|s| s.report.as_str()).collect();
        panic!(
            "{} of {ran} runs stalled (write-behind {mode}):\n{}",
            stalled.len(),
            reports.join("\n")
        );
    }
}

#[test]
fn random_operations_never_stall_without_write_behind() {
    run_all(false);
}

#[test]
fn random_operations_never_stall_with_write_behind() {
    run_all(true);
}
