//! The engine's own metrics, served on `/metrics` in the text exposition format and scraped by
//! the embedded default configuration. Counters are atomics so the scraper and the API can bump
//! them without a lock; rendering order is fixed so output is deterministic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::promql::EngineStats;
use crate::tsdb::DbStats;

/// A component that renders its own metric families at the end of `/metrics` (the rule
/// manager, later others), so this file need not know every component.
pub trait MetricsSource: Send + Sync {
    /// Appends complete families (`# HELP`, `# TYPE`, samples) in text format 0.0.4.
    fn render(&self, out: &mut String);
}

/// Registered [`MetricsSource`]s, rendered in registration order.
#[derive(Default)]
pub struct MetricsSources(std::sync::Mutex<Vec<std::sync::Arc<dyn MetricsSource>>>);

impl std::fmt::Debug for MetricsSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSources")
    }
}

/// Writes one single-sample family.
fn write_float(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// HTTP handlers counted separately, in rendering order.
pub const HANDLERS: [&str; 6] = ["/api/v1/query", "/api/v1/query_range", "/-/healthy", "/-/ready", "/metrics", "other"];

/// Counters shared by the engine's components.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    http_requests_total: [AtomicU64; HANDLERS.len()],
    /// Scrapes attempted.
    pub scrapes_total: AtomicU64,
    /// Scrapes that failed (connection, HTTP status, timeout, parse error, limit).
    pub scrape_failures_total: AtomicU64,
    /// Samples rejected on append (out of order, duplicate timestamp, ...).
    pub scrape_samples_rejected_total: AtomicU64,
    /// Queries that returned an error.
    pub query_failures_total: AtomicU64,
    /// Components rendering their own families after these.
    pub sources: MetricsSources,
}

impl SelfMetrics {
    /// Adds `source` to what [`SelfMetrics::render`] appends.
    pub fn add_source(&self, source: std::sync::Arc<dyn MetricsSource>) {
        self.sources.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(source);
    }

    /// Counts one request to `path` (unknown paths count as "other").
    pub fn count_request(&self, path: &str) {
        let index = HANDLERS.iter().position(|handler| *handler == path).unwrap_or(HANDLERS.len() - 1);
        self.http_requests_total[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric, plus the storage's and the query engine's statistics, in text
    /// format 0.0.4.
    pub fn render(&self, db: &DbStats, engine: &EngineStats) -> String {
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let requests: Vec<(String, u64)> = HANDLERS
            .iter()
            .zip(&self.http_requests_total)
            .map(|(handler, count)| (format!("{{handler=\"{handler}\"}}"), count.load(Ordering::Relaxed)))
            .collect();
        family("engine_http_requests_total", "counter", "HTTP requests by handler.", &requests);
        let plain = |value: u64| [(String::new(), value)];
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        family("engine_scrapes_total", "counter", "Scrapes attempted.", &plain(load(&self.scrapes_total)));
        family(
            "engine_scrape_failures_total",
            "counter",
            "Scrapes that failed.",
            &plain(load(&self.scrape_failures_total)),
        );
        family(
            "engine_scrape_samples_rejected_total",
            "counter",
            "Scraped samples the storage rejected (out of order, duplicate timestamp).",
            &plain(load(&self.scrape_samples_rejected_total)),
        );
        family(
            "engine_query_failures_total",
            "counter",
            "Queries that returned an error.",
            &plain(load(&self.query_failures_total)),
        );
        // Storage metrics carry Prometheus' names, so existing dashboards work.
        let (min_time_ms, max_time_ms) = db.time_range_ms.unwrap_or((i64::MAX, i64::MIN));
        let mut float = |name: &str, kind: &str, help: &str, value: f64| write_float(&mut out, name, kind, help, value);
        float(
            "prometheus_tsdb_head_series",
            "gauge",
            "Total number of series in the head block.",
            db.series_count as f64,
        );
        float(
            "prometheus_tsdb_head_series_created_total",
            "counter",
            "Total number of series created in the head.",
            db.series_created_total as f64,
        );
        float(
            "prometheus_tsdb_head_chunks",
            "gauge",
            "Total number of chunks in the head block.",
            db.chunk_count as f64,
        );
        float("prometheus_tsdb_head_min_time", "gauge", "Minimum time bound of the head block.", min_time_ms as f64);
        float("prometheus_tsdb_head_max_time", "gauge", "Maximum timestamp of the head block.", max_time_ms as f64);
        float(
            "prometheus_tsdb_head_samples_appended_total",
            "counter",
            "Total number of appended samples.",
            db.samples_appended_total as f64,
        );
        float(
            "prometheus_tsdb_out_of_order_samples_total",
            "counter",
            "Total number of out of order samples ingestion failed attempts.",
            db.out_of_order_samples_total as f64,
        );
        float(
            "prometheus_tsdb_wal_corruptions_total",
            "counter",
            "Total number of WAL corruptions.",
            db.wal_corruptions_repaired_total as f64,
        );
        float(
            "prometheus_tsdb_wal_writes_failed_total",
            "counter",
            "Total number of WAL writes that failed.",
            db.wal_write_failures_total as f64,
        );
        float(
            "prometheus_tsdb_wal_segment_current",
            "gauge",
            "WAL segment index that TSDB is currently writing to.",
            f64::from(db.wal_segment_index),
        );
        let _ = writeln!(out, "# HELP prometheus_tsdb_wal_fsync_duration_seconds Duration of WAL fsync.");
        let _ = writeln!(out, "# TYPE prometheus_tsdb_wal_fsync_duration_seconds summary");
        let _ = writeln!(out, "prometheus_tsdb_wal_fsync_duration_seconds_sum {}", db.wal_fsync_duration_seconds_total);
        let _ = writeln!(out, "prometheus_tsdb_wal_fsync_duration_seconds_count {}", db.wal_fsyncs_total);
        let mut float = |name: &str, kind: &str, help: &str, value: f64| write_float(&mut out, name, kind, help, value);
        float(
            "prometheus_tsdb_blocks_loaded",
            "gauge",
            "Number of currently loaded data blocks.",
            db.block_count as f64,
        );
        let compaction = &db.compaction;
        float(
            "prometheus_tsdb_compactions_total",
            "counter",
            "Total number of compactions that were executed for the partition.",
            (compaction.head_compactions_total + compaction.block_compactions_total) as f64,
        );
        float(
            "prometheus_tsdb_time_retentions_total",
            "counter",
            "The number of times that blocks were deleted because the maximum time limit was exceeded.",
            compaction.time_retentions_total as f64,
        );
        float(
            "prometheus_tsdb_size_retentions_total",
            "counter",
            "The number of times that blocks were deleted because the maximum number of bytes was exceeded.",
            compaction.size_retentions_total as f64,
        );
        float(
            "prometheus_tsdb_compactions_failed_total",
            "counter",
            "Total number of compactions that failed for the partition.",
            compaction.compactions_failed_total as f64,
        );
        float(
            "prometheus_tsdb_head_truncations_total",
            "counter",
            "Total number of head truncations attempted.",
            compaction.head_truncations_total as f64,
        );
        float(
            "prometheus_tsdb_checkpoint_creations_total",
            "counter",
            "Total number of checkpoint creations attempted.",
            compaction.checkpoint_creations_total as f64,
        );
        float(
            "prometheus_tsdb_checkpoint_creations_failed_total",
            "counter",
            "Total number of checkpoint creations that failed.",
            compaction.checkpoint_creations_failed_total as f64,
        );
        float(
            "prometheus_tsdb_head_series_removed_total",
            "counter",
            "Total number of series removed in the head",
            db.series_removed_total as f64,
        );
        float(
            "prometheus_tsdb_head_chunks_removed_total",
            "counter",
            "Total number of chunks removed in the head",
            db.chunks_removed_total as f64,
        );
        float(
            "prometheus_tsdb_out_of_bound_samples_total",
            "counter",
            "Total number of out of bound samples ingestion failed attempts.",
            db.out_of_bounds_samples_total as f64,
        );
        float(
            "engine_tsdb_wal_segments_deleted_total",
            "counter",
            "WAL segments deleted after a checkpoint covered them.",
            compaction.wal_segments_deleted_total as f64,
        );
        float(
            "engine_tsdb_head_chunk_files_deleted_total",
            "counter",
            "Head chunk files deleted after the head was truncated past them.",
            compaction.chunk_files_deleted_total as f64,
        );
        float(
            "engine_tsdb_head_chunks_offloaded_total",
            "counter",
            "Full head chunks written to chunks_head/ and dropped from memory.",
            db.chunks_offloaded_total as f64,
        );
        float(
            "engine_tsdb_head_chunk_offload_failures_total",
            "counter",
            "Full head chunks that could not be written out and stayed in memory.",
            db.chunk_offload_failures_total as f64,
        );
        float("engine_tsdb_commits_total", "counter", "Commits made durable and visible.", db.commits_total as f64);
        float(
            "engine_tsdb_wal_writes_total",
            "counter",
            "WAL writes; each carries one or more grouped commits.",
            db.wal_writes_total as f64,
        );
        float(
            "engine_tsdb_series_limit_refusals_total",
            "counter",
            "New series refused because the head holds storage.tsdb.max_series series.",
            db.series_limit_refusals_total as f64,
        );
        float(
            "engine_tsdb_wal_samples_replayed",
            "gauge",
            "Samples replayed from the WAL at the last start.",
            db.wal_samples_replayed as f64,
        );
        float(
            "engine_tsdb_wal_bytes_dropped_total",
            "counter",
            "WAL bytes dropped by repair at the last start.",
            db.wal_bytes_truncated_total as f64,
        );
        float(
            "engine_tsdb_ready_for_writes",
            "gauge",
            "1 while the storage accepts writes, 0 after a failed WAL write until one succeeds.",
            if db.ready_for_writes { 1.0 } else { 0.0 },
        );
        // Query engine metrics carry Prometheus' names (promql/engine.go `NewEngine`).
        float(
            "prometheus_engine_queries",
            "gauge",
            "The current number of queries being executed (holding a --query.max-concurrency slot).",
            engine.queries_running_count as f64,
        );
        float(
            "prometheus_engine_queries_concurrent_max",
            "gauge",
            "The max number of concurrent queries.",
            engine.queries_concurrent_max as f64,
        );
        let name = "prometheus_engine_query_duration_seconds";
        let _ = writeln!(out, "# HELP {name} Query timings");
        let _ = writeln!(out, "# TYPE {name} summary");
        let _ = writeln!(out, "{name}_sum{{slice=\"inner_eval\"}} {}", engine.inner_eval_seconds_total);
        let _ = writeln!(out, "{name}_count{{slice=\"inner_eval\"}} {}", engine.inner_eval_count);
        let sources: Vec<std::sync::Arc<dyn MetricsSource>> =
            self.sources.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for source in sources {
            source.render(&mut out);
        }
        out
    }
}
