//! Compressed frames: values of several types through `compress_frame` and
//! `decompress_frame` come back equal; compressible data gets smaller; and
//! `decompress_frame` against untrusted bytes — random bytes, random payloads
//! behind a valid header, truncations, byte flips (stale and resealed),
//! overwritten words, hostile lengths — gives a typed error or the frame
//! bytes, never a panic, and never allocates for a length it did not check.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{mutation, proptest_config, roundtrip, Borrows, Mutation};
use mempool_arrays::{Buffer, Column, PooledArray, PrimitiveArray, StringArray, Table};
use mempool_serde::fuzzing::{decode_compressed, reseal_compressed, FUZZ_MAX_RAW_LEN};
use mempool_serde::{
    compress_frame, decode, decompress_frame, encode, is_compressed, Codec, EncodedFrame,
    FrameError, MmRead, MmWrite, ReadOptions, COMPRESSED_HEADER_LEN, COMPRESSED_MAGIC, MAGIC,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand_like::Rnd;

/// Cases per property test.
const CASES: u32 = 2000;
/// Strings in the W3-like string array (DESIGN.md's W3: ASCII letters,
/// lengths 5..40, cut from a pool of letters).
const W3_STRINGS: u64 = 20_000;

/// The global allocator, counting the largest allocation each thread asked
/// for since its last [`largest_allocation_during`] began: shows that
/// rejecting a hostile length allocates nothing of that size.
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: during thread teardown the slot may be gone; then nothing
    // is recorded (no test is measuring then).
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are this allocator's:
// - `note` only updates a const-initialized thread-local `Cell` (no
//   allocation, no reentrancy, no unwinding).
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract for
        // `layout`, which is `System::alloc`'s:
        // - `layout` has a non-zero size.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`:
        // - `layout` has a non-zero size.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract:
        // - `ptr` was allocated by this allocator, that is by `System`, with
        //   `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract:
        // - `ptr` was allocated by `System` with `layout`;
        // - `new_size` is non-zero and, rounded up to `layout.align()`, does
        //   not overflow `isize`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// Runs `f` and returns its result with the largest allocation this thread
/// made during it.
fn largest_allocation_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

/// Seeded pseudo-random numbers for the data generators (no dependency).
mod rand_like {
    /// SplitMix64, seeded.
    pub(crate) struct Rnd(pub(crate) u64);

    impl Rnd {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }
}

/// W3-like strings: ASCII letters, lengths 5..40, slices of a seeded pool of
/// 1 Mi letters.
fn w3_strings(n: u64) -> StringArray {
    let mut rnd = Rnd(42);
    let letters: Vec<u8> = (0..1 << 20)
        .map(|_| b'a' + (rnd.next() % 26) as u8)
        .collect();
    let strings: Vec<&str> = (0..n)
        .map(|_| {
            let len = 5 + (rnd.next() % 36) as usize;
            let off = (rnd.next() % (letters.len() as u64 - 40)) as usize;
            // ASCII letters are UTF-8.
            std::str::from_utf8(&letters[off..off + len]).unwrap()
        })
        .collect();
    StringArray::from_iter_values(strings)
}

fn compress(value: &(impl MmWrite + ?Sized)) -> Vec<u8> {
    let frame = EncodedFrame::new(value).unwrap();
    compress_frame(&frame, Codec::Lz4)
        .unwrap()
        .as_slice()
        .to_vec()
}

/// Checks the plain frame of `value` every way ([`roundtrip`]), then
/// compresses it, decompresses it (with the raw length as the exact limit),
/// and checks the bytes equal the frame's, the buffer is 64-aligned, the
/// value decodes equal, and one byte less of limit is refused. Returns the
/// container.
fn compressed_roundtrip<T>(value: &T) -> Vec<u8>
where
    T: MmWrite + MmRead + PartialEq + std::fmt::Debug + Borrows,
{
    let frame = roundtrip(value);
    let container = compress(value);
    assert!(is_compressed(&container));
    assert!(!is_compressed(&frame));
    let raw_len = frame.len() as u64;
    let raw = decompress_frame(&container, raw_len).expect("decompress");
    assert_eq!(
        raw.as_slice(),
        frame.as_slice(),
        "decompressed bytes differ"
    );
    assert_eq!(raw.as_slice().as_ptr() as usize % 64, 0, "not 64-aligned");
    let back: T = decode(&raw).expect("decode the decompressed frame");
    assert_eq!(&back, value);
    assert!(matches!(
        decompress_frame(&container, raw_len - 1),
        Err(FrameError::LimitExceeded { value, max, .. }) if value == raw_len && max == raw_len - 1
    ));
    // A plain frame is not a container.
    assert!(matches!(
        decompress_frame(&frame, u64::MAX),
        Err(FrameError::BadMagic { expected, found }) if expected == COMPRESSED_MAGIC && found == MAGIC
    ));
    container
}

#[test]
fn roundtrip_string_array() {
    compressed_roundtrip(&StringArray::from(vec![
        Some("foo~^å&"),
        None,
        Some(""),
        Some("a longer string, a longer string, a longer string"),
    ]));
    compressed_roundtrip(&StringArray::from(Vec::<Option<&str>>::new()));
    compressed_roundtrip(&w3_strings(2000));
}

#[test]
fn roundtrip_primitive_f64() {
    compressed_roundtrip(&PrimitiveArray::from(
        (0..10_000).map(|i| f64::from(i) * 0.25).collect::<Vec<_>>(),
    ));
    compressed_roundtrip(&PrimitiveArray::<f64>::from(vec![]));
    let mut rnd = Rnd(7);
    compressed_roundtrip(&PrimitiveArray::from(
        (0..5000)
            .map(|_| f64::from_bits(rnd.next()))
            .filter(|x| !x.is_nan())
            .collect::<Vec<_>>(),
    ));
}

#[test]
fn roundtrip_vec_u8() {
    compressed_roundtrip(&Vec::<u8>::new());
    compressed_roundtrip(&(0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let mut rnd = Rnd(8);
    // Incompressible: LZ4 stores such blocks as they are.
    let noise: Vec<u8> = (0..300_000).map(|_| rnd.next() as u8).collect();
    let container = compressed_roundtrip(&noise);
    assert!(container.len() < noise.len() + noise.len() / 100 + 256);
}

#[test]
fn roundtrip_composite() {
    let names: Vec<String> = (0..3000).map(|i| format!("name-{}", i % 17)).collect();
    compressed_roundtrip(&PooledArray::<StringArray>::from(names.clone()));
    let table = Table::try_new(vec![
        (
            "id".into(),
            Column::from(PrimitiveArray::from((0..3000i64).collect::<Vec<_>>())),
        ),
        (
            "name".into(),
            Column::from(StringArray::from_iter_values(&names)),
        ),
    ])
    .unwrap();
    compressed_roundtrip(&table);
}

/// A frame that was parsed (a store that does not know its type) compresses
/// to the same container as the value it holds.
#[test]
fn a_parsed_frame_compresses_like_its_value() {
    let a = w3_strings(500);
    let frame = mempool_serde::Frame::parse(&encode(&a).unwrap(), &ReadOptions::default()).unwrap();
    let from_frame = compress_frame(&EncodedFrame::from_frame(&frame), Codec::Lz4).unwrap();
    assert_eq!(from_frame.as_slice(), compress(&a).as_slice());
}

#[test]
fn compressible_strings_get_smaller() {
    let repetitive =
        StringArray::from_iter_values((0..20_000).map(|i| format!("category-{:03}", i % 100)));
    let raw = EncodedFrame::new(&repetitive).unwrap().len();
    let compressed = compress(&repetitive).len();
    assert!(compressed * 4 < raw, "{compressed} of {raw}");
    // W3's random letters compress little (LZ4 removes repeats, not the skew
    // of 26 letters in 256 byte values), but the offsets do.
    let w3 = w3_strings(W3_STRINGS);
    let raw = EncodedFrame::new(&w3).unwrap().len();
    let compressed = compress(&w3).len();
    assert!(compressed < raw, "{compressed} of {raw}");
}

/// The header bytes of a container for `payload` with the given fields,
/// resealed (both checksums valid).
fn container_with(raw_len: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; COMPRESSED_HEADER_LEN];
    b[0..8].copy_from_slice(&COMPRESSED_MAGIC);
    b[8..10].copy_from_slice(&1u16.to_le_bytes());
    b[10..12].copy_from_slice(&Codec::Lz4.id().to_le_bytes());
    b[16..24].copy_from_slice(&raw_len.to_le_bytes());
    b[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    b.extend_from_slice(payload);
    assert!(reseal_compressed(&mut b));
    b
}

/// Raw lengths past the limit, or past what the payload can decompress to,
/// are refused from the header: no allocation of their size is even tried.
#[test]
fn huge_raw_lengths_are_refused_before_allocating() {
    let payload = &compress(&vec![7u8; 1000])[COMPRESSED_HEADER_LEN..];
    let cases = [
        (1u64 << 40, 1u64 << 30, "limit"),
        (u64::MAX, u64::MAX, "expansion"),
        (1 << 40, u64::MAX, "expansion"),
        (payload.len() as u64 * 255 + 1, u64::MAX, "expansion"),
    ];
    for (raw_len, max, why) in cases {
        let bytes = container_with(raw_len, payload);
        let (r, largest) = largest_allocation_during(|| decompress_frame(&bytes, max));
        match (why, r) {
            ("limit", Err(FrameError::LimitExceeded { value, max: m, .. })) => {
                assert_eq!((value, m), (raw_len, max));
            }
            ("expansion", Err(FrameError::BadField { field, value, .. })) => {
                assert_eq!((field, value), ("raw length", raw_len));
            }
            (_, other) => panic!("raw length {raw_len}, limit {max}: {other:?}"),
        }
        assert!(largest < 4096, "allocated {largest} bytes for {raw_len}");
    }
    // Within both bounds but a lie: the raw length is allocated (bounded by
    // 255 times the payload), and the payload decompresses to less.
    let raw_len = payload.len() as u64 * 255;
    let bytes = container_with(raw_len, payload);
    let (r, largest) = largest_allocation_during(|| decompress_frame(&bytes, u64::MAX));
    assert!(
        matches!(
            r,
            Err(FrameError::BadField {
                field: "raw length",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(largest as u64 <= (raw_len + 64).max(1 << 20) + (1 << 20));
}

/// A frame whose payload decompresses to more than its raw length stops
/// there, before writing past the buffer.
#[test]
fn a_payload_longer_than_the_raw_length_is_refused() {
    let v = vec![3u8; 100_000];
    let container = compress(&v);
    let raw_len = EncodedFrame::new(&v).unwrap().len() as u64;
    for claimed in [0, 1, raw_len / 2, raw_len - 1, raw_len + 1] {
        let bytes = container_with(claimed, &container[COMPRESSED_HEADER_LEN..]);
        assert!(
            matches!(
                decompress_frame(&bytes, u64::MAX),
                Err(FrameError::BadField {
                    field: "raw length",
                    ..
                })
            ),
            "raw length {claimed} of {raw_len}"
        );
    }
    let bytes = container_with(raw_len, &container[COMPRESSED_HEADER_LEN..]);
    assert_eq!(bytes, container);
    assert_eq!(
        decompress_frame(&bytes, u64::MAX).unwrap(),
        encode(&v).unwrap()
    );
}

#[test]
fn header_checks() {
    let good = compress(&w3_strings(100));
    let err = |b: &[u8]| decompress_frame(b, u64::MAX).unwrap_err();
    assert!(matches!(err(&good[..63]), FrameError::Truncated { .. }));
    assert!(matches!(err(&[]), FrameError::Truncated { .. }));
    assert!(!is_compressed(&good[..7]));
    assert!(is_compressed(&good[..8]));

    let mut b = good.clone();
    b[8] = 2;
    assert!(matches!(
        err(&b),
        FrameError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));
    let mut b = good.clone();
    b[20] ^= 1;
    assert!(matches!(err(&b), FrameError::HeaderChecksum { .. }));
    let mut b = good.clone();
    b[10] = 9;
    reseal_compressed(&mut b);
    assert!(matches!(err(&b), FrameError::UnknownCodec { id: 9 }));
    for at in [12, 40, 55] {
        let mut b = good.clone();
        b[at] = 1;
        reseal_compressed(&mut b);
        assert!(
            matches!(err(&b), FrameError::BadField { .. }),
            "reserved byte {at}"
        );
    }
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        err(&b),
        FrameError::BadField {
            field: "compressed length",
            ..
        }
    ));
    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(err(&b), FrameError::BodyChecksum { .. }));
    // Not an LZ4 frame behind a valid header.
    let b = container_with(100, b"not lz4 at all");
    assert!(matches!(
        err(&b),
        FrameError::BadField {
            field: "lz4 frame magic",
            ..
        }
    ));
    // Two LZ4 frames back to back: the bytes after the first are refused.
    let one = &good[COMPRESSED_HEADER_LEN..];
    let raw_len = decompress_frame(&good, u64::MAX).unwrap().len() as u64;
    let b = container_with(raw_len, &[one, one].concat());
    assert!(matches!(
        err(&b),
        FrameError::BadField {
            field: "compressed length",
            ..
        }
    ));
    // Every error message says what to do (lower-case, with advice).
    let message = err(&container_with(100, b"\x04\x22\x4d\x18garbage")).to_string();
    assert!(
        message.starts_with("decompressing with lz4 failed"),
        "{message}"
    );
    assert!(message.contains("rewrite it"), "{message}");
}

/// Every word of the header overwritten with hostile values, checksums
/// resealed: an error (or, for the value that was there, the frame), never a
/// panic or an overflow. (A compressed length of `u64::MAX` once overflowed
/// the byte count of the truncation error.)
#[test]
fn hostile_header_words_are_errors() {
    let good = compress(&w3_strings(300));
    let raw = decompress_frame(&good, u64::MAX).unwrap();
    let words = [0, 1, 63, 64, 255, 1 << 32, 1 << 63, u64::MAX - 64, u64::MAX];
    for at in (0..56).step_by(4) {
        for &word in &words {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&word.to_le_bytes());
            for reseal in [false, true] {
                if reseal {
                    reseal_compressed(&mut b);
                }
                for max in [0, 1 << 20, u64::MAX] {
                    match decompress_frame(&b, max) {
                        Ok(bytes) => assert_eq!(bytes, raw, "word {word:#x} at {at}"),
                        Err(e) => assert!(!e.to_string().is_empty()),
                    }
                }
                let _ = decode_compressed(&b);
            }
        }
    }
}

/// A value for the property tests: the container of a string array, an f64
/// column or a u8 column (types that `decode_all_types` reads).
fn any_container() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(prop::option::of("[a-c]{0,6}|.{0,12}"), 0..40)
            .prop_map(|v| compress(&StringArray::from(v))),
        prop::collection::vec(-1e3f64..1e3, 0..60).prop_map(|v| compress(&PrimitiveArray::from(v))),
        prop::collection::vec(0u8..4, 0..600).prop_map(|v| compress(&PrimitiveArray::from(v))),
    ]
}

/// Applies `m` to a valid container: a cut is an error; a flip with stale
/// checksums is an error; the flip and an overwritten word, resealed, reach
/// the codec and give an error or frame bytes that decode or fail without a
/// panic.
fn check_container_mutation(container: &[u8], m: &Mutation) -> Result<(), TestCaseError> {
    let len = container.len();
    let cut = m.cut.index(len);
    prop_assert!(decompress_frame(&container[..cut], u64::MAX).is_err());
    prop_assert_eq!(decode_compressed(&container[..cut]), None);

    let mut flipped = container.to_vec();
    let at = m.at.index(len);
    flipped[at] ^= m.xor;
    prop_assert!(
        decompress_frame(&flipped, u64::MAX).is_err(),
        "a flip at {} of {} went undetected",
        at,
        len
    );
    if reseal_compressed(&mut flipped) {
        let _ = decode_compressed(&flipped);
    }

    let mut worded = container.to_vec();
    let at = m.word_at.index(len - 7);
    worded[at..at + 8].copy_from_slice(&m.word.to_le_bytes());
    if reseal_compressed(&mut worded) {
        let _ = decode_compressed(&worded);
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    #[test]
    fn random_bytes_are_errors(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(decompress_frame(&bytes, u64::MAX).is_err());
        prop_assert_eq!(decode_compressed(&bytes), None);
    }

    /// Random payloads behind a valid header (checksums included) reach the
    /// codec: an error or, rarely, some bytes; never a panic.
    #[test]
    fn random_payloads_never_panic(
        raw_len in prop_oneof![0u64..2000, Just(FUZZ_MAX_RAW_LEN), any::<u64>()],
        lz4_magic in any::<bool>(),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut payload = if lz4_magic { b"\x04\x22\x4d\x18".to_vec() } else { vec![] };
        payload.extend_from_slice(&tail);
        let bytes = container_with(raw_len, &payload);
        if let Ok(raw) = decompress_frame(&bytes, FUZZ_MAX_RAW_LEN) {
            prop_assert_eq!(raw.len() as u64, raw_len);
        }
        let _ = decode_compressed(&bytes);
    }

    /// Containers of real values: each decompresses and decodes as its own
    /// type (twice: with and without the checksum); mutated, never panics.
    #[test]
    fn mutated_containers_never_panic(container in any_container(), m in mutation()) {
        prop_assert_eq!(decode_compressed(&container), Some(2));
        check_container_mutation(&container, &m)?;
    }

    /// The LZ4 frame header and block headers, where the lengths are:
    /// a resealed flip in the first bytes of the payload.
    #[test]
    fn resealed_flips_in_the_lz4_headers_never_panic(
        container in any_container(),
        at in 0usize..24,
        xor in 1u8..,
    ) {
        let mut bytes = container;
        let at = (COMPRESSED_HEADER_LEN + at).min(bytes.len() - 1);
        bytes[at] ^= xor;
        reseal_compressed(&mut bytes);
        let raw = decompress_frame(&bytes, u64::MAX);
        let _ = raw.map(|b: Buffer| decode::<StringArray>(&b));
        let _ = decode_compressed(&bytes);
    }
}
