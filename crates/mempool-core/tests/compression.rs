//! Optional compression of spilled frames: values come back equal (by
//! decompression into memory, not mapping), frames are sent back as they
//! were stored, FileRefs read, and the stats say what was saved.

mod common;

use mempool_arrays::{MemoryKind, PrimitiveArray, StringArray};
use mempool_core::{Pool, PoolConfig};
use mempool_serde::{encode, Codec};

fn pool(dir: &tempfile::TempDir, codec: Option<Codec>) -> Pool {
    Pool::new(
        PoolConfig::default()
            .max_memsize(1 << 20)
            .compression(codec)
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap()
}

fn strings(seed: usize) -> StringArray {
    StringArray::from(
        (0..20_000)
            .map(|i| Some(format!("category-{}-{}", (i * 7 + seed) % 13, i % 100)))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn compressed_spills_come_back_equal_and_save_space() {
    let dir = tempfile::tempdir().unwrap();
    let plain_dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, Some(Codec::Lz4));
    let plain = pool(&plain_dir, None);
    let values: Vec<StringArray> = (0..4).map(strings).collect();
    let refs: Vec<_> = values.iter().map(|v| p.set(v.clone()).unwrap()).collect();
    for v in &values {
        plain.set(v.clone()).unwrap();
    }
    let (s, ps) = (p.stats(), plain.stats());
    assert!(s.spills >= 2 && s.spills == ps.spills, "{s:?} vs {ps:?}");
    assert!(s.compression_saved_bytes > 0, "{s:?}");
    assert!(
        s.disk_bytes * 3 < ps.disk_bytes,
        "compressed {} vs plain {} bytes on disk",
        s.disk_bytes,
        ps.disk_bytes
    );
    assert_eq!(s.disk_bytes + s.compression_saved_bytes, ps.disk_bytes);
    assert_eq!(ps.compression_saved_bytes, 0);
    for (r, v) in refs.iter().zip(&values) {
        let back = p.get::<StringArray>(r).unwrap();
        assert_eq!(&*back, v);
        // Decompressed into memory, not mapped.
        let (offsets, _, _) = back.parts();
        assert_eq!(offsets.memory_kind(), MemoryKind::Heap);
    }
    // A FileRef of a compressed spill reads back too, and frame() gives
    // the frame, not the compressed container.
    let f = p.move_to_disk(&refs[0]).unwrap();
    assert_eq!(f.read::<StringArray>().unwrap(), values[0]);
    let src = p.frame(&refs[0]).unwrap();
    assert_eq!(
        src.encode().unwrap().to_buffer().as_slice(),
        encode(&values[0]).unwrap().as_slice()
    );
    for r in &refs {
        p.delete(r).unwrap();
    }
    let s = p.stats();
    // At most the active segment is left: empty, punched whole.
    assert_eq!((s.disk_bytes, s.segment_live_bytes), (0, 0), "{s:?}");
    assert!(s.segment_files <= 1, "{s:?}");
}

#[test]
fn a_frame_entry_spilled_compressed_is_sent_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&dir, Some(Codec::Lz4));
    let bytes = encode(&PrimitiveArray::from(vec![7u64; 300_000])).unwrap(); // 2.4 MB
    let r = p.set_frame(bytes.clone()).unwrap(); // larger than memory: compressed to disk
    assert!(p.stats().compression_saved_bytes > 2_000_000);
    let sent = p.frame(&r).unwrap().encode().unwrap().to_buffer();
    assert_eq!(sent.as_slice(), bytes.as_slice());
    assert_eq!(
        *p.get::<PrimitiveArray<u64>>(&r).unwrap(),
        PrimitiveArray::from(vec![7u64; 300_000])
    );
}

/// Bytes no compressor can shrink (xorshift64*).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn incompressible_spills_are_accounted_as_written_and_stay_under_the_disk_bound() {
    // An LZ4 container of random bytes is larger than the frame. The disk
    // bound is set so that, were each value stored as its container while
    // reserving only the frame's length, the last write admitted would
    // cross it.
    let sample = noise(1000, 0);
    let frame_len = encode(&sample).unwrap().len() as u64;
    let frame = mempool_serde::EncodedFrame::new(&sample).unwrap();
    let packed_len = mempool_serde::compress_frame(&frame, Codec::Lz4)
        .unwrap()
        .len() as u64;
    assert!(
        packed_len > frame_len,
        "{packed_len} vs {frame_len}: compressible?"
    );
    let max = 7 * packed_len.next_multiple_of(64) + frame_len;
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(1 << 20)
            .max_disksize(Some(max))
            .compression(Some(Codec::Lz4))
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let mut on_disk = Vec::new();
    for seed in 1.. {
        let v = noise(1000, seed);
        let r = p.set(v.clone()).unwrap();
        let f = match p.move_to_disk(&r) {
            Ok(f) => f,
            Err(mempool_core::PoolError::Spill { source, .. })
                if matches!(*source, mempool_core::PoolError::DiskFull { .. }) =>
            {
                break
            }
            Err(e) => panic!("value {seed}: {e}"),
        };
        on_disk.push((r, f, v));
        let s = p.stats();
        let held = s.segment_live_bytes + s.segment_dead_bytes;
        assert!(
            held <= max,
            "value {seed}: {held} bytes held, bound {max}: {s:?}"
        );
        assert!(s.disk_bytes <= max, "value {seed}: {s:?}");
        // What the pool counts is what its segments hold and what its
        // FileRefs name.
        let named: u64 = on_disk.iter().map(|(_, f, _)| f.size).sum();
        assert_eq!(s.disk_bytes, s.segment_live_bytes, "value {seed}: {s:?}");
        assert_eq!(s.disk_bytes, named, "value {seed}: {s:?}");
        assert_eq!(s.bytes_written, named, "value {seed}: {s:?}");
        assert!(seed < 100, "the disk bound never stopped the writes: {s:?}");
    }
    assert!(on_disk.len() >= 7, "{} values fit", on_disk.len());
    // The bytes named are really in the files, in ranges of their own
    // (block allocation is no measure here: file systems allocate late),
    // and every FileRef and every get reads its value back.
    let mut ranges: Vec<_> = on_disk
        .iter()
        .map(|(_, f, _)| (f.path.clone(), f.offset, f.offset + f.size))
        .collect();
    ranges.sort();
    for (i, (path, _, end)) in ranges.iter().enumerate() {
        assert!(*end <= std::fs::metadata(path).unwrap().len());
        if let Some((next, next_start, _)) = ranges.get(i + 1) {
            assert!(next != path || *next_start >= *end, "{ranges:?}");
        }
    }
    let s = p.stats();
    for (r, f, v) in &on_disk {
        assert_eq!(&f.read::<Vec<u8>>().unwrap(), v);
        assert_eq!(&*p.get::<Vec<u8>>(r).unwrap(), v);
    }
    assert_eq!(s.compression_saved_bytes, 0, "{s:?}");
    for (r, _, _) in &on_disk {
        p.delete(r).unwrap();
    }
    let s = p.stats();
    assert_eq!((s.disk_bytes, s.segment_live_bytes), (0, 0), "{s:?}");
}
