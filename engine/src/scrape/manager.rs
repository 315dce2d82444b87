//! The scrape manager (Prometheus scrape/manager.go): turns a configuration into running scrape
//! loops and, on reload, into the difference: loops whose target and settings are unchanged keep
//! running (their cache, phase and series refs intact), removed or changed ones are stopped
//! (writing staleness markers for everything they scraped) and new ones start. The target list
//! `/api/v1/targets` shows is replaced in one step.
//!
//! Concurrency: the running loops and the published target list sit behind mutexes held only
//! to swap entries; each loop is stopped through its own watch channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::health::{self, ActiveTarget, DroppedTarget, Targets};
use super::scrape_loop::{ScrapeLimits, ScrapeLoop};
use super::target::{self, Populated, Target};
use crate::config::{Config, ScrapeConfig};
use crate::io::Env;
use crate::metrics::SelfMetrics;
use crate::relabel::RelabelConfig;
use crate::storage::Appendable;

/// What decides whether a running loop can be kept across a reload: everything it was built from.
#[derive(Clone, Debug, PartialEq)]
struct LoopSpec {
    interval_ms: i64,
    timeout_ms: i64,
    honor_labels: bool,
    honor_timestamps: bool,
    metric_relabel_configs: Vec<RelabelConfig>,
    limits: ScrapeLimits,
    scrape_url: String,
    offset_seed: u64,
}

struct RunningLoop {
    spec: LoopSpec,
    health: Arc<ActiveTarget>,
    stop: watch::Sender<bool>,
}

/// Runs the scrape loops of the configuration in force.
pub struct ScrapeManager {
    env: Env,
    appendable: Arc<dyn Appendable>,
    metrics: Arc<SelfMetrics>,
    body_size_max: usize,
    /// Loops by (job, target).
    loops: Mutex<BTreeMap<(String, Target), RunningLoop>>,
    published: Mutex<Arc<Targets>>,
    /// Where the loops put exemplars (resized to the configuration on every apply).
    exemplars: Option<Arc<crate::exemplars::ExemplarStore>>,
}

impl ScrapeManager {
    /// A manager with no loops; [`ScrapeManager::apply`] starts them.
    pub fn new(env: Env, appendable: Arc<dyn Appendable>, metrics: Arc<SelfMetrics>, body_size_max: usize) -> Self {
        ScrapeManager {
            env,
            appendable,
            metrics,
            body_size_max,
            loops: Mutex::new(BTreeMap::new()),
            published: Mutex::new(Arc::new(Targets::default())),
            exemplars: None,
        }
    }

    /// Loops started from now on keep their exemplars in `store`.
    pub fn with_exemplars(mut self, store: Option<Arc<crate::exemplars::ExemplarStore>>) -> Self {
        self.exemplars = store;
        self
    }

    /// The targets as `/api/v1/targets` shows them.
    pub fn targets(&self) -> Arc<Targets> {
        self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Loops running.
    pub fn loop_count(&self) -> usize {
        self.loops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// Makes the running loops those of `config` (manager.go `ApplyConfig` and `Sync`).
    pub fn apply(&self, config: &Config) {
        let offset_seed = target::offset_seed(&config.global.external_labels);
        if let Some(store) = &self.exemplars {
            store.resize(config.storage.exemplar_count_max);
        }
        let mut published = Targets::default();
        let mut old = std::mem::take(&mut *self.loops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut running: BTreeMap<(String, Target), RunningLoop> = BTreeMap::new();
        let (mut kept_count, mut started_count) = (0usize, 0usize);
        for scrape_config in &config.scrape_configs {
            let job = scrape_config.job_name.clone();
            for static_config in &scrape_config.static_configs {
                for address in &static_config.targets {
                    let discovered = target::discovered_labels(scrape_config, address, &static_config.labels);
                    let (target, interval_ms, timeout_ms) = match target::populate(scrape_config, &discovered) {
                        Ok(Populated::Active { target, interval_ms, timeout_ms }) => (target, interval_ms, timeout_ms),
                        Ok(Populated::Dropped) => {
                            published
                                .dropped
                                .push(DroppedTarget { scrape_pool: job.clone(), discovered_labels: discovered });
                            continue;
                        }
                        Err(error) => {
                            tracing::error!(job = job.as_str(), address = address.as_str(), %error, "creating target failed");
                            continue;
                        }
                    };
                    let key = (job.clone(), target.clone());
                    if running.contains_key(&key) {
                        continue; // The same target twice in one job is scraped once.
                    }
                    let spec = loop_spec(scrape_config, &target, interval_ms, timeout_ms, offset_seed);
                    let entry = match old.remove(&key) {
                        Some(previous) if previous.spec == spec => {
                            kept_count += 1;
                            previous
                        }
                        previous => {
                            if let Some(previous) = previous {
                                let _ = previous.stop.send(true);
                            }
                            started_count += 1;
                            self.start(scrape_config, target, discovered, spec)
                        }
                    };
                    published.active.push(entry.health.clone());
                    running.insert(key, entry);
                }
            }
        }
        let stopped_count = old.len();
        for (_, removed) in old {
            let _ = removed.stop.send(true);
        }
        *self.loops.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = running;
        *self.published.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(published);
        tracing::info!(kept = kept_count, started = started_count, stopped = stopped_count, "scrape targets applied");
    }

    fn start(
        &self,
        scrape_config: &ScrapeConfig,
        target: Target,
        discovered: crate::model::Labels,
        spec: LoopSpec,
    ) -> RunningLoop {
        let health = Arc::new(health::ActiveTarget::new(
            scrape_config.job_name.clone(),
            spec.scrape_url.clone(),
            discovered,
            target.labels.clone(),
            spec.interval_ms,
            spec.timeout_ms,
        ));
        let (stop, stopped) = watch::channel(false);
        let scrape_loop = ScrapeLoop {
            env: self.env.clone(),
            target,
            appendable: self.appendable.clone(),
            metrics: self.metrics.clone(),
            interval_ms: spec.interval_ms,
            timeout_ms: spec.timeout_ms,
            honor_labels: spec.honor_labels,
            honor_timestamps: spec.honor_timestamps,
            metric_relabel_configs: spec.metric_relabel_configs.clone().into(),
            limits: spec.limits,
            body_size_max: self.body_size_max,
            offset_seed: spec.offset_seed,
            health: Some(health.clone()),
            stop: Some(stopped),
            exemplars: self.exemplars.clone(),
        };
        self.env.spawner.spawn("scrape-loop", Box::pin(scrape_loop.run()));
        RunningLoop { spec, health, stop }
    }

    /// Stops every loop (shutdown: no staleness markers are needed, the process ends).
    pub fn stop_all(&self) {
        for (_, running) in std::mem::take(&mut *self.loops.lock().unwrap_or_else(|poisoned| poisoned.into_inner())) {
            let _ = running.stop.send(true);
        }
    }
}

fn loop_spec(
    scrape_config: &ScrapeConfig,
    target: &Target,
    interval_ms: i64,
    timeout_ms: i64,
    offset_seed: u64,
) -> LoopSpec {
    LoopSpec {
        interval_ms,
        timeout_ms,
        honor_labels: scrape_config.honor_labels,
        honor_timestamps: scrape_config.honor_timestamps,
        metric_relabel_configs: scrape_config.metric_relabel_configs.clone(),
        // The job's limits (inherited from `global` where unset); 0 means none.
        limits: ScrapeLimits {
            sample_count_limit: scrape_config.sample_limit,
            body_size_limit: usize::try_from(scrape_config.body_size_limit).unwrap_or(usize::MAX),
            label_count_limit: usize::try_from(scrape_config.label_limit).unwrap_or(usize::MAX),
            label_name_size_limit: usize::try_from(scrape_config.label_name_length_limit).unwrap_or(usize::MAX),
            label_value_size_limit: usize::try_from(scrape_config.label_value_length_limit).unwrap_or(usize::MAX),
        },
        scrape_url: format!("http://{}{}", target.address, target.metrics_path),
        offset_seed,
    }
}
