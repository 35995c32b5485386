//! Eviction policies: a small trait, one file per policy, all O(1).
//!
//! The pool keeps the values resident in memory in a [`RecencyList`] (most
//! recent first) whose links live in its slots; a policy only says which end
//! the next victim comes from, and where a value that failed to leave goes
//! back. Values being spilled, or only on disk, are not in the list.

mod list;
mod lru;
mod mru;

pub(crate) use list::{Link, Links, RecencyList};

/// Which values leave memory first when the pool is full.
///
/// The order is that of one recency list for the stores and reads of one
/// thread, whatever the index's shards
/// ([`PoolConfig::shards`](crate::PoolConfig::shards)), and for those of one
/// shard. Across threads and shards it is the order of a coarse monotonic
/// clock: each store and read takes a stamp, the clock's nanoseconds raised
/// above the last stamp of its shard and of its thread, and the value with
/// the least stamp leaves first (LRU; the greatest for MRU). Two accesses
/// by different threads to different shards within one tick of the clock
/// (4 ms on Linux) may be ordered either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Least recently used first (the default, as in MemPool.jl).
    #[default]
    Lru,
    /// Most recently used first: for one-pass scans over more data than fits.
    Mru,
}

/// What a policy decides; O(1) each.
pub(crate) trait Eviction {
    /// The next value to leave memory, if any is resident.
    fn victim(&self, list: &RecencyList) -> Option<u32>;
    /// A value failed to leave memory: put it back first in line to leave.
    fn reinsert_as_victim<L: Links + ?Sized>(
        &self,
        list: &mut RecencyList,
        links: &mut L,
        idx: u32,
    );
}

/// The recency list plus the configured policy (enum at the edge, generic
/// policies inside).
pub(crate) struct Recency {
    list: RecencyList,
    policy: Policy,
}

impl Recency {
    pub(crate) fn new(policy: Policy) -> Self {
        Self {
            list: RecencyList::new(),
            policy,
        }
    }

    /// A value became resident (stored, or read back from disk).
    pub(crate) fn insert<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        self.list.push_front(links, idx);
    }

    /// A resident value was read.
    pub(crate) fn touch<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        self.list.touch(links, idx);
    }

    /// A value left memory; false if it was not in the list.
    pub(crate) fn remove<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) -> bool {
        self.list.remove(links, idx)
    }

    /// Indices from most to least recent (for tests; O(n)).
    #[cfg(test)]
    pub(crate) fn order<L: Links + ?Sized>(&self, links: &L) -> Vec<u32> {
        self.list.order(links)
    }

    /// The configured policy.
    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    pub(crate) fn victim(&self) -> Option<u32> {
        match self.policy {
            Policy::Lru => lru::Lru.victim(&self.list),
            Policy::Mru => mru::Mru.victim(&self.list),
        }
    }

    pub(crate) fn reinsert_as_victim<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        match self.policy {
            Policy::Lru => lru::Lru.reinsert_as_victim(&mut self.list, links, idx),
            Policy::Mru => mru::Mru.reinsert_as_victim(&mut self.list, links, idx),
        }
    }
}
