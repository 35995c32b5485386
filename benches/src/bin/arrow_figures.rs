//! The figures of the Arrow hand-off (feature `arrow`), in one run: a ~50 MB
//! `RecordBatch` stored in a mempool pool bounded below its size (stored and
//! spilled at once), restored (mapped back), and touched; against writing the
//! same batch as an Arrow IPC file with arrow-ipc's own `FileWriter` and
//! reading it with its `FileReader` (copying) and with its `FileDecoder` over
//! a memory map (zero-copy). Medians of `RUNS` runs, page cache warm.
//!
//! `cargo run --release -p mempool-benches --features arrow --bin arrow_figures [rows]`

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_ipc::reader::{read_footer_length, FileDecoder, FileReader};
use arrow_ipc::writer::FileWriter;
use mempool_arrays::arrow::arrow_array::{Array, RecordBatch};
use mempool_arrays::Buffer;
use mempool_benches::arrow_data::{batch, borrows, mappings_under, ROWS_50MB};
use mempool_core::{Pool, PoolConfig};
use mempool_serde::MemSize;

/// Runs of each measurement; the median is reported.
const RUNS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

/// Reads every value once, so that a lazily mapped batch pays its page
/// faults: sums the ids and prices, the name lengths and the category keys.
fn touch(b: &RecordBatch) -> u64 {
    let mut acc = 0u64;
    for c in b.columns() {
        let mut all = vec![c.to_data()];
        while let Some(d) = all.pop() {
            for buf in d.buffers() {
                acc = acc.wrapping_add(buf.as_slice().iter().step_by(64).map(|&x| x as u64).sum());
            }
            all.extend(d.child_data().iter().cloned());
        }
    }
    acc
}

fn write_ipc(batch: &RecordBatch, path: &Path) {
    let f = BufWriter::new(File::create(path).unwrap());
    let mut w = FileWriter::try_new(f, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
}

fn read_ipc_copying(path: &Path) -> RecordBatch {
    let mut r = FileReader::try_new(File::open(path).unwrap(), None).unwrap();
    r.next().unwrap().unwrap()
}

#[allow(unsafe_code, reason = "maps a file this program wrote")]
fn read_ipc_mapped(path: &Path) -> RecordBatch {
    // SAFETY: the file must not change while mapped:
    // - this program wrote it into its private temporary directory and
    //   nothing writes it again.
    let map = unsafe { Buffer::map_file(path) }.unwrap();
    let buffer = map.to_arrow();
    let trailer = buffer.len() - 10;
    let footer_len = read_footer_length(buffer[trailer..].try_into().unwrap()).unwrap();
    let footer = arrow_ipc::root_as_footer(&buffer[trailer - footer_len..trailer]).unwrap();
    let schema = arrow_ipc::convert::try_fb_to_schema(footer.schema().unwrap()).unwrap();
    let mut decoder = FileDecoder::new(Arc::new(schema), footer.version());
    for block in footer.dictionaries().iter().flatten() {
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        let data = buffer.slice_with_length(block.offset() as usize, len);
        decoder.read_dictionary(block, &data).unwrap();
    }
    let block = footer.recordBatches().unwrap().get(0);
    let len = block.bodyLength() as usize + block.metaDataLength() as usize;
    let data = buffer.slice_with_length(block.offset() as usize, len);
    decoder.read_record_batch(block, &data).unwrap().unwrap()
}

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .map_or(ROWS_50MB, |a| a.parse().unwrap());
    let b = batch(rows);
    let size = b.mem_size();
    println!(
        "batch: {rows} rows, 5 columns, {:.1} MB (arrow's get_array_memory_size: {:.1} MB)",
        size as f64 / 1e6,
        b.get_array_memory_size() as f64 / 1e6
    );
    let dir = tempfile::tempdir().unwrap();

    let (mut store, mut restore, mut touch_m) = (Vec::new(), Vec::new(), Vec::new());
    let (mut restore_nock, mut mapped_size, mut arrow_size, mut disk) = (Vec::new(), 0, 0, 0);
    for verify in [true, false] {
        for run in 0..RUNS {
            let sub = dir.path().join(format!("pool-{verify}-{run}"));
            let pool = Pool::new(
                PoolConfig::default()
                    .max_memsize(size / 4)
                    .spill_dir(&sub)
                    .verify_checksums(verify),
            )
            .unwrap();
            let t = Instant::now();
            let r = pool.set(b.clone()).unwrap();
            let stored = t.elapsed();
            let t = Instant::now();
            let back = pool.get::<RecordBatch>(&r).unwrap();
            let restored = t.elapsed();
            let t = Instant::now();
            std::hint::black_box(touch(&back));
            let touched = t.elapsed();
            if run == 0 && verify {
                assert_eq!(*back, b);
                assert!(
                    borrows(&back, &mappings_under(pool.session_dir()))
                        || !cfg!(target_os = "linux")
                );
                mapped_size = back.mem_size();
                arrow_size = back.get_array_memory_size();
                disk = pool.stats().disk_bytes;
            }
            if verify {
                store.push(stored);
                restore.push(restored);
                touch_m.push(touched);
            } else {
                restore_nock.push(restored);
            }
        }
    }

    let ipc = dir.path().join("batch.arrow");
    let (mut w, mut rc, mut rm, mut tc, mut tm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        write_ipc(&b, &ipc);
        w.push(t.elapsed());
        let t = Instant::now();
        let c = read_ipc_copying(&ipc);
        rc.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(touch(&c));
        tc.push(t.elapsed());
        let t = Instant::now();
        let m = read_ipc_mapped(&ipc);
        rm.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(touch(&m));
        tm.push(t.elapsed());
        assert_eq!(m.num_rows(), rows);
    }
    let ipc_len = std::fs::metadata(&ipc).unwrap().len();

    println!("\nmedians of {RUNS} runs (page cache warm)");
    println!("  mempool pool (max_memsize = size / 4):");
    println!(
        "    store (set: IPC encode + frame write + rename)  {}",
        ms(median(store))
    );
    println!(
        "    restore (get: map + checks + arrow validation)    {}",
        ms(median(restore))
    );
    println!(
        "    restore without the body checksum               {}",
        ms(median(restore_nock))
    );
    println!(
        "    first touch of the restored batch               {}",
        ms(median(touch_m))
    );
    println!("  arrow-ipc FileWriter / FileReader:");
    println!(
        "    write (file)                                    {}",
        ms(median(w))
    );
    println!(
        "    read, copying (FileReader)                      {}",
        ms(median(rc))
    );
    println!(
        "    first touch                                     {}",
        ms(median(tc))
    );
    println!(
        "    read, mapped (FileDecoder over a map)           {}",
        ms(median(rm))
    );
    println!(
        "    first touch                                     {}",
        ms(median(tm))
    );
    println!(
        "\nsizes: frame on disk {:.1} MB, IPC file {:.1} MB; restored batch counted {:.1} MB by MemSize, {:.1} MB by arrow's get_array_memory_size",
        disk as f64 / 1e6,
        ipc_len as f64 / 1e6,
        mapped_size as f64 / 1e6,
        arrow_size as f64 / 1e6
    );
}
