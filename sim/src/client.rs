//! The client host: an open-loop query workload during the run (latency in virtual time), then
//! the verification phase that reads back every committed sample.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::http;
use crate::ledger::SharedLedger;
use crate::scenario::Scenario;
use engine::model::{is_stale_nan, Labels};

/// Where the engine's API listens inside the simulation.
pub const ENGINE_ADDRESS: &str = "engine:9090";

/// What the client observed.
#[derive(Debug)]
pub struct ClientOutcome {
    /// Latency of successful queries, virtual microseconds.
    pub latency_us: Histogram<u64>,
    /// Queries answered with status success.
    pub query_ok_count: u64,
    /// Queries that failed (refused, timed out, error status).
    pub query_failed_count: u64,
    /// Per query: (virtual ms since the run started when it was sent, latency µs, answered ok),
    /// for charts; at most [`QUERY_POINT_COUNT_MAX`] are kept.
    pub query_points: Vec<(u64, u64, bool)>,
    /// Result of the read-back, when it ran.
    pub verification: Option<Verification>,
}

/// Bound on the per-query points kept for charts (the histogram keeps the full distribution).
pub const QUERY_POINT_COUNT_MAX: usize = 100_000;

impl Default for ClientOutcome {
    fn default() -> Self {
        ClientOutcome {
            // 1 µs to 10 min, 3 significant digits: covers any query timeout we configure.
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds")),
            query_ok_count: 0,
            query_failed_count: 0,
            query_points: Vec::new(),
            verification: None,
        }
    }
}

/// The read-back of committed samples.
#[derive(Debug, Default, Clone)]
pub struct Verification {
    /// Series in the ledger.
    pub series_count: u64,
    /// Committed non-stale samples checked.
    pub checked_sample_count: u64,
    /// Of those, not returned by the engine (or with a different value).
    pub missing_sample_count: u64,
    /// Every missing sample, by series and timestamp (the WAL damage checker explains them).
    pub missing: BTreeSet<(Labels, i64)>,
    /// Samples the engine returned that were never reported committed (the ledger's other
    /// direction: nothing stored that was not sent).
    pub unledgered_sample_count: u64,
    /// The first few of those, for the report.
    pub unledgered_examples: Vec<String>,
    /// `corruptionCount` of `/api/v1/status/runtimeinfo`: WAL corruptions repaired at the
    /// engine's last start.
    pub corruption_count: Option<u64>,
    /// Per job: (samples of `up`, samples with `up` == 1).
    pub up_by_job: BTreeMap<String, (u64, u64)>,
    /// With remote write: committed samples the receiver lacks once it caught up (or the
    /// verification phase gave up waiting), and the first few of them.
    pub remote_missing: Option<(u64, Vec<String>)>,
}

/// Where the remote write receiver's API listens inside the simulation.
pub const REMOTE_ADDRESS: &str = "remote:9090";

/// Read-backs of the receiver while it catches up, one virtual second apart.
const REMOTE_READ_BACK_ATTEMPTS_MAX: u32 = 30;

/// Shared outcome, written by the client tasks and read by the harness.
pub type SharedOutcome = Arc<Mutex<ClientOutcome>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs the workload for the scenario's duration, then the verification.
pub async fn run(scenario: Scenario, ledger: SharedLedger, outcome: SharedOutcome) -> turmoil::Result {
    let query_timeout = Duration::from_millis(scenario.client.query_timeout_ms);
    let run_for = Duration::from_secs(scenario.duration_s);
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(scenario.client.query_interval_ms));
    let mut in_flight = Vec::new();
    let mut query_index = 0_usize;
    while started.elapsed() < run_for {
        ticker.tick().await;
        let query = scenario.client.queries[query_index % scenario.client.queries.len()].clone();
        query_index += 1;
        let outcome = outcome.clone();
        // Open loop: each query runs on its own task so a slow answer never delays the next send.
        in_flight.push(tokio::spawn(async move {
            let path = format!("/api/v1/query?query={}", encode(&query));
            let sent = tokio::time::Instant::now();
            let sent_at_ms = sent.duration_since(started).as_millis() as u64;
            let result = http::get(ENGINE_ADDRESS, &path, query_timeout).await;
            let latency_us = sent.elapsed().as_micros() as u64;
            let mut outcome = lock(&outcome);
            let ok = matches!(&result, Ok((status, _)) if status.is_success());
            if ok {
                outcome.query_ok_count += 1;
                let _ = outcome.latency_us.record(latency_us.max(1));
            } else {
                outcome.query_failed_count += 1;
            }
            if outcome.query_points.len() < QUERY_POINT_COUNT_MAX {
                outcome.query_points.push((sent_at_ms, latency_us, ok));
            }
        }));
        in_flight.retain(|task| !task.is_finished());
    }
    for task in in_flight {
        let _ = task.await;
    }
    let verification = verify(&scenario, &ledger, query_timeout).await?;
    lock(&outcome).verification = Some(verification);
    Ok(())
}

/// Reads every series back with one range selector and compares with the ledger.
async fn verify(scenario: &Scenario, ledger: &SharedLedger, query_timeout: Duration) -> turmoil::Result<Verification> {
    let snapshot = lock(ledger).clone();
    let now_ms = turmoil::since_epoch().map(|since| since.as_millis() as i64).unwrap_or(0);
    let window_ms = now_ms - scenario.epoch_ms as i64 + 1000;
    let query = format!("{{__name__=~\".+\"}}[{window_ms}ms]");
    let path = format!("/api/v1/query?query={}&time={}", encode(&query), now_ms as f64 / 1000.0);
    let returned = read_back(ENGINE_ADDRESS, &path, query_timeout).await?;
    let mut verification = Verification { series_count: snapshot.samples.len() as u64, ..Verification::default() };
    for (labels, samples) in &snapshot.samples {
        let got = returned.get(labels);
        for (timestamp_ms, value_bits) in samples {
            let value = f64::from_bits(*value_bits);
            if is_stale_nan(value) {
                continue;
            }
            if labels.metric_name() == Some("up") {
                let entry = verification.up_by_job.entry(labels.get("job").unwrap_or("").to_string()).or_default();
                entry.0 += 1;
                entry.1 += u64::from(value == 1.0);
            }
            verification.checked_sample_count += 1;
            let found = got
                .and_then(|series| series.get(timestamp_ms))
                .is_some_and(|returned| *returned == value || (returned.is_nan() && value.is_nan()));
            if !found {
                verification.missing_sample_count += 1;
                verification.missing.insert((labels.clone(), *timestamp_ms));
            }
        }
    }
    for (labels, points) in &returned {
        let committed = snapshot.samples.get(labels);
        for timestamp_ms in points.keys() {
            if !committed.is_some_and(|samples| samples.contains_key(timestamp_ms)) {
                verification.unledgered_sample_count += 1;
                if verification.unledgered_examples.len() < 5 {
                    verification.unledgered_examples.push(format!("{labels} @{timestamp_ms}"));
                }
            }
        }
    }
    if scenario.remote_write.is_some() {
        let mut attempt = 0;
        verification.remote_missing = loop {
            attempt += 1;
            let held = read_back(REMOTE_ADDRESS, &path, query_timeout).await?;
            let missing = missing_samples(&snapshot, &held);
            if missing.is_empty() || attempt >= REMOTE_READ_BACK_ATTEMPTS_MAX {
                let examples = missing.iter().take(5).map(|(labels, time_ms)| format!("{labels} @{time_ms}")).collect();
                break Some((missing.len() as u64, examples));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
    }
    verification.corruption_count = match http::get(ENGINE_ADDRESS, "/api/v1/status/runtimeinfo", query_timeout).await {
        Ok((status, body)) if status.is_success() => {
            serde_json::from_slice::<serde_json::Value>(&body)?["data"]["corruptionCount"].as_u64()
        }
        _ => None,
    };
    Ok(verification)
}

/// Committed non-stale samples of `snapshot` that `held` lacks (or holds with another value).
fn missing_samples(
    snapshot: &crate::ledger::Ledger,
    held: &BTreeMap<Labels, BTreeMap<i64, f64>>,
) -> BTreeSet<(Labels, i64)> {
    let mut missing = BTreeSet::new();
    for (labels, samples) in &snapshot.samples {
        let got = held.get(labels);
        for (timestamp_ms, value_bits) in samples {
            let value = f64::from_bits(*value_bits);
            if is_stale_nan(value) {
                continue;
            }
            let found = got
                .and_then(|series| series.get(timestamp_ms))
                .is_some_and(|returned| *returned == value || (returned.is_nan() && value.is_nan()));
            if !found {
                missing.insert((labels.clone(), *timestamp_ms));
            }
        }
    }
    missing
}

/// The matrix `path` answers on `address`; the host may still be starting after a late
/// restart, so a bounded number of attempts are made.
async fn read_back(
    address: &str,
    path: &str,
    query_timeout: Duration,
) -> turmoil::Result<BTreeMap<Labels, BTreeMap<i64, f64>>> {
    let mut attempt = 0;
    let body = loop {
        attempt += 1;
        match http::get(address, path, query_timeout * 4).await {
            Ok((status, body)) if status.is_success() => break body,
            Ok((status, body)) if attempt >= 20 => {
                return Err(format!(
                    "verification query to {address} failed: {status}: {}",
                    String::from_utf8_lossy(&body)
                )
                .into())
            }
            Err(error) if attempt >= 20 => {
                return Err(format!("verification query to {address} failed: {error}").into())
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    parse_matrix(&body)
}

/// Parses a Prometheus matrix response into series -> timestamp ms -> value.
fn parse_matrix(body: &[u8]) -> turmoil::Result<BTreeMap<Labels, BTreeMap<i64, f64>>> {
    let json: serde_json::Value = serde_json::from_slice(body)?;
    let result = json["data"]["result"].as_array().ok_or("verification: response has no data.result array")?;
    let mut series_map = BTreeMap::new();
    for series in result {
        let metric = series["metric"].as_object().ok_or("verification: series without metric")?;
        let labels =
            Labels::from_pairs(metric.iter().map(|(name, value)| (name.as_str(), value.as_str().unwrap_or(""))));
        let mut points = BTreeMap::new();
        for point in series["values"].as_array().ok_or("verification: series without values")? {
            let seconds = point[0].as_f64().ok_or("verification: bad timestamp")?;
            let value = parse_value(point[1].as_str().ok_or("verification: bad value")?)?;
            points.insert((seconds * 1000.0).round() as i64, value);
        }
        series_map.insert(labels, points);
    }
    Ok(series_map)
}

fn parse_value(text: &str) -> turmoil::Result<f64> {
    Ok(match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse()?,
    })
}

/// Percent-encodes a query parameter value.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
