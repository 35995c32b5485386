//! Spilled values share segment files: few files for many values, ranges
//! pinned by readers past a delete, space given back, the disk bound kept
//! under churn.

mod common;

use mempool_arrays::PrimitiveArray;
use mempool_core::{DRef, PoolError};

fn array(seed: u64, n: usize) -> PrimitiveArray<u64> {
    PrimitiveArray::from((0..n as u64).map(|i| i * 31 + seed).collect::<Vec<_>>())
}

#[test]
fn many_spilled_values_share_few_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 64 << 10, None);
    let refs: Vec<DRef> = (0..2000).map(|i| p.set(array(i, 128)).unwrap()).collect();
    let s = p.stats();
    assert!(s.disk_values > 1900, "{s:?}");
    assert_eq!(s.segment_files, 1, "{s:?}");
    assert_eq!(common::spill_files(p.session_dir()).len(), 1);
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(
            *p.get::<PrimitiveArray<u64>>(r).unwrap(),
            array(i as u64, 128)
        );
    }
    for r in &refs {
        p.delete(r).unwrap();
    }
    let s = p.stats();
    assert_eq!(
        (s.segment_live_bytes, s.segment_dead_bytes, s.disk_bytes),
        (0, 0, 0)
    );
    // At most the active segment is kept, punched whole.
    assert!(s.segment_files <= 1, "{s:?}");
    assert!(common::files_holding_bytes(p.session_dir()).is_empty());
}

#[test]
fn a_reader_pins_a_spilled_range_past_its_delete() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let v = array(9, 200_000); // 1.6 MB: larger than memory, straight to disk
    let r = p.set(v.clone()).unwrap();
    let read = p.get::<PrimitiveArray<u64>>(&r).unwrap(); // maps the range
    let len = p.stats().segment_live_bytes;
    assert!(len > 1_600_000);
    p.delete(&r).unwrap();
    let s = p.stats();
    assert_eq!(s.disk_bytes, 0, "the pool holds nothing on disk");
    assert_eq!(s.segment_live_bytes, len, "the reader still pins its range");
    assert_eq!(*read, v, "the bytes are in place");
    drop(read);
    let s = p.stats();
    // Its blocks go with it (the active segment may stay, punched whole).
    assert_eq!(
        (s.segment_live_bytes, s.segment_dead_bytes),
        (0, 0),
        "{s:?}"
    );
    assert!(s.segment_files <= 1, "{s:?}");
    assert!(common::files_holding_bytes(p.session_dir()).is_empty());
}

#[test]
fn the_disk_bound_holds_under_churn() {
    const MAX_DISK: u64 = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 256 << 10, Some(MAX_DISK));
    let mut live: Vec<(DRef, u64)> = Vec::new();
    let mut full = 0;
    for i in 0..3000u64 {
        let n = 64 + (i * 7919 % 4000) as usize;
        match p.set(array(i, n)) {
            Ok(r) => live.push((r, i)),
            Err(e) => {
                full += 1;
                let inner = match &e.error {
                    PoolError::Spill { source, .. } => source.as_ref(),
                    other => other,
                };
                assert!(matches!(inner, PoolError::DiskFull { .. }), "{e}");
                // Make room: delete the oldest third.
                for (r, _) in live.drain(..live.len() / 3) {
                    p.delete(&r).unwrap();
                }
            }
        }
        if i % 5 == 4 && !live.is_empty() {
            let (r, _) = live.swap_remove((i as usize * 31) % live.len());
            p.delete(&r).unwrap();
        }
        let s = p.stats();
        assert!(s.disk_bytes <= MAX_DISK, "step {i}: {s:?}");
        assert!(s.segment_live_bytes <= MAX_DISK, "step {i}: {s:?}");
    }
    assert!(full > 0, "the churn never reached the bound");
    for (r, i) in &live {
        let n = 64 + (i * 7919 % 4000) as usize;
        assert_eq!(*p.get::<PrimitiveArray<u64>>(r).unwrap(), array(*i, n));
    }
}

#[test]
fn ranges_pinned_by_readers_count_against_the_disk_bound() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, Some(2_500_000));
    let v = array(1, 200_000); // 1.6 MB: straight to disk
    let r = p.set(v.clone()).unwrap();
    let read = p.get::<PrimitiveArray<u64>>(&r).unwrap(); // maps (pins) the range
    p.delete(&r).unwrap();
    // 1.6 MB pinned + 1.6 MB new would pass 2.5 MB.
    let err = p.set(array(2, 200_000)).unwrap_err();
    assert!(matches!(err.error, PoolError::DiskFull { .. }), "{err}");
    assert_eq!(*read, v);
    drop(read);
    p.set(array(2, 200_000)).unwrap();
}

#[test]
fn stats_split_resident_bytes_into_heap_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 4 << 20, None);
    let big = p.set(array(1, 100_000)).unwrap(); // 800 kB: mapped when read back
    let small = p.set(array(2, 1000)).unwrap(); // 8 kB: copied when read back
    assert_eq!(p.stats().mem_mapped_bytes, 0, "stored values are heap");
    p.move_to_disk(&big).unwrap();
    p.move_to_disk(&small).unwrap();
    drop(p.get::<PrimitiveArray<u64>>(&big).unwrap());
    drop(p.get::<PrimitiveArray<u64>>(&small).unwrap());
    let s = p.stats();
    let big_size = p.info(&big).unwrap().mem_size;
    assert!(big_size >= 800_000);
    assert_eq!(s.mem_mapped_bytes, big_size, "{s:?}");
    assert!(s.mem_bytes > s.mem_mapped_bytes);
    p.delete(&big).unwrap();
    assert_eq!(p.stats().mem_mapped_bytes, 0);
}
