//! Low-occupancy churn: a pool that spills a value, deletes it and spills
//! again keeps its one (emptied, cleared) segment file instead of making a
//! new file each time, and the freed remains do not pile up against
//! `max_disksize`.

mod common;

/// Whether the file system under `dir` punches holes.
#[cfg(target_os = "linux")]
fn punches_holes(dir: &std::path::Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = tempfile::tempfile_in(dir).unwrap();
    f.set_len(1 << 16).unwrap();
    // SAFETY: fallocate(2) on a file descriptor this function owns, with
    // plain integer arguments; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            4096,
        )
    };
    rc == 0
}

/// Before its fix: each delete emptied the active segment, which was
/// removed, and the next spill made a new file (60 µs to 1 ms each here).
#[cfg(target_os = "linux")]
#[test]
fn spill_delete_spill_reuses_the_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    if !punches_holes(dir.path()) {
        eprintln!("skipping: this file system does not punch holes");
        return;
    }
    // A disk bound of 64 KiB: a kilobyte of remains a round would reach it
    // within 64 rounds.
    let p = common::sync_pool(dir.path(), 10_000, Some(64 << 10));
    let mut first = None;
    for i in 0..300u32 {
        let v = vec![i as u8; 1000];
        let r = p.set(v.clone()).unwrap();
        let f = p.move_to_disk(&r).unwrap();
        let path = first.get_or_insert_with(|| f.path.clone());
        assert_eq!(*path, f.path, "round {i}: a new segment file");
        assert_eq!(*p.get::<Vec<u8>>(&r).unwrap(), v, "round {i}");
        p.delete(&r).unwrap();
        // A range is never reused: the FileRef past its delete reads no
        // frame (not the next round's value).
        assert!(
            f.read::<Vec<u8>>().is_err(),
            "round {i}: a deleted FileRef reads"
        );
        let s = p.stats();
        assert_eq!(s.segment_files, 1, "round {i}: {s:?}");
        assert!(s.segment_dead_bytes < 64, "round {i}: {s:?}");
        assert_eq!(common::spill_files(p.session_dir()).len(), 1, "round {i}");
    }
    // The kept segment goes with the pool.
    let session = p.session_dir().to_owned();
    let path = first.unwrap();
    drop(p);
    assert!(!path.exists() && !session.exists());
}
