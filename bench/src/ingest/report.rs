//! The comparison's figures and their Markdown report: one row per system, the engine's ratios
//! to each peer, the disk breakdown and the raw inputs each figure came from.
//!
//! Invariants: every figure is derived here from raw counts (never measured twice); a figure
//! whose denominator is zero renders as `n/a`, never as infinity or a panic; rows keep the
//! order the systems ran in, so the report is a pure function of its inputs. Stateless.

use std::fmt::Write as _;

use super::rules::{RuleFigures, RuleLoad};

/// "Kept up" means at least this share of the expected samples per second was ingested.
pub const KEPT_UP_RATIO_MIN: f64 = 0.99;

/// What the run was asked to do, for the report's header.
#[derive(Debug, Clone)]
pub struct RunParameters {
    /// Targets served by the generator.
    pub target_count: usize,
    /// Series per target.
    pub series_count: usize,
    /// Scrape interval.
    pub interval_ms: u64,
    /// Time each system ran before the window opened.
    pub warmup_ms: u64,
    /// Planned measurement window.
    pub measure_ms: u64,
    /// `random` or `realistic`.
    pub data_kind: &'static str,
    /// Seed of the values.
    pub seed: u64,
    /// The command line that reproduces the run.
    pub command_line: String,
    /// UTC start time, ISO 8601.
    pub started_at: String,
    /// CPUs, kernel and memory of the machine.
    pub machine: String,
    /// The rule load (`--rules`), if any.
    pub rules: Option<RuleLoad>,
}

/// One top-level part of a data directory and its size on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskPart {
    /// What it is (`wal`, `blocks`, `head chunks`, ...).
    pub part: String,
    /// Apparent size of its files in bytes.
    pub size: u64,
}

/// Raw observations of one system over one window.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// `engine`, `prometheus` or `victoria-metrics`.
    pub system: String,
    /// Its version line.
    pub version: String,
    /// The metric read for samples appended, as `name{labels}`.
    pub samples_metric: String,
    /// The metric read for active series.
    pub series_metric: String,
    /// Measured window length (wall clock between the two readings).
    pub window_ms: u64,
    /// Samples appended during the window (counter delta).
    pub samples_appended_window_count: f64,
    /// Samples appended since the system started (counter at the end).
    pub samples_appended_total_count: f64,
    /// Scrapes the generator served during the window.
    pub scrapes_served_window_count: u64,
    /// CPU time the system used during the window.
    pub cpu_ms: u64,
    /// CPU time the generator (this process) used during the window.
    pub generator_cpu_ms: u64,
    /// Active series at the end.
    pub active_series_count: f64,
    /// Resident memory at the end.
    pub rss_size: u64,
    /// Data directory at the end, by part.
    pub disk_parts: Vec<DiskPart>,
    /// `/proc/loadavg` (1-minute) at the start and end of the window.
    pub load_average: (String, String),
    /// Rule evaluation at the end of the window (`--rules`; not VictoriaMetrics).
    pub rules: Option<RuleFigures>,
}

/// What happened to one system.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran and was measured.
    Measured(Box<Measurement>),
    /// It could not be measured.
    Failed {
        /// The system.
        system: String,
        /// Why.
        error: String,
    },
}

/// Figures derived from one [`Measurement`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Samples ingested per second over the window.
    pub ingested_per_s: f64,
    /// Samples per second the generator offered (targets x series / interval).
    pub expected_per_s: f64,
    /// `ingested_per_s / expected_per_s`.
    pub ingested_ratio: Option<f64>,
    /// CPU seconds per million samples ingested.
    pub cpu_s_per_million_samples: Option<f64>,
    /// Resident bytes per active series.
    pub rss_bytes_per_series: Option<f64>,
    /// Bytes on disk.
    pub disk_size: u64,
    /// Bytes on disk per sample appended since start.
    pub disk_bytes_per_sample: Option<f64>,
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite()).then(|| numerator / denominator)
}

impl Figures {
    /// Derives the figures; `expected_per_s` comes from the run parameters.
    pub fn new(measurement: &Measurement, expected_per_s: f64) -> Figures {
        let window_s = measurement.window_ms as f64 / 1000.0;
        let ingested_per_s = ratio(measurement.samples_appended_window_count, window_s).unwrap_or(0.0);
        let disk_size = measurement.disk_parts.iter().map(|part| part.size).sum();
        Figures {
            ingested_per_s,
            expected_per_s,
            ingested_ratio: ratio(ingested_per_s, expected_per_s),
            cpu_s_per_million_samples: ratio(
                measurement.cpu_ms as f64 / 1000.0,
                measurement.samples_appended_window_count / 1e6,
            ),
            rss_bytes_per_series: ratio(measurement.rss_size as f64, measurement.active_series_count),
            disk_size,
            disk_bytes_per_sample: ratio(disk_size as f64, measurement.samples_appended_total_count),
        }
    }

    /// At least [`KEPT_UP_RATIO_MIN`] of the offered samples per second were ingested.
    pub fn kept_up(&self) -> bool {
        self.ingested_ratio.is_some_and(|ratio| ratio >= KEPT_UP_RATIO_MIN)
    }
}

/// Names one top-level entry of a data directory: Prometheus-style block directories (26-char
/// ULIDs) are `blocks`, `chunks_head` is `head chunks`, VictoriaMetrics' `data` and `indexdb`
/// are `data parts` and `index`; anything else keeps its name.
pub fn disk_part_name(entry_name: &str) -> String {
    let is_ulid =
        entry_name.len() == 26 && entry_name.bytes().all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase());
    match entry_name {
        _ if is_ulid => "blocks".to_string(),
        "wal" => "wal".to_string(),
        "chunks_head" => "head chunks".to_string(),
        "data" => "data parts".to_string(),
        "indexdb" => "index".to_string(),
        other => other.to_string(),
    }
}

/// Merges entries that map to the same part, largest first (ties by name).
pub fn group_disk_parts(entries: &[(String, u64)]) -> Vec<DiskPart> {
    let mut parts: Vec<DiskPart> = Vec::new();
    for (name, size) in entries {
        let part = disk_part_name(name);
        match parts.iter_mut().find(|existing| existing.part == part) {
            Some(existing) => existing.size += size,
            None => parts.push(DiskPart { part, size: *size }),
        }
    }
    parts.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.part.cmp(&b.part)));
    parts
}

fn decimal(value: Option<f64>, places: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.places$}"),
        _ => "n/a".to_string(),
    }
}

fn mebibytes(size: u64) -> String {
    format!("{:.1} MiB", size as f64 / (1024.0 * 1024.0))
}

/// The rule section: each system's last evaluation of all groups, and the engine's ratio.
fn render_rules(out: &mut String, load: &RuleLoad, measured: &[(&Measurement, Figures)]) {
    let _ = writeln!(
        out,
        "\n## Rule evaluation: {} alerting rules in groups of {}, every {} ms\n",
        load.rule_count, load.group_size, load.interval_ms
    );
    out.push_str("| system | groups | rules | last evaluation, all groups s | slowest group s | iterations | missed | failures | kept up |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (measurement, _) in measured {
        let Some(rules) = &measurement.rules else {
            let _ =
                writeln!(out, "| {} | n/a (evaluates rules in a separate program) | | | | | | | |", measurement.system);
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.0} | {:.0} | {} |",
            measurement.system,
            rules.group_count,
            rules.rule_count,
            rules.last_duration_sum_s,
            rules.last_duration_max_s,
            rules.iterations_count,
            rules.iterations_missed_count,
            rules.evaluation_failures_count,
            if rules.kept_up(load.interval_ms) { "yes" } else { "**no**" },
        );
    }
    let engine =
        measured.iter().find_map(|(measurement, _)| (measurement.system == "engine").then_some(measurement.rules?));
    if let Some(engine) = engine {
        for (measurement, _) in measured.iter().filter(|(measurement, _)| measurement.system != "engine") {
            if let Some(peer) = &measurement.rules {
                let _ = writeln!(
                    out,
                    "\nEngine / {}: evaluation time of all groups {} (above 1: the engine is slower).",
                    measurement.system,
                    decimal(ratio(engine.last_duration_sum_s, peer.last_duration_sum_s), 2)
                );
            }
        }
    }
}

/// The report in Markdown.
pub fn render(parameters: &RunParameters, outcomes: &[Outcome]) -> String {
    let expected_per_s =
        (parameters.target_count * parameters.series_count) as f64 / (parameters.interval_ms as f64 / 1000.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Ingest comparison: {} targets x {} series every {} ms, {} data\n",
        parameters.target_count, parameters.series_count, parameters.interval_ms, parameters.data_kind
    );
    let _ = writeln!(out, "- command: `{}`", parameters.command_line);
    let _ = writeln!(out, "- started: {}", parameters.started_at);
    let _ = writeln!(out, "- machine: {}", parameters.machine);
    let _ = writeln!(
        out,
        "- warm-up {} s, measure {} s, seed {}; systems ran one after another against the same generator\n",
        parameters.warmup_ms / 1000,
        parameters.measure_ms / 1000,
        parameters.seed
    );
    out.push_str("## Results\n\n");
    out.push_str("| system | ingested samples/s | expected samples/s | ingested / expected | kept up | CPU s per 1 M samples | RSS | active series | RSS bytes per series | disk | disk bytes per sample |\n");
    out.push_str("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
    let mut measured: Vec<(&Measurement, Figures)> = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Measured(measurement) => {
                let figures = Figures::new(measurement, expected_per_s);
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
                    measurement.system,
                    figures.ingested_per_s,
                    figures.expected_per_s,
                    decimal(figures.ingested_ratio.map(|ratio| ratio * 100.0), 1) + " %",
                    if figures.kept_up() { "yes" } else { "**no**" },
                    decimal(figures.cpu_s_per_million_samples, 2),
                    mebibytes(measurement.rss_size),
                    measurement.active_series_count,
                    decimal(figures.rss_bytes_per_series, 0),
                    mebibytes(figures.disk_size),
                    decimal(figures.disk_bytes_per_sample, 2),
                );
                measured.push((measurement, figures));
            }
            Outcome::Failed { system, error } => {
                let _ = writeln!(
                    out,
                    "| {system} | failed: {} | | | | | | | | | |",
                    error.replace('|', "/").replace('\n', " ")
                );
            }
        }
    }
    if let Some((_, engine)) = measured.iter().find(|(measurement, _)| measurement.system == "engine") {
        let peers: Vec<&(&Measurement, Figures)> =
            measured.iter().filter(|(measurement, _)| measurement.system != "engine").collect();
        if !peers.is_empty() {
            out.push_str("\n## Engine / peer (above 1: the engine costs more)\n\n");
            out.push_str("| peer | CPU per sample | RSS per series | disk per sample |\n|---|---:|---:|---:|\n");
            for (measurement, peer) in peers {
                let quotient = |mine: Option<f64>, theirs: Option<f64>| {
                    decimal(mine.zip(theirs).and_then(|(mine, theirs)| ratio(mine, theirs)), 2)
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    measurement.system,
                    quotient(engine.cpu_s_per_million_samples, peer.cpu_s_per_million_samples),
                    quotient(engine.rss_bytes_per_series, peer.rss_bytes_per_series),
                    quotient(engine.disk_bytes_per_sample, peer.disk_bytes_per_sample),
                );
            }
        }
    }
    if let Some(load) = &parameters.rules {
        render_rules(&mut out, load, &measured);
    }
    if !measured.is_empty() {
        out.push_str("\n## Disk at the end, by part\n\n| system | part | size | share |\n|---|---|---:|---:|\n");
        for (measurement, figures) in &measured {
            for part in &measurement.disk_parts {
                let share = ratio(part.size as f64 * 100.0, figures.disk_size as f64);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} % |",
                    measurement.system,
                    part.part,
                    mebibytes(part.size),
                    decimal(share, 1)
                );
            }
        }
        out.push_str("\n## Raw inputs\n\n");
        out.push_str("| system | version | samples counter | series gauge | window s | samples in window | samples since start | scrapes served / expected | system CPU s | generator CPU s | load 1 min start / end |\n");
        out.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for (measurement, _) in &measured {
            let scrapes_expected =
                parameters.target_count as f64 * measurement.window_ms as f64 / parameters.interval_ms as f64;
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | `{}` | {:.1} | {:.0} | {:.0} | {} / {:.0} | {:.2} | {:.2} | {} / {} |",
                measurement.system,
                measurement.version,
                measurement.samples_metric,
                measurement.series_metric,
                measurement.window_ms as f64 / 1000.0,
                measurement.samples_appended_window_count,
                measurement.samples_appended_total_count,
                measurement.scrapes_served_window_count,
                scrapes_expected,
                measurement.cpu_ms as f64 / 1000.0,
                measurement.generator_cpu_ms as f64 / 1000.0,
                measurement.load_average.0,
                measurement.load_average.1,
            );
        }
    }
    out.push_str(CAVEATS);
    out
}

const CAVEATS: &str = "
## Reading the figures

- Samples ingested are each system's own counter, so they include the series the scraper adds
  per target and scrape (`up`, `scrape_duration_seconds`, ...: 5 in Prometheus): a system that
  keeps up reads slightly above 100 %.
- CPU is utime + stime of the system's process over the window, as `/proc/<pid>/stat` reports
  it; the generator's own CPU is listed apart. The machine is shared: compare rows of one run,
  not runs.
- RSS is `VmRSS` at the end: it counts the Go heap's slack (Prometheus, VictoriaMetrics) and
  caches, not only the series.
- Disk is the apparent size of every file under the data directory at the end. After a few
  minutes no block is cut yet, so it is dominated by the WAL (Prometheus compresses WAL records
  with snappy) and head chunks; VictoriaMetrics has no WAL and writes compressed parts. Per
  sample, it divides by every sample appended since start, warm-up included.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(system: &str, cpu_ms: u64, rss_size: u64, disk_size: u64) -> Measurement {
        Measurement {
            system: system.to_string(),
            version: "v1".to_string(),
            samples_metric: "samples_total".to_string(),
            series_metric: "series".to_string(),
            window_ms: 100_000,
            samples_appended_window_count: 10_000_000.0,
            samples_appended_total_count: 20_000_000.0,
            scrapes_served_window_count: 10_000,
            cpu_ms,
            generator_cpu_ms: 500,
            active_series_count: 100_000.0,
            rss_size,
            disk_parts: vec![DiskPart { part: "wal".to_string(), size: disk_size }],
            load_average: ("1.00".to_string(), "2.00".to_string()),
            rules: None,
        }
    }

    #[track_caller]
    fn check_part(entry_name: &str, expected: &str) {
        assert_eq!(disk_part_name(entry_name), expected);
    }

    #[test]
    fn disk_parts_are_named_and_grouped() {
        check_part("01HZX3Q4K8Y2J5N7P9R1S3T5V7", "blocks");
        check_part("01hzx3q4k8y2j5n7p9r1s3t5v7", "01hzx3q4k8y2j5n7p9r1s3t5v7");
        check_part("wal", "wal");
        check_part("chunks_head", "head chunks");
        check_part("indexdb", "index");
        check_part("lock", "lock");
        let entries = [
            ("wal".to_string(), 10),
            ("01HZX3Q4K8Y2J5N7P9R1S3T5V7".to_string(), 7),
            ("01HZX3Q4K8Y2J5N7P9R1S3T5V8".to_string(), 7),
            ("lock".to_string(), 0),
        ];
        assert_eq!(
            group_disk_parts(&entries),
            vec![
                DiskPart { part: "blocks".to_string(), size: 14 },
                DiskPart { part: "wal".to_string(), size: 10 },
                DiskPart { part: "lock".to_string(), size: 0 },
            ]
        );
    }

    #[test]
    fn figures_divide_the_raw_counts() {
        let figures = Figures::new(&measurement("engine", 20_000, 500_000_000, 40_000_000), 100_000.0);
        assert_eq!(figures.ingested_per_s, 100_000.0);
        assert_eq!(figures.ingested_ratio, Some(1.0));
        assert!(figures.kept_up());
        assert_eq!(figures.cpu_s_per_million_samples, Some(2.0));
        assert_eq!(figures.rss_bytes_per_series, Some(5000.0));
        assert_eq!(figures.disk_bytes_per_sample, Some(2.0));
        let mut idle = measurement("engine", 0, 0, 0);
        idle.samples_appended_window_count = 0.0;
        idle.active_series_count = 0.0;
        let figures = Figures::new(&idle, 100_000.0);
        assert_eq!(figures.cpu_s_per_million_samples, None);
        assert_eq!(figures.rss_bytes_per_series, None);
        assert!(!figures.kept_up());
    }

    #[test]
    fn report_has_rows_ratios_and_failures() {
        let parameters = RunParameters {
            target_count: 100,
            series_count: 1000,
            interval_ms: 1000,
            warmup_ms: 30_000,
            measure_ms: 100_000,
            data_kind: "random",
            seed: 1,
            command_line: "compare ingest".to_string(),
            started_at: "2026-01-01T00:00:00Z".to_string(),
            machine: "2 CPUs".to_string(),
            rules: None,
        };
        let outcomes = [
            Outcome::Measured(Box::new(measurement("engine", 20_000, 500_000_000, 40_000_000))),
            Outcome::Measured(Box::new(measurement("prometheus", 10_000, 100_000_000, 20_000_000))),
            Outcome::Failed { system: "victoria-metrics".to_string(), error: "did not start | gone".to_string() },
        ];
        let report = render(&parameters, &outcomes);
        assert!(
            report.contains(
                "| engine | 100000 | 100000 | 100.0 % | yes | 2.00 | 476.8 MiB | 100000 | 5000 | 38.1 MiB | 2.00 |"
            ),
            "{report}"
        );
        assert!(report.contains("| prometheus | 2.00 | 5.00 | 2.00 |"), "{report}");
        assert!(report.contains("| victoria-metrics | failed: did not start / gone |"), "{report}");
        assert_eq!(report, render(&parameters, &outcomes), "pure function of its inputs");
    }
}
