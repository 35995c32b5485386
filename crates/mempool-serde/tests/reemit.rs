//! A parsed frame is re-emitted byte for byte, whatever its (valid) padding.

use mempool_arrays::Buffer;
use mempool_serde::{EncodedFrame, Frame, ReadOptions};

/// FORMAT.md step 4 accepts a section anywhere after the previous one, at a
/// multiple of 64, and the body checksum covers the padding: so a frame
/// whose padding before a section is 128 bytes, or holds non-zero bytes, is
/// valid. `EncodedFrame::from_frame` — how a store re-emits a frame it does
/// not know — writes `ZEROS[..off - pos]` for the padding: it panics on the
/// first and changes the bytes (and so breaks the checksum) on the second.
#[test]
fn from_frame_reemits_any_valid_frame_unchanged() {
    for (gap, fill) in [(128usize, 0u8), (64, 0xAA)] {
        let good = mempool_serde::encode(&vec![7u8; 100]).unwrap();
        let b = good.as_slice();
        let name_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
        let table = 64 + name_len.next_multiple_of(8);
        let off = u64::from_le_bytes(b[table..table + 8].try_into().unwrap()) as usize;
        let mut v = b[..off].to_vec();
        v.extend(std::iter::repeat_n(fill, gap));
        v.extend_from_slice(&b[off..]);
        let len = v.len() as u64;
        v[24..32].copy_from_slice(&len.to_le_bytes());
        v[table..table + 8].copy_from_slice(&((off + gap) as u64).to_le_bytes());
        assert!(mempool_serde::fuzzing::reseal(&mut v));
        let bytes = Buffer::copy_aligned(&v);
        let frame = Frame::parse(&bytes, &ReadOptions::default()).expect("a valid frame");
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let enc = EncodedFrame::from_frame(&frame);
            let chunks: Vec<u8> = enc.chunks().flatten().copied().collect();
            (enc.to_buffer().as_slice().to_vec(), chunks)
        }));
        match again {
            Err(_) => panic!("gap {gap}: from_frame panicked"),
            Ok((written, chunks)) => {
                assert!(
                    written == v && chunks == v,
                    "gap {gap} fill {fill:#x}: re-emitted bytes differ from the frame"
                );
            }
        }
    }
}
