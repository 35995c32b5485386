//! The pool gives the heap of values it evicts back to the system: a
//! process putting and getting many times its bound stays near the bound
//! (W1 in small). Alone in its binary: it measures the whole process.

use mempool_arrays::PrimitiveArray;
use mempool_core::{Pool, PoolConfig};

const MIB: u64 = 1 << 20;
const BOUND: u64 = 64 * MIB;
const VALUES: u64 = 320;
const LEN: usize = (MIB / 8) as usize;

/// A field of /proc/self/status, in MiB.
fn status_mib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

fn value(i: u64) -> PrimitiveArray<f64> {
    PrimitiveArray::from(
        (0..LEN as u64)
            .map(|j| (i * 7 + j) as f64)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn a_process_churning_many_times_its_bound_stays_near_it() {
    if !std::path::Path::new("/proc/self/clear_refs").exists() {
        println!("skipped: no /proc/self/clear_refs to reset the peak RSS");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(
        PoolConfig::default()
            .max_memsize(BOUND)
            .spill_dir(dir.path()),
    )
    .unwrap();
    // Writing 5 resets VmHWM to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status_mib("VmRSS:");
    let refs: Vec<_> = (0..VALUES).map(|i| pool.set(value(i)).unwrap()).collect();
    // Every value back, in an order that restores most of them from disk.
    for k in 0..VALUES {
        let i = (k * 97) % VALUES;
        let a = pool.get::<PrimitiveArray<f64>>(&refs[i as usize]).unwrap();
        assert_eq!(a.values()[1], (i * 7 + 1) as f64);
    }
    let peak = status_mib("VmHWM:") - base;
    let s = pool.stats();
    println!("peak {peak} MiB over a {} MiB bound; {s:?}", BOUND / MIB);
    assert!(s.restores > 0, "{s:?}");
    // The bound, a value being made, and what write-behind has in flight;
    // without giving the heap back it was bound + ~60 MiB.
    assert!(
        peak <= BOUND / MIB + 32,
        "peak RSS grew {peak} MiB for a {} MiB pool",
        BOUND / MIB
    );
}
