//! Shared test helpers: one roundtrip check for owned and mapped reads alike.

use std::fmt::Debug;

use mempool_arrays::Buffer;
use mempool_serde::{decode, encode, read_file, write_file, write_frame, MmRead, MmWrite};

/// Writes `value` and reads it back four ways — from the encoded buffer, from
/// an unaligned copy of it, from a memory-mapped file, from a stream-written
/// file — checking each equals `value`; also checks that cutting the last
/// byte is an error. Returns the encoded frame.
#[allow(dead_code)]
pub(crate) fn roundtrip<T>(value: &T) -> Buffer
where
    T: MmWrite + MmRead + PartialEq + Debug,
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
    let mapped: T = read_file(&path).expect("read mapped");
    assert_eq!(&mapped, value, "mapped read differs");

    let mut streamed = Vec::new();
    write_frame(value, &mut streamed).expect("write_frame");
    assert_eq!(streamed.as_slice(), frame.as_slice());

    let cut = frame.slice(0, frame.len() - 1);
    assert!(decode::<T>(&cut).is_err(), "a truncated frame decoded");
    frame
}
