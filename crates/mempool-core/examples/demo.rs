//! The demo: a pool with a 64 MiB memory bound takes 256 MiB of columnar data,
//! spills the least recently used to disk, maps it back on demand, and shows
//! its stats. Run with `cargo run --release --example demo -p mempool-core`.

use std::time::Instant;

use mempool_arrays::{PrimitiveArray, StringArray};
use mempool_core::{Pool, PoolConfig, Stats};

const MIB: u64 = 1 << 20;

fn show(label: &str, s: &Stats) {
    println!(
        "{label:<28} memory {:>4} values {:>7.1} MiB | disk {:>4} values {:>7.1} MiB | hits {} misses {} spills {} restores {}",
        s.mem_values,
        s.mem_bytes as f64 / MIB as f64,
        s.disk_values,
        s.disk_bytes as f64 / MIB as f64,
        s.hits,
        s.misses,
        s.spills,
        s.restores
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Ctrl-C removes the spill directory too.
    mempool_core::cleanup_on_signals()?;
    let spill_dir = std::env::temp_dir().join("mempool-demo");
    let config = PoolConfig::default()
        .max_memsize(64 * MIB)
        .spill_dir(&spill_dir);
    let pool = Pool::new(config)?;
    println!(
        "pool: max_memsize 64 MiB, spilling to {}",
        pool.session_dir().display()
    );

    // 32 columns of 1 Mi f64 (8 MiB each) = 256 MiB: four times the bound.
    let t = Instant::now();
    let mut refs = Vec::new();
    for i in 0..32u64 {
        let col: PrimitiveArray<f64> = (0..(1u64 << 20)).map(|k| (i * k) as f64).collect();
        refs.push(pool.set(col)?);
    }
    show("after 256 MiB of puts", &pool.stats());
    println!("  ({:.0} ms)", t.elapsed().as_secs_f64() * 1e3);

    // Read everything back, oldest first: spilled columns are memory-mapped.
    let t = Instant::now();
    for (i, r) in refs.iter().enumerate() {
        let col = pool.get::<PrimitiveArray<f64>>(r)?;
        let expect = (i as u64 * ((1 << 20) - 1)) as f64;
        assert_eq!(col.values()[(1 << 20) - 1], expect, "column {i} changed");
    }
    show("after reading all back", &pool.stats());
    println!("  ({:.0} ms)", t.elapsed().as_secs_f64() * 1e3);

    // Strings too, and an explicit spill with a FileRef readable by path.
    let names = pool.set(StringArray::from(vec![Some("foo~^å&"), None, Some("bar")]))?;
    let file = pool.move_to_disk(&names)?;
    let read: StringArray = file.read()?;
    println!(
        "FileRef {} ({} bytes) reads back {:?}",
        file.path.display(),
        file.size,
        read.to_vec()
    );

    for r in refs.iter().chain([&names]) {
        pool.delete(r)?;
    }
    show("after deleting everything", &pool.stats());
    let dir = pool.session_dir().to_owned();
    drop(pool);
    println!("session directory removed at shutdown: {}", !dir.exists());
    Ok(())
}
