//! Golden frames: the bytes of version-1 frames are checked in, so the format
//! cannot change by accident. Regenerate only for a deliberate format change
//! (bump VERSION, update FORMAT.md) with `MEMPOOL_BLESS=1 cargo test --test golden`.

use std::path::PathBuf;

use mempool_arrays::{
    BooleanArray, NullableArray, PooledArray, PrimitiveArray, StringArray, Table,
};
use mempool_serde::{decode, encode, MmRead, MmWrite};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check<T: MmWrite + MmRead + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let frame = encode(value).unwrap();
    let path = golden_path(name);
    if std::env::var_os("MEMPOOL_BLESS").is_some() {
        std::fs::write(&path, frame.as_slice()).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        frame.as_slice(),
        golden.as_slice(),
        "frame bytes of {name} changed"
    );
    let back: T = decode(&mempool_arrays::Buffer::copy_aligned(&golden)).unwrap();
    assert_eq!(&back, value);
}

#[test]
fn string_array_v1() {
    check(
        "string_array_v1.frame",
        &StringArray::from(vec![None, Some("foo~^å&"), Some(""), None]),
    );
}

#[test]
fn primitive_f64_v1() {
    check(
        "primitive_f64_v1.frame",
        &PrimitiveArray::from(vec![1.0f64, -2.5, f64::INFINITY]),
    );
}

#[test]
fn table_v1() {
    check(
        "table_v1.frame",
        &Table::new(vec![
            ("id".into(), PrimitiveArray::from(vec![1u32, 2, 3]).into()),
            (
                "score".into(),
                NullableArray::from(vec![Some(0.5f64), None, Some(-2.0)]).into(),
            ),
            (
                "name".into(),
                StringArray::from(vec![Some("foo~^å&"), None, Some("")]).into(),
            ),
            (
                "color".into(),
                PooledArray::from(vec![Some("red"), None, Some("red")]).into(),
            ),
            (
                "flag".into(),
                BooleanArray::from(vec![true, false, true]).into(),
            ),
        ]),
    );
}

#[test]
fn header_layout_v1() {
    let golden = std::fs::read(golden_path("primitive_f64_v1.frame")).unwrap();
    assert_eq!(&golden[..8], b"MPFRAME\0");
    assert_eq!(u16::from_le_bytes([golden[8], golden[9]]), 1, "version");
    let name_len = u32::from_le_bytes(golden[12..16].try_into().unwrap()) as usize;
    assert_eq!(&golden[64..64 + name_len], b"PrimitiveArray<f64>");
    let frame_len = u64::from_le_bytes(golden[24..32].try_into().unwrap());
    assert_eq!(frame_len as usize, golden.len());
    // The one section starts 64-aligned and holds the raw little-endian f64s.
    let table = 64 + name_len.next_multiple_of(8);
    let off = u64::from_le_bytes(golden[table..table + 8].try_into().unwrap()) as usize;
    assert_eq!(off % 64, 0);
    assert_eq!(&golden[off..off + 8], &1.0f64.to_le_bytes());
}
