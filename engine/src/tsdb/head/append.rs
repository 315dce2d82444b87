//! The head's appender (Prometheus tsdb/head_append.go `headAppender`): checks each sample
//! against its series and the batch so far, creates new series at once (so their references are
//! stable for the caller's cache), and at commit encodes the batch's WAL records outside every
//! lock and hands them to the WAL writer (`tsdb::commit`), which makes them durable and then
//! visible.
//!
//! A series created by a commit that then failed stays in the head without samples; its series
//! record is logged by the next commit that uses it (the `logged` flag), so a later sample never
//! replays under an unknown reference.
//!
//! Every series the batch touches is held (its hold count raised) from its first sample until
//! the commit is applied or the appender dropped, so head truncation never removes a series a
//! commit in flight still needs. Samples older than the head's `min_valid_ms` (the end of the
//! newest persisted block) are refused as out of bounds. Concurrency: one task per appender; the
//! head's locks are taken per call and never across an `.await`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{appendability, Appendability, Head};
use crate::limits::WAL_RECORD_SAMPLE_COUNT_MAX;
use crate::model::{Labels, SeriesRef, METRIC_NAME_LABEL};
use crate::storage::{AppendError, Appender, CommitFuture, CommitStats, StorageError};
use crate::tsdb::commit::{CommitRequest, WriterRequest};
use crate::tsdb::wal::{self, RefSample};

/// Holds on series, released when dropped: by the WAL writer once the commit is applied, or
/// with the appender on rollback or when the commit is abandoned.
pub(crate) struct SeriesHolds {
    head: Arc<Head>,
    /// One entry per hold (a series may appear more than once).
    refs: Vec<u32>,
}

impl Drop for SeriesHolds {
    fn drop(&mut self) {
        self.head.release(&self.refs);
    }
}

/// A batch for the head.
pub struct HeadAppender {
    head: Arc<Head>,
    queue: mpsc::Sender<WriterRequest>,
    samples: Vec<RefSample>,
    /// Series whose record this batch logs.
    series_to_log: Vec<u32>,
    // Newest sample per series within this batch; lookup only, never iterated.
    batch_last: HashMap<u32, (i64, u64)>,
    holds: SeriesHolds,
    /// The head's lower bound when the batch began.
    min_valid_ms: i64,
}

impl HeadAppender {
    pub(crate) fn new(head: Arc<Head>, queue: mpsc::Sender<WriterRequest>) -> Self {
        let min_valid_ms = head.min_valid_ms();
        HeadAppender {
            holds: SeriesHolds { head: head.clone(), refs: Vec::new() },
            head,
            queue,
            samples: Vec::new(),
            series_to_log: Vec::new(),
            batch_last: HashMap::new(),
            min_valid_ms,
        }
    }

    fn rejected(&self, series_ref: u32, verdict: Appendability, timestamp_ms: i64) -> AppendError {
        let labels = self.head.labels(series_ref).map(|labels| labels.to_string()).unwrap_or_default();
        match verdict {
            Appendability::OutOfOrder { last_timestamp_ms } => {
                AppendError::OutOfOrder { labels, timestamp_ms, last_timestamp_ms }
            }
            Appendability::OutOfBounds { min_valid_ms } => {
                AppendError::OutOfBounds { labels, timestamp_ms, min_valid_ms }
            }
            _ => AppendError::DuplicateTimestamp { labels, timestamp_ms },
        }
    }

    /// Encodes the batch and queues it for the WAL writer; `wait`: for room in the queue, else
    /// refuse a full queue at once.
    fn submit(self, wait: bool) -> CommitFuture {
        let HeadAppender { head, queue, samples, series_to_log, holds, .. } = self;
        if samples.is_empty() && series_to_log.is_empty() {
            return Box::pin(async { Ok(CommitStats::default()) });
        }
        // Encoding happens here, on the appender's task, outside every lock.
        let mut records: Vec<Vec<u8>> = Vec::with_capacity(2);
        if !series_to_log.is_empty() {
            let labels: Vec<(SeriesRef, Labels)> = series_to_log
                .iter()
                .filter_map(|&series_ref| {
                    head.labels(series_ref).map(|labels| (SeriesRef(u64::from(series_ref)), labels))
                })
                .collect();
            let borrowed: Vec<(SeriesRef, &Labels)> =
                labels.iter().map(|(series_ref, labels)| (*series_ref, labels)).collect();
            let mut record = Vec::new();
            wal::encode_series(&borrowed, &mut record);
            records.push(record);
        }
        // One samples record per commit keeps the commit atomic at replay, up to the record limit.
        for batch in samples.chunks(WAL_RECORD_SAMPLE_COUNT_MAX) {
            let mut record = Vec::new();
            wal::encode_samples(batch, &mut record);
            records.push(record);
        }
        Box::pin(async move {
            let closed = || StorageError::NotReady { reason: "storage is shut down".to_string() };
            let (reply, replied) = oneshot::channel();
            let request = CommitRequest { records, new_series: series_to_log, samples, reply, _holds: holds };
            let request = WriterRequest::Commit(request);
            if wait {
                queue.send(request).await.map_err(|_| closed())?;
            } else {
                match queue.try_send(request) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        return Err(StorageError::CommitQueueFull { capacity_count: queue.max_capacity() })
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Err(closed()),
                }
            }
            replied.await.map_err(|_| closed())?
        })
    }
}

fn validate(labels: &Labels) -> Result<(), AppendError> {
    if labels.is_empty() {
        return Err(AppendError::EmptyLabels);
    }
    if labels.get(METRIC_NAME_LABEL).is_none() {
        return Err(AppendError::MissingMetricName { labels: labels.to_string() });
    }
    Ok(())
}

impl Appender for HeadAppender {
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<SeriesRef, AppendError> {
        if let Some(hint) = series_ref {
            match self.append_by_ref(hint, timestamp_ms, value) {
                Err(AppendError::UnknownSeriesRef { .. }) => {}
                other => return other.map(|()| hint),
            }
        }
        validate(labels)?;
        // A series found idle may be collected by head truncation before `append_by_ref` holds
        // it; the second lookup then creates it afresh (held from creation, so it cannot vanish).
        for _attempt in 0..2 {
            let (found, created) = self.head.get_or_create_held(labels)?;
            if created {
                self.holds.refs.push(found);
            }
            let found = SeriesRef(u64::from(found));
            match self.append_by_ref(found, timestamp_ms, value) {
                Err(AppendError::UnknownSeriesRef { .. }) => continue,
                other => return other.map(|()| found),
            }
        }
        Err(AppendError::UnknownSeriesRef { series_ref: 0 })
    }

    fn append_by_ref(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) -> Result<(), AppendError> {
        let unknown = || AppendError::UnknownSeriesRef { series_ref: series_ref.0 };
        let head_ref = u32::try_from(series_ref.0).map_err(|_| unknown())?;
        if timestamp_ms < self.min_valid_ms {
            let verdict = Appendability::OutOfBounds { min_valid_ms: self.min_valid_ms };
            return Err(self.rejected(head_ref, verdict, timestamp_ms));
        }
        let batch_last = self.batch_last.get(&head_ref).copied();
        // The first sample of a series in this batch takes a hold on it (already held after).
        let (head_last, logged) = match batch_last {
            Some(_) => self.head.append_state(head_ref),
            None => {
                let state = self.head.hold(head_ref);
                if state.is_some() {
                    self.holds.refs.push(head_ref);
                }
                state
            }
        }
        .ok_or_else(unknown)?;
        match appendability(batch_last.or(head_last), timestamp_ms, value) {
            Appendability::Append => {}
            Appendability::Duplicate => return Ok(()),
            verdict => return Err(self.rejected(head_ref, verdict, timestamp_ms)),
        }
        // The first accepted sample of an unlogged series brings its series record along (a
        // lookup in `batch_last`, not a scan of `series_to_log`: a scrape may create 200,000).
        if !logged && batch_last.is_none() {
            self.series_to_log.push(head_ref);
        }
        self.batch_last.insert(head_ref, (timestamp_ms, value.to_bits()));
        self.samples.push(RefSample { series_ref, timestamp_ms, value });
        Ok(())
    }

    fn commit(self: Box<Self>) -> CommitFuture {
        self.submit(true)
    }

    fn try_commit(self: Box<Self>) -> CommitFuture {
        self.submit(false)
    }

    fn rollback(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MatchKind, Matcher};
    use crate::storage::Querier;
    use crate::tsdb::head::{read::HeadQuerier, HeadOptions};

    #[tokio::test]
    async fn try_commit_refuses_a_full_queue_at_once_and_leaves_nothing_visible() {
        let options = HeadOptions { chunk_sample_count_max: 120, chunk_range_ms: 7_200_000, series_count_max: 10 };
        let head = Arc::new(Head::new(options));
        // Nobody reads the queue: the first commit fills its one slot.
        let (queue, mut receiver) = mpsc::channel(1);
        let mut first = Box::new(HeadAppender::new(head.clone(), queue.clone()));
        first.append(None, &Labels::from_pairs([("__name__", "first")]), 1_000, 1.0).unwrap();
        let pending = tokio::spawn(first.try_commit());
        tokio::task::yield_now().await;
        let mut second = Box::new(HeadAppender::new(head.clone(), queue.clone()));
        second.append(None, &Labels::from_pairs([("__name__", "second")]), 1_000, 2.0).unwrap();
        match second.try_commit().await {
            Err(StorageError::CommitQueueFull { capacity_count: 1 }) => {}
            other => panic!("expected CommitQueueFull {{ capacity_count: 1 }}, got {other:?}"),
        }
        assert!(matches!(receiver.try_recv(), Ok(WriterRequest::Commit(_))), "the first commit was queued");
        assert!(receiver.try_recv().is_err(), "the refused commit was not queued");
        let matcher = Matcher::new(MatchKind::Equal, "__name__", "second").unwrap();
        let querier = HeadQuerier::new(head, i64::MIN, i64::MAX);
        assert_eq!(querier.select(None, &[matcher]).count(), 0, "nothing of the refused batch is visible");
        pending.abort();
    }
}
