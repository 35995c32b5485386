//! `mempool demo` end to end: a small run (4 workers of 2 MiB, a 24 MiB
//! dataset, so that it spills) that must verify its answer, print the
//! status table and leave no worker process and no spill directory; and
//! runs stopped by SIGINT at several moments, which must leave nothing
//! either.
//!
//! Each run gets a temporary directory of its own as `TMPDIR` (the demo
//! makes its directory under the system temp directory), so "nothing left"
//! is checkable: the directory is empty, and no process names it in its
//! command line. Every wait is bounded; a run's guard kills the demo and
//! any process naming its directory when it drops, even when a test fails.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

const BIN: &str = env!("CARGO_BIN_EXE_mempool");
/// The longest a demo run may take in the test profile.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long the demo may take to stop after SIGINT.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// A demo process and its temp directory; dropping it kills what is left.
struct Run {
    child: Child,
    tmp: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Run {
    fn start(args: &[&str]) -> Run {
        let tmp = tempfile::tempdir().expect("a temp dir");
        let mut cmd = Command::new(BIN);
        cmd.arg("demo")
            .args(args)
            .env("TMPDIR", tmp.path())
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("MEMPOOL_") || k == "RUST_LOG" || k == "RUST_BACKTRACE" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("start mempool demo");
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Run {
            child,
            tmp,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// Reads stdout until a line contains `needle`; panics past `within`.
    fn wait_for_line(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stdout.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {within:?}; stdout so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// Waits (bounded) for the exit; returns the exit code, all of stdout
    /// and stderr, and the pids of the workers it started.
    fn finish(&mut self, within: Duration) -> (Option<i32>, String, String, Vec<u32>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "mempool demo ran past {within:?}; stdout so far:\n{}",
                self.stdout.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes when the demo exits (the workers' output goes to
        // their logs), so this ends.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.stdout.push(line);
        }
        let stdout = self.stdout.join("\n");
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new))
            .join()
            .unwrap();
        let pids = worker_pids(&stdout);
        (status.code(), stdout, stderr, pids)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_naming(self.tmp.path()) {
            if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
    }
}

/// The pids of the workers the demo started (`  w1  ADDR  pid N  log ...`).
fn worker_pids(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('w') && l.contains("  pid "))
        .filter_map(|l| {
            let rest = &l[l.find("  pid ")? + 6..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Live processes (not zombies) whose command line mentions `path`.
fn processes_naming(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) && !is_zombie(pid) {
            found.push(pid);
        }
    }
    found
}

fn is_zombie(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_none_or(|s| matches!(s, "Z" | "X" | "x")),
        Err(_) => true,
    }
}

/// Nothing of the demo is left: no live process among `pids` or naming
/// `tmp`, and `tmp` (where the demo made its directory, with the spill
/// directories inside) is empty. Processes get a short, bounded while to
/// be reaped.
fn assert_nothing_left(tmp: &Path, pids: &[u32], stdout: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| !is_zombie(p) && Path::new(&format!("/proc/{p}")).exists())
            .filter(|&p| {
                // A pid reused by an unrelated process is not ours.
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("worker"))
            })
            .chain(processes_naming(tmp))
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes left: {alive:?}; stdout:\n{stdout}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .expect("the test's temp dir is still there")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}; stdout:\n{stdout}",
        tmp.display()
    );
}

#[test]
fn the_demo_verifies_its_answer_shows_the_status_and_leaves_nothing() {
    let mut run = Run::start(&["--size", "24MiB", "--max-memsize", "2MiB"]);
    let (code, stdout, stderr, pids) = run.finish(DEADLINE);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(pids.len(), 4, "four workers started: {stdout}");
    assert!(
        stdout.contains("verified: the aggregate of the"),
        "no verification line:\n{stdout}"
    );
    assert!(stdout.contains("equals the one computed in this process"));
    // The status table: its header and a row per worker, up.
    let header = stdout
        .lines()
        .position(|l| l.starts_with("WORKER") && l.contains("MEMORY / LIMIT"))
        .unwrap_or_else(|| panic!("no status table:\n{stdout}"));
    let rows: Vec<&str> = stdout.lines().skip(header + 1).take(4).collect();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<&str> = r.split_whitespace().collect();
        assert_eq!(cells[0], format!("w{}", i + 1), "{r}");
        assert_eq!(cells[1], "up", "{r}");
    }
    // 24 MiB through 8 MiB of memory: most of it spilled.
    let spilled: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("spilled: "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no spill summary:\n{stdout}"));
    assert!(spilled >= 24, "only {spilled} values spilled:\n{stdout}");
    assert!(stdout.contains("put: ") && stdout.contains(" MB/s"));
    assert!(stdout.contains("no spill directory left behind"));
    assert!(
        stderr.trim().is_empty(),
        "nothing on stderr (no terminal, so no progress bars): {stderr}"
    );
    assert_nothing_left(run.tmp.path(), &pids, &stdout);
}

/// SIGINT to the demo (not its workers, which have a process group of
/// their own) at `moment`: it exits non-zero saying it was interrupted,
/// and leaves nothing.
fn interrupted_at(wait_for: &str, after: Duration) {
    // Large enough that the demo is still working when the signal comes.
    let mut run = Run::start(&["--size", "1GiB", "--max-memsize", "2MiB"]);
    run.wait_for_line(wait_for, DEADLINE);
    std::thread::sleep(after);
    let pid = Pid::from_raw(i32::try_from(run.child.id()).unwrap()).unwrap();
    kill_process(pid, Signal::INT).expect("send SIGINT");
    let (code, stdout, stderr, pids) = run.finish(STOP_DEADLINE);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("mempool: interrupted"),
        "stderr: {stderr}\nstdout:\n{stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("verified:"), "it stopped early:\n{stdout}");
    assert_nothing_left(run.tmp.path(), &pids, &stdout);
}

#[test]
fn sigint_while_storing_stops_the_workers_and_cleans_up() {
    interrupted_at("put: storing", Duration::from_millis(300));
}

#[test]
fn sigint_while_starting_stops_the_workers_and_cleans_up() {
    // The first line comes before the workers are started.
    interrupted_at("mempool demo:", Duration::ZERO);
}
