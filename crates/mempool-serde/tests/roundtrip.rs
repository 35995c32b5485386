//! Every fast format and the serde fallback round-trip, owned and mapped.

mod common;

use std::collections::BTreeMap;

use common::{roundtrip, Borrows};
use mempool_arrays::{Bitmap, BooleanArray, MemoryKind, MemoryUsage, PrimitiveArray, StringArray};
use mempool_serde::{
    decode, encode, read_file, read_file_mapped, Frame, FrameError, FrameType, PodElement,
    ReadOptions, Serde, TypeName,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Row {
    values: [f64; 75],
}

mempool_serde::type_name!(Row = "roundtrip::Row");
impl PodElement for Row {}

impl Borrows for Vec<Row> {
    fn account_frame_buffers(&self, _: &mut MemoryUsage) -> bool {
        false
    }
}

fn tricky_strings() -> Vec<Option<String>> {
    vec![
        None,
        Some(String::new()),
        Some("foo~^å&".into()),
        Some("plain".into()),
        Some("日本語".into()),
        Some(String::new()),
        None,
    ]
}

#[test]
fn string_array_roundtrips() {
    roundtrip(&StringArray::empty());
    roundtrip(&StringArray::from(Vec::<&str>::new()));
    roundtrip(&StringArray::from(tricky_strings()));
    roundtrip(&StringArray::from(vec![None::<&str>]));
    roundtrip(&StringArray::from(vec![""]));
    // A slice whose offsets do not start at zero and whose validity does not
    // start on a byte.
    let big = StringArray::from(
        (0..100)
            .map(|i| (i % 7 != 0).then(|| format!("s{i}")))
            .collect::<Vec<_>>(),
    );
    roundtrip(&big.slice(13, 50));
}

#[test]
fn vec_of_strings_roundtrip() {
    roundtrip(&Vec::<String>::new());
    roundtrip(&vec!["foo~^å&".to_string(), String::new(), "x".into()]);
    roundtrip(&Vec::<Option<String>>::new());
    roundtrip(&tricky_strings());
    roundtrip(&"foo~^å&".to_string());
    roundtrip(&String::new());
}

#[test]
fn primitives_roundtrip() {
    roundtrip(&Vec::<f64>::new());
    roundtrip(&vec![1.5f64, -0.0, f64::MAX, f64::MIN_POSITIVE]);
    roundtrip(&vec![1u8, 2, 3]);
    roundtrip(&PrimitiveArray::from(vec![i64::MIN, 0, i64::MAX]));
    roundtrip(&PrimitiveArray::<u16>::default());
    roundtrip(&PrimitiveArray::from((0..1000u32).collect::<Vec<_>>()).slice(3, 500));
    roundtrip(&BooleanArray::from(vec![true, false, true]));
    roundtrip(&BooleanArray::from(Vec::<bool>::new()));
    let bits: Bitmap = (0..77).map(|i| i % 3 == 0).collect();
    roundtrip(&BooleanArray::new(bits.slice(5, 60)));
}

#[test]
fn hundred_structs_of_75_f64() {
    let rows: Vec<Row> = (0..100)
        .map(|i| Row {
            values: std::array::from_fn(|j| (i * 75 + j) as f64 * 0.5),
        })
        .collect();
    roundtrip(&rows);
    let frame = roundtrip(&PrimitiveArray::from(rows.clone()));
    let back: PrimitiveArray<Row> = decode(&frame).unwrap();
    assert_eq!(back[99].values[74], (99 * 75 + 74) as f64 * 0.5);
}

#[test]
fn serde_fallback_roundtrips() {
    let m: BTreeMap<String, Vec<(u32, Option<String>)>> = [
        ("a".to_string(), vec![(1, None), (2, Some("two".into()))]),
        ("".to_string(), vec![]),
    ]
    .into();
    roundtrip(&Serde(m));
    roundtrip(&Serde(()));
    roundtrip(&Serde(Some(3.5f32)));
}

#[test]
fn mapped_arrays_borrow_the_map_and_copied_ones_one_heap_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.frame");
    let a = StringArray::from(tricky_strings());
    mempool_serde::write_file(&a, &path, false).unwrap();
    // SAFETY: the file must not change while mapped:
    // - it is in this test's private temporary directory, and the only later
    //   write of that name (below) renames a new file over it, which leaves
    //   the mapped file's bytes as they are.
    let mapped: StringArray = unsafe { read_file_mapped(&path) }.unwrap();
    let (offsets, data, _) = mapped.parts();
    assert_eq!(offsets.memory_kind(), MemoryKind::Mapped);
    assert!(offsets.shares_owner(data), "sections are slices of one map");
    let copied: StringArray = read_file(&path).unwrap();
    let (offsets, data, _) = copied.parts();
    assert_eq!(offsets.memory_kind(), MemoryKind::Heap);
    assert!(
        offsets.shares_owner(data),
        "sections are slices of one copy"
    );
    assert_eq!(copied, mapped);

    mempool_serde::write_file(&PrimitiveArray::from(vec![1.0f64; 1000]), &path, false).unwrap();
    // SAFETY: as above:
    // - a new file in the private directory, never written after its rename.
    let f: PrimitiveArray<f64> = unsafe { read_file_mapped(&path) }.unwrap();
    assert_eq!(f.buffer().memory_kind(), MemoryKind::Mapped);
    assert_eq!(f.buffer().as_slice().as_ptr() as usize % 64, 0);
    let g: PrimitiveArray<f64> = read_file(&path).unwrap();
    assert_eq!(g.buffer().memory_kind(), MemoryKind::Heap);
    assert_eq!(g.buffer().as_slice().as_ptr() as usize % 64, 0);
    assert_eq!(f, g);
    // The first map still reads the file it mapped.
    assert_eq!(mapped, a);
}

/// A user type with a declared name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

/// The same fields as `Reading`, under another name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Forecast {
    sensor: String,
    value: f64,
}

mempool_serde::type_name!(Reading = "weather::Reading", Forecast = "weather::Forecast");

/// The type name a frame of `value` carries.
fn frame_name<T: mempool_serde::MmWrite>(value: &T) -> String {
    let frame = encode(value).unwrap();
    Frame::parse(&frame, &ReadOptions::default())
        .unwrap()
        .type_name()
        .to_owned()
}

#[test]
fn a_user_type_with_a_declared_name_roundtrips() {
    let r = Reading {
        sensor: "north".into(),
        value: -3.25,
    };
    assert_eq!(Reading::name(), "weather::Reading");
    assert_eq!(frame_name(&Serde(r.clone())), "Serde<weather::Reading>");
    roundtrip(&Serde(r.clone()));
    roundtrip(&Serde(vec![Some(r.clone()), None]));
    let pair: BTreeMap<String, (Reading, u8)> = [("k".to_string(), (r, 7))].into();
    assert_eq!(
        frame_name(&Serde(pair.clone())),
        "Serde<BTreeMap<String,(weather::Reading,u8)>>"
    );
    roundtrip(&Serde(pair));
}

#[test]
fn two_types_of_one_shape_have_two_names() {
    assert_ne!(Reading::name(), Forecast::name());
    assert_ne!(
        Serde::<Reading>::type_name(),
        Serde::<Forecast>::type_name()
    );
    let frame = encode(&Serde(Reading {
        sensor: "s".into(),
        value: 1.0,
    }))
    .unwrap();
    // Same postcard bytes, yet a `Forecast` does not read a `Reading`.
    match decode::<Serde<Forecast>>(&frame) {
        Err(FrameError::TypeMismatch { expected, found }) => {
            assert_eq!(expected, "Serde<weather::Forecast>");
            assert_eq!(found, "Serde<weather::Reading>");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    assert_ne!(<Vec<u32>>::name(), <Vec<i32>>::name());
    assert_ne!(
        Serde::<(u8, u16)>::type_name(),
        Serde::<(u16, u8)>::type_name()
    );
}

/// The names written into frames are fixed strings, asserted literally: a
/// change of compiler or of std's module layout cannot change them.
#[test]
fn frame_type_names_are_fixed_strings() {
    let m: BTreeMap<String, u32> = [("a".to_string(), 1)].into();
    assert_eq!(frame_name(&Serde(m)), "Serde<BTreeMap<String,u32>>");
    assert_eq!(
        Serde::<BTreeMap<String, u32>>::type_name(),
        "Serde<BTreeMap<String,u32>>"
    );
    assert_eq!(frame_name(&Serde(())), "Serde<()>");
    assert_eq!(frame_name(&Serde(Some(3.5f32))), "Serde<Option<f32>>");
    assert_eq!(
        frame_name(&Serde(vec![(1u64, "x".to_string())])),
        "Serde<Vec<(u64,String)>>"
    );
    assert_eq!(frame_name(&vec![1.0f64]), "Vec<f64>");
    assert_eq!(frame_name(&vec![0u128]), "Vec<u128>");
    assert_eq!(
        frame_name(&PrimitiveArray::from(vec![1i16])),
        "PrimitiveArray<i16>"
    );
    assert_eq!(
        frame_name(&vec![Row { values: [0.0; 75] }]),
        "Vec<roundtrip::Row>"
    );
    assert_eq!(
        PrimitiveArray::<Row>::type_name(),
        "PrimitiveArray<roundtrip::Row>"
    );
}

#[test]
fn wrong_type_names_both_types() {
    let frame = encode(&StringArray::from(vec!["a"])).unwrap();
    match decode::<PrimitiveArray<f64>>(&frame) {
        Err(FrameError::TypeMismatch { expected, found }) => {
            assert_eq!(expected, "PrimitiveArray<f64>");
            assert_eq!(found, "StringArray");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let frame = encode(&vec![1u32]).unwrap();
    assert!(matches!(
        decode::<Vec<i32>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    ));
    assert!(matches!(
        decode::<Vec<Row>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    ));
    let msg = decode::<String>(&frame).unwrap_err().to_string();
    assert!(msg.contains("Vec<u32>") && msg.contains("String"), "{msg}");
}

#[test]
fn corrupt_body_is_a_checksum_error_and_lazy_utf8_is_caught() {
    let a = StringArray::from(vec!["abc", "de"]);
    let mut bytes = encode(&a).unwrap().to_vec();
    let last = bytes.len() - 1; // inside the data section
    bytes[last] = 0xff; // invalid UTF-8
    let buf = mempool_arrays::Buffer::copy_aligned(&bytes);
    assert!(matches!(
        decode::<StringArray>(&buf),
        Err(FrameError::BodyChecksum { .. })
    ));
    let opts = mempool_serde::ReadOptions {
        verify_checksum: false,
    };
    let unchecked: StringArray = mempool_serde::decode_with(&buf, &opts).unwrap();
    assert!(unchecked.try_value(1).is_err());
    assert!(unchecked.validate_full().is_err());
    assert!(decode_with_vec_string_fails(&a));
}

fn decode_with_vec_string_fails(a: &StringArray) -> bool {
    let frame = encode(a).unwrap();
    matches!(
        decode::<Vec<String>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    )
}
