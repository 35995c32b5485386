//! The sharded index under load, with values small enough that shards get
//! credit (room linked into without the index lock) while memory is below
//! half the bound, and lose it above.
//!
//! - `many_threads_across_shards`: THREADS threads, each swinging its own
//!   values between filling (memory far past the bound: evictions, restores,
//!   write-behind) and draining (memory below half: credit handed out, sets
//!   on the fast path), with gets of everybody's values racing deletes. Every
//!   get is verified, the bound is checked as the threads go, the run is
//!   bounded in time, and the main thread fails past DEADLINE instead of
//!   hanging. At the end every value left reads back, and deleting them all
//!   leaves every counter at 0 and no spill bytes.
//! - `eviction_order_is_global_lru_across_shards`: one thread, many shards;
//!   values stored and read in a seeded order leave memory exactly in the
//!   order of one global LRU list.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, Pool, PoolConfig, PoolError};

// Knobs.
/// Worker threads.
const THREADS: usize = 8;
/// Shards of the pool (more than this machine's default, so that every
/// thread's values spread over many).
const SHARDS: usize = 16;
/// The pool's memory bound.
const MAX_MEMSIZE: u64 = 256 << 10;
/// Values hold 8 to MAX_ELEMS u64s (64 bytes to 2 KiB).
const MAX_ELEMS: usize = 256;
/// Values a thread holds at most while filling (8 threads × 160 × ~1 KiB is
/// about five times the bound).
const FILL: usize = 160;
/// Values a thread keeps while draining (8 × 12 × ~1 KiB is well under half
/// the bound).
const DRAIN: usize = 12;
/// How long each filling or draining phase lasts.
const PHASE: Duration = Duration::from_millis(100);
/// How long the workers run.
const RUN: Duration = Duration::from_secs(3);
/// How long the main thread waits for them.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long write-behind may take to settle at the end.
const QUIESCE: Duration = Duration::from_secs(10);
/// Seed of the per-thread generators.
const SEED: u64 = 42;

type Value = PrimitiveArray<u64>;

use common::{mix, Rng, G};

/// The value of seed `seed`: its length and contents follow from the seed.
fn make(seed: u64) -> Value {
    let len = 8 + (mix(seed) % (MAX_ELEMS as u64 - 7)) as usize;
    PrimitiveArray::from(
        (0..len as u64)
            .map(|i| mix(seed ^ i.wrapping_mul(G)))
            .collect::<Vec<_>>(),
    )
}

fn verify(what: &str, v: &Value, seed: u64) {
    let want = make(seed);
    assert!(
        v.values() == want.values(),
        "{what}: value of seed {seed} read back wrong ({} elements, want {})",
        v.len(),
        want.len()
    );
}

fn check_bound(pool: &Pool) {
    let s = pool.stats();
    assert!(
        s.mem_bytes + s.spilling_bytes <= MAX_MEMSIZE,
        "mem_bytes {} + spilling_bytes {} over {MAX_MEMSIZE}: {s:?}",
        s.mem_bytes,
        s.spilling_bytes
    );
}

/// Everybody's live values, for gets across threads.
type Shared = Arc<RwLock<HashMap<u64, DRef>>>;

fn worker(t: usize, pool: &Pool, shared: &Shared, stop: &AtomicBool, until: Instant) {
    let mut rng = Rng(SEED ^ (t as u64).wrapping_mul(G));
    let mut mine: Vec<(DRef, u64)> = Vec::new();
    let mut next_seed = (t as u64) << 40;
    let mut ops = 0u64;
    let start = until - RUN;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        ops += 1;
        // Every thread fills in the even phases and drains in the odd ones,
        // so that memory swings across half the bound and past all of it.
        let phase = start.elapsed().as_millis() / PHASE.as_millis();
        let filling = if phase.is_multiple_of(2) {
            mine.len() < FILL
        } else {
            mine.len() < DRAIN
        };
        match rng.below(10) {
            // Set while filling (or now and then).
            0..=5 if filling || rng.below(8) == 0 => {
                next_seed += 1;
                let r = pool.set(make(next_seed)).expect("set");
                shared.write().unwrap().insert(next_seed, r);
                mine.push((r, next_seed));
            }
            // Delete one of mine (while draining, or now and then).
            0..=5 if !mine.is_empty() => {
                let (r, seed) = mine.swap_remove(rng.below(mine.len()));
                shared.write().unwrap().remove(&seed);
                pool.delete(&r).expect("delete of my own value");
            }
            // Get one of mine: it must be there.
            6 | 7 if !mine.is_empty() => {
                let (r, seed) = mine[rng.below(mine.len())];
                let v = pool.get::<Value>(&r).expect("get of my own value");
                verify("own get", &v, seed);
            }
            // Get anybody's: it may have been deleted meanwhile.
            8 => {
                let pick = {
                    let all = shared.read().unwrap();
                    let n = all.len();
                    (n > 0).then(|| {
                        let k = rng.below(n);
                        all.iter().nth(k).map(|(s, r)| (*s, *r))
                    })
                };
                if let Some(Some((seed, r))) = pick {
                    match pool.get::<Value>(&r) {
                        Ok(v) => verify("shared get", &v, seed),
                        Err(PoolError::NotFound { .. }) => {
                            assert!(
                                !shared.read().unwrap().contains_key(&seed),
                                "a registered value is not found"
                            );
                        }
                        Err(e) => panic!("shared get: {e}"),
                    }
                }
            }
            _ => {
                if ops.is_multiple_of(16) {
                    check_bound(pool);
                }
            }
        }
    }
}

#[test]
fn many_threads_across_shards() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(MAX_MEMSIZE)
            .shards(SHARDS)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let shared: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + RUN;
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, shared, stop, tx) = (pool.clone(), shared.clone(), stop.clone(), tx.clone());
            std::thread::spawn(move || {
                struct Done(mpsc::Sender<()>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        let _ = self.0.send(());
                    }
                }
                let _done = Done(tx);
                worker(t, &pool, &shared, &stop, until);
            })
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    for _ in 0..THREADS {
        if rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_err()
        {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "deadlock or livelock: workers still running after {DEADLINE:?}; {:?}",
                pool.stats()
            );
        }
    }
    for h in handles {
        if let Err(panic) = h.join() {
            std::panic::resume_unwind(panic);
        }
    }
    check_bound(&pool);
    let s = pool.stats();
    assert!(
        s.evictions > 0 && s.restores > 0,
        "no eviction or restore: {s:?}"
    );

    // Everything left reads back; then nothing is left.
    let live: Vec<(u64, DRef)> = shared
        .read()
        .unwrap()
        .iter()
        .map(|(s, r)| (*s, *r))
        .collect();
    for (seed, r) in &live {
        verify("final get", &pool.get::<Value>(r).unwrap(), *seed);
    }
    for (_, r) in &live {
        pool.delete(r).unwrap();
    }
    let quiet = Instant::now() + QUIESCE;
    loop {
        let s = pool.stats();
        let empty = s.mem_values == 0
            && s.mem_bytes == 0
            && s.spilling_bytes == 0
            && s.disk_values == 0
            && s.disk_bytes == 0
            && s.segment_live_bytes == 0;
        if empty {
            break;
        }
        assert!(
            Instant::now() < quiet,
            "not empty after deleting everything: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        common::files_holding_bytes(pool.session_dir()).is_empty(),
        "spill bytes left after deleting everything"
    );
}

/// Checks that the values in memory are the most recent ones of `model`
/// (most recent first) and drops the others from it.
fn check_lru(pool: &Pool, model: &mut Vec<DRef>, shards: usize) {
    let resident: Vec<DRef> = model
        .iter()
        .copied()
        .filter(|m| pool.is_in_memory(m).unwrap())
        .collect();
    assert_eq!(
        resident,
        model[..resident.len()],
        "{shards} shards: the values in memory are not the most recent ones"
    );
    model.truncate(resident.len());
}

#[test]
fn eviction_order_is_global_lru_across_shards() {
    const READS: usize = 200;
    for shards in [1, 4, 16, 64] {
        // A thread stores 64 values in one shard before the next: enough
        // values for every shard to hold some.
        let values = 64 * shards as u64 + 64;
        let dir = tempfile::tempdir().unwrap();
        // Values of 1 KiB: about 40 fit.
        let pool = Pool::new(
            PoolConfig::default()
                .max_memsize(40 << 10)
                .shards(shards)
                .write_behind(false)
                .spill_dir(dir.path()),
        )
        .unwrap();
        let mut rng = Rng(SEED + shards as u64);
        // The values in memory, most recent first.
        let mut model: Vec<DRef> = Vec::new();
        let mut refs = Vec::new();
        for _ in 0..values {
            let r = pool.set(PrimitiveArray::from(vec![7u64; 128])).unwrap();
            refs.push(r);
            model.insert(0, r);
            check_lru(&pool, &mut model, shards);
            for _ in 0..rng.below(4) {
                let pick = model[rng.below(model.len())];
                pool.get::<Value>(&pick).unwrap();
                model.retain(|m| m != &pick);
                model.insert(0, pick);
            }
        }
        assert!(model.len() < refs.len(), "nothing was evicted");
        for _ in 0..READS {
            // A value read back from disk becomes most recent and pushes out
            // the least recent ones.
            let r = refs[rng.below(refs.len())];
            pool.get::<Value>(&r).unwrap();
            model.retain(|m| m != &r);
            model.insert(0, r);
            check_lru(&pool, &mut model, shards);
        }
        assert!(pool.stats().restores > 0, "nothing was read back");
    }
}
