//! Request tags for a client session: each request in flight needs a distinct tag, and
//! Finagle reuses the smallest free one so tags stay short-lived and dense.

use std::collections::BTreeSet;

use crate::codec::{MAX_TAG, MIN_REQUEST_TAG};

/// Hands out tags from 2 up to 2^23 − 1, always the lowest free one.
#[derive(Clone, Debug)]
pub struct TagAllocator {
    /// Every tag at or above `next` (up to `max`) is free.
    next: u32,
    /// Free tags below `next`.
    free: BTreeSet<u32>,
    max: u32,
}

impl Default for TagAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl TagAllocator {
    /// All request tags free.
    pub fn new() -> Self {
        Self::with_max(MAX_TAG)
    }

    /// Tags from 2 up to `max` only (clamped to 2..=2^23 − 1); for tests of exhaustion.
    pub fn with_max(max: u32) -> Self {
        TagAllocator {
            next: MIN_REQUEST_TAG,
            free: BTreeSet::new(),
            max: max.clamp(MIN_REQUEST_TAG, MAX_TAG),
        }
    }

    /// The lowest free tag, now taken; `None` when all are in use.
    pub fn allocate(&mut self) -> Option<u32> {
        if let Some(tag) = self.free.pop_first() {
            return Some(tag);
        }
        if self.next > self.max {
            return None;
        }
        let tag = self.next;
        self.next += 1;
        Some(tag)
    }

    /// Frees `tag`; false (and no change) if it was not taken.
    pub fn release(&mut self, tag: u32) -> bool {
        if !(MIN_REQUEST_TAG..self.next).contains(&tag) || self.free.contains(&tag) {
            return false;
        }
        if tag + 1 == self.next {
            self.next = tag;
            while self.next > MIN_REQUEST_TAG && self.free.remove(&(self.next - 1)) {
                self.next -= 1;
            }
        } else {
            self.free.insert(tag);
        }
        true
    }

    /// Whether `tag` is taken.
    pub fn is_allocated(&self, tag: u32) -> bool {
        (MIN_REQUEST_TAG..self.next).contains(&tag) && !self.free.contains(&tag)
    }

    /// How many tags are taken.
    pub fn in_use(&self) -> usize {
        (self.next - MIN_REQUEST_TAG) as usize - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_at_two_and_reuses_the_lowest() {
        let mut t = TagAllocator::new();
        assert_eq!(t.allocate(), Some(2));
        assert_eq!(t.allocate(), Some(3));
        assert_eq!(t.allocate(), Some(4));
        assert!(t.release(3));
        assert!(!t.release(3));
        assert!(!t.release(1));
        assert!(!t.release(99));
        assert_eq!(t.allocate(), Some(3));
        assert!(t.release(4));
        assert!(t.release(2));
        assert_eq!(t.allocate(), Some(2));
        assert_eq!(t.allocate(), Some(4));
        assert_eq!(t.in_use(), 3);
    }

    #[test]
    fn exhaustion_and_recovery() {
        let mut t = TagAllocator::with_max(5);
        assert_eq!(
            (0..4).map(|_| t.allocate()).collect::<Vec<_>>(),
            vec![Some(2), Some(3), Some(4), Some(5)]
        );
        assert_eq!(t.allocate(), None);
        assert!(t.release(4));
        assert_eq!(t.allocate(), Some(4));
        assert_eq!(t.allocate(), None);
    }

    #[test]
    fn the_full_range_is_23_bits() {
        let mut t = TagAllocator::new();
        t.next = MAX_TAG;
        assert_eq!(t.allocate(), Some(MAX_TAG));
        assert_eq!(t.allocate(), None);
    }

    proptest! {
        /// Against a model: the allocator always hands out the lowest tag not in use.
        #[test]
        fn lowest_free_against_a_model(ops in proptest::collection::vec((any::<bool>(), 0usize..64), 1..400)) {
            let mut t = TagAllocator::with_max(40);
            let mut used = std::collections::BTreeSet::new();
            for (alloc, pick) in ops {
                if alloc || used.is_empty() {
                    let expect = (2..=40).find(|x| !used.contains(x));
                    let got = t.allocate();
                    prop_assert_eq!(got, expect);
                    if let Some(tag) = got { used.insert(tag); }
                } else {
                    let tag = *used.iter().nth(pick % used.len()).unwrap();
                    prop_assert!(t.release(tag));
                    used.remove(&tag);
                }
                prop_assert_eq!(t.in_use(), used.len());
                for tag in 0..45 {
                    prop_assert_eq!(t.is_allocated(tag), used.contains(&tag));
                }
            }
        }
    }
}
