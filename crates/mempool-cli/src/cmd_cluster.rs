//! `mempool cluster up | down | status`.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mempool_net::{BlockingClient, ClientConfig, ClusterSecret, NetError, WorkerId};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{debug, warn};

use crate::cli::UpArgs;
use crate::clusterfile::{absolute, ClusterFile, WorkerEntry, VERSION};
use crate::cmd_worker::Ready;
use crate::error::CliError;
use crate::procs::{liveness, signal, wait_gone, Liveness, Sig};
use crate::units::format_size;

/// How long workers get to exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(3);

/// A client of the workers of `file`. Its values are not counted: a
/// command's process ends right after it prints a ref, and the value must
/// stay until `mempool rm`.
pub(crate) fn client(
    file: &ClusterFile,
    secret: ClusterSecret,
    timeout: Duration,
) -> Result<BlockingClient, CliError> {
    Ok(BlockingClient::with_config(
        secret,
        file.members(),
        ClientConfig::default().timeout(timeout).counted(false),
    )?)
}

/// A worker being started.
struct Starting {
    id: WorkerId,
    child: Child,
    log: PathBuf,
    ready: PathBuf,
}

/// Until disarmed, stops the workers started so far and removes the claimed
/// cluster file: a `cluster up` that fails leaves nothing behind.
struct StartGuard {
    file: PathBuf,
    started: Vec<Starting>,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        for s in &self.started {
            let _ = std::fs::remove_file(&s.ready);
        }
        if !self.armed {
            return;
        }
        for s in &mut self.started {
            let _ = signal(s.child.id(), Sig::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for s in &mut self.started {
            loop {
                match s.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The last non-empty line of a log, for an error message.
fn last_line(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| "(its log is empty)".to_owned())
}

/// `mempool cluster up`.
pub(crate) fn up(
    args: &UpArgs,
    cluster_file: &Path,
    timeout: Duration,
    verbose: u8,
) -> Result<(), CliError> {
    let file = absolute(cluster_file)?;
    let cluster = start(args, &file, timeout, verbose)?;
    let mut out = std::io::stdout().lock();
    print_started(&mut out, &cluster, args.max_memsize, &file);
    Ok(())
}

/// Prints what [`start`] started.
pub(crate) fn print_started(
    out: &mut impl Write,
    cluster: &ClusterFile,
    max_memsize: u64,
    file: &Path,
) {
    let _ = writeln!(
        out,
        "started {} workers ({} of memory each); cluster file {}",
        cluster.workers.len(),
        format_size(max_memsize),
        file.display()
    );
    for w in &cluster.workers {
        let _ = writeln!(
            out,
            "  {}  {}  pid {}  log {}",
            w.id,
            w.addr,
            w.pid,
            w.log.display()
        );
    }
}

/// Starts the workers of `args` in the background, waits until each
/// answers, and writes the cluster file at `file` (absolute). A failure or
/// a SIGINT/SIGTERM while starting stops what was started and removes the
/// file.
pub(crate) fn start(
    args: &UpArgs,
    file: &Path,
    timeout: Duration,
    verbose: u8,
) -> Result<ClusterFile, CliError> {
    let file = file.to_path_buf();
    let parent = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    std::fs::create_dir_all(&parent)
        .map_err(CliError::io(format!("creating {}", parent.display())))?;
    let dir = absolute(args.dir.as_deref().unwrap_or(&parent))?;
    std::fs::create_dir_all(&dir).map_err(CliError::io(format!("creating {}", dir.display())))?;
    let exe = std::env::current_exe().map_err(CliError::io(
        "finding the mempool executable to start workers",
    ))?;

    // A Ctrl-C while starting: stop what was started (the guard below).
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .map_err(CliError::io("installing SIGINT/SIGTERM handlers"))?;
    }
    let secret = ClusterSecret::generate()?;
    let mut cluster = ClusterFile {
        version: VERSION,
        secret: secret.to_pem(),
        dir: dir.clone(),
        workers: Vec::new(),
    };
    // Claim the path first (create-new): it also hands the workers the secret.
    cluster.create(&file)?;
    let mut guard = StartGuard {
        file: file.clone(),
        started: Vec::new(),
        armed: true,
    };
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cluster".into());
    for n in 1..=args.workers {
        let id = WorkerId(n);
        let log = dir.join(format!("{stem}-{id}.log"));
        let ready = dir.join(format!("{stem}-{id}.ready"));
        let _ = std::fs::remove_file(&ready);
        let out =
            File::create(&log).map_err(CliError::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(CliError::io(format!("opening {}", log.display())))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("worker")
            .args(["--id", &n.to_string()])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--max-memsize", &args.max_memsize.to_string()])
            .arg("--dir")
            .arg(&dir)
            .arg("--cluster-file")
            .arg(&file)
            .arg("--ready-file")
            .arg(&ready);
        if let Some(d) = args.max_disksize {
            cmd.args(["--max-disksize", &d.to_string()]);
        }
        if verbose > 0 {
            cmd.arg(format!("-{}", "v".repeat(verbose.into())));
        }
        // A process group of its own: the worker outlives this command and
        // a Ctrl-C in this terminal does not reach it.
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(CliError::io(format!("starting {}", exe.display())))?;
        debug!(worker = %id, pid = child.id(), "started");
        guard.started.push(Starting {
            id,
            child,
            log,
            ready,
        });
    }

    // Wait until each reports its address.
    let deadline = Instant::now() + args.start_timeout;
    let mut entries: Vec<Option<WorkerEntry>> = vec![None; guard.started.len()];
    while entries.iter().any(Option::is_none) {
        if interrupted.load(Ordering::Relaxed) {
            return Err(CliError::Interrupted);
        }
        for (i, s) in guard.started.iter_mut().enumerate() {
            if entries[i].is_some() {
                continue;
            }
            if let Some(r) = std::fs::read(&s.ready)
                .ok()
                .and_then(|b| serde_json::from_slice::<Ready>(&b).ok())
            {
                entries[i] = Some(WorkerEntry {
                    id: s.id,
                    addr: r.addr,
                    pid: r.pid,
                    spill_dir: r.spill_dir,
                    log: s.log.clone(),
                });
                continue;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(CliError::WorkerStart {
                    worker: s.id,
                    reason: format!("it exited ({status}): {}", last_line(&s.log)),
                    log: s.log.clone(),
                });
            }
            if Instant::now() >= deadline {
                return Err(CliError::WorkerStart {
                    worker: s.id,
                    reason: format!(
                        "it did not report its address within {:?} (raise --start-timeout?)",
                        args.start_timeout
                    ),
                    log: s.log.clone(),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.workers = entries.into_iter().flatten().collect();

    // And that each answers over the network.
    let c = client(&cluster, secret, timeout)?;
    for w in &cluster.workers {
        c.stats(w.id).map_err(|e| CliError::WorkerStart {
            worker: w.id,
            reason: format!("it does not answer: {e}"),
            log: w.log.clone(),
        })?;
    }
    drop(c);
    cluster.replace(&file)?;
    guard.armed = false;
    drop(guard);
    Ok(cluster)
}

/// `mempool cluster down`.
pub(crate) fn down(cluster_file: &Path, stop_timeout: Duration) -> Result<(), CliError> {
    let file = absolute(cluster_file)?;
    let cluster = ClusterFile::load(&file)?;
    let mut out = std::io::stdout().lock();
    let mut stopping = Vec::new();
    for w in &cluster.workers {
        match liveness(w.pid, w.id.0) {
            Liveness::Ours => {
                signal(w.pid, Sig::TERM).map_err(CliError::io(format!(
                    "sending SIGTERM to worker {} (pid {})",
                    w.id, w.pid
                )))?;
                stopping.push((w.pid, w.id.0));
            }
            Liveness::Gone => {
                let _ = writeln!(out, "{}: already gone (pid {})", w.id, w.pid);
            }
            Liveness::Other => {
                let _ = writeln!(
                    out,
                    "{}: already gone (pid {} is another process now; left alone)",
                    w.id, w.pid
                );
            }
        }
    }
    let mut problems = Vec::new();
    let stubborn = wait_gone(&stopping, stop_timeout);
    for &(pid, id) in &stubborn {
        warn!(worker = %WorkerId(id), pid, "did not stop within {stop_timeout:?}; killing it");
        let _ = signal(pid, Sig::KILL);
    }
    for (pid, id) in wait_gone(&stubborn, KILL_WAIT) {
        problems.push(format!("w{id} (pid {pid}) is still running"));
    }
    for w in &cluster.workers {
        let was = if stubborn.iter().any(|&(p, _)| p == w.pid) {
            "killed"
        } else if stopping.iter().any(|&(p, _)| p == w.pid) {
            "stopped"
        } else {
            "gone"
        };
        if w.spill_dir.exists() {
            // Left by a worker that did not exit cleanly (killed, crashed):
            // it is ours, and nobody uses it any more.
            match std::fs::remove_dir_all(&w.spill_dir) {
                Ok(()) => {
                    let _ = writeln!(
                        out,
                        "{}: {}removed the spill directory it left behind, {}",
                        w.id,
                        if was == "gone" {
                            String::new()
                        } else {
                            format!("{was}; ")
                        },
                        w.spill_dir.display()
                    );
                }
                Err(e) => problems.push(format!(
                    "cannot remove {}'s spill directory {}: {e}",
                    w.id,
                    w.spill_dir.display()
                )),
            }
        } else if was != "gone" {
            let _ = writeln!(out, "{}: {was} (pid {})", w.id, w.pid);
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Down(format!(
            "{}; the cluster file {} is kept, run `mempool cluster down` again",
            problems.join("; "),
            file.display()
        )));
    }
    std::fs::remove_file(&file).map_err(CliError::io(format!("removing {}", file.display())))?;
    let _ = writeln!(out, "cluster down; removed {}", file.display());
    Ok(())
}

/// `mempool cluster status`.
pub(crate) fn status(cluster_file: &Path, timeout: Duration) -> Result<(), CliError> {
    let cluster = ClusterFile::load(cluster_file)?;
    let secret = cluster.secret(cluster_file)?;
    let c = client(&cluster, secret, timeout)?;
    // Workers that joined from other hosts get a row too.
    let mut cluster = cluster;
    if c.discover().is_ok() {
        for (id, addr) in c.client().workers() {
            if !cluster.workers.iter().any(|w| w.id == id) {
                cluster.workers.push(crate::clusterfile::WorkerEntry {
                    id,
                    addr,
                    pid: 0,
                    spill_dir: std::path::PathBuf::new(),
                    log: std::path::PathBuf::new(),
                });
            }
        }
    }
    let mut out = std::io::stdout().lock();
    print_status(&mut out, &cluster, &c);
    Ok(())
}

/// A worker's PID column: `joined` for a worker that joined from elsewhere.
fn pid(w: &crate::clusterfile::WorkerEntry) -> String {
    if w.pid == 0 {
        "joined".into()
    } else {
        w.pid.to_string()
    }
}

/// Prints the status table of `cluster`: one row per worker, asked
/// through `c` (concurrently); a worker that does not answer is `down`,
/// with its error below the table.
pub(crate) fn print_status(out: &mut impl Write, cluster: &ClusterFile, c: &BlockingClient) {
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cluster
            .workers
            .iter()
            .map(|w| s.spawn(move || c.stats(w.id)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(NetError::Closed)))
            .collect()
    });
    let header = [
        "WORKER",
        "STATE",
        "MEM VALUES",
        "MEMORY / LIMIT",
        "DISK VALUES",
        "DISK",
        "MAPPED",
        "HITS",
        "MISSES",
        "SPILLS",
        "RESTORES",
        "ADDRESS",
        "PID",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    let mut notes = Vec::new();
    for (w, a) in cluster.workers.iter().zip(&answers) {
        let row = match a {
            Ok(s) => vec![
                w.id.to_string(),
                "up".into(),
                s.mem_values.to_string(),
                format!(
                    "{} / {}",
                    format_size(s.mem_bytes),
                    format_size(s.max_memsize)
                ),
                s.disk_values.to_string(),
                match s.max_disksize {
                    Some(max) => format!("{} / {}", format_size(s.disk_bytes), format_size(max)),
                    None => format_size(s.disk_bytes),
                },
                format_size(s.mem_mapped_bytes),
                s.hits.to_string(),
                s.misses.to_string(),
                s.spills.to_string(),
                s.restores.to_string(),
                w.addr.to_string(),
                pid(w),
            ],
            Err(e) => {
                notes.push(format!("{}: {e}", w.id));
                let mut r = vec![w.id.to_string(), "down".into()];
                r.extend(std::iter::repeat_n("-".to_string(), 9));
                r.extend([w.addr.to_string(), pid(w)]);
                r
            }
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for n in notes {
        let _ = writeln!(out, "{}", crate::error::one_line(&n));
    }
}
