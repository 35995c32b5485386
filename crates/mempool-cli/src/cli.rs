//! The command line, as clap parses it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mempool_net::{DRef, WorkerId};

use crate::units::{parse_duration, parse_size};

/// A distributed spill-to-disk object store (after Julia's MemPool.jl):
/// workers that keep values in memory up to a bound and spill the rest to
/// disk, local clusters of them, and commands to store and fetch values.
#[derive(Debug, Parser)]
#[command(name = "mempool", version, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output on stderr (-v debug, -vv trace); RUST_LOG, when set,
    /// decides instead (e.g. RUST_LOG=mempool_net=debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,

    /// The cluster file (written by `cluster up`, read by every other
    /// command; a worker reads the cluster secret from it, or from a PEM
    /// secret file). Default: $MEMPOOL_CLUSTER_FILE, else
    /// ./.mempool/cluster.json.
    #[arg(
        long,
        env = "MEMPOOL_CLUSTER_FILE",
        default_value = crate::clusterfile::DEFAULT_PATH,
        global = true,
        value_name = "FILE"
    )]
    pub(crate) cluster_file: PathBuf,

    /// How long a worker may stay silent before a command fails naming it
    /// (5s, 500ms, 2m).
    #[arg(
        long,
        env = "MEMPOOL_TIMEOUT",
        default_value = "5s",
        value_parser = parse_duration,
        global = true,
        value_name = "DURATION"
    )]
    pub(crate) timeout: Duration,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one worker: serve a pool to the cluster until SIGINT or SIGTERM,
    /// then remove its spill directory.
    Worker(WorkerArgs),
    /// Start, inspect and stop a cluster of local workers.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Store a file's bytes on a worker; prints the ref (w1/1a2b3c4d.17/1048576).
    Put {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// The worker to store it on (w2 or 2). Default: the one with the
        /// most free memory.
        #[arg(long, env = "MEMPOOL_ON", value_name = "WORKER", value_parser = parse_worker)]
        on: Option<WorkerId>,
    },
    /// Fetch a value's bytes (stored by `put`) to a file or stdout.
    Get {
        /// The ref `put` printed (w1/1a2b3c4d.17/1048576).
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Write the value's raw frame (any value, of any type).
        #[arg(long)]
        frame: bool,
    },
    /// Delete a value (from memory and from its worker's spill files).
    Rm {
        /// The ref.
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
    },
    /// Move a value to its worker's disk (out of memory); prints its file
    /// range.
    Movetodisk {
        /// The ref.
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
    },
    /// Copy a value to its worker's disk (kept in memory too); prints its
    /// file range.
    Copytodisk {
        /// The ref.
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
    },
    /// Save a value as a frame file at PATH on its worker's host (never
    /// removed by mempool); prints the file.
    Save {
        /// The ref.
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
        /// Where (a relative path is made absolute here first).
        path: PathBuf,
    },
    /// Move a value to another worker (MemPool.jl's `migrate!`). Its ref
    /// stays valid: its first worker redirects gets to the new one.
    Migrate {
        /// The ref.
        #[arg(value_name = "REF", value_parser = parse_ref)]
        dref: DRef,
        /// The worker to move it to (w2 or 2).
        #[arg(value_name = "WORKER", value_parser = parse_worker)]
        to: WorkerId,
    },
    /// With no setup: start a local cluster with small memory limits, push
    /// a dataset several times larger through it as tables, compute a
    /// group-by from the stored partitions, check it against the same
    /// computation in this process, show the status table, stop the
    /// cluster and remove everything (Ctrl-C at any point cleans up too).
    Demo(DemoArgs),
}

/// `mempool demo`'s flags. Their environment variables are the demo's own
/// (`MEMPOOL_DEMO_*`), so that a shell set up for a real cluster
/// (`MEMPOOL_MAX_MEMSIZE=8GiB`) still runs the demo as shipped.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many workers.
    #[arg(short = 'n', long = "workers", env = "MEMPOOL_DEMO_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    pub(crate) workers: u32,
    /// Each worker's memory bound; the cluster's memory is N times this.
    #[arg(long, env = "MEMPOOL_DEMO_MAX_MEMSIZE", default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_memsize: u64,
    /// The dataset's size as columns in memory (about 41 bytes a row).
    /// [default: 512MiB]
    #[arg(long, env = "MEMPOOL_DEMO_SIZE", value_parser = parse_size, value_name = "SIZE", conflicts_with = "rows")]
    pub(crate) size: Option<u64>,
    /// The dataset's number of rows, instead of --size.
    #[arg(long, env = "MEMPOOL_DEMO_ROWS", value_name = "N")]
    pub(crate) rows: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Address to listen on (UDP, QUIC); port 0 picks a free port.
    #[arg(long, env = "MEMPOOL_LISTEN", default_value = "127.0.0.1:0", value_parser = parse_addr, value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    /// Bytes of values kept in memory before spilling (1GiB, 512MB, 10^9).
    #[arg(long, env = "MEMPOOL_MAX_MEMSIZE", default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_memsize: u64,
    /// Bytes of spill files allowed (default: no bound).
    #[arg(long, env = "MEMPOOL_MAX_DISKSIZE", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_disksize: Option<u64>,
    /// Directory under which the worker makes its session (spill)
    /// directory.
    #[arg(
        long,
        env = "MEMPOOL_DIR",
        default_value = ".mempool",
        value_name = "PATH"
    )]
    pub(crate) dir: PathBuf,
    /// The worker's id in the cluster (refs name it w<ID>).
    #[arg(long, env = "MEMPOOL_ID", default_value_t = 1, value_name = "N")]
    pub(crate) id: u32,
    /// Join the cluster of the cluster file through its worker at ADDR
    /// (a worker on another host: copy the cluster file there). Clients
    /// learn of the new worker from that one.
    #[arg(long, env = "MEMPOOL_JOIN", value_parser = parse_addr, value_name = "ADDR")]
    pub(crate) join: Option<SocketAddr>,
    /// Once serving, write {pid, addr, spill_dir} as JSON here (used by
    /// `cluster up`).
    #[arg(long, env = "MEMPOOL_READY_FILE", hide = true, value_name = "FILE")]
    pub(crate) ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Start N local workers as background processes and write the cluster
    /// file (secret, addresses, pids, spill directories; mode 0600).
    Up(UpArgs),
    /// Stop every worker of the cluster file (SIGTERM, then SIGKILL after
    /// --stop-timeout), check no spill directory is left, remove the file.
    Down {
        /// How long workers get to exit after SIGTERM.
        #[arg(long, env = "MEMPOOL_STOP_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
        stop_timeout: Duration,
    },
    /// One row per worker: memory against its limit, disk, mapped bytes,
    /// hits, misses, spills, restores, and whether it answers.
    Status,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// How many workers (ids 1..=N).
    #[arg(short = 'n', long = "workers", env = "MEMPOOL_WORKERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256), value_name = "N")]
    pub(crate) workers: u32,
    /// Each worker's memory bound (1GiB, 512MB, 10^9).
    #[arg(long, env = "MEMPOOL_MAX_MEMSIZE", default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_memsize: u64,
    /// Each worker's disk bound (default: no bound).
    #[arg(long, env = "MEMPOOL_MAX_DISKSIZE", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_disksize: Option<u64>,
    /// Where the workers spill and log. Default: the cluster file's
    /// directory.
    #[arg(long, env = "MEMPOOL_DIR", value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,
    /// How long the workers get to start and answer.
    #[arg(long, env = "MEMPOOL_START_TIMEOUT", default_value = "20s", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) start_timeout: Duration,
}

fn parse_ref(s: &str) -> Result<DRef, String> {
    s.parse::<DRef>().map_err(|e| e.to_string())
}

fn parse_worker(s: &str) -> Result<WorkerId, String> {
    s.parse::<WorkerId>()
        .map_err(|_| format!("`{s}` is not a worker; write w2 or 2"))
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let hint = "write HOST:PORT, e.g. 127.0.0.1:7000 or 0.0.0.0:0";
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`{s}` resolves to no address; {hint}")),
        Err(e) => Err(format!("`{s}` is not an address ({e}); {hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_worker_flag_has_an_environment_variable() {
        let cmd = Cli::command();
        let worker = cmd.find_subcommand("worker").unwrap();
        for arg in worker.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version" | "verbose") {
                continue;
            }
            let env = arg.get_env().unwrap_or_else(|| panic!("--{id} has no env"));
            let env = env.to_string_lossy();
            assert!(env.starts_with("MEMPOOL_"), "{id}: {env}");
        }
    }
}
