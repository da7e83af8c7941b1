//! The verdicts already sent, so that an HTLC LND replays gets the same answer.
//!
//! Bounded: when full, the oldest entry is forgotten. LND replays only HTLCs it still
//! holds, which htlcgate answered at most `budget` ago unless LND was disconnected;
//! the bound (`chain.replay_cache`, default 100,000) is far above the number of
//! HTLCs a node holds at once.

use std::collections::{HashMap, VecDeque};

use crate::circuit::CircuitKey;
use crate::verdict::Verdict;

/// A bounded map from circuit key to the verdict sent for it.
#[derive(Debug)]
pub struct ReplayCache {
    /// The verdicts.
    map: HashMap<CircuitKey, Verdict>,
    /// Insertion order, for eviction.
    order: VecDeque<CircuitKey>,
    /// Most entries kept.
    capacity: usize,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` verdicts.
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The verdict sent for `key`, if remembered.
    pub fn get(&self, key: &CircuitKey) -> Option<&Verdict> {
        self.map.get(key)
    }

    /// Remembers a verdict; the first verdict for a key is kept (a key is decided
    /// once), and the oldest entry goes when full.
    pub fn insert(&mut self, key: CircuitKey, verdict: Verdict) {
        if self.map.contains_key(&key) {
            return;
        }
        if self.map.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        self.map.insert(key, verdict);
        self.order.push_back(key);
    }

    /// Number of remembered verdicts.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::FailCode;

    fn k(h: u64) -> CircuitKey {
        CircuitKey {
            chan_id: 1,
            htlc_id: h,
        }
    }

    #[test]
    fn the_first_verdict_for_a_key_is_kept() {
        let mut c = ReplayCache::new(10);
        c.insert(k(1), Verdict::Resume);
        c.insert(k(1), Verdict::Fail(FailCode::TemporaryChannelFailure));
        assert_eq!(c.get(&k(1)), Some(&Verdict::Resume));
    }

    #[test]
    fn the_oldest_entry_goes_when_full() {
        let mut c = ReplayCache::new(2);
        c.insert(k(1), Verdict::Resume);
        c.insert(k(2), Verdict::Resume);
        c.insert(k(3), Verdict::Resume);
        assert_eq!(c.len(), 2);
        assert!(c.get(&k(1)).is_none());
        assert!(c.get(&k(3)).is_some());
    }
}
