//! [`StringArray`]: strings as one byte buffer plus `u64` offsets, with an
//! optional validity bitmap for undefined (null) entries.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::bitmap::{Bitmap, BitmapBuilder};
use crate::buffer::{typed_slice, ApproxSize, Buffer, MemoryUsage};
use crate::error::{ArrayError, Result};

/// An array of optional strings stored as `len + 1` little-endian `u64`
/// offsets into one UTF-8 byte buffer, plus an optional validity bitmap
/// (a clear bit marks an undefined entry, like an unassigned entry of a Julia
/// `Array{String}`). Offsets are 64-bit, so the total has no 4 GiB cap.
///
/// # Validation
/// [`StringArray::try_new`] checks everything. [`StringArray::try_new_structural`],
/// which readers of mapped frames use, checks only the structure (offsets
/// monotone and within the data, bitmap length): that is O(len) over the
/// offsets and never touches the string bytes. The UTF-8 of such an array is
/// checked on access, a block of 1,024 strings at a time and each block once
/// (by [`StringArray::value`], [`StringArray::try_value`] and
/// [`StringArray::iter`]; a bad string's block is then checked string by
/// string), or all at once by [`StringArray::validate_full`]. Once checked,
/// reading a string costs what reading its bytes costs.
///
/// # Accessors
/// There is no `Index` impl: an entry is an `Option<&str>`, not a reference
/// into the array. Read entries with [`StringArray::value`] /
/// [`StringArray::iter`] (which panic on invalid UTF-8 in an array that was
/// read without [`StringArray::validate_full`]), or with
/// [`StringArray::try_value`] / [`StringArray::iter_bytes`], which never panic
/// on content.
///
/// ```
/// use mempool_arrays::StringArray;
///
/// let a = StringArray::from(vec![Some("foo~^å&"), None, Some("")]);
/// assert_eq!(a.len(), 3);
/// assert_eq!(a.value(0), Some("foo~^å&"));
/// assert_eq!(a.value(1), None);
/// assert_eq!(a.null_count(), 1);
/// let v: Vec<Option<&str>> = a.iter().collect();
/// assert_eq!(v, [Some("foo~^å&"), None, Some("")]);
/// ```
pub struct StringArray {
    offsets: Buffer,
    data: Buffer,
    validity: Option<Bitmap>,
    /// Invariant: when set, every entry is valid UTF-8 (each string between
    /// two offsets), so the accessors hand out `&str` without checking. It is
    /// set only by `validate_full` after it checked every entry, by an
    /// iteration of `iter` that checked every entry, block by block, with the
    /// same test (`strings_are_utf8`), by constructors that build the bytes
    /// from `&str`s (`StringBuilder`, `empty`), by `new_unchecked`, whose
    /// `# Safety` requires valid UTF-8, and by `clone` / `slice`, which copy
    /// it with the same buffers. It is never cleared, and the bytes never
    /// change once checked: a [`Buffer`] is immutable (no API hands out `&mut`
    /// to its bytes), and a mapped file must not change while mapped (the
    /// `# Safety` of `Buffer::map_file`).
    utf8_checked: AtomicBool,
    /// For an array whose flag is not set, read by index: two bits per block
    /// of `ITER_CHUNK` entries (block `k` holds entries `k * ITER_CHUNK` up
    /// to the next block), "valid" and "invalid", made by the first
    /// [`StringArray::value`] or [`StringArray::try_value`] of such an array.
    /// Invariant: when a block's valid bit is set, every entry of the block is
    /// valid UTF-8. It is set only by `block_checked` after the block passed
    /// `strings_are_utf8`; bits are never cleared, are not shared with
    /// clones or slices (a slice's blocks are other entries), and the bytes
    /// never change, as for `utf8_checked`.
    checked_blocks: OnceLock<Box<[AtomicU64]>>,
}

impl StringArray {
    /// Builds an array from its parts, checking everything.
    ///
    /// # Panics
    /// When [`StringArray::try_new`] would fail.
    pub fn new(offsets: Buffer, data: Buffer, validity: Option<Bitmap>) -> Self {
        Self::try_new(offsets, data, validity).unwrap_or_else(|e| panic!("StringArray::new: {e}"))
    }

    /// Builds an array from its parts, checking everything.
    ///
    /// # Errors
    /// Those of [`StringArray::try_new_structural`], and
    /// [`ArrayError::InvalidUtf8`] when a string is not valid UTF-8 or an offset
    /// falls inside a multi-byte character.
    pub fn try_new(offsets: Buffer, data: Buffer, validity: Option<Bitmap>) -> Result<Self> {
        let a = Self::try_new_structural(offsets, data, validity)?;
        a.validate_full()?;
        Ok(a)
    }

    /// Builds an array from its parts without checking them.
    ///
    /// # Safety
    /// The caller guarantees what [`StringArray::try_new`] checks: `offsets` is
    /// an aligned, non-empty whole number of `u64`s, monotone, its last entry
    /// at most `data.len()`; `validity`, if any, has one bit per entry; and
    /// every string is valid UTF-8 with every offset on a character boundary.
    /// The array is marked as checked, so [`StringArray::value`],
    /// [`StringArray::try_value`] and [`StringArray::iter`] hand out its
    /// strings as `&str` without looking again: invalid UTF-8 here is
    /// undefined behaviour. Broken structure (offsets) makes the accessors
    /// panic or return wrong strings, and is undefined behaviour once the
    /// array is handed to Arrow (feature `arrow`), which trusts the offsets.
    #[expect(unsafe_code, reason = "the unchecked constructor of the triple")]
    pub unsafe fn new_unchecked(offsets: Buffer, data: Buffer, validity: Option<Bitmap>) -> Self {
        Self {
            offsets,
            data,
            validity,
            utf8_checked: AtomicBool::new(true),
            checked_blocks: OnceLock::new(),
        }
    }

    /// Builds an array from its parts, checking the structure only: O(len)
    /// over the offsets, one branch-free pass, without reading the string
    /// bytes. Entries are checked for UTF-8 when read
    /// ([`StringArray::try_value`]) or all at once by
    /// [`StringArray::validate_full`].
    ///
    /// # Errors
    /// - [`ArrayError::Misaligned`] / [`ArrayError::BadByteLength`]: `offsets`
    ///   is not an aligned whole number of `u64`s;
    /// - [`ArrayError::LengthMismatch`]: `offsets` is empty (it holds `len + 1`
    ///   entries), or `validity` does not have `len` bits;
    /// - [`ArrayError::OffsetsNotMonotone`]: an offset is smaller than the one
    ///   before it;
    /// - [`ArrayError::OffsetOutOfBounds`]: the last offset is past the data.
    pub fn try_new_structural(
        offsets: Buffer,
        data: Buffer,
        validity: Option<Bitmap>,
    ) -> Result<Self> {
        let offs: &[u64] = typed_slice(offsets.as_slice(), "string offsets")?;
        if offs.is_empty() {
            return Err(ArrayError::LengthMismatch {
                what: "string offsets (len + 1 entries)",
                expected: 1,
                found: 0,
            });
        }
        check_offsets(offs, data.len())?;
        let len = offs.len() - 1;
        if let Some(v) = &validity {
            if v.len() != len {
                return Err(ArrayError::LengthMismatch {
                    what: "validity bits",
                    expected: len,
                    found: v.len(),
                });
            }
        }
        Ok(Self {
            offsets,
            data,
            validity,
            utf8_checked: AtomicBool::new(false),
            checked_blocks: OnceLock::new(),
        })
    }

    /// An empty array.
    pub fn empty() -> Self {
        Self {
            offsets: Buffer::from_vec(vec![0u64]),
            data: Buffer::empty(),
            validity: None,
            utf8_checked: AtomicBool::new(true),
            checked_blocks: OnceLock::new(),
        }
    }

    /// Checks that every string is valid UTF-8 and every offset falls on a
    /// character boundary: one pass over the string bytes and one over the
    /// offsets. After it succeeds, [`StringArray::value`] and
    /// [`StringArray::iter`] never panic for an index in bounds, and they and
    /// [`StringArray::try_value`] no longer check each string's UTF-8. The
    /// result is remembered (also by clones and slices), so calling it again is
    /// O(1).
    ///
    /// # Errors
    /// [`ArrayError::InvalidUtf8`] naming the first bad string.
    pub fn validate_full(&self) -> Result<()> {
        if self.utf8_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        let offs = self.offsets();
        let data = self.data.as_slice();
        let all_ok = strings_are_utf8(offs, data);
        if !all_ok {
            // Some string is invalid: either the span is not UTF-8 (then one of
            // its pieces is not), or an inner offset splits a character (then
            // the strings on both sides are not). Name the first.
            for i in 0..self.len() {
                let (s, e) = (offs[i] as usize, offs[i + 1] as usize);
                if std::str::from_utf8(&data[s..e]).is_err() {
                    return Err(ArrayError::InvalidUtf8 { index: i });
                }
            }
            // Every string checked one by one is valid: the fast path was
            // stricter than needed, the array is fine.
        }
        self.utf8_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the UTF-8 of every string is known to be valid: checked by
    /// [`StringArray::validate_full`] or a checked constructor, guaranteed by
    /// the caller of [`StringArray::new_unchecked`], or built from `&str`s.
    /// The accessors then skip their per-string UTF-8 check.
    #[inline]
    pub fn is_utf8_checked(&self) -> bool {
        self.utf8_checked.load(Ordering::Relaxed)
    }

    /// Number of entries (null or not).
    #[inline]
    pub fn len(&self) -> usize {
        self.offsets.len() / 8 - 1
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of undefined (null) entries.
    pub fn null_count(&self) -> usize {
        self.validity.as_ref().map_or(0, Bitmap::count_zeros)
    }

    /// Whether entry `i` is undefined.
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

    #[inline]
    fn offsets(&self) -> &[u64] {
        match typed_slice(self.offsets.as_slice(), "string offsets") {
            Ok(o) => o,
            Err(e) => unreachable!("checked at construction: {e}"),
        }
    }

    /// The bytes of entry `i`, or `None` if it is null.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    pub fn value_bytes(&self, i: usize) -> Option<&[u8]> {
        let offs = self.offsets();
        // `offs` is not empty (checked at construction), and this one check
        // lets the compiler drop the bounds checks of `offs[i]` and `offs[i + 1]`.
        if i >= offs.len() - 1 {
            out_of_bounds(i, offs.len() - 1);
        }
        if self.validity.as_ref().is_some_and(|v| !v.get(i)) {
            return None;
        }
        Some(&self.data.as_slice()[offs[i] as usize..offs[i + 1] as usize])
    }

    /// Entry `i`, or `None` if it is null: the accessor for strings (there is
    /// no `Index` impl, since an entry may be null). In an array whose UTF-8
    /// is known valid ([`StringArray::is_utf8_checked`]) it costs what
    /// [`StringArray::value_bytes`] costs: the string is not looked at again.
    ///
    /// # Panics
    /// - If `i >= len()`.
    /// - If the entry is not valid UTF-8. That is possible only for an array
    ///   built with [`StringArray::try_new_structural`] — which is how
    ///   `mempool-serde` reads a `StringArray` frame — and not checked with
    ///   [`StringArray::validate_full`]. For such arrays call `validate_full`
    ///   first, or use [`StringArray::try_value`] / [`StringArray::iter_bytes`],
    ///   which never panic on content.
    #[inline]
    pub fn value(&self, i: usize) -> Option<&str> {
        match self.str_value(i)? {
            Ok(s) => Some(s),
            Err(()) => not_utf8("value", i),
        }
    }

    /// Entry `i`, or `None` if it is null, checking its UTF-8 unless the
    /// array is known to be valid ([`StringArray::is_utf8_checked`]). Never
    /// panics.
    ///
    /// # Errors
    /// [`ArrayError::OutOfBounds`] if `i >= len()`; [`ArrayError::InvalidUtf8`]
    /// if the bytes are not UTF-8.
    #[inline]
    pub fn try_value(&self, i: usize) -> Result<Option<&str>> {
        if i >= self.len() {
            return Err(ArrayError::OutOfBounds {
                index: i,
                len: self.len(),
            });
        }
        match self.str_value(i) {
            None => Ok(None),
            Some(s) => s
                .map(Some)
                .map_err(|()| ArrayError::InvalidUtf8 { index: i }),
        }
    }

    /// Entry `i` as a string (`None` if it is null, `Err` if its bytes are
    /// not UTF-8): without a check when the array is known to be valid.
    ///
    /// # Panics
    /// If `i >= len()`.
    #[inline]
    #[expect(unsafe_code, reason = "skips UTF-8 checks the flag vouches for")]
    fn str_value(&self, i: usize) -> Option<std::result::Result<&str, ()>> {
        let b = self.value_bytes(i)?;
        if self.is_utf8_checked() {
            // SAFETY: `from_utf8_unchecked` needs `b` to be valid UTF-8:
            // - `b` is entry `i` of this array, and the array's flag is set:
            //   by the invariant of `utf8_checked`, every entry is valid UTF-8.
            return Some(Ok(unsafe { std::str::from_utf8_unchecked(b) }));
        }
        Some(self.str_value_of_unchecked(i, b))
    }

    /// The rest of `str_value` for an array not known to be valid, out of
    /// line so that reads of a checked array stay small: `b` (entry `i`) as a
    /// string, without a look at it if its block is known valid.
    #[inline(never)]
    #[expect(unsafe_code, reason = "skips UTF-8 checks the block bit vouches for")]
    fn str_value_of_unchecked<'a>(
        &'a self,
        i: usize,
        b: &'a [u8],
    ) -> std::result::Result<&'a str, ()> {
        if self.block_checked(i) {
            // SAFETY: `from_utf8_unchecked` needs `b` to be valid UTF-8:
            // - `b` is entry `i` of this array (what `value_bytes(i)` gave
            //   `str_value`, the only caller), and the valid bit of the block
            //   holding entry `i` is set: by the invariant of
            //   `checked_blocks`, every entry of the block is valid UTF-8.
            Ok(unsafe { std::str::from_utf8_unchecked(b) })
        } else {
            utf8(b).ok_or(())
        }
    }

    /// Whether the block of entries holding entry `i` (`< len()`) is known to
    /// be valid UTF-8: its bit in `checked_blocks`, or else a check of the
    /// whole block now (one pass over its bytes and offsets, bounded by
    /// `ITER_CHUNK` entries), whose result is kept. An array read by index
    /// thus checks each block once, not each string on every read; the
    /// strings of a block that failed are checked one by one.
    fn block_checked(&self, i: usize) -> bool {
        let block = i / ITER_CHUNK;
        // Two bits per block: checked and valid, checked and invalid.
        let (word, valid) = (block / 32, 1u64 << (2 * (block % 32)));
        let invalid = valid << 1;
        let bits = self.checked_blocks.get_or_init(|| {
            let blocks = self.len().div_ceil(ITER_CHUNK);
            (0..blocks.div_ceil(32))
                .map(|_| AtomicU64::new(0))
                .collect()
        });
        let state = bits[word].load(Ordering::Relaxed);
        if state & (valid | invalid) != 0 {
            return state & valid != 0;
        }
        let ok = self.check_block(block);
        // Only a block that passed gets its valid bit: the invariant of
        // `checked_blocks`.
        bits[word].fetch_or(if ok { valid } else { invalid }, Ordering::Relaxed);
        ok
    }

    /// Whether every entry of block `block` is valid UTF-8.
    #[cold]
    fn check_block(&self, block: usize) -> bool {
        let start = block * ITER_CHUNK;
        let end = (start + ITER_CHUNK).min(self.len());
        // The offsets of entries `start..end`, a part of the array's offsets
        // (monotone and within the data, checked at construction).
        strings_are_utf8(&self.offsets()[start..=end], self.data.as_slice())
    }

    /// The entries in order. In an array known to be valid
    /// ([`StringArray::is_utf8_checked`]) it hands out the strings without
    /// looking at them again. In one that is not (read with
    /// [`StringArray::try_new_structural`]), it checks the strings a block of
    /// 1,024 entries at a time, with one pass over the block's bytes
    /// and its offsets as [`StringArray::validate_full`] does, and an
    /// iteration that reaches the end with every block valid marks the array
    /// as checked: later reads cost nothing more.
    ///
    /// # Panics
    /// When it reaches an entry that is not valid UTF-8: possible only in an
    /// array read without [`StringArray::validate_full`], as for
    /// [`StringArray::value`]. [`StringArray::iter_bytes`] never panics.
    pub fn iter(&self) -> StringIter<'_> {
        let checked = self.is_utf8_checked();
        StringIter {
            bytes: self.iter_bytes(),
            block_end: if checked { self.len() } else { 0 },
            block_ok: checked,
            all_ok: true,
            flag: (!checked).then_some(&self.utf8_checked),
        }
    }

    /// The entries' bytes in order (`None` for nulls), without UTF-8 checks:
    /// the fastest way through the array, and it never panics.
    pub fn iter_bytes(&self) -> StringBytesIter<'_> {
        StringBytesIter {
            offsets: self.offsets(),
            data: self.data.as_slice(),
            validity: self.validity.as_ref(),
            next: 0,
            end: self.len(),
        }
    }

    /// Total bytes of the strings (the data span between the first and last offset).
    pub fn value_data_len(&self) -> usize {
        let o = self.offsets();
        (o[o.len() - 1] - o[0]) as usize
    }

    /// The string bytes between the first and the last offset, concatenated.
    pub fn value_data(&self) -> &[u8] {
        let o = self.offsets();
        &self.data.as_slice()[o[0] as usize..o[o.len() - 1] as usize]
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
            offsets: self.offsets.slice(offset * 8, (len + 1) * 8),
            data: self.data.clone(),
            validity: self.validity.as_ref().map(|v| v.slice(offset, len)),
            utf8_checked: AtomicBool::new(self.is_utf8_checked()),
            checked_blocks: OnceLock::new(),
        }
    }

    /// The offsets buffer (`len + 1` `u64`s), the data buffer and the validity.
    pub fn parts(&self) -> (&Buffer, &Buffer, Option<&Bitmap>) {
        (&self.offsets, &self.data, self.validity.as_ref())
    }

    /// Gives up the parts: offsets, data, validity (the arguments of
    /// [`StringArray::try_new`]).
    pub fn into_parts(self) -> (Buffer, Buffer, Option<Bitmap>) {
        (self.offsets, self.data, self.validity)
    }

    /// The validity bitmap, if any entry may be null.
    pub fn validity(&self) -> Option<&Bitmap> {
        self.validity.as_ref()
    }

    /// Copies the entries into owned strings.
    ///
    /// # Panics
    /// As [`StringArray::iter`], on invalid UTF-8 in an array read without
    /// [`StringArray::validate_full`].
    pub fn to_vec(&self) -> Vec<Option<String>> {
        self.iter().map(|s| s.map(str::to_owned)).collect()
    }

    /// Builds an array of non-null strings.
    pub fn from_iter_values<S: AsRef<str>, I: IntoIterator<Item = S>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut b = StringBuilder::with_capacity(iter.size_hint().0, 0);
        for s in iter {
            b.append_value(s.as_ref());
        }
        b.finish()
    }
}

/// Entries [`StringIter`] checks at once in an array not known to be valid:
/// enough that a block is one long pass for `from_utf8`, few enough that its
/// bytes (22 KiB for strings of W3's average length) are still in cache when
/// the iterator hands them out.
const ITER_CHUNK: usize = 1024;

/// Whether every string between consecutive `offs` (non-empty, monotone,
/// within `data`) is valid UTF-8, by one pass over the bytes they span and one
/// over the offsets: the span is UTF-8, and every inner offset falls on a
/// character boundary of it. An offset equal to the end of the span ends it,
/// so the byte there (outside every string) does not matter.
///
/// When it returns `true`, each string is a slice of a valid UTF-8 span
/// between two character boundaries (its offsets are the span's ends or inner
/// offsets on boundaries), hence valid UTF-8 itself. When it returns `false`,
/// at least one string is invalid: either the span is not UTF-8 (then one of
/// its pieces is not), or an inner offset splits a character (then the string
/// that starts there begins with a continuation byte).
fn strings_are_utf8(offs: &[u64], data: &[u8]) -> bool {
    let (first, last) = (offs[0] as usize, offs[offs.len() - 1] as usize);
    let inner = offs.get(1..offs.len() - 1).unwrap_or(&[]);
    std::str::from_utf8(&data[first..last]).is_ok()
        && inner
            .iter()
            .all(|&o| o as usize >= last || !is_continuation(data[o as usize]))
}

/// `b` as a string if it is valid UTF-8: the check of one string, for arrays
/// not known to be valid. Short ASCII strings, the common case, take the
/// word-at-a-time `is_ascii` instead of the general decoder.
#[inline]
#[expect(unsafe_code, reason = "ASCII is UTF-8")]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: `from_utf8_unchecked` needs `b` to be valid UTF-8:
        // - every byte of `b` is below 0x80 (`is_ascii`), and a sequence of
        //   such bytes is valid UTF-8 (each is a one-byte character).
        Some(unsafe { std::str::from_utf8_unchecked(b) })
    } else {
        std::str::from_utf8(b).ok()
    }
}

/// The panic of an accessor given an index past the end, out of line so
/// that the accessors stay small enough to inline.
#[cold]
#[inline(never)]
#[track_caller]
fn out_of_bounds(i: usize, len: usize) -> ! {
    panic!("index {i} out of bounds for length {len}")
}

/// The panic of `value` and `iter` on a string that is not UTF-8, out of line.
#[cold]
#[inline(never)]
fn not_utf8(accessor: &str, i: usize) -> ! {
    panic!(
        "StringArray::{accessor}: string {i} is not valid UTF-8; call validate_full() on untrusted arrays"
    )
}

/// Whether `b` continues a multi-byte UTF-8 character (`0b10xx_xxxx`).
#[inline]
fn is_continuation(b: u8) -> bool {
    (b as i8) < -0x40
}

/// Checks `offs` (non-empty) is monotone and its last entry is within
/// `data_len`.
///
/// This is the whole cost of opening a mapped string column without its
/// checksum, so it is one branch-free pass that the compiler vectorizes: with
/// every offset below 2<sup>63</sup>, `next - prev` (wrapping) has its top bit
/// set exactly when `prev > next`, so OR-ing the differences and the offsets
/// themselves flags either failure in the top bit. Eight independent
/// accumulators keep the loop free of a serial dependency. Only on failure does
/// a second pass find the culprit.
fn check_offsets(offs: &[u64], data_len: usize) -> Result<()> {
    const LANES: usize = 8;
    let n = offs.len() - 1;
    let (head, tail) = (&offs[..n], &offs[1..]);
    let (heads, tails) = (head.chunks_exact(LANES), tail.chunks_exact(LANES));
    let mut flags = offs[0];
    for (&p, &q) in heads.remainder().iter().zip(tails.remainder()) {
        flags |= q.wrapping_sub(p) | q;
    }
    let mut acc = [0u64; LANES];
    for (h, t) in heads.zip(tails) {
        for k in 0..LANES {
            acc[k] |= t[k].wrapping_sub(h[k]) | t[k];
        }
    }
    let flags = acc.iter().fold(flags, |f, &a| f | a);
    let last = offs[n];
    if flags >> 63 == 0 && last <= data_len as u64 {
        return Ok(());
    }
    for (i, (&p, &q)) in head.iter().zip(tail).enumerate() {
        if p > q {
            return Err(ArrayError::OffsetsNotMonotone {
                index: i,
                prev: p,
                next: q,
            });
        }
    }
    // Monotone, so the last offset is the largest: it is past the data.
    Err(ArrayError::OffsetOutOfBounds {
        index: n,
        offset: last,
        len: data_len,
    })
}

impl Clone for StringArray {
    fn clone(&self) -> Self {
        Self {
            offsets: self.offsets.clone(),
            data: self.data.clone(),
            validity: self.validity.clone(),
            utf8_checked: AtomicBool::new(self.is_utf8_checked()),
            checked_blocks: OnceLock::new(),
        }
    }
}

impl Default for StringArray {
    fn default() -> Self {
        Self::empty()
    }
}

impl PartialEq for StringArray {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|i| self.value_bytes(i) == other.value_bytes(i))
    }
}

impl Eq for StringArray {}

impl fmt::Debug for StringArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StringArray")?;
        let mut l = f.debug_list();
        for i in 0..self.len().min(32) {
            match self.value_bytes(i) {
                None => l.entry(&None::<&str>),
                Some(b) => l.entry(&Some(String::from_utf8_lossy(b))),
            };
        }
        l.finish()?;
        if self.len() > 32 {
            write!(f, "… ({} strings)", self.len())?;
        }
        Ok(())
    }
}

impl ApproxSize for StringArray {
    fn account(&self, usage: &mut MemoryUsage) {
        usage.add(&self.offsets);
        usage.add(&self.data);
        if let Some(v) = &self.validity {
            v.account(usage);
        }
    }
}

/// Iterator over a [`StringArray`]'s entries' bytes, from
/// [`StringArray::iter_bytes`].
#[derive(Debug, Clone)]
pub struct StringBytesIter<'a> {
    offsets: &'a [u64],
    data: &'a [u8],
    validity: Option<&'a Bitmap>,
    next: usize,
    end: usize,
}

impl<'a> Iterator for StringBytesIter<'a> {
    type Item = Option<&'a [u8]>;
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        if self.validity.is_some_and(|v| !v.get(i)) {
            return Some(None);
        }
        Some(Some(
            &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize],
        ))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for StringBytesIter<'_> {}

/// Iterator over a [`StringArray`]'s entries, from [`StringArray::iter`].
///
/// # Panics
/// As [`StringArray::value`], on invalid UTF-8 in an array that was not
/// checked.
#[derive(Debug, Clone)]
pub struct StringIter<'a> {
    bytes: StringBytesIter<'a>,
    /// The end of the block of entries the next one belongs to: the array's
    /// length when the array was checked; else blocks of up to `ITER_CHUNK`
    /// entries are checked one after another as the iteration reaches them.
    block_end: usize,
    /// Whether the current block is known to be valid UTF-8. Invariant: when
    /// set, every entry of `bytes` (the entries of one array) from the next
    /// one up to `block_end` is valid UTF-8.
    block_ok: bool,
    /// Whether every block so far passed its check.
    all_ok: bool,
    /// The array's flag, when it was not set: set at the end of an iteration
    /// whose blocks all passed.
    flag: Option<&'a AtomicBool>,
}

impl StringIter<'_> {
    /// Checks the block of entries from `i`, the next one, which starts a
    /// block (`i == self.block_end`, `i < self.bytes.end`).
    #[cold]
    fn check_block(&mut self, i: usize) {
        let end = (i + ITER_CHUNK).min(self.bytes.end);
        // The offsets of entries `i..end`, a part of the array's offsets
        // (monotone and within the data, checked at construction).
        self.block_ok = strings_are_utf8(&self.bytes.offsets[i..=end], self.bytes.data);
        self.block_end = end;
        self.all_ok &= self.block_ok;
    }
}

impl<'a> Iterator for StringIter<'a> {
    type Item = Option<&'a str>;
    #[inline]
    #[expect(unsafe_code, reason = "skips UTF-8 checks of entries known valid")]
    fn next(&mut self) -> Option<Self::Item> {
        let i = self.bytes.next;
        if i == self.block_end && i < self.bytes.end {
            self.check_block(i);
        }
        let Some(b) = self.bytes.next() else {
            if let Some(flag) = self.flag.take() {
                if self.all_ok {
                    // The iteration went through every entry (it starts at
                    // entry 0, takes them in order, and is at the end), and
                    // every block of them passed `strings_are_utf8`: every
                    // entry is valid UTF-8, what `validate_full` proves, so
                    // the array may say so (see the invariant of its flag).
                    flag.store(true, Ordering::Relaxed);
                }
            }
            return None;
        };
        Some(b.map(|b| {
            if self.block_ok {
                // SAFETY: `from_utf8_unchecked` needs `b` to be valid UTF-8:
                // - `b` is entry `i` of the array this iterator reads (what
                //   `StringBytesIter::next` returned when its next index was
                //   `i`), `i < self.block_end` (the block check above makes
                //   `block_end > i` for every `i < bytes.end`), and
                //   `block_ok` is set: by its invariant, the entry is valid
                //   UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            } else {
                match utf8(b) {
                    Some(s) => s,
                    None => not_utf8("iter", i),
                }
            }
        }))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.bytes.size_hint()
    }
}

impl ExactSizeIterator for StringIter<'_> {}

impl<'a> IntoIterator for &'a StringArray {
    type Item = Option<&'a str>;
    type IntoIter = StringIter<'a>;
    fn into_iter(self) -> StringIter<'a> {
        self.iter()
    }
}

/// Builds a [`StringArray`] one entry at a time.
///
/// ```
/// use mempool_arrays::StringBuilder;
///
/// let mut b = StringBuilder::new();
/// b.append_value("a");
/// b.append_null();
/// let a = b.finish();
/// assert_eq!(a.to_vec(), [Some("a".to_string()), None]);
/// ```
#[derive(Debug, Clone)]
pub struct StringBuilder {
    offsets: Vec<u64>,
    data: Vec<u8>,
    validity: BitmapBuilder,
    has_null: bool,
}

impl Default for StringBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StringBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty builder with room for `items` strings of `bytes` bytes in all.
    pub fn with_capacity(items: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(items + 1);
        offsets.push(0);
        Self {
            offsets,
            data: Vec::with_capacity(bytes),
            validity: BitmapBuilder::with_capacity(items),
            has_null: false,
        }
    }

    /// Appends a string.
    #[inline]
    pub fn append_value(&mut self, s: &str) {
        self.data.extend_from_slice(s.as_bytes());
        self.offsets.push(self.data.len() as u64);
        self.validity.push(true);
    }

    /// Appends an undefined entry.
    pub fn append_null(&mut self) {
        self.offsets.push(self.data.len() as u64);
        self.validity.push(false);
        self.has_null = true;
    }

    /// Appends a string or a null.
    pub fn append_option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.append_value(s),
            None => self.append_null(),
        }
    }

    /// Entries appended so far.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished array (no validity bitmap if no entry is null), its
    /// buffers shrunk to fit.
    pub fn finish(mut self) -> StringArray {
        self.offsets.shrink_to_fit();
        self.data.shrink_to_fit();
        StringArray {
            offsets: Buffer::from_vec(self.offsets),
            data: Buffer::from_vec(self.data),
            validity: self.has_null.then(|| self.validity.finish()),
            utf8_checked: AtomicBool::new(true),
            checked_blocks: OnceLock::new(),
        }
    }
}

impl<S: AsRef<str>> FromIterator<Option<S>> for StringArray {
    fn from_iter<I: IntoIterator<Item = Option<S>>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut b = StringBuilder::with_capacity(iter.size_hint().0, 0);
        for s in iter {
            b.append_option(s.as_ref().map(AsRef::as_ref));
        }
        b.finish()
    }
}

impl<'a> FromIterator<&'a str> for StringArray {
    /// An array of non-null strings.
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        Self::from_iter_values(iter)
    }
}

impl FromIterator<String> for StringArray {
    /// An array of non-null strings.
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self::from_iter_values(iter)
    }
}

impl From<Vec<String>> for StringArray {
    fn from(v: Vec<String>) -> Self {
        Self::from_iter_values(v)
    }
}

impl From<Vec<&str>> for StringArray {
    fn from(v: Vec<&str>) -> Self {
        Self::from_iter_values(v)
    }
}

impl From<&[&str]> for StringArray {
    fn from(v: &[&str]) -> Self {
        Self::from_iter_values(v)
    }
}

impl From<Vec<Option<String>>> for StringArray {
    fn from(v: Vec<Option<String>>) -> Self {
        v.into_iter().collect()
    }
}

impl From<Vec<Option<&str>>> for StringArray {
    fn from(v: Vec<Option<&str>>) -> Self {
        v.into_iter().collect()
    }
}

#[cfg(test)]
#[expect(unsafe_code, reason = "tests of the unchecked constructor")]
mod tests {
    use super::*;

    fn offsets(v: &[u64]) -> Buffer {
        Buffer::from_vec(v.to_vec())
    }

    #[test]
    fn structural_checks() {
        let data = Buffer::from_vec(b"abcdef".to_vec());
        assert!(StringArray::try_new(offsets(&[0, 2, 6]), data.clone(), None).is_ok());
        assert!(matches!(
            StringArray::try_new(offsets(&[0, 4, 2]), data.clone(), None),
            Err(ArrayError::OffsetsNotMonotone {
                index: 1,
                prev: 4,
                next: 2
            })
        ));
        assert!(matches!(
            StringArray::try_new(offsets(&[0, 2, 7]), data.clone(), None),
            Err(ArrayError::OffsetOutOfBounds { offset: 7, .. })
        ));
        assert!(matches!(
            StringArray::try_new(offsets(&[0, u64::MAX, 3]), data.clone(), None),
            Err(ArrayError::OffsetsNotMonotone { .. })
        ));
        assert!(
            StringArray::try_new(offsets(&[u64::MAX - 1, u64::MAX]), data.clone(), None).is_err()
        );
        assert!(StringArray::try_new(offsets(&[]), data.clone(), None).is_err());
        let bits = Bitmap::from(vec![true]);
        assert!(matches!(
            StringArray::try_new(offsets(&[0, 2, 6]), data, Some(bits)),
            Err(ArrayError::LengthMismatch {
                expected: 2,
                found: 1,
                ..
            })
        ));
    }

    #[test]
    fn utf8_checked_lazily_or_fully() {
        let data = Buffer::from_vec("aå".as_bytes().to_vec()); // 'å' is 2 bytes
                                                               // Offset 2 splits 'å'.
        assert!(matches!(
            StringArray::try_new(offsets(&[0, 2, 3]), data.clone(), None),
            Err(ArrayError::InvalidUtf8 { .. })
        ));
        let lazy = StringArray::try_new_structural(offsets(&[0, 2, 3]), data, None).unwrap();
        assert!(lazy.try_value(0).is_err());
        assert!(lazy.try_value(1).is_err());
        assert!(matches!(
            lazy.try_value(2),
            Err(ArrayError::OutOfBounds { .. })
        ));
        assert!(lazy.validate_full().is_err());
    }

    #[test]
    fn validate_full_ignores_the_byte_after_the_last_string() {
        // An inner offset equal to the last offset, with a continuation byte
        // at data[last] outside every string: valid.
        for (offs, data) in [
            (&[0u64, 2, 2][..], &b"ab\x80"[..]),
            (&[0, 0], &b"\x80"[..]),
            (&[0, 1, 1, 1], &b"a\xa5\xa5"[..]),
        ] {
            let a = StringArray::try_new_structural(
                offsets(offs),
                Buffer::from_vec(data.to_vec()),
                None,
            )
            .unwrap();
            a.validate_full().unwrap();
            assert!(a.is_utf8_checked());
            assert_eq!(a.value(a.len() - 1), Some(""));
            assert!(
                StringArray::try_new(offsets(offs), Buffer::from_vec(data.to_vec()), None).is_ok()
            );
        }
    }

    #[test]
    fn validate_full_names_the_first_bad_string() {
        let cases: [(&[u64], &[u8], usize); 6] = [
            // The continuation byte is inside string 1.
            (&[0, 2, 3], b"ab\x80", 1),
            (&[0, 1, 2], b"a\x80", 1),
            (&[0, 0, 1, 3], b"a\xff\x80", 2),
            // Offset 2 splits 'å' (c3 a5): strings 0 and 1 are both bad.
            (&[0, 2, 3], "aå".as_bytes(), 0),
            // A slice of the span starting mid-character.
            (&[1, 2], "å".as_bytes(), 0),
            // Bad bytes only in the last of several strings.
            (&[0, 1, 2, 3, 4], b"abc\xc3", 3),
        ];
        for (offs, data, index) in cases {
            let a = StringArray::try_new_structural(
                offsets(offs),
                Buffer::from_vec(data.to_vec()),
                None,
            )
            .unwrap();
            match a.validate_full() {
                Err(ArrayError::InvalidUtf8 { index: i }) => assert_eq!(i, index, "{offs:?}"),
                other => panic!("{offs:?}: expected InvalidUtf8, got {other:?}"),
            }
            assert!(!a.is_utf8_checked());
            assert!(a.try_value(index).is_err());
            assert!(a.iter_bytes().count() == a.len());
        }
    }

    #[test]
    fn offsets_check_finds_the_culprit_in_every_lane() {
        // Long enough for the chunked loop and its remainder.
        for len in [1usize, 2, 7, 8, 9, 16, 17, 40] {
            let good: Vec<u64> = (0..=len as u64).map(|i| i * 3).collect();
            let data_len = 3 * len;
            assert!(check_offsets(&good, data_len).is_ok());
            assert!(matches!(
                check_offsets(&good, data_len - 1),
                Err(ArrayError::OffsetOutOfBounds { index, .. }) if index == len
            ));
            for at in 0..=len {
                let mut bad = good.clone();
                bad[at] = u64::MAX - 1;
                let err = check_offsets(&bad, data_len).unwrap_err();
                if at < len {
                    assert!(
                        matches!(err, ArrayError::OffsetsNotMonotone { index, .. } if index == at),
                        "len {len}, at {at}: {err}"
                    );
                } else {
                    assert!(matches!(err, ArrayError::OffsetOutOfBounds { .. }), "{err}");
                }
                if at >= 2 {
                    // A small decrease, far from the top bit.
                    let mut dec = good.clone();
                    dec[at] = good[at - 1] - 1;
                    assert!(matches!(
                        check_offsets(&dec, data_len),
                        Err(ArrayError::OffsetsNotMonotone { index, .. }) if index == at - 1
                    ));
                }
            }
        }
    }

    #[test]
    fn constructor_triple_and_conversions() {
        let a: StringArray = ["x", "yz"].into_iter().collect();
        let b: StringArray = vec!["x".to_string(), "yz".to_string()]
            .into_iter()
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.null_count(), 0);
        let (o, d, v) = a.clone().into_parts();
        // SAFETY: the parts of a checked array satisfy `try_new`'s checks.
        let c = unsafe { StringArray::new_unchecked(o.clone(), d.clone(), v.clone()) };
        assert_eq!(c, a);
        assert!(c.is_utf8_checked());
        assert_eq!(StringArray::new(o, d, v), a);
        // Builders give back spare capacity.
        let mut builder = StringBuilder::with_capacity(1000, 10_000);
        builder.append_value("abc");
        let built = builder.finish();
        let (o, d, _) = built.parts();
        assert_eq!((o.owner_len(), d.owner_len()), (16, 3));
    }

    #[test]
    #[should_panic(expected = "not valid UTF-8")]
    fn value_panics_on_unchecked_invalid_utf8() {
        let a =
            StringArray::try_new_structural(offsets(&[0, 1]), Buffer::from_vec(vec![0xffu8]), None)
                .unwrap();
        assert!(a.try_value(0).is_err());
        assert_eq!(a.iter_bytes().next(), Some(Some(&[0xffu8][..])));
        a.value(0);
    }

    #[test]
    fn checked_arrays_read_without_a_check_and_unchecked_ones_still_check() {
        // Multi-byte strings, an empty one and a null, read from parts.
        let strs = ["å", "", "日本", "x€"];
        let mut offs = vec![0u64];
        let mut bytes = Vec::new();
        for s in strs {
            bytes.extend_from_slice(s.as_bytes());
            offs.push(bytes.len() as u64);
        }
        let validity = Bitmap::from(vec![true, true, false, true]);
        let expected = [Some("å"), Some(""), None, Some("x€")];
        let a = StringArray::try_new_structural(
            offsets(&offs),
            Buffer::from_vec(bytes.clone()),
            Some(validity.clone()),
        )
        .unwrap();
        assert!(!a.is_utf8_checked());
        a.validate_full().unwrap();
        assert!(a.is_utf8_checked());
        for array in [a.clone(), a.slice(0, 4)] {
            assert!(array.is_utf8_checked());
            for (i, e) in expected.iter().enumerate() {
                assert_eq!(array.value(i), *e);
                assert_eq!(array.try_value(i).unwrap(), *e);
            }
            assert_eq!(array.iter().collect::<Vec<_>>(), expected);
        }
        let tail = a.slice(2, 2);
        assert_eq!(tail.iter().collect::<Vec<_>>(), [None, Some("x€")]);
        assert_eq!(tail.try_value(1).unwrap(), Some("x€"));

        // The same layout with string 3 cut inside '€', never validated: every
        // accessor still checks it.
        offs[4] -= 1;
        bytes.pop();
        let bad = StringArray::try_new_structural(
            offsets(&offs),
            Buffer::from_vec(bytes),
            Some(validity),
        )
        .unwrap();
        assert_eq!(bad.try_value(0).unwrap(), Some("å"));
        assert!(matches!(
            bad.try_value(3),
            Err(ArrayError::InvalidUtf8 { index: 3 })
        ));
        let catch = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let iter = catch(&|| {
            bad.iter().count();
        });
        assert!(iter.is_err(), "iter handed out invalid UTF-8");
        let value = catch(&|| {
            bad.value(3);
        });
        assert!(value.is_err(), "value handed out invalid UTF-8");
        assert!(bad.validate_full().is_err());
        assert!(!bad.is_utf8_checked());
        assert!(bad.try_value(3).is_err());
    }

    #[test]
    fn a_whole_iteration_checks_an_array_once() {
        // Three blocks of the iterator's checks, multi-byte strings.
        let strs: Vec<String> = (0..2500).map(|i| format!("s{i}å")).collect();
        let a = StringArray::from_iter_values(&strs);
        let (o, d, v) = a.parts();
        let fresh = || StringArray::try_new_structural(o.clone(), d.clone(), v.cloned()).unwrap();
        let b = fresh();
        assert!(!b.is_utf8_checked());
        assert_eq!(b.iter().take(2000).count(), 2000);
        assert!(!b.is_utf8_checked(), "a partial iteration proves nothing");
        assert!(b
            .iter()
            .map(Option::unwrap)
            .eq(strs.iter().map(String::as_str)));
        assert!(b.is_utf8_checked());
        let part = fresh().slice(100, 1500);
        assert_eq!(part.iter().count(), 1500);
        assert!(part.is_utf8_checked());
        // A null entry over bad bytes reads as null, but the array is not
        // valid as a whole (validate_full checks nulls' bytes too).
        let bad_null = StringArray::try_new_structural(
            offsets(&[0, 1, 2]),
            Buffer::from_vec(b"a\xff".to_vec()),
            Some(Bitmap::from(vec![true, false])),
        )
        .unwrap();
        assert_eq!(bad_null.iter().collect::<Vec<_>>(), [Some("a"), None]);
        assert!(!bad_null.is_utf8_checked());
        assert!(bad_null.validate_full().is_err());
    }

    #[test]
    fn reads_by_index_check_each_block_once() {
        // Three blocks; string 1500 (block 1) loses the last byte of its 'å'.
        let mut strs: Vec<String> = (0..3000).map(|i| format!("s{i}å")).collect();
        let a = StringArray::from_iter_values(&strs);
        let (o, _, _) = a.parts();
        let mut bytes = a.value_data().to_vec();
        let at = o.typed::<u64>().unwrap()[1501] as usize - 1;
        bytes[at] = b'x';
        strs[1500] = String::new();
        let b = StringArray::try_new_structural(o.clone(), Buffer::from_vec(bytes), None).unwrap();
        for i in [0, 1023, 1024, 1499, 1501, 2047, 2048, 2999, 5] {
            assert_eq!(b.value(i), Some(strs[i].as_str()), "{i}");
            assert_eq!(b.try_value(i).unwrap(), Some(strs[i].as_str()), "{i}");
        }
        assert!(matches!(
            b.try_value(1500),
            Err(ArrayError::InvalidUtf8 { index: 1500 })
        ));
        let bits: Vec<u64> = b
            .checked_blocks
            .get()
            .unwrap()
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        // Blocks 0 and 2 valid, block 1 invalid.
        assert_eq!(bits, [0b01_10_01]);
        assert!(!b.is_utf8_checked());
    }

    #[test]
    fn slice_keeps_values_and_nulls() {
        let a = StringArray::from(vec![Some("x"), None, Some("yz"), Some("")]);
        let s = a.slice(1, 3);
        assert_eq!(s.to_vec(), [None, Some("yz".into()), Some(String::new())]);
        assert_eq!(s.null_count(), 1);
        assert_eq!(s.value_data(), b"yz");
        assert_eq!(s, StringArray::from(vec![None, Some("yz"), Some("")]));
        assert_ne!(s, a);
    }
}
