//! The same-host path: the messages a reader and a worker on one host
//! exchange over the worker's Unix socket, and the choice of path — with no
//! I/O.
//!
//! The socket is a `SOCK_SEQPACKET` socket in the worker's private (0700)
//! session directory: one message per packet (postcard, no length prefix),
//! with at most one file descriptor attached (`SCM_RIGHTS`). The worker
//! speaks first ([`LocalResponse::Challenge`]); the reader proves it holds
//! the cluster secret ([`LocalRequest::Auth`]); only then are gets served.
//! A get is answered with the frame's bytes inline (small values) or with a
//! descriptor of a file holding them and the range to map
//! ([`LocalResponse::Mapped`]): the owner pins that range until the reader
//! sends [`LocalRequest::Release`] or its connection closes.

use serde::{Deserialize, Serialize};

use super::wire::ErrorKind;
use crate::{ValueId, WorkerId};

/// Frames up to this many bytes are sent inline on the socket (a copy costs
/// less than a mapping's system calls and page faults), larger ones as a
/// descriptor to map.
pub const INLINE_MAX: u64 = 32 << 10;

/// Largest packet either side sends (an inline frame and its message).
pub const LOCAL_MAX_PACKET: usize = INLINE_MAX as usize + 1024;

/// Where a worker's same-host socket is, and on which host: sent in
/// [`Response::Welcome`](super::Response::Welcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    /// The socket's path on the worker's host.
    pub path: String,
    /// The worker's host identity (see [`crate::proto::local_choice`]):
    /// boot id, user, mount and network namespaces, so that the path means
    /// the same file to the reader only where they are all equal.
    pub host: String,
}

/// A reader's message on the same-host socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LocalRequest {
    /// The answer to [`LocalResponse::Challenge`]: an HMAC-SHA256 of the
    /// nonce keyed by a hash of the cluster secret.
    Auth {
        /// The MAC (32 bytes).
        mac: Vec<u8>,
        /// The reader's fresh random nonce, for the worker to sign.
        nonce: [u8; 32],
    },
    /// The value's frame, please. Answered, with the same tag, by
    /// [`LocalResponse::Inline`], [`LocalResponse::Mapped`],
    /// [`LocalResponse::Fallback`] or [`LocalResponse::Error`].
    Get {
        /// The caller's tag for the answer.
        tag: u64,
        /// The value.
        id: ValueId,
    },
    /// The reader no longer maps lease `lease`: the owner may drop its pin.
    Release {
        /// The lease of a [`LocalResponse::Mapped`].
        lease: u64,
    },
}

/// How the bytes behind a [`LocalResponse::Mapped`] descriptor are kept
/// unchanged while the reader maps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapKind {
    /// A sealed memfd (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
    /// F_SEAL_SEAL`): nobody can change it; the reader checks the seals.
    Sealed,
    /// A range of the owner's spill segment, opened read-only: the owner
    /// never writes, punches or truncates it while the lease is held.
    Pinned,
}

/// A worker's message on the same-host socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LocalResponse {
    /// The first message of a connection: prove you hold the secret.
    Challenge {
        /// Who answers.
        worker: WorkerId,
        /// A fresh random nonce.
        nonce: [u8; 32],
    },
    /// The proof was good: requests are served. With the worker's own
    /// proof: an HMAC-SHA256, under the same key, of both nonces.
    Ready {
        /// The MAC (32 bytes).
        mac: Vec<u8>,
    },
    /// The frame, inline.
    Inline {
        /// The request's tag.
        tag: u64,
        /// The frame's bytes.
        bytes: Vec<u8>,
    },
    /// The frame is `len` bytes at `offset` of the attached descriptor.
    Mapped {
        /// The request's tag.
        tag: u64,
        /// The pin to release when done.
        lease: u64,
        /// How the bytes are kept unchanged.
        kind: MapKind,
        /// Where the frame starts in the file.
        offset: u64,
        /// The frame's length.
        len: u64,
        /// Whether later gets of the value may be answered with these same
        /// bytes (its spill range, or its cached copy), so that a reader
        /// may keep the mapping; `false` for a copy made for this lease only.
        reusable: bool,
    },
    /// The worker cannot serve this get here (no room for a shared copy):
    /// ask over QUIC.
    Fallback {
        /// The request's tag.
        tag: u64,
        /// Why.
        reason: String,
    },
    /// The get failed (the value is not there).
    Error {
        /// The request's tag.
        tag: u64,
        /// What kind of failure.
        kind: ErrorKind,
        /// The worker's message.
        message: String,
    },
}

impl LocalResponse {
    /// The tag of an answer to a get.
    pub fn tag(&self) -> Option<u64> {
        match self {
            LocalResponse::Inline { tag, .. }
            | LocalResponse::Mapped { tag, .. }
            | LocalResponse::Fallback { tag, .. }
            | LocalResponse::Error { tag, .. } => Some(*tag),
            _ => None,
        }
    }
}

/// Why a reader uses (or does not use) a worker's same-host socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalChoice<'a> {
    /// Try the socket at this path (QUIC if it cannot be connected).
    Use(&'a str),
    /// QUIC: the reader disabled the same-host path.
    Disabled,
    /// QUIC: the worker offers none.
    NotOffered,
    /// QUIC: the reader does not know its own host identity.
    UnknownHost,
    /// QUIC: the worker is on another host (or another user, or another
    /// mount namespace, where the path would not name its socket, or
    /// another network namespace).
    OtherHost,
}

/// Whether a reader whose host identity is `own` uses the same-host socket
/// the worker offers (`offered`): only where enabled and the identities are
/// equal.
pub fn local_choice<'a>(
    enabled: bool,
    own: Option<&str>,
    offered: Option<&'a LocalEndpoint>,
) -> LocalChoice<'a> {
    if !enabled {
        return LocalChoice::Disabled;
    }
    let Some(offered) = offered else {
        return LocalChoice::NotOffered;
    };
    let Some(own) = own else {
        return LocalChoice::UnknownHost;
    };
    if own != offered.host {
        return LocalChoice::OtherHost;
    }
    LocalChoice::Use(&offered.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(host: &str) -> LocalEndpoint {
        LocalEndpoint {
            path: "/tmp/s/local.sock".into(),
            host: host.into(),
        }
    }

    #[test]
    fn the_socket_is_used_only_on_the_same_host_when_enabled() {
        let here = "boot-a/uid1000/mnt:[1]";
        let same = offered(here);
        assert_eq!(
            local_choice(true, Some(here), Some(&same)),
            LocalChoice::Use("/tmp/s/local.sock")
        );
        assert_eq!(
            local_choice(false, Some(here), Some(&same)),
            LocalChoice::Disabled
        );
        assert_eq!(
            local_choice(true, Some(here), None),
            LocalChoice::NotOffered
        );
        assert_eq!(
            local_choice(true, None, Some(&same)),
            LocalChoice::UnknownHost
        );
        for other in [
            "boot-b/uid1000/mnt:[1]",
            "boot-a/uid1001/mnt:[1]",
            "boot-a/uid1000/mnt:[2]",
            "",
        ] {
            assert_eq!(
                local_choice(true, Some(here), Some(&offered(other))),
                LocalChoice::OtherHost,
                "{other}"
            );
        }
    }

    #[test]
    fn messages_round_trip_and_fit_a_packet() {
        use super::super::wire::{decode_message, encode_message};
        let big = LocalResponse::Inline {
            tag: u64::MAX,
            bytes: vec![7; INLINE_MAX as usize],
        };
        let bytes = encode_message(&big);
        assert!(bytes.len() <= LOCAL_MAX_PACKET);
        assert_eq!(decode_message::<LocalResponse>(&bytes[4..]).unwrap(), big);
        let get = LocalRequest::Get {
            tag: 3,
            id: ValueId { pool: 1, id: 2 },
        };
        assert_eq!(
            decode_message::<LocalRequest>(&encode_message(&get)[4..]).unwrap(),
            get
        );
        assert!(decode_message::<LocalRequest>(&[0xff, 0xff]).is_err());
    }
}
