//! The in-memory head: series by label set, an inverted index from label pair to sorted postings,
//! and each series' samples in XOR chunks.
//!
//! Invariants: series references are assigned in increasing order and never reused, so every
//! postings list is sorted by appending; each series' samples are in strictly increasing time
//! order. Concurrency: owned by the database state, used under its lock.

use std::collections::{BTreeMap, HashMap};

use super::chunk::XorChunk;
use super::Series;
use crate::model::{Labels, MatchKind, Matcher, Sample, SeriesRef};

/// Result of checking a sample against a series' newest sample (Prometheus
/// tsdb/head_append.go `appendable`).
#[derive(Debug, PartialEq, Eq)]
pub enum Appendability {
    /// Newer than anything stored.
    Append,
    /// Same timestamp and bit-identical value: accepted, stored once.
    Duplicate,
    /// Older than the newest sample.
    OutOfOrder {
        /// Newest stored timestamp.
        last_timestamp_ms: i64,
    },
    /// Same timestamp, different value.
    DuplicateTimestamp,
}

/// Checks `(timestamp_ms, value)` against the newest sample `last`.
pub fn appendability(last: Option<(i64, u64)>, timestamp_ms: i64, value: f64) -> Appendability {
    match last {
        None => Appendability::Append,
        Some((last_ms, _)) if timestamp_ms > last_ms => Appendability::Append,
        Some((last_ms, last_bits)) if timestamp_ms == last_ms => {
            if last_bits == value.to_bits() {
                Appendability::Duplicate
            } else {
                Appendability::DuplicateTimestamp
            }
        }
        Some((last_ms, _)) => Appendability::OutOfOrder { last_timestamp_ms: last_ms },
    }
}

struct MemSeries {
    labels: Labels,
    chunks: Vec<XorChunk>,
    /// Newest sample: timestamp and value bits.
    last: Option<(i64, u64)>,
}

/// Series storage.
pub struct Head {
    series: BTreeMap<SeriesRef, MemSeries>,
    // Lookup only; never iterated, so hash order cannot leak.
    refs_by_labels: HashMap<Labels, SeriesRef>,
    postings: BTreeMap<(String, String), Vec<SeriesRef>>,
    next_ref: u64,
    chunk_sample_count_max: usize,
    chunk_count: u64,
}

impl Head {
    /// An empty head cutting chunks at `chunk_sample_count_max` samples.
    pub fn new(chunk_sample_count_max: usize) -> Self {
        assert!(chunk_sample_count_max > 0 && chunk_sample_count_max < usize::from(u16::MAX));
        Head {
            series: BTreeMap::new(),
            refs_by_labels: HashMap::new(),
            postings: BTreeMap::new(),
            next_ref: 1,
            chunk_sample_count_max,
            chunk_count: 0,
        }
    }

    /// Reference of the series with exactly `labels`.
    pub fn series_ref(&self, labels: &Labels) -> Option<SeriesRef> {
        self.refs_by_labels.get(labels).copied()
    }

    /// The reference the next new series will get.
    pub fn next_ref(&self) -> SeriesRef {
        SeriesRef(self.next_ref)
    }

    /// Skips `count` references: a commit that failed may have logged series records for them,
    /// so they must never name other labels.
    pub fn skip_refs(&mut self, count: u64) {
        self.next_ref += count;
    }

    /// Makes sure references up to `series_ref` are never handed out again.
    pub fn skip_refs_through(&mut self, series_ref: SeriesRef) {
        self.next_ref = self.next_ref.max(series_ref.0 + 1);
    }

    /// Newest sample of a series.
    pub fn last_sample(&self, series_ref: SeriesRef) -> Option<(i64, u64)> {
        self.series.get(&series_ref).and_then(|series| series.last)
    }

    /// True when the reference is known.
    pub fn contains(&self, series_ref: SeriesRef) -> bool {
        self.series.contains_key(&series_ref)
    }

    /// Registers a series under `series_ref` (from a commit or the WAL).
    pub fn create_series(&mut self, series_ref: SeriesRef, labels: Labels) {
        assert!(!self.series.contains_key(&series_ref), "series ref {} reused", series_ref.0);
        for label in labels.iter() {
            let list = self.postings.entry((label.name.clone(), label.value.clone())).or_default();
            // Refs arrive in increasing order except after a WAL repair; keep the list sorted.
            match list.last() {
                Some(last) if *last > series_ref => {
                    let index = list.partition_point(|existing| *existing < series_ref);
                    list.insert(index, series_ref);
                }
                _ => list.push(series_ref),
            }
        }
        self.refs_by_labels.insert(labels.clone(), series_ref);
        self.series.insert(series_ref, MemSeries { labels, chunks: Vec::new(), last: None });
        self.next_ref = self.next_ref.max(series_ref.0 + 1);
    }

    /// Appends a sample that [`appendability`] accepted as `Append`.
    pub fn append(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) {
        let chunk_sample_count_max = self.chunk_sample_count_max;
        let series =
            self.series.get_mut(&series_ref).unwrap_or_else(|| panic!("append to unknown series {}", series_ref.0));
        let needs_chunk = series.chunks.last().is_none_or(|chunk| chunk.sample_count() >= chunk_sample_count_max);
        if needs_chunk {
            series.chunks.push(XorChunk::new());
            self.chunk_count += 1;
        }
        if let Some(chunk) = series.chunks.last_mut() {
            chunk.append(timestamp_ms, value);
        }
        series.last = Some((timestamp_ms, value.to_bits()));
    }

    /// Series count.
    pub fn series_count(&self) -> u64 {
        self.series.len() as u64
    }

    /// Chunk count.
    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// Series matching every matcher with their samples in `[min_time_ms, max_time_ms]`, sorted by
    /// labels; series without samples in range are left out.
    pub fn select(&self, matchers: &[Matcher], min_time_ms: i64, max_time_ms: i64) -> Vec<Series> {
        let mut result: Vec<Series> = self
            .candidates(matchers)
            .into_iter()
            .filter_map(|series_ref| self.series.get(&series_ref))
            .filter(|series| {
                matchers.iter().all(|matcher| matcher.matches(series.labels.get(&matcher.name).unwrap_or("")))
            })
            .filter_map(|series| {
                let mut samples = Vec::new();
                for chunk in &series.chunks {
                    if chunk.max_time_ms() < min_time_ms || chunk.min_time_ms() > max_time_ms {
                        continue;
                    }
                    match chunk.samples() {
                        Ok(decoded) => samples.extend(
                            decoded
                                .into_iter()
                                .filter(|(timestamp_ms, _)| (min_time_ms..=max_time_ms).contains(timestamp_ms))
                                .map(|(timestamp_ms, value)| Sample { timestamp_ms, value }),
                        ),
                        Err(error) => {
                            // Head chunks are written by this process; a failure is a bug.
                            unreachable!("head chunk of {} fails to decode: {error}", series.labels)
                        }
                    }
                }
                (!samples.is_empty()).then(|| Series { labels: series.labels.clone(), samples })
            })
            .collect();
        result.sort_by(|a, b| a.labels.cmp(&b.labels));
        result
    }

    /// Series that may match: the intersection of the postings of `name="value"` matchers with a
    /// non-empty value, or every series when there is none.
    fn candidates(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut lists = matchers
            .iter()
            .filter(|matcher| matcher.kind == MatchKind::Equal && !matcher.value.is_empty())
            .map(|matcher| {
                self.postings.get(&(matcher.name.clone(), matcher.value.clone())).map(Vec::as_slice).unwrap_or(&[])
            });
        let Some(first) = lists.next() else {
            return self.series.keys().copied().collect();
        };
        let mut result = first.to_vec();
        for list in lists {
            result = intersect(&result, list);
        }
        result
    }
}

/// Intersection of two sorted postings lists.
fn intersect(a: &[SeriesRef], b: &[SeriesRef]) -> Vec<SeriesRef> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        let mut head = Head::new(3);
        let series = [
            (1, vec![("__name__", "up"), ("job", "node"), ("env", "prod")]),
            (2, vec![("__name__", "up"), ("job", "api")]),
            (3, vec![("__name__", "requests"), ("job", "api"), ("env", "dev")]),
        ];
        for (reference, pairs) in series {
            head.create_series(SeriesRef(reference), Labels::from_pairs(pairs));
            for index in 0..5 {
                head.append(SeriesRef(reference), index * 1000, (reference as i64 * 10 + index) as f64);
            }
        }
        head
    }

    #[track_caller]
    fn check(matchers: &[(MatchKind, &str, &str)], expected_refs: &[u64]) {
        let head = head();
        let matchers: Vec<Matcher> =
            matchers.iter().map(|(kind, name, value)| Matcher::new(*kind, name, value).unwrap()).collect();
        let got: Vec<String> =
            head.select(&matchers, i64::MIN, i64::MAX).iter().map(|s| s.labels.to_string()).collect();
        let mut expected: Vec<(Labels, String)> = expected_refs
            .iter()
            .map(|reference| {
                let labels = head.series[&SeriesRef(*reference)].labels.clone();
                (labels.clone(), labels.to_string())
            })
            .collect();
        expected.sort();
        assert_eq!(got, expected.into_iter().map(|(_, text)| text).collect::<Vec<_>>());
    }

    #[test]
    fn select_with_each_matcher_type() {
        use MatchKind::*;
        check(&[(Equal, "__name__", "up")], &[1, 2]);
        check(&[(Equal, "__name__", "up"), (Equal, "job", "api")], &[2]);
        check(&[(NotEqual, "job", "api")], &[1]);
        check(&[(Regex, "job", "a.*")], &[2, 3]);
        check(&[(NotRegex, "job", "a.*")], &[1]);
        // Matchers that accept the empty string select series without the label.
        check(&[(NotEqual, "env", "prod")], &[2, 3]);
        check(&[(Equal, "env", "")], &[2]);
        check(&[(Regex, "env", "dev|")], &[2, 3]);
        check(&[(Equal, "job", "missing")], &[]);
    }

    #[test]
    fn select_cuts_chunks_and_filters_time() {
        let head = head();
        assert_eq!(head.chunk_count(), 6, "5 samples in chunks of 3: two chunks per series");
        let matchers = [Matcher::new(MatchKind::Equal, "job", "node").unwrap()];
        let selected = head.select(&matchers, 1000, 3000);
        let times: Vec<i64> = selected[0].samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(times, vec![1000, 2000, 3000]);
        assert!(head.select(&matchers, 5000, 9000).is_empty());
    }

    #[test]
    fn appendability_rules() {
        assert_eq!(appendability(None, 5, 1.0), Appendability::Append);
        assert_eq!(appendability(Some((5, 1.0_f64.to_bits())), 5, 1.0), Appendability::Duplicate);
        assert_eq!(appendability(Some((5, 1.0_f64.to_bits())), 5, 2.0), Appendability::DuplicateTimestamp);
        assert_eq!(appendability(Some((5, 0)), 4, 2.0), Appendability::OutOfOrder { last_timestamp_ms: 5 });
    }
}
