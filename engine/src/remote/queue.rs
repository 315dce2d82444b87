//! One remote write queue (Prometheus storage/remote `QueueManager`): follows the WAL, batches
//! samples into shards, posts each batch as a snappy-compressed protobuf `WriteRequest`
//! (remote_write 1.0) and retries what may succeed later.
//!
//! A queue works in rounds. It reads samples from the WAL until every shard could fill a batch
//! (`shards x max_samples_per_send`), until the oldest waiting sample is `batch_send_deadline`
//! old, or up to `shards x capacity` samples when it is behind. It splits them by series over
//! the shards (so each series' samples stay in order), sends every shard's batches (shards in
//! parallel, each shard's batches in order), and once every batch is acknowledged or given up,
//! writes the WAL position reached to its progress marker
//! (`<data>/remote_write/<name>/progress`, temporary file and rename). Before sending it records
//! the round (its end and shard count) in the same marker. A crash or restart resumes at the
//! marker, so every sample is delivered at least once; a round interrupted by a crash is sent
//! again cut into the same batches ([`Progress`] says why).
//!
//! Retries: a connection error, a timeout, a 5xx and (with `retry_on_http_429`) a 429 are
//! retried with a backoff from `min_backoff` doubling to `max_backoff`, without a count limit:
//! the WAL holds the data, the round holds at most `shards x capacity` samples, and progress
//! waits. Any other answer (4xx, or 429 without the option) cannot succeed by retrying: the
//! batch is counted as failed and dropped, as Prometheus does.
//!
//! Shards: a round that leaves samples unread (the queue is behind) doubles the shards up to
//! `max_shards`; a caught-up round whose samples would fit in half the shards halves them down
//! to `min_shards`. Coarser than Prometheus' rate-based estimate, but it reacts within a round
//! and needs no clock-driven sampling.
//!
//! Concurrency: one task per queue; each shard's sending in a round is its own task (through
//! the environment's spawner); metrics are atomics read by `/metrics`. Time only through
//! `tokio::time`, files and network only through the [`Env`], so the simulator drives it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;

use super::wal_follower::{WalFollower, WalPosition};
use crate::api::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use crate::config::RemoteWriteConfig;
use crate::io::fs::child;
use crate::io::http_client::{self, HttpEndpoint, HttpRequest};
use crate::io::Env;
use crate::limits::{REMOTE_WRITE_SHARD_COUNT_MAX, REMOTE_WRITE_WAL_POLL_INTERVAL_MS};
use crate::model::Labels;
use crate::tsdb::wal::RefSample;

/// Name of the progress marker file in a queue's directory.
pub const PROGRESS_FILE_NAME: &str = "progress";

/// Counters and gauges of one queue, as Prometheus names them.
#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Samples acknowledged by the receiver.
    pub samples_sent_total: AtomicU64,
    /// Samples given up (a non-retryable answer).
    pub samples_failed_total: AtomicU64,
    /// Sample sends retried.
    pub samples_retried_total: AtomicU64,
    /// Samples dropped before sending (`write_relabel_configs`).
    pub samples_dropped_total: AtomicU64,
    /// Samples read from the WAL and not yet acknowledged or given up.
    pub samples_pending: AtomicU64,
    /// Compressed bytes acknowledged.
    pub bytes_sent_total: AtomicU64,
    /// Requests acknowledged.
    pub requests_sent_total: AtomicU64,
    /// Sum of request durations (every attempt), seconds x 1e9.
    pub send_duration_ns_total: AtomicU64,
    /// Attempts, successful or not.
    pub send_attempts_total: AtomicU64,
    /// Newest sample timestamp acknowledged, Unix ms (0: none yet).
    pub highest_sent_timestamp_ms: AtomicI64,
    /// Newest sample timestamp read from the WAL, Unix ms (0: none yet).
    pub highest_read_timestamp_ms: AtomicI64,
    /// Shards in use.
    pub shards: AtomicU64,
    /// WAL ranges skipped as damaged, and segments truncated before they were read.
    pub wal_corruptions_total: AtomicU64,
    /// WAL segments truncated away before they were read.
    pub wal_segments_skipped_total: AtomicU64,
    /// Series known from the WAL.
    pub series_count: AtomicU64,
    /// Rounds whose progress marker could not be written.
    pub progress_write_failures_total: AtomicU64,
}

/// What is fixed for a queue's life (a reload with a different entry starts a new queue).
pub(super) struct QueueContext {
    pub(super) env: Env,
    pub(super) config: RemoteWriteConfig,
    pub(super) endpoint: HttpEndpoint,
    pub(super) external_labels: BTreeMap<String, String>,
    pub(super) wal_dir: PathBuf,
    /// `<data>/remote_write/<name>`.
    pub(super) queue_dir: PathBuf,
    pub(super) metrics: Arc<QueueMetrics>,
    /// Set to stop the queue at its next wait.
    pub(super) stopped: AtomicBool,
    /// Whether the queue's directory and its parents up to the data directory were synced.
    pub(super) directories_synced: AtomicBool,
}

/// A series as it is sent.
type Outgoing = Vec<Label>;

/// The labels a series is sent with: its own, plus external labels it does not carry, then
/// `write_relabel_configs` (Prometheus' order); `None` when relabeling drops it.
pub(super) fn outgoing_labels(
    labels: &Labels,
    external_labels: &BTreeMap<String, String>,
    relabel: &[crate::relabel::RelabelConfig],
) -> Option<Outgoing> {
    let mut labels = labels.clone();
    for (name, value) in external_labels {
        if labels.get(name).is_none() {
            labels.set(name, value);
        }
    }
    let labels = crate::relabel::process(labels, relabel)?;
    if labels.is_empty() {
        return None;
    }
    Some(labels.iter().map(|label| Label { name: label.name.to_string(), value: label.value.to_string() }).collect())
}

impl QueueContext {
    fn progress_path(&self) -> PathBuf {
        child(&self.queue_dir, PROGRESS_FILE_NAME)
    }

    /// The saved progress, if any (a marker that does not parse is ignored with a warning).
    fn load_progress(&self) -> Option<Progress> {
        let bytes = self.env.fs.read(&self.progress_path()).ok()?;
        let progress = std::str::from_utf8(&bytes).ok().and_then(Progress::decode);
        if progress.is_none() {
            tracing::warn!(queue = %self.config.name, "remote write progress marker unreadable; starting at the wal's end");
        }
        progress
    }

    /// A queue with no marker starts where the WAL ends now (Prometheus starts at its start
    /// time): marked before the call returns, so no sample committed after it is missed.
    pub(super) fn mark_start(&self) {
        if self.env.fs.read(&self.progress_path()).is_ok() {
            return;
        }
        match super::wal_follower::wal_end(self.env.fs.as_ref(), &self.wal_dir) {
            Ok(end) => self.save_progress(Progress { acknowledged: end, in_flight: None }),
            Err(error) => {
                tracing::warn!(queue = %self.config.name, %error, "remote write: wal end unknown; starting when the queue opens it")
            }
        }
    }

    fn save_progress(&self, progress: Progress) {
        let fs = self.env.fs.as_ref();
        let temporary = child(&self.queue_dir, "progress.tmp");
        let result = fs.create_dir_all(&self.queue_dir).and_then(|()| {
            if !self.directories_synced.load(Ordering::Relaxed) {
                // The directories themselves must survive a crash, or the marker goes with them
                // and the queue would start over at the WAL's end.
                let mut directory = self.queue_dir.parent();
                while let Some(path) = directory.filter(|path| !path.as_os_str().is_empty()) {
                    fs.sync_dir(path)?;
                    if path == self.wal_dir.parent().unwrap_or(path) {
                        break;
                    }
                    directory = path.parent();
                }
                self.directories_synced.store(true, Ordering::Relaxed);
            }
            let _ = fs.remove_file(&temporary);
            let mut file = fs.open_append(&temporary)?;
            file.write_all(progress.encode().as_bytes())?;
            file.sync()?;
            fs.rename(&temporary, &self.progress_path())?;
            // A rename is durable only once its directory is synced.
            fs.sync_dir(&self.queue_dir)
        });
        if let Err(error) = result {
            self.metrics.progress_write_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(queue = %self.config.name, %error, "remote write progress marker not written; a restart resends");
        }
    }
}

/// The progress marker: everything before `acknowledged` was delivered (or given up); a round
/// from there to `in_flight`'s end, split over its shard count, may be under way.
///
/// Why the round is recorded: a receiver may refuse a request that resends samples it holds
/// (Prometheus answers 400 "out of order sample" for one older than its newest, and rolls the
/// whole request back). Sent again with the same records and shard count, every batch is cut as
/// before, so each is one the receiver took whole (refused whole now, and lost nothing) or one
/// it never took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Where the next round starts.
    pub acknowledged: WalPosition,
    /// The round under way: its end and its shard count.
    pub in_flight: Option<(WalPosition, usize)>,
}

impl Progress {
    /// `segment offset` then, during a round, `round segment offset shards`, one per line.
    pub fn encode(&self) -> String {
        let mut text = self.acknowledged.encode();
        if let Some((end, shards)) = self.in_flight {
            text.push_str(&format!("round {} {} {shards}\n", end.segment, end.offset));
        }
        text
    }

    /// Parses [`Progress::encode`]'s text.
    pub fn decode(text: &str) -> Option<Progress> {
        let mut lines = text.lines();
        let acknowledged = WalPosition::decode(lines.next()?)?;
        let in_flight = match lines.next() {
            None => None,
            Some(line) => {
                let mut fields = line.strip_prefix("round ")?.split_whitespace();
                let end = WalPosition { segment: fields.next()?.parse().ok()?, offset: fields.next()?.parse().ok()? };
                let shards: usize = fields.next()?.parse().ok()?;
                if fields.next().is_some() || end < acknowledged || shards == 0 {
                    return None;
                }
                Some((end, shards))
            }
        };
        lines.next().is_none().then_some(Progress { acknowledged, in_flight })
    }
}

/// Runs the queue until it is stopped; restarts its WAL follower after a read error.
pub(super) async fn run(context: Arc<QueueContext>, mut wal_written: watch::Receiver<u64>) {
    let queue = &context.config.queue;
    let mut shards = queue.shards_min;
    context.metrics.shards.store(shards as u64, Ordering::Relaxed);
    'follower: while !context.stopped.load(Ordering::Relaxed) {
        let transform_context = context.clone();
        let transform = Box::new(move |labels: &Labels| {
            outgoing_labels(labels, &transform_context.external_labels, &transform_context.config.write_relabel_configs)
        });
        let progress = context.load_progress();
        let start = progress.map(|progress| progress.acknowledged);
        let mut follower = match WalFollower::open(context.env.fs.clone(), &context.wal_dir, start, transform) {
            Ok(follower) => follower,
            Err(error) => {
                tracing::error!(queue = %context.config.name, %error, "remote write: open wal");
                wait_for_wal(&context, &mut wal_written, REMOTE_WRITE_WAL_POLL_INTERVAL_MS).await;
                continue;
            }
        };
        tracing::debug!(queue = %context.config.name, ?progress, at = ?follower.position(), "remote write follower opened");
        let mut saved = progress.filter(|progress| progress.in_flight.is_none()).map(|progress| progress.acknowledged);
        if let Some((end, round_shards)) = progress.and_then(|progress| progress.in_flight) {
            // The round a crash interrupted, again, cut the same way.
            let mut round = Vec::new();
            if let Err(error) = follower.read_to(end, &mut round) {
                tracing::error!(queue = %context.config.name, %error, "remote write: read wal");
                wait_for_wal(&context, &mut wal_written, REMOTE_WRITE_WAL_POLL_INTERVAL_MS).await;
                continue 'follower;
            }
            tracing::info!(queue = %context.config.name, samples = round.len(), "remote write: resending the round a restart interrupted");
            send_round(&context, &follower, round, round_shards.min(REMOTE_WRITE_SHARD_COUNT_MAX)).await;
            if context.stopped.load(Ordering::Relaxed) {
                return;
            }
            context.save_progress(Progress { acknowledged: follower.position(), in_flight: None });
            saved = Some(follower.position());
        }
        let mut round_start = follower.position();
        let mut pending: Vec<RefSample> = Vec::new();
        let mut first_pending_at: Option<tokio::time::Instant> = None;
        while !context.stopped.load(Ordering::Relaxed) {
            if pending.is_empty() {
                round_start = follower.position();
            }
            let round_full = shards * queue.samples_per_send_max;
            // Behind, a round takes up to `capacity` samples per shard.
            let budget = (shards * queue.capacity.max(queue.samples_per_send_max)).saturating_sub(pending.len()).max(1);
            let caught_up = match follower.read(budget, &mut pending) {
                Ok(caught_up) => caught_up,
                Err(error) => {
                    tracing::error!(queue = %context.config.name, %error, "remote write: read wal");
                    wait_for_wal(&context, &mut wal_written, REMOTE_WRITE_WAL_POLL_INTERVAL_MS).await;
                    continue 'follower;
                }
            };
            record_follower_stats(&context.metrics, &follower);
            if let Some(newest) = pending.iter().map(|sample| sample.timestamp_ms).max() {
                context.metrics.highest_read_timestamp_ms.fetch_max(newest, Ordering::Relaxed);
            }
            context.metrics.samples_pending.store(pending.len() as u64, Ordering::Relaxed);
            if pending.is_empty() {
                first_pending_at = None;
                if saved != Some(follower.position()) {
                    // Records without samples (series) moved the position: keep it.
                    context.save_progress(Progress { acknowledged: follower.position(), in_flight: None });
                    saved = Some(follower.position());
                }
                wait_for_wal(&context, &mut wal_written, REMOTE_WRITE_WAL_POLL_INTERVAL_MS).await;
                continue;
            }
            let started = *first_pending_at.get_or_insert_with(tokio::time::Instant::now);
            let deadline = started + Duration::from_millis(queue.batch_send_deadline_ms);
            let now = tokio::time::Instant::now();
            if caught_up && pending.len() < round_full && now < deadline {
                let wait_ms =
                    (deadline - now).as_millis().clamp(1, u128::from(REMOTE_WRITE_WAL_POLL_INTERVAL_MS)) as u64;
                wait_for_wal(&context, &mut wal_written, wait_ms).await;
                continue;
            }
            let sample_count = pending.len();
            tracing::debug!(
                queue = %context.config.name,
                samples = sample_count,
                from = ?round_start,
                to = ?follower.position(),
                shards,
                "remote write round"
            );
            context
                .save_progress(Progress { acknowledged: round_start, in_flight: Some((follower.position(), shards)) });
            send_round(&context, &follower, std::mem::take(&mut pending), shards).await;
            first_pending_at = None;
            context.metrics.samples_pending.store(0, Ordering::Relaxed);
            if context.stopped.load(Ordering::Relaxed) {
                // Batches were left unsent: the marker keeps the round for the next start.
                return;
            }
            context.save_progress(Progress { acknowledged: follower.position(), in_flight: None });
            saved = Some(follower.position());
            shards = next_shard_count(shards, caught_up, sample_count, queue.samples_per_send_max, queue);
            context.metrics.shards.store(shards as u64, Ordering::Relaxed);
        }
    }
}

/// The shard count after a round (see the module comment).
fn next_shard_count(
    shards: usize,
    caught_up: bool,
    sample_count: usize,
    samples_per_send_max: usize,
    queue: &crate::config::QueueConfig,
) -> usize {
    if !caught_up {
        (shards * 2).min(queue.shards_max)
    } else if shards > queue.shards_min && sample_count <= (shards / 2) * samples_per_send_max {
        (shards / 2).max(queue.shards_min)
    } else {
        shards
    }
}

fn record_follower_stats<T>(metrics: &QueueMetrics, follower: &WalFollower<T>) {
    let stats = follower.stats();
    metrics.wal_corruptions_total.store(stats.corruptions_total, Ordering::Relaxed);
    metrics.wal_segments_skipped_total.store(stats.segments_skipped_total, Ordering::Relaxed);
    metrics.series_count.store(follower.series_count() as u64, Ordering::Relaxed);
}

/// Waits for a WAL write, `timeout_ms`, or the queue's stop.
async fn wait_for_wal(context: &QueueContext, wal_written: &mut watch::Receiver<u64>, timeout_ms: u64) {
    if context.stopped.load(Ordering::Relaxed) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_millis(timeout_ms), wal_written.changed()).await;
}

/// Sends one round: every shard's batches, shards in parallel; returns when all are done.
async fn send_round(
    context: &Arc<QueueContext>,
    follower: &WalFollower<Outgoing>,
    samples: Vec<RefSample>,
    shard_count: usize,
) {
    let samples_per_send_max = context.config.queue.samples_per_send_max;
    let mut by_shard: Vec<Vec<(Arc<Outgoing>, Sample)>> = vec![Vec::new(); shard_count];
    let mut dropped = 0_u64;
    for sample in samples {
        match follower.outgoing(sample.series_ref.0) {
            Some(Some(labels)) => {
                let shard = (shard_hash(sample.series_ref.0) % shard_count as u64) as usize;
                by_shard[shard].push((labels.clone(), Sample { value: sample.value, timestamp: sample.timestamp_ms }));
            }
            Some(None) | None => dropped += 1,
        }
    }
    context.metrics.samples_dropped_total.fetch_add(dropped, Ordering::Relaxed);
    let (done_sender, mut done_receiver) = tokio::sync::mpsc::channel::<()>(shard_count.max(1));
    for shard_samples in by_shard.into_iter().filter(|samples| !samples.is_empty()) {
        let context = context.clone();
        let done_sender = done_sender.clone();
        context.env.spawner.clone().spawn(
            "remote-write-shard",
            Box::pin(async move {
                for batch in shard_samples.chunks(samples_per_send_max) {
                    send_batch(&context, batch).await;
                }
                let _ = done_sender.send(()).await;
            }),
        );
    }
    drop(done_sender);
    while done_receiver.recv().await.is_some() {}
}

/// SplitMix64's finalizer: spreads WAL references (dense integers) evenly over the shards.
fn shard_hash(series_ref: u64) -> u64 {
    let mut x = series_ref.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Encodes samples (in WAL order) as a `WriteRequest`: one time series per distinct label set,
/// in order of first appearance, each with its samples in order.
pub(super) fn encode_request(batch: &[(Arc<Outgoing>, Sample)]) -> Vec<u8> {
    let mut index_by_series: std::collections::HashMap<*const Outgoing, usize> = std::collections::HashMap::new();
    let mut request = WriteRequest { timeseries: Vec::new() };
    for (labels, sample) in batch {
        let index = *index_by_series.entry(Arc::as_ptr(labels)).or_insert_with(|| {
            request.timeseries.push(TimeSeries { labels: labels.as_ref().clone(), samples: Vec::new() });
            request.timeseries.len() - 1
        });
        request.timeseries[index].samples.push(sample.clone());
    }
    let protobuf = request.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&protobuf).unwrap_or_default()
}

/// How one attempt ended.
enum Attempt {
    Sent,
    Retry(String),
    GiveUp(String),
}

/// Sends one batch until it is acknowledged or cannot succeed.
async fn send_batch(context: &QueueContext, batch: &[(Arc<Outgoing>, Sample)]) {
    let body = Bytes::from(encode_request(batch));
    let sample_count = batch.len() as u64;
    let queue = &context.config.queue;
    let mut backoff_ms = queue.backoff_min_ms.max(1);
    loop {
        match attempt(context, body.clone()).await {
            Attempt::Sent => {
                let metrics = &context.metrics;
                metrics.samples_sent_total.fetch_add(sample_count, Ordering::Relaxed);
                metrics.bytes_sent_total.fetch_add(body.len() as u64, Ordering::Relaxed);
                metrics.requests_sent_total.fetch_add(1, Ordering::Relaxed);
                if let Some(newest) = batch.iter().map(|(_, sample)| sample.timestamp).max() {
                    metrics.highest_sent_timestamp_ms.fetch_max(newest, Ordering::Relaxed);
                }
                return;
            }
            Attempt::GiveUp(reason) => {
                context.metrics.samples_failed_total.fetch_add(sample_count, Ordering::Relaxed);
                tracing::error!(queue = %context.config.name, %reason, samples = sample_count, "remote write: batch dropped");
                return;
            }
            Attempt::Retry(reason) => {
                if context.stopped.load(Ordering::Relaxed) {
                    // A stopped queue leaves the batch to the WAL: its progress is not saved.
                    return;
                }
                context.metrics.samples_retried_total.fetch_add(sample_count, Ordering::Relaxed);
                tracing::warn!(queue = %context.config.name, %reason, backoff_ms, "remote write: retrying batch");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(queue.backoff_max_ms.max(1));
            }
        }
    }
}

async fn attempt(context: &QueueContext, body: Bytes) -> Attempt {
    let mut headers: Vec<(String, String)> = vec![
        ("Content-Encoding".to_string(), "snappy".to_string()),
        ("X-Prometheus-Remote-Write-Version".to_string(), "0.1.0".to_string()),
    ];
    if let Some(authorization) = &context.config.authorization {
        headers.push(("Authorization".to_string(), authorization.clone()));
    }
    headers.extend(context.config.headers.iter().map(|(name, value)| (name.clone(), value.clone())));
    let request = HttpRequest {
        method: hyper::Method::POST,
        endpoint: context.endpoint.clone(),
        headers,
        content_type: "application/x-protobuf".to_string(),
        body,
    };
    let started = tokio::time::Instant::now();
    let timeout_ms = context.config.remote_timeout_ms.max(1) as u64;
    let outcome = http_client::send(context.env.net.as_ref(), context.env.spawner.as_ref(), request, timeout_ms).await;
    let elapsed_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    context.metrics.send_duration_ns_total.fetch_add(elapsed_ns, Ordering::Relaxed);
    context.metrics.send_attempts_total.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Ok(response) if (200..300).contains(&response.status) => Attempt::Sent,
        Ok(response) => {
            let reason = format!(
                "server returned HTTP status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            );
            let retryable =
                response.status >= 500 || (response.status == 429 && context.config.queue.retry_on_http_429);
            if retryable {
                Attempt::Retry(reason)
            } else {
                Attempt::GiveUp(reason)
            }
        }
        Err(error) => Attempt::Retry(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueConfig;

    #[test]
    fn shard_count_doubles_when_behind_and_halves_when_idle() {
        let queue = QueueConfig { shards_min: 1, shards_max: 8, ..QueueConfig::default() };
        assert_eq!(next_shard_count(1, false, 500, 500, &queue), 2);
        assert_eq!(next_shard_count(8, false, 500, 500, &queue), 8);
        assert_eq!(next_shard_count(8, true, 2_000, 500, &queue), 4);
        assert_eq!(next_shard_count(8, true, 2_001, 500, &queue), 8);
        assert_eq!(next_shard_count(1, true, 0, 500, &queue), 1);
    }

    #[test]
    fn requests_group_samples_by_series_in_order() {
        let a = Arc::new(vec![Label { name: "__name__".into(), value: "a".into() }]);
        let b = Arc::new(vec![Label { name: "__name__".into(), value: "b".into() }]);
        let sample = |timestamp: i64| Sample { value: timestamp as f64, timestamp };
        let body = encode_request(&[(a.clone(), sample(1)), (b.clone(), sample(2)), (a.clone(), sample(3))]);
        let protobuf = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = WriteRequest::decode(protobuf.as_slice()).unwrap();
        assert_eq!(request.timeseries.len(), 2);
        assert_eq!(request.timeseries[0].labels, *a);
        assert_eq!(request.timeseries[0].samples, [sample(1), sample(3)]);
        assert_eq!(request.timeseries[1].samples, [sample(2)]);
    }

    #[test]
    fn progress_marker_round_trips_and_refuses_nonsense() {
        let position = |segment, offset| WalPosition { segment, offset };
        for progress in [
            Progress { acknowledged: position(3, 4096), in_flight: None },
            Progress { acknowledged: position(3, 4096), in_flight: Some((position(5, 17), 4)) },
        ] {
            assert_eq!(Progress::decode(&progress.encode()), Some(progress));
        }
        assert_eq!(Progress::decode("3 4096\nround 5 17 4\n").unwrap().in_flight, Some((position(5, 17), 4)));
        for bad in [
            "",
            "3",
            "3 x\n",
            "3 4096\nround 2 0 4\n",
            "3 4096\nround 5 17 0\n",
            "3 4096\nlap 5 17 4\n",
            "1 2\nround 3 4 5\nmore\n",
        ] {
            assert_eq!(Progress::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn outgoing_labels_add_external_labels_then_relabel() {
        let external = BTreeMap::from([("replica".to_string(), "a".to_string()), ("job".to_string(), "x".to_string())]);
        let raw: Vec<crate::relabel::RawRelabelConfig> =
            serde_yaml_ng::from_str("[{source_labels: [__name__], regex: 'drop_.*', action: drop}]").unwrap();
        let relabel = crate::relabel::from_raw_list(&raw).unwrap();
        let kept =
            outgoing_labels(&Labels::from_pairs([("__name__", "up"), ("job", "node")]), &external, &relabel).unwrap();
        let pairs: Vec<(&str, &str)> = kept.iter().map(|label| (label.name.as_str(), label.value.as_str())).collect();
        assert_eq!(pairs, [("__name__", "up"), ("job", "node"), ("replica", "a")]);
        assert!(outgoing_labels(&Labels::from_pairs([("__name__", "drop_me")]), &external, &relabel).is_none());
    }
}
