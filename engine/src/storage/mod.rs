//! Storage seams, as Prometheus' `storage/interface.go`: writers see only an [`Appender`] (append,
//! then commit or roll back), readers only a [`Querier`] over a fixed time range. The head, blocks,
//! remote stores and the replica-dedup merge all sit behind these traits, so nothing above this
//! module names a concrete store.
//!
//! Contracts:
//! - A [`SeriesRef`] returned by an append stays valid for the same labels until the series is
//!   garbage-collected; then `append_by_ref` fails with [`AppendError::UnknownSeriesRef`] and the
//!   caller appends by labels again.
//! - `commit` resolves only when the batch is durable under the store's configured policy; a failed
//!   commit leaves none of the batch visible.
//! - Series sets are sorted by labels, each series' samples by time, and are streamed: a series'
//!   samples are read only when the set reaches it.
//!
//! Concurrency: appenders are used by one task at a time; queriers may run beside appends.

pub mod dedup;
pub mod merge;

use std::future::Future;
use std::pin::Pin;

pub use crate::model::SeriesRef;
use crate::model::{Labels, Matcher, Sample};

/// Boxed error of a concrete store, kept as the source of a [`StorageError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A sample or series the store will not take; the rest of the batch is unaffected.
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
    /// Older than the oldest timestamp the store accepts (that range is persisted in a block).
    #[error("out of bounds sample for {labels}: {timestamp_ms} is before {min_valid_ms}, the end of the newest block")]
    OutOfBounds {
        /// Series.
        labels: String,
        /// Rejected timestamp.
        timestamp_ms: i64,
        /// Oldest accepted timestamp.
        min_valid_ms: i64,
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
    /// `append_by_ref` named a series the store does not hold (never created, or collected).
    #[error("unknown series reference {series_ref}")]
    UnknownSeriesRef {
        /// The reference.
        series_ref: u64,
    },
    /// Creating the series would pass the configured series limit.
    #[error("series limit of {limit_count} reached: new series {labels} refused")]
    SeriesLimit {
        /// The limit (`storage.tsdb.max_series`).
        limit_count: u64,
        /// The refused series.
        labels: String,
    },
    /// A label name or value is longer than the store can record.
    #[error("label of {length} bytes exceeds {length_max} bytes")]
    LabelTooLong {
        /// Length in bytes.
        length: usize,
        /// Limit in bytes.
        length_max: usize,
    },
    /// The store has used every series reference it can hand out.
    #[error("series references exhausted")]
    SeriesRefsExhausted,
}

/// A failure of the store itself (not of one sample).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Writing or syncing failed; nothing of the batch is visible.
    #[error("{context}: {source}")]
    Write {
        /// What was being done.
        context: &'static str,
        /// Cause.
        source: BoxError,
    },
    /// Reading failed (a corrupt chunk, an I/O error).
    #[error("{context}: {source}")]
    Read {
        /// What was being done.
        context: &'static str,
        /// Cause.
        source: BoxError,
    },
    /// The store is not taking writes now (disk full, shutting down); retry later.
    #[error("storage not ready for writes: {reason}")]
    NotReady {
        /// Why.
        reason: String,
    },
    /// [`Appender::try_commit`] found the store's commit queue full; nothing of the batch is
    /// visible; retry later.
    #[error("commit queue full: {capacity_count} commits already waiting")]
    CommitQueueFull {
        /// The queue's capacity (`limits::COMMIT_QUEUE_CAPACITY` for the TSDB).
        capacity_count: usize,
    },
}

/// What a successful commit made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples now visible to queries.
    pub sample_count: usize,
    /// Samples that were in the WAL but lost to a concurrent newer commit of the same series.
    pub out_of_order_count: usize,
}

/// The future a commit returns.
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<CommitStats, StorageError>> + Send + 'static>>;

/// Buffers samples and commits them atomically (Prometheus `storage.Appender`).
pub trait Appender: Send {
    /// Buffers a sample of the series with `labels`. `series_ref` is a hint from an earlier append
    /// of the same labels: when it names a live series the labels are not looked at again. Returns
    /// the series' reference for later [`Appender::append_by_ref`] calls.
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<SeriesRef, AppendError>;
    /// Buffers a sample of a series known by reference only.
    fn append_by_ref(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) -> Result<(), AppendError>;
    /// Makes the batch durable (under the store's policy), then visible.
    fn commit(self: Box<Self>) -> CommitFuture;
    /// As [`Appender::commit`], but when the store would make the caller wait for room in its
    /// commit queue it refuses at once with [`StorageError::CommitQueueFull`] (the batch is
    /// dropped), so a receiver can tell its sender to back off (HTTP 429) instead of holding the
    /// request. Stores without a queue just commit.
    fn try_commit(self: Box<Self>) -> CommitFuture {
        self.commit()
    }
    /// Drops the batch.
    fn rollback(self: Box<Self>);
}

/// Hands out appenders.
pub trait Appendable: Send + Sync {
    /// A new, empty batch.
    fn appender(&self) -> Box<dyn Appender>;
}

/// One series with its samples in the querier's range.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Labels.
    pub labels: Labels,
    /// Samples in time order.
    pub samples: Vec<Sample>,
}

/// What the caller will do with a selection, so a store can plan (Prometheus `SelectHints`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectHints {
    /// First timestamp the caller needs, Unix ms.
    pub start_ms: i64,
    /// Last timestamp the caller needs, Unix ms.
    pub end_ms: i64,
    /// Query resolution step, ms (0 for an instant query).
    pub step_ms: i64,
    /// Range of a range selector, ms (0 for an instant selector).
    pub range_ms: i64,
    /// The surrounding function, e.g. `rate`.
    pub function: Option<String>,
}

/// A stream of series sorted by labels; each item is read when it is reached.
pub type SeriesSet<'a> = Box<dyn Iterator<Item = Result<Series, StorageError>> + Send + 'a>;

/// Reads series over the fixed time range it was opened with (Prometheus `storage.Querier`).
pub trait Querier: Send + Sync {
    /// Series matching every matcher that have samples in range, sorted by labels.
    fn select(&self, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_>;
    /// Sorted, distinct label names of the series matching `matchers` (every series when empty).
    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;
    /// Sorted, distinct values of label `name` over the series matching `matchers`.
    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError>;
}

/// Hands out queriers.
pub trait Queryable: Send + Sync {
    /// A querier over `[min_time_ms, max_time_ms]`.
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError>;
}

/// Collects a series set, stopping at the first error.
pub fn collect_series(set: SeriesSet<'_>) -> Result<Vec<Series>, StorageError> {
    set.collect()
}
