//! Scraping: one loop per target, each fetching the target's exposition over HTTP on its
//! interval, parsing it, and writing samples plus the synthetic `up`, `scrape_duration_seconds`
//! and `scrape_samples_scraped` series through the storage's `Appender` seam.
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

pub use target::Target;

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
    /// The target exposed more samples than `sample_limit` (counted as upstream's
    /// `limitAppender`: samples offered to storage, a repeated line excepted).
    #[error("sample limit exceeded: limit {limit_count}, got {actual_count}")]
    SampleLimit {
        /// Configured limit.
        limit_count: u64,
        /// Samples in the body.
        actual_count: u64,
    },
    /// Committing to storage failed.
    #[error("commit samples: {0}")]
    Commit(String),
}

/// Starts one scrape loop per configured target.
pub fn start(
    env: &Env,
    config: &Config,
    appendable: Arc<dyn Appendable>,
    metrics: Arc<SelfMetrics>,
    body_size_max: usize,
) -> Arc<health::Targets> {
    let mut targets = health::Targets::default();
    let offset_seed = target::offset_seed(&config.global.external_labels);
    for scrape_config in &config.scrape_configs {
        for static_config in &scrape_config.static_configs {
            for address in &static_config.targets {
                let target = Target::new(scrape_config, address, &static_config.labels);
                let health = Arc::new(health::ActiveTarget::new(
                    scrape_config.job_name.clone(),
                    format!("http://{}{}", target.address, target.metrics_path),
                    discovered_labels(scrape_config, address, &static_config.labels),
                    target.labels.clone(),
                    scrape_config.scrape_interval_ms,
                    scrape_config.scrape_timeout_ms,
                ));
                targets.active.push(health.clone());
                let scrape_loop = scrape_loop::ScrapeLoop {
                    env: env.clone(),
                    target,
                    appendable: appendable.clone(),
                    metrics: metrics.clone(),
                    interval_ms: scrape_config.scrape_interval_ms,
                    timeout_ms: scrape_config.scrape_timeout_ms,
                    honor_labels: scrape_config.honor_labels,
                    honor_timestamps: scrape_config.honor_timestamps,
                    // The job's limits (inherited from `global` where unset); 0 means none.
                    limits: scrape_loop::ScrapeLimits {
                        sample_count_limit: scrape_config.sample_limit,
                        body_size_limit: usize::try_from(scrape_config.body_size_limit).unwrap_or(usize::MAX),
                        label_count_limit: usize::try_from(scrape_config.label_limit).unwrap_or(usize::MAX),
                        label_name_size_limit: usize::try_from(scrape_config.label_name_length_limit)
                            .unwrap_or(usize::MAX),
                        label_value_size_limit: usize::try_from(scrape_config.label_value_length_limit)
                            .unwrap_or(usize::MAX),
                    },
                    body_size_max,
                    offset_seed,
                    health: Some(health),
                };
                env.spawner.spawn("scrape-loop", Box::pin(scrape_loop.run()));
            }
        }
    }
    Arc::new(targets)
}

/// The labels a target had before relabelling, as Prometheus shows them.
fn discovered_labels(
    scrape_config: &crate::config::ScrapeConfig,
    address: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> crate::model::Labels {
    let mut discovered =
        crate::model::Labels::from_pairs(labels.iter().map(|(name, value)| (name.as_str(), value.as_str())));
    discovered.set("__address__", address);
    discovered.set("__metrics_path__", &scrape_config.metrics_path);
    discovered.set("__scheme__", "http");
    discovered.set("__scrape_interval__", &crate::config::format_duration_ms(scrape_config.scrape_interval_ms));
    discovered.set("__scrape_timeout__", &crate::config::format_duration_ms(scrape_config.scrape_timeout_ms));
    discovered.set("job", &scrape_config.job_name);
    discovered
}
