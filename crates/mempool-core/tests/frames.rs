//! Frame entries: a pool stores the bytes of a frame without knowing its
//! type, spills them as they are, maps them back, decodes them for a
//! `get::<T>` of the right type, and gives any entry back as frame bytes.

mod common;

use std::borrow::Cow;

use mempool_arrays::{Buffer, PrimitiveArray, StringArray};
use mempool_core::{DRef, Pool, PoolConfig, PoolError};
use mempool_serde::{
    encode, FrameError, FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter,
};

fn strings(seed: usize, n: usize) -> StringArray {
    StringArray::from(
        (0..n)
            .map(|i| (i % 7 != 3).then(|| format!("s{seed}-{i}")))
            .collect::<Vec<_>>(),
    )
}

/// The frame bytes `pool.frame(r)` gives, in one buffer, assembled from its
/// chunks as a sender would send them.
fn frame_bytes(pool: &Pool, r: &DRef) -> Vec<u8> {
    let src = pool.frame(r).unwrap();
    let enc = src.encode().unwrap();
    let mut out = Vec::with_capacity(enc.len());
    for c in enc.chunks() {
        out.extend_from_slice(c);
    }
    assert_eq!(out.len(), enc.len());
    assert_eq!(out, enc.to_buffer().as_slice());
    out
}

fn spill_file_bytes(pool: &Pool, r: &DRef) -> Vec<u8> {
    use std::os::unix::fs::FileExt as _;
    let f = pool.move_to_disk(r).unwrap();
    let file = std::fs::File::open(&f.path).unwrap();
    let mut bytes = vec![0u8; f.size as usize];
    file.read_exact_at(&mut bytes, f.offset).unwrap();
    bytes
}

#[test]
fn a_stored_frame_is_read_as_its_type_spills_as_is_and_maps_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 64 << 20, None);
    let value = strings(1, 5000);
    let bytes = encode(&value).unwrap();
    let r = p.set_frame(bytes.clone()).unwrap();
    let info = p.info(&r).unwrap();
    assert!(info.is_frame && info.in_memory, "{info:?}");
    assert_eq!(info.type_name, "StringArray");
    assert_eq!(info.mem_size, bytes.len() as u64);
    assert_eq!(p.stats().mem_bytes, bytes.len() as u64);

    // Decoded for a get of the right type; the wrong type names both.
    assert_eq!(*p.get::<StringArray>(&r).unwrap(), value);
    let err = p.get::<PrimitiveArray<f64>>(&r).unwrap_err();
    match &err {
        PoolError::TypeMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, "PrimitiveArray<f64>");
            assert_eq!(found, "StringArray");
        }
        other => panic!("expected a type mismatch, got {other}"),
    }

    // The spilled range is the frame, byte for byte (no frame inside a frame).
    assert!(spill_file_bytes(&p, &r) == bytes.as_slice());
    assert!(!p.is_in_memory(&r).unwrap());
    // A wrong-type get of a frame on disk fails before reading it back.
    assert!(matches!(
        p.get::<PrimitiveArray<f64>>(&r),
        Err(PoolError::TypeMismatch { .. })
    ));
    let back = p.get::<StringArray>(&r).unwrap();
    assert_eq!(*back, value);
    let s = p.stats();
    assert_eq!((s.restores, s.mem_values), (1, 1), "{s:?}");
    assert!(p.info(&r).unwrap().is_frame, "it stays a frame entry");
    p.delete(&r).unwrap();
    // The value read back maps the spilled range: it pins it past the delete.
    assert_eq!(common::spill_files(p.session_dir()).len(), 1);
    assert_eq!(*back, value);
    drop(back);
    assert_eq!(
        common::files_holding_bytes(p.session_dir()),
        Vec::<String>::new()
    );
    assert_eq!(p.stats().segment_live_bytes, 0);
}

#[test]
fn frame_of_every_kind_of_entry_is_the_encoding_of_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 64 << 20, None);
    let value = strings(2, 3000);
    let expected = encode(&value).unwrap();

    let typed = p.set(value.clone()).unwrap();
    assert!(!p.frame(&typed).unwrap().is_mapped());
    assert_eq!(
        frame_bytes(&p, &typed),
        expected.as_slice(),
        "typed, in memory"
    );
    p.move_to_disk(&typed).unwrap();
    let src = p.frame(&typed).unwrap();
    assert!(src.is_mapped() && src.type_name() == "StringArray");
    src.verify().unwrap();
    assert_eq!(
        frame_bytes(&p, &typed),
        expected.as_slice(),
        "typed, on disk"
    );

    let framed = p.set_frame(expected.clone()).unwrap();
    assert_eq!(
        frame_bytes(&p, &framed),
        expected.as_slice(),
        "frame, in memory"
    );
    p.move_to_disk(&framed).unwrap();
    assert_eq!(
        frame_bytes(&p, &framed),
        expected.as_slice(),
        "frame, on disk"
    );

    // A frame does not change the value's place or recency.
    assert!(!p.is_in_memory(&framed).unwrap());
    assert_eq!(p.stats().restores, 0);
}

/// A type only the sender knows: this test's pool never decodes it.
struct Foreign(Vec<u8>);

impl FrameType for Foreign {
    fn type_name() -> Cow<'static, str> {
        "elsewhere::Foreign".into()
    }
}

impl MmWrite for Foreign {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        w.meta(&(self.0.len() as u64))?;
        w.bytes(&self.0);
        Ok(())
    }
}

#[test]
fn a_frame_of_an_unknown_type_is_stored_and_sent_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // Small bound: the frames must spill to make room for each other.
    let p = common::sync_pool(dir.path(), 300_000, None);
    let frames: Vec<Buffer> = (0..4u8)
        .map(|i| encode(&Foreign(vec![i; 200_000])).unwrap())
        .collect();
    let refs: Vec<DRef> = frames
        .iter()
        .map(|f| p.set_frame(f.clone()).unwrap())
        .collect();
    let s = p.stats();
    assert!(s.mem_bytes <= 300_000 && s.spills >= 2, "{s:?}");
    for (r, f) in refs.iter().zip(&frames) {
        assert_eq!(frame_bytes(&p, r), f.as_slice());
        assert_eq!(p.info(r).unwrap().type_name, "elsewhere::Foreign");
        let err = p.get::<StringArray>(r).unwrap_err();
        assert!(err.to_string().contains("elsewhere::Foreign"), "{err}");
    }
    // Read back by mapping, bytes unchanged after a second spill.
    for (r, f) in refs.iter().zip(&frames) {
        p.move_to_disk(r).unwrap();
        assert_eq!(frame_bytes(&p, r), f.as_slice());
    }
}

#[test]
fn bad_frame_bytes_are_refused_and_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let good = encode(&vec![1.5f64; 100]).unwrap();
    let mut bad = good.as_slice().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let bad = Buffer::copy_aligned(&bad);
    let err = p.set_frame(bad.clone()).unwrap_err();
    assert!(
        matches!(err.error, PoolError::Frame(FrameError::BodyChecksum { .. })),
        "{err}"
    );
    assert_eq!(err.value.as_slice(), bad.as_slice(), "the bytes come back");
    let short = Buffer::copy_aligned(&good.as_slice()[..40]);
    let err = p.set_frame(short).unwrap_err();
    assert!(matches!(err.error, PoolError::Frame(_)), "{err}");
    let s = p.stats();
    assert_eq!((s.mem_values, s.disk_values), (0, 0));
}

#[test]
fn a_frame_larger_than_memory_goes_straight_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 10_000, None);
    let value = PrimitiveArray::from(vec![7u64; 5000]);
    let bytes = encode(&value).unwrap();
    let r = p.set_frame(bytes.clone()).unwrap();
    let info = p.info(&r).unwrap();
    assert!(!info.in_memory && info.disk_size == Some(bytes.len() as u64));
    assert_eq!(*p.get::<PrimitiveArray<u64>>(&r).unwrap(), value);
    assert_eq!(p.stats().mem_bytes, 0);
    assert_eq!(frame_bytes(&p, &r), bytes.as_slice());
}

/// A value whose stored size is chosen by the test.
struct Sized(Vec<u8>);

impl FrameType for Sized {
    fn type_name() -> Cow<'static, str> {
        "test::Sized".into()
    }
}

impl MmWrite for Sized {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> mempool_serde::Result<()> {
        w.bytes(&self.0);
        Ok(())
    }
}

impl MmRead for Sized {
    fn read_sections(r: &mut SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self(r.bytes()?.to_vec()))
    }
}

impl MemSize for Sized {
    fn mem_size(&self) -> u64 {
        self.0.len() as u64
    }
}

#[test]
fn a_failed_set_hands_the_value_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(1000)
            .max_disksize(Some(1500))
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    // Straight to disk, past the disk bound.
    let big = Sized(vec![42; 5000]);
    let err = p.set(big).unwrap_err();
    assert!(matches!(err.error, PoolError::DiskFull { .. }), "{err}");
    assert_eq!(err.value.0, vec![42; 5000]);
    // Making room fails: the victim cannot be written (disk bound), so the
    // new value comes back and the old one is still readable.
    let a = p.set(Sized(vec![1; 900])).unwrap();
    let b = p.set(Sized(vec![2; 900])).unwrap(); // a spills (≈1 kB on disk)
    let err = p.set(Sized(vec![3; 900])).unwrap_err();
    assert!(matches!(err.error, PoolError::Spill { .. }), "{err}");
    assert_eq!(err.into_value().0, vec![3; 900]);
    assert_eq!(p.get::<Sized>(&a).unwrap().0, vec![1; 900]);
    assert_eq!(p.get::<Sized>(&b).unwrap().0, vec![2; 900]);
    // `?` turns it into a PoolError.
    let f = || -> Result<DRef, PoolError> { Ok(p.set(Sized(vec![4; 5000]))?) };
    assert!(matches!(f(), Err(PoolError::DiskFull { .. })));
}

#[test]
fn frame_of_a_value_in_memory_borrows_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 64 << 20, None);
    // A live typed value: the data section is the array's own buffer.
    let value = PrimitiveArray::from(vec![3.25f64; 100_000]);
    let data = value.buffer().as_slice().as_ptr_range();
    let r = p.set(value).unwrap();
    let src = p.frame(&r).unwrap();
    let enc = src.encode().unwrap();
    let section = enc.chunks().find(|c| c.len() == 800_000).expect("the data");
    assert_eq!(
        section.as_ptr_range(),
        data,
        "the live value's buffer, not a copy"
    );
    // A frame entry in memory: every chunk lies in the stored buffer.
    let bytes = encode(&strings(3, 1000)).unwrap();
    let stored = bytes.as_slice().as_ptr_range();
    let f = p.set_frame(bytes.clone()).unwrap();
    let src = p.frame(&f).unwrap();
    let enc = src.encode().unwrap();
    for c in enc.chunks() {
        assert!(
            stored.contains(&c.as_ptr()) && c.as_ptr_range().end <= stored.end,
            "a chunk outside the stored frame: a copy"
        );
    }
}
