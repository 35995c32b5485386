//! Compressed frames (see FORMAT.md, "Compressed frames"): a frame's bytes
//! compressed by a [`Codec`] inside a small container with its own magic,
//! lengths and checksums, for spill files and transfers where bytes cost more
//! than the CPU time to compress them (MemPool.jl's serialization filters).
//!
//! Compressing streams the frame's [`EncodedFrame::chunks`] through the codec,
//! so the frame is never assembled in memory: only the compressed output and
//! the codec's fixed working memory are allocated. Decompressing checks the
//! container before it allocates anything, then gives the frame's bytes in a
//! 64-aligned [`Buffer`], to be read as usual ([`Frame::parse`](crate::Frame::parse),
//! [`decode`](crate::decode)).

use std::io::{BufRead, Write};

use crate::checksum::xxh3_64;
use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
use mempool_arrays::{AlignedVec, Buffer};

use crate::error::{FrameError, Result};
use crate::EncodedFrame;

/// The first eight bytes of every compressed frame (a frame starts with
/// [`MAGIC`](crate::MAGIC) instead).
pub const COMPRESSED_MAGIC: [u8; 8] = *b"MPZFRAME";
/// The compressed-frame container version this build writes and reads.
pub const COMPRESSED_VERSION: u16 = 1;
/// Size of the compressed-frame header in bytes; the payload follows it.
pub const COMPRESSED_HEADER_LEN: usize = 64;

/// The magic number of an LZ4 frame (the LZ4 frame format), little-endian.
const LZ4_FRAME_MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();

/// How a frame is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// LZ4 (the LZ4 frame format, linked blocks of up to 64 KiB, no LZ4
    /// checksums: the container has its own), by the `lz4_flex` crate.
    /// Fast (about 1 GB/s compressing and 3.5 GB/s decompressing a string
    /// frame, on one core), with a moderate ratio: it removes repeats, not
    /// the skew of byte values.
    Lz4,
}

impl Codec {
    /// The codec's id in the container header (never renumbered).
    pub fn id(self) -> u16 {
        match self {
            Codec::Lz4 => 1,
        }
    }

    /// The codec with container id `id`, if this build knows it.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            1 => Some(Codec::Lz4),
            _ => None,
        }
    }

    /// The codec's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Lz4 => "lz4",
        }
    }

    /// Most raw bytes one compressed byte can decode to: the bound on the raw
    /// length that a reader checks before allocating. For LZ4 it is 255 (a
    /// match's length grows by at most 255 per byte of its encoding).
    fn max_expansion(self) -> u64 {
        match self {
            Codec::Lz4 => 255,
        }
    }
}

/// Whether `bytes` start with the compressed-frame magic
/// ([`COMPRESSED_MAGIC`]): the container of [`compress_frame`], to be opened
/// with [`decompress_frame`]. Checks nothing else.
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(&COMPRESSED_MAGIC)
}

/// Compresses `frame` with `codec` into a compressed-frame container
/// (FORMAT.md, "Compressed frames"): a 64-byte header, then the payload.
///
/// The frame's chunks are streamed through the codec, so the frame is never
/// assembled: the memory used is the output plus the codec's working memory
/// (for LZ4, about 300 KiB). The output buffer is 64-byte aligned.
///
/// ```
/// use mempool_arrays::StringArray;
/// use mempool_serde::{compress_frame, decode, decompress_frame, is_compressed, Codec, EncodedFrame};
///
/// let names = StringArray::from_iter_values((0..1000).map(|i| format!("name-{}", i % 10)));
/// let frame = EncodedFrame::new(&names).unwrap();
/// let container = compress_frame(&frame, Codec::Lz4).unwrap();
/// assert!(is_compressed(container.as_slice()));
/// assert!(container.len() < frame.len() / 2);
///
/// // The reader bounds the raw length it accepts (here: 1 MiB).
/// let bytes = decompress_frame(container.as_slice(), 1 << 20).unwrap();
/// assert_eq!(bytes.len(), frame.len());
/// let back: StringArray = decode(&bytes).unwrap();
/// assert_eq!(back, names);
/// ```
///
/// # Errors
/// [`FrameError::Codec`] if the codec fails (it does not for LZ4 writing to
/// memory).
pub fn compress_frame(frame: &EncodedFrame<'_>, codec: Codec) -> Result<AlignedVec> {
    let raw_len = frame.len() as u64;
    let mut out = AlignedVec::with_capacity(COMPRESSED_HEADER_LEN + frame.len() / 2);
    out.resize(COMPRESSED_HEADER_LEN);
    let codec_err = |source| FrameError::Codec {
        codec: codec.name(),
        op: "compressing",
        source,
    };
    let mut out = match codec {
        Codec::Lz4 => {
            let info = FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Linked)
                .content_size(Some(raw_len));
            let mut enc = FrameEncoder::with_frame_info(info, out);
            for chunk in frame.chunks() {
                enc.write_all(chunk).map_err(codec_err)?;
            }
            enc.finish()
                .map_err(|e| codec_err(std::io::Error::from(e)))?
        }
    };
    let compressed_len = (out.len() - COMPRESSED_HEADER_LEN) as u64;
    let payload_checksum = xxh3_64(&out.as_slice()[COMPRESSED_HEADER_LEN..]);
    let head = &mut out.as_mut_slice()[..COMPRESSED_HEADER_LEN];
    head[0..8].copy_from_slice(&COMPRESSED_MAGIC);
    head[8..10].copy_from_slice(&COMPRESSED_VERSION.to_le_bytes());
    head[10..12].copy_from_slice(&codec.id().to_le_bytes());
    // Bytes 12..16 and 40..56 stay zero (reserved).
    head[16..24].copy_from_slice(&raw_len.to_le_bytes());
    head[24..32].copy_from_slice(&compressed_len.to_le_bytes());
    head[32..40].copy_from_slice(&payload_checksum.to_le_bytes());
    let header_checksum = xxh3_64(&head[..56]);
    head[56..64].copy_from_slice(&header_checksum.to_le_bytes());
    Ok(out)
}

/// Opens a compressed-frame container from [`compress_frame`] and returns the
/// frame's bytes, in a new 64-aligned buffer of exactly the raw length, to be
/// parsed as usual ([`Frame::parse`](crate::Frame::parse),
/// [`decode`](crate::decode)).
///
/// The checks run in the order of FORMAT.md ("Compressed frames"): the
/// header (magic, version, header checksum, reserved bytes, codec), the
/// lengths (the payload is exactly the bytes present; the raw length is at
/// most `max_raw_len` and at most what the codec can expand the payload to),
/// the payload checksum, and only then is the raw length allocated and the
/// payload decompressed, which must give exactly the raw length. No
/// allocation is sized by a length that was not checked, and the codec's
/// working memory is bounded (for LZ4, 256 KiB for what [`compress_frame`]
/// writes, at most about 12 MiB whatever the input: it depends on the block
/// size the LZ4 frame declares, at most 4 MiB).
///
/// # Errors
/// [`FrameError::Truncated`] (shorter than the header or the payload),
/// [`FrameError::BadMagic`], [`FrameError::UnsupportedVersion`],
/// [`FrameError::HeaderChecksum`], [`FrameError::BadField`] (reserved bytes,
/// trailing bytes, a raw length the payload cannot decode to, a payload that
/// decompresses to another length), [`FrameError::UnknownCodec`],
/// [`FrameError::LimitExceeded`] (raw length over `max_raw_len`),
/// [`FrameError::BodyChecksum`] (the payload checksum),
/// [`FrameError::OutOfMemory`], and [`FrameError::Codec`] when the payload
/// does not decompress.
pub fn decompress_frame(bytes: &[u8], max_raw_len: u64) -> Result<Buffer> {
    let header = Header::parse(bytes, max_raw_len)?;
    let payload = &bytes[COMPRESSED_HEADER_LEN..];
    let computed = xxh3_64(payload);
    if computed != header.payload_checksum {
        return Err(FrameError::BodyChecksum {
            stored: header.payload_checksum,
            computed,
        });
    }
    // Checked above: at most `max_raw_len` and at most the codec's expansion
    // of the bytes present.
    let raw_len = usize::try_from(header.raw_len).map_err(|_| FrameError::OutOfMemory {
        bytes: header.raw_len,
    })?;
    let mut out = AlignedVec::try_with_capacity(raw_len).map_err(|_| FrameError::OutOfMemory {
        bytes: header.raw_len,
    })?;
    match header.codec {
        Codec::Lz4 => decompress_lz4(payload, raw_len, &mut out)?,
    }
    Ok(out.into_buffer())
}

/// The checked fields of a container header.
struct Header {
    codec: Codec,
    raw_len: u64,
    payload_checksum: u64,
}

impl Header {
    /// Steps 1-3 of FORMAT.md ("Compressed frames"): everything but the
    /// payload checksum, reading the header only.
    fn parse(b: &[u8], max_raw_len: u64) -> Result<Self> {
        let available = b.len() as u64;
        if b.len() < COMPRESSED_HEADER_LEN {
            return Err(FrameError::Truncated {
                what: "compressed frame header",
                needed: COMPRESSED_HEADER_LEN as u64,
                available,
            });
        }
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[..8]);
        if magic != COMPRESSED_MAGIC {
            return Err(FrameError::BadMagic {
                expected: COMPRESSED_MAGIC,
                found: magic,
            });
        }
        let version = u16_at(8);
        if version != COMPRESSED_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: COMPRESSED_VERSION,
            });
        }
        let stored = u64_at(56);
        let computed = xxh3_64(&b[..56]);
        if stored != computed {
            return Err(FrameError::HeaderChecksum { stored, computed });
        }
        let reserved = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if reserved != 0 {
            return Err(FrameError::BadField {
                field: "compressed frame reserved (bytes 12..16)",
                value: reserved.into(),
                reason: "must be zero in version 1",
            });
        }
        for at in [40, 48] {
            if u64_at(at) != 0 {
                return Err(FrameError::BadField {
                    field: "compressed frame reserved (bytes 40..56)",
                    value: u64_at(at),
                    reason: "must be zero in version 1",
                });
            }
        }
        let id = u16_at(10);
        let codec = Codec::from_id(id).ok_or(FrameError::UnknownCodec { id })?;
        let compressed_len = u64_at(24);
        crate::frame::exact_length(
            "compressed frame payload",
            "compressed length",
            compressed_len,
            available - COMPRESSED_HEADER_LEN as u64,
            COMPRESSED_HEADER_LEN as u64,
            available,
        )?;
        let raw_len = u64_at(16);
        if raw_len > max_raw_len {
            return Err(FrameError::LimitExceeded {
                what: "raw length of a compressed frame",
                value: raw_len,
                max: max_raw_len,
            });
        }
        if raw_len > compressed_len.saturating_mul(codec.max_expansion()) {
            return Err(FrameError::BadField {
                field: "raw length",
                value: raw_len,
                reason: "more than the codec can decompress the payload to",
            });
        }
        Ok(Self {
            codec,
            raw_len,
            payload_checksum: u64_at(32),
        })
    }
}

/// Decompresses one LZ4 frame that must fill `out` (empty, with room for
/// `raw_len` bytes) exactly and use up `payload`.
fn decompress_lz4(payload: &[u8], raw_len: usize, out: &mut AlignedVec) -> Result<()> {
    let codec_err = |source| FrameError::Codec {
        codec: Codec::Lz4.name(),
        op: "decompressing",
        source,
    };
    // Only the modern frame format, which `compress_frame` writes: the legacy
    // format and skippable frames are refused before the decoder sees them.
    if !payload.starts_with(&LZ4_FRAME_MAGIC) {
        return Err(FrameError::BadField {
            field: "lz4 frame magic",
            value: u64::from(u32::from_le_bytes(
                [0, 1, 2, 3].map(|i| payload.get(i).copied().unwrap_or(0)),
            )),
            reason: "the payload is not an lz4 frame",
        });
    }
    let mut dec = FrameDecoder::new(payload);
    loop {
        let block = dec.fill_buf().map_err(codec_err)?;
        if block.is_empty() {
            break;
        }
        let n = block.len();
        if n > raw_len - out.len() {
            return Err(FrameError::BadField {
                field: "raw length",
                value: raw_len as u64,
                reason: "the payload decompresses to more bytes",
            });
        }
        out.extend_from_slice(block);
        dec.consume(n);
    }
    if out.len() != raw_len {
        return Err(FrameError::BadField {
            field: "raw length",
            value: raw_len as u64,
            reason: "the payload decompresses to fewer bytes",
        });
    }
    let rest = dec.get_ref().len();
    if rest != 0 {
        return Err(FrameError::BadField {
            field: "compressed length",
            value: rest as u64,
            reason: "bytes left after the end of the lz4 frame",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, ReadOptions};

    fn container(v: &Vec<u8>) -> AlignedVec {
        compress_frame(&EncodedFrame::new(v).unwrap(), Codec::Lz4).unwrap()
    }

    #[test]
    fn codec_ids_roundtrip() {
        assert_eq!(Codec::from_id(Codec::Lz4.id()), Some(Codec::Lz4));
        assert_eq!(Codec::from_id(0), None);
        assert_eq!(Codec::from_id(2), None);
    }

    #[test]
    fn header_fields_are_where_format_md_says() {
        let v: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        let frame = EncodedFrame::new(&v).unwrap();
        let c = container(&v);
        let b = c.as_slice();
        assert!(is_compressed(b));
        assert_eq!(&b[0..8], b"MPZFRAME");
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 1);
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 1);
        assert_eq!(&b[12..16], &[0; 4]);
        let at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        assert_eq!(at(16), frame.len() as u64);
        assert_eq!(at(24), (b.len() - 64) as u64);
        assert_eq!(at(32), xxh3_64(&b[64..]));
        assert_eq!(&b[40..56], &[0; 16]);
        assert_eq!(at(56), xxh3_64(&b[..56]));
        assert_eq!(&b[64..68], &LZ4_FRAME_MAGIC);
        let raw = decompress_frame(b, u64::MAX).unwrap();
        assert_eq!(raw, frame.to_buffer());
        assert_eq!(decode::<Vec<u8>>(&raw).unwrap(), v);
        crate::Frame::parse(&raw, &ReadOptions::default()).unwrap();
    }

    /// The most compressible input stays within the expansion bound the
    /// reader checks.
    #[test]
    fn zeros_stay_within_the_expansion_bound() {
        let v = vec![0u8; 8 << 20];
        let c = container(&v);
        let compressed = (c.len() - COMPRESSED_HEADER_LEN) as u64;
        let raw = EncodedFrame::new(&v).unwrap().len() as u64;
        assert!(
            raw <= compressed * Codec::Lz4.max_expansion(),
            "{raw} from {compressed}"
        );
        assert_eq!(
            decode::<Vec<u8>>(&decompress_frame(c.as_slice(), raw).unwrap()).unwrap(),
            v
        );
    }
}
