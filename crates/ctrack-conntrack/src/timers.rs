//! The entries' timers: one a live entry, in a binary min-heap ordered by deadline and then
//! entry index, each entry knowing where its timer sits. A deadline brought nearer (a TCP
//! handshake's or close's shorter timeout) moves the entry's timer up instead of adding a
//! second one.
//!
//! A deadline moved later leaves the timer where it is: the timer fires first, and is then
//! set for the later deadline ([`Timers::postpone_first`]). A packet that refreshes its
//! connection's timeout touches no timer.
//!
//! A destroyed entry's timer is disowned, not taken out: the entry forgets where it is, and
//! the timer stays in the heap until it comes first and is dropped. Taking it out of the
//! middle of the heap would cost a sift through lines far apart for every entry early drop
//! evicts. A timer is the entry's own while the entry's place names it; one that moves
//! updates the place only then, so a disowned timer never moves the place of a new entry
//! at the same index.

use crate::huge::Slab;

/// A timer: when, and the entry index, in 12 bytes (a `(u64, u32)` takes 16), ordered by
/// time and then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at_high: u32,
    at_low: u32,
    idx: u32,
}

impl Timer {
    fn new(at: u64, idx: u32) -> Timer {
        Timer {
            at_high: (at >> 32) as u32,
            at_low: at as u32,
            idx,
        }
    }

    fn at(self) -> u64 {
        u64::from(self.at_high) << 32 | u64::from(self.at_low)
    }
}

/// An entry without a timer.
const NONE: u32 = u32::MAX;

/// The timers of a table's entries.
#[derive(Default)]
pub(crate) struct Timers {
    heap: Vec<Timer>,
    /// For each entry index, where its timer is in `heap` (`NONE` for none).
    place: Slab<u32>,
}

impl Timers {
    /// The first timer that is an entry's own: when, and its entry. Disowned timers that
    /// come before it are dropped.
    pub(crate) fn first(&mut self) -> Option<(u64, u32)> {
        while let Some(&t) = self.heap.first() {
            if self.place[t.idx as usize] == 0 {
                return Some((t.at(), t.idx));
            }
            let last = self.heap.pop().expect("not empty");
            if !self.heap.is_empty() {
                self.heap[0] = last;
                if self.place[last.idx as usize] as usize == self.heap.len() {
                    self.place[last.idx as usize] = 0;
                }
                self.down(0);
            }
        }
        None
    }

    /// When the first timer in the heap is set for, disowned or not: no later than the next
    /// entry's.
    pub(crate) fn next_at(&self) -> Option<u64> {
        self.heap.first().map(|t| t.at())
    }

    /// When the entry's timer is set for, if it has one.
    pub(crate) fn at(&self, idx: u32) -> Option<u64> {
        match self.place.get(idx as usize) {
            Some(&p) if p != NONE => Some(self.heap[p as usize].at()),
            _ => None,
        }
    }

    /// Sets the entry's timer for `at`, unless it is set for then or sooner already.
    pub(crate) fn set_at_most(&mut self, idx: u32, at: u64) {
        while self.place.len() <= idx as usize {
            self.place.push(NONE);
        }
        let p = self.place[idx as usize];
        if p == NONE {
            self.heap.push(Timer::new(at, idx));
            let last = self.heap.len() - 1;
            self.place[idx as usize] = last as u32;
            self.up(last);
        } else if at < self.heap[p as usize].at() {
            self.heap[p as usize] = Timer::new(at, idx);
            self.up(p as usize);
        }
    }

    /// Sets the first timer for a later time: its entry's deadline moved since it was set.
    pub(crate) fn postpone_first(&mut self, at: u64) {
        let Some(first) = self.heap.first_mut() else {
            return;
        };
        debug_assert!(at >= first.at(), "postponed to an earlier time");
        *first = Timer::new(at, first.idx);
        self.down(0);
    }

    /// Disowns the entry's timer, if it has one: it no longer fires for the entry.
    pub(crate) fn disown(&mut self, idx: u32) {
        if let Some(p) = self.place.get_mut(idx as usize) {
            *p = NONE;
        }
    }

    /// Timers in the heap, disowned ones included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.heap.len()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        // Each timer that moved: its entry's place follows it if it is the entry's own.
        // Both are judged before either place changes, as the two may be one entry's
        // disowned timer and its own.
        let (to_a, to_b) = (self.heap[a].idx as usize, self.heap[b].idx as usize);
        let (own_a, own_b) = (self.place[to_a] == b as u32, self.place[to_b] == a as u32);
        if own_a {
            self.place[to_a] = a as u32;
        }
        if own_b {
            self.place[to_b] = b as u32;
        }
    }

    fn up(&mut self, mut p: usize) {
        while p > 0 {
            let parent = (p - 1) / 2;
            if self.heap[parent] <= self.heap[p] {
                break;
            }
            self.swap(parent, p);
            p = parent;
        }
    }

    fn down(&mut self, mut p: usize) {
        loop {
            let (l, r) = (2 * p + 1, 2 * p + 2);
            let mut least = p;
            if l < self.heap.len() && self.heap[l] < self.heap[least] {
                least = l;
            }
            if r < self.heap.len() && self.heap[r] < self.heap[least] {
                least = r;
            }
            if least == p {
                return;
            }
            self.swap(p, least);
            p = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Set(u32, u64),
        Remove(u32),
        Postpone(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..40, 0u64..100).prop_map(|(i, at)| Op::Set(i, at)),
            (0u32..40).prop_map(Op::Remove),
            (0u64..100).prop_map(Op::Postpone),
        ]
    }

    proptest! {
        /// Any sequence of settings, disownings and postponements leaves the timers a plain
        /// map of entry to time would hold, the first the least (time, index) of them.
        #[test]
        fn timers_agree_with_a_plain_map(ops in proptest::collection::vec(op(), 0..300)) {
            let mut t = Timers::default();
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Set(i, at) => {
                        t.set_at_most(i, at);
                        let e = model.entry(i).or_insert(at);
                        *e = (*e).min(at);
                    }
                    Op::Remove(i) => {
                        t.disown(i);
                        model.remove(&i);
                    }
                    Op::Postpone(by) => {
                        if let Some((at, i)) = t.first() {
                            t.postpone_first(at + by);
                            model.insert(i, at + by);
                        }
                    }
                }
                let least = model.iter().map(|(&i, &at)| (at, i)).min();
                prop_assert_eq!(t.first(), least);
                prop_assert!(t.held() >= model.len());
                for i in 0..40 {
                    prop_assert_eq!(t.at(i), model.get(&i).copied());
                }
            }
        }
    }

    #[test]
    fn equal_times_come_out_in_index_order() {
        let mut t = Timers::default();
        for i in [5, 1, 3] {
            t.set_at_most(i, 7);
        }
        let mut order = Vec::new();
        while let Some((_, i)) = t.first() {
            order.push(i);
            t.disown(i);
        }
        assert_eq!(order, [1, 3, 5]);
        assert_eq!(t.held(), 0, "disowned timers dropped as they came first");
    }

    #[test]
    fn a_disowned_timer_does_not_fire_for_a_new_entry_at_its_index() {
        let mut t = Timers::default();
        t.set_at_most(4, 10);
        t.set_at_most(2, 20);
        t.disown(4);
        // A new entry at index 4, later than the disowned timer.
        t.set_at_most(4, 30);
        assert_eq!(t.first(), Some((20, 2)));
        assert_eq!(t.at(4), Some(30));
        t.disown(2);
        assert_eq!(t.first(), Some((30, 4)));
    }
}
