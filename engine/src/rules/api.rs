//! `/api/v1/rules` and `/api/v1/alerts` bodies, shaped as Prometheus' web/api/v1/api.go
//! (`RuleDiscovery`, `RuleGroup`, `AlertingRule`, `RecordingRule`, `AlertDiscovery`, `Alert`):
//! the same keys in the same order, times as Go's RFC 3339, durations in seconds, alert
//! values as Go's `%e`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::alerting::RuleAlert;
use super::file::RuleKind;
use super::group::GroupSnapshot;
use super::{go_format_e, go_time_json, Manager};
use crate::model::Labels;

/// Filters of `/api/v1/rules`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RulesFilter {
    /// `type`: `alert`, `record` or empty for both.
    pub rule_type: Option<RuleKind>,
    /// `rule_name[]`.
    pub rule_names: BTreeSet<String>,
    /// `rule_group[]`.
    pub rule_groups: BTreeSet<String>,
    /// `file[]`.
    pub files: BTreeSet<String>,
}

impl RulesFilter {
    /// From the request's query pairs; an error text for `bad_data` (`type` not alert/record).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<RulesFilter, String> {
        let mut filter = RulesFilter::default();
        for (name, value) in pairs {
            match name.as_str() {
                "type" => {
                    filter.rule_type = match value.to_ascii_lowercase().as_str() {
                        "" => None,
                        "alert" => Some(RuleKind::Alerting),
                        "record" => Some(RuleKind::Recording),
                        _ => return Err(format!("invalid parameter \"type\": not supported value {value:?}")),
                    }
                }
                "rule_name[]" => {
                    filter.rule_names.insert(value.clone());
                }
                "rule_group[]" => {
                    filter.rule_groups.insert(value.clone());
                }
                "file[]" => {
                    filter.files.insert(value.clone());
                }
                _ => {}
            }
        }
        Ok(filter)
    }
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    status: &'static str,
    data: T,
}

#[derive(Serialize)]
struct RuleDiscovery {
    groups: Vec<RuleGroupJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleGroupJson {
    name: String,
    file: String,
    rules: Vec<RuleJson>,
    interval: f64,
    limit: usize,
    evaluation_time: f64,
    last_evaluation: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RuleJson {
    Alerting(AlertingRuleJson),
    Recording(RecordingRuleJson),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertingRuleJson {
    state: &'static str,
    name: String,
    query: String,
    duration: f64,
    keep_firing_for: f64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    alerts: Vec<AlertJson>,
    health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    evaluation_time: f64,
    last_evaluation: String,
    #[serde(rename = "type")]
    rule_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordingRuleJson {
    name: String,
    query: String,
    labels: BTreeMap<String, String>,
    health: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    evaluation_time: f64,
    last_evaluation: String,
    #[serde(rename = "type")]
    rule_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    state: &'static str,
    active_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_firing_since: Option<String>,
    value: String,
}

#[derive(Serialize)]
struct AlertDiscovery {
    alerts: Vec<AlertJson>,
}

fn label_map(labels: &Labels) -> BTreeMap<String, String> {
    labels.iter().map(|label| (label.name.clone(), label.value.clone())).collect()
}

fn alert_json(alert: &RuleAlert) -> AlertJson {
    AlertJson {
        labels: label_map(&alert.labels),
        annotations: label_map(&alert.annotations),
        state: alert.state.as_str(),
        active_at: go_time_json(Some(alert.active_at_ms)),
        keep_firing_since: alert.keep_firing_since_ms.map(|ms| go_time_json(Some(ms))),
        value: go_format_e(alert.value),
    }
}

/// The `/api/v1/rules` body over snapshots of `groups`.
pub fn rules_body(groups: &[GroupSnapshot], filter: &RulesFilter) -> String {
    let mut out = Vec::new();
    for group in groups {
        if !filter.rule_groups.is_empty() && !filter.rule_groups.contains(&group.name) {
            continue;
        }
        if !filter.files.is_empty() && !filter.files.contains(&group.file) {
            continue;
        }
        let mut rules = Vec::new();
        for rule in &group.rules {
            if !filter.rule_names.is_empty() && !filter.rule_names.contains(&rule.spec.name) {
                continue;
            }
            if filter.rule_type.is_some_and(|kind| kind != rule.spec.kind) {
                continue;
            }
            let labels = rule.spec.labels.clone();
            rules.push(match rule.spec.kind {
                RuleKind::Alerting => RuleJson::Alerting(AlertingRuleJson {
                    state: rule.state.as_str(),
                    name: rule.spec.name.clone(),
                    query: rule.query.clone(),
                    duration: rule.spec.for_ms as f64 / 1000.0,
                    keep_firing_for: rule.spec.keep_firing_for_ms as f64 / 1000.0,
                    labels,
                    annotations: rule.spec.annotations.clone(),
                    alerts: rule.alerts.iter().map(alert_json).collect(),
                    health: rule.health.as_str(),
                    last_error: rule.last_error.clone(),
                    evaluation_time: rule.evaluation_seconds,
                    last_evaluation: go_time_json(rule.last_evaluation_ms),
                    rule_type: "alerting",
                }),
                RuleKind::Recording => RuleJson::Recording(RecordingRuleJson {
                    name: rule.spec.name.clone(),
                    query: rule.query.clone(),
                    labels,
                    health: rule.health.as_str(),
                    last_error: rule.last_error.clone(),
                    evaluation_time: rule.evaluation_seconds,
                    last_evaluation: go_time_json(rule.last_evaluation_ms),
                    rule_type: "recording",
                }),
            });
        }
        // A group whose rules were all filtered out is left out, as upstream.
        if rules.is_empty() && !group.rules.is_empty() {
            continue;
        }
        out.push(RuleGroupJson {
            name: group.name.clone(),
            file: group.file.clone(),
            rules,
            interval: group.interval_ms as f64 / 1000.0,
            limit: group.limit,
            evaluation_time: group.evaluation_seconds,
            last_evaluation: go_time_json(group.last_evaluation_ms),
        });
    }
    serde_json::to_string(&Envelope { status: "success", data: RuleDiscovery { groups: out } }).unwrap_or_default()
}

/// The `/api/v1/alerts` body: every pending and firing alert of every alerting rule.
pub fn alerts_body(groups: &[GroupSnapshot]) -> String {
    let alerts = groups
        .iter()
        .flat_map(|group| &group.rules)
        .filter(|rule| rule.spec.kind == RuleKind::Alerting)
        .flat_map(|rule| rule.alerts.iter().map(alert_json))
        .collect();
    serde_json::to_string(&Envelope { status: "success", data: AlertDiscovery { alerts } }).unwrap_or_default()
}

/// Snapshots of every group of `manager`.
pub fn snapshots(manager: &Manager) -> Vec<GroupSnapshot> {
    manager.groups().iter().map(|group| group.snapshot()).collect()
}
