//! The NullableArray, PooledArray and Table decoders against untrusted bytes:
//! truncations, byte flips, random bytes, and hostile frames with valid
//! checksums (codes at or above the pool size, wrong code widths, huge column
//! counts). Every case must give an error (or a value whose elements can all be
//! read), never a panic.

use std::borrow::Cow;

mod common;

use common::{check_value, mutation, opts, proptest_config};
use mempool_arrays::{
    ArrayError, BooleanArray, Buffer, Codes, Column, NullableArray, PoolValues, PooledArray,
    PrimitiveArray, StringArray, Table,
};
use mempool_serde::fuzzing::{decode_all_types, reseal};
use mempool_serde::{
    decode, decode_with, encode, FrameError, FrameType, MmWrite, ReadOptions, Result, SectionWriter,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property test.
const CASES: u32 = 2000;

/// A column of `kind` (0..15, the order of `Column`'s variants) from `ints`
/// and `strs`, which have the same length.
fn column(kind: u8, ints: &[i64], strs: &[Option<String>]) -> Column {
    fn cast<T: bytemuck::Pod + Send + Sync>(
        ints: &[i64],
        f: impl Fn(i64) -> T,
    ) -> PrimitiveArray<T> {
        ints.iter().map(|&i| f(i)).collect()
    }
    match kind {
        0 => BooleanArray::from(ints.iter().map(|i| i % 2 == 0).collect::<Vec<_>>()).into(),
        1 => cast(ints, |i| i as i8).into(),
        2 => cast(ints, |i| i as i16).into(),
        3 => cast(ints, |i| i as i32).into(),
        4 => cast(ints, |i| i).into(),
        5 => cast(ints, |i| i as u8).into(),
        6 => cast(ints, |i| i as u16).into(),
        7 => cast(ints, |i| i as u32).into(),
        8 => cast(ints, |i| i as u64).into(),
        9 => cast(ints, |i| i as f32).into(),
        10 => cast(ints, |i| i as f64).into(),
        11 => ints
            .iter()
            .map(|&i| (i % 3 != 0).then_some(i))
            .collect::<NullableArray<i64>>()
            .into(),
        12 => ints
            .iter()
            .map(|&i| (i % 3 != 0).then_some(i as f64))
            .collect::<NullableArray<f64>>()
            .into(),
        13 => StringArray::from(strs.to_vec()).into(),
        _ => PooledArray::from(strs.to_vec()).into(),
    }
}

/// Tables of 0..12 rows and 0..5 columns of random kinds, maybe sliced.
fn tables() -> impl Strategy<Value = Table> {
    (0usize..12)
        .prop_flat_map(|rows| {
            (
                Just(rows),
                prop::collection::vec(
                    (
                        0u8..15,
                        prop::collection::vec(any::<i64>(), rows),
                        prop::collection::vec(prop::option::of("[ab]{0,3}|.{0,4}"), rows),
                    ),
                    0..5,
                ),
                0..=rows,
            )
        })
        .prop_map(|(rows, cols, cut)| {
            let t = Table::new(
                cols.iter()
                    .enumerate()
                    .map(|(i, (kind, ints, strs))| (format!("c{i}"), column(*kind, ints, strs)))
                    .collect(),
            );
            if t.num_columns() == 0 {
                t
            } else {
                t.slice(cut, rows - cut)
            }
        })
}

/// A value of every composite type, for the tests that feed one frame to every
/// decoder.
#[derive(Debug, Clone)]
enum Composite {
    NullableF64(NullableArray<f64>),
    NullableI64(NullableArray<i64>),
    PooledStr(PooledArray<StringArray>),
    PooledU32(PooledArray<PrimitiveArray<u32>>),
    PooledF64(PooledArray<PrimitiveArray<f64>>),
    Table(Table),
}

impl Composite {
    fn frame(&self) -> Buffer {
        match self {
            Self::NullableF64(a) => encode(a),
            Self::NullableI64(a) => encode(a),
            Self::PooledStr(a) => encode(a),
            Self::PooledU32(a) => encode(a),
            Self::PooledF64(a) => encode(a),
            Self::Table(t) => encode(t),
        }
        .unwrap()
    }

    /// Whether `frame` decodes, with `opts`, to a value equal to this one.
    fn decodes_equal(&self, frame: &Buffer, opts: &ReadOptions) -> bool {
        match self {
            Self::NullableF64(a) => {
                decode_with(frame, opts).is_ok_and(|b: NullableArray<f64>| &b == a)
            }
            Self::NullableI64(a) => {
                decode_with(frame, opts).is_ok_and(|b: NullableArray<i64>| &b == a)
            }
            Self::PooledStr(a) => {
                decode_with(frame, opts).is_ok_and(|b: PooledArray<StringArray>| &b == a)
            }
            Self::PooledU32(a) => {
                decode_with(frame, opts).is_ok_and(|b: PooledArray<PrimitiveArray<u32>>| &b == a)
            }
            Self::PooledF64(a) => {
                decode_with(frame, opts).is_ok_and(|b: PooledArray<PrimitiveArray<f64>>| &b == a)
            }
            Self::Table(t) => decode_with(frame, opts).is_ok_and(|b: Table| &b == t),
        }
    }
}

fn nullable_f64() -> impl Strategy<Value = NullableArray<f64>> {
    (
        prop::collection::vec(prop::option::of(-1e9f64..1e9), 0..40),
        0usize..5,
    )
        .prop_map(|(v, cut)| {
            let a = NullableArray::from(v);
            let cut = cut.min(a.len());
            a.slice(cut, a.len() - cut)
        })
}

fn nullable_i64() -> impl Strategy<Value = NullableArray<i64>> {
    prop::collection::vec(prop::option::of(any::<i64>()), 0..40).prop_map(NullableArray::from)
}

fn pooled_str() -> impl Strategy<Value = PooledArray<StringArray>> {
    (
        prop::collection::vec(prop::option::of("[a-d]{0,2}|.{0,6}"), 0..30),
        0usize..4,
    )
        .prop_map(|(v, cut)| {
            let a = PooledArray::from(v);
            let cut = cut.min(a.len());
            a.slice(cut, a.len() - cut)
        })
}

fn pooled_u32() -> impl Strategy<Value = PooledArray<PrimitiveArray<u32>>> {
    prop::collection::vec(0u32..600, 0..300).prop_map(|v| PooledArray::from_values(&v))
}

/// A float pool (floats are not `Eq`, so built from a pool and codes), with
/// unused entries and codes wider than needed.
fn pooled_f64() -> impl Strategy<Value = PooledArray<PrimitiveArray<f64>>> {
    (
        prop::collection::vec(-1e9f64..1e9, 1..20),
        prop::collection::vec(any::<Index>(), 0..40),
        prop_oneof![Just(1usize), Just(2), Just(4)],
    )
        .prop_map(|(pool, codes, width)| {
            let codes: Vec<u32> = codes.iter().map(|c| c.index(pool.len()) as u32).collect();
            let codes = match width {
                1 => Codes::U8(codes.iter().map(|&c| c as u8).collect()),
                2 => Codes::U16(codes.iter().map(|&c| c as u16).collect()),
                _ => Codes::U32(PrimitiveArray::from(codes)),
            };
            PooledArray::new(PrimitiveArray::from(pool), codes)
        })
}

fn any_value() -> impl Strategy<Value = Composite> {
    prop_oneof![
        nullable_f64().prop_map(Composite::NullableF64),
        nullable_i64().prop_map(Composite::NullableI64),
        pooled_str().prop_map(Composite::PooledStr),
        pooled_u32().prop_map(Composite::PooledU32),
        pooled_f64().prop_map(Composite::PooledF64),
        tables().prop_map(Composite::Table),
    ]
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    #[test]
    fn nullable_array_f64(a in nullable_f64(), m in mutation()) {
        check_value(&a, &m)?;
    }

    #[test]
    fn nullable_array_i64(a in nullable_i64(), m in mutation()) {
        check_value(&a, &m)?;
    }

    #[test]
    fn pooled_string_array(a in pooled_str(), m in mutation()) {
        check_value(&a, &m)?;
    }

    #[test]
    fn pooled_primitive_f64(a in pooled_f64(), m in mutation()) {
        check_value(&a, &m)?;
    }

    #[test]
    fn pooled_primitive_u32(a in pooled_u32(), m in mutation()) {
        check_value(&a, &m)?;
    }

    #[test]
    fn table(t in tables(), m in mutation()) {
        check_value(&t, &m)?;
    }

    /// Every frame decodes, with and without the checksum, to a value equal to
    /// the one written, and as no other type.
    #[test]
    fn frames_decode_as_their_type(v in any_value()) {
        let frame = v.frame();
        prop_assert!(v.decodes_equal(&frame, &opts(true)));
        prop_assert!(v.decodes_equal(&frame, &opts(false)));
        // Exactly one type (twice: with and without the checksum) reads it.
        prop_assert_eq!(decode_all_types(&frame), 2);
    }

    #[test]
    fn random_bytes_after_a_real_header_never_panic(v in any_value(), tail in prop::collection::vec(any::<u8>(), 0..300), keep in 0usize..400) {
        let mut bytes = v.frame().to_vec();
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

hostile!(HostileNullable, "NullableArray<f64>");
hostile!(HostilePooledStr, "PooledArray<StringArray>");
hostile!(HostilePooledU32, "PooledArray<PrimitiveArray<u32>>");
hostile!(HostileTable, "Table");

fn postcard<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap()
}

fn le_u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Section contents biased towards plausible values: small metadata (flags,
/// pooled `{len, code_width}`, table `{rows, [(name, kind)]}`), codes, string
/// offsets (some huge), UTF-8 and not.
fn section() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..3),
        Just(vec![0u8]),
        Just(vec![1u8]),
        (
            prop_oneof![0u64..20, any::<u64>()],
            prop_oneof![Just(1u8), Just(2), Just(4), any::<u8>()]
        )
            .prop_map(|m| postcard(&m)),
        (
            prop_oneof![0u64..6, any::<u64>()],
            prop::collection::vec(("[ab]", prop_oneof![0u8..16, any::<u8>()]), 0..4)
        )
            .prop_map(|m| postcard(&m)),
        prop::collection::vec(0u8..8, 0..24),
        prop::collection::vec(prop_oneof![0u64..40, any::<u64>()], 0..12).prop_map(|v| le_u64s(&v)),
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,20}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    #[test]
    fn hostile_frames_with_valid_checksums(sections in prop::collection::vec(section(), 0..10)) {
        for frame in [
            encode(&HostileNullable(sections.clone())).unwrap(),
            encode(&HostilePooledStr(sections.clone())).unwrap(),
            encode(&HostilePooledU32(sections.clone())).unwrap(),
            encode(&HostileTable(sections.clone())).unwrap(),
        ] {
            prop_assert!(decode_all_types(&frame) <= 2);
        }
        // Whatever decodes keeps the arrays' invariants.
        if let Ok(t) = decode::<Table>(&encode(&HostileTable(sections.clone())).unwrap()) {
            let names: std::collections::HashSet<&str> = t.names().collect();
            prop_assert_eq!(names.len(), t.num_columns());
            for (_, c) in t.columns() {
                prop_assert_eq!(c.len(), t.num_rows());
            }
        }
        if let Ok(a) = decode::<PooledArray<StringArray>>(&encode(&HostilePooledStr(sections)).unwrap()) {
            prop_assert!(a.codes().max_code().is_none_or(|c| (c as usize) < a.pool().len()));
        }
    }
}

/// A pooled frame with the sections of a real pool but the metadata and codes
/// given as bytes.
struct RawPooled<P> {
    meta: Vec<u8>,
    codes: Vec<u8>,
    pool: P,
}

impl<P: PoolValues + FrameType> FrameType for RawPooled<P> {
    fn type_name() -> Cow<'static, str> {
        PooledArray::<P>::type_name()
    }
}

impl<P: PoolValues + MmWrite> MmWrite for RawPooled<P> {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.bytes(&self.meta);
        w.bytes(&self.codes);
        self.pool.write_sections(w)
    }
}

/// Encodes `codes` at `width` bytes each (truncating the values).
fn encode_codes(codes: &[u32], width: u8) -> Vec<u8> {
    codes
        .iter()
        .flat_map(|c| c.to_le_bytes()[..usize::from(width)].to_vec())
        .collect()
}

proptest! {
    #![proptest_config(proptest_config(CASES))]

    /// A model of the pooled reader: a code width other than 1, 2 or 4, or a
    /// codes section that is not `len × width` bytes, is a bad section; a code
    /// at or above the pool size is `CodeOutOfRange`; anything else decodes to
    /// the model's values.
    #[test]
    fn pooled_codes_and_widths_are_checked(
        pool in prop::collection::vec(any::<u32>(), 0..20),
        codes in prop::collection::vec(0u32..24, 0..40),
        actual in prop_oneof![Just(1u8), Just(2), Just(4)],
        claimed in prop_oneof![Just(1u8), Just(2), Just(4), 0u8..9, any::<u8>()],
        len_delta in prop_oneof![4 => Just(0i64), 1 => -3i64..3],
        strings in any::<bool>(),
    ) {
        let len = (codes.len() as i64 + len_delta).max(0) as u64;
        let bytes = encode_codes(&codes, actual);
        let meta = postcard(&(len, claimed));
        let frame = if strings {
            let pool = StringArray::from(pool.iter().map(|p| format!("{p}")).collect::<Vec<_>>());
            encode(&RawPooled { meta, codes: bytes.clone(), pool }).unwrap()
        } else {
            encode(&RawPooled { meta, codes: bytes.clone(), pool: PrimitiveArray::from(pool.clone()) }).unwrap()
        };
        let result = if strings {
            decode::<PooledArray<StringArray>>(&frame).map(|a| {
                a.iter().map(|s| s.unwrap().parse::<u32>().unwrap()).collect::<Vec<_>>()
            })
        } else {
            decode::<PooledArray<PrimitiveArray<u32>>>(&frame).map(|a| a.to_vec())
        };
        let width = usize::from(claimed);
        if !matches!(claimed, 1 | 2 | 4) {
            let is_width = matches!(result, Err(FrameError::CodeWidth { index: 0, width, .. }) if width == claimed);
            prop_assert!(is_width, "{:?}", result);
        } else if len as usize * width != bytes.len() {
            let is_length = matches!(
                result,
                Err(FrameError::SectionLength { index: 1, what: "codes", expected, found, .. })
                    if expected == len * claimed as u64 && found == bytes.len() as u64
            );
            prop_assert!(is_length, "{:?}", result);
        } else {
            let model: Vec<u32> = bytes
                .chunks(width)
                .map(|c| c.iter().rev().fold(0u32, |v, &b| v << 8 | u32::from(b)))
                .collect();
            if model.iter().any(|&c| c as usize >= pool.len()) {
                let is_out_of_range = matches!(result, Err(FrameError::Array(ArrayError::CodeOutOfRange { .. })));
                prop_assert!(is_out_of_range, "{:?}", result);
            } else {
                let values: Vec<u32> = model.iter().map(|&c| pool[c as usize]).collect();
                prop_assert_eq!(result.unwrap(), values);
            }
        }
    }

    /// A table whose metadata lists more columns than there are sections left
    /// is refused before any column is read.
    #[test]
    fn table_column_counts_are_bounded_by_the_sections(
        claimed in 1usize..3000,
        present in any::<prop::sample::Index>(),
        rows in 0u64..4,
    ) {
        let present = present.index(claimed);
        let columns: Vec<(String, u8)> = (0..claimed).map(|i| (format!("c{i}"), 10u8)).collect();
        let mut sections = vec![postcard(&(rows, columns))];
        sections.extend((0..present).map(|_| vec![0u8; rows as usize * 8]));
        let err = decode::<Table>(&encode(&HostileTable(sections)).unwrap()).unwrap_err();
        let ok = matches!(
            err,
            FrameError::LimitExceeded { what: "table column count", value, max }
                if value == claimed as u64 && max == present as u64
        );
        prop_assert!(ok, "{}", err);
    }
}

#[test]
fn hostile_pooled_metadata_is_an_error() {
    let pool = PrimitiveArray::from(vec![1u32, 2]);
    let pooled = |meta: Vec<u8>, codes: Vec<u8>| {
        decode::<PooledArray<PrimitiveArray<u32>>>(
            &encode(&RawPooled {
                meta,
                codes,
                pool: pool.clone(),
            })
            .unwrap(),
        )
    };
    // len × width overflows u64.
    let err = pooled(postcard(&(u64::MAX, 4u8)), vec![0; 8]).unwrap_err();
    assert!(err.to_string().contains("more than 2^64"), "{err}");
    // A code width of 3 bytes, even with a codes section of len × 3 bytes.
    let err = pooled(postcard(&(2u64, 3u8)), vec![0; 6]).unwrap_err();
    assert!(err.to_string().contains("code width is 3"), "{err}");
    // Codes written as u16 but claimed as u8 (twice as many bytes as entries).
    let err = pooled(postcard(&(2u64, 1u8)), encode_codes(&[0, 1], 2)).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::SectionLength {
                index: 1,
                expected: 2,
                found: 4,
                ..
            }
        ),
        "{err}"
    );
    // A code equal to the pool size.
    let err = pooled(postcard(&(3u64, 2u8)), encode_codes(&[0, 2, 1], 2)).unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::Array(ArrayError::CodeOutOfRange {
                index: 1,
                code: 2,
                pool_len: 2
            })
        ),
        "{err}"
    );
    // An empty pool admits no codes at all.
    let err = decode::<PooledArray<PrimitiveArray<u32>>>(
        &encode(&RawPooled {
            meta: postcard(&(1u64, 1u8)),
            codes: vec![0],
            pool: PrimitiveArray::<u32>::default(),
        })
        .unwrap(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        FrameError::Array(ArrayError::CodeOutOfRange { .. })
    ));
    // Trailing metadata bytes, a missing pool.
    assert!(pooled([postcard(&(0u64, 1u8)), vec![0]].concat(), vec![]).is_err());
    let frame = encode(&HostilePooledU32(vec![postcard(&(0u64, 1u8)), vec![]])).unwrap();
    assert!(matches!(
        decode::<PooledArray<PrimitiveArray<u32>>>(&frame),
        Err(FrameError::MissingSection { index: 2, .. })
    ));
}

#[test]
fn pooled_string_pools_are_validated_at_read() {
    // A pool whose second string is not UTF-8, behind valid checksums: the
    // reader refuses it, so get/iter of a decoded pooled array cannot panic.
    let sections = vec![
        postcard(&(3u64, 1u8)),
        vec![0, 1, 0],
        vec![0],
        le_u64s(&[0, 1, 3]),
        b"a\xc3(".to_vec(),
    ];
    let frame = encode(&HostilePooledStr(sections.clone())).unwrap();
    assert!(matches!(
        decode::<PooledArray<StringArray>>(&frame),
        Err(FrameError::Array(ArrayError::InvalidUtf8 { index: 1 }))
    ));
    // The same pool in a table column.
    let mut table = vec![postcard(&(3u64, vec![("p", 14u8)]))];
    table.extend(sections);
    assert!(matches!(
        decode::<Table>(&encode(&HostileTable(table)).unwrap()),
        Err(FrameError::Array(ArrayError::InvalidUtf8 { index: 1 }))
    ));
    // Valid UTF-8 decodes, and reads as strings.
    let ok = vec![
        postcard(&(3u64, 1u8)),
        vec![0, 1, 0],
        vec![0],
        le_u64s(&[0, 1, 3]),
        "aå".as_bytes().to_vec(),
    ];
    let a: PooledArray<StringArray> = decode(&encode(&HostilePooledStr(ok)).unwrap()).unwrap();
    assert_eq!(
        a.iter().collect::<Vec<_>>(),
        [Some("a"), Some("å"), Some("a")]
    );
}

#[test]
fn hostile_nullable_sections_are_errors() {
    let nullable = |sections: Vec<Vec<u8>>| {
        decode::<NullableArray<f64>>(&encode(&HostileNullable(sections)).unwrap())
    };
    // Values that are not a whole number of f64s.
    assert!(matches!(
        nullable(vec![vec![0], vec![0; 7]]),
        Err(FrameError::Array(ArrayError::BadByteLength { .. }))
    ));
    // A validity bitmap of the wrong length, or missing.
    assert!(matches!(
        nullable(vec![vec![1], vec![0; 80], vec![0xff; 3]]),
        Err(FrameError::SectionLength {
            index: 2,
            expected: 2,
            found: 3,
            ..
        })
    ));
    assert!(matches!(
        nullable(vec![vec![1], vec![0; 80]]),
        Err(FrameError::MissingSection { index: 2, .. })
    ));
    // A bitmap where none was announced, and a bad flag.
    assert!(matches!(
        nullable(vec![vec![0], vec![0; 80], vec![0xff; 2]]),
        Err(FrameError::TrailingSections { extra: 1, .. })
    ));
    assert!(nullable(vec![vec![2], vec![0; 8]]).is_err());
    assert_eq!(
        nullable(vec![vec![1], vec![0; 16], vec![0b10]]).unwrap(),
        NullableArray::from(vec![None, Some(0.0)])
    );
}

#[test]
fn hostile_table_metadata_is_an_error() {
    let f64_col = |rows: usize| vec![0u8; rows * 8];
    let table = |sections: Vec<Vec<u8>>| decode::<Table>(&encode(&HostileTable(sections)).unwrap());
    // An unknown kind tag.
    let err = table(vec![postcard(&(1u64, vec![("a", 200u8)])), f64_col(1)]).unwrap_err();
    assert!(
        matches!(err, FrameError::UnknownColumnKind { ref name, kind: 200 } if name == "a"),
        "{err}"
    );
    assert!(err.to_string().contains("unknown kind tag 200"), "{err}");
    // A column with fewer rows than the table claims.
    let err = table(vec![
        postcard(&(2u64, vec![("a", 10u8), ("b", 10)])),
        f64_col(2),
        f64_col(1),
    ])
    .unwrap_err();
    assert!(
        matches!(err, FrameError::Array(ArrayError::ColumnLength { ref name, expected: 2, found: 1 }) if name == "b"),
        "{err}"
    );
    // Row counts past usize.
    assert!(table(vec![postcard(&(u64::MAX, vec![("a", 10u8)])), f64_col(0)]).is_err());
    // Duplicate names.
    let err = table(vec![
        postcard(&(1u64, vec![("a", 10u8), ("a", 10)])),
        f64_col(1),
        f64_col(1),
    ])
    .unwrap_err();
    assert!(matches!(
        err,
        FrameError::Array(ArrayError::DuplicateColumn { .. })
    ));
    // No columns but rows.
    assert!(matches!(
        table(vec![postcard(&(3u64, Vec::<(String, u8)>::new()))]),
        Err(FrameError::BadSection { index: 0, .. })
    ));
    // A column count of 2^40 with no column entries: postcard runs out of bytes
    // (and allocates nothing of that size).
    let mut meta = postcard(&0u64);
    meta.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    assert!(matches!(
        table(vec![meta]),
        Err(FrameError::Postcard { .. })
    ));
    // Names that are not UTF-8.
    let mut meta = postcard(&(0u64, vec![("ab", 10u8)]));
    meta[3] = 0xff;
    assert!(table(vec![meta, f64_col(0)]).is_err());
    // A pooled string column whose codes point past its pool.
    let err = table(vec![
        postcard(&(1u64, vec![("p", 14u8)])),
        postcard(&(1u64, 1u8)),
        vec![5],
        vec![0],
        le_u64s(&[0, 1]),
        b"x".to_vec(),
    ])
    .unwrap_err();
    assert!(matches!(
        err,
        FrameError::Array(ArrayError::CodeOutOfRange { code: 5, .. })
    ));
    // The empty table.
    assert_eq!(
        table(vec![postcard(&(0u64, Vec::<(String, u8)>::new()))]).unwrap(),
        Table::empty()
    );
}
