//! The PromQL compliance tester's query list (prometheus/compliance, in
//! ../shared/conformance/compliance/promql) run differentially: every expanded query goes to
//! Debian's Prometheus 2.42 and to the engine as the same `/api/v1/query_range`, and the answers
//! are compared as the upstream comparer does (same result type, same series label sets, same
//! timestamps, values equal within a relative 1e-5 with NaN equal to NaN; both failing counts as a
//! match, whatever the messages say).
//!
//! The data is a deterministic stand-in for the PromLabs demo service that
//! `prometheus-test-data.yml` scrapes (three instances `demo.promlabs.com:1000{0,1,2}`, job
//! `demo`): the same metric families, labels and value shapes (memory random walks, CPU
//! counters, a disk that fills up, a batch job every minute, a metric present only in even
//! minutes, a classic request-duration histogram with outages), two hours at a 10 s scrape
//! interval, written once as an OpenMetrics file and backfilled by promtool for Prometheus and
//! by `enginectl` for the engine. Instance :10000 is scraped exactly on the 10 s grid the queries
//! step on, so its samples sit on range-window edges; the other two are offset by whole
//! milliseconds plus a small jitter, as real scrapes are. The data has no staleness markers
//! (OpenMetrics cannot carry them), so `demo_intermittent_metric` is bridged by the lookback.
//!
//! Prometheus 3.x semantics (which the engine follows) differ from 2.42's by design; every
//! mismatch is classified: a query whose range selectors and subquery ranges widened by 1 ms
//! (3.x's left-open `(t-r, t]` then holds the same integer-millisecond samples as 2.42's closed
//! `[t-r, t]`) matches Prometheus is a left-open-window difference (exactly, or within a
//! relative 1e-3, because `increase`/`delta` extrapolate over the extra 1 ms: 1.7e-5 on `[1m]`,
//! which `rate` cancels by dividing by the longer range too); a query
//! using a function 3.x renamed is re-run under the new name; a label name only 2.42 refuses
//! (3.x allows any UTF-8 label name) is a UTF-8 difference. The rest are unexplained. The test
//! prints `promql compliance: M of N queries match Prometheus 2.42` and the classified list, and
//! fails when fewer than `MATCHED_QUERY_COUNT_MIN` match or when any mismatch is unexplained
//! (measured: none; the data, both servers and the re-runs are deterministic, so a new one is a
//! regression or a new difference to classify).
//!
//! Skipped (passing) when Prometheus or promtool is not installed, unless `ENGINE_PEER_TESTS=1`;
//! skipped when `../shared/conformance` is absent, unless `ENGINE_CONFORMANCE_REQUIRED=1`.
//! Loopback only, temporary directories, both servers killed at the end.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{free_port, http_get, peer, wait_for_body, Process};

/// Queries (of 539) that match Prometheus 2.42; measured 452 of 539 on this data (83.9 %; the 87
/// mismatches: 83 left-open windows exactly, 2 within 1e-3, 2 UTF-8 label names; 3 matches are
/// both failing, 49 empty on both sides: nonexistent metrics, filtering comparisons, `[1s]`
/// ranges over 10 s data, `absent`).
const MATCHED_QUERY_COUNT_MIN: usize = 452;
/// Relative value tolerance of the upstream comparer (`value_tolerance_fraction`).
const VALUE_TOLERANCE_FRACTION: f64 = 1e-5;
/// Tolerance of the widened re-run: 1 ms more range changes `increase`/`delta` by 1 ms / range.
const WIDENED_TOLERANCE_FRACTION: f64 = 1e-3;
/// Deadline for a server to become ready.
const WAIT_S_MAX: u64 = 60;

/// First sample time: 2024-01-01T00:00:00Z, a 2 h block boundary, so the data fills one block.
const DATA_START_S: i64 = 1_704_067_200;
const SCRAPE_INTERVAL_MS: i64 = 10_000;
/// Two hours of scrapes.
const SCRAPE_COUNT: i64 = 720;
/// The query window: 10 minutes (the tester's default) ending 1 h 30 min into the data, so
/// `[1h] offset 10m` and `offset -10m` still read inside it.
const QUERY_END_S: i64 = DATA_START_S + 90 * 60;
const QUERY_RANGE_S: i64 = 600;
const QUERY_STEP_S: i64 = 10;
/// Instance and scrape phase in ms: :10000 on the query grid, the others off it.
const INSTANCES: [(&str, i64); 3] =
    [("demo.promlabs.com:10000", 0), ("demo.promlabs.com:10001", 1_234), ("demo.promlabs.com:10002", 6_789)];
/// The instance whose process restarts (counters reset) at this scrape.
const RESTART: (usize, i64) = (1, 400);
/// Functions Prometheus 3.x renamed: 2.42 name, 3.x name.
const RENAMED_FUNCTIONS: [(&str, &str); 1] = [("holt_winters", "double_exponential_smoothing")];

fn conformance_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance"))
}

/// SplitMix64: a seeded, platform-independent stream for the synthetic data.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Roughly standard normal (Irwin-Hall with 12 terms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Classic buckets of the request-duration histogram (client_golang's `DefBuckets`).
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// (path, method, base latency s, error ratio, outage duration s), as the demo service's `opts`.
const ENDPOINTS: [(&str, &str, f64, f64, i64); 4] = [
    ("/api/foo", "GET", 0.010, 0.005, 23),
    ("/api/foo", "POST", 0.020, 0.02, 60),
    ("/api/bar", "GET", 0.015, 0.0025, 13),
    ("/api/bar", "POST", 0.050, 0.01, 47),
];

/// One histogram series' cumulative state.
#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Lines per family, then per series (each series' lines contiguous and in time order).
#[derive(Default)]
struct Exposition {
    families: BTreeMap<&'static str, (&'static str, BTreeMap<String, String>)>,
}

impl Exposition {
    fn line(&mut self, family: &'static str, kind: &'static str, series: String, text: String) {
        let lines = self.families.entry(family).or_insert((kind, BTreeMap::new())).1.entry(series).or_default();
        lines.push_str(&text);
        lines.push('\n');
    }

    fn sample(&mut self, family: &'static str, kind: &'static str, name: &str, labels: &str, value: f64, ms: i64) {
        let series = format!("{name}{{{labels}}}");
        let text = format!("{series} {value} {}", timestamp(ms));
        self.line(family, kind, series, text);
    }

    fn render(&self) -> String {
        let mut text = String::new();
        for (family, (kind, series)) in &self.families {
            text.push_str(&format!("# TYPE {family} {kind}\n"));
            for lines in series.values() {
                text.push_str(lines);
            }
        }
        text.push_str("# EOF\n");
        text
    }
}

fn timestamp(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The demo service's metrics as three instances expose them, scraped every 10 s for 2 h.
fn demo_exposition() -> String {
    let mut out = Exposition::default();
    for (instance_index, (instance, phase_ms)) in INSTANCES.iter().enumerate() {
        let mut random = Random(0x5eed_0000 + instance_index as u64);
        let base = format!("instance=\"{instance}\",job=\"demo\"");
        let cpu_count = 4.0;
        let mut cpu = [0.0_f64; 3]; // user, system, idle
        let memory_total = 16.0 * 1024.0 * 1024.0 * 1024.0;
        let memory_base = [5.0e9, 3.0e9, 0.5e9]; // used, cached, buffers
        let mut memory = memory_base;
        let disk_total = 160e9;
        let mut disk = 0.1 * disk_total;
        // The batch job: runs every minute for ~11 s; the state after the last completed run.
        let (mut last_run_s, mut last_success_s, mut last_duration_s, mut processed_bytes) = (0.0, 0.0, 0.0, 0.0);
        let mut next_completion_s = (DATA_START_S - 49) as f64;
        let mut histograms: BTreeMap<(usize, u16), Histogram> = BTreeMap::new();
        let service_start_s = DATA_START_S - 3600 * (instance_index as i64 + 1);
        for scrape in 0..SCRAPE_COUNT {
            let jitter_ms = if *phase_ms == 0 { 0 } else { (random.next_u64() % 5) as i64 };
            let ms = DATA_START_S * 1000 + scrape * SCRAPE_INTERVAL_MS + phase_ms + jitter_ms;
            let now_s = ms as f64 / 1000.0;
            if (instance_index, scrape) == RESTART {
                cpu = [0.0; 3];
                histograms.clear();
            }
            let factor = cpu_count * SCRAPE_INTERVAL_MS as f64 / 1000.0;
            let user = (0.3 + (random.unit() - 0.5) / 5.0) * factor;
            let system = (0.2 + (random.unit() - 0.5) / 5.0) * factor;
            cpu[0] += user;
            cpu[1] += system;
            cpu[2] += factor - user - system;
            for (index, base_value) in memory_base.iter().enumerate() {
                memory[index] += ((random.unit() - 0.5) * 300.0 * 1024.0 * 1024.0).floor();
                if (memory[index] - base_value).abs() > 0.1 * base_value {
                    memory[index] = *base_value;
                }
            }
            for _ in 0..SCRAPE_INTERVAL_MS / 1000 {
                disk += (0.5e6 * (1.0 - (random.unit() - 0.5))).floor();
                if disk > 0.9 * disk_total {
                    disk = 0.1 * disk_total;
                }
            }
            while next_completion_s <= now_s {
                let completion_s = next_completion_s;
                if random.unit() > 0.25 {
                    last_success_s = completion_s;
                    processed_bytes = 1e6 + 1e5 - (random.next_u64() % 100_000) as f64;
                }
                last_duration_s = completion_s - last_run_s;
                last_run_s = completion_s;
                next_completion_s = completion_s + 60.0 - (random.next_u64() % 2000) as f64 / 1e6;
            }
            for (endpoint_index, (_, _, latency_s, error_ratio, outage_s)) in ENDPOINTS.iter().enumerate() {
                let in_outage = (ms / 1000 - service_start_s) % (10 * outage_s) < *outage_s;
                let (latency_factor, error_factor) = if in_outage { (3.0, 10.0) } else { (1.0, 1.0) };
                for _ in 0..5 + random.next_u64() % 10 {
                    let latency = (latency_s + random.normal() * latency_s / 10.0).max(0.0) * latency_factor;
                    let status = if random.unit() <= error_ratio * error_factor { 500 } else { 200 };
                    let histogram = histograms.entry((endpoint_index, status)).or_default();
                    for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
                        *bucket += u64::from(latency <= bound);
                    }
                    histogram.count += 1;
                    histogram.sum += latency;
                }
            }

            let gauge = |out: &mut Exposition, family: &'static str, labels: &str, value: f64| {
                out.sample(family, "gauge", family, labels, value, ms)
            };
            gauge(&mut out, "demo_num_cpus", &base, cpu_count);
            for (mode, value) in ["user", "system", "idle"].iter().zip(cpu) {
                let labels = format!("{base},mode=\"{mode}\"");
                out.sample("demo_cpu_usage_seconds", "counter", "demo_cpu_usage_seconds_total", &labels, value, ms);
            }
            let free = memory_total - memory.iter().sum::<f64>();
            for (kind, value) in ["used", "cached", "buffers", "free"].iter().zip(memory.iter().copied().chain([free]))
            {
                gauge(&mut out, "demo_memory_usage_bytes", &format!("{base},type=\"{kind}\""), value);
            }
            gauge(&mut out, "demo_disk_usage_bytes", &base, disk);
            gauge(&mut out, "demo_disk_total_bytes", &base, disk_total);
            gauge(&mut out, "demo_batch_last_run_timestamp_seconds", &base, last_run_s);
            gauge(&mut out, "demo_batch_last_success_timestamp_seconds", &base, last_success_s);
            gauge(&mut out, "demo_batch_last_run_duration_seconds", &base, last_duration_s);
            gauge(&mut out, "demo_batch_last_run_processed_bytes", &base, processed_bytes);
            if (ms / 60_000) % 2 == 0 {
                gauge(&mut out, "demo_intermittent_metric", &base, 1.0);
            }
            gauge(&mut out, "demo_api_http_requests_in_progress", &base, (random.next_u64() % 4) as f64);
            let family = "demo_api_request_duration_seconds";
            for ((endpoint_index, status), histogram) in &histograms {
                let (path, method, ..) = ENDPOINTS[*endpoint_index];
                let labels = format!("{base},method=\"{method}\",path=\"{path}\",status=\"{status}\"");
                let series = format!("{family}{{{labels}}}");
                let mut text = String::new();
                for (bound, bucket) in BUCKETS.iter().zip(histogram.buckets) {
                    text.push_str(&format!("{family}_bucket{{{labels},le=\"{bound}\"}} {bucket} {}\n", timestamp(ms)));
                }
                text.push_str(&format!(
                    "{family}_bucket{{{labels},le=\"+Inf\"}} {} {}\n",
                    histogram.count,
                    timestamp(ms)
                ));
                text.push_str(&format!("{family}_count{{{labels}}} {} {}\n", histogram.count, timestamp(ms)));
                text.push_str(&format!("{family}_sum{{{labels}}} {} {}", histogram.sum, timestamp(ms)));
                out.line(family, "histogram", series, text);
            }
        }
    }
    out.render()
}

/// One entry of `promql-test-queries.yml`.
#[derive(serde::Deserialize)]
struct TestCase {
    query: String,
    #[serde(default)]
    variant_args: Vec<String>,
    #[serde(default)]
    should_fail: bool,
}

#[derive(serde::Deserialize)]
struct TestCases {
    test_cases: Vec<TestCase>,
}

#[derive(serde::Deserialize)]
struct VariantArgs {
    variant_args: BTreeMap<String, Vec<String>>,
}

/// Every query of the list with its placeholders expanded (the cartesian product of the listed
/// arguments' values, as upstream's `testcases.ExpandTestCases`), with its `should_fail`.
fn expanded_queries(dir: &Path) -> Vec<(String, bool)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
    };
    let cases: TestCases = serde_yaml_ng::from_str(&read("promql-test-queries.yml")).expect("parse query list");
    let args: VariantArgs = serde_yaml_ng::from_str(&read("variant-args.yml")).expect("parse variant-args.yml");
    let mut queries = Vec::new();
    for case in cases.test_cases {
        let mut expanded = vec![case.query.clone()];
        for name in &case.variant_args {
            let values = args.variant_args.get(name).unwrap_or_else(|| panic!("no values for variant arg {name:?}"));
            let placeholder = format!("{{{{.{name}}}}}");
            expanded = expanded
                .iter()
                .flat_map(|query| values.iter().map(|value| query.replace(&placeholder, value)).collect::<Vec<_>>())
                .collect();
        }
        for query in expanded {
            assert!(!query.contains("{{"), "unexpanded placeholder in {query:?}");
            queries.push((query, case.should_fail));
        }
    }
    queries
}

/// A range query's answer: an error message, or the result type and each series' points.
#[derive(Debug, Clone)]
enum Answer {
    Error(String),
    Data { result_type: String, series: BTreeMap<String, Vec<(f64, String)>> },
}

fn query_range(port: u16, query: &str) -> Answer {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let path = format!(
        "/api/v1/query_range?query={encoded}&start={}&end={QUERY_END_S}&step={QUERY_STEP_S}",
        QUERY_END_S - QUERY_RANGE_S
    );
    let (status, body) = match http_get(port, &path) {
        Ok(answer) => answer,
        Err(error) => return Answer::Error(format!("transport: {error}")),
    };
    let json: serde_json::Value = match serde_json::from_str(&body) {
        Ok(json) => json,
        Err(error) => return Answer::Error(format!("HTTP {status}, body not JSON ({error}): {body}")),
    };
    if json["status"] != "success" {
        return Answer::Error(format!("{}: {}", json["errorType"].as_str().unwrap_or("?"), json["error"]));
    }
    let result_type = json["data"]["resultType"].as_str().unwrap_or("?").to_string();
    let mut series = BTreeMap::new();
    for entry in json["data"]["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = entry["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or("?").to_string()))
            .collect();
        let key = format!(
            "{{{}}}",
            labels.iter().map(|(name, value)| format!("{name}={value:?}")).collect::<Vec<_>>().join(", ")
        );
        let points = entry["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|point| (point[0].as_f64().unwrap_or(f64::NAN), point[1].as_str().unwrap_or("?").to_string()))
            .collect();
        if series.insert(key.clone(), points).is_some() {
            return Answer::Error(format!("answer repeats series {key}"));
        }
    }
    Answer::Data { result_type, series }
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => text.parse().unwrap_or(f64::NAN),
    }
}

/// cmpopts.EquateApprox(fraction, 0) with NaN equal to NaN; infinities only equal themselves.
fn values_equal(a: f64, b: f64, fraction: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    a == b || (a - b).abs() <= fraction * a.abs().min(b.abs())
}

/// `None` when the answers match, else the first difference.
fn difference(prometheus: &Answer, engine: &Answer, fraction: f64) -> Option<String> {
    let (prometheus, engine) = match (prometheus, engine) {
        (Answer::Error(_), Answer::Error(_)) => return None,
        (Answer::Error(message), Answer::Data { .. }) => return Some(format!("only Prometheus fails: {message}")),
        (Answer::Data { .. }, Answer::Error(message)) => return Some(format!("only the engine fails: {message}")),
        (Answer::Data { result_type: a, series: x }, Answer::Data { result_type: b, series: y }) => {
            if a != b {
                return Some(format!("result type: Prometheus {a}, engine {b}"));
            }
            (x, y)
        }
    };
    if let Some(labels) = prometheus.keys().find(|labels| !engine.contains_key(*labels)) {
        return Some(format!("series {labels} only from Prometheus ({} vs {} series)", prometheus.len(), engine.len()));
    }
    if let Some(labels) = engine.keys().find(|labels| !prometheus.contains_key(*labels)) {
        return Some(format!("series {labels} only from the engine ({} vs {} series)", prometheus.len(), engine.len()));
    }
    for (labels, expected) in prometheus {
        let got = &engine[labels];
        for index in 0..expected.len().max(got.len()) {
            match (expected.get(index), got.get(index)) {
                (Some((t, a)), Some((u, b))) if t == u => {
                    if !values_equal(parse_value(a), parse_value(b), fraction) {
                        return Some(format!("{labels} at {t}: Prometheus {a}, engine {b}"));
                    }
                }
                (expected_point, got_point) => {
                    return Some(format!(
                        "{labels} point {index}: Prometheus {expected_point:?}, engine {got_point:?} ({} vs {} points)",
                        expected.len(),
                        got.len()
                    ));
                }
            }
        }
    }
    None
}

/// `query` with every range and subquery range 1 ms longer (`[5m]` -> `[300001ms]`,
/// `[2m:10s]` -> `[120001ms:10s]`), or `None` when it has none.
fn widened(query: &str) -> Option<String> {
    let pattern = regex::Regex::new(r"\[(\d+)(ms|s|m|h|d|w|y)(:[^\]]*)?\]").unwrap();
    if !pattern.is_match(query) {
        return None;
    }
    let widened = pattern.replace_all(query, |captures: &regex::Captures<'_>| {
        let count: i64 = captures[1].parse().unwrap();
        let unit_ms = match &captures[2] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => 31_536_000_000,
        };
        format!("[{}ms{}]", count * unit_ms + 1, captures.get(3).map_or("", |subquery_step| subquery_step.as_str()))
    });
    Some(widened.into_owned())
}

/// Why a mismatching query differs, when a re-run or the error shows it.
fn classify(engine_port: u16, query: &str, prometheus: &Answer, engine: &Answer) -> &'static str {
    if let (Answer::Error(message), Answer::Data { .. }) = (prometheus, engine) {
        // 2.42 allows only `[a-zA-Z_][a-zA-Z0-9_]*`; 3.x any non-empty UTF-8 (`model.LabelName.IsValid`).
        if message.contains("invalid destination label name") {
            return "3.x accepts UTF-8 label names";
        }
    }
    if let Some(wide) = widened(query) {
        let answer = query_range(engine_port, &wide);
        if difference(prometheus, &answer, VALUE_TOLERANCE_FRACTION).is_none() {
            return "3.x left-open range windows (matches exactly with ranges widened by 1 ms)";
        }
        if difference(prometheus, &answer, WIDENED_TOLERANCE_FRACTION).is_none() {
            return "3.x left-open range windows (matches within 1e-3 with ranges widened by 1 ms)";
        }
    }
    for (old, new) in RENAMED_FUNCTIONS {
        if query.contains(old) {
            let renamed = query.replace(old, new);
            if difference(prometheus, &query_range(engine_port, &renamed), VALUE_TOLERANCE_FRACTION).is_none() {
                return "function renamed in 3.x (matches under its new name)";
            }
        }
    }
    "unexplained"
}

#[track_caller]
fn succeeded(output: Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn start(binary: &Path, dir: &Path, data: &Path, name: &str, port: u16) -> Process {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let log_path = dir.join(format!("{name}.log"));
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
    Process { child, log_path }
}

#[test]
fn promql_compliance_against_prometheus() {
    let started = Instant::now();
    let compliance_dir = conformance_dir().join("compliance/promql");
    if !compliance_dir.join("promql-test-queries.yml").exists() {
        let why = format!(
            "promql compliance: skipped, {} is absent (a fresh clone has no peer suites)",
            compliance_dir.display()
        );
        assert!(
            std::env::var("ENGINE_CONFORMANCE_REQUIRED").as_deref() != Ok("1"),
            "{why}, and ENGINE_CONFORMANCE_REQUIRED=1"
        );
        eprintln!("{why}");
        return;
    }
    let (Some(promtool), Some(prometheus)) = (peer("/usr/bin/promtool"), peer("/usr/bin/prometheus")) else { return };
    let queries = expanded_queries(&compliance_dir);

    let dir = common::temp_dir("engine-compliance", "promql");
    let input = dir.join("demo.om");
    std::fs::write(&input, demo_exposition()).unwrap();
    let (engine_data, prometheus_data) = (dir.join("engine-data"), dir.join("prometheus-data"));
    succeeded(
        Command::new(env!("CARGO_BIN_EXE_enginectl"))
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&input)
            .arg(&engine_data)
            .output()
            .unwrap(),
        "enginectl tsdb create-blocks-from openmetrics",
    );
    succeeded(
        Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&input)
            .arg(&prometheus_data)
            .output()
            .unwrap(),
        "promtool tsdb create-blocks-from openmetrics",
    );
    let (engine_port, prometheus_port) = (free_port(), free_port());
    let engine = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, &engine_data, "engine", engine_port);
    let prometheus_process = start(&prometheus, &dir, &prometheus_data, "prometheus", prometheus_port);
    wait_for_body(engine_port, "/-/ready", WAIT_S_MAX, &engine, |_| true);
    wait_for_body(prometheus_port, "/-/ready", WAIT_S_MAX, &prometheus_process, |_| true);
    // Both see the backfilled data before any query counts.
    for (port, process) in [(engine_port, &engine), (prometheus_port, &prometheus_process)] {
        let path = format!("/api/v1/query?query=count(demo_num_cpus)&time={QUERY_END_S}");
        wait_for_body(port, &path, WAIT_S_MAX, process, |body| body.contains("\"3\""));
    }

    let mut matched_count = 0;
    let mut both_empty_count = 0;
    let mut both_failed: Vec<(String, String, String)> = Vec::new();
    let mut mismatches: BTreeMap<&'static str, Vec<(String, String)>> = BTreeMap::new();
    let mut should_fail_but_passed = Vec::new();
    for (query, should_fail) in &queries {
        let expected = query_range(prometheus_port, query);
        let got = query_range(engine_port, query);
        if *should_fail && !matches!(expected, Answer::Error(_)) {
            should_fail_but_passed.push(query.clone());
        }
        match difference(&expected, &got, VALUE_TOLERANCE_FRACTION) {
            None => {
                matched_count += 1;
                if matches!(&got, Answer::Data { series, .. } if series.is_empty()) {
                    both_empty_count += 1;
                }
                if let (Answer::Error(a), Answer::Error(b)) = (&expected, &got) {
                    both_failed.push((query.clone(), a.clone(), b.clone()));
                }
            }
            Some(first_difference) => {
                let reason = classify(engine_port, query, &expected, &got);
                mismatches.entry(reason).or_default().push((query.clone(), first_difference));
            }
        }
    }

    println!("promql compliance: {matched_count} of {} queries match Prometheus 2.42", queries.len());
    println!("{both_empty_count} of the matches are empty on both sides");
    println!("both fail ({}), counted as matches:", both_failed.len());
    for (query, prometheus_error, engine_error) in &both_failed {
        println!("  {query}\n    Prometheus: {prometheus_error}\n    engine:     {engine_error}");
    }
    for (reason, list) in &mismatches {
        println!("mismatch: {reason} ({}):", list.len());
        for (query, first_difference) in list {
            println!("  {query}\n    {first_difference}");
        }
    }
    if !should_fail_but_passed.is_empty() {
        println!("should_fail queries Prometheus answered: {should_fail_but_passed:?}");
    }
    let unexplained_count = mismatches.get("unexplained").map_or(0, Vec::len);
    println!(
        "promql compliance: {} mismatches ({unexplained_count} unexplained) in {:.1} s",
        queries.len() - matched_count,
        started.elapsed().as_secs_f64()
    );
    assert!(
        matched_count >= MATCHED_QUERY_COUNT_MIN,
        "only {matched_count} of {} queries match Prometheus 2.42, fewer than {MATCHED_QUERY_COUNT_MIN}",
        queries.len()
    );
    assert_eq!(unexplained_count, 0, "unexplained mismatches (listed above): classify them or fix the engine");
    drop((engine, prometheus_process));
    let _ = std::fs::remove_dir_all(&dir);
}
