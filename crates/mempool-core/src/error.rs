//! The error type of `mempool-core`.

use std::path::PathBuf;

use mempool_serde::FrameError;

use crate::DRef;

/// Everything a pool operation can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The reference names no value in this pool (deleted, or never stored here).
    #[error("no value {dref} in this pool (deleted, or stored in another pool)")]
    NotFound {
        /// The reference asked for.
        dref: DRef,
    },
    /// The value is of another type than the one asked for.
    #[error("value {dref} is a `{found}`, not a `{expected}`; get it as `{found}`")]
    TypeMismatch {
        /// The reference asked for.
        dref: DRef,
        /// Type asked for.
        expected: String,
        /// Type stored.
        found: String,
    },
    /// Writing to disk would pass `max_disksize`.
    #[error("disk bound reached: writing {needed} bytes would bring the pool's disk use from {used} past max_disksize {max}; delete values or raise max_disksize")]
    DiskFull {
        /// Bytes the write needs.
        needed: u64,
        /// Bytes already on disk.
        used: u64,
        /// The bound.
        max: u64,
    },
    /// Writing a value out of memory failed; it stays in memory and nothing
    /// is lost.
    #[error("spilling {dref} to disk failed (it stays in memory; free disk space or fix the spill directory): {source}")]
    Spill {
        /// The value that could not be written.
        dref: DRef,
        /// Why.
        #[source]
        source: Box<PoolError>,
    },
    /// A frame could not be written or read (I/O, corruption, checksum).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A file-system operation on the pool's directories failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A path given to the pool cannot be used.
    #[error("cannot use {path}: {reason}; choose another path")]
    InvalidPath {
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The configuration is unusable.
    #[error("invalid pool configuration: {0}")]
    Config(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = PoolError> = std::result::Result<T, E>;

/// A failed [`Pool::set`](crate::Pool::set) (or `set_frame`): why, and the
/// value handed back, so that nothing the caller gave is lost (as
/// `std::sync::mpsc::SendError<T>` does). Converts into [`PoolError`] with
/// `?`, dropping the value.
pub struct SetError<T> {
    /// Why the value was not stored.
    pub error: PoolError,
    /// The value, unchanged.
    pub value: T,
}

impl<T> SetError<T> {
    /// The value handed back.
    pub fn into_value(self) -> T {
        self.value
    }
}

impl<T> std::fmt::Debug for SetError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetError")
            .field("error", &self.error)
            .field("value", &format_args!("<{}>", std::any::type_name::<T>()))
            .finish()
    }
}

impl<T> std::fmt::Display for SetError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "value not stored (handed back): {}", self.error)
    }
}

impl<T> std::error::Error for SetError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SetError<T>> for PoolError {
    fn from(e: SetError<T>) -> Self {
        e.error
    }
}
