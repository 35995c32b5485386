//! Opt-in removal of the session directories on SIGINT and SIGTERM.

use crate::error::Result;

/// Makes SIGINT and SIGTERM remove the session directory of every live
/// [`Pool`](crate::Pool) of the process before the process dies of the signal.
///
/// The library installs no signal handler unless asked: call this once, early
/// in `main` (calling it again does nothing). From then on, the first SIGINT
/// (Ctrl-C) or SIGTERM (`kill`, container stop) makes a background thread
/// named `mempool-signals` remove the session directories of all pools alive
/// at that moment, pools made later included, and then kill the process with
/// the signal's default action — so the exit status still says "killed by
/// SIGTERM" (or SIGINT) to the shell, the supervisor or the parent. The
/// removal runs on that thread, not in the signal handler (removing a tree of
/// files is not async-signal-safe); the handler only wakes it (signal-hook).
///
/// What it does not cover, and what then cleans up: SIGKILL, `abort` and
/// `panic = "abort"`, [`std::process::exit`] (no destructors run), a crash or
/// a power loss leave the directory on disk; the next [`Pool`](crate::Pool)
/// started on the same `spill_dir` sweeps it, because the dead session's lock
/// is free. `save_to_disk` files are never removed.
///
/// Things to know before calling it:
/// - The signals then always end the process, even if it ignored SIGINT
///   before (as a background job of a non-interactive shell does), and even if
///   other code handles them too: a program with its own graceful shutdown on
///   these signals should not call this, and drop its pools on its shutdown
///   path instead.
/// - A pool whose drop is under way when the signal comes, or whose spill is
///   being written, is handled: the removal retries, then the process dies.
/// - Not on Unix (Windows): a no-op that returns `Ok(())`; only dropping the
///   pool and the start-up sweep clean up there.
///
/// # Errors
/// [`PoolError::Io`](crate::PoolError::Io) (with an empty path) if the signal
/// handlers or the thread cannot be set up; calling it again retries.
///
/// # Example
/// ```
/// use mempool_arrays::PrimitiveArray;
/// use mempool_core::{cleanup_on_signals, Pool, PoolConfig};
///
/// cleanup_on_signals().unwrap();
/// cleanup_on_signals().unwrap(); // idempotent
///
/// let dir = tempfile::tempdir().unwrap();
/// let pool = Pool::new(PoolConfig::default().spill_dir(dir.path())).unwrap();
/// let r = pool.set(PrimitiveArray::from(vec![1.0f64; 1024])).unwrap();
/// pool.move_to_disk(&r).unwrap();
/// // A Ctrl-C or a `kill` from here on removes `pool.session_dir()` before the
/// // process dies; a normal exit removes it when `pool` drops, as always.
/// assert!(pool.session_dir().is_dir());
/// ```
pub fn cleanup_on_signals() -> Result<()> {
    imp::install()
}

#[cfg(unix)]
mod imp {
    use std::path::PathBuf;
    use std::sync::{Mutex, PoisonError};

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use signal_hook::low_level::emulate_default_handler;

    use crate::error::{PoolError, Result};

    /// Whether the handlers and their thread are in place.
    static INSTALLED: Mutex<bool> = Mutex::new(false);

    pub(super) fn install() -> Result<()> {
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        if *installed {
            return Ok(());
        }
        let io = |op| {
            move |source| PoolError::Io {
                op,
                path: PathBuf::new(),
                source,
            }
        };
        // The thread registers the handlers itself and reports back, so that a
        // thread that cannot start leaves no handler behind (a signal-hook
        // handler without its thread would swallow the signals).
        let (report, outcome) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mempool-signals".into())
            .spawn(move || {
                let mut signals = match Signals::new([SIGINT, SIGTERM]) {
                    Ok(signals) => {
                        let _ = report.send(Ok(()));
                        signals
                    }
                    Err(e) => {
                        let _ = report.send(Err(e));
                        return;
                    }
                };
                if let Some(signal) = signals.forever().next() {
                    // Held until the process dies: no session registers or
                    // unregisters after the removal.
                    let _live = crate::session::remove_live_sessions();
                    let _ = emulate_default_handler(signal);
                    // Only if the signal could not be re-raised.
                    std::process::abort();
                }
            })
            .map_err(io("starting the session cleanup thread"))?;
        match outcome.recv() {
            Ok(Ok(())) => {}
            Ok(Err(source)) => {
                return Err(io("installing SIGINT/SIGTERM handlers for session cleanup")(source))
            }
            Err(_) => {
                return Err(io("starting the session cleanup thread")(
                    std::io::Error::other("the thread ended before installing the handlers"),
                ))
            }
        }
        *installed = true;
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    use crate::error::Result;

    /// No SIGINT/SIGTERM here: nothing to install.
    pub(super) fn install() -> Result<()> {
        Ok(())
    }
}
