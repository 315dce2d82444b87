//! The per-target loop: wait for the target's phase, then scrape every interval.
//!
//! Each scrape appends the body's samples in one batch (all or nothing: a malformed body or a
//! breached sample limit rolls the batch back) and then the report series in a second batch, as
//! Prometheus does (scrape/scrape.go `scrapeAndReport`). Series present in the previous scrape
//! but absent now get a staleness marker so queries stop returning them at once rather than
//! after the lookback window.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{fetch, parse, ScrapeError, Target};
use crate::io::Env;
use crate::metrics::SelfMetrics;
use crate::model::{Labels, STALE_NAN_BITS};
use crate::storage::Appendable;

/// Everything one target's loop needs.
pub struct ScrapeLoop {
    /// Clock, network, spawner.
    pub env: Env,
    /// What to scrape.
    pub target: Target,
    /// Where samples go.
    pub appendable: Arc<dyn Appendable>,
    /// Counters.
    pub metrics: Arc<SelfMetrics>,
    /// Time between scrapes.
    pub interval_ms: i64,
    /// Longest a scrape may take.
    pub timeout_ms: i64,
    /// Keep clashing scraped labels instead of the target's.
    pub honor_labels: bool,
    /// Use timestamps given in the body.
    pub honor_timestamps: bool,
    /// Most samples per scrape, 0 for no limit.
    pub sample_limit: u64,
    /// Largest body, bytes.
    pub body_size_max: usize,
    /// Mixed into the target hash for the phase.
    pub offset_seed: u64,
}

/// What one successful scrape produced, for the report series.
struct Scraped {
    sample_count: u64,
}

impl ScrapeLoop {
    /// Runs until the task is cancelled.
    pub async fn run(self) {
        let delay_ms = self.target.first_scrape_delay_ms(self.interval_ms, self.env.clock.now_ms(), self.offset_seed);
        tokio::time::sleep(Duration::from_millis(delay_ms as u64)).await;
        let mut ticker = tokio::time::interval(Duration::from_millis(self.interval_ms as u64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous_series = BTreeSet::new();
        loop {
            ticker.tick().await;
            self.scrape_and_report(&mut previous_series).await;
        }
    }

    /// One scrape; `previous_series` carries the series seen last time, for staleness markers.
    pub async fn scrape_and_report(&self, previous_series: &mut BTreeSet<Labels>) {
        self.metrics.scrapes_total.fetch_add(1, Ordering::Relaxed);
        let scrape_ms = self.env.clock.now_ms();
        let started = tokio::time::Instant::now(); // tokio's clock: virtual under turmoil
        let fetched = tokio::time::timeout(
            Duration::from_millis(self.timeout_ms as u64),
            fetch::fetch(
                self.env.net.as_ref(),
                self.env.spawner.as_ref(),
                &self.target,
                self.timeout_ms,
                self.body_size_max,
            ),
        )
        .await
        .unwrap_or(Err(ScrapeError::Timeout { timeout_ms: self.timeout_ms }));
        let duration_seconds = started.elapsed().as_secs_f64();
        let result = match fetched {
            Ok(body) => self.append_body(&body, scrape_ms, previous_series).await,
            Err(error) => Err(error),
        };
        let scraped_count = match &result {
            Ok(scraped) => scraped.sample_count,
            Err(error) => {
                self.metrics.scrape_failures_total.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    job = self.target.labels.get("job").unwrap_or(""),
                    target = %self.target.address,
                    %error,
                    "scrape failed"
                );
                self.mark_stale(scrape_ms, previous_series).await;
                0
            }
        };
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        self.report(scrape_ms, up, duration_seconds, scraped_count).await;
    }

    async fn append_body(
        &self,
        body: &[u8],
        scrape_ms: i64,
        previous_series: &mut BTreeSet<Labels>,
    ) -> Result<Scraped, ScrapeError> {
        let exposition = parse::parse(body)?;
        let sample_count = exposition.samples.len() as u64;
        if self.sample_limit > 0 && sample_count > self.sample_limit {
            return Err(ScrapeError::SampleLimit { limit_count: self.sample_limit, actual_count: sample_count });
        }
        let mut appender = self.appendable.appender();
        let mut current_series = BTreeSet::new();
        let mut rejected_count = 0_u64;
        for sample in &exposition.samples {
            let labels = self.target.series_labels(&sample.labels, self.honor_labels);
            let timestamp_ms = match sample.timestamp_ms {
                Some(timestamp_ms) if self.honor_timestamps => timestamp_ms,
                _ => {
                    // Only series stamped by the scrape take part in staleness (as upstream).
                    current_series.insert(labels.clone());
                    scrape_ms
                }
            };
            if let Err(error) = appender.append(None, &labels, timestamp_ms, sample.value) {
                rejected_count += 1;
                tracing::debug!(%error, "sample rejected");
            }
        }
        for gone in previous_series.difference(&current_series) {
            // A marker that lands behind a newer sample is rejected; that is harmless.
            let _ = appender.append(None, gone, scrape_ms, f64::from_bits(STALE_NAN_BITS));
        }
        appender.commit().await.map_err(|error| ScrapeError::Commit(error.to_string()))?;
        self.metrics.scrape_samples_rejected_total.fetch_add(rejected_count, Ordering::Relaxed);
        *previous_series = current_series;
        Ok(Scraped { sample_count })
    }

    async fn mark_stale(&self, scrape_ms: i64, previous_series: &mut BTreeSet<Labels>) {
        if previous_series.is_empty() {
            return;
        }
        let mut appender = self.appendable.appender();
        for gone in previous_series.iter() {
            let _ = appender.append(None, gone, scrape_ms, f64::from_bits(STALE_NAN_BITS));
        }
        match appender.commit().await {
            Ok(_) => previous_series.clear(),
            Err(error) => tracing::warn!(%error, "commit staleness markers"),
        }
    }

    async fn report(&self, scrape_ms: i64, up: f64, duration_seconds: f64, scraped_count: u64) {
        let mut appender = self.appendable.appender();
        let report_series = [
            ("up", up),
            ("scrape_duration_seconds", duration_seconds),
            ("scrape_samples_scraped", scraped_count as f64),
        ];
        for (name, value) in report_series {
            let mut labels = self.target.labels.clone();
            labels.set(crate::model::METRIC_NAME_LABEL, name);
            if let Err(error) = appender.append(None, &labels, scrape_ms, value) {
                tracing::warn!(%error, series = name, "append report sample");
            }
        }
        if let Err(error) = appender.commit().await {
            tracing::warn!(%error, "commit report samples");
        }
    }
}
