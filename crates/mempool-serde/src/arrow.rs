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
//! [`SUPPORTED`]. Bytes that
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
use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::{Block, MessageHeader, MetadataVersion};
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
/// lie within the first `limit` bytes, as `(start, total length)`.
fn block_range(b: &Block, limit: usize) -> Result<(usize, usize), IpcError> {
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
    Ok((off, total))
}

/// Checks one encapsulated message the way arrow-ipc will read it (the
/// flatbuffer from byte 8, or 4 without the continuation marker, to the
/// block's end): the header is of the kind wanted and present; its data is
/// uncompressed, its row count and node lengths are bounded by the body, and
/// its buffers lie within the body.
fn check_message(
    block: &[u8],
    meta: usize,
    dictionary: bool,
    widths: &[Option<usize>],
) -> Result<(), IpcError> {
    let fb = if block[..4] == CONTINUATION {
        &block[8..]
    } else {
        &block[4..]
    };
    let message = arrow_ipc::root_as_message(fb)
        .map_err(|e| bad(format!("message is not a valid flatbuffer: {e}")))?;
    let body_len = block.len() - meta;
    let batch = if dictionary {
        if message.header_type() != MessageHeader::DictionaryBatch {
            return Err(bad("a dictionary block holds another message"));
        }
        let d = message
            .header_as_dictionary_batch()
            .ok_or_else(|| bad("dictionary batch header missing"))?;
        // Never written here; replayed, a delta concatenates (quadratic).
        if d.isDelta() {
            return Err(bad("delta dictionary (never written here)"));
        }
        d.data()
            .ok_or_else(|| bad("dictionary batch without data"))?
    } else {
        if message.header_type() != MessageHeader::RecordBatch {
            return Err(bad("a record batch block holds another message"));
        }
        message
            .header_as_record_batch()
            .ok_or_else(|| bad("record batch header missing"))?
    };
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
    let body_addr = block[meta..].as_ptr() as usize;
    if !body_addr.is_multiple_of(usize::from(IPC_ALIGNMENT)) {
        return Err(bad("message body not 64-byte aligned"));
    }
    let buffers = batch
        .buffers()
        .map(|v| v.iter().collect())
        .unwrap_or(Vec::new());
    for (i, b) in buffers.iter().enumerate() {
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
    }
    if batch.variadicBufferCounts().is_some_and(|v| !v.is_empty()) {
        return Err(bad("variadic buffers (view types are not supported)"));
    }
    Ok(())
}

/// For each buffer that arrow-ipc reads for a column of `dt`, in order, the
/// element width it must be a multiple of (`None`: bytes or bits).
/// The id of a dictionary block's dictionary (`None` if the block is not
/// one), and the type of the field it belongs to, as arrow-ipc finds it (the
/// first field of that id).
fn dictionary_field(block: &[u8], schema: &Schema) -> (Option<i64>, Option<DataType>) {
    let fb = if block[..4] == CONTINUATION {
        &block[8..]
    } else {
        &block[4..]
    };
    let Some(id) = arrow_ipc::root_as_message(fb)
        .ok()
        .and_then(|m| m.header_as_dictionary_batch())
        .map(|d| d.id())
    else {
        return (None, None);
    };
    #[expect(deprecated, reason = "arrow-ipc's reader finds the field this way")]
    let fields = schema.fields_with_dict_id(id);
    (Some(id), fields.first().map(|f| f.data_type().clone()))
}

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
    let footer = arrow_ipc::root_as_footer(&b[footer_start..trailer_start])
        .map_err(|e| bad(format!("footer is not a valid flatbuffer: {e}")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| bad("footer without a schema"))?;
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
    let arrow = bytes.to_arrow();
    let schema = Arc::new(schema);
    let mut decoder =
        FileDecoder::new(Arc::clone(&schema), footer.version()).with_require_alignment(true);
    if skip_validation {
        // SAFETY: `with_skip_validation` needs input that is a valid IPC file
        // of valid arrays:
        // - only `record_batch_from_ipc_unchecked` passes `true`, whose
        //   caller guarantees the bytes are an IPC file this module wrote
        //   from a valid batch, unchanged since.
        decoder = unsafe { decoder.with_skip_validation(true) };
    }
    // Each dictionary once: blocks may overlap, so a footer of n blocks over
    // one message would otherwise decode it n times.
    let mut ids = HashSet::new();
    for d in footer.dictionaries().iter().flatten() {
        let (off, len) = block_range(d, footer_start)?;
        let block = &b[off..off + len];
        let mut widths = Vec::new();
        let (id, field) = dictionary_field(block, &schema);
        if !id.is_some_and(|id| ids.insert(id)) {
            return Err(bad("a dictionary block repeats an id, or has none"));
        }
        if let Some(DataType::Dictionary(_, v)) = field {
            buffer_widths(&v, &mut widths);
        }
        check_message(block, d.metaDataLength() as usize, true, &widths)?;
        decoder.read_dictionary(d, &arrow.slice_with_length(off, len))?;
    }
    let (off, len) = block_range(&block, footer_start)?;
    let mut widths = Vec::new();
    for f in schema.fields() {
        buffer_widths(f.data_type(), &mut widths);
    }
    check_message(
        &b[off..off + len],
        block.metaDataLength() as usize,
        false,
        &widths,
    )?;
    let batch = decoder
        .read_record_batch(&block, &arrow.slice_with_length(off, len))?
        .ok_or_else(|| bad("record batch block without a batch"))?;
    if batch.schema() != schema {
        return Err(bad("record batch schema differs from the footer's"));
    }
    Ok(batch)
}
