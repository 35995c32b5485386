//! Write-behind: once memory is three-quarters full, resident values get disk
//! copies in the background, so that evicting them writes nothing; residency
//! is exactly LRU either way.

use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, Pool, PoolConfig};

/// Elements per value: 2,400 f64 = 19,200 bytes.
const N: usize = 2_400;
/// Three values fit (57,600 bytes, past the three-quarter mark of 48,000);
/// two don't pass it; four don't fit.
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

/// Waits until every ref has a disk copy; false after PATIENCE.
fn wait_for_copies(pool: &Pool, refs: &[&DRef]) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if refs.iter().all(|r| pool.is_on_disk(r).unwrap()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn resident_values_are_copied_ahead_and_evicted_without_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, true);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    let c = pool.set(array(3.0)).unwrap();
    assert!(wait_for_copies(&pool, &[&a, &b, &c]), "no disk copies");
    assert!(
        [&a, &b, &c].iter().all(|r| pool.is_in_memory(r).unwrap()),
        "copies ahead keep the values resident"
    );
    let before = pool.stats();
    assert_eq!((before.spills, before.evictions), (3, 0));
    let file = pool.info(&a).unwrap().disk_size;

    // The fourth evicts `a`, the least recent: dropped, not written again.
    let d = pool.set(array(4.0)).unwrap();
    let after = pool.stats();
    assert!(!pool.is_in_memory(&a).unwrap());
    assert_eq!(pool.info(&a).unwrap().disk_size, file);
    assert_eq!(after.evictions, 1);
    // At most `d` itself was written since (by the flusher).
    assert!(after.spills <= 4, "{after:?}");
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
fn below_three_quarters_nothing_is_written_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, true);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!pool.is_on_disk(&a).unwrap() && !pool.is_on_disk(&b).unwrap());
    // Passing the mark copies the values stored before it too.
    let c = pool.set(array(3.0)).unwrap();
    assert!(wait_for_copies(&pool, &[&a, &b, &c]));
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
fn a_deleted_value_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(&dir, true);
    let a = pool.set(array(1.0)).unwrap();
    let b = pool.set(array(2.0)).unwrap();
    pool.delete(&a).unwrap();
    let c = pool.set(array(3.0)).unwrap();
    let d = pool.set(array(4.0)).unwrap();
    assert!(wait_for_copies(&pool, &[&b, &c, &d]));
    std::thread::sleep(Duration::from_millis(50));
    let s = pool.stats();
    assert_eq!((s.spills, s.disk_values), (3, 3), "{s:?}");
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
        assert!(wait_for_copies(&pool, &refs.iter().collect::<Vec<_>>()));
        // Keep the flusher busy at drop time.
        for i in 3..20 {
            pool.set(array(f64::from(i))).unwrap();
        }
    }
    assert!(!session.exists(), "session directory outlived the pool");
}
