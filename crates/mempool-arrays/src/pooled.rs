//! [`PooledArray`]: dictionary encoding after Julia's PooledArrays — a pool of
//! distinct values plus integer [`Codes`] whose width follows the pool size.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use bytemuck::Pod;

use crate::buffer::{ApproxSize, Buffer, MemoryUsage};
use crate::error::{ArrayError, Result};
use crate::primitive::PrimitiveArray;
use crate::string::{StringArray, StringBuilder};

/// The codes of a [`PooledArray`]: one index into the pool per entry, stored as
/// `u8`, `u16` or `u32`.
///
/// The constructors of [`PooledArray`] that encode values pick the narrowest
/// width for the pool size ([`Codes::width_for_pool`]); [`PooledArray::try_new`]
/// accepts any width whose codes are all below the pool size.
///
/// ```
/// use mempool_arrays::{Codes, PrimitiveArray};
///
/// let c = Codes::U8(PrimitiveArray::from(vec![0u8, 2, 1]));
/// assert_eq!(c.len(), 3);
/// assert_eq!(c.code(1), 2);
/// assert_eq!(c.get(3), None);
/// assert_eq!(c.width_bytes(), 1);
/// assert_eq!(Codes::try_from_u32s(&[0, 2, 1], 300).unwrap().width_bytes(), 2);
/// ```
#[derive(Clone)]
pub enum Codes {
    /// One byte per code (pools of at most 256 entries).
    U8(PrimitiveArray<u8>),
    /// Two bytes per code (pools of at most 65,536 entries).
    U16(PrimitiveArray<u16>),
    /// Four bytes per code (larger pools).
    U32(PrimitiveArray<u32>),
}

/// Applies `$body` to the `PrimitiveArray` inside any [`Codes`] variant.
macro_rules! with_codes {
    ($codes:expr, $a:ident => $body:expr) => {
        match $codes {
            Codes::U8($a) => $body,
            Codes::U16($a) => $body,
            Codes::U32($a) => $body,
        }
    };
}

impl Codes {
    /// The code width in bytes (1, 2 or 4) that encoders choose for a pool of
    /// `pool_len` entries: 1 up to 256 entries, 2 up to 65,536, else 4.
    pub fn width_for_pool(pool_len: usize) -> usize {
        if pool_len <= 1 << 8 {
            1
        } else if pool_len <= 1 << 16 {
            2
        } else {
            4
        }
    }

    /// Codes of the width [`Codes::width_for_pool`] gives for `pool_len`,
    /// copied from `codes`.
    ///
    /// # Errors
    /// [`ArrayError::CodeOutOfRange`] naming the first code that is not below
    /// `pool_len`.
    pub fn try_from_u32s(codes: &[u32], pool_len: usize) -> Result<Self> {
        check_codes(codes, pool_len)?;
        Ok(Self::narrow(codes, pool_len))
    }

    /// Narrows codes known to be below `pool_len`.
    fn narrow(codes: &[u32], pool_len: usize) -> Self {
        match Self::width_for_pool(pool_len) {
            1 => Self::U8(codes.iter().map(|&c| c as u8).collect()),
            2 => Self::U16(codes.iter().map(|&c| c as u16).collect()),
            _ => Self::U32(PrimitiveArray::from(codes)),
        }
    }

    /// Number of codes.
    #[inline]
    pub fn len(&self) -> usize {
        with_codes!(self, a => a.len())
    }

    /// Whether there are no codes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per code: 1, 2 or 4.
    pub fn width_bytes(&self) -> usize {
        match self {
            Self::U8(_) => 1,
            Self::U16(_) => 2,
            Self::U32(_) => 4,
        }
    }

    /// Code `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<u32> {
        match self {
            Self::U8(a) => a.get(i).map(u32::from),
            Self::U16(a) => a.get(i).map(u32::from),
            Self::U32(a) => a.get(i),
        }
    }

    /// Code `i` as an index into the pool.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn code(&self, i: usize) -> usize {
        match self.get(i) {
            Some(c) => c as usize,
            None => panic!("code index {i} out of bounds for length {}", self.len()),
        }
    }

    /// The codes in order.
    pub fn iter(&self) -> CodesIter<'_> {
        CodesIter {
            codes: self,
            next: 0,
            end: self.len(),
        }
    }

    /// The largest code, or `None` if there are no codes. One branch-free pass.
    pub fn max_code(&self) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        Some(match self {
            Self::U8(a) => u32::from(max_of(a.values())),
            Self::U16(a) => u32::from(max_of(a.values())),
            Self::U32(a) => max_of(a.values()),
        })
    }

    /// Checks that every code is below `pool_len`: one branch-free pass for the
    /// maximum, and a second pass to find the culprit only on failure.
    ///
    /// # Errors
    /// [`ArrayError::CodeOutOfRange`] naming the first code that is not below
    /// `pool_len`.
    pub fn check_below(&self, pool_len: usize) -> Result<()> {
        with_codes!(self, a => check_codes(a.values(), pool_len))
    }

    /// Codes `offset..offset + len` in O(1), sharing the buffer.
    ///
    /// # Panics
    /// If the range is past the end.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        match self {
            Self::U8(a) => Self::U8(a.slice(offset, len)),
            Self::U16(a) => Self::U16(a.slice(offset, len)),
            Self::U32(a) => Self::U32(a.slice(offset, len)),
        }
    }

    /// The underlying buffer (little-endian codes of [`Codes::width_bytes`] bytes).
    pub fn buffer(&self) -> &Buffer {
        with_codes!(self, a => a.buffer())
    }
}

/// Checks that every code is below `pool_len`: a branch-free maximum, then a
/// search for the first culprit only on failure.
fn check_codes<T: Copy + Ord + Default + Into<u64>>(codes: &[T], pool_len: usize) -> Result<()> {
    let limit = pool_len as u64;
    if codes.is_empty() || max_of(codes).into() < limit {
        return Ok(());
    }
    let (index, code) = codes
        .iter()
        .map(|&c| c.into())
        .enumerate()
        .find(|&(_, c)| c >= limit)
        .unwrap_or((0, 0));
    Err(ArrayError::CodeOutOfRange {
        index,
        code,
        pool_len,
    })
}

/// The maximum of `v` (zero when empty), written so that it vectorizes.
#[inline]
fn max_of<T: Copy + Ord + Default>(v: &[T]) -> T {
    v.iter().fold(T::default(), |m, &c| m.max(c))
}

impl PartialEq for Codes {
    /// Compares code values, whatever their widths.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::U8(a), Self::U8(b)) => a == b,
            (Self::U16(a), Self::U16(b)) => a == b,
            (Self::U32(a), Self::U32(b)) => a == b,
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }
}

impl Eq for Codes {}

impl fmt::Debug for Codes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        with_codes!(self, a => fmt::Debug::fmt(a, f))
    }
}

impl ApproxSize for Codes {
    fn account(&self, usage: &mut MemoryUsage) {
        usage.add(self.buffer());
    }
}

/// Iterator over [`Codes`].
#[derive(Debug, Clone)]
pub struct CodesIter<'a> {
    codes: &'a Codes,
    next: usize,
    end: usize,
}

impl Iterator for CodesIter<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.next == self.end {
            return None;
        }
        let c = self.codes.get(self.next);
        self.next += 1;
        c
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for CodesIter<'_> {}

/// The pool of a [`PooledArray`]: an array whose entries the codes index.
///
/// Implemented for [`StringArray`] (items `Option<&str>`: a pool entry may be
/// null) and for [`PrimitiveArray<T>`] (items `T`).
pub trait PoolValues: Clone + ApproxSize {
    /// What one entry of the pool reads as.
    type Item<'a>: Copy + PartialEq
    where
        Self: 'a;

    /// Number of entries in the pool.
    fn len(&self) -> usize;

    /// Whether the pool has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i`.
    ///
    /// # Panics
    /// If `i >= len()`, and where the pool's own accessor panics (a
    /// [`StringArray`] with unchecked, invalid UTF-8; see [`StringArray::value`]).
    /// Neither happens through a [`PooledArray`] built by
    /// [`PooledArray::try_new`], which checks the codes and calls
    /// [`PoolValues::validate_full`].
    fn get_item(&self, i: usize) -> Self::Item<'_>;

    /// Checks the pool's contents fully, so that [`PoolValues::get_item`]
    /// cannot panic for an index in bounds. [`PooledArray::try_new`] calls it;
    /// pools are small (distinct values), so this costs little.
    ///
    /// # Errors
    /// The pool's content error ([`ArrayError::InvalidUtf8`] for a string pool).
    fn validate_full(&self) -> Result<()> {
        Ok(())
    }

    /// Whether entry `i` of `self` equals entry `j` of `other`.
    ///
    /// # Panics
    /// If an index is out of bounds.
    fn item_eq(&self, i: usize, other: &Self, j: usize) -> bool {
        self.get_item(i) == other.get_item(j)
    }
}

impl PoolValues for StringArray {
    type Item<'a> = Option<&'a str>;

    fn len(&self) -> usize {
        StringArray::len(self)
    }

    #[inline]
    fn get_item(&self, i: usize) -> Option<&str> {
        self.value(i)
    }

    /// Checks every string's UTF-8 ([`StringArray::validate_full`]).
    fn validate_full(&self) -> Result<()> {
        StringArray::validate_full(self)
    }

    /// Compares bytes, so it never panics on invalid UTF-8.
    fn item_eq(&self, i: usize, other: &Self, j: usize) -> bool {
        self.value_bytes(i) == other.value_bytes(j)
    }
}

impl<T: Pod + PartialEq> PoolValues for PrimitiveArray<T> {
    type Item<'a> = T;

    fn len(&self) -> usize {
        PrimitiveArray::len(self)
    }

    #[inline]
    fn get_item(&self, i: usize) -> T {
        self.values()[i]
    }
}

/// A dictionary-encoded array: a pool of values plus one code per entry, like
/// Julia's `PooledArray`. Entry `i` is `pool[codes[i]]`.
///
/// Encoding constructors ([`FromIterator`], the `From` impls,
/// [`PooledArray::from_values`]) store each distinct value once in the pool, in
/// order of first appearance, and choose the code width by pool size (`u8` up
/// to 256 entries, `u16` up to 65,536, else `u32`). A pool may hold at most
/// 2<sup>32</sup> entries, since codes are at most `u32`; no real array comes
/// near that. [`PooledArray::try_new`] accepts any pool (duplicates and unused
/// entries included) and codes of any width.
///
/// Equality compares the decoded entries, so two encodings of the same values
/// are equal.
///
/// Read entries with [`PooledArray::get`] (for strings an `Option<&str>`: the
/// accessor, since an entry may be null); a `PooledArray<PrimitiveArray<T>>`
/// also has `Index<usize>` giving `&T`. Since [`PooledArray::try_new`] checks
/// every code and the whole pool (a string pool's UTF-8 included), these never
/// panic for an index in bounds, even on an array read from untrusted bytes.
///
/// ```
/// use mempool_arrays::{PooledArray, StringArray};
///
/// let a = PooledArray::from(vec!["red", "green", "red", "red"]);
/// assert_eq!(a.len(), 4);
/// assert_eq!(a.pool().len(), 2);
/// assert_eq!(a.codes().width_bytes(), 1);
/// assert_eq!(a.get(2), Some("red"));
/// assert_eq!(a.code(1), 1);
/// assert_eq!(a.to_string_array(), StringArray::from(vec!["red", "green", "red", "red"]));
///
/// let (pool, codes) = a.clone().into_parts();
/// assert_eq!(PooledArray::try_new(pool, codes).unwrap(), a);
/// ```
#[derive(Clone)]
pub struct PooledArray<P = StringArray> {
    pool: P,
    codes: Codes,
}

impl<P: PoolValues> PooledArray<P> {
    /// Builds an array from a pool and codes.
    ///
    /// # Panics
    /// When [`PooledArray::try_new`] would fail.
    pub fn new(pool: P, codes: Codes) -> Self {
        Self::try_new(pool, codes).unwrap_or_else(|e| panic!("PooledArray::new: {e}"))
    }

    /// Builds an array from a pool and codes, checking them: O(codes + pool).
    ///
    /// # Errors
    /// - [`ArrayError::CodeOutOfRange`] naming the first code that is not below
    ///   `pool.len()` (one branch-free pass over the codes);
    /// - the pool's content errors from [`PoolValues::validate_full`]: for a
    ///   [`StringArray`] pool, [`ArrayError::InvalidUtf8`] naming the first
    ///   string that is not UTF-8 (one pass over the pool's bytes).
    pub fn try_new(pool: P, codes: Codes) -> Result<Self> {
        codes.check_below(pool.len())?;
        pool.validate_full()?;
        Ok(Self { pool, codes })
    }

    /// Builds an array from a pool and codes without checking them: O(1)
    /// (debug builds still check the codes, one pass).
    ///
    /// # Safety
    /// The caller guarantees what [`PooledArray::try_new`] checks, and
    /// nothing more is assumed:
    /// - **every code is below `pool.len()`** (codes of any width; the pool
    ///   may hold duplicate, unused and null entries). Breaking this is
    ///   undefined behaviour: the feature `arrow`'s `to_arrow` hands the
    ///   codes to Arrow as dictionary keys without checking them
    ///   (`DictionaryArray::new_unchecked`), and Arrow indexes the values by
    ///   them without bounds checks. This crate's own accessors
    ///   ([`PooledArray::get`], iteration, equality) check the index and
    ///   panic.
    /// - **[`PoolValues::validate_full`] would succeed on the pool**: for a
    ///   [`StringArray`] pool, every entry is valid UTF-8 (a primitive pool
    ///   always passes). Breaking this is not undefined behaviour, but reads
    ///   of an invalid entry panic (as [`StringArray::value`] does) and
    ///   `to_arrow` returns an error.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(pool: P, codes: Codes) -> Self {
        debug_assert!(
            codes.check_below(pool.len()).is_ok(),
            "PooledArray::new_unchecked: {}",
            codes
                .check_below(pool.len())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        Self { pool, codes }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Entry `i`: the accessor of this array.
    ///
    /// # Panics
    /// If `i >= len()` (see [`PooledArray::try_get`]).
    #[inline]
    pub fn get(&self, i: usize) -> P::Item<'_> {
        self.pool.get_item(self.code(i))
    }

    /// Entry `i`. Never panics.
    ///
    /// # Errors
    /// [`ArrayError::OutOfBounds`] if `i >= len()`.
    #[inline]
    pub fn try_get(&self, i: usize) -> Result<P::Item<'_>> {
        match self.codes.get(i) {
            Some(c) => Ok(self.pool.get_item(c as usize)),
            None => Err(ArrayError::OutOfBounds {
                index: i,
                len: self.len(),
            }),
        }
    }

    /// The code of entry `i`, an index into [`PooledArray::pool`].
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn code(&self, i: usize) -> usize {
        self.codes.code(i)
    }

    /// The codes.
    pub fn codes(&self) -> &Codes {
        &self.codes
    }

    /// The pool.
    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// The entries in order. Never panics.
    pub fn iter(&self) -> PooledIter<'_, P> {
        PooledIter {
            array: self,
            next: 0,
            end: self.len(),
        }
    }

    /// Entries `offset..offset + len` in O(1): slices the codes and shares the
    /// whole pool.
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
            pool: self.pool.clone(),
            codes: self.codes.slice(offset, len),
        }
    }

    /// Gives up the parts: pool, codes (the arguments of [`PooledArray::try_new`]).
    pub fn into_parts(self) -> (P, Codes) {
        (self.pool, self.codes)
    }
}

impl<P: PoolValues + Default> Default for PooledArray<P> {
    fn default() -> Self {
        Self {
            pool: P::default(),
            codes: Codes::U8(PrimitiveArray::default()),
        }
    }
}

impl<P: PoolValues> PartialEq for PooledArray<P> {
    /// Compares the decoded entries, whatever the pools and code widths.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .codes
                .iter()
                .zip(other.codes.iter())
                .all(|(a, b)| self.pool.item_eq(a as usize, &other.pool, b as usize))
    }
}

impl<P: PoolValues + fmt::Debug> fmt::Debug for PooledArray<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledArray")
            .field("len", &self.len())
            .field("pool", &self.pool)
            .field("codes", &self.codes)
            .finish()
    }
}

impl<P: PoolValues> ApproxSize for PooledArray<P> {
    fn account(&self, usage: &mut MemoryUsage) {
        self.pool.account(usage);
        self.codes.account(usage);
    }
}

/// Iterator over a [`PooledArray`]'s decoded entries.
pub struct PooledIter<'a, P> {
    array: &'a PooledArray<P>,
    next: usize,
    end: usize,
}

impl<P> Clone for PooledIter<'_, P> {
    fn clone(&self) -> Self {
        Self {
            array: self.array,
            next: self.next,
            end: self.end,
        }
    }
}

impl<P> fmt::Debug for PooledIter<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledIter")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

impl<'a, P: PoolValues> Iterator for PooledIter<'a, P> {
    type Item = P::Item<'a>;
    fn next(&mut self) -> Option<P::Item<'a>> {
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

impl<P: PoolValues> ExactSizeIterator for PooledIter<'_, P> {}

impl<'a, P: PoolValues> IntoIterator for &'a PooledArray<P> {
    type Item = P::Item<'a>;
    type IntoIter = PooledIter<'a, P>;
    fn into_iter(self) -> PooledIter<'a, P> {
        self.iter()
    }
}

/// The next code for a pool that has `pool_len` entries.
///
/// # Panics
/// When the pool already has 2^32 entries.
fn next_code(pool_len: usize) -> u32 {
    u32::try_from(pool_len)
        .unwrap_or_else(|_| panic!("PooledArray: more than 2^32 distinct values"))
}

/// Dictionary-encodes strings; `K` is the map's key (borrowed or owned).
struct StrEncoder<K> {
    map: HashMap<K, u32>,
    null_code: Option<u32>,
    pool: StringBuilder,
    codes: Vec<u32>,
}

impl<K: Hash + Eq + Borrow<str>> StrEncoder<K> {
    fn with_capacity(items: usize) -> Self {
        Self {
            map: HashMap::new(),
            null_code: None,
            pool: StringBuilder::new(),
            codes: Vec::with_capacity(items),
        }
    }

    fn push_null(&mut self) {
        let code = match self.null_code {
            Some(c) => c,
            None => {
                let c = next_code(self.pool.len());
                self.pool.append_null();
                self.null_code = Some(c);
                c
            }
        };
        self.codes.push(code);
    }

    /// Pushes `s`; `key` makes the map's key for `s` when `s` is new.
    #[inline]
    fn push_value(&mut self, s: &str, key: impl FnOnce() -> K) {
        let code = match self.map.get(s) {
            Some(&c) => c,
            None => {
                let c = next_code(self.pool.len());
                self.pool.append_value(s);
                self.map.insert(key(), c);
                c
            }
        };
        self.codes.push(code);
    }

    fn finish(self) -> PooledArray<StringArray> {
        let pool = self.pool.finish();
        let codes = Codes::narrow(&self.codes, pool.len());
        PooledArray { pool, codes }
    }
}

/// Builds a [`PooledArray<StringArray>`] one entry at a time, storing each
/// distinct string once (in order of first appearance) and choosing the code
/// width by pool size when finished.
///
/// ```
/// use mempool_arrays::PooledBuilder;
///
/// let mut b = PooledBuilder::new();
/// b.append_value("red");
/// b.append_null();
/// b.append_value("red");
/// assert_eq!(b.len(), 3);
/// let a = b.finish();
/// assert_eq!(a.pool().len(), 2);
/// assert_eq!(a.iter().collect::<Vec<_>>(), [Some("red"), None, Some("red")]);
/// ```
pub struct PooledBuilder {
    enc: StrEncoder<String>,
}

impl Default for PooledBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PooledBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuilder")
            .field("len", &self.len())
            .field("pool_len", &self.enc.pool.len())
            .finish()
    }
}

impl PooledBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty builder with room for `items` entries.
    pub fn with_capacity(items: usize) -> Self {
        Self {
            enc: StrEncoder::with_capacity(items),
        }
    }

    /// Appends a string.
    ///
    /// # Panics
    /// When the pool already holds 2<sup>32</sup> distinct values.
    #[inline]
    pub fn append_value(&mut self, s: &str) {
        self.enc.push_value(s, || s.to_owned());
    }

    /// Appends a null (all nulls share one pool entry).
    ///
    /// # Panics
    /// When the pool already holds 2<sup>32</sup> distinct values.
    pub fn append_null(&mut self) {
        self.enc.push_null();
    }

    /// Appends a string or a null.
    ///
    /// # Panics
    /// When the pool already holds 2<sup>32</sup> distinct values.
    pub fn append_option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.append_value(s),
            None => self.append_null(),
        }
    }

    /// Entries appended so far.
    pub fn len(&self) -> usize {
        self.enc.codes.len()
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.enc.codes.is_empty()
    }

    /// The finished array: its codes as narrow as the pool size allows.
    pub fn finish(self) -> PooledArray<StringArray> {
        self.enc.finish()
    }
}

impl PooledArray<StringArray> {
    /// Dictionary-encodes non-null strings.
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct strings.
    pub fn from_iter_values<S: AsRef<str>, I: IntoIterator<Item = S>>(iter: I) -> Self {
        iter.into_iter().map(Some).collect()
    }

    /// Whether entry `i` is null (its pool entry is null).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn is_null(&self, i: usize) -> bool {
        self.pool.is_null(self.code(i))
    }

    /// Number of null entries (one pass over the codes).
    pub fn null_count(&self) -> usize {
        if self.pool.null_count() == 0 {
            return 0;
        }
        self.codes
            .iter()
            .filter(|&c| self.pool.is_null(c as usize))
            .count()
    }

    /// Decodes into a plain [`StringArray`] (copies every string). Never
    /// panics: the pool's UTF-8 was checked at construction.
    pub fn to_string_array(&self) -> StringArray {
        let mut b = StringBuilder::with_capacity(self.len(), 0);
        for s in self.iter() {
            b.append_option(s);
        }
        b.finish()
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for PooledArray<StringArray> {
    /// Dictionary-encodes optional strings (a null becomes one null pool entry).
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct values.
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut enc = StrEncoder::<String>::with_capacity(iter.size_hint().0);
        for s in iter {
            match s {
                Some(s) => enc.push_value(s.as_ref(), || s.as_ref().to_owned()),
                None => enc.push_null(),
            }
        }
        enc.finish()
    }
}

impl From<&StringArray> for PooledArray<StringArray> {
    /// Dictionary-encodes `array`, keying the map by borrowed strings.
    ///
    /// # Panics
    /// As [`StringArray::value`], if `array` holds unchecked, invalid UTF-8.
    fn from(array: &StringArray) -> Self {
        let mut enc = StrEncoder::<&str>::with_capacity(array.len());
        for s in array.iter() {
            match s {
                Some(s) => enc.push_value(s, || s),
                None => enc.push_null(),
            }
        }
        enc.finish()
    }
}

impl<'a> FromIterator<&'a str> for PooledArray<StringArray> {
    /// Dictionary-encodes non-null strings.
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct strings.
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut enc = StrEncoder::<&str>::with_capacity(iter.size_hint().0);
        for s in iter {
            enc.push_value(s, || s);
        }
        enc.finish()
    }
}

impl FromIterator<String> for PooledArray<StringArray> {
    /// Dictionary-encodes non-null strings.
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct strings.
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self::from_iter_values(iter)
    }
}

impl From<Vec<&str>> for PooledArray<StringArray> {
    fn from(v: Vec<&str>) -> Self {
        Self::from_iter_values(v)
    }
}

impl From<Vec<String>> for PooledArray<StringArray> {
    fn from(v: Vec<String>) -> Self {
        Self::from_iter_values(v)
    }
}

impl From<Vec<Option<&str>>> for PooledArray<StringArray> {
    fn from(v: Vec<Option<&str>>) -> Self {
        v.into_iter().collect()
    }
}

impl From<Vec<Option<String>>> for PooledArray<StringArray> {
    fn from(v: Vec<Option<String>>) -> Self {
        v.into_iter().collect()
    }
}

impl<T: Pod + Eq + Hash + Send + Sync> PooledArray<PrimitiveArray<T>> {
    /// Dictionary-encodes `values` (integers and other `Eq + Hash` types;
    /// floats are not `Eq` — build their pool and codes and call
    /// [`PooledArray::try_new`]).
    ///
    /// ```
    /// use mempool_arrays::PooledArray;
    ///
    /// let a = PooledArray::from_values(&[7u64, 7, 9, 7]);
    /// assert_eq!(a.pool().values(), &[7, 9]);
    /// assert_eq!(a.to_vec(), [7, 7, 9, 7]);
    /// ```
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct values.
    pub fn from_values(values: &[T]) -> Self {
        let mut map: HashMap<T, u32> = HashMap::new();
        let mut pool: Vec<T> = Vec::new();
        let mut codes: Vec<u32> = Vec::with_capacity(values.len());
        for &v in values {
            let code = *map.entry(v).or_insert_with(|| {
                let c = next_code(pool.len());
                pool.push(v);
                c
            });
            codes.push(code);
        }
        let codes = Codes::narrow(&codes, pool.len());
        pool.shrink_to_fit();
        Self {
            pool: PrimitiveArray::from_vec(pool),
            codes,
        }
    }
}

impl<T: Pod + Eq + Hash + Send + Sync> From<&PrimitiveArray<T>> for PooledArray<PrimitiveArray<T>> {
    fn from(a: &PrimitiveArray<T>) -> Self {
        Self::from_values(a.values())
    }
}

impl<T: Pod + Eq + Hash + Send + Sync> From<Vec<T>> for PooledArray<PrimitiveArray<T>> {
    /// Dictionary-encodes `values` (see [`PooledArray::from_values`]).
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct values.
    fn from(values: Vec<T>) -> Self {
        Self::from_values(&values)
    }
}

impl<T: Pod + Eq + Hash + Send + Sync> FromIterator<T> for PooledArray<PrimitiveArray<T>> {
    /// Dictionary-encodes the values (see [`PooledArray::from_values`]).
    ///
    /// # Panics
    /// With more than 2<sup>32</sup> distinct values.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::from_values(&iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: Pod + PartialEq> std::ops::Index<usize> for PooledArray<PrimitiveArray<T>> {
    type Output = T;

    /// The pool value of entry `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    fn index(&self, i: usize) -> &T {
        &self.pool.values()[self.code(i)]
    }
}

impl<T: Pod + PartialEq> PooledArray<PrimitiveArray<T>> {
    /// Decodes into a `Vec`.
    pub fn to_vec(&self) -> Vec<T> {
        let pool = self.pool.values();
        self.codes.iter().map(|c| pool[c as usize]).collect()
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
mod tests {
    use super::*;

    #[test]
    fn try_new_checks_codes() {
        let pool = StringArray::from(vec!["a", "b"]);
        let codes = Codes::U8(PrimitiveArray::from(vec![0u8, 1, 2, 1, 5]));
        assert!(matches!(
            PooledArray::try_new(pool.clone(), codes),
            Err(ArrayError::CodeOutOfRange {
                index: 2,
                code: 2,
                pool_len: 2
            })
        ));
        let wide = Codes::U32(PrimitiveArray::from(vec![1u32, u32::MAX]));
        assert!(matches!(
            PooledArray::try_new(pool.clone(), wide),
            Err(ArrayError::CodeOutOfRange { index: 1, .. })
        ));
        // An empty pool admits only empty codes.
        let empty = Codes::U16(PrimitiveArray::default());
        assert!(PooledArray::try_new(StringArray::empty(), empty).is_ok());
        let zero = Codes::U8(PrimitiveArray::from(vec![0u8]));
        assert!(PooledArray::try_new(StringArray::empty(), zero).is_err());
        assert!(Codes::try_from_u32s(&[0, 3], 3).is_err());
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn get_out_of_bounds_panics() {
        PooledArray::from(vec!["x"]).get(1);
    }

    #[test]
    fn width_follows_pool_size() {
        assert_eq!(Codes::width_for_pool(0), 1);
        assert_eq!(Codes::width_for_pool(256), 1);
        assert_eq!(Codes::width_for_pool(257), 2);
        assert_eq!(Codes::width_for_pool(65_536), 2);
        assert_eq!(Codes::width_for_pool(65_537), 4);
        let small = PooledArray::from_values(&(0..256u32).collect::<Vec<_>>());
        assert_eq!(small.codes().width_bytes(), 1);
        let mid = PooledArray::from_values(&(0..257u32).collect::<Vec<_>>());
        assert_eq!(mid.codes().width_bytes(), 2);
        let big: Vec<u32> = (0..70_000).collect();
        let big_pooled = PooledArray::from_values(&big);
        assert_eq!(big_pooled.codes().width_bytes(), 4);
        assert_eq!(big_pooled.to_vec(), big);
        assert_eq!(big_pooled.codes().max_code(), Some(69_999));
    }

    #[test]
    fn nulls_at_both_ends() {
        let v = vec![None, Some("a"), Some("b"), Some("a"), None];
        let a = PooledArray::from(v.clone());
        assert_eq!(a.pool().len(), 3);
        assert_eq!(a.iter().collect::<Vec<_>>(), v);
        assert!(a.is_null(0) && a.is_null(4) && !a.is_null(1));
        assert_eq!(a.null_count(), 2);
        assert_eq!(a.code(0), a.code(4));
        assert_eq!(a.to_string_array(), StringArray::from(v.clone()));
        assert_eq!(PooledArray::from(&StringArray::from(v)), a);
        assert!(matches!(
            a.try_get(5),
            Err(ArrayError::OutOfBounds { index: 5, len: 5 })
        ));
        assert_eq!(a.try_get(4).unwrap(), None);
    }

    #[test]
    fn slices_share_the_pool() {
        let a = PooledArray::from(vec!["x", "y", "z", "x"]);
        let s = a.slice(1, 3);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            [Some("y"), Some("z"), Some("x")]
        );
        assert_eq!(s.pool().len(), 3);
        assert_eq!(s, PooledArray::from(vec!["y", "z", "x"]));
        assert_eq!(a.slice(4, 0).len(), 0);
        assert_eq!(s.approx_size(), a.approx_size());
    }

    #[test]
    fn differently_encoded_equal_data_is_equal() {
        let a = PooledArray::from(vec![Some("b"), None, Some("a"), Some("b")]);
        // Another pool order, a duplicate and unused pool entries, wider codes.
        let pool = StringArray::from(vec![Some("a"), Some("b"), None, Some("b"), Some("zz")]);
        let codes = Codes::U32(PrimitiveArray::from(vec![3u32, 2, 0, 1]));
        let b = PooledArray::new(pool, codes);
        assert_eq!(a, b);
        assert_ne!(a, b.slice(0, 3));
        assert_ne!(
            a,
            PooledArray::from(vec![Some("b"), Some("a"), Some("a"), Some("b")])
        );
        assert_eq!(
            Codes::U8(PrimitiveArray::from(vec![1u8, 2])),
            Codes::U32(PrimitiveArray::from(vec![1u32, 2]))
        );
        let p = PooledArray::from_values(&[5i16, -1, 5]);
        let q = PooledArray::new(
            PrimitiveArray::from(vec![-1i16, 5]),
            Codes::U16(PrimitiveArray::from(vec![1u16, 0, 1])),
        );
        assert_eq!(p, q);
    }

    #[test]
    fn approx_size_counts_pool_and_codes() {
        let pool = StringArray::from(vec!["abc", "de"]);
        let (offsets, data, _) = pool.parts();
        let pool_size = offsets.owner_len() + data.owner_len();
        let a = PooledArray::new(pool.clone(), Codes::U8(PrimitiveArray::from(vec![0u8; 10])));
        assert_eq!(a.approx_size(), pool_size + 10);
        // Two arrays over one pool count it once.
        let b = PooledArray::new(pool, Codes::U8(PrimitiveArray::from(vec![1u8; 6])));
        let mut usage = MemoryUsage::default();
        a.account(&mut usage);
        b.account(&mut usage);
        assert_eq!(usage.total(), pool_size + 16);
    }

    #[test]
    fn try_new_validates_a_string_pool() {
        let pool = StringArray::try_new_structural(
            Buffer::from_vec(vec![0u64, 1, 3]),
            Buffer::from_vec(b"a\xff\xfe".to_vec()),
            None,
        )
        .unwrap();
        let codes = Codes::U8(PrimitiveArray::from(vec![0u8, 0]));
        assert!(matches!(
            PooledArray::try_new(pool, codes),
            Err(ArrayError::InvalidUtf8 { index: 1 })
        ));
        // The checked parts of an array can skip the checks.
        let a = PooledArray::from(vec![Some("x"), None]);
        let (pool, codes) = a.clone().into_parts();
        // SAFETY: the parts of a checked array satisfy `try_new`'s checks
        // (codes below the pool size, the pool valid UTF-8).
        let b = unsafe { PooledArray::new_unchecked(pool, codes) };
        assert_eq!(a, b);
    }

    /// The contract of `new_unchecked` that Arrow relies on (codes below
    /// the pool's length) is checked in debug builds.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "PooledArray::new_unchecked")]
    fn new_unchecked_checks_the_codes_in_debug_builds() {
        let pool = StringArray::from(vec!["a", "b"]);
        let codes = Codes::U8(PrimitiveArray::from(vec![0u8, 2]));
        // SAFETY: deliberately broken (a code equal to the pool's length) to
        // show the debug check; the array is never read or converted: the
        // constructor panics first.
        let _ = unsafe { PooledArray::new_unchecked(pool, codes) };
    }

    #[test]
    fn builder_conversions_and_index() {
        let mut b = PooledBuilder::with_capacity(4);
        assert!(b.is_empty());
        b.append_option(Some("x"));
        b.append_null();
        b.append_value("y");
        b.append_value("x");
        let a = b.finish();
        assert_eq!(
            a,
            PooledArray::from(vec![Some("x"), None, Some("y"), Some("x")])
        );
        assert_eq!(a.pool().len(), 3);
        let s: PooledArray = ["p", "q", "p"].into_iter().collect();
        let t: PooledArray = ["p", "q", "p"].map(String::from).into_iter().collect();
        assert_eq!(s, t);
        assert_eq!(s.pool().len(), 2);
        let n: PooledArray<PrimitiveArray<i32>> = vec![5, -1, 5].into();
        let m: PooledArray<PrimitiveArray<i32>> = [5, -1, 5].into_iter().collect();
        assert_eq!(n, m);
        assert_eq!((n[0], n[1], n[2]), (5, -1, 5));
        assert_eq!(
            n.pool().buffer().owner_len(),
            8,
            "the pool is shrunk to fit"
        );
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn index_out_of_bounds_panics() {
        let n: PooledArray<PrimitiveArray<i32>> = vec![5].into();
        let _ = n[1];
    }

    #[test]
    fn into_parts_roundtrip_and_debug() {
        let a: PooledArray = ["q", "r", "q"].iter().map(Some).collect();
        let (pool, codes) = a.clone().into_parts();
        assert_eq!(codes.iter().collect::<Vec<_>>(), [0, 1, 0]);
        let b = PooledArray::try_new(pool, codes).unwrap();
        assert_eq!(a, b);
        let d = format!("{b:?}");
        assert!(d.contains("len: 3") && d.contains("\"r\""), "{d}");
        assert!(PooledArray::<StringArray>::default().is_empty());
    }
}
