//! Write-behind and evictions write small values in batches (one vectored
//! write for many frames), not one write per value, let alone one per
//! chunk of a frame. Alone in its process: it counts the process's write
//! calls.

use mempool_core::{Pool, PoolConfig};

const LEN: usize = 1000;

fn value(k: u64) -> Vec<u8> {
    k.to_le_bytes().iter().copied().cycle().take(LEN).collect()
}

/// Write syscalls of this process so far (`syscw` of /proc/self/io).
#[cfg(target_os = "linux")]
fn write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Before batching: each copy (and each spill) was one `pwrite` per chunk of
/// its frame, three for a 1,000-byte value (12,000 here); one vectored
/// write a value would be 4,000. Measured with batches: 250 to 1,300.
#[cfg(target_os = "linux")]
#[test]
fn small_values_are_copied_with_fewer_writes_than_values() {
    const N: u64 = 4000;
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(100_000)
            .write_behind(true)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let before = write_calls();
    let refs: Vec<_> = (0..N).map(|k| p.set(value(k)).unwrap()).collect();
    let writes = write_calls() - before;
    let s = p.stats();
    eprintln!("{writes} write calls for {N} values; {s:?}");
    assert!(s.spills >= N - 100, "{} spills", s.spills);
    assert!(
        writes <= N * 3 / 4,
        "{writes} write calls for {} values written",
        s.spills
    );
    for (k, r) in refs.iter().enumerate() {
        assert_eq!(*p.get::<Vec<u8>>(r).unwrap(), value(k as u64), "value {k}");
    }
    for r in &refs {
        p.delete(r).unwrap();
    }
    let s = p.stats();
    assert_eq!((s.disk_bytes, s.segment_live_bytes), (0, 0), "{s:?}");
}
