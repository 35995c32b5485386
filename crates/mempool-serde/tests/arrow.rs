//! Arrow values as frames (feature `arrow`): round trips of every supported
//! type, heap and mapped; that a mapped batch's buffers point into the map;
//! memory counted once; hostile frames give errors, never panics.
#![cfg(feature = "arrow")]

use std::ops::Range;
use std::sync::Arc;

use mempool_arrays::arrow::arrow_array::builder::{ListBuilder, StringDictionaryBuilder};
use mempool_arrays::arrow::arrow_array::types::{Int32Type, Int8Type, UInt16Type};
use mempool_arrays::arrow::arrow_array::{
    self as aa, Array, ArrayRef, DictionaryArray, RecordBatch, RecordBatchOptions,
};
use mempool_arrays::arrow::arrow_schema::{DataType, Field, Schema};
use mempool_arrays::Buffer;
use mempool_serde::arrow::{record_batch_from_ipc, record_batch_from_ipc_unchecked};
use mempool_serde::fuzzing::reseal;
use mempool_serde::{
    decode, decode_with, encode, map_file, write_file, FrameError, MemSize, ReadOptions,
};
use proptest::prelude::*;

/// Cases per property test.
const CASES: u32 = 3000;

fn batch_of(columns: Vec<(&str, ArrayRef, bool)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a, nullable)| Field::new(*n, a.data_type().clone(), *nullable))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a, _)| a).collect(),
    )
    .unwrap()
}

/// A batch of every supported kind of column, with nulls.
fn every_type(rows: usize) -> RecordBatch {
    let n = |i: usize| i % 3 != 1;
    let mut list = ListBuilder::new(aa::builder::Int64Builder::new());
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    for i in 0..rows {
        if n(i) {
            list.values().append_value(i as i64);
            list.values().append_null();
            list.append(true);
            dict.append_value(["red", "green", "blue"][i % 3]);
        } else {
            list.append(false);
            dict.append_null();
        }
    }
    let opt = |f: &dyn Fn(usize) -> i64| (0..rows).map(|i| n(i).then(|| f(i))).collect::<Vec<_>>();
    batch_of(vec![
        (
            "bool",
            Arc::new(aa::BooleanArray::from(
                (0..rows)
                    .map(|i| n(i).then_some(i % 2 == 0))
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        (
            "i8",
            Arc::new(aa::Int8Array::from(
                (0..rows).map(|i| i as i8).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "i16",
            Arc::new(aa::Int16Array::from(
                (0..rows).map(|i| i as i16).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "i32",
            Arc::new(aa::Int32Array::from(
                (0..rows)
                    .map(|i| n(i).then_some(i as i32))
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        (
            "i64",
            Arc::new(aa::Int64Array::from(opt(&|i| i as i64 * 7))),
            true,
        ),
        (
            "u8",
            Arc::new(aa::UInt8Array::from(
                (0..rows).map(|i| i as u8).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "u16",
            Arc::new(aa::UInt16Array::from(
                (0..rows).map(|i| i as u16).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "u32",
            Arc::new(aa::UInt32Array::from(
                (0..rows).map(|i| i as u32).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "u64",
            Arc::new(aa::UInt64Array::from(
                (0..rows).map(|i| i as u64).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "f32",
            Arc::new(aa::Float32Array::from(
                (0..rows).map(|i| i as f32 / 2.0).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "f64",
            Arc::new(aa::Float64Array::from(
                (0..rows)
                    .map(|i| n(i).then_some(i as f64 * 1.5))
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        (
            "date",
            Arc::new(aa::Date32Array::from(
                (0..rows).map(|i| i as i32).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "ts",
            Arc::new(aa::TimestampMicrosecondArray::from(
                (0..rows).map(|i| i as i64).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "dec",
            Arc::new(
                aa::Decimal128Array::from((0..rows).map(|i| i as i128).collect::<Vec<_>>())
                    .with_precision_and_scale(20, 2)
                    .unwrap(),
            ),
            false,
        ),
        (
            "utf8",
            Arc::new(aa::StringArray::from(
                (0..rows)
                    .map(|i| n(i).then(|| format!("s{i}é")))
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        (
            "large_utf8",
            Arc::new(aa::LargeStringArray::from(
                (0..rows).map(|i| format!("{i}")).collect::<Vec<_>>(),
            )),
            false,
        ),
        (
            "binary",
            Arc::new(aa::BinaryArray::from(
                (0..rows)
                    .map(|i| n(i).then(|| vec![i as u8; i % 4]))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|o| o.as_deref())
                    .collect::<Vec<_>>(),
            )),
            true,
        ),
        ("list", Arc::new(list.finish()), true),
        ("dict", Arc::new(dict.finish()), true),
    ])
}

fn range(b: &[u8]) -> Range<usize> {
    let p = b.as_ptr() as usize;
    p..p + b.len()
}

/// Every non-empty buffer under `batch` lies inside `map`.
fn assert_borrows(batch: &RecordBatch, map: &Range<usize>) {
    for c in batch.columns() {
        let mut all = vec![c.to_data()];
        while let Some(d) = all.pop() {
            for b in d.buffers().iter().chain(d.nulls().map(|n| n.buffer())) {
                if b.is_empty() {
                    continue;
                }
                let r = range(b.as_slice());
                assert!(
                    map.start <= r.start && r.end <= map.end,
                    "{r:x?} outside the map {map:x?}: copied"
                );
            }
            all.extend(d.child_data().iter().cloned());
        }
    }
}

/// Encodes, decodes from memory, writes, maps and reads back: equal every
/// way, and the mapped batch borrows the map.
#[allow(unsafe_code, reason = "maps files the test owns")]
fn roundtrip(batch: &RecordBatch) {
    let frame = encode(batch).unwrap();
    let back: RecordBatch = decode(&frame).unwrap();
    assert_eq!(&back, batch);
    let section = ipc_section(&frame);
    // SAFETY: `record_batch_from_ipc_unchecked` needs bytes this crate wrote
    // from a valid batch, unchanged:
    // - the IPC section of the frame just encoded from `batch`.
    let trusted = unsafe { record_batch_from_ipc_unchecked(&section) }.unwrap();
    assert_eq!(&trusted, batch);
    assert_eq!(&record_batch_from_ipc(&section).unwrap(), batch);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.frame");
    write_file(batch, &path, false).unwrap();
    // SAFETY: the file must not change while mapped:
    // - it is in this test's private temporary directory, and nothing writes
    //   it after `write_file` renamed it into place.
    let map = unsafe { map_file(&path) }.unwrap();
    let mapped: RecordBatch = decode_with(&map, &ReadOptions::default()).unwrap();
    assert_eq!(&mapped, batch);
    let r = range(map.as_slice());
    assert_borrows(&mapped, &r);
    // One allocation: the map's IPC section, counted once.
    assert!(
        mapped.mem_size() <= map.len() as u64,
        "{} > {}",
        mapped.mem_size(),
        map.len()
    );
    drop(map);
    // The batch keeps the map alive.
    assert_eq!(&mapped, batch);
}

/// The one section of a frame (the IPC file), located through its table.
fn ipc_section(frame: &Buffer) -> Buffer {
    let name_len = u32::from_le_bytes(frame[12..16].try_into().unwrap()) as usize;
    let table = 64 + name_len.next_multiple_of(8);
    let off = u64::from_le_bytes(frame[table..table + 8].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(frame[table + 8..table + 16].try_into().unwrap()) as usize;
    frame.slice(off, len)
}

#[test]
fn every_type_roundtrips_heap_and_mapped() {
    let b = every_type(100);
    roundtrip(&b);
    roundtrip(&b.slice(7, 50));
    roundtrip(&b.slice(100, 0));
    roundtrip(&every_type(0));
}

#[test]
fn a_batch_without_columns_keeps_its_rows() {
    let b = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(42)),
    )
    .unwrap();
    let back: RecordBatch = decode(&encode(&b).unwrap()).unwrap();
    assert_eq!(back.num_rows(), 42);
}

#[test]
fn arrays_roundtrip() {
    let a: ArrayRef = Arc::new(aa::Float64Array::from(vec![Some(1.0), None, Some(3.0)]));
    let back: ArrayRef = decode(&encode(&a).unwrap()).unwrap();
    assert_eq!(back.as_ref(), a.as_ref());
    let d: ArrayRef = Arc::new(DictionaryArray::<UInt16Type>::from_iter(["a", "b", "a"]));
    let back: ArrayRef = decode(&encode(&d).unwrap()).unwrap();
    assert_eq!(back.as_ref(), d.as_ref());
    // A RecordBatch frame is not an ArrayRef frame.
    let b = every_type(3);
    assert!(matches!(
        decode::<ArrayRef>(&encode(&b).unwrap()),
        Err(FrameError::TypeMismatch { .. })
    ));
}

#[test]
fn mem_size_counts_each_allocation_once() {
    let b = every_type(10_000);
    let frame = encode(&b).unwrap();
    let mapped: RecordBatch = decode(&frame).unwrap();
    // Arrow counts the shared section once per buffer slice.
    assert!(mapped.mem_size() <= frame.len() as u64);
    assert!(mapped.get_array_memory_size() as u64 > 2 * mapped.mem_size());
    // A heap batch: its own buffers; a slice of it keeps them all.
    assert!(b.mem_size() > 0);
    assert_eq!(b.slice(10, 10).mem_size(), b.mem_size());
}

#[test]
fn unsupported_types_are_refused_when_writing() {
    let s = aa::StructArray::from(vec![(
        Arc::new(Field::new("x", DataType::Int32, false)),
        Arc::new(aa::Int32Array::from(vec![1])) as ArrayRef,
    )]);
    let b = batch_of(vec![("s", Arc::new(s), false)]);
    match encode(&b) {
        Err(FrameError::UnsupportedArrowType { column, .. }) => assert_eq!(column, "s"),
        other => panic!("{other:?}"),
    }
    let v = aa::StringViewArray::from(vec!["a"]);
    assert!(encode(&batch_of(vec![("v", Arc::new(v), false)])).is_err());
}

#[test]
fn invalid_contents_are_refused_by_validation() {
    // A valid frame whose UTF-8 is then broken (and resealed): the checked
    // reader refuses it.
    let b = batch_of(vec![(
        "s",
        Arc::new(aa::StringArray::from(vec!["héllo"; 4])),
        false,
    )]);
    let frame = encode(&b).unwrap();
    let mut bytes = frame.to_vec();
    let at = bytes.windows(2).position(|w| w == "é".as_bytes()).unwrap();
    bytes[at + 1] = b'x'; // a lone lead byte
    assert!(reseal(&mut bytes));
    let err = decode::<RecordBatch>(&Buffer::copy_aligned(&bytes)).unwrap_err();
    assert!(matches!(err, FrameError::Arrow { .. }), "{err}");
}

/// Decodes `bytes` as a batch and an array, with and without the checksum;
/// what decodes must be valid Arrow. Never panics.
fn decode_hostile(bytes: &[u8]) -> Result<(), TestCaseError> {
    let buffer = Buffer::copy_aligned(bytes);
    for verify_checksum in [true, false] {
        let opts = ReadOptions { verify_checksum };
        if let Ok(b) = decode_with::<RecordBatch>(&buffer, &opts) {
            for c in b.columns() {
                prop_assert!(c.to_data().validate_full().is_ok());
            }
            let _ = b.mem_size();
        }
        if let Ok(a) = decode_with::<ArrayRef>(&buffer, &opts) {
            prop_assert!(a.to_data().validate_full().is_ok());
        }
    }
    let _ = record_batch_from_ipc(&buffer);
    Ok(())
}

fn small_batch() -> impl Strategy<Value = RecordBatch> {
    (0usize..12, any::<u64>()).prop_map(|(rows, seed)| {
        let b = every_type(rows + (seed % 5) as usize);
        let keys =
            aa::Int8Array::from((0..b.num_rows()).map(|i| (i % 2) as i8).collect::<Vec<_>>());
        let d = DictionaryArray::<Int8Type>::try_new(
            keys,
            Arc::new(aa::LargeStringArray::from(vec!["p", "q"])),
        )
        .unwrap();
        let mut cols: Vec<(String, ArrayRef)> = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(f, c)| (f.name().clone(), c.clone()))
            .collect();
        cols.push(("d8".into(), Arc::new(d)));
        let k = (seed as usize) % cols.len();
        // A few columns, chosen by the seed, so that shrinking has less to chew.
        let picked: Vec<(&str, ArrayRef, bool)> = cols
            .iter()
            .skip(k)
            .take(3)
            .map(|(n, a)| (n.as_str(), a.clone(), true))
            .collect();
        batch_of(picked)
    })
}

proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: CASES,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(42),
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_hostile(&bytes)?;
        // The same bytes behind a valid frame header.
        let mut frame = encode(&every_type(1)).unwrap().to_vec();
        let flen = frame.len();
        let start = flen.saturating_sub(bytes.len());
        frame[start..].copy_from_slice(&bytes[..flen - start]);
        reseal(&mut frame);
        decode_hostile(&frame)?;
    }

    #[test]
    fn mutated_frames_never_panic(
        batch in small_batch(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        words in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![0u64, 1, 7, 8, 0x7fff_ffff, 0xffff_ffff, u64::MAX, i64::MAX as u64, 1 << 32, 1 << 40])), 0..3),
        cut in any::<prop::sample::Index>(),
        how in 0u8..4,
    ) {
        let mut bytes = encode(&batch).unwrap().to_vec();
        // Mutations aim at the section (the IPC file), past the frame header.
        let body = 128.min(bytes.len())..bytes.len();
        match how {
            0 | 1 => {
                for (i, x) in &flips {
                    let at = body.start + i.index(body.len());
                    bytes[at] ^= x | 1;
                }
            }
            2 => {
                for (i, w) in &words {
                    let at = body.start + i.index(body.len().saturating_sub(8).max(1));
                    let end = (at + 8).min(bytes.len());
                    bytes[at..end].copy_from_slice(&w.to_le_bytes()[..end - at]);
                }
            }
            _ => {
                bytes.truncate(body.start + cut.index(body.len()));
            }
        }
        decode_hostile(&bytes)?;
        reseal(&mut bytes);
        decode_hostile(&bytes)?;
        // The IPC file alone, as record_batch_from_ipc reads it.
        let section = ipc_section(&encode(&batch).unwrap()).to_vec();
        let mut ipc = section.clone();
        for (i, x) in &flips {
            let at = i.index(ipc.len());
            ipc[at] ^= x | 1;
        }
        let _ = record_batch_from_ipc(&Buffer::copy_aligned(&ipc));
        let _ = record_batch_from_ipc(&Buffer::copy_aligned(&section[..cut.index(section.len())]));
    }
}

/// Mutated frames of [`seeded_mutations_never_panic`]: about 0.5 s; 200,000
/// ran clean when this was written.
const MUTATIONS: usize = 20_000;

/// Byte flips and overwritten words (lengths, offsets, counts at their
/// extremes), resealed so that they reach arrow-ipc: every one must give an
/// error or a valid batch. A seeded generator, so that runs are the same.
#[test]
fn seeded_mutations_never_panic() {
    let frames: Vec<Vec<u8>> = [
        every_type(20),
        every_type(3),
        every_type(0),
        every_type(20).slice(3, 5),
    ]
    .iter()
    .map(|b| encode(b).unwrap().to_vec())
    .collect();
    let mut x = 42u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        0u64,
        1,
        7,
        8,
        63,
        64,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        u64::MAX,
        i64::MAX as u64,
        1 << 32,
        1 << 40,
    ];
    let (mut ok, mut refused) = (0, 0);
    for it in 0..MUTATIONS {
        let mut bytes = frames[it % frames.len()].clone();
        for _ in 0..1 + rnd() % 4 {
            let at = 128 + (rnd() as usize) % (bytes.len() - 136);
            if rnd() % 3 == 0 {
                let w = words[(rnd() as usize) % words.len()];
                let width = [1usize, 2, 4, 8][(rnd() % 4) as usize];
                bytes[at..at + width].copy_from_slice(&w.to_le_bytes()[..width]);
            } else {
                bytes[at] ^= (rnd() >> 32) as u8 | 1;
            }
        }
        reseal(&mut bytes);
        match decode::<RecordBatch>(&Buffer::copy_aligned(&bytes)) {
            Ok(b) => {
                for c in b.columns() {
                    assert!(c.to_data().validate_full().is_ok());
                }
                ok += 1;
            }
            Err(_) => refused += 1,
        }
    }
    // Both outcomes happen: the mutations reach the data and the structure.
    assert!(
        ok > MUTATIONS / 10 && refused > MUTATIONS / 10,
        "{ok} ok, {refused} refused"
    );
}

/// Where a block's message and body lie in an IPC file, and the message.
struct Located<'a> {
    /// The block's offset, metadata length and body length.
    block: (usize, usize, usize),
    /// The message's record batch (of a dictionary batch, its data).
    batch: arrow_ipc::RecordBatch<'a>,
    /// The dictionary id, for a dictionary batch.
    id: Option<i64>,
}

/// The footer's blocks (dictionaries, then record batches) of the IPC file
/// `ipc`, with their messages, in footer order.
fn blocks_of(ipc: &[u8]) -> Vec<Located<'_>> {
    let n = ipc.len();
    let footer_len = i32::from_le_bytes(ipc[n - 10..n - 6].try_into().unwrap()) as usize;
    let footer = arrow_ipc::root_as_footer(&ipc[n - 10 - footer_len..n - 10]).unwrap();
    let blocks = footer
        .dictionaries()
        .into_iter()
        .flatten()
        .chain(footer.recordBatches().into_iter().flatten());
    blocks
        .map(|b| {
            let (off, meta) = (b.offset() as usize, b.metaDataLength() as usize);
            let m = arrow_ipc::root_as_message(&ipc[off + 8..off + meta]).unwrap();
            let (batch, id) = match m.header_as_dictionary_batch() {
                Some(d) => (d.data().unwrap(), Some(d.id())),
                None => (m.header_as_record_batch().unwrap(), None),
            };
            Located {
                block: (off, meta, b.bodyLength() as usize),
                batch,
                id,
            }
        })
        .collect()
}

/// The position of `r`, a reference into `within`, in it.
fn pos_in<T>(within: &[u8], r: &T) -> usize {
    r as *const T as usize - within.as_ptr() as usize
}

/// The range of a frame's one section (its IPC file).
fn section_range(frame: &[u8]) -> Range<usize> {
    let name_len = u32::from_le_bytes(frame[12..16].try_into().unwrap()) as usize;
    let table = 64 + name_len.next_multiple_of(8);
    let off = u64::from_le_bytes(frame[table..table + 8].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(frame[table + 8..table + 16].try_into().unwrap()) as usize;
    off..off + len
}

/// Asserts what the reader requires of the layout of an IPC file: footer
/// blocks one after another (after the magic), dictionaries first, and in
/// each message the buffers one after another within the body.
fn assert_laid_out_in_order(ipc: &[u8]) {
    let mut next_block = 8;
    for (i, l) in blocks_of(ipc).iter().enumerate() {
        let (off, meta, body) = l.block;
        assert!(off >= next_block, "block {i} at {off} before {next_block}");
        next_block = off + meta + body;
        let mut next = 0;
        for (j, b) in l.batch.buffers().unwrap().iter().enumerate() {
            let (o, n) = (b.offset() as usize, b.length() as usize);
            assert!(o >= next, "block {i} buffer {j} at {o} before {next}");
            next = o + n;
            assert!(next <= body, "block {i} buffer {j} past the body");
        }
    }
}

/// Batches of every supported type, several dictionaries among them.
fn layout_batches() -> Vec<RecordBatch> {
    let d16: ArrayRef = Arc::new(DictionaryArray::<UInt16Type>::from_iter([
        "x", "y", "x", "z",
    ]));
    let d8: ArrayRef = Arc::new(DictionaryArray::<Int8Type>::from_iter(["p", "q", "p", "p"]));
    let e = every_type(4);
    let schema = e.schema();
    let mut cols: Vec<(&str, ArrayRef, bool)> = schema
        .fields()
        .iter()
        .zip(e.columns())
        .map(|(f, c)| (f.name().as_str(), c.clone(), true))
        .collect();
    cols.push(("d16", d16, false));
    cols.push(("d8", d8, false));
    vec![
        every_type(100),
        every_type(100).slice(7, 50),
        every_type(0),
        every_type(1),
        batch_of(cols),
    ]
}

/// arrow-ipc's FileWriter lays out what it writes as the reader requires
/// (blocks and buffers one after another), with the alignment of our
/// writer and with its default one; and our reader accepts our writer's.
#[test]
fn arrow_writer_lays_out_blocks_and_buffers_in_order() {
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
    use arrow_ipc::MetadataVersion;
    for batch in layout_batches() {
        for opts in [
            IpcWriteOptions::try_new(64, false, MetadataVersion::V5).unwrap(),
            IpcWriteOptions::try_new(8, false, MetadataVersion::V5).unwrap(),
        ] {
            let mut w =
                FileWriter::try_new_with_options(Vec::new(), &batch.schema(), opts).unwrap();
            w.write(&batch).unwrap();
            w.finish().unwrap();
            assert_laid_out_in_order(&w.into_inner().unwrap());
        }
        let frame = encode(&batch).unwrap();
        let ipc = ipc_section(&frame);
        assert_laid_out_in_order(&ipc);
        assert_eq!(record_batch_from_ipc(&ipc).unwrap(), batch);
    }
}

/// `frame` is refused with a typed error saying that something overlaps
/// (not decoded: the batch of a hostile frame is large to print).
fn assert_refused_as_overlapping(frame: &[u8]) {
    match decode::<RecordBatch>(&Buffer::copy_aligned(frame)) {
        Err(FrameError::BadSection { reason, .. }) if reason.contains("overlaps") => {}
        Err(e) => panic!("another error: {e}"),
        Ok(b) => panic!(
            "decoded: {} columns of {} rows",
            b.num_columns(),
            b.num_rows()
        ),
    }
}

/// Columns of the hostile frames below (each a few hundred bytes of the
/// frame, each made to validate the same large range).
const ALIASES: usize = 2000;

/// A frame whose 2,000 string columns all point their offsets and values at
/// one 64 KiB range of the body: read, each column would validate the whole
/// range again (128 MB of UTF-8 from a frame of about 0.5 MB). Buffers must
/// lie one after another: a typed error, before arrow sees the bytes.
#[test]
fn aliased_buffers_are_refused() {
    let big = "é".repeat(8 * 1024);
    let mut cols: Vec<(String, ArrayRef)> = vec![(
        "c0".into(),
        Arc::new(aa::StringArray::from(vec![big.as_str(); 4])),
    )];
    for i in 1..ALIASES {
        cols.push((
            format!("c{i}"),
            Arc::new(aa::StringArray::from(vec![""; 4])),
        ));
    }
    let batch = batch_of(
        cols.iter()
            .map(|(n, a)| (n.as_str(), a.clone(), false))
            .collect(),
    );
    let mut frame = encode(&batch).unwrap().to_vec();
    let sec = section_range(&frame);
    let patches: Vec<(usize, [u8; 16])> = {
        let ipc = &frame[sec.clone()];
        let blocks = blocks_of(ipc);
        let buffers = blocks[0].batch.buffers().unwrap();
        assert_eq!(buffers.len(), 3 * ALIASES);
        // Column c's offsets and values (buffers 3c+1, 3c+2) become c0's.
        (1..ALIASES)
            .flat_map(|c| [1, 2].map(|k| (3 * c + k, buffers.get(k).0)))
            .map(|(i, bytes)| (sec.start + pos_in(ipc, buffers.get(i)), bytes))
            .collect()
    };
    for (at, bytes) in patches {
        frame[at..at + 16].copy_from_slice(&bytes);
    }
    assert!(reseal(&mut frame));
    assert_refused_as_overlapping(&frame);
}

/// A frame of 500 dictionaries whose footer blocks all end at the last
/// one's body (their metadata stretched over the messages between) and whose
/// messages all describe that body: read, each dictionary would decode and
/// validate the same 64 KiB again. Footer blocks must lie one after another:
/// a typed error.
#[test]
fn dictionaries_sharing_one_body_are_refused() {
    const DICTS: usize = 500;
    let big = "é".repeat(32 * 1024);
    let mut cols: Vec<(String, ArrayRef)> = Vec::new();
    for i in 0..DICTS {
        let v = if i == DICTS - 1 { big.as_str() } else { "a" };
        let keys = aa::Int32Array::from(vec![0]);
        let d =
            DictionaryArray::<Int32Type>::try_new(keys, Arc::new(aa::StringArray::from(vec![v])))
                .unwrap();
        cols.push((format!("d{i}"), Arc::new(d)));
    }
    let batch = batch_of(
        cols.iter()
            .map(|(n, a)| (n.as_str(), a.clone(), false))
            .collect(),
    );
    let mut frame = encode(&batch).unwrap().to_vec();
    let sec = section_range(&frame);
    let mut patches: Vec<(usize, Vec<u8>)> = Vec::new();
    {
        let ipc = &frame[sec.clone()];
        let n = ipc.len();
        let footer_len = i32::from_le_bytes(ipc[n - 10..n - 6].try_into().unwrap()) as usize;
        let footer = arrow_ipc::root_as_footer(&ipc[n - 10 - footer_len..n - 10]).unwrap();
        let dicts = footer.dictionaries().unwrap();
        let blocks = blocks_of(ipc);
        assert_eq!(dicts.len(), DICTS);
        let last = &blocks[DICTS - 1];
        let (lo, lm, lb) = last.block;
        let ids: std::collections::HashSet<_> = blocks.iter().filter_map(|l| l.id).collect();
        assert_eq!(ids.len(), DICTS, "distinct ids");
        for (i, l) in blocks[..DICTS - 1].iter().enumerate() {
            // The message describes the last body: its node and buffers.
            let (nodes, lnodes) = (l.batch.nodes().unwrap(), last.batch.nodes().unwrap());
            patches.push((
                sec.start + pos_in(ipc, nodes.get(0)),
                lnodes.get(0).0.to_vec(),
            ));
            let (bufs, lbufs) = (l.batch.buffers().unwrap(), last.batch.buffers().unwrap());
            for k in 0..bufs.len() {
                patches.push((
                    sec.start + pos_in(ipc, bufs.get(k)),
                    lbufs.get(k).0.to_vec(),
                ));
            }
            // The block's body is the last body.
            let (off, _, _) = l.block;
            let stretched = arrow_ipc::Block::new(off as i64, (lo + lm - off) as i32, lb as i64);
            patches.push((sec.start + pos_in(ipc, dicts.get(i)), stretched.0.to_vec()));
        }
    }
    for (at, bytes) in patches {
        frame[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    assert!(reseal(&mut frame));
    assert_refused_as_overlapping(&frame);
}

/// `ipc` (an IPC file of `schema`) with its footer replaced by one naming
/// `dictionaries` and `batches`, whose custom metadata is `repeats` pointers
/// to one entry of 64 KiB.
fn with_footer(
    ipc: &[u8],
    schema: &Schema,
    dictionaries: &[arrow_ipc::Block],
    batches: &[arrow_ipc::Block],
    repeats: usize,
) -> Vec<u8> {
    use arrow_ipc::{Footer, FooterArgs, KeyValue, KeyValueArgs};
    let n = ipc.len();
    let footer_len = i32::from_le_bytes(ipc[n - 10..n - 6].try_into().unwrap()) as usize;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let key = fbb.create_string("k");
    let value = fbb.create_string(&"m".repeat(64 * 1024));
    let kv = KeyValue::create(
        &mut fbb,
        &KeyValueArgs {
            key: Some(key),
            value: Some(value),
        },
    );
    let custom_metadata = Some(fbb.create_vector(&vec![kv; repeats]));
    // Dictionary ids numbered from 0 in schema order, as arrow-ipc's writer
    // numbers them.
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    let schema = Some(
        arrow_ipc::convert::IpcSchemaEncoder::new()
            .with_dictionary_tracker(&mut tracker)
            .schema_to_fb_offset(&mut fbb, schema),
    );
    let dictionaries = Some(fbb.create_vector(dictionaries));
    let record_batches = Some(fbb.create_vector(batches));
    let footer = Footer::create(
        &mut fbb,
        &FooterArgs {
            version: arrow_ipc::MetadataVersion::V5,
            schema,
            dictionaries,
            recordBatches: record_batches,
            custom_metadata,
        },
    );
    fbb.finish(footer, None);
    let footer = fbb.finished_data();
    let mut out = ipc[..n - 10 - footer_len].to_vec();
    out.extend_from_slice(footer);
    out.extend_from_slice(&(footer.len() as i32).to_le_bytes());
    out.extend_from_slice(b"ARROW1");
    out
}

/// `ipc` is refused (read as a standalone IPC file) with a typed error
/// whose reason contains `needle`.
fn assert_ipc_refused(ipc: &[u8], needle: &str) {
    match record_batch_from_ipc(&Buffer::copy_aligned(ipc)) {
        Err(FrameError::BadSection { reason, .. }) if reason.contains(needle) => {}
        Err(e) => panic!("another error: {e}"),
        Ok(b) => panic!("decoded: {} rows", b.num_rows()),
    }
}

/// A file whose schema says big-endian (arrow-ipc's decoders would read its
/// values as little-endian, wrongly; its FileReader refuses it): refused.
#[test]
fn a_big_endian_file_is_refused() {
    use arrow_ipc::{
        Endianness, FieldBuilder, Footer, FooterArgs, IntBuilder, SchemaBuilder, Type,
    };
    let batch = batch_of(vec![(
        "x",
        Arc::new(aa::Int32Array::from(vec![1, 2])),
        false,
    )]);
    let ipc = ipc_section(&encode(&batch).unwrap()).to_vec();
    let (off, meta, body) = blocks_of(&ipc)[0].block;
    let block = arrow_ipc::Block::new(off as i64, meta as i32, body as i64);
    let file_with = |endianness: Endianness| {
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let name = fbb.create_string("x");
        let mut ib = IntBuilder::new(&mut fbb);
        ib.add_bitWidth(32);
        ib.add_is_signed(true);
        let int = ib.finish();
        let children = fbb.create_vector::<flatbuffers::WIPOffset<arrow_ipc::Field<'_>>>(&[]);
        let mut fb = FieldBuilder::new(&mut fbb);
        fb.add_name(name);
        fb.add_nullable(false);
        fb.add_type_type(Type::Int);
        fb.add_type_(int.as_union_value());
        fb.add_children(children);
        let field = fb.finish();
        let fields = fbb.create_vector(&[field]);
        let mut sb = SchemaBuilder::new(&mut fbb);
        sb.add_endianness(endianness);
        sb.add_fields(fields);
        let schema = sb.finish();
        let dictionaries = fbb.create_vector::<arrow_ipc::Block>(&[]);
        let batches = fbb.create_vector(&[block]);
        let footer = Footer::create(
            &mut fbb,
            &FooterArgs {
                version: arrow_ipc::MetadataVersion::V5,
                schema: Some(schema),
                dictionaries: Some(dictionaries),
                recordBatches: Some(batches),
                custom_metadata: None,
            },
        );
        fbb.finish(footer, None);
        let n = ipc.len();
        let old_len = i32::from_le_bytes(ipc[n - 10..n - 6].try_into().unwrap()) as usize;
        let footer = fbb.finished_data();
        let mut out = ipc[..n - 10 - old_len].to_vec();
        out.extend_from_slice(footer);
        out.extend_from_slice(&(footer.len() as i32).to_le_bytes());
        out.extend_from_slice(b"ARROW1");
        out
    };
    // The same footer, little-endian, reads.
    let little = file_with(Endianness::Little);
    assert_eq!(
        record_batch_from_ipc(&Buffer::copy_aligned(&little)).unwrap(),
        batch
    );
    assert_ipc_refused(&file_with(Endianness::Big), "big-endian");
}

/// An IPC file whose footer points 10,000 times at one metadata entry of
/// 64 KiB (a flatbuffer may point at one table from many places): 40 KB of
/// pointers that the flatbuffer verifier would expand to 655 MB of strings
/// to check. The footer is refused as a flatbuffer expanding far past its
/// length: a typed error.
#[test]
fn footer_repeating_one_table_by_reference_is_refused() {
    let batch = batch_of(vec![(
        "x",
        Arc::new(aa::Int32Array::from(vec![1, 2])),
        false,
    )]);
    let ipc = ipc_section(&encode(&batch).unwrap()).to_vec();
    let (off, meta, body) = blocks_of(&ipc)[0].block;
    let block = arrow_ipc::Block::new(off as i64, meta as i32, body as i64);
    // The same footer without the repeats reads.
    let honest = with_footer(&ipc, &batch.schema(), &[], &[block], 1);
    assert_eq!(
        record_batch_from_ipc(&Buffer::copy_aligned(&honest)).unwrap(),
        batch
    );
    let hostile = with_footer(&ipc, &batch.schema(), &[], &[block], 10_000);
    assert!(hostile.len() < 120_000, "{} bytes", hostile.len());
    assert_ipc_refused(&hostile, "footer is not a valid flatbuffer");
}

/// A footer naming one dictionary message 1,000 times (blocks over the same
/// bytes): refused as overlapping blocks, before the second is read.
#[test]
fn dictionary_blocks_over_one_message_are_refused() {
    let d: ArrayRef = Arc::new(DictionaryArray::<UInt16Type>::from_iter(["a", "b", "a"]));
    let batch = batch_of(vec![("d", d, false)]);
    let ipc = ipc_section(&encode(&batch).unwrap()).to_vec();
    let blocks: Vec<arrow_ipc::Block> = blocks_of(&ipc)
        .iter()
        .map(|l| arrow_ipc::Block::new(l.block.0 as i64, l.block.1 as i32, l.block.2 as i64))
        .collect();
    let [dict, batch_block] = blocks[..] else {
        panic!("{} blocks", blocks.len());
    };
    let honest = with_footer(&ipc, &batch.schema(), &[dict], &[batch_block], 1);
    assert_eq!(
        record_batch_from_ipc(&Buffer::copy_aligned(&honest)).unwrap(),
        batch
    );
    let hostile = with_footer(&ipc, &batch.schema(), &[dict; 1000], &[batch_block], 1);
    assert_ipc_refused(&hostile, "overlaps");
}
