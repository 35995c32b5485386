//! Reading the strings of one W3 array (100,000 ASCII strings of 5..40 bytes):
//! what each accessor costs against the plain slice of the buffers.
//!
//! - `strings/slice`: `&data[o[i]..o[i + 1]]` over the array's own offsets and
//!   bytes (its parts), the floor for any accessor;
//! - `strings/value_bytes`, `strings/iter_bytes`: the byte accessors;
//! - `strings/value`, `strings/iter`: the `&str` accessors of a checked array
//!   (built from `&str`s, or validated once);
//! - `strings/value/frame`, `strings/iter/frame`: the same on an array as a
//!   frame reader makes it (`StringArray::try_new_structural`, UTF-8 not yet
//!   checked), each iteration on a fresh array;
//! - `strings/validate_full`: the one-time UTF-8 check of such an array.
//!
//! Each reader folds every string's length and first byte into a sum, so that
//! it touches the string, as a user would.

use std::hint::black_box;

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use mempool_arrays::StringArray;
use mempool_benches::data::{w3_strings, Letters};

#[inline]
fn fold(acc: usize, s: &[u8]) -> usize {
    acc.wrapping_mul(31)
        .wrapping_add(s.len())
        .wrapping_add(usize::from(s.first().copied().unwrap_or(0)))
}

/// A fresh array over the same buffers, as a frame reader builds it.
fn structural(a: &StringArray) -> StringArray {
    let (o, d, v) = a.parts();
    StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).expect("valid parts")
}

fn reads(c: &mut Criterion) {
    let letters = Letters::new();
    let array = StringArray::from_iter_values(
        w3_strings(&letters, 0).map(|s| std::str::from_utf8(s).expect("ASCII")),
    );
    assert!(array.is_utf8_checked());
    let mut group = c.benchmark_group("strings");
    group.throughput(Throughput::Bytes(array.value_data_len() as u64));

    group.bench_function("slice", |b| {
        b.iter(|| {
            let a = black_box(&array);
            let (o, d, _) = a.parts();
            let offs: &[u64] = o.typed().expect("aligned offsets");
            let data = d.as_slice();
            offs.windows(2)
                .fold(0, |acc, w| fold(acc, &data[w[0] as usize..w[1] as usize]))
        })
    });
    group.bench_function("value_bytes", |b| {
        b.iter(|| {
            let a = black_box(&array);
            (0..a.len()).fold(0, |acc, i| fold(acc, a.value_bytes(i).unwrap_or_default()))
        })
    });
    group.bench_function("iter_bytes", |b| {
        b.iter(|| {
            black_box(&array)
                .iter_bytes()
                .fold(0, |acc, s| fold(acc, s.unwrap_or_default()))
        })
    });
    group.bench_function("value", |b| {
        b.iter(|| {
            let a = black_box(&array);
            (0..a.len()).fold(0, |acc, i| {
                fold(acc, a.value(i).unwrap_or_default().as_bytes())
            })
        })
    });
    group.bench_function("iter", |b| {
        b.iter(|| {
            black_box(&array)
                .iter()
                .fold(0, |acc, s| fold(acc, s.unwrap_or_default().as_bytes()))
        })
    });
    group.bench_function("value/frame", |b| {
        b.iter_batched(
            || structural(&array),
            |a| {
                (0..a.len()).fold(0, |acc, i| {
                    fold(acc, a.value(i).unwrap_or_default().as_bytes())
                })
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("iter/frame", |b| {
        b.iter_batched(
            || structural(&array),
            |a| {
                a.iter()
                    .fold(0, |acc, s| fold(acc, s.unwrap_or_default().as_bytes()))
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("validate_full", |b| {
        b.iter_batched(
            || structural(&array),
            |a| a.validate_full().expect("valid UTF-8"),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The benchmark group of this file (what `criterion_group!` would generate,
/// with a doc comment).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    reads(&mut c);
}

criterion_main!(benches);
