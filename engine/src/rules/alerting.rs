//! Alerting rules (rules/alerting.go): the pending -> firing state machine with `for` and
//! `keep_firing_for`, resolved alerts kept [`RESOLVED_RETENTION_MS`] for re-sending, templated
//! labels and annotations, the `ALERTS` / `ALERTS_FOR_STATE` samples, and which alerts need
//! sending now (`needsSending`, `sendAlerts`).
//!
//! Alerts are keyed by their label set in a `BTreeMap`, so every iteration order that reaches
//! output is the labels' order.

use std::collections::{BTreeMap, BTreeSet};

use super::file::RuleSpec;
use super::{EvalContext, RESOLVED_RETENTION_MS};
use crate::model::{Labels, METRIC_NAME_LABEL};
use crate::promql::InstantSample;
use crate::template::{expand_alert, AlertTemplateData, QuerySample};

/// State of one alert instance (`rules.AlertState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    /// Resolved (kept for re-sending) or never active.
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for at least `for`.
    Firing,
}

impl AlertState {
    /// Prometheus' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert instance of a rule (`rules.Alert`). Times are Unix ms.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleAlert {
    /// Identifying labels: the series' (without `__name__`), the templated rule labels, `alertname`.
    pub labels: Labels,
    /// Templated annotations.
    pub annotations: Labels,
    /// Current state.
    pub state: AlertState,
    /// The value at the last evaluation that returned it.
    pub value: f64,
    /// When it became pending.
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it was resolved.
    pub resolved_at_ms: Option<i64>,
    /// When it was last handed to the sink.
    pub last_sent_at_ms: Option<i64>,
    /// The `endsAt` of a firing alert's last send.
    pub valid_until_ms: i64,
    /// Since when it has been kept firing by `keep_firing_for`.
    pub keep_firing_since_ms: Option<i64>,
}

impl RuleAlert {
    /// alerting.go `needsSending`.
    fn needs_sending(&self, time_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        // A resolution not yet reported is sent at once.
        if self.resolved_at_ms.unwrap_or(i64::MIN) > self.last_sent_at_ms.unwrap_or(i64::MIN) {
            return true;
        }
        self.last_sent_at_ms.map_or(i64::MIN, |sent| sent.saturating_add(resend_delay_ms)) < time_ms
    }
}

/// The alerts of one rule and whether its `for` state has been restored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertingState {
    /// Alert instances by labels, resolved ones included until their retention ends.
    pub active: BTreeMap<Labels, RuleAlert>,
    /// False until the `for` state was restored after a start; until then no `ALERTS` series
    /// are written, so the restore reads the previous run's.
    pub restored: bool,
}

impl AlertingState {
    /// One evaluation (alerting.go `AlertingRule.Eval`) over the query result `result` at
    /// `time_ms` (the group's timestamp; samples are written at `sample_time_ms`, the timestamp
    /// minus the query offset). Returns the `ALERTS` and `ALERTS_FOR_STATE` samples.
    #[allow(clippy::too_many_arguments)]
    pub fn eval(
        &mut self,
        spec: &RuleSpec,
        result: Vec<InstantSample>,
        time_ms: i64,
        sample_time_ms: i64,
        limit: usize,
        context: &EvalContext,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let mut current: BTreeMap<Labels, RuleAlert> = BTreeMap::new();
        let query = |expr: &str| -> Result<Vec<QuerySample>, String> {
            super::query_vector(&context.engine, expr, time_ms).map(|samples| {
                samples
                    .into_iter()
                    .map(|sample| QuerySample {
                        labels: sample.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                        value: sample.value,
                    })
                    .collect()
            })
        };
        let template_name = format!("__alert_{}", spec.name);
        for sample in result {
            let label_map: BTreeMap<String, String> =
                sample.labels.iter().map(|label| (label.name.clone(), label.value.clone())).collect();
            let data = AlertTemplateData {
                labels: &label_map,
                external_labels: &context.external_labels,
                external_url: &context.external_url,
                value: sample.value,
            };
            let expand = |text: &str| match expand_alert(&template_name, text, &data, &query) {
                Ok(text) => text,
                Err(error) => {
                    tracing::warn!(alert = %spec.name, %error, "expanding alert template failed");
                    format!("<error expanding template: {error}>")
                }
            };
            let mut labels = sample.labels.without_metric_name();
            for (name, text) in &spec.labels {
                labels.set(name, &expand(text));
            }
            labels.set("alertname", &spec.name);
            let annotations =
                Labels::from_pairs(spec.annotations.iter().map(|(name, text)| (name.clone(), expand(text))));
            if current.contains_key(&labels) {
                return Err("vector contains metrics with the same labelset after applying alert labels".to_string());
            }
            current.insert(
                labels.clone(),
                RuleAlert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: sample.value,
                    active_at_ms: time_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: 0,
                    keep_firing_since_ms: None,
                },
            );
        }
        let returned: BTreeSet<Labels> = current.keys().cloned().collect();
        for (labels, alert) in current {
            match self.active.get_mut(&labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = alert.value;
                    existing.annotations = alert.annotations;
                }
                _ => {
                    self.active.insert(labels, alert);
                }
            }
        }
        let mut output = Vec::new();
        let mut active_pending_count = 0usize;
        let mut removed = Vec::new();
        for (labels, alert) in self.active.iter_mut() {
            if !returned.contains(labels) {
                let mut keep_firing = false;
                if alert.state == AlertState::Firing && spec.keep_firing_for_ms > 0 {
                    let since = *alert.keep_firing_since_ms.get_or_insert(time_ms);
                    keep_firing = time_ms - since < spec.keep_firing_for_ms;
                }
                let retention_over =
                    alert.resolved_at_ms.is_some_and(|resolved| time_ms - resolved > RESOLVED_RETENTION_MS);
                if alert.state == AlertState::Pending || retention_over {
                    removed.push(labels.clone());
                }
                if alert.state != AlertState::Inactive && !keep_firing {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at_ms = Some(time_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                alert.keep_firing_since_ms = None;
            }
            active_pending_count += 1;
            if alert.state == AlertState::Pending && time_ms - alert.active_at_ms >= spec.for_ms {
                alert.state = AlertState::Firing;
                alert.fired_at_ms = Some(time_ms);
            }
            if self.restored {
                output.push((alerts_series(spec, alert), 1.0));
                let mut for_state = alert.labels.clone();
                for (name, value) in &spec.labels {
                    if for_state.get(name).is_none() {
                        for_state.set(name, value);
                    }
                }
                for_state.set(METRIC_NAME_LABEL, "ALERTS_FOR_STATE");
                output.push((for_state, alert.active_at_ms.div_euclid(1000) as f64));
            }
        }
        for labels in removed {
            self.active.remove(&labels);
        }
        if limit > 0 && active_pending_count > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {active_pending_count} alerts"));
        }
        let _ = sample_time_ms; // The caller stamps the samples; kept in the signature for clarity.
        Ok(output)
    }

    /// The alerts to hand to the sink at `time_ms` (alerting.go `sendAlerts`): each one that
    /// needs sending is marked sent and valid for 4 x max(resend delay, interval), so a
    /// receiver resolves it itself if two evaluations or sends are lost.
    pub fn alerts_to_send(&mut self, time_ms: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<RuleAlert> {
        let mut alerts = Vec::new();
        for alert in self.active.values_mut() {
            if alert.needs_sending(time_ms, resend_delay_ms) {
                alert.last_sent_at_ms = Some(time_ms);
                alert.valid_until_ms = time_ms + 4 * resend_delay_ms.max(interval_ms);
                alerts.push(alert.clone());
            }
        }
        alerts
    }

    /// The highest state of any alert (the rule's `state` in the API).
    pub fn state(&self) -> AlertState {
        self.active.values().map(|alert| alert.state).max().unwrap_or(AlertState::Inactive)
    }
}

/// `ALERTS{alertname, alertstate, ...}` of `alert` (alerting.go `sample`).
fn alerts_series(spec: &RuleSpec, alert: &RuleAlert) -> Labels {
    let mut labels = alert.labels.clone();
    for (name, value) in &spec.labels {
        if labels.get(name).is_none() {
            labels.set(name, value);
        }
    }
    labels.set(METRIC_NAME_LABEL, "ALERTS");
    labels.set("alertstate", alert.state.as_str());
    labels
}
