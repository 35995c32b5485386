//! The unsafe code of mempool-net, for the same-host path: a reader maps
//! the range of a descriptor its owner sent it, and sockets are registered
//! with the tokio reactor. The rest of the crate has none (`deny` at the
//! crate root, allowed only here).
#![allow(unsafe_code, reason = "maps a range the owner keeps unchanged")]

use std::fs::File;
use std::os::fd::OwnedFd;

use mempool_arrays::Buffer;
use rustix::fs::SealFlags;

use crate::proto::MapKind;

/// The seals that make a memfd immutable.
pub(crate) const SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Maps `len` bytes at `offset` of `fd`, read-only. A [`MapKind::Sealed`]
/// descriptor is checked here to carry all of [`SEALS`].
///
/// # Errors
/// `PermissionDenied` for a descriptor that should be sealed and is not; the
/// errors of `fcntl(2)`, `fstat(2)` and `mmap(2)`; `InvalidInput` for a
/// range past the file's end.
pub(crate) fn map_range(
    fd: OwnedFd,
    kind: MapKind,
    offset: u64,
    len: usize,
) -> std::io::Result<Buffer> {
    let file = File::from(fd);
    if kind == MapKind::Sealed {
        let seals = rustix::fs::fcntl_get_seals(&file)?;
        if !seals.contains(SEALS) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("a shared copy that is not sealed ({seals:?})"),
            ));
        }
    }
    // SAFETY: `map_file_range` requires that the range's bytes are not
    // modified, and the file not truncated below `offset + len`, while the
    // buffer (or any clone or slice of it) lives. How each kind meets it:
    // - `Sealed`: a memfd whose seals were checked just above to include
    //   F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL. The kernel
    //   refuses every write(2), writable mapping and ftruncate(2) to it,
    //   from any process, and no seal can be removed: its bytes are fixed
    //   for the file's whole life, which the mapping extends.
    // - `Pinned`: a range of the owner's spill segment, sent by a worker
    //   that proved itself before anything was mapped: the socket's peer
    //   runs as our user (`SO_PEERCRED`, checked by `LocalLink::connect`;
    //   the socket also lives in the worker's 0700 directory), and its
    //   Ready reply carries an HMAC, keyed by the cluster secret, of the
    //   fresh nonce we sent (so it holds the secret: it is a worker of the
    //   cluster, running mempool-core). The owner holds the range's extent
    //   (`StoredFrame::spill_range`) until this buffer's guard sends Release
    //   or this process's connection closes; while held, mempool-core never
    //   writes, punches or truncates it (the range was written once, before
    //   it was handed out). Our connection closes only
    //   when the client drops it, and the client keeps it open while any
    //   lease guard lives (the guards hold the link).
    unsafe { Buffer::map_file_range(&file, offset, len) }
}

/// Registers a socket with the tokio reactor.
///
/// # Errors
/// The reactor's registration error.
pub(crate) fn register(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `AsyncFd::register` requires that `inner.as_raw_fd()` is a
    // valid open descriptor that stays open, naming the same open file
    // description, for the `AsyncFd`'s whole life:
    // - an `OwnedFd` owns an open descriptor and always returns that same
    //   descriptor from `as_raw_fd`; it closes it only when dropped, which
    //   happens only when the `AsyncFd` (its sole owner here: it is moved in)
    //   is dropped; the socket is never closed by hand, only shut down.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
