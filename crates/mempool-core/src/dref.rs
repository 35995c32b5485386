//! [`DRef`] and [`FileRef`]: references to stored values.

use std::fmt;
use std::path::{Path, PathBuf};

use mempool_serde::{MmRead, ReadOptions};

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

/// A value's frame file on disk (MemPool.jl's `FileRef`): a path and a size.
/// Any process that can see the file reads it with [`FileRef::read`], without
/// the pool that wrote it.
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
    /// Its length in bytes.
    pub size: u64,
}

impl FileRef {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps the file and reads the value, verifying its checksum; arrays borrow
    /// the map.
    ///
    /// # Errors
    /// [`PoolError::Frame`]: the file is missing, unreadable, corrupt, or holds
    /// another type (the error names both types).
    pub fn read<T: MmRead>(&self) -> Result<T> {
        self.read_with(&ReadOptions::default())
    }

    /// [`FileRef::read`] with explicit read options.
    ///
    /// # Errors
    /// As [`FileRef::read`].
    pub fn read_with<T: MmRead>(&self, opts: &ReadOptions) -> Result<T> {
        mempool_serde::read_file_with(&self.path, opts).map_err(PoolError::from)
    }
}
