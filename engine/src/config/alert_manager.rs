//! The `alert_manager` section (not a Prometheus key): the embedded alert manager, so one
//! binary runs the whole pipeline. `config` holds an Alertmanager configuration inline;
//! `config_file` names one (relative to the engine's configuration file), read by the server
//! through the filesystem seam.
//!
//! ```yaml
//! alert_manager:
//!   enabled: true
//!   config:
//!     route: {receiver: team, group_by: [alertname]}
//!     receivers: [{name: team, webhook_configs: [{url: 'http://hooks:8080/'}]}]
//! ```

use serde::Deserialize;

use super::ConfigError;
use crate::alert::config::{self as am_config, AlertManagerConfig};

/// The resolved section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertManagerSection {
    /// Run the embedded alert manager (its API v2 on the engine's listen address).
    pub enabled: bool,
    /// Where its configuration comes from.
    pub source: AlertManagerSource,
}

/// Where the embedded alert manager's configuration comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertManagerSource {
    /// Written inline under `config`.
    Inline(Box<AlertManagerConfig>),
    /// A file, as written (relative paths are relative to the engine's configuration file).
    File(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlertManagerSection {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    config: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    config_file: Option<String>,
}

pub(super) fn resolve(raw: Option<RawAlertManagerSection>) -> Result<Option<AlertManagerSection>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = |message: String| ConfigError::Invalid { path: "alert_manager".to_string(), message };
    let source = match (raw.config, raw.config_file) {
        (Some(_), Some(_)) => return Err(invalid("set one of config and config_file, not both".to_string())),
        (None, None) => return Err(invalid("needs config (inline) or config_file".to_string())),
        (Some(value), None) => AlertManagerSource::Inline(Box::new(
            am_config::from_value(value).map_err(|error| invalid(format!("config: {error}")))?,
        )),
        (None, Some(path)) if path.is_empty() => return Err(invalid("config_file is empty".to_string())),
        (None, Some(path)) => AlertManagerSource::File(path),
    };
    Ok(Some(AlertManagerSection { enabled: raw.enabled.unwrap_or(true), source }))
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn inline_and_file_sources() {
        let config = parse(
            "alert_manager:\n  config:\n    route: {receiver: team}\n    receivers: [{name: team, webhook_configs: [{url: 'http://h/'}]}]\n",
        )
        .unwrap();
        let section = config.alert_manager.unwrap();
        assert!(section.enabled);
        let AlertManagerSource::Inline(inline) = section.source else { panic!("inline expected") };
        assert_eq!(inline.receivers[0].name, "team");
        let file = parse("alert_manager:\n  enabled: false\n  config_file: am.yml\n").unwrap().alert_manager.unwrap();
        assert_eq!((file.enabled, file.source), (false, AlertManagerSource::File("am.yml".to_string())));
        assert!(parse("").unwrap().alert_manager.is_none());
    }

    #[test]
    fn bad_sections_name_the_problem() {
        let error = |yaml: &str| parse(yaml).unwrap_err().to_string();
        assert!(error("alert_manager:\n  enabled: true\n").contains("needs config"));
        assert!(error("alert_manager:\n  config_file: a\n  config: {}\n").contains("not both"));
        assert!(error("alert_manager:\n  config:\n    route: {receiver: missing}\n").contains("missing"));
        assert!(error("alert_manager:\n  confg: {}\n").contains("unknown field"));
    }
}
