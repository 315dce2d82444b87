//! The alert as rules hand it over and as it travels to an alert manager (Prometheus
//! `notifier.Alert`): the contract between `rules` (producer), the notifier (queue, batches,
//! HTTP to Alertmanager API v2) and the embedded alert manager (`alert`), which all exchange
//! this shape.

use crate::model::Labels;

/// One alert instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels (`alertname` and the rule's and series' labels).
    pub labels: Labels,
    /// Templated annotations (`summary`, `description`, ...).
    pub annotations: Labels,
    /// When the alert started firing, Unix ms.
    pub starts_at_ms: i64,
    /// When the alert ends: its resolve time for a resolved alert, a time a few evaluation
    /// intervals ahead for a firing one (so a receiver resolves it if the sender vanishes);
    /// 0 when unset.
    pub ends_at_ms: i64,
    /// Link back to the rule's expression.
    pub generator_url: String,
}

impl Alert {
    /// True when `ends_at_ms` is set and not after `now_ms` (Prometheus `Alert.Resolved`).
    pub fn is_resolved_at(&self, now_ms: i64) -> bool {
        self.ends_at_ms != 0 && self.ends_at_ms <= now_ms
    }
}

/// Where rules deliver alerts.
pub trait AlertSink: Send + Sync {
    /// Queues `alerts` for delivery. Never blocks and never fails: a full queue drops the oldest
    /// alerts and counts them.
    fn send(&self, alerts: Vec<Alert>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_only_when_ends_at_is_set_and_reached() {
        let mut alert = Alert {
            labels: Labels::from_pairs([("alertname", "A")]),
            annotations: Labels::empty(),
            starts_at_ms: 1_000,
            ends_at_ms: 0,
            generator_url: String::new(),
        };
        assert!(!alert.is_resolved_at(5_000));
        alert.ends_at_ms = 5_000;
        assert!(!alert.is_resolved_at(4_999));
        assert!(alert.is_resolved_at(5_000));
    }
}
