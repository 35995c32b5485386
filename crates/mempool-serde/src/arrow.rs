//! Arrow values as frames (feature `arrow`): a `RecordBatch` or an
//! `ArrayRef` is stored as an Arrow IPC file inside one section of a frame,
//! so the frame keeps its header, checksums and atomic write, and the section
//! stays readable by any Arrow tool (`tail -c` of the section's range is an
//! `.arrow` file).
//!
//! Reading maps back without a copy: the IPC file is written with its
//! buffers 64-byte aligned, a frame's sections start 64-byte aligned, and the
//! reader refuses unaligned buffers instead of copying them (IPC files of
//! other writers, aligned to 8 bytes, are refused), so every Arrow buffer of
//! a batch read from a mapped frame points into the map and keeps it alive.
//!
//! Writing copies the batch once, into the IPC file (arrow-ipc's writer
//! assembles the file in memory); the frame writer then writes it out.
//!
//! **Validation.** [`MmRead`] validates what it reads as arrow-rs does for
//! untrusted input (offsets, UTF-8, dictionary keys: one pass over the
//! strings and keys). Before arrow-ipc sees the bytes, the reader checks
//! what arrow-ipc trusts and would panic on: every block and every buffer
//! within the bytes present, every length bounded by them, the message kinds,
//! no compression, 64-byte alignment, and the column types to those of
//! [`SUPPORTED`]. Footer blocks, and the buffers of each message, must be
//! disjoint and in increasing order (as arrow-ipc's writer lays them out), so
//! each byte is validated once and reading costs time linear in the bytes
//! (overlaps would let a small file have many columns or dictionaries
//! validate the same range again and again). Bytes that
//! this process wrote and nothing changed since can skip arrow's validation
//! with the `unsafe` [`record_batch_from_ipc_unchecked`].
//!
//! **Memory size.** [`MemSize`] counts each underlying allocation once (the
//! batch of a mapped frame: its one section), where arrow's
//! `get_array_memory_size` counts every buffer slice of a shared allocation
//! again (48.9 MB mapped counted as 146.7 MB).
//!
//! A pool stores them like any value: `benches/examples/arrow_pool.rs` puts a
//! batch in a `mempool_core::Pool` bounded below its size, gets it back
//! mapped from the spill file and checks that its buffers point into the
//! map (`cargo run -p mempool-benches --features arrow --example
//! arrow_pool`; CI runs the same as `benches/tests/arrow_pool.rs`). Here,
//! the same through a frame file:
//!
//! ```
//! use std::sync::Arc;
//! use mempool_arrays::arrow::arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
//! use mempool_serde::{read_file_mapped, write_file, MemSize};
//!
//! let batch = RecordBatch::try_from_iter([
//!     ("x", Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef),
//!     ("s", Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef),
//! ])
//! .unwrap();
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("batch.frame");
//! write_file(&batch, &path, false).unwrap();
//! // SAFETY: the file must not change while mapped:
//! // - it is in this example's private temporary directory, and nothing
//! //   writes it after `write_file` renamed it into place.
//! let back: RecordBatch = unsafe { read_file_mapped(&path) }.unwrap();
//! assert_eq!(back, batch);
//! // Zero-copy: the floats sit inside the file's map, which is counted once.
//! let len = std::fs::metadata(&path).unwrap().len();
//! assert!(back.mem_size() <= len);
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_data::UnsafeFlag;
use arrow_ipc::reader::{read_footer_length, RecordBatchDecoder};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::{Block, MetadataVersion};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use mempool_arrays::Buffer;

use crate::error::{FrameError, Result};
use crate::{FrameType, MemSize, MmRead, MmWrite, SectionReader, SectionWriter};

/// The type name of a `RecordBatch` frame.
pub const RECORD_BATCH_TYPE_NAME: &str = "arrow::RecordBatch";
/// The type name of an `ArrayRef` frame.
pub const ARRAY_TYPE_NAME: &str = "arrow::ArrayRef";

/// The column types a frame may hold (written and read): the primitive
/// types (numbers, dates, times, timestamps, durations, intervals,
/// decimals), `Boolean`, `Utf8`, `LargeUtf8`, `Binary`, `LargeBinary`,
/// `List`/`LargeList` of these, and dictionaries with integer keys of these.
/// Others (views, structs, unions, maps, run-end encoded, `Null`,
/// `FixedSizeBinary`/`FixedSizeList`) are refused with
/// [`FrameError::UnsupportedArrowType`]: arrow-ipc's reader can be made to
/// panic on them by hostile bytes, or a length of theirs cannot be bounded by
/// the bytes present.
pub const SUPPORTED: &str = "numbers, dates, times, timestamps, durations, intervals, decimals, \
                             Boolean, Utf8, LargeUtf8, Binary, LargeBinary, List/LargeList and \
                             integer-keyed dictionaries of these";

/// The alignment of the buffers in the IPC files written (arrow-ipc's
/// largest): with the section's own 64-byte alignment, every buffer is
/// aligned for every type.
const IPC_ALIGNMENT: u8 = 64;

fn supported(dt: &DataType) -> bool {
    match dt {
        DataType::Boolean
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Binary
        | DataType::LargeBinary => true,
        DataType::List(f) | DataType::LargeList(f) => supported(f.data_type()),
        DataType::Dictionary(k, v) => {
            k.is_dictionary_key_type() && !matches!(**v, DataType::Dictionary(..)) && supported(v)
        }
        DataType::Float16 => true,
        dt => dt.is_primitive(),
    }
}

fn check_fields(fields: &arrow_schema::Fields) -> Result<()> {
    for f in fields {
        if !supported(f.data_type()) {
            return Err(FrameError::UnsupportedArrowType {
                column: f.name().clone(),
                data_type: f.data_type().clone(),
            });
        }
    }
    Ok(())
}

/// The IPC file of `batch`, buffers 64-byte aligned (one copy of the data).
fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    check_fields(batch.schema().fields())?;
    let err = |source| FrameError::Arrow {
        op: "writing an IPC file",
        source,
    };
    let opts = IpcWriteOptions::try_new(IPC_ALIGNMENT as usize, false, MetadataVersion::V5)
        .map_err(err)?;
    let estimate = batch.get_array_memory_size() + 1024;
    let mut w =
        FileWriter::try_new_with_options(Vec::with_capacity(estimate), &batch.schema(), opts)
            .map_err(err)?;
    w.write(batch).map_err(err)?;
    w.finish().map_err(err)?;
    w.into_inner().map_err(err)
}

impl FrameType for RecordBatch {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(RECORD_BATCH_TYPE_NAME)
    }
}

/// Section 1: an Arrow IPC file of one record batch (see the module docs).
impl MmWrite for RecordBatch {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        w.owned(encode_ipc(self)?);
        Ok(())
    }
}

/// Reads the IPC file back without a copy, validating it (see the module
/// docs).
impl MmRead for RecordBatch {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let index = r.position();
        let bytes = r.buffer()?;
        decode_ipc(&bytes, false).map_err(|e| e.in_section(r, index))
    }
}

/// Each underlying allocation once (see the module docs).
impl MemSize for RecordBatch {
    fn mem_size(&self) -> u64 {
        let mut seen = HashSet::new();
        self.columns()
            .iter()
            .map(|c| allocations(c.as_ref(), &mut seen))
            .sum()
    }
}

impl FrameType for ArrayRef {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(ARRAY_TYPE_NAME)
    }
}

/// As a `RecordBatch` of one nullable column named `""`.
impl MmWrite for ArrayRef {
    fn write_sections<'a>(&'a self, w: &mut SectionWriter<'a>) -> Result<()> {
        let field = Field::new("", self.data_type().clone(), true);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![self.clone()])
            .map_err(|source| FrameError::Arrow {
                op: "writing an IPC file",
                source,
            })?;
        w.owned(encode_ipc(&batch)?);
        Ok(())
    }
}

impl MmRead for ArrayRef {
    fn read_sections(r: &mut SectionReader<'_>) -> Result<Self> {
        let index = r.position();
        let batch = RecordBatch::read_sections(r)?;
        if batch.num_columns() != 1 {
            return Err(r.bad(
                index,
                format!("{} columns, an ArrayRef frame has one", batch.num_columns()),
            ));
        }
        Ok(batch.column(0).clone())
    }
}

impl MemSize for ArrayRef {
    fn mem_size(&self) -> u64 {
        allocations(self.as_ref(), &mut HashSet::new())
    }
}

/// Bytes of the allocations under `array` not in `seen` (by start address),
/// adding them to `seen`.
fn allocations(array: &dyn Array, seen: &mut HashSet<usize>) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![array.to_data()];
    while let Some(d) = stack.pop() {
        for b in d.buffers().iter().chain(d.nulls().map(|n| n.buffer())) {
            if seen.insert(b.data_ptr().as_ptr() as usize) {
                total += b.capacity() as u64;
            }
        }
        stack.extend(d.child_data().iter().cloned());
    }
    total
}

/// An error of [`decode_ipc`], placed in its frame section by the caller.
#[derive(Debug)]
pub(crate) enum IpcError {
    /// A structural problem found before arrow-ipc ran.
    Bad(String),
    /// A column type outside [`SUPPORTED`].
    Unsupported(String, DataType),
    /// arrow-ipc's (or arrow's validation's) error.
    Arrow(ArrowError),
}

impl IpcError {
    fn in_section(self, r: &SectionReader<'_>, index: usize) -> FrameError {
        match self {
            IpcError::Bad(reason) => r.bad(index, reason),
            IpcError::Unsupported(column, data_type) => {
                FrameError::UnsupportedArrowType { column, data_type }
            }
            IpcError::Arrow(source) => FrameError::Arrow {
                op: "reading an IPC file",
                source,
            },
        }
    }
}

impl From<ArrowError> for IpcError {
    fn from(e: ArrowError) -> Self {
        IpcError::Arrow(e)
    }
}

fn bad(reason: impl Into<String>) -> IpcError {
    IpcError::Bad(reason.into())
}

/// Reads the one record batch of an Arrow IPC file (as this module writes
/// them) without copying and with arrow's full validation.
///
/// # Errors
/// [`FrameError::BadSection`] (section 0) for bytes that are not such a
/// file; [`FrameError::UnsupportedArrowType`]; [`FrameError::Arrow`] for what
/// arrow-ipc or arrow's validation refuse. Never panics.
pub fn record_batch_from_ipc(bytes: &Buffer) -> Result<RecordBatch> {
    decode_ipc(bytes, false).map_err(standalone)
}

/// [`record_batch_from_ipc`] without arrow's validation of the contents
/// (offsets, UTF-8, dictionary keys): the structural checks of this module
/// still run, but a pass over the strings and keys is saved.
///
/// # Safety
/// `bytes` must be an IPC file that [`MmWrite`] for `RecordBatch` or
/// `ArrayRef` wrote from a valid batch, unchanged since: for instance the
/// section of a frame that this process wrote and whose body checksum was
/// verified when it was read back. Invalid contents are undefined behaviour
/// once the arrays are read (arrow-rs trusts validated arrays).
///
/// # Errors
/// As [`record_batch_from_ipc`], but for the contents it does not check.
#[expect(unsafe_code, reason = "the caller vouches for the bytes")]
pub unsafe fn record_batch_from_ipc_unchecked(bytes: &Buffer) -> Result<RecordBatch> {
    decode_ipc(bytes, true).map_err(standalone)
}

fn standalone(e: IpcError) -> FrameError {
    match e {
        IpcError::Bad(reason) => FrameError::BadSection {
            type_name: RECORD_BATCH_TYPE_NAME.to_string(),
            index: 0,
            reason,
        },
        IpcError::Unsupported(column, data_type) => {
            FrameError::UnsupportedArrowType { column, data_type }
        }
        IpcError::Arrow(source) => FrameError::Arrow {
            op: "reading an IPC file",
            source,
        },
    }
}

/// "ARROW1" and two bytes of padding, at the start of an IPC file.
const FILE_MAGIC: &[u8; 6] = b"ARROW1";
const CONTINUATION: [u8; 4] = [0xff; 4];

/// A block (offset, metadata length, body length) of the footer, checked to
/// lie within the first `limit` bytes and to start at or after `next` (the
/// end of the previous block, or of the magic), as `(start, metadata length,
/// total length)`.
///
/// Blocks one after another, each message read once: overlapping blocks let
/// a small file describe many messages over the same bytes (many
/// dictionaries sharing one body, each decoded and validated again).
/// arrow-ipc's writer lays them out in this order, dictionaries first.
fn block_range(b: &Block, next: usize, limit: usize) -> Result<(usize, usize, usize), IpcError> {
    let off = usize::try_from(b.offset()).map_err(|_| bad("negative block offset"))?;
    let meta = usize::try_from(b.metaDataLength()).map_err(|_| bad("negative metadata length"))?;
    let body = usize::try_from(b.bodyLength()).map_err(|_| bad("negative body length"))?;
    let total = meta
        .checked_add(body)
        .ok_or_else(|| bad("block length overflows"))?;
    let end = off
        .checked_add(total)
        .ok_or_else(|| bad("block end overflows"))?;
    if end > limit {
        return Err(bad(format!(
            "block {off}+{total} past the {limit} bytes before the footer"
        )));
    }
    if meta < 8 {
        return Err(bad(format!("block metadata of {meta} bytes, fewer than 8")));
    }
    if off < next {
        return Err(bad(format!(
            "footer block at {off} overlaps the previous block or the magic (ending at \
             {next}): blocks lie one after another, dictionaries first"
        )));
    }
    Ok((off, meta, total))
}

/// The flatbuffer verifier's limits for a flatbuffer of `len` bytes (the
/// footer, a message). A flatbuffer may point at one table or string from
/// many places, and the verifier (then the schema conversion) follows every
/// pointer: under the default limits (a million tables, 2 GiB expanded) a
/// few kilobytes of pointers to one 64 KiB string make it check gigabytes of
/// UTF-8. Flatbuffers as arrow-ipc writes them are trees: expanded, about
/// twice their length at most (a table's vtable, shared, is counted at each
/// table: 1.8 × for a footer of 1,000 columns), and a table takes at least 4
/// bytes. So the work stays linear in the bytes.
fn verifier_options(len: usize) -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_tables: len / 4 + 64,
        max_apparent_size: len.saturating_mul(8).saturating_add(4096),
        ..flatbuffers::VerifierOptions::default()
    }
}

/// The flatbuffer of an encapsulated message (from byte 8, or 4 without the
/// continuation marker, to the end of its metadata), of the footer's
/// metadata version (as arrow-ipc's `FileDecoder` requires).
fn parse_message(
    block: &[u8],
    meta: usize,
    version: MetadataVersion,
) -> Result<arrow_ipc::Message<'_>, IpcError> {
    let fb = if block[..4] == CONTINUATION {
        &block[8..meta]
    } else {
        &block[4..meta]
    };
    let message = arrow_ipc::root_as_message_with_opts(&verifier_options(fb.len()), fb)
        .map_err(|e| bad(format!("message is not a valid flatbuffer: {e}")))?;
    if version != MetadataVersion::V1 && message.version() != version {
        return Err(bad(format!(
            "message of metadata version {:?} in a file of {:?}",
            message.version(),
            version
        )));
    }
    Ok(message)
}

/// Checks the record batch of a message (of a dictionary batch, its data)
/// the way arrow-ipc will read it against `body`: uncompressed, its node
/// lengths bounded by the body (and so its row count, which arrow requires
/// to equal its columns' lengths; a batch without columns keeps any
/// non-negative count), its buffers within the body, 64-byte aligned, one
/// after another, and those of `widths` whole elements.
fn check_batch(
    batch: &arrow_ipc::RecordBatch<'_>,
    body: &[u8],
    widths: &[Option<usize>],
) -> Result<(), IpcError> {
    let body_len = body.len();
    if batch.compression().is_some() {
        return Err(bad("compressed IPC buffers (never written here)"));
    }
    if batch.length() < 0 {
        return Err(bad("negative row count"));
    }
    // Every array of a supported type and of n entries has at least n bits
    // of buffers (a validity or a boolean bitmap, offsets, values, keys), so
    // a longer claim is refused before arrow sizes anything by it.
    let max_len = (body_len as u64).saturating_mul(8).saturating_add(8);
    for n in batch.nodes().iter().flatten() {
        if n.length() < 0 || n.null_count() < 0 || n.null_count() > n.length() {
            return Err(bad("negative or inconsistent node length"));
        }
        if n.length() as u64 > max_len {
            return Err(bad(format!(
                "a node of {} entries in a body of {body_len} bytes",
                n.length()
            )));
        }
    }
    // The body and every buffer 64-byte aligned, as written here: no buffer
    // is misaligned for its type (arrow's validation would panic on some).
    if !(body.as_ptr() as usize).is_multiple_of(usize::from(IPC_ALIGNMENT)) {
        return Err(bad("message body not 64-byte aligned"));
    }
    // Buffers one after another, as arrow-ipc's writer lays them out: each
    // byte of the body belongs to one buffer at most, so arrow's validation
    // reads it once (aliased buffers would have every column validate the
    // same range again).
    let mut next = 0u64;
    for (i, b) in batch.buffers().iter().flatten().enumerate() {
        let (off, len) = (b.offset(), b.length());
        // A typed buffer (offsets, values, keys) holds whole elements: arrow
        // views it as a slice of them, and panics when it does not.
        if let Some(Some(w)) = widths.get(i) {
            if len % *w as i64 != 0 {
                return Err(bad(format!(
                    "buffer {i} of {len} bytes is not a whole number of {w}-byte elements"
                )));
            }
        }
        let end = off.checked_add(len);
        if off < 0 || len < 0 || end.is_none_or(|e| e as u64 > body_len as u64) {
            return Err(bad(format!(
                "buffer {off}+{len} outside the {body_len}-byte body"
            )));
        }
        if off % i64::from(IPC_ALIGNMENT) != 0 {
            return Err(bad(format!("buffer at {off} not 64-byte aligned")));
        }
        if (off as u64) < next {
            return Err(bad(format!(
                "buffer {i} at {off} overlaps the previous buffer (ending at {next}): \
                 buffers lie one after another in the body"
            )));
        }
        next = (off + len) as u64;
    }
    if batch.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
        return Err(bad("variadic buffers (view types are not supported)"));
    }
    Ok(())
}

/// The value type of each dictionary id's field, as arrow-ipc finds it (the
/// first field of that id, fields in pre-order), found once per file: a
/// search of the schema per dictionary (arrow-ipc's `FileDecoder`) is
/// quadratic in a schema of many dictionary columns.
fn dictionary_value_types(schema: &Schema) -> HashMap<i64, DataType> {
    let mut out = HashMap::new();
    let mut stack: Vec<&Field> = schema.fields().iter().rev().map(|f| f.as_ref()).collect();
    while let Some(f) = stack.pop() {
        let mut dt = f.data_type();
        if let DataType::Dictionary(_, v) = dt {
            #[expect(deprecated, reason = "arrow-ipc's reader keys dictionaries by it")]
            let id = f.dict_id();
            if let Some(id) = id {
                out.entry(id).or_insert_with(|| (**v).clone());
            }
            dt = v;
        }
        // A supported type nests fields only through lists (one child).
        if let DataType::List(c) | DataType::LargeList(c) = dt {
            stack.push(c);
        }
    }
    out
}

/// For each buffer that arrow-ipc reads for a column of `dt`, in order, the
/// element width it must be a multiple of (`None`: bytes or bits).
fn buffer_widths(dt: &DataType, out: &mut Vec<Option<usize>>) {
    match dt {
        DataType::Boolean => out.extend([None, None]),
        DataType::Utf8 | DataType::Binary => out.extend([None, Some(4), None]),
        DataType::LargeUtf8 | DataType::LargeBinary => out.extend([None, Some(8), None]),
        DataType::List(f) => {
            out.extend([None, Some(4)]);
            buffer_widths(f.data_type(), out);
        }
        DataType::LargeList(f) => {
            out.extend([None, Some(8)]);
            buffer_widths(f.data_type(), out);
        }
        DataType::Dictionary(k, _) => out.extend([None, k.primitive_width()]),
        dt => out.extend([None, dt.primitive_width()]),
    }
}

/// The record batch of an IPC file, every check of the module docs first.
///
/// arrow-ipc's `RecordBatchDecoder` reads each message once the checks
/// passed (not its `FileDecoder`, which searches the schema for every
/// dictionary). The work is linear in the file's bytes: blocks and buffers
/// are disjoint, so every byte is validated once, and each dictionary and
/// column is looked up in O(1).
#[expect(unsafe_code, reason = "skip_validation is the unchecked reader's")]
pub(crate) fn decode_ipc(bytes: &Buffer, skip_validation: bool) -> Result<RecordBatch, IpcError> {
    let b = bytes.as_slice();
    // Magic + padding at the start; footer length and magic at the end.
    if b.len() < 8 + 10 || &b[..6] != FILE_MAGIC {
        return Err(bad("not an Arrow IPC file (no ARROW1 magic at the start)"));
    }
    let trailer_start = b.len() - 10;
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&b[trailer_start..]);
    let footer_len = read_footer_length(trailer)?;
    let footer_start = trailer_start
        .checked_sub(footer_len)
        .filter(|&s| s >= 8)
        .ok_or_else(|| bad(format!("footer of {footer_len} bytes longer than the file")))?;
    let footer_fb = &b[footer_start..trailer_start];
    let footer = arrow_ipc::root_as_footer_with_opts(&verifier_options(footer_fb.len()), footer_fb)
        .map_err(|e| bad(format!("footer is not a valid flatbuffer: {e}")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| bad("footer without a schema"))?;
    // arrow-ipc's decoders would read the values as little-endian.
    if !fb_schema.endianness().equals_to_target_endianness() {
        let order = if fb_schema.endianness() == arrow_ipc::Endianness::Big {
            "big"
        } else {
            "little"
        };
        return Err(bad(format!(
            "a {order}-endian IPC file on a machine of the other byte order \
             (arrow-ipc does not convert it; write it on a machine of this one)"
        )));
    }
    let schema = arrow_ipc::convert::try_fb_to_schema(fb_schema)?;
    for f in schema.fields() {
        if !supported(f.data_type()) {
            return Err(IpcError::Unsupported(
                f.name().clone(),
                f.data_type().clone(),
            ));
        }
    }
    let blocks: Vec<Block> = footer
        .recordBatches()
        .map(|v| v.iter().copied().collect())
        .unwrap_or_default();
    let [block] = blocks[..] else {
        return Err(bad(format!(
            "{} record batches, a frame holds one",
            blocks.len()
        )));
    };
    let version = footer.version();
    let arrow = bytes.to_arrow();
    let schema = Arc::new(schema);
    let mut skip = UnsafeFlag::new();
    if skip_validation {
        // SAFETY: `UnsafeFlag::set(true)` (arrow's `with_skip_validation`)
        // needs input that is a valid IPC file of valid arrays:
        // - only `record_batch_from_ipc_unchecked` passes `true`, whose
        //   caller guarantees the bytes are an IPC file this module wrote
        //   from a valid batch, unchanged since.
        unsafe { skip.set(true) };
    }
    // The end of the previous block: the first starts after the magic.
    let mut next = 8;
    let value_types = dictionary_value_types(&schema);
    let mut dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
    for d in footer.dictionaries().iter().flatten() {
        let (off, meta, len) = block_range(d, next, footer_start)?;
        next = off + len;
        let block = &b[off..off + len];
        let message = parse_message(block, meta, version)?;
        let dict = message
            .header_as_dictionary_batch()
            .ok_or_else(|| bad("a dictionary block holds another message"))?;
        // Never written here; replayed, a delta concatenates (quadratic).
        if dict.isDelta() {
            return Err(bad("delta dictionary (never written here)"));
        }
        let id = dict.id();
        let value_type = value_types
            .get(&id)
            .ok_or_else(|| bad(format!("dictionary {id} of no column")))?;
        if dictionaries.contains_key(&id) {
            return Err(bad(format!("dictionary {id} given twice")));
        }
        let data = dict
            .data()
            .ok_or_else(|| bad("dictionary batch without data"))?;
        let mut widths = Vec::new();
        buffer_widths(value_type, &mut widths);
        check_batch(&data, &block[meta..], &widths)?;
        // The values as arrow-ipc reads them: a batch of one nullable column.
        let one = Arc::new(Schema::new(vec![Field::new("", value_type.clone(), true)]));
        let body = arrow.slice_with_length(off + meta, len - meta);
        let mv = message.version();
        let values = RecordBatchDecoder::try_new(&body, data, one, &dictionaries, &mv)?
            .with_require_alignment(true)
            .with_skip_validation(skip.clone())
            .read_record_batch()?;
        dictionaries.insert(id, Arc::clone(values.column(0)));
    }
    let (off, meta, len) = block_range(&block, next, footer_start)?;
    let message = parse_message(&b[off..off + len], meta, version)?;
    let data = message
        .header_as_record_batch()
        .ok_or_else(|| bad("a record batch block holds another message"))?;
    let mut widths = Vec::new();
    for f in schema.fields() {
        buffer_widths(f.data_type(), &mut widths);
    }
    check_batch(&data, &b[off + meta..off + len], &widths)?;
    let body = arrow.slice_with_length(off + meta, len - meta);
    let mv = message.version();
    let batch = RecordBatchDecoder::try_new(&body, data, Arc::clone(&schema), &dictionaries, &mv)?
        .with_require_alignment(true)
        .with_skip_validation(skip)
        .read_record_batch()?;
    if batch.schema() != schema {
        return Err(bad("record batch schema differs from the footer's"));
    }
    Ok(batch)
}
