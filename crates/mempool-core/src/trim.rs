//! Giving freed heap back to the system.
//!
//! glibc's allocator keeps memory freed by evicted values in its arenas: a
//! freed large chunk raises its mmap threshold (up to 32 MiB), so later
//! values of that size come from the heap, and their memory stays with the
//! process after they leave the pool. W1 (1 MiB values through a 256 MiB
//! pool) peaked at ~570 MiB RSS that way. The pool returns it itself: once
//! values worth [`TRIM_EVERY`] bytes of heap have been dropped, it asks the
//! allocator to give its free pages back (`malloc_trim`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Heap bytes of dropped values between two trims.
pub(crate) const TRIM_EVERY: u64 = 16 << 20;

static FREED: AtomicU64 = AtomicU64::new(0);

/// Notes that a value of `bytes` of heap is being dropped; trims once
/// [`TRIM_EVERY`] bytes have been.
pub(crate) fn freed(bytes: u64) {
    let before = FREED.fetch_add(bytes, Ordering::Relaxed);
    if before + bytes >= TRIM_EVERY && FREED.swap(0, Ordering::Relaxed) >= TRIM_EVERY {
        trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "malloc_trim: the allocator's own call")]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only releases memory the
    // allocator holds free; it is thread-safe (it locks each arena).
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
