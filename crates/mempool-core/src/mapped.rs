//! Mapping the pool's own segment files: the one place where mempool-core
//! maps a file, so that the rule that makes it sound is stated once (in the
//! SAFETY comment below; the layout is in `segments.rs`).
//!
//! Files from elsewhere (a caller's `save_to_disk` target, a
//! [`FileRef`](crate::FileRef) from another process) are read by copying, or
//! mapped only through the `unsafe` [`FileRef::read_mapped`](crate::FileRef::read_mapped).

use mempool_arrays::Buffer;

/// Maps one frame's range of a segment file of this pool (see
/// `segments.rs`), lazily; unmapped when the last view of it goes.
///
/// # Errors
/// The I/O error of `mmap(2)`.
#[cfg(unix)]
#[expect(unsafe_code, reason = "maps a range of the pool's own segment file")]
pub(crate) fn map_segment_range(
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> std::io::Result<Buffer> {
    // SAFETY: the range's bytes must not change, nor the file shrink below
    // it, while the buffer lives:
    // - the segment was made by this pool (create_new, in its private 0700
    //   session directory) and sized once, before any mapping; it is never
    //   truncated;
    // - the range was written once, before its extent was handed out, and is
    //   never written again (appends go to ranges no extent names yet);
    // - it is punched (zeroed) only when its extent is freed, and the buffer
    //   returned here is guarded by the extent (`Extent::buffer`), so the
    //   range outlives every view of it.
    unsafe { Buffer::map_file_range(file, offset, len) }
}
