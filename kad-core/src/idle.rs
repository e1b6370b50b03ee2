//! Giving memory back when a collection empties.
//!
//! A node spends most of its life idle, and a simulation holds a hundred thousand of them,
//! so what an idle node keeps matters. A `BTreeMap` keeps its last leaf (room for eleven
//! entries) after its last entry is removed: for the map of queries that is 3 KB a node.
//! A queue keeps whatever capacity its largest burst needed. These helpers drop both once
//! the collection is empty; the next use allocates again, once per burst.

use std::collections::VecDeque;

/// Replaces `c` (a map or a set) with a fresh, unallocated one when it is empty.
pub(crate) fn free_if_empty<C: Default>(c: &mut C)
where
    for<'a> &'a C: IntoIterator,
{
    if (&*c).into_iter().next().is_none() {
        *c = C::default();
    }
}

/// Frees a drained queue's buffer. Even the smallest buffer a `VecDeque` allocates (four
/// slots) costs a transmit queue 256 bytes and an event queue 480 for as long as the node
/// idles; freeing it costs one allocation per burst of output, against the encoding of
/// every datagram in that burst.
pub(crate) fn free_if_drained<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() > 0 {
        *q = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn an_emptied_map_is_replaced_and_a_drained_queue_shrinks() {
        let mut m: BTreeMap<u64, [u8; 256]> = BTreeMap::new();
        m.insert(1, [0; 256]);
        free_if_empty(&mut m);
        assert_eq!(m.len(), 1, "a map with an entry is left alone");
        m.remove(&1);
        free_if_empty(&mut m);
        assert!(m.is_empty());

        let mut q: VecDeque<u64> = (0..100).collect();
        q.clear();
        free_if_drained(&mut q);
        assert_eq!(q.capacity(), 0);
        let mut small: VecDeque<u64> = VecDeque::with_capacity(4);
        small.push_back(1);
        free_if_drained(&mut small);
        assert!(
            small.capacity() >= 1,
            "a queue that is not empty keeps its buffer"
        );
        small.pop_front();
        free_if_drained(&mut small);
        assert_eq!(small.capacity(), 0, "even a small buffer is given back");
    }
}
