//! `mempool-serde`: how mempool values become bytes and come back — the
//! [`MmWrite`] / [`MmRead`] traits (MemPool.jl's `mmwrite`/`mmread`), the frame
//! format (specified in `FORMAT.md`), and the [`Serde<T>`] fallback through
//! postcard for any serde type.
//!
//! A frame is self-describing: magic, version, type name and tag, length,
//! header and body checksums, then sections aligned to 64 bytes. Reading a
//! frame from a memory-mapped file gives `mempool-arrays` values whose buffers
//! borrow the map: no copy and no per-element parse, only structural checks
//! (offsets monotone and in bounds, codes below the pool size). Full content
//! validation (UTF-8) is a separate call. A reader never trusts a frame:
//! truncated, corrupt or hostile bytes give a [`FrameError`], never a panic,
//! and no allocation is sized by a length that was not checked against the
//! bytes present.
//!
//! Every frame carries its type's name, which each type declares ([`FrameType`],
//! and [`TypeName`] for the types inside a [`Serde<T>`] or a [`PodElement`]
//! column), so it is the same in every build.
//!
//! A file is read either by copying it ([`read_file`], safe for any file) or
//! by mapping it ([`read_file_mapped`], zero-copy, `unsafe`: the file must not
//! change while mapped, which holds for files written once and never again,
//! such as the pool's own spill files).
//!
//! With the feature `arrow`, an Arrow `RecordBatch` or `ArrayRef` is a value
//! like the others: an Arrow IPC file inside a frame, read back mapped
//! without a copy (module `arrow`).
//!
//! A frame can also be stored compressed ([`compress_frame`] with a [`Codec`],
//! LZ4 for now), in a container with its own magic, lengths and checksums;
//! [`decompress_frame`] checks it and bounds the raw length before allocating,
//! then gives the frame's bytes to read as usual.
//!
//! ```
//! use mempool_arrays::{MemoryKind, StringArray};
//! use mempool_serde::{decode, encode, read_file, read_file_mapped, write_file, FrameError};
//!
//! let names = StringArray::from(vec![Some("foo~^å&"), None, Some("")]);
//! let frame = encode(&names).unwrap();
//! let back: StringArray = decode(&frame).unwrap();
//! assert_eq!(back, names);
//!
//! // Through a file: read into one heap buffer...
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("names.frame");
//! write_file(&names, &path, false).unwrap();
//! let copied: StringArray = read_file(&path).unwrap();
//! assert_eq!(copied, names);
//!
//! // ...or mapped: the array borrows the memory map.
//! // SAFETY: the file must not change while mapped:
//! // - it is in this example's private temporary directory, and nothing
//! //   writes it after `write_file` renamed it into place.
//! let mapped: StringArray = unsafe { read_file_mapped(&path) }.unwrap();
//! assert_eq!(mapped, names);
//! assert_eq!(mapped.parts().1.memory_kind(), MemoryKind::Mapped);
//!
//! // The wrong type is a typed error naming both types.
//! let err = decode::<Vec<f64>>(&frame).unwrap_err();
//! assert!(matches!(err, FrameError::TypeMismatch { .. }));
//! ```
#![deny(unsafe_code)]

use std::borrow::Cow;

#[cfg(feature = "arrow")]
pub mod arrow;
mod checksum;
mod compress;
mod error;
mod file_read;
mod frame;
mod impls;
mod impls_composite;
mod mem_size;
mod serde_fallback;
mod type_name;

pub mod fuzzing;

pub use compress::{
    compress_frame, decompress_frame, is_compressed, Codec, COMPRESSED_HEADER_LEN,
    COMPRESSED_MAGIC, COMPRESSED_VERSION,
};
pub use error::{FrameError, Result};
pub use file_read::{map_file, read_file, read_file_mapped, read_file_mapped_with, read_file_with};
pub use frame::{
    decode, decode_with, encode, write_encoded_file, write_file, write_frame, EncodedFrame, Frame,
    ReadOptions, SectionReader, SectionWriter, UnsealedFrame, HEADER_LEN, MAGIC, MAX_SECTIONS,
    MAX_TYPE_NAME, SECTION_ALIGN, VERSION,
};
pub use mem_size::MemSize;
pub use serde_fallback::Serde;
pub use type_name::TypeName;

/// The name a type writes into its frames; reading checks it, so a frame is
/// never read as another type.
///
/// The name is declared, never derived from `std::any::type_name` (which may
/// change with the compiler): frames written by one build are read by
/// another. Generic impls compose it from their parameters' declared names:
/// [`PodElement`]s and the [`TypeName`] of a [`Serde<T>`]'s `T`.
pub trait FrameType {
    /// A stable name: `"StringArray"`, `"Vec<f64>"`, `"Serde<my::Type>"`.
    fn type_name() -> Cow<'static, str>;
}

/// Writes a value as the sections of a frame (MemPool.jl's `mmwrite`).
///
/// Implement it by appending sections to the writer — borrowed slices of the
/// value's own buffers where possible, [`SectionWriter::meta`] for small
/// metadata. [`EncodedFrame`], [`encode`], [`write_frame`] and [`write_file`]
/// then add the header and checksums.
pub trait MmWrite: FrameType {
    /// Appends this value's sections to `w`.
    ///
    /// # Errors
    /// [`FrameError::Postcard`] if metadata cannot be encoded, or a type's own
    /// reason not to write.
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()>;
}

/// Reads a value back from the sections of a frame (MemPool.jl's `mmread`).
///
/// Implementations take sections in the order [`MmWrite`] wrote them, check
/// every count and length against what is present, and return errors, never
/// panics. mempool-arrays types keep the section [`mempool_arrays::Buffer`]s,
/// which share the frame's memory (a mapped file stays mapped while they live).
pub trait MmRead: FrameType + Sized {
    /// Reads the value from `r`.
    ///
    /// # Errors
    /// [`FrameError`] for a missing or malformed section.
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self>;
}

/// Plain-old-data element types with a fast `Vec<T>` / `PrimitiveArray<T>` /
/// `NullableArray<T>` format (one section of raw little-endian bytes).
///
/// The element's [`TypeName`] names the frames: `Vec<f64>`,
/// `PrimitiveArray<myapp::Point>`. Implemented for the fixed-size numbers
/// (`u8` … `u128`, `i8` … `i128`, `f32`, `f64`). For your own `#[repr(C)]`
/// struct that derives `bytemuck::Pod`, declare its name and add the impl:
///
/// ```
/// use mempool_arrays::{bytemuck, PrimitiveArray};
/// use mempool_serde::{decode, encode, FrameType, PodElement};
///
/// #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
/// // The name is part of every frame of a `Point` column: keep it stable, and
/// // change it (`myapp::Point/v2`) when the struct's layout changes.
/// mempool_serde::type_name!(Point = "myapp::Point");
/// impl PodElement for Point {}
///
/// let a = PrimitiveArray::from(vec![Point { x: 1.0, y: 2.0 }]);
/// assert_eq!(PrimitiveArray::<Point>::type_name(), "PrimitiveArray<myapp::Point>");
/// assert_eq!(decode::<PrimitiveArray<Point>>(&encode(&a).unwrap()).unwrap(), a);
/// ```
pub trait PodElement: bytemuck::Pod + TypeName + Send + Sync {}
