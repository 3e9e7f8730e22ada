//! In-process limiter state: sharded, bounded, idle keys evicted.
//!
//! Keys are stored as 64-bit keyed hashes, so an entry costs a few dozen bytes whatever the key.
//! An entry whose TAT has passed is equivalent to no entry, so eviction never changes a decision.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};

use super::gcra::{Gcra, Step, step};

const SHARDS: usize = 64;

pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<u64, i64>>>,
    penalties: Vec<Mutex<HashMap<u64, i64>>>,
    hasher: RandomState,
    max_per_shard: usize,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .finish()
    }
}

impl MemoryStore {
    /// `max_keys` bounds memory: past it, keys that are not tracked yet are not tracked (and
    /// allowed) until eviction makes room, so an address flood cannot grow the process.
    pub fn new(max_keys: usize) -> Self {
        let mk = || (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        MemoryStore {
            shards: mk(),
            penalties: mk(),
            hasher: RandomState::new(),
            max_per_shard: (max_keys / SHARDS).max(16),
        }
    }

    fn locate(&self, key: &str) -> (usize, u64) {
        let h = self.hasher.hash_one(key);
        ((h as usize) % SHARDS, h)
    }

    pub fn decide(
        &self,
        key: &str,
        penalty_key: &str,
        g: &Gcra,
        now: i64,
        cost: i64,
        penalty_factor: i64,
    ) -> Step {
        let cost = if self.penalized(penalty_key, now) {
            cost * penalty_factor
        } else {
            cost
        };
        let (shard, h) = self.locate(key);
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = step(g, map.get(&h).copied(), now, cost);
        if s.allowed {
            if map.len() >= self.max_per_shard && !map.contains_key(&h) {
                map.retain(|_, tat| *tat > now);
                if map.len() >= self.max_per_shard {
                    return s;
                }
            }
            map.insert(h, s.tat);
        }
        s
    }

    /// Counts a strike; when the strike budget is exhausted the key is penalized until `until`.
    pub fn strike(&self, key: &str, penalty_key: &str, g: &Gcra, now: i64, until: i64) -> bool {
        let s = self.decide(key, "", g, now, 1, 1);
        if s.allowed {
            return false;
        }
        let (shard, h) = self.locate(penalty_key);
        let mut map = self.penalties[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let newly = map.get(&h).is_none_or(|&u| u <= now);
        map.insert(h, until);
        newly
    }

    pub fn penalized(&self, penalty_key: &str, now: i64) -> bool {
        if penalty_key.is_empty() {
            return false;
        }
        let (shard, h) = self.locate(penalty_key);
        let map = self.penalties[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&h).is_some_and(|&until| until > now)
    }

    /// Drops every entry that no longer affects a decision, and gives memory back.
    pub fn evict_idle(&self, now: i64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter().chain(self.penalties.iter()) {
            let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, t| *t > now);
            removed += before - map.len();
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        for shard in self.shards.iter().chain(self.penalties.iter()) {
            shard.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_keys_are_evicted_and_memory_stays_bounded() {
        let store = MemoryStore::new(64 * 100);
        let g = Gcra::new(10, 60, 0);
        for i in 0..100_000 {
            store.decide(&format!("ip:{i}"), "", &g, 0, 1, 1);
        }
        assert!(store.len() <= 64 * 100, "bounded: {}", store.len());
        assert!(store.evict_idle(60_000_001) > 0);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn keys_are_independent_and_penalties_multiply_cost() {
        let store = MemoryStore::new(10_000);
        let g = Gcra::new(4, 40, 0);
        for _ in 0..4 {
            assert!(store.decide("a", "pa", &g, 0, 1, 4).allowed);
        }
        assert!(!store.decide("a", "pa", &g, 0, 1, 4).allowed);
        assert!(
            store.decide("b", "pb", &g, 0, 1, 4).allowed,
            "another key has its own budget"
        );
        let strikes = Gcra::new(1, 100, 0);
        assert!(!store.strike("s:c", "pc", &strikes, 0, 1_000_000));
        assert!(
            store.strike("s:c", "pc", &strikes, 0, 1_000_000),
            "second strike penalizes"
        );
        assert!(store.decide("c", "pc", &g, 0, 1, 4).allowed);
        assert!(
            !store.decide("c", "pc", &g, 0, 1, 4).allowed,
            "a penalized key pays 4x"
        );
        assert!(!store.penalized("pc", 1_000_000), "the penalty ends");
    }
}
