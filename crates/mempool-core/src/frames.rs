//! [`StoredFrame`]: any pool entry as frame bytes, to send or save.

use std::borrow::Cow;
use std::sync::Arc;

use mempool_serde::{EncodedFrame, Frame};

use crate::error::Result;
use crate::held::Stored;

/// A pool entry as frame bytes, from [`Pool::frame`](crate::Pool::frame),
/// without decoding it. It holds what it needs (the value, or the mapped
/// spill file) for as long as it lives, whatever the pool does meanwhile.
///
/// ```
/// use mempool_arrays::StringArray;
/// use mempool_core::{Pool, PoolConfig};
///
/// let dir = tempfile::tempdir().unwrap();
/// let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
/// let r = pool.set(StringArray::from(vec![Some("a"), None])).unwrap();
/// let src = pool.frame(&r).unwrap();
/// assert_eq!(src.type_name(), "StringArray");
/// let frame = src.encode().unwrap();
/// let mut sent = Vec::new();
/// for chunk in frame.chunks() {
///     sent.extend_from_slice(chunk); // a socket write, in a real sender
/// }
/// assert_eq!(sent.len(), frame.len());
/// # let back: StringArray = mempool_serde::decode(&mempool_arrays::Buffer::copy_aligned(&sent)).unwrap();
/// # assert_eq!(back.len(), 2);
/// ```
pub struct StoredFrame {
    src: Src,
}

enum Src {
    /// A value in memory: a live typed value or a frame entry.
    Value(Arc<dyn Stored>),
    /// A value on disk: its spill file, mapped.
    Mapped(Frame),
}

impl std::fmt::Debug for StoredFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFrame")
            .field("type_name", &self.type_name())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl StoredFrame {
    pub(crate) fn from_value(value: Arc<dyn Stored>) -> Self {
        Self {
            src: Src::Value(value),
        }
    }

    pub(crate) fn from_frame(frame: Frame) -> Self {
        Self {
            src: Src::Mapped(frame),
        }
    }

    /// The frame's type name.
    pub fn type_name(&self) -> Cow<'_, str> {
        match &self.src {
            Src::Value(v) => v.type_name(),
            Src::Mapped(f) => Cow::Borrowed(f.type_name()),
        }
    }

    /// Whether the bytes are a mapped spill file (the value was on disk).
    pub fn is_mapped(&self) -> bool {
        matches!(self.src, Src::Mapped(_))
    }

    /// The frame, ready to send in chunks ([`EncodedFrame::chunks`]) or
    /// write: the stored or mapped bytes as they are (nothing copied), or,
    /// for a live typed value, an encoding whose sections borrow the value's
    /// buffers where its writer can (the mempool-arrays columns; `Serde<T>`,
    /// `Vec<String>` and re-based slices write owned sections), with the
    /// checksums computed here in one pass over the data, before the first
    /// chunk can go out.
    ///
    /// # Errors
    /// [`PoolError::Frame`](crate::PoolError::Frame) when a typed value cannot
    /// be encoded.
    pub fn encode(&self) -> Result<EncodedFrame<'_>> {
        Ok(match &self.src {
            Src::Value(v) => v.layout()?.seal(),
            Src::Mapped(f) => EncodedFrame::from_frame(f),
        })
    }

    /// Checks the body checksum of a mapped spill file (a pass over it); a
    /// value in memory has nothing to check.
    ///
    /// # Errors
    /// [`PoolError::Frame`](crate::PoolError::Frame) with
    /// `FrameError::BodyChecksum` when the file is corrupt.
    pub fn verify(&self) -> Result<()> {
        match &self.src {
            Src::Value(_) => Ok(()),
            Src::Mapped(f) => Ok(f.verify_checksum()?),
        }
    }
}
