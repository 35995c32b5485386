//! The Arrow hand-off (feature `arrow`): round trips of every array type,
//! heap and mapped, with nulls, empty and sliced, and checks that no bytes
//! were copied.
#![cfg(feature = "arrow")]

use std::ops::Range;
use std::sync::Arc;

use mempool_arrays::arrow::arrow_array::cast::AsArray;
use mempool_arrays::arrow::arrow_array::types::{
    Int32Type, Int64Type, UInt16Type, UInt64Type, UInt8Type,
};
use mempool_arrays::arrow::arrow_array::{
    self as aa, Array, ArrayRef, DictionaryArray, LargeStringArray, RecordBatch,
};
use mempool_arrays::arrow::arrow_schema::{DataType, Field, Schema};
use mempool_arrays::{
    ArrayError, Bitmap, BooleanArray, Buffer, Codes, Column, MemoryKind, NullableArray,
    PooledArray, PrimitiveArray, StringArray, Table,
};

/// Copies `b` into a file of its own and maps it: the mapped twin of a heap
/// buffer. The file lives in `dir`, which the test keeps until the end.
#[allow(unsafe_code, reason = "maps files the test owns")]
fn mapped(dir: &tempfile::TempDir, b: &Buffer) -> Buffer {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.path().join(format!("b{n}"));
    std::fs::write(&p, b.as_slice()).unwrap();
    // SAFETY: the file must not change while mapped:
    // - it lives in this test's private temporary directory, and nothing
    //   writes it after `std::fs::write` returned.
    unsafe { Buffer::map_file(&p) }.unwrap()
}

fn mapped_bitmap(dir: &tempfile::TempDir, b: &Bitmap) -> Bitmap {
    let (buffer, offset) = b.buffer();
    Bitmap::new(mapped(dir, buffer), offset, b.len())
}

fn mapped_strings(dir: &tempfile::TempDir, a: &StringArray) -> StringArray {
    let (o, d, v) = a.parts();
    StringArray::try_new_structural(
        mapped(dir, o),
        mapped(dir, d),
        v.map(|v| mapped_bitmap(dir, v)),
    )
    .unwrap()
}

/// The address range of a buffer's bytes.
fn range(b: &[u8]) -> Range<usize> {
    let p = b.as_ptr() as usize;
    p..p + b.len()
}

/// Every buffer of an Arrow array (children included) lies inside one of
/// `maps`: nothing was copied.
fn assert_points_into(array: &dyn Array, maps: &[Range<usize>]) {
    // The array's data and its children's, breadth first.
    let mut all = vec![array.to_data()];
    let mut i = 0;
    while i < all.len() {
        let children = all[i].child_data().to_vec();
        all.extend(children);
        i += 1;
    }
    for d in &all {
        for b in d.buffers().iter().chain(d.nulls().map(|n| n.buffer())) {
            if b.is_empty() {
                continue;
            }
            let r = range(b.as_slice());
            assert!(
                maps.iter().any(|m| m.start <= r.start && r.end <= m.end),
                "an arrow buffer at {r:x?} is not inside the maps {maps:x?}: it was copied"
            );
        }
    }
}

/// Every owner of our arrays' buffers is of `kind`.
fn kinds(t: &Table) -> Vec<MemoryKind> {
    let mut out = Vec::new();
    for (_, c) in t.columns() {
        match c {
            Column::Str(s) => {
                let (o, d, _) = s.parts();
                out.push(o.memory_kind());
                out.push(d.memory_kind());
            }
            Column::F64(a) => out.push(a.buffer().memory_kind()),
            _ => {}
        }
    }
    out
}

macro_rules! primitive_roundtrips {
    ($($name:ident: $t:ty = $vals:expr;)*) => {$(
        #[test]
        fn $name() {
            let dir = tempfile::tempdir().unwrap();
            let heap = PrimitiveArray::<$t>::from($vals);
            let map = PrimitiveArray::<$t>::new(mapped(&dir, heap.buffer()));
            for a in [heap.clone(), map.clone(), heap.slice(1, 2), map.slice(1, 2), heap.slice(3, 0), PrimitiveArray::default()] {
                let arrow = a.to_arrow();
                assert_eq!(arrow.len(), a.len());
                assert_eq!(arrow.values().as_ref(), a.values());
                let back = PrimitiveArray::<$t>::from_arrow(&arrow).unwrap();
                assert_eq!(back, a);
                // No copy either way.
                if !a.is_empty() {
                    assert_eq!(arrow.values().as_ptr() as usize, a.values().as_ptr() as usize);
                    assert_eq!(back.values().as_ptr(), a.values().as_ptr());
                }
            }
            assert_points_into(&map.to_arrow(), &[range(map.buffer())]);
        }
    )*};
}

primitive_roundtrips! {
    primitive_i8: i8 = vec![1i8, -2, 3, 4];
    primitive_i16: i16 = vec![1i16, -2, 3, 4];
    primitive_i32: i32 = vec![1i32, -2, 3, 4];
    primitive_i64: i64 = vec![1i64, -2, 3, 4];
    primitive_u8: u8 = vec![1u8, 2, 3, 4];
    primitive_u16: u16 = vec![1u16, 2, 3, 4];
    primitive_u32: u32 = vec![1u32, 2, 3, 4];
    primitive_u64: u64 = vec![1u64, 2, 3, u64::MAX];
    primitive_f32: f32 = vec![1.5f32, -2.0, f32::MIN, 4.0];
    primitive_f64: f64 = vec![1.5f64, -2.0, 3.25, f64::INFINITY];
}

#[test]
fn empty_f64_column_converts() {
    // Buffer::empty() used to sit at address 0x1: Arrow's alignment check
    // panicked on it.
    let a = PrimitiveArray::<f64>::new(Buffer::empty());
    assert_eq!(a.to_arrow().len(), 0);
    let n = NullableArray::<f64>::default();
    assert_eq!(n.to_arrow().len(), 0);
}

#[test]
fn nullable_roundtrips_heap_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let heap = NullableArray::from(vec![Some(1i64), None, Some(3), None, Some(5)]);
    let (values, validity) = heap.clone().into_parts();
    let map = NullableArray::new(
        PrimitiveArray::new(mapped(&dir, values.buffer())),
        validity.as_ref().map(|v| mapped_bitmap(&dir, v)),
    );
    for a in [
        heap.clone(),
        map.clone(),
        heap.slice(1, 3),
        map.slice(1, 3),
        heap.slice(2, 0),
    ] {
        let arrow = a.to_arrow();
        assert_eq!(arrow.null_count(), a.null_count());
        let got: Vec<Option<i64>> = arrow.iter().collect();
        assert_eq!(got, a.to_vec());
        assert_eq!(NullableArray::from_arrow(&arrow).unwrap(), a);
    }
    let m = map.to_arrow();
    let (vb, bb) = (map.values().buffer(), map.validity().unwrap().buffer().0);
    assert_points_into(&m, &[range(vb), range(bb)]);
    // Without nulls, no bitmap either way.
    let plain = NullableArray::from(vec![1.5f64, 2.5]);
    assert!(plain.to_arrow().nulls().is_none());
    assert!(NullableArray::<f64>::from_arrow(&plain.to_arrow())
        .unwrap()
        .validity()
        .is_none());
}

#[test]
fn nulls_where_none_fit_are_typed_errors() {
    let a = aa::Int32Array::from(vec![Some(1), None]);
    assert!(matches!(
        PrimitiveArray::<i32>::from_arrow(&a),
        Err(ArrayError::ArrowNulls { null_count: 1, .. })
    ));
    let b = aa::BooleanArray::from(vec![Some(true), None]);
    assert!(matches!(
        BooleanArray::from_arrow(&b),
        Err(ArrayError::ArrowNulls { .. })
    ));
    let e = Column::from_arrow(&a, true).unwrap_err();
    assert!(e.to_string().contains("nulls"), "{e}");
}

#[test]
fn booleans_roundtrip_with_bit_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let bits: Vec<bool> = (0..77).map(|i| i % 3 == 0).collect();
    let heap = BooleanArray::from(bits.clone());
    let map = BooleanArray::new(mapped_bitmap(&dir, heap.bits()));
    for a in [
        heap.clone(),
        map.clone(),
        heap.slice(5, 60),
        map.slice(13, 0),
    ] {
        let arrow = a.to_arrow();
        let got: Vec<bool> = arrow.iter().map(Option::unwrap).collect();
        assert_eq!(got, a.iter().collect::<Vec<_>>());
        assert_eq!(BooleanArray::from_arrow(&arrow).unwrap(), a);
    }
    assert_points_into(&map.to_arrow(), &[range(map.bits().buffer().0)]);
}

#[test]
fn strings_roundtrip_heap_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let heap = StringArray::from(vec![Some("foo~^å&"), None, Some(""), Some("pear"), None]);
    let map = mapped_strings(&dir, &heap);
    assert!(!map.is_utf8_checked());
    // Unchecked: Arrow's checked constructor runs.
    let arrow = map.to_arrow().unwrap();
    map.validate_full().unwrap();
    for a in [
        heap.clone(),
        map.clone(),
        heap.slice(1, 3),
        map.slice(2, 2),
        heap.slice(5, 0),
        StringArray::empty(),
    ] {
        let arrow = a.to_arrow().unwrap();
        assert_eq!(arrow.len(), a.len());
        assert_eq!(arrow.null_count(), a.null_count());
        let got: Vec<Option<String>> = arrow.iter().map(|s| s.map(str::to_owned)).collect();
        assert_eq!(got, a.to_vec());
        let back = StringArray::from_arrow(&arrow);
        assert!(back.is_utf8_checked());
        assert_eq!(back, a);
        // The same string bytes, not a copy.
        assert_eq!(
            back.parts().1.as_slice().as_ptr(),
            a.parts().1.as_slice().as_ptr()
        );
    }
    let (o, d, v) = map.parts();
    assert_points_into(&arrow, &[range(o), range(d), range(v.unwrap().buffer().0)]);
    // Utf8 (32-bit offsets): the strings are shared, the offsets widened.
    let small = aa::StringArray::from(vec![Some("a"), None, Some("bcd")]);
    let s = StringArray::try_from_arrow(&small).unwrap();
    assert_eq!(s, StringArray::from(vec![Some("a"), None, Some("bcd")]));
    assert_eq!(s.parts().1.as_slice().as_ptr(), small.values().as_ptr());
    assert!(matches!(
        StringArray::try_from_arrow(&aa::Int8Array::from(vec![1i8])),
        Err(ArrayError::UnsupportedArrowType { .. })
    ));
}

#[test]
fn invalid_utf8_is_refused_by_arrow_checked_constructor() {
    let offsets = Buffer::from_vec(vec![0u64, 2]);
    let data = Buffer::from_vec(vec![0xffu8, 0xfe]);
    let a = StringArray::try_new_structural(offsets, data, None).unwrap();
    assert!(matches!(a.to_arrow(), Err(ArrayError::Arrow(_))));
}

#[test]
fn pooled_strings_roundtrip_heap_and_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let small = PooledArray::from(vec![Some("red"), None, Some("green"), Some("red"), None]);
    let many: PooledArray = (0..1000).map(|i| Some(format!("s{}", i % 300))).collect();
    assert_eq!(many.codes().width_bytes(), 2);
    for heap in [small, many] {
        let (pool, codes) = heap.clone().into_parts();
        let codes_m = match &codes {
            Codes::U8(c) => Codes::U8(PrimitiveArray::new(mapped(&dir, c.buffer()))),
            Codes::U16(c) => Codes::U16(PrimitiveArray::new(mapped(&dir, c.buffer()))),
            Codes::U32(c) => Codes::U32(PrimitiveArray::new(mapped(&dir, c.buffer()))),
        };
        let map = PooledArray::try_new(mapped_strings(&dir, &pool), codes_m).unwrap();
        for a in [heap.clone(), map.clone(), heap.slice(1, 3), map.slice(0, 0)] {
            let arrow = a.to_arrow().unwrap();
            assert_eq!(arrow.data_type(), &a.arrow_data_type());
            assert_eq!(arrow.len(), a.len());
            assert_eq!(arrow.logical_null_count(), a.null_count());
            let back = PooledArray::try_from_arrow(arrow.as_ref()).unwrap();
            assert_eq!(back, a);
            assert_eq!(
                back.codes().buffer().as_slice().as_ptr(),
                a.codes().buffer().as_slice().as_ptr()
            );
        }
        let (o, d, v) = map.pool().parts();
        let mut ranges = vec![range(o), range(d), range(map.codes().buffer())];
        ranges.extend(v.map(|v| range(v.buffer().0)));
        assert_points_into(map.to_arrow().unwrap().as_ref(), &ranges);
    }
}

#[test]
fn arrow_dictionaries_of_every_key_type_come_back() {
    let want = PooledArray::from(vec![Some("a"), None, Some("b"), Some("a")]);
    // Null keys (how Arrow's builders write nulls): codes and pool offsets
    // are copied, the strings shared.
    let d: DictionaryArray<Int32Type> = vec![Some("a"), None, Some("b"), Some("a")]
        .into_iter()
        .collect();
    assert!(d.keys().null_count() == 1);
    assert_eq!(PooledArray::try_from_arrow(&d).unwrap(), want);
    // Signed keys without nulls are shared, read as unsigned.
    let d: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    let p = PooledArray::try_from_arrow(&d).unwrap();
    assert_eq!(p, PooledArray::from(vec!["a", "b", "a"]));
    assert_eq!(
        p.codes().buffer().as_slice().as_ptr(),
        d.keys().values().as_ptr() as *const u8
    );
    // 64-bit keys are narrowed.
    let d: DictionaryArray<Int64Type> = vec![Some("x"), Some("y"), None].into_iter().collect();
    assert_eq!(
        PooledArray::try_from_arrow(&d).unwrap(),
        PooledArray::from(vec![Some("x"), Some("y"), None])
    );
    // Values that are not strings: unsupported.
    let keys = aa::PrimitiveArray::<UInt8Type>::from(vec![0u8]);
    let d = DictionaryArray::try_new(keys, Arc::new(aa::Int32Array::from(vec![7])) as ArrayRef)
        .unwrap();
    assert!(matches!(
        PooledArray::try_from_arrow(&d),
        Err(ArrayError::UnsupportedArrowType { .. })
    ));
    // u16 keys of our own width.
    let keys = aa::PrimitiveArray::<UInt16Type>::from(vec![1u16, 0]);
    let vals: ArrayRef = Arc::new(LargeStringArray::from(vec!["p", "q"]));
    let d = DictionaryArray::try_new(keys, vals).unwrap();
    assert_eq!(
        PooledArray::try_from_arrow(&d).unwrap(),
        PooledArray::from(vec!["q", "p"])
    );
}

/// 64-bit keys without nulls (Arrow's `Int64`/`UInt64` dictionaries) come
/// back with the pool exactly as the dictionary's values: no null entry is
/// added when no key is null, and a round trip through such a dictionary
/// gives the same pool and codes.
#[test]
fn sixty_four_bit_keys_without_nulls_keep_the_pool_exact() {
    let ours = PooledArray::from(vec!["x", "y", "x", "z"]);
    let values = ours
        .to_arrow()
        .unwrap()
        .as_any_dictionary()
        .values()
        .clone();
    let codes: Vec<u32> = ours.codes().iter().collect();
    let signed = DictionaryArray::<Int64Type>::try_new(
        aa::Int64Array::from(codes.iter().map(|&c| i64::from(c)).collect::<Vec<_>>()),
        values.clone(),
    )
    .unwrap();
    let unsigned = DictionaryArray::<UInt64Type>::try_new(
        aa::UInt64Array::from(codes.iter().map(|&c| u64::from(c)).collect::<Vec<_>>()),
        values.clone(),
    )
    .unwrap();
    for d in [&signed as &dyn Array, &unsigned] {
        let back = PooledArray::try_from_arrow(d).unwrap();
        assert_eq!(back, ours);
        assert_eq!(back.pool(), ours.pool(), "the pool gained an entry");
        assert_eq!(back.pool().null_count(), 0);
        assert_eq!(back.codes(), ours.codes());
        // And on to Arrow again: the same dictionary values.
        let again = back.to_arrow().unwrap();
        assert_eq!(again.as_any_dictionary().values().as_ref(), values.as_ref());
    }
    // A null key still needs a null entry, appended once.
    let d: DictionaryArray<UInt64Type> = vec![Some("x"), None, None].into_iter().collect();
    let back = PooledArray::try_from_arrow(&d).unwrap();
    assert_eq!(back.pool().len(), 2);
    assert_eq!(back, PooledArray::from(vec![Some("x"), None, None]));
}

fn every_column_table() -> Table {
    Table::new(vec![
        (
            "bool".into(),
            BooleanArray::from(vec![true, false, true, true]).into(),
        ),
        ("i8".into(), PrimitiveArray::from(vec![1i8, 2, 3, 4]).into()),
        (
            "i16".into(),
            PrimitiveArray::from(vec![1i16, 2, 3, 4]).into(),
        ),
        (
            "i32".into(),
            PrimitiveArray::from(vec![1i32, 2, 3, 4]).into(),
        ),
        (
            "i64".into(),
            PrimitiveArray::from(vec![1i64, 2, 3, 4]).into(),
        ),
        ("u8".into(), PrimitiveArray::from(vec![1u8, 2, 3, 4]).into()),
        (
            "u16".into(),
            PrimitiveArray::from(vec![1u16, 2, 3, 4]).into(),
        ),
        (
            "u32".into(),
            PrimitiveArray::from(vec![1u32, 2, 3, 4]).into(),
        ),
        (
            "u64".into(),
            PrimitiveArray::from(vec![1u64, 2, 3, 4]).into(),
        ),
        (
            "f32".into(),
            PrimitiveArray::from(vec![1f32, 2., 3., 4.]).into(),
        ),
        (
            "f64".into(),
            PrimitiveArray::from(vec![1f64, 2., 3., 4.]).into(),
        ),
        (
            "ni64".into(),
            NullableArray::from(vec![Some(1i64), None, Some(3), None]).into(),
        ),
        (
            "nf64".into(),
            NullableArray::from(vec![1.5f64, 2.5, 3.5, 4.5]).into(),
        ),
        (
            "str".into(),
            StringArray::from(vec![Some("a"), None, Some(""), Some("dé")]).into(),
        ),
        (
            "pooled".into(),
            PooledArray::from(vec![Some("x"), None, Some("x"), Some("y")]).into(),
        ),
    ])
}

#[test]
fn tables_roundtrip_through_record_batches() {
    let t = every_column_table();
    for t in [t.clone(), t.slice(1, 2), t.slice(4, 0), Table::empty()] {
        let batch = t.to_arrow().unwrap();
        assert_eq!(batch.num_rows(), t.num_rows());
        assert_eq!(batch.schema().as_ref(), &t.arrow_schema());
        assert_eq!(Table::from_arrow(&batch).unwrap(), t);
    }
}

#[test]
fn mapped_tables_stay_mapped_in_arrow() {
    let dir = tempfile::tempdir().unwrap();
    let heap = Table::new(vec![
        (
            "x".into(),
            PrimitiveArray::from(vec![1.0f64, 2.0, 3.0]).into(),
        ),
        ("s".into(), StringArray::from(vec!["a", "bc", "def"]).into()),
    ]);
    let x = heap.column_as::<PrimitiveArray<f64>>("x").unwrap();
    let s = heap.column_as::<StringArray>("s").unwrap();
    let map = Table::new(vec![
        (
            "x".into(),
            PrimitiveArray::<f64>::new(mapped(&dir, x.buffer())).into(),
        ),
        ("s".into(), mapped_strings(&dir, s).into()),
    ]);
    assert!(kinds(&map).iter().all(|k| *k == MemoryKind::Mapped));
    let batch = map.to_arrow().unwrap();
    let mx = map
        .column_as::<PrimitiveArray<f64>>("x")
        .unwrap()
        .buffer()
        .clone();
    let (so, sd, _) = map.column_as::<StringArray>("s").unwrap().parts();
    let ranges = [range(&mx), range(so), range(sd)];
    for c in batch.columns() {
        assert_points_into(c.as_ref(), &ranges);
    }
    // The arrow batch keeps the maps alive after our table is gone.
    let (so, sd) = (so.clone(), sd.clone());
    drop((map, mx));
    let strings = batch
        .column(1)
        .as_any()
        .downcast_ref::<LargeStringArray>()
        .unwrap();
    assert_eq!(strings.value(2), "def");
    drop((so, sd));
    assert_eq!(strings.value(1), "bc");
}

#[test]
fn arrow_memory_is_counted_once() {
    use mempool_arrays::ApproxSize;
    let a = aa::Float64Array::from(vec![1.0; 1000]);
    // Two of our arrays, one a slice, over one Arrow allocation.
    let ours = PrimitiveArray::<f64>::from_arrow(&a).unwrap();
    let again = PrimitiveArray::<f64>::from_arrow(&a.slice(10, 990))
        .unwrap()
        .slice(0, 990);
    assert!(!ours
        .buffer()
        .shares_owner(&PrimitiveArray::<f64>::from(vec![0.0]).into_parts()));
    assert_eq!(ours.buffer().owner_id(), again.buffer().owner_id());
    let t = Table::new(vec![
        ("a".into(), ours.slice(0, 990).into()),
        ("b".into(), again.into()),
    ]);
    // One 8000-byte Arrow allocation (its capacity rounded up to 64 bytes).
    assert!(
        t.approx_size() >= 8000 && t.approx_size() < 8200,
        "{}",
        t.approx_size()
    );
}

#[test]
fn unsupported_columns_are_named() {
    let schema = Schema::new(vec![Field::new("when", DataType::Date32, false)]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(aa::Date32Array::from(vec![1])) as ArrayRef],
    )
    .unwrap();
    match Table::from_arrow(&batch) {
        Err(ArrayError::UnsupportedArrowType { column, data_type }) => {
            assert_eq!(column.as_deref(), Some("when"));
            assert_eq!(data_type, DataType::Date32);
        }
        other => panic!("{other:?}"),
    }
}

proptest::proptest! {
    #[test]
    fn random_string_arrays_roundtrip(
        items in proptest::collection::vec(proptest::option::of(".{0,6}"), 0..40),
        cut in 0usize..40,
    ) {
        let a = StringArray::from(items.iter().map(|s| s.as_deref()).collect::<Vec<_>>());
        let start = cut.min(a.len());
        let s = a.slice(start, a.len() - start);
        let back = StringArray::from_arrow(&s.to_arrow().unwrap());
        proptest::prop_assert_eq!(back, s);
        let p: PooledArray = items.iter().map(|s| s.as_deref()).collect();
        let back = PooledArray::try_from_arrow(p.to_arrow().unwrap().as_ref()).unwrap();
        proptest::prop_assert_eq!(back, p);
    }
}

/// An empty column may sit at any address (an empty slice of another
/// buffer, an empty `Vec<u8>`): its conversion must not trip Arrow's
/// alignment check.
#[test]
fn empty_columns_at_any_address_convert() {
    let odd = Buffer::from_vec(vec![0u8; 16]).slice(3, 0);
    for b in [odd, Buffer::from_vec(Vec::<u8>::new()), Buffer::empty()] {
        let a = PrimitiveArray::<f64>::try_new(b.clone()).unwrap();
        assert_eq!(a.to_arrow().len(), 0);
        let c = PrimitiveArray::<u32>::try_new(b).unwrap();
        assert_eq!(c.to_arrow().len(), 0);
    }
}
