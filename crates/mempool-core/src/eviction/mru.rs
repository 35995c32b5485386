//! Most recently used: the victim is the value used last (good for scans that
//! will not come back to what they just read).

use super::list::RecencyList;
use super::Eviction;

/// MRU over a [`RecencyList`].
pub(crate) struct Mru(RecencyList);

impl Mru {
    pub(crate) fn new() -> Self {
        Self(RecencyList::new())
    }
}

impl Eviction for Mru {
    fn list(&self) -> &RecencyList {
        &self.0
    }
    fn list_mut(&mut self) -> &mut RecencyList {
        &mut self.0
    }
    fn reinsert_as_victim(&mut self, idx: u32) {
        self.0.push_front(idx);
    }
    fn victim(&self) -> Option<u32> {
        self.0.most_recent()
    }
}
