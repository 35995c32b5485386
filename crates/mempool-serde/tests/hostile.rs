//! Decoders against untrusted bytes: truncations, byte flips (with the
//! checksums left stale, and resealed so that the flip reaches the section
//! decoders), overwritten words, random bytes, and hostile frames with valid
//! checksums. Every case must give an error — or a value whose accessors can
//! all be called without a panic — never a panic.
//!
//! There is one property test per type of this file's scope (the std types,
//! the primitive and string arrays, `Serde<T>`); `hostile_composite.rs` covers
//! the composite arrays.

mod common;

use std::borrow::Cow;
use std::collections::BTreeMap;

use common::{check_value, mutation, proptest_config};
use mempool_arrays::{BooleanArray, Buffer, PrimitiveArray, StringArray};
use mempool_serde::fuzzing::{decode_all_types, reseal};
use mempool_serde::{
    decode, encode, FrameError, FrameType, MmWrite, PodElement, Result, SectionWriter, Serde,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property test.
const CASES: u32 = 2000;

/// A user struct of 75 `f64`s: the `Vec<T>` / `PrimitiveArray<T>` format of
/// plain-old-data structs.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Row {
    values: [f64; 75],
}

mempool_serde::type_name!(Row = "hostile::Row");
impl PodElement for Row {}

fn strings() -> impl Strategy<Value = Vec<Option<String>>> {
    prop::collection::vec(prop::option::of("[a-c]{0,3}|.{0,8}"), 0..16)
}

fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec(
        any::<f64>().prop_map(|x| Row {
            values: std::array::from_fn(|j| x + j as f64),
        }),
        0..3,
    )
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    #[test]
    fn primitive_f64(v in prop::collection::vec(-1e9f64..1e9, 0..40), m in mutation()) {
        check_value(&PrimitiveArray::from(v), &m)?;
    }

    #[test]
    fn primitive_u8(v in prop::collection::vec(any::<u8>(), 0..80), m in mutation()) {
        check_value(&PrimitiveArray::from(v), &m)?;
    }

    #[test]
    fn primitive_i32(v in prop::collection::vec(any::<i32>(), 0..40), cut in 0usize..5, m in mutation()) {
        let a = PrimitiveArray::from(v);
        let cut = cut.min(a.len());
        check_value(&a.slice(cut, a.len() - cut), &m)?;
    }

    #[test]
    fn primitive_row(v in rows(), m in mutation()) {
        check_value(&PrimitiveArray::from(v), &m)?;
    }

    #[test]
    fn vec_f64(v in prop::collection::vec(-1e9f64..1e9, 0..40), m in mutation()) {
        check_value(&v, &m)?;
    }

    #[test]
    fn vec_u32(v in prop::collection::vec(any::<u32>(), 0..40), m in mutation()) {
        check_value(&v, &m)?;
    }

    #[test]
    fn vec_row(v in rows(), m in mutation()) {
        check_value(&v, &m)?;
    }

    #[test]
    fn boolean_array(v in prop::collection::vec(any::<bool>(), 0..70), cut in 0usize..9, m in mutation()) {
        let a = BooleanArray::from(v);
        let cut = cut.min(a.len());
        check_value(&a.slice(cut, a.len() - cut), &m)?;
    }

    #[test]
    fn string(s in ".{0,30}", m in mutation()) {
        check_value(&s, &m)?;
    }

    #[test]
    fn vec_string(v in prop::collection::vec(".{0,8}", 0..12), m in mutation()) {
        check_value(&v, &m)?;
    }

    #[test]
    fn vec_option_string(v in strings(), m in mutation()) {
        check_value(&v, &m)?;
    }

    #[test]
    fn string_array(v in strings(), cut in 0usize..9, m in mutation()) {
        let a = StringArray::from(v);
        let cut = cut.min(a.len());
        check_value(&a.slice(cut, a.len() - cut), &m)?;
    }

    #[test]
    fn serde_pairs(v in prop::collection::vec((".{0,5}", any::<u64>()), 0..8), m in mutation()) {
        check_value(&Serde(v), &m)?;
    }

    #[test]
    fn serde_map(v in prop::collection::btree_map("[a-z]{0,4}", prop::collection::vec(prop::option::of(any::<u32>()), 0..4), 0..5), m in mutation()) {
        check_value(&Serde::<BTreeMap<String, Vec<Option<u32>>>>(v), &m)?;
    }
}

/// Frames of several types, for the tests that feed one frame to every decoder.
fn any_frame() -> impl Strategy<Value = Buffer> {
    prop_oneof![
        strings().prop_map(|v| encode(&StringArray::from(v)).unwrap()),
        strings().prop_map(|v| encode(&v).unwrap()),
        prop::collection::vec(any::<f64>(), 0..40)
            .prop_map(|v| encode(&PrimitiveArray::from(v)).unwrap()),
        prop::collection::vec(any::<bool>(), 0..40)
            .prop_map(|v| encode(&BooleanArray::from(v)).unwrap()),
        ".{0,30}".prop_map(|s| encode(&s).unwrap()),
        prop::collection::vec((".{0,5}", any::<u64>()), 0..8)
            .prop_map(|v| encode(&Serde(v)).unwrap()),
    ]
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    /// One frame, every decoder: a frame of a type in `decode_all_types`
    /// decodes exactly twice (its own type, with and without the checksum);
    /// cut, as nothing.
    #[test]
    fn every_decoder_on_cut_frames(frame in any_frame(), cut in any::<Index>()) {
        prop_assert_eq!(decode_all_types(&frame), 2);
        let short = frame.slice(0, cut.index(frame.len()));
        prop_assert_eq!(decode_all_types(&short), 0);
    }

    /// A resealed flip reaches every decoder; at most the frame's own type
    /// (and, for a flipped type name, one other) decodes it.
    #[test]
    fn every_decoder_on_resealed_flips(frame in any_frame(), at in any::<Index>(), xor in 1u8..) {
        let mut bytes = frame.to_vec();
        bytes[at.index(frame.len())] ^= xor;
        prop_assert!(decode_all_types(&bytes) <= 2);
        reseal(&mut bytes);
        prop_assert!(decode_all_types(&bytes) <= 2);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(decode_all_types(&bytes), 0);
    }

    #[test]
    fn random_bytes_after_a_real_header_never_panic(frame in any_frame(), tail in prop::collection::vec(any::<u8>(), 0..300), keep in 0usize..200) {
        let mut bytes = frame.to_vec();
        bytes.truncate(keep.min(bytes.len()));
        bytes.extend_from_slice(&tail);
        let _ = decode_all_types(&bytes);
        reseal(&mut bytes);
        let _ = decode_all_types(&bytes);
    }
}

/// A writer that claims a type name but writes arbitrary sections: frames with
/// valid checksums and hostile contents.
macro_rules! hostile {
    ($name:ident, $ty:literal) => {
        #[derive(Debug)]
        struct $name(Vec<Vec<u8>>);
        impl FrameType for $name {
            fn type_name() -> Cow<'static, str> {
                $ty.into()
            }
        }
        impl MmWrite for $name {
            fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
                for s in &self.0 {
                    w.bytes(s);
                }
                Ok(())
            }
        }
    };
}

hostile!(HostileStrings, "StringArray");
hostile!(HostileVecStrings, "Vec<String>");
hostile!(HostileVecOptStrings, "Vec<Option<String>>");
hostile!(HostileF64, "PrimitiveArray<f64>");
hostile!(HostileBool, "BooleanArray");

/// Section contents biased towards plausible values: small metadata, offsets
/// as u64s (some huge), UTF-8 and not.
fn section() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3),
        Just(vec![0u8]),
        Just(vec![1u8]),
        prop::collection::vec(prop_oneof![0u64..40, any::<u64>()], 0..12)
            .prop_map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,20}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    #[test]
    fn hostile_frames_with_valid_checksums(sections in prop::collection::vec(section(), 0..6)) {
        for frame in [
            encode(&HostileStrings(sections.clone())).unwrap(),
            encode(&HostileVecStrings(sections.clone())).unwrap(),
            encode(&HostileVecOptStrings(sections.clone())).unwrap(),
            encode(&HostileF64(sections.clone())).unwrap(),
            encode(&HostileBool(sections.clone())).unwrap(),
        ] {
            // At most the claimed type decodes, with and without the checksum.
            prop_assert!(decode_all_types(&frame) <= 2);
        }
        // Whatever decodes as a string array keeps its invariants.
        if let Ok(a) = decode::<StringArray>(&encode(&HostileStrings(sections)).unwrap()) {
            let (offsets, data, _) = a.parts();
            let offs: &[u64] = offsets.typed().unwrap();
            prop_assert_eq!(offs[0], 0);
            prop_assert!(offs.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(offs[offs.len() - 1] as usize <= data.len());
        }
    }
}

#[test]
fn vec_of_strings_reject_invalid_utf8_with_valid_checksums() {
    let offsets = [0u64, 2, 4]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect::<Vec<u8>>();
    for data in [
        b"ab\xff\xfe".to_vec(),
        b"a\xc3\xa5x".to_vec(),
        b"\xe6\x97\xa5\x80".to_vec(),
    ] {
        // 'å' (c3 a5) split by offset 2, a lone continuation byte, bytes that
        // are not UTF-8 at all.
        let sections = vec![vec![0u8], offsets.clone(), data.clone()];
        let plain = encode(&HostileVecStrings(sections.clone())).unwrap();
        match decode::<Vec<String>>(&plain) {
            Err(FrameError::Array(mempool_arrays::ArrayError::InvalidUtf8 { .. })) => {}
            other => panic!("{data:?}: expected InvalidUtf8, got {other:?}"),
        }
        let optional = encode(&HostileVecOptStrings(sections.clone())).unwrap();
        assert!(matches!(
            decode::<Vec<Option<String>>>(&optional),
            Err(FrameError::Array(
                mempool_arrays::ArrayError::InvalidUtf8 { .. }
            ))
        ));
        // The same sections as a StringArray decode (structure only), and the
        // bad string is caught without a panic.
        let a: StringArray = decode(&encode(&HostileStrings(sections)).unwrap()).unwrap();
        assert!(a.validate_full().is_err());
        assert!((0..a.len()).any(|i| a.try_value(i).is_err()));
    }
    // With a null bitmap, still rejected as a Vec<Option<String>>; a
    // Vec<String> refuses the bitmap itself.
    let sections = vec![vec![1u8], offsets.clone(), b"\xffbcd".to_vec(), vec![0b11]];
    assert!(decode::<Vec<Option<String>>>(
        &encode(&HostileVecOptStrings(sections.clone())).unwrap()
    )
    .is_err());
    let err = decode::<Vec<String>>(&encode(&HostileVecStrings(sections)).unwrap()).unwrap_err();
    assert!(err.to_string().contains("Vec<Option<String>>"), "{err}");
    // Valid UTF-8 decodes.
    let offsets = [0u64, 3, 4]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect::<Vec<u8>>();
    let ok = vec![vec![0u8], offsets, "aåb".as_bytes().to_vec()];
    assert_eq!(
        decode::<Vec<String>>(&encode(&HostileVecStrings(ok)).unwrap()).unwrap(),
        ["aå", "b"].map(String::from)
    );
}

#[test]
fn string_offsets_must_start_at_zero() {
    let offsets = [1u64, 2, 3]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect::<Vec<u8>>();
    let frame = encode(&HostileStrings(vec![vec![0], offsets, b"abc".to_vec()])).unwrap();
    assert!(matches!(
        decode::<StringArray>(&frame),
        Err(FrameError::FirstOffset {
            index: 1,
            found: 1,
            ..
        })
    ));
    assert!(decode::<Vec<String>>(&frame).is_err());
}

#[test]
fn reserved_header_bytes_must_be_zero() {
    let frame = encode(&PrimitiveArray::from(vec![1.0f64])).unwrap();
    for at in [20usize, 23, 56, 63] {
        let mut bytes = frame.to_vec();
        bytes[at] = 1;
        assert!(reseal(&mut bytes));
        let err = decode::<PrimitiveArray<f64>>(&Buffer::copy_aligned(&bytes)).unwrap_err();
        assert!(
            matches!(err, FrameError::BadField { field, .. } if field.starts_with("reserved")),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn reseal_makes_a_flip_reach_the_decoder() {
    let frame = encode(&StringArray::from(vec!["ab", "c"])).unwrap();
    let mut bytes = frame.to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 0xff;
    assert!(matches!(
        decode::<StringArray>(&Buffer::copy_aligned(&bytes)),
        Err(FrameError::BodyChecksum { .. })
    ));
    assert!(reseal(&mut bytes));
    let a: StringArray = decode(&Buffer::copy_aligned(&bytes)).unwrap();
    assert!(a.try_value(1).is_err());
    // Too short or too damaged to reseal: left alone.
    let mut short = frame.to_vec();
    short.truncate(40);
    assert!(!reseal(&mut short));
    let mut damaged = frame.to_vec();
    damaged[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let before = damaged.clone();
    assert!(!reseal(&mut damaged));
    assert_eq!(damaged, before);
}

#[test]
fn huge_claimed_lengths_allocate_nothing() {
    // A bitmap claiming 2^60 bits, offsets claiming 2^61 strings: errors.
    let meta_len = postcard::to_stdvec(&(1u64 << 60)).unwrap();
    let frame = encode(&HostileBool(vec![meta_len, vec![0; 8]])).unwrap();
    assert!(decode::<BooleanArray>(&frame).is_err());
    let frame = encode(&HostileStrings(vec![
        vec![0],
        [0u64, 1u64 << 61]
            .iter()
            .flat_map(|o| o.to_le_bytes())
            .collect(),
        vec![],
    ]))
    .unwrap();
    assert!(matches!(
        decode::<StringArray>(&frame),
        Err(FrameError::Array(
            mempool_arrays::ArrayError::OffsetOutOfBounds { .. }
        ))
    ));
    // A Serde<Vec<u64>> claiming 2^40 elements.
    let mut bytes = Vec::new();
    let mut n = 1u64 << 40;
    while n >= 0x80 {
        bytes.push((n as u8) | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
    struct Raw(Vec<u8>);
    impl FrameType for Raw {
        fn type_name() -> Cow<'static, str> {
            Serde::<Vec<u64>>::type_name()
        }
    }
    impl MmWrite for Raw {
        fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
            w.bytes(&self.0);
            Ok(())
        }
    }
    let frame = encode(&Raw(bytes)).unwrap();
    assert!(decode::<Serde<Vec<u64>>>(&frame).is_err());
}
