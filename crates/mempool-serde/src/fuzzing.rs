//! Entry points for property tests and fuzz targets: decode arbitrary bytes as
//! every supported type, and read everything that decodes through its
//! accessors. They must return, never panic.
//!
//! - [`decode_all_types`]: bytes as every type, with and without the checksum.
//! - [`decode_and_exercise`]: bytes as one type, then [`Exercise::exercise`].
//! - [`reseal`]: recomputes a mutated frame's checksums, so that mutations get
//!   past the checksums and reach the section decoders.
//! - [`decode_compressed`]: bytes as a compressed frame ([`decompress_frame`]),
//!   then the frame bytes it gives as every type.
//! - [`reseal_compressed`]: recomputes a mutated compressed frame's
//!   checksums, so that mutations reach the codec.
//!
//! What "exercise" may call is the contract of the arrays: every accessor of a
//! value that decoded must not panic for indices in bounds — except
//! [`StringArray::value`] and [`StringArray::iter`] on a plain string array
//! (or table column) whose UTF-8 was not checked, which are documented to
//! panic on invalid UTF-8. Those are called only after
//! [`StringArray::validate_full`] succeeded; before that, only
//! [`StringArray::try_value`] and [`StringArray::iter_bytes`].

use std::hint::black_box;

use crate::checksum::xxh3_64;
use mempool_arrays::{
    BooleanArray, Buffer, Column, NullableArray, PooledArray, PrimitiveArray, StringArray, Table,
};

use crate::frame::{header_checksum, le_u32};
use crate::{
    decode_with, decompress_frame, MmRead, PodElement, ReadOptions, Serde, COMPRESSED_HEADER_LEN,
    HEADER_LEN, MAX_SECTIONS, MAX_TYPE_NAME, SECTION_ALIGN,
};

/// Tries to decode `bytes` as each type this crate can read, with and without
/// checksum verification, exercising every value that decodes. Returns how many
/// decodes succeeded: a frame of one of these types decodes exactly twice
/// (as its own type, with and without the checksum).
#[must_use]
pub fn decode_all_types(bytes: &[u8]) -> usize {
    let buffer = Buffer::copy_aligned(bytes);
    let mut ok = 0;
    for verify in [true, false] {
        let opts = ReadOptions {
            verify_checksum: verify,
        };
        macro_rules! try_types {
            ($($t:ty),* $(,)?) => {
                $(ok += usize::from(decode_and_exercise::<$t>(&buffer, &opts).is_ok());)*
            };
        }
        try_types!(
            StringArray,
            PrimitiveArray<f64>,
            PrimitiveArray<u8>,
            PrimitiveArray<i32>,
            BooleanArray,
            NullableArray<f64>,
            NullableArray<i64>,
            PooledArray<StringArray>,
            PooledArray<PrimitiveArray<u32>>,
            PooledArray<PrimitiveArray<f64>>,
            Table,
            Vec<u32>,
            Vec<f64>,
            String,
            Vec<String>,
            Vec<Option<String>>,
            Serde<Vec<(String, u64)>>,
        );
        #[cfg(feature = "arrow")]
        {
            use arrow_array::{ArrayRef, RecordBatch};
            try_types!(RecordBatch, ArrayRef);
        }
    }
    ok
}

/// The largest raw length [`decode_compressed`] accepts (16 MiB): a fuzzer's
/// inputs are small, and a larger claim must be refused before allocating.
pub const FUZZ_MAX_RAW_LEN: u64 = 16 << 20;

/// Opens `bytes` as a compressed frame with a raw-length limit of
/// [`FUZZ_MAX_RAW_LEN`] and, if that succeeds, decodes the frame bytes it
/// gives as every type ([`decode_all_types`]). Returns `None` when
/// decompressing fails, else how many decodes succeeded. Never panics.
#[must_use]
pub fn decode_compressed(bytes: &[u8]) -> Option<usize> {
    let raw = decompress_frame(bytes, FUZZ_MAX_RAW_LEN).ok()?;
    Some(decode_all_types(&raw))
}

/// Recomputes the payload checksum (over every byte after the header) and
/// then the header checksum of a (mutated) compressed frame in place, so that
/// [`decompress_frame`] gets past both and hands the mutated payload to the
/// codec. Returns `false`, leaving `bytes` as they are, when they are shorter
/// than the header.
pub fn reseal_compressed(bytes: &mut [u8]) -> bool {
    if bytes.len() < COMPRESSED_HEADER_LEN {
        return false;
    }
    let payload = xxh3_64(&bytes[COMPRESSED_HEADER_LEN..]);
    bytes[32..40].copy_from_slice(&payload.to_le_bytes());
    let header = xxh3_64(&bytes[..56]);
    bytes[56..64].copy_from_slice(&header.to_le_bytes());
    true
}

/// Decodes `buffer` as a `T` with `opts` and, if that succeeds, exercises the
/// value's accessors ([`Exercise`]). Never panics.
///
/// # Errors
/// The decoder's error.
pub fn decode_and_exercise<T: MmRead + Exercise>(
    buffer: &Buffer,
    opts: &ReadOptions,
) -> crate::Result<T> {
    let value = decode_with::<T>(buffer, opts)?;
    value.exercise();
    Ok(value)
}

/// Recomputes the body checksum and then the header checksum of a (mutated)
/// frame in place, so that a reader gets past both checksums and runs the
/// section decoders on the mutation. Returns `false`, leaving `bytes` as they
/// are, when the header is too damaged to locate the data (shorter than a
/// header, or a type name or section table past the end).
pub fn reseal(bytes: &mut [u8]) -> bool {
    if bytes.len() < HEADER_LEN {
        return false;
    }
    let name_len = le_u32(bytes, 12) as usize;
    let count = le_u32(bytes, 16) as usize;
    if name_len > MAX_TYPE_NAME || count > MAX_SECTIONS {
        return false;
    }
    let table_start = HEADER_LEN + name_len.next_multiple_of(8);
    let data_start = (table_start + 16 * count).next_multiple_of(SECTION_ALIGN);
    if data_start > bytes.len() {
        return false;
    }
    // The header checksum covers bytes 40..48, the body checksum: body first.
    let body = xxh3_64(&bytes[data_start..]);
    bytes[40..48].copy_from_slice(&body.to_le_bytes());
    let header = header_checksum(&bytes[..data_start]);
    bytes[48..56].copy_from_slice(&header.to_le_bytes());
    true
}

/// Reads a value through every accessor that must not panic on a value that
/// decoded from untrusted bytes (see the module documentation).
pub trait Exercise {
    /// Reads every element, through the value's public accessors.
    fn exercise(&self);
}

impl<T: PodElement> Exercise for PrimitiveArray<T> {
    fn exercise(&self) {
        for i in 0..self.len() {
            black_box(self[i]);
        }
        black_box(self.get(self.len()));
        black_box(self.iter().count());
        black_box(
            self.slice(self.len() / 2, self.len() - self.len() / 2)
                .len(),
        );
    }
}

impl<T: PodElement> Exercise for Vec<T> {
    fn exercise(&self) {
        black_box(
            bytemuck::cast_slice::<T, u8>(self)
                .iter()
                .fold(0u8, |a, &b| a ^ b),
        );
    }
}

impl Exercise for BooleanArray {
    fn exercise(&self) {
        for i in 0..self.len() {
            black_box(self.value(i));
        }
        black_box(self.get(self.len()));
        black_box(self.true_count());
        black_box(self.iter().filter(|&b| b).count());
        black_box(
            self.slice(self.len() / 2, self.len() - self.len() / 2)
                .true_count(),
        );
    }
}

impl Exercise for String {
    fn exercise(&self) {
        black_box(self.chars().count());
    }
}

impl Exercise for Vec<String> {
    fn exercise(&self) {
        black_box(self.iter().map(|s| s.chars().count()).sum::<usize>());
    }
}

impl Exercise for Vec<Option<String>> {
    fn exercise(&self) {
        black_box(
            self.iter()
                .flatten()
                .map(|s| s.chars().count())
                .sum::<usize>(),
        );
    }
}

/// Only the accessors that never panic, then — if [`StringArray::validate_full`]
/// succeeds — the ones that would panic on invalid UTF-8.
impl Exercise for StringArray {
    fn exercise(&self) {
        let len = self.len();
        for i in 0..len {
            black_box(self.try_value(i).ok());
            black_box(self.value_bytes(i));
            black_box(self.is_null(i));
        }
        black_box(self.try_value(len).is_err());
        black_box(self.iter_bytes().flatten().map(<[u8]>::len).sum::<usize>());
        black_box((
            self.null_count(),
            self.value_data().len(),
            self.value_data_len(),
        ));
        let tail = self.slice(len / 2, len - len / 2);
        black_box(tail.iter_bytes().count());
        black_box(format!("{self:?}").len());
        if self.validate_full().is_ok() {
            for i in 0..len {
                black_box(self.value(i));
            }
            black_box(self.iter().flatten().map(str::len).sum::<usize>());
            black_box(self.to_vec().len());
            black_box(tail.iter().count());
            black_box(PooledArray::from(self).len());
        }
    }
}

impl<T: PodElement + PartialEq> Exercise for NullableArray<T> {
    fn exercise(&self) {
        let len = self.len();
        for i in 0..len {
            black_box(self.get(i));
            black_box(self.is_null(i));
        }
        black_box(self.try_get(len).is_err());
        black_box(self.null_count());
        black_box(self.iter().rev().flatten().count());
        black_box(self.to_vec().len());
        black_box(self.values().len());
        let tail = self.slice(len / 2, len - len / 2);
        black_box(tail.iter().flatten().count());
        black_box(&tail == self);
    }
}

/// Every accessor: the reader validated the pool's UTF-8.
impl Exercise for PooledArray<StringArray> {
    fn exercise(&self) {
        let len = self.len();
        for i in 0..len {
            black_box(self.get(i));
            black_box(self.is_null(i));
            black_box(self.code(i));
        }
        black_box(self.try_get(len).is_err());
        black_box(self.iter().flatten().map(str::len).sum::<usize>());
        black_box(self.null_count());
        black_box(self.to_string_array().len());
        black_box(self.codes().max_code());
        let tail = self.slice(len / 2, len - len / 2);
        black_box(tail.iter().count());
        black_box(&tail == self);
        self.pool().exercise();
    }
}

impl<T: PodElement + PartialEq> Exercise for PooledArray<PrimitiveArray<T>> {
    fn exercise(&self) {
        let len = self.len();
        for i in 0..len {
            black_box(self.get(i));
            black_box(self[i]);
        }
        black_box(self.try_get(len).is_err());
        black_box(self.iter().count());
        black_box(self.to_vec().len());
        let tail = self.slice(len / 2, len - len / 2);
        black_box(&tail == self);
        self.pool().exercise();
    }
}

impl Exercise for Table {
    fn exercise(&self) {
        for (name, column) in self.columns() {
            black_box(self.column(name).map(Column::len));
            black_box(self[name].type_name());
            exercise_column(column);
        }
        black_box(self.column_at(self.num_columns()).is_none());
        let rows = self.num_rows();
        let tail = self.slice(rows / 2, rows - rows / 2);
        black_box(tail.num_rows());
        black_box(format!("{self:?}").len());
    }
}

fn exercise_column(column: &Column) {
    black_box(column.len());
    match column {
        Column::Bool(a) => a.exercise(),
        Column::I8(a) => a.exercise(),
        Column::I16(a) => a.exercise(),
        Column::I32(a) => a.exercise(),
        Column::I64(a) => a.exercise(),
        Column::U8(a) => a.exercise(),
        Column::U16(a) => a.exercise(),
        Column::U32(a) => a.exercise(),
        Column::U64(a) => a.exercise(),
        Column::F32(a) => a.exercise(),
        Column::F64(a) => a.exercise(),
        Column::NullableI64(a) => a.exercise(),
        Column::NullableF64(a) => a.exercise(),
        Column::Str(a) => a.exercise(),
        Column::PooledStr(a) => a.exercise(),
        other => {
            black_box(other.slice(0, other.len()).len());
        }
    }
}

/// Decoding is the whole of a serde value's exercise.
impl<T> Exercise for Serde<T> {
    fn exercise(&self) {
        black_box(&self.0);
    }
}

/// What decoded was validated: arrow's full validation passes again.
#[cfg(feature = "arrow")]
impl Exercise for arrow_array::RecordBatch {
    fn exercise(&self) {
        for c in self.columns() {
            assert!(
                c.to_data().validate_full().is_ok(),
                "a decoded batch is valid"
            );
        }
        black_box(crate::MemSize::mem_size(self));
    }
}

/// What decoded was validated: arrow's full validation passes again.
#[cfg(feature = "arrow")]
impl Exercise for arrow_array::ArrayRef {
    fn exercise(&self) {
        assert!(
            self.to_data().validate_full().is_ok(),
            "a decoded array is valid"
        );
        black_box(crate::MemSize::mem_size(self));
    }
}
