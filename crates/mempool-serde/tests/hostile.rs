//! Decoders against untrusted bytes: truncations, byte flips, random bytes and
//! hostile frames with valid checksums. Every case must give an error (or a
//! value whose elements can all be read), never a panic.

use std::borrow::Cow;

use mempool_arrays::{Buffer, PrimitiveArray, StringArray};
use mempool_serde::fuzzing::decode_all_types;
use mempool_serde::{
    decode, decode_with, encode, FrameType, MmRead, MmWrite, ReadOptions, Result, SectionReader,
    SectionWriter, Serde,
};
use proptest::prelude::*;

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn strings() -> impl Strategy<Value = Vec<Option<String>>> {
    prop::collection::vec(prop::option::of(".{0,12}"), 0..20)
}

/// Frames of every type, built from random values.
fn any_frame() -> impl Strategy<Value = (Buffer, &'static str)> {
    prop_oneof![
        strings().prop_map(|v| (encode(&StringArray::from(v)).unwrap(), "StringArray")),
        strings().prop_map(|v| (encode(&v).unwrap(), "Vec<Option<String>>")),
        prop::collection::vec(".{0,8}", 0..10).prop_map(|v| (encode(&v).unwrap(), "Vec<String>")),
        prop::collection::vec(any::<f64>(), 0..40).prop_map(|v| (
            encode(&PrimitiveArray::from(v)).unwrap(),
            "PrimitiveArray<f64>"
        )),
        prop::collection::vec(any::<u32>(), 0..40).prop_map(|v| (encode(&v).unwrap(), "Vec<u32>")),
        ".{0,30}".prop_map(|s| (encode(&s).unwrap(), "String")),
        prop::collection::vec((".{0,5}", any::<u64>()), 0..8)
            .prop_map(|v| (encode(&Serde(v)).unwrap(), "Serde")),
    ]
}

fn decode_as_named(frame: &Buffer, name: &str, opts: &ReadOptions) -> bool {
    match name {
        "StringArray" => decode_with::<StringArray>(frame, opts).is_ok(),
        "Vec<Option<String>>" => decode_with::<Vec<Option<String>>>(frame, opts).is_ok(),
        "Vec<String>" => decode_with::<Vec<String>>(frame, opts).is_ok(),
        "PrimitiveArray<f64>" => decode_with::<PrimitiveArray<f64>>(frame, opts).is_ok(),
        "Vec<u32>" => decode_with::<Vec<u32>>(frame, opts).is_ok(),
        "String" => decode_with::<String>(frame, opts).is_ok(),
        _ => decode_with::<Serde<Vec<(String, u64)>>>(frame, opts).is_ok(),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn truncation_is_an_error((frame, name) in any_frame(), cut in any::<prop::sample::Index>()) {
        let len = cut.index(frame.len());
        let short = frame.slice(0, len);
        prop_assert!(!decode_as_named(&short, name, &ReadOptions::default()));
        decode_all_types(&short);
    }

    #[test]
    fn any_byte_flip_is_detected((frame, name) in any_frame(), at in any::<prop::sample::Index>(), x in 1u8..) {
        let mut bytes = frame.to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= x;
        let flipped = Buffer::copy_aligned(&bytes);
        prop_assert!(!decode_as_named(&flipped, name, &ReadOptions::default()), "flip at {} undetected", i);
        // Without the checksum the flip may decode; it must not panic.
        decode_all_types(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        decode_all_types(&bytes);
    }

    #[test]
    fn random_bytes_after_a_real_header_never_panic((frame, _name) in any_frame(), tail in prop::collection::vec(any::<u8>(), 0..300), keep in 0usize..200) {
        let mut bytes = frame.to_vec();
        bytes.truncate(keep.min(bytes.len()));
        bytes.extend_from_slice(&tail);
        decode_all_types(&bytes);
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
        impl MmRead for $name {
            fn read_sections(_: &mut SectionReader<'_>) -> Result<Self> {
                unreachable!("only written")
            }
        }
    };
}

hostile!(HostileStrings, "StringArray");
hostile!(HostileVecStrings, "Vec<Option<String>>");
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
    #![proptest_config(config())]

    #[test]
    fn hostile_frames_with_valid_checksums(sections in prop::collection::vec(section(), 0..6)) {
        for frame in [
            encode(&HostileStrings(sections.clone())).unwrap(),
            encode(&HostileVecStrings(sections.clone())).unwrap(),
            encode(&HostileF64(sections.clone())).unwrap(),
            encode(&HostileBool(sections.clone())).unwrap(),
        ] {
            prop_assert!(decode_all_types(&frame) <= 2);
            if let Ok(a) = decode::<StringArray>(&frame) {
                for i in 0..a.len() {
                    let _ = a.try_value(i);
                    let _ = a.value_bytes(i);
                }
            }
        }
    }
}

#[test]
fn huge_claimed_lengths_allocate_nothing() {
    // A bitmap claiming 2^60 bits, offsets claiming 2^61 strings: errors.
    let meta_len = postcard::to_stdvec(&(1u64 << 60)).unwrap();
    let frame = encode(&HostileBool(vec![meta_len, vec![0; 8]])).unwrap();
    assert!(decode::<mempool_arrays::BooleanArray>(&frame).is_err());
    let frame = encode(&HostileStrings(vec![
        vec![0],
        (1u64 << 61).to_le_bytes().to_vec(),
        vec![],
    ]))
    .unwrap();
    assert!(decode::<StringArray>(&frame).is_err());
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
            mempool_serde::Serde::<Vec<u64>>::type_name()
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
