//! The error type of `mempool-net`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{DRef, WorkerId};

/// What a remote call can go wrong with: on the caller's side, on the wire,
/// or on the worker that owns the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The worker answered nothing within the timeout (dead, unreachable, or
    /// silent mid-transfer).
    #[error("worker {worker} ({addr}) did not answer within {timeout:?}; is it running? (start it, or check the address in the cluster file)")]
    Timeout {
        /// The worker asked.
        worker: WorkerId,
        /// Its address.
        addr: SocketAddr,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The connection to a worker could not be made or was lost.
    #[error("worker {worker} ({addr}) is unreachable: {reason}; is it running? (start it, or check the address in the cluster file)")]
    Unreachable {
        /// The worker asked.
        worker: WorkerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The cluster knows no worker of that id.
    #[error("no worker {worker} in this cluster (known: {known}); check the ref, or add the worker to the cluster")]
    UnknownWorker {
        /// The id asked for.
        worker: WorkerId,
        /// The ids the cluster knows, for the message.
        known: String,
    },
    /// A peer broke the protocol (malformed or oversized message, bytes past
    /// the end); the connection is closed.
    #[error("protocol error from {peer}: {reason}")]
    Protocol {
        /// Who sent it (`"worker 3"`, a socket address).
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// The value asked for is not on its owner (deleted, or never stored).
    #[error("no value {dref} on worker {} (deleted, or never stored)", dref.worker())]
    NotFound {
        /// The ref asked for.
        dref: DRef,
    },
    /// The value is of another type than the one asked for.
    #[error("value {dref} is a `{found}`, not a `{expected}`; get it as `{found}`")]
    TypeMismatch {
        /// The ref asked for.
        dref: DRef,
        /// Type asked for.
        expected: String,
        /// Type stored.
        found: String,
    },
    /// The owner's pool refused the operation (disk bound reached, spill
    /// failed, a path it cannot use). Nothing stored before is lost.
    #[error("worker {worker}: {message}")]
    Remote {
        /// The worker that refused.
        worker: WorkerId,
        /// What kind of refusal.
        kind: crate::proto::ErrorKind,
        /// Its message (the pool's error, as the worker printed it).
        message: String,
    },
    /// A string is not a ref (refs print as `w<worker>/<pool>.<id>/<size>`).
    #[error("`{input}` is not a ref: {reason} (refs look like w3/1a2b3c4d.17/1024: worker, value id, size)")]
    BadRef {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The cluster secret file is missing, unreadable, too open or malformed.
    #[error("cluster secret {path}: {reason}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// Setting up TLS or the QUIC endpoint failed.
    #[error("cannot set up the endpoint: {0}")]
    Endpoint(String),
    /// A frame could not be encoded or decoded here.
    #[error(transparent)]
    Frame(#[from] mempool_serde::FrameError),
    /// The local pool (of an embedded worker) failed.
    #[error(transparent)]
    Pool(#[from] mempool_core::PoolError),
    /// Local I/O (binding a socket, reading a file).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A request the caller made cannot be sent as asked (e.g. a path
    /// longer than a message may be).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A blocking call was made from inside an async runtime (it would
    /// block the runtime's thread); use the async [`Client`](crate::Client).
    #[error("a BlockingClient call was made inside an async runtime; use mempool_net::Client (async) there")]
    InsideRuntime,
    /// The client or worker was shut down.
    #[error("the mempool client was shut down")]
    Closed,
}

/// Shorthand for results of this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
