//! Failures lose nothing: a full filesystem, a vanished directory, the disk
//! bound, a corrupted spill file, a wrong type, values held across eviction.

use std::path::Path;
use std::process::Command;

use mempool_arrays::{PrimitiveArray, StringArray};
use mempool_core::{Pool, PoolConfig, PoolError};
use mempool_serde::FrameError;

fn array(seed: u64, n: usize) -> PrimitiveArray<u64> {
    (0..n as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9).wrapping_add(seed))
        .collect()
}

fn check(pool: &Pool, r: &mempool_core::DRef, seed: u64, n: usize) {
    let v = pool.get::<PrimitiveArray<u64>>(r).unwrap();
    assert_eq!(*v, array(seed, n), "value {r} changed");
}

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn full_filesystem_keeps_values_in_memory() {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(reason) => {
            eprintln!("SKIPPED full_filesystem_keeps_values_in_memory: {reason}");
            return;
        }
    };
    const N: usize = 40_000; // 320 kB per value
    let max = 700_000;
    {
        let pool = Pool::new(PoolConfig::default().max_memsize(max).spill_dir(fs.path())).unwrap();
        let mut stored = Vec::new();
        let mut failure = None;
        for seed in 0..20 {
            match pool.set(array(seed, N)) {
                Ok(r) => stored.push((r, seed)),
                Err(e) => {
                    // The value not stored comes back whole.
                    assert_eq!(e.value, array(seed, N));
                    failure = Some(e.error);
                    break;
                }
            }
        }
        let err = failure.expect("a 1 MiB filesystem must fill up");
        let PoolError::Spill { source, .. } = &err else {
            panic!("expected a spill error, got {err:?}");
        };
        let PoolError::Frame(FrameError::Io { source: io, .. }) = &**source else {
            panic!("expected an I/O error, got {source:?}");
        };
        assert_eq!(io.raw_os_error(), Some(28), "ENOSPC expected: {io}");
        let s = pool.stats();
        assert!(s.spill_failures >= 1);
        assert!(s.mem_bytes <= max, "{s:?}");
        // Nothing stored before the failure is lost.
        for (r, seed) in &stored {
            check(&pool, r, *seed, N);
        }
        // No temporary or partial files left behind.
        for e in std::fs::read_dir(pool.session_dir()).unwrap() {
            let name = e.unwrap().file_name();
            assert!(
                !name.to_string_lossy().contains(".tmp-"),
                "{name:?} left behind"
            );
        }
    }
    assert_eq!(
        std::fs::read_dir(fs.path()).unwrap().count(),
        0,
        "session dir removed"
    );
}

#[test]
fn vanished_spill_directory_keeps_values_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 10_000; // 80 kB
    let max = 200_000;
    // Write-behind off: no segment file is open when the directory goes (a
    // pool with an open segment keeps appending to it, unlinked, and reads
    // it back through its mapping: nothing is lost either way).
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(max)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = pool.set(array(1, N)).unwrap();
    let b = pool.set(array(2, N)).unwrap();
    std::fs::remove_dir_all(pool.session_dir()).unwrap();
    let err = pool.set(array(3, N)).unwrap_err().error;
    assert!(matches!(err, PoolError::Spill { .. }), "{err:?}");
    assert!(err.to_string().contains("stays in memory"), "{err}");
    assert!(pool.stats().mem_bytes <= max);
    check(&pool, &a, 1, N);
    check(&pool, &b, 2, N);
    // move_to_disk fails the same way and keeps the value.
    assert!(pool.move_to_disk(&a).is_err());
    check(&pool, &a, 1, N);
    assert!(pool.is_in_memory(&a).unwrap());
    // Once the directory is back, spilling works again.
    std::fs::create_dir(pool.session_dir()).unwrap();
    let c = pool.set(array(3, N)).unwrap();
    for (r, seed) in [(a, 1), (b, 2), (c, 3)] {
        check(&pool, &r, seed, N);
    }
    assert!(pool.stats().spills >= 1);
}

#[test]
fn disk_bound_fails_set_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    const N: usize = 10_000; // 80 kB, frame ~80.2 kB
    let config = PoolConfig::default()
        .max_memsize(170_000)
        .max_disksize(Some(170_000))
        .spill_dir(dir.path());
    let pool = Pool::new(config).unwrap();
    let mut stored = Vec::new();
    let err = loop {
        let seed = stored.len() as u64;
        match pool.set(array(seed, N)) {
            Ok(r) => stored.push((r, seed)),
            Err(e) => break e.error,
        }
        assert!(stored.len() < 10, "the disk bound never triggered");
    };
    let PoolError::Spill { source, .. } = &err else {
        panic!("expected a spill error, got {err:?}");
    };
    assert!(
        matches!(**source, PoolError::DiskFull { max: 170_000, .. }),
        "{source:?}"
    );
    assert!(err.to_string().contains("max_disksize"), "{err}");
    let s = pool.stats();
    assert!(s.disk_bytes <= 170_000 && s.mem_bytes <= 170_000, "{s:?}");
    assert_eq!(stored.len(), 4, "2 in memory + 2 on disk fit");
    for (r, seed) in &stored {
        check(&pool, r, *seed, N);
    }
}

#[test]
fn corrupted_spill_file_is_a_checksum_error() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
    let r = pool.set(array(7, 1000)).unwrap();
    let file = pool.move_to_disk(&r).unwrap();
    // Disk corruption in the frame's range of its segment file (nothing
    // reads that range meanwhile).
    {
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file.path)
            .unwrap();
        let at = file.offset + file.size - 3;
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    }
    match pool.get::<PrimitiveArray<u64>>(&r) {
        Err(PoolError::Frame(FrameError::BodyChecksum { .. })) => {}
        other => panic!("expected a checksum error, got {other:?}"),
    }
    // Still an error (never wrong data) on a second try, and delete works.
    assert!(pool.get::<PrimitiveArray<u64>>(&r).is_err());
    pool.delete(&r).unwrap();
    // The range is freed (its segment, the active one, may stay, cleared):
    // nothing of it counts, and the FileRef reads nothing.
    let s = pool.stats();
    assert_eq!(
        (s.disk_bytes, s.segment_live_bytes, s.segment_dead_bytes),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(file.read::<PrimitiveArray<u64>>().is_err());
    // The pool's drop removes its segments.
    drop(pool);
    assert!(!file.path.exists());
}

#[test]
fn wrong_type_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
    let r = pool.set(StringArray::from(vec!["x"])).unwrap();
    let err = pool.get::<PrimitiveArray<u64>>(&r).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("StringArray") && msg.contains("PrimitiveArray<u64>"),
        "{msg}"
    );
    // On disk too.
    pool.move_to_disk(&r).unwrap();
    assert!(matches!(
        pool.get::<Vec<String>>(&r),
        Err(PoolError::TypeMismatch { .. })
    ));
    assert_eq!(pool.get::<StringArray>(&r).unwrap().value(0), Some("x"));
}

#[test]
fn value_larger_than_memory_goes_straight_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(10_000)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let small = pool.set(array(1, 100)).unwrap();
    let big = pool.set(array(2, 5000)).unwrap(); // 40 kB > 10 kB
    let s = pool.stats();
    assert_eq!((s.mem_values, s.disk_values), (1, 1));
    assert!(
        pool.is_in_memory(&small).unwrap(),
        "the big value evicted nothing"
    );
    check(&pool, &big, 2, 5000);
    assert!(
        !pool.is_in_memory(&big).unwrap(),
        "too big to become resident"
    );
    assert!(pool.stats().mem_bytes <= 10_000);
}

#[test]
fn held_values_are_reported_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(100_000)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = pool.set(array(1, 10_000)).unwrap(); // 80 kB
    let held = pool.get::<PrimitiveArray<u64>>(&a).unwrap();
    let _b = pool.set(array(2, 10_000)).unwrap(); // evicts a while we hold it
    assert!(!pool.is_in_memory(&a).unwrap());
    let s = pool.stats();
    assert_eq!(s.detached_bytes, 80_000, "a is alive in our hands: {s:?}");
    assert!(s.mem_bytes <= 100_000);
    assert_eq!(*held, array(1, 10_000));
    drop(held);
    assert_eq!(pool.stats().detached_bytes, 0);
    // Deleting a value someone holds also detaches it.
    let held = pool.get::<PrimitiveArray<u64>>(&a).unwrap();
    pool.delete(&a).unwrap();
    assert_eq!(
        pool.stats().detached_bytes,
        held.buffer().owner_len() as u64
    );
    assert_eq!(*held, array(1, 10_000));
    drop(held);
    assert_eq!(pool.stats().detached_bytes, 0);
}
