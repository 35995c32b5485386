//! The error type of `mempool-arrays`.

/// Everything that can go wrong building or checking an array.
///
/// Each variant carries the values that were expected and found, so that a
/// message can say what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrayError {
    /// A buffer's byte length is not a whole number of elements.
    #[error("{what}: {len} bytes is not a multiple of the element size {elem_size}; pass whole elements (if it came from a frame, the frame is corrupt: rewrite it from its source)")]
    BadByteLength {
        /// Which buffer.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The element size in bytes.
        elem_size: usize,
    },
    /// A buffer does not start at an address aligned for its element type.
    #[error("{what}: address {addr:#x} is not aligned to {align} bytes; copy the bytes into an aligned buffer with Buffer::copy_aligned")]
    Misaligned {
        /// Which buffer.
        what: &'static str,
        /// Required alignment in bytes.
        align: usize,
        /// The address found.
        addr: usize,
    },
    /// Two parts of an array disagree about its length.
    #[error("{what}: expected length {expected}, found {found}; build the parts with matching lengths (if they came from a frame, the frame is corrupt: rewrite it from its source)")]
    LengthMismatch {
        /// Which part.
        what: &'static str,
        /// The length the other parts imply.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// String offsets decrease somewhere.
    #[error("string offsets decrease at index {index} ({prev} > {next}); offsets must never decrease (if they came from a frame, the frame is corrupt: rewrite it from its source)")]
    OffsetsNotMonotone {
        /// Index of the first offset of the decreasing pair.
        index: usize,
        /// The offset at `index`.
        prev: u64,
        /// The offset at `index + 1`.
        next: u64,
    },
    /// An offset points past the end of the data buffer.
    #[error("string offset {offset} at index {index} is past the end of the {len}-byte data buffer; offsets must stay within the data (if they came from a frame, the frame is corrupt: rewrite it from its source)")]
    OffsetOutOfBounds {
        /// Index of the offset.
        index: usize,
        /// The offset.
        offset: u64,
        /// Length of the data buffer.
        len: usize,
    },
    /// A string is not valid UTF-8 (or an offset splits a character).
    #[error("string {index} is not valid UTF-8 (or an offset splits a character); store text as UTF-8, or read it as bytes with try_value/iter_bytes")]
    InvalidUtf8 {
        /// Index of the string.
        index: usize,
    },
    /// A dictionary code refers past the end of the pool.
    #[error("dictionary code {code} at index {index} is not below the pool size {pool_len}; every code must index the pool (if it came from a frame, the frame is corrupt: rewrite it from its source)")]
    CodeOutOfRange {
        /// Row index.
        index: usize,
        /// The code found.
        code: u64,
        /// Number of values in the pool.
        pool_len: usize,
    },
    /// An index or range is past the end of an array.
    #[error("index {index} out of bounds for length {len}; check the index against len() first")]
    OutOfBounds {
        /// The index (or end of range) asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// A table's column has a different length from the others.
    #[error("column {name:?} has {found} rows, the table has {expected}; give every column the same number of rows")]
    ColumnLength {
        /// Column name.
        name: String,
        /// Rows in the table.
        expected: usize,
        /// Rows in the column.
        found: usize,
    },
    /// Two columns of a table share a name.
    #[error("duplicate column name {name:?}; give each column a unique name")]
    DuplicateColumn {
        /// The repeated name.
        name: String,
    },
    /// A table has no column of that name.
    #[error("no column named {name:?}; list the columns with Table::names()")]
    NoSuchColumn {
        /// The name asked for.
        name: String,
    },
    /// A column has another type than the one asked for.
    #[error("column {name:?} is {found}, not {expected}; ask for the column's own type (Column::type_name)")]
    ColumnType {
        /// Column name.
        name: String,
        /// Type asked for.
        expected: &'static str,
        /// Type found.
        found: &'static str,
    },
    /// A file could not be opened or mapped.
    #[error("cannot map {}: {source}; check that the file exists and is readable", path.display())]
    Map {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Arrow rejected the arrays handed to it (feature `arrow`).
    #[cfg(feature = "arrow")]
    #[error(
        "arrow rejected the array: {0}; check the array with validate_full before converting it"
    )]
    Arrow(#[from] arrow_schema::ArrowError),
    /// An Arrow array has nulls where the array type asked for has none
    /// (feature `arrow`).
    #[cfg(feature = "arrow")]
    #[error("the arrow {what} has {null_count} nulls, and this array type has none; read it as a NullableArray (Int64, Float64) or drop the nulls first")]
    ArrowNulls {
        /// Which array.
        what: &'static str,
        /// Its nulls.
        null_count: usize,
    },
    /// An Arrow type that no array of this crate holds (feature `arrow`).
    #[cfg(feature = "arrow")]
    #[error("arrow type {data_type}{} has no mempool array type; convert it to a supported type (numbers, Boolean, Utf8/LargeUtf8, dictionaries of strings) first", column.as_deref().map(|c| format!(" (column {c:?})")).unwrap_or_default())]
    UnsupportedArrowType {
        /// The column, when converting a `RecordBatch`.
        column: Option<String>,
        /// The Arrow type.
        data_type: arrow_schema::DataType,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ArrayError> = std::result::Result<T, E>;
