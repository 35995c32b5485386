//! [`PrimitiveArray`]: a column of plain-old-data values (integers, floats,
//! fixed-size `#[repr(C)]` structs of them), and [`BooleanArray`].

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;

use crate::bitmap::{Bitmap, BitmapBuilder};
use crate::buffer::{typed_slice, ApproxSize, Buffer, MemoryUsage};
use crate::error::{ArrayError, Result};

/// A column of plain-old-data values over a [`Buffer`], owned or mapped.
///
/// Any `T: bytemuck::Pod` works: the primitive numbers and `#[repr(C)]` structs
/// deriving `Pod` (see [`bytemuck`]).
///
/// ```
/// use mempool_arrays::PrimitiveArray;
///
/// let a = PrimitiveArray::from(vec![1.5f64, 2.5, 3.5]);
/// assert_eq!(a.len(), 3);
/// assert_eq!(a[1], 2.5);
/// assert_eq!(a.values().iter().sum::<f64>(), 7.5);
/// let tail = a.slice(1, 2);
/// assert_eq!(tail.values(), &[2.5, 3.5]);
/// ```
pub struct PrimitiveArray<T> {
    buffer: Buffer,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> PrimitiveArray<T> {
    /// Wraps a buffer of `T`s.
    ///
    /// # Panics
    /// When [`PrimitiveArray::try_new`] would fail.
    pub fn new(buffer: Buffer) -> Self {
        Self::try_new(buffer).unwrap_or_else(|e| panic!("PrimitiveArray::new: {e}"))
    }

    /// Wraps a buffer of `T`s, checking it.
    ///
    /// # Errors
    /// - [`ArrayError::BadByteLength`] when the length is not a multiple of
    ///   `size_of::<T>()`;
    /// - [`ArrayError::Misaligned`] when the buffer does not start at an address
    ///   aligned for `T`.
    pub fn try_new(buffer: Buffer) -> Result<Self> {
        typed_slice::<T>(buffer.as_slice(), "primitive values")?;
        Ok(Self {
            buffer,
            _t: PhantomData,
        })
    }

    /// Takes a `Vec` without copying.
    pub fn from_vec(v: Vec<T>) -> Self
    where
        T: Send + Sync,
    {
        Self {
            buffer: Buffer::from_vec(v),
            _t: PhantomData,
        }
    }

    /// The values.
    #[inline]
    pub fn values(&self) -> &[T] {
        match typed_slice(self.buffer.as_slice(), "primitive values") {
            Ok(v) => v,
            // try_new checked length and alignment, and buffers never change.
            Err(e) => unreachable!("checked at construction: {e}"),
        }
    }

    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        if std::mem::size_of::<T>() == 0 {
            0
        } else {
            self.buffer.len() / std::mem::size_of::<T>()
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        self.values().get(i).copied()
    }

    /// Values `offset..offset + len` in O(1), sharing the buffer.
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        let size = std::mem::size_of::<T>();
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len()),
            "slice {offset}+{len} out of bounds for length {}",
            self.len()
        );
        Self {
            buffer: self.buffer.slice(offset * size, len * size),
            _t: PhantomData,
        }
    }

    /// The values in order.
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, T>> {
        self.values().iter().copied()
    }

    /// The underlying buffer.
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    /// Gives up the buffer.
    pub fn into_parts(self) -> Buffer {
        self.buffer
    }
}

impl<T> Clone for PrimitiveArray<T> {
    fn clone(&self) -> Self {
        Self {
            buffer: self.buffer.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Default for PrimitiveArray<T> {
    fn default() -> Self {
        Self {
            buffer: Buffer::empty(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> std::ops::Index<usize> for PrimitiveArray<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.values()[i]
    }
}

impl<T: Pod + PartialEq> PartialEq for PrimitiveArray<T> {
    fn eq(&self, other: &Self) -> bool {
        self.values() == other.values()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PrimitiveArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrimitiveArray<{}>", std::any::type_name::<T>())?;
        f.debug_list()
            .entries(self.values().iter().take(32))
            .finish()?;
        if self.len() > 32 {
            write!(f, "… ({} values)", self.len())?;
        }
        Ok(())
    }
}

impl<T: Pod> ApproxSize for PrimitiveArray<T> {
    fn account(&self, usage: &mut MemoryUsage) {
        usage.add(&self.buffer);
    }
}

impl<T: Pod + Send + Sync> From<Vec<T>> for PrimitiveArray<T> {
    fn from(v: Vec<T>) -> Self {
        Self::from_vec(v)
    }
}

impl<T: Pod + Send + Sync> From<&[T]> for PrimitiveArray<T> {
    fn from(v: &[T]) -> Self {
        Self::from_vec(v.to_vec())
    }
}

impl<T: Pod + Send + Sync> FromIterator<T> for PrimitiveArray<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

impl<'a, T: Pod> IntoIterator for &'a PrimitiveArray<T> {
    type Item = T;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, T>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A column of booleans, packed 8 to a byte.
///
/// ```
/// use mempool_arrays::BooleanArray;
///
/// let a = BooleanArray::from(vec![true, false, true]);
/// assert_eq!(a.get(1), Some(false));
/// assert_eq!(a.true_count(), 2);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BooleanArray {
    bits: Bitmap,
}

impl BooleanArray {
    /// Wraps a bitmap.
    pub fn new(bits: Bitmap) -> Self {
        Self { bits }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.bits.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Value `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<bool> {
        self.bits.try_get(i)
    }

    /// Value `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn value(&self, i: usize) -> bool {
        self.bits.get(i)
    }

    /// Number of `true` values.
    pub fn true_count(&self) -> usize {
        self.bits.count_ones()
    }

    /// Values `offset..offset + len` in O(1).
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        Self {
            bits: self.bits.slice(offset, len),
        }
    }

    /// The values in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = bool> + '_ {
        self.bits.iter()
    }

    /// The bitmap.
    pub fn bits(&self) -> &Bitmap {
        &self.bits
    }

    /// Gives up the bitmap.
    pub fn into_parts(self) -> Bitmap {
        self.bits
    }
}

impl fmt::Debug for BooleanArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BooleanArray")?;
        f.debug_list().entries(self.iter().take(32)).finish()?;
        if self.len() > 32 {
            write!(f, "… ({} values)", self.len())?;
        }
        Ok(())
    }
}

impl ApproxSize for BooleanArray {
    fn account(&self, usage: &mut MemoryUsage) {
        self.bits.account(usage);
    }
}

impl From<Vec<bool>> for BooleanArray {
    fn from(v: Vec<bool>) -> Self {
        Self::new(v.into())
    }
}

impl FromIterator<bool> for BooleanArray {
    fn from_iter<I: IntoIterator<Item = bool>>(iter: I) -> Self {
        let mut b = BitmapBuilder::new();
        for x in iter {
            b.push(x);
        }
        Self::new(b.finish())
    }
}

impl From<Bitmap> for BooleanArray {
    fn from(bits: Bitmap) -> Self {
        Self::new(bits)
    }
}

/// Lets errors name a buffer kind without exposing internals.
pub(crate) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(ArrayError::LengthMismatch {
            what,
            expected,
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Point {
        x: f64,
        y: f64,
    }

    #[test]
    fn structs_and_slices() {
        let a: PrimitiveArray<Point> = (0..10)
            .map(|i| Point {
                x: i as f64,
                y: -(i as f64),
            })
            .collect();
        assert_eq!(a.len(), 10);
        assert_eq!(a[3], Point { x: 3.0, y: -3.0 });
        let s = a.slice(8, 2);
        assert_eq!(s.get(1), Some(Point { x: 9.0, y: -9.0 }));
        assert_eq!(s.get(2), None);
        assert_eq!(s.approx_size(), 160, "slice keeps the whole buffer alive");
    }

    #[test]
    fn try_new_rejects_bad_buffers() {
        assert!(PrimitiveArray::<u32>::try_new(Buffer::from_vec(vec![0u8; 7])).is_err());
        let b = Buffer::copy_aligned(&[0u8; 12]);
        assert!(PrimitiveArray::<u32>::try_new(b.slice(2, 8)).is_err());
        assert_eq!(PrimitiveArray::<u32>::new(b.slice(4, 8)).len(), 2);
    }
}
