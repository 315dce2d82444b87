//! A run's report directory (`sim SCENARIO --out DIR`): `report.md` (the thresholds table,
//! the virtual-time report, the charts, and the real cost kept apart), `report.json` (the same
//! figures for tools), `latency.svg` and `ingest.svg`. Rendered here, written by the binary.

use serde_json::json;

use crate::chart;
use crate::harness::RunResult;
use crate::report::Report;
use crate::scenario::Scenario;

/// The real cost of a run: measured, reported, never hashed or asserted.
#[derive(Clone, Copy, Debug)]
pub struct RealCost {
    /// Wall time of the run, seconds.
    pub wall_s: f64,
    /// Virtual seconds simulated per wall second.
    pub speedup: f64,
}

/// The files of the report directory, as (file name, contents).
pub fn render(
    scenario: &Scenario,
    scenario_path: &str,
    result: &RunResult,
    report: &Report,
    cost: RealCost,
) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let latency = chart::latency_svg(scenario, result)?;
    let ingest = chart::ingest_svg(scenario, result)?;
    let verdict = if report.failures.is_empty() { "PASS" } else { "FAIL" };
    let mut md = format!("# {}: {verdict}\n\n{}\n\n", scenario.name, scenario.description);
    md.push_str(&format!(
        "Reproduce: `cargo run --release --bin sim -- {scenario_path} --seed {} --out <dir>`\n\n",
        result.seed
    ));
    md.push_str("## Thresholds\n\n| check | wanted | measured | verdict |\n|---|---|---|---|\n");
    for check in &report.checks {
        let verdict = if check.pass { "pass" } else { "**FAIL**" };
        md.push_str(&format!("| {} | {} | {} | {verdict} |\n", check.name, check.target, check.measured));
    }
    md.push_str("\n## Virtual time (deterministic, hashed)\n\n```\n");
    md.push_str(&report.deterministic);
    md.push_str(&format!("report-hash: {}\n```\n\n", report.hash));
    md.push_str("![query latency](latency.svg)\n\n![samples committed per second](ingest.svg)\n\n");
    let frontend_latency = match &result.herd {
        Some(herd) => {
            md.push_str("![users' latency through the frontend](frontend-latency.svg)\n\n");
            Some(chart::frontend_latency_svg(scenario, result, herd)?)
        }
        None => None,
    };
    md.push_str(&format!(
        "## Real cost (not hashed, not asserted)\n\nWall time {:.2} s, {:.1}x real time on the machine that ran it.\n",
        cost.wall_s, cost.speedup
    ));
    let histogram = &result.client.latency_us;
    let quantile_ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    let report_json = json!({
        "scenario": scenario.name,
        "seed": result.seed,
        "pass": report.failures.is_empty(),
        "report_hash": report.hash,
        "checks": report.checks,
        "failures": report.failures,
        "faults": result.faults_applied.iter().map(|fault| json!({
            "at_ms": fault.at_ms,
            "action": format!("{:?}", fault.action),
            "target": fault.target,
            "committed_samples": fault.committed_count,
        })).collect::<Vec<_>>(),
        "virtual": {
            "samples_committed": result.ledger.distinct_sample_count(),
            "series": result.ledger.samples.len(),
            "samples_committed_per_second": chart::ingest_per_second(scenario, result),
            "queries_ok": result.client.query_ok_count,
            "queries_failed": result.client.query_failed_count,
            "query_latency_ms": {
                "p50": quantile_ms(0.5), "p90": quantile_ms(0.9), "p99": quantile_ms(0.99),
                "max": histogram.max() as f64 / 1000.0,
            },
        },
        "real_cost": { "wall_s": cost.wall_s, "speedup": cost.speedup },
    });
    let mut files = vec![
        ("report.md", md.into_bytes()),
        ("report.json", serde_json::to_vec_pretty(&report_json)?),
        ("latency.svg", latency.into_bytes()),
        ("ingest.svg", ingest.into_bytes()),
    ];
    if let Some(svg) = frontend_latency {
        files.push(("frontend-latency.svg", svg.into_bytes()));
    }
    Ok(files)
}
