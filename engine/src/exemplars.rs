//! The in-memory exemplar store (Prometheus tsdb/exemplar.go `CircularExemplarStorage`): the
//! newest exemplars of all series in one circular buffer of `storage.exemplars.max_exemplars`
//! slots (default 100,000), and the query behind `/api/v1/query_exemplars`.
//!
//! Shape: each slot holds one exemplar and the index of its series' next (newer) exemplar; the
//! index maps a series' labels to its oldest and newest slots, so a series' exemplars form a
//! chain through the buffer, oldest first. Writing into a full buffer overwrites the oldest slot
//! overall, which is always the oldest of its series: the series' chain is shortened, or its
//! index entry removed when that was its last exemplar. Memory is bounded by the slot count (plus
//! one index entry per series that holds a slot).
//!
//! Admission, as upstream's `validateExemplar`: an exemplar equal to its series' newest (labels,
//! value and timestamp) is a no-op, one not newer than it is out of order and dropped (counted);
//! the label length limit (128 code points) is the parser's (`exposition::openmetrics`).
//! Exemplars arrive from the scrape loop after its commit succeeded, so a failed scrape stores
//! none (upstream appends them in the head appender's commit).
//!
//! The query (web/api/v1/api.go `queryExemplars`): the selectors of a PromQL expression, each a
//! set of matchers; a series matching any set returns its exemplars within `start..=end`.
//! Results are sorted by series labels (the index is a `BTreeMap`, upstream sorts), so no hash
//! order reaches the output.
//!
//! Resizing (a reload with another `max_exemplars`) keeps the newest exemplars that fit, as
//! upstream's `Resize`; 0 disables the store.
//!
//! Concurrency: one mutex around the buffer and index, held for one append batch or one query.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::json::{format_value, write_labels};
use crate::model::{Labels, Matcher};

/// `storage.exemplars.max_exemplars` when the configuration does not set it (Prometheus' default).
pub const EXEMPLAR_COUNT_MAX_DEFAULT: usize = 100_000;

/// One exemplar: its own labels (`trace_id`, ...), value and timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// The exemplar's labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Its timestamp, Unix ms (the sample's when the exposition gives none).
    pub timestamp_ms: i64,
}

/// What became of one offered exemplar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Stored.
    Added,
    /// Equal to the series' newest exemplar: nothing to do.
    Duplicate,
    /// Not newer than the series' newest exemplar: dropped.
    OutOfOrder,
    /// The store holds no slots (`max_exemplars: 0`).
    Disabled,
}

struct Slot {
    series: Arc<Labels>,
    exemplar: Exemplar,
    /// The series' next newer exemplar.
    next_index: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
struct SeriesSlots {
    oldest_index: usize,
    newest_index: usize,
}

#[derive(Default)]
struct Buffer {
    slot_count_max: usize,
    /// Grows to `slot_count_max`, then wraps.
    slots: Vec<Slot>,
    /// Where the next exemplar goes once the buffer is full.
    next_index: usize,
    index: BTreeMap<Arc<Labels>, SeriesSlots>,
}

/// The store; see the module doc.
pub struct ExemplarStore {
    buffer: Mutex<Buffer>,
    appended_total: AtomicU64,
    out_of_order_total: AtomicU64,
}

/// A series and its exemplars in a query's range, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    /// The series' labels.
    pub series: Labels,
    /// Its exemplars.
    pub exemplars: Vec<Exemplar>,
}

impl ExemplarStore {
    /// A store of at most `slot_count_max` exemplars (0: disabled).
    pub fn new(slot_count_max: usize) -> Self {
        ExemplarStore {
            buffer: Mutex::new(Buffer { slot_count_max, ..Buffer::default() }),
            appended_total: AtomicU64::new(0),
            out_of_order_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `exemplars` (series labels, exemplar) in order, under one lock.
    pub fn add_all(&self, exemplars: impl IntoIterator<Item = (Labels, Exemplar)>) -> Vec<AddOutcome> {
        let mut buffer = self.lock();
        let outcomes: Vec<AddOutcome> =
            exemplars.into_iter().map(|(series, exemplar)| buffer.add(series, exemplar)).collect();
        for outcome in &outcomes {
            match outcome {
                AddOutcome::Added => self.appended_total.fetch_add(1, Ordering::Relaxed),
                AddOutcome::OutOfOrder => self.out_of_order_total.fetch_add(1, Ordering::Relaxed),
                AddOutcome::Duplicate | AddOutcome::Disabled => 0,
            };
        }
        outcomes
    }

    /// Adds one exemplar of `series`.
    pub fn add(&self, series: Labels, exemplar: Exemplar) -> AddOutcome {
        self.add_all([(series, exemplar)])[0]
    }

    /// Exemplars held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes the slot count, keeping the newest exemplars that fit (upstream's `Resize`).
    pub fn resize(&self, slot_count_max: usize) {
        let mut buffer = self.lock();
        if buffer.slot_count_max == slot_count_max {
            return;
        }
        let old = std::mem::replace(&mut *buffer, Buffer { slot_count_max, ..Buffer::default() });
        let slot_count = old.slots.len();
        // Oldest first: from the write position when the buffer wrapped.
        let start_index = if slot_count == old.slot_count_max { old.next_index } else { 0 };
        let mut ordered: Vec<Option<Slot>> = old.slots.into_iter().map(Some).collect();
        let kept_count = slot_count.min(slot_count_max);
        for offset in slot_count - kept_count..slot_count {
            if let Some(slot) = ordered[(start_index + offset) % slot_count].take() {
                buffer.add(Arc::unwrap_or_clone(slot.series), slot.exemplar);
            }
        }
    }

    /// The exemplars within `start_ms..=end_ms` of every series matching any of
    /// `matcher_sets`, sorted by series labels.
    pub fn select(&self, start_ms: i64, end_ms: i64, matcher_sets: &[Vec<Matcher>]) -> Vec<SeriesExemplars> {
        let buffer = self.lock();
        let mut results = Vec::new();
        for (series, slots) in &buffer.index {
            let oldest = &buffer.slots[slots.oldest_index].exemplar;
            let newest = &buffer.slots[slots.newest_index].exemplar;
            if oldest.timestamp_ms > end_ms || newest.timestamp_ms < start_ms {
                continue;
            }
            let matches =
                |set: &Vec<Matcher>| set.iter().all(|matcher| matcher.matches(series.get(&matcher.name).unwrap_or("")));
            if !matcher_sets.iter().any(matches) {
                continue;
            }
            let mut exemplars = Vec::new();
            let mut slot_index = Some(slots.oldest_index);
            while let Some(index) = slot_index {
                let slot = &buffer.slots[index];
                if slot.exemplar.timestamp_ms > end_ms {
                    break;
                }
                if slot.exemplar.timestamp_ms >= start_ms {
                    exemplars.push(slot.exemplar.clone());
                }
                slot_index = slot.next_index;
            }
            if !exemplars.is_empty() {
                results.push(SeriesExemplars { series: (**series).clone(), exemplars });
            }
        }
        results
    }

    /// Prometheus' `/api/v1/query_exemplars` body for `results`.
    pub fn query_body(results: &[SeriesExemplars]) -> String {
        let mut out = String::from("{\"status\":\"success\",\"data\":[");
        for (index, result) in results.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str("{\"seriesLabels\":");
            write_labels(&mut out, &result.series);
            out.push_str(",\"exemplars\":[");
            for (exemplar_index, exemplar) in result.exemplars.iter().enumerate() {
                if exemplar_index > 0 {
                    out.push(',');
                }
                out.push_str("{\"labels\":");
                write_labels(&mut out, &exemplar.labels);
                let _ = write!(out, ",\"value\":\"{}\",\"timestamp\":", format_value(exemplar.value));
                crate::api::json::write_timestamp(&mut out, exemplar.timestamp_ms);
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push_str("]}");
        out
    }
}

impl Buffer {
    fn add(&mut self, series: Labels, exemplar: Exemplar) -> AddOutcome {
        if self.slot_count_max == 0 {
            return AddOutcome::Disabled;
        }
        if let Some(slots) = self.index.get(&series) {
            let newest = &self.slots[slots.newest_index].exemplar;
            if *newest == exemplar {
                return AddOutcome::Duplicate;
            }
            if exemplar.timestamp_ms <= newest.timestamp_ms {
                return AddOutcome::OutOfOrder;
            }
        }
        // Free the slot to write: the oldest overall, hence the oldest of its series.
        let slot_index = if self.slots.len() < self.slot_count_max { self.slots.len() } else { self.next_index };
        if let Some(evicted) = self.slots.get(slot_index) {
            match evicted.next_index {
                Some(next_index) => {
                    if let Some(slots) = self.index.get_mut(&evicted.series) {
                        slots.oldest_index = next_index;
                    }
                }
                None => {
                    let evicted_series = evicted.series.clone();
                    self.index.remove(&evicted_series);
                }
            }
        }
        let series = match self.index.get_key_value(&series) {
            Some((key, _)) => key.clone(),
            None => Arc::new(series),
        };
        match self.index.get_mut(&series) {
            Some(slots) => {
                let previous_newest = slots.newest_index;
                slots.newest_index = slot_index;
                self.slots[previous_newest].next_index = Some(slot_index);
            }
            None => {
                self.index.insert(series.clone(), SeriesSlots { oldest_index: slot_index, newest_index: slot_index });
            }
        }
        let slot = Slot { series, exemplar, next_index: None };
        if slot_index == self.slots.len() {
            self.slots.push(slot);
        } else {
            self.slots[slot_index] = slot;
        }
        self.next_index = (slot_index + 1) % self.slot_count_max;
        AddOutcome::Added
    }
}

impl crate::metrics::MetricsSource for ExemplarStore {
    fn render(&self, out: &mut String) {
        let (slot_count_max, exemplar_count, series_count) = {
            let buffer = self.lock();
            (buffer.slot_count_max, buffer.slots.len(), buffer.index.len())
        };
        let families: [(&str, &str, &str, u64); 5] = [
            (
                "prometheus_tsdb_exemplar_max_exemplars",
                "gauge",
                "Total number of exemplars the exemplar storage can store, resizeable.",
                slot_count_max as u64,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_in_storage",
                "gauge",
                "Number of exemplars currently in circular storage.",
                exemplar_count as u64,
            ),
            (
                "prometheus_tsdb_exemplar_series_with_exemplars_in_storage",
                "gauge",
                "Number of series with exemplars currently in circular storage.",
                series_count as u64,
            ),
            (
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                "counter",
                "Total number of appended exemplars.",
                self.appended_total.load(Ordering::Relaxed),
            ),
            (
                "prometheus_tsdb_exemplar_out_of_order_exemplars_total",
                "counter",
                "Total number of out of order exemplar ingestion failed attempts.",
                self.out_of_order_total.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchKind;

    fn series(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", "a")])
    }

    fn exemplar(trace: &str, value: f64, timestamp_ms: i64) -> Exemplar {
        Exemplar { labels: Labels::from_pairs([("trace_id", trace)]), value, timestamp_ms }
    }

    fn all(store: &ExemplarStore) -> Vec<(String, Vec<i64>)> {
        let any = vec![vec![Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap()]];
        store
            .select(i64::MIN, i64::MAX, &any)
            .into_iter()
            .map(|result| {
                let name = result.series.metric_name().unwrap_or("").to_string();
                (name, result.exemplars.iter().map(|exemplar| exemplar.timestamp_ms).collect())
            })
            .collect()
    }

    #[test]
    fn duplicates_are_no_ops_and_older_exemplars_are_out_of_order() {
        let store = ExemplarStore::new(10);
        assert_eq!(store.add(series("a"), exemplar("x", 1.0, 1000)), AddOutcome::Added);
        assert_eq!(store.add(series("a"), exemplar("x", 1.0, 1000)), AddOutcome::Duplicate);
        assert_eq!(store.add(series("a"), exemplar("y", 2.0, 1000)), AddOutcome::OutOfOrder);
        assert_eq!(store.add(series("a"), exemplar("y", 2.0, 999)), AddOutcome::OutOfOrder);
        assert_eq!(store.add(series("b"), exemplar("y", 2.0, 999)), AddOutcome::Added, "another series");
        assert_eq!(store.add(series("a"), exemplar("z", 3.0, 1001)), AddOutcome::Added);
        assert_eq!(all(&store), [("a".to_string(), vec![1000, 1001]), ("b".to_string(), vec![999])]);
        assert_eq!(store.out_of_order_total.load(Ordering::Relaxed), 2);
        assert_eq!(ExemplarStore::new(0).add(series("a"), exemplar("x", 1.0, 1)), AddOutcome::Disabled);
    }

    #[test]
    fn a_full_buffer_overwrites_the_oldest_exemplar_overall() {
        let store = ExemplarStore::new(3);
        store.add(series("a"), exemplar("1", 1.0, 1));
        store.add(series("b"), exemplar("2", 1.0, 2));
        store.add(series("a"), exemplar("3", 1.0, 3));
        store.add(series("c"), exemplar("4", 1.0, 4)); // evicts a@1
        assert_eq!(all(&store), [("a".into(), vec![3]), ("b".into(), vec![2]), ("c".into(), vec![4])]);
        store.add(series("c"), exemplar("5", 1.0, 5)); // evicts b@2, b's last
        assert_eq!(all(&store), [("a".into(), vec![3]), ("c".into(), vec![4, 5])]);
        store.add(series("c"), exemplar("6", 1.0, 6)); // evicts a@3
        store.add(series("c"), exemplar("7", 1.0, 7)); // evicts c@4: c's own chain
        assert_eq!(all(&store), [("c".to_string(), vec![5, 6, 7])]);
        assert_eq!(store.len(), 3);
        let one = ExemplarStore::new(1);
        for timestamp_ms in 1..5 {
            one.add(series("a"), exemplar("t", 1.0, timestamp_ms));
        }
        assert_eq!(all(&one), [("a".to_string(), vec![4])]);
    }

    #[test]
    fn resize_keeps_the_newest() {
        let store = ExemplarStore::new(4);
        for timestamp_ms in 1..=6 {
            let name = if timestamp_ms % 2 == 0 { "even" } else { "odd" };
            store.add(series(name), exemplar("t", 1.0, timestamp_ms));
        }
        store.resize(3);
        assert_eq!(all(&store), [("even".into(), vec![4, 6]), ("odd".into(), vec![5])]);
        store.resize(10);
        store.add(series("odd"), exemplar("t", 1.0, 7));
        assert_eq!(all(&store), [("even".into(), vec![4, 6]), ("odd".into(), vec![5, 7])]);
        store.resize(0);
        assert!(store.is_empty());
    }

    #[test]
    fn select_filters_by_matchers_and_range_and_renders_prometheus_json() {
        let store = ExemplarStore::new(100);
        store.add(series("a_total"), exemplar("abc", 6.0, 1_600_096_945_479));
        store.add(series("a_total"), exemplar("def", 0.5, 1_600_096_946_000));
        store.add(series("b_total"), exemplar("ghi", 1.0, 1_600_096_945_500));
        let sets = vec![vec![Matcher::new(MatchKind::Equal, "__name__", "a_total").unwrap()]];
        let results = store.select(1_600_096_945_000, 1_600_096_945_999, &sets);
        assert_eq!(
            ExemplarStore::query_body(&results),
            r#"{"status":"success","data":[{"seriesLabels":{"__name__":"a_total","job":"a"},"exemplars":[{"labels":{"trace_id":"abc"},"value":"6","timestamp":1600096945.479}]}]}"#
        );
        assert_eq!(store.select(0, 1, &sets), []);
        let both = vec![sets[0].clone(), vec![Matcher::new(MatchKind::Equal, "__name__", "b_total").unwrap()]];
        assert_eq!(store.select(0, i64::MAX, &both).len(), 2);
        assert_eq!(ExemplarStore::query_body(&[]), r#"{"status":"success","data":[]}"#);
    }
}
