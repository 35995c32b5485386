//! The deterministic workload data of DESIGN.md ("Performance: the workloads").
//!
//! Every system measured on the workloads stores and verifies exactly the same
//! bytes, so this module follows the recipe to the letter: wrapping `u64`
//! arithmetic, `G = 0x9E3779B97F4A7C15`, SplitMix64's finaliser as [`mix`].
//!
//! ```text
//! rnd(stream, k)  = mix(stream * G + (k + 1) * G)
//! perm(n, stream) = [0..n) sorted by rnd(stream, k)
//! pool[k]         = (rnd(0, k) >> 11) * 2^-53 as f64, k < 8 Mi
//! W1 value i      = pool[off .. off + 131072], off = rnd(1, i) % (8 Mi - 131072 + 1)
//! W2 value k      = little-endian u64 k repeated, cut to 100 bytes
//! W5 value k      = little-endian u64 k repeated, cut to 1,000 bytes
//! letters[k]      = b'a' + rnd(4, k) % 26, k < 1 Mi
//! W3 string j of array i: g = i * 100000 + j; len = 5 + rnd(5, g) % 36;
//!                 off = rnd(6, g) % (1 Mi - 40); s = letters[off .. off + len]
//! ```

/// The golden-ratio increment `G` of the recipe.
pub const G: u64 = 0x9E37_79B9_7F4A_7C15;

/// Stream of [`perm`] giving W1's get order.
pub const W1_GET_STREAM: u64 = 2;
/// Stream of [`perm`] giving W2's get order.
pub const W2_GET_STREAM: u64 = 3;
/// Stream of [`perm`] giving W3's get order.
pub const W3_GET_STREAM: u64 = 7;
/// Stream of [`perm`] giving W5's get order (DESIGN.md: `perm(100000, 3)`).
pub const W5_GET_STREAM: u64 = 3;

/// Number of `f64` in the generator pool (8 Mi, 64 MiB).
pub const POOL_LEN: usize = 8 << 20;
/// Number of `f64` in one W1 value (1 MiB of data).
pub const W1_VALUE_LEN: usize = 131_072;
/// Number of W1 values (1 GiB in all).
pub const W1_VALUES: usize = 1024;
/// Number of W2 puts (and gets).
pub const W2_OPS: usize = 1_000_000;
/// Length in bytes of one W2 value.
pub const W2_VALUE_LEN: usize = 100;
/// Number of letters in the W3 letter pool (1 Mi).
pub const LETTERS_LEN: usize = 1 << 20;
/// Number of W3 string arrays.
pub const W3_ARRAYS: usize = 64;
/// Number of strings in one W3 array.
pub const W3_STRINGS_PER_ARRAY: usize = 100_000;
/// Number of W5 puts (and gets).
pub const W5_VALUES: usize = 100_000;
/// Length in bytes of one W5 value.
pub const W5_VALUE_LEN: usize = 1_000;

/// SplitMix64's finaliser: the recipe's `mix(z)`.
#[inline]
pub const fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th random number of stream `stream`: `mix(stream * G + (k + 1) * G)`.
#[inline]
pub const fn rnd(stream: u64, k: u64) -> u64 {
    mix(stream
        .wrapping_mul(G)
        .wrapping_add(k.wrapping_add(1).wrapping_mul(G)))
}

/// The indices `0..n` sorted by `rnd(stream, index)` (a stable sort by key).
///
/// Gives the get orders: W1 uses stream [`W1_GET_STREAM`], W2
/// [`W2_GET_STREAM`], W3 [`W3_GET_STREAM`].
pub fn perm(n: u64, stream: u64) -> Vec<u64> {
    let mut keyed: Vec<(u64, u64)> = (0..n).map(|k| (rnd(stream, k), k)).collect();
    // Sorting by (key, index) is the stable sort by key.
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, k)| k).collect()
}

/// The 8 Mi `f64` generator pool that W1 values are cut from:
/// `pool[k] = (rnd(0, k) >> 11) as f64 * 2^-53`, each in `[0, 1)`.
pub struct F64Pool {
    values: Vec<f64>,
}

impl F64Pool {
    /// Generates the pool (64 MiB; a few tens of milliseconds).
    pub fn new() -> Self {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        let values = (0..POOL_LEN as u64)
            .map(|k| (rnd(0, k) >> 11) as f64 * SCALE)
            .collect();
        Self { values }
    }

    /// The whole pool, [`POOL_LEN`] values.
    pub fn as_slice(&self) -> &[f64] {
        &self.values
    }
}

impl Default for F64Pool {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for F64Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("F64Pool")
            .field("len", &self.values.len())
            .finish()
    }
}

/// Offset into the pool of W1 value `i`: `rnd(1, i) % (8 Mi - 131072 + 1)`.
#[inline]
pub fn w1_offset(i: u64) -> usize {
    (rnd(1, i) % (POOL_LEN - W1_VALUE_LEN + 1) as u64) as usize
}

/// W1 value `i`: the [`W1_VALUE_LEN`] `f64` of the pool at [`w1_offset`]`(i)`.
#[inline]
pub fn w1_value(pool: &F64Pool, i: u64) -> &[f64] {
    let off = w1_offset(i);
    &pool.as_slice()[off..off + W1_VALUE_LEN]
}

/// Wrapping sum of the `u64` bit patterns of `a`.
///
/// Four independent accumulators, so that the loop vectorises.
pub fn checksum_f64(a: &[f64]) -> u64 {
    let mut acc = [0u64; 4];
    let chunks = a.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        acc[0] = acc[0].wrapping_add(c[0].to_bits());
        acc[1] = acc[1].wrapping_add(c[1].to_bits());
        acc[2] = acc[2].wrapping_add(c[2].to_bits());
        acc[3] = acc[3].wrapping_add(c[3].to_bits());
    }
    let mut sum = acc[0]
        .wrapping_add(acc[1])
        .wrapping_add(acc[2])
        .wrapping_add(acc[3]);
    for x in rest {
        sum = sum.wrapping_add(x.to_bits());
    }
    sum
}

/// W2 value `k`: the little-endian bytes of `k` repeated, cut to 100 bytes.
#[inline]
pub fn w2_value(k: u64) -> [u8; W2_VALUE_LEN] {
    let le = k.to_le_bytes();
    let mut v = [0u8; W2_VALUE_LEN];
    for (i, b) in v.iter_mut().enumerate() {
        *b = le[i % 8];
    }
    v
}

/// Fills `out` with the little-endian bytes of `k` repeated, cut to
/// `out.len()`: the recipe of W2 and W5 values.
#[inline]
pub fn fill_le_repeated(k: u64, out: &mut [u8]) {
    let le = k.to_le_bytes();
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&le);
    }
    let rest = chunks.into_remainder();
    let n = rest.len();
    rest.copy_from_slice(&le[..n]);
}

/// W5 value `k`: W2's recipe cut to [`W5_VALUE_LEN`] (1,000) bytes.
#[inline]
pub fn w5_value(k: u64) -> Vec<u8> {
    let mut v = vec![0u8; W5_VALUE_LEN];
    fill_le_repeated(k, &mut v);
    v
}

/// The 1 Mi letters that W3 strings are cut from:
/// `letters[k] = b'a' + rnd(4, k) % 26`.
pub struct Letters {
    letters: Vec<u8>,
}

impl Letters {
    /// Generates the letters (1 MiB).
    pub fn new() -> Self {
        let letters = (0..LETTERS_LEN as u64)
            .map(|k| b'a' + (rnd(4, k) % 26) as u8)
            .collect();
        Self { letters }
    }

    /// All the letters, [`LETTERS_LEN`] bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.letters
    }
}

impl Default for Letters {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Letters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Letters")
            .field("len", &self.letters.len())
            .finish()
    }
}

#[inline]
fn w3_global_index(i: u64, j: u64) -> u64 {
    i.wrapping_mul(W3_STRINGS_PER_ARRAY as u64).wrapping_add(j)
}

#[inline]
fn w3_len(g: u64) -> usize {
    5 + (rnd(5, g) % 36) as usize
}

/// String `j` of W3 array `i`: with `g = i * 100000 + j`, the `5 + rnd(5, g) % 36`
/// letters at `rnd(6, g) % (1 Mi - 40)`.
#[inline]
pub fn w3_string(letters: &Letters, i: u64, j: u64) -> &[u8] {
    let g = w3_global_index(i, j);
    let len = w3_len(g);
    let off = (rnd(6, g) % (LETTERS_LEN - 40) as u64) as usize;
    &letters.as_slice()[off..off + len]
}

/// The [`W3_STRINGS_PER_ARRAY`] strings of W3 array `i`, in order.
pub fn w3_strings(letters: &Letters, i: u64) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
    (0..W3_STRINGS_PER_ARRAY).map(move |j| w3_string(letters, i, j as u64))
}

/// Total length in bytes of the strings of W3 array `i` (no separators).
pub fn w3_array_bytes(i: u64) -> usize {
    (0..W3_STRINGS_PER_ARRAY as u64)
        .map(|j| w3_len(w3_global_index(i, j)))
        .sum()
}

/// CRC-32 (zlib's) of the strings joined by `"\n"` (no trailing separator).
///
/// Strings and separators are gathered in a 64 KiB scratch buffer, and the
/// hasher is updated once per full buffer rather than once per string.
pub fn checksum_strings<'a>(strings: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    const SCRATCH: usize = 64 << 10;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; SCRATCH];
    let mut len = 0;
    let mut first = true;
    for s in strings {
        let need = s.len() + usize::from(!first);
        if len + need > SCRATCH {
            hasher.update(&buf[..len]);
            len = 0;
            if need > SCRATCH {
                // A string larger than the scratch buffer goes straight through.
                if !first {
                    hasher.update(b"\n");
                }
                hasher.update(s);
                first = false;
                continue;
            }
        }
        if !first {
            buf[len] = b'\n';
            len += 1;
        }
        buf[len..len + s.len()].copy_from_slice(s);
        len += s.len();
        first = false;
    }
    hasher.update(&buf[..len]);
    hasher.finalize()
}

/// [`checksum_strings`] of a `StringArray`'s entries (nulls as empty
/// strings), the same value, computed from the array's own buffers: each
/// string is copied into a scratch buffer by one fixed 48-byte copy (the
/// strings of the workloads are at most 40 bytes) followed by its newline,
/// and the scratch buffer is checksummed in 64 KiB blocks.
pub fn checksum_string_array(a: &mempool_arrays::StringArray) -> u32 {
    const SCRATCH: usize = 64 << 10;
    const WIDE: usize = 48;
    let (offsets, data, validity) = a.parts();
    let offsets: &[u64] = offsets
        .typed()
        .expect("a StringArray's offsets are aligned u64s");
    let data = data.as_slice();
    let mut hasher = crc32fast::Hasher::new();
    // Room for a full block plus one more string (wide copy) and its newline.
    let mut buf = vec![0u8; SCRATCH + WIDE + 1];
    let mut pos = 0;
    let mut start = offsets.first().map_or(0, |&o| o as usize);
    for (i, &end) in offsets.iter().skip(1).enumerate() {
        // Flushing before a string (not after its newline) keeps the last
        // newline in the buffer, to be left out at the end.
        if pos >= SCRATCH {
            hasher.update(&buf[..pos]);
            pos = 0;
        }
        let end = end as usize;
        let n = if validity.is_some_and(|v| !v.get(i)) {
            0
        } else {
            end - start
        };
        if n <= WIDE && start + WIDE <= data.len() {
            let src: &[u8; WIDE] = data[start..start + WIDE].try_into().expect("WIDE bytes");
            let dst: &mut [u8; WIDE] = (&mut buf[pos..pos + WIDE]).try_into().expect("WIDE bytes");
            *dst = *src;
            pos += n;
        } else {
            if pos + n + 1 > buf.len() {
                hasher.update(&buf[..pos]);
                pos = 0;
            }
            if n + 1 > buf.len() {
                hasher.update(&data[start..start + n]);
            } else {
                buf[pos..pos + n].copy_from_slice(&data[start..start + n]);
                pos += n;
            }
        }
        buf[pos] = b'\n';
        pos += 1;
        start = end;
    }
    // Every string was followed by a newline; the joined form has none after
    // the last one.
    pos = pos.saturating_sub(1);
    hasher.update(&buf[..pos]);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w1_check_values() {
        let pool = F64Pool::new();
        assert_eq!(checksum_f64(w1_value(&pool, 0)), 224_933_626_428_951_265);
        assert_eq!(checksum_f64(w1_value(&pool, 1)), 18_446_203_099_458_692_439);
    }

    #[test]
    fn pool_values_in_unit_interval() {
        let pool = F64Pool::new();
        assert_eq!(pool.as_slice().len(), POOL_LEN);
        assert!(pool.as_slice().iter().all(|&x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn checksum_f64_matches_naive_sum() {
        let pool = F64Pool::new();
        for n in [0, 1, 3, 4, 5, 1000, 1003] {
            let a = &pool.as_slice()[7..7 + n];
            let naive = a.iter().fold(0u64, |s, x| s.wrapping_add(x.to_bits()));
            assert_eq!(checksum_f64(a), naive, "n = {n}");
        }
    }

    #[test]
    fn perm_check_values() {
        let p = perm(1024, W1_GET_STREAM);
        assert_eq!(&p[..5], &[408, 819, 364, 501, 252]);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..1024));
    }

    #[test]
    fn w2_value_layout() {
        let v = w2_value(0x0102_0304_0506_0708);
        assert_eq!(&v[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&v[96..], &[8, 7, 6, 5]);
        assert_eq!(w2_value(0), [0u8; 100]);
    }

    #[test]
    fn w5_value_layout() {
        let k = 0x0102_0304_0506_0708;
        let v = w5_value(k);
        assert_eq!(v.len(), 1000);
        assert_eq!(v[..100], w2_value(k));
        assert_eq!(&v[992..], &[8, 7, 6, 5, 4, 3, 2, 1]);
        let mut odd = [0u8; 13];
        fill_le_repeated(k, &mut odd);
        assert_eq!(odd[..], w2_value(k)[..13]);
    }

    #[test]
    fn w3_check_values() {
        let letters = Letters::new();
        assert!(letters.as_slice().iter().all(u8::is_ascii_lowercase));
        assert_eq!(checksum_strings(w3_strings(&letters, 0)), 281_173_260);
        assert_eq!(checksum_strings(w3_strings(&letters, 5)), 1_945_004_489);
        for j in 0..1000 {
            assert!((5..=40).contains(&w3_string(&letters, 3, j).len()));
        }
        let total: usize = w3_strings(&letters, 2).map(<[u8]>::len).sum();
        assert_eq!(total, w3_array_bytes(2));
    }

    #[test]
    fn checksum_string_array_matches_checksum_strings() {
        let letters = Letters::new();
        let long = vec![b'y'; 300];
        let huge = vec![b'z'; 100_000];
        let mut strings: Vec<Option<&[u8]>> =
            w3_strings(&letters, 2).take(3000).map(Some).collect();
        strings.insert(5, None);
        strings.insert(0, Some(b""));
        strings.insert(100, Some(&long));
        strings.insert(2000, Some(&huge));
        strings.push(None);
        let a = mempool_arrays::StringArray::from_iter(
            strings
                .iter()
                .map(|s| s.map(|b| std::str::from_utf8(b).unwrap())),
        );
        let want = checksum_strings(strings.iter().map(|s| s.unwrap_or_default()));
        assert_eq!(checksum_string_array(&a), want);
        // A slice, whose offsets do not start at 0.
        let part = a.slice(7, 50);
        let want = checksum_strings(strings[7..57].iter().map(|s| s.unwrap_or_default()));
        assert_eq!(checksum_string_array(&part), want);
        let empty = mempool_arrays::StringArray::from(Vec::<Option<&str>>::new());
        assert_eq!(checksum_string_array(&empty), crc32fast::hash(b""));
        // The workload's check values.
        let w3 = |i| {
            mempool_arrays::StringArray::from_iter_values(
                w3_strings(&letters, i).map(|b| std::str::from_utf8(b).unwrap()),
            )
        };
        assert_eq!(checksum_string_array(&w3(0)), 281_173_260);
        assert_eq!(checksum_string_array(&w3(5)), 1_945_004_489);
    }

    #[test]
    fn checksum_strings_matches_joined() {
        let letters = Letters::new();
        let long = vec![b'x'; 100_000];
        let mut strings: Vec<&[u8]> = w3_strings(&letters, 1).take(5000).collect();
        strings.insert(17, &long);
        strings.insert(0, b"");
        strings.push(&long);
        let joined = strings.join(&b'\n');
        assert_eq!(
            checksum_strings(strings.iter().copied()),
            crc32fast::hash(&joined)
        );
        assert_eq!(checksum_strings(std::iter::empty()), crc32fast::hash(b""));
    }
}
