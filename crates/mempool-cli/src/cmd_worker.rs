//! `mempool worker`: one worker process.

use std::io::Write;
use std::path::Path;

use mempool_core::{Pool, PoolConfig};
use mempool_net::{NetError, Worker, WorkerConfig, WorkerId};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{info, warn};

use crate::cli::WorkerArgs;
use crate::clusterfile::{load_secret, ClusterFile};
use crate::error::CliError;

/// What a worker writes to its `--ready-file` once it serves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ready {
    pub(crate) pid: u32,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) spill_dir: std::path::PathBuf,
}

/// Serves until SIGINT or SIGTERM, then shuts down: connections closed, the
/// pool dropped (which removes its session directory).
pub(crate) fn run(args: &WorkerArgs, cluster_file: &Path) -> Result<(), CliError> {
    let secret = load_secret(cluster_file)?;
    // Handlers first: a signal from here on is a clean shutdown.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(CliError::io("installing SIGINT/SIGTERM handlers"))?;
    let config = PoolConfig::default()
        .max_memsize(args.max_memsize)
        .max_disksize(args.max_disksize)
        .spill_dir(&args.dir);
    let pool = Pool::new(config)?;
    let session = pool.session_dir().to_path_buf();
    if pool.swept_sessions() > 0 {
        info!(
            swept = pool.swept_sessions(),
            "removed spill directories left by dead processes"
        );
    }
    let id = WorkerId(args.id);
    let worker = match Worker::spawn(pool, WorkerConfig::new(id, secret).listen(args.listen)) {
        Ok(w) => w,
        Err(e) => {
            // The worker's thread may still hold the pool as this process
            // exits: remove the session directory here.
            let _ = std::fs::remove_dir_all(&session);
            return Err(listen_error(args.listen, e));
        }
    };
    let addr = worker.addr();
    if let Some(through) = args.join {
        if let Err(e) = join(cluster_file, id, addr, through) {
            worker.shutdown();
            let _ = std::fs::remove_dir_all(&session);
            return Err(e);
        }
    }
    info!(
        worker = %id,
        %addr,
        spill_dir = %session.display(),
        max_memsize = args.max_memsize,
        max_disksize = ?args.max_disksize,
        "serving"
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening {addr}");
        let _ = out.flush();
    }
    if let Some(path) = &args.ready_file {
        let ready = Ready {
            pid: std::process::id(),
            addr,
            spill_dir: session.clone(),
        };
        write_atomically(path, &serde_json::to_vec(&ready).expect("serializes"))
            .map_err(CliError::io(format!("writing {}", path.display())))?;
    }

    let signal = signals.forever().next();
    info!(signal = ?signal, "stopping");
    worker.shutdown();
    if session.exists() {
        // Something still held the pool; the process ends anyway.
        warn!(spill_dir = %session.display(), "spill directory still there after shutdown; removing it");
        std::fs::remove_dir_all(&session)
            .map_err(CliError::io(format!("removing {}", session.display())))?;
    }
    info!(spill_dir = %session.display(), "stopped; spill directory removed");
    Ok(())
}

/// Announces worker `id`, listening at `addr`, to the worker of the
/// cluster file at `through`.
fn join(
    cluster_file: &Path,
    id: WorkerId,
    addr: std::net::SocketAddr,
    through: std::net::SocketAddr,
) -> Result<(), CliError> {
    let cluster = ClusterFile::load(cluster_file)?;
    let Some(entry) = cluster.workers.iter().find(|w| w.addr == through) else {
        return Err(CliError::Join {
            addr: through,
            reason: format!(
                "no worker of {} listens there; --join takes the address of one of its workers",
                cluster_file.display()
            ),
        });
    };
    // Where the others reach this worker: its address, or, listening on
    // every interface, the one its packets to `through` leave from.
    let advertised = if addr.ip().is_unspecified() {
        let probe = std::net::UdpSocket::bind((addr.ip(), 0))
            .and_then(|s| s.connect(through).map(|()| s))
            .and_then(|s| s.local_addr())
            .map_err(CliError::io(format!(
                "finding this host's address towards {through}"
            )))?;
        std::net::SocketAddr::new(probe.ip(), addr.port())
    } else {
        addr
    };
    let secret = cluster.secret(cluster_file)?;
    let c = crate::cmd_cluster::client(&cluster, secret, std::time::Duration::from_secs(5))?;
    let members = c
        .join(entry.id, id, advertised)
        .map_err(|e| CliError::Join {
            addr: through,
            reason: e.to_string(),
        })?;
    info!(through = %entry.id, members = members.len(), %advertised, "joined the cluster");
    Ok(())
}

fn listen_error(addr: std::net::SocketAddr, e: NetError) -> CliError {
    use std::io::ErrorKind;
    match e {
        NetError::Io { source, .. }
            if matches!(
                source.kind(),
                ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied
            ) =>
        {
            let reason = match source.kind() {
                ErrorKind::AddrInUse => "the port is in use".to_string(),
                ErrorKind::AddrNotAvailable => "not an address of this host".to_string(),
                _ => format!("{source} (ports below 1024 need privileges)"),
            };
            CliError::Listen { addr, reason }
        }
        e => e.into(),
    }
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so
/// that a reader sees all of it or nothing.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
