//! Scraping: one loop per target, each fetching the target's exposition over HTTP on its
//! interval, parsing it (text 0.0.4 or OpenMetrics 1.0, by the response's Content-Type), and
//! writing samples plus the synthetic `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling` and `scrape_series_added` series through the storage's
//! `Appender` seam. OpenMetrics exemplars go to the exemplar store (`crate::exemplars`).
//!
//! Targets come from `static_configs` through the job's `relabel_configs` (`target::populate`):
//! relabeling may drop a target or rewrite its address, path, interval and labels. Scraped
//! samples go through the job's `metric_relabel_configs` once per new series text; the cache
//! remembers the outcome, dropped included (see `scrape_loop`).
//!
//! The fast path, as Prometheus' scrape loop: the body is read into a buffer the loop reuses,
//! pulled line by line by a parser that borrows from it (`parse::TextParser`), and each sample
//! looked up by its raw series text in the target's `cache::ScrapeCache`; only a miss parses
//! labels. Limits (`ScrapeLimits`) are checked while reading and parsing; a breach fails the
//! whole scrape.
//!
//! Concurrency: each target loop is an independent task; loops share only the `Appendable`
//! (which serialises commits) and the self-metrics counters.

pub mod cache;
pub mod fetch;
pub mod health;
pub mod manager;
pub mod metadata;
pub mod parse;
pub mod scrape_loop;
pub mod target;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::config::Config;
use crate::io::Env;
use crate::metrics::SelfMetrics;
use crate::storage::Appendable;

pub use manager::ScrapeManager;
pub use target::{Populated, Target};

/// Why one scrape failed. Every variant sets `up` to 0 for that scrape and is logged.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// TCP connection failed.
    #[error("connect to {address}: {source}")]
    Connect {
        /// `host:port`
        address: String,
        /// Cause.
        source: std::io::Error,
    },
    /// HTTP exchange failed.
    #[error("http request: {0}")]
    Http(String),
    /// The target answered with a status other than 200.
    #[error("server returned HTTP status {0}")]
    Status(String),
    /// The body reached the size limit; reading stopped there (Prometheus' error text).
    #[error("body size limit exceeded: limit {limit_size} bytes")]
    BodyTooLarge {
        /// The limit, bytes.
        limit_size: usize,
    },
    /// A new series has more labels than `label_limit` (target labels and `__name__` count).
    #[error("label_limit exceeded (metric: {metric:.50}, number of labels: {label_count}, limit: {limit_count})")]
    LabelLimit {
        /// The series' metric name.
        metric: String,
        /// Its labels.
        label_count: usize,
        /// The limit.
        limit_count: usize,
    },
    /// A label name of a new series is longer than `label_name_length_limit`.
    #[error(
        "label_name_length_limit exceeded (metric: {metric:.50}, label name: {label_name:.50}, length: {length_size}, limit: {limit_size})"
    )]
    LabelNameLengthLimit {
        /// The series' metric name.
        metric: String,
        /// The label.
        label_name: String,
        /// Its length, bytes.
        length_size: usize,
        /// The limit, bytes.
        limit_size: usize,
    },
    /// A label value of a new series is longer than `label_value_length_limit`.
    #[error(
        "label_value_length_limit exceeded (metric: {metric:.50}, label name: {label_name:.50}, value: {label_value:?}, length: {length_size}, limit: {limit_size})"
    )]
    LabelValueLengthLimit {
        /// The series' metric name.
        metric: String,
        /// The label.
        label_name: String,
        /// The value, cut to its first 50 characters (upstream quotes `%.50q`).
        label_value: String,
        /// Its length, bytes.
        length_size: usize,
        /// The limit, bytes.
        limit_size: usize,
    },
    /// No response within the scrape timeout.
    #[error("scrape timed out after {timeout_ms} ms")]
    Timeout {
        /// The timeout, ms.
        timeout_ms: i64,
    },
    /// The body is not valid exposition text.
    #[error("parse exposition: {0}")]
    Parse(#[from] parse::ParseError),
    /// The body is not valid OpenMetrics text (the response's Content-Type said it is).
    #[error("parse exposition: {0}")]
    OpenMetrics(#[from] crate::exposition::openmetrics::ParseError),
    /// The target exposed more samples than `sample_limit` (counted as upstream's
    /// `limitAppender`: samples offered to storage, a repeated line excepted).
    #[error("sample limit exceeded: limit {limit_count}, got {actual_count}")]
    SampleLimit {
        /// Configured limit.
        limit_count: u64,
        /// Samples in the body.
        actual_count: u64,
    },
    /// Metric relabeling left a series without `__name__` (upstream's `errNameLabelMandatory`).
    #[error("missing metric name (__name__ label)")]
    MetricNameMissing,
    /// Metric relabeling produced an invalid metric or label name.
    #[error("invalid metric name or label names: {labels}")]
    InvalidLabels {
        /// The relabeled series.
        labels: String,
    },
    /// Committing to storage failed.
    #[error("commit samples: {0}")]
    Commit(String),
}

/// Starts scraping `config`'s targets: a [`ScrapeManager`] with the configuration applied;
/// exemplars go to `exemplars` (resized to `storage.exemplars.max_exemplars` on every apply).
pub fn start(
    env: &Env,
    config: &Config,
    appendable: Arc<dyn Appendable>,
    metrics: Arc<SelfMetrics>,
    body_size_max: usize,
    exemplars: Option<Arc<crate::exemplars::ExemplarStore>>,
) -> Arc<ScrapeManager> {
    let manager =
        Arc::new(ScrapeManager::new(env.clone(), appendable, metrics, body_size_max).with_exemplars(exemplars));
    manager.apply(config);
    manager
}
