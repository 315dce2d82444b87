//! The rule manager (rules/manager.go): loads rule files, runs one task per group, replaces
//! groups on reload keeping the state of unchanged ones (`Manager.Update`), and renders the
//! rule metrics for `/metrics`.
//!
//! Concurrency: the group list sits behind a mutex held only to swap entries; each group task
//! is stopped through its own watch channel. Evaluations across groups are bounded by one
//! semaphore of `max_concurrent_evals` permits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Semaphore};

use super::file::{load_rule_file, GroupSpec, RuleFileError};
use super::group::{group_key, Group, RunSignal};
use super::{EvalContext, MAX_CONCURRENT_EVALS_DEFAULT};
use crate::io::Env;
use crate::metrics::MetricsSource;
use crate::notifier::{Alert, AlertSink};

/// Settings of a manager.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// `global.evaluation_interval`: the interval of groups without their own.
    pub evaluation_interval_ms: i64,
    /// `global.rule_query_offset`: the offset of groups without their own.
    pub query_offset_ms: i64,
    /// `--rules.max-concurrent-evals`.
    pub max_concurrent_evals: usize,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        ManagerOptions {
            evaluation_interval_ms: 60_000,
            query_offset_ms: 0,
            max_concurrent_evals: MAX_CONCURRENT_EVALS_DEFAULT,
        }
    }
}

/// The sink used when none is configured: alerts are only logged at debug level.
#[derive(Debug, Default)]
pub struct LoggingAlertSink;

impl AlertSink for LoggingAlertSink {
    fn send(&self, alerts: Vec<Alert>) {
        for alert in alerts {
            tracing::debug!(labels = %alert.labels, ends_at_ms = alert.ends_at_ms, "alert (no alert sink configured)");
        }
    }
}

/// (group key, counters, interval ms, rule count, last evaluation timestamp ms, last duration s).
type MetricsRow = (String, super::group::GroupCounters, i64, usize, Option<i64>, f64);

struct RunningGroup {
    group: Arc<Group>,
    signal: watch::Sender<RunSignal>,
}

/// Runs rule groups.
pub struct Manager {
    env: Env,
    context: Arc<EvalContext>,
    options: Mutex<ManagerOptions>,
    groups: Mutex<Vec<RunningGroup>>,
    /// False until the first update: only the groups of the first load restore `for` state.
    loaded_once: Mutex<bool>,
    semaphore: Arc<Semaphore>,
}

impl Manager {
    /// A manager with no groups; [`Manager::update`] starts them.
    pub fn new(env: Env, context: EvalContext, options: ManagerOptions) -> Self {
        let permits = options.max_concurrent_evals.max(1);
        Manager {
            env,
            context: Arc::new(context),
            options: Mutex::new(options),
            groups: Mutex::new(Vec::new()),
            loaded_once: Mutex::new(false),
            semaphore: Arc::new(Semaphore::new(permits)),
        }
    }

    /// What groups evaluate over.
    pub fn context(&self) -> &Arc<EvalContext> {
        &self.context
    }

    /// Reads and validates `files` through the environment's filesystem; every error of every file.
    pub fn load_files(&self, files: &[PathBuf]) -> Result<Vec<GroupSpec>, Vec<RuleFileError>> {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            match load_rule_file(self.env.fs.as_ref(), path) {
                Ok(file) => groups.extend(file.groups),
                Err(file_errors) => errors.extend(file_errors),
            }
        }
        if errors.is_empty() {
            Ok(groups)
        } else {
            Err(errors)
        }
    }

    /// Loads `files` and applies them with [`Manager::update`]; on an error nothing changes
    /// (Prometheus keeps the previous rule set).
    pub fn update_from_files(&self, options: ManagerOptions, files: &[PathBuf]) -> Result<(), Vec<RuleFileError>> {
        let groups = self.load_files(files)?;
        self.update(options, groups);
        Ok(())
    }

    /// Replaces the running groups with `groups` (manager.go `Update`): a group whose file,
    /// name, interval, offset, limit and rules are unchanged keeps running untouched; a changed
    /// one is restarted with the old state copied over (`CopyState`); a removed one is stopped
    /// and its series marked stale; new ones start. Only the groups of the first update
    /// restore `for` state.
    pub fn update(&self, options: ManagerOptions, groups: Vec<GroupSpec>) {
        let should_restore = {
            let mut loaded = self.loaded_once.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let first = !*loaded;
            *loaded = true;
            first
        };
        *self.options.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = options.clone();
        let mut running = self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut old: BTreeMap<String, RunningGroup> = std::mem::take(&mut *running)
            .into_iter()
            .map(|entry| (group_key(&entry.group.spec().file, &entry.group.spec().name), entry))
            .collect();
        for spec in groups {
            let interval_ms = spec.interval_ms.unwrap_or(options.evaluation_interval_ms);
            let query_offset_ms = spec.query_offset_ms.unwrap_or(options.query_offset_ms);
            let key = group_key(&spec.file, &spec.name);
            if let Some(previous) = old.remove(&key) {
                let same = previous.group.spec() == &spec
                    && previous.group.interval_ms() == interval_ms
                    && previous.group.query_offset_ms() == query_offset_ms;
                if same {
                    running.push(previous);
                    continue;
                }
                let _ = previous.signal.send(RunSignal::Stop);
                let group = Arc::new(Group::new(spec, interval_ms, query_offset_ms, self.context.clone(), true));
                group.copy_state_from(&previous.group);
                running.push(self.start(group, false));
                continue;
            }
            let group = Arc::new(Group::new(spec, interval_ms, query_offset_ms, self.context.clone(), !should_restore));
            running.push(self.start(group, should_restore));
        }
        for (_, removed) in old {
            let _ = removed.signal.send(RunSignal::StopMarkStale);
        }
    }

    fn start(&self, group: Arc<Group>, should_restore: bool) -> RunningGroup {
        let (signal, receiver) = watch::channel(RunSignal::Run);
        let task = group.clone().run(receiver, self.semaphore.clone(), should_restore);
        self.env.spawner.spawn("rule-group", Box::pin(task));
        RunningGroup { group, signal }
    }

    /// Stops every group (without staleness markers: the engine is shutting down).
    pub fn stop(&self) {
        for entry in self.groups.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..) {
            let _ = entry.signal.send(RunSignal::Stop);
        }
    }

    /// The running groups, in file order.
    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|entry| entry.group.clone())
            .collect()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop();
    }
}

impl MetricsSource for Manager {
    /// Prometheus' rule metrics (rules/group.go `Metrics`), one series per group labelled
    /// `rule_group="FILE;NAME"`.
    fn render(&self, out: &mut String) {
        let groups = self.groups();
        let rows: Vec<MetricsRow> = groups
            .iter()
            .map(|group| {
                let state = group.lock();
                (
                    group_key(&group.spec().file, &group.spec().name),
                    state.counters.clone(),
                    group.interval_ms(),
                    state.rules.len(),
                    state.last_eval_timestamp_ms,
                    state.evaluation_seconds,
                )
            })
            .collect();
        let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&MetricsRow) -> f64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for row in &rows {
                let label = serde_json::to_string(&row.0).unwrap_or_default();
                let _ = writeln!(out, "{name}{{rule_group={label}}} {}", crate::api::json::format_value(value(row)));
            }
        };
        family("prometheus_rule_evaluations_total", "counter", "The total number of rule evaluations.", &|row| {
            row.1.evaluations_total as f64
        });
        family(
            "prometheus_rule_evaluation_failures_total",
            "counter",
            "The total number of rule evaluation failures.",
            &|row| row.1.evaluation_failures_total as f64,
        );
        family(
            "prometheus_rule_group_iterations_total",
            "counter",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            &|row| row.1.iterations_total as f64,
        );
        family(
            "prometheus_rule_group_iterations_missed_total",
            "counter",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            &|row| row.1.iterations_missed_total as f64,
        );
        family("prometheus_rule_group_interval_seconds", "gauge", "The interval of a rule group.", &|row| {
            row.2 as f64 / 1000.0
        });
        family(
            "prometheus_rule_group_last_duration_seconds",
            "gauge",
            "The duration of the last rule group evaluation.",
            &|row| row.5,
        );
        family(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "gauge",
            "The timestamp of the last rule group evaluation in seconds.",
            &|row| row.4.map_or(0.0, |ms| ms as f64 / 1000.0),
        );
        family(
            "prometheus_rule_group_last_evaluation_samples",
            "gauge",
            "The number of samples returned during the last rule group evaluation.",
            &|row| row.1.last_samples_count as f64,
        );
        family("prometheus_rule_group_rules", "gauge", "The number of rules.", &|row| row.3 as f64);
    }
}
