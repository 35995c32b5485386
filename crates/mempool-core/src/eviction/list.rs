//! An intrusive doubly linked list whose links live in the pool's slots:
//! O(1) push, remove and move, and no cache miss beyond the slots themselves.

pub(crate) const NIL: u32 = u32::MAX;

/// The links a slot carries for the recency list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Link {
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) linked: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            prev: NIL,
            next: NIL,
            linked: false,
        }
    }
}

/// Storage of the links, indexed by slot.
pub(crate) trait Links {
    fn link(&self, idx: u32) -> Link;
    fn set_link(&mut self, idx: u32, link: Link);
    fn set_prev(&mut self, idx: u32, prev: u32);
    fn set_next(&mut self, idx: u32, next: u32);
}

#[cfg(test)]
impl Links for Vec<Link> {
    fn link(&self, idx: u32) -> Link {
        self.get(idx as usize).copied().unwrap_or_default()
    }
    fn set_link(&mut self, idx: u32, link: Link) {
        let need = idx as usize + 1;
        if self.len() < need {
            self.resize(need, Link::default());
        }
        self[idx as usize] = link;
    }
    fn set_prev(&mut self, idx: u32, prev: u32) {
        self[idx as usize].prev = prev;
    }
    fn set_next(&mut self, idx: u32, next: u32) {
        self[idx as usize].next = next;
    }
}

/// Slots linked most recent first: `head` is the most recently used.
pub(crate) struct RecencyList {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for RecencyList {
    fn default() -> Self {
        Self::new()
    }
}

impl RecencyList {
    pub(crate) fn new() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Links `idx` at the most-recent end.
    pub(crate) fn push_front<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        debug_assert!(!links.link(idx).linked);
        let old = self.head;
        links.set_link(
            idx,
            Link {
                prev: NIL,
                next: old,
                linked: true,
            },
        );
        if old != NIL {
            links.set_prev(old, idx);
        } else {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Links `idx` at the least-recent end.
    pub(crate) fn push_back<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        debug_assert!(!links.link(idx).linked);
        let old = self.tail;
        links.set_link(
            idx,
            Link {
                prev: old,
                next: NIL,
                linked: true,
            },
        );
        if old != NIL {
            links.set_next(old, idx);
        } else {
            self.head = idx;
        }
        self.tail = idx;
        self.len += 1;
    }

    /// Unlinks `idx`; returns whether it was linked.
    pub(crate) fn remove<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) -> bool {
        let Link { prev, next, linked } = links.link(idx);
        if !linked {
            return false;
        }
        if prev != NIL {
            links.set_next(prev, next);
        } else {
            self.head = next;
        }
        if next != NIL {
            links.set_prev(next, prev);
        } else {
            self.tail = prev;
        }
        links.set_link(idx, Link::default());
        self.len -= 1;
        true
    }

    /// Moves a linked `idx` to the most-recent end.
    pub(crate) fn touch<L: Links + ?Sized>(&mut self, links: &mut L, idx: u32) {
        if self.head != idx && self.remove(links, idx) {
            self.push_front(links, idx);
        }
    }

    pub(crate) fn most_recent(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    pub(crate) fn least_recent(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Indices from most to least recent (for tests; O(n)).
    #[cfg(test)]
    pub(crate) fn order<L: Links + ?Sized>(&self, links: &L) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len);
        let mut i = self.head;
        while i != NIL {
            v.push(i);
            i = links.link(i).next;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_touch_remove() {
        let mut links: Vec<Link> = Vec::new();
        let mut l = RecencyList::new();
        for i in 0..5 {
            l.push_front(&mut links, i);
        }
        assert_eq!(l.order(&links), [4, 3, 2, 1, 0]);
        l.touch(&mut links, 0);
        assert_eq!(l.order(&links), [0, 4, 3, 2, 1]);
        assert!(l.remove(&mut links, 3));
        assert!(!l.remove(&mut links, 3));
        assert_eq!(l.order(&links), [0, 4, 2, 1]);
        assert_eq!((l.most_recent(), l.least_recent()), (Some(0), Some(1)));
        l.push_back(&mut links, 3);
        assert_eq!(l.least_recent(), Some(3));
        for i in [0, 4, 2, 1, 3] {
            assert!(l.remove(&mut links, i));
        }
        assert_eq!(
            (l.len(), l.most_recent(), l.least_recent()),
            (0, None, None)
        );
    }
}
