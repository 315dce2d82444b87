//! Builds the simulated world for a scenario (generator, engine and client hosts), steps it tick
//! by tick, injects the fault timeline at exact virtual times, and collects what the report needs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use engine::server::ServerOptions;

use crate::client::{self, ClientOutcome};
use crate::env::sim_env;
use crate::generator;
use crate::ledger::{self, Ledger};
use crate::scenario::{FaultAction, Scenario};

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
    /// Faults applied: (virtual ms, action, committed samples at that moment).
    pub faults_applied: Vec<(u64, FaultAction, u64)>,
    /// Ticks stepped.
    pub tick_count: u64,
}

/// The engine's configuration for `scenario`: one job per generator port.
pub fn engine_config_yaml(scenario: &Scenario) -> String {
    let mut yaml = format!(
        "global:\n  scrape_interval: {}\n  scrape_timeout: {}\nscrape_configs:\n",
        scenario.engine.scrape_interval, scenario.engine.scrape_timeout
    );
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
    let config = engine::config::parse(&engine_config_yaml(scenario))?;
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

    let targets = scenario.targets.clone();
    sim.host("generator", move || generator::run(targets.clone(), seed));

    let mut options = ServerOptions::new(config, "/data".into(), format!("0.0.0.0:{ENGINE_PORT}"));
    options.commit_observer = Some(ledger::observer(ledger.clone()));
    sim.host("engine", move || {
        let options = options.clone();
        async move {
            engine::server::run(sim_env(seed), options).await?;
            Ok(())
        }
    });

    sim.client("client", client::run(scenario.clone(), ledger.clone(), outcome.clone()));

    let mut faults = scenario.faults.clone();
    faults.sort_by_key(|fault| fault.at_s);
    let mut next_fault_index = 0;
    let mut faults_applied = Vec::new();
    let tick_count_max = (scenario.duration_s + VERIFY_PHASE_S_MAX) * 1000 / TICK_MS + 1;
    let mut tick_count = 0;
    loop {
        let elapsed_ms = sim.elapsed().as_millis() as u64;
        while let Some(fault) = faults.get(next_fault_index).filter(|fault| fault.at_s * 1000 <= elapsed_ms) {
            match fault.action {
                FaultAction::Crash => sim.crash(fault.host.as_str()),
                FaultAction::Restart => sim.bounce(fault.host.as_str()),
            }
            let committed_count =
                ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).distinct_sample_count();
            faults_applied.push((elapsed_ms, fault.action, committed_count));
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
    Ok(RunResult { seed, client, ledger, faults_applied, tick_count })
}

/// The value behind a shared handle once the simulation (the other owner) is gone.
fn take<T>(shared: Arc<Mutex<T>>) -> anyhow::Result<T> {
    Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("simulation state still shared after the run"))?
        .into_inner()
        .map_err(|_| anyhow::anyhow!("simulation state poisoned"))
}
