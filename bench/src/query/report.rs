//! The query comparison's figures and Markdown report: how each system was loaded and whether it
//! holds every series, then per query and system the p50 and p99 latency (client side) and CPU
//! time per query, the engine's ratios to each peer, whether the engine's answers equal
//! Prometheus', and the target for the hour of a tenth of the series.
//!
//! Invariants: every figure is derived here from raw observations (latencies in microseconds,
//! CPU milliseconds over all measured runs); a ratio with a zero or missing side renders as
//! `n/a`; rows keep the order of the query set and of the systems as they ran, so the report is
//! a pure function of its inputs. Stateless.

use std::fmt::Write as _;

use super::queries::{Query, Shape};
use super::result::{Agreement, RELATIVE_DIFFERENCE_ROUNDING_MAX};

/// What the run was asked to do, for the report's header.
#[derive(Debug, Clone)]
pub struct RunParameters {
    /// Series in the dataset.
    pub series_count: usize,
    /// Samples in the dataset.
    pub sample_count: usize,
    /// First and last sample time, Unix ms.
    pub start_ms: i64,
    /// Last sample time, Unix ms.
    pub end_ms: i64,
    /// When every query is evaluated (the end of range queries), Unix ms.
    pub evaluation_ms: i64,
    /// Seed of the values.
    pub seed: u64,
    /// Measured runs per query.
    pub run_count: usize,
    /// Unmeasured runs before them.
    pub warmup_count: usize,
    /// Size of the OpenMetrics file.
    pub openmetrics_size: u64,
    /// The command line that reproduces the run.
    pub command_line: String,
    /// UTC start time, ISO 8601.
    pub started_at: String,
    /// CPUs, kernel and memory of the machine.
    pub machine: String,
}

/// One step of loading a system and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadStep {
    /// What was done (`promtool tsdb create-blocks-from openmetrics`, `start`, ...).
    pub step: String,
    /// Wall time.
    pub duration_ms: u64,
}

/// Raw observations of one query on one system.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryMeasurement {
    /// Client-side latency of every measured run, request sent to last body byte.
    pub latencies_us: Vec<u64>,
    /// The system's CPU time over all measured runs (`/proc/<pid>/stat`).
    pub cpu_ms: u64,
    /// Response body size of the first measured run.
    pub response_size: usize,
    /// Series in the answer.
    pub series_returned_count: usize,
    /// Points in the answer.
    pub point_count: usize,
    /// The answer against Prometheus' (engine only, when Prometheus ran).
    pub agreement: Option<Agreement>,
}

/// What happened to one query on one system.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutcome {
    /// Every run answered.
    Measured(QueryMeasurement),
    /// A run failed or timed out; the remaining runs were skipped.
    Failed {
        /// Why.
        error: String,
    },
}

/// One system's run: loading, then every query of the set in order.
#[derive(Debug, Clone)]
pub struct SystemRun {
    /// `engine`, `prometheus` or `victoria-metrics`.
    pub system: String,
    /// Its version line.
    pub version: String,
    /// Load steps in order.
    pub load_steps: Vec<LoadStep>,
    /// The answer to `count({__name__=~".+"})` before measuring.
    pub series_seen_count: Option<f64>,
    /// Data directory size after loading.
    pub disk_size: u64,
    /// Resident memory after loading, before the first query.
    pub rss_loaded_size: u64,
    /// Resident memory after the queries.
    pub rss_size: u64,
    /// `/proc/loadavg` (1-minute) before and after the queries.
    pub load_average: (String, String),
    /// One outcome per query of the set, in its order.
    pub queries: Vec<QueryOutcome>,
}

/// What happened to one system.
#[derive(Debug, Clone)]
pub enum SystemOutcome {
    /// It was loaded and queried.
    Ran(Box<SystemRun>),
    /// It could not be loaded or started.
    Failed {
        /// The system.
        system: String,
        /// Why.
        error: String,
    },
}

/// Figures derived from one [`QueryMeasurement`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryFigures {
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency (nearest rank: the slowest run when there are fewer than 100).
    pub p99_ms: f64,
    /// CPU time per query.
    pub cpu_ms_per_query: f64,
}

/// The nearest-rank `percentile` (0..=100) of `values`; `None` when empty.
pub fn percentile(values: &[u64], percentile: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl QueryFigures {
    /// Derives the figures; `None` without runs.
    pub fn new(measurement: &QueryMeasurement) -> Option<QueryFigures> {
        let run_count = measurement.latencies_us.len();
        Some(QueryFigures {
            p50_ms: percentile(&measurement.latencies_us, 50.0)? as f64 / 1000.0,
            p99_ms: percentile(&measurement.latencies_us, 99.0)? as f64 / 1000.0,
            cpu_ms_per_query: measurement.cpu_ms as f64 / run_count as f64,
        })
    }
}

/// Unix milliseconds as ISO 8601 UTC to the second (`2026-01-01T00:00:00Z`).
pub fn iso_utc(time_ms: i64) -> String {
    let seconds = time_ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = engine::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

fn decimal(value: Option<f64>, places: usize) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{value:.places$}"),
        _ => "n/a".to_string(),
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0 && numerator.is_finite()).then(|| numerator / denominator)
}

fn mebibytes(size: u64) -> String {
    format!("{:.1} MiB", size as f64 / (1024.0 * 1024.0))
}

fn size_text(size: usize) -> String {
    if size >= 1024 * 1024 {
        mebibytes(size as u64)
    } else {
        format!("{:.1} KiB", size as f64 / 1024.0)
    }
}

fn milliseconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn agreement_text(agreement: &Agreement) -> String {
    if agreement.agrees() {
        return if agreement.relative_difference_max == 0.0 {
            "yes, identical".to_string()
        } else {
            format!("yes (to {RELATIVE_DIFFERENCE_ROUNDING_MAX:e})")
        };
    }
    let mut parts = Vec::new();
    if agreement.series_missing_count > 0 {
        parts.push(format!("{} series missing", agreement.series_missing_count));
    }
    if agreement.series_extra_count > 0 {
        parts.push(format!("{} series extra", agreement.series_extra_count));
    }
    if agreement.series_timestamps_differ_count > 0 {
        parts.push(format!("{} series with other timestamps", agreement.series_timestamps_differ_count));
    }
    if agreement.relative_difference_max > RELATIVE_DIFFERENCE_ROUNDING_MAX {
        parts.push(format!("values differ by up to {:.2e} (relative)", agreement.relative_difference_max));
    }
    format!("**no**: {}", parts.join(", "))
}

fn shape_text(shape: Shape) -> &'static str {
    match shape {
        Shape::Instant => "instant",
        Shape::Range => "range 1 h / 15 s",
    }
}

fn one_line(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

/// The report in Markdown.
pub fn render(parameters: &RunParameters, queries: &[Query], outcomes: &[SystemOutcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Query comparison: {} series, 2 h at 15 s resolution\n", parameters.series_count);
    let _ = writeln!(out, "- command: `{}`", parameters.command_line);
    let _ = writeln!(out, "- started: {}", parameters.started_at);
    let _ = writeln!(out, "- machine: {}", parameters.machine);
    let _ = writeln!(
        out,
        "- data: {} series, {} samples from {} to {} (seed {}), OpenMetrics file of {}",
        parameters.series_count,
        parameters.sample_count,
        iso_utc(parameters.start_ms),
        iso_utc(parameters.end_ms),
        parameters.seed,
        mebibytes(parameters.openmetrics_size)
    );
    let _ = writeln!(
        out,
        "- every query is evaluated at {} ({} ms after the last sample, so no sample sits on a window boundary)",
        iso_utc(parameters.evaluation_ms),
        parameters.evaluation_ms - parameters.end_ms
    );
    let _ = writeln!(
        out,
        "- each query {} times in a row after {} warm-up runs; systems one after another, never two at once\n",
        parameters.run_count, parameters.warmup_count
    );
    render_summary(&mut out, parameters, queries, outcomes);
    out.push_str("\n## Loading\n\n");
    out.push_str("| system | version | load steps | `count({__name__=~\".+\"})` | holds every series | disk after loading | RSS after loading | RSS after the queries |\n");
    out.push_str("|---|---|---|---:|---|---:|---:|---:|\n");
    let runs: Vec<&SystemRun> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            SystemOutcome::Ran(run) => Some(run.as_ref()),
            SystemOutcome::Failed { .. } => None,
        })
        .collect();
    for outcome in outcomes {
        match outcome {
            SystemOutcome::Ran(run) => {
                let steps: Vec<String> = run
                    .load_steps
                    .iter()
                    .map(|step| format!("{} {:.1} s", step.step, step.duration_ms as f64 / 1000.0))
                    .collect();
                let holds = run.series_seen_count == Some(parameters.series_count as f64);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    run.system,
                    one_line(&run.version),
                    steps.join("; "),
                    decimal(run.series_seen_count, 0),
                    if holds { "yes" } else { "**no**" },
                    mebibytes(run.disk_size),
                    mebibytes(run.rss_loaded_size),
                    mebibytes(run.rss_size),
                );
            }
            SystemOutcome::Failed { system, error } => {
                let _ = writeln!(out, "| {system} | failed: {} | | | | | | |", one_line(error));
            }
        }
    }
    out.push_str("\n## Latency and CPU per query\n\n");
    out.push_str("| query | shape | series selected | system | p50 ms | p99 ms | CPU ms per query | series returned | points | response | same answer as Prometheus |\n");
    out.push_str("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
    for (query_index, query) in queries.iter().enumerate() {
        for run in &runs {
            let cells = match run.queries.get(query_index) {
                Some(QueryOutcome::Measured(measurement)) => match QueryFigures::new(measurement) {
                    Some(figures) => format!(
                        "{} | {} | {} | {} | {} | {} | {}",
                        milliseconds(figures.p50_ms),
                        milliseconds(figures.p99_ms),
                        milliseconds(figures.cpu_ms_per_query),
                        measurement.series_returned_count,
                        measurement.point_count,
                        size_text(measurement.response_size),
                        measurement.agreement.as_ref().map(agreement_text).unwrap_or_default(),
                    ),
                    None => "no runs | | | | | |".to_string(),
                },
                Some(QueryOutcome::Failed { error }) => format!("**failed**: {} | | | | | |", one_line(error)),
                None => "not run | | | | | |".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {cells} |",
                query.name,
                shape_text(query.shape),
                query.series_selected_count,
                run.system
            );
        }
    }
    render_ratios(&mut out, queries, &runs);
    render_targets(&mut out, queries, &runs);
    out.push_str("\n## Queries\n\n| query | expression |\n|---|---|\n");
    for query in queries {
        let _ = writeln!(out, "| {} | `{}` |", query.name, query.expr.replace('|', "\\|"));
    }
    if !runs.is_empty() {
        out.push_str(
            "\n## Load average (1 min) before / after the queries\n\n| system | before | after |\n|---|---:|---:|\n",
        );
        for run in &runs {
            let _ = writeln!(out, "| {} | {} | {} |", run.system, run.load_average.0, run.load_average.1);
        }
    }
    out.push_str(CAVEATS);
    out
}

/// The findings in words: failures, answers that differ, where the engine is slower than a
/// peer, missed targets, memory, and whether the machine was busy.
fn render_summary(out: &mut String, parameters: &RunParameters, queries: &[Query], outcomes: &[SystemOutcome]) {
    let mut lines: Vec<String> = Vec::new();
    for outcome in outcomes {
        if let SystemOutcome::Failed { system, error } = outcome {
            lines.push(format!("{system} could not be measured: {}.", one_line(error)));
        }
    }
    let runs: Vec<&SystemRun> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            SystemOutcome::Ran(run) => Some(run.as_ref()),
            SystemOutcome::Failed { .. } => None,
        })
        .collect();
    for run in &runs {
        if run.series_seen_count != Some(parameters.series_count as f64) {
            lines.push(format!(
                "{} counted {} series, not {}.",
                run.system,
                decimal(run.series_seen_count, 0),
                parameters.series_count
            ));
        }
        let failed: Vec<&str> = queries
            .iter()
            .zip(&run.queries)
            .filter(|(_, outcome)| matches!(outcome, QueryOutcome::Failed { .. }))
            .map(|(query, _)| query.name)
            .collect();
        if !failed.is_empty() {
            lines.push(format!("{} failed: {}.", run.system, failed.join(", ")));
        }
    }
    if let Some(engine) = runs.iter().find(|run| run.system == "engine") {
        let mut compared_count = 0;
        let mut differing = Vec::new();
        for (query, outcome) in queries.iter().zip(&engine.queries) {
            if let QueryOutcome::Measured(QueryMeasurement { agreement: Some(agreement), .. }) = outcome {
                compared_count += 1;
                if !agreement.agrees() {
                    differing.push(query.name);
                }
            }
        }
        if compared_count > 0 {
            lines.push(if differing.is_empty() {
                format!("The engine's answers equal Prometheus' on all {compared_count} queries compared.")
            } else {
                format!("The engine's answers differ from Prometheus' on: {}.", differing.join(", "))
            });
        }
        for peer in runs.iter().filter(|run| run.system != "engine") {
            let slower: Vec<String> = queries
                .iter()
                .enumerate()
                .filter_map(|(index, query)| {
                    let (mine, theirs) = (figures_of(engine, index)?, figures_of(peer, index)?);
                    let quotient = ratio(mine.p50_ms, theirs.p50_ms)?;
                    (quotient > 1.0).then(|| format!("{} ({quotient:.2}x)", query.name))
                })
                .collect();
            lines.push(if slower.is_empty() {
                format!("At p50 the engine is at least as fast as {} on every query.", peer.system)
            } else {
                format!("At p50 the engine is slower than {} on: {}.", peer.system, slower.join(", "))
            });
        }
        for (index, query) in queries.iter().enumerate() {
            let Some(target_ms) = query.target_ms else { continue };
            lines.push(match figures_of(engine, index) {
                Some(figures) if figures.p99_ms <= target_ms => {
                    format!(
                        "Target met: {} in p99 {} ms (target {target_ms:.0} ms).",
                        query.name,
                        milliseconds(figures.p99_ms)
                    )
                }
                Some(figures) => format!(
                    "**Target missed**: {} takes p50 {} ms, p99 {} ms against {target_ms:.0} ms.",
                    query.name,
                    milliseconds(figures.p50_ms),
                    milliseconds(figures.p99_ms)
                ),
                None => format!("**Target missed**: {} failed.", query.name),
            });
        }
        let peers_rss: Vec<String> = runs
            .iter()
            .filter(|run| run.system != "engine")
            .map(|run| format!("{} {}", run.system, mebibytes(run.rss_size)))
            .collect();
        if !peers_rss.is_empty() {
            lines.push(format!(
                "Resident memory after the queries: engine {} ({} after loading), {}.",
                mebibytes(engine.rss_size),
                mebibytes(engine.rss_loaded_size),
                peers_rss.join(", ")
            ));
        }
    }
    let cpu_count = parameters.machine.split_whitespace().next().and_then(|text| text.parse::<f64>().ok());
    let busiest = runs
        .iter()
        .flat_map(|run| [&run.load_average.0, &run.load_average.1])
        .filter_map(|text| text.parse::<f64>().ok())
        .fold(0.0, f64::max);
    if cpu_count.is_some_and(|cpu_count| busiest > cpu_count) {
        lines.push(format!(
            "The machine was busy (1-minute load average up to {busiest:.2} on {} CPUs, other jobs included): \
             latencies include waiting for a core; CPU per query is the steadier figure.",
            cpu_count.unwrap_or(0.0)
        ));
    }
    if lines.is_empty() {
        return;
    }
    out.push_str("## Summary\n\n");
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
}

fn figures_of(run: &SystemRun, query_index: usize) -> Option<QueryFigures> {
    match run.queries.get(query_index)? {
        QueryOutcome::Measured(measurement) => QueryFigures::new(measurement),
        QueryOutcome::Failed { .. } => None,
    }
}

fn render_ratios(out: &mut String, queries: &[Query], runs: &[&SystemRun]) {
    let Some(engine) = runs.iter().find(|run| run.system == "engine") else { return };
    let peers: Vec<&&SystemRun> = runs.iter().filter(|run| run.system != "engine").collect();
    if peers.is_empty() {
        return;
    }
    out.push_str("\n## Engine / peer (above 1: the engine is slower or costs more)\n\n| query |");
    let mut rule = String::from("|---|");
    for peer in &peers {
        let _ = write!(out, " / {0} p50 | / {0} p99 | / {0} CPU |", peer.system);
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(out, "\n{rule}");
    for (query_index, query) in queries.iter().enumerate() {
        let _ = write!(out, "| {} |", query.name);
        let mine = figures_of(engine, query_index);
        for peer in &peers {
            let theirs = figures_of(peer, query_index);
            let quotient = |pick: fn(&QueryFigures) -> f64| {
                decimal(mine.as_ref().zip(theirs.as_ref()).and_then(|(a, b)| ratio(pick(a), pick(b))), 2)
            };
            let _ = write!(
                out,
                " {} | {} | {} |",
                quotient(|figures| figures.p50_ms),
                quotient(|figures| figures.p99_ms),
                quotient(|figures| figures.cpu_ms_per_query)
            );
        }
        out.push('\n');
    }
}

fn render_targets(out: &mut String, queries: &[Query], runs: &[&SystemRun]) {
    let targets: Vec<(usize, &Query, f64)> = queries
        .iter()
        .enumerate()
        .filter_map(|(index, query)| query.target_ms.map(|target_ms| (index, query, target_ms)))
        .collect();
    if targets.is_empty() || runs.is_empty() {
        return;
    }
    out.push_str("\n## Targets\n\n| query | target | system | p50 ms | p99 ms | met (p99 within target) |\n|---|---:|---|---:|---:|---|\n");
    for (query_index, query, target_ms) in targets {
        for run in runs {
            let (p50, p99, met) = match figures_of(run, query_index) {
                Some(figures) => (
                    milliseconds(figures.p50_ms),
                    milliseconds(figures.p99_ms),
                    if figures.p99_ms <= target_ms { "yes" } else { "**no**" },
                ),
                None => ("n/a".to_string(), "n/a".to_string(), "**no** (failed)"),
            };
            let _ = writeln!(out, "| {} | {target_ms:.0} ms | {} | {p50} | {p99} | {met} |", query.name, run.system);
        }
    }
}

const CAVEATS: &str = "
## Reading the figures

- Latency is measured by the client: from sending the request on a new loopback connection to
  the last byte of the body, so it includes JSON encoding and transfer. The p99 of fewer than
  100 runs is the slowest run (nearest rank).
- CPU is utime + stime of the system's process over all measured runs of a query, as
  `/proc/<pid>/stat` reports it in clock ticks (10 ms), divided by the runs; it includes any
  background work the system did meanwhile (each system was left to settle before the first
  query). The machine is shared: compare rows of one run, not runs.
- Prometheus and the engine read blocks written by their own `tsdb create-blocks-from
  openmetrics` from the same file; VictoriaMetrics imported the same samples through
  `/api/v1/import/prometheus` and was flushed (`/internal/force_flush`). VictoriaMetrics ran
  with `-search.disableCache`, so repeated runs measure evaluation rather than its rollup
  result cache.
- \"Same answer as Prometheus\" compares the engine's answer, series by series and point by
  point, with Prometheus' (values equal to a relative 1e-9). Queries are evaluated off the
  sample grid because the windows differ by design: Prometheus 2.42's are closed
  (`[t - 5m, t]`), the engine's left-open as in Prometheus 3 (`(t - 5m, t]`); on the grid a
  `rate` sees one sample more in Prometheus, and the answers differ by about 1 %.
  VictoriaMetrics is not compared: MetricsQL's `rate` does not extrapolate and its
  `histogram_quantile` interpolates differently, so its values differ by design; its series
  counts are listed.
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::dataset::Dataset;
    use crate::query::queries::query_set;

    #[track_caller]
    fn check_percentile(values: &[u64], p: f64, expected: Option<u64>) {
        assert_eq!(percentile(values, p), expected);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        check_percentile(&[], 50.0, None);
        check_percentile(&[7], 99.0, Some(7));
        check_percentile(&[5, 1, 4, 2, 3], 50.0, Some(3));
        check_percentile(&[5, 1, 4, 2, 3], 99.0, Some(5));
        check_percentile(&[1, 2, 3, 4], 50.0, Some(2));
        let hundred: Vec<u64> = (1..=100).collect();
        check_percentile(&hundred, 99.0, Some(99));
        check_percentile(&hundred, 0.0, Some(1));
    }

    #[track_caller]
    fn check_time(time_ms: i64, expected: &str) {
        assert_eq!(iso_utc(time_ms), expected);
    }

    #[test]
    fn times_render_in_utc() {
        check_time(0, "1970-01-01T00:00:00Z");
        check_time(1_700_000_000_000, "2023-11-14T22:13:20Z");
        check_time(951_782_400_000, "2000-02-29T00:00:00Z");
        check_time(-1000, "1969-12-31T23:59:59Z");
    }

    fn measured(latency_ms: u64, cpu_ms: u64, agreement: Option<Agreement>) -> QueryOutcome {
        QueryOutcome::Measured(QueryMeasurement {
            latencies_us: vec![latency_ms * 1000, latency_ms * 2000],
            cpu_ms,
            response_size: 2048,
            series_returned_count: 10,
            point_count: 10,
            agreement,
        })
    }

    fn run(system: &str, queries: Vec<QueryOutcome>) -> SystemOutcome {
        SystemOutcome::Ran(Box::new(SystemRun {
            system: system.to_string(),
            version: "v1 | x".to_string(),
            load_steps: vec![LoadStep { step: "start".to_string(), duration_ms: 1500 }],
            series_seen_count: Some(200.0),
            disk_size: 1024 * 1024,
            rss_loaded_size: 1024 * 1024,
            rss_size: 2 * 1024 * 1024,
            load_average: ("1.00".to_string(), "1.50".to_string()),
            queries,
        }))
    }

    #[test]
    fn report_has_rows_ratios_targets_and_failures() {
        let dataset = Dataset::new(1, 200, 1_700_000_000_000).expect("valid");
        let queries = query_set(&dataset);
        let identical = Agreement {
            series_missing_count: 0,
            series_extra_count: 0,
            series_timestamps_differ_count: 0,
            relative_difference_max: 0.0,
        };
        let mut engine: Vec<QueryOutcome> = (0..queries.len()).map(|_| measured(40, 40, Some(identical))).collect();
        engine[1] = QueryOutcome::Failed { error: "timeout | after 60 s".to_string() };
        engine[2] =
            measured(40, 40, Some(Agreement { series_missing_count: 2, relative_difference_max: 0.5, ..identical }));
        let prometheus: Vec<QueryOutcome> = (0..queries.len()).map(|_| measured(20, 10, None)).collect();
        let outcomes = [
            run("engine", engine),
            run("prometheus", prometheus),
            SystemOutcome::Failed { system: "victoria-metrics".to_string(), error: "did not start".to_string() },
        ];
        let parameters = RunParameters {
            series_count: 200,
            sample_count: 96_000,
            start_ms: dataset.start_ms(),
            end_ms: dataset.end_ms(),
            evaluation_ms: dataset.end_ms() + 7500,
            seed: 1,
            run_count: 2,
            warmup_count: 2,
            openmetrics_size: 8 * 1024 * 1024,
            command_line: "compare query".to_string(),
            started_at: "2026-01-01T00:00:00Z".to_string(),
            machine: "2 CPUs".to_string(),
        };
        let report = render(&parameters, &queries, &outcomes);
        assert!(
            report.contains("| engine | v1 / x | start 1.5 s | 200 | yes | 1.0 MiB | 1.0 MiB | 2.0 MiB |"),
            "{report}"
        );
        assert!(report.contains("| victoria-metrics | failed: did not start | | | | | | |"), "{report}");
        assert!(
            report.contains(
                "| selector | instant | 4 | engine | 40.0 | 80.0 | 20.0 | 10 | 10 | 2.0 KiB | yes, identical |"
            ),
            "{report}"
        );
        assert!(
            report.contains("| sum by job of rate | instant | 40 | engine | **failed**: timeout / after 60 s |"),
            "{report}"
        );
        assert!(report.contains("**no**: 2 series missing, values differ by up to 5.00e-1 (relative)"), "{report}");
        assert!(report.contains("| selector | 2.00 | 2.00 | 4.00 |"), "{report}");
        assert!(report.contains("| sum by job of rate | n/a | n/a | n/a |"), "{report}");
        assert!(report.contains("| range: a tenth of the series | 100 ms | engine | 40.0 | 80.0 | yes |"), "{report}");
        assert!(report.contains("`sum by (code) (rate(http_requests_total{job=~\"job[0-4]\"}[5m]))`"), "{report}");
        assert!(report.contains("- victoria-metrics could not be measured: did not start."), "{report}");
        assert!(report.contains("- engine failed: sum by job of rate."), "{report}");
        assert!(report.contains("- The engine's answers differ from Prometheus' on: histogram_quantile."), "{report}");
        assert!(
            report.contains(
                "- At p50 the engine is slower than prometheus on: selector (2.00x), histogram_quantile (2.00x)"
            ),
            "{report}"
        );
        assert!(
            report.contains("- Target met: range: a tenth of the series in p99 80.0 ms (target 100 ms)."),
            "{report}"
        );
        assert!(
            report.contains(
                "- Resident memory after the queries: engine 2.0 MiB (1.0 MiB after loading), prometheus 2.0 MiB."
            ),
            "{report}"
        );
        assert!(!report.contains("machine was busy"), "{report}");
        assert_eq!(report, render(&parameters, &queries, &outcomes), "pure function of its inputs");
    }
}
