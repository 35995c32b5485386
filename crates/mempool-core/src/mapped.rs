//! Mapping the pool's own spill files: the one place where mempool-core maps
//! a file, so that the rule that makes it sound is stated once.
//!
//! A spill file lives in the pool's session directory (mode 0700, locked by
//! this process), is created exclusively under a temporary name, written
//! once, renamed into place and never opened for writing again; the pool
//! only ever removes it (an unlinked file stays mapped until unmapped).

use std::path::Path;

use mempool_arrays::Buffer;
use mempool_serde::{FrameError, MmRead, ReadOptions};

/// Maps one of the pool's spill files, lazily.
pub(crate) fn map_spill(path: &Path) -> Result<Buffer, FrameError> {
    mempool_serde::map_file(path)
}

/// Maps one of the pool's spill files and decodes it; arrays borrow the map.
pub(crate) fn read_spill<T: MmRead>(path: &Path, opts: &ReadOptions) -> Result<T, FrameError> {
    mempool_serde::read_file_with(path, opts)
}
