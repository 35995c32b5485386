//! Eviction policies: a small trait, one file per policy, all O(1).
//!
//! A policy tracks the values resident in memory (by slot index) in recency
//! order and names the next victim. Values being spilled, or only on disk, are
//! not tracked.

mod list;
mod lru;
mod mru;

pub(crate) use list::RecencyList;

/// Which values leave memory first when the pool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Least recently used first (the default, as in MemPool.jl).
    #[default]
    Lru,
    /// Most recently used first: for one-pass scans over more data than fits.
    Mru,
}

/// What every policy does; each is O(1).
pub(crate) trait Eviction: Send {
    fn list(&self) -> &RecencyList;
    fn list_mut(&mut self) -> &mut RecencyList;
    /// The next value to leave memory, if any is resident.
    fn victim(&self) -> Option<u32>;

    /// A value became resident (stored, or read back from disk).
    fn insert(&mut self, idx: u32) {
        self.list_mut().push_front(idx);
    }
    /// A resident value was read.
    fn touch(&mut self, idx: u32) {
        self.list_mut().touch(idx);
    }
    /// A value left memory (evicted, moved to disk, deleted); false if it was
    /// not tracked.
    fn remove(&mut self, idx: u32) -> bool {
        self.list_mut().remove(idx)
    }
    /// A value failed to leave memory and stays, first in line to leave again.
    fn reinsert_as_victim(&mut self, idx: u32);
    /// Whether `idx` is tracked.
    fn contains(&self, idx: u32) -> bool {
        self.list().contains(idx)
    }
}

/// The policy object for `p`.
pub(crate) fn new_policy(p: Policy) -> Box<dyn Eviction> {
    match p {
        Policy::Lru => Box::new(lru::Lru::new()),
        Policy::Mru => Box::new(mru::Mru::new()),
    }
}
