//! mempool-serde against postcard: write, read from memory, read from a
//! memory-mapped file, for a 1M-string StringArray, a 10M f64 column, a
//! 1M-row PooledArray of 100 distinct strings, and a 4-column Table; and the
//! cost of opening a ~100 MB StringArray frame file, with and without its
//! checksum; and LZ4 compression and decompression of the frame of a W3-like
//! string array (`compress/lz4/strings`, `decompress/lz4/strings`).
//!
//! The byte sizes of the frames go to `<criterion dir>/frame-sizes.json`
//! (`{"name": bytes, …}`), so that the report can compare them (the pooled
//! frame against the plain string frame of the same strings, the compressed
//! container against the frame it holds).
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mempool_arrays::{
    Buffer, Column, PooledArray, PrimitiveArray, StringArray, StringBuilder, Table,
};
use mempool_benches::data::rnd;
use mempool_serde::{
    compress_frame, decode, decode_with, decompress_frame, read_file_mapped_with, read_file_with,
    Codec, EncodedFrame, MmRead, MmWrite, ReadOptions,
};

const STRINGS: usize = 1_000_000;
const F64S: usize = 10_000_000;
/// Strings in the ~100 MB frame of the open benchmark (8-byte offset plus
/// 22.5 bytes on average each).
const BIG_STRINGS: u64 = 3_300_000;
/// Strings in the W3-like array of the compression benchmarks (as many as in
/// one W3 array).
const W3_STRINGS: u64 = 100_000;
/// The file the frame sizes are written to, in criterion's output directory.
const SIZES_FILE: &str = "frame-sizes.json";

/// 1M ASCII strings of lengths 5..40, seeded.
fn strings() -> Vec<String> {
    (0..STRINGS as u64)
        .map(|i| {
            let len = 5 + rnd(10, i) % 36;
            (0..len)
                .map(|k| (b'a' + (rnd(11, i * 64 + k) % 26) as u8) as char)
                .collect()
        })
        .collect()
}

fn pooled_strings() -> Vec<String> {
    let distinct: Vec<String> = (0..100)
        .map(|i| format!("category-{:03}-{}", i, rnd(12, i) % 1000))
        .collect();
    (0..STRINGS as u64)
        .map(|i| distinct[(rnd(13, i) % 100) as usize].clone())
        .collect()
}

/// ~100 MB of string frame: `BIG_STRINGS` ASCII strings of lengths 5..40,
/// slices of one seeded 1 MiB run of letters (built without a `Vec<String>`).
fn big_string_array() -> StringArray {
    letter_strings(BIG_STRINGS)
}

/// `n` ASCII strings of lengths 5..40, slices of one seeded 1 MiB run of
/// letters, as W3's are (built without a `Vec<String>`).
fn letter_strings(n: u64) -> StringArray {
    const LETTERS: u64 = 1 << 20;
    let letters: Vec<u8> = (0..LETTERS)
        .map(|k| b'a' + (rnd(20, k) % 26) as u8)
        .collect();
    let mut b = StringBuilder::with_capacity(n as usize, n as usize * 23);
    for i in 0..n {
        let len = 5 + rnd(21, i) % 36;
        let off = rnd(22, i) % (LETTERS - 40);
        let s = &letters[off as usize..(off + len) as usize];
        // ASCII letters are UTF-8.
        b.append_value(std::str::from_utf8(s).unwrap());
    }
    b.finish()
}

/// Criterion's output directory, found as criterion finds it:
/// `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`, else `criterion` in the
/// target directory that holds this binary (`<target>/<profile>/deps/`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.ancestors().nth(3)?.join("criterion"))
}

/// The frame sizes recorded by this run.
static SIZES: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Records the size of `value`'s frame under `name` and rewrites the sizes
/// file with every size recorded so far in this run.
fn record_size<T: MmWrite>(name: &str, value: &T) {
    record_len(name, EncodedFrame::new(value).unwrap().len() as u64);
}

/// Records `len` bytes under `name` and rewrites the sizes file with every
/// size recorded so far in this run.
fn record_len(name: &str, len: u64) {
    let mut sizes = SIZES.lock().unwrap_or_else(|e| e.into_inner());
    sizes.insert(name.to_string(), len);
    let Some(dir) = criterion_dir() else {
        eprintln!("formats: no criterion directory found; frame sizes not written");
        return;
    };
    let body: Vec<String> = sizes.iter().map(|(k, v)| format!("  {k:?}: {v}")).collect();
    let json = format!("{{\n{}\n}}\n", body.join(",\n"));
    let path = dir.join(SIZES_FILE);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, json)) {
        eprintln!("formats: cannot write {}: {e}", path.display());
    }
}

/// Writes `v` to `path` (a file in a private temporary directory that is
/// never written again) and maps it.
fn write_file<T: MmWrite>(v: &T, path: &Path) -> Buffer {
    mempool_serde::write_file(v, path, false).unwrap();
    // SAFETY: the file must not change while mapped:
    // - callers pass a path in their own temporary directory, and nothing
    //   writes it after `write_file` renamed it into place.
    unsafe { mempool_serde::map_file(path) }.unwrap()
}

/// write / read/memory / read/mmap / read/mmap/no_checksum for one value.
fn bench_frame<T: MmWrite + MmRead>(c: &mut Criterion, group: &str, value: &T, bytes: u64) {
    record_size(group, value);
    let dir = tempfile::tempdir().unwrap();
    let frame = mempool_serde::encode(value).unwrap();
    let mapped = write_file(value, &dir.path().join("frame"));
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(bytes));
    let mut out: Vec<u8> = Vec::with_capacity(frame.len());
    g.bench_function("write", |b| {
        b.iter(|| {
            out.clear();
            EncodedFrame::new(value)
                .unwrap()
                .write_to(&mut out)
                .unwrap();
            black_box(out.len())
        })
    });
    g.bench_function("read/memory", |b| {
        b.iter(|| black_box(decode::<T>(&frame).unwrap()))
    });
    g.bench_function("read/mmap", |b| {
        b.iter(|| black_box(decode::<T>(&mapped).unwrap()))
    });
    let no_sum = ReadOptions {
        verify_checksum: false,
    };
    g.bench_function("read/mmap/no_checksum", |b| {
        b.iter(|| black_box(decode_with::<T>(&mapped, &no_sum).unwrap()))
    });
    g.finish();
}

fn bench_postcard<T: serde::Serialize + serde::de::DeserializeOwned>(
    c: &mut Criterion,
    group: &str,
    value: &T,
    bytes: u64,
) {
    let encoded = postcard::to_stdvec(value).unwrap();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function(BenchmarkId::new("postcard", "encode"), |b| {
        b.iter(|| black_box(postcard::to_stdvec(value).unwrap()))
    });
    g.bench_function(BenchmarkId::new("postcard", "decode"), |b| {
        b.iter(|| black_box(postcard::from_bytes::<T>(&encoded).unwrap()))
    });
    g.finish();
}

fn string_array(c: &mut Criterion) {
    let v = strings();
    let bytes: u64 = v.iter().map(|s| s.len() as u64).sum();
    let a = StringArray::from_iter_values(&v);
    bench_frame(c, "strings_1M", &a, bytes);
    bench_postcard(c, "strings_1M", &v, bytes);
}

fn f64_column(c: &mut Criterion) {
    let v: Vec<f64> = (0..F64S as u64)
        .map(|k| (rnd(0, k) >> 11) as f64 * (-53f64).exp2())
        .collect();
    let a = PrimitiveArray::from(v.clone());
    bench_frame(c, "f64_10M", &a, (F64S * 8) as u64);
    bench_postcard(c, "f64_10M", &v, (F64S * 8) as u64);
}

fn pooled(c: &mut Criterion) {
    let v = pooled_strings();
    let bytes: u64 = v.iter().map(|s| s.len() as u64).sum();
    // The same strings unpooled: the size the pooled frame is compared with.
    record_size("pooled_1M_plain", &StringArray::from_iter_values(&v));
    let p = PooledArray::<StringArray>::from(v.clone());
    bench_frame(c, "pooled_1M", &p, bytes);
    bench_postcard(c, "pooled_1M", &v, bytes);
}

fn table(c: &mut Criterion) {
    let n = STRINGS as u64;
    let ids: Vec<i64> = (0..n as i64).collect();
    let prices: Vec<f64> = (0..n)
        .map(|k| (rnd(14, k) % 100_000) as f64 / 100.0)
        .collect();
    let names = strings();
    let cats = pooled_strings();
    let t = Table::try_new(vec![
        ("id".into(), Column::from(PrimitiveArray::from(ids.clone()))),
        (
            "price".into(),
            Column::from(PrimitiveArray::from(prices.clone())),
        ),
        (
            "name".into(),
            Column::from(StringArray::from_iter_values(&names)),
        ),
        (
            "category".into(),
            Column::from(PooledArray::<StringArray>::from(cats.clone())),
        ),
    ])
    .unwrap();
    let rows: Vec<(i64, f64, String, String)> = (0..n as usize)
        .map(|i| (ids[i], prices[i], names[i].clone(), cats[i].clone()))
        .collect();
    let bytes = postcard::to_stdvec(&rows).unwrap().len() as u64;
    bench_frame(c, "table_4col_1M", &t, bytes);
    bench_postcard(c, "table_4col_1M", &rows, bytes);
}

/// Opening a ~100 MB StringArray frame from its file, inside the timed loop:
/// mapped (`read_file_mapped_with`, map and all) verifying the checksum (the
/// whole file is read) and without (only the header and the offsets are
/// read), and copied into memory (`read_file_with`, the whole file is read
/// and copied).
fn open_big_strings(c: &mut Criterion) {
    let a = big_string_array();
    record_size("strings_100MB", &a);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strings.frame");
    let file_len = mempool_serde::write_file(&a, &path, false).unwrap();
    drop(a);
    let mut g = c.benchmark_group("open_strings_100MB");
    g.throughput(Throughput::Bytes(file_len));
    g.sample_size(10);
    for (name, verify_checksum) in [
        ("read_file_mapped/checksum", true),
        ("read_file_mapped/no_checksum", false),
    ] {
        let opts = ReadOptions { verify_checksum };
        g.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: the file must not change while mapped:
                // - it is in this benchmark's private temporary directory and
                //   nothing writes it after `write_file` renamed it into place.
                let a: StringArray = unsafe { read_file_mapped_with(&path, &opts) }.unwrap();
                black_box(a.len())
            })
        });
    }
    let opts = ReadOptions::default();
    g.bench_function("read_file/copy/checksum", |b| {
        b.iter(|| {
            let a: StringArray = read_file_with(&path, &opts).unwrap();
            black_box(a.len())
        })
    });
    g.finish();
}

/// LZ4 over the frame of one W3-like string array: `compress_frame` (the
/// frame streamed from its chunks; the frame is laid out and sealed before
/// the timed loop) and `decompress_frame` (header checks, the payload
/// checksum, the allocation and the decompression; not the frame's parse).
/// Throughput is in frame (raw) bytes; the frame's and the container's sizes
/// go to the sizes file as `strings_w3` and `strings_w3_lz4`.
fn compression(c: &mut Criterion) {
    let a = letter_strings(W3_STRINGS);
    let frame = EncodedFrame::new(&a).unwrap();
    let raw_len = frame.len() as u64;
    let container = compress_frame(&frame, Codec::Lz4).unwrap();
    record_len("strings_w3", raw_len);
    record_len("strings_w3_lz4", container.len() as u64);
    let mut g = c.benchmark_group("compress");
    g.throughput(Throughput::Bytes(raw_len));
    g.bench_function("lz4/strings", |b| {
        b.iter(|| black_box(compress_frame(&frame, Codec::Lz4).unwrap().len()))
    });
    g.finish();
    let mut g = c.benchmark_group("decompress");
    g.throughput(Throughput::Bytes(raw_len));
    g.bench_function("lz4/strings", |b| {
        b.iter(|| {
            black_box(
                decompress_frame(container.as_slice(), raw_len)
                    .unwrap()
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = string_array, f64_column, pooled, table, open_big_strings, compression
}
criterion_main!(benches);
