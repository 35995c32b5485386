//! Shared test helpers: one roundtrip check for owned and mapped reads alike,
//! and the deterministic proptest configuration.

use std::fmt::Debug;

use mempool_arrays::{
    ApproxSize, BooleanArray, Buffer, MemoryUsage, NullableArray, PoolValues, PooledArray,
    PrimitiveArray, StringArray, Table,
};
use mempool_serde::fuzzing::{decode_and_exercise, reseal, Exercise};
use mempool_serde::{
    decode, decode_with, encode, map_file, read_file, read_file_mapped, read_file_mapped_with,
    read_file_with, write_file, write_frame, MmRead, MmWrite, PodElement, ReadOptions, Serde,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

/// Checksum verification on or off.
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn opts(verify_checksum: bool) -> ReadOptions {
    ReadOptions { verify_checksum }
}

/// A fixed-seed proptest configuration of `cases` cases: the runs are
/// deterministic, and no failure files are written.
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(42),
        ..proptest::test_runner::Config::default()
    }
}

/// How a decoded value holds its memory, for checking that a mapped read
/// borrows the map.
pub(crate) trait Borrows {
    /// Adds the value's buffers to `usage` and returns `true`, for a value
    /// whose buffers come from the frame (mempool-arrays types); `false` for a
    /// value that copies out of the frame (std types, `Serde<T>`) or holds no
    /// buffer at all.
    fn account_frame_buffers(&self, usage: &mut MemoryUsage) -> bool;
}

macro_rules! borrows_via_approx_size {
    ($($(#[$m:meta])* impl[$($g:tt)*] $t:ty;)*) => {$(
        impl<$($g)*> Borrows for $t {
            fn account_frame_buffers(&self, usage: &mut MemoryUsage) -> bool {
                self.account(usage);
                true
            }
        }
    )*};
}

borrows_via_approx_size! {
    impl[T: PodElement] PrimitiveArray<T>;
    impl[] BooleanArray;
    impl[] StringArray;
    impl[T: PodElement] NullableArray<T>;
    impl[P: PoolValues] PooledArray<P>;
}

impl Borrows for Table {
    fn account_frame_buffers(&self, usage: &mut MemoryUsage) -> bool {
        self.account(usage);
        self.num_columns() > 0
    }
}

macro_rules! copies_out {
    ($($t:ty),* $(,)?) => {$(
        impl Borrows for $t {
            fn account_frame_buffers(&self, _: &mut MemoryUsage) -> bool {
                false
            }
        }
    )*};
}

copies_out!(
    Vec<f64>,
    Vec<f32>,
    Vec<u8>,
    Vec<u32>,
    Vec<i64>,
    String,
    Vec<String>,
    Vec<Option<String>>,
);

impl<T> Borrows for Serde<T> {
    fn account_frame_buffers(&self, _: &mut MemoryUsage) -> bool {
        false
    }
}

/// Places to cut a frame of `len` bytes: inside the header, at its end,
/// inside the section table, in the middle, near the end.
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn cut_points(len: usize) -> Vec<usize> {
    let mut cuts = vec![
        0,
        1,
        8,
        47,
        63,
        64,
        72,
        100,
        len / 2,
        len.saturating_sub(8),
        len - 1,
    ];
    cuts.retain(|&c| c < len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Writes `value` and reads it back every way — from the encoded buffer, from
/// an unaligned copy of it, from a file copied into memory and from a
/// memory-mapped one, each with and without the checksum, from a
/// stream-written file — checking each equals `value`, that a copying read of
/// a mempool-arrays type holds no map, and that a mapped read borrows the map
/// (no heap buffer, the map's owner counted once). Cutting the frame at
/// several points is an error with and without the checksum. Returns the
/// encoded frame.
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn roundtrip<T>(value: &T) -> Buffer
where
    T: MmWrite + MmRead + PartialEq + Debug + Borrows,
{
    let frame = encode(value).expect("encode");
    let owned: T = decode(&frame).expect("decode owned");
    assert_eq!(&owned, value, "owned read differs");

    // Bytes in a plain Vec (maybe unaligned) are copied into an aligned buffer.
    let mut unaligned = vec![0u8];
    unaligned.extend_from_slice(&frame);
    let shifted = Buffer::from_vec(unaligned).slice(1, frame.len());
    let from_unaligned: T = decode(&shifted).expect("decode unaligned");
    assert_eq!(&from_unaligned, value, "unaligned read differs");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("value.frame");
    let n = write_file(value, &path, false).expect("write_file");
    assert_eq!(n as usize, frame.len());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        frame.as_slice(),
        "file bytes differ"
    );
    for verify in [true, false] {
        let copied: T = read_file_with(&path, &opts(verify)).expect("read copied");
        assert_eq!(&copied, value, "copying read differs (verify {verify})");
        let mut usage = MemoryUsage::default();
        if copied.account_frame_buffers(&mut usage) {
            assert_eq!(usage.mapped, 0, "a copying read holds a map");
            assert!(usage.heap >= frame.len(), "a copying read holds no copy");
        }
    }
    let copied: T = read_file(&path).expect("read copied, default options");
    assert_eq!(&copied, value, "copying read differs");

    // SAFETY: the file must not change while mapped:
    // - it is in this call's private temporary directory, written once by
    //   `write_file` above, and nothing writes it again before `dir` and the
    //   values mapped from it are dropped at the end of this function.
    let mapped: T = unsafe { read_file_mapped(&path) }.expect("read mapped");
    assert_eq!(&mapped, value, "mapped read differs");
    // SAFETY: as for `read_file_mapped` just above:
    // - the same file, unchanged until the end of this function.
    let unverified: T =
        unsafe { read_file_mapped_with(&path, &opts(false)) }.expect("read mapped, no checksum");
    assert_eq!(&unverified, value, "mapped read without checksum differs");
    for v in [&mapped, &unverified] {
        let mut usage = MemoryUsage::default();
        if v.account_frame_buffers(&mut usage) {
            assert_eq!(usage.heap, 0, "a mapped read holds heap buffers");
            assert_eq!(usage.mapped, frame.len(), "a mapped read holds another map");
        }
    }

    // The arrays of a mapped read are slices of the map: no heap buffer, and
    // accounting the map itself after them adds nothing.
    // SAFETY: as for `read_file_mapped` above:
    // - the same file, unchanged until the end of this function.
    let map = unsafe { map_file(&path) }.expect("map_file");
    for verify in [true, false] {
        let v: T = decode_with(&map, &opts(verify)).expect("decode the map");
        assert_eq!(&v, value, "decode of the map differs (verify {verify})");
        let mut usage = MemoryUsage::default();
        if v.account_frame_buffers(&mut usage) {
            assert_eq!(usage.heap, 0, "a mapped read holds heap buffers");
            assert_eq!(usage.mapped, map.len(), "a mapped read holds another map");
            map.account(&mut usage);
            assert_eq!(usage.mapped, map.len(), "the read does not share the map");
        }
    }

    let mut streamed = Vec::new();
    write_frame(value, &mut streamed).expect("write_frame");
    assert_eq!(streamed.as_slice(), frame.as_slice());

    for cut in cut_points(frame.len()) {
        let short = frame.slice(0, cut);
        for verify in [true, false] {
            assert!(
                decode_with::<T>(&short, &opts(verify)).is_err(),
                "a frame cut at {cut} of {} decoded (verify {verify})",
                frame.len()
            );
        }
    }
    frame
}

/// One mutation of a valid frame.
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) struct Mutation {
    /// Keep this many bytes (an index into the frame).
    pub(crate) cut: Index,
    /// Where to flip bits.
    pub(crate) at: Index,
    /// The bits to flip (non-zero).
    pub(crate) xor: u8,
    /// Where to overwrite an aligned 8-byte word after the header.
    pub(crate) word_at: Index,
    /// The word written there.
    pub(crate) word: u64,
}

#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    (
        any::<Index>(),
        any::<Index>(),
        1u8..,
        any::<Index>(),
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            Just(1 << 63),
            0u64..256,
            any::<u64>()
        ],
    )
        .prop_map(|(cut, at, xor, word_at, word)| Mutation {
            cut,
            at,
            xor,
            word_at,
            word,
        })
}

/// Applies `m` to `frame`, a valid frame of a `T`:
/// - a truncation is an error, with and without the checksum;
/// - a bit flip with the checksums left stale is an error when the checksum
///   is verified, and decodes or fails without a panic when it is not;
/// - the same flip resealed, and an overwritten word resealed, decode or fail
///   without a panic, and whatever decodes has accessors that do not panic.
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn check_mutations<T: MmRead + Exercise>(
    frame: &Buffer,
    m: &Mutation,
) -> Result<(), TestCaseError> {
    let len = frame.len();
    let short = frame.slice(0, m.cut.index(len));
    for verify in [true, false] {
        prop_assert!(
            decode_and_exercise::<T>(&short, &opts(verify)).is_err(),
            "a frame cut at {} of {len} decoded",
            short.len()
        );
    }

    let mut flipped = frame.to_vec();
    let i = m.at.index(len);
    flipped[i] ^= m.xor;
    let stale = Buffer::copy_aligned(&flipped);
    prop_assert!(
        decode_and_exercise::<T>(&stale, &opts(true)).is_err(),
        "a flip at {} of {} went undetected",
        i,
        len
    );
    let _ = decode_and_exercise::<T>(&stale, &opts(false));
    if reseal(&mut flipped) {
        let resealed = Buffer::copy_aligned(&flipped);
        for verify in [true, false] {
            let _ = decode_and_exercise::<T>(&resealed, &opts(verify));
        }
    }

    // An aligned word past the fixed header: section table entries, metadata,
    // offsets, lengths, codes.
    if len >= 72 {
        let mut worded = frame.to_vec();
        let at = 64 + m.word_at.index((len - 64) / 8) * 8;
        worded[at..at + 8].copy_from_slice(&m.word.to_le_bytes());
        prop_assert!(
            decode_and_exercise::<T>(&Buffer::copy_aligned(&worded), &opts(true)).is_err()
                || worded == frame.as_slice()
        );
        if reseal(&mut worded) {
            let _ = decode_and_exercise::<T>(&Buffer::copy_aligned(&worded), &opts(true));
        }
    }
    Ok(())
}

/// Encodes `value`, checks it decodes equal, then runs [`check_mutations`].
#[allow(dead_code, reason = "each test binary uses part of the shared helpers")]
pub(crate) fn check_value<T>(value: &T, m: &Mutation) -> Result<(), TestCaseError>
where
    T: MmWrite + MmRead + Exercise + PartialEq + Debug,
{
    let frame = encode(value).unwrap();
    let back: T = decode(&frame).unwrap();
    prop_assert_eq!(&back, value);
    check_mutations::<T>(&frame, m)
}
