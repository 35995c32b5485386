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
    assert_eq!((s.disk_bytes, s.segment_files), (0, 0), "{s:?}");
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
