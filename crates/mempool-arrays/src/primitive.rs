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

    /// Wraps a buffer of `T`s, checking it. This is O(1).
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

    /// Wraps a buffer of `T`s without checking it.
    ///
    /// # Safety
    /// The caller guarantees what [`PrimitiveArray::try_new`] checks: the
    /// buffer's length is a multiple of `size_of::<T>()` and it starts at an
    /// address aligned for `T`. Breaking this is a contract violation: this
    /// version's accessors then panic, and later versions may rely on it for
    /// memory safety.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(buffer: Buffer) -> Self {
        Self {
            buffer,
            _t: PhantomData,
        }
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

    /// Gives up the buffer (the argument of [`PrimitiveArray::try_new`]).
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
        let mut v: Vec<T> = iter.into_iter().collect();
        v.shrink_to_fit();
        Self::from_vec(v)
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
    ///
    /// # Panics
    /// Never: every [`Bitmap`] is a valid boolean array (the bitmap's own
    /// constructors check it). `new`, [`BooleanArray::try_new`] and
    /// [`BooleanArray::new_unchecked`] exist so that every array has the same
    /// constructors.
    pub fn new(bits: Bitmap) -> Self {
        Self { bits }
    }

    /// Wraps a bitmap.
    ///
    /// # Errors
    /// None: every [`Bitmap`] was checked when it was built (see
    /// [`Bitmap::try_new`]); to check raw bytes, build the bitmap with
    /// `Bitmap::try_new(buffer, offset, len)` first.
    pub fn try_new(bits: Bitmap) -> Result<Self> {
        Ok(Self { bits })
    }

    /// Wraps a bitmap.
    ///
    /// # Safety
    /// None beyond the bitmap's own invariants, which a safely built [`Bitmap`]
    /// always has (see [`Bitmap::new_unchecked`]).
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(bits: Bitmap) -> Self {
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

    /// Gives up the bitmap (the argument of [`BooleanArray::try_new`]).
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
        let iter = iter.into_iter();
        let mut b = BitmapBuilder::with_capacity(iter.size_hint().0);
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
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
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
    fn constructor_triples() {
        let a = PrimitiveArray::from(vec![1u16, 2, 3]);
        // SAFETY: the buffer of a checked array satisfies `try_new`'s checks.
        let b = unsafe { PrimitiveArray::<u16>::new_unchecked(a.clone().into_parts()) };
        assert_eq!(a, b);
        let bits = BooleanArray::from(vec![true, false]);
        let again = BooleanArray::try_new(bits.clone().into_parts()).unwrap();
        assert_eq!(again, bits);
        // SAFETY: a safely built bitmap has the bitmap invariants.
        let unchecked = unsafe { BooleanArray::new_unchecked(bits.clone().into_parts()) };
        assert_eq!(unchecked, bits);
        // Collected arrays give back spare capacity.
        let c: PrimitiveArray<u64> = (0..100u64).filter(|x| x % 10 == 0).collect();
        assert_eq!(c.buffer().owner_len(), 80);
    }

    #[test]
    #[should_panic(expected = "PrimitiveArray::new")]
    fn new_panics_where_try_new_fails() {
        PrimitiveArray::<u32>::new(Buffer::from_vec(vec![0u8; 3]));
    }

    #[test]
    fn try_new_rejects_bad_buffers() {
        assert!(PrimitiveArray::<u32>::try_new(Buffer::from_vec(vec![0u8; 7])).is_err());
        let b = Buffer::copy_aligned(&[0u8; 12]);
        assert!(PrimitiveArray::<u32>::try_new(b.slice(2, 8)).is_err());
        assert_eq!(PrimitiveArray::<u32>::new(b.slice(4, 8)).len(), 2);
    }
}
