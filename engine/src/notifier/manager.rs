//! The notifier (Prometheus notifier/notifier.go `Manager`): a bounded queue of alerts, drained
//! in batches by one task that posts each batch to every configured Alertmanager (API v2) at
//! once.
//!
//! Invariants:
//! - The queue holds at most `queue_capacity` alerts; when a send would overflow it, the oldest
//!   alerts go first and are counted in `prometheus_notifications_dropped_total`, so a slow or
//!   absent Alertmanager never grows memory and never blocks rule evaluation.
//! - Every alert gets the external labels it does not already carry, then the
//!   `alert_relabel_configs`; an alert they drop is never queued.
//! - A batch that no Alertmanager accepted is counted as dropped, as Prometheus does; rules
//!   re-send firing alerts every resend delay and resolved ones for 15 minutes, so a short outage
//!   loses no state at the receiver.
//!
//! Concurrency: the queue and configuration sit behind one mutex, never held across an await.
//! The drain task is woken through a `Notify`; each batch's requests run as tasks of their own
//! (through the environment's spawner) and the drain waits for all of them, each bounded by its
//! Alertmanager's timeout. Time comes from `tokio::time` only, so the simulator drives it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::alert::{Alert, AlertSink};
use crate::config::AlertingConfig;
use crate::io::http_client::{self, HttpEndpoint, HttpRequest};
use crate::io::Env;
use crate::metrics::MetricsSource;
use crate::relabel::{self, RelabelConfig};

/// Prometheus `--alertmanager.notification-queue-capacity` default.
pub const QUEUE_CAPACITY_DEFAULT: usize = 10_000;
/// Most alerts in one request (notifier.go `maxBatchSize`).
pub const BATCH_SIZE_MAX: usize = 256;

/// One Alertmanager the notifier posts to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Destination {
    url: String,
    endpoint: HttpEndpoint,
    timeout_ms: u64,
    authorization: Option<String>,
}

/// Per-Alertmanager counters (`alertmanager` label: the URL).
#[derive(Clone, Debug, Default)]
struct DestinationCounters {
    sent_total: u64,
    errors_total: u64,
    latency_seconds_sum: f64,
    latency_count: u64,
}

struct State {
    queue: VecDeque<Alert>,
    enabled: bool,
    relabel: Vec<RelabelConfig>,
    external_labels: BTreeMap<String, String>,
    destinations: Vec<Destination>,
    /// Keyed by URL, so the metrics' order is stable.
    counters: BTreeMap<String, DestinationCounters>,
}

/// Queues alerts and sends them to Alertmanagers.
pub struct Notifier {
    env: Env,
    queue_capacity: usize,
    state: Mutex<State>,
    more: Notify,
    dropped_total: AtomicU64,
}

impl Notifier {
    /// A notifier with a queue of `queue_capacity` alerts and no Alertmanagers yet;
    /// [`Notifier::apply_config`] sets them and [`Notifier::run`] drains the queue.
    pub fn new(env: Env, queue_capacity: usize) -> Arc<Notifier> {
        Arc::new(Notifier {
            env,
            queue_capacity: queue_capacity.max(1),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                enabled: true,
                relabel: Vec::new(),
                external_labels: BTreeMap::new(),
                destinations: Vec::new(),
                counters: BTreeMap::new(),
            }),
            more: Notify::new(),
            dropped_total: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the `alerting` section and external labels in force (at start and on every
    /// reload). URLs that do not parse are logged and skipped; the rest are used.
    pub fn apply_config(&self, alerting: &AlertingConfig, external_labels: &BTreeMap<String, String>) {
        let mut destinations = Vec::new();
        for alertmanager in &alerting.alertmanagers {
            for url in alertmanager.alert_urls() {
                match HttpEndpoint::parse(&url) {
                    Ok(endpoint) => destinations.push(Destination {
                        url,
                        endpoint,
                        timeout_ms: alertmanager.timeout_ms.max(1) as u64,
                        authorization: alertmanager.authorization.clone(),
                    }),
                    Err(error) => tracing::warn!(%url, %error, "alertmanager skipped"),
                }
            }
        }
        let mut state = self.lock();
        state.enabled = alerting.enabled;
        state.relabel = alerting.alert_relabel_configs.clone();
        state.external_labels = external_labels.clone();
        for destination in &destinations {
            state.counters.entry(destination.url.clone()).or_default();
        }
        state.destinations = destinations;
        if !state.enabled {
            state.queue.clear();
        }
    }

    /// Alerts waiting to be sent.
    pub fn queue_length(&self) -> usize {
        self.lock().queue.len()
    }

    /// Alerts dropped so far (queue overflow or no Alertmanager accepted them).
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Drains the queue forever: waits for alerts, sends a batch of at most [`BATCH_SIZE_MAX`]
    /// to every Alertmanager, and goes on while alerts remain.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.more.notified().await;
            loop {
                let (batch, destinations) = {
                    let mut state = self.lock();
                    let count = state.queue.len().min(BATCH_SIZE_MAX);
                    let batch: Vec<Alert> = state.queue.drain(..count).collect();
                    (batch, state.destinations.clone())
                };
                if batch.is_empty() {
                    break;
                }
                if !self.send_all(&batch, destinations).await {
                    self.dropped_total.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Posts `batch` to every destination at once; true when at least one accepted it.
    async fn send_all(self: &Arc<Self>, batch: &[Alert], destinations: Vec<Destination>) -> bool {
        if destinations.is_empty() {
            return false;
        }
        let body = Bytes::from(encode_alerts(batch));
        let (done_sender, mut done_receiver) = tokio::sync::mpsc::channel(destinations.len());
        for destination in destinations {
            let notifier = self.clone();
            let body = body.clone();
            let done_sender = done_sender.clone();
            let alert_count = batch.len() as u64;
            self.env.spawner.spawn(
                "notifier-send",
                Box::pin(async move {
                    let ok = notifier.send_one(&destination, body, alert_count).await;
                    let _ = done_sender.send(ok).await;
                }),
            );
        }
        drop(done_sender);
        let mut any_ok = false;
        while let Some(ok) = done_receiver.recv().await {
            any_ok |= ok;
        }
        any_ok
    }

    async fn send_one(&self, destination: &Destination, body: Bytes, alert_count: u64) -> bool {
        let started = tokio::time::Instant::now();
        let request = HttpRequest {
            method: hyper::Method::POST,
            endpoint: destination.endpoint.clone(),
            headers: destination
                .authorization
                .iter()
                .map(|value| ("Authorization".to_string(), value.clone()))
                .collect(),
            content_type: "application/json".to_string(),
            body,
        };
        let outcome =
            http_client::send(self.env.net.as_ref(), self.env.spawner.as_ref(), request, destination.timeout_ms).await;
        let error = match outcome {
            Ok(response) if (200..300).contains(&response.status) => None,
            Ok(response) => Some(format!(
                "bad response status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            )),
            Err(error) => Some(error.to_string()),
        };
        if let Some(error) = &error {
            tracing::error!(alertmanager = %destination.url, count = alert_count, %error, "error sending alerts");
        }
        let mut state = self.lock();
        let counters = state.counters.entry(destination.url.clone()).or_default();
        counters.sent_total += alert_count;
        counters.errors_total += u64::from(error.is_some());
        counters.latency_seconds_sum += started.elapsed().as_secs_f64();
        counters.latency_count += 1;
        error.is_none()
    }
}

impl AlertSink for Notifier {
    /// notifier.go `Send`: external labels, relabeling, then the queue (oldest dropped first).
    fn send(&self, alerts: Vec<Alert>) {
        let mut state = self.lock();
        if !state.enabled {
            return;
        }
        let mut prepared: Vec<Alert> = Vec::with_capacity(alerts.len());
        for mut alert in alerts {
            for (name, value) in &state.external_labels {
                if alert.labels.get(name).is_none() {
                    alert.labels.set(name, value);
                }
            }
            let Some(labels) = relabel::process(alert.labels, &state.relabel) else { continue };
            if labels.is_empty() {
                continue;
            }
            alert.labels = labels;
            prepared.push(alert);
        }
        let mut dropped = 0usize;
        if prepared.len() > self.queue_capacity {
            dropped += prepared.len() - self.queue_capacity;
            prepared.drain(..prepared.len() - self.queue_capacity);
        }
        let overflow = (state.queue.len() + prepared.len()).saturating_sub(self.queue_capacity);
        if overflow > 0 {
            state.queue.drain(..overflow);
            dropped += overflow;
        }
        if dropped > 0 {
            tracing::warn!(count = dropped, "alert notification queue full, dropping alerts");
            self.dropped_total.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        if prepared.is_empty() {
            return;
        }
        state.queue.extend(prepared);
        drop(state);
        self.more.notify_one();
    }
}

/// The API v2 body: a JSON array of `{labels, annotations, startsAt, endsAt, generatorURL}`.
pub fn encode_alerts(alerts: &[Alert]) -> Vec<u8> {
    let label_map = |labels: &crate::model::Labels| {
        serde_json::Value::Object(
            labels.iter().map(|label| (label.name.clone(), serde_json::Value::String(label.value.clone()))).collect(),
        )
    };
    let array: Vec<serde_json::Value> = alerts
        .iter()
        .map(|alert| {
            let mut object = serde_json::Map::new();
            object.insert("labels".to_string(), label_map(&alert.labels));
            object.insert("annotations".to_string(), label_map(&alert.annotations));
            if alert.starts_at_ms != 0 {
                object.insert("startsAt".to_string(), crate::calendar::format_rfc3339_ms(alert.starts_at_ms).into());
            }
            if alert.ends_at_ms != 0 {
                object.insert("endsAt".to_string(), crate::calendar::format_rfc3339_ms(alert.ends_at_ms).into());
            }
            object.insert("generatorURL".to_string(), alert.generator_url.clone().into());
            serde_json::Value::Object(object)
        })
        .collect();
    serde_json::to_vec(&array).unwrap_or_default()
}

impl MetricsSource for Notifier {
    /// Prometheus' notifier metrics, with the same names and labels.
    fn render(&self, out: &mut String) {
        let state = self.lock();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let label = |url: &str| serde_json::to_string(url).unwrap_or_default();
        header(
            out,
            "prometheus_notifications_latency_seconds",
            "summary",
            "Latency quantiles for sending alert notifications.",
        );
        for (url, counters) in &state.counters {
            let _ = writeln!(
                out,
                "prometheus_notifications_latency_seconds_sum{{alertmanager={}}} {}",
                label(url),
                crate::api::json::format_value(counters.latency_seconds_sum)
            );
            let _ = writeln!(
                out,
                "prometheus_notifications_latency_seconds_count{{alertmanager={}}} {}",
                label(url),
                counters.latency_count
            );
        }
        header(
            out,
            "prometheus_notifications_errors_total",
            "counter",
            "Total number of errors sending alert notifications.",
        );
        for (url, counters) in &state.counters {
            let _ = writeln!(
                out,
                "prometheus_notifications_errors_total{{alertmanager={}}} {}",
                label(url),
                counters.errors_total
            );
        }
        header(out, "prometheus_notifications_sent_total", "counter", "Total number of alerts sent.");
        for (url, counters) in &state.counters {
            let _ = writeln!(
                out,
                "prometheus_notifications_sent_total{{alertmanager={}}} {}",
                label(url),
                counters.sent_total
            );
        }
        for (name, kind, help, value) in [
            (
                "prometheus_notifications_dropped_total",
                "counter",
                "Total number of alerts dropped due to errors when sending to Alertmanager.",
                self.dropped_total() as f64,
            ),
            (
                "prometheus_notifications_queue_length",
                "gauge",
                "The number of alert notifications in the queue.",
                state.queue.len() as f64,
            ),
            (
                "prometheus_notifications_queue_capacity",
                "gauge",
                "The capacity of the alert notifications queue.",
                self.queue_capacity as f64,
            ),
            (
                "prometheus_notifications_alertmanagers_discovered",
                "gauge",
                "The number of alertmanagers discovered and active.",
                state.destinations.len() as f64,
            ),
        ] {
            header(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests;
