//! The commit path: one WAL writer task fed by a bounded queue. It takes every commit already
//! waiting (group commit: many appenders, one write, one fsync), writes their records, syncs
//! them under the configured [`SyncPolicy`], then applies each commit's samples to the head in
//! queue order and answers its appender. So WAL order is head order, and replay rebuilds exactly
//! what queries saw.
//!
//! The WAL is written by this task alone, outside every head lock; appenders encode their records
//! before they queue them. A full queue makes appenders wait (backpressure, never unbounded
//! memory). Concurrency: the task owns the [`Wal`]; it shares the head and the counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::head::{Appendability, Head};
use super::wal::{RefSample, Wal, WalError};
use super::CommitObserver;
use crate::limits::{GROUP_COMMIT_COUNT_MAX, GROUP_COMMIT_SIZE_MAX};
use crate::model::{Labels, Sample};
use crate::storage::{CommitStats, StorageError};

/// When a commit's WAL records are synced (`--storage.tsdb.wal-sync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every commit is synced before it returns (group commit shares one fsync among the commits
    /// waiting together): a committed sample survives power loss. The default.
    Commit,
    /// Synced every `interval_ms`: a power loss may lose the last interval's commits; a process
    /// crash loses nothing the kernel has.
    Interval {
        /// Time between syncs, ms.
        interval_ms: u64,
    },
    /// Synced only when a segment is full (Prometheus' behaviour): a power loss may lose up to a
    /// segment of commits.
    Segment,
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    /// `commit`, `interval:<duration>` (e.g. `interval:100ms`) or `segment`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "commit" => Ok(SyncPolicy::Commit),
            "segment" => Ok(SyncPolicy::Segment),
            _ => {
                let duration = text.strip_prefix("interval:").ok_or_else(|| {
                    format!("wal sync policy {text:?} is not one of commit, interval:<duration>, segment")
                })?;
                let interval_ms = crate::config::parse_duration_ms(duration)
                    .map_err(|error| format!("wal sync policy {text:?}: {error}"))?;
                if interval_ms <= 0 {
                    return Err(format!("wal sync policy {text:?}: interval must be positive"));
                }
                Ok(SyncPolicy::Interval { interval_ms: interval_ms as u64 })
            }
        }
    }
}

/// One appender's commit on its way to the WAL.
pub(crate) struct CommitRequest {
    /// Encoded WAL records: the series record (if any), then the samples record(s).
    pub(crate) records: Vec<Vec<u8>>,
    /// Series whose record is among `records`.
    pub(crate) new_series: Vec<u32>,
    /// The samples, applied to the head once durable.
    pub(crate) samples: Vec<RefSample>,
    /// Where the outcome goes.
    pub(crate) reply: oneshot::Sender<Result<CommitStats, StorageError>>,
    /// The batch's holds on its series; released when the request is dropped (after apply).
    pub(crate) _holds: super::head::append::SeriesHolds,
}

/// What the WAL writer task is asked to do, in queue order.
pub(crate) enum WriterRequest {
    /// Make a commit durable, then visible.
    Commit(CommitRequest),
    /// Close the current segment and start a new one (before a checkpoint, so the segments it
    /// covers are closed); replies with the new segment's index.
    RollSegment(oneshot::Sender<Result<u32, WalError>>),
    /// Replies once every commit queued before it has been applied.
    Barrier(oneshot::Sender<()>),
    /// Removes head-chunk files whose chunks all end before `before_ms`; replies with the count.
    RemoveChunkFiles {
        /// Exclusive bound, ms.
        before_ms: i64,
        /// Files removed.
        reply: oneshot::Sender<usize>,
    },
}

impl CommitRequest {
    fn size(&self) -> usize {
        self.records.iter().map(Vec::len).sum()
    }
}

/// Counters shared by the writer, the database handle and `/metrics`.
#[derive(Default)]
pub(crate) struct CommitCounters {
    pub(crate) commits_total: AtomicU64,
    pub(crate) samples_appended_total: AtomicU64,
    pub(crate) out_of_order_samples_total: AtomicU64,
    pub(crate) wal_writes_total: AtomicU64,
    pub(crate) wal_write_failures_total: AtomicU64,
    pub(crate) wal_fsyncs_total: AtomicU64,
    pub(crate) wal_fsync_duration_ns_total: AtomicU64,
    pub(crate) wal_segment_index: AtomicU64,
    /// False after a failed WAL write (disk full, I/O error) until a write succeeds again.
    pub(crate) ready_for_writes: AtomicBool,
}

/// The writer task's state.
pub(crate) struct Writer {
    pub(crate) wal: Wal,
    pub(crate) head: Arc<Head>,
    pub(crate) receiver: mpsc::Receiver<WriterRequest>,
    pub(crate) policy: SyncPolicy,
    pub(crate) observer: Option<CommitObserver>,
    pub(crate) counters: Arc<CommitCounters>,
    /// Where the head's full chunks go once their samples are applied.
    pub(crate) chunk_writer: super::chunks_head::HeadChunkWriter,
    /// Woken when the head has become compactable (the compactor task waits on it).
    pub(crate) compact_trigger: Arc<tokio::sync::Notify>,
    /// Bumped after every WAL write and segment roll, so WAL readers (the remote write sender)
    /// wake without polling.
    pub(crate) wal_written: tokio::sync::watch::Sender<u64>,
}

impl Writer {
    /// Serves commits until every appender source (the database handles) is gone.
    pub(crate) async fn run(mut self) {
        let mut ticker = match self.policy {
            SyncPolicy::Interval { interval_ms } => {
                let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(ticker)
            }
            SyncPolicy::Commit | SyncPolicy::Segment => None,
        };
        let mut unsynced = false;
        // A control request found while gathering a group waits until the group is written.
        let mut deferred: Option<WriterRequest> = None;
        loop {
            let next = match deferred.take() {
                Some(request) => Some(request),
                None => match ticker.as_mut() {
                    Some(ticker) => tokio::select! {
                        biased;
                        request = self.receiver.recv() => request,
                        _ = ticker.tick() => {
                            if unsynced {
                                self.sync();
                                unsynced = false;
                            }
                            continue;
                        }
                    },
                    None => self.receiver.recv().await,
                },
            };
            let Some(next) = next else { break };
            let first = match next {
                WriterRequest::Commit(first) => first,
                control => {
                    self.serve_control(control);
                    continue;
                }
            };
            let mut size = first.size();
            let mut group = vec![first];
            while group.len() < GROUP_COMMIT_COUNT_MAX && size < GROUP_COMMIT_SIZE_MAX {
                match self.receiver.try_recv() {
                    Ok(WriterRequest::Commit(request)) => {
                        size += request.size();
                        group.push(request);
                    }
                    Ok(control) => {
                        deferred = Some(control);
                        break;
                    }
                    Err(_) => break,
                }
            }
            unsynced |= self.write_group(group) && self.policy != SyncPolicy::Commit;
            if self.head.compactable_range().is_some() {
                self.compact_trigger.notify_one();
            }
        }
        if unsynced {
            self.sync();
        }
    }

    fn serve_control(&mut self, request: WriterRequest) {
        match request {
            WriterRequest::Commit(_) => unreachable!("commits are grouped by the caller"),
            WriterRequest::RollSegment(reply) => {
                let result = self.wal.roll_segment();
                self.counters.wal_segment_index.store(u64::from(self.wal.segment_index()), Ordering::Relaxed);
                self.wal_written.send_modify(|count| *count += 1);
                let _ = reply.send(result);
            }
            WriterRequest::Barrier(reply) => {
                let _ = reply.send(());
            }
            WriterRequest::RemoveChunkFiles { before_ms, reply } => {
                let removed = self.chunk_writer.remove_files_before(before_ms);
                if let Some(reader) = self.head.chunk_reader() {
                    for &index in &removed {
                        reader.forget(index);
                    }
                }
                let _ = reply.send(removed.len());
            }
        }
    }

    fn sync(&mut self) {
        let started = tokio::time::Instant::now();
        match self.wal.sync() {
            Ok(()) => self.count_fsync(started),
            Err(error) => tracing::error!(%error, "sync wal"),
        }
    }

    fn count_fsync(&self, started: tokio::time::Instant) {
        self.counters.wal_fsyncs_total.fetch_add(1, Ordering::Relaxed);
        let elapsed_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.wal_fsync_duration_ns_total.fetch_add(elapsed_ns, Ordering::Relaxed);
    }

    /// Writes one group; returns whether it was written.
    fn write_group(&mut self, group: Vec<CommitRequest>) -> bool {
        let records: Vec<&[u8]> = group.iter().flat_map(|request| request.records.iter().map(Vec::as_slice)).collect();
        let sync = self.policy == SyncPolicy::Commit;
        let started = tokio::time::Instant::now();
        let result = self.wal.log(&records, sync);
        self.counters.wal_writes_total.fetch_add(1, Ordering::Relaxed);
        self.counters.wal_segment_index.store(u64::from(self.wal.segment_index()), Ordering::Relaxed);
        match result {
            Ok(()) => {
                if sync {
                    self.count_fsync(started);
                }
                self.counters.ready_for_writes.store(true, Ordering::Relaxed);
                self.wal_written.send_modify(|count| *count += 1);
                for request in group {
                    self.head.mark_logged(&request.new_series);
                    let stats = self.apply(&request.samples);
                    let _ = request.reply.send(Ok(stats)); // The appender may have given up.
                }
                // After the replies: moving full chunks off the heap is not on the commit latency.
                self.head.offload(&mut self.chunk_writer);
                true
            }
            Err(error) => {
                self.fail(group, &error);
                false
            }
        }
    }

    fn fail(&self, group: Vec<CommitRequest>, error: &WalError) {
        self.counters.wal_write_failures_total.fetch_add(1, Ordering::Relaxed);
        self.counters.ready_for_writes.store(false, Ordering::Relaxed);
        tracing::error!(%error, commit_count = group.len(), "wal write failed; commits refused");
        let message = error.to_string();
        for request in group {
            let error = StorageError::Write { context: "write wal", source: message.clone().into() };
            let _ = request.reply.send(Err(error));
        }
    }

    /// Applies durable samples to the head in order.
    fn apply(&self, samples: &[RefSample]) -> CommitStats {
        let mut stats = CommitStats::default();
        let mut committed: Vec<(u32, Sample)> = Vec::new();
        for sample in samples {
            let Ok(series_ref) = u32::try_from(sample.series_ref.0) else { continue };
            match self.head.append(series_ref, sample.timestamp_ms, sample.value) {
                Some(Appendability::Append) => {
                    stats.sample_count += 1;
                    if self.observer.is_some() {
                        committed.push((series_ref, Sample { timestamp_ms: sample.timestamp_ms, value: sample.value }));
                    }
                }
                Some(Appendability::Duplicate) => {}
                Some(_) | None => stats.out_of_order_count += 1,
            }
        }
        self.counters.commits_total.fetch_add(1, Ordering::Relaxed);
        self.counters.samples_appended_total.fetch_add(stats.sample_count as u64, Ordering::Relaxed);
        self.counters.out_of_order_samples_total.fetch_add(stats.out_of_order_count as u64, Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            let mut labels_by_ref: BTreeMap<u32, Labels> = BTreeMap::new();
            let with_labels: Vec<(Labels, Sample)> = committed
                .into_iter()
                .filter_map(|(series_ref, sample)| {
                    let labels = match labels_by_ref.get(&series_ref) {
                        Some(labels) => labels.clone(),
                        None => {
                            let labels = self.head.labels(series_ref)?;
                            labels_by_ref.insert(series_ref, labels.clone());
                            labels
                        }
                    };
                    Some((labels, sample))
                })
                .collect();
            observer(&with_labels);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_parse() {
        assert_eq!("commit".parse::<SyncPolicy>(), Ok(SyncPolicy::Commit));
        assert_eq!("segment".parse::<SyncPolicy>(), Ok(SyncPolicy::Segment));
        assert_eq!("interval:250ms".parse::<SyncPolicy>(), Ok(SyncPolicy::Interval { interval_ms: 250 }));
        assert_eq!("interval:1m".parse::<SyncPolicy>(), Ok(SyncPolicy::Interval { interval_ms: 60_000 }));
        for bad in ["", "always", "interval:", "interval:0s", "interval:5x"] {
            assert!(bad.parse::<SyncPolicy>().is_err(), "{bad:?} must be refused");
        }
    }
}
