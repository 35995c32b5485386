//! [`Storable`]: what a pool can hold.

use mempool_serde::{MemSize, MmRead, MmWrite};

/// A value a [`Pool`](crate::Pool) can store: writable and readable as a frame,
/// with a size the pool counts against `max_memsize`, shareable between
/// threads. Implemented for every type that has these parts: the
/// mempool-arrays types, `Vec<T>` of plain-old-data, `String`, `Vec<String>`,
/// `Vec<Option<String>>`, and [`Serde<T>`](mempool_serde::Serde) for any serde
/// type with a declared [`TypeName`](mempool_serde::TypeName) (std types have
/// one; declare yours with [`mempool_serde::type_name!`]). For your own fast
/// format, implement `MmWrite`, `MmRead` and `MemSize`.
pub trait Storable: MmWrite + MmRead + MemSize + Send + Sync + 'static {}

impl<T: MmWrite + MmRead + MemSize + Send + Sync + 'static> Storable for T {}
