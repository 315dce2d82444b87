//! Alertmanager's HTTP API v2 over the embedded alert manager, the subset `amtool`, Grafana and
//! Prometheus' notifier use: `/api/v2/alerts` (GET with `active`, `silenced`, `inhibited`,
//! `filter`, `receiver`; POST), `/api/v2/alerts/groups`, `/api/v2/silences` (GET with
//! `filter`; POST), `/api/v2/silence/{id}` (GET, DELETE), `/api/v2/receivers` and
//! `/api/v2/status`. Answers are JSON in the v2 shapes; times in RFC 3339 with milliseconds.
//!
//! Pure request handling: the caller reads the body (bounded) and writes the response.

use hyper::Method;

use super::manager::{AlertManager, AlertView};
use super::matcher::{parse_matchers, Matcher};
use super::silence::{PostableSilence, SilenceError, SilenceId};
use crate::calendar::{format_rfc3339_millis, parse_rfc3339_ms};
use crate::model::Labels;
use crate::notifier::Alert;

/// Most alerts one POST may carry.
pub const POSTED_ALERT_COUNT_MAX: usize = 10_000;

/// A response: status code, content type, body.
pub type ApiResponse = (u16, &'static str, String);

fn json(status: u16, value: &serde_json::Value) -> ApiResponse {
    (status, "application/json", serde_json::to_string(value).unwrap_or_default())
}

fn error(status: u16, message: &str) -> ApiResponse {
    // Alertmanager answers errors as a JSON string.
    (status, "application/json", serde_json::to_string(message).unwrap_or_default())
}

/// Answers a `/api/v2/...` request; `None` when the path is not part of the API.
pub fn handle(manager: &AlertManager, method: &Method, path: &str, query: &str, body: &[u8]) -> Option<ApiResponse> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let response = match (method, path) {
        (&Method::GET, "/api/v2/status") => status(manager),
        (&Method::GET, "/api/v2/receivers") => {
            let names: Vec<serde_json::Value> =
                manager.config().receivers.iter().map(|receiver| serde_json::json!({"name": receiver.name})).collect();
            json(200, &serde_json::Value::Array(names))
        }
        (&Method::GET, "/api/v2/alerts") => match AlertFilter::from_pairs(&pairs) {
            Ok(filter) => {
                let alerts: Vec<serde_json::Value> =
                    manager.alerts().iter().filter(|view| filter.keeps(view)).map(alert_json).collect();
                json(200, &serde_json::Value::Array(alerts))
            }
            Err(message) => error(400, &message),
        },
        (&Method::POST, "/api/v2/alerts") => match parse_posted_alerts(body) {
            Ok(alerts) => {
                let errors = manager.put_alerts(alerts);
                if errors.is_empty() {
                    (200, "application/json", String::new())
                } else {
                    error(400, &errors.join("; "))
                }
            }
            Err(message) => error(400, &message),
        },
        (&Method::GET, "/api/v2/alerts/groups") => match AlertFilter::from_pairs(&pairs) {
            Ok(filter) => {
                let groups: Vec<serde_json::Value> = manager
                    .groups()
                    .into_iter()
                    .filter_map(|group| {
                        let alerts: Vec<serde_json::Value> =
                            group.alerts.iter().filter(|view| filter.keeps(view)).map(alert_json).collect();
                        (!alerts.is_empty()).then(|| {
                            serde_json::json!({
                                "labels": label_object(&group.labels),
                                "receiver": {"name": group.receiver},
                                "alerts": alerts,
                            })
                        })
                    })
                    .collect();
                json(200, &serde_json::Value::Array(groups))
            }
            Err(message) => error(400, &message),
        },
        (&Method::GET, "/api/v2/silences") => match filter_matchers(&pairs) {
            Ok(filter) => json(200, &serde_json::to_value(manager.silences(&filter)).unwrap_or_default()),
            Err(message) => error(400, &message),
        },
        (&Method::POST, "/api/v2/silences") => match serde_json::from_slice::<PostableSilence>(body) {
            Ok(posted) => match manager.set_silence(posted) {
                Ok(id) => json(200, &serde_json::json!({"silenceID": id.0})),
                Err(failure) => silence_error(&failure),
            },
            Err(failure) => error(400, &format!("invalid silence: {failure}")),
        },
        (method, silence_path) if silence_path.starts_with("/api/v2/silence/") => {
            let id = SilenceId(silence_path["/api/v2/silence/".len()..].to_string());
            match *method {
                Method::GET => match manager.silence(&id) {
                    Some(silence) => json(200, &serde_json::to_value(silence).unwrap_or_default()),
                    None => error(404, &format!("silence {} not found", id.0)),
                },
                Method::DELETE => match manager.expire_silence(&id) {
                    Ok(()) => (200, "application/json", String::new()),
                    Err(failure) => silence_error(&failure),
                },
                _ => error(405, "method not allowed"),
            }
        }
        (
            _,
            "/api/v2/status" | "/api/v2/receivers" | "/api/v2/alerts" | "/api/v2/alerts/groups" | "/api/v2/silences",
        ) => error(405, "method not allowed"),
        (_, other) if other.starts_with("/api/v2/") => error(404, "not found"),
        _ => return None,
    };
    Some(response)
}

fn silence_error(failure: &SilenceError) -> ApiResponse {
    let status = if matches!(failure, SilenceError::NotFound { .. }) { 404 } else { 400 };
    error(status, &failure.to_string())
}

fn status(manager: &AlertManager) -> ApiResponse {
    json(
        200,
        &serde_json::json!({
            "cluster": {"status": "disabled", "peers": []},
            "config": {"original": manager.config().original},
            "uptime": format_rfc3339_millis(manager.started_at_ms()),
            "versionInfo": {
                "version": env!("CARGO_PKG_VERSION"),
                "revision": "",
                "branch": "",
                "buildUser": "",
                "buildDate": "",
                "goVersion": "none (engine, Rust)",
            },
        }),
    )
}

fn label_object(labels: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        labels.iter().map(|label| (label.name.clone(), serde_json::Value::String(label.value.clone()))).collect(),
    )
}

fn alert_json(view: &AlertView) -> serde_json::Value {
    let alert = &view.stored.alert;
    serde_json::json!({
        "labels": label_object(&alert.labels),
        "annotations": label_object(&alert.annotations),
        "startsAt": format_rfc3339_millis(alert.starts_at_ms),
        "endsAt": format_rfc3339_millis(alert.ends_at_ms),
        "updatedAt": format_rfc3339_millis(view.stored.updated_at_ms),
        "fingerprint": format!("{:016x}", view.stored.fingerprint),
        "receivers": view.receivers.iter().map(|name| serde_json::json!({"name": name})).collect::<Vec<_>>(),
        "status": {"state": view.state(), "silencedBy": view.silenced_by, "inhibitedBy": view.inhibited_by},
        "generatorURL": alert.generator_url,
    })
}

fn filter_matchers(pairs: &[(String, String)]) -> Result<Vec<Matcher>, String> {
    let mut matchers = Vec::new();
    for (_, text) in pairs.iter().filter(|(key, _)| key == "filter") {
        matchers.extend(parse_matchers(text).map_err(|failure| format!("bad filter {text:?}: {failure}"))?);
    }
    Ok(matchers)
}

/// The query parameters of `GET /api/v2/alerts` (each boolean defaults to true).
struct AlertFilter {
    active: bool,
    silenced: bool,
    inhibited: bool,
    matchers: Vec<Matcher>,
    receiver: Option<regex::Regex>,
}

impl AlertFilter {
    fn from_pairs(pairs: &[(String, String)]) -> Result<AlertFilter, String> {
        let flag = |name: &str| -> Result<bool, String> {
            match pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()) {
                None | Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => Err(format!("{name}: expected true or false, got {other:?}")),
            }
        };
        let receiver = match pairs.iter().find(|(key, _)| key == "receiver") {
            None => None,
            Some((_, pattern)) => Some(
                regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|failure| format!("receiver: bad regex {pattern:?}: {failure}"))?,
            ),
        };
        Ok(AlertFilter {
            active: flag("active")?,
            silenced: flag("silenced")?,
            inhibited: flag("inhibited")?,
            matchers: filter_matchers(pairs)?,
            receiver,
        })
    }

    fn keeps(&self, view: &AlertView) -> bool {
        let silenced = !view.silenced_by.is_empty();
        let inhibited = !view.inhibited_by.is_empty();
        if (!self.active && !silenced && !inhibited) || (!self.silenced && silenced) || (!self.inhibited && inhibited) {
            return false;
        }
        if let Some(receiver) = &self.receiver {
            if !view.receivers.iter().any(|name| receiver.is_match(name)) {
                return false;
            }
        }
        self.matchers.iter().all(|matcher| matcher.matches(&view.stored.alert.labels))
    }
}

/// Reads a `POST /api/v2/alerts` body (`postableAlerts`).
pub fn parse_posted_alerts(body: &[u8]) -> Result<Vec<Alert>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|failure| format!("invalid body: {failure}"))?;
    let items = value.as_array().ok_or("invalid body: expected a JSON array of alerts")?;
    if items.len() > POSTED_ALERT_COUNT_MAX {
        return Err(format!("too many alerts in one request: {} (at most {POSTED_ALERT_COUNT_MAX})", items.len()));
    }
    items.iter().enumerate().map(|(index, item)| parse_alert(item).map_err(|m| format!("alert {index}: {m}"))).collect()
}

fn string_map(value: &serde_json::Value, field: &str) -> Result<Labels, String> {
    match value.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Labels::empty()),
        Some(serde_json::Value::Object(map)) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (name, value) in map {
                let text = value.as_str().ok_or_else(|| format!("{field}.{name} must be a string"))?;
                pairs.push((name.clone(), text.to_string()));
            }
            Ok(Labels::from_pairs(pairs))
        }
        Some(_) => Err(format!("{field} must be an object")),
    }
}

fn time_ms(value: &serde_json::Value, field: &str) -> Result<i64, String> {
    match value.get(field).and_then(serde_json::Value::as_str) {
        None | Some("") => Ok(0),
        // Go's zero time (and anything before 1970) means unset.
        Some(text) => parse_rfc3339_ms(text).map(|ms| ms.max(0)).map_err(|failure| format!("{field}: {failure}")),
    }
}

fn parse_alert(value: &serde_json::Value) -> Result<Alert, String> {
    let labels = string_map(value, "labels")?;
    for label in labels.iter() {
        if !crate::rules::file::is_valid_label_name(&label.name) {
            return Err(format!("invalid label name {:?}", label.name));
        }
    }
    Ok(Alert {
        labels,
        annotations: string_map(value, "annotations")?,
        starts_at_ms: time_ms(value, "startsAt")?,
        ends_at_ms: time_ms(value, "endsAt")?,
        generator_url: value.get("generatorURL").and_then(serde_json::Value::as_str).unwrap_or("").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_alerts_parse_with_optional_times() {
        let alerts = parse_posted_alerts(
            br#"[{"labels":{"alertname":"A","job":"x"},"annotations":{"summary":"s"},"startsAt":"2023-11-14T22:13:20.5Z",
                 "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://g"},{"labels":{"alertname":"B"}}]"#,
        )
        .unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].starts_at_ms, 1_700_000_000_500);
        assert_eq!(alerts[0].ends_at_ms, 0);
        assert_eq!(alerts[0].annotations.get("summary"), Some("s"));
        assert_eq!(alerts[1].starts_at_ms, 0);
        assert!(parse_posted_alerts(b"{}").unwrap_err().contains("array"));
        assert!(parse_posted_alerts(br#"[{"labels":{"a":1}}]"#).unwrap_err().contains("must be a string"));
        assert!(parse_posted_alerts(br#"[{"labels":{"0a":"x"}}]"#).unwrap_err().contains("invalid label name"));
        assert!(parse_posted_alerts(br#"[{"labels":{"a":"x"},"startsAt":"yesterday"}]"#).is_err());
    }
}
