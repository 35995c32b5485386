//! The messages and how they are laid out on a stream.
//!
//! Every request opens a bidirectional QUIC stream of its own. The caller
//! writes one message and, for [`Request::Set`], the frame's bytes after it,
//! then finishes its side; the worker writes one [`Response`] and, for
//! [`Response::Frame`], the frame's bytes, then finishes. A message is a
//! 4-byte little-endian length and that many bytes of postcard. Nothing read
//! from the wire is used before it is bounded ([`Limits`]).

use serde::{Deserialize, Serialize};

use super::local::LocalEndpoint;
use super::refs::{ProcessId, RefMsg};
use crate::{ValueId, WorkerId};

/// The protocol version, exchanged in [`Request::Hello`]. Peers of other
/// versions are refused.
pub const PROTOCOL_VERSION: u16 = 4;

/// Bounds on what a peer may send, checked before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (the part before a payload), in bytes.
    pub max_message: u32,
    /// Largest payload (one value's frame), in bytes.
    pub max_payload: u64,
}

impl Default for Limits {
    /// Messages up to 64 KiB, values up to 64 GiB.
    fn default() -> Self {
        Self {
            max_message: 64 << 10,
            max_payload: 64 << 30,
        }
    }
}

/// A request to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// The first request on a connection: the caller's protocol version
    /// and who it is. Answered by [`Response::Welcome`].
    Hello {
        /// [`PROTOCOL_VERSION`] of the caller.
        version: u16,
        /// The calling process (this incarnation of it): the holder of the
        /// refs counted on this connection. While no connection of it is
        /// open the worker takes it for dead.
        process: ProcessId,
    },
    /// Store the frame that follows (`len` bytes). Answered by
    /// [`Response::Stored`].
    Set {
        /// Length of the frame that follows.
        len: u64,
        /// Count the value's refs (it is freed once no process holds one);
        /// otherwise it stays until deleted.
        counted: bool,
    },
    /// Send the value's frame. Answered by [`Response::Frame`].
    Get {
        /// The value's id on the worker.
        id: ValueId,
    },
    /// Delete the value. Answered by [`Response::Done`].
    Delete {
        /// The value's id.
        id: ValueId,
    },
    /// Write the value to disk and drop it from memory. Answered by
    /// [`Response::File`].
    MoveToDisk {
        /// The value's id.
        id: ValueId,
    },
    /// Write the value to disk and keep it in memory. Answered by
    /// [`Response::File`].
    CopyToDisk {
        /// The value's id.
        id: ValueId,
    },
    /// Write the value into a standalone frame file at `path` on the
    /// worker's host. Answered by [`Response::File`].
    SaveToDisk {
        /// The value's id.
        id: ValueId,
        /// Where, on the worker's host.
        path: String,
    },
    /// The worker's pool statistics. Answered by [`Response::Stats`].
    Stats,
    /// Move the value to worker `to` (at `addr`), MemPool.jl's `migrate!`.
    /// Sent to the value's home (the worker its refs name), which stays
    /// the value's home: it keeps its reference counts and answers gets
    /// through old refs with [`Response::Moved`]. Answered by
    /// [`Response::Moved`] naming where the value is now.
    Migrate {
        /// The value's id on its home.
        id: ValueId,
        /// Where it goes.
        to: WorkerId,
        /// That worker's address.
        addr: std::net::SocketAddr,
    },
    /// Reference-counting messages of the caller (holder) to this worker
    /// (owner), in order; none to only ask for what the worker has for it.
    /// Answered by [`Response::Refs`].
    Refs {
        /// This batch's number: 1, 2, ... per process and worker. A batch
        /// sent again (its answer was lost) is applied once and answered
        /// with the same messages.
        seq: u64,
        /// The messages.
        msgs: Vec<RefMsg>,
    },
    /// A worker (on another host, say) joins the cluster: this worker
    /// lists it among the members it tells others of. Answered by
    /// [`Response::Members`].
    Join {
        /// The joining worker's id.
        worker: WorkerId,
        /// Where it listens.
        addr: std::net::SocketAddr,
    },
    /// The members this worker knows (itself, and the workers that joined
    /// through it). Answered by [`Response::Members`].
    Members,
}

impl Request {
    /// Length of the payload that follows this message.
    pub fn payload_len(&self) -> u64 {
        match self {
            Request::Set { len, .. } => *len,
            _ => 0,
        }
    }
}

/// A worker's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// Answer to [`Request::Hello`]: who the worker is.
    Welcome {
        /// The worker's id.
        worker: WorkerId,
        /// Its pool's incarnation (changes when the worker restarts).
        pool: u32,
        /// Its [`PROTOCOL_VERSION`].
        version: u16,
        /// Its same-host socket, if it serves one: a reader on its host
        /// (same boot, user, mount and network namespaces) maps values through it
        /// instead of streaming them.
        local: Option<LocalEndpoint>,
    },
    /// The value was stored under `id`.
    Stored {
        /// The value's id on the worker.
        id: ValueId,
        /// Its size in bytes.
        size: u64,
        /// The reference weight the caller holds (0: not counted).
        weight: u64,
    },
    /// The value's frame follows (`len` bytes).
    Frame {
        /// Length of the frame that follows.
        len: u64,
    },
    /// Done.
    Done,
    /// Where the value's frame is on the worker's disk.
    File {
        /// The file, on the worker's host.
        path: String,
        /// Where the frame starts in it.
        offset: u64,
        /// The frame's length.
        len: u64,
    },
    /// The worker's statistics.
    Stats(Box<WorkerStats>),
    /// The value was migrated: it is on `worker` under `id` now (ask
    /// there; its home still counts its refs).
    Moved {
        /// Where it is.
        worker: WorkerId,
        /// Its id there.
        id: ValueId,
        /// That worker's address.
        addr: std::net::SocketAddr,
    },
    /// The worker's reference-counting messages for the caller.
    Refs {
        /// The messages.
        msgs: Vec<RefMsg>,
    },
    /// A reference batch out of order (the worker restarted, say): not
    /// applied; the worker expects batch `seq` from the caller next.
    RefsExpected {
        /// The batch number expected.
        seq: u64,
    },
    /// Members of the cluster this worker knows, itself first.
    Members {
        /// Each member's id and address.
        members: Vec<(WorkerId, std::net::SocketAddr)>,
    },
    /// The request failed.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// The worker's message.
        message: String,
    },
}

impl Response {
    /// Length of the payload that follows this message.
    pub fn payload_len(&self) -> u64 {
        match self {
            Response::Frame { len } => *len,
            _ => 0,
        }
    }
}

/// Why a worker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No such value.
    NotFound,
    /// The disk bound was reached.
    DiskFull,
    /// Spilling to make room failed.
    Spill,
    /// A frame was malformed or corrupt.
    Frame,
    /// A path could not be used.
    Path,
    /// The value is larger than the worker takes in at once.
    TooLarge,
    /// The request was malformed or of another protocol version.
    BadRequest,
    /// The value is being migrated already.
    Busy,
    /// Anything else.
    Other,
}

/// A worker's statistics: its pool's [`mempool_core::Stats`] and bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker.
    pub worker: Option<WorkerId>,
    /// Its `max_memsize`.
    pub max_memsize: u64,
    /// Its `max_disksize`, if bounded.
    pub max_disksize: Option<u64>,
    /// Values in memory.
    pub mem_values: u64,
    /// Bytes in memory.
    pub mem_bytes: u64,
    /// Of those, bytes mapped from spill files.
    pub mem_mapped_bytes: u64,
    /// Values with a spill file.
    pub disk_values: u64,
    /// Bytes of spill files.
    pub disk_bytes: u64,
    /// Gets (local and remote) answered from memory.
    pub hits: u64,
    /// Gets (local and remote) read from disk.
    pub misses: u64,
    /// Values written to disk.
    pub spills: u64,
    /// Values read back from disk.
    pub restores: u64,
    /// Bytes written to disk.
    pub bytes_written: u64,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Requests this worker served.
    pub requests: u64,
    /// Payload bytes it received.
    pub bytes_received: u64,
    /// Payload bytes it sent over QUIC.
    pub bytes_sent: u64,
    /// Payload bytes of values same-host readers mapped (handed out as a
    /// descriptor: no byte of them crossed a socket).
    pub bytes_mapped_out: u64,
    /// Payload bytes of small values sent inline to same-host readers over
    /// the Unix socket.
    pub bytes_local_sent: u64,
    /// Gets served to same-host readers.
    pub local_gets: u64,
    /// Ranges same-host readers map now (each pins its bytes on this
    /// worker until the reader lets go or disconnects).
    pub local_leases: u64,
    /// Sealed shared-memory copies made for same-host readers that are
    /// alive (cached, or mapped by a reader even after their value went).
    /// They do not count against `max_memsize` (they are bounded by the
    /// worker's `max_shared`).
    pub shared_copies: u64,
    /// Bytes of those copies.
    pub shared_bytes: u64,
    /// Same-host connections refused (another user, or no proof of the
    /// cluster secret).
    pub local_refused: u64,
    /// Values whose refs are counted (freed when no process holds one).
    pub counted_values: u64,
    /// Processes holding refs to those values.
    pub ref_holders: u64,
    /// Reference-counting messages received.
    pub ref_messages: u64,
    /// Values freed because no process held a ref any more.
    pub refs_freed: u64,
}

/// Errors of [`encode_message`] and [`decode_message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix is over [`Limits::max_message`].
    #[error("message of {len} bytes is over the limit of {max}")]
    MessageTooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The payload length is over [`Limits::max_payload`].
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// Announced length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The message is not valid postcard for its type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The stream ended before the message or its payload was complete.
    #[error("stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// Bytes came after the end of the message and its payload.
    #[error("{0} bytes after the end of the message")]
    Trailing(u64),
    /// The worker is not of our protocol version.
    #[error("protocol version {found}, expected {expected}")]
    Version {
        /// Ours.
        expected: u16,
        /// Theirs.
        found: u16,
    },
}

/// Encodes `msg` as it goes on the wire: length prefix and postcard.
///
/// # Panics
/// If postcard cannot encode `msg` — it always can for [`Request`] and
/// [`Response`] (no maps, no sequences of unknown length).
pub fn encode_message<M: Serialize>(msg: &M) -> Vec<u8> {
    let out = postcard::to_extend(msg, vec![0u8; 4]).expect("protocol messages always encode");
    let mut out = out;
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// Decodes a message body (without its length prefix).
///
/// # Errors
/// [`WireError::Malformed`] for bytes that are not a message of type `M`,
/// including trailing bytes inside the announced length.
pub fn decode_message<M: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<M, WireError> {
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} bytes left inside the message",
            rest.len()
        )));
    }
    Ok(msg)
}
