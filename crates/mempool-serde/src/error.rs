//! The error type of `mempool-serde`.

use std::path::PathBuf;

/// Everything that can go wrong writing or reading a frame.
///
/// A reader never trusts a frame: truncation, corruption, a hostile length or a
/// frame of another type all come back as one of these, with the expected and
/// found values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the frame needs.
    #[error("frame truncated: {what} needs {needed} bytes, only {available} present")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The bytes do not start with the frame magic.
    #[error("not a mempool frame: magic {found:02x?}, expected {expected:02x?}")]
    BadMagic {
        /// The magic of the format.
        expected: [u8; 8],
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// A frame version this build cannot read.
    #[error("frame version {found} is not supported (this build reads version {supported}); upgrade mempool")]
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
    #[error("frame header checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the frame is corrupt")]
    HeaderChecksum {
        /// Checksum stored in the frame.
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// The body's checksum does not match (the data is corrupt).
    #[error("frame body checksum mismatch (stored {stored:#018x}, computed {computed:#018x}): the data is corrupt")]
    BodyChecksum {
        /// Checksum stored in the frame.
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// A header field is out of its allowed range.
    #[error("frame field {field} = {value} is invalid: {reason}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value's reader asked for more sections than the frame has.
    #[error("frame of `{type_name}` has too few sections: section {index} is missing")]
    MissingSection {
        /// Type being read.
        type_name: String,
        /// Index of the missing section.
        index: usize,
    },
    /// A value's reader left sections unread.
    #[error("frame of `{type_name}` has {extra} unexpected trailing sections")]
    TrailingSections {
        /// Type being read.
        type_name: String,
        /// Number of sections left.
        extra: usize,
    },
    /// A section's content does not fit the type being read.
    #[error("section {index} of `{type_name}` is malformed: {reason}")]
    BadSection {
        /// Type being read.
        type_name: String,
        /// Section index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A count or length exceeds what the frame can hold or a configured maximum.
    #[error("{what} is {value}, more than the maximum {max}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// Value found.
        value: u64,
        /// The maximum.
        max: u64,
    },
    /// Postcard could not encode or decode metadata or a `Serde<T>` value.
    #[error("postcard {op} of `{type_name}` failed: {source}")]
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
    #[error("invalid array in frame: {0}")]
    Array(#[from] mempool_arrays::ArrayError),
    /// Reading or writing a file failed.
    #[error("I/O on {}: {source}", path.as_ref().map_or_else(|| "stream".to_string(), |p| p.display().to_string()))]
    Io {
        /// The file, when there is one.
        path: Option<PathBuf>,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl From<std::io::Error> for FrameError {
    fn from(source: std::io::Error) -> Self {
        FrameError::Io { path: None, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = FrameError> = std::result::Result<T, E>;
