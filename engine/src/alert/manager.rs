//! The embedded alert manager at run time (Alertmanager's dispatcher, notification pipeline and
//! maintenance): alerts arrive ([`AlertManager::put_alerts`], from the v2 API or in process),
//! join one aggregation group per matching route, and each group is flushed after `group_wait`,
//! then every `group_interval`: muted alerts (inhibited or silenced) are left out, the
//! notification log decides whether each integration of the group's receiver must hear about
//! it, and the notifications are delivered with retries.
//!
//! Invariants:
//! - One group per (route id, group key); an alert is in the groups of every route it matches.
//! - A group is flushed by one delivery at a time (`in_flight`), as Alertmanager flushes a group
//!   synchronously; a flush due meanwhile waits for it.
//! - The notification log is written only for integrations that accepted the notification, so
//!   a failed delivery is tried again at the next flush; it and the silences are persisted after
//!   every change (write to a temporary file, sync, rename) so a restart neither forgets silences
//!   nor notifies again.
//! - Resolved alerts leave a group after a flush that notified them (or had nothing to send),
//!   unless they changed meanwhile; empty groups are removed.
//! - Bounded: alerts ([`ALERT_COUNT_MAX`]), groups (one per alert and route at most), silences and
//!   log entries (their own bounds).
//!
//! Concurrency: all state behind one mutex, never held across an await. One dispatcher task
//! sleeps until the earliest flush is due (or a new alert wakes it); deliveries run as tasks of
//! their own. Wall time comes from the environment's clock, sleeps from `tokio::time`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use super::config::AlertManagerConfig;
use super::inhibit::Inhibitor;
use super::nflog::{self, NotificationLog};
use super::receiver::{self, Integration, Notification};
use super::route::Route;
use super::silence::Silences;
use super::store::{AlertError, AlertStore, StoredAlert};
use crate::io::Env;
use crate::metrics::MetricsSource;
use crate::model::Labels;
use crate::notifier::{Alert, AlertSink};

/// Most alerts held.
pub const ALERT_COUNT_MAX: usize = 100_000;
/// How often expired silences, log entries and old resolved alerts are collected.
pub const MAINTENANCE_INTERVAL_MS: u64 = 15 * 60_000;
/// The notification log's file in the data directory.
pub const NFLOG_FILE_NAME: &str = "nflog.json";
/// The silences' file in the data directory.
pub const SILENCES_FILE_NAME: &str = "silences.json";
/// Longest the dispatcher sleeps without a flush due, so maintenance runs.
const IDLE_SLEEP_MS: u64 = 60_000;

/// Settings besides the configuration.
#[derive(Clone, Debug)]
pub struct AlertManagerOptions {
    /// Where the notification log and silences are persisted.
    pub data_dir: PathBuf,
    /// URL the alert manager is reached at (payloads' `externalURL`).
    pub external_url: String,
    /// How long log entries and expired silences are kept (`--data.retention`, 120 h).
    pub retention_ms: i64,
}

/// The options of the route an aggregation group belongs to.
#[derive(Clone, Debug)]
struct GroupOptions {
    receiver: String,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
}

#[derive(Debug)]
struct Group {
    options: GroupOptions,
    group_key: String,
    group_labels: Labels,
    fingerprints: BTreeSet<u64>,
    next_flush_ms: i64,
    has_flushed: bool,
    in_flight: bool,
}

/// One delivery a flush decided on.
struct Job {
    integration: Integration,
    log_key: String,
    firing: BTreeSet<u64>,
    resolved: BTreeSet<u64>,
    body: Bytes,
}

/// A flushed group's deliveries.
struct FlushWork {
    group_id: (String, String),
    jobs: Vec<Job>,
    /// Resolved alerts notified (or not needing it) and their update time: removed afterwards
    /// unless they changed.
    resolved: Vec<(u64, i64)>,
    deadline_ms: u64,
}

#[derive(Debug, Default)]
struct IntegrationCounters {
    notifications_total: u64,
    notifications_failed_total: u64,
    requests_total: u64,
    requests_failed_total: u64,
}

struct State {
    config: Arc<AlertManagerConfig>,
    route: Arc<Route>,
    inhibitor: Inhibitor,
    silences: Silences,
    alerts: AlertStore,
    nflog: NotificationLog,
    groups: BTreeMap<(String, String), Group>,
    counters: BTreeMap<&'static str, IntegrationCounters>,
    received_firing_total: u64,
    received_resolved_total: u64,
    invalid_total: u64,
}

/// The embedded alert manager.
pub struct AlertManager {
    env: Env,
    options: AlertManagerOptions,
    state: Mutex<State>,
    wake: Notify,
    random_counter: AtomicU64,
    started_at_ms: i64,
}

/// An alert as the v2 API lists it.
#[derive(Clone, Debug)]
pub struct AlertView {
    /// The stored alert.
    pub stored: StoredAlert,
    /// Receivers of the routes it matches.
    pub receivers: Vec<String>,
    /// Ids of the silences muting it.
    pub silenced_by: Vec<String>,
    /// Whether an inhibition rule mutes it (Alertmanager lists the inhibiting fingerprints).
    pub inhibited_by: Vec<String>,
}

impl AlertView {
    /// `active`, `suppressed` (muted) or `unprocessed`.
    pub fn state(&self) -> &'static str {
        if self.silenced_by.is_empty() && self.inhibited_by.is_empty() {
            "active"
        } else {
            "suppressed"
        }
    }
}

/// A group as `/api/v2/alerts/groups` lists it.
#[derive(Clone, Debug)]
pub struct GroupView {
    /// Group labels.
    pub labels: Labels,
    /// The receiver.
    pub receiver: String,
    /// The alerts.
    pub alerts: Vec<AlertView>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AlertManager {
    /// An alert manager on `config`, with the notification log and silences read back from
    /// `options.data_dir` (a missing or unreadable file is logged and starts empty).
    pub fn new(env: Env, config: AlertManagerConfig, options: AlertManagerOptions) -> Arc<AlertManager> {
        let nflog = match env.fs.read(&options.data_dir.join(NFLOG_FILE_NAME)) {
            Ok(bytes) => NotificationLog::from_snapshot(&bytes).unwrap_or_else(|error| {
                tracing::error!(%error, "notification log unreadable; starting empty");
                NotificationLog::default()
            }),
            Err(_) => NotificationLog::default(),
        };
        let silences = match env.fs.read(&options.data_dir.join(SILENCES_FILE_NAME)) {
            Ok(bytes) => Silences::from_snapshot(&bytes, options.retention_ms).unwrap_or_else(|error| {
                tracing::error!(%error, "silences unreadable; starting empty");
                Silences::new(options.retention_ms)
            }),
            Err(_) => Silences::new(options.retention_ms),
        };
        let route = Arc::new(Route::from_config(&config));
        let inhibitor = Inhibitor::from_config(&config);
        let started_at_ms = env.clock.now_ms();
        Arc::new(AlertManager {
            started_at_ms,
            env,
            options,
            state: Mutex::new(State {
                config: Arc::new(config),
                route,
                inhibitor,
                silences,
                alerts: AlertStore::new(ALERT_COUNT_MAX),
                nflog,
                groups: BTreeMap::new(),
                counters: BTreeMap::new(),
                received_firing_total: 0,
                received_resolved_total: 0,
                invalid_total: 0,
            }),
            wake: Notify::new(),
            random_counter: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> i64 {
        self.env.clock.now_ms()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// When this alert manager started, Unix ms (`/api/v2/status` uptime).
    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<AlertManagerConfig> {
        self.state().config.clone()
    }

    /// Applies a new configuration: a new routing tree and inhibitor; groups are rebuilt from
    /// the alerts held (their first flush waits `group_wait` again; the log keeps them from
    /// notifying twice).
    pub fn apply_config(&self, config: AlertManagerConfig) {
        let now_ms = self.now_ms();
        let mut state = self.state();
        state.route = Arc::new(Route::from_config(&config));
        let mut inhibitor = Inhibitor::from_config(&config);
        for stored in state.alerts.iter() {
            inhibitor.put(&stored.alert);
        }
        state.inhibitor = inhibitor;
        state.config = Arc::new(config);
        state.groups.clear();
        let alerts: Vec<StoredAlert> = state.alerts.iter().cloned().collect();
        for stored in &alerts {
            route_alert(&mut state, stored, now_ms);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Receives alerts (API v2 `POST /api/v2/alerts`); the errors of the alerts refused.
    pub fn put_alerts(&self, alerts: Vec<Alert>) -> Vec<String> {
        let now_ms = self.now_ms();
        let mut errors = Vec::new();
        let mut state = self.state();
        let resolve_timeout_ms = state.config.global.resolve_timeout_ms;
        for alert in alerts {
            let prepared = AlertStore::prepare(alert, now_ms, resolve_timeout_ms);
            let stored = match prepared.and_then(|stored| state.alerts.put(stored)) {
                Ok(stored) => stored,
                Err(error) => {
                    state.invalid_total += u64::from(!matches!(error, AlertError::Full(_)));
                    errors.push(error.to_string());
                    continue;
                }
            };
            if stored.is_resolved_at(now_ms) {
                state.received_resolved_total += 1;
            } else {
                state.received_firing_total += 1;
            }
            state.inhibitor.put(&stored.alert);
            route_alert(&mut state, &stored, now_ms);
        }
        drop(state);
        self.wake.notify_one();
        errors
    }

    /// Runs the dispatcher and maintenance until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut next_maintenance_ms = self.now_ms() + MAINTENANCE_INTERVAL_MS as i64;
        loop {
            let now_ms = self.now_ms();
            if now_ms >= next_maintenance_ms {
                self.maintain(now_ms);
                next_maintenance_ms = now_ms + MAINTENANCE_INTERVAL_MS as i64;
            }
            let works = self.flush_due(now_ms);
            for work in works {
                let manager = self.clone();
                self.env.spawner.spawn("alert-manager-notify", Box::pin(async move { manager.deliver(work).await }));
            }
            let next_flush_ms =
                self.state().groups.values().filter(|group| !group.in_flight).map(|group| group.next_flush_ms).min();
            let wait_ms = next_flush_ms
                .unwrap_or(i64::MAX)
                .min(next_maintenance_ms)
                .saturating_sub(self.now_ms())
                .clamp(0, IDLE_SLEEP_MS as i64) as u64;
            if wait_ms == 0 {
                // A flush is due (or the clock did not move): let other tasks run first.
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
                _ = self.wake.notified() => {}
            }
        }
    }

    /// Collects what due groups must send and schedules their next flush.
    fn flush_due(&self, now_ms: i64) -> Vec<FlushWork> {
        let mut state = self.state();
        let due: Vec<(String, String)> = state
            .groups
            .iter()
            .filter(|(_, group)| !group.in_flight && group.next_flush_ms <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let mut works = Vec::new();
        for group_id in due {
            if let Some(work) = flush_group(&mut state, &group_id, now_ms, &self.options) {
                works.push(work);
            }
        }
        works
    }

    async fn deliver(self: Arc<Self>, work: FlushWork) {
        let mut outcomes = Vec::with_capacity(work.jobs.len());
        for job in &work.jobs {
            let delivery = receiver::deliver(&self.env, &job.integration, job.body.clone(), work.deadline_ms).await;
            if let Some(error) = &delivery.error {
                tracing::warn!(
                    integration = job.integration.name(),
                    attempts = delivery.attempt_count,
                    %error,
                    "notify failed"
                );
            }
            outcomes.push(delivery);
        }
        let now_ms = self.now_ms();
        let retention_ms = self.options.retention_ms;
        let mut state = self.state();
        let mut all_ok = true;
        for (job, delivery) in work.jobs.iter().zip(&outcomes) {
            let counters = state.counters.entry(job.integration.name()).or_default();
            counters.notifications_total += 1;
            counters.requests_total += u64::from(delivery.attempt_count);
            counters.requests_failed_total +=
                u64::from(delivery.attempt_count) - u64::from(delivery.error.is_none() && delivery.attempt_count > 0);
            if delivery.error.is_some() {
                counters.notifications_failed_total += 1;
                all_ok = false;
                continue;
            }
            state.nflog.log(&job.log_key, job.firing.clone(), job.resolved.clone(), now_ms, retention_ms);
        }
        if all_ok {
            remove_resolved(&mut state, &work.group_id, &work.resolved);
        }
        if let Some(group) = state.groups.get_mut(&work.group_id) {
            group.in_flight = false;
        }
        let snapshot = state.nflog.snapshot();
        drop(state);
        self.persist(NFLOG_FILE_NAME, &snapshot);
        self.wake.notify_one();
    }

    fn maintain(&self, now_ms: i64) {
        let mut state = self.state();
        let silences_removed = state.silences.gc(now_ms);
        let entries_removed = state.nflog.gc(now_ms);
        state.inhibitor.gc(now_ms);
        // Resolved alerts no group holds any more are forgotten after the resolve timeout.
        let resolve_timeout_ms = state.config.global.resolve_timeout_ms;
        let held: BTreeSet<u64> = state.groups.values().flat_map(|group| group.fingerprints.iter().copied()).collect();
        let forgotten: Vec<u64> = state
            .alerts
            .iter()
            .filter(|stored| {
                stored.alert.ends_at_ms <= now_ms - resolve_timeout_ms && !held.contains(&stored.fingerprint)
            })
            .map(|stored| stored.fingerprint)
            .collect();
        for fingerprint in forgotten {
            if let Some(stored) = state.alerts.remove(fingerprint) {
                state.inhibitor.remove(&stored.alert.labels);
            }
        }
        let (nflog, silences) = (state.nflog.snapshot(), state.silences.snapshot());
        drop(state);
        if entries_removed > 0 {
            self.persist(NFLOG_FILE_NAME, &nflog);
        }
        if silences_removed > 0 {
            self.persist(SILENCES_FILE_NAME, &silences);
        }
    }

    /// Writes `bytes` to `name` in the data directory atomically; failures are logged (the
    /// state stays in memory and is written again at the next change).
    fn persist(&self, name: &str, bytes: &[u8]) {
        if let Err(error) = write_atomically(self.env.fs.as_ref(), &self.options.data_dir, name, bytes) {
            tracing::error!(file = name, %error, "persisting alert manager state failed");
        }
    }

    /// A fresh random value for silence ids (the environment's seeded stream, so the
    /// simulator's ids are reproducible).
    fn next_random(&self) -> u64 {
        let counter = self.random_counter.fetch_add(1, Ordering::Relaxed);
        crate::io::rng::fnv1a_64(&[self.env.random.seed().to_le_bytes(), counter.to_le_bytes()].concat())
    }

    /// Creates or updates a silence; its id.
    pub fn set_silence(
        &self,
        posted: super::silence::PostableSilence,
    ) -> Result<super::silence::SilenceId, super::silence::SilenceError> {
        let now_ms = self.now_ms();
        let random = self.next_random();
        let mut state = self.state();
        let id = state.silences.set(posted, now_ms, random)?;
        let snapshot = state.silences.snapshot();
        drop(state);
        self.persist(SILENCES_FILE_NAME, &snapshot);
        Ok(id)
    }

    /// Expires a silence.
    pub fn expire_silence(&self, id: &super::silence::SilenceId) -> Result<(), super::silence::SilenceError> {
        let now_ms = self.now_ms();
        let mut state = self.state();
        state.silences.expire(id, now_ms)?;
        let snapshot = state.silences.snapshot();
        drop(state);
        self.persist(SILENCES_FILE_NAME, &snapshot);
        Ok(())
    }

    /// Silences matching every matcher of `filter`, as API v2 shows them.
    pub fn silences(&self, filter: &[super::matcher::Matcher]) -> Vec<super::silence::GettableSilence> {
        let now_ms = self.now_ms();
        let state = self.state();
        state.silences.list(filter, now_ms).into_iter().map(|silence| silence.to_gettable(now_ms)).collect()
    }

    /// One silence.
    pub fn silence(&self, id: &super::silence::SilenceId) -> Option<super::silence::GettableSilence> {
        let now_ms = self.now_ms();
        self.state().silences.get(id).map(|silence| silence.to_gettable(now_ms))
    }

    /// The alerts held that have not resolved, with their routing and muting.
    pub fn alerts(&self) -> Vec<AlertView> {
        let now_ms = self.now_ms();
        let state = self.state();
        state
            .alerts
            .iter()
            .filter(|stored| !stored.is_resolved_at(now_ms))
            .map(|stored| view(&state, stored, now_ms))
            .collect()
    }

    /// The aggregation groups with their unresolved alerts, in (receiver, labels) order.
    pub fn groups(&self) -> Vec<GroupView> {
        let now_ms = self.now_ms();
        let state = self.state();
        let mut views: Vec<GroupView> = state
            .groups
            .values()
            .map(|group| GroupView {
                labels: group.group_labels.clone(),
                receiver: group.options.receiver.clone(),
                alerts: group
                    .fingerprints
                    .iter()
                    .filter_map(|fingerprint| state.alerts.get(*fingerprint))
                    .filter(|stored| !stored.is_resolved_at(now_ms))
                    .map(|stored| view(&state, stored, now_ms))
                    .collect(),
            })
            .filter(|view| !view.alerts.is_empty())
            .collect();
        views.sort_by(|a, b| (&a.receiver, &a.labels).cmp(&(&b.receiver, &b.labels)));
        views
    }
}

impl AlertSink for AlertManager {
    /// In-process delivery from the engine's own rules (no HTTP hop).
    fn send(&self, alerts: Vec<Alert>) {
        for error in self.put_alerts(alerts) {
            tracing::warn!(%error, "alert refused");
        }
    }
}

fn view(state: &State, stored: &StoredAlert, now_ms: i64) -> AlertView {
    let labels = &stored.alert.labels;
    let mut receivers: Vec<String> =
        state.route.matching(labels).into_iter().map(|route| route.receiver.clone()).collect();
    receivers.dedup();
    AlertView {
        stored: stored.clone(),
        receivers,
        silenced_by: state.silences.mutes(labels, now_ms).into_iter().map(|id| id.0).collect(),
        inhibited_by: state
            .inhibitor
            .inhibited_by(labels, now_ms)
            .map(|source| vec![format!("{:016x}", super::store::fingerprint(source))])
            .unwrap_or_default(),
    }
}

/// Adds `stored` to the group of every route it matches (dispatch.go `processAlert`).
fn route_alert(state: &mut State, stored: &StoredAlert, now_ms: i64) {
    let route = state.route.clone();
    for node in route.matching(&stored.alert.labels) {
        let group_key = node.group_key(&stored.alert.labels);
        let group_id = (node.id().to_string(), group_key.clone());
        let group = state.groups.entry(group_id).or_insert_with(|| Group {
            options: GroupOptions {
                receiver: node.receiver.clone(),
                group_wait_ms: node.group_wait_ms,
                group_interval_ms: node.group_interval_ms,
                repeat_interval_ms: node.repeat_interval_ms,
            },
            group_key,
            group_labels: node.group_labels(&stored.alert.labels),
            fingerprints: BTreeSet::new(),
            next_flush_ms: now_ms + node.group_wait_ms,
            has_flushed: false,
            in_flight: false,
        });
        group.fingerprints.insert(stored.fingerprint);
        // An alert that started more than group_wait ago need not wait (aggrGroup.insert).
        if !group.has_flushed && stored.alert.starts_at_ms + group.options.group_wait_ms < now_ms {
            group.next_flush_ms = group.next_flush_ms.min(now_ms);
        }
    }
}

/// One flush (aggrGroup.flush and the notification pipeline up to delivery).
fn flush_group(
    state: &mut State,
    group_id: &(String, String),
    now_ms: i64,
    manager_options: &AlertManagerOptions,
) -> Option<FlushWork> {
    let external_url = manager_options.external_url.as_str();
    let retention_ms = manager_options.retention_ms;
    let group = state.groups.get(group_id)?;
    let options = group.options.clone();
    let mut alerts: Vec<StoredAlert> =
        group.fingerprints.iter().filter_map(|fingerprint| state.alerts.get(*fingerprint)).cloned().collect();
    let group_key = group.group_key.clone();
    let group_labels = group.group_labels.clone();
    alerts
        .sort_by(|a, b| (a.is_resolved_at(now_ms), &a.alert.labels).cmp(&(b.is_resolved_at(now_ms), &b.alert.labels)));
    let resolved_all: Vec<(u64, i64)> = alerts
        .iter()
        .filter(|stored| stored.is_resolved_at(now_ms))
        .map(|stored| (stored.fingerprint, stored.updated_at_ms))
        .collect();
    let receiver_config = state.config.receiver(&options.receiver).cloned();
    let integrations = receiver_config.as_ref().map(Integration::all).unwrap_or_default();
    // Fingerprints some integration was told were firing: with send_resolved_if_muted, their
    // resolve is sent even when muted.
    let told_firing: BTreeSet<u64> = integrations
        .iter()
        .filter_map(|(name, index, _)| {
            state.nflog.get(&nflog::entry_key(&group_key, &options.receiver, name, *index), now_ms)
        })
        .flat_map(|entry| entry.firing.iter().copied())
        .collect();
    let send_resolved_if_muted = state.config.send_resolved_if_muted;
    let unmuted: Vec<StoredAlert> = alerts
        .into_iter()
        .filter(|stored| {
            let labels = &stored.alert.labels;
            let muted =
                state.inhibitor.is_inhibited(labels, now_ms) || !state.silences.mutes(labels, now_ms).is_empty();
            !muted
                || (send_resolved_if_muted
                    && stored.is_resolved_at(now_ms)
                    && told_firing.contains(&stored.fingerprint))
        })
        .collect();
    let group = state.groups.get_mut(group_id)?;
    group.next_flush_ms = now_ms + options.group_interval_ms;
    group.has_flushed = true;
    let mut jobs = Vec::new();
    // Everything muted: the pipeline stops here (MultiStage with no alerts left).
    if !unmuted.is_empty() {
        for (name, index, integration) in integrations {
            let log_key = nflog::entry_key(&group_key, &options.receiver, name, index);
            let (firing, resolved): (Vec<&StoredAlert>, Vec<&StoredAlert>) =
                unmuted.iter().partition(|stored| !stored.is_resolved_at(now_ms));
            let firing: BTreeSet<u64> = firing.iter().map(|stored| stored.fingerprint).collect();
            let resolved: BTreeSet<u64> = resolved.iter().map(|stored| stored.fingerprint).collect();
            let send_resolved = integration.send_resolved();
            let entry = state.nflog.get(&log_key, now_ms);
            if !nflog::needs_update(entry, &firing, &resolved, send_resolved, options.repeat_interval_ms, now_ms) {
                continue;
            }
            let shown: Vec<StoredAlert> =
                unmuted.iter().filter(|stored| send_resolved || !stored.is_resolved_at(now_ms)).cloned().collect();
            if shown.is_empty() {
                // Only resolved alerts and the receiver does not want them: log and move on.
                state.nflog.log(&log_key, firing, resolved, now_ms, retention_ms);
                continue;
            }
            let notification = Notification {
                receiver: options.receiver.clone(),
                group_key: group_key.clone(),
                group_labels: group_labels.clone(),
                alerts: shown,
                external_url: external_url.to_string(),
                now_ms,
            };
            let body = Bytes::from(integration.body(&notification));
            jobs.push(Job { integration, log_key, firing, resolved, body });
        }
    }
    if jobs.is_empty() {
        remove_resolved(state, group_id, &resolved_all);
        return None;
    }
    if let Some(group) = state.groups.get_mut(group_id) {
        group.in_flight = true;
    }
    // Retries stop before the next flush is due.
    let deadline_ms = options.group_interval_ms.max(1) as u64;
    Some(FlushWork { group_id: group_id.clone(), jobs, resolved: resolved_all, deadline_ms })
}

/// Drops resolved alerts a flush dealt with from the group, unless they were updated since
/// (`DeleteIfNotModified`); removes the group when it is empty.
fn remove_resolved(state: &mut State, group_id: &(String, String), resolved: &[(u64, i64)]) {
    let Some(group) = state.groups.get_mut(group_id) else { return };
    for (fingerprint, updated_at_ms) in resolved {
        let unchanged = state.alerts.get(*fingerprint).is_none_or(|stored| stored.updated_at_ms == *updated_at_ms);
        if unchanged {
            group.fingerprints.remove(fingerprint);
        }
    }
    if group.fingerprints.is_empty() {
        state.groups.remove(group_id);
    }
}

/// Writes `bytes` to `dir/name` through a temporary file, synced and renamed into place.
fn write_atomically(fs: &dyn crate::io::FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    fs.create_dir_all(dir)?;
    let temporary = dir.join(format!("{name}.tmp"));
    match fs.remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = fs.open_append(&temporary)?;
    file.write_all(bytes)?;
    file.sync()?;
    drop(file);
    fs.rename(&temporary, &dir.join(name))?;
    fs.sync_dir(dir)
}

/// A per-integration counter family: name, help, and the counter it reads.
type CounterFamily = (&'static str, &'static str, fn(&IntegrationCounters) -> u64);

impl MetricsSource for AlertManager {
    /// Alertmanager's metric names for what the embedded manager does.
    fn render(&self, out: &mut String) {
        let now_ms = self.now_ms();
        let state = self.state();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let (mut active, mut suppressed) = (0u64, 0u64);
        for stored in state.alerts.iter().filter(|stored| !stored.is_resolved_at(now_ms)) {
            let labels = &stored.alert.labels;
            if state.inhibitor.is_inhibited(labels, now_ms) || !state.silences.mutes(labels, now_ms).is_empty() {
                suppressed += 1;
            } else {
                active += 1;
            }
        }
        header(out, "alertmanager_alerts", "gauge", "How many alerts by state.");
        let _ = writeln!(out, "alertmanager_alerts{{state=\"active\"}} {active}");
        let _ = writeln!(out, "alertmanager_alerts{{state=\"suppressed\"}} {suppressed}");
        header(out, "alertmanager_alerts_received_total", "counter", "The total number of received alerts.");
        let _ =
            writeln!(out, "alertmanager_alerts_received_total{{status=\"firing\"}} {}", state.received_firing_total);
        let _ = writeln!(
            out,
            "alertmanager_alerts_received_total{{status=\"resolved\"}} {}",
            state.received_resolved_total
        );
        header(
            out,
            "alertmanager_alerts_invalid_total",
            "counter",
            "The total number of received alerts that were invalid.",
        );
        let _ = writeln!(out, "alertmanager_alerts_invalid_total {}", state.invalid_total);
        let families: [CounterFamily; 4] = [
            ("alertmanager_notifications_total", "The total number of attempted notifications.", |c| {
                c.notifications_total
            }),
            ("alertmanager_notifications_failed_total", "The total number of failed notifications.", |c| {
                c.notifications_failed_total
            }),
            ("alertmanager_notification_requests_total", "The total number of attempted notification requests.", |c| {
                c.requests_total
            }),
            (
                "alertmanager_notification_requests_failed_total",
                "The total number of failed notification requests.",
                |c| c.requests_failed_total,
            ),
        ];
        for (name, help, value) in families {
            header(out, name, "counter", help);
            for integration in ["pagerduty", "slack", "webhook"] {
                let count = state.counters.get(integration).map_or(0, value);
                let _ = writeln!(out, "{name}{{integration=\"{integration}\"}} {count}");
            }
        }
        let counts = state.silences.counts(now_ms);
        header(out, "alertmanager_silences", "gauge", "How many silences by state.");
        let _ = writeln!(out, "alertmanager_silences{{state=\"active\"}} {}", counts.active_count);
        let _ = writeln!(out, "alertmanager_silences{{state=\"expired\"}} {}", counts.expired_count);
        let _ = writeln!(out, "alertmanager_silences{{state=\"pending\"}} {}", counts.pending_count);
        header(out, "alertmanager_nflog_entries", "gauge", "Entries in the notification log.");
        let _ = writeln!(out, "alertmanager_nflog_entries {}", state.nflog.len());
        header(out, "alertmanager_aggregation_groups", "gauge", "Number of active aggregation groups.");
        let _ = writeln!(out, "alertmanager_aggregation_groups {}", state.groups.len());
    }
}

#[cfg(test)]
mod tests;
