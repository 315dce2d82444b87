//! The series every system of `compare query` holds: `series_count` series over the
//! [`HISTORY_MS`] before `end_ms`, one sample every [`STEP_MS`], rendered either as OpenMetrics
//! (for `promtool` and `enginectl tsdb create-blocks-from openmetrics`, timestamps in seconds)
//! or as the text exposition format with millisecond timestamps (VictoriaMetrics'
//! `/api/v1/import/prometheus`). Both renderings carry the same samples.
//!
//! Layout: `series_count / SERIES_PER_INSTANCE_COUNT` instances, spread round-robin over
//! [`JOB_COUNT`] jobs (`job="job<i % 10>"`, `instance="host<i:05>"`). Each instance has
//! - 4 counters `http_requests_total{code}` (codes 200, 404, 500, 503),
//! - 4 gauges `queue_length{queue}` (q0..q3),
//! - one classic histogram `http_request_duration_seconds` of 10 buckets, `_count` and `_sum`,
//!
//! so a fifth of the series are counters, a fifth gauges and three fifths histogram series, and
//! jobs 0..=4 hold exactly a tenth of all series in `http_requests_total`.
//!
//! Order (OpenMetrics requires it, and the engine's parser checks it): the three families one
//! after another; inside a family one metric (label set without `le`) after another, each with
//! all its samples in time order; a histogram point is its buckets in `le` order, `_count`,
//! `_sum`. Family metadata (`# HELP`, `# TYPE`) is written only in the OpenMetrics rendering,
//! which ends with `# EOF`.
//!
//! Invariants: the samples are a pure function of (seed, series_count, end_ms); counters and
//! buckets never decrease in time, buckets never decrease in `le`, the `+Inf` bucket equals
//! `_count`; every value is an integer or has at most three decimals, so both renderings parse
//! to the same f64. Stateless; a [`Dataset`] is immutable and may be shared.

use std::fmt::Write as _;

use crate::ingest::workload::hash;

/// One sample every 15 s, as a common scrape interval.
pub const STEP_MS: i64 = 15_000;
/// Two hours of samples before `end_ms`.
pub const HISTORY_MS: i64 = 2 * 3600 * 1000;
/// Samples per series: the timestamps `end_ms - k * STEP_MS` for k in 0..SAMPLE_PER_SERIES_COUNT.
pub const SAMPLE_PER_SERIES_COUNT: usize = (HISTORY_MS / STEP_MS) as usize;
/// Jobs the instances are spread over.
pub const JOB_COUNT: usize = 10;
/// HTTP status codes, one counter each per instance.
pub const CODES: [&str; 4] = ["200", "404", "500", "503"];
/// Queues, one gauge each per instance.
pub const QUEUES: [&str; 4] = ["q0", "q1", "q2", "q3"];
/// Upper bounds of the histogram's buckets; the last is `+Inf`.
pub const BUCKET_BOUNDS: [&str; 10] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
/// Share of the observations at or below each bound (cumulative, ends at 1).
const BUCKET_FRACTIONS: [f64; 10] = [0.03, 0.08, 0.2, 0.4, 0.6, 0.8, 0.92, 0.97, 0.995, 1.0];
/// Series of one instance: counters, gauges, buckets, `_count` and `_sum`.
pub const SERIES_PER_INSTANCE_COUNT: usize = CODES.len() + QUEUES.len() + BUCKET_BOUNDS.len() + 2;
/// `--series` must be a multiple of this, so every job has the same instances.
pub const SERIES_COUNT_MULTIPLE: usize = JOB_COUNT * SERIES_PER_INSTANCE_COUNT;
/// Most series: bounds the OpenMetrics file (about 80 bytes a sample, 480 samples a series).
pub const SERIES_COUNT_MAX: usize = 1_000_000;
/// The counter family (samples are `<name>_total`).
pub const COUNTER_FAMILY: &str = "http_requests";
/// The gauge family.
pub const GAUGE_FAMILY: &str = "queue_length";
/// The histogram family.
pub const HISTOGRAM_FAMILY: &str = "http_request_duration_seconds";

const _: () = assert!(SERIES_PER_INSTANCE_COUNT == 20);
const _: () = assert!(BUCKET_FRACTIONS.len() == BUCKET_BOUNDS.len());

/// How sample timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0: family metadata, timestamps in seconds, `# EOF` at the end.
    OpenMetrics,
    /// Text exposition 0.0.4 with millisecond timestamps and no metadata.
    ExpositionMs,
}

/// Why a dataset cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatasetError {
    /// The series count does not fit the layout.
    #[error("series count must be a positive multiple of {SERIES_COUNT_MULTIPLE} up to {SERIES_COUNT_MAX}, got {series_count}")]
    SeriesCount {
        /// What was asked for.
        series_count: usize,
    },
    /// The end is not on a whole second (OpenMetrics timestamps are written as integers).
    #[error("end_ms must be a whole second, got {end_ms}")]
    EndNotWholeSecond {
        /// What was asked for.
        end_ms: i64,
    },
}

/// What one metric (a label set without `le`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetricKind {
    Counter { code_index: usize },
    Gauge { queue_index: usize },
    Histogram,
}

/// The dataset: which series, which samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    seed: u64,
    series_count: usize,
    end_ms: i64,
}

impl Dataset {
    /// A dataset of `series_count` series whose last samples are at `end_ms`.
    pub fn new(seed: u64, series_count: usize, end_ms: i64) -> Result<Dataset, DatasetError> {
        if series_count == 0 || !series_count.is_multiple_of(SERIES_COUNT_MULTIPLE) || series_count > SERIES_COUNT_MAX {
            return Err(DatasetError::SeriesCount { series_count });
        }
        if end_ms % 1000 != 0 {
            return Err(DatasetError::EndNotWholeSecond { end_ms });
        }
        Ok(Dataset { seed, series_count, end_ms })
    }

    /// Series in all.
    pub fn series_count(&self) -> usize {
        self.series_count
    }

    /// Samples in all.
    pub fn sample_count(&self) -> usize {
        self.series_count * SAMPLE_PER_SERIES_COUNT
    }

    /// Timestamp of every series' last sample.
    pub fn end_ms(&self) -> i64 {
        self.end_ms
    }

    /// Timestamp of every series' first sample.
    pub fn start_ms(&self) -> i64 {
        self.end_ms - (SAMPLE_PER_SERIES_COUNT as i64 - 1) * STEP_MS
    }

    /// Instances in all.
    pub fn instance_count(&self) -> usize {
        self.series_count / SERIES_PER_INSTANCE_COUNT
    }

    /// Metrics (label sets without `le`): the unit [`Dataset::render_metric`] renders.
    pub fn metric_count(&self) -> usize {
        self.instance_count() * (CODES.len() + QUEUES.len() + 1)
    }

    fn metric(&self, metric_index: usize) -> (MetricKind, usize) {
        let instance_count = self.instance_count();
        let counter_count = instance_count * CODES.len();
        let gauge_count = instance_count * QUEUES.len();
        assert!(metric_index < self.metric_count(), "metric index {metric_index} beyond {}", self.metric_count());
        if metric_index < counter_count {
            (MetricKind::Counter { code_index: metric_index % CODES.len() }, metric_index / CODES.len())
        } else if metric_index < counter_count + gauge_count {
            let index = metric_index - counter_count;
            (MetricKind::Gauge { queue_index: index % QUEUES.len() }, index / QUEUES.len())
        } else {
            (MetricKind::Histogram, metric_index - counter_count - gauge_count)
        }
    }

    /// Appends metric `metric_index` (0-based, below [`Dataset::metric_count`]) with all its
    /// samples; in OpenMetrics, a family's first metric is preceded by its metadata.
    pub fn render_metric(&self, metric_index: usize, format: Format, out: &mut String) {
        let (kind, instance_index) = self.metric(metric_index);
        let labels = format!("instance=\"host{instance_index:05}\",job=\"job{}\"", instance_index % JOB_COUNT);
        let first_of_family = instance_index == 0
            && match kind {
                MetricKind::Counter { code_index } => code_index == 0,
                MetricKind::Gauge { queue_index } => queue_index == 0,
                MetricKind::Histogram => true,
            };
        if format == Format::OpenMetrics && first_of_family {
            let (family, type_name) = match kind {
                MetricKind::Counter { .. } => (COUNTER_FAMILY, "counter"),
                MetricKind::Gauge { .. } => (GAUGE_FAMILY, "gauge"),
                MetricKind::Histogram => (HISTOGRAM_FAMILY, "histogram"),
            };
            let _ = writeln!(out, "# HELP {family} Synthetic {type_name} of the query comparison.");
            let _ = writeln!(out, "# TYPE {family} {type_name}");
        }
        let identity = hash(self.seed, &[metric_index as u64]);
        for sample_index in 0..SAMPLE_PER_SERIES_COUNT {
            let timestamp_ms = self.start_ms() + sample_index as i64 * STEP_MS;
            let timestamp = match format {
                Format::OpenMetrics => timestamp_ms / 1000,
                Format::ExpositionMs => timestamp_ms,
            };
            let step = sample_index as u64;
            match kind {
                MetricKind::Counter { code_index } => {
                    let value = self.counter(identity, metric_index as u64, step);
                    let _ = writeln!(
                        out,
                        "{COUNTER_FAMILY}_total{{code=\"{}\",{labels}}} {value} {timestamp}",
                        CODES[code_index]
                    );
                }
                MetricKind::Gauge { queue_index } => {
                    // A slow triangle wave around a per-series base, plus jitter; in hundredths.
                    let base = identity % 100_000;
                    let phase = (step + identity % 240) % 240;
                    let wave = if phase < 120 { phase } else { 240 - phase } * 10;
                    let jitter = hash(self.seed, &[metric_index as u64, step, 1]) % 100;
                    let hundredths = base + wave + jitter;
                    let _ = writeln!(
                        out,
                        "{GAUGE_FAMILY}{{{labels},queue=\"{}\"}} {}.{:02} {timestamp}",
                        QUEUES[queue_index],
                        hundredths / 100,
                        hundredths % 100
                    );
                }
                MetricKind::Histogram => {
                    let count = self.counter(identity, metric_index as u64, step);
                    for (bound, fraction) in BUCKET_BOUNDS.iter().zip(BUCKET_FRACTIONS) {
                        let bucket = (count as f64 * fraction).floor() as u64;
                        let _ =
                            writeln!(out, "{HISTOGRAM_FAMILY}_bucket{{{labels},le=\"{bound}\"}} {bucket} {timestamp}");
                    }
                    let _ = writeln!(out, "{HISTOGRAM_FAMILY}_count{{{labels}}} {count} {timestamp}");
                    // About 0.187 s per observation; thousandths keep both renderings exact.
                    let sum_thousandths = count * 187;
                    let _ = writeln!(
                        out,
                        "{HISTOGRAM_FAMILY}_sum{{{labels}}} {}.{:03} {timestamp}",
                        sum_thousandths / 1000,
                        sum_thousandths % 1000
                    );
                }
            }
        }
    }

    /// A counter rising by `rate` per step on average with a jitter below `rate`, so
    /// `base + step * rate + jitter(step)` never decreases.
    fn counter(&self, identity: u64, metric_index: u64, step: u64) -> u64 {
        let rate = 1 + identity % 50;
        let base = (identity >> 8) % 1_000_000;
        base + step * rate + hash(self.seed, &[metric_index, step, 2]) % rate
    }

    /// The closing line of the OpenMetrics rendering.
    pub fn openmetrics_end() -> &'static str {
        "# EOF\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::exposition;

    fn render_all(dataset: &Dataset, format: Format) -> String {
        let mut out = String::new();
        for metric_index in 0..dataset.metric_count() {
            dataset.render_metric(metric_index, format, &mut out);
        }
        if format == Format::OpenMetrics {
            out.push_str(Dataset::openmetrics_end());
        }
        out
    }

    #[track_caller]
    fn check_error(series_count: usize, end_ms: i64, expected: DatasetError) {
        assert_eq!(Dataset::new(1, series_count, end_ms), Err(expected));
    }

    #[test]
    fn sizes_are_checked() {
        check_error(0, 0, DatasetError::SeriesCount { series_count: 0 });
        check_error(300, 0, DatasetError::SeriesCount { series_count: 300 });
        check_error(SERIES_COUNT_MAX + 200, 0, DatasetError::SeriesCount { series_count: SERIES_COUNT_MAX + 200 });
        check_error(200, 1500, DatasetError::EndNotWholeSecond { end_ms: 1500 });
        let dataset = Dataset::new(1, 400, 1_700_000_000_000).expect("valid");
        assert_eq!((dataset.instance_count(), dataset.metric_count()), (20, 180));
        assert_eq!(dataset.sample_count(), 400 * 480);
        assert_eq!(dataset.end_ms() - dataset.start_ms(), HISTORY_MS - STEP_MS);
    }

    #[test]
    fn openmetrics_rendering_backfills_every_sample() {
        let dataset = Dataset::new(7, 200, 1_700_000_000_000).expect("valid");
        let text = render_all(&dataset, Format::OpenMetrics);
        // The engine's own strict parser (ordering, histogram consistency, # EOF) accepts it.
        let entries = engine::exposition::openmetrics::Parser::new(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("valid OpenMetrics");
        let sample_count = entries
            .iter()
            .filter(|entry| matches!(entry, engine::exposition::openmetrics::Entry::Sample { .. }))
            .count();
        assert_eq!(sample_count, dataset.sample_count());
    }

    #[test]
    fn both_renderings_hold_the_same_samples() {
        let dataset = Dataset::new(3, 200, 1_700_000_000_000).expect("valid");
        let openmetrics = render_all(&dataset, Format::OpenMetrics);
        let exposition = render_all(&dataset, Format::ExpositionMs);
        let strip = |text: &str, suffix: &str| -> Vec<String> {
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .map(|line| line.strip_suffix(suffix).expect("timestamp suffix").to_string())
                .collect()
        };
        // Same lines once the millisecond timestamps lose their three zeros.
        let seconds: Vec<String> =
            openmetrics.lines().filter(|line| !line.starts_with('#')).map(String::from).collect();
        let milliseconds: Vec<String> = strip(&exposition, "000");
        assert_eq!(seconds, milliseconds);
        let samples = exposition::parse(&exposition).expect("valid exposition");
        assert_eq!(samples.len(), dataset.sample_count());
        let names: std::collections::BTreeSet<&str> = samples.iter().map(|sample| sample.name.as_str()).collect();
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            [
                "http_request_duration_seconds_bucket",
                "http_request_duration_seconds_count",
                "http_request_duration_seconds_sum",
                "http_requests_total",
                "queue_length"
            ]
        );
        // A tenth of the series are counters of jobs 0..=4.
        let ten_percent: std::collections::BTreeSet<&str> = samples
            .iter()
            .filter(|sample| {
                sample.name == "http_requests_total"
                    && sample.labels.iter().any(|(name, value)| name == "job" && value.as_str() < "job5")
            })
            .map(|sample| sample.series.as_str())
            .collect();
        assert_eq!(ten_percent.len(), dataset.series_count() / 10);
    }

    #[test]
    fn rendering_is_a_pure_function_of_its_inputs() {
        let one = Dataset::new(5, 200, 1_700_000_000_000).expect("valid");
        assert_eq!(render_all(&one, Format::ExpositionMs), render_all(&one.clone(), Format::ExpositionMs));
        let other_seed = Dataset::new(6, 200, 1_700_000_000_000).expect("valid");
        assert_ne!(render_all(&one, Format::ExpositionMs), render_all(&other_seed, Format::ExpositionMs));
    }
}
