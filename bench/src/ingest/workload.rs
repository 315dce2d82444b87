//! The synthetic exporter fleet the comparison scrapes: `target_count` targets, each exposing the
//! same `series_count` series (counters, gauges and classic histograms with `_bucket{le=..}`,
//! `_sum`, `_count`), in text format 0.0.4.
//!
//! Invariants: a body is a pure function of (seed, data kind, target index, scrape index): every
//! system sees the same sequence of bodies, and a re-run reproduces them. The series layout (names,
//! labels, HELP/TYPE lines) is computed once into a [`Template`] shared by all targets, so a scrape
//! costs one pass that appends a precomputed prefix and formats one number per series.
//! With [`DataKind::Realistic`], counters and histogram buckets never decrease from one scrape to
//! the next and buckets never decrease with `le`.
//!
//! Concurrency: a [`Workload`] is immutable; share it behind an `Arc` and render from any task.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Upper bounds of one classic histogram, in seconds; the last one is `+Inf`.
const BUCKET_BOUNDS: [&str; 12] =
    ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
/// Share of a realistic histogram's observations at or below each bound (cumulative, ends at 1).
const BUCKET_FRACTIONS: [f64; 12] = [0.02, 0.05, 0.12, 0.25, 0.45, 0.65, 0.8, 0.9, 0.96, 0.99, 0.998, 1.0];
/// Series one histogram label set produces: its buckets, `_sum` and `_count`.
const HISTOGRAM_SERIES_COUNT: usize = BUCKET_BOUNDS.len() + 2;
/// Series per counter family (metric name).
const COUNTER_FAMILY_SIZE: usize = 48;
/// Series per gauge family.
const GAUGE_FAMILY_SIZE: usize = 32;
/// Histogram label sets per histogram family.
const HISTOGRAM_FAMILY_SIZE: usize = 8;
/// Most series one target may expose: bounds the body (about 100 bytes a series).
pub const SERIES_COUNT_MAX: usize = 1_000_000;

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const CODES: [&str; 3] = ["200", "404", "500"];
const MODES: [&str; 4] = ["user", "system", "iowait", "idle"];
const COUNTER_NAMES: [&str; 4] = ["http_requests_total", "rpc_calls_total", "db_queries_total", "cache_lookups_total"];
const GAUGE_NAMES: [&str; 3] = ["memory_usage_bytes", "queue_length", "cpu_utilisation_ratio"];

/// How values are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// Every value an f64 drawn from a ChaCha8 stream seeded by (seed, target, scrape): the
    /// worst case for XOR/delta compression.
    Random,
    /// Integer counters with jittered increments, gauges with two decimals, some constant
    /// series, histogram buckets that grow monotonically: what exporters really send.
    Realistic,
}

impl DataKind {
    /// Parses `random` or `realistic`.
    pub fn parse(text: &str) -> Option<DataKind> {
        match text {
            "random" => Some(DataKind::Random),
            "realistic" => Some(DataKind::Realistic),
            _ => None,
        }
    }

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            DataKind::Random => "random",
            DataKind::Realistic => "realistic",
        }
    }
}

/// What one series is, which decides its realistic value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SeriesKind {
    /// A counter; constant when `constant` (a `build_info`-like series).
    Counter { constant: bool },
    /// A gauge; constant when `constant`.
    Gauge { constant: bool },
    /// Bucket `bucket_index` of histogram label set `histogram_index`.
    Bucket { histogram_index: usize, bucket_index: usize },
    /// `_sum` of a histogram label set.
    HistogramSum { histogram_index: usize },
    /// `_count` of a histogram label set.
    HistogramCount { histogram_index: usize },
}

/// One output line before its value: any HELP/TYPE lines that open its family, then
/// `name{labels} `.
#[derive(Debug, Clone)]
struct Line {
    prefix: String,
    kind: SeriesKind,
}

/// The series layout of one target, identical for all targets.
#[derive(Debug, Clone)]
pub struct Template {
    lines: Vec<Line>,
    body_size_estimate: usize,
}

/// How many series of each kind a target exposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Counter series.
    pub counter_count: usize,
    /// Gauge series.
    pub gauge_count: usize,
    /// Histogram label sets (each is [`HISTOGRAM_SERIES_COUNT`] series).
    pub histogram_count: usize,
}

impl Layout {
    /// Splits `series_count` into about 20 % histogram series, then 55 % counters and 45 % gauges
    /// of the rest; the total is exactly `series_count`.
    pub fn new(series_count: usize) -> Layout {
        let histogram_count = if series_count >= 2 * HISTOGRAM_SERIES_COUNT { (series_count / 70).max(1) } else { 0 };
        let rest = series_count - histogram_count * HISTOGRAM_SERIES_COUNT;
        let counter_count = rest * 55 / 100;
        Layout { counter_count, gauge_count: rest - counter_count, histogram_count }
    }

    /// Series in total.
    pub fn series_count(&self) -> usize {
        self.counter_count + self.gauge_count + self.histogram_count * HISTOGRAM_SERIES_COUNT
    }
}

/// `app{round}_{base}` so families stay distinct when the name list wraps.
fn family_name(names: &[&str], family_index: usize) -> String {
    format!("app{}_{}", family_index / names.len(), names[family_index % names.len()])
}

fn family_header(out: &mut String, name: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} Synthetic {kind} of the ingest comparison.");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

impl Template {
    /// Lays out `series_count` series (at most [`SERIES_COUNT_MAX`]).
    pub fn new(series_count: usize) -> Template {
        assert!(series_count <= SERIES_COUNT_MAX, "series_count {series_count} exceeds {SERIES_COUNT_MAX}");
        let layout = Layout::new(series_count);
        let mut lines = Vec::with_capacity(series_count);
        for index in 0..layout.counter_count {
            let (family_index, member_index) = (index / COUNTER_FAMILY_SIZE, index % COUNTER_FAMILY_SIZE);
            let name = family_name(&COUNTER_NAMES, family_index);
            let mut prefix = String::new();
            if member_index == 0 {
                family_header(&mut prefix, &name, "counter");
            }
            let _ = write!(
                prefix,
                "{name}{{code=\"{}\",handler=\"/api/v1/h{}\",method=\"{}\"}} ",
                CODES[(member_index / 4) % CODES.len()],
                member_index / 12,
                METHODS[member_index % METHODS.len()]
            );
            lines.push(Line { prefix, kind: SeriesKind::Counter { constant: index % 16 == 15 } });
        }
        for index in 0..layout.gauge_count {
            let (family_index, member_index) = (index / GAUGE_FAMILY_SIZE, index % GAUGE_FAMILY_SIZE);
            let name = family_name(&GAUGE_NAMES, family_index);
            let mut prefix = String::new();
            if member_index == 0 {
                family_header(&mut prefix, &name, "gauge");
            }
            let _ = write!(
                prefix,
                "{name}{{device=\"dev{}\",mode=\"{}\"}} ",
                member_index / MODES.len(),
                MODES[member_index % MODES.len()]
            );
            lines.push(Line { prefix, kind: SeriesKind::Gauge { constant: index % 8 == 7 } });
        }
        for histogram_index in 0..layout.histogram_count {
            let family_index = histogram_index / HISTOGRAM_FAMILY_SIZE;
            let member_index = histogram_index % HISTOGRAM_FAMILY_SIZE;
            let name = format!("app{family_index}_request_duration_seconds");
            let labels =
                format!("handler=\"/api/v1/h{member_index}\",method=\"{}\"", METHODS[member_index % METHODS.len()]);
            for (bucket_index, bound) in BUCKET_BOUNDS.iter().enumerate() {
                let mut prefix = String::new();
                if member_index == 0 && bucket_index == 0 {
                    family_header(&mut prefix, &name, "histogram");
                }
                let _ = write!(prefix, "{name}_bucket{{{labels},le=\"{bound}\"}} ");
                lines.push(Line { prefix, kind: SeriesKind::Bucket { histogram_index, bucket_index } });
            }
            lines.push(Line {
                prefix: format!("{name}_sum{{{labels}}} "),
                kind: SeriesKind::HistogramSum { histogram_index },
            });
            lines.push(Line {
                prefix: format!("{name}_count{{{labels}}} "),
                kind: SeriesKind::HistogramCount { histogram_index },
            });
        }
        assert_eq!(lines.len(), series_count, "layout must produce exactly the series asked for");
        let body_size_estimate = lines.iter().map(|line| line.prefix.len() + 24).sum();
        Template { lines, body_size_estimate }
    }

    /// Series per target.
    pub fn series_count(&self) -> usize {
        self.lines.len()
    }
}

/// SplitMix64's finaliser: a cheap, well-mixed, stable hash step.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable hash of `seed` and `parts` (chained [`mix`] steps); the query dataset shares it.
pub(crate) fn hash(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed), |state, part| mix(state ^ part))
}

/// The fleet: a template plus the seed and data kind that pick the values.
#[derive(Debug, Clone)]
pub struct Workload {
    seed: u64,
    data_kind: DataKind,
    template: Template,
}

impl Workload {
    /// A workload of `series_count` series per target.
    pub fn new(seed: u64, data_kind: DataKind, series_count: usize) -> Workload {
        Workload { seed, data_kind, template: Template::new(series_count) }
    }

    /// Series per target.
    pub fn series_count(&self) -> usize {
        self.template.series_count()
    }

    /// The body target `target_index` serves on its `scrape_index`-th request (0-based).
    pub fn render(&self, target_index: u64, scrape_index: u64) -> String {
        let mut out = String::with_capacity(self.template.body_size_estimate);
        match self.data_kind {
            DataKind::Random => {
                let mut rng = ChaCha8Rng::seed_from_u64(hash(self.seed, &[target_index, scrape_index]));
                for line in &self.template.lines {
                    out.push_str(&line.prefix);
                    let value: f64 = rng.random::<f64>() * 1000.0;
                    let _ = writeln!(out, "{value}");
                }
            }
            DataKind::Realistic => {
                for (series_index, line) in self.template.lines.iter().enumerate() {
                    out.push_str(&line.prefix);
                    self.write_realistic(&mut out, line.kind, target_index, series_index as u64, scrape_index);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// A counter that rises by `rate` per scrape on average, with a jittered increment in
    /// `1..2*rate`: `base + n*rate + jitter(n)` with `jitter < rate` never decreases in `n`.
    fn counter(&self, stream: u64, target_index: u64, scrape_index: u64) -> u64 {
        let identity = hash(self.seed, &[1, target_index, stream]);
        let rate = 1 + identity % 50;
        let base = identity % 1_000_000;
        let jitter = hash(self.seed, &[2, target_index, stream, scrape_index]) % rate;
        base + scrape_index * rate + jitter
    }

    fn write_realistic(
        &self,
        out: &mut String,
        kind: SeriesKind,
        target_index: u64,
        series_index: u64,
        scrape_index: u64,
    ) {
        match kind {
            SeriesKind::Counter { constant: true } => {
                let _ = write!(out, "{}", 1 + hash(self.seed, &[3, target_index, series_index]) % 16);
            }
            SeriesKind::Counter { constant: false } => {
                let _ = write!(out, "{}", self.counter(series_index, target_index, scrape_index));
            }
            SeriesKind::Gauge { constant } => {
                let identity = hash(self.seed, &[4, target_index, series_index]);
                let base = (identity % 100_000) as f64 / 100.0;
                let value = if constant {
                    base
                } else {
                    // A slow triangle wave plus jitter, rounded to two decimals.
                    let phase = (scrape_index + identity % 600) % 600;
                    let wave = if phase < 300 { phase } else { 600 - phase } as f64 / 10.0;
                    let jitter = (hash(self.seed, &[5, target_index, series_index, scrape_index]) % 200) as f64 / 100.0;
                    base + wave + jitter
                };
                let _ = write!(out, "{value:.2}");
            }
            SeriesKind::Bucket { histogram_index, bucket_index } => {
                let count = self.counter(histogram_stream(histogram_index), target_index, scrape_index);
                let _ = write!(out, "{}", (count as f64 * BUCKET_FRACTIONS[bucket_index]).floor() as u64);
            }
            SeriesKind::HistogramCount { histogram_index } => {
                let _ = write!(out, "{}", self.counter(histogram_stream(histogram_index), target_index, scrape_index));
            }
            SeriesKind::HistogramSum { histogram_index } => {
                // About 0.187 s per observation, in milliseconds with three decimals.
                let count = self.counter(histogram_stream(histogram_index), target_index, scrape_index);
                let _ = write!(out, "{:.3}", count as f64 * 0.187);
            }
        }
    }
}

/// Counter streams of histograms live above every series index.
fn histogram_stream(histogram_index: usize) -> u64 {
    (1 << 40) + histogram_index as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::exposition;

    #[track_caller]
    fn check_layout(series_count: usize, expected: Layout) {
        let layout = Layout::new(series_count);
        assert_eq!(layout, expected);
        assert_eq!(layout.series_count(), series_count);
        assert_eq!(Template::new(series_count).series_count(), series_count);
    }

    #[test]
    fn layout_is_exact() {
        check_layout(0, Layout { counter_count: 0, gauge_count: 0, histogram_count: 0 });
        check_layout(1, Layout { counter_count: 0, gauge_count: 1, histogram_count: 0 });
        check_layout(27, Layout { counter_count: 14, gauge_count: 13, histogram_count: 0 });
        check_layout(28, Layout { counter_count: 7, gauge_count: 7, histogram_count: 1 });
        check_layout(1000, Layout { counter_count: 442, gauge_count: 362, histogram_count: 14 });
    }

    #[test]
    fn body_is_a_pure_function_of_its_inputs() {
        for data_kind in [DataKind::Random, DataKind::Realistic] {
            let one = Workload::new(7, data_kind, 300);
            let two = Workload::new(7, data_kind, 300);
            assert_eq!(one.render(3, 5), two.render(3, 5), "{data_kind:?}: same inputs, same body");
            assert_ne!(one.render(3, 5), one.render(3, 6), "{data_kind:?}: next scrape differs");
            assert_ne!(one.render(3, 5), one.render(4, 5), "{data_kind:?}: other target differs");
            assert_ne!(one.render(3, 5), Workload::new(8, data_kind, 300).render(3, 5), "{data_kind:?}: seed");
        }
    }

    fn values(body: &str) -> Vec<(String, f64)> {
        exposition::parse(body).expect("generator output parses").into_iter().map(|s| (s.series, s.value)).collect()
    }

    #[test]
    fn body_parses_into_unique_series() {
        for data_kind in [DataKind::Random, DataKind::Realistic] {
            let body = Workload::new(1, data_kind, 1000).render(0, 0);
            let samples = values(&body);
            assert_eq!(samples.len(), 1000);
            let mut series: Vec<&String> = samples.iter().map(|(series, _)| series).collect();
            series.sort();
            series.dedup();
            assert_eq!(series.len(), 1000, "{data_kind:?}: series are unique");
            assert!(body.contains("le=\"+Inf\""), "has histograms");
        }
    }

    #[test]
    fn realistic_counters_and_buckets_never_decrease() {
        let workload = Workload::new(11, DataKind::Realistic, 500);
        let template = &workload.template;
        let mut previous = values(&workload.render(2, 0));
        for scrape_index in 1..40 {
            let current = values(&workload.render(2, scrape_index));
            for ((line, (series, before)), (_, after)) in template.lines.iter().zip(&previous).zip(&current) {
                match line.kind {
                    SeriesKind::Counter { constant: true } | SeriesKind::Gauge { constant: true } => {
                        assert_eq!(after, before, "{series} is constant");
                    }
                    SeriesKind::Counter { .. } | SeriesKind::Bucket { .. } | SeriesKind::HistogramCount { .. } => {
                        assert!(after >= before, "{series} fell from {before} to {after} at scrape {scrape_index}");
                    }
                    SeriesKind::Gauge { .. } | SeriesKind::HistogramSum { .. } => {}
                }
            }
            // Buckets of one histogram never decrease with `le`, and +Inf equals _count.
            for (index, line) in template.lines.iter().enumerate() {
                if let SeriesKind::Bucket { bucket_index, .. } = line.kind {
                    if bucket_index > 0 {
                        assert!(current[index].1 >= current[index - 1].1, "{} below lower bucket", current[index].0);
                    }
                    if bucket_index == BUCKET_BOUNDS.len() - 1 {
                        assert_eq!(current[index].1, current[index + 2].1, "+Inf bucket equals _count");
                    }
                }
            }
            previous = current;
        }
    }
}
