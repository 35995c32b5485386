//! Concurrent callers do not evict more than a sequential order would: two
//! reads of the same value from disk make room once (the second waits for the
//! first), and a caller whose room is being freed by another's writes claims
//! it, so that others make their own.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Script, Scripted};
use mempool_core::{Pool, PoolConfig};

/// `len` bytes of `seed` whose writes sleep `delay_ms` first.
fn slow(seed: u8, len: usize, delay_ms: u64) -> Scripted {
    let script: Arc<Script> = Script::new();
    script.set_delay(Duration::from_millis(delay_ms));
    Scripted::new(seed, len, &script)
}

#[test]
fn concurrent_restores_of_one_value_evict_once() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = pool.set(slow(1, 300, 0)).unwrap();
    pool.move_to_disk(&a).unwrap();
    // LRU order, oldest first: x (slow to write), y, z. 900 of 1000 bytes.
    let x = pool.set(slow(2, 300, 600)).unwrap();
    let y = pool.set(slow(3, 300, 0)).unwrap();
    let z = pool.set(slow(4, 300, 0)).unwrap();

    // First reader: needs 300 bytes, evicts x (slow).
    let t1 = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.get::<Scripted>(&a).map(|v| v.bytes[0]))
    };
    std::thread::sleep(Duration::from_millis(150));
    // Second reader of the same value while x is still being written.
    let t2 = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.get::<Scripted>(&a).map(|v| v.bytes[0]))
    };
    assert_eq!(t1.join().unwrap().unwrap(), 1);
    assert_eq!(t2.join().unwrap().unwrap(), 1);

    let s = pool.stats();
    eprintln!("stats: {s:?}");
    // Any sequential order: the first get evicts x, the second is a hit.
    assert!(!pool.is_in_memory(&x).unwrap());
    assert!(pool.is_in_memory(&z).unwrap());
    assert!(pool.is_in_memory(&a).unwrap());
    assert!(
        pool.is_in_memory(&y).unwrap(),
        "y was evicted to make room for a second copy of `a` that was never linked; \
         memory is {} of 1000 bytes with y on disk: {s:?}",
        s.mem_bytes
    );
    assert_eq!(s.evictions, 1, "{s:?}");
}

/// The same over-eviction with two different values: `make_room` counts
/// other callers' writes in flight as used (right, for the bound) but cannot
/// tell that their victims free more than their callers need, so a second
/// caller evicts while the room it needs is already on its way.
#[test]
fn concurrent_sets_do_not_evict_more_than_any_sequential_order() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    // LRU order, oldest first: x (500, slow to write), y (400). 900 of 1000.
    let x = pool.set(slow(1, 500, 600)).unwrap();
    let y = pool.set(slow(2, 400, 0)).unwrap();
    let t1 = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.set(slow(3, 200, 0)).unwrap())
    };
    std::thread::sleep(Duration::from_millis(150));
    let t2 = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.set(slow(4, 200, 0)).unwrap())
    };
    let (p, q) = (t1.join().unwrap(), t2.join().unwrap());
    let s = pool.stats();
    eprintln!("stats: {s:?}");
    assert!(!pool.is_in_memory(&x).unwrap());
    assert!(pool.is_in_memory(&p).unwrap() && pool.is_in_memory(&q).unwrap());
    // Sequentially (either order) only x leaves: 400 + 200 + 200 = 800 fit.
    assert!(
        pool.is_in_memory(&y).unwrap(),
        "y was evicted although evicting x alone makes room for both sets: {s:?}"
    );
}
