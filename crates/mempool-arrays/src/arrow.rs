//! The Arrow hand-off (feature `arrow`): every array of this crate to its
//! arrow-rs counterpart and back, sharing the bytes instead of copying them.
//!
//! | mempool | arrow-rs | copies |
//! |---|---|---|
//! | [`Buffer`] | `arrow_buffer::Buffer` | nothing |
//! | [`Bitmap`] | `BooleanBuffer` (a `NullBuffer` for validity) | nothing; a `NullBuffer` counts its nulls (one popcount pass over the bits) |
//! | [`PrimitiveArray<T>`] | `PrimitiveArray<T::ArrowType>` (see [`ArrowNative`]) | nothing |
//! | [`NullableArray<T>`] | `PrimitiveArray<T::ArrowType>` with a `NullBuffer` | nothing (the popcount above) |
//! | [`BooleanArray`] | `BooleanArray` | nothing |
//! | [`StringArray`] | `LargeStringArray` (our offsets are 64-bit, as Arrow's `LargeUtf8`) | nothing; from a `StringArray` (`Utf8`, 32-bit offsets) the offsets are widened: a copy of the offsets, not of the strings |
//! | [`PooledArray<StringArray>`] | `DictionaryArray<UInt8/16/32>` of `LargeUtf8` (the key type follows our code width) | nothing; back from Arrow: signed keys (`Int8/16/32`) are read as unsigned in place, `Int64`/`UInt64` keys are narrowed (a copy of the keys), and null keys are turned into codes of a null pool entry (a copy of the keys and of the pool's offsets, never of the strings) |
//! | [`Table`] | `RecordBatch` | per column, as above |
//!
//! Every conversion is O(1) per buffer, except the counts named above. The
//! memory stays with its owner: an Arrow array made from a mapped array keeps
//! the map alive (its buffers hold a clone of ours), and an array of ours made
//! from Arrow keeps Arrow's buffers alive.
//!
//! **Validation.** What is already checked is not checked again: a
//! [`StringArray`] whose UTF-8 is known to be valid
//! ([`StringArray::is_utf8_checked`]) becomes an Arrow array without a pass
//! over its bytes, a [`PooledArray`] (whose codes were checked when it was
//! built) becomes a `DictionaryArray` without a pass over its codes, and Arrow
//! arrays (valid by construction in arrow-rs) come back without checks. A
//! [`StringArray`] read from a frame without [`StringArray::validate_full`]
//! goes through Arrow's checked constructor, which checks its UTF-8.
//!
//! **Nulls of a pooled column.** Our pools hold nulls as pool entries; the
//! `DictionaryArray` keeps them there (Arrow allows null dictionary values),
//! so `DictionaryArray::logical_nulls` sees them and `null_count` (the keys'
//! nulls) does not.
//!
//! **Memory accounting.** A [`Buffer`] made from Arrow memory reports
//! [`MemoryKind::Heap`](crate::MemoryKind) (Arrow does not say whether its
//! memory is a map) and counts Arrow's allocation once however many of our
//! buffers view it ([`Buffer::owner_id`] is the allocation's address).
//!
//! ```
//! use mempool_arrays::{NullableArray, StringArray, Table};
//! use mempool_arrays::arrow::arrow_array::Array;
//!
//! let t = Table::new(vec![
//!     ("price".into(), NullableArray::from(vec![Some(1.5f64), None]).into()),
//!     ("name".into(), StringArray::from(vec!["apple", "pear"]).into()),
//! ]);
//! let batch = t.to_arrow().unwrap();
//! assert_eq!(batch.num_rows(), 2);
//! assert_eq!(batch.column(0).null_count(), 1);
//! // No copy: Arrow's string bytes are ours.
//! let ours = t.column_as::<StringArray>("name").unwrap().parts().1.as_slice().as_ptr();
//! let arrow_strings = batch.column(1).to_data().buffers()[1].as_ptr();
//! assert_eq!(ours, arrow_strings);
//! // And back, again without a copy.
//! assert_eq!(Table::from_arrow(&batch).unwrap(), t);
//! ```

use std::sync::Arc;

use arrow_array::types::{
    ArrowDictionaryKeyType, ArrowPrimitiveType, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, DictionaryArray, LargeStringArray, RecordBatch};
use arrow_buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use bytemuck::Pod;

use crate::buffer::Foreign;
use crate::error::{ArrayError, Result};
use crate::{
    Bitmap, BooleanArray, Buffer, Codes, Column, NullableArray, PooledArray, PrimitiveArray,
    StringArray, Table,
};

/// The arrow-rs crates these conversions speak, re-exported so that users name
/// the same versions.
pub use ::arrow_array;
/// See [`arrow_array`].
pub use ::arrow_buffer;
/// See [`arrow_array`].
pub use ::arrow_schema;

mod sealed {
    pub trait Sealed {}
}

/// A plain-old-data element that has an Arrow primitive type of the same
/// layout: the numbers `i8` … `i64`, `u8` … `u64`, `f32`, `f64`.
pub trait ArrowNative: Pod + Send + Sync + arrow_buffer::ArrowNativeType + sealed::Sealed {
    /// The Arrow type whose native type is `Self`.
    type ArrowType: ArrowPrimitiveType<Native = Self>;
}

macro_rules! arrow_native {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl ArrowNative for $t {
            type ArrowType = $a;
        }
    )*};
}

arrow_native! {
    i8 => Int8Type, i16 => Int16Type, i32 => Int32Type, i64 => Int64Type,
    u8 => UInt8Type, u16 => UInt16Type, u32 => UInt32Type, u64 => UInt64Type,
    f32 => Float32Type, f64 => Float64Type,
}

impl Buffer {
    /// The same bytes as an Arrow buffer, in O(1): the Arrow buffer holds a
    /// clone of this one (through `bytes::Bytes::from_owner`), so a mapped
    /// file stays mapped while any Arrow buffer points into it.
    pub fn to_arrow(&self) -> arrow_buffer::Buffer {
        arrow_buffer::Buffer::from(bytes::Bytes::from_owner(self.clone()))
    }

    /// The bytes of an Arrow buffer, in O(1), keeping it alive. Reports
    /// [`MemoryKind::Heap`](crate::MemoryKind); two of our buffers of one
    /// Arrow allocation share an [`owner_id`](Buffer::owner_id).
    pub fn from_arrow(buffer: &arrow_buffer::Buffer) -> Self {
        Self::from_foreign(Foreign {
            id: buffer.data_ptr().as_ptr() as usize,
            held: buffer.capacity(),
            owner: buffer.clone(),
        })
    }
}

impl Bitmap {
    /// The same bits as an Arrow `BooleanBuffer` (bit offset kept), in O(1).
    pub fn to_arrow(&self) -> BooleanBuffer {
        let (buffer, offset) = self.buffer();
        // `Bitmap`'s invariant (checked by `try_new`) is what
        // `BooleanBuffer::new` asserts: the buffer holds `offset + len` bits.
        BooleanBuffer::new(buffer.to_arrow(), offset, self.len())
    }

    /// The bits of an Arrow `BooleanBuffer` (bit offset kept), in O(1).
    ///
    /// # Errors
    /// None in practice (a `BooleanBuffer` holds its bits); the check of
    /// [`Bitmap::try_new`] is kept.
    pub fn from_arrow(bits: &BooleanBuffer) -> Result<Self> {
        Bitmap::try_new(Buffer::from_arrow(bits.inner()), bits.offset(), bits.len())
    }

    /// As an Arrow validity: a `NullBuffer` (a set bit marks a valid entry, as
    /// here). Counts the nulls: one popcount pass over the bits.
    pub fn to_arrow_nulls(&self) -> NullBuffer {
        NullBuffer::new(self.to_arrow())
    }
}

/// Our validity from Arrow's, dropping a `NullBuffer` without nulls.
fn validity_from_arrow(nulls: Option<&NullBuffer>) -> Result<Option<Bitmap>> {
    match nulls {
        Some(n) if n.null_count() > 0 => Ok(Some(Bitmap::from_arrow(n.inner())?)),
        _ => Ok(None),
    }
}

/// A values buffer of `T`s as an Arrow `ScalarBuffer`, in O(1).
fn scalar_buffer<T: ArrowNative>(a: &PrimitiveArray<T>) -> ScalarBuffer<T> {
    // `PrimitiveArray`'s invariant (checked by `try_new`) is what
    // `ScalarBuffer::from` asserts: the bytes are aligned for `T` — for a
    // non-empty buffer. An empty one may sit at any address (an empty slice
    // of another buffer, an empty `Vec<u8>`), and Arrow checks alignment
    // even then: a misaligned one gets an empty buffer of its own (an
    // aligned one keeps its address, so a round trip keeps it too).
    let bytes = a.buffer().as_slice();
    if bytes.is_empty() && bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        return ScalarBuffer::from(Vec::<T>::new());
    }
    ScalarBuffer::from(a.buffer().to_arrow())
}

impl<T: ArrowNative> PrimitiveArray<T> {
    /// The same values as an Arrow `PrimitiveArray` without nulls, in O(1).
    pub fn to_arrow(&self) -> arrow_array::PrimitiveArray<T::ArrowType> {
        arrow_array::PrimitiveArray::new(scalar_buffer(self), None)
    }

    /// The values of an Arrow `PrimitiveArray`, in O(1).
    ///
    /// # Errors
    /// [`ArrayError::ArrowNulls`] if it has nulls (read it as a
    /// [`NullableArray`]).
    pub fn from_arrow(array: &arrow_array::PrimitiveArray<T::ArrowType>) -> Result<Self> {
        if array.null_count() > 0 {
            return Err(ArrayError::ArrowNulls {
                what: "primitive array",
                null_count: array.null_count(),
            });
        }
        Self::try_new(Buffer::from_arrow(array.values().inner()))
    }
}

impl<T: ArrowNative> NullableArray<T> {
    /// The same entries as an Arrow `PrimitiveArray` with a `NullBuffer`, in
    /// O(1) per buffer (plus the popcount of the validity).
    pub fn to_arrow(&self) -> arrow_array::PrimitiveArray<T::ArrowType> {
        let nulls = self.validity().map(Bitmap::to_arrow_nulls);
        arrow_array::PrimitiveArray::new(scalar_buffer(self.values()), nulls)
    }

    /// The entries of an Arrow `PrimitiveArray`, in O(1) per buffer.
    ///
    /// # Errors
    /// None in practice (an Arrow array's validity has one bit per value);
    /// the checks of [`NullableArray::try_new`] are kept.
    pub fn from_arrow(array: &arrow_array::PrimitiveArray<T::ArrowType>) -> Result<Self> {
        let values = PrimitiveArray::try_new(Buffer::from_arrow(array.values().inner()))?;
        NullableArray::try_new(values, validity_from_arrow(array.nulls())?)
    }
}

impl BooleanArray {
    /// The same values as an Arrow `BooleanArray`, in O(1).
    pub fn to_arrow(&self) -> arrow_array::BooleanArray {
        arrow_array::BooleanArray::new(self.bits().to_arrow(), None)
    }

    /// The values of an Arrow `BooleanArray`, in O(1).
    ///
    /// # Errors
    /// [`ArrayError::ArrowNulls`] if it has nulls (this crate has no nullable
    /// boolean column).
    pub fn from_arrow(array: &arrow_array::BooleanArray) -> Result<Self> {
        if array.null_count() > 0 {
            return Err(ArrayError::ArrowNulls {
                what: "boolean array",
                null_count: array.null_count(),
            });
        }
        Ok(Self::new(Bitmap::from_arrow(array.values())?))
    }
}

impl StringArray {
    /// The same strings as an Arrow `LargeStringArray`, in O(1) per buffer
    /// when the UTF-8 is known to be valid ([`StringArray::is_utf8_checked`]:
    /// built from `&str`s, or checked by [`StringArray::validate_full`]);
    /// otherwise Arrow's checked constructor checks it (one pass over the
    /// string bytes).
    ///
    /// # Errors
    /// [`ArrayError::Arrow`] when the strings are not valid UTF-8 (only
    /// possible when [`StringArray::is_utf8_checked`] is false).
    #[expect(
        unsafe_code,
        reason = "skips checks that the array's invariants vouch for"
    )]
    pub fn to_arrow(&self) -> Result<LargeStringArray> {
        let (offsets, data, validity) = self.parts();
        // Our offsets are `u64`; Arrow's `i64` of the same bits (every offset
        // is at most the data's length, which is below `i64::MAX`).
        let offsets: ScalarBuffer<i64> = ScalarBuffer::from(offsets.to_arrow());
        // SAFETY: `OffsetBuffer::new_unchecked` needs a non-empty buffer of
        // monotone offsets, each at least zero:
        // - a `StringArray` has `len + 1 >= 1` offsets, monotone (checked by
        //   `try_new_structural`, which every safe constructor runs, and
        //   guaranteed by the caller of `new_unchecked`);
        // - each is at most the data's length, so below `i64::MAX`, so at
        //   least zero as an `i64`.
        let offsets = unsafe { OffsetBuffer::new_unchecked(offsets) };
        let values = data.to_arrow();
        let nulls = validity.map(Bitmap::to_arrow_nulls);
        if self.is_utf8_checked() {
            // SAFETY: `GenericByteArray::new_unchecked` needs what `try_new`
            // checks:
            // - offsets valid for `values`: monotone (above) and the last at
            //   most the data's length (`try_new_structural`, or the caller
            //   of `StringArray::new_unchecked`);
            // - `nulls`, if any, of the array's length: the validity bitmap
            //   has one bit per entry (the same checks);
            // - every string valid UTF-8 and every offset on a character
            //   boundary: `is_utf8_checked` is set only when that holds
            //   (checked by `validate_full`, built from `&str`s, or
            //   guaranteed by the caller of `StringArray::new_unchecked`).
            Ok(unsafe { LargeStringArray::new_unchecked(offsets, values, nulls) })
        } else {
            Ok(LargeStringArray::try_new(offsets, values, nulls)?)
        }
    }

    /// The strings of an Arrow `LargeStringArray`, in O(1) per buffer, marked
    /// as checked UTF-8 (an Arrow string array is valid UTF-8).
    #[expect(unsafe_code, reason = "arrow-rs guarantees what the checks would")]
    pub fn from_arrow(array: &LargeStringArray) -> Self {
        let offsets = Buffer::from_arrow(array.offsets().inner().inner());
        let data = Buffer::from_arrow(array.values());
        let validity = match array.nulls() {
            Some(n) if n.null_count() > 0 => Some(bitmap_of(n.inner())),
            _ => None,
        };
        // SAFETY: `StringArray::new_unchecked` needs what `try_new` checks,
        // and a `LargeStringArray` guarantees each (its constructors check
        // them, its unsafe ones require them):
        // - offsets: `len + 1` aligned `i64`s (`u64`s of the same bits, all
        //   at least zero), monotone, the last at most the data's length;
        // - validity: one bit per entry;
        // - every string valid UTF-8, every offset on a character boundary.
        unsafe { StringArray::new_unchecked(offsets, data, validity) }
    }

    /// The strings of an Arrow `StringArray` (`Utf8`, 32-bit offsets): the
    /// string bytes are shared, the offsets are widened to 64 bits (a copy of
    /// the offsets, `8 × (len + 1)` bytes).
    #[expect(unsafe_code, reason = "arrow-rs guarantees what the checks would")]
    pub fn from_arrow_utf8(array: &arrow_array::StringArray) -> Self {
        let wide: Vec<u64> = array.offsets().iter().map(|&o| o as u64).collect();
        let data = Buffer::from_arrow(array.values());
        let validity = match array.nulls() {
            Some(n) if n.null_count() > 0 => Some(bitmap_of(n.inner())),
            _ => None,
        };
        // SAFETY: as in `from_arrow`: an Arrow `StringArray`'s offsets are
        // non-negative `i32`s, monotone, within its values, on character
        // boundaries of valid UTF-8, and widening keeps every one of them;
        // its validity has one bit per entry.
        unsafe { StringArray::new_unchecked(Buffer::from_vec(wide), data, validity) }
    }

    /// The strings of any Arrow string array (`LargeUtf8`: no copy; `Utf8`:
    /// the offsets are widened, see [`StringArray::from_arrow_utf8`]).
    ///
    /// # Errors
    /// [`ArrayError::UnsupportedArrowType`] for other types.
    pub fn try_from_arrow(array: &dyn Array) -> Result<Self> {
        if let Some(a) = array.as_any().downcast_ref::<LargeStringArray>() {
            Ok(Self::from_arrow(a))
        } else if let Some(a) = array.as_any().downcast_ref::<arrow_array::StringArray>() {
            Ok(Self::from_arrow_utf8(a))
        } else {
            Err(unsupported(None, array.data_type()))
        }
    }
}

/// Our bitmap over Arrow's bits (a `BooleanBuffer` holds its bits, so the
/// check of `Bitmap::try_new` cannot fail).
fn bitmap_of(bits: &BooleanBuffer) -> Bitmap {
    Bitmap::new(Buffer::from_arrow(bits.inner()), bits.offset(), bits.len())
}

fn unsupported(column: Option<&str>, data_type: &DataType) -> ArrayError {
    ArrayError::UnsupportedArrowType {
        column: column.map(str::to_owned),
        data_type: data_type.clone(),
    }
}

impl PooledArray<StringArray> {
    /// The Arrow type of [`PooledArray::to_arrow`]: a dictionary of
    /// `LargeUtf8` whose key type follows the code width (`UInt8`, `UInt16`
    /// or `UInt32`).
    pub fn arrow_data_type(&self) -> DataType {
        let key = match self.codes() {
            Codes::U8(_) => DataType::UInt8,
            Codes::U16(_) => DataType::UInt16,
            Codes::U32(_) => DataType::UInt32,
        };
        DataType::Dictionary(Box::new(key), Box::new(DataType::LargeUtf8))
    }

    /// The same entries as an Arrow `DictionaryArray` (keys: our codes;
    /// values: the pool as a `LargeStringArray`), in O(1) per buffer: the
    /// codes and the pool were checked when the array was built. Null entries
    /// are null dictionary values (see the module docs).
    ///
    /// # Errors
    /// None in practice (the pool's UTF-8 was checked when the array was
    /// built); those of [`StringArray::to_arrow`].
    pub fn to_arrow(&self) -> Result<ArrayRef> {
        let values: ArrayRef = Arc::new(self.pool().to_arrow()?);
        Ok(match self.codes() {
            Codes::U8(c) => Arc::new(dictionary(c.to_arrow(), values)),
            Codes::U16(c) => Arc::new(dictionary(c.to_arrow(), values)),
            Codes::U32(c) => Arc::new(dictionary(c.to_arrow(), values)),
        })
    }

    /// The entries of an Arrow dictionary array of strings: keys of any
    /// integer type, values `LargeUtf8` (shared) or `Utf8` (offsets widened).
    /// Keys of `UInt8/16/32` and `Int8/16/32` are shared, read as unsigned
    /// (a valid key is never negative); `Int64`/`UInt64` keys are narrowed
    /// (copied). Null keys become codes of a null pool entry, which copies
    /// the keys and the pool's offsets (never the strings); without null
    /// keys the pool is the dictionary's values, entry for entry.
    ///
    /// # Errors
    /// [`ArrayError::UnsupportedArrowType`] for other types;
    /// [`ArrayError::CodeOutOfRange`] for a dictionary of more than 2^32
    /// values.
    pub fn try_from_arrow(array: &dyn Array) -> Result<Self> {
        let DataType::Dictionary(key, _) = array.data_type() else {
            return Err(unsupported(None, array.data_type()));
        };
        macro_rules! keys {
            ($k:ty) => {{
                let d = array
                    .as_any()
                    .downcast_ref::<DictionaryArray<$k>>()
                    .ok_or_else(|| unsupported(None, array.data_type()))?;
                (
                    d.keys().values().inner().clone(),
                    d.keys().nulls().cloned(),
                    d.values().clone(),
                )
            }};
        }
        let (keys, nulls, values) = match key.as_ref() {
            DataType::Int8 => keys!(Int8Type),
            DataType::Int16 => keys!(Int16Type),
            DataType::Int32 => keys!(Int32Type),
            DataType::Int64 => keys!(Int64Type),
            DataType::UInt8 => keys!(UInt8Type),
            DataType::UInt16 => keys!(UInt16Type),
            DataType::UInt32 => keys!(UInt32Type),
            DataType::UInt64 => keys!(UInt64Type),
            _ => return Err(unsupported(None, array.data_type())),
        };
        let pool = StringArray::try_from_arrow(values.as_ref())
            .map_err(|_| unsupported(None, array.data_type()))?;
        let nulls = nulls.filter(|n| n.null_count() > 0);
        let width = match key.as_ref() {
            DataType::Int8 | DataType::UInt8 => 1,
            DataType::Int16 | DataType::UInt16 => 2,
            DataType::Int32 | DataType::UInt32 => 4,
            _ => 8,
        };
        match (nulls, width) {
            (None, 1) => Ok(pooled_unchecked(
                pool,
                Codes::U8(PrimitiveArray::try_new(Buffer::from_arrow(&keys))?),
            )),
            (None, 2) => Ok(pooled_unchecked(
                pool,
                Codes::U16(PrimitiveArray::try_new(Buffer::from_arrow(&keys))?),
            )),
            (None, 4) => Ok(pooled_unchecked(
                pool,
                Codes::U32(PrimitiveArray::try_new(Buffer::from_arrow(&keys))?),
            )),
            (nulls, width) => {
                // Copy: widen every key to u64; if some keys are null, send
                // them to a null pool entry (appended unless the pool has
                // one). Without null keys (64-bit keys) the pool stays as it
                // is: a null entry added there would change it, and a round
                // trip would not give back the dictionary's values.
                let wide = widen_keys(&keys, width);
                let (pool, nulls) = match nulls {
                    Some(n) => {
                        let (pool, null_code) = with_null_entry(pool)?;
                        (pool, Some((n, null_code as u32)))
                    }
                    None => (pool, None),
                };
                let codes: Vec<u32> = wide
                    .iter()
                    .enumerate()
                    .map(|(i, &k)| match &nulls {
                        Some((n, null_code)) if n.is_null(i) => *null_code,
                        _ => u32::try_from(k).unwrap_or(u32::MAX),
                    })
                    .collect();
                let codes = Codes::try_from_u32s(&codes, pool.len())?;
                PooledArray::try_new(pool, codes)
            }
        }
    }
}

/// A `PooledArray` from the keys and values of an Arrow dictionary without
/// null keys, in O(1).
#[expect(unsafe_code, reason = "arrow-rs guarantees what the checks would")]
fn pooled_unchecked(pool: StringArray, codes: Codes) -> PooledArray<StringArray> {
    // SAFETY: `PooledArray::new_unchecked` needs every code below the pool's
    // length and a pool that passes `validate_full`:
    // - the codes are the keys of a `DictionaryArray` without null keys, whose
    //   invariant (checked by its constructors, required by its unsafe ones)
    //   is that every non-null key is an index into its values: at least zero
    //   (so a signed key read as the unsigned integer of its width is the
    //   same number) and below the values' length;
    // - the pool is those values, as a `StringArray` marked as checked UTF-8
    //   (`StringArray::from_arrow` / `from_arrow_utf8`: Arrow's strings are
    //   valid UTF-8), so `validate_full` succeeds.
    unsafe { PooledArray::new_unchecked(pool, codes) }
}

/// Keys of `width` bytes (1, 2, 4 or 8, little-endian) as `u64`s; negative
/// (signed) keys, which only null slots may hold, become large values that
/// the code check rejects unless they are null.
fn widen_keys(keys: &arrow_buffer::Buffer, width: usize) -> Vec<u64> {
    keys.chunks_exact(width)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}

/// The pool with a null entry, and that entry's index: an existing one, or
/// one appended (copying the offsets and the validity, sharing the strings).
fn with_null_entry(pool: StringArray) -> Result<(StringArray, usize)> {
    if let Some(i) = (0..pool.len()).find(|&i| pool.is_null(i)) {
        return Ok((pool, i));
    }
    let n = pool.len();
    let (offsets, data, validity) = pool.parts();
    let mut offs: Vec<u64> = offsets.typed::<u64>()?.to_vec();
    offs.push(offs.last().copied().unwrap_or(0));
    let mut bits: Vec<bool> = match validity {
        Some(v) => v.iter().collect(),
        None => vec![true; n],
    };
    bits.push(false);
    // The strings are the pool's plus an empty one: checking them again is
    // one pass over the pool (distinct values: small).
    let out = StringArray::try_new(Buffer::from_vec(offs), data.clone(), Some(bits.into()))?;
    Ok((out, n))
}

/// A dictionary array from our checked codes and pool.
#[expect(
    unsafe_code,
    reason = "skips the key check that PooledArray's invariant vouches for"
)]
fn dictionary<K: ArrowDictionaryKeyType>(
    keys: arrow_array::PrimitiveArray<K>,
    values: ArrayRef,
) -> DictionaryArray<K> {
    // SAFETY: `DictionaryArray::new_unchecked` needs every non-null key to
    // be a valid index into `values`:
    // - the keys are a `PooledArray`'s codes (no nulls) and `values` its
    //   pool; `PooledArray::try_new` checked every code below the pool's
    //   length, and the caller of `PooledArray::new_unchecked` guarantees it.
    unsafe { DictionaryArray::new_unchecked(keys, values) }
}

impl Column {
    /// The Arrow type of this column's [`Column::to_arrow`]: `Boolean`,
    /// `Int8` … `UInt64`, `Float32`, `Float64`, `Int64`/`Float64` for the
    /// nullable columns, `LargeUtf8` for strings, a dictionary for pooled
    /// strings ([`PooledArray::arrow_data_type`]).
    pub fn arrow_data_type(&self) -> DataType {
        match self {
            Column::Bool(_) => DataType::Boolean,
            Column::I8(_) => DataType::Int8,
            Column::I16(_) => DataType::Int16,
            Column::I32(_) => DataType::Int32,
            Column::I64(_) | Column::NullableI64(_) => DataType::Int64,
            Column::U8(_) => DataType::UInt8,
            Column::U16(_) => DataType::UInt16,
            Column::U32(_) => DataType::UInt32,
            Column::U64(_) => DataType::UInt64,
            Column::F32(_) => DataType::Float32,
            Column::F64(_) | Column::NullableF64(_) => DataType::Float64,
            Column::Str(_) => DataType::LargeUtf8,
            Column::PooledStr(p) => p.arrow_data_type(),
        }
    }

    /// Whether the column's Arrow field is nullable: the nullable, string and
    /// pooled string columns.
    pub fn arrow_nullable(&self) -> bool {
        matches!(
            self,
            Column::NullableI64(_) | Column::NullableF64(_) | Column::Str(_) | Column::PooledStr(_)
        )
    }

    /// The column as an Arrow array, in O(1) per buffer (see the module docs).
    ///
    /// # Errors
    /// Those of [`StringArray::to_arrow`] for a string column whose UTF-8 was
    /// not checked and is invalid.
    pub fn to_arrow(&self) -> Result<ArrayRef> {
        Ok(match self {
            Column::Bool(a) => Arc::new(a.to_arrow()),
            Column::I8(a) => Arc::new(a.to_arrow()),
            Column::I16(a) => Arc::new(a.to_arrow()),
            Column::I32(a) => Arc::new(a.to_arrow()),
            Column::I64(a) => Arc::new(a.to_arrow()),
            Column::U8(a) => Arc::new(a.to_arrow()),
            Column::U16(a) => Arc::new(a.to_arrow()),
            Column::U32(a) => Arc::new(a.to_arrow()),
            Column::U64(a) => Arc::new(a.to_arrow()),
            Column::F32(a) => Arc::new(a.to_arrow()),
            Column::F64(a) => Arc::new(a.to_arrow()),
            Column::NullableI64(a) => Arc::new(a.to_arrow()),
            Column::NullableF64(a) => Arc::new(a.to_arrow()),
            Column::Str(a) => Arc::new(a.to_arrow()?),
            Column::PooledStr(a) => a.to_arrow()?,
        })
    }

    /// A column from an Arrow array, in O(1) per buffer where the layouts
    /// agree (see the module docs). `Int64`/`Float64` arrays become the
    /// nullable columns when `nullable` (the field's nullability) or when
    /// they have nulls; other primitive and boolean arrays must have no
    /// nulls. `LargeUtf8`/`Utf8` become [`Column::Str`], dictionaries of
    /// strings [`Column::PooledStr`].
    ///
    /// # Errors
    /// [`ArrayError::UnsupportedArrowType`] for a type no column holds;
    /// [`ArrayError::ArrowNulls`] for nulls in a column type without them.
    pub fn from_arrow(array: &dyn Array, nullable: bool) -> Result<Self> {
        fn prim<T: ArrowNative>(array: &dyn Array) -> Result<PrimitiveArray<T>> {
            let a = array
                .as_any()
                .downcast_ref::<arrow_array::PrimitiveArray<T::ArrowType>>()
                .ok_or_else(|| unsupported(None, array.data_type()))?;
            PrimitiveArray::from_arrow(a)
        }
        fn nullable_of<T: ArrowNative>(array: &dyn Array) -> Result<NullableArray<T>> {
            let a = array
                .as_any()
                .downcast_ref::<arrow_array::PrimitiveArray<T::ArrowType>>()
                .ok_or_else(|| unsupported(None, array.data_type()))?;
            NullableArray::from_arrow(a)
        }
        let nullable = nullable || array.null_count() > 0;
        Ok(match array.data_type() {
            DataType::Boolean => {
                let a = array
                    .as_any()
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .ok_or_else(|| unsupported(None, array.data_type()))?;
                Column::Bool(BooleanArray::from_arrow(a)?)
            }
            DataType::Int8 => Column::I8(prim(array)?),
            DataType::Int16 => Column::I16(prim(array)?),
            DataType::Int32 => Column::I32(prim(array)?),
            DataType::Int64 if nullable => Column::NullableI64(nullable_of(array)?),
            DataType::Int64 => Column::I64(prim(array)?),
            DataType::UInt8 => Column::U8(prim(array)?),
            DataType::UInt16 => Column::U16(prim(array)?),
            DataType::UInt32 => Column::U32(prim(array)?),
            DataType::UInt64 => Column::U64(prim(array)?),
            DataType::Float32 => Column::F32(prim(array)?),
            DataType::Float64 if nullable => Column::NullableF64(nullable_of(array)?),
            DataType::Float64 => Column::F64(prim(array)?),
            DataType::LargeUtf8 | DataType::Utf8 => {
                Column::Str(StringArray::try_from_arrow(array)?)
            }
            DataType::Dictionary(_, _) => Column::PooledStr(PooledArray::try_from_arrow(array)?),
            other => return Err(unsupported(None, other)),
        })
    }
}

impl Table {
    /// The Arrow schema of [`Table::to_arrow`]: one field per column, named
    /// as the column, of [`Column::arrow_data_type`], nullable as
    /// [`Column::arrow_nullable`] says.
    pub fn arrow_schema(&self) -> Schema {
        Schema::new(
            self.columns()
                .map(|(name, c)| Field::new(name, c.arrow_data_type(), c.arrow_nullable()))
                .collect::<Vec<_>>(),
        )
    }

    /// The table as an Arrow `RecordBatch`, in O(1) per buffer.
    ///
    /// # Errors
    /// Those of [`Column::to_arrow`]; [`ArrayError::Arrow`] if Arrow rejects
    /// the batch (it cannot: the columns have the table's length).
    pub fn to_arrow(&self) -> Result<RecordBatch> {
        let columns = self
            .columns()
            .map(|(_, c)| c.to_arrow())
            .collect::<Result<Vec<_>>>()?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(self.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(self.arrow_schema()),
            columns,
            &options,
        )?)
    }

    /// A table from an Arrow `RecordBatch`, column by column as
    /// [`Column::from_arrow`] says (the field's nullability chooses the
    /// nullable columns). A batch without columns gives a table without
    /// rows.
    ///
    /// # Errors
    /// [`ArrayError::UnsupportedArrowType`] naming the column of a type no
    /// column holds; [`ArrayError::ArrowNulls`]; [`ArrayError::DuplicateColumn`].
    pub fn from_arrow(batch: &RecordBatch) -> Result<Self> {
        let schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| {
                let c = Column::from_arrow(a.as_ref(), f.is_nullable()).map_err(|e| match e {
                    ArrayError::UnsupportedArrowType { data_type, .. } => {
                        ArrayError::UnsupportedArrowType {
                            column: Some(f.name().clone()),
                            data_type,
                        }
                    }
                    e => e,
                })?;
                Ok((f.name().clone(), c))
            })
            .collect::<Result<Vec<_>>>()?;
        Table::try_new(columns)
    }
}
