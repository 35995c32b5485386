//! The cost of the Arrow hand-off per column (feature `arrow`): mempool
//! arrays to arrow-rs and back for 1M-row columns. Each conversion is O(1)
//! per buffer except where named: `to_arrow/nullable_f64` counts the nulls
//! (a popcount of the validity), `to_arrow/strings_unchecked` runs arrow's
//! UTF-8 check (a string array read from a frame without validate_full), and
//! `from_arrow/utf8_strings` widens 32-bit offsets (a copy of the offsets).
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mempool_arrays::arrow::arrow_array::{self as aa, Array, LargeStringArray};
use mempool_arrays::{Column, NullableArray, PooledArray, PrimitiveArray, StringArray, Table};
use mempool_benches::data::rnd;

const ROWS: u64 = 1_000_000;

fn strings() -> StringArray {
    StringArray::from_iter_values((0..ROWS).map(|i| {
        let len = 5 + rnd(30, i) % 36;
        (0..len)
            .map(|k| (b'a' + (rnd(31, i * 64 + k) % 26) as u8) as char)
            .collect::<String>()
    }))
}

fn bench(c: &mut Criterion) {
    let f64s = PrimitiveArray::from((0..ROWS).map(|i| i as f64).collect::<Vec<_>>());
    let nullable = NullableArray::from(
        (0..ROWS)
            .map(|i| (i % 10 != 3).then_some(i as f64))
            .collect::<Vec<_>>(),
    );
    let s = strings();
    let (o, d, v) = s.parts();
    let unchecked = StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).unwrap();
    let pooled: PooledArray = (0..ROWS)
        .map(|i| Some(format!("category-{}", rnd(32, i) % 100)))
        .collect();
    let table = Table::new(vec![
        ("f64".into(), Column::F64(f64s.clone())),
        ("nullable".into(), Column::NullableF64(nullable.clone())),
        ("s".into(), Column::Str(s.clone())),
        ("pooled".into(), Column::PooledStr(pooled.clone())),
    ]);

    let mut g = c.benchmark_group("to_arrow");
    g.bench_function("f64", |b| b.iter(|| black_box(f64s.to_arrow())));
    g.bench_function("nullable_f64", |b| {
        b.iter(|| black_box(nullable.to_arrow()))
    });
    g.bench_function("strings", |b| b.iter(|| black_box(s.to_arrow().unwrap())));
    g.bench_function("strings_unchecked", |b| {
        b.iter(|| black_box(unchecked.to_arrow().unwrap()))
    });
    g.bench_function("pooled", |b| {
        b.iter(|| black_box(pooled.to_arrow().unwrap()))
    });
    g.bench_function("table_4_columns", |b| {
        b.iter(|| black_box(table.to_arrow().unwrap()))
    });
    g.finish();

    let a_f64 = f64s.to_arrow();
    let a_nullable = nullable.to_arrow();
    let a_large: LargeStringArray = s.to_arrow().unwrap();
    let a_utf8 = aa::StringArray::from_iter_values((0..ROWS).map(|i| format!("{i}")));
    let a_pooled = pooled.to_arrow().unwrap();
    let batch = table.to_arrow().unwrap();
    let mut g = c.benchmark_group("from_arrow");
    g.bench_function("f64", |b| {
        b.iter(|| black_box(PrimitiveArray::<f64>::from_arrow(&a_f64).unwrap()))
    });
    g.bench_function("nullable_f64", |b| {
        b.iter(|| black_box(NullableArray::<f64>::from_arrow(&a_nullable).unwrap()))
    });
    g.bench_function("large_strings", |b| {
        b.iter(|| black_box(StringArray::from_arrow(&a_large)))
    });
    g.bench_function("utf8_strings", |b| {
        b.iter(|| black_box(StringArray::from_arrow_utf8(&a_utf8)))
    });
    g.bench_function("pooled", |b| {
        b.iter(|| black_box(PooledArray::try_from_arrow(a_pooled.as_ref()).unwrap()))
    });
    g.bench_function("table_4_columns", |b| {
        b.iter(|| black_box(Table::from_arrow(&batch).unwrap()))
    });
    g.finish();
    black_box(a_pooled.len());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
