//! Reads of spilled values do not wake write-behind when it has nothing to
//! copy (restored values keep their file as their copy). Alone in its
//! process: it watches the one flusher thread.

use mempool_core::{Pool, PoolConfig};

/// Voluntary context switches of the thread named `mempool-flush` (it
/// sleeps once per wake-up).
#[cfg(target_os = "linux")]
fn flusher_switches() -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim() == "mempool-flush" {
            let status = std::fs::read_to_string(path.join("status")).ok()?;
            return status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse().ok());
        }
    }
    None
}

/// Before its fix: every get that made a value resident above 3/4 of
/// `max_memsize` kicked the flusher (a futex wake and a context switch),
/// which found nothing to copy: W5's get phase spent a quarter of its time
/// there.
#[cfg(target_os = "linux")]
#[test]
fn gets_of_spilled_values_do_not_wake_an_idle_flusher() {
    const N: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(100_000)
            .write_behind(true)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let refs: Vec<_> = (0..N)
        .map(|k| p.set(vec![k as u8; 1000]).unwrap())
        .collect();
    // Read every value once: after this, every resident value has a copy.
    for r in &refs {
        p.get::<Vec<u8>>(r).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = flusher_switches().expect("the flusher thread runs");
    for (k, r) in refs.iter().enumerate().rev() {
        assert_eq!(p.get::<Vec<u8>>(r).unwrap()[0], k as u8);
    }
    let woken = flusher_switches().unwrap() - before;
    let s = p.stats();
    eprintln!("the flusher slept {woken} times during {N} gets; {s:?}");
    assert!(s.restores >= 2 * N - 200, "{s:?}");
    assert!(
        woken < N / 20,
        "the flusher was woken {woken} times by {N} gets that left nothing to copy"
    );
}
