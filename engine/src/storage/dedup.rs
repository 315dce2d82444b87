//! Replica deduplication (the query node's view of HA pairs, as Thanos' querier): series that
//! differ only in replica labels (`--query.replica-label`) are one series without those labels,
//! its samples chosen from the replicas by one of three algorithms:
//!
//! - [`DedupAlgorithm::Fill`] (the default): the replica with the most samples in range is the
//!   primary; wherever it has a gap (two samples further apart than 1.5 x its median interval,
//!   or before its first and after its last sample) the other replicas' samples fill it, each
//!   kept at least half an interval from every sample already chosen, so the result is as dense
//!   as one replica and has no gap another replica could fill.
//! - [`DedupAlgorithm::Penalty`]: Thanos' `penalty` algorithm, for comparison and
//!   compatibility: it follows the replica with the earliest next sample and, after choosing a
//!   sample, skips the other replica's samples within twice the last interval (5 s at the start).
//!   When the followed replica stops, the other's samples within that penalty are lost: a hole
//!   of up to 2.5 intervals (thanos#981's gaps), which [`DedupAlgorithm::Fill`] does not leave.
//! - [`DedupAlgorithm::Chain`]: every sample of every replica, one per timestamp (Prometheus'
//!   chained merge); denser than one replica and jittery where replicas disagree.
//!
//! Counters: when the query reads the series through `rate`, `irate`, `increase` or `resets`
//! (the select hints say), a switch from one replica to another never makes the result drop:
//! the new replica's values are raised by the drop until the next switch, so replicas whose
//! counters differ show no fake reset.
//!
//! Invariant: the inner querier's series are sorted by labels; the output is sorted by the
//! deduplicated labels. A group is collected whole before it is merged, so memory is one group's
//! samples (plus the sort of the group keys).

use std::collections::BTreeMap;

use super::{Querier, SelectHints, Series, SeriesSet, StorageError};
use crate::model::{Labels, Matcher, Sample};

/// How replicas of one series are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DedupAlgorithm {
    /// One replica, its gaps filled from the others.
    #[default]
    Fill,
    /// Thanos' penalty algorithm.
    Penalty,
    /// Every timestamp of every replica.
    Chain,
}

impl DedupAlgorithm {
    /// `fill`, `penalty` or `chain`.
    pub fn parse(text: &str) -> Result<DedupAlgorithm, String> {
        match text {
            "fill" => Ok(DedupAlgorithm::Fill),
            "penalty" => Ok(DedupAlgorithm::Penalty),
            "chain" => Ok(DedupAlgorithm::Chain),
            other => Err(format!("unknown deduplication function {other:?} (fill, penalty, chain)")),
        }
    }

    /// The name [`DedupAlgorithm::parse`] takes.
    pub fn name(self) -> &'static str {
        match self {
            DedupAlgorithm::Fill => "fill",
            DedupAlgorithm::Penalty => "penalty",
            DedupAlgorithm::Chain => "chain",
        }
    }
}

/// Thanos' penalty before any interval is known, ms.
const PENALTY_INITIAL_MS: i64 = 5_000;

/// Functions that read a series as a counter.
const COUNTER_FUNCTIONS: [&str; 4] = ["rate", "irate", "increase", "resets"];

/// Merges the replicas of one series (each sorted by time).
pub fn dedup_samples(replicas: &[Vec<Sample>], algorithm: DedupAlgorithm, counter: bool) -> Vec<Sample> {
    let tagged = match replicas.len() {
        0 => Vec::new(),
        1 => replicas[0].iter().map(|sample| (*sample, 0)).collect(),
        _ => match algorithm {
            DedupAlgorithm::Fill => fill(replicas),
            DedupAlgorithm::Penalty => {
                let mut merged: Vec<(Sample, usize)> = replicas[0].iter().map(|sample| (*sample, 0)).collect();
                for (index, replica) in replicas.iter().enumerate().skip(1) {
                    let next: Vec<(Sample, usize)> = replica.iter().map(|sample| (*sample, index)).collect();
                    merged = penalty(&merged, &next);
                }
                merged
            }
            DedupAlgorithm::Chain => chain(replicas),
        },
    };
    if counter {
        adjust_counter_switches(tagged)
    } else {
        tagged.into_iter().map(|(sample, _)| sample).collect()
    }
}

/// Every sample, one per timestamp (the first replica's on ties).
fn chain(replicas: &[Vec<Sample>]) -> Vec<(Sample, usize)> {
    let mut by_time: BTreeMap<i64, (Sample, usize)> = BTreeMap::new();
    for (index, replica) in replicas.iter().enumerate() {
        for sample in replica {
            by_time.entry(sample.timestamp_ms).or_insert((*sample, index));
        }
    }
    by_time.into_values().collect()
}

/// Thanos' `dedupSeriesIterator` over two tagged sample lists.
fn penalty(a: &[(Sample, usize)], b: &[(Sample, usize)]) -> Vec<(Sample, usize)> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (0_usize, 0_usize);
    let (mut penalty_a, mut penalty_b) = (0_i64, 0_i64);
    let mut last_ms: Option<i64> = None;
    let seek = |samples: &[(Sample, usize)], from: usize, at_least_ms: i64| {
        from + samples[from..].partition_point(|(sample, _)| sample.timestamp_ms < at_least_ms)
    };
    loop {
        let floor = last_ms.map_or(i64::MIN, |last| last.saturating_add(1));
        ia = seek(a, ia, floor.saturating_add(penalty_a));
        ib = seek(b, ib, floor.saturating_add(penalty_b));
        match (a.get(ia), b.get(ib)) {
            (None, None) => return out,
            (Some(&sample), None) => {
                out.push(sample);
                last_ms = Some(sample.0.timestamp_ms);
                penalty_a = 0;
            }
            (None, Some(&sample)) => {
                out.push(sample);
                last_ms = Some(sample.0.timestamp_ms);
                penalty_b = 0;
            }
            (Some(&from_a), Some(&from_b)) => {
                let (ta, tb) = (from_a.0.timestamp_ms, from_b.0.timestamp_ms);
                if ta <= tb {
                    penalty_b = last_ms.map_or(PENALTY_INITIAL_MS, |last| 2 * (ta - last));
                    penalty_a = 0;
                    out.push(from_a);
                    last_ms = Some(ta);
                } else {
                    penalty_a = last_ms.map_or(PENALTY_INITIAL_MS, |last| 2 * (tb - last));
                    penalty_b = 0;
                    out.push(from_b);
                    last_ms = Some(tb);
                }
            }
        }
    }
}

/// The median spacing of `samples`, ms (`None` with fewer than two).
fn median_interval_ms(samples: &[Sample]) -> Option<i64> {
    let mut deltas: Vec<i64> = samples.windows(2).map(|pair| pair[1].timestamp_ms - pair[0].timestamp_ms).collect();
    if deltas.is_empty() {
        return None;
    }
    deltas.sort_unstable();
    Some(deltas[deltas.len() / 2].max(1))
}

/// The primary replica with its gaps filled (see the module comment).
fn fill(replicas: &[Vec<Sample>]) -> Vec<(Sample, usize)> {
    // Most samples first; the earlier replica on ties (the input order is by labels).
    let mut order: Vec<usize> = (0..replicas.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(replicas[index].len()));
    let primary = order[0];
    let Some(interval_ms) = median_interval_ms(&replicas[primary])
        .or_else(|| order.iter().find_map(|&index| median_interval_ms(&replicas[index])))
    else {
        return chain(replicas);
    };
    let spacing_ms = (interval_ms / 2).max(1);
    let gap_ms = interval_ms + interval_ms / 2;
    // The windows to fill: before the first, between samples further apart than `gap_ms`, after
    // the last. Most series have only the two open ones, so the primary is copied, not indexed.
    let primary_samples = &replicas[primary];
    let mut windows: Vec<(i64, i64)> = Vec::new();
    match (primary_samples.first(), primary_samples.last()) {
        (Some(first), Some(last)) => {
            windows.push((i64::MIN, first.timestamp_ms));
            for pair in primary_samples.windows(2) {
                if pair[1].timestamp_ms - pair[0].timestamp_ms > gap_ms {
                    windows.push((pair[0].timestamp_ms, pair[1].timestamp_ms));
                }
            }
            windows.push((last.timestamp_ms, i64::MAX));
        }
        _ => windows.push((i64::MIN, i64::MAX)),
    }
    let mut filled: Vec<(Sample, usize)> = Vec::new();
    for &(start_ms, end_ms) in &windows {
        // Times already taken in this window: its two primary edges and what was filled.
        let mut taken: BTreeMap<i64, ()> = BTreeMap::new();
        for edge in [start_ms, end_ms] {
            if edge != i64::MIN && edge != i64::MAX {
                taken.insert(edge, ());
            }
        }
        for &index in order.iter().skip(1) {
            let replica = &replicas[index];
            let from = replica.partition_point(|sample| sample.timestamp_ms <= start_ms);
            for sample in replica[from..].iter().take_while(|sample| sample.timestamp_ms < end_ms) {
                let time = sample.timestamp_ms;
                let near =
                    taken.range(time.saturating_sub(spacing_ms - 1)..=time.saturating_add(spacing_ms - 1)).next();
                if near.is_none() {
                    taken.insert(time, ());
                    filled.push((*sample, index));
                }
            }
        }
    }
    if filled.is_empty() {
        return primary_samples.iter().map(|sample| (*sample, primary)).collect();
    }
    filled.sort_by_key(|(sample, _)| sample.timestamp_ms);
    let mut out = Vec::with_capacity(primary_samples.len() + filled.len());
    let mut fills = filled.into_iter().peekable();
    for sample in primary_samples {
        while let Some(fill) = fills.next_if(|(fill, _)| fill.timestamp_ms < sample.timestamp_ms) {
            out.push(fill);
        }
        out.push((*sample, primary));
    }
    out.extend(fills);
    out
}

/// Raises each run of one replica's samples by the drop at the switch into it, if any.
fn adjust_counter_switches(tagged: Vec<(Sample, usize)>) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::with_capacity(tagged.len());
    let mut source: Option<usize> = None;
    let mut offset = 0.0;
    for (sample, index) in tagged {
        if let (Some(previous), Some(last)) = (source, out.last()) {
            if previous != index {
                offset = (last.value - sample.value).max(0.0);
            }
        }
        source = Some(index);
        out.push(Sample { timestamp_ms: sample.timestamp_ms, value: sample.value + offset });
    }
    out
}

/// A store whose queriers deduplicate across `replica_labels`.
pub struct DedupQueryable {
    inner: std::sync::Arc<dyn super::Queryable>,
    replica_labels: Vec<String>,
    algorithm: DedupAlgorithm,
}

impl DedupQueryable {
    /// `inner`, deduplicated over `replica_labels` with `algorithm`.
    pub fn new(
        inner: std::sync::Arc<dyn super::Queryable>,
        replica_labels: Vec<String>,
        algorithm: DedupAlgorithm,
    ) -> Self {
        DedupQueryable { inner, replica_labels, algorithm }
    }
}

impl super::Queryable for DedupQueryable {
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError> {
        let inner = self.inner.querier(min_time_ms, max_time_ms)?;
        Ok(Box::new(DedupQuerier::new(inner, self.replica_labels.clone(), self.algorithm)))
    }
}

/// A querier whose series are deduplicated across `replica_labels`.
pub struct DedupQuerier {
    inner: Box<dyn Querier>,
    replica_labels: Vec<String>,
    algorithm: DedupAlgorithm,
}

impl DedupQuerier {
    /// Deduplicates `inner`'s series over `replica_labels` with `algorithm`.
    pub fn new(inner: Box<dyn Querier>, replica_labels: Vec<String>, algorithm: DedupAlgorithm) -> Self {
        DedupQuerier { inner, replica_labels, algorithm }
    }

    fn without_replica_labels(&self, labels: &Labels) -> Labels {
        Labels::from_sorted_unchecked(
            labels.iter().filter(|label| !self.replica_labels.contains(&label.name)).cloned().collect(),
        )
    }
}

impl Querier for DedupQuerier {
    fn select(&self, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        let counter = hints
            .and_then(|hints| hints.function.as_deref())
            .is_some_and(|function| COUNTER_FUNCTIONS.contains(&function));
        let mut groups: BTreeMap<Labels, Vec<Vec<Sample>>> = BTreeMap::new();
        for series in self.inner.select(hints, matchers) {
            match series {
                Ok(series) => {
                    groups.entry(self.without_replica_labels(&series.labels)).or_default().push(series.samples)
                }
                Err(error) => return Box::new(std::iter::once(Err(error))),
            }
        }
        let algorithm = self.algorithm;
        Box::new(groups.into_iter().map(move |(labels, replicas)| {
            Ok(Series { labels, samples: dedup_samples(&replicas, algorithm, counter) })
        }))
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let names = self.inner.label_names(matchers)?;
        Ok(names.into_iter().filter(|name| !self.replica_labels.contains(name)).collect())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if self.replica_labels.iter().any(|replica| replica == name) {
            return Ok(Vec::new());
        }
        self.inner.label_values(name, matchers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every `interval_ms` from `start_ms` until `end_ms`, skipping `[gap.0, gap.1)`,
    /// valued by `value(t)`.
    fn replica(
        start_ms: i64,
        end_ms: i64,
        interval_ms: i64,
        gap: (i64, i64),
        value: impl Fn(i64) -> f64,
    ) -> Vec<Sample> {
        (0..)
            .map(|step| start_ms + step * interval_ms)
            .take_while(|&time| time < end_ms)
            .filter(|&time| time < gap.0 || time >= gap.1)
            .map(|timestamp_ms| Sample { timestamp_ms, value: value(timestamp_ms) })
            .collect()
    }

    fn widest_gap_ms(samples: &[Sample], from_ms: i64, to_ms: i64) -> i64 {
        let times: Vec<i64> = samples
            .iter()
            .map(|sample| sample.timestamp_ms)
            .filter(|&time| (from_ms..=to_ms).contains(&time))
            .collect();
        times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or(i64::MAX)
    }

    /// Replica A scrapes at :00, :15, ...; replica B at :07.5, :22.5, ..., and is down for a
    /// minute. Penalty follows B (its samples come first after the start) and, when B stops,
    /// skips A's samples within twice the last interval: a 37.5 s hole where A had samples.
    /// Fill leaves none.
    #[test]
    fn penalty_leaves_the_thanos_981_gap_and_fill_does_not() {
        let a = replica(0, 300_000, 15_000, (0, 0), |time| time as f64 / 1000.0);
        let b = replica(7_500, 300_000, 15_000, (60_000, 120_000), |time| time as f64 / 1000.0);
        let penalty = dedup_samples(&[a.clone(), b.clone()], DedupAlgorithm::Penalty, false);
        let fill = dedup_samples(&[a.clone(), b.clone()], DedupAlgorithm::Fill, false);
        assert_eq!(widest_gap_ms(&penalty, 0, 300_000), 37_500, "penalty's gap at the switch");
        assert!(widest_gap_ms(&fill, 0, 300_000) <= 15_000, "fill: {:?}", widest_gap_ms(&fill, 0, 300_000));
        // As dense as one replica: never two samples closer than half an interval.
        assert!(fill.windows(2).all(|pair| pair[1].timestamp_ms - pair[0].timestamp_ms >= 7_500));
        let chain = dedup_samples(&[a.clone(), b.clone()], DedupAlgorithm::Chain, false);
        assert_eq!(chain.len(), a.len() + b.len());
        assert_eq!(dedup_samples(std::slice::from_ref(&a), DedupAlgorithm::Fill, false), a);
    }

    /// B's counter runs 40 behind A's. Without adjustment, switching to B looks like a reset.
    #[test]
    fn counters_show_no_fake_reset_on_a_replica_switch() {
        let a = replica(0, 300_000, 15_000, (60_000, 120_000), |time| 1_000.0 + time as f64 / 1000.0);
        let b = replica(7_500, 300_000, 15_000, (0, 0), |time| 960.0 + time as f64 / 1000.0);
        for algorithm in [DedupAlgorithm::Fill, DedupAlgorithm::Penalty] {
            let raw = dedup_samples(&[a.clone(), b.clone()], algorithm, false);
            assert!(raw.windows(2).any(|pair| pair[1].value < pair[0].value), "{algorithm:?}: the raw merge drops");
            let adjusted = dedup_samples(&[a.clone(), b.clone()], algorithm, true);
            assert!(adjusted.windows(2).all(|pair| pair[1].value >= pair[0].value), "{algorithm:?}: {adjusted:?}");
            assert_eq!(adjusted.len(), raw.len());
        }
    }

    #[test]
    fn a_replica_that_starts_late_or_stops_early_is_filled_at_both_ends() {
        let a = replica(60_000, 200_000, 10_000, (0, 0), |_| 1.0);
        let b = replica(0, 300_000, 10_000, (0, 0), |_| 2.0);
        let c = replica(5_000, 100_000, 10_000, (0, 0), |_| 3.0);
        let fill = dedup_samples(&[a, c, b], DedupAlgorithm::Fill, false);
        assert_eq!(fill.first().map(|sample| sample.timestamp_ms), Some(0));
        assert_eq!(fill.last().map(|sample| sample.timestamp_ms), Some(290_000));
        assert!(widest_gap_ms(&fill, 0, 300_000) <= 10_000);
        assert!(fill.iter().all(|sample| sample.value == 2.0), "b has the most samples and is the primary");
    }

    #[test]
    fn algorithm_names_round_trip() {
        for algorithm in [DedupAlgorithm::Fill, DedupAlgorithm::Penalty, DedupAlgorithm::Chain] {
            assert_eq!(DedupAlgorithm::parse(algorithm.name()), Ok(algorithm));
        }
        assert!(DedupAlgorithm::parse("median").is_err());
    }
}
