//! Session directories across processes: liveness by lock (a session held by
//! another live process is kept, one of a dead process is swept), death by
//! SIGKILL, and cleanup on SIGINT/SIGTERM after `cleanup_on_signals`.
//!
//! Each test re-runs this test binary as a child (the `child_process` test,
//! selected by an environment variable) that makes a pool with a spilled
//! value, prints its session directory, and sleeps until signalled. Children
//! are killed and reaped by a guard, also when an assertion fails.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use mempool_arrays::PrimitiveArray;
use mempool_core::{cleanup_on_signals, Pool, PoolConfig};

/// How long any wait on a child may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// A child never signalled exits by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

const MODE_ENV: &str = "MEMPOOL_TEST_SIGNALS_CHILD";
const ROOT_ENV: &str = "MEMPOOL_TEST_SIGNALS_ROOT";
const READY: &str = "session-dir=";

/// Child modes.
const PLAIN: &str = "plain";
const CLEANUP: &str = "cleanup";

/// The child's body; a no-op in a normal test run.
#[test]
fn child_process() {
    let Ok(mode) = std::env::var(MODE_ENV) else {
        return;
    };
    let root = std::env::var_os(ROOT_ENV).expect("root");
    if mode == CLEANUP {
        cleanup_on_signals().unwrap();
        cleanup_on_signals().unwrap();
    }
    let pool = Pool::new(PoolConfig::default().spill_dir(root)).unwrap();
    let r = pool.set(PrimitiveArray::from(vec![1.5f64; 4096])).unwrap();
    let f = pool.move_to_disk(&r).unwrap();
    assert!(f.path.starts_with(pool.session_dir()) && f.path.is_file());
    let mut out = std::io::stdout().lock();
    // On a line of its own: libtest has printed "test child_process ... ".
    writeln!(out, "\n{READY}{}", pool.session_dir().display()).unwrap();
    out.flush().unwrap();
    drop(out);
    let end = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running child; killed and reaped on drop.
struct Child {
    child: std::process::Child,
    lines: Receiver<String>,
    session_dir: PathBuf,
}

impl Child {
    /// Starts a child in `mode` on spill root `root` and waits (bounded) until
    /// its session directory exists.
    fn start(mode: &str, root: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MODE_ENV, mode)
            .env(ROOT_ENV, root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut this = Self {
            child,
            lines,
            session_dir: PathBuf::new(),
        };
        this.session_dir = this.wait_ready();
        this
    }

    fn wait_ready(&mut self) -> PathBuf {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(dir) = line.strip_prefix(READY) {
                        return PathBuf::from(dir);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("child not ready within {DEADLINE:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "child ended before making its pool: {:?}",
                        self.child.wait()
                    )
                }
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY:
        // - kill(2) takes plain integers and touches no memory of ours.
        // - `pid` is our child, not yet reaped (we hold `self.child` and have
        //   not waited on it), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits (bounded) for the child to end.
    fn wait(&mut self) -> ExitStatus {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "child still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entries(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn has_spill_file(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".seg"))
}

#[test]
fn sweep_keeps_sessions_locked_by_live_processes_and_removes_dead_ones() {
    let root = tempfile::tempdir().unwrap();
    let mut alive = Child::start(PLAIN, root.path());
    let mut dead = Child::start(PLAIN, root.path());
    dead.child.kill().unwrap();
    assert_eq!(dead.wait().signal(), Some(libc::SIGKILL));
    assert!(dead.session_dir.is_dir(), "SIGKILL runs no cleanup");

    // A stale session named with the pid of a live process (ours): its lock
    // is free, so it goes. A pid check would have kept it.
    let me = std::process::id();
    let reused = root.path().join(format!("00000000000000aa-{me}"));
    std::fs::create_dir(&reused).unwrap();
    std::fs::write(reused.join(".lock"), b"").unwrap();
    std::fs::write(reused.join("1-0.frame"), b"x").unwrap();
    // Without a lock file (an older build, or not ours): kept.
    let legacy = root
        .path()
        .join(format!("00000000000000bb-{}", dead.child.id()));
    std::fs::create_dir(&legacy).unwrap();
    let user = root.path().join("user-data");
    std::fs::create_dir(&user).unwrap();

    let pool = Pool::new(PoolConfig::default().spill_dir(root.path())).unwrap();
    assert_eq!(pool.swept_sessions(), 2);
    assert!(!dead.session_dir.exists());
    assert!(!reused.exists());
    assert!(alive.is_running());
    assert!(alive.session_dir.is_dir() && has_spill_file(&alive.session_dir));
    assert!(legacy.is_dir() && user.is_dir());
    drop(pool);

    // Once the live one dies, the next pool sweeps it as well.
    alive.child.kill().unwrap();
    alive.wait();
    let pool = Pool::new(PoolConfig::default().spill_dir(root.path())).unwrap();
    assert_eq!(pool.swept_sessions(), 1);
    assert!(!alive.session_dir.exists());
}

#[test]
fn session_of_a_sigkilled_process_is_swept_by_the_next_pool() {
    let root = tempfile::tempdir().unwrap();
    // Even with cleanup_on_signals: SIGKILL cannot be caught.
    let mut child = Child::start(CLEANUP, root.path());
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait().signal(), Some(libc::SIGKILL));
    assert!(child.session_dir.is_dir() && has_spill_file(&child.session_dir));
    let pool = Pool::new(PoolConfig::default().spill_dir(root.path())).unwrap();
    assert_eq!(pool.swept_sessions(), 1);
    assert!(!child.session_dir.exists());
    assert_eq!(
        entries(root.path()),
        [pool.session_dir().file_name().unwrap().to_str().unwrap()]
    );
}

fn signal_removes_session_dir(signal: libc::c_int) {
    let root = tempfile::tempdir().unwrap();
    let mut child = Child::start(CLEANUP, root.path());
    assert!(child.session_dir.is_absolute() && child.session_dir.starts_with(root.path()));
    assert!(has_spill_file(&child.session_dir));
    child.signal(signal);
    let status = child.wait();
    assert_eq!(
        status.signal(),
        Some(signal),
        "the child dies of the signal itself: {status:?}"
    );
    assert!(!child.session_dir.exists(), "session directory removed");
    assert!(
        entries(root.path()).is_empty(),
        "nothing left: {:?}",
        entries(root.path())
    );
}

#[test]
fn sigterm_removes_session_dir_after_cleanup_on_signals() {
    signal_removes_session_dir(libc::SIGTERM);
}

#[test]
fn sigint_removes_session_dir_after_cleanup_on_signals() {
    signal_removes_session_dir(libc::SIGINT);
}

#[test]
fn without_cleanup_on_signals_sigterm_leaves_the_dir_to_the_sweep() {
    let root = tempfile::tempdir().unwrap();
    let mut child = Child::start(PLAIN, root.path());
    child.signal(libc::SIGTERM);
    assert_eq!(child.wait().signal(), Some(libc::SIGTERM));
    assert!(
        child.session_dir.is_dir() && has_spill_file(&child.session_dir),
        "no handler installed unless asked"
    );
    let pool = Pool::new(PoolConfig::default().spill_dir(root.path())).unwrap();
    assert_eq!(pool.swept_sessions(), 1);
    assert!(!child.session_dir.exists());
}
