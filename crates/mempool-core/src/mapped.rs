//! Mapping the pool's own spill files: the one place where mempool-core maps
//! a file, so that the rule that makes it sound is stated once.
//!
//! Mapping a file is `unsafe`: the file must not be modified or truncated
//! while anything read from the map lives. A spill file meets that rule:
//! - it lives in the pool's session directory (mode 0700, so no other user
//!   can create, write or replace files in it; locked by this process, so no
//!   other pool uses it);
//! - it is created exclusively (`O_CREAT | O_EXCL`) under a temporary name,
//!   written once, renamed into place, and never opened for writing again;
//! - the pool only ever removes it, and an unlinked file stays mapped, with
//!   its bytes, until unmapped.
//!
//! Only paths of such files may be passed here; files from elsewhere (a
//! caller's `save_to_disk` target, a [`FileRef`](crate::FileRef) from another
//! process) are read by copying.

use std::path::Path;

use mempool_arrays::Buffer;
use mempool_serde::{FrameError, MmRead, ReadOptions};

/// Maps one of the pool's spill files, lazily. `path` must name a spill
/// file of this pool (see the module docs).
///
/// # Errors
/// [`FrameError::Io`] naming the file.
#[expect(unsafe_code, reason = "maps the pool's own spill file")]
pub(crate) fn map_spill(path: &Path) -> Result<Buffer, FrameError> {
    // SAFETY: the file must not be modified or truncated while any buffer
    // of the map lives:
    // - `path` is a spill file of this pool (this function's contract), in
    //   the pool's private 0700 session directory, written once and renamed
    //   into place before the pool mapped it, never opened for writing again;
    // - the pool only unlinks it, which leaves the mapped bytes intact.
    unsafe { mempool_serde::map_file(path) }
}

/// Maps one of the pool's spill files and decodes it; arrays borrow the map
/// (zero-copy). `path` must name a spill file of this pool (see the module
/// docs).
///
/// # Errors
/// [`FrameError::Io`] naming the file, and those of decoding the frame.
#[expect(unsafe_code, reason = "maps the pool's own spill file")]
pub(crate) fn read_spill<T: MmRead>(path: &Path, opts: &ReadOptions) -> Result<T, FrameError> {
    // SAFETY: the file must not be modified or truncated while the value
    // read (which may borrow the map) lives:
    // - `path` is a spill file of this pool (this function's contract), in
    //   the pool's private 0700 session directory, written once and renamed
    //   into place before the pool read it, never opened for writing again;
    // - the pool only unlinks it, which leaves the mapped bytes intact.
    unsafe { mempool_serde::read_file_mapped_with(path, opts) }
}

/// Maps a whole segment file of this pool (see `segments.rs`), lazily.
///
/// # Errors
/// The I/O error of `mmap(2)`.
#[cfg(unix)]
#[expect(unsafe_code, reason = "maps the pool's own segment file")]
pub(crate) fn map_segment(file: &std::fs::File) -> std::io::Result<Buffer> {
    // SAFETY: no byte that a buffer of this map references may change while
    // it is referenced, and the file must not shrink:
    // - the segment was made by this pool (create_new, in its private 0700
    //   session directory) and sized once, before any mapping; it is never
    //   truncated;
    // - every range is written once, before its extent is handed out, and
    //   never written again (appends go to ranges no extent names yet);
    // - a range is punched (zeroed) only when its extent is freed, and every
    //   buffer handed out from the map is a slice guarded by its extent
    //   (`Extent::buffer`), so no reference to a punched range exists; the
    //   whole-file map itself is kept private to the segment.
    unsafe { Buffer::map_open_file(file, false) }
}
