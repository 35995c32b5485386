//! MemPool.jl's own LRU scenario, for LRU and MRU: three small arrays fit, a
//! fourth evicts one, a get reorders, a get of a spilled value restores it,
//! deletes of in-memory and on-disk values, and counters back to zero.

mod common;

use mempool_arrays::PrimitiveArray;
use mempool_core::{Policy, Pool, PoolConfig, PoolError};

const N: usize = 1000; // 8000 bytes per array

fn array(x: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(vec![x; N])
}

fn pool(policy: Policy, dir: &tempfile::TempDir) -> Pool {
    // Room for three arrays, not four. Write-behind is off so that the spill
    // files and counters are exactly MemPool.jl's; `write_behind.rs` checks
    // the same residency with it on.
    let config = PoolConfig::default()
        .max_memsize(3 * 8000 + 4000)
        .policy(policy)
        .write_behind(false)
        .spill_dir(dir.path());
    Pool::new(config).unwrap()
}

fn files_in(pool: &Pool) -> usize {
    common::files_holding_bytes(pool.session_dir()).len()
}

#[test]
fn lru_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(Policy::Lru, &dir);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    let c = pool.set(array(3.0)).unwrap();
    let s = pool.stats();
    assert_eq!((s.mem_values, s.mem_bytes, s.disk_values), (3, 24000, 0));

    // A fourth evicts the least recent: a.
    let d = pool.set(array(4.0)).unwrap();
    assert!(!pool.is_in_memory(&a).unwrap() && pool.is_on_disk(&a).unwrap());
    let s = pool.stats();
    assert_eq!(
        (s.mem_values, s.disk_values, s.spills, s.evictions),
        (3, 1, 1, 1)
    );
    assert_eq!(files_in(&pool), 1);

    // A get reorders: b becomes most recent, so the next eviction takes c.
    assert_eq!(pool.get::<PrimitiveArray<f64>>(&b).unwrap()[0], 2.0);
    let e = pool.set(array(5.0)).unwrap();
    assert!(!pool.is_in_memory(&c).unwrap());
    assert!(pool.is_in_memory(&b).unwrap() && pool.is_in_memory(&d).unwrap());
    assert_eq!(pool.stats().hits, 1);

    // A get of a spilled value restores it and evicts the then least recent: d.
    let back = pool.get::<PrimitiveArray<f64>>(&a).unwrap();
    assert!(back.values().iter().all(|&x| x == 1.0));
    drop(back);
    assert!(pool.is_in_memory(&a).unwrap());
    assert!(!pool.is_in_memory(&d).unwrap());
    let s = pool.stats();
    assert_eq!(
        (s.misses, s.restores, s.mem_values, s.disk_values),
        (1, 1, 3, 3)
    );
    assert!(s.mem_bytes <= pool.config().max_memsize);
    // a kept its disk copy: evicting it again writes nothing new.
    let spills_before = pool.stats().spills;
    pool.move_to_disk(&a).unwrap();
    assert_eq!(pool.stats().spills, spills_before);
    assert_eq!(pool.get::<PrimitiveArray<f64>>(&a).unwrap()[N - 1], 1.0);

    // Delete one value in memory and one on disk: their files go too.
    assert!(pool.is_in_memory(&e).unwrap());
    pool.delete(&e).unwrap();
    assert!(pool.is_on_disk(&c).unwrap() && !pool.is_in_memory(&c).unwrap());
    pool.delete(&c).unwrap();
    assert!(matches!(
        pool.get::<PrimitiveArray<f64>>(&c),
        Err(PoolError::NotFound { .. })
    ));
    assert!(matches!(pool.delete(&c), Err(PoolError::NotFound { .. })));

    for r in [a, b, d] {
        pool.delete(&r).unwrap();
    }
    let s = pool.stats();
    assert_eq!(
        (
            s.mem_values,
            s.mem_bytes,
            s.disk_values,
            s.disk_bytes,
            s.spilling_bytes,
            s.detached_bytes
        ),
        (0, 0, 0, 0, 0, 0)
    );
    assert_eq!(files_in(&pool), 0);
}

#[test]
fn mru_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(Policy::Mru, &dir);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    let c = pool.set(array(3.0)).unwrap();
    // A fourth evicts the most recent: c.
    let d = pool.set(array(4.0)).unwrap();
    assert!(!pool.is_in_memory(&c).unwrap());
    assert!(pool.is_in_memory(&a).unwrap() && pool.is_in_memory(&b).unwrap());
    // A get reorders: b becomes most recent and is the next to go.
    pool.get::<PrimitiveArray<f64>>(&b).unwrap();
    let e = pool.set(array(5.0)).unwrap();
    assert!(!pool.is_in_memory(&b).unwrap());
    assert!(pool.is_in_memory(&d).unwrap() && pool.is_in_memory(&e).unwrap());
    // Restoring c evicts the then most recent: e.
    assert_eq!(pool.get::<PrimitiveArray<f64>>(&c).unwrap()[7], 3.0);
    assert!(pool.is_in_memory(&c).unwrap() && !pool.is_in_memory(&e).unwrap());
    for r in [a, b, c, d, e] {
        pool.delete(&r).unwrap();
    }
    let s = pool.stats();
    assert_eq!(
        (s.mem_values, s.mem_bytes, s.disk_values, s.disk_bytes),
        (0, 0, 0, 0)
    );
    assert_eq!(files_in(&pool), 0);
}
