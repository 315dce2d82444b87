//! Receivers: the HTTP payloads of a notification (Alertmanager's webhook version 4 JSON, a
//! Slack incoming-webhook message, a PagerDuty Events API v1/v2 event) and their delivery with
//! retries (capped exponential backoff, bounded by a deadline).
//!
//! Payload building is pure: a [`Notification`] and an [`Integration`] give the request body.
//! Delivery goes through `io::http_client` and `tokio::time`, so the simulator drives it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::config::{PagerdutyConfig, ReceiverConfig, SlackConfig, WebhookConfig};
use super::route::format_label_set;
use super::store::StoredAlert;
use crate::calendar::format_rfc3339_millis;
use crate::io::http_client::{self, HttpEndpoint, HttpRequest};
use crate::io::Env;
use crate::model::Labels;
use crate::template::{Context, StructValue, Template, Value};

/// First retry delay.
pub const RETRY_BACKOFF_MS_MIN: u64 = 500;
/// Longest delay between two attempts.
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;
/// Most attempts of one notification.
pub const ATTEMPT_COUNT_MAX: u32 = 10;
/// Longest one request may take.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// One way a receiver is reached: its `*_configs` entry and its index among them.
#[derive(Clone, Debug, PartialEq)]
pub enum Integration {
    /// `webhook_configs[index]`.
    Webhook(WebhookConfig),
    /// `slack_configs[index]`.
    Slack(SlackConfig),
    /// `pagerduty_configs[index]`.
    Pagerduty(PagerdutyConfig),
}

impl Integration {
    /// Every integration of `receiver`, with its name and index (`webhook`, 0), in config order.
    pub fn all(receiver: &ReceiverConfig) -> Vec<(&'static str, usize, Integration)> {
        let mut out = Vec::new();
        for (index, config) in receiver.webhook_configs.iter().enumerate() {
            out.push(("webhook", index, Integration::Webhook(config.clone())));
        }
        for (index, config) in receiver.slack_configs.iter().enumerate() {
            out.push(("slack", index, Integration::Slack(config.clone())));
        }
        for (index, config) in receiver.pagerduty_configs.iter().enumerate() {
            out.push(("pagerduty", index, Integration::Pagerduty(config.clone())));
        }
        out
    }

    /// Whether resolved alerts are notified.
    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Webhook(config) => config.send_resolved,
            Integration::Slack(config) => config.send_resolved,
            Integration::Pagerduty(config) => config.send_resolved,
        }
    }

    /// The integration's name in metrics (`integration` label).
    pub fn name(&self) -> &'static str {
        match self {
            Integration::Webhook(_) => "webhook",
            Integration::Slack(_) => "slack",
            Integration::Pagerduty(_) => "pagerduty",
        }
    }

    /// The URL posted to.
    pub fn url(&self) -> &str {
        match self {
            Integration::Webhook(config) => &config.url,
            Integration::Slack(config) => &config.api_url,
            Integration::Pagerduty(config) => &config.url,
        }
    }

    /// The request body for `notification`.
    pub fn body(&self, notification: &Notification) -> Vec<u8> {
        let value = match self {
            Integration::Webhook(config) => webhook_body(config, notification),
            Integration::Slack(config) => slack_body(config, notification),
            Integration::Pagerduty(config) => pagerduty_body(config, notification),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// What one notification tells a receiver about one group.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// The group key (`{}:{alertname="X"}`).
    pub group_key: String,
    /// The group's labels.
    pub group_labels: Labels,
    /// The alerts, firing first, each group in label order.
    pub alerts: Vec<StoredAlert>,
    /// The alert manager's external URL.
    pub external_url: String,
    /// When the notification is built, Unix ms (decides which alerts are resolved).
    pub now_ms: i64,
}

impl Notification {
    /// `firing` when any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|stored| !stored.is_resolved_at(self.now_ms)) {
            "firing"
        } else {
            "resolved"
        }
    }

    fn firing_count(&self) -> usize {
        self.alerts.iter().filter(|stored| !stored.is_resolved_at(self.now_ms)).count()
    }

    /// Labels all alerts share (template `.CommonLabels`).
    pub fn common_labels(&self) -> Labels {
        common(self.alerts.iter().map(|stored| &stored.alert.labels))
    }

    /// Annotations all alerts share.
    pub fn common_annotations(&self) -> Labels {
        common(self.alerts.iter().map(|stored| &stored.alert.annotations))
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = sets.next() else { return Labels::empty() };
    let mut shared: BTreeMap<String, String> =
        first.iter().map(|label| (label.name.clone(), label.value.clone())).collect();
    for set in sets {
        shared.retain(|name, value| set.get(name) == Some(value.as_str()));
    }
    Labels::from_pairs(shared)
}

fn label_object(labels: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        labels.iter().map(|label| (label.name.clone(), serde_json::Value::String(label.value.clone()))).collect(),
    )
}

/// Alertmanager's zero time, which its webhook prints as the `endsAt` of firing alerts
/// without an end.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn alert_object(stored: &StoredAlert, now_ms: i64) -> serde_json::Value {
    let resolved = stored.is_resolved_at(now_ms);
    serde_json::json!({
        "status": if resolved { "resolved" } else { "firing" },
        "labels": label_object(&stored.alert.labels),
        "annotations": label_object(&stored.alert.annotations),
        "startsAt": format_rfc3339_millis(stored.alert.starts_at_ms),
        "endsAt": if resolved { format_rfc3339_millis(stored.alert.ends_at_ms) } else { GO_ZERO_TIME.to_string() },
        "generatorURL": stored.alert.generator_url,
        "fingerprint": format!("{:016x}", stored.fingerprint),
    })
}

/// Alertmanager's webhook payload, version 4 (notify/webhook `Message`).
fn webhook_body(config: &WebhookConfig, notification: &Notification) -> serde_json::Value {
    let limit = if config.max_alerts == 0 { usize::MAX } else { config.max_alerts as usize };
    let shown: Vec<serde_json::Value> =
        notification.alerts.iter().take(limit).map(|stored| alert_object(stored, notification.now_ms)).collect();
    let truncated = notification.alerts.len().saturating_sub(limit);
    serde_json::json!({
        "receiver": notification.receiver,
        "status": notification.status(),
        "alerts": shown,
        "groupLabels": label_object(&notification.group_labels),
        "commonLabels": label_object(&notification.common_labels()),
        "commonAnnotations": label_object(&notification.common_annotations()),
        "externalURL": notification.external_url,
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": truncated,
    })
}

/// Alertmanager's default Slack title: `[FIRING:2] <group label values>`.
fn default_title(notification: &Notification) -> String {
    let status = notification.status().to_uppercase();
    let count = if status == "FIRING" { format!(":{}", notification.firing_count()) } else { String::new() };
    let values: Vec<&str> = notification.group_labels.iter().map(|label| label.value.as_str()).collect();
    format!("[{status}{count}] {}", values.join(" "))
}

/// One line per alert: its summary (or description, or labels).
fn default_text(notification: &Notification) -> String {
    notification
        .alerts
        .iter()
        .map(|stored| {
            let annotations = &stored.alert.annotations;
            let what = annotations
                .get("summary")
                .or_else(|| annotations.get("description"))
                .map(str::to_string)
                .unwrap_or_else(|| format_label_set(&stored.alert.labels));
            format!("{} {what}", if stored.is_resolved_at(notification.now_ms) { "[resolved]" } else { "[firing]" })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Alertmanager's notification template data (`template.Data`) for `notification`: `.Receiver`,
/// `.Status`, `.Alerts` (each with `.Status`, `.Labels`, `.Annotations`, `.StartsAt`, `.EndsAt`,
/// `.GeneratorURL`, `.Fingerprint`), `.GroupLabels`, `.CommonLabels`, `.CommonAnnotations`,
/// `.ExternalURL`.
fn template_data(notification: &Notification) -> Value {
    let map = |labels: &Labels| {
        Value::StringMap(Arc::new(labels.iter().map(|label| (label.name.clone(), label.value.clone())).collect()))
    };
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|stored| {
            let resolved = stored.is_resolved_at(notification.now_ms);
            Value::Struct(Arc::new(StructValue {
                type_name: "template.Alert",
                fields: vec![
                    ("Status".to_string(), Value::String(if resolved { "resolved" } else { "firing" }.to_string())),
                    ("Labels".to_string(), map(&stored.alert.labels)),
                    ("Annotations".to_string(), map(&stored.alert.annotations)),
                    ("StartsAt".to_string(), Value::Time(stored.alert.starts_at_ms.saturating_mul(1_000_000))),
                    ("EndsAt".to_string(), Value::Time(stored.alert.ends_at_ms.saturating_mul(1_000_000))),
                    ("GeneratorURL".to_string(), Value::String(stored.alert.generator_url.clone())),
                    ("Fingerprint".to_string(), Value::String(format!("{:016x}", stored.fingerprint))),
                ],
            }))
        })
        .collect();
    Value::Struct(Arc::new(StructValue {
        type_name: "*template.Data",
        fields: vec![
            ("Receiver".to_string(), Value::String(notification.receiver.clone())),
            ("Status".to_string(), Value::String(notification.status().to_string())),
            ("Alerts".to_string(), Value::List(Arc::new(alerts))),
            ("GroupLabels".to_string(), map(&notification.group_labels)),
            ("CommonLabels".to_string(), map(&notification.common_labels())),
            ("CommonAnnotations".to_string(), map(&notification.common_annotations())),
            ("ExternalURL".to_string(), Value::String(notification.external_url.clone())),
        ],
    }))
}

/// Expands a configured `title`, `text`, `description` or `severity` over the notification's
/// template data (Go text/template, as Alertmanager). A template that fails to parse or run is
/// logged and sent as written, so the notification still goes out.
fn render(text: &str, notification: &Notification) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let no_query = |_: &str| -> Result<Vec<crate::template::QuerySample>, String> {
        Err("query is not available in notification templates".to_string())
    };
    let context = Context { query: &no_query, external_url: &notification.external_url };
    match Template::parse("notification", text)
        .and_then(|template| template.execute(&template_data(notification), &context))
    {
        Ok(rendered) => rendered,
        Err(error) => {
            tracing::warn!(%error, template = text, "notification template failed; sending it unexpanded");
            text.to_string()
        }
    }
}

/// A Slack incoming-webhook message with one attachment (notify/slack); a configured `title`
/// and `text` are templates over Alertmanager's data.
fn slack_body(config: &SlackConfig, notification: &Notification) -> serde_json::Value {
    let color = if notification.status() == "firing" { "danger" } else { "good" };
    let title = config.title.as_deref().map_or_else(|| default_title(notification), |text| render(text, notification));
    let text = config.text.as_deref().map_or_else(|| default_text(notification), |text| render(text, notification));
    let mut body = serde_json::json!({
        "attachments": [{
            "title": title,
            "text": text,
            "fallback": title,
            "color": color,
            "mrkdwn_in": ["fallback", "pretext", "text"],
        }],
    });
    if let Some(channel) = &config.channel {
        body["channel"] = serde_json::Value::String(channel.clone());
    }
    body
}

/// The PagerDuty dedup key: SHA-256 of the group key, hex (notify/pagerduty `hashKey`).
fn dedup_key(group_key: &str) -> String {
    Sha256::digest(group_key.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A PagerDuty event: Events API v2 with `routing_key`, v1 with `service_key`.
fn pagerduty_body(config: &PagerdutyConfig, notification: &Notification) -> serde_json::Value {
    let firing = notification.status() == "firing";
    let description =
        config.description.as_deref().map_or_else(|| default_title(notification), |text| render(text, notification));
    let severity = config.severity.as_deref().map_or_else(|| "error".to_string(), |text| render(text, notification));
    let details = serde_json::json!({
        "firing": default_text(notification),
        "num_firing": notification.firing_count().to_string(),
        "num_resolved": (notification.alerts.len() - notification.firing_count()).to_string(),
    });
    let key = dedup_key(&notification.group_key);
    match (&config.routing_key, &config.service_key) {
        (Some(routing_key), _) => serde_json::json!({
            "routing_key": routing_key,
            "event_action": if firing { "trigger" } else { "resolve" },
            "dedup_key": key,
            "payload": {
                "summary": description,
                "source": notification.external_url,
                "severity": severity,
                "custom_details": details,
            },
            "client": "engine",
            "client_url": notification.external_url,
        }),
        (None, service_key) => serde_json::json!({
            "service_key": service_key.clone().unwrap_or_default(),
            "event_type": if firing { "trigger" } else { "resolve" },
            "incident_key": key,
            "description": description,
            "client": "engine",
            "client_url": notification.external_url,
            "details": details,
        }),
    }
}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Requests made.
    pub attempt_count: u32,
    /// The last error, `None` when a request succeeded.
    pub error: Option<String>,
}

/// Posts `body` to `integration`'s URL, retrying failures (connection errors, 5xx, 429) with
/// backoff from [`RETRY_BACKOFF_MS_MIN`] doubling up to [`RETRY_BACKOFF_MS_MAX`], at most
/// [`ATTEMPT_COUNT_MAX`] attempts and never starting one after `deadline_ms` of elapsed time.
/// Other 4xx answers are not retried (the request itself is wrong).
pub async fn deliver(env: &Env, integration: &Integration, body: Bytes, deadline_ms: u64) -> Delivery {
    let started = tokio::time::Instant::now();
    let endpoint = match HttpEndpoint::parse(integration.url()) {
        Ok(endpoint) => endpoint,
        Err(error) => return Delivery { attempt_count: 0, error: Some(error.to_string()) },
    };
    let mut backoff_ms = RETRY_BACKOFF_MS_MIN;
    let mut attempt_count = 0;
    loop {
        attempt_count += 1;
        let request = HttpRequest {
            method: hyper::Method::POST,
            endpoint: endpoint.clone(),
            headers: Vec::new(),
            content_type: "application/json".to_string(),
            body: body.clone(),
        };
        let outcome = http_client::send(env.net.as_ref(), env.spawner.as_ref(), request, REQUEST_TIMEOUT_MS).await;
        let (error, retryable) = match outcome {
            Ok(response) if (200..300).contains(&response.status) => return Delivery { attempt_count, error: None },
            Ok(response) => (
                format!(
                    "unexpected status code {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body).trim()
                ),
                response.status >= 500 || response.status == 429,
            ),
            Err(error) => (error.to_string(), true),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if !retryable || attempt_count >= ATTEMPT_COUNT_MAX || elapsed_ms + backoff_ms > deadline_ms {
            return Delivery { attempt_count, error: Some(error) };
        }
        tracing::debug!(integration = integration.name(), attempt_count, %error, "notify failed, retrying");
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::Alert;

    fn stored(name: &str, instance: &str, ends_at_ms: i64) -> StoredAlert {
        let alert = Alert {
            labels: Labels::from_pairs([("alertname", name), ("instance", instance), ("severity", "page")]),
            annotations: Labels::from_pairs([("summary", format!("{instance} is down"))]),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms,
            generator_url: "http://engine/graph".to_string(),
        };
        super::super::store::AlertStore::prepare(alert, 1_700_000_000_000, 300_000).unwrap()
    }

    fn notification(alerts: Vec<StoredAlert>) -> Notification {
        Notification {
            receiver: "team".to_string(),
            group_key: "{}:{alertname=\"Down\"}".to_string(),
            group_labels: Labels::from_pairs([("alertname", "Down")]),
            alerts,
            external_url: "http://am:9093".to_string(),
            now_ms: 1_700_000_060_000,
        }
    }

    #[test]
    fn webhook_payload_is_alertmanagers_version_4() {
        let config = WebhookConfig { url: "http://hook/".to_string(), send_resolved: true, max_alerts: 1 };
        let body: serde_json::Value = serde_json::from_slice(&Integration::Webhook(config).body(&notification(vec![
            stored("Down", "a:1", 1_700_000_120_000),
            stored("Down", "b:1", 1_700_000_030_000),
        ])))
        .unwrap();
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "team");
        assert_eq!(body["groupKey"], "{}:{alertname=\"Down\"}");
        assert_eq!(body["groupLabels"], serde_json::json!({"alertname": "Down"}));
        assert_eq!(body["commonLabels"], serde_json::json!({"alertname": "Down", "severity": "page"}));
        assert_eq!(body["commonAnnotations"], serde_json::json!({}));
        assert_eq!(body["truncatedAlerts"], 1);
        let alert = &body["alerts"][0];
        assert_eq!(alert["status"], "firing");
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn slack_and_pagerduty_payloads_have_their_shapes() {
        let resolved = notification(vec![stored("Down", "a:1", 1_700_000_030_000)]);
        let slack = SlackConfig {
            api_url: "http://slack/hook".to_string(),
            channel: Some("#ops".to_string()),
            title: None,
            text: None,
            send_resolved: true,
        };
        let body: serde_json::Value = serde_json::from_slice(&Integration::Slack(slack).body(&resolved)).unwrap();
        assert_eq!(body["channel"], "#ops");
        assert_eq!(body["attachments"][0]["title"], "[RESOLVED] Down");
        assert_eq!(body["attachments"][0]["color"], "good");
        assert_eq!(body["attachments"][0]["text"], "[resolved] a:1 is down");

        let templated = SlackConfig {
            api_url: "http://slack/hook".to_string(),
            channel: None,
            title: Some("{{ .Status | toUpper }}: {{ .CommonLabels.alertname }} ({{ len .Alerts }})".to_string()),
            text: Some(
                "{{ range .Alerts }}{{ .Labels.instance }} {{ .Annotations.summary }};{{ end }}{{ .Bad".to_string(),
            ),
            send_resolved: true,
        };
        let body: serde_json::Value = serde_json::from_slice(&Integration::Slack(templated).body(&resolved)).unwrap();
        assert_eq!(body["attachments"][0]["title"], "RESOLVED: Down (1)");
        // A broken template is sent as written.
        assert_eq!(
            body["attachments"][0]["text"],
            "{{ range .Alerts }}{{ .Labels.instance }} {{ .Annotations.summary }};{{ end }}{{ .Bad"
        );

        let firing = notification(vec![stored("Down", "a:1", 1_700_000_120_000)]);
        let pagerduty = PagerdutyConfig {
            url: "http://pd/v2/enqueue".to_string(),
            routing_key: Some("key".to_string()),
            service_key: None,
            severity: Some("critical".to_string()),
            description: None,
            send_resolved: true,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&Integration::Pagerduty(pagerduty.clone()).body(&firing)).unwrap();
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["routing_key"], "key");
        assert_eq!(body["payload"]["severity"], "critical");
        assert_eq!(body["payload"]["summary"], "[FIRING:1] Down");
        assert_eq!(body["dedup_key"].as_str().unwrap().len(), 64);
        let v1 = PagerdutyConfig { routing_key: None, service_key: Some("svc".to_string()), ..pagerduty };
        let body: serde_json::Value = serde_json::from_slice(&Integration::Pagerduty(v1).body(&resolved)).unwrap();
        assert_eq!(body["event_type"], "resolve");
        assert_eq!(body["service_key"], "svc");
    }
}
