//! Least recently used: the victim is the value used longest ago.

use super::list::RecencyList;
use super::Eviction;

/// LRU over a [`RecencyList`].
pub(crate) struct Lru(RecencyList);

impl Lru {
    pub(crate) fn new() -> Self {
        Self(RecencyList::new())
    }
}

impl Eviction for Lru {
    fn list(&self) -> &RecencyList {
        &self.0
    }
    fn list_mut(&mut self) -> &mut RecencyList {
        &mut self.0
    }
    fn reinsert_as_victim(&mut self, idx: u32) {
        self.0.push_back(idx);
    }
    fn victim(&self) -> Option<u32> {
        self.0.least_recent()
    }
}
