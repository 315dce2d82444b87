//! The in-process answer cache (L1): whole answers by key, bounded by bytes, least recently used
//! evicted first. An entry is fresh for its TTL and then kept as a stale copy for a while longer,
//! served only when the downstream is unreachable (the circuit breaker is open).
//!
//! Ages are `tokio::time::Instant`s, so the simulator and paused-clock tests run them in virtual
//! time. Eviction order comes from a sequence number, never from the hash map's order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Bytes counted per entry on top of its key and body (map slots, the order index).
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Within its TTL.
    Fresh(Bytes),
    /// Past its TTL, within the stale window.
    Stale(Bytes),
    /// Nothing usable.
    Miss,
}

struct Entry {
    body: Bytes,
    fresh_until: Instant,
    stale_until: Instant,
    sequence: u64,
}

/// A bytes-bounded LRU of answers with a TTL and a stale window.
pub struct AnswerCache {
    entries: HashMap<String, Entry>,
    /// Sequence number of last use to key: the first entry is the least recently used.
    order: BTreeMap<u64, String>,
    sequence_next: u64,
    size_bytes: usize,
    size_bytes_max: usize,
    evicted_count: u64,
}

impl AnswerCache {
    /// An empty cache holding at most `size_bytes_max` bytes.
    pub fn new(size_bytes_max: usize) -> AnswerCache {
        AnswerCache {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            sequence_next: 0,
            size_bytes: 0,
            size_bytes_max,
            evicted_count: 0,
        }
    }

    /// The entry for `key` as of `now`; a use makes it the most recently used.
    pub fn get(&mut self, key: &str, now: Instant) -> Lookup {
        let sequence = self.next_sequence();
        let Some(entry) = self.entries.get_mut(key) else { return Lookup::Miss };
        if now >= entry.stale_until {
            self.remove(key);
            return Lookup::Miss;
        }
        self.order.remove(&entry.sequence);
        entry.sequence = sequence;
        self.order.insert(sequence, key.to_string());
        if now < entry.fresh_until {
            Lookup::Fresh(entry.body.clone())
        } else {
            Lookup::Stale(entry.body.clone())
        }
    }

    /// Stores `body` under `key`, fresh for `ttl` and then stale for `stale_for`. A body larger
    /// than the whole cache is not stored.
    pub fn insert(&mut self, key: String, body: Bytes, now: Instant, ttl: Duration, stale_for: Duration) {
        let size = entry_size(&key, &body);
        self.remove(&key);
        if size > self.size_bytes_max {
            return;
        }
        while self.size_bytes + size > self.size_bytes_max {
            let Some((_, oldest)) = self.order.pop_first() else { break };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.size_bytes -= entry_size(&oldest, &entry.body);
                self.evicted_count += 1;
            }
        }
        let sequence = self.next_sequence();
        self.order.insert(sequence, key.clone());
        self.size_bytes += size;
        let fresh_until = now + ttl;
        self.entries.insert(key, Entry { body, fresh_until, stale_until: fresh_until + stale_for, sequence });
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, as counted against the bound.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Entries dropped to make room since the start.
    pub fn evicted_count(&self) -> u64 {
        self.evicted_count
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.sequence);
            self.size_bytes -= entry_size(key, &entry.body);
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence_next += 1;
        self.sequence_next
    }
}

fn entry_size(key: &str, body: &Bytes) -> usize {
    key.len() + body.len() + ENTRY_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);
    const STALE: Duration = Duration::from_secs(300);

    #[test]
    fn fresh_then_stale_then_gone() {
        let start = Instant::now();
        let mut cache = AnswerCache::new(1 << 20);
        cache.insert("q".into(), Bytes::from_static(b"answer"), start, TTL, STALE);
        assert_eq!(cache.get("q", start + Duration::from_secs(4)), Lookup::Fresh(Bytes::from_static(b"answer")));
        assert_eq!(cache.get("q", start + Duration::from_secs(5)), Lookup::Stale(Bytes::from_static(b"answer")));
        assert_eq!(cache.get("q", start + Duration::from_secs(305)), Lookup::Miss);
        assert!(cache.is_empty());
        assert_eq!(cache.size_bytes(), 0);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let now = Instant::now();
        let body = Bytes::from(vec![b'x'; 100]);
        let one_entry = entry_size("a", &body);
        let mut cache = AnswerCache::new(one_entry * 2);
        cache.insert("a".into(), body.clone(), now, TTL, STALE);
        cache.insert("b".into(), body.clone(), now, TTL, STALE);
        assert!(matches!(cache.get("a", now), Lookup::Fresh(_))); // b is now the oldest use
        cache.insert("c".into(), body.clone(), now, TTL, STALE);
        assert_eq!(cache.get("b", now), Lookup::Miss);
        assert!(matches!(cache.get("a", now), Lookup::Fresh(_)));
        assert!(matches!(cache.get("c", now), Lookup::Fresh(_)));
        assert_eq!(cache.evicted_count(), 1);
        assert_eq!(cache.size_bytes(), one_entry * 2);
    }

    #[test]
    fn replacing_and_oversized_bodies_keep_the_count_right() {
        let now = Instant::now();
        let mut cache = AnswerCache::new(1_000);
        cache.insert("a".into(), Bytes::from(vec![0; 100]), now, TTL, STALE);
        cache.insert("a".into(), Bytes::from(vec![0; 200]), now, TTL, STALE);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.size_bytes(), 1 + 200 + ENTRY_OVERHEAD_BYTES);
        cache.insert("a".into(), Bytes::from(vec![0; 2_000]), now, TTL, STALE);
        assert!(cache.is_empty());
        assert_eq!(cache.size_bytes(), 0);
    }
}
