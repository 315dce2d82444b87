//! One rule group (rules/group.go): its rules evaluated in order at one timestamp
//! ([`Group::eval_at`]), the evaluation timestamps of its task (`EvalTimestamp`), the `for`
//! state restore (`RestoreForState`), state copying on reload (`CopyState`) and the staleness
//! markers for series that disappeared (`seriesInPreviousEval`).
//!
//! Concurrency: the state mutex is taken for the synchronous part of each rule (query,
//! state update) and released before the commit is awaited.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Semaphore};

use super::alerting::{AlertState, AlertingState, RuleAlert};
use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::{generator_url, query_vector, recording, EvalContext, Health};
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher, METRIC_NAME_LABEL, STALE_NAN_BITS};
use crate::notifier::Alert;
use crate::storage::AppendError;

/// Why a group task stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunSignal {
    /// Keep running.
    Run,
    /// Stop; the group was replaced by an equal or changed one that takes over its series.
    Stop,
    /// Stop and write staleness markers for every series the group produced (group removed).
    StopMarkStale,
}

/// Evaluation status of one rule.
#[derive(Clone, Debug)]
pub(crate) struct RuleState {
    pub(crate) spec: RuleSpec,
    /// The parsed expression printed back, as the API's `query` and generator URLs show it.
    pub(crate) query: String,
    pub(crate) health: Health,
    pub(crate) last_error: Option<String>,
    pub(crate) last_evaluation_ms: Option<i64>,
    pub(crate) evaluation_seconds: f64,
    pub(crate) alerting: AlertingState,
    /// Series written at the previous evaluation (`seriesInPreviousEval`).
    pub(crate) previous_series: BTreeSet<Labels>,
}

/// Counters of one group, rendered on `/metrics` under Prometheus' names.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupCounters {
    pub(crate) evaluations_total: u64,
    pub(crate) evaluation_failures_total: u64,
    pub(crate) iterations_total: u64,
    pub(crate) iterations_missed_total: u64,
    pub(crate) last_samples_count: u64,
}

#[derive(Debug)]
pub(crate) struct GroupState {
    pub(crate) rules: Vec<RuleState>,
    pub(crate) last_evaluation_ms: Option<i64>,
    pub(crate) evaluation_seconds: f64,
    pub(crate) last_eval_timestamp_ms: Option<i64>,
    pub(crate) counters: GroupCounters,
}

/// A group's rules and their state.
pub struct Group {
    spec: GroupSpec,
    interval_ms: i64,
    query_offset_ms: i64,
    context: Arc<EvalContext>,
    state: Mutex<GroupState>,
}

/// A copy of one rule's state for the API.
#[derive(Clone, Debug)]
pub struct RuleSnapshot {
    /// The rule as written.
    pub spec: RuleSpec,
    /// The parsed expression printed back.
    pub query: String,
    /// Last health.
    pub health: Health,
    /// Last error.
    pub last_error: Option<String>,
    /// Wall time of the last evaluation start.
    pub last_evaluation_ms: Option<i64>,
    /// Duration of the last evaluation.
    pub evaluation_seconds: f64,
    /// Highest alert state (alerting rules).
    pub state: AlertState,
    /// Pending and firing alerts, by labels.
    pub alerts: Vec<RuleAlert>,
}

/// A copy of one group's state for the API.
#[derive(Clone, Debug)]
pub struct GroupSnapshot {
    /// Name.
    pub name: String,
    /// File.
    pub file: String,
    /// Evaluation interval.
    pub interval_ms: i64,
    /// `limit`.
    pub limit: usize,
    /// Wall time of the last evaluation start.
    pub last_evaluation_ms: Option<i64>,
    /// Duration of the last evaluation.
    pub evaluation_seconds: f64,
    /// Rules in order.
    pub rules: Vec<RuleSnapshot>,
}

/// `GroupKey`: how metrics and reloads identify a group.
pub(crate) fn group_key(file: &str, name: &str) -> String {
    format!("{file};{name}")
}

impl Group {
    /// A group of `spec`'s rules; `interval_ms` and `query_offset_ms` are resolved (the
    /// group's own or the configuration's). `restored`: whether alerting rules write
    /// `ALERTS` from the first evaluation (true unless a `for` restore will run).
    pub fn new(
        spec: GroupSpec,
        interval_ms: i64,
        query_offset_ms: i64,
        context: Arc<EvalContext>,
        restored: bool,
    ) -> Self {
        assert!(interval_ms > 0, "group interval must be positive, got {interval_ms}");
        let rules = spec
            .rules
            .iter()
            .map(|rule| RuleState {
                spec: rule.clone(),
                query: promql_parser::parser::parse(&rule.expr)
                    .map_or_else(|_| rule.expr.clone(), |expr| expr.to_string()),
                health: Health::Unknown,
                last_error: None,
                last_evaluation_ms: None,
                evaluation_seconds: 0.0,
                alerting: AlertingState { active: BTreeMap::new(), restored },
                previous_series: BTreeSet::new(),
            })
            .collect();
        Group {
            spec,
            interval_ms,
            query_offset_ms,
            context,
            state: Mutex::new(GroupState {
                rules,
                last_evaluation_ms: None,
                evaluation_seconds: 0.0,
                last_eval_timestamp_ms: None,
                counters: GroupCounters::default(),
            }),
        }
    }

    /// The group as written.
    pub fn spec(&self) -> &GroupSpec {
        &self.spec
    }

    /// Resolved evaluation interval.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Resolved query offset.
    pub fn query_offset_ms(&self) -> i64 {
        self.query_offset_ms
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, GroupState> {
        // A panic while holding the lock is a bug elsewhere; the state itself stays usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The first evaluation timestamp at or before `now_ms` of this group's grid
    /// (group.go `EvalTimestamp`): `offset + k * interval`, the offset from a stable hash of
    /// name and file, so groups spread over the interval and keep their phase across restarts.
    pub fn eval_timestamp(&self, now_ms: i64) -> i64 {
        let offset_ms = (super::fnv1a64(&[&self.spec.name, &self.spec.file]) % self.interval_ms as u64) as i64;
        let adjusted_ms = now_ms - offset_ms;
        adjusted_ms - adjusted_ms.rem_euclid(self.interval_ms) + offset_ms
    }

    /// Evaluates every rule once at `time_ms` (group.go `Eval`): queries at `time_ms` minus the
    /// query offset, writes recorded series, `ALERTS` and staleness markers (one commit per
    /// rule, so later rules see earlier rules' output), and hands alerts that need sending to
    /// the sink. Needs no clock task: promtool's `test rules` runs groups through this.
    pub async fn eval_at(&self, time_ms: i64) {
        let started = tokio::time::Instant::now();
        let wall_ms = self.context.clock.now_ms();
        let sample_time_ms = time_ms - self.query_offset_ms;
        let rule_count = self.lock().rules.len();
        let mut samples_total = 0u64;
        for index in 0..rule_count {
            let rule_started = tokio::time::Instant::now();
            let outcome = {
                let mut state = self.lock();
                state.counters.evaluations_total += 1;
                let rule = &mut state.rules[index];
                rule.last_evaluation_ms = Some(wall_ms);
                let result = query_vector(&self.context.engine, &rule.query, sample_time_ms).and_then(|vector| {
                    match rule.spec.kind {
                        RuleKind::Recording => recording::apply(&rule.spec, vector, self.spec.limit),
                        RuleKind::Alerting => rule.alerting.eval(
                            &rule.spec,
                            vector,
                            time_ms,
                            sample_time_ms,
                            self.spec.limit,
                            &self.context,
                        ),
                    }
                });
                match result {
                    Err(error) => {
                        tracing::warn!(group = %self.spec.name, rule = %rule.spec.name, %error, "evaluating rule failed");
                        rule.health = Health::Bad;
                        rule.last_error = Some(error);
                        rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
                        state.counters.evaluation_failures_total += 1;
                        None
                    }
                    Ok(output) => {
                        rule.health = Health::Good;
                        rule.last_error = None;
                        let alerts = if rule.spec.kind == RuleKind::Alerting {
                            rule.alerting.alerts_to_send(time_ms, self.context.resend_delay_ms, self.interval_ms)
                        } else {
                            Vec::new()
                        };
                        let returned: BTreeSet<Labels> = output.iter().map(|(labels, _)| labels.clone()).collect();
                        let stale: Vec<Labels> = rule.previous_series.difference(&returned).cloned().collect();
                        rule.previous_series = returned;
                        Some((output, stale, alerts, rule.query.clone()))
                    }
                }
            };
            let Some((output, stale, alerts, query)) = outcome else { continue };
            if !alerts.is_empty() {
                let url = generator_url(&self.context.external_url, &query);
                self.context.sink.send(alerts.into_iter().map(|alert| to_notifier_alert(alert, &url)).collect());
            }
            samples_total += output.len() as u64;
            let error = self.write(&output, &stale, sample_time_ms).await;
            let mut state = self.lock();
            let rule = &mut state.rules[index];
            rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            if let Some(error) = error {
                rule.health = Health::Bad;
                rule.last_error = Some(error);
                state.counters.evaluation_failures_total += 1;
            }
        }
        let mut state = self.lock();
        state.last_evaluation_ms = Some(wall_ms);
        state.evaluation_seconds = started.elapsed().as_secs_f64();
        state.last_eval_timestamp_ms = Some(time_ms);
        state.counters.last_samples_count = samples_total;
    }

    /// Appends a rule's output and staleness markers and commits; the error text, if any.
    /// Out-of-order and duplicate samples are logged and skipped, as upstream.
    async fn write(&self, output: &[(Labels, f64)], stale: &[Labels], time_ms: i64) -> Option<String> {
        let mut appender = self.context.appendable.appender();
        let mut first_error = None;
        for (labels, value) in output {
            match appender.append(None, labels, time_ms, *value) {
                Ok(_) => {}
                Err(error @ (AppendError::OutOfOrder { .. } | AppendError::DuplicateTimestamp { .. })) => {
                    tracing::debug!(%error, "rule sample rejected");
                }
                Err(error) => {
                    first_error.get_or_insert_with(|| error.to_string());
                }
            }
        }
        for labels in stale {
            // A series re-added by another rule at this timestamp is not an error.
            let _ = appender.append(None, labels, time_ms, f64::from_bits(STALE_NAN_BITS));
        }
        if let Err(error) = appender.commit().await {
            first_error.get_or_insert_with(|| error.to_string());
        }
        first_error
    }

    /// Writes staleness markers at `time_ms` for every series the group's rules wrote last
    /// (a removed group, group.go `cleanupStaleSeries`).
    pub async fn mark_stale(&self, time_ms: i64) {
        let series: Vec<Labels> = {
            let mut state = self.lock();
            state.rules.iter_mut().flat_map(|rule| std::mem::take(&mut rule.previous_series)).collect()
        };
        if !series.is_empty() {
            if let Some(error) = self.write(&[], &series, time_ms).await {
                tracing::warn!(group = %self.spec.name, %error, "writing staleness markers failed");
            }
        }
    }

    /// Takes over the state of `old` (group.go `CopyState`): rules are matched by kind, name
    /// and labels, in order of occurrence, so an unchanged rule keeps its alerts and series.
    pub fn copy_state_from(&self, old: &Group) {
        let old_state = old.lock();
        let mut state = self.lock();
        let mut used = vec![false; old_state.rules.len()];
        for rule in state.rules.iter_mut() {
            let found = old_state.rules.iter().enumerate().position(|(index, old_rule)| {
                !used[index]
                    && old_rule.spec.kind == rule.spec.kind
                    && old_rule.spec.name == rule.spec.name
                    && old_rule.spec.labels == rule.spec.labels
            });
            let Some(index) = found else { continue };
            used[index] = true;
            let old_rule = &old_state.rules[index];
            rule.health = old_rule.health;
            rule.last_error = old_rule.last_error.clone();
            rule.last_evaluation_ms = old_rule.last_evaluation_ms;
            rule.evaluation_seconds = old_rule.evaluation_seconds;
            rule.previous_series = old_rule.previous_series.clone();
            if rule.spec.kind == RuleKind::Alerting {
                rule.alerting.active = old_rule.alerting.active.clone();
            }
        }
        state.last_evaluation_ms = old_state.last_evaluation_ms;
        state.evaluation_seconds = old_state.evaluation_seconds;
        state.last_eval_timestamp_ms = old_state.last_eval_timestamp_ms;
        state.counters = old_state.counters.clone();
    }

    /// Restores the `for` state of active alerts from `ALERTS_FOR_STATE` over
    /// `[time_ms - outage tolerance, time_ms]` (group.go `RestoreForState`), then lets the
    /// rules write `ALERTS` again.
    pub fn restore_for_state(&self, time_ms: i64) {
        let context = &self.context;
        let querier = match context.queryable.querier(time_ms - context.outage_tolerance_ms, time_ms) {
            Ok(querier) => Some(querier),
            Err(error) => {
                tracing::error!(%error, "restore 'for' state: open querier");
                None
            }
        };
        let mut state = self.lock();
        for rule in state.rules.iter_mut().filter(|rule| rule.spec.kind == RuleKind::Alerting) {
            let hold_ms = rule.spec.for_ms;
            rule.alerting.restored = true;
            let Some(querier) = &querier else { continue };
            if hold_ms < context.for_grace_period_ms {
                continue;
            }
            let matchers = [
                Matcher::new(MatchKind::Equal, METRIC_NAME_LABEL, "ALERTS_FOR_STATE"),
                Matcher::new(MatchKind::Equal, "alertname", &rule.spec.name),
            ];
            let Ok(matchers) = matchers.into_iter().collect::<Result<Vec<_>, _>>() else { continue };
            let mut last_by_labels: BTreeMap<Labels, (i64, f64)> = BTreeMap::new();
            for series in querier.select(None, &matchers) {
                match series {
                    Ok(series) => {
                        if let Some(last) = series.samples.last() {
                            last_by_labels.insert(series.labels.without_metric_name(), (last.timestamp_ms, last.value));
                        }
                    }
                    Err(error) => {
                        tracing::error!(alert = %rule.spec.name, %error, "restore 'for' state: select");
                        break;
                    }
                }
            }
            for alert in rule.alerting.active.values_mut() {
                let Some(&(down_ms, value)) = last_by_labels.get(&alert.labels) else { continue };
                if is_stale_nan(value) {
                    continue; // The alert was not active when the engine went down.
                }
                let down_ms = down_ms.div_euclid(1000) * 1000;
                let restored_active_at_ms = (value as i64).saturating_mul(1000);
                let remaining_pending_ms = hold_ms - (down_ms - restored_active_at_ms);
                let active_at_ms = if remaining_pending_ms <= 0 {
                    // It was firing when the engine went down; the next evaluation fires it again.
                    restored_active_at_ms
                } else if remaining_pending_ms < context.for_grace_period_ms {
                    // Fire no sooner than the grace period from now.
                    time_ms + context.for_grace_period_ms - hold_ms
                } else {
                    // Shift by the outage, so the time spent pending before it still counts.
                    restored_active_at_ms + (time_ms - down_ms)
                };
                alert.active_at_ms = active_at_ms;
            }
        }
    }

    /// A copy of the state for the API.
    pub fn snapshot(&self) -> GroupSnapshot {
        let state = self.lock();
        GroupSnapshot {
            name: self.spec.name.clone(),
            file: self.spec.file.clone(),
            interval_ms: self.interval_ms,
            limit: self.spec.limit,
            last_evaluation_ms: state.last_evaluation_ms,
            evaluation_seconds: state.evaluation_seconds,
            rules: state
                .rules
                .iter()
                .map(|rule| RuleSnapshot {
                    spec: rule.spec.clone(),
                    query: rule.query.clone(),
                    health: rule.health,
                    last_error: rule.last_error.clone(),
                    last_evaluation_ms: rule.last_evaluation_ms,
                    evaluation_seconds: rule.evaluation_seconds,
                    state: rule.alerting.state(),
                    alerts: rule
                        .alerting
                        .active
                        .values()
                        .filter(|alert| alert.state != AlertState::Inactive)
                        .cloned()
                        .collect(),
                })
                .collect(),
        }
    }

    /// The group's task (group.go `run`): waits for the first timestamp of its grid after
    /// now, evaluates every interval, counts missed iterations when an evaluation overran,
    /// restores `for` state after the second evaluation when asked to, and stops on `signal`.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut signal: watch::Receiver<RunSignal>,
        semaphore: Arc<Semaphore>,
        should_restore: bool,
    ) {
        let clock = self.context.clock.clone();
        let interval_ms = self.interval_ms;
        let mut eval_time_ms = self.eval_timestamp(clock.now_ms()) + interval_ms;
        let mut iteration = 0u64;
        loop {
            let wait_ms = (eval_time_ms - clock.now_ms()).max(0) as u64;
            tokio::select! {
                biased;
                changed = signal.changed() => {
                    let stop = *signal.borrow();
                    if changed.is_err() || stop != RunSignal::Run {
                        if stop == RunSignal::StopMarkStale {
                            self.mark_stale(clock.now_ms()).await;
                        }
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms)) => {}
            }
            {
                let Ok(_permit) = semaphore.acquire().await else { return };
                self.eval_at(eval_time_ms).await;
            }
            iteration += 1;
            self.lock().counters.iterations_total += 1;
            if should_restore && iteration == 2 {
                self.restore_for_state(clock.now_ms());
            }
            let now_ms = clock.now_ms();
            let missed = ((now_ms - eval_time_ms) / interval_ms - 1).max(0);
            if missed > 0 {
                let mut state = self.lock();
                state.counters.iterations_missed_total += missed as u64;
                state.counters.iterations_total += missed as u64;
            }
            eval_time_ms += (missed + 1) * interval_ms;
        }
    }
}

fn to_notifier_alert(alert: RuleAlert, url: &str) -> Alert {
    Alert {
        labels: alert.labels,
        annotations: alert.annotations,
        starts_at_ms: alert.fired_at_ms.unwrap_or(alert.active_at_ms),
        ends_at_ms: alert.resolved_at_ms.unwrap_or(alert.valid_until_ms),
        generator_url: url.to_string(),
    }
}
