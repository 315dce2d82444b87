//! The frontend's counters: how every client request was answered, for
//! `/api/v1/metrics/cache-stats` (the documents' shape) and `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a cache lookup (a query request, or one query of a view) was answered. Each lookup
/// counts under exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A fresh copy in the in-process cache.
    L1Hit,
    /// A fresh copy in the shared cache.
    L2Hit,
    /// Every point from range extents, no downstream request.
    ExtentHit,
    /// Another request's downstream fetch, waited for.
    Coalesced,
    /// Fetched from the downstream (wholly, or the gaps of the extents).
    Source,
    /// A stale copy, because the downstream failed or the breaker is open.
    Stale,
    /// Nothing to answer with: the downstream failed and nothing stale was kept.
    Unavailable,
}

impl Outcome {
    /// The outcome's name in the `X-Cache` header.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::L1Hit => "l1",
            Outcome::L2Hit => "l2",
            Outcome::ExtentHit => "extents",
            Outcome::Coalesced => "coalesced",
            Outcome::Source => "miss",
            Outcome::Stale => "stale",
            Outcome::Unavailable => "unavailable",
        }
    }

    /// Whether the answer came without a downstream request of its own.
    pub fn is_cached(self) -> bool {
        !matches!(self, Outcome::Source | Outcome::Unavailable)
    }
}

/// The counters.
#[derive(Default)]
pub struct Stats {
    /// Client requests received on the query, view and passed-through API endpoints.
    pub requests_total: AtomicU64,
    /// Client requests refused by a rate limit.
    pub rate_limited_total: AtomicU64,
    /// Client requests passed to the downstream uncached (other API endpoints, uncacheable
    /// queries).
    pub passthrough_total: AtomicU64,
    /// View requests.
    pub view_requests_total: AtomicU64,
    /// Lookups by outcome.
    pub l1_hits: AtomicU64,
    /// See [`Outcome::L2Hit`].
    pub l2_hits: AtomicU64,
    /// See [`Outcome::ExtentHit`].
    pub extent_hits: AtomicU64,
    /// See [`Outcome::Coalesced`].
    pub coalesced: AtomicU64,
    /// See [`Outcome::Source`].
    pub source_hits: AtomicU64,
    /// See [`Outcome::Stale`].
    pub stale_served: AtomicU64,
    /// See [`Outcome::Unavailable`].
    pub unavailable: AtomicU64,
    /// Range requests that took some points from extents and fetched the rest.
    pub extent_partial_hits: AtomicU64,
    /// Rate-limit takes let through because Redis did not answer.
    pub limit_fail_open_total: AtomicU64,
}

/// Gauges read at render time.
pub struct Gauges {
    /// Answers in the in-process cache.
    pub l1_entries: usize,
    /// Its bytes.
    pub l1_bytes: usize,
    /// Answers evicted from it for room.
    pub l1_evictions: u64,
    /// Keys with extents.
    pub extent_keys: usize,
    /// Their bytes.
    pub extent_bytes: usize,
    /// Breaker state code (0 closed, 1 open, 2 half-open).
    pub breaker_state: u8,
    /// Times it opened.
    pub breaker_opened: u64,
    /// Downstream requests sent, retries included.
    pub downstream_requests: u64,
    /// Of those, retries.
    pub downstream_retries: u64,
    /// Downstream connections opened.
    pub downstream_connections_opened: u64,
    /// Rate-limit identities let through because a table was full.
    pub limit_overflows: u64,
    /// Whether Redis is configured.
    pub redis_configured: bool,
    /// Whether its last command succeeded.
    pub redis_up: bool,
    /// Redis commands failed.
    pub redis_errors: u64,
}

impl Stats {
    /// Counts one lookup's outcome.
    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::L1Hit => &self.l1_hits,
            Outcome::L2Hit => &self.l2_hits,
            Outcome::ExtentHit => &self.extent_hits,
            Outcome::Coalesced => &self.coalesced,
            Outcome::Source => &self.source_hits,
            Outcome::Stale => &self.stale_served,
            Outcome::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn lookups(&self) -> (u64, u64) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let hits = load(&self.l1_hits)
            + load(&self.l2_hits)
            + load(&self.extent_hits)
            + load(&self.coalesced)
            + load(&self.stale_served);
        (hits, hits + load(&self.source_hits) + load(&self.unavailable))
    }

    /// `/api/v1/metrics/cache-stats`: the documents' fields plus the rest of the breakdown.
    /// `cache_hit_rate` is the share of lookups answered without a downstream request of their own.
    pub fn cache_stats_json(&self, gauges: &Gauges) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (hits, lookups) = self.lookups();
        let hit_rate = if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 };
        serde_json::json!({
            "l1_hits": load(&self.l1_hits),
            "l2_hits": load(&self.l2_hits),
            "extent_hits": load(&self.extent_hits),
            "coalesced": load(&self.coalesced),
            "source_hits": load(&self.source_hits),
            "stale_served": load(&self.stale_served),
            "unavailable": load(&self.unavailable),
            "rate_limited": load(&self.rate_limited_total),
            "passthrough": load(&self.passthrough_total),
            "total_requests": load(&self.requests_total),
            "cache_lookups": lookups,
            "cache_hit_rate": hit_rate,
            "memory_cache_size": gauges.l1_entries,
            "memory_cache_bytes": gauges.l1_bytes,
            "extent_keys": gauges.extent_keys,
            "extent_bytes": gauges.extent_bytes,
            "downstream_requests": gauges.downstream_requests,
            "breaker_state": match gauges.breaker_state { 0 => "closed", 1 => "open", _ => "half-open" },
            "redis": if !gauges.redis_configured { "off" } else if gauges.redis_up { "up" } else { "down" },
            "redis_errors": gauges.redis_errors,
            "rate_limit_fail_open": load(&self.limit_fail_open_total),
        })
        .to_string()
    }

    /// `/metrics` in the text exposition format.
    pub fn metrics_text(&self, gauges: &Gauges) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter("frontend_requests_total", "Client requests received on API endpoints.", load(&self.requests_total));
        counter(
            "frontend_rate_limited_total",
            "Client requests refused by a rate limit.",
            load(&self.rate_limited_total),
        );
        counter(
            "frontend_passthrough_total",
            "Client requests passed downstream uncached.",
            load(&self.passthrough_total),
        );
        counter("frontend_view_requests_total", "Metrics-view requests.", load(&self.view_requests_total));
        counter(
            "frontend_coalesced_requests_total",
            "Lookups answered by another request's fetch.",
            load(&self.coalesced),
        );
        counter("frontend_stale_served_total", "Lookups answered from a stale copy.", load(&self.stale_served));
        counter(
            "frontend_unavailable_total",
            "Lookups with neither a downstream answer nor a stale copy.",
            load(&self.unavailable),
        );
        counter(
            "frontend_extent_partial_hits_total",
            "Range lookups that fetched only the gaps of their extents.",
            load(&self.extent_partial_hits),
        );
        counter(
            "frontend_downstream_requests_total",
            "Requests sent downstream, retries included.",
            gauges.downstream_requests,
        );
        counter("frontend_downstream_retries_total", "Downstream requests retried.", gauges.downstream_retries);
        counter(
            "frontend_downstream_connections_opened_total",
            "Downstream connections opened.",
            gauges.downstream_connections_opened,
        );
        counter("frontend_breaker_opened_total", "Times the downstream circuit breaker opened.", gauges.breaker_opened);
        counter("frontend_cache_evictions_total", "In-process cache entries evicted for room.", gauges.l1_evictions);
        counter(
            "frontend_rate_limit_overflow_total",
            "New rate-limit identities let through because a table was full.",
            gauges.limit_overflows,
        );
        counter("frontend_redis_errors_total", "Redis commands that failed or timed out.", gauges.redis_errors);
        counter(
            "frontend_rate_limit_fail_open_total",
            "Rate-limit takes let through because Redis did not answer.",
            load(&self.limit_fail_open_total),
        );
        let _ = writeln!(out, "# HELP frontend_cache_lookups_total Cache lookups by how they were answered.\n# TYPE frontend_cache_lookups_total counter");
        for (outcome, value) in [
            ("l1_hit", &self.l1_hits),
            ("l2_hit", &self.l2_hits),
            ("extent_hit", &self.extent_hits),
            ("coalesced", &self.coalesced),
            ("source", &self.source_hits),
            ("stale", &self.stale_served),
            ("unavailable", &self.unavailable),
        ] {
            let _ = writeln!(out, "frontend_cache_lookups_total{{outcome=\"{outcome}\"}} {}", load(value));
        }
        let mut gauge = |name: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge("frontend_cache_entries", "Answers in the in-process cache.", gauges.l1_entries as f64);
        gauge("frontend_cache_bytes", "Bytes of answers in the in-process cache.", gauges.l1_bytes as f64);
        gauge("frontend_extent_keys", "Range-query keys with cached extents.", gauges.extent_keys as f64);
        gauge("frontend_extent_bytes", "Bytes of cached extents.", gauges.extent_bytes as f64);
        if gauges.redis_configured {
            gauge(
                "frontend_redis_up",
                "Whether the last Redis command succeeded.",
                f64::from(u8::from(gauges.redis_up)),
            );
        }
        gauge(
            "frontend_breaker_state",
            "Downstream circuit breaker: 0 closed, 1 open, 2 half-open.",
            f64::from(gauges.breaker_state),
        );
        out
    }
}
