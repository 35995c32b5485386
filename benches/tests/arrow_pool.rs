//! A `RecordBatch` stored in a pool bounded below its size, spilled,
//! restored and compared, through the public APIs of mempool-core and
//! mempool-serde (feature `arrow`); and a Table handed to Arrow and stored.

use mempool_arrays::arrow::arrow_array::RecordBatch;
use mempool_arrays::{MemoryKind, PrimitiveArray, StringArray, Table};
use mempool_benches::arrow_data::{batch, borrows, mappings_under};
use mempool_core::{Pool, PoolConfig};
use mempool_serde::MemSize;

/// Rows of the batch: about 4.7 MB.
const ROWS: usize = 100_000;

fn pool(dir: &std::path::Path, max_memsize: u64) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(max_memsize)
            .spill_dir(dir),
    )
    .unwrap()
}

#[test]
fn a_batch_larger_than_the_pool_is_spilled_and_mapped_back() {
    let b = batch(ROWS);
    let dir = tempfile::tempdir().unwrap();
    let pool = pool(dir.path(), b.mem_size() / 4);
    let r = pool.set(b.clone()).unwrap();
    assert!(pool.is_on_disk(&r).unwrap());
    assert!(!pool.is_in_memory(&r).unwrap());
    let back = pool.get::<RecordBatch>(&r).unwrap();
    assert_eq!(*back, b);
    if cfg!(target_os = "linux") {
        let maps = mappings_under(pool.session_dir());
        assert!(!maps.is_empty());
        assert!(borrows(&back, &maps), "restored without a copy");
    }
    // The mapped batch counts its one mapping, not each buffer slice.
    assert!(back.mem_size() < b.mem_size() + (1 << 20));
    assert!(back.get_array_memory_size() as u64 > 2 * back.mem_size());
    // Slices of the restored batch outlive the pool's reference.
    let part = back.slice(10, 10);
    drop(back);
    pool.delete(&r).unwrap();
    assert_eq!(part, b.slice(10, 10));
}

#[test]
fn batches_are_evicted_and_restored_like_any_value() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(ROWS / 10);
    let pool = pool(dir.path(), one.mem_size() * 5 / 2);
    let refs: Vec<_> = (0..6).map(|_| pool.set(one.clone()).unwrap()).collect();
    assert!(pool.stats().spills > 0 || pool.stats().evictions > 0);
    for r in &refs {
        assert_eq!(*pool.get::<RecordBatch>(r).unwrap(), one);
    }
    assert!(pool.stats().restores > 0);
}

#[test]
fn a_table_goes_to_arrow_and_into_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let t = Table::new(vec![
        ("x".into(), PrimitiveArray::from(vec![1.5f64; 1000]).into()),
        ("s".into(), StringArray::from(vec!["abc"; 1000]).into()),
    ]);
    let pool = pool(dir.path(), 1024);
    let r = pool.set(t.to_arrow().unwrap()).unwrap();
    let back = pool.get::<RecordBatch>(&r).unwrap();
    // Back to mempool arrays: the strings come as LargeUtf8, mapped.
    let t2 = Table::from_arrow(&back).unwrap();
    assert_eq!(t2, t);
    let (_, data, _) = t2.column_as::<StringArray>("s").unwrap().parts();
    // Arrow does not say where its memory lives: reported as heap.
    assert_eq!(data.memory_kind(), MemoryKind::Heap);
}
