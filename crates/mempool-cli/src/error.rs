//! [`CliError`]: everything a `mempool` command can fail with, each message
//! one line that says what to do.

use std::net::SocketAddr;
use std::path::PathBuf;

use mempool_net::{DRef, NetError, WorkerId};

use crate::units::UnitError;

/// What a `mempool` command can fail with. `main` prints it as one line,
/// `mempool: <error>`, and exits with a non-zero code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command line could not be parsed (clap's message, on one line).
    #[error("{0}")]
    Usage(String),
    /// A size or duration is malformed.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// There is no cluster file where one was looked for.
    #[error(
        "no cluster file at {path}; start a cluster with `mempool cluster up`, \
         or point --cluster-file (or MEMPOOL_CLUSTER_FILE) at one"
    )]
    NoClusterFile {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The cluster file exists but cannot be used.
    #[error("cluster file {path}: {reason}")]
    ClusterFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// `cluster up` found a cluster file already there.
    #[error(
        "a cluster file already exists at {path}: is a cluster running? \
         (`mempool cluster status`; stop it with `mempool cluster down`), \
         or pass another --cluster-file"
    )]
    ClusterExists {
        /// The file.
        path: PathBuf,
    },
    /// A worker could not listen on its address.
    #[error(
        "cannot listen on {addr}: {reason}; choose another address with --listen \
         (port 0 picks a free one)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// `worker --join` could not join.
    #[error("cannot join the cluster through {addr}: {reason}")]
    Join {
        /// The address given to --join.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// A worker started by `cluster up` did not come up.
    #[error("worker {worker} did not start: {reason}; its log is {log}")]
    WorkerStart {
        /// The worker.
        worker: WorkerId,
        /// What happened.
        reason: String,
        /// Its log file.
        log: PathBuf,
    },
    /// `put` without `--on` found no worker that answers.
    #[error("no worker of the cluster answers ({details}); is the cluster up? see `mempool cluster status`")]
    NoWorkerAnswers {
        /// Each worker's error.
        details: String,
    },
    /// `get` of a value that is not bytes stored by `mempool put`.
    #[error(
        "value {dref} is a `{found}`, not bytes stored by `mempool put`; \
         write its raw frame with `mempool get --frame {dref}`"
    )]
    NotBytes {
        /// The ref.
        dref: DRef,
        /// The type name in its frame.
        found: String,
    },
    /// SIGINT or SIGTERM stopped the command; what it started was stopped.
    #[error("interrupted; the workers started so far were stopped")]
    Interrupted,
    /// `mempool demo` got another answer from the cluster's data than from
    /// the same computation in one process (a bug).
    #[error("demo: {0}; this is a bug, please report it")]
    DemoMismatch(String),
    /// A table read back does not have the columns written.
    #[error(transparent)]
    Array(#[from] mempool_arrays::ArrayError),
    /// `cluster down` could not stop everything.
    #[error("cluster down: {0}")]
    Down(String),
    /// A request to the cluster failed (the message names the worker).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The worker's pool could not start.
    #[error(transparent)]
    Pool(#[from] mempool_core::PoolError),
    /// A frame could not be decoded here.
    #[error(transparent)]
    Frame(#[from] mempool_serde::FrameError),
    /// Local I/O.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// An I/O error while doing `op`.
    pub fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let op = op.into();
        move |source| CliError::Io { op, source }
    }

    /// The exit code: 2 for usage errors, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Unit(_) => 2,
            _ => 1,
        }
    }
}

/// The message on one line: line breaks inside (from a peer's or the OS's
/// message) become spaces.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
