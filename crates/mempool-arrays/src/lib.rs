//! `mempool-arrays`: columnar arrays whose bytes live in one buffer type that is
//! either owned (aligned heap) or a slice of a shared memory map.
//!
//! These are the containers mempool stores and spills without copying: a value
//! written to disk by `mempool-serde` comes back as the same array type whose
//! [`Buffer`]s borrow the memory map of the file. Cloning and slicing are O(1).
//!
//! - [`Buffer`]: immutable bytes, heap or mapped; [`AlignedVec`] builds aligned bytes.
//! - [`PrimitiveArray<T>`]: a column of plain-old-data (`T: bytemuck::Pod`:
//!   numbers, `#[repr(C)]` structs of them); [`BooleanArray`] for `bool`.
//! - [`StringArray`]: `u64` offsets + bytes, entries may be undefined (null).
//! - [`NullableArray<T>`]: a validity [`Bitmap`] over a primitive column.
//! - [`PooledArray<T>`]: dictionary encoding, a pool of distinct values plus
//!   integer codes whose width follows the pool size; [`PooledBuilder`].
//! - [`Table`]: named columns of equal length.
//!
//! With the feature `arrow`, every array converts to its arrow-rs counterpart
//! and back without copying its bytes (module `arrow`, e.g.
//! `Table::to_arrow` → `RecordBatch`).
//!
//! Every array has [`ApproxSize::approx_size`], which counts a buffer shared by
//! several arrays once.
//!
//! Every array (and [`Bitmap`]) has the same constructors: `new` (panics on
//! invalid parts), `try_new` (returns an [`ArrayError`]), `unsafe
//! new_unchecked` (skips the checks), and `into_parts` giving the parts back.
//! Arrays read from untrusted bytes are checked structurally; the one content
//! check left for later is the UTF-8 of a [`StringArray`]
//! ([`StringArray::validate_full`]).
//!
//! ```
//! use mempool_arrays::{ApproxSize, PrimitiveArray, StringArray};
//!
//! let prices = PrimitiveArray::from(vec![9.5f64, 10.25, 11.0]);
//! let names = StringArray::from(vec![Some("apple"), None, Some("pear")]);
//! assert_eq!(prices.values().iter().sum::<f64>(), 30.75);
//! assert_eq!(names.value(2), Some("pear"));
//! assert!(names.approx_size() >= 9);
//! ```
#![deny(unsafe_code)]

#[cfg(not(target_endian = "little"))]
compile_error!("mempool stores little-endian data and supports only little-endian targets");

#[cfg(feature = "arrow")]
pub mod arrow;
mod bitmap;
mod buffer;
mod error;
mod nullable;
mod pooled;
mod primitive;
mod string;
mod table;

pub use bitmap::{Bitmap, BitmapBuilder};
pub use buffer::{AlignedVec, ApproxSize, Buffer, MemoryKind, MemoryUsage, ALIGNMENT};
pub use error::{ArrayError, Result};
pub use nullable::{NullableArray, NullableBuilder, NullableIter};
pub use pooled::{Codes, CodesIter, PoolValues, PooledArray, PooledBuilder, PooledIter};
pub use primitive::{BooleanArray, PrimitiveArray};
pub use string::{StringArray, StringBuilder, StringBytesIter, StringIter};
pub use table::{Column, ColumnType, Table};

/// Re-exported so that users can derive `Pod` for their own fixed-size structs.
pub use bytemuck;
