//! Micro-benchmarks of the workload data generator's checksums: `data/checksum_f64`
//! (one W1 value), `data/checksum_strings` (one W3 array, strings one by one)
//! and `data/checksum_string_array` (the same from a `StringArray`'s buffers).

use criterion::{black_box, criterion_main, Criterion, Throughput};
use mempool_benches::data::{
    checksum_f64, checksum_string_array, checksum_strings, w1_value, w3_array_bytes, w3_strings,
    F64Pool, Letters, W3_STRINGS_PER_ARRAY,
};

fn checksums(c: &mut Criterion) {
    let pool = F64Pool::new();
    let letters = Letters::new();
    let mut group = c.benchmark_group("data");

    let value = w1_value(&pool, 0);
    group.throughput(Throughput::Bytes(std::mem::size_of_val(value) as u64));
    group.bench_function("checksum_f64", |b| {
        b.iter(|| checksum_f64(black_box(value)))
    });

    let strings: Vec<&[u8]> = w3_strings(&letters, 0).collect();
    let joined_len = w3_array_bytes(0) + W3_STRINGS_PER_ARRAY - 1;
    group.throughput(Throughput::Bytes(joined_len as u64));
    group.bench_function("checksum_strings", |b| {
        b.iter(|| checksum_strings(black_box(&strings).iter().copied()))
    });
    let array = mempool_arrays::StringArray::from_iter_values(
        strings
            .iter()
            .map(|s| std::str::from_utf8(s).expect("ASCII")),
    );
    group.bench_function("checksum_string_array", |b| {
        b.iter(|| checksum_string_array(black_box(&array)))
    });

    group.finish();
}

/// The benchmark group of this file (what `criterion_group!` would generate,
/// with a doc comment).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    checksums(&mut c);
}

criterion_main!(benches);
