//! The frame format (see FORMAT.md): layout, writing and parsing.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use crate::checksum::{xxh3_64, Xxh3};
use mempool_arrays::{AlignedVec, Buffer, ALIGNMENT};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{FrameError, Result};
use crate::{FrameType, MmRead, MmWrite};

/// The first eight bytes of every frame.
pub const MAGIC: [u8; 8] = *b"MPFRAME\0";
/// The frame version this build writes and reads.
pub const VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 64;
/// Sections start at offsets that are multiples of this (so mapped frames yield
/// aligned slices).
pub const SECTION_ALIGN: usize = ALIGNMENT;
/// Longest type name a frame may carry.
pub const MAX_TYPE_NAME: usize = 1024;
/// Most sections a frame may carry.
pub const MAX_SECTIONS: usize = 1 << 24;

/// Options for reading a frame.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Verify the body checksum (a pass over all the data). Default: `true`.
    ///
    /// Turning it off keeps reading a mapped frame O(structure): the file is
    /// mapped lazily and only the pages the structural checks touch (header,
    /// section table, metadata, string offsets, codes) are read, for data
    /// whose integrity is checked elsewhere. The structural checks always run.
    /// With it on, [`read_file_mapped_with`](crate::read_file_mapped_with)
    /// has the kernel read the whole file in (it is all hashed anyway), after
    /// the type name was checked. A copying read
    /// ([`read_file_with`](crate::read_file_with)) reads the whole file
    /// either way: turning it off saves only the hashing.
    pub verify_checksum: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            verify_checksum: true,
        }
    }
}

/// Collects the sections of a value being written. Sections are borrowed
/// from the value where possible, so writing a large array copies nothing
/// until the bytes reach their destination.
#[derive(Debug, Default)]
pub struct SectionWriter<'a> {
    sections: Vec<Cow<'a, [u8]>>,
}

impl<'a> SectionWriter<'a> {
    /// Appends a section borrowing `bytes`.
    pub fn bytes(&mut self, bytes: &'a [u8]) {
        self.sections.push(Cow::Borrowed(bytes));
    }

    /// Appends a section of plain-old-data values, borrowed.
    pub fn pod<T: bytemuck::Pod>(&mut self, values: &'a [T]) {
        self.bytes(bytemuck::cast_slice(values));
    }

    /// Appends a section owning `bytes`.
    pub fn owned(&mut self, bytes: Vec<u8>) {
        self.sections.push(Cow::Owned(bytes));
    }

    /// Appends a section holding `meta` encoded by postcard (for small
    /// metadata: lengths, names, flags).
    ///
    /// # Errors
    /// [`FrameError::Postcard`] if postcard cannot encode it.
    pub fn meta<M: Serialize>(&mut self, meta: &M) -> Result<()> {
        let bytes = postcard::to_stdvec(meta).map_err(|source| FrameError::Postcard {
            op: "encoding",
            type_name: std::any::type_name::<M>().to_string(),
            source,
        })?;
        self.owned(bytes);
        Ok(())
    }

    /// Number of sections so far.
    pub fn len(&self) -> usize {
        self.sections.len()
    }

    /// Whether no section was written.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }
}

/// Hands out the sections of a frame, in order, to a value's reader.
#[derive(Debug)]
pub struct SectionReader<'f> {
    frame: &'f Frame,
    next: usize,
}

impl<'f> SectionReader<'f> {
    fn take(&mut self) -> Result<(usize, usize)> {
        let s = self.frame.sections.get(self.next).copied().ok_or_else(|| {
            FrameError::MissingSection {
                type_name: self.frame.type_name.clone(),
                index: self.next,
            }
        })?;
        self.next += 1;
        Ok(s)
    }

    /// The next section as a buffer sharing the frame's memory (O(1), no copy).
    ///
    /// # Errors
    /// [`FrameError::MissingSection`] past the last section.
    pub fn buffer(&mut self) -> Result<Buffer> {
        let (off, len) = self.take()?;
        Ok(self.frame.buffer.slice(off, len))
    }

    /// The next section's bytes.
    ///
    /// # Errors
    /// [`FrameError::MissingSection`] past the last section.
    pub fn bytes(&mut self) -> Result<&'f [u8]> {
        let (off, len) = self.take()?;
        Ok(&self.frame.buffer.as_slice()[off..off + len])
    }

    /// The next section decoded by postcard; the whole section must be used.
    ///
    /// # Errors
    /// [`FrameError::MissingSection`], or [`FrameError::Postcard`] when the
    /// bytes do not decode.
    pub fn meta<M: DeserializeOwned>(&mut self) -> Result<M> {
        let bytes = self.bytes()?;
        let index = self.next - 1;
        let (m, rest) =
            postcard::take_from_bytes(bytes).map_err(|source| FrameError::Postcard {
                op: "decoding",
                type_name: std::any::type_name::<M>().to_string(),
                source,
            })?;
        if !rest.is_empty() {
            return Err(self.bad(
                index,
                format!("{} trailing bytes after metadata", rest.len()),
            ));
        }
        Ok(m)
    }

    /// Index of the next section.
    pub fn position(&self) -> usize {
        self.next
    }

    /// Sections not read yet (an upper bound for counts read from metadata).
    pub fn remaining(&self) -> usize {
        self.frame.sections.len() - self.next
    }

    /// The type name of the frame.
    pub fn type_name(&self) -> &str {
        &self.frame.type_name
    }

    /// A [`FrameError::SectionLength`] for section `index` of this frame.
    pub fn bad_length(
        &self,
        index: usize,
        what: &'static str,
        expected: u64,
        found: u64,
    ) -> FrameError {
        FrameError::SectionLength {
            type_name: self.frame.type_name.clone(),
            index,
            what,
            expected,
            found,
        }
    }

    /// A [`FrameError::BadSection`] for section `index` of this frame.
    pub fn bad(&self, index: usize, reason: impl Into<String>) -> FrameError {
        FrameError::BadSection {
            type_name: self.frame.type_name.clone(),
            index,
            reason: reason.into(),
        }
    }

    /// Fails unless `count` items, each needing at least `per_item` sections,
    /// fit in the sections left: bounds every count read from metadata.
    ///
    /// # Errors
    /// [`FrameError::LimitExceeded`].
    pub fn check_count(&self, what: &'static str, count: u64, per_item: usize) -> Result<usize> {
        let max = (self.remaining() / per_item.max(1)) as u64;
        if count > max {
            return Err(FrameError::LimitExceeded {
                what,
                value: count,
                max,
            });
        }
        Ok(count as usize)
    }
}

/// A value laid out as a frame, ready to be written. Building it computes the
/// body checksum (one pass over the data); writing it copies each section once.
#[derive(Debug)]
pub struct EncodedFrame<'a> {
    head: AlignedVec,
    sections: Vec<Cow<'a, [u8]>>,
    offsets: Vec<usize>,
    len: usize,
}

impl<'a> EncodedFrame<'a> {
    /// Lays out `value` as a frame.
    ///
    /// # Errors
    /// What the value's [`MmWrite::write_sections`] returns, or
    /// [`FrameError::LimitExceeded`] for a type name or section count past the
    /// format's limits.
    pub fn new<T: MmWrite + ?Sized>(value: &'a T) -> Result<Self> {
        Ok(Self::layout(value)?.seal())
    }

    /// Lays out `value` as a frame without computing its checksums yet: the
    /// cheap part of [`EncodedFrame::new`] (the value's sections are
    /// borrowed), so that a writer can learn [`UnsealedFrame::len`] and
    /// reserve room before paying for the pass over the data that
    /// [`UnsealedFrame::seal`] makes.
    ///
    /// # Errors
    /// As [`EncodedFrame::new`].
    pub fn layout<T: MmWrite + ?Sized>(value: &'a T) -> Result<UnsealedFrame<'a>> {
        let type_name = T::type_name();
        let mut w = SectionWriter::default();
        value.write_sections(&mut w)?;
        Ok(UnsealedFrame(
            Self::from_sections(&type_name, w.sections)?,
            false,
        ))
    }

    fn from_sections(type_name: &str, sections: Vec<Cow<'a, [u8]>>) -> Result<Self> {
        if type_name.len() > MAX_TYPE_NAME {
            return Err(FrameError::LimitExceeded {
                what: "type name length",
                value: type_name.len() as u64,
                max: MAX_TYPE_NAME as u64,
            });
        }
        if sections.len() > MAX_SECTIONS {
            return Err(FrameError::LimitExceeded {
                what: "section count",
                value: sections.len() as u64,
                max: MAX_SECTIONS as u64,
            });
        }
        let table_start = HEADER_LEN + type_name.len().next_multiple_of(8);
        let data_start = (table_start + 16 * sections.len()).next_multiple_of(SECTION_ALIGN);
        let mut offsets = Vec::with_capacity(sections.len());
        let mut end = data_start;
        for s in &sections {
            let off = end.next_multiple_of(SECTION_ALIGN);
            offsets.push(off);
            end = off + s.len();
        }
        let len = end;

        let mut head = AlignedVec::with_capacity(data_start);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&0u16.to_le_bytes()); // flags
        head.extend_from_slice(&(type_name.len() as u32).to_le_bytes());
        head.extend_from_slice(&(sections.len() as u32).to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes()); // reserved
        head.extend_from_slice(&(len as u64).to_le_bytes());
        head.extend_from_slice(&xxh3_64(type_name.as_bytes()).to_le_bytes());
        head.extend_from_slice(&0u64.to_le_bytes()); // body checksum, set by `seal`
        head.extend_from_slice(&0u64.to_le_bytes()); // header checksum, set by `seal`
        head.extend_from_slice(&[0u8; 8]); // reserved
        debug_assert_eq!(head.len(), HEADER_LEN);
        head.extend_from_slice(type_name.as_bytes());
        head.pad_to(8);
        for (s, &off) in sections.iter().zip(&offsets) {
            head.extend_from_slice(&(off as u64).to_le_bytes());
            head.extend_from_slice(&(s.len() as u64).to_le_bytes());
        }
        head.resize(data_start);
        Ok(Self {
            head,
            sections,
            offsets,
            len,
        })
    }

    /// Computes the body checksum (the data area, padding included), then the
    /// header checksum, which covers it.
    fn seal_in_place(&mut self) {
        let mut h = Xxh3::new();
        let mut pos = self.head.len();
        for (s, &off) in self.sections.iter().zip(&self.offsets) {
            hash_zeros(&mut h, off - pos);
            h.update(s);
            pos = off + s.len();
        }
        let body_checksum = h.digest();
        let head = self.head.as_mut_slice();
        head[40..48].copy_from_slice(&body_checksum.to_le_bytes());
        let checksum = header_checksum(head);
        head[48..56].copy_from_slice(&checksum.to_le_bytes());
    }

    /// A frame that was already parsed (received, or mapped from a file), laid
    /// out for writing as it is: the same bytes, byte for byte (its padding
    /// included, whatever it holds), header and checksums untouched, nothing
    /// copied. This is how a store that does not know the frame's type spills
    /// or sends it. Its [`chunks`](EncodedFrame::chunks) are the header (up
    /// to the data area), then each section with the padding before it.
    pub fn from_frame(frame: &'a Frame) -> Self {
        let bytes = frame.buffer.as_slice();
        let mut sections = Vec::with_capacity(frame.sections.len() + 1);
        let mut offsets = Vec::with_capacity(frame.sections.len() + 1);
        sections.push(Cow::Borrowed(&bytes[..frame.data_start]));
        offsets.push(0);
        let mut pos = frame.data_start;
        for &(off, len) in &frame.sections {
            // Parsing checked: sections in order, after the data start, in bounds.
            sections.push(Cow::Borrowed(&bytes[pos..off + len]));
            offsets.push(pos);
            pos = off + len;
        }
        Self {
            head: AlignedVec::new(),
            sections,
            offsets,
            len: bytes.len(),
        }
    }

    /// The frame's bytes in order, as slices to send one after another
    /// without assembling the frame: the header (with the type name and the
    /// section table), then for each section the zero padding before it (if
    /// any) and the section itself. Their lengths add up to
    /// [`EncodedFrame::len`].
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> + '_ {
        static ZEROS: [u8; SECTION_ALIGN] = [0; SECTION_ALIGN];
        let mut pos = self.head.len();
        let body = self
            .sections
            .iter()
            .zip(&self.offsets)
            .flat_map(move |(s, &off)| {
                // Laid out here, padding is under 64 bytes; a parsed frame's
                // sections carry their own padding (`from_frame`).
                let pad = &ZEROS[..off - pos];
                pos = off + s.len();
                [pad, &s[..]]
            });
        std::iter::once(self.head.as_slice())
            .chain(body)
            .filter(|c| !c.is_empty())
    }

    /// Total length in bytes of the frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the frame to `w`, returning the bytes written.
    ///
    /// # Errors
    /// The writer's I/O errors.
    pub fn write_to<W: Write + ?Sized>(&self, w: &mut W) -> std::io::Result<u64> {
        static ZEROS: [u8; SECTION_ALIGN] = [0; SECTION_ALIGN];
        w.write_all(self.head.as_slice())?;
        let mut pos = self.head.len();
        for (s, &off) in self.sections.iter().zip(&self.offsets) {
            w.write_all(&ZEROS[..off - pos])?;
            w.write_all(s)?;
            pos = off + s.len();
        }
        Ok(pos as u64)
    }

    /// The frame in one new aligned buffer.
    pub fn to_buffer(&self) -> Buffer {
        let mut v = AlignedVec::with_capacity(self.len);
        // Writing to an AlignedVec cannot fail.
        let _ = self.write_to(&mut v);
        v.into_buffer()
    }
}

/// A frame laid out but not yet checksummed, from [`EncodedFrame::layout`]:
/// its length is known, its bytes cannot be written until it is sealed.
#[derive(Debug)]
pub struct UnsealedFrame<'a>(EncodedFrame<'a>, bool);

impl<'a> UnsealedFrame<'a> {
    /// Total length in bytes the frame will have.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Computes the checksums (one pass over the data), giving a frame ready
    /// to write or send. A frame that was already sealed (from
    /// [`EncodedFrame::from_frame`]) is returned as it is.
    pub fn seal(self) -> EncodedFrame<'a> {
        let UnsealedFrame(mut frame, sealed) = self;
        if !sealed {
            frame.seal_in_place();
        }
        frame
    }
}

impl<'a> From<EncodedFrame<'a>> for UnsealedFrame<'a> {
    /// A sealed frame seen as one to seal: `seal` then does nothing.
    fn from(frame: EncodedFrame<'a>) -> Self {
        UnsealedFrame(frame, true)
    }
}

fn hash_zeros(h: &mut Xxh3, n: usize) {
    static ZEROS: [u8; SECTION_ALIGN] = [0; SECTION_ALIGN];
    h.update(&ZEROS[..n]);
}

/// Checks that a declared length (of what follows a header of `header`
/// bytes) is exactly the `present` bytes: shorter input is truncated, longer
/// is trailing garbage. `available` is the whole input's length.
pub(crate) fn exact_length(
    what: &'static str,
    field: &'static str,
    declared: u64,
    present: u64,
    header: u64,
    available: u64,
) -> Result<()> {
    if declared > present {
        return Err(FrameError::Truncated {
            what,
            needed: declared.saturating_add(header),
            available,
        });
    }
    if declared < present {
        return Err(FrameError::BadField {
            field,
            value: declared,
            reason: "shorter than the bytes given (trailing garbage)",
        });
    }
    Ok(())
}

/// xxh3 of the header (bytes 0..48), the type name and the section table.
pub(crate) fn header_checksum(head: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&head[..48]);
    h.update(&head[HEADER_LEN..]);
    h.digest()
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A parsed frame: its header checked, its sections located, its data not yet
/// interpreted. Parsing is O(number of sections) (plus the checksum pass when
/// asked for).
#[derive(Debug, Clone)]
pub struct Frame {
    buffer: Buffer,
    type_name: String,
    sections: Vec<(usize, usize)>,
    body_checksum: u64,
    data_start: usize,
}

impl Frame {
    /// Parses and checks a frame.
    ///
    /// A buffer that does not start at a 64-byte aligned address (bytes from a
    /// plain `Vec<u8>`) is first copied into an aligned one, so that typed
    /// views of its sections are aligned.
    ///
    /// # Errors
    /// [`FrameError::Truncated`], [`FrameError::BadMagic`],
    /// [`FrameError::UnsupportedVersion`], [`FrameError::BadField`],
    /// [`FrameError::HeaderChecksum`], [`FrameError::LimitExceeded`], and with
    /// `verify_checksum`, [`FrameError::BodyChecksum`].
    pub fn parse(buffer: &Buffer, opts: &ReadOptions) -> Result<Self> {
        let frame = Self::parse_structure(buffer)?;
        if opts.verify_checksum {
            frame.verify_checksum()?;
        }
        Ok(frame)
    }

    /// Parses and checks everything but the body checksum: steps 1-4 of
    /// FORMAT.md, O(sections), reading only the header and section table.
    fn parse_structure(buffer: &Buffer) -> Result<Self> {
        let buffer = if (buffer.as_slice().as_ptr() as usize).is_multiple_of(SECTION_ALIGN) {
            buffer.clone()
        } else {
            Buffer::copy_aligned(buffer.as_slice())
        };
        let b = buffer.as_slice();
        let available = b.len() as u64;
        if b.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                what: "frame header",
                needed: HEADER_LEN as u64,
                available,
            });
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[..8]);
        if magic != MAGIC {
            return Err(FrameError::BadMagic {
                expected: MAGIC,
                found: magic,
            });
        }
        let version = le_u16(b, 8);
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: VERSION,
            });
        }
        let flags = le_u16(b, 10);
        if flags != 0 {
            return Err(FrameError::BadField {
                field: "flags",
                value: flags.into(),
                reason: "no flags are defined in version 1",
            });
        }
        if le_u32(b, 20) != 0 {
            return Err(FrameError::BadField {
                field: "reserved (bytes 20..24)",
                value: le_u32(b, 20).into(),
                reason: "must be zero in version 1",
            });
        }
        if le_u64(b, 56) != 0 {
            return Err(FrameError::BadField {
                field: "reserved (bytes 56..64)",
                value: le_u64(b, 56),
                reason: "must be zero in version 1",
            });
        }
        let name_len = le_u32(b, 12) as usize;
        if name_len > MAX_TYPE_NAME {
            return Err(FrameError::LimitExceeded {
                what: "type name length",
                value: name_len as u64,
                max: MAX_TYPE_NAME as u64,
            });
        }
        let count = le_u32(b, 16) as usize;
        if count > MAX_SECTIONS {
            return Err(FrameError::LimitExceeded {
                what: "section count",
                value: count as u64,
                max: MAX_SECTIONS as u64,
            });
        }
        let frame_len = le_u64(b, 24);
        exact_length("frame", "frame length", frame_len, available, 0, available)?;
        let table_start = HEADER_LEN + name_len.next_multiple_of(8);
        let data_start = (table_start + 16 * count).next_multiple_of(SECTION_ALIGN);
        if data_start > b.len() {
            return Err(FrameError::Truncated {
                what: "type name and section table",
                needed: data_start as u64,
                available,
            });
        }
        let stored = le_u64(b, 48);
        let computed = header_checksum(&b[..data_start]);
        if stored != computed {
            return Err(FrameError::HeaderChecksum { stored, computed });
        }
        let type_name = std::str::from_utf8(&b[HEADER_LEN..HEADER_LEN + name_len])
            .map_err(|_| FrameError::BadField {
                field: "type name",
                value: name_len as u64,
                reason: "not UTF-8",
            })?
            .to_string();
        let tag = le_u64(b, 32);
        if tag != xxh3_64(type_name.as_bytes()) {
            return Err(FrameError::BadField {
                field: "type tag",
                value: tag,
                reason: "does not match the type name",
            });
        }
        let mut sections = Vec::with_capacity(count);
        let mut end = data_start as u64;
        for i in 0..count {
            let off = le_u64(b, table_start + 16 * i);
            let len = le_u64(b, table_start + 16 * i + 8);
            let sec_end = off.checked_add(len);
            if !off.is_multiple_of(SECTION_ALIGN as u64)
                || off < end
                || sec_end.is_none_or(|e| e > frame_len)
            {
                return Err(FrameError::BadField {
                    field: "section offset",
                    value: off,
                    reason: "misaligned, overlapping or past the end of the frame",
                });
            }
            end = off + len;
            sections.push((off as usize, len as usize));
        }
        if end != frame_len {
            return Err(FrameError::BadField {
                field: "frame length",
                value: frame_len,
                reason: "does not end where the last section ends",
            });
        }
        let body_checksum = le_u64(b, 40);
        Ok(Self {
            buffer,
            type_name,
            sections,
            body_checksum,
            data_start,
        })
    }

    /// Checks the body checksum (a pass over all the data). For a lazily
    /// mapped frame, first asks the kernel to read the data in at once.
    ///
    /// # Errors
    /// [`FrameError::BodyChecksum`].
    pub fn verify_checksum(&self) -> Result<()> {
        let body = self
            .buffer
            .slice(self.data_start, self.buffer.len() - self.data_start);
        // Only advice: the checksum reads every page whether or not it works.
        let _ = body.populate();
        let computed = xxh3_64(body.as_slice());
        if computed != self.body_checksum {
            return Err(FrameError::BodyChecksum {
                stored: self.body_checksum,
                computed,
            });
        }
        Ok(())
    }

    /// The type name written by the value's [`MmWrite`] impl.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Number of sections.
    pub fn section_count(&self) -> usize {
        self.sections.len()
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the frame is empty (never: a frame has at least a header).
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The frame's bytes.
    pub fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    /// Fails unless the frame holds a `T`.
    ///
    /// # Errors
    /// [`FrameError::TypeMismatch`] naming both types.
    pub fn check_type<T: FrameType + ?Sized>(&self) -> Result<()> {
        let expected = T::type_name();
        if self.type_name != expected {
            return Err(FrameError::TypeMismatch {
                expected: expected.into_owned(),
                found: self.type_name.clone(),
            });
        }
        Ok(())
    }

    /// Reads the value, checking that the frame holds a `T`.
    ///
    /// # Errors
    /// [`FrameError::TypeMismatch`] naming both types, and whatever
    /// `T`'s reader reports for malformed sections.
    pub fn decode<T: MmRead>(&self) -> Result<T> {
        self.check_type::<T>()?;
        self.decode_sections()
    }

    /// Runs `T`'s reader over the sections (the type was checked).
    fn decode_sections<T: MmRead>(&self) -> Result<T> {
        let mut r = SectionReader {
            frame: self,
            next: 0,
        };
        let v = T::read_sections(&mut r)?;
        if r.remaining() != 0 {
            return Err(FrameError::TrailingSections {
                type_name: self.type_name.clone(),
                extra: r.remaining(),
            });
        }
        Ok(v)
    }
}

/// Encodes `value` as a frame in a new aligned buffer.
///
/// # Errors
/// As [`EncodedFrame::new`].
pub fn encode<T: MmWrite + ?Sized>(value: &T) -> Result<Buffer> {
    Ok(EncodedFrame::new(value)?.to_buffer())
}

/// Writes `value` as a frame to `w`, returning the bytes written.
///
/// # Errors
/// As [`EncodedFrame::new`], and the writer's I/O errors.
pub fn write_frame<T: MmWrite + ?Sized, W: Write + ?Sized>(value: &T, w: &mut W) -> Result<u64> {
    Ok(EncodedFrame::new(value)?.write_to(w)?)
}

/// Decodes a frame, verifying its checksum; for mempool-arrays types the result
/// borrows `buffer` (no copy).
///
/// # Errors
/// As [`Frame::parse`] and [`Frame::decode`].
pub fn decode<T: MmRead>(buffer: &Buffer) -> Result<T> {
    decode_with(buffer, &ReadOptions::default())
}

/// Decodes a frame with explicit options.
///
/// The checks run in the order of FORMAT.md: header and section table, then
/// the type name (so reading a big frame as the wrong type fails before its
/// data is read), then the body checksum if asked for, then `T`'s reader.
///
/// # Errors
/// As [`Frame::parse`] and [`Frame::decode`].
pub fn decode_with<T: MmRead>(buffer: &Buffer, opts: &ReadOptions) -> Result<T> {
    let frame = Frame::parse_structure(buffer)?;
    frame.check_type::<T>()?;
    if opts.verify_checksum {
        frame.verify_checksum()?;
    }
    frame.decode_sections()
}

/// Writes `value` to `path` as a frame: to a temporary name in the same
/// directory first, then renamed, so that a crash never leaves a partial file
/// under `path`. With `sync`, the data is flushed to the device before the
/// rename and the directory after it. Returns the bytes written.
///
/// # Errors
/// As [`EncodedFrame::new`], and [`FrameError::Io`] naming the file.
pub fn write_file<T: MmWrite + ?Sized>(value: &T, path: &Path, sync: bool) -> Result<u64> {
    let frame = EncodedFrame::new(value)?;
    write_encoded_file(&frame, path, sync)
}

/// Writes an already laid-out frame to `path`, returning the bytes written.
///
/// The frame goes to a temporary file `<path>.tmp-<pid>-<n>` in the same
/// directory (`n` counts the writes of this process, so concurrent writers
/// never share a name), created with `O_CREAT | O_EXCL` (an existing file or
/// a planted symlink under that name is an error, never followed or
/// truncated), then renamed over `path`. With `sync`, the file is fsynced
/// before the rename and its directory after it, so the new name survives a
/// power loss.
///
/// # Errors
/// [`FrameError::Io`] naming the file. On every error after the temporary
/// file was created, it is removed.
pub fn write_encoded_file(frame: &EncodedFrame<'_>, path: &Path, sync: bool) -> Result<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io = |source, p: &Path| FrameError::Io {
        path: Some(p.to_owned()),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = std::path::PathBuf::from(tmp);
    // create_new: O_CREAT | O_EXCL, which also refuses to follow a symlink.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io(e, &tmp))?;
    // From here on the temporary file is ours: remove it on every error.
    let result = (|| {
        let n = frame.write_to(&mut f).map_err(|e| io(e, &tmp))?;
        if sync {
            f.sync_all().map_err(|e| io(e, &tmp))?;
        }
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io(e, path))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if sync {
        sync_parent_dir(path).map_err(|e| io(e, path))?;
    }
    result
}

/// Fsyncs the directory holding `path`, so that a rename into it is durable.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_parent_dir_of_bare_and_nested_names() {
        // A bare name's directory is ".", which exists.
        sync_parent_dir(Path::new("no-such-file.frame")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        sync_parent_dir(&dir.path().join("x.frame")).unwrap();
        assert!(sync_parent_dir(&dir.path().join("missing").join("x")).is_err());
    }

    #[test]
    fn a_parsed_frame_is_written_and_chunked_unchanged() {
        use mempool_arrays::StringArray;
        let arr = StringArray::from(vec![Some("a"), None, Some("longer string")]);
        let enc = EncodedFrame::new(&arr).unwrap();
        let bytes = enc.to_buffer();
        let joined: Vec<u8> = enc.chunks().flatten().copied().collect();
        assert_eq!(joined, bytes.as_slice(), "chunks of a new encoding");
        assert!(
            enc.chunks().count() > arr_sections(&bytes),
            "header, then each section"
        );
        let frame = Frame::parse(&bytes, &ReadOptions::default()).unwrap();
        let again = EncodedFrame::from_frame(&frame);
        assert_eq!(again.len(), bytes.len());
        assert_eq!(again.to_buffer().as_slice(), bytes.as_slice());
        let joined: Vec<u8> = again.chunks().flatten().copied().collect();
        assert_eq!(joined, bytes.as_slice(), "chunks of a parsed frame");
        // The sections are borrowed from the parsed frame, not copied.
        let first = again.chunks().nth(1).unwrap();
        let b = frame.buffer().as_slice().as_ptr_range();
        assert!(b.contains(&first.as_ptr()));
    }

    fn arr_sections(bytes: &Buffer) -> usize {
        Frame::parse(bytes, &ReadOptions::default())
            .unwrap()
            .section_count()
    }

    #[test]
    fn wrong_type_is_reported_before_the_body_checksum() {
        let mut bytes = encode(&vec![1.0f64; 64]).unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let buf = Buffer::copy_aligned(&bytes);
        assert!(matches!(
            decode::<Vec<u64>>(&buf),
            Err(FrameError::TypeMismatch { .. })
        ));
        assert!(matches!(
            decode::<Vec<f64>>(&buf),
            Err(FrameError::BodyChecksum { .. })
        ));
        // Frame::parse verifies first, as documented.
        assert!(matches!(
            Frame::parse(&buf, &ReadOptions::default()),
            Err(FrameError::BodyChecksum { .. })
        ));
        let f = Frame::parse(
            &buf,
            &ReadOptions {
                verify_checksum: false,
            },
        )
        .unwrap();
        assert!(f.check_type::<Vec<f64>>().is_ok());
        assert!(f.verify_checksum().is_err());
    }
}
