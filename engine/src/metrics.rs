//! The engine's own metrics, served on `/metrics` in the text exposition format and scraped by
//! the embedded default configuration. Counters are atomics so the scraper and the API can bump
//! them without a lock; rendering order is fixed so output is deterministic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::tsdb::DbStats;

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
}

impl SelfMetrics {
    /// Counts one request to `path` (unknown paths count as "other").
    pub fn count_request(&self, path: &str) {
        let index = HANDLERS.iter().position(|handler| *handler == path).unwrap_or(HANDLERS.len() - 1);
        self.http_requests_total[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric, plus the storage's statistics, in text format 0.0.4.
    pub fn render(&self, db: &DbStats) -> String {
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
        family("engine_tsdb_head_series", "gauge", "Series in the head.", &plain(db.series_count));
        family("engine_tsdb_head_chunks", "gauge", "Chunks in the head.", &plain(db.chunk_count));
        family(
            "engine_tsdb_head_samples_appended_total",
            "counter",
            "Samples appended to the head.",
            &plain(db.samples_appended_total),
        );
        family(
            "engine_tsdb_out_of_order_samples_total",
            "counter",
            "Samples rejected as out of order.",
            &plain(db.out_of_order_samples_total),
        );
        family(
            "engine_tsdb_wal_corruptions_total",
            "counter",
            "WAL corruptions repaired at start.",
            &plain(db.wal_corruptions_repaired_total),
        );
        family(
            "engine_tsdb_wal_samples_replayed",
            "gauge",
            "Samples replayed from the WAL at the last start.",
            &plain(db.wal_samples_replayed),
        );
        out
    }
}
