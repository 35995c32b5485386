//! [`WorkerId`] and the cluster-wide [`DRef`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::NetError;

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
/// It is serde-serializable, so a program can put refs into its own
/// messages, and it prints and parses as a short string,
/// `w3/1a2b3c4d.17/1024` (worker, [`ValueId`], size in bytes).
///
/// ```
/// use mempool_net::{DRef, WorkerId};
///
/// let r: DRef = "w3/1a2b3c4d.17/1024".parse().unwrap();
/// assert_eq!(r.worker(), WorkerId(3));
/// assert_eq!(r.id().id, 17);
/// assert_eq!(r.to_string(), "w3/1a2b3c4d.17/1024");
/// assert!("w3/17/1024".parse::<DRef>().is_err());
/// ```
// Not `Copy`: reference counting across processes (a weight carried by
// each ref, returned on drop) will live here.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DRef {
    worker: WorkerId,
    id: ValueId,
    size: u64,
}

impl DRef {
    /// A ref to value `id` (of `size` bytes) on `worker`. Only a worker's
    /// own answers make refs that name real values; one made up names
    /// nothing, and getting it is a [`NetError::NotFound`].
    pub fn new(worker: WorkerId, id: ValueId, size: u64) -> Self {
        Self { worker, id, size }
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
        Ok(Self { worker, id, size })
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
