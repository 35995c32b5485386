//! A destructor that panics while the pool lets go of a value (a value
//! dropped from memory to make room) must not strand the victims being
//! written: they still settle, `spilling_bytes` comes back to 0, and later
//! calls that need them or their room do not wait for ever.

mod common;

use std::time::Duration;

use common::{Script, Scripted};
use mempool_core::{Pool, PoolConfig};

#[test]
fn a_panicking_destructor_of_a_released_value_does_not_strand_victims() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let script = Script::new();
    let bomb = |seed: u8, len: usize| Scripted::new(seed, len, &script);
    let a = pool.set(bomb(1, 300)).unwrap();
    let b = pool.set(bomb(2, 300)).unwrap();
    let _c = pool.set(bomb(3, 300)).unwrap();
    pool.copy_to_disk(&a).unwrap(); // a leaves by being dropped; b and c are written
    script.set_panic_on_drop(true);
    let p = pool.clone();
    let big = bomb(4, 600);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || p.set(big)));
    assert!(r.is_err(), "the destructor panic reaches the caller");
    script.set_panic_on_drop(false);

    let s = pool.stats();
    eprintln!("after the panic: {s:?}");
    // Nothing is in flight any more: every write must have settled.
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pool.move_to_disk(&b).map(|_| ()));
        });
    }
    let moved = rx.recv_timeout(Duration::from_secs(5));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let _ = tx.send(pool.set(vec![9u8; 800]).map(|_| ()));
        });
    }
    let set = rx.recv_timeout(Duration::from_secs(5));
    assert!(
        s.spilling_bytes == 0 && matches!(moved, Ok(Ok(()))) && matches!(set, Ok(Ok(()))),
        "victims stranded as spilling: {s:?}; move_to_disk(b): {moved:?}; set of 800 bytes: {set:?} \
         (Err(Timeout) = blocked for ever)"
    );
}

/// A value too large for memory is written straight to disk; if its
/// destructor then panics, its file must not be left behind, unowned.
#[test]
fn a_panicking_destructor_after_a_direct_disk_write_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let script = Script::new();
    script.set_panic_on_drop(true);
    let big = Scripted::new(7, 5000, &script);
    let p = pool.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || p.set(big)));
    assert!(r.is_err(), "the destructor panic reaches the caller");
    let s = pool.stats();
    assert_eq!(
        (s.disk_values, s.disk_bytes, s.segment_live_bytes),
        (0, 0, 0),
        "the spill range of a value nobody holds a ref to: {s:?}"
    );
    // At most the active segment is left: empty, punched whole.
    assert!(common::spill_files(pool.session_dir()).len() <= 1);
}
