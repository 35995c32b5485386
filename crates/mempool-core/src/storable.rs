//! [`Storable`]: what a pool can hold.

use mempool_serde::{MemSize, MmRead, MmWrite};

/// A value a [`Pool`](crate::Pool) can store: writable and readable as a frame,
/// with a size the pool counts against `max_memsize`, shareable between
/// threads. Implemented for every type that has these parts: the
/// mempool-arrays types, `Vec<T>` of plain-old-data, `String`, `Vec<String>`,
/// `Vec<Option<String>>`, and [`Serde<T>`](mempool_serde::Serde) for any serde
/// type. For your own type, implement `MmWrite`, `MmRead` and `MemSize`.
pub trait Storable: MmWrite + MmRead + MemSize + Send + Sync + 'static {}

impl<T: MmWrite + MmRead + MemSize + Send + Sync + 'static> Storable for T {}
