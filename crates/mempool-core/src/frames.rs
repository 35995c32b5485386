//! [`StoredFrame`]: any pool entry as frame bytes, to send or save.

use std::borrow::Cow;
use std::sync::{Arc, Weak};

use mempool_serde::{EncodedFrame, Frame};

use crate::error::Result;
use crate::held::Stored;
use crate::segments::Extent;
use crate::FileRef;

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
    /// A value on disk: its spill file, mapped; with the frame's range of
    /// its segment when the file holds the frame as it is (not compressed),
    /// held so that the range stays in place.
    Mapped(Frame, Option<Arc<Extent>>),
}

/// Whether one in-memory instance of a value still lives, from
/// [`StoredFrame::residence`]: a weak handle that keeps nothing alive.
#[derive(Clone)]
pub struct Residence(Weak<dyn Stored>);

impl std::fmt::Debug for Residence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Residence")
            .field("live", &self.is_live())
            .finish()
    }
}

impl Residence {
    /// Whether the instance still lives: in the pool's memory, or held by a
    /// [`Ref`](crate::Ref) or a [`StoredFrame`]. False once the value was
    /// deleted or spilled and nobody holds it.
    pub fn is_live(&self) -> bool {
        self.0.strong_count() > 0
    }

    /// Whether both name the same instance (a value spilled and read back
    /// is another instance).
    pub fn same(&self, other: &Residence) -> bool {
        Weak::ptr_eq(&self.0, &other.0)
    }
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

    pub(crate) fn from_frame(frame: Frame, range: Option<Arc<Extent>>) -> Self {
        Self {
            src: Src::Mapped(frame, range),
        }
    }

    /// For a value on disk whose spill file holds its frame as it is (not
    /// compressed): the segment file, where the frame starts in it and its
    /// length. The file lies in the pool's private session directory. The
    /// range is pinned while this `StoredFrame` lives: the pool never
    /// writes it (it was written once, before it was handed out), never
    /// punches it and never truncates the file below it, whatever happens to
    /// the value meanwhile (deleted, its range is freed only when the last
    /// holder of it goes) — so another process of the same user may map it
    /// read-only for as long as the pin lasts. `None` for a value in memory
    /// or a compressed spill file.
    pub fn spill_range(&self) -> Option<FileRef> {
        match &self.src {
            Src::Mapped(_, Some(x)) => Some(FileRef {
                path: x.path().to_owned(),
                offset: x.offset(),
                size: x.len(),
            }),
            _ => None,
        }
    }

    /// For a value in memory: a weak handle that says whether this
    /// in-memory instance still lives (a cache of copies made from it can
    /// drop a copy once it does not). `None` for a value read from disk.
    pub fn residence(&self) -> Option<Residence> {
        match &self.src {
            Src::Value(v) => Some(Residence(Arc::downgrade(v))),
            Src::Mapped(..) => None,
        }
    }

    /// The frame's type name.
    pub fn type_name(&self) -> Cow<'_, str> {
        match &self.src {
            Src::Value(v) => v.type_name(),
            Src::Mapped(f, _) => Cow::Borrowed(f.type_name()),
        }
    }

    /// Whether the bytes are a mapped spill file (the value was on disk).
    pub fn is_mapped(&self) -> bool {
        matches!(self.src, Src::Mapped(..))
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
            Src::Mapped(f, _) => EncodedFrame::from_frame(f),
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
            Src::Mapped(f, _) => Ok(f.verify_checksum()?),
        }
    }
}
