//! mempool-core micro-benchmarks: a get that hits memory, a set that fits, a
//! set that spills a 1 MiB value (write-behind off, so the set writes it), a
//! set that evicts a 1 MiB value that already has a disk copy (what
//! write-behind turns most spills into), and a restore of a 1 MiB value from
//! disk.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mempool_arrays::PrimitiveArray;
use mempool_benches::data::rnd;
use mempool_core::{Pool, PoolConfig};

const MIB: u64 = 1 << 20;

fn pool(dir: &tempfile::TempDir, max: u64) -> Pool {
    Pool::new(PoolConfig::default().max_memsize(max).spill_dir(dir.path())).unwrap()
}

/// A pool whose evictions write synchronously.
fn pool_no_write_behind(dir: &tempfile::TempDir, max: u64) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap()
}

fn mib_array(seed: u64) -> PrimitiveArray<f64> {
    (0..131_072u64)
        .map(|k| (rnd(seed, k) >> 11) as f64)
        .collect()
}

fn get_hit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, 1 << 30);
    let refs: Vec<_> = (0..100_000u64)
        .map(|k| p.set(k.to_le_bytes().repeat(12)).unwrap())
        .collect();
    let mut g = c.benchmark_group("pool");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i += 1;
            let r = &refs[(rnd(20, i) % refs.len() as u64) as usize];
            black_box(p.get::<Vec<u8>>(r).unwrap().len())
        })
    });
    g.bench_function("set_no_spill", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let p = pool(&dir, 1 << 34);
            let start = Instant::now();
            for k in 0..iters {
                black_box(p.set(k.to_le_bytes().repeat(12)).unwrap());
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn spill_and_restore(c: &mut Criterion) {
    let mut g = c.benchmark_group("pool_1MiB");
    g.throughput(Throughput::Bytes(MIB));
    g.sample_size(20);
    let values: Vec<_> = (0..16).map(mib_array).collect();
    g.bench_function("set_with_spill", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let p = pool_no_write_behind(&dir, 8 * MIB + 4096);
            // Fill memory so that every timed set spills one value.
            for v in values.iter().take(8) {
                p.set(v.clone()).unwrap();
            }
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let v = PrimitiveArray::from(values[(i % 16) as usize].values().to_vec());
                let start = Instant::now();
                black_box(p.set(v).unwrap());
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("set_evict_clean", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let p = pool_no_write_behind(&dir, 8 * MIB + 4096);
            for v in values.iter().take(8) {
                let r = p.set(v.clone()).unwrap();
                p.copy_to_disk(&r).unwrap();
            }
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let v = PrimitiveArray::from(values[(i % 16) as usize].values().to_vec());
                let start = Instant::now();
                let r = p.set(v).unwrap();
                total += start.elapsed();
                // Untimed: give the new value its disk copy, so that the
                // next set evicts a clean value again.
                p.copy_to_disk(&r).unwrap();
            }
            total
        })
    });
    g.bench_function("restore", |b| {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(&dir, 64 * MIB);
        let r = p.set(values[0].clone()).unwrap();
        p.copy_to_disk(&r).unwrap();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                p.move_to_disk(&r).unwrap(); // drops it from memory, no write
                let start = Instant::now();
                black_box(p.get::<PrimitiveArray<f64>>(&r).unwrap().len());
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, get_hit, spill_and_restore);
criterion_main!(benches);
