//! [`MemSize`]: how many bytes a value keeps alive, for pools that bound memory.

use mempool_arrays::{
    ApproxSize, BooleanArray, NullableArray, PoolValues, PooledArray, PrimitiveArray, StringArray,
    Table,
};
use serde::Serialize;

use crate::{PodElement, Serde};

/// Bytes a value keeps alive in memory (heap and mapped), each shared buffer
/// counted once. mempool-core counts it against `max_memsize`.
pub trait MemSize {
    /// The size in bytes.
    fn mem_size(&self) -> u64;
}

impl<T: PodElement> MemSize for PrimitiveArray<T> {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

impl MemSize for BooleanArray {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

impl MemSize for StringArray {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

impl<T: PodElement> MemSize for NullableArray<T> {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

/// The whole pool plus the codes (a slice keeps the whole pool alive).
impl<P: PoolValues> MemSize for PooledArray<P> {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

/// Every column, a buffer shared by several columns (a memory map) counted once.
impl MemSize for Table {
    fn mem_size(&self) -> u64 {
        self.approx_size() as u64
    }
}

impl<T: PodElement> MemSize for Vec<T> {
    fn mem_size(&self) -> u64 {
        (self.capacity() * std::mem::size_of::<T>()) as u64
    }
}

impl MemSize for String {
    fn mem_size(&self) -> u64 {
        self.capacity() as u64
    }
}

impl MemSize for Vec<String> {
    fn mem_size(&self) -> u64 {
        let heap: usize = self.iter().map(String::capacity).sum();
        (self.capacity() * std::mem::size_of::<String>() + heap) as u64
    }
}

impl MemSize for Vec<Option<String>> {
    fn mem_size(&self) -> u64 {
        let heap: usize = self.iter().flatten().map(String::capacity).sum();
        (self.capacity() * std::mem::size_of::<Option<String>>() + heap) as u64
    }
}

/// The postcard-encoded size plus the value's inline size: a cheap measure of
/// what the value holds (computed without allocating).
impl<T: Serialize> MemSize for Serde<T> {
    fn mem_size(&self) -> u64 {
        let encoded = postcard::serialize_with_flavor::<T, postcard::ser_flavors::Size, usize>(
            &self.0,
            postcard::ser_flavors::Size::default(),
        )
        .unwrap_or(0);
        (encoded + std::mem::size_of::<T>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(Vec::<f64>::with_capacity(10).mem_size(), 80);
        assert_eq!(PrimitiveArray::from(vec![0u32; 10]).mem_size(), 40);
        let s = Serde(vec![1u8, 2, 3]);
        assert_eq!(s.mem_size(), 4 + std::mem::size_of::<Vec<u8>>() as u64);
    }
}
