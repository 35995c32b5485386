//! The error type of `mempool-serde`.

use std::path::PathBuf;

/// Everything that can go wrong writing or reading a frame.
///
/// A reader never trusts a frame: truncation, corruption, a hostile length or a
/// frame of another type all come back as one of these, with the expected and
/// found values. Every message ends with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the frame needs.
    #[error(
        "frame truncated: {what} needs {needed} bytes, only {available} present; \
         the frame is incomplete (an interrupted write or copy): rewrite it from its source"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The bytes do not start with the frame magic.
    #[error(
        "not a mempool frame (magic {found:02x?}, expected {expected:02x?}); \
         check that the path or bytes hold a frame written by mempool"
    )]
    BadMagic {
        /// The magic of the format.
        expected: [u8; 8],
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// A frame version this build cannot read.
    #[error(
        "frame version {found} is not supported (this build reads version {supported}); \
         read it with a mempool that supports version {found}, or rewrite it with this one"
    )]
    UnsupportedVersion {
        /// Version in the frame.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// The frame holds another type than the one asked for.
    #[error("frame holds a `{found}`, not a `{expected}`; read it as `{found}`")]
    TypeMismatch {
        /// Type asked for.
        expected: String,
        /// Type in the frame.
        found: String,
    },
    /// The header's checksum does not match (the header or section table is corrupt).
    #[error(
        "frame header checksum mismatch (stored {stored:#018x}, computed {computed:#018x}); \
         the frame header is corrupt: rewrite the frame from its source"
    )]
    HeaderChecksum {
        /// Checksum stored in the frame.
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// The body's checksum does not match (the data is corrupt).
    #[error(
        "frame body checksum mismatch (stored {stored:#018x}, computed {computed:#018x}); \
         the frame data is corrupt: rewrite the frame from its source"
    )]
    BodyChecksum {
        /// Checksum stored in the frame.
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// A header field is out of its allowed range.
    #[error(
        "frame field {field} = {value} is invalid ({reason}); \
         the frame is corrupt: rewrite it from its source"
    )]
    BadField {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value's reader asked for more sections than the frame has.
    #[error(
        "frame of `{type_name}` has too few sections (section {index} is missing); \
         the frame is corrupt: rewrite it from its source"
    )]
    MissingSection {
        /// Type being read.
        type_name: String,
        /// Index of the missing section.
        index: usize,
    },
    /// A value's reader left sections unread.
    #[error(
        "frame of `{type_name}` has {extra} unexpected trailing sections; \
         the frame is corrupt: rewrite it from its source"
    )]
    TrailingSections {
        /// Type being read.
        type_name: String,
        /// Number of sections left.
        extra: usize,
    },
    /// A section does not have the length its metadata implies.
    #[error(
        "section {index} of `{type_name}` ({what}) has {found} bytes, expected {expected}; \
         the frame is corrupt: rewrite it from its source"
    )]
    SectionLength {
        /// Type being read.
        type_name: String,
        /// Section index.
        index: usize,
        /// What the section holds.
        what: &'static str,
        /// Length implied by the metadata.
        expected: u64,
        /// Length found.
        found: u64,
    },
    /// A pooled array's code width is not 1, 2 or 4 bytes.
    #[error(
        "section {index} of `{type_name}`: code width is {width} bytes, expected 1, 2 or 4; \
         the frame is corrupt: rewrite it from its source"
    )]
    CodeWidth {
        /// Type being read.
        type_name: String,
        /// Section index of the metadata.
        index: usize,
        /// The width found.
        width: u8,
    },
    /// The first string offset of a string section is not zero.
    #[error(
        "section {index} of `{type_name}`: the first string offset is {found}, expected 0; \
         the frame is corrupt: rewrite it from its source"
    )]
    FirstOffset {
        /// Type being read.
        type_name: String,
        /// Section index of the offsets.
        index: usize,
        /// The first offset found.
        found: u64,
    },
    /// A table column's kind tag is unknown to this version.
    #[error(
        "table column {name:?} has unknown kind tag {kind}; the frame is corrupt or was \
         written by a newer mempool: read it with that version, or rewrite it"
    )]
    UnknownColumnKind {
        /// Column name.
        name: String,
        /// The tag found.
        kind: u8,
    },
    /// A table column has an array type that this version cannot write.
    #[error(
        "column {name:?} of type {column_type:?} has no frame format in this version of \
         mempool-serde; convert the column to a supported type or upgrade mempool-serde"
    )]
    UnsupportedColumn {
        /// Column name.
        name: String,
        /// The column's type name.
        column_type: &'static str,
    },
    /// A section's content does not fit the type being read.
    #[error(
        "section {index} of `{type_name}` is malformed ({reason}); \
         the frame is corrupt: rewrite it from its source"
    )]
    BadSection {
        /// Type being read.
        type_name: String,
        /// Section index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A count or length exceeds what the frame can hold or a configured maximum.
    #[error(
        "{what} is {value}, more than the maximum {max}; a frame cannot hold it \
         (when reading, the frame is corrupt or hostile: rewrite it from its source)"
    )]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// Value found.
        value: u64,
        /// The maximum.
        max: u64,
    },
    /// Postcard could not encode or decode metadata or a `Serde<T>` value.
    #[error(
        "postcard {op} of `{type_name}` failed: {source}; {}",
        postcard_advice(op)
    )]
    Postcard {
        /// "encoding" or "decoding".
        op: &'static str,
        /// Type being coded.
        type_name: String,
        /// Postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// The arrays in the frame are inconsistent.
    #[error("invalid array in the frame: {0}")]
    Array(#[from] mempool_arrays::ArrayError),
    /// Arrow (arrow-ipc, or arrow's validation) refused an Arrow value's
    /// bytes (feature `arrow`).
    #[cfg(feature = "arrow")]
    #[error(
        "arrow failed {op}: {source}; when reading, the frame is corrupt or hostile: \
         rewrite it from its source"
    )]
    Arrow {
        /// "writing an IPC file" or "reading an IPC file".
        op: &'static str,
        /// Arrow's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// An Arrow column type that frames do not hold (feature `arrow`; see
    /// `arrow::SUPPORTED`).
    #[cfg(feature = "arrow")]
    #[error(
        "column {column:?} has arrow type {data_type}, which mempool frames do not hold; \
         cast it to a supported type first (numbers, dates, times, Boolean, strings, \
         binary, lists and dictionaries of these)"
    )]
    UnsupportedArrowType {
        /// Column name (`""` for an `ArrayRef`).
        column: String,
        /// The Arrow type.
        data_type: arrow_schema::DataType,
    },
    /// A compressed frame names a codec this build does not know.
    #[error(
        "compressed frame uses codec id {id}, which this build does not know; read it with \
         the mempool that wrote it, or rewrite it with a codec this build supports"
    )]
    UnknownCodec {
        /// The codec id found.
        id: u16,
    },
    /// A codec failed to compress a frame or to decompress a payload.
    #[error("{op} with {codec} failed: {source}; {}", codec_advice(op))]
    Codec {
        /// The codec's name ("lz4").
        codec: &'static str,
        /// "compressing" or "decompressing".
        op: &'static str,
        /// The codec's error.
        #[source]
        source: std::io::Error,
    },
    /// Memory for a decompressed frame could not be allocated.
    #[error(
        "cannot allocate {bytes} bytes for a decompressed frame; free memory, or use a \
         smaller max_raw_len to refuse frames this large"
    )]
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
    /// Reading or writing a file failed.
    #[error(
        "reading or writing {} failed: {source}; check the path, its permissions and the free disk space",
        path.as_ref().map_or_else(|| "a stream".to_string(), |p| p.display().to_string())
    )]
    Io {
        /// The file, when there is one.
        path: Option<PathBuf>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to do about a postcard error, by operation.
fn postcard_advice(op: &str) -> &'static str {
    if op == "encoding" {
        "check that the value serializes with serde (postcard needs the length of every \
         sequence and map up front)"
    } else {
        "the frame is corrupt, or the type changed since the frame was written: \
         rewrite it from its source"
    }
}

/// What to do about a codec error, by operation.
fn codec_advice(op: &str) -> &'static str {
    if op == "compressing" {
        "store the frame uncompressed instead"
    } else {
        "the compressed frame is corrupt: rewrite it from its source"
    }
}

impl From<std::io::Error> for FrameError {
    fn from(source: std::io::Error) -> Self {
        FrameError::Io { path: None, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = FrameError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message is lower-case and says what to do.
    #[test]
    fn messages_say_what_to_do() {
        let io = || std::io::Error::other("boom");
        let postcard_err = postcard::from_bytes::<u64>(&[]).unwrap_err();
        let errors = [
            FrameError::Truncated {
                what: "frame",
                needed: 2,
                available: 1,
            },
            FrameError::BadMagic {
                expected: *b"MPFRAME\0",
                found: [0; 8],
            },
            FrameError::UnsupportedVersion {
                found: 9,
                supported: 1,
            },
            FrameError::TypeMismatch {
                expected: "A".into(),
                found: "B".into(),
            },
            FrameError::HeaderChecksum {
                stored: 1,
                computed: 2,
            },
            FrameError::BodyChecksum {
                stored: 1,
                computed: 2,
            },
            FrameError::BadField {
                field: "flags",
                value: 1,
                reason: "no flags are defined in version 1",
            },
            FrameError::MissingSection {
                type_name: "T".into(),
                index: 1,
            },
            FrameError::TrailingSections {
                type_name: "T".into(),
                extra: 1,
            },
            FrameError::SectionLength {
                type_name: "T".into(),
                index: 1,
                what: "bitmap",
                expected: 1,
                found: 2,
            },
            FrameError::CodeWidth {
                type_name: "T".into(),
                index: 0,
                width: 3,
            },
            FrameError::FirstOffset {
                type_name: "T".into(),
                index: 1,
                found: 3,
            },
            FrameError::UnknownColumnKind {
                name: "c".into(),
                kind: 200,
            },
            FrameError::UnsupportedColumn {
                name: "c".into(),
                column_type: "decimal",
            },
            FrameError::BadSection {
                type_name: "T".into(),
                index: 1,
                reason: "x".into(),
            },
            FrameError::LimitExceeded {
                what: "section count",
                value: 2,
                max: 1,
            },
            FrameError::Postcard {
                op: "decoding",
                type_name: "T".into(),
                source: postcard_err.clone(),
            },
            FrameError::Postcard {
                op: "encoding",
                type_name: "T".into(),
                source: postcard_err,
            },
            FrameError::Array(mempool_arrays::ArrayError::InvalidUtf8 { index: 0 }),
            FrameError::UnknownCodec { id: 9 },
            FrameError::Codec {
                codec: "lz4",
                op: "compressing",
                source: io(),
            },
            FrameError::Codec {
                codec: "lz4",
                op: "decompressing",
                source: io(),
            },
            FrameError::OutOfMemory { bytes: 1 << 40 },
            FrameError::Io {
                path: Some("/x".into()),
                source: io(),
            },
            FrameError::from(io()),
        ];
        let verbs = ["rewrite", "read it", "check", "store", "use", "convert"];
        for e in &errors {
            let m = e.to_string();
            assert!(m.starts_with(|c: char| !c.is_uppercase()), "{m}");
            assert!(verbs.iter().any(|v| m.contains(v)), "no advice in: {m}");
        }
    }
}
