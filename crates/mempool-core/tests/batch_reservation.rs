//! A write-behind batch gives its disk reservation back as soon as its bytes
//! are live, before it settles and wakes waiters. (It used to keep it until
//! the batch's values had been dropped: a must-happen write in between saw
//! the batch counted twice, live and reserved, and failed with DiskFull
//! where it fits — found by a review; this test failed then.)

mod common;

use std::time::{Duration, Instant};

use common::{Script, Scripted};
use mempool_core::{Pool, PoolConfig};

const LEN: usize = 1000;

fn frame_len_vec() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 30, None);
    let r = p.set(vec![0u8; LEN]).unwrap();
    p.move_to_disk(&r).unwrap().size
}

fn frame_len_scripted() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 30, None);
    let r = p.set(Scripted::new(1, LEN, &Script::new())).unwrap();
    p.move_to_disk(&r).unwrap().size
}

fn scenario(wait_for_flusher: bool) -> mempool_core::Result<()> {
    let (l, ls) = (frame_len_vec(), frame_len_scripted());
    let dir = tempfile::tempdir().unwrap();
    // Room for the batch (15 values + the scripted one) and half a frame.
    let disk = 15 * l + ls + l / 2;
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(20_000)
            .max_disksize(Some(disk))
            .write_behind(true)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let script = Script::new();
    script.set_delay(Duration::from_millis(300));
    script.set_drop_delay(Duration::from_millis(1500));
    let s = p.set(Scripted::new(7, LEN, &script)).unwrap();
    let refs: Vec<_> = (0..15u8).map(|k| p.set(vec![k; LEN]).unwrap()).collect();
    // The flusher now encodes the batch (the scripted value first, 300 ms).
    std::thread::sleep(Duration::from_millis(100));
    let w = p.set(vec![99u8; LEN]).unwrap(); // after the batch was picked
    p.delete(&s).unwrap(); // its last reference is now the batch's
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.stats().disk_values < 15 {
        assert!(Instant::now() < deadline, "{:?}", p.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
    if wait_for_flusher {
        std::thread::sleep(Duration::from_millis(2500));
    }
    let r = p.move_to_disk(&w).map(|_| ());
    drop(refs);
    r
}

#[test]
fn control_after_the_flusher_returned_the_move_fits() {
    scenario(true).expect("fits once the batch's reservation is given back");
}

#[test]
fn a_move_right_after_a_batch_settles_fits() {
    scenario(false).expect("the move fits on disk (copies are droppable)");
}
