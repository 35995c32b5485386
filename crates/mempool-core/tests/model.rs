//! Model-based property test of a pool's residency, spill files and
//! accounting, for LRU and MRU.
//!
//! Random sequences of `set`, `get`, `delete`, `move_to_disk`, `copy_to_disk`,
//! `save_to_disk`, and gets whose `Ref`s are kept across later operations
//! (on live references, and sometimes on deleted ones) run
//! against a pool and against a small reference model that simulates its
//! eviction exactly: a recency list of the resident values (most recent first)
//! with each one's counted size. After every step the contents read back, each
//! value's residency and spill file, and every figure of `stats()` must agree
//! with the model. Deterministic: a fixed seed, no failure persistence, and
//! write-behind off (its background writes are not part of the model).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, FileRef, Policy, Pool, PoolConfig, PoolError, Stats};
use mempool_serde::MemSize;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// The pool's memory bound: a few values of the middle size classes fit.
const MAX_MEMSIZE: u64 = 64 << 10;
/// Cases per policy.
const CASES: u32 = 256;
/// Longest sequence of operations in one case.
const MAX_OPS: usize = 40;
/// The runner's seed.
const SEED: [u8; 32] = [42; 32];

type Value = PrimitiveArray<u64>;

const G: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The contents of the value with this seed and length.
fn contents(seed: u64, len: usize) -> Vec<u64> {
    let h = mix(seed.wrapping_mul(G));
    (0..len as u64)
        .map(|i| h ^ mix(i.wrapping_add(h)))
        .collect()
}

fn check_contents(what: &str, got: &Value, seed: u64, len: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), len, "{}: length", what);
    prop_assert!(
        got.values() == contents(seed, len).as_slice(),
        "{}: contents differ from those stored (seed {})",
        what,
        seed
    );
    Ok(())
}

/// Elements of a value of each size class (before jitter); `NEAR_MAX` values
/// straddle `max_memsize` (some fit when stored, but their mapped copy, which
/// counts the frame header too, does not), `HUGE` ones never fit.
const TINY: usize = 16;
const SMALL: usize = 1024;
const MEDIUM: usize = 2560;
const LARGE: usize = 5000;
const NEAR_MAX: usize = (MAX_MEMSIZE / 8) as usize - 8;
const HUGE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Pick {
    index: u16,
    /// Use a deleted reference (if there is one) and expect `NotFound`.
    stale: bool,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Store a value of `len` elements.
    Set(usize),
    Get(Pick),
    Delete(Pick),
    MoveToDisk(Pick),
    CopyToDisk(Pick),
    SaveToDisk(Pick),
    /// A `get` whose `Ref` the test keeps (until a `Release`).
    Hold(Pick),
    /// Drops one kept `Ref`.
    Release(u16),
}

fn len_strategy() -> impl Strategy<Value = usize> {
    (
        prop_oneof![
            2 => Just(TINY),
            3 => Just(SMALL),
            3 => Just(MEDIUM),
            2 => Just(LARGE),
            1 => Just(NEAR_MAX),
            1 => Just(HUGE),
        ],
        0usize..16,
    )
        .prop_map(|(base, jitter)| base + jitter)
}

fn pick_strategy() -> impl Strategy<Value = Pick> {
    (any::<u16>(), prop::bool::weighted(0.1)).prop_map(|(index, stale)| Pick { index, stale })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => len_strategy().prop_map(Op::Set),
        4 => pick_strategy().prop_map(Op::Get),
        1 => pick_strategy().prop_map(Op::Delete),
        1 => pick_strategy().prop_map(Op::MoveToDisk),
        1 => pick_strategy().prop_map(Op::CopyToDisk),
        1 => pick_strategy().prop_map(Op::SaveToDisk),
        1 => pick_strategy().prop_map(Op::Hold),
        1 => any::<u16>().prop_map(Op::Release),
    ]
}

/// One live value as the model sees it.
#[derive(Debug)]
struct MVal {
    dref: DRef,
    seed: u64,
    len: usize,
    /// Bytes it counts while resident.
    size: u64,
    resident: bool,
    file: bool,
    /// Which in-memory copy the pool holds: a new one is made at every
    /// restore (a `Ref` to an older copy keeps that copy alive, detached).
    obj: u64,
}

/// A `Ref` the test keeps: which value, which copy of it, and its size.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: u64,
    obj: u64,
    size: u64,
}

/// The reference model: live values, the recency list, deleted refs, counters.
struct Model {
    max: u64,
    policy: Policy,
    vals: BTreeMap<u64, MVal>,
    /// Model ids of live values, in the order stored (for picking).
    live: Vec<u64>,
    /// Model ids of resident values, most recent first.
    recency: Vec<u64>,
    dead: Vec<DRef>,
    held: Vec<Held>,
    next_obj: u64,
    next_id: u64,
    hits: u64,
    misses: u64,
    restores: u64,
    evictions: u64,
    spills: u64,
}

impl Model {
    fn new(max: u64, policy: Policy) -> Self {
        Self {
            max,
            policy,
            vals: BTreeMap::new(),
            live: Vec::new(),
            recency: Vec::new(),
            dead: Vec::new(),
            held: Vec::new(),
            next_obj: 0,
            next_id: 0,
            hits: 0,
            misses: 0,
            restores: 0,
            evictions: 0,
            spills: 0,
        }
    }

    fn resident_bytes(&self) -> u64 {
        self.recency.iter().map(|id| self.vals[id].size).sum()
    }

    /// Evicts in policy order until `incoming` more bytes fit.
    fn make_room(&mut self, incoming: u64) {
        while self.resident_bytes() + incoming > self.max {
            let victim = match self.policy {
                Policy::Mru => {
                    if self.recency.is_empty() {
                        None
                    } else {
                        Some(self.recency.remove(0))
                    }
                }
                _ => self.recency.pop(),
            };
            let Some(id) = victim else { break };
            let v = self.vals.get_mut(&id).expect("resident values are live");
            v.resident = false;
            if !v.file {
                v.file = true;
                self.spills += 1;
            }
            self.evictions += 1;
        }
    }

    /// Bytes of kept copies the pool no longer holds (evicted, deleted, or
    /// never made resident), each copy once.
    fn detached_bytes(&self) -> u64 {
        let mut seen = std::collections::BTreeSet::new();
        self.held
            .iter()
            .filter(|h| seen.insert((h.id, h.obj)))
            .filter(|h| {
                self.vals
                    .get(&h.id)
                    .is_none_or(|v| !(v.resident && v.obj == h.obj))
            })
            .map(|h| h.size)
            .sum()
    }

    fn new_obj(&mut self) -> u64 {
        self.next_obj += 1;
        self.next_obj
    }

    fn make_most_recent(&mut self, id: u64) {
        self.recency.retain(|&x| x != id);
        self.recency.insert(0, id);
    }

    /// The live value a pick names, or `None` when there is none.
    fn pick_live(&self, p: Pick) -> Option<u64> {
        if self.live.is_empty() {
            None
        } else {
            Some(self.live[usize::from(p.index) % self.live.len()])
        }
    }

    fn pick_dead(&self, p: Pick) -> Option<DRef> {
        if p.stale && !self.dead.is_empty() {
            Some(self.dead[usize::from(p.index) % self.dead.len()])
        } else {
            None
        }
    }
}

fn not_found<T: std::fmt::Debug>(
    what: &str,
    r: mempool_core::Result<T>,
    dref: DRef,
) -> Result<(), TestCaseError> {
    match r {
        Err(PoolError::NotFound { dref: d }) => {
            prop_assert_eq!(d, dref, "{}: NotFound names the reference", what);
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "{what} of deleted {dref:?}: expected NotFound, got {other:?}"
        ))),
    }
}

fn files_in(dir: &Path) -> usize {
    common::files_holding_bytes(dir).len()
}

fn check_file_ref(pool: &Pool, what: &str, f: &FileRef, v: &MVal) -> Result<(), TestCaseError> {
    prop_assert!(
        f.path.starts_with(pool.session_dir()),
        "{}: {:?} is outside the session directory",
        what,
        f.path
    );
    prop_assert_eq!(
        Some(f.size),
        pool.info(&v.dref).unwrap().disk_size,
        "{}: FileRef size",
        what
    );
    let back = f
        .read::<Value>()
        .map_err(|e| TestCaseError::fail(format!("{what}: read {e}")))?;
    check_contents(what, &back, v.seed, v.len)
}

/// Checks every live value, every deleted ref and every figure of `stats()`.
fn check(pool: &Pool, m: &Model, step: usize) -> Result<(), TestCaseError> {
    let mut disk_sum = 0;
    for (id, v) in &m.vals {
        let info = pool.info(&v.dref).map_err(|e| {
            TestCaseError::fail(format!("step {step}: info of live value {id}: {e}"))
        })?;
        prop_assert_eq!(
            info.in_memory,
            v.resident,
            "step {}: value {} in memory",
            step,
            id
        );
        prop_assert_eq!(
            info.disk_size.is_some(),
            v.file,
            "step {}: value {} on disk",
            step,
            id
        );
        prop_assert!(!info.spilling, "step {}: value {} still spilling", step, id);
        if v.resident {
            prop_assert_eq!(
                info.mem_size,
                v.size,
                "step {}: value {} counted size",
                step,
                id
            );
        }
        disk_sum += info.disk_size.unwrap_or(0);
    }
    for d in &m.dead {
        prop_assert!(
            !pool.contains(d),
            "step {}: deleted {:?} still contained",
            step,
            d
        );
        not_found("info", pool.info(d), *d)?;
    }
    let s: Stats = pool.stats();
    let resident = m.recency.len() as u64;
    let files = m.vals.values().filter(|v| v.file).count() as u64;
    prop_assert!(
        s.mem_bytes <= m.max,
        "step {}: mem_bytes {} over the bound",
        step,
        s.mem_bytes
    );
    prop_assert_eq!(s.mem_bytes, m.resident_bytes(), "step {}: mem_bytes", step);
    prop_assert_eq!(s.mem_values, resident, "step {}: mem_values", step);
    prop_assert_eq!(s.disk_values, files, "step {}: disk_values", step);
    prop_assert_eq!(s.disk_bytes, disk_sum, "step {}: disk_bytes", step);
    prop_assert_eq!(s.spilling_bytes, 0, "step {}: spilling_bytes", step);
    prop_assert_eq!(
        s.detached_bytes,
        m.detached_bytes(),
        "step {}: detached_bytes (copies kept by Refs the pool let go of)",
        step
    );
    prop_assert_eq!(
        (
            s.hits,
            s.misses,
            s.restores,
            s.evictions,
            s.spills,
            s.spill_failures
        ),
        (m.hits, m.misses, m.restores, m.evictions, m.spills, 0),
        "step {}: (hits, misses, restores, evictions, spills, spill_failures)",
        step
    );
    // Spilled values share segment files: some file exists while a value
    // is on disk.
    prop_assert!(
        files == 0 || files_in(pool.session_dir()) > 0,
        "step {}: {} values on disk but no segment file",
        step,
        files
    );
    Ok(())
}

fn run_case(policy: Policy, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let saves = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(MAX_MEMSIZE)
            .policy(policy)
            // The model simulates synchronous eviction exactly; write-behind
            // writes ahead on its own schedule (tested in write_behind.rs and
            // the stress tests).
            .write_behind(false)
            .spill_dir(dir.path())
            .sync_saves(false),
    )
    .unwrap();
    let mut m = Model::new(MAX_MEMSIZE, policy);
    // The Refs of `Hold`, index for index with `m.held`.
    let mut kept: Vec<mempool_core::Ref<Value>> = Vec::new();

    for (step, &op) in ops.iter().enumerate() {
        let what = format!("step {step} {op:?}");
        match op {
            Op::Set(len) => {
                let id = m.next_id;
                m.next_id += 1;
                let seed = id;
                let value = Value::from(contents(seed, len));
                let size = value.mem_size();
                let dref = pool
                    .set(value)
                    .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                prop_assert_eq!(dref.size, size, "{}: DRef size", what);
                let (resident, file) = if size > m.max {
                    m.spills += 1;
                    (false, true)
                } else {
                    m.make_room(size);
                    m.recency.insert(0, id);
                    (true, false)
                };
                m.vals.insert(
                    id,
                    MVal {
                        dref,
                        seed,
                        len,
                        size,
                        resident,
                        file,
                        obj: 0,
                    },
                );
                let obj = m.new_obj();
                m.vals.get_mut(&id).unwrap().obj = obj;
                m.live.push(id);
            }
            Op::Get(p) | Op::Hold(p) => {
                if let Some(d) = m.pick_dead(p) {
                    not_found(&what, pool.get::<Value>(&d), d)?;
                } else if let Some(id) = m.pick_live(p) {
                    let got = pool
                        .get::<Value>(&m.vals[&id].dref)
                        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                    let v = &m.vals[&id];
                    check_contents(&what, &got, v.seed, v.len)?;
                    let obj;
                    if v.resident {
                        m.hits += 1;
                        prop_assert_eq!(got.mem_size(), v.size, "{}: resident value's size", what);
                        obj = v.obj;
                        m.make_most_recent(id);
                    } else {
                        m.misses += 1;
                        // A mapped value counts its mapped bytes.
                        let size = got.mem_size();
                        obj = m.new_obj();
                        if size <= m.max {
                            m.make_room(size);
                            m.recency.insert(0, id);
                            m.restores += 1;
                            let v = m.vals.get_mut(&id).unwrap();
                            v.size = size;
                            v.resident = true;
                            v.obj = obj;
                        }
                    }
                    if matches!(op, Op::Hold(_)) {
                        m.held.push(Held {
                            id,
                            obj,
                            size: got.mem_size(),
                        });
                        kept.push(got);
                    }
                }
            }
            Op::Release(i) => {
                if !kept.is_empty() {
                    let i = usize::from(i) % kept.len();
                    m.held.swap_remove(i);
                    drop(kept.swap_remove(i));
                }
            }
            Op::Delete(p) => {
                if let Some(d) = m.pick_dead(p) {
                    not_found(&what, pool.delete(&d), d)?;
                } else if let Some(id) = m.pick_live(p) {
                    let v = m.vals.remove(&id).unwrap();
                    pool.delete(&v.dref)
                        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                    m.live.retain(|&x| x != id);
                    m.recency.retain(|&x| x != id);
                    m.dead.push(v.dref);
                }
            }
            Op::MoveToDisk(p) => {
                if let Some(d) = m.pick_dead(p) {
                    not_found(&what, pool.move_to_disk(&d), d)?;
                } else if let Some(id) = m.pick_live(p) {
                    let f = pool
                        .move_to_disk(&m.vals[&id].dref)
                        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                    m.recency.retain(|&x| x != id);
                    let v = m.vals.get_mut(&id).unwrap();
                    v.resident = false;
                    if !v.file {
                        v.file = true;
                        m.spills += 1;
                    }
                    check_file_ref(&pool, &what, &f, &m.vals[&id])?;
                }
            }
            Op::CopyToDisk(p) => {
                if let Some(d) = m.pick_dead(p) {
                    not_found(&what, pool.copy_to_disk(&d), d)?;
                } else if let Some(id) = m.pick_live(p) {
                    let f = pool
                        .copy_to_disk(&m.vals[&id].dref)
                        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                    let v = m.vals.get_mut(&id).unwrap();
                    if !v.file {
                        v.file = true;
                        m.spills += 1;
                    }
                    check_file_ref(&pool, &what, &f, &m.vals[&id])?;
                }
            }
            Op::SaveToDisk(p) => {
                let path = saves.path().join(format!("save-{step}.frame"));
                if let Some(d) = m.pick_dead(p) {
                    not_found(&what, pool.save_to_disk(&d, &path), d)?;
                    prop_assert!(!path.exists(), "{}: a failed save wrote a file", what);
                } else if let Some(id) = m.pick_live(p) {
                    let before = pool.stats();
                    let v = &m.vals[&id];
                    let f = pool
                        .save_to_disk(&v.dref, &path)
                        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
                    prop_assert_eq!(
                        pool.stats(),
                        before,
                        "{}: save_to_disk changed the stats",
                        what
                    );
                    prop_assert_eq!(&f.path, &path);
                    prop_assert_eq!(f.size, std::fs::metadata(&path).unwrap().len());
                    let back = f
                        .read::<Value>()
                        .map_err(|e| TestCaseError::fail(format!("{what}: read {e}")))?;
                    check_contents(&what, &back, v.seed, v.len)?;
                    drop(back);
                    std::fs::remove_file(&path).unwrap();
                }
            }
        }
        check(&pool, &m, step)?;
    }

    // Delete everything: nothing is left in memory, on disk, or in the directory.
    for id in std::mem::take(&mut m.live) {
        let v = m.vals.remove(&id).unwrap();
        pool.delete(&v.dref)
            .map_err(|e| TestCaseError::fail(format!("final delete of {id}: {e}")))?;
        m.dead.push(v.dref);
    }
    m.recency.clear();
    // Kept Refs still count as detached until they are dropped.
    prop_assert_eq!(pool.stats().detached_bytes, m.detached_bytes());
    kept.clear();
    m.held.clear();
    let s = pool.stats();
    prop_assert_eq!(
        (
            s.mem_bytes,
            s.mem_values,
            s.disk_values,
            s.disk_bytes,
            s.spilling_bytes,
            s.detached_bytes
        ),
        (0, 0, 0, 0, 0, 0),
        "after deleting everything"
    );
    prop_assert_eq!(
        files_in(pool.session_dir()),
        0,
        "files left in the session directory"
    );
    check(&pool, &m, ops.len())?;
    Ok(())
}

fn run(policy: Policy) {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let ops = prop::collection::vec(op_strategy(), 1..=MAX_OPS);
    if let Err(e) = runner.run(&ops, |ops| run_case(policy, &ops)) {
        panic!("{policy:?}: {e}");
    }
}

#[test]
fn model_lru() {
    run(Policy::Lru);
}

#[test]
fn model_mru() {
    run(Policy::Mru);
}

/// The size classes do what the test relies on: a few fit, `NEAR_MAX` straddles
/// the bound, `HUGE` is over it.
#[test]
fn size_classes() {
    let size = |len: usize| Value::from(contents(0, len)).mem_size();
    assert!(size(LARGE + 15) * 2 > MAX_MEMSIZE && size(LARGE) < MAX_MEMSIZE);
    assert!(size(MEDIUM) * 3 < MAX_MEMSIZE);
    assert!(size(NEAR_MAX) <= MAX_MEMSIZE && size(NEAR_MAX + 15) > MAX_MEMSIZE);
    assert!(size(HUGE) > MAX_MEMSIZE);
}
