//! Most recently used: the victim is the value used last (good for one-pass
//! scans over more data than fits, which will not come back to what they read).

use super::list::{Links, RecencyList};
use super::Eviction;

/// MRU over a [`RecencyList`].
#[derive(Default)]
pub(crate) struct Mru;

impl Eviction for Mru {
    fn victim(&self, list: &RecencyList) -> Option<u32> {
        list.most_recent()
    }
    fn reinsert_as_victim<L: Links + ?Sized>(
        &self,
        list: &mut RecencyList,
        links: &mut L,
        idx: u32,
    ) {
        list.push_front(links, idx);
    }
}
