//! The per-target scrape cache (Prometheus scrape/scrape.go `scrapeCache`): the raw text of a
//! series as the target writes it (`name{labels}`, the bytes of the body) maps to the store's
//! [`SeriesRef`] and the marks of the scrapes that saw it. A known series is appended by
//! reference: no label parsing, no allocation, no hash of a label set, only a hash of its text.
//!
//! Texts whose series `metric_relabel_configs` dropped are remembered too, in a map of their own
//! (upstream's `droppedSeries`, `addDropped`): a known dropped text costs one lookup and no
//! relabeling on later scrapes. The map is only consulted after a miss, and only when it holds
//! something, so a job without metric relabeling pays nothing for it on its hits. Dropped texts
//! take no part in staleness and are evicted as the others, one scrape after their last sighting.
//!
//! Staleness is tracked by reference through the marks, not by label sets: an entry remembers
//! whether the current scrape and the previous successful one appended it at the scrape's
//! timestamp. When a scrape ends, every entry tracked last time and not this time gets a stale
//! marker (all of them when the scrape failed), then entries the scrape did not see are evicted,
//! so an entry lives one scrape past its last sighting, as upstream's `iterDone`.
//!
//! Bound: after each scrape the cache holds only the series texts that scrape saw, so at most
//! `sample_limit` kept entries when one is set (lookups stop at the limit) and in all at most one
//! per line of a body, whose size the body size limit bounds (64 MiB by default): key bytes never
//! exceed the body size. During a scrape it holds the previous scrape's entries plus the new ones.
//!
//! Hashing: the texts are hashed a word at a time with a keyed folded multiply
//! ([`SeriesTextHasher`]), several times cheaper than SipHash on 50 to 100 byte keys; the key is
//! drawn per target from the seeded random streams, so a target cannot choose colliding texts.
//!
//! Determinism: the map is for lookups only; stale markers are emitted sorted by reference, so
//! no hash order reaches the store. Concurrency: owned by one target's loop.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::model::SeriesRef;

/// Appended at the scrape's timestamp in the current scrape.
const TRACKED_NOW: u8 = 1;
/// Appended at the scrape's timestamp in the previous successful scrape.
const TRACKED_BEFORE: u8 = 2;

/// What the cache knows of one series text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    /// The store's reference for the series' final labels.
    pub series_ref: SeriesRef,
    /// Iteration of the last scrape whose body held this text.
    seen_iteration: u64,
    /// `TRACKED_NOW` | `TRACKED_BEFORE`.
    staleness_marks: u8,
}

impl CacheEntry {
    /// The store's reference.
    pub fn series_ref(&self) -> SeriesRef {
        self.series_ref
    }

    /// Records that the current scrape appended the entry's series under `series_ref`, at the
    /// scrape's timestamp when `tracks_staleness` (explicit timestamps take no part, as
    /// upstream). A new reference (the store re-created the series) replaces the old one.
    pub fn appended(&mut self, series_ref: SeriesRef, tracks_staleness: bool) {
        self.series_ref = series_ref;
        if tracks_staleness {
            self.staleness_marks |= TRACKED_NOW;
        }
    }
}

/// How a lookup went; a found entry is handed out so the append updates it without a second
/// lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'c> {
    /// Known; the current scrape had not seen it yet.
    Hit(&'c mut CacheEntry),
    /// Known and already in the current body once (a duplicate line).
    Repeated(&'c mut CacheEntry),
    /// Known to be dropped by `metric_relabel_configs`: skip the sample.
    Dropped,
    /// Unknown: parse the labels, append by labels, then [`ScrapeCache::insert`].
    Miss,
}

/// One target's cache. See the module doc.
#[derive(Debug)]
pub struct ScrapeCache {
    /// Number of the current scrape.
    iteration: u64,
    // Lookup only; never iterated into output (see `end_scrape`).
    entries: HashMap<Box<str>, CacheEntry, SeriesTextHashing>,
    /// Texts relabeling dropped -> iteration of the last scrape whose body held them.
    dropped: HashMap<Box<str>, u64, SeriesTextHashing>,
}

impl ScrapeCache {
    /// An empty cache whose hash is keyed with `hash_key`.
    pub fn new(hash_key: u64) -> Self {
        let hashing = SeriesTextHashing { key: hash_key };
        ScrapeCache { iteration: 0, entries: HashMap::with_hasher(hashing), dropped: HashMap::with_hasher(hashing) }
    }

    /// Entries held for appended series.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Texts held as dropped by relabeling.
    pub fn dropped_len(&self) -> usize {
        self.dropped.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.dropped.is_empty()
    }

    /// The reference cached for `series`, if any, without marking anything.
    pub fn series_ref(&self, series: &str) -> Option<SeriesRef> {
        self.entries.get(series).map(|entry| entry.series_ref)
    }

    /// Whether `series` is known to be dropped by relabeling, without marking anything.
    pub fn is_dropped(&self, series: &str) -> bool {
        !self.dropped.is_empty() && self.dropped.contains_key(series)
    }

    /// Looks `series` up and marks it seen by the current scrape.
    pub fn get(&mut self, series: &str) -> Lookup<'_> {
        let iteration = self.iteration;
        match self.entries.get_mut(series) {
            Some(entry) if entry.seen_iteration == iteration => Lookup::Repeated(entry),
            Some(entry) => {
                entry.seen_iteration = iteration;
                Lookup::Hit(entry)
            }
            // Without metric relabeling nothing is ever dropped: no second lookup.
            None if self.dropped.is_empty() => Lookup::Miss,
            None => match self.dropped.get_mut(series) {
                Some(seen_iteration) => {
                    *seen_iteration = iteration;
                    Lookup::Dropped
                }
                None => Lookup::Miss,
            },
        }
    }

    /// Adds a series the current scrape appended for the first time (after a [`Lookup::Miss`]).
    pub fn insert(&mut self, series: &str, series_ref: SeriesRef, tracks_staleness: bool) {
        let staleness_marks = if tracks_staleness { TRACKED_NOW } else { 0 };
        let entry = CacheEntry { series_ref, seen_iteration: self.iteration, staleness_marks };
        self.entries.insert(series.into(), entry);
    }

    /// Remembers that relabeling dropped `series` (after a [`Lookup::Miss`]), so later lookups
    /// answer [`Lookup::Dropped`].
    pub fn insert_dropped(&mut self, series: &str) {
        self.dropped.insert(series.into(), self.iteration);
    }

    /// Ends the current scrape: calls `mark_stale(series_ref, series_text)` for every series
    /// the previous successful scrape appended at its timestamp and this one did not (every such
    /// series when `succeeded` is false: a failed scrape appended nothing), in reference order;
    /// then evicts the entries this scrape did not see and starts the next iteration.
    pub fn end_scrape(&mut self, succeeded: bool, mut mark_stale: impl FnMut(SeriesRef, &str)) {
        let mut stale: Vec<(SeriesRef, &str)> = self
            .entries
            .iter()
            .filter(|(_, entry)| {
                let tracked_now = succeeded && entry.staleness_marks & TRACKED_NOW != 0;
                entry.staleness_marks & TRACKED_BEFORE != 0 && !tracked_now
            })
            .map(|(series, entry)| (entry.series_ref, &**series))
            .collect();
        stale.sort_unstable();
        for (series_ref, series) in stale {
            mark_stale(series_ref, series);
        }
        let iteration = self.iteration;
        self.entries.retain(|_, entry| {
            let tracked_now = succeeded && entry.staleness_marks & TRACKED_NOW != 0;
            entry.staleness_marks = if tracked_now { TRACKED_BEFORE } else { 0 };
            entry.seen_iteration == iteration
        });
        self.dropped.retain(|_, seen_iteration| *seen_iteration == iteration);
        self.iteration += 1;
    }
}

/// Builds [`SeriesTextHasher`]s with one key.
#[derive(Clone, Copy, Debug)]
pub struct SeriesTextHashing {
    key: u64,
}

/// A keyed hash for short byte strings: each 8-byte little-endian word is folded into the state
/// with a 64x64->128-bit multiply whose halves are xored (the mixing step of foldhash and
/// wyhash). Not a stable or cryptographic hash: only for in-memory lookups.
#[derive(Clone, Copy, Debug)]
pub struct SeriesTextHasher {
    state: u64,
    key: u64,
}

/// Odd constants from the digits of pi, as foldhash uses.
const HASH_MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;
const HASH_FINISH: u64 = 0x1319_8a2e_0370_7344;

fn folded_multiply(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

impl BuildHasher for SeriesTextHashing {
    type Hasher = SeriesTextHasher;

    fn build_hasher(&self) -> SeriesTextHasher {
        SeriesTextHasher { state: self.key, key: self.key ^ HASH_MULTIPLIER }
    }
}

impl Hasher for SeriesTextHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.state;
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word = <[u8; 8]>::try_from(word).map(u64::from_le_bytes).unwrap_or(0);
            state = folded_multiply(state ^ word, self.key);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut padded = [0_u8; 8];
            padded[..rest.len()].copy_from_slice(rest);
            state = folded_multiply(state ^ u64::from_le_bytes(padded), self.key ^ rest.len() as u64);
        }
        self.state = state;
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.state ^ HASH_FINISH, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs scrapes over one cache: each is (series texts with explicit timestamps marked by a
    /// leading `@`, succeeded); returns per scrape the stale texts and the cache size after.
    fn run(scrapes: &[(&[&str], bool)]) -> Vec<(Vec<String>, usize)> {
        let mut cache = ScrapeCache::new(7);
        let mut next_ref = 1;
        let mut out = Vec::new();
        for (series_list, succeeded) in scrapes {
            for series in series_list.iter() {
                let (text, tracks) = match series.strip_prefix('@') {
                    Some(text) => (text, false),
                    None => (*series, true),
                };
                match cache.get(text) {
                    Lookup::Hit(entry) => entry.appended(entry.series_ref(), tracks),
                    Lookup::Repeated(_) | Lookup::Dropped => {}
                    Lookup::Miss => {
                        cache.insert(text, SeriesRef(next_ref), tracks);
                        next_ref += 1;
                    }
                }
            }
            let mut stale = Vec::new();
            cache.end_scrape(*succeeded, |_, series| stale.push(series.to_string()));
            out.push((stale, cache.len()));
        }
        out
    }

    #[track_caller]
    fn check(scrapes: &[(&[&str], bool)], expected: &[(&[&str], usize)]) {
        let got = run(scrapes);
        let want: Vec<(Vec<String>, usize)> = expected
            .iter()
            .map(|(stale, size)| (stale.iter().map(|series| series.to_string()).collect(), *size))
            .collect();
        assert_eq!(got, want, "{scrapes:?}");
    }

    #[test]
    fn hits_misses_staleness_and_eviction() {
        // A vanished series is marked once, then evicted.
        check(&[(&["a", "b"], true), (&["a"], true), (&["a"], true)], &[(&[], 2), (&["b"], 1), (&[], 1)]);
        // A repeated line counts once; a series that comes back is new again.
        check(&[(&["a", "a", "b"], true), (&["a"], true), (&["a", "b"], true)], &[(&[], 2), (&["b"], 1), (&[], 2)]);
        // Explicit timestamps take no part in staleness, but stay cached while seen.
        check(&[(&["@a", "b"], true), (&[], true)], &[(&[], 2), (&["b"], 0)]);
        // A series that switches to an explicit timestamp is stale from the scrape's view.
        check(&[(&["a"], true), (&["@a"], true)], &[(&[], 1), (&["a"], 1)]);
        // A failed scrape marks everything of the last success, keeps what it saw, tracks nothing.
        check(
            &[(&["a", "b", "c"], true), (&["a", "x"], false), (&["a"], true), (&[], true)],
            &[(&[], 3), (&["a", "b", "c"], 2), (&[], 1), (&["a"], 0)],
        );
        // Two failures in a row mark nothing the second time.
        check(&[(&["a"], true), (&[], false), (&[], false)], &[(&[], 1), (&["a"], 0), (&[], 0)]);
    }

    #[test]
    fn series_text_hash_depends_on_key_length_and_every_byte() {
        let hash = |key: u64, text: &str| SeriesTextHashing { key }.hash_one(text);
        let text = "http_requests_total{code=\"200\",handler=\"/api/v1/query\",method=\"get\"}";
        assert_eq!(hash(1, text), hash(1, text));
        assert_ne!(hash(1, text), hash(2, text));
        let mut hashes: Vec<u64> = (0..text.len()).map(|cut| hash(1, &text[..cut])).collect();
        for index in 0..text.len() {
            let mut changed = text.as_bytes().to_vec();
            changed[index] ^= 1;
            hashes.push(hash(1, std::str::from_utf8(&changed).unwrap()));
        }
        let count = hashes.len();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), count, "every prefix and every one-bit change hashes apart");
        assert_ne!(hash(1, "a\0"), hash(1, "a"), "padding does not hide a trailing zero byte");
    }

    #[test]
    fn stale_markers_come_in_reference_order_and_refs_can_change() {
        let mut cache = ScrapeCache::new(7);
        for (index, series) in ["z", "y", "x", "w"].iter().enumerate() {
            assert_eq!(cache.get(series), Lookup::Miss);
            cache.insert(series, SeriesRef(10 - index as u64), true);
        }
        cache.end_scrape(true, |_, _| unreachable!("nothing is stale after the first scrape"));
        match cache.get("y") {
            Lookup::Hit(entry) => {
                assert_eq!(entry.series_ref(), SeriesRef(9));
                entry.appended(SeriesRef(42), true);
            }
            other => panic!("expected a hit, got {other:?}"),
        }
        assert!(matches!(cache.get("y"), Lookup::Repeated(entry) if entry.series_ref() == SeriesRef(42)));
        let mut stale = Vec::new();
        cache.end_scrape(true, |series_ref, series| stale.push((series_ref.0, series.to_string())));
        assert_eq!(stale, vec![(7, "w".to_string()), (8, "x".to_string()), (10, "z".to_string())]);
        assert_eq!(cache.series_ref("y"), Some(SeriesRef(42)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn dropped_texts_are_answered_without_staleness_and_evicted_when_unseen() {
        let mut cache = ScrapeCache::new(7);
        assert_eq!(cache.get("kept"), Lookup::Miss);
        cache.insert("kept", SeriesRef(1), true);
        assert_eq!(cache.get("go_gc"), Lookup::Miss);
        cache.insert_dropped("go_gc");
        assert_eq!(cache.get("go_gc"), Lookup::Dropped, "a repeated dropped line is dropped again");
        cache.end_scrape(true, |_, _| unreachable!());
        assert_eq!((cache.len(), cache.dropped_len()), (1, 1));
        assert_eq!(cache.get("go_gc"), Lookup::Dropped);
        match cache.get("kept") {
            Lookup::Hit(entry) => entry.appended(SeriesRef(1), true),
            other => panic!("expected a hit, got {other:?}"),
        }
        cache.end_scrape(true, |_, _| unreachable!("both were seen"));
        assert_eq!((cache.len(), cache.dropped_len()), (1, 1));
        // Neither is seen: the kept series gets its marker, the dropped text never one; both go.
        let mut stale = Vec::new();
        cache.end_scrape(true, |_, series| stale.push(series.to_string()));
        assert_eq!(stale, ["kept"]);
        assert!(cache.is_empty());
        assert_eq!(cache.get("go_gc"), Lookup::Miss);
    }
}
