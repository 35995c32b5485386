//! The protocol core: messages, their bounded decoding, and the states of a
//! call and of each worker's connection — with no I/O (it imports neither
//! tokio nor quinn). The QUIC layer ([`crate::Client`], [`crate::Worker`])
//! feeds it what arrives and does what it says; the tests here drive it with
//! a simulated clock and a simulated network that splits, interleaves,
//! delays and loses.

mod call;
mod local;
mod peers;
mod reader;
mod refs;
#[cfg(test)]
mod sim;
mod wire;

pub use call::{Call, CallError, CallEvent, Reply};
pub use local::{
    local_choice, LocalChoice, LocalEndpoint, LocalRequest, LocalResponse, MapKind, INLINE_MAX,
    LOCAL_MAX_PACKET,
};
pub use peers::{Peers, Plan};
pub use reader::{Message, StreamReader};
pub use refs::*;
pub use wire::{
    decode_message, encode_message, ErrorKind, Limits, Request, Response, WireError, WorkerStats,
    PROTOCOL_VERSION,
};
