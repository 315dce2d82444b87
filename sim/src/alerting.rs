//! The alerting pipeline in the simulation: a `step` target whose condition becomes true at a
//! seeded virtual time, one engine (or an HA pair) evaluating an alerting rule over it and
//! sending to an alert manager host (the engine binary's embedded alert manager), whose webhook
//! receiver is a simulator host that records every notification at its virtual arrival time.
//!
//! Measured: the alert latency (condition true in the target's data -> webhook received) and the
//! number of firing notifications per alert group (exactly one from an HA pair).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::scenario::Scenario;

/// Port of the alert manager host's API.
pub const ALERT_MANAGER_PORT: u16 = 9093;
/// Port and path of the webhook receiver host.
pub const RECEIVER_PORT: u16 = 9300;
/// Path the webhook receiver serves.
pub const RECEIVER_PATH: &str = "/hook";
/// Rule file path on each engine host's simulated disk.
pub const RULE_FILE_PATH: &str = "/etc/engine/rules.yml";
/// Name of the alerting rule.
pub const ALERT_NAME: &str = "SimCondition";
/// Bound on the notifications the receiver keeps.
const NOTIFICATION_COUNT_MAX: usize = 10_000;

/// The `[alerting]` section of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingSection {
    /// Rule evaluation interval (Prometheus duration).
    pub evaluation_interval: String,
    /// The alerting rule's expression.
    pub expr: String,
    /// The rule's `for`.
    #[serde(rename = "for", default = "zero_duration")]
    pub for_duration: String,
    /// Alert manager `group_wait`.
    pub group_wait: String,
    /// Alert manager `group_interval`.
    pub group_interval: String,
    /// Alert manager `repeat_interval`.
    pub repeat_interval: String,
    /// Engines evaluating and sending: 1, or 2 for an HA pair (`engine`, `engine-b`).
    #[serde(default = "one")]
    pub replicas: u8,
    /// Largest random delay on the links from the engines to the alert manager, ms.
    #[serde(default)]
    pub sender_link_latency_ms_max: u64,
    /// Earliest virtual second the condition becomes true.
    pub condition_at_s_min: u64,
    /// Latest virtual second the condition becomes true.
    pub condition_at_s_max: u64,
}

fn zero_duration() -> String {
    "0s".to_string()
}

fn one() -> u8 {
    1
}

impl AlertingSection {
    /// The virtual ms at which the condition becomes true for `seed` (uniform in the window).
    pub fn condition_at_ms(&self, seed: u64) -> u64 {
        let window_ms = (self.condition_at_s_max - self.condition_at_s_min) * 1000 + 1;
        let spread = engine::io::rng::fnv1a_64(&seed.to_le_bytes()) % window_ms;
        self.condition_at_s_min * 1000 + spread
    }

    /// Checks the section's values.
    pub fn validate(&self, duration_s: u64) -> anyhow::Result<()> {
        anyhow::ensure!((1..=2).contains(&self.replicas), "alerting.replicas must be 1 or 2");
        anyhow::ensure!(
            self.condition_at_s_min <= self.condition_at_s_max && self.condition_at_s_max < duration_s,
            "alerting.condition_at_s_min..=condition_at_s_max must lie inside the run"
        );
        for (key, text) in [
            ("evaluation_interval", &self.evaluation_interval),
            ("for", &self.for_duration),
            ("group_wait", &self.group_wait),
            ("group_interval", &self.group_interval),
            ("repeat_interval", &self.repeat_interval),
        ] {
            engine::config::parse_duration_ms(text).map_err(|error| anyhow::anyhow!("alerting.{key}: {error}"))?;
        }
        Ok(())
    }

    /// The rule file every engine loads.
    pub fn rule_file_yaml(&self) -> String {
        format!(
            "groups:\n  - name: sim\n    interval: {}\n    rules:\n      - alert: {ALERT_NAME}\n        expr: {}\n        for: {}\n        labels:\n          severity: page\n        annotations:\n          summary: 'condition is {{{{ $value }}}}'\n",
            self.evaluation_interval,
            serde_json::to_string(&self.expr).unwrap_or_default(),
            self.for_duration
        )
    }

    /// The `rule_files` and `alerting` sections of replica `replica` (`a` or `b`): both send to the
    /// alert manager host, and drop their `replica` external label from alerts (as HA pairs of
    /// Prometheus do) so the alert manager sees one alert.
    pub fn engine_config_yaml(&self) -> String {
        format!(
            "rule_files: ['{RULE_FILE_PATH}']\n\
             alerting:\n  alert_relabel_configs:\n    - action: labeldrop\n      regex: replica\n  \
             alertmanagers:\n    - static_configs:\n        - targets: ['alertmanager:{ALERT_MANAGER_PORT}']\n"
        )
    }

    /// The alert manager host's whole configuration: no scrape jobs, the embedded alert manager on.
    pub fn alert_manager_config_yaml(&self) -> String {
        format!(
            "alert_manager:\n  enabled: true\n  config:\n    route:\n      receiver: sink\n      group_by: [alertname]\n      \
             group_wait: {}\n      group_interval: {}\n      repeat_interval: {}\n    receivers:\n      - name: sink\n        \
             webhook_configs:\n          - url: 'http://receiver:{RECEIVER_PORT}{RECEIVER_PATH}'\n",
            self.group_wait, self.group_interval, self.repeat_interval
        )
    }
}

/// One webhook delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Notification {
    /// Virtual ms since the simulation started.
    pub received_at_ms: u64,
    /// `status` of the payload (`firing` or `resolved`).
    pub status: String,
    /// `groupKey` of the payload.
    pub group_key: String,
    /// Alerts in the payload.
    pub alert_count: usize,
}

/// Notifications shared between the receiver host and the harness.
pub type SharedNotifications = Arc<Mutex<Vec<Notification>>>;

/// The webhook receiver host: records every POST to [`RECEIVER_PATH`].
pub async fn receiver(notifications: SharedNotifications) -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RECEIVER_PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let notifications = notifications.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let notifications = notifications.clone();
                async move {
                    let received_at_ms = turmoil::sim_elapsed().map_or(0, |elapsed| elapsed.as_millis() as u64);
                    let body = request.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
                    let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let notification = Notification {
                        received_at_ms,
                        status: payload["status"].as_str().unwrap_or("").to_string(),
                        group_key: payload["groupKey"].as_str().unwrap_or("").to_string(),
                        alert_count: payload["alerts"].as_array().map_or(0, Vec::len),
                    };
                    let mut notifications = notifications.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    if notifications.len() < NOTIFICATION_COUNT_MAX {
                        notifications.push(notification);
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What the alerting part of one run produced.
#[derive(Debug, Clone, Default)]
pub struct AlertingOutcome {
    /// When the condition became true, virtual ms.
    pub condition_at_ms: u64,
    /// Every notification received.
    pub notifications: Vec<Notification>,
}

impl AlertingOutcome {
    /// Virtual ms from the condition to the first firing notification, if one arrived.
    pub fn latency_ms(&self) -> Option<u64> {
        self.notifications
            .iter()
            .filter(|notification| notification.status == "firing")
            .map(|notification| notification.received_at_ms.saturating_sub(self.condition_at_ms))
            .min()
    }

    /// Firing notifications per group key, sorted by key.
    pub fn firing_per_group(&self) -> Vec<(String, usize)> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for notification in self.notifications.iter().filter(|notification| notification.status == "firing") {
            *counts.entry(notification.group_key.clone()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// The latency bound of the issue: scrape interval + evaluation interval + group_wait + 1 s.
    pub fn latency_bound_ms(scenario: &Scenario, alerting: &AlertingSection) -> u64 {
        let duration = |text: &str| engine::config::parse_duration_ms(text).unwrap_or(0) as u64;
        duration(&scenario.engine.scrape_interval)
            + duration(&alerting.evaluation_interval)
            + duration(&alerting.group_wait)
            + 1000
    }
}
