//! Regressions found by review: each test failed before its fix.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{Script, Scripted, Write};
use mempool_arrays::PrimitiveArray;
use mempool_core::{Pool, PoolConfig};

/// Runs `f` on a thread; None if it did not return within `t`.
fn within<R: Send + 'static>(t: Duration, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(t).ok()
}

/// Before its fix: `link_new` links the new value, then lets go of values dropped
/// from memory (they had disk copies). A panic in one of those destructors
/// reaches the `set` caller after its value was stored: the caller gets no
/// DRef, so the entry can never be deleted (a leak of memory accounting and
/// of a slot), unlike the too-large path which deletes it again.
#[test]
fn a_panic_dropping_a_released_value_after_linking_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1000, None);
    let k = Script::new();
    let a = p.set(Scripted::new(1, 600, &k)).unwrap();
    p.copy_to_disk(&a).unwrap(); // a leaves memory by being dropped
    k.set_panic_on_drop(true);
    let p2 = p.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || p2.set(vec![7u8; 600])));
    assert!(r.is_err(), "the destructor panic reaches the caller");
    let s = p.stats();
    // The caller has no DRef for the 600 bytes just stored, yet they are
    // resident and counted: nobody can ever delete them.
    assert_eq!(
        (s.mem_values, s.mem_bytes),
        (0, 0),
        "a value stored by a set that panicked, with no DRef returned: {s:?}"
    );
}

/// Before its fix: `Victims::put_back` settles the remaining victims in a loop; a
/// panic in a destructor there (a victim deleted while an earlier victim was
/// being written: settling it drops its last reference) drops the rest of
/// the loop's victims without settling them: they stay `Spilling` for ever,
/// `spilling_bytes` never comes back, `move_to_disk` of them hangs.
#[test]
fn a_panic_while_putting_victims_back_strands_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1000, None);
    let slow = Script::new();
    let fine = Script::new();
    let boom = Script::new();
    let v1 = p.set(Scripted::new(1, 300, &slow)).unwrap();
    let v2 = p.set(Scripted::new(2, 300, &fine)).unwrap();
    let v3 = p.set(Scripted::new(3, 300, &boom)).unwrap();
    // v1's write sleeps, then fails; v3's drop panics.
    slow.set_delay(Duration::from_millis(500));
    slow.set_write(Write::Fail);
    boom.set_panic_on_drop(true);
    let p2 = p.clone();
    let setter = std::thread::spawn(move || {
        // Evicts v1, v2, v3 (in that order): v1 is written first.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p2.set(vec![9u8; 900]).map(|_| ()).map_err(|e| e.error)
        }))
    });
    std::thread::sleep(Duration::from_millis(150));
    assert!(p.info(&v3).unwrap().spilling, "v3 picked as a victim");
    p.delete(&v3).unwrap();
    let r = setter.join().unwrap();
    eprintln!(
        "set: {:?}",
        r.as_ref().map(|x| x.as_ref().map_err(|e| e.to_string()))
    );
    let s = p.stats();
    let info2 = p.info(&v2).unwrap();
    let p3 = p.clone();
    let moved = within(Duration::from_secs(3), move || {
        p3.move_to_disk(&v2).map(|_| ())
    });
    // The 300 stranded bytes count for ever: a set of 800 waits for ever.
    slow.set_write(Write::Ok);
    slow.set_delay(Duration::ZERO);
    let p4 = p.clone();
    let set800 = within(Duration::from_secs(3), move || {
        p4.set(vec![0u8; 800]).is_ok()
    });
    assert!(
        s.spilling_bytes == 0 && !info2.spilling && matches!(moved, Some(Ok(()))) && set800 == Some(true),
        "v2 stranded as spilling: {s:?} {info2:?}; move_to_disk(v2): {moved:?}; set(800): {set800:?} (None = hung)"
    );
    let _ = v1;
}

/// Before its fix: `drop_resident_copies` (a must-happen write at `max_disksize`)
/// removes the file named by a `FileRef` that `copy_to_disk` returned, while
/// the value lives; `FileRef`'s docs say it is valid until the value is
/// deleted or the pool shuts down.
#[test]
fn a_copy_to_disk_file_ref_outlives_the_disk_bound() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .max_disksize(Some(2000))
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = p.set(vec![1u8; 600]).unwrap();
    let f = p.copy_to_disk(&a).unwrap();
    // Too large for memory: written straight to disk, past the disk bound
    // unless a's copy goes.
    // The handed-out copy is kept: the set fails instead (value handed back).
    let err = p.set(vec![2u8; 1500]).unwrap_err();
    assert!(
        matches!(err.error, mempool_core::PoolError::DiskFull { .. }),
        "{err}"
    );
    assert_eq!(err.value.len(), 1500);
    assert!(p.contains(&a));
    assert!(
        f.read::<Vec<u8>>().is_ok(),
        "the FileRef of a live value no longer reads: {:?} exists={}",
        f.path,
        f.path.exists()
    );
}

/// Before its fix: `save_to_disk` refuses a path inside the session directory by
/// `starts_with` on `std::path::absolute`, which keeps `..`: a path that
/// reaches the session directory through `..` passes and the rename
/// replaces a live spill file. A later get of that value returns another
/// value's data (a valid frame of the same type): wrong data, no error.
#[test]
fn save_to_disk_through_dotdot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let a = p.set(PrimitiveArray::from(vec![1.0f64; 100])).unwrap();
    let b = p.set(PrimitiveArray::from(vec![2.0f64; 100])).unwrap();
    let fa = p.move_to_disk(&a).unwrap();
    let sess = p.session_dir().to_owned();
    let spill_dir = sess.parent().unwrap();
    let spill_name = spill_dir.file_name().unwrap();
    let tricky = spill_dir
        .join("..")
        .join(spill_name)
        .join(sess.file_name().unwrap())
        .join(fa.path.file_name().unwrap());
    let saved = p.save_to_disk(&b, &tricky);
    let back = p.get::<PrimitiveArray<f64>>(&a).unwrap();
    assert!(
        saved.is_err() && back.values()[0] == 1.0,
        "save_to_disk({tricky:?}) = {saved:?}; get(a) now gives {}",
        back.values()[0]
    );
}

/// Before its fix: a `Ref` from a get of a frame entry is a fresh `Held` that
/// is never detached: once the pool lets go of the entry, the bytes the
/// caller still holds are not in `detached_bytes`, unlike a typed value.
#[test]
fn a_ref_decoded_from_a_frame_entry_counts_as_detached() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let v = PrimitiveArray::from(vec![3.0f64; 10_000]);
    let typed = p.set(v.clone()).unwrap();
    let held_typed = p.get::<PrimitiveArray<f64>>(&typed).unwrap();
    p.delete(&typed).unwrap();
    let d_typed = p.stats().detached_bytes;
    drop(held_typed);
    let fr = p.set_frame(mempool_serde::encode(&v).unwrap()).unwrap();
    let held_frame = p.get::<PrimitiveArray<f64>>(&fr).unwrap();
    p.delete(&fr).unwrap();
    let d_frame = p.stats().detached_bytes;
    assert!(
        d_typed > 0 && d_frame > 0,
        "detached after delete: typed {d_typed}, frame {d_frame} (a Ref of {} values still held)",
        held_frame.len()
    );
}

/// Before its fix: a write-behind flush in flight holds a disk reservation that
/// a must-happen write cannot reclaim (`drop_resident_copies` only drops
/// settled copies): a set that succeeds without write-behind fails with
/// `DiskFull` while the flush is in flight.
#[test]
fn an_inflight_flush_does_not_make_a_set_fail_at_max_disksize() {
    const MB: usize = 1 << 20;
    let mut failures = Vec::new();
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let p = Pool::new(
            PoolConfig::default()
                .max_memsize(64 * MB as u64)
                .max_disksize(Some(100 * MB as u64))
                .write_behind(true)
                .spill_dir(dir.path()),
        )
        .unwrap();
        let _a = p.set(vec![1u8; 40 * MB]).unwrap();
        let _b = p.set(vec![2u8; 10 * MB]).unwrap(); // past 3/4: the flusher writes a
        std::thread::sleep(Duration::from_millis(3));
        // Too large for memory: straight to disk, 70 MB of the 100 MB bound.
        if let Err(e) = p.set(vec![3u8; 70 * MB]) {
            failures.push(format!("attempt {attempt}: {} ({:?})", e.error, p.stats()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
