//! Scenario files (TOML): what to run, which faults to inject when, and the targets the run is
//! judged against. Times are virtual seconds from the start of the simulation.

use serde::Deserialize;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in the report.
    pub name: String,
    /// One line on what the scenario shows.
    pub description: String,
    /// Default seed; `--seed` overrides it.
    pub seed: u64,
    /// Virtual run time before the verification phase, seconds.
    pub duration_s: u64,
    /// Wall-clock time at the start of the simulation, Unix ms (fixed so runs repeat).
    pub epoch_ms: u64,
    /// Engine settings.
    pub engine: EngineSection,
    /// Scrape targets served by the generator host.
    #[serde(rename = "targets")]
    pub targets: Vec<TargetSection>,
    /// Query workload.
    pub client: ClientSection,
    /// Fault timeline.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Pass/fail thresholds.
    pub thresholds: Thresholds,
    /// The alerting pipeline (rules, notifier, alert manager, webhook receiver), when present.
    #[serde(default)]
    pub alerting: Option<crate::alerting::AlertingSection>,
}

/// Engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSection {
    /// Global scrape interval as a Prometheus duration.
    pub scrape_interval: String,
    /// Global scrape timeout as a Prometheus duration.
    pub scrape_timeout: String,
}

/// What a generator port serves.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Well-formed gauges with seeded random values.
    Generated,
    /// A body with a syntax error on its second line.
    Malformed,
    /// `sim_condition` 0 until the alerting section's seeded condition time, 1 from then on.
    Step,
}

/// One scrape target (a port on the generator host).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// Job name.
    pub job: String,
    /// Port on the generator host.
    pub port: u16,
    /// What it serves.
    pub kind: TargetKind,
    /// Series per scrape (generated targets).
    #[serde(default)]
    pub series_count: usize,
}

/// Query workload: open loop, one query every interval regardless of answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSection {
    /// Time between queries, ms.
    pub query_interval_ms: u64,
    /// Queries, issued in turn.
    pub queries: Vec<String>,
    /// Give up on one query after this long, ms.
    pub query_timeout_ms: u64,
}

/// An action on a host at a virtual time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, virtual seconds.
    pub at_s: u64,
    /// What.
    pub action: FaultAction,
    /// Which host (`engine`).
    pub host: String,
}

/// Fault kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Kill the host: tasks cancelled, memory and unsynced disk writes lost.
    Crash,
    /// Start a crashed host again.
    Restart,
}

/// What the run must meet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// 99th percentile of successful query latency, virtual ms.
    pub query_latency_p99_ms_max: u64,
    /// Committed samples that may be missing after the run (durability: 0).
    pub committed_samples_missing_max: u64,
    /// Fewest samples that must be committed over the run.
    pub committed_samples_min: u64,
    /// Longest virtual time from the condition to the first firing notification, ms (alerting).
    #[serde(default)]
    pub alert_latency_ms_max: Option<u64>,
    /// Firing notifications each alert group must get, exactly (alerting; 1 for an HA pair).
    #[serde(default)]
    pub alert_notifications_per_group: Option<usize>,
}

/// Parses a scenario file's text.
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let scenario: Scenario = toml::from_str(text)?;
    anyhow::ensure!(scenario.duration_s > 0, "duration_s must be positive");
    anyhow::ensure!(!scenario.targets.is_empty(), "at least one [[targets]] entry is needed");
    anyhow::ensure!(scenario.client.query_interval_ms > 0, "client.query_interval_ms must be positive");
    anyhow::ensure!(!scenario.client.queries.is_empty(), "client.queries must not be empty");
    let has_step_target = scenario.targets.iter().any(|target| target.kind == TargetKind::Step);
    match &scenario.alerting {
        Some(alerting) => {
            alerting.validate(scenario.duration_s)?;
            anyhow::ensure!(has_step_target, "an [alerting] scenario needs a target of kind \"step\"");
        }
        None => anyhow::ensure!(!has_step_target, "a \"step\" target needs an [alerting] section"),
    }
    for fault in &scenario.faults {
        anyhow::ensure!(
            ["engine", "engine-b", "alertmanager"].contains(&fault.host.as_str()),
            "fault host {:?}: only \"engine\", \"engine-b\" and \"alertmanager\" can be faulted",
            fault.host
        );
        anyhow::ensure!(fault.at_s < scenario.duration_s, "fault at {} s is after the run ends", fault.at_s);
    }
    Ok(scenario)
}
