//! Entry points for property tests and fuzz targets: decode arbitrary bytes as
//! every supported type. They must return, never panic.

use mempool_arrays::{
    BooleanArray, Buffer, Column, NullableArray, PooledArray, PrimitiveArray, StringArray, Table,
};

use crate::{decode_with, ReadOptions, Serde};

/// Tries to decode `bytes` as each type this crate can read, with and without
/// checksum verification, touching every decoded element. Returns how many
/// decodes succeeded (useful only to see that a corpus exercises something).
pub fn decode_all_types(bytes: &[u8]) -> usize {
    let buffer = Buffer::copy_aligned(bytes);
    let mut ok = 0;
    for verify in [true, false] {
        let opts = ReadOptions {
            verify_checksum: verify,
        };
        if let Ok(a) = decode_with::<StringArray>(&buffer, &opts) {
            ok += 1;
            for i in 0..a.len() {
                let _ = a.try_value(i);
            }
            let _ = a.validate_full();
        }
        if let Ok(a) = decode_with::<PrimitiveArray<f64>>(&buffer, &opts) {
            ok += 1;
            let _ = a.values().iter().sum::<f64>();
        }
        if let Ok(a) = decode_with::<BooleanArray>(&buffer, &opts) {
            ok += 1;
            let _ = a.true_count();
        }
        if let Ok(a) = decode_with::<NullableArray<f64>>(&buffer, &opts) {
            ok += 1;
            touch_nullable(&a);
        }
        if let Ok(a) = decode_with::<NullableArray<i64>>(&buffer, &opts) {
            ok += 1;
            touch_nullable(&a);
        }
        if let Ok(a) = decode_with::<PooledArray<StringArray>>(&buffer, &opts) {
            ok += 1;
            touch_pooled_strings(&a);
        }
        if let Ok(a) = decode_with::<PooledArray<PrimitiveArray<u32>>>(&buffer, &opts) {
            ok += 1;
            let _ = a.to_vec();
        }
        if let Ok(t) = decode_with::<Table>(&buffer, &opts) {
            ok += 1;
            for (_, column) in t.columns() {
                touch_column(column);
            }
        }
        ok += usize::from(decode_with::<Vec<u32>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<String>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Vec<String>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Vec<Option<String>>>(&buffer, &opts).is_ok());
        ok += usize::from(decode_with::<Serde<Vec<(String, u64)>>>(&buffer, &opts).is_ok());
    }
    ok
}

fn touch_nullable<T: bytemuck::Pod>(a: &NullableArray<T>) {
    let _ = a.null_count();
    for i in 0..a.len() {
        let _ = a.try_get(i);
    }
}

fn touch_strings(a: &StringArray) {
    for i in 0..a.len() {
        let _ = a.try_value(i);
    }
    let _ = a.validate_full();
}

/// Reads every entry through the pool without assuming valid UTF-8.
fn touch_pooled_strings(a: &PooledArray<StringArray>) {
    for c in a.codes().iter() {
        let _ = a.pool().try_value(c as usize);
    }
    let _ = a.null_count();
    touch_strings(a.pool());
}

fn touch_column(column: &Column) {
    match column {
        Column::Bool(a) => {
            let _ = a.true_count();
        }
        Column::I8(a) => {
            let _ = a.iter().map(i64::from).sum::<i64>();
        }
        Column::I16(a) => {
            let _ = a.iter().map(i64::from).sum::<i64>();
        }
        Column::I32(a) => {
            let _ = a.iter().map(i64::from).sum::<i64>();
        }
        Column::I64(a) => {
            let _ = a.iter().fold(0i64, i64::wrapping_add);
        }
        Column::U8(a) => {
            let _ = a.iter().map(u64::from).sum::<u64>();
        }
        Column::U16(a) => {
            let _ = a.iter().map(u64::from).sum::<u64>();
        }
        Column::U32(a) => {
            let _ = a.iter().map(u64::from).sum::<u64>();
        }
        Column::U64(a) => {
            let _ = a.iter().fold(0u64, u64::wrapping_add);
        }
        Column::F32(a) => {
            let _ = a.iter().sum::<f32>();
        }
        Column::F64(a) => {
            let _ = a.iter().sum::<f64>();
        }
        Column::NullableI64(a) => touch_nullable(a),
        Column::NullableF64(a) => touch_nullable(a),
        Column::Str(a) => touch_strings(a),
        Column::PooledStr(a) => touch_pooled_strings(a),
        _ => {}
    }
}
