//! Sequential operations with write-behind on (the model test turns it off)
//! keep residency exactly LRU: the flusher's marks and the read buffer do not
//! change which values are resident.

use mempool_core::{DRef, Pool, PoolConfig};

const MAX: u64 = 64 << 10;

#[test]
fn residency_is_exact_lru_with_write_behind() {
    for seed in 1..=4u64 {
        run(seed);
    }
}

fn run(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(PoolConfig::default().max_memsize(MAX).spill_dir(dir.path())).unwrap();
    // Model: resident values, most recent first: (ref, bytes).
    let mut resident: Vec<(DRef, u64)> = Vec::new();
    let mut all: Vec<(DRef, u64)> = Vec::new(); // (ref, seed)
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    for step in 0..6000 {
        let k = next() % 20;
        match k {
            0..=5 => {
                let n = 256 + (next() % 2048) as usize; // 2 kB .. 18 kB
                let bytes = n as u64 * 8;
                let s = next();
                let r = pool.set(vec![s; n]).unwrap();
                let used: u64 = resident.iter().map(|v| v.1).sum();
                let mut used = used;
                while used + bytes > MAX {
                    let (_, b) = resident.pop().unwrap();
                    used -= b;
                }
                resident.insert(0, (r, bytes));
                all.push((r, s));
            }
            6..=15 if !all.is_empty() => {
                let (r, s) = if next() % 4 != 0 && !resident.is_empty() {
                    // Mostly hits: many buffered touches between victim picks.
                    let r = resident[(next() as usize) % resident.len()].0;
                    *all.iter().find(|e| e.0 == r).unwrap()
                } else {
                    all[(next() as usize) % all.len()]
                };
                let v = pool.get::<Vec<u64>>(&r).unwrap();
                assert!(v.iter().all(|&e| e == s), "step {step}: wrong contents");
                let bytes = v.len() as u64 * 8;
                drop(v);
                if let Some(p) = resident.iter().position(|e| e.0 == r) {
                    let e = resident.remove(p);
                    resident.insert(0, e);
                } else {
                    let mut used: u64 = resident.iter().map(|v| v.1).sum();
                    while used + bytes > MAX {
                        let (_, b) = resident.pop().unwrap();
                        used -= b;
                    }
                    resident.insert(0, (r, bytes));
                }
            }
            16 if !all.is_empty() => {
                let i = (next() as usize) % all.len();
                let (r, _) = all.swap_remove(i);
                pool.delete(&r).unwrap();
                resident.retain(|e| e.0 != r);
            }
            17 if !all.is_empty() => {
                let i = (next() as usize) % all.len();
                let r = all[i].0;
                pool.move_to_disk(&r).unwrap();
                resident.retain(|e| e.0 != r);
            }
            18 if !all.is_empty() => {
                let i = (next() as usize) % all.len();
                pool.copy_to_disk(&all[i].0).unwrap();
            }
            _ => {}
        }
        for (r, _) in &all {
            let want = resident.iter().any(|e| e.0 == *r);
            let got = pool.is_in_memory(r).unwrap();
            assert_eq!(
                got, want,
                "seed {seed} step {step}: residency of {r:?} differs from LRU"
            );
        }
        let s = pool.stats();
        assert!(s.mem_bytes + s.spilling_bytes <= MAX);
        assert_eq!(
            s.mem_bytes,
            resident.iter().map(|e| e.1).sum::<u64>(),
            "step {step}"
        );
    }
    eprintln!("seed {seed}: {:?}", pool.stats());
}
