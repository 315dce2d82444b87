//! Time-series storage: an in-memory head behind a write-ahead log.
//!
//! Seams (STYLE §1): scrape writes through [`Appendable`]/[`Appender`] (append, then commit or
//! rollback); PromQL reads through [`Queryable`]/[`Querier`]. Nothing outside this module sees
//! the head.
//!
//! Commit protocol: under the database lock, assign references to new series, encode the batch
//! as WAL records (series first, then samples), write and sync them, and only then apply the
//! batch to the head. So a commit that returned `Ok` survives a crash, and a commit that failed
//! left nothing visible. Concurrency: one `Mutex` guards head and WAL; appenders buffer without
//! holding it; no lock is held across an `.await` (there are none here).

pub mod chunk;
pub mod chunks_head;
pub mod head;
pub mod wal;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::FileSystem;
use crate::limits::{CHUNK_SAMPLE_COUNT_MAX_DEFAULT, WAL_RECORD_SAMPLE_COUNT_MAX, WAL_SEGMENT_SIZE_MAX_DEFAULT};
use crate::model::{Labels, Matcher, Sample, SeriesRef, METRIC_NAME_LABEL};
use head::{appendability, Appendability, Head};
use wal::{Record, Wal};

/// Buffers samples and commits them atomically.
pub trait Appender: Send {
    /// Buffers a sample after checking it against the head and the batch so far.
    fn append(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) -> Result<(), AppendError>;
    /// Logs the batch to the WAL (synced), then makes it visible. Returns the samples committed.
    fn commit(self: Box<Self>) -> Result<usize, TsdbError>;
    /// Drops the batch.
    fn rollback(self: Box<Self>);
}

/// Hands out appenders.
pub trait Appendable: Send + Sync {
    /// A new, empty batch.
    fn appender(&self) -> Box<dyn Appender>;
}

/// One series with samples, as returned by a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<Sample>,
}

/// Reads series over a fixed time range.
pub trait Querier {
    /// Series matching all matchers, sorted by labels, with their samples in the querier's
    /// `[min_time_ms, max_time_ms]`; series with no samples in range are omitted.
    fn select(&self, matchers: &[Matcher]) -> Vec<Series>;
}

/// Hands out queriers.
pub trait Queryable: Send + Sync {
    /// A querier over `[min_time_ms, max_time_ms]`.
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Box<dyn Querier>;
}

/// Called after each successful commit with the committed samples (the simulator's durability
/// checker); runs outside the database lock.
pub type CommitObserver = Arc<dyn Fn(&[(Labels, Sample)]) + Send + Sync>;

/// Storage settings.
#[derive(Clone)]
pub struct DbOptions {
    /// Largest WAL segment, bytes.
    pub wal_segment_size_max: u64,
    /// Samples per chunk before a new one is cut.
    pub chunk_sample_count_max: usize,
    /// Optional commit hook.
    pub commit_observer: Option<CommitObserver>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            wal_segment_size_max: WAL_SEGMENT_SIZE_MAX_DEFAULT,
            chunk_sample_count_max: CHUNK_SAMPLE_COUNT_MAX_DEFAULT,
            commit_observer: None,
        }
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbStats {
    /// Series in the head.
    pub series_count: u64,
    /// Samples appended since start (replay excluded).
    pub samples_appended_total: u64,
    /// Samples rejected as out of order or with a duplicate timestamp.
    pub out_of_order_samples_total: u64,
    /// WAL records replayed at start.
    pub wal_records_replayed: u64,
    /// Samples replayed at start.
    pub wal_samples_replayed: u64,
    /// WAL corruptions repaired at start.
    pub wal_corruptions_repaired_total: u64,
    /// Bytes cut off the WAL by repair.
    pub wal_bytes_truncated_total: u64,
    /// Samples in the WAL whose series was unknown (skipped at replay).
    pub wal_unknown_series_samples_total: u64,
    /// Segment being written.
    pub wal_segment_index: u32,
    /// Chunks in the head.
    pub chunk_count: u64,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A record would exceed the WAL's record size limit.
    #[error("wal record of {size} bytes exceeds the limit of {size_max} bytes")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        size_max: usize,
    },
    /// A label name or value is longer than the WAL can frame.
    #[error("label of {length} bytes exceeds 65535 bytes")]
    LabelTooLong {
        /// Length in bytes.
        length: usize,
    },
}

/// A sample the head will not take.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AppendError {
    /// Older than the newest sample of its series.
    #[error("out of order sample for {labels}: {timestamp_ms} is before {last_timestamp_ms}")]
    OutOfOrder {
        /// Series.
        labels: String,
        /// Rejected timestamp.
        timestamp_ms: i64,
        /// Newest stored timestamp.
        last_timestamp_ms: i64,
    },
    /// Same timestamp as the newest sample, different value.
    #[error("duplicate sample for timestamp {timestamp_ms} with a different value for {labels}")]
    DuplicateTimestamp {
        /// Series.
        labels: String,
        /// Timestamp.
        timestamp_ms: i64,
    },
    /// No labels at all.
    #[error("empty label set")]
    EmptyLabels,
    /// No `__name__` label.
    #[error("series {labels} has no metric name")]
    MissingMetricName {
        /// Series.
        labels: String,
    },
}

struct State {
    head: Head,
    wal: Wal,
    stats: DbStats,
}

struct Inner {
    state: Mutex<State>,
    observer: Option<CommitObserver>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug already reported; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The database: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Db(Arc<Inner>);

impl Db {
    /// Opens (or creates) the database in `dir`, replaying and repairing its WAL.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path, options: DbOptions) -> Result<Db, TsdbError> {
        let (wal, replay) = Wal::open(fs, &dir.join("wal"), options.wal_segment_size_max)?;
        let mut head = Head::new(options.chunk_sample_count_max);
        let mut stats = DbStats {
            wal_records_replayed: replay.records.len() as u64,
            wal_corruptions_repaired_total: replay.corruption_count,
            wal_bytes_truncated_total: replay.truncated_size,
            ..DbStats::default()
        };
        // A failed commit can leave a series record behind; the labels' next commit logs them again
        // under a new reference. Both references replay into one series.
        let mut aliases: HashMap<SeriesRef, SeriesRef> = HashMap::new();
        for record in replay.records {
            match record {
                Record::Series(series) => {
                    for (series_ref, labels) in series {
                        match head.series_ref(&labels) {
                            Some(existing) if existing != series_ref => {
                                aliases.insert(series_ref, existing);
                                head.skip_refs_through(series_ref);
                            }
                            Some(_) => {}
                            None if head.contains(series_ref) => {
                                tracing::warn!(series_ref = series_ref.0, "wal reuses a series reference; ignoring");
                            }
                            None => head.create_series(series_ref, labels),
                        }
                    }
                }
                Record::Samples(samples) => {
                    for (series_ref, timestamp_ms, value) in samples {
                        let series_ref = aliases.get(&series_ref).copied().unwrap_or(series_ref);
                        if !head.contains(series_ref) {
                            // Prometheus counts and skips these too (head_wal.go).
                            stats.wal_unknown_series_samples_total += 1;
                            continue;
                        }
                        if appendability(head.last_sample(series_ref), timestamp_ms, value) == Appendability::Append {
                            head.append(series_ref, timestamp_ms, value);
                            stats.wal_samples_replayed += 1;
                        }
                    }
                }
            }
        }
        if stats.wal_unknown_series_samples_total > 0 {
            tracing::warn!(count = stats.wal_unknown_series_samples_total, "wal samples for unknown series skipped");
        }
        let state = State { head, wal, stats };
        Ok(Db(Arc::new(Inner { state: Mutex::new(state), observer: options.commit_observer })))
    }

    /// Current statistics.
    pub fn stats(&self) -> DbStats {
        let state = self.0.lock();
        DbStats {
            series_count: state.head.series_count(),
            chunk_count: state.head.chunk_count(),
            wal_segment_index: state.wal.segment_index(),
            ..state.stats.clone()
        }
    }
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(HeadAppender { db: self.0.clone(), pending: Vec::new(), batch_last: HashMap::new() })
    }
}

impl Queryable for Db {
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Box<dyn Querier> {
        Box::new(HeadQuerier { db: self.0.clone(), min_time_ms, max_time_ms })
    }
}

struct HeadQuerier {
    db: Arc<Inner>,
    min_time_ms: i64,
    max_time_ms: i64,
}

impl Querier for HeadQuerier {
    fn select(&self, matchers: &[Matcher]) -> Vec<Series> {
        self.db.lock().head.select(matchers, self.min_time_ms, self.max_time_ms)
    }
}

struct HeadAppender {
    db: Arc<Inner>,
    pending: Vec<(Labels, Sample)>,
    // Newest sample per series within this batch; lookup only, never iterated.
    batch_last: HashMap<Labels, (i64, u64)>,
}

fn check(labels: &Labels, last: Option<(i64, u64)>, timestamp_ms: i64, value: f64) -> Result<bool, AppendError> {
    match appendability(last, timestamp_ms, value) {
        Appendability::Append => Ok(true),
        Appendability::Duplicate => Ok(false),
        Appendability::OutOfOrder { last_timestamp_ms } => {
            Err(AppendError::OutOfOrder { labels: labels.to_string(), timestamp_ms, last_timestamp_ms })
        }
        Appendability::DuplicateTimestamp => {
            Err(AppendError::DuplicateTimestamp { labels: labels.to_string(), timestamp_ms })
        }
    }
}

impl Appender for HeadAppender {
    fn append(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) -> Result<(), AppendError> {
        if labels.is_empty() {
            return Err(AppendError::EmptyLabels);
        }
        if labels.get(METRIC_NAME_LABEL).is_none() {
            return Err(AppendError::MissingMetricName { labels: labels.to_string() });
        }
        let last = match self.batch_last.get(labels) {
            Some(last) => Some(*last),
            None => {
                let state = self.db.lock();
                state.head.series_ref(labels).and_then(|series_ref| state.head.last_sample(series_ref))
            }
        };
        if check(labels, last, timestamp_ms, value)? {
            self.batch_last.insert(labels.clone(), (timestamp_ms, value.to_bits()));
            self.pending.push((labels.clone(), Sample { timestamp_ms, value }));
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<usize, TsdbError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let mut state = self.db.lock();
        let State { head, wal, stats } = &mut *state;
        // Resolve references; new series get consecutive refs from the head's counter.
        let mut new_series: Vec<(SeriesRef, &Labels)> = Vec::new();
        let mut new_refs: HashMap<&Labels, SeriesRef> = HashMap::new();
        let mut accepted: Vec<(SeriesRef, usize)> = Vec::with_capacity(self.pending.len());
        let mut head_last: HashMap<SeriesRef, Option<(i64, u64)>> = HashMap::new();
        for (index, (labels, sample)) in self.pending.iter().enumerate() {
            let series_ref = match head.series_ref(labels).or_else(|| new_refs.get(labels).copied()) {
                Some(series_ref) => series_ref,
                None => {
                    let series_ref = SeriesRef(head.next_ref().0 + new_series.len() as u64);
                    new_series.push((series_ref, labels));
                    new_refs.insert(labels, series_ref);
                    series_ref
                }
            };
            // Another appender may have committed newer samples since `append` checked.
            let last = *head_last.entry(series_ref).or_insert_with(|| head.last_sample(series_ref));
            match appendability(last, sample.timestamp_ms, sample.value) {
                Appendability::Append => {
                    head_last.insert(series_ref, Some((sample.timestamp_ms, sample.value.to_bits())));
                    accepted.push((series_ref, index));
                }
                Appendability::Duplicate => {}
                Appendability::OutOfOrder { .. } | Appendability::DuplicateTimestamp => {
                    stats.out_of_order_samples_total += 1;
                }
            }
        }
        let mut encoded = Vec::new();
        if !new_series.is_empty() {
            wal::encode_series(&mut encoded, &new_series)?;
        }
        let wal_samples: Vec<(SeriesRef, i64, f64)> = accepted
            .iter()
            .map(|(series_ref, index)| (*series_ref, self.pending[*index].1.timestamp_ms, self.pending[*index].1.value))
            .collect();
        for batch in wal_samples.chunks(WAL_RECORD_SAMPLE_COUNT_MAX) {
            wal::encode_samples(&mut encoded, batch)?;
        }
        if let Err(error) = wal.log(&encoded) {
            head.skip_refs(new_series.len() as u64);
            return Err(error);
        }
        for (series_ref, labels) in &new_series {
            head.create_series(*series_ref, (*labels).clone());
        }
        for (series_ref, timestamp_ms, value) in &wal_samples {
            head.append(*series_ref, *timestamp_ms, *value);
        }
        stats.samples_appended_total += wal_samples.len() as u64;
        drop(state);
        if let Some(observer) = &self.db.observer {
            let committed: Vec<(Labels, Sample)> =
                accepted.iter().map(|(_, index)| self.pending[*index].clone()).collect();
            observer(&committed);
        }
        Ok(accepted.len())
    }

    fn rollback(self: Box<Self>) {}
}
