//! Reading frame files: copied into an aligned heap buffer ([`read_file`],
//! safe for any file), or memory-mapped ([`read_file_mapped`], zero-copy and
//! `unsafe`: the file must not change while mapped). The crate's only unsafe
//! code is here: the three mapping functions, each an `unsafe fn` passing its
//! caller's obligation on to [`Buffer::map_open_file`].

use std::io::Read;
use std::path::Path;

use mempool_arrays::{AlignedVec, Buffer};

use crate::error::{FrameError, Result};
use crate::frame::{decode_with, ReadOptions};
use crate::MmRead;

/// Reads the frame file at `path` and decodes it, verifying the checksum.
///
/// The file is copied into an aligned heap buffer, so this is safe for any
/// file, including one that another process may rewrite: a file changed while
/// it is read gives an error (or the value its bytes hold), never undefined
/// behaviour. Arrays in the result share that one buffer. For the pool's own
/// files, [`read_file_mapped`] maps instead of copying.
///
/// # Errors
/// [`FrameError::Io`] naming the file (also when the file is too large to
/// allocate), and those of [`decode`](crate::decode).
pub fn read_file<T: MmRead>(path: &Path) -> Result<T> {
    read_file_with(path, &ReadOptions::default())
}

/// [`read_file`] with explicit options.
///
/// The whole file is read (O(file size) I/O and memory, one allocation of
/// exactly the file's length as `fstat(2)` reports it), then decoded:
/// turning `verify_checksum` off saves the hashing pass, not the reading.
///
/// # Errors
/// As [`read_file`].
pub fn read_file_with<T: MmRead>(path: &Path, opts: &ReadOptions) -> Result<T> {
    let buffer = read_aligned(path)?;
    decode_with(&buffer, opts)
}

/// The whole file at `path` in a new heap buffer aligned to
/// [`SECTION_ALIGN`](crate::SECTION_ALIGN), allocated for the file's real
/// length: never for a length read from its contents.
fn read_aligned(path: &Path) -> Result<Buffer> {
    let io = |source| FrameError::Io {
        path: Some(path.to_owned()),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let too_large = || {
        io(std::io::Error::new(
            std::io::ErrorKind::OutOfMemory,
            format!("the file has {len} bytes, more than can be allocated"),
        ))
    };
    let len = usize::try_from(len).map_err(|_| too_large())?;
    let mut bytes = AlignedVec::try_with_capacity(len).map_err(|_| too_large())?;
    bytes.resize(len);
    // A file shortened since `fstat` fails here (unexpected end of file); one
    // that grew is read up to its old length, and its frame then fails the
    // length check unless those bytes are a whole frame.
    file.read_exact(bytes.as_mut_slice()).map_err(io)?;
    Ok(bytes.into_buffer())
}

/// Maps the frame file at `path` and decodes it, verifying the checksum;
/// arrays in the result borrow the map (no copy).
///
/// # Safety
/// The file must not be modified or truncated, by any process, while the
/// result (or any array, clone or slice taken from it) lives: see
/// [`Buffer::map_file`]. A file written once and never opened for writing
/// again, in a directory no one else can write, meets this; the pool's spill
/// files are such files. For any other file, use [`read_file`].
///
/// # Errors
/// As [`read_file`].
#[expect(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
pub unsafe fn read_file_mapped<T: MmRead>(path: &Path) -> Result<T> {
    // SAFETY: `read_file_mapped_with` has this function's obligation:
    // - the file is not modified or truncated while the result lives, which
    //   our caller guarantees (see `# Safety`).
    unsafe { read_file_mapped_with(path, &ReadOptions::default()) }
}

/// [`read_file_mapped`] with explicit options.
///
/// The file is mapped lazily; the header and the type name are checked first
/// (reading one page), then, with `verify_checksum`, the kernel is asked to
/// read the whole file in for the checksum pass. Without it, opening is
/// O(structure) and reads only the pages the structural checks touch.
///
/// # Safety
/// As for [`read_file_mapped`].
///
/// # Errors
/// As [`read_file`].
#[expect(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
pub unsafe fn read_file_mapped_with<T: MmRead>(path: &Path, opts: &ReadOptions) -> Result<T> {
    // SAFETY: `map_file` has this function's obligation:
    // - the file is not modified or truncated while the map lives; the map
    //   lives as long as the result's arrays (or is dropped here), and our
    //   caller guarantees the file stays unchanged that long.
    let buffer = unsafe { map_file(path) }?;
    decode_with(&buffer, opts)
}

/// Maps a frame file read-only, lazily: O(1), pages are read on first access.
///
/// # Safety
/// The file must not be modified or truncated, by any process, while the
/// returned buffer or any clone or slice of it (or any value decoded from it)
/// lives: see [`Buffer::map_file`].
///
/// # Errors
/// [`FrameError::Io`] naming the file.
#[expect(unsafe_code, reason = "caller keeps the file unchanged while mapped")]
pub unsafe fn map_file(path: &Path) -> Result<Buffer> {
    let io = |source| FrameError::Io {
        path: Some(path.to_owned()),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: `Buffer::map_open_file` has this function's obligation:
    // - the file is not modified or truncated while any buffer of the map
    //   lives, which our caller guarantees (see `# Safety`).
    unsafe { Buffer::map_open_file(&file, false) }.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copying_reads_own_heap_memory_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.frame");
        crate::write_file(&vec![1.5f64, 2.5], &path, false).unwrap();
        let b = read_aligned(&path).unwrap();
        assert_eq!(b.memory_kind(), mempool_arrays::MemoryKind::Heap);
        assert!((b.as_ptr() as usize).is_multiple_of(crate::SECTION_ALIGN));
        assert_eq!(b.as_slice(), std::fs::read(&path).unwrap());
        let v: Vec<f64> = read_file(&path).unwrap();
        assert_eq!(v, [1.5, 2.5]);

        let missing = dir.path().join("missing.frame");
        let e = read_file::<Vec<f64>>(&missing).unwrap_err();
        assert!(
            matches!(&e, FrameError::Io { path: Some(p), .. } if *p == missing),
            "{e}"
        );
        // An empty file reads as a truncated frame, not an I/O error.
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            read_file::<Vec<f64>>(&path),
            Err(FrameError::Truncated { .. })
        ));
    }
}
