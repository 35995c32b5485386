//! A minimal worker process: serves a pool to a mempool cluster until
//! SIGINT or SIGTERM, then shuts down cleanly (its session directory is
//! removed). The `mempool worker` command of mempool-cli is the full
//! version; this one has no dependencies beyond mempool-net, for the tests
//! and benchmarks of this crate.
//!
//! ```text
//! mempool-net-worker --id 1 --secret cluster.secret [--listen 127.0.0.1:0]
//!                    [--max-memsize BYTES] [--max-disksize BYTES] [--dir PATH]
//!                    [--idle-timeout-ms MS] [--ref-lease-ms MS]
//! ```
//!
//! It prints `listening <addr>` on stdout once it serves.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mempool_core::{Pool, PoolConfig};
use mempool_net::{ClusterSecret, Worker, WorkerConfig, WorkerId};
use signal_hook::consts::{SIGINT, SIGTERM};

struct Args {
    id: u32,
    secret: PathBuf,
    listen: SocketAddr,
    max_memsize: u64,
    max_disksize: Option<u64>,
    dir: Option<PathBuf>,
    idle_timeout_ms: Option<u64>,
    ref_lease_ms: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        id: 0,
        secret: PathBuf::new(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_memsize: 1 << 30,
        max_disksize: None,
        dir: None,
        idle_timeout_ms: None,
        ref_lease_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{v} is not a number"));
        match flag.as_str() {
            "--id" => {
                args.id = value()?
                    .parse()
                    .map_err(|_| "--id takes a number".to_string())?
            }
            "--secret" => args.secret = value()?.into(),
            "--listen" => {
                args.listen = value()?
                    .parse()
                    .map_err(|_| "--listen takes ADDR:PORT".to_string())?
            }
            "--max-memsize" => args.max_memsize = number(value()?)?,
            "--max-disksize" => args.max_disksize = Some(number(value()?)?),
            "--dir" => args.dir = Some(value()?.into()),
            "--idle-timeout-ms" => args.idle_timeout_ms = Some(number(value()?)?),
            "--ref-lease-ms" => args.ref_lease_ms = Some(number(value()?)?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.secret.as_os_str().is_empty() {
        return Err("--secret FILE is required".into());
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let secret = ClusterSecret::load(&args.secret).map_err(|e| e.to_string())?;
    let mut config = PoolConfig::default()
        .max_memsize(args.max_memsize)
        .max_disksize(args.max_disksize);
    if let Some(dir) = args.dir {
        config = config.spill_dir(dir);
    }
    let pool = Pool::new(config).map_err(|e| e.to_string())?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("installing signal handlers: {e}"))?;
    let mut wc = WorkerConfig::new(WorkerId(args.id), secret).listen(args.listen);
    if let Some(ms) = args.idle_timeout_ms {
        wc.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = args.ref_lease_ms {
        wc = wc.ref_lease(Duration::from_millis(ms));
    }
    let worker = Worker::spawn(pool, wc).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {}", worker.addr());
    let _ = out.flush();
    drop(out);
    // Serve until told to stop; then close connections and remove the
    // session directory (dropping the worker and its pool).
    let _ = signals.forever().next();
    worker.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mempool-net-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
