//! `mempool-cli`: the `mempool` command — the generic worker process, local
//! clusters of workers, and client commands to store and fetch values.
//!
//! - `mempool worker --listen ADDR --max-memsize 1GiB [--max-disksize SIZE]
//!   [--dir PATH] [--id N] [--cluster-file F]` serves a
//!   [`mempool_core::Pool`] to the cluster ([`mempool_net::Worker`]) until
//!   SIGINT or SIGTERM, then shuts down and removes its spill directory. It
//!   knows no user types: what it stores for others is frames.
//! - `mempool cluster up -n 4` starts four such workers in the background
//!   (MemPool.jl's `addprocs(4)`) and writes the cluster file
//!   ([`clusterfile`]): the secret, and each worker's id, address, pid and
//!   spill directory. `mempool cluster status` shows one row per worker;
//!   `mempool cluster down` stops them all and leaves no spill directory.
//! - `mempool put FILE [--on W]` prints a ref (`w1/1a2b3c4d.17/1048576`);
//!   `get REF [-o FILE]`, `rm REF`, `movetodisk REF`, `copytodisk REF`,
//!   `save REF PATH`, `migrate REF WORKER` use it.
//! - `mempool demo` needs no setup: it starts a local cluster with small
//!   memory limits in a temporary directory, pushes a dataset several times
//!   larger than the cluster's memory through it as
//!   [`mempool_arrays::Table`] partitions, computes a group-by aggregate
//!   from the partitions fetched back, checks it against the same
//!   computation in one process, prints the status table and stops the
//!   cluster, leaving nothing behind (Ctrl-C included).
//!
//! Every flag has a `MEMPOOL_*` environment variable (`--max-memsize` is
//! `MEMPOOL_MAX_MEMSIZE`), sizes are human (`1GiB`, `512MB`, `10^9`: see
//! [`units`]), and this is the only crate that reads flags and the
//! environment. Errors ([`CliError`]) print as one line, `mempool: <what
//! went wrong and what to do>`, with a non-zero exit code.
#![forbid(unsafe_code)]

mod cli;
pub mod clusterfile;
mod cmd_client;
mod cmd_cluster;
mod cmd_demo;
mod cmd_worker;
pub mod error;
mod procs;
pub mod units;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

pub use error::CliError;

/// The repository's README, whose Rust examples `cargo test` compiles as
/// doc-tests of this crate (it depends on every library they use).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

use cli::{Cli, ClusterCommand, Command};

/// Runs the `mempool` command with the process's arguments and environment,
/// and returns its exit code: 0, 1 for a failure, 2 for bad usage.
pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    init_logging(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mempool: {}", error::one_line(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let Cli {
        cluster_file,
        timeout,
        verbose,
        command,
    } = cli;
    match command {
        Command::Worker(args) => cmd_worker::run(&args, &cluster_file),
        Command::Cluster(ClusterCommand::Up(args)) => {
            cmd_cluster::up(&args, &cluster_file, timeout, verbose)
        }
        Command::Cluster(ClusterCommand::Down { stop_timeout }) => {
            cmd_cluster::down(&cluster_file, stop_timeout)
        }
        Command::Cluster(ClusterCommand::Status) => cmd_cluster::status(&cluster_file, timeout),
        Command::Demo(args) => cmd_demo::run(&args, timeout, verbose),
        client => cmd_client::run(client, &cluster_file, timeout),
    }
}

/// Help and version print as clap prints them; a usage error prints as one
/// line.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        _ => {
            let text = e.render().to_string();
            let kept: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| {
                    !l.is_empty()
                        && !l.starts_with("Usage:")
                        && !l.starts_with("For more information")
                })
                .collect();
            let message = kept.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            let err = CliError::Usage(format!("{message} (see `mempool --help`)"));
            eprintln!("mempool: {}", error::one_line(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs go to stderr: RUST_LOG when set; else `info` for a worker and
/// `warn` for the other commands, raised by `-v` (debug) and `-vv` (trace).
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let base = match (cli.verbose, matches!(cli.command, Command::Worker(_))) {
        (0, true) => "info",
        (0, false) => "warn",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).unwrap_or_else(|_| EnvFilter::new(base))
        }
        _ => EnvFilter::new(base),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if matches!(cli.command, Command::Worker(_)) {
        builder.init();
    } else {
        builder.without_time().with_target(false).init();
    }
}

/// A bug shows as one line too (set RUST_BACKTRACE for the full report).
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!(
            "mempool: internal error{at}: {}; please report it (RUST_BACKTRACE=1 for details)",
            error::one_line(&what)
        );
    }));
}
