//! The Arrow batch of the Arrow hand-off figures (feature `arrow`):
//! deterministic, from the recipe's [`rnd`].

use std::sync::Arc;

use mempool_arrays::arrow::arrow_array::types::Int32Type;
use mempool_arrays::arrow::arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use mempool_arrays::arrow::arrow_schema::{DataType, Field, Schema};

use crate::data::rnd;

/// Rows of [`batch`] for a batch of about 50 MB (46.6 bytes a row).
pub const ROWS_50MB: usize = 1_100_000;

/// Distinct categories of the dictionary column.
const CATEGORIES: usize = 100;

/// A batch of `rows` rows: `id` (`Int64`), `price` (`Float64`, every tenth
/// null), `name` (`Utf8`, 5..40 random letters, 22.5 bytes on average),
/// `category` (a dictionary of 100 strings, `Int32` keys) and `flag`
/// (`Boolean`).
pub fn batch(rows: usize) -> RecordBatch {
    let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 3));
    let prices = Float64Array::from_iter((0..rows as u64).map(|i| {
        (i % 10 != 7).then(|| (rnd(20, i) >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 100.0)
    }));
    let names = StringArray::from_iter_values((0..rows as u64).map(|i| {
        let len = 5 + rnd(21, i) % 36;
        (0..len)
            .map(|k| (b'a' + (rnd(22, i * 64 + k) % 26) as u8) as char)
            .collect::<String>()
    }));
    let keys = Int32Array::from_iter_values(
        (0..rows as u64).map(|i| (rnd(23, i) % CATEGORIES as u64) as i32),
    );
    let values: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..CATEGORIES).map(|c| format!("category-{c:03}")),
    ));
    let categories = DictionaryArray::<Int32Type>::try_new(keys, values).expect("keys in range");
    let flags =
        BooleanArray::from_iter((0..rows as u64).map(|i| Some(rnd(24, i).is_multiple_of(2))));
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, false),
        Field::new(
            "category",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("flag", DataType::Boolean, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(ids),
            Arc::new(prices),
            Arc::new(names),
            Arc::new(categories),
            Arc::new(flags),
        ],
    )
    .expect("columns of the schema")
}

/// The start and end addresses of the file-backed mappings of files under
/// `dir` (`/proc/self/maps`; empty elsewhere than Linux).
pub fn mappings_under(dir: &std::path::Path) -> Vec<std::ops::Range<usize>> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy();
    maps.lines()
        .filter(|l| l.contains(dir.as_ref()))
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            Some(usize::from_str_radix(a, 16).ok()?..usize::from_str_radix(b, 16).ok()?)
        })
        .collect()
}

/// Whether every non-empty buffer of `batch` lies inside one of `maps`.
pub fn borrows(batch: &RecordBatch, maps: &[std::ops::Range<usize>]) -> bool {
    batch.columns().iter().all(|c| {
        let mut all = vec![c.to_data()];
        let mut ok = true;
        while let Some(d) = all.pop() {
            for b in d.buffers().iter().chain(d.nulls().map(|n| n.buffer())) {
                let p = b.as_ptr() as usize;
                ok &= b.is_empty() || maps.iter().any(|m| m.start <= p && p + b.len() <= m.end);
            }
            all.extend(d.child_data().iter().cloned());
        }
        ok
    })
}
