//! A `RecordBatch` in a memory-bounded pool: stored in a pool bounded below
//! its size (so it goes to disk), fetched back mapped, compared, and checked
//! to borrow the map — no copy at any step after the write.
//!
//! `cargo run -p mempool-benches --features arrow --example arrow_pool`

use mempool_arrays::arrow::arrow_array::RecordBatch;
use mempool_benches::arrow_data::{batch, borrows, mappings_under};
use mempool_core::{Pool, PoolConfig};
use mempool_serde::MemSize;

fn main() {
    let batch: RecordBatch = batch(200_000); // about 9 MB
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A pool whose memory bound is below the batch's size.
    let config = PoolConfig::default()
        .max_memsize(batch.mem_size() / 2)
        .spill_dir(dir.path());
    let pool = Pool::new(config).expect("a pool");

    // Stored: too large for memory, it is written to disk at once.
    let r = pool.set(batch.clone()).expect("stored");
    assert!(pool.is_on_disk(&r).unwrap() && !pool.is_in_memory(&r).unwrap());

    // Fetched back: an Arrow IPC file inside a frame, mapped, not copied.
    let back = pool.get::<RecordBatch>(&r).expect("restored");
    assert_eq!(*back, batch);
    let maps = mappings_under(pool.session_dir());
    if cfg!(target_os = "linux") {
        assert!(
            borrows(&back, &maps),
            "the batch's buffers point into the spill file's map"
        );
    }
    let s = pool.stats();
    assert_eq!(s.misses, 1);
    println!(
        "stored {} bytes of Arrow ({} by arrow's count), read {} time(s) from the map: {} bytes on disk",
        back.mem_size(),
        back.get_array_memory_size(),
        s.misses,
        s.disk_bytes,
    );
}
