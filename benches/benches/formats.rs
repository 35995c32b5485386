//! mempool-serde against postcard: write, read from memory, read from a
//! memory-mapped file, for a 1M-string StringArray, a 10M f64 column, a
//! 1M-row PooledArray of 100 distinct strings, and a 4-column Table.
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mempool_arrays::{Buffer, Column, PooledArray, PrimitiveArray, StringArray, Table};
use mempool_benches::data::rnd;
use mempool_serde::{decode, decode_with, EncodedFrame, MmRead, MmWrite, ReadOptions};

const STRINGS: usize = 1_000_000;
const F64S: usize = 10_000_000;

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

fn write_file<T: MmWrite>(v: &T, path: &Path) -> Buffer {
    mempool_serde::write_file(v, path, false).unwrap();
    mempool_serde::map_file(path).unwrap()
}

/// write / read/memory / read/mmap / read/mmap/no_checksum for one value.
fn bench_frame<T: MmWrite + MmRead>(c: &mut Criterion, group: &str, value: &T, bytes: u64) {
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = string_array, f64_column, pooled, table
}
criterion_main!(benches);
