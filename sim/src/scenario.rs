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
    /// Seeds CI replays besides `seed` (every seed that ever failed is pinned here).
    #[serde(default)]
    pub pinned_seeds: Vec<u64>,
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
    /// A remote write receiver host (`remote`, an engine with the receiver enabled) the engine
    /// sends every sample to, when present.
    #[serde(default)]
    pub remote_write: Option<RemoteWriteSection>,
    /// A query frontend host (`frontend`) in front of the engine and a herd of simulated users
    /// (`herd`) polling dashboard views through it, when present.
    #[serde(default)]
    pub frontend: Option<crate::herd::FrontendSection>,
}

/// The engine's `remote_write` queue to the `remote` host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSection {
    /// `queue_config.batch_send_deadline`.
    #[serde(default = "default_batch_send_deadline")]
    pub batch_send_deadline: String,
    /// `queue_config.min_backoff`.
    #[serde(default = "default_min_backoff")]
    pub min_backoff: String,
    /// `queue_config.max_backoff`.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: String,
}

fn default_batch_send_deadline() -> String {
    "1s".to_string()
}

fn default_min_backoff() -> String {
    "100ms".to_string()
}

fn default_max_backoff() -> String {
    "5s".to_string()
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
    /// The other end of the link (`partition`, `heal`, `link_latency`, `link_loss`).
    #[serde(default)]
    pub peer: Option<String>,
    /// Largest one-way message delay on the link, ms (`link_latency`).
    #[serde(default)]
    pub latency_ms_max: Option<u64>,
    /// Fraction of messages lost on the link, 0..1 (`link_loss`).
    #[serde(default)]
    pub loss_rate: Option<f64>,
    /// How the WAL is damaged (`corrupt_wal`).
    #[serde(default)]
    pub damage: Option<crate::wal_damage::DamageKind>,
    /// Bytes damaged (`corrupt_wal`: bytes flipped or zeroed; ignored by `truncate`).
    #[serde(default)]
    pub bytes: Option<u64>,
}

/// Fault kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Kill the host: tasks cancelled, memory and unsynced disk writes lost.
    Crash,
    /// Start a crashed host again.
    Restart,
    /// Cut the link between `host` and `peer`: new connections are refused, established ones
    /// stall (turmoil never retransmits).
    Partition,
    /// Restore the link between `host` and `peer`.
    Heal,
    /// Set the link's largest message delay (`latency_ms_max`).
    LinkLatency,
    /// Set the link's message loss rate (`loss_rate`).
    LinkLoss,
    /// Damage the newest non-empty WAL segment of a crashed `host` (`damage`, `bytes`, at a
    /// seeded offset); applied just before its next start.
    CorruptWal,
    /// Fill `host`'s disk: every append from now on writes half its bytes and fails.
    DiskFull,
    /// Free `host`'s disk again.
    DiskFree,
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
    /// Scrapes of a generated target that may fail (`up` 0), e.g. while a partition cuts the
    /// engine off its targets; default 0.
    #[serde(default)]
    pub scrapes_down_max: u64,
    /// Fewest distinct samples that must be committed after the last fault (recovery).
    #[serde(default)]
    pub committed_samples_after_faults_min: Option<u64>,
    /// Longest virtual time from the condition to the first firing notification, ms (alerting).
    #[serde(default)]
    pub alert_latency_ms_max: Option<u64>,
    /// Firing notifications each alert group must get, exactly (alerting; 1 for an HA pair).
    #[serde(default)]
    pub alert_notifications_per_group: Option<usize>,
    /// Committed samples the remote write receiver may lack at the end (remote write; 0).
    #[serde(default)]
    pub remote_samples_missing_max: Option<u64>,
    /// Most range queries reaching the engine per user request through the frontend (frontend).
    #[serde(default)]
    pub frontend_backend_request_ratio_max: Option<f64>,
    /// 99th percentile of the users' latency for cached answers, virtual ms (frontend).
    #[serde(default)]
    pub frontend_cached_latency_p99_ms_max: Option<u64>,
    /// Errors users may see for views already answered once (frontend; 0 through an outage).
    #[serde(default)]
    pub frontend_cached_view_errors_max: Option<u64>,
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
    anyhow::ensure!(
        scenario.remote_write.is_some() == scenario.thresholds.remote_samples_missing_max.is_some(),
        "a [remote_write] section and thresholds.remote_samples_missing_max go together"
    );
    anyhow::ensure!(
        !(scenario.remote_write.is_some() && scenario.alerting.is_some()),
        "[remote_write] and [alerting] are separate scenarios"
    );
    if let Some(frontend) = &scenario.frontend {
        frontend.validate()?;
    }
    let frontend_thresholds = [
        scenario.thresholds.frontend_backend_request_ratio_max.is_some(),
        scenario.thresholds.frontend_cached_latency_p99_ms_max.is_some(),
        scenario.thresholds.frontend_cached_view_errors_max.is_some(),
    ];
    anyhow::ensure!(
        frontend_thresholds.iter().all(|set| *set == scenario.frontend.is_some()),
        "a [frontend] section and the three frontend_* thresholds go together"
    );
    validate_faults(&scenario)?;
    Ok(scenario)
}

/// The hosts of `scenario` a fault may name (the client host, the checker, is never crashed;
/// it may be one end of a link fault).
pub fn host_names(scenario: &Scenario) -> Vec<&'static str> {
    let mut hosts = vec!["engine", "generator"];
    if let Some(alerting) = &scenario.alerting {
        if alerting.replicas == 2 {
            hosts.push("engine-b");
        }
        hosts.extend(["alertmanager", "receiver"]);
    }
    if scenario.remote_write.is_some() {
        hosts.push("remote");
    }
    if scenario.frontend.is_some() {
        hosts.extend(["frontend", "herd"]);
    }
    hosts
}

/// Each fault names known hosts, carries exactly the fields its action needs, and fits the
/// timeline: a `corrupt_wal` falls between a crash of its host and the restart that follows.
fn validate_faults(scenario: &Scenario) -> anyhow::Result<()> {
    let mut faults: Vec<&Fault> = scenario.faults.iter().collect();
    faults.sort_by_key(|fault| fault.at_s);
    let hosts = host_names(scenario);
    let mut down: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for fault in faults {
        let at = format!("fault at {} s ({:?})", fault.at_s, fault.action);
        anyhow::ensure!(
            hosts.contains(&fault.host.as_str()),
            "{at}: host {:?} is not one of this scenario's hosts {hosts:?}",
            fault.host
        );
        anyhow::ensure!(fault.at_s < scenario.duration_s, "{at}: after the run ends");
        let link = matches!(
            fault.action,
            FaultAction::Partition | FaultAction::Heal | FaultAction::LinkLatency | FaultAction::LinkLoss
        );
        match &fault.peer {
            Some(peer) => {
                anyhow::ensure!(link, "{at}: `peer` only applies to link faults");
                anyhow::ensure!(
                    hosts.contains(&peer.as_str()) || peer == "client",
                    "{at}: peer {peer:?} is not a host of the scenario"
                );
                anyhow::ensure!(*peer != fault.host, "{at}: a link needs two different hosts");
            }
            None => anyhow::ensure!(!link, "{at}: a link fault needs `peer`"),
        }
        let wants_latency = fault.action == FaultAction::LinkLatency;
        anyhow::ensure!(fault.latency_ms_max.is_some() == wants_latency, "{at}: `latency_ms_max` is for link_latency");
        let wants_loss = fault.action == FaultAction::LinkLoss;
        anyhow::ensure!(fault.loss_rate.is_some() == wants_loss, "{at}: `loss_rate` is for link_loss");
        if let Some(rate) = fault.loss_rate {
            anyhow::ensure!((0.0..=1.0).contains(&rate), "{at}: loss_rate {rate} is not within 0..1");
        }
        let corrupt = fault.action == FaultAction::CorruptWal;
        anyhow::ensure!(fault.damage.is_some() == corrupt, "{at}: `damage` is for corrupt_wal (and required there)");
        anyhow::ensure!(fault.bytes.is_none() || corrupt, "{at}: `bytes` is for corrupt_wal");
        match fault.action {
            FaultAction::Crash => {
                down.insert(fault.host.as_str());
            }
            FaultAction::Restart => {
                down.remove(fault.host.as_str());
            }
            FaultAction::DiskFull | FaultAction::DiskFree => {
                anyhow::ensure!(fault.host.starts_with("engine"), "{at}: only an engine host's disk is simulated");
            }
            FaultAction::CorruptWal => {
                anyhow::ensure!(fault.host.starts_with("engine"), "{at}: only an engine host has a WAL");
                anyhow::ensure!(
                    down.contains(fault.host.as_str()),
                    "{at}: the host must be crashed first (the WAL is damaged while it is down)"
                );
                let needs_bytes = fault.damage != Some(crate::wal_damage::DamageKind::Truncate);
                anyhow::ensure!(
                    fault.bytes.is_some_and(|bytes| bytes > 0) == needs_bytes,
                    "{at}: `bytes` (> 0) is required by bit_flip and zero, refused by truncate"
                );
            }
            _ => {}
        }
    }
    Ok(())
}
