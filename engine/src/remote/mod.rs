//! The remote write sender (`remote_write` in the configuration): one queue per entry, each
//! following the WAL ([`wal_follower`]) and posting its samples to a remote_write 1.0 receiver
//! (Prometheus with `--web.enable-remote-write-receiver`, VictoriaMetrics, Thanos Receive,
//! Mimir, this engine) as [`queue`] describes.
//!
//! Guarantee: every sample committed to the WAL after a queue first started is delivered at
//! least once, across receiver outages and engine restarts, as long as the WAL still holds it
//! (segments a checkpoint removed before the queue read them are counted in
//! `engine_remote_write_wal_segments_skipped_total`). A queue that starts with no progress
//! marker begins at the WAL's end, as Prometheus begins at its start time.
//!
//! Reload: entries that are unchanged (same URL, name, keys and external labels) keep their
//! queue; the others stop at their next wait and new queues start from their own markers.
//!
//! Concurrency: the manager's queue list sits behind a mutex held only to swap entries; each
//! queue is one task (plus its shards' tasks during a round).

pub mod gap_fill;
pub mod queue;
pub mod read;
pub mod wal_follower;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::{Config, RemoteWriteConfig};
use crate::io::http_client::HttpEndpoint;
use crate::io::Env;
use crate::metrics::MetricsSource;
use crate::tsdb::Db;
use queue::{QueueContext, QueueMetrics};

/// Directory under the data directory that holds each queue's progress marker.
pub const REMOTE_WRITE_DIR_NAME: &str = "remote_write";

struct RunningQueue {
    context: Arc<QueueContext>,
}

/// Starts, keeps and stops the remote write queues.
pub struct RemoteWriteManager {
    env: Env,
    db: Db,
    queues: Mutex<Vec<RunningQueue>>,
}

impl RemoteWriteManager {
    /// A manager with no queues; [`RemoteWriteManager::apply_config`] starts them.
    pub fn new(env: Env, db: Db) -> Arc<RemoteWriteManager> {
        Arc::new(RemoteWriteManager { env, db, queues: Mutex::new(Vec::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RunningQueue>> {
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a queue per `remote_write` entry, keeps the unchanged ones and stops the rest.
    pub fn apply_config(&self, config: &Config) {
        let mut running = self.lock();
        let mut next: Vec<RunningQueue> = Vec::new();
        for entry in &config.remote_write {
            let same = |queue: &RunningQueue| {
                queue.context.config == *entry && queue.context.external_labels == config.global.external_labels
            };
            if let Some(index) = running.iter().position(same) {
                next.push(running.remove(index));
                continue;
            }
            match self.start(entry, &config.global.external_labels) {
                Ok(queue) => next.push(queue),
                Err(error) => tracing::error!(url = %entry.url, %error, "remote write queue not started"),
            }
        }
        for stopped in running.drain(..) {
            stopped.context.stopped.store(true, Ordering::Relaxed);
            tracing::info!(queue = %stopped.context.config.name, "remote write queue stopped");
        }
        *running = next;
    }

    fn start(
        &self,
        entry: &RemoteWriteConfig,
        external_labels: &BTreeMap<String, String>,
    ) -> Result<RunningQueue, String> {
        let endpoint = HttpEndpoint::parse(&entry.url).map_err(|error| error.to_string())?;
        let context = Arc::new(QueueContext {
            env: self.env.clone(),
            config: entry.clone(),
            endpoint,
            external_labels: external_labels.clone(),
            wal_dir: self.db.wal_dir(),
            queue_dir: self.db.data_dir().join(REMOTE_WRITE_DIR_NAME).join(&entry.name),
            metrics: Arc::new(QueueMetrics::default()),
            stopped: AtomicBool::new(false),
            directories_synced: AtomicBool::new(false),
        });
        context.mark_start();
        self.env.spawner.spawn("remote-write-queue", Box::pin(queue::run(context.clone(), self.db.wal_written())));
        tracing::info!(queue = %entry.name, url = %entry.url, "remote write queue started");
        Ok(RunningQueue { context })
    }
}

impl MetricsSource for RemoteWriteManager {
    /// Prometheus' `prometheus_remote_storage_*` families (labels `remote_name`, `url`), plus the
    /// engine's WAL-reading counters.
    fn render(&self, out: &mut String) {
        let queues: Vec<Arc<QueueContext>> = self.lock().iter().map(|queue| queue.context.clone()).collect();
        if queues.is_empty() {
            return;
        }
        type Read = fn(&QueueContext) -> f64;
        let families: [(&str, &str, &str, Read); 16] = [
            ("prometheus_remote_storage_samples_total", "counter", "Total number of samples sent to remote storage.", |c| {
                c.metrics.samples_sent_total.load(Ordering::Relaxed) as f64
            }),
            (
                "prometheus_remote_storage_samples_failed_total",
                "counter",
                "Total number of samples which failed on send to remote storage, non-recoverable errors.",
                |c| c.metrics.samples_failed_total.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_remote_storage_samples_retried_total",
                "counter",
                "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.",
                |c| c.metrics.samples_retried_total.load(Ordering::Relaxed) as f64,
            ),
            (
                "prometheus_remote_storage_samples_dropped_total",
                "counter",
                "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID.",
                |c| c.metrics.samples_dropped_total.load(Ordering::Relaxed) as f64,
            ),
            ("prometheus_remote_storage_samples_pending", "gauge", "The number of samples pending in the queues shards to be sent to the remote storage.", |c| {
                c.metrics.samples_pending.load(Ordering::Relaxed) as f64
            }),
            ("prometheus_remote_storage_bytes_total", "counter", "The total number of bytes of data (not metadata) sent by the queue after compression.", |c| {
                c.metrics.bytes_sent_total.load(Ordering::Relaxed) as f64
            }),
            ("prometheus_remote_storage_shards", "gauge", "The number of shards used for parallel sending to the remote storage.", |c| {
                c.metrics.shards.load(Ordering::Relaxed) as f64
            }),
            (
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                "gauge",
                "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch.",
                |c| c.metrics.highest_sent_timestamp_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "prometheus_remote_storage_highest_timestamp_in_seconds",
                "gauge",
                "Highest timestamp that has come into the remote storage via the Appender interface, in seconds since epoch.",
                |c| c.metrics.highest_read_timestamp_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            ("engine_remote_write_requests_sent_total", "counter", "Remote write requests acknowledged by the receiver.", |c| {
                c.metrics.requests_sent_total.load(Ordering::Relaxed) as f64
            }),
            ("engine_remote_write_send_attempts_total", "counter", "Remote write requests attempted, acknowledged or not.", |c| {
                c.metrics.send_attempts_total.load(Ordering::Relaxed) as f64
            }),
            ("engine_remote_write_send_duration_seconds_total", "counter", "Time spent in remote write requests, every attempt.", |c| {
                c.metrics.send_duration_ns_total.load(Ordering::Relaxed) as f64 / 1e9
            }),
            (
                "engine_remote_write_wal_corruptions_total",
                "counter",
                "Damaged WAL ranges and undecodable records the remote write sender skipped.",
                |c| c.metrics.wal_corruptions_total.load(Ordering::Relaxed) as f64,
            ),
            (
                "engine_remote_write_wal_segments_skipped_total",
                "counter",
                "WAL segments truncated away before the remote write sender read them (their samples were not sent).",
                |c| c.metrics.wal_segments_skipped_total.load(Ordering::Relaxed) as f64,
            ),
            ("prometheus_remote_storage_shards_max", "gauge", "The maximum number of shards that the queue is allowed to run.", |c| {
                c.config.queue.shards_max as f64
            }),
            ("prometheus_remote_storage_shards_min", "gauge", "The minimum number of shards that the queue is allowed to run.", |c| {
                c.config.queue.shards_min as f64
            }),
        ];
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for queue in &queues {
                let _ = writeln!(
                    out,
                    "{name}{{remote_name={},url={}}} {}",
                    quote(&queue.config.name),
                    quote(&queue.config.url),
                    crate::api::json::format_value(read(queue))
                );
            }
        }
    }
}

/// A label value in the text format (JSON string escaping is the same for `\`, `"`, newline).
fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
