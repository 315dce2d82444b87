//! The `alerting` section (Prometheus config.go `AlertingConfig`, `AlertmanagerConfig`): where
//! the notifier sends alerts, how it relabels them, and the design documents' `enabled` switch
//! (the secondary of an HA pair runs with `alerting: {enabled: false}`).

use serde::Deserialize;

use super::{ConfigError, DurationMs, TargetAddress};
use crate::relabel::{self, RawRelabelConfig, RelabelConfig};

/// Prometheus' default Alertmanager request timeout.
const ALERTMANAGER_TIMEOUT_MS_DEFAULT: i64 = 10_000;

/// The resolved `alerting` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertingConfig {
    /// False: rules still evaluate and `ALERTS` is still written, but nothing is sent
    /// (`alerting: {enabled: false}`; not a Prometheus key). Default true.
    pub enabled: bool,
    /// Applied to every alert before it is queued; a dropped alert is not sent.
    pub alert_relabel_configs: Vec<RelabelConfig>,
    /// The Alertmanager groups; every alert goes to every Alertmanager of every group.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig { enabled: true, alert_relabel_configs: Vec::new(), alertmanagers: Vec::new() }
    }
}

/// One `alertmanagers` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    /// Prefix of `/api/v2/alerts` (`path_prefix`, default `/`).
    pub path_prefix: String,
    /// Longest one push may take (`timeout`, default 10 s).
    pub timeout_ms: i64,
    /// `host:port` of each Alertmanager (`static_configs[].targets`).
    pub targets: Vec<String>,
    /// Applied to each target's `__address__`, `__scheme__` and `__alerts_path__` labels; a
    /// dropped target is not sent to.
    pub relabel_configs: Vec<RelabelConfig>,
    /// `Authorization` header value (from `basic_auth` or `authorization`), if any.
    pub authorization: Option<String>,
}

impl AlertmanagerConfig {
    /// The URLs alerts are posted to, after relabeling, in target order, without duplicates.
    pub fn alert_urls(&self) -> Vec<String> {
        let prefix = self.path_prefix.trim_end_matches('/');
        let mut urls: Vec<String> = Vec::new();
        for target in &self.targets {
            let labels = crate::model::Labels::from_pairs([
                ("__address__", target.as_str()),
                ("__scheme__", "http"),
                ("__alerts_path__", &format!("{prefix}/api/v2/alerts")),
            ]);
            let Some(labels) = relabel::process(labels, &self.relabel_configs) else { continue };
            let (Some(address), Some(path)) = (labels.get("__address__"), labels.get("__alerts_path__")) else {
                continue;
            };
            let url = format!("{}://{address}{path}", labels.get("__scheme__").unwrap_or("http"));
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        urls
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerting {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    alert_relabel_configs: Vec<RawRelabelConfig>,
    #[serde(default)]
    alertmanagers: Vec<RawAlertmanager>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    path_prefix: Option<String>,
    #[serde(default)]
    timeout: Option<DurationMs>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    static_configs: Vec<RawAlertmanagerStatic>,
    #[serde(default)]
    relabel_configs: Vec<RawRelabelConfig>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    enable_http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanagerStatic {
    #[serde(default)]
    targets: Vec<TargetAddress>,
    /// Accepted as Prometheus does; target labels only feed `relabel_configs`.
    #[serde(default)]
    #[allow(dead_code)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    username: String,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    credentials: String,
}

pub(super) fn resolve(raw: RawAlerting) -> Result<AlertingConfig, ConfigError> {
    let invalid = |path: String, message: String| ConfigError::Invalid { path, message };
    let alert_relabel_configs = relabel::from_raw_list(&raw.alert_relabel_configs)
        .map_err(|message| invalid("alerting.alert_relabel_configs".to_string(), message))?;
    let mut alertmanagers = Vec::new();
    for (index, am) in raw.alertmanagers.into_iter().enumerate() {
        let path = format!("alerting.alertmanagers[{index}]");
        match am.scheme.as_deref() {
            None | Some("http") => {}
            Some("https") => return Err(invalid(path, "scheme https is not supported yet (no TLS client)".into())),
            Some(other) => return Err(invalid(path, format!("unknown scheme {other:?}, expected http"))),
        }
        match am.api_version.as_deref() {
            None | Some("v2") => {}
            Some(other) => {
                return Err(invalid(path, format!("api_version {other:?} is not supported; Alertmanager API v2 only")))
            }
        }
        let path_prefix = am.path_prefix.unwrap_or_else(|| "/".to_string());
        if !path_prefix.starts_with('/') {
            return Err(invalid(path, format!("path_prefix {path_prefix:?} must start with '/'")));
        }
        let authorization =
            authorization_header(am.basic_auth, am.authorization).map_err(|m| invalid(path.clone(), m))?;
        let _ = (am.follow_redirects, am.enable_http2);
        alertmanagers.push(AlertmanagerConfig {
            path_prefix,
            timeout_ms: am.timeout.map_or(ALERTMANAGER_TIMEOUT_MS_DEFAULT, |duration| duration.0),
            targets: am.static_configs.into_iter().flat_map(|config| config.targets).map(|target| target.0).collect(),
            relabel_configs: relabel::from_raw_list(&am.relabel_configs)
                .map_err(|message| invalid(format!("{path}.relabel_configs"), message))?,
            authorization,
        });
    }
    Ok(AlertingConfig { enabled: raw.enabled.unwrap_or(true), alert_relabel_configs, alertmanagers })
}

/// The `Authorization` header value of `basic_auth` or `authorization` (at most one may be set).
pub(super) fn authorization_header(
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
) -> Result<Option<String>, String> {
    match (basic_auth, authorization) {
        (Some(_), Some(_)) => Err("at most one of basic_auth and authorization may be set".to_string()),
        (Some(basic), None) => Ok(Some(format!(
            "Basic {}",
            base64_encode(format!("{}:{}", basic.username, basic.password.unwrap_or_default()).as_bytes())
        ))),
        (None, Some(authorization)) => Ok(Some(format!(
            "{} {}",
            authorization.kind.unwrap_or_else(|| "Bearer".to_string()),
            authorization.credentials
        ))),
        (None, None) => Ok(None),
    }
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), for basic auth headers only.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let value = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(BASE64_ALPHABET[(value >> (18 - 6 * position) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional), for reading basic auth headers; `None` when
/// `text` is not base64.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let mut accumulator = 0u32;
    let mut bit_count = 0;
    for byte in digits.bytes() {
        let value = BASE64_ALPHABET.iter().position(|&symbol| symbol == byte)? as u32;
        accumulator = (accumulator << 6) | value;
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((accumulator >> bit_count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn alerting_section_resolves_with_prometheus_defaults() {
        let config = parse(
            "alerting:\n  alert_relabel_configs:\n    - {action: labeldrop, regex: replica}\n  alertmanagers:\n    \
             - static_configs: [{targets: ['am-1:9093', 'am-2:9093']}]\n      path_prefix: /am/\n      timeout: 3s\n    \
             - static_configs: [{targets: ['am-3:9093']}]\n      basic_auth: {username: u, password: p}\n",
        )
        .unwrap();
        let alerting = &config.alerting;
        assert!(alerting.enabled);
        assert_eq!(alerting.alert_relabel_configs.len(), 1);
        assert_eq!(alerting.alertmanagers[0].timeout_ms, 3_000);
        assert_eq!(
            alerting.alertmanagers[0].alert_urls(),
            ["http://am-1:9093/am/api/v2/alerts", "http://am-2:9093/am/api/v2/alerts"]
        );
        assert_eq!(alerting.alertmanagers[1].timeout_ms, 10_000);
        assert_eq!(alerting.alertmanagers[1].alert_urls(), ["http://am-3:9093/api/v2/alerts"]);
        assert_eq!(alerting.alertmanagers[1].authorization.as_deref(), Some("Basic dTpw"));
        assert!(parse("").unwrap().alerting.enabled);
    }

    #[test]
    fn enabled_false_and_target_relabeling() {
        let config = parse(
            "alerting:\n  enabled: false\n  alertmanagers:\n    - static_configs: [{targets: ['a:9093', 'b:9093']}]\n      \
             relabel_configs:\n        - {source_labels: [__address__], regex: 'b:.*', action: drop}\n",
        )
        .unwrap();
        assert!(!config.alerting.enabled);
        assert_eq!(config.alerting.alertmanagers[0].alert_urls(), ["http://a:9093/api/v2/alerts"]);
    }

    #[test]
    fn bad_alerting_sections_are_refused() {
        let error = |yaml: &str| parse(yaml).unwrap_err().to_string();
        assert!(error("alerting:\n  alertmanagers:\n    - api_version: v1\n").contains("API v2 only"));
        assert!(error("alerting:\n  alertmanagers:\n    - scheme: https\n").contains("https"));
        assert!(error("alerting:\n  alertmanager: []\n").contains("unknown field"));
        assert!(error("alerting:\n  alert_relabel_configs:\n    - {action: nope}\n").contains("unknown relabel action"));
        assert!(
            error("alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['nohost']}]\n").contains("host:port")
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64_encode(input.as_bytes()), expected);
            assert_eq!(base64_decode(expected).unwrap(), input.as_bytes());
        }
    }
}
