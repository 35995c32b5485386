//! Least recently used: the victim is the value used longest ago.

use super::list::{Links, RecencyList};
use super::Eviction;

/// LRU over a [`RecencyList`].
#[derive(Default)]
pub(crate) struct Lru;

impl Eviction for Lru {
    fn victim(&self, list: &RecencyList) -> Option<u32> {
        list.least_recent()
    }
    fn reinsert_as_victim<L: Links + ?Sized>(
        &self,
        list: &mut RecencyList,
        links: &mut L,
        idx: u32,
    ) {
        list.push_back(links, idx);
    }
}
