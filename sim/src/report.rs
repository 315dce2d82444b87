//! The run report. The deterministic section (virtual-time numbers only) is hashed into the
//! `report-hash` line; the real-cost section (wall time) is printed but never hashed or asserted.

use sha2::{Digest, Sha256};

use crate::alerting::{AlertingOutcome, AlertingSection};
use crate::harness::RunResult;
use crate::scenario::{Scenario, TargetKind};

/// One threshold of the scenario next to what the run measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    /// What is measured.
    pub name: String,
    /// The threshold, as written (`<= 100 ms`).
    pub target: String,
    /// The measured value.
    pub measured: String,
    /// Met.
    pub pass: bool,
}

/// Adds a check; a missed one is also a failure.
fn check(
    checks: &mut Vec<Check>,
    failures: &mut Vec<String>,
    name: &str,
    target: String,
    measured: String,
    pass: bool,
) {
    if !pass {
        failures.push(format!("{name}: {measured}, wanted {target}"));
    }
    checks.push(Check { name: name.to_string(), target, measured, pass });
}

/// A rendered report and its verdict.
pub struct Report {
    /// Deterministic text, hashed.
    pub deterministic: String,
    /// Threshold violations; empty when the run passed.
    pub failures: Vec<String>,
    /// Every threshold with its measured value, in report order.
    pub checks: Vec<Check>,
    /// Hex SHA-256 of `deterministic`.
    pub hash: String,
}

/// Builds the report for `result` and checks it against the scenario's thresholds.
pub fn build(scenario: &Scenario, result: &RunResult) -> Report {
    let client = &result.client;
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let mut checks = Vec::new();
    lines.push(format!("scenario: {} ({})", scenario.name, scenario.description));
    lines.push(format!("seed: {}", result.seed));
    lines.push(format!("virtual time: {} ticks of 1 ms", result.tick_count));
    for fault in &result.faults_applied {
        lines.push(format!(
            "fault: {:?} {} at {} ms (samples committed so far: {})",
            fault.action, fault.target, fault.at_ms, fault.committed_count
        ));
    }
    let committed_count = result.ledger.distinct_sample_count();
    lines.push(format!(
        "ingest: {committed_count} samples committed in {} series ({:.1} samples/virtual s)",
        result.ledger.samples.len(),
        committed_count as f64 / scenario.duration_s as f64
    ));
    let histogram = &client.latency_us;
    let quantile_ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    lines.push(format!(
        "queries: {} ok, {} failed; latency ms (virtual) p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}",
        client.query_ok_count,
        client.query_failed_count,
        quantile_ms(0.5),
        quantile_ms(0.9),
        quantile_ms(0.99),
        histogram.max() as f64 / 1000.0
    ));
    match &client.verification {
        None => failures.push("verification did not run".to_string()),
        Some(verification) => {
            let unexplained_count = wal_damage_lines(result, verification, &mut lines, &mut failures);
            lines.push(format!(
                "durability: {} committed samples in {} series read back, {} missing (beyond injected damage)",
                verification.checked_sample_count, verification.series_count, unexplained_count
            ));
            let explained = |sample: &&(engine::model::Labels, i64)| {
                result.wal_damage.iter().any(|damage| damage.samples_lost.contains(*sample))
            };
            for (labels, timestamp_ms) in verification.missing.iter().filter(|sample| !explained(sample)).take(5) {
                lines.push(format!("  missing: {labels} @{timestamp_ms}"));
            }
            let missing_max = scenario.thresholds.committed_samples_missing_max;
            check(
                &mut checks,
                &mut failures,
                "committed samples missing (beyond injected damage)",
                format!("<= {missing_max}"),
                unexplained_count.to_string(),
                unexplained_count <= missing_max,
            );
            lines.push(format!(
                "ledger: {} samples returned that were never reported committed",
                verification.unledgered_sample_count
            ));
            for example in &verification.unledgered_examples {
                lines.push(format!("  unledgered: {example}"));
            }
            check(
                &mut checks,
                &mut failures,
                "samples stored that were never committed",
                "0".to_string(),
                verification.unledgered_sample_count.to_string(),
                verification.unledgered_sample_count == 0,
            );
            if let (Some((missing_count, examples)), Some(missing_max)) =
                (&verification.remote_missing, scenario.thresholds.remote_samples_missing_max)
            {
                lines.push(format!(
                    "remote write: {missing_count} of {} committed samples missing at the receiver",
                    verification.checked_sample_count
                ));
                for example in examples {
                    lines.push(format!("  missing at the receiver: {example}"));
                }
                check(
                    &mut checks,
                    &mut failures,
                    "committed samples missing at the remote write receiver",
                    format!("<= {missing_max}"),
                    missing_count.to_string(),
                    *missing_count <= missing_max,
                );
            }
            for target in &scenario.targets {
                let (up_count, up_one_count) = verification.up_by_job.get(&target.job).copied().unwrap_or((0, 0));
                lines.push(format!("target {}: {up_one_count}/{up_count} scrapes up", target.job));
                let (wanted, expected_ok) = match target.kind {
                    TargetKind::Generated | TargetKind::Step => {
                        let down_max = scenario.thresholds.scrapes_down_max;
                        (
                            format!("> 0 scrapes, <= {down_max} down"),
                            up_count > 0 && up_count - up_one_count <= down_max,
                        )
                    }
                    TargetKind::Malformed => ("> 0 scrapes, all down".to_string(), up_count > 0 && up_one_count == 0),
                };
                check(
                    &mut checks,
                    &mut failures,
                    &format!("target {} ({:?}) scrapes up", target.job, target.kind),
                    wanted,
                    format!("{up_one_count} of {up_count}"),
                    expected_ok,
                );
            }
        }
    }
    let p99_ms = histogram.value_at_quantile(0.99) / 1000;
    if client.query_ok_count == 0 {
        failures.push("no query succeeded".to_string());
    }
    let p99_ms_max = scenario.thresholds.query_latency_p99_ms_max;
    check(
        &mut checks,
        &mut failures,
        "query latency p99 (virtual)",
        format!("<= {p99_ms_max} ms"),
        format!("{p99_ms} ms"),
        p99_ms <= p99_ms_max,
    );
    if let (Some(minimum), Some(last)) =
        (scenario.thresholds.committed_samples_after_faults_min, result.faults_applied.last())
    {
        let after = committed_count - last.committed_count;
        lines.push(format!("recovery: {after} samples committed after the last fault"));
        let name = "samples committed after the last fault";
        check(&mut checks, &mut failures, name, format!(">= {minimum}"), after.to_string(), after >= minimum);
    }
    let committed_min = scenario.thresholds.committed_samples_min;
    check(
        &mut checks,
        &mut failures,
        "samples committed",
        format!(">= {committed_min}"),
        committed_count.to_string(),
        committed_count >= committed_min,
    );
    if let (Some(alerting), Some(outcome)) = (&scenario.alerting, &result.alerting) {
        alerting_lines(scenario, alerting, outcome, &mut lines, &mut failures, &mut checks);
    }
    if let Some(herd) = &result.herd {
        herd_lines(scenario, herd, &mut lines, &mut failures, &mut checks);
    }
    lines.push("thresholds:".to_string());
    for item in &checks {
        let verdict = if item.pass { "pass" } else { "FAIL" };
        lines.push(format!("  {verdict}: {}: {} (wanted {})", item.name, item.measured, item.target));
    }
    lines.push(format!("verdict: {}", if failures.is_empty() { "PASS" } else { "FAIL" }));
    for failure in &failures {
        lines.push(format!("  failed: {failure}"));
    }
    let deterministic = lines.join("\n") + "\n";
    let hash = Sha256::digest(deterministic.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
    Report { deterministic, failures, checks, hash }
}

/// The frontend section: what the herd saw, and how much of it reached the engine.
fn herd_lines(
    scenario: &Scenario,
    herd: &crate::herd::HerdOutcome,
    lines: &mut Vec<String>,
    failures: &mut Vec<String>,
    checks: &mut Vec<Check>,
) {
    let quantile_ms =
        |histogram: &hdrhistogram::Histogram<u64>, quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    lines.push(format!(
        "frontend: {} user requests, {} ok, {} failed ({} during the outage, {} for views answered before)",
        herd.request_count, herd.ok_count, herd.error_count, herd.outage_error_count, herd.cached_view_error_count
    ));
    let served: Vec<String> = herd.served_by.iter().map(|(how, count)| format!("{how} {count}")).collect();
    lines.push(format!("frontend: answers by X-Cache: {}", served.join(", ")));
    lines.push(format!(
        "frontend: cached answers' latency ms (virtual) p50 {:.3} p99 {:.3} max {:.3}; all answers p99 {:.3}",
        quantile_ms(&herd.cached_latency_us, 0.5),
        quantile_ms(&herd.cached_latency_us, 0.99),
        herd.cached_latency_us.max() as f64 / 1000.0,
        quantile_ms(&herd.latency_us, 0.99),
    ));
    if let Some(stats) = &herd.frontend_stats {
        lines.push(format!(
            "frontend: cache-stats l1_hits {} extent_hits {} coalesced {} source_hits {} stale_served {} unavailable {} downstream_requests {} hit rate {:.4}",
            stats["l1_hits"], stats["extent_hits"], stats["coalesced"], stats["source_hits"], stats["stale_served"],
            stats["unavailable"], stats["downstream_requests"], stats["cache_hit_rate"].as_f64().unwrap_or(0.0)
        ));
    }
    let thresholds = &scenario.thresholds;
    if let Some(ratio_max) = thresholds.frontend_backend_request_ratio_max {
        match herd.engine_range_request_count {
            Some(engine_count) => {
                let ratio = engine_count as f64 / herd.request_count.max(1) as f64;
                lines.push(format!(
                    "frontend: {engine_count} range queries reached the engine for {} user requests ({:.2} %)",
                    herd.request_count,
                    ratio * 100.0
                ));
                let name = "engine requests per user request through the frontend";
                check(checks, failures, name, format!("<= {ratio_max}"), format!("{ratio:.4}"), ratio <= ratio_max);
            }
            None => failures.push("the engine's request counter could not be read".to_string()),
        }
    }
    if let Some(p99_ms_max) = thresholds.frontend_cached_latency_p99_ms_max {
        let p99_ms = quantile_ms(&herd.cached_latency_us, 0.99);
        let name = "cached answers' latency p99 (virtual)";
        let pass = !herd.cached_latency_us.is_empty() && p99_ms <= p99_ms_max as f64;
        check(checks, failures, name, format!("<= {p99_ms_max} ms"), format!("{p99_ms:.3} ms"), pass);
    }
    if let Some(errors_max) = thresholds.frontend_cached_view_errors_max {
        let name = "errors for views answered before (outage included)";
        let measured = herd.cached_view_error_count;
        check(checks, failures, name, format!("<= {errors_max}"), measured.to_string(), measured <= errors_max);
    }
}

/// The alerting section: latency from the condition to the first firing notification, and the
/// firing notifications per group, against the thresholds.
fn alerting_lines(
    scenario: &Scenario,
    alerting: &AlertingSection,
    outcome: &AlertingOutcome,
    lines: &mut Vec<String>,
    failures: &mut Vec<String>,
    checks: &mut Vec<Check>,
) {
    let bound_ms = AlertingOutcome::latency_bound_ms(scenario, alerting);
    lines.push(format!(
        "alerting: {} replica(s), condition true at {} ms, {} notification(s) received (bound: scrape + evaluation interval + group_wait + 1 s = {bound_ms} ms)",
        alerting.replicas,
        outcome.condition_at_ms,
        outcome.notifications.len()
    ));
    for notification in &outcome.notifications {
        lines.push(format!(
            "  notification at {} ms: {} {} ({} alerts)",
            notification.received_at_ms, notification.status, notification.group_key, notification.alert_count
        ));
    }
    match outcome.latency_ms() {
        Some(latency_ms) => {
            lines.push(format!("alert latency: {latency_ms} ms (virtual)"));
            if let Some(latency_ms_max) = scenario.thresholds.alert_latency_ms_max {
                let (target, measured) = (format!("<= {latency_ms_max} ms"), format!("{latency_ms} ms"));
                check(checks, failures, "alert latency (virtual)", target, measured, latency_ms <= latency_ms_max);
            }
        }
        None => failures.push("no firing notification arrived".to_string()),
    }
    if let Some(expected_count) = scenario.thresholds.alert_notifications_per_group {
        let per_group = outcome.firing_per_group();
        for (group_key, count) in &per_group {
            let name = format!("firing notifications of group {group_key}");
            check(checks, failures, &name, expected_count.to_string(), count.to_string(), *count == expected_count);
        }
    }
}

/// The WAL damage checker: the committed samples the damage must have destroyed are exactly
/// those missing from the read-back (none kept, none lost beyond them), and the engine's
/// `corruptionCount` after its last start equals the damaged ranges applied before it. Returns
/// the missing committed samples the damage does not explain.
fn wal_damage_lines(
    result: &RunResult,
    verification: &crate::client::Verification,
    lines: &mut Vec<String>,
    failures: &mut Vec<String>,
) -> u64 {
    if result.wal_damage.is_empty() {
        // Without injected damage the engine's own writes (torn by a full disk or a crash
        // included) must leave a WAL its next start finds clean.
        match verification.corruption_count {
            Some(0) => {}
            Some(reported) => {
                lines.push(format!("wal repair: engine reported {reported} corruptions at its last start"));
                failures.push(format!("{reported} wal corruptions found with no damage injected"));
            }
            None => failures.push("the engine's corruption count could not be read".to_string()),
        }
        return verification.missing_sample_count;
    }
    let committed = |(labels, timestamp_ms): &&(engine::model::Labels, i64)| {
        result.ledger.samples.get(labels).is_some_and(|samples| samples.contains_key(timestamp_ms))
    };
    let mut expected: std::collections::BTreeSet<&(engine::model::Labels, i64)> = Default::default();
    for damage in &result.wal_damage {
        let lost_committed = damage.samples_lost.iter().filter(committed).count();
        lines.push(format!(
            "wal damage on {} before start {}: {}; {} of {} records lost, {} damaged ranges, {} committed samples must be lost",
            damage.host,
            damage.start_number,
            damage.description,
            damage.records_lost_count,
            damage.record_count_before,
            damage.damaged_range_count,
            lost_committed
        ));
        if let Some(error) = &damage.error {
            failures.push(format!("wal damage on {} could not be applied: {error}", damage.host));
        }
        expected.extend(damage.samples_lost.iter().filter(committed));
    }
    let explained = verification.missing.iter().filter(|sample| expected.contains(sample)).count() as u64;
    let kept = expected.iter().filter(|sample| !verification.missing.contains(**sample)).count();
    lines.push(format!(
        "wal repair: {explained} committed samples lost to the damage (expected {}), {kept} kept that the damage destroyed",
        expected.len()
    ));
    if kept > 0 {
        failures
            .push(format!("{kept} committed samples the damage destroyed were still returned: the checker is wrong"));
    }
    let last_start = result.engine_starts.get("engine").copied().unwrap_or(0);
    let ranges_expected: u64 = result
        .wal_damage
        .iter()
        .filter(|damage| damage.host == "engine" && damage.start_number == last_start)
        .map(|damage| damage.damaged_range_count)
        .sum();
    match verification.corruption_count {
        Some(reported) => {
            lines.push(format!(
                "wal repair: engine reported {reported} corruptions at its last start (expected {ranges_expected})"
            ));
            if reported != ranges_expected {
                failures.push(format!("engine reported {reported} wal corruptions, the damage made {ranges_expected}"));
            }
        }
        None => failures.push("the engine's corruption count could not be read".to_string()),
    }
    verification.missing_sample_count - explained
}
