//! NullableArray, PooledArray and Table round-trip, owned and mapped.

mod common;

use common::roundtrip;
use mempool_arrays::{
    Bitmap, BooleanArray, Buffer, Codes, Column, MemoryKind, NullableArray, PooledArray,
    PrimitiveArray, StringArray, Table,
};
use mempool_serde::{decode, encode, read_file, read_file_mapped, write_file, FrameError, MemSize};

/// Nulls at both ends and in the middle, over 100 entries.
fn nullable_f64() -> NullableArray<f64> {
    (0..100)
        .map(|i| (i % 7 != 0 && i != 99).then_some(f64::from(i) * 0.5))
        .collect()
}

#[test]
fn nullable_arrays_roundtrip() {
    roundtrip(&NullableArray::<f64>::default());
    roundtrip(&NullableArray::<i64>::from(Vec::<Option<i64>>::new()));
    roundtrip(&NullableArray::from(vec![None::<i64>]));
    roundtrip(&NullableArray::from(vec![None, Some(1i64), Some(-2), None]));
    roundtrip(&NullableArray::from(PrimitiveArray::from(vec![1u8, 2, 3])));
    let a = nullable_f64();
    assert!(a.is_null(0) && a.is_null(99));
    roundtrip(&a);
    // Slices that start neither at 0 nor on a byte of the validity bitmap.
    roundtrip(&a.slice(13, 50));
    roundtrip(&a.slice(1, 98));
    roundtrip(&a.slice(99, 1));
    roundtrip(&a.slice(100, 0));
    // A bitmap whose own offset is not on a byte, and an all-set bitmap.
    let bits: Bitmap = (0..40).map(|i| i % 3 != 0).collect();
    let b = NullableArray::new(
        PrimitiveArray::from((0..35u32).collect::<Vec<_>>()),
        Some(bits.slice(5, 35)),
    );
    roundtrip(&b);
    roundtrip(&NullableArray::new(
        PrimitiveArray::from(vec![1.0f32, 2.0]),
        Some(Bitmap::filled(2, true)),
    ));
}

#[test]
fn nullable_values_and_validity_come_back_as_written() {
    let a = nullable_f64().slice(3, 20);
    let back: NullableArray<f64> = decode(&encode(&a).unwrap()).unwrap();
    assert_eq!(back.to_vec(), a.to_vec());
    assert_eq!(back.null_count(), a.null_count());
    assert!(back.validity().is_some());
    let none: NullableArray<f64> = decode(&encode(&a.slice(0, 4)).unwrap()).unwrap();
    assert_eq!(none.null_count(), 0);
}

/// `n` distinct strings, each appearing twice, with nulls at both ends.
fn pooled_strings(n: usize) -> PooledArray<StringArray> {
    let mut v: Vec<Option<String>> = vec![None];
    v.extend((0..2 * n).map(|i| Some(format!("v{}", i % n))));
    v.push(None);
    PooledArray::from(v)
}

#[test]
fn pooled_string_arrays_roundtrip_at_every_code_width() {
    roundtrip(&PooledArray::<StringArray>::default());
    roundtrip(&PooledArray::from(Vec::<&str>::new()));
    roundtrip(&PooledArray::from(vec![None::<&str>]));
    roundtrip(&PooledArray::from(vec!["only", "only", "only"]));
    roundtrip(&PooledArray::from(vec![
        None,
        Some("foo~^å&"),
        Some(""),
        Some("日本語"),
        None,
    ]));
    // Pools of 2, 256 (255 strings and null), 257 and 70,001 entries: u8, u8,
    // u16, u32 codes.
    for (n, width) in [(1, 1), (255, 1), (256, 2), (70_000, 4)] {
        let a = pooled_strings(n);
        assert_eq!(a.pool().len(), n + 1);
        assert_eq!(a.codes().width_bytes(), width);
        let frame = roundtrip(&a);
        let back: PooledArray<StringArray> = decode(&frame).unwrap();
        assert_eq!(back.codes().width_bytes(), width);
        assert_eq!(back.pool().len(), n + 1);
        // A slice shares the whole pool and writes only its codes.
        roundtrip(&a.slice(3, n));
    }
}

#[test]
fn pooled_primitive_arrays_roundtrip_at_every_code_width() {
    roundtrip(&PooledArray::<PrimitiveArray<u32>>::default());
    roundtrip(&PooledArray::from_values(&[7u32]));
    for (n, width) in [(1u32, 1), (256, 1), (257, 2), (70_000, 4)] {
        let values: Vec<u32> = (0..2 * n)
            .map(|i| (i % n).wrapping_mul(2_654_435_761))
            .collect();
        let a = PooledArray::from_values(&values);
        assert_eq!(a.pool().len(), n as usize);
        assert_eq!(a.codes().width_bytes(), width);
        let frame = roundtrip(&a);
        let back: PooledArray<PrimitiveArray<u32>> = decode(&frame).unwrap();
        assert_eq!(back.to_vec(), values);
        assert_eq!(back.codes().width_bytes(), width);
        roundtrip(&a.slice(1, n as usize));
    }
    let f = PooledArray::from_values(&[-1i16, 5, -1, 5, 0]);
    roundtrip(&f);
    // A float pool with wider codes than needed and unused entries.
    let g = PooledArray::new(
        PrimitiveArray::from(vec![1.5f64, f64::NAN, -0.0]),
        Codes::U32(PrimitiveArray::from(vec![2u32, 0, 0, 2])),
    );
    let back: PooledArray<PrimitiveArray<f64>> = decode(&encode(&g).unwrap()).unwrap();
    assert_eq!(back.codes().width_bytes(), 4);
    assert_eq!(back.to_vec(), [-0.0, 1.5, 1.5, -0.0]);
    roundtrip(&g);
}

/// A table with a column of every kind, 4 rows, plus a column that is a slice.
fn every_kind() -> Table {
    let rows = 4;
    let strings = StringArray::from(vec![None, Some("b"), Some("foo~^å&"), None, Some("x")]);
    Table::new(vec![
        (
            "bool".into(),
            BooleanArray::from(vec![true, false, false, true]).into(),
        ),
        (
            "i8".into(),
            PrimitiveArray::from(vec![-1i8, 0, 1, 2]).into(),
        ),
        (
            "i16".into(),
            PrimitiveArray::from(vec![-1i16, 0, 1, 2]).into(),
        ),
        (
            "i32".into(),
            PrimitiveArray::from(vec![-1i32, 0, 1, 2]).into(),
        ),
        (
            "i64".into(),
            PrimitiveArray::from(vec![i64::MIN, 0, 1, i64::MAX]).into(),
        ),
        (
            "u8".into(),
            PrimitiveArray::from(vec![0u8, 1, 2, 255]).into(),
        ),
        (
            "u16".into(),
            PrimitiveArray::from(vec![0u16, 1, 2, 3]).into(),
        ),
        (
            "u32".into(),
            PrimitiveArray::from(vec![0u32, 1, 2, 3]).into(),
        ),
        (
            "u64".into(),
            PrimitiveArray::from(vec![0u64, 1, 2, u64::MAX]).into(),
        ),
        (
            "f32".into(),
            PrimitiveArray::from(vec![0.5f32, -1.0, 2.0, 3.0]).into(),
        ),
        (
            "f64".into(),
            PrimitiveArray::from(vec![0.5f64, -1.0, f64::INFINITY, 3.0]).into(),
        ),
        (
            "nullable i64".into(),
            NullableArray::from(vec![None, Some(1i64), Some(2), None]).into(),
        ),
        (
            "nullable f64".into(),
            NullableArray::from(vec![Some(1.5f64), None, None, Some(2.5)]).into(),
        ),
        ("string".into(), strings.slice(0, rows).into()),
        (
            "pooled string".into(),
            PooledArray::from(vec![Some("red"), None, Some("red"), Some("green")]).into(),
        ),
        // A slice whose offsets, values and bits do not start at 0 or on a byte.
        ("string slice".into(), strings.slice(1, rows).into()),
        (
            "f64 slice".into(),
            PrimitiveArray::from(vec![9.0f64, 8.0, 7.0, 6.0, 5.0, 4.0])
                .slice(2, rows)
                .into(),
        ),
        (
            "bool slice".into(),
            BooleanArray::from((0..13).map(|i| i % 3 == 0).collect::<Vec<_>>())
                .slice(3, rows)
                .into(),
        ),
    ])
}

#[test]
fn tables_roundtrip() {
    roundtrip(&Table::empty());
    let t = every_kind();
    roundtrip(&t);
    roundtrip(&t.slice(1, 3));
    roundtrip(&t.slice(3, 1));
    roundtrip(&t.slice(4, 0));
    // A column of 70,000 rows with 70,000 distinct pooled strings.
    let big = Table::new(vec![
        (
            "pooled".into(),
            PooledArray::from_iter_values((0..70_000).map(|i| format!("s{i}"))).into(),
        ),
        (
            "id".into(),
            PrimitiveArray::from((0..70_000u64).collect::<Vec<_>>()).into(),
        ),
    ]);
    roundtrip(&big);
    roundtrip(&big.slice(65_000, 5_000));
}

/// Every buffer a column keeps.
fn column_buffers(column: &Column) -> Vec<Buffer> {
    fn strings(a: &StringArray) -> Vec<Buffer> {
        let (offsets, data, validity) = a.parts();
        let mut v = vec![offsets.clone(), data.clone()];
        v.extend(validity.map(|b| b.buffer().0.clone()));
        v
    }
    fn nullable<T: bytemuck::Pod>(a: &NullableArray<T>) -> Vec<Buffer> {
        let mut v = vec![a.values().buffer().clone()];
        v.extend(a.validity().map(|b| b.buffer().0.clone()));
        v
    }
    match column {
        Column::Bool(a) => vec![a.bits().buffer().0.clone()],
        Column::I8(a) => vec![a.buffer().clone()],
        Column::I16(a) => vec![a.buffer().clone()],
        Column::I32(a) => vec![a.buffer().clone()],
        Column::I64(a) => vec![a.buffer().clone()],
        Column::U8(a) => vec![a.buffer().clone()],
        Column::U16(a) => vec![a.buffer().clone()],
        Column::U32(a) => vec![a.buffer().clone()],
        Column::U64(a) => vec![a.buffer().clone()],
        Column::F32(a) => vec![a.buffer().clone()],
        Column::F64(a) => vec![a.buffer().clone()],
        Column::NullableI64(a) => nullable(a),
        Column::NullableF64(a) => nullable(a),
        Column::Str(a) => strings(a),
        Column::PooledStr(a) => {
            let mut v = strings(a.pool());
            v.push(a.codes().buffer().clone());
            v
        }
        other => panic!("no buffers listed for {}", other.type_name()),
    }
}

/// Every buffer of every column is of `kind` and shares one owner, which the
/// table counts once.
fn check_one_owner(t: &Table, kind: MemoryKind, owner_len: u64) {
    let first = column_buffers(t.column_at(0).unwrap()).remove(0);
    let mut n = 0;
    for (name, column) in t.columns() {
        for b in column_buffers(column) {
            assert_eq!(b.memory_kind(), kind, "column {name:?}");
            assert!(b.shares_owner(&first), "column {name:?} has its own owner");
            n += 1;
        }
    }
    assert!(n > 25, "{n} buffers");
    assert_eq!(t.mem_size(), owner_len);
}

#[test]
fn mapped_tables_borrow_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.frame");
    let t = every_kind();
    write_file(&t, &path, false).unwrap();
    // SAFETY: the file must not change while mapped (here and in the other
    // mapped reads of this test):
    // - it is in this test's private temporary directory, never written
    //   after `write_file` renamed it into place; the later writes of the same
    //   name rename new files over it, which leaves a mapped file's bytes as
    //   they are.
    let mapped: Table = unsafe { read_file_mapped(&path) }.unwrap();
    assert_eq!(mapped, t);
    // The table and its columns count the one map once.
    let file_len = std::fs::metadata(&path).unwrap().len();
    check_one_owner(&mapped, MemoryKind::Mapped, file_len);
    // A copying read: one heap buffer (rounded up to whole 64-byte chunks).
    let copied: Table = read_file(&path).unwrap();
    assert_eq!(copied, t);
    check_one_owner(&copied, MemoryKind::Heap, file_len.next_multiple_of(64));

    let a = nullable_f64().slice(5, 40);
    write_file(&a, &path, false).unwrap();
    // SAFETY: as above.
    let mapped: NullableArray<f64> = unsafe { read_file_mapped(&path) }.unwrap();
    assert_eq!(mapped.values().buffer().memory_kind(), MemoryKind::Mapped);
    assert_eq!(
        mapped.values().buffer().as_slice().as_ptr() as usize % 64,
        0
    );
    let p = pooled_strings(300);
    write_file(&p, &path, false).unwrap();
    // SAFETY: as above.
    let mapped: PooledArray<StringArray> = unsafe { read_file_mapped(&path) }.unwrap();
    assert_eq!(mapped.codes().buffer().memory_kind(), MemoryKind::Mapped);
    assert_eq!(mapped.pool().parts().1.memory_kind(), MemoryKind::Mapped);
    assert_eq!(mapped, p);
}

#[test]
fn composite_types_have_distinct_names() {
    let frame = encode(&PooledArray::from_values(&[1u32, 2])).unwrap();
    match decode::<PooledArray<PrimitiveArray<u64>>>(&frame) {
        Err(FrameError::TypeMismatch { expected, found }) => {
            assert_eq!(expected, "PooledArray<PrimitiveArray<u64>>");
            assert_eq!(found, "PooledArray<PrimitiveArray<u32>>");
        }
        other => panic!("expected a type mismatch, got {other:?}"),
    }
    let frame = encode(&NullableArray::from(vec![Some(1i64)])).unwrap();
    assert!(matches!(
        decode::<NullableArray<f64>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    ));
    assert!(matches!(
        decode::<PrimitiveArray<i64>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    ));
    let frame = encode(&Table::empty()).unwrap();
    assert!(matches!(
        decode::<PooledArray<StringArray>>(&frame),
        Err(FrameError::TypeMismatch { .. })
    ));
}

#[test]
fn mem_size_counts_pool_once() {
    let a = pooled_strings(300);
    assert_eq!(a.slice(0, 10).mem_size(), a.mem_size());
    let t = Table::new(vec![
        ("a".into(), a.clone().into()),
        ("b".into(), a.clone().into()),
    ]);
    assert_eq!(t.mem_size(), a.mem_size());
    assert_eq!(NullableArray::from(vec![Some(1u64), None]).mem_size(), 17);
}
