//! Builds the simulated world for a scenario (generator, engine and client hosts), steps it tick
//! by tick, injects the fault timeline at exact virtual times, and collects what the report needs.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use engine::server::ServerOptions;

use crate::alerting::{self, AlertingOutcome, AlertingSection, SharedNotifications, ALERT_MANAGER_PORT};
use crate::client::{self, ClientOutcome};
use crate::env::{sim_env_with_disk, DiskFaults};
use crate::generator;
use crate::ledger::{self, Ledger};
use crate::scenario::{Fault, FaultAction, Scenario};
use crate::wal_damage::{self, DamageOutcome, PendingDamage, SharedDamageBook};

/// Virtual time allowed after the run for verification, seconds.
const VERIFY_PHASE_S_MAX: u64 = 60;
/// Simulation tick.
const TICK_MS: u64 = 1;
/// Port the engine listens on.
const ENGINE_PORT: u16 = 9090;

/// Everything a run produced.
#[derive(Debug)]
pub struct RunResult {
    /// The seed used.
    pub seed: u64,
    /// Client observations and verification.
    pub client: ClientOutcome,
    /// Committed samples.
    pub ledger: Ledger,
    /// Faults applied, in time order.
    pub faults_applied: Vec<AppliedFault>,
    /// WAL damages applied at restarts and what each must cost.
    pub wal_damage: Vec<DamageOutcome>,
    /// Host -> how many times its engine started.
    pub engine_starts: std::collections::BTreeMap<String, u64>,
    /// Ticks stepped.
    pub tick_count: u64,
    /// The alerting pipeline's observations, when the scenario has one.
    pub alerting: Option<AlertingOutcome>,
    /// What the herd saw through the frontend, when the scenario has one.
    pub herd: Option<crate::herd::HerdOutcome>,
}

/// One fault as applied.
#[derive(Debug, Clone)]
pub struct AppliedFault {
    /// Virtual ms since the start.
    pub at_ms: u64,
    /// What.
    pub action: FaultAction,
    /// Host, and for a link fault `host -> peer` with its setting.
    pub target: String,
    /// Distinct samples committed so far.
    pub committed_count: u64,
}

/// The engine's configuration for `scenario`: one job per generator port; with an alerting
/// section also its rule file, evaluation interval, alert manager and the replica's external
/// label (`replica` names the HA replica, `a` or `b`).
pub fn engine_config_yaml(scenario: &Scenario, replica: &str) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: {}\n  scrape_timeout: {}\n",
        scenario.engine.scrape_interval, scenario.engine.scrape_timeout
    );
    if let Some(alerting) = &scenario.alerting {
        yaml.push_str(&format!(
            "  evaluation_interval: {}\n  external_labels:\n    replica: {replica}\n",
            alerting.evaluation_interval
        ));
        yaml.push_str(&alerting.engine_config_yaml());
    }
    if let Some(remote_write) = &scenario.remote_write {
        yaml.push_str(&format!(
            "remote_write:\n  - url: http://remote:{ENGINE_PORT}/api/v1/write\n    name: remote\n    queue_config:\n      \
             batch_send_deadline: {}\n      min_backoff: {}\n      max_backoff: {}\n",
            remote_write.batch_send_deadline, remote_write.min_backoff, remote_write.max_backoff
        ));
    }
    yaml.push_str("scrape_configs:\n");
    for target in &scenario.targets {
        yaml.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['generator:{}']\n",
            target.job, target.port
        ));
    }
    yaml
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> anyhow::Result<RunResult> {
    let config = engine::config::parse(&engine_config_yaml(scenario, "a"))?;
    let mut builder = turmoil::Builder::new();
    builder
        .epoch(UNIX_EPOCH + Duration::from_millis(scenario.epoch_ms))
        .simulation_duration(Duration::from_secs(scenario.duration_s + VERIFY_PHASE_S_MAX))
        .tick_duration(Duration::from_millis(TICK_MS))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .rng_seed(seed);
    let mut sim = builder.build();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let outcome = Arc::new(Mutex::new(ClientOutcome::default()));

    let condition_at_ms = scenario.alerting.as_ref().map_or(u64::MAX, |alerting| alerting.condition_at_ms(seed));
    let targets = scenario.targets.clone();
    sim.host("generator", move || generator::run(targets.clone(), seed, condition_at_ms));

    let damage_book = SharedDamageBook::default();
    let disks: std::collections::BTreeMap<String, DiskFaults> = ["engine", "engine-b", "alertmanager", "remote"]
        .iter()
        .map(|host| (host.to_string(), DiskFaults::default()))
        .collect();
    let mut options = ServerOptions::new(config, "/data".into(), format!("0.0.0.0:{ENGINE_PORT}"));
    options.commit_observer = Some(ledger::observer(ledger.clone()));
    let rule_file = scenario.alerting.as_ref().map(AlertingSection::rule_file_yaml);
    add_engine_host(&mut sim, "engine", options, rule_file.clone(), seed, damage_book.clone(), disks["engine"].clone());

    if scenario.remote_write.is_some() {
        // The receiver scrapes nothing: everything it holds came through remote write.
        let config = engine::config::parse("global:\n  scrape_interval: 1m\n")?;
        let mut options = ServerOptions::new(config, "/data".into(), format!("0.0.0.0:{ENGINE_PORT}"));
        options.remote_write_receiver_enabled = true;
        add_engine_host(&mut sim, "remote", options, None, seed ^ 0x7e, damage_book.clone(), disks["remote"].clone());
    }

    let notifications: SharedNotifications = Arc::default();
    if let Some(alerting) = &scenario.alerting {
        if alerting.replicas == 2 {
            let config = engine::config::parse(&engine_config_yaml(scenario, "b"))?;
            let options = ServerOptions::new(config, "/data".into(), format!("0.0.0.0:{ENGINE_PORT}"));
            add_engine_host(
                &mut sim,
                "engine-b",
                options,
                rule_file.clone(),
                seed ^ 0xb,
                damage_book.clone(),
                disks["engine-b"].clone(),
            );
        }
        let config = engine::config::parse(&alerting.alert_manager_config_yaml())?;
        let options = ServerOptions::new(config, "/data".into(), format!("0.0.0.0:{ALERT_MANAGER_PORT}"));
        add_engine_host(
            &mut sim,
            "alertmanager",
            options,
            None,
            seed ^ 0xa,
            damage_book.clone(),
            disks["alertmanager"].clone(),
        );
        let receiver_notifications = notifications.clone();
        sim.host("receiver", move || alerting::receiver(receiver_notifications.clone()));
        if alerting.sender_link_latency_ms_max > 0 {
            let latency_max = Duration::from_millis(alerting.sender_link_latency_ms_max);
            sim.set_link_max_message_latency("engine", "alertmanager", latency_max);
            if alerting.replicas == 2 {
                sim.set_link_max_message_latency("engine-b", "alertmanager", latency_max);
            }
        }
    }

    sim.client("client", client::run(scenario.clone(), ledger.clone(), outcome.clone()));

    let herd_outcome: crate::herd::SharedHerd = Arc::default();
    if let Some(frontend) = &scenario.frontend {
        let section = frontend.clone();
        sim.host("frontend", move || crate::herd::frontend_host(section.clone(), seed ^ 0xf0));
        let series_count = scenario.targets.iter().map(|target| target.series_count).max().unwrap_or(1);
        let outages = outage_windows(scenario, "frontend", "engine");
        let run = crate::herd::run(
            frontend.clone(),
            series_count,
            scenario.duration_s * 1000,
            outages,
            seed,
            herd_outcome.clone(),
        );
        sim.client("herd", run);
        let latency_max = Duration::from_millis(frontend.client_link_latency_ms_max);
        sim.set_link_max_message_latency("herd", "frontend", latency_max);
    }

    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|fault| fault.at_s);
    let mut next_fault_index = 0;
    let mut faults_applied = Vec::new();
    let tick_count_max = (scenario.duration_s + VERIFY_PHASE_S_MAX) * 1000 / TICK_MS + 1;
    let mut tick_count = 0;
    loop {
        let elapsed_ms = sim.elapsed().as_millis() as u64;
        while let Some(fault) = faults.get(next_fault_index).filter(|fault| fault.at_s * 1000 <= elapsed_ms) {
            let target = apply_fault(&mut sim, fault, seed, &damage_book, &disks);
            let committed_count =
                ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).distinct_sample_count();
            faults_applied.push(AppliedFault { at_ms: elapsed_ms, action: fault.action, target, committed_count });
            next_fault_index += 1;
        }
        let finished = sim.step().map_err(|error| anyhow::anyhow!("simulation failed at {elapsed_ms} ms: {error}"))?;
        tick_count += 1;
        if finished {
            break;
        }
        anyhow::ensure!(tick_count < tick_count_max, "tick limit {tick_count_max} reached before the client finished");
    }
    drop(sim);
    let ledger = take(ledger)?;
    let client = take(outcome)?;
    let alerting = scenario.alerting.as_ref().map(|_| AlertingOutcome {
        condition_at_ms,
        notifications: notifications.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone(),
    });
    let book = take(damage_book)?;
    let (wal_damage, engine_starts) = (book.applied, book.starts);
    let herd = match scenario.frontend {
        Some(_) => Some(take(herd_outcome)?),
        None => None,
    };
    Ok(RunResult { seed, client, ledger, faults_applied, wal_damage, engine_starts, tick_count, alerting, herd })
}

/// The virtual ms windows `[partition, heal)` of the link between `host` and `peer` (either
/// way round) in the fault timeline; a partition never healed lasts to the end.
fn outage_windows(scenario: &Scenario, host: &str, peer: &str) -> Vec<(u64, u64)> {
    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|fault| fault.at_s);
    let on_link = |fault: &Fault| {
        let other = fault.peer.as_deref().unwrap_or("");
        (fault.host == host && other == peer) || (fault.host == peer && other == host)
    };
    let mut windows = Vec::new();
    let mut open_since = None;
    for fault in faults.iter().filter(|fault| on_link(fault)) {
        match fault.action {
            FaultAction::Partition => open_since = open_since.or(Some(fault.at_s * 1000)),
            FaultAction::Heal => {
                if let Some(from) = open_since.take() {
                    windows.push((from, fault.at_s * 1000));
                }
            }
            _ => {}
        }
    }
    if let Some(from) = open_since {
        windows.push((from, u64::MAX));
    }
    windows
}

/// Applies one fault to the simulation; returns what it was applied to, for the report.
fn apply_fault(
    sim: &mut turmoil::Sim<'_>,
    fault: &Fault,
    seed: u64,
    damage_book: &SharedDamageBook,
    disks: &std::collections::BTreeMap<String, DiskFaults>,
) -> String {
    let host = fault.host.as_str();
    let peer = fault.peer.as_deref().unwrap_or("");
    match fault.action {
        FaultAction::Crash => sim.crash(host),
        FaultAction::Restart => sim.bounce(host),
        FaultAction::Partition => sim.partition(host, peer),
        FaultAction::Heal => sim.repair(host, peer),
        FaultAction::LinkLatency => {
            let latency_ms_max = fault.latency_ms_max.unwrap_or(0);
            sim.set_link_max_message_latency(host, peer, Duration::from_millis(latency_ms_max));
            return format!("{host} <-> {peer} ({latency_ms_max} ms max)");
        }
        FaultAction::LinkLoss => {
            let rate = fault.loss_rate.unwrap_or(0.0);
            sim.set_link_fail_rate(host, peer, rate);
            return format!("{host} <-> {peer} ({rate} loss)");
        }
        FaultAction::DiskFull | FaultAction::DiskFree => {
            if let Some(disk) = disks.get(host) {
                disk.set_full(fault.action == FaultAction::DiskFull);
            }
        }
        FaultAction::CorruptWal => {
            let damage = PendingDamage {
                kind: fault.damage.unwrap_or(wal_damage::DamageKind::BitFlip),
                bytes: fault.bytes.unwrap_or(0),
                // Each damage its own stream, the same for a seed.
                seed: seed ^ fault.at_s.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            };
            let mut book = damage_book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            book.pending.entry(host.to_string()).or_default().push(damage);
            return format!("{host} (applied at its next start)");
        }
    }
    if peer.is_empty() {
        host.to_string()
    } else {
        format!("{host} <-> {peer}")
    }
}

/// Adds an engine host running `engine::server::run`; `rule_file` is written to the host's
/// simulated disk first (it survives a crash: it is synced).
fn add_engine_host(
    sim: &mut turmoil::Sim<'_>,
    name: &str,
    options: ServerOptions,
    rule_file: Option<String>,
    seed: u64,
    damage_book: SharedDamageBook,
    disk: DiskFaults,
) {
    let host_name = name.to_string();
    sim.host(name, move || {
        let options = options.clone();
        let rule_file = rule_file.clone();
        let damage_book = damage_book.clone();
        let host_name = host_name.clone();
        let disk = disk.clone();
        async move {
            // Damage queued while the host was down reaches its disk before the engine opens it.
            wal_damage::apply_pending(&damage_book, &host_name);
            let env = sim_env_with_disk(seed, disk);
            if let Some(text) = rule_file {
                write_synced(env.fs.as_ref(), Path::new(alerting::RULE_FILE_PATH), text.as_bytes())?;
            }
            engine::server::run(env, options).await?;
            Ok(())
        }
    });
}

/// Writes a whole file and syncs it and its directory.
fn write_synced(fs: &dyn engine::io::FileSystem, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().unwrap_or(Path::new("/"));
    fs.create_dir_all(directory)?;
    if fs.file_size(path).is_ok() {
        fs.remove_file(path)?;
    }
    let mut file = fs.open_append(path)?;
    file.write_all(bytes)?;
    file.sync()?;
    fs.sync_dir(directory)
}

/// The value behind a shared handle once the simulation (the other owner) is gone.
fn take<T>(shared: Arc<Mutex<T>>) -> anyhow::Result<T> {
    Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("simulation state still shared after the run"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("simulation state poisoned"))
}
