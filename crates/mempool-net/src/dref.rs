//! [`WorkerId`] and the cluster-wide [`DRef`].

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::NetError;
use crate::holder::Hold;
use crate::proto::Token;

/// A worker's id in its cluster: small, given when the worker starts (by
/// `mempool cluster up`, or by whoever starts the worker), stable across
/// restarts of the worker.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub u32);

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

impl FromStr for WorkerId {
    type Err = NetError;

    /// Parses `w3` or `3`.
    fn from_str(s: &str) -> Result<Self, NetError> {
        let digits = s.strip_prefix('w').unwrap_or(s);
        digits.parse().map(WorkerId).map_err(|_| NetError::BadRef {
            input: s.to_owned(),
            reason: "a worker is w<number>",
        })
    }
}

/// A value's id on its worker: the incarnation of the worker's pool (random
/// per start of the worker, so a ref from before a restart names nothing
/// rather than another value) and the value's id in that pool. Prints as
/// `1a2b3c4d.17`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId {
    /// The worker's pool incarnation (low 32 bits of its pool's owner id).
    pub pool: u32,
    /// The value's id in that pool.
    pub id: u64,
}

impl fmt::Debug for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}.{}", self.pool, self.id)
    }
}

/// A reference to a value stored on a worker of a cluster (MemPool.jl's
/// `DRef`): the owner, the value's id there, and the value's size in bytes
/// when stored. Any process of the cluster that has it can
/// [`get`](crate::Client::get) the value.
///
/// **Counted refs.** A ref made by [`Client::set_on`](crate::Client::set_on)
/// is counted across processes: its clones in this process share one hold
/// (no message), a copy serialized into a message carries weight split off
/// this process's, and the owner frees the value — memory and disk — once
/// no process holds a ref to it (each process's last drop releases its
/// weight; a process that dies has its weight written off after the owner's
/// [`ref_lease`](crate::WorkerConfig::ref_lease)). Deserialized where a
/// client is current ([`Client::enter`](crate::Client::enter), or the first
/// client made in the process), a ref claims its weight for that client. A
/// serialized ref never deserialized gives its weight back to its sender
/// after a minute; deserialized twice, both copies hold the value (the
/// second gets new weight while the value lives, and is revoked if it is
/// gone). An explicit [`delete`](crate::Client::delete) frees the value
/// whoever holds it; a get through any ref then is
/// [`NetError::NotFound`].
///
/// **Names.** It prints and parses as a short string,
/// `w3/1a2b3c4d.17/1024` (worker, [`ValueId`], size in bytes). A ref parsed
/// from its string, or deserialized where no client is current, is a bare
/// name: it holds nothing. Values stored uncounted
/// ([`ClientConfig::counted`](crate::ClientConfig::counted) off, as the
/// `mempool` command does) stay until deleted.
///
/// ```
/// use mempool_net::{DRef, WorkerId};
///
/// let r: DRef = "w3/1a2b3c4d.17/1024".parse().unwrap();
/// assert_eq!(r.worker(), WorkerId(3));
/// assert_eq!(r.id().id, 17);
/// assert_eq!(r.to_string(), "w3/1a2b3c4d.17/1024");
/// assert!(!r.is_counted());
/// assert!("w3/17/1024".parse::<DRef>().is_err());
/// ```
#[derive(Clone)]
pub struct DRef {
    worker: WorkerId,
    id: ValueId,
    size: u64,
    hold: Option<Arc<Hold>>,
}

impl PartialEq for DRef {
    /// Refs are equal when they name the same value (held or not).
    fn eq(&self, other: &Self) -> bool {
        (self.worker, self.id, self.size) == (other.worker, other.id, other.size)
    }
}

impl Eq for DRef {}

impl Hash for DRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.worker, self.id, self.size).hash(state);
    }
}

/// A ref as it is serialized: its name and, for a counted ref, the weight
/// it carries.
#[derive(Serialize, Deserialize)]
struct Wire {
    worker: WorkerId,
    id: ValueId,
    size: u64,
    token: Option<Token>,
}

impl Serialize for DRef {
    /// A counted ref splits a token off this process's weight (so the
    /// value stays alive while the bytes travel); fails only when there is
    /// no weight to split until the owner's grant arrives (try again).
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let token = match &self.hold {
            Some(h) => crate::holder::token_for(h).map_err(serde::ser::Error::custom)?,
            None => None,
        };
        Wire {
            worker: self.worker,
            id: self.id,
            size: self.size,
            token,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for DRef {
    /// A ref with a token claims it for the current client.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let hold = match w.token {
            Some(t) => crate::holder::claim(w.worker, w.id, t)
                .map_err(serde::de::Error::custom)?
                .map(Arc::new),
            None => None,
        };
        Ok(Self {
            worker: w.worker,
            id: w.id,
            size: w.size,
            hold,
        })
    }
}

impl DRef {
    /// A ref to value `id` (of `size` bytes) on `worker`: a bare name,
    /// holding nothing. Only a worker's own answers make refs that name real
    /// values; one made up names nothing, and getting it is a
    /// [`NetError::NotFound`].
    pub fn new(worker: WorkerId, id: ValueId, size: u64) -> Self {
        Self {
            worker,
            id,
            size,
            hold: None,
        }
    }

    /// A counted ref standing on `hold`.
    pub(crate) fn held(worker: WorkerId, id: ValueId, size: u64, hold: Hold) -> Self {
        Self {
            worker,
            id,
            size,
            hold: Some(Arc::new(hold)),
        }
    }

    /// Whether this ref holds its value (is counted) rather than only
    /// naming it.
    pub fn is_counted(&self) -> bool {
        self.hold.is_some()
    }

    /// The bare name of the value: a ref that holds nothing.
    pub fn name(&self) -> Self {
        Self::new(self.worker, self.id, self.size)
    }

    /// The worker that owns the value.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The value's id on its owner.
    pub fn id(&self) -> ValueId {
        self.id
    }

    /// The value's size in bytes when it was stored.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl fmt::Debug for DRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DRef({self})")
    }
}

impl fmt::Display for DRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.worker, self.id, self.size)
    }
}

impl FromStr for DRef {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let bad = |reason| NetError::BadRef {
            input: s.to_owned(),
            reason,
        };
        let mut parts = s.trim().split('/');
        let (Some(w), Some(id), Some(size), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("a ref has three parts separated by '/'"));
        };
        if !w.starts_with('w') {
            return Err(bad("a ref starts with its worker, w<number>"));
        }
        let worker = w.parse().map_err(|_| bad("a worker is w<number>"))?;
        let (pool, id) = id
            .split_once('.')
            .ok_or(bad("the value id is <pool hex>.<number>"))?;
        if pool.is_empty() || pool.len() > 8 {
            return Err(bad("the value's pool is up to 8 hex digits"));
        }
        let pool = u32::from_str_radix(pool, 16).map_err(|_| bad("the value's pool is hex"))?;
        let id = ValueId {
            pool,
            id: id
                .parse()
                .map_err(|_| bad("the value id is <pool hex>.<number>"))?,
        };
        let size = size
            .parse()
            .map_err(|_| bad("the size is a number of bytes"))?;
        Ok(Self::new(worker, id, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refs_print_and_parse_back() {
        let r = DRef::new(
            WorkerId(12),
            ValueId {
                pool: 0xdead_beef,
                id: 1 << 40,
            },
            7,
        );
        assert_eq!(r.to_string(), "w12/deadbeef.1099511627776/7");
        assert_eq!(r.to_string().parse::<DRef>().unwrap(), r);
        for bad in [
            "",
            "w1/2",
            "1/a.2/3",
            "w1/a.2/3/4",
            "wx/a.2/3",
            "w1/a.-2/3",
            "w1/a.2/3B",
            "w1/2/3",
            "w1/.2/3",
            "w1/123456789.2/3",
            "w1/xyz.2/3",
        ] {
            assert!(
                matches!(bad.parse::<DRef>(), Err(NetError::BadRef { .. })),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_string_parses_or_errs(s in ".{0,40}") {
            let _ = s.parse::<DRef>();
        }

        #[test]
        fn any_ref_round_trips(w in any::<u32>(), pool in any::<u32>(), id in any::<u64>(), size in any::<u64>()) {
            let r = DRef::new(WorkerId(w), ValueId { pool, id }, size);
            prop_assert_eq!(r.to_string().parse::<DRef>().unwrap(), r);
        }
    }
}
