//! [`NullableArray`]: a [`PrimitiveArray`] of values plus an optional validity
//! [`Bitmap`] (what NullableArrays were to Julia), and [`NullableBuilder`].

use std::fmt;

use bytemuck::Pod;

use crate::bitmap::{Bitmap, BitmapBuilder};
use crate::buffer::{ApproxSize, MemoryUsage};
use crate::error::{ArrayError, Result};
use crate::primitive::{check_len, PrimitiveArray};

/// A column of optional plain-old-data values: a [`PrimitiveArray<T>`] of
/// values plus a validity [`Bitmap`] in which a clear bit marks a null.
///
/// Without a bitmap (`validity() == None`) no entry is null. The value stored
/// under a null slot is unspecified (the builders write zeros) and is ignored by
/// every accessor and by `==`.
///
/// Read entries with [`NullableArray::get`] (an `Option<T>`); there is no
/// `Index` impl, since a null has no value to reference. `a.values()[i]` reads
/// the raw value, null or not.
///
/// ```
/// use mempool_arrays::NullableArray;
///
/// let a = NullableArray::from(vec![Some(1i64), None, Some(3)]);
/// assert_eq!(a.len(), 3);
/// assert_eq!(a.get(0), Some(1));
/// assert_eq!(a.get(1), None);
/// assert_eq!(a.null_count(), 1);
/// let v: Vec<Option<i64>> = a.iter().collect();
/// assert_eq!(v, [Some(1), None, Some(3)]);
/// assert_eq!(a.slice(1, 2), NullableArray::from(vec![None, Some(3)]));
/// ```
pub struct NullableArray<T> {
    values: PrimitiveArray<T>,
    validity: Option<Bitmap>,
}

impl<T: Pod> NullableArray<T> {
    /// Builds an array from its values and validity (`None`: no nulls).
    ///
    /// # Panics
    /// When [`NullableArray::try_new`] would fail.
    pub fn new(values: PrimitiveArray<T>, validity: Option<Bitmap>) -> Self {
        Self::try_new(values, validity).unwrap_or_else(|e| panic!("NullableArray::new: {e}"))
    }

    /// Builds an array from its values and validity (`None`: no nulls),
    /// checking them. This is O(1).
    ///
    /// # Errors
    /// [`ArrayError::LengthMismatch`] when `validity` does not have exactly
    /// `values.len()` bits.
    pub fn try_new(values: PrimitiveArray<T>, validity: Option<Bitmap>) -> Result<Self> {
        if let Some(v) = &validity {
            check_len("validity bits", values.len(), v.len())?;
        }
        Ok(Self { values, validity })
    }

    /// Builds an array from its values and validity without checking them.
    ///
    /// # Safety
    /// The caller guarantees what [`NullableArray::try_new`] checks: `validity`,
    /// if any, has exactly `values.len()` bits. Breaking this is a contract
    /// violation: this version's accessors then panic or return wrong values,
    /// and later versions may rely on it for memory safety.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(values: PrimitiveArray<T>, validity: Option<Bitmap>) -> Self {
        Self { values, validity }
    }

    /// Number of entries (null or not).
    #[inline]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of null entries.
    pub fn null_count(&self) -> usize {
        self.validity.as_ref().map_or(0, Bitmap::count_zeros)
    }

    /// Whether entry `i` is null.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn is_null(&self, i: usize) -> bool {
        assert!(
            i < self.len(),
            "index {i} out of bounds for length {}",
            self.len()
        );
        self.validity.as_ref().is_some_and(|v| !v.get(i))
    }

    /// Entry `i`, or `None` if it is null: the accessor of this array.
    ///
    /// # Panics
    /// If `i >= len()`; see [`NullableArray::try_get`].
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if self.is_null(i) {
            None
        } else {
            Some(self.values.values()[i])
        }
    }

    /// Entry `i`, or `None` if it is null.
    ///
    /// # Errors
    /// [`ArrayError::OutOfBounds`] if `i >= len()`.
    #[inline]
    pub fn try_get(&self, i: usize) -> Result<Option<T>> {
        if i >= self.len() {
            return Err(ArrayError::OutOfBounds {
                index: i,
                len: self.len(),
            });
        }
        Ok(self.get(i))
    }

    /// The values, including the unspecified ones under null slots.
    pub fn values(&self) -> &PrimitiveArray<T> {
        &self.values
    }

    /// The validity bitmap (a clear bit marks a null), or `None` if no entry is
    /// null.
    pub fn validity(&self) -> Option<&Bitmap> {
        self.validity.as_ref()
    }

    /// The entries in order.
    pub fn iter(&self) -> NullableIter<'_, T> {
        NullableIter {
            array: self,
            next: 0,
            end: self.len(),
        }
    }

    /// Entries `offset..offset + len` in O(1), sharing the buffers.
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len()),
            "slice {offset}+{len} out of bounds for length {}",
            self.len()
        );
        Self {
            values: self.values.slice(offset, len),
            validity: self.validity.as_ref().map(|v| v.slice(offset, len)),
        }
    }

    /// Copies the entries into a `Vec`.
    pub fn to_vec(&self) -> Vec<Option<T>> {
        self.iter().collect()
    }

    /// Gives up the parts: values, validity (the arguments of
    /// [`NullableArray::try_new`]).
    pub fn into_parts(self) -> (PrimitiveArray<T>, Option<Bitmap>) {
        (self.values, self.validity)
    }
}

impl<T> Clone for NullableArray<T> {
    fn clone(&self) -> Self {
        Self {
            values: self.values.clone(),
            validity: self.validity.clone(),
        }
    }
}

impl<T: Pod> Default for NullableArray<T> {
    fn default() -> Self {
        Self {
            values: PrimitiveArray::default(),
            validity: None,
        }
    }
}

impl<T: Pod + PartialEq> PartialEq for NullableArray<T> {
    /// Entry-wise equality: nulls are equal to nulls, and the values under null
    /// slots are ignored; a missing bitmap equals an all-valid one.
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if self.validity.is_none() && other.validity.is_none() {
            return self.values == other.values;
        }
        self.iter().eq(other.iter())
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for NullableArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NullableArray<{}>", std::any::type_name::<T>())?;
        f.debug_list().entries(self.iter().take(32)).finish()?;
        if self.len() > 32 {
            write!(f, "… ({} values)", self.len())?;
        }
        Ok(())
    }
}

impl<T: Pod> ApproxSize for NullableArray<T> {
    fn account(&self, usage: &mut MemoryUsage) {
        self.values.account(usage);
        if let Some(v) = &self.validity {
            v.account(usage);
        }
    }
}

impl<T: Pod> From<PrimitiveArray<T>> for NullableArray<T> {
    /// An array without nulls, sharing the values' buffer.
    fn from(values: PrimitiveArray<T>) -> Self {
        Self {
            values,
            validity: None,
        }
    }
}

impl<T: Pod + Send + Sync> From<Vec<T>> for NullableArray<T> {
    /// An array without nulls, taking the `Vec` without copying.
    fn from(v: Vec<T>) -> Self {
        PrimitiveArray::from_vec(v).into()
    }
}

impl<T: Pod + Send + Sync> FromIterator<T> for NullableArray<T> {
    /// An array without nulls.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        iter.into_iter().collect::<PrimitiveArray<T>>().into()
    }
}

impl<T: Pod + Send + Sync> From<Vec<Option<T>>> for NullableArray<T> {
    fn from(v: Vec<Option<T>>) -> Self {
        v.into_iter().collect()
    }
}

impl<T: Pod + Send + Sync> FromIterator<Option<T>> for NullableArray<T> {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut b = NullableBuilder::with_capacity(iter.size_hint().0);
        for x in iter {
            b.append_option(x);
        }
        b.finish()
    }
}

impl<'a, T: Pod> IntoIterator for &'a NullableArray<T> {
    type Item = Option<T>;
    type IntoIter = NullableIter<'a, T>;
    fn into_iter(self) -> NullableIter<'a, T> {
        self.iter()
    }
}

/// Iterator over a [`NullableArray`]'s entries, yielding `None` for nulls.
pub struct NullableIter<'a, T> {
    array: &'a NullableArray<T>,
    next: usize,
    end: usize,
}

impl<T> Clone for NullableIter<'_, T> {
    fn clone(&self) -> Self {
        Self {
            array: self.array,
            next: self.next,
            end: self.end,
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for NullableIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NullableIter")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

impl<T: Pod> Iterator for NullableIter<'_, T> {
    type Item = Option<T>;
    fn next(&mut self) -> Option<Option<T>> {
        if self.next == self.end {
            return None;
        }
        let v = self.array.get(self.next);
        self.next += 1;
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl<T: Pod> DoubleEndedIterator for NullableIter<'_, T> {
    fn next_back(&mut self) -> Option<Option<T>> {
        if self.next == self.end {
            return None;
        }
        self.end -= 1;
        Some(self.array.get(self.end))
    }
}

impl<T: Pod> ExactSizeIterator for NullableIter<'_, T> {}

/// Builds a [`NullableArray`] one entry at a time.
///
/// ```
/// use mempool_arrays::NullableBuilder;
///
/// let mut b = NullableBuilder::new();
/// b.append_value(1.5f64);
/// b.append_null();
/// let a = b.finish();
/// assert_eq!(a.to_vec(), [Some(1.5), None]);
/// ```
#[derive(Debug, Clone)]
pub struct NullableBuilder<T> {
    values: Vec<T>,
    validity: BitmapBuilder,
    has_null: bool,
}

impl<T: Pod + Send + Sync> Default for NullableBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Pod + Send + Sync> NullableBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder with room for `items` entries.
    pub fn with_capacity(items: usize) -> Self {
        Self {
            values: Vec::with_capacity(items),
            validity: BitmapBuilder::with_capacity(items),
            has_null: false,
        }
    }

    /// Appends a value.
    #[inline]
    pub fn append_value(&mut self, v: T) {
        self.values.push(v);
        self.validity.push(true);
    }

    /// Appends a null (stored as a zeroed value).
    #[inline]
    pub fn append_null(&mut self) {
        self.values.push(T::zeroed());
        self.validity.push(false);
        self.has_null = true;
    }

    /// Appends a value or a null.
    #[inline]
    pub fn append_option(&mut self, v: Option<T>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }

    /// Entries appended so far.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The finished array (no validity bitmap if no entry is null), its
    /// buffers shrunk to fit.
    pub fn finish(mut self) -> NullableArray<T> {
        self.values.shrink_to_fit();
        NullableArray {
            values: PrimitiveArray::from_vec(self.values),
            validity: self.has_null.then(|| self.validity.finish()),
        }
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
mod tests {
    use super::*;
    use crate::buffer::Buffer;

    #[test]
    fn try_new_checks_validity_length() {
        let values = PrimitiveArray::from(vec![1i32, 2, 3]);
        assert!(matches!(
            NullableArray::try_new(values.clone(), Some(Bitmap::from(vec![true, false]))),
            Err(ArrayError::LengthMismatch {
                expected: 3,
                found: 2,
                ..
            })
        ));
        let a = NullableArray::new(values, Some(Bitmap::from(vec![true, false, true])));
        assert_eq!(a.to_vec(), [Some(1), None, Some(3)]);
        assert!(matches!(
            a.try_get(3),
            Err(ArrayError::OutOfBounds { index: 3, len: 3 })
        ));
        assert_eq!(a.try_get(1).unwrap(), None);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn get_out_of_bounds_panics() {
        NullableArray::from(vec![Some(1u8)]).get(1);
    }

    #[test]
    fn nulls_at_both_ends_and_slices() {
        let a = NullableArray::from(vec![None, Some(2.0f64), Some(3.0), None]);
        assert_eq!(a.null_count(), 2);
        assert!(a.is_null(0) && a.is_null(3) && !a.is_null(1));
        assert_eq!(
            a.iter().rev().collect::<Vec<_>>(),
            [None, Some(3.0), Some(2.0), None]
        );
        let mid = a.slice(1, 2);
        assert_eq!(mid.null_count(), 0);
        assert_eq!(
            mid,
            NullableArray::from(PrimitiveArray::from(vec![2.0, 3.0]))
        );
        let tail = a.slice(2, 2);
        assert_eq!(tail.to_vec(), [Some(3.0), None]);
        assert_eq!(a.slice(4, 0).len(), 0);
        let (values, validity) = tail.clone().into_parts();
        assert_eq!(NullableArray::new(values, validity), tail);
    }

    #[test]
    fn equality_ignores_values_under_nulls() {
        let a = NullableArray::new(
            PrimitiveArray::from(vec![1u16, 99, 3]),
            Some(Bitmap::from(vec![true, false, true])),
        );
        let b = NullableArray::from(vec![Some(1u16), None, Some(3)]);
        assert_eq!(a, b);
        // A bitmap that is all set equals no bitmap.
        let c = NullableArray::new(
            PrimitiveArray::from(vec![1u16, 2]),
            Some(Bitmap::filled(2, true)),
        );
        assert_eq!(c, NullableArray::from(PrimitiveArray::from(vec![1u16, 2])));
        assert_ne!(a, NullableArray::from(vec![Some(1u16), Some(99), Some(3)]));
        assert_ne!(a, a.slice(0, 2));
    }

    #[test]
    fn approx_size_counts_shared_buffers_once() {
        let values = Buffer::from_vec(vec![0u64; 100]);
        let a = NullableArray::<u64>::new(PrimitiveArray::new(values.clone()), None);
        assert_eq!(a.approx_size(), 800);
        assert_eq!(a.slice(10, 5).approx_size(), 800);
        let b = NullableArray::from(vec![Some(1u64), None]);
        assert_eq!(b.approx_size(), 16 + 1);
        let mut usage = MemoryUsage::default();
        a.account(&mut usage);
        a.slice(1, 2).account(&mut usage);
        assert_eq!(usage.total(), 800);
    }

    #[test]
    fn constructor_triple_and_conversions() {
        let a: NullableArray<i32> = vec![1, 2, 3].into();
        assert_eq!(a.null_count(), 0);
        assert!(a.validity().is_none());
        let b: NullableArray<i32> = (1..=3).collect();
        assert_eq!(a, b);
        let c: NullableArray<i32> = [Some(1), None].into_iter().collect();
        let (values, validity) = c.clone().into_parts();
        // SAFETY: the parts of a checked array satisfy `try_new`'s checks.
        let d = unsafe { NullableArray::new_unchecked(values, validity) };
        assert_eq!(c, d);
        assert_eq!(d.values()[1], 0, "the builder writes zeros under nulls");
        let mut builder = NullableBuilder::<u64>::with_capacity(100);
        builder.append_value(1);
        assert_eq!(builder.finish().approx_size(), 8, "finish shrinks");
    }

    #[test]
    #[should_panic(expected = "NullableArray::new")]
    fn new_panics_where_try_new_fails() {
        NullableArray::new(
            PrimitiveArray::from(vec![1u8]),
            Some(Bitmap::filled(2, true)),
        );
    }

    #[test]
    fn builder_without_nulls_has_no_bitmap() {
        let mut b = NullableBuilder::new();
        b.append_value(7i8);
        b.append_option(Some(8));
        assert_eq!(b.len(), 2);
        let a = b.finish();
        assert!(a.validity().is_none());
        assert_eq!(a.values().values(), &[7, 8]);
        assert_eq!(format!("{a:?}"), "NullableArray<i8>[Some(7), Some(8)]");
    }
}
