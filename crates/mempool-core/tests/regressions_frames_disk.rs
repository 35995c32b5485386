//! Regressions from a second review: hostile but valid frame entries sent
//! and spilled unchanged, a full disk costing no encoding, saves into
//! another pool's session refused. Each failed before its fix.

mod common;

use mempool_arrays::Buffer;
use mempool_core::{DRef, Pool, PoolConfig};

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A valid frame (both checksums right, accepted by `Frame::parse`) whose
/// one section starts `gap` bytes later than an encoder would put it, the
/// gap filled with `fill`. FORMAT.md step 4 only asks that a section start
/// at a multiple of 64 after the previous one ends.
fn frame_with_gap(gap: usize, fill: u8) -> Buffer {
    assert!(gap.is_multiple_of(64));
    let good = mempool_serde::encode(&vec![7u8; 100]).unwrap();
    let b = good.as_slice();
    let name_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let table = 64 + name_len.next_multiple_of(8);
    let off = le_u64(b, table) as usize;
    let mut out = b[..off].to_vec();
    out.extend(std::iter::repeat_n(fill, gap));
    out.extend_from_slice(&b[off..]);
    let len = out.len() as u64;
    out[24..32].copy_from_slice(&len.to_le_bytes());
    out[table..table + 8].copy_from_slice(&((off + gap) as u64).to_le_bytes());
    assert!(mempool_serde::fuzzing::reseal(&mut out));
    let buf = Buffer::copy_aligned(&out);
    // The format accepts it, and it decodes.
    assert_eq!(
        mempool_serde::decode::<Vec<u8>>(&buf).unwrap(),
        vec![7u8; 100]
    );
    buf
}

fn sent_bytes(p: &Pool, r: &DRef) -> Vec<u8> {
    let src = p.frame(r).unwrap();
    let enc = src.encode().unwrap();
    enc.chunks().flatten().copied().collect()
}

/// A frame entry is re-emitted by `EncodedFrame::from_frame`, which writes
/// `ZEROS[..off - pos]` for the padding before each section: a valid frame
/// whose padding is wider than 64 bytes makes `frame()`+`chunks()` (the
/// network send) panic, and so does its spill — in whichever caller's `set`
/// picks it as a victim. A hostile peer's `set_frame` poisons the pool.
#[test]
fn frame_entry_with_wide_padding_is_sent_and_spilled() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let bytes = frame_with_gap(128, 0);
    let r = p
        .set_frame(bytes.clone())
        .expect("a valid frame is accepted");
    let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sent_bytes(&p, &r)));
    let sent_ok = matches!(&sent, Ok(s) if s.as_slice() == bytes.as_slice());
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.move_to_disk(&r).map(|_| ())
    }));
    assert!(
        sent_ok && matches!(moved, Ok(Ok(()))),
        "frame(): panicked={}; move_to_disk: {:?}",
        sent.is_err(),
        moved
            .as_ref()
            .map(|m| m.as_ref().map_err(|e| e.to_string()))
            .map_err(|_| "panic")
    );
}

/// Same re-emission writes zeros where the received frame had other
/// padding bytes: the body checksum (which covers the padding) no longer
/// matches. The frame sent back is not the one stored, and after a spill
/// the value is unreadable: lost.
#[test]
fn frame_entry_with_nonzero_padding_survives_a_spill() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::sync_pool(dir.path(), 1 << 20, None);
    let bytes = frame_with_gap(64, 0xAA);
    let r = p
        .set_frame(bytes.clone())
        .expect("a valid frame is accepted");
    let sent = sent_bytes(&p, &r);
    p.move_to_disk(&r).unwrap();
    let back = p
        .get::<Vec<u8>>(&r)
        .map(|v| v.len())
        .map_err(|e| e.to_string());
    assert!(
        sent.as_slice() == bytes.as_slice() && back == Ok(100),
        "sent back unchanged: {}; get after spill: {back:?}",
        sent.as_slice() == bytes.as_slice()
    );
}

/// A value whose encoding is made at write time, as `Serde<T>`'s postcard
/// bytes are (an owned section): it counts its encodes.
struct Counted(Vec<u8>);

static ENCODED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl mempool_serde::FrameType for Counted {
    fn type_name() -> std::borrow::Cow<'static, str> {
        "test::Counted".into()
    }
}

impl mempool_serde::MmWrite for Counted {
    fn write_sections<'a>(
        &'a self,
        w: &mut mempool_serde::SectionWriter<'a>,
    ) -> mempool_serde::Result<()> {
        ENCODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        w.owned(self.0.iter().map(|b| b ^ 0x5A).collect()); // "encoding"
        Ok(())
    }
}

impl mempool_serde::MmRead for Counted {
    fn read_sections(r: &mut mempool_serde::SectionReader<'_>) -> mempool_serde::Result<Self> {
        Ok(Self(r.bytes()?.iter().map(|b| b ^ 0x5A).collect()))
    }
}

impl mempool_serde::MemSize for Counted {
    fn mem_size(&self) -> u64 {
        self.0.len() as u64
    }
}

fn encoded() -> usize {
    ENCODED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The issue: "reserve disk before encoding and hashing". `write_frame`
/// reserves after `layout()`, which for `Serde<T>` (and `Vec<String>`, and
/// any owned section) *is* the whole encoding: with no disk room at all,
/// every attempt to evict such a value still encodes it first. (Only the
/// hashing and the write come after the reservation.)
#[test]
fn a_full_disk_costs_no_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::new(
        PoolConfig::default()
            .max_memsize(20_000)
            .max_disksize(Some(32)) // smaller than any frame header
            .write_behind(false)
            .spill_dir(dir.path()),
    )
    .unwrap();
    let a = p.set(Counted(vec![1u8; 1000])).unwrap();
    let before = encoded();
    for _ in 0..5 {
        let err = p.set(vec![0u8; 19_500]).unwrap_err();
        assert!(
            matches!(&err.error, mempool_core::PoolError::Spill { .. }),
            "{err}"
        );
    }
    assert!(p.contains(&a));
    assert_eq!(
        encoded() - before,
        0,
        "encodes of the victim while max_disksize left room for no frame"
    );
}

/// `save_to_disk` refuses only its own pool's session directory (the fix of
/// `save_to_disk_through_dotdot_is_refused`). Pools share the spill root
/// (`.mempool` by default, one session directory each): a save into another
/// live pool's session directory renames over one of its spill files, and
/// that pool's next get returns the saved value instead of its own, no
/// error — the wrong-data case the earlier fix closed for the pool itself.
#[test]
fn save_to_disk_into_another_pools_session_is_refused() {
    use mempool_arrays::PrimitiveArray;
    let dir = tempfile::tempdir().unwrap();
    let a = common::sync_pool(dir.path(), 1 << 20, None);
    let b = common::sync_pool(dir.path(), 1 << 20, None);
    let ra = a.set(PrimitiveArray::from(vec![1.0f64; 100])).unwrap();
    let rb = b.set(PrimitiveArray::from(vec![2.0f64; 100])).unwrap();
    let fb = b.move_to_disk(&rb).unwrap();
    let saved = a.save_to_disk(&ra, &fb.path);
    let back = b.get::<PrimitiveArray<f64>>(&rb).unwrap();
    assert!(
        saved.is_err() && back.values()[0] == 2.0,
        "save_to_disk({:?}) = {saved:?}; b's value now reads {}",
        fb.path,
        back.values()[0]
    );
}
