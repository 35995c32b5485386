//! [`DRef`] and [`FileRef`]: references to stored values.

use std::fmt;
use std::path::{Path, PathBuf};

use mempool_arrays::{AlignedVec, Buffer};
use mempool_serde::{FrameError, MmRead, ReadOptions};

use crate::error::{PoolError, Result};

/// A reference to a value in a pool (MemPool.jl's `DRef`): the owning pool, the
/// value's id in it, and its size in bytes when stored. It is plain data —
/// `Copy`, small, and meaningful to whoever holds the pool it names. Dropping a
/// `DRef` does not delete the value: call [`Pool::delete`](crate::Pool::delete).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DRef {
    /// Identity of the pool (random per pool, so refs of two pools never collide).
    pub owner: u64,
    /// The value's id within its pool (never reused while the pool lives).
    pub id: u64,
    /// Size in bytes of the value when it was stored.
    pub size: u64,
}

impl fmt::Debug for DRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DRef({:08x}/{}, {} B)",
            self.owner as u32, self.id, self.size
        )
    }
}

impl fmt::Display for DRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}/{}", self.owner as u32, self.id)
    }
}

/// A value's frame on disk (MemPool.jl's `FileRef`): a file, and where the
/// frame lies in it (a spilled value is a range of a segment file shared
/// with other values; a saved one is a whole file, offset 0).
/// Any process that can see the file reads it with [`FileRef::read`], without
/// the pool that wrote it.
///
/// The file may belong to another process, which may remove or rewrite it
/// meanwhile, so [`FileRef::read`] copies it into memory (safe whatever
/// happens to the file). [`FileRef::read_mapped`] maps it instead (zero-copy)
/// and is `unsafe`: the caller promises that the file does not change while
/// the value read lives.
///
/// A `FileRef` from [`Pool::move_to_disk`](crate::Pool::move_to_disk) or
/// [`Pool::copy_to_disk`](crate::Pool::copy_to_disk) names a file in the pool's
/// session directory: it is valid until the value is deleted or the pool shuts
/// down. One from [`Pool::save_to_disk`](crate::Pool::save_to_disk) names the
/// caller's file, which the pool never removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileRef {
    /// The file.
    pub path: PathBuf,
    /// Where the frame starts in the file.
    pub offset: u64,
    /// The frame's length in bytes.
    pub size: u64,
}

impl FileRef {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file into memory and decodes the value, verifying its
    /// checksum; arrays share one heap buffer. O(file size), and safe even if
    /// another process rewrites or removes the file meanwhile (that gives an
    /// error, or the value of the bytes read).
    ///
    /// # Errors
    /// [`PoolError::Frame`]: the file is missing, unreadable, corrupt, or holds
    /// another type (the error names both types).
    pub fn read<T: MmRead>(&self) -> Result<T> {
        self.read_with(&ReadOptions::default())
    }

    /// [`FileRef::read`] with explicit read options (without the checksum,
    /// the whole file is still read: only the hashing is saved).
    ///
    /// # Errors
    /// As [`FileRef::read`].
    pub fn read_with<T: MmRead>(&self, opts: &ReadOptions) -> Result<T> {
        let bytes = decompressed(self.read_range()?)?;
        mempool_serde::decode_with(&bytes, opts).map_err(PoolError::from)
    }

    /// The frame's bytes, copied into one aligned heap buffer.
    fn read_range(&self) -> Result<Buffer> {
        use std::os::unix::fs::FileExt as _;
        let io = |source| {
            PoolError::Frame(FrameError::Io {
                path: Some(self.path.clone()),
                source,
            })
        };
        let file = std::fs::File::open(&self.path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if self
            .offset
            .checked_add(self.size)
            .is_none_or(|end| end > len)
        {
            return Err(PoolError::Frame(FrameError::Truncated {
                what: "frame in its file",
                needed: self.offset.saturating_add(self.size),
                available: len,
            }));
        }
        let size = usize::try_from(self.size).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                "the frame is larger than memory can address",
            ))
        })?;
        let mut bytes = AlignedVec::try_with_capacity(size).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::OutOfMemory,
                format!("cannot allocate {size} bytes"),
            ))
        })?;
        bytes.resize(size);
        file.read_exact_at(bytes.as_mut_slice(), self.offset)
            .map_err(io)?;
        Ok(bytes.into_buffer())
    }

    /// Maps the file and decodes the value, verifying its checksum; arrays
    /// borrow the map (no copy; pages are read as they are touched, or all at
    /// once for the checksum).
    ///
    /// # Safety
    /// The file must not be modified or truncated, by any process, while the
    /// value read (or any array, clone or slice taken from it) lives: a write
    /// changes bytes behind shared references (undefined behaviour), a
    /// truncation kills the process with `SIGBUS` when a lost page is read.
    /// Removing the file is fine. A `FileRef` from
    /// [`Pool::move_to_disk`](crate::Pool::move_to_disk) or
    /// [`Pool::copy_to_disk`](crate::Pool::copy_to_disk) names a range of a
    /// segment file that its pool keeps appending to and punches holes in
    /// when values are deleted: it does not meet this while that pool lives
    /// (read it with [`FileRef::read`], or through the pool, which pins
    /// what it maps). One from [`Pool::save_to_disk`](crate::Pool::save_to_disk)
    /// names a file the caller chose, which the pool never writes again, so
    /// it is for the caller to keep others from writing it. See
    /// `mempool_arrays::Buffer::map_file`.
    ///
    /// # Errors
    /// As [`FileRef::read`].
    #[expect(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
    pub unsafe fn read_mapped<T: MmRead>(&self) -> Result<T> {
        // SAFETY: `read_mapped_with` has this function's obligation:
        // - the file is not modified or truncated while the value read lives,
        //   which our caller guarantees (see `# Safety`).
        unsafe { self.read_mapped_with(&ReadOptions::default()) }
    }

    /// [`FileRef::read_mapped`] with explicit read options: without the
    /// checksum, only the pages the structural checks touch are read.
    ///
    /// # Safety
    /// As for [`FileRef::read_mapped`].
    ///
    /// # Errors
    /// As [`FileRef::read`].
    #[expect(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
    pub unsafe fn read_mapped_with<T: MmRead>(&self, opts: &ReadOptions) -> Result<T> {
        let io = |source| {
            PoolError::Frame(FrameError::Io {
                path: Some(self.path.clone()),
                source,
            })
        };
        let file = std::fs::File::open(&self.path).map_err(io)?;
        let len = usize::try_from(self.size).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the frame is larger than memory can address",
            ))
        })?;
        // SAFETY: `map_file_range` has this function's obligation, for the
        // frame's range only:
        // - its bytes are not modified and the file is not truncated below
        //   it while the value read (which may borrow the map) lives, which
        //   our caller guarantees (see `# Safety`).
        let bytes = unsafe { Buffer::map_file_range(&file, self.offset, len) }.map_err(io)?;
        let bytes = decompressed(bytes)?;
        mempool_serde::decode_with(&bytes, opts).map_err(PoolError::from)
    }
}

/// The frame in `bytes`: as it is, or decompressed into memory when a pool
/// with [`PoolConfig::compression`](crate::PoolConfig::compression) wrote it.
fn decompressed(bytes: Buffer) -> Result<Buffer> {
    if mempool_serde::is_compressed(bytes.as_slice()) {
        return Ok(mempool_serde::decompress_frame(bytes.as_slice(), u64::MAX)?);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use mempool_arrays::{MemoryKind, StringArray};

    use super::*;

    #[test]
    #[expect(unsafe_code, reason = "the mapped read of a file this test owns")]
    fn ranges_past_the_file_are_errors_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.frame");
        let size = mempool_serde::write_file(&vec![1.5f64; 100], &path, false).unwrap();
        let at = |offset, size| FileRef {
            path: path.clone(),
            offset,
            size,
        };
        assert_eq!(at(0, size).read::<Vec<f64>>().unwrap(), vec![1.5f64; 100]);
        for (offset, len) in [
            (1, size),
            (size, 1),
            (u64::MAX, 2),
            (2, u64::MAX),
            (0, size + 64),
        ] {
            let f = at(offset, len);
            assert!(
                matches!(
                    f.read::<Vec<f64>>(),
                    Err(PoolError::Frame(FrameError::Truncated { .. }))
                ),
                "read at {offset} + {len}"
            );
            // SAFETY: nothing writes the file while the test reads it:
            // - it was written above and is only read from here on.
            let mapped = unsafe { f.read_mapped::<Vec<f64>>() };
            assert!(mapped.is_err(), "mapped at {offset} + {len}");
        }
        // A range inside the file that is not a frame is an error too.
        assert!(at(64, size - 64).read::<Vec<f64>>().is_err());
    }

    #[test]
    #[expect(unsafe_code, reason = "tests the mapped read")]
    fn read_copies_and_read_mapped_maps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.frame");
        let names = StringArray::from(vec![Some("å"), None, Some("b")]);
        let size = mempool_serde::write_file(&names, &path, false).unwrap();
        let f = FileRef {
            path,
            offset: 0,
            size,
        };

        let copied: StringArray = f.read().unwrap();
        assert_eq!(copied, names);
        assert_eq!(copied.parts().1.memory_kind(), MemoryKind::Heap);
        let unverified: StringArray = f
            .read_with(&ReadOptions {
                verify_checksum: false,
            })
            .unwrap();
        assert_eq!(unverified.parts().1.memory_kind(), MemoryKind::Heap);

        // SAFETY: the file must not change while mapped:
        // - it is in this test's private temporary directory and nothing
        //   writes it after `write_file` renamed it into place.
        let mapped: StringArray = unsafe { f.read_mapped() }.unwrap();
        assert_eq!(mapped, names);
        assert_eq!(mapped.parts().1.memory_kind(), MemoryKind::Mapped);

        // The wrong type and a missing file are errors either way.
        assert!(f.read::<Vec<f64>>().is_err());
        let gone = FileRef {
            path: dir.path().join("missing.frame"),
            offset: 0,
            size,
        };
        assert!(matches!(
            gone.read::<StringArray>(),
            Err(PoolError::Frame(_))
        ));
        // SAFETY: nothing is mapped (the file does not exist), so:
        // - there is no file that could change while mapped.
        assert!(unsafe { gone.read_mapped::<StringArray>() }.is_err());
    }
}
