//! Worker processes seen from outside: are they alive, are they ours, stop
//! them. Linux `/proc` tells zombies (exited, not yet reaped by whoever
//! adopted them) from live processes, and what a process was started as.

use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// What a process id names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// No process, or one that has exited (a zombie).
    Gone,
    /// A live process that is the worker (`mempool worker --id <id>`).
    Ours,
    /// A live process that is something else (the worker died and its pid
    /// was given to another process).
    Other,
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Whether `pid` is alive and is worker `id`.
pub(crate) fn liveness(raw: u32, id: u32) -> Liveness {
    let Some(p) = pid(raw) else {
        return Liveness::Gone;
    };
    let stat = match std::fs::read_to_string(format!("/proc/{raw}/stat")) {
        Ok(s) => s,
        Err(_) => {
            // No /proc entry: gone (or no /proc; then ask the kernel).
            return if std::path::Path::new("/proc/self/stat").exists()
                || rustix::process::test_kill_process(p).is_err()
            {
                Liveness::Gone
            } else {
                Liveness::Ours
            };
        }
    };
    // The state follows the parenthesized command name.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    if matches!(state, Some("Z" | "X" | "x")) {
        return Liveness::Gone;
    }
    let cmdline = std::fs::read(format!("/proc/{raw}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let id = id.to_string();
    let is_worker = args.iter().any(|a| *a == b"worker")
        && args
            .windows(2)
            .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
    if is_worker {
        Liveness::Ours
    } else {
        Liveness::Other
    }
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub(crate) fn signal(raw: u32, signal: Signal) -> std::io::Result<()> {
    let Some(p) = pid(raw) else {
        return Ok(());
    };
    match kill_process(p, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits until every `(pid, id)` is gone or `timeout` passes; returns those
/// still alive.
pub(crate) fn wait_gone(procs: &[(u32, u32)], timeout: Duration) -> Vec<(u32, u32)> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<_> = procs
            .iter()
            .copied()
            .filter(|&(p, id)| liveness(p, id) == Liveness::Ours)
            .collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) use rustix::process::Signal as Sig;
