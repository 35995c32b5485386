//! Write-behind copies of resident values count against `max_disksize`, but
//! they never make a `set` fail that would succeed without write-behind: a
//! needed write drops them first.

use std::time::{Duration, Instant};

use mempool_core::{Pool, PoolConfig, PoolError};

fn frame_len() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let r = p.set(vec![0u8; 300]).unwrap();
    p.move_to_disk(&r).unwrap().size
}

fn scenario(write_behind: bool) -> mempool_core::Result<()> {
    let len = frame_len();
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .max_disksize(Some(2 * len + len / 2))
            .write_behind(write_behind)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = pool.set(vec![1u8; 300]).unwrap();
    let b = pool.set(vec![2u8; 300]).unwrap();
    let _c = pool.set(vec![3u8; 300]).unwrap(); // passes 3/4: flusher copies a, b; c does not fit
    if write_behind {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(pool.is_on_disk(&a).unwrap()
            && pool.is_on_disk(&b).unwrap()
            && pool.stats().spill_failures >= 1)
        {
            assert!(
                Instant::now() < deadline,
                "flusher never ran: {:?}",
                pool.stats()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // a and b are used again; c is now the least recent.
    assert_eq!(pool.get::<Vec<u8>>(&a).unwrap()[0], 1);
    assert_eq!(pool.get::<Vec<u8>>(&b).unwrap()[0], 2);
    let r = pool
        .set(vec![4u8; 300])
        .map(|_| ())
        .map_err(PoolError::from);
    eprintln!("write_behind={write_behind}: {r:?}; {:?}", pool.stats());
    r
}

#[test]
fn write_behind_copies_do_not_make_a_needed_eviction_fail() {
    scenario(false).expect("without write-behind the eviction of c fits on disk");
    scenario(true).expect(
        "with write-behind the same set fails: the disk budget is held by copies of a and b, \
         which are resident",
    );
}
