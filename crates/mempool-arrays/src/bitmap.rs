//! [`Bitmap`]: packed bits (least significant bit first) over a [`Buffer`],
//! used for validity masks and boolean columns.

use std::fmt;

use crate::buffer::{ApproxSize, Buffer, MemoryUsage};
use crate::error::{ArrayError, Result};

/// An immutable sequence of bits stored 8 to a byte, least significant bit first.
///
/// ```
/// use mempool_arrays::Bitmap;
///
/// let b: Bitmap = [true, false, true].into_iter().collect();
/// assert_eq!(b.len(), 3);
/// assert!(b.get(2));
/// assert_eq!(b.count_zeros(), 1);
/// ```
#[derive(Clone)]
pub struct Bitmap {
    buffer: Buffer,
    offset: usize,
    len: usize,
}

impl Bitmap {
    /// Builds a bitmap of `len` bits from `buffer`, starting at bit `offset`.
    ///
    /// # Panics
    /// When [`Bitmap::try_new`] would fail.
    pub fn new(buffer: Buffer, offset: usize, len: usize) -> Self {
        Self::try_new(buffer, offset, len).unwrap_or_else(|e| panic!("Bitmap::new: {e}"))
    }

    /// Builds a bitmap of `len` bits from `buffer`, starting at bit `offset`,
    /// checking them. This is O(1).
    ///
    /// # Errors
    /// - [`ArrayError::OutOfBounds`] when `offset + len` overflows;
    /// - [`ArrayError::LengthMismatch`] when the buffer holds fewer than
    ///   `offset + len` bits.
    pub fn try_new(buffer: Buffer, offset: usize, len: usize) -> Result<Self> {
        let need = offset.checked_add(len).map(|bits| bits.div_ceil(8)).ok_or(
            ArrayError::OutOfBounds {
                index: usize::MAX,
                len: buffer.len(),
            },
        )?;
        if buffer.len() < need {
            return Err(ArrayError::LengthMismatch {
                what: "bitmap bytes",
                expected: need,
                found: buffer.len(),
            });
        }
        Ok(Self {
            buffer,
            offset,
            len,
        })
    }

    /// Builds a bitmap without checking its parts.
    ///
    /// # Safety
    /// The caller guarantees what [`Bitmap::try_new`] checks: `offset + len`
    /// does not overflow and `buffer` holds at least `offset + len` bits.
    /// Breaking this is a contract violation: this version's accessors then
    /// panic, and later versions may rely on it for memory safety.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(buffer: Buffer, offset: usize, len: usize) -> Self {
        Self {
            buffer,
            offset,
            len,
        }
    }

    /// Gives up the parts: buffer, bit offset, length in bits (the arguments
    /// of [`Bitmap::try_new`]).
    pub fn into_parts(self) -> (Buffer, usize, usize) {
        (self.buffer, self.offset, self.len)
    }

    /// A bitmap of `len` bits all set to `value`.
    pub fn filled(len: usize, value: bool) -> Self {
        let byte = if value { 0xff } else { 0 };
        Self {
            buffer: Buffer::from_vec(vec![byte; len.div_ceil(8)]),
            offset: 0,
            len,
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        assert!(
            i < self.len,
            "bit {i} out of bounds for length {}",
            self.len
        );
        let bit = self.offset + i;
        self.buffer.as_slice()[bit / 8] & (1 << (bit % 8)) != 0
    }

    /// Bit `i`, or `None` past the end.
    pub fn try_get(&self, i: usize) -> Option<bool> {
        (i < self.len).then(|| self.get(i))
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> usize {
        let bytes = self.buffer.as_slice();
        if self.offset.is_multiple_of(8) {
            let start = self.offset / 8;
            let full = self.len / 8;
            let mut n: usize = bytes[start..start + full]
                .iter()
                .map(|b| b.count_ones() as usize)
                .sum();
            for i in full * 8..self.len {
                n += usize::from(self.get(i));
            }
            n
        } else {
            (0..self.len).filter(|&i| self.get(i)).count()
        }
    }

    /// Number of clear bits.
    pub fn count_zeros(&self) -> usize {
        self.len - self.count_ones()
    }

    /// Bits `offset..offset + len` in O(1).
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "bitmap slice {offset}+{len} out of bounds for length {}",
            self.len
        );
        Self {
            buffer: self.buffer.clone(),
            offset: self.offset + offset,
            len,
        }
    }

    /// The bits in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = bool> + '_ {
        (0..self.len).map(move |i| self.get(i))
    }

    /// The underlying buffer and the bit offset into it.
    pub fn buffer(&self) -> (&Buffer, usize) {
        (&self.buffer, self.offset)
    }

    /// The bits packed from bit 0 of a fresh byte vector (copies when the
    /// bitmap does not start on a byte boundary).
    pub fn to_packed_bytes(&self) -> Vec<u8> {
        let nbytes = self.len.div_ceil(8);
        if self.offset.is_multiple_of(8) {
            let start = self.offset / 8;
            let mut v = self.buffer.as_slice()[start..start + nbytes].to_vec();
            // Clear bits past the end so equal bitmaps pack equally.
            if !self.len.is_multiple_of(8) {
                if let Some(last) = v.last_mut() {
                    *last &= (1u8 << (self.len % 8)) - 1;
                }
            }
            v
        } else {
            let mut b = BitmapBuilder::with_capacity(self.len);
            for bit in self.iter() {
                b.push(bit);
            }
            b.into_bytes()
        }
    }
}

impl ApproxSize for Bitmap {
    fn account(&self, usage: &mut MemoryUsage) {
        usage.add(&self.buffer);
    }
}

impl PartialEq for Bitmap {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Bitmap {}

impl fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bitmap[")?;
        for b in self.iter().take(64) {
            f.write_str(if b { "1" } else { "0" })?;
        }
        if self.len > 64 {
            write!(f, "… ({} bits)", self.len)?;
        }
        f.write_str("]")
    }
}

impl FromIterator<bool> for Bitmap {
    fn from_iter<I: IntoIterator<Item = bool>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut b = BitmapBuilder::with_capacity(iter.size_hint().0);
        for bit in iter {
            b.push(bit);
        }
        b.finish()
    }
}

impl From<&[bool]> for Bitmap {
    fn from(bits: &[bool]) -> Self {
        bits.iter().copied().collect()
    }
}

impl From<Vec<bool>> for Bitmap {
    fn from(bits: Vec<bool>) -> Self {
        bits.into_iter().collect()
    }
}

/// Builds a [`Bitmap`] one bit at a time.
#[derive(Debug, Default, Clone)]
pub struct BitmapBuilder {
    bytes: Vec<u8>,
    len: usize,
}

impl BitmapBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `bits` bits.
    pub fn with_capacity(bits: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bits.div_ceil(8)),
            len: 0,
        }
    }

    /// Appends a bit.
    #[inline]
    pub fn push(&mut self, bit: bool) {
        if self.len.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << (self.len % 8);
        }
        self.len += 1;
    }

    /// Appends `n` copies of `bit`.
    pub fn push_n(&mut self, bit: bool, n: usize) {
        for _ in 0..n {
            self.push(bit);
        }
    }

    /// Bits pushed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bit was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every bit pushed so far is set.
    pub fn all_set(&self) -> bool {
        let full = self.len / 8;
        self.bytes[..full].iter().all(|&b| b == 0xff)
            && (full * 8..self.len).all(|i| self.bytes[i / 8] & (1 << (i % 8)) != 0)
    }

    /// The packed bytes (shrunk to fit).
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.bytes.shrink_to_fit();
        self.bytes
    }

    /// The finished bitmap (its bytes shrunk to fit).
    pub fn finish(mut self) -> Bitmap {
        let len = self.len;
        self.bytes.shrink_to_fit();
        Bitmap {
            buffer: Buffer::from_vec(self.bytes),
            offset: 0,
            len,
        }
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
mod tests {
    use super::*;

    #[test]
    fn slices_and_counts() {
        let bits: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
        let b = Bitmap::from(bits.clone());
        assert_eq!(b.count_ones(), bits.iter().filter(|b| **b).count());
        let s = b.slice(5, 50);
        assert!(s.iter().eq(bits[5..55].iter().copied()));
        assert_eq!(s.count_ones(), bits[5..55].iter().filter(|b| **b).count());
        assert_eq!(
            Bitmap::try_new(Buffer::from_vec(s.to_packed_bytes()), 0, 50).unwrap(),
            s
        );
    }

    #[test]
    fn constructor_triple_and_parts() {
        let b = Bitmap::new(Buffer::from_vec(vec![0b1010_0000u8, 0b1]), 5, 4);
        assert_eq!(b.iter().collect::<Vec<_>>(), [true, false, true, true]);
        let (buffer, offset, len) = b.clone().into_parts();
        assert_eq!((offset, len), (5, 4));
        // SAFETY: the parts of a checked bitmap satisfy `try_new`'s checks.
        let c = unsafe { Bitmap::new_unchecked(buffer, offset, len) };
        assert_eq!(c, b);
        // Builders give back their spare capacity.
        let mut builder = BitmapBuilder::with_capacity(1000);
        builder.push(true);
        assert_eq!(builder.finish().buffer().0.owner_len(), 1);
    }

    #[test]
    #[should_panic(expected = "Bitmap::new")]
    fn new_panics_where_try_new_fails() {
        Bitmap::new(Buffer::from_vec(vec![0u8]), 1, 8);
    }

    #[test]
    fn try_new_checks_length() {
        assert!(Bitmap::try_new(Buffer::from_vec(vec![0u8; 2]), 3, 14).is_err());
        assert!(Bitmap::try_new(Buffer::from_vec(vec![0u8; 2]), 2, 14).is_ok());
        assert!(Bitmap::try_new(Buffer::from_vec(vec![0u8; 2]), usize::MAX, 2).is_err());
    }
}
