//! Write-behind: once memory is three-quarters full, the least recently used
//! values get disk copies in the background, so that evicting them writes
//! nothing; residency is exactly LRU either way.

use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, Pool, PoolConfig};

/// Elements per value: 2,400 f64 = 19,200 bytes, a bit over a quarter of
/// MAX_MEMSIZE, so that the write-behind window (a quarter of the bound)
/// holds exactly the least recent value.
const N: usize = 2_400;
/// Three values fit (57,600 bytes, over the three-quarter mark), four don't.
const MAX_MEMSIZE: u64 = 64_000;
/// Longest wait for the background thread.
const PATIENCE: Duration = Duration::from_secs(10);

fn array(x: f64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(vec![x; N])
}

fn pool(dir: &tempfile::TempDir, write_behind: bool) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(MAX_MEMSIZE)
            .write_behind(write_behind)
            .spill_dir(dir.path()),
    )
    .unwrap()
}

/// Waits until `r` has a disk copy; false after PATIENCE.
fn wait_for_copy(pool: &Pool, r: &DRef) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if pool.is_on_disk(r).unwrap() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn least_recent_value_is_copied_ahead_and_evicted_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, true);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    let c = pool.set(array(3.0)).unwrap();
    assert!(
        wait_for_copy(&pool, &a),
        "no disk copy of the least recent value"
    );
    assert!(
        pool.is_in_memory(&a).unwrap(),
        "a copy ahead keeps the value resident"
    );
    // Only the window's value (the least recent) is copied.
    std::thread::sleep(Duration::from_millis(50));
    assert!(!pool.is_on_disk(&b).unwrap() && !pool.is_on_disk(&c).unwrap());
    let file = pool.info(&a).unwrap().disk_size;
    let before = pool.stats();
    assert_eq!(before.spills, 1);

    // The fourth evicts `a`: dropped, not written again.
    let d = pool.set(array(4.0)).unwrap();
    let after = pool.stats();
    assert!(!pool.is_in_memory(&a).unwrap());
    assert_eq!(pool.info(&a).unwrap().disk_size, file);
    assert_eq!(after.evictions, 1);
    assert!(after.mem_bytes + after.spilling_bytes <= MAX_MEMSIZE);
    // Residency is exactly LRU; the contents are intact.
    assert!([&b, &c, &d].iter().all(|r| pool.is_in_memory(r).unwrap()));
    assert_eq!(
        pool.get::<PrimitiveArray<f64>>(&a).unwrap().values()[N - 1],
        1.0
    );
    assert!(!pool.is_in_memory(&b).unwrap(), "restoring `a` evicted `b`");
}

#[test]
fn without_write_behind_nothing_is_written_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, false);
    let refs: Vec<DRef> = (0..3)
        .map(|i| pool.set(array(f64::from(i))).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(refs.iter().all(|r| !pool.is_on_disk(r).unwrap()));
    assert_eq!(pool.stats().spills, 0);
}

#[test]
fn get_reorders_so_the_copy_goes_to_the_new_least_recent() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, true);
    let a = pool.set(array(1.0)).unwrap();
    // Reading `a` before memory is three-quarters full makes `b` the least
    // recent by the time write-behind starts.
    let b = pool.set(array(2.0)).unwrap();
    drop(pool.get::<PrimitiveArray<f64>>(&a).unwrap());
    let c = pool.set(array(3.0)).unwrap();
    assert!(wait_for_copy(&pool, &b));
    std::thread::sleep(Duration::from_millis(50));
    assert!(!pool.is_on_disk(&a).unwrap() && !pool.is_on_disk(&c).unwrap());
}

#[test]
fn dropping_the_pool_stops_the_flusher_and_removes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let session;
    {
        let pool = pool(&dir, true);
        session = pool.session_dir().to_owned();
        let refs: Vec<DRef> = (0..3)
            .map(|i| pool.set(array(f64::from(i))).unwrap())
            .collect();
        assert!(wait_for_copy(&pool, &refs[0]));
        // Keep the flusher busy at drop time.
        for i in 3..20 {
            pool.set(array(f64::from(i))).unwrap();
        }
    }
    assert!(!session.exists(), "session directory outlived the pool");
}
