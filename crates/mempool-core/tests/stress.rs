//! Bounded stress tests: many threads share one `Pool`, with values larger
//! than a quarter of `max_memsize` so that nearly every `set` and restore
//! spills something.
//!
//! - `mixed_operations`: THREADS threads run seeded random mixes of set, get
//!   (verified), delete, move_to_disk, copy_to_disk and `Ref`s held across
//!   other operations, against a shared registry of live values.
//! - `get_racing_spill_of_same_value`: GETTERS threads hammer `get` on a few
//!   hot values while other threads spill exactly those values (move_to_disk,
//!   sets that evict, and replacing hot values with fresh ones that have no
//!   disk copy yet, so that spills really write).
//!
//! Every get is checked against the value's contents; the memory bound is
//! checked after every operation; the main thread gives up after DEADLINE
//! ("deadlock or livelock"); at the end every counter must be back to 0 and
//! the session directory empty.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, Pool, PoolConfig, PoolError, Ref};

// Knobs.
/// Threads of the mixed test, and getters of the racing test.
const THREADS: usize = 8;
/// Operations per thread in the mixed test.
const OPS_PER_THREAD: usize = 1500;
/// The pool's memory bound.
const MAX_MEMSIZE: u64 = 4 << 20;
/// Values are larger than a quarter of the bound and at most a third of it.
const MIN_VALUE_BYTES: u64 = MAX_MEMSIZE / 4 + 8;
const MAX_VALUE_BYTES: u64 = MAX_MEMSIZE / 3;
/// Live values in the mixed test's registry beyond which sets turn to deletes.
const MAX_LIVE: usize = 24;
/// `Ref`s a thread holds across other operations at most.
const MAX_HELD: usize = 2;
/// Gets per getter thread in the racing test.
const GETS_PER_GETTER: usize = 1000;
/// Hot values in the racing test.
const HOT: usize = 3;
/// How long a quiescence check waits for write-behind to finish its copies.
const QUIESCE: Duration = Duration::from_secs(10);
/// How long the main thread waits for the workers.
const DEADLINE: Duration = Duration::from_secs(60);
/// Seed of the per-thread generators.
const SEED: u64 = 42;

type Value = PrimitiveArray<u64>;

use common::{mix, Rng, G};

/// Elements of the value with this seed: its size is a function of the seed.
fn value_len(seed: u64) -> usize {
    let lo = MIN_VALUE_BYTES / 8;
    let hi = MAX_VALUE_BYTES / 8;
    (lo + mix(seed ^ 0x5555_5555) % (hi - lo + 1)) as usize
}

fn element(h: u64, i: usize) -> u64 {
    h ^ (i as u64).wrapping_mul(G)
}

fn make_value(seed: u64) -> Value {
    let h = mix(seed);
    (0..value_len(seed)).map(|i| element(h, i)).collect()
}

/// Panics unless `v` is exactly the value made from `seed`.
fn verify(what: &str, dref: &DRef, v: &Value, seed: u64) {
    let len = value_len(seed);
    assert_eq!(v.len(), len, "{what} {dref:?}: wrong length");
    let h = mix(seed);
    if let Some((i, &x)) = v
        .values()
        .iter()
        .enumerate()
        .find(|&(i, &x)| x != element(h, i))
    {
        panic!(
            "{what} {dref:?}: element {i} is {x:#x}, expected {:#x}",
            element(h, i)
        );
    }
}

fn new_pool(dir: &Path) -> Pool {
    let config = PoolConfig::default()
        .max_memsize(MAX_MEMSIZE)
        .spill_dir(dir);
    Pool::new(config).unwrap()
}

fn check_bound(pool: &Pool) {
    // Values being written out are still in memory: they count too.
    let s = pool.stats();
    assert!(
        s.mem_bytes + s.spilling_bytes <= MAX_MEMSIZE,
        "mem_bytes {} + spilling_bytes {} over max_memsize {MAX_MEMSIZE}: {s:?}",
        s.mem_bytes,
        s.spilling_bytes
    );
}

fn files_in(dir: &Path) -> Vec<String> {
    common::files_holding_bytes(dir)
}

/// With no operation in progress: the counters agree with the values' own
/// info and with the files in the session directory. Write-behind may still
/// be writing a copy (its bytes reserved, its temporary file present), so the
/// check is retried until it holds or QUIESCE passes.
fn check_quiescent(pool: &Pool, live: &[(DRef, u64)]) {
    let deadline = Instant::now() + QUIESCE;
    loop {
        match quiescent_mismatch(pool, live) {
            None => return,
            Some(why) if Instant::now() > deadline => panic!("{why}"),
            Some(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn quiescent_mismatch(pool: &Pool, live: &[(DRef, u64)]) -> Option<String> {
    let (mut mem_values, mut mem_bytes, mut disk_values, mut disk_bytes) = (0, 0, 0, 0);
    for (dref, _) in live {
        let info = pool.info(dref).unwrap();
        assert!(!info.spilling, "{dref:?} still spilling");
        if info.in_memory {
            mem_values += 1;
            mem_bytes += info.mem_size;
        }
        if let Some(n) = info.disk_size {
            disk_values += 1;
            disk_bytes += n;
        }
    }
    let s = pool.stats();
    let got = (
        s.mem_values,
        s.mem_bytes,
        s.disk_values,
        s.disk_bytes,
        s.spilling_bytes,
    );
    let want = (mem_values, mem_bytes, disk_values, disk_bytes, 0);
    if got != want {
        return Some(format!(
            "stats (mem_values, mem_bytes, disk_values, disk_bytes, spilling_bytes) {got:?} vs \
             the values' info {want:?}: {s:?}"
        ));
    }
    // Spilled values share segment files: there are files exactly while
    // some value is on disk (no reader pins a range here).
    let files = files_in(pool.session_dir());
    if files.is_empty() != (disk_values == 0) {
        return Some(format!(
            "{} segment files in the session directory vs {disk_values} values with a \
             spill file: {files:?}",
            files.len()
        ));
    }
    None
}

/// Deletes `live`, then checks that nothing is left: counters at 0 (including
/// `detached_bytes`: every `Ref` must be dropped by now) and no files.
fn delete_all_and_check_empty(pool: &Pool, live: &[(DRef, u64)]) {
    for (dref, _) in live {
        pool.delete(dref).unwrap();
    }
    // Write-behind may still be writing a copy of a value just deleted (its
    // bytes reserved, the value held until the write settles and finds it
    // gone): wait for that, up to QUIESCE.
    let deadline = Instant::now() + QUIESCE;
    let mut s = pool.stats();
    while (s.disk_bytes, s.detached_bytes) != (0, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        s = pool.stats();
    }
    assert_eq!(
        (
            s.mem_values,
            s.mem_bytes,
            s.disk_values,
            s.disk_bytes,
            s.spilling_bytes,
            s.detached_bytes
        ),
        (0, 0, 0, 0, 0, 0),
        "counters after deleting everything: {s:?}"
    );
    let files = files_in(pool.session_dir());
    assert!(
        files.is_empty(),
        "files left in the session directory: {files:?}"
    );
}

/// Tells the main thread that a worker ended (normally or by panicking).
struct Done {
    id: usize,
    tx: mpsc::Sender<usize>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.tx.send(self.id);
    }
}

/// Worker threads that report their end on a channel, so that the main
/// thread can wait for them with a deadline.
struct Workers {
    handles: Vec<Option<JoinHandle<()>>>,
    tx: mpsc::Sender<usize>,
    rx: mpsc::Receiver<usize>,
    /// Raised when a worker panics, for workers that loop until told to stop.
    stop: Arc<AtomicBool>,
}

impl Workers {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            handles: Vec::new(),
            tx,
            rx,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts `f`; returns its worker id.
    fn spawn(&mut self, f: impl FnOnce() + Send + 'static) -> usize {
        let id = self.handles.len();
        let tx = self.tx.clone();
        self.handles.push(Some(std::thread::spawn(move || {
            let _done = Done { id, tx };
            f();
        })));
        id
    }

    /// Waits until the workers `ids` have ended, re-raising a worker's panic;
    /// panics with "deadlock or livelock" past `deadline`.
    fn wait(&mut self, what: &str, pool: &Pool, ids: std::ops::Range<usize>, deadline: Instant) {
        loop {
            let running = ids.clone().filter(|&i| self.handles[i].is_some()).count();
            if running == 0 {
                return;
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(id) => {
                    let h = self.handles[id].take().expect("each worker reports once");
                    if let Err(payload) = h.join() {
                        self.stop.store(true, Ordering::Relaxed);
                        std::panic::resume_unwind(payload);
                    }
                }
                Err(_) => {
                    self.stop.store(true, Ordering::Relaxed);
                    panic!(
                        "deadlock or livelock: {what}: {running} of {} threads still running \
                         after {DEADLINE:?}; stats {:?}",
                        ids.len(),
                        pool.stats()
                    );
                }
            }
        }
    }
}

type Registry = Arc<Mutex<Vec<(DRef, u64)>>>;

fn registered(registry: &Registry, dref: &DRef) -> bool {
    registry.lock().unwrap().iter().any(|(d, _)| d == dref)
}

fn pick(registry: &Registry, rng: &mut Rng) -> Option<(DRef, u64)> {
    let reg = registry.lock().unwrap();
    (!reg.is_empty()).then(|| reg[rng.below(reg.len())])
}

/// An error other than `NotFound` fails the test; `NotFound` is allowed only
/// for a reference that is no longer registered (another thread deleted it).
fn allow_not_found(what: &str, err: PoolError, dref: &DRef, registry: &Registry) {
    match err {
        PoolError::NotFound { .. } => assert!(
            !registered(registry, dref),
            "{what} of {dref:?} gave NotFound, but it is still registered (nobody deleted it)"
        ),
        e => panic!("{what} of {dref:?}: {e}"),
    }
}

fn mixed_worker(id: usize, pool: &Pool, registry: &Registry) {
    let mut rng = Rng::new(SEED ^ mix(id as u64 + 1));
    let mut held: Vec<(Ref<Value>, DRef, u64)> = Vec::new();
    for _ in 0..OPS_PER_THREAD {
        let mut dice = rng.below(100);
        if dice < 25 && registry.lock().unwrap().len() >= MAX_LIVE {
            dice = 60; // a delete instead of a set
        }
        match dice {
            // Set.
            0..=24 => {
                let seed = rng.next_u64();
                let dref = pool
                    .set(make_value(seed))
                    .unwrap_or_else(|e| panic!("set: {e}"));
                registry.lock().unwrap().push((dref, seed));
            }
            // Get and verify.
            25..=59 => {
                if let Some((dref, seed)) = pick(registry, &mut rng) {
                    match pool.get::<Value>(&dref) {
                        Ok(v) => verify("get", &dref, &v, seed),
                        Err(e) => allow_not_found("get", e, &dref, registry),
                    }
                }
            }
            // Delete: unregister first, so a get that sees NotFound finds it
            // unregistered; only the thread that unregistered it deletes it.
            60..=67 => {
                let taken = {
                    let mut reg = registry.lock().unwrap();
                    (!reg.is_empty()).then(|| {
                        let i = rng.below(reg.len());
                        reg.swap_remove(i)
                    })
                };
                if let Some((dref, _)) = taken {
                    pool.delete(&dref).unwrap_or_else(|e| {
                        panic!("delete of {dref:?}, which only this thread deletes: {e}")
                    });
                }
            }
            68..=77 => {
                if let Some((dref, _)) = pick(registry, &mut rng) {
                    match pool.move_to_disk(&dref) {
                        Ok(f) => assert!(f.size > 0, "move_to_disk {dref:?}: empty file"),
                        Err(e) => allow_not_found("move_to_disk", e, &dref, registry),
                    }
                }
            }
            78..=87 => {
                if let Some((dref, _)) = pick(registry, &mut rng) {
                    match pool.copy_to_disk(&dref) {
                        Ok(f) => assert!(f.size > 0, "copy_to_disk {dref:?}: empty file"),
                        Err(e) => allow_not_found("copy_to_disk", e, &dref, registry),
                    }
                }
            }
            // Hold a Ref across the operations that follow.
            88..=95 => {
                if let Some((dref, seed)) = pick(registry, &mut rng) {
                    match pool.get::<Value>(&dref) {
                        Ok(v) => {
                            verify("get (to hold)", &dref, &v, seed);
                            if held.len() == MAX_HELD {
                                let (old, d, s) = held.remove(0);
                                verify("held Ref", &d, &old, s);
                            }
                            held.push((v, dref, seed));
                        }
                        Err(e) => allow_not_found("get (to hold)", e, &dref, registry),
                    }
                }
            }
            // Let go of a held Ref (its value may have been evicted or
            // deleted meanwhile: it must still read right).
            _ => {
                if !held.is_empty() {
                    let (v, d, s) = held.remove(rng.below(held.len()));
                    verify("held Ref", &d, &v, s);
                }
            }
        }
        check_bound(pool);
    }
    for (v, d, s) in held {
        verify("held Ref", &d, &v, s);
    }
}

#[test]
fn mixed_operations() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    let registry: Registry = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Workers::new();
    let start = Instant::now();
    for id in 0..THREADS {
        let (pool, registry) = (pool.clone(), Arc::clone(&registry));
        workers.spawn(move || mixed_worker(id, &pool, &registry));
    }
    workers.wait("mixed_operations", &pool, 0..THREADS, start + DEADLINE);
    let elapsed = start.elapsed();

    let live = registry.lock().unwrap().clone();
    check_quiescent(&pool, &live);
    for (dref, seed) in &live {
        let v = pool.get::<Value>(dref).unwrap();
        verify("final get", dref, &v, *seed);
        drop(v);
        check_bound(&pool);
    }
    let s = pool.stats();
    assert!(
        s.spills > 0 && s.restores > 0 && s.evictions > 0,
        "the test exercised nothing: {s:?}"
    );
    eprintln!("mixed_operations: {THREADS} threads x {OPS_PER_THREAD} ops in {elapsed:?}; {s:?}");
    check_quiescent(&pool, &live);
    delete_all_and_check_empty(&pool, &live);
}

/// Hot value slots: getters read them, the rotator replaces their values.
type Hot = Arc<RwLock<Vec<(DRef, u64)>>>;

fn getter(id: usize, pool: &Pool, hot: &Hot) {
    let mut rng = Rng::new(SEED ^ mix(100 + id as u64));
    let mut held: Option<(Ref<Value>, DRef, u64)> = None;
    for _ in 0..GETS_PER_GETTER {
        let slot = rng.below(HOT);
        let (dref, seed) = hot.read().unwrap()[slot];
        match pool.get::<Value>(&dref) {
            Ok(v) => {
                verify("hot get", &dref, &v, seed);
                if rng.below(4) == 0 {
                    if let Some((old, d, s)) = held.replace((v, dref, seed)) {
                        verify("held hot Ref", &d, &old, s);
                    }
                }
            }
            Err(PoolError::NotFound { .. }) => {
                // Only a value the rotator has replaced may be gone.
                let now = hot.read().unwrap()[slot].0;
                assert_ne!(
                    now, dref,
                    "get of hot {dref:?} gave NotFound while it is still hot"
                );
            }
            Err(e) => panic!("hot get {dref:?}: {e}"),
        }
        check_bound(pool);
    }
    if let Some((v, d, s)) = held {
        verify("held hot Ref", &d, &v, s);
    }
}

/// Runs `step` until the workers' stop flag is raised, then deletes what it
/// kept in `own`.
fn spiller(
    workers: &mut Workers,
    pool: &Pool,
    hot: &Hot,
    id: u64,
    step: fn(&Pool, &Hot, &mut Rng, &mut Vec<DRef>),
) {
    let (pool, hot, stop) = (pool.clone(), Arc::clone(hot), Arc::clone(&workers.stop));
    workers.spawn(move || {
        let mut rng = Rng::new(SEED ^ mix(200 + id));
        let mut own = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            step(&pool, &hot, &mut rng, &mut own);
            check_bound(&pool);
            std::thread::yield_now();
        }
        for d in own {
            pool.delete(&d).unwrap();
        }
    });
}

#[test]
fn get_racing_spill_of_same_value() {
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    let mut seeds = Rng::new(SEED ^ 0xABCD);
    let hot: Hot = Arc::new(RwLock::new(
        (0..HOT)
            .map(|_| {
                let seed = seeds.next_u64();
                (pool.set(make_value(seed)).unwrap(), seed)
            })
            .collect(),
    ));
    let mut workers = Workers::new();
    let start = Instant::now();
    for id in 0..THREADS {
        let (pool, hot) = (pool.clone(), Arc::clone(&hot));
        workers.spawn(move || getter(id, &pool, &hot));
    }
    // Moves hot values to disk.
    spiller(&mut workers, &pool, &hot, 0, |pool, hot, rng, _| {
        let (dref, _) = hot.read().unwrap()[rng.below(HOT)];
        match pool.move_to_disk(&dref) {
            Ok(_) | Err(PoolError::NotFound { .. }) => {}
            Err(e) => panic!("move_to_disk of hot {dref:?}: {e}"),
        }
    });
    // Sets fillers, which evict (hot values among them), keeping one alive.
    spiller(&mut workers, &pool, &hot, 1, |pool, _, rng, own| {
        let seed = rng.next_u64();
        own.push(pool.set(make_value(seed)).unwrap());
        if own.len() > 1 {
            pool.delete(&own.remove(0)).unwrap();
        }
    });
    // Replaces a hot value with a fresh one, which has no disk copy yet: the
    // next spill of it writes while getters read it. The old one leaves the
    // slot before it is deleted.
    spiller(&mut workers, &pool, &hot, 2, |pool, hot, rng, _| {
        let seed = rng.next_u64();
        let dref = pool.set(make_value(seed)).unwrap();
        let slot = rng.below(HOT);
        let old = std::mem::replace(&mut hot.write().unwrap()[slot], (dref, seed));
        pool.delete(&old.0).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    });
    let all = workers.handles.len();
    workers.wait("getters", &pool, 0..THREADS, start + DEADLINE);
    workers.stop.store(true, Ordering::Relaxed);
    workers.wait("spillers", &pool, THREADS..all, start + DEADLINE);
    let elapsed = start.elapsed();

    let s = pool.stats();
    eprintln!(
        "get_racing_spill_of_same_value: {THREADS} getters x {GETS_PER_GETTER} gets in \
         {elapsed:?}; {s:?}"
    );
    assert!(s.misses > 0, "no get ever read a spilled hot value: {s:?}");
    let live = hot.read().unwrap().clone();
    check_quiescent(&pool, &live);
    for (dref, seed) in &live {
        verify(
            "final hot get",
            dref,
            &pool.get::<Value>(dref).unwrap(),
            *seed,
        );
    }
    delete_all_and_check_empty(&pool, &live);
}

/// Regression test (found by `mixed_operations`): `copy_to_disk` racing a
/// spill of the same value must leave one file and honest disk counts.
///
/// `copy_to_disk` writes its file without marking the entry, then stores it
/// if `e.file.is_none()`; meanwhile `move_to_disk` (or an eviction by
/// `make_room`) of the same value, which `wait_not_spilling` does not hold
/// back, starts a spill (`spilling = true`, file still `None`). When the copy
/// lands first, `spill` then overwrites `e.file` without looking: the copy's
/// file stays in the session directory, owned by nobody, and `disk_values` /
/// `disk_bytes` count both files — after `delete` they stay at 1 and the
/// copy's length for ever.
#[test]
fn copy_to_disk_racing_spill_keeps_one_file() {
    const ROUNDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let pool = new_pool(dir.path());
    let barrier = Arc::new(std::sync::Barrier::new(2));
    for round in 0..ROUNDS {
        // Three quarters of the bound: long writes, a wide window.
        let len = (MAX_MEMSIZE * 3 / 4 / 8) as usize;
        let x = pool.set(Value::from(vec![round as u64; len])).unwrap();
        let copier = {
            let (pool, barrier) = (pool.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                pool.copy_to_disk(&x).unwrap();
            })
        };
        barrier.wait();
        pool.move_to_disk(&x).unwrap();
        copier.join().unwrap();

        let info = pool.info(&x).unwrap();
        let s = pool.stats();
        let files = files_in(pool.session_dir());
        assert_eq!(
            (s.disk_values, s.disk_bytes, files.len()),
            (1, info.disk_size.unwrap(), 1),
            "round {round}: one value with one spill file of {:?} bytes, but stats say \
             {s:?} and the session directory holds {files:?}",
            info.disk_size
        );
        pool.delete(&x).unwrap();
        let s = pool.stats();
        let files = files_in(pool.session_dir());
        assert_eq!(
            (s.disk_values, s.disk_bytes, files.len()),
            (0, 0, 0),
            "round {round}: after delete: {s:?}, files {files:?}"
        );
    }
}
