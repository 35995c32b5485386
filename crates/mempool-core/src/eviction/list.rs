//! An intrusive doubly linked list over slot indices: O(1) push, remove, move.

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Link {
    prev: u32,
    next: u32,
    linked: bool,
}

/// Slots are linked most recent first: `head` is the most recently used.
#[derive(Default)]
pub(crate) struct RecencyList {
    links: Vec<Link>,
    head: u32,
    tail: u32,
    len: usize,
}

impl RecencyList {
    pub(crate) fn new() -> Self {
        Self {
            links: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn ensure(&mut self, idx: u32) {
        let need = idx as usize + 1;
        if self.links.len() < need {
            self.links.resize(
                need,
                Link {
                    prev: NIL,
                    next: NIL,
                    linked: false,
                },
            );
        }
    }

    pub(crate) fn contains(&self, idx: u32) -> bool {
        self.links.get(idx as usize).is_some_and(|l| l.linked)
    }

    /// Links `idx` at the most-recent end.
    pub(crate) fn push_front(&mut self, idx: u32) {
        self.ensure(idx);
        debug_assert!(!self.links[idx as usize].linked);
        let old = self.head;
        self.links[idx as usize] = Link {
            prev: NIL,
            next: old,
            linked: true,
        };
        if old != NIL {
            self.links[old as usize].prev = idx;
        } else {
            self.tail = idx;
        }
        self.head = idx;
        self.len += 1;
    }

    /// Links `idx` at the least-recent end.
    pub(crate) fn push_back(&mut self, idx: u32) {
        self.ensure(idx);
        debug_assert!(!self.links[idx as usize].linked);
        let old = self.tail;
        self.links[idx as usize] = Link {
            prev: old,
            next: NIL,
            linked: true,
        };
        if old != NIL {
            self.links[old as usize].next = idx;
        } else {
            self.head = idx;
        }
        self.tail = idx;
        self.len += 1;
    }

    /// Unlinks `idx`; returns whether it was linked.
    pub(crate) fn remove(&mut self, idx: u32) -> bool {
        if !self.contains(idx) {
            return false;
        }
        let Link { prev, next, .. } = self.links[idx as usize];
        if prev != NIL {
            self.links[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.links[idx as usize] = Link {
            prev: NIL,
            next: NIL,
            linked: false,
        };
        self.len -= 1;
        true
    }

    /// Moves a linked `idx` to the most-recent end.
    pub(crate) fn touch(&mut self, idx: u32) {
        if self.head != idx && self.remove(idx) {
            self.push_front(idx);
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

    /// Indices from most to least recent (for tests and debugging; O(n)).
    #[cfg(test)]
    pub(crate) fn order(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len);
        let mut i = self.head;
        while i != NIL {
            v.push(i);
            i = self.links[i as usize].next;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_touch_remove() {
        let mut l = RecencyList::new();
        for i in 0..5 {
            l.push_front(i);
        }
        assert_eq!(l.order(), [4, 3, 2, 1, 0]);
        l.touch(0);
        assert_eq!(l.order(), [0, 4, 3, 2, 1]);
        assert!(l.remove(3));
        assert!(!l.remove(3));
        assert_eq!(l.order(), [0, 4, 2, 1]);
        assert_eq!((l.most_recent(), l.least_recent()), (Some(0), Some(1)));
        l.push_back(3);
        assert_eq!(l.least_recent(), Some(3));
        for i in [0, 4, 2, 1, 3] {
            assert!(l.remove(i));
        }
        assert_eq!(
            (l.len(), l.most_recent(), l.least_recent()),
            (0, None, None)
        );
    }
}
