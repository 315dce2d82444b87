//! Inhibition: a firing source alert mutes target alerts that agree with it on the rule's
//! `equal` labels (Alertmanager 0.25 `inhibit/inhibit.go`).
//!
//! Semantics (`Inhibitor.Mutes`, `InhibitRule.hasEqual`):
//! - A label set is inhibited when some rule's target matchers accept it and the rule holds a
//!   source alert that is still firing at `now_ms` whose `equal` labels have the same values; a
//!   label missing on both sides counts as equal (both are "").
//! - When the label set also matches the rule's source side, source alerts that match the
//!   target side too are disregarded, so an alert matching both sides never inhibits itself
//!   (nor another alert that matches both sides).
//!
//! Invariants: each rule keeps the alerts whose labels match its source matchers, keyed by
//! labels (a newer version of an alert replaces the older); iteration is in label order, so
//! the reported inhibiting alert is deterministic. The cache holds at most the alerts the
//! caller's alert store holds (the caller bounds that); [`Inhibitor::gc`] drops resolved ones.
//!
//! Concurrency: plain value; the owner serialises updates and queries (`&mut self` / `&self`).

use std::collections::BTreeMap;

use crate::alert::config::{AlertManagerConfig, InhibitRuleConfig};
use crate::alert::matcher::Matchers;
use crate::model::Labels;
use crate::notifier::Alert;

/// One inhibition rule with its matchers combined and sorted.
#[derive(Clone, Debug, PartialEq)]
pub struct InhibitRule {
    /// Matchers selecting the alerts that inhibit.
    pub source_matchers: Matchers,
    /// Matchers selecting the alerts that may be inhibited.
    pub target_matchers: Matchers,
    /// Label names whose values must be equal on source and target, sorted and distinct.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Builds a rule from its configuration (`NewInhibitRule`).
    pub fn from_config(config: &InhibitRuleConfig) -> InhibitRule {
        let mut equal = config.equal.clone();
        equal.sort();
        equal.dedup();
        InhibitRule {
            source_matchers: Matchers::new(config.all_source_matchers()),
            target_matchers: Matchers::new(config.all_target_matchers()),
            equal,
        }
    }

    fn equal_labels_agree(&self, source: &Labels, target: &Labels) -> bool {
        self.equal.iter().all(|name| source.get(name).unwrap_or("") == target.get(name).unwrap_or(""))
    }
}

/// A rule with its cache of source alerts.
#[derive(Clone, Debug)]
struct RuleState {
    rule: InhibitRule,
    sources: BTreeMap<Labels, Alert>,
}

/// Holds the inhibition rules and the current alerts matching their source side.
#[derive(Clone, Debug, Default)]
pub struct Inhibitor {
    rules: Vec<RuleState>,
}

impl Inhibitor {
    /// An inhibitor for `rules`, with no alerts yet.
    pub fn new(rules: Vec<InhibitRule>) -> Inhibitor {
        Inhibitor { rules: rules.into_iter().map(|rule| RuleState { rule, sources: BTreeMap::new() }).collect() }
    }

    /// An inhibitor for a configuration's `inhibit_rules`.
    pub fn from_config(config: &AlertManagerConfig) -> Inhibitor {
        Inhibitor::new(config.inhibit_rules.iter().map(InhibitRule::from_config).collect())
    }

    /// The rules in configuration order.
    pub fn rules(&self) -> impl Iterator<Item = &InhibitRule> {
        self.rules.iter().map(|state| &state.rule)
    }

    /// Records the current version of an alert (new, updated or resolved), as Alertmanager's
    /// inhibitor does for every alert it is told about: each rule whose source side matches
    /// keeps it, replacing the version with the same labels.
    pub fn put(&mut self, alert: &Alert) {
        for state in &mut self.rules {
            if state.rule.source_matchers.matches(&alert.labels) {
                state.sources.insert(alert.labels.clone(), alert.clone());
            }
        }
    }

    /// Forgets the alert with these labels (deleted from the caller's store).
    pub fn remove(&mut self, labels: &Labels) {
        for state in &mut self.rules {
            state.sources.remove(labels);
        }
    }

    /// Drops source alerts resolved at `now_ms`; returns how many entries went (an alert counts
    /// once per rule holding it).
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let mut removed_count = 0;
        for state in &mut self.rules {
            let before = state.sources.len();
            state.sources.retain(|_, alert| !alert.is_resolved_at(now_ms));
            removed_count += before - state.sources.len();
        }
        removed_count
    }

    /// True when an alert with `labels` is inhibited at `now_ms`.
    pub fn is_inhibited(&self, labels: &Labels, now_ms: i64) -> bool {
        self.inhibited_by(labels, now_ms).is_some()
    }

    /// The labels of the first source alert (first rule, then label order) inhibiting an alert
    /// with `labels` at `now_ms`, or `None` when it is not inhibited.
    pub fn inhibited_by(&self, labels: &Labels, now_ms: i64) -> Option<&Labels> {
        for state in &self.rules {
            let rule = &state.rule;
            if !rule.target_matchers.matches(labels) {
                continue;
            }
            let exclude_two_sided = rule.source_matchers.matches(labels);
            let source = state.sources.values().find(|source| {
                !source.is_resolved_at(now_ms)
                    && rule.equal_labels_agree(&source.labels, labels)
                    && !(exclude_two_sided && rule.target_matchers.matches(&source.labels))
            });
            if let Some(source) = source {
                return Some(&source.labels);
            }
        }
        None
    }

    /// Source alerts held, summed over rules.
    pub fn source_alert_count(&self) -> usize {
        self.rules.iter().map(|state| state.sources.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::config::parse;

    fn alert(pairs: &[(&str, &str)], ends_at_ms: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: Labels::empty(),
            starts_at_ms: 1_000,
            ends_at_ms,
            generator_url: String::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn build(rules_yaml: &str) -> Inhibitor {
        let yaml = format!("route: {{receiver: r}}\nreceivers: [{{name: r}}]\ninhibit_rules:\n{rules_yaml}");
        Inhibitor::from_config(&parse(&yaml).expect("valid config"))
    }

    const CRITICAL_INHIBITS_WARNING: &str = "  - source_matchers: ['severity=\"critical\"']\n    \
                                             target_matchers: ['severity=\"warning\"']\n    \
                                             equal: [cluster, zone]\n";

    #[test]
    fn firing_source_inhibits_targets_with_equal_labels() {
        let mut inhibitor = build(CRITICAL_INHIBITS_WARNING);
        let now_ms = 10_000;
        inhibitor.put(&alert(&[("alertname", "Down"), ("severity", "critical"), ("cluster", "a")], 0));
        #[track_caller]
        fn check(inhibitor: &Inhibitor, pairs: &[(&str, &str)], now_ms: i64, expected: bool) {
            assert_eq!(inhibitor.is_inhibited(&labels(pairs), now_ms), expected, "{pairs:?} at {now_ms}");
        }
        check(&inhibitor, &[("severity", "warning"), ("cluster", "a")], now_ms, true);
        check(&inhibitor, &[("severity", "warning"), ("cluster", "b")], now_ms, false);
        // `zone` is missing on both: equal. Present on one side only: not equal.
        check(&inhibitor, &[("severity", "warning"), ("cluster", "a"), ("zone", "z1")], now_ms, false);
        check(&inhibitor, &[("severity", "info"), ("cluster", "a")], now_ms, false);
        assert_eq!(
            inhibitor.inhibited_by(&labels(&[("severity", "warning"), ("cluster", "a")]), now_ms),
            Some(&labels(&[("alertname", "Down"), ("severity", "critical"), ("cluster", "a")]))
        );
        // Alerts that do not match the source side are not kept.
        inhibitor.put(&alert(&[("severity", "warning"), ("cluster", "a")], 0));
        assert_eq!(inhibitor.source_alert_count(), 1);
    }

    #[test]
    fn resolved_source_does_not_inhibit() {
        let mut inhibitor = build(CRITICAL_INHIBITS_WARNING);
        let target = labels(&[("severity", "warning"), ("cluster", "a")]);
        // Firing until 5_000 (ends_at in the future counts as firing).
        inhibitor.put(&alert(&[("severity", "critical"), ("cluster", "a")], 5_000));
        assert!(inhibitor.is_inhibited(&target, 4_999));
        assert!(!inhibitor.is_inhibited(&target, 5_000));
        assert_eq!(inhibitor.gc(4_999), 0);
        assert_eq!(inhibitor.gc(5_000), 1);
        // A newer version of the same alert replaces the old one.
        inhibitor.put(&alert(&[("severity", "critical"), ("cluster", "a")], 0));
        assert!(inhibitor.is_inhibited(&target, 6_000));
        inhibitor.put(&alert(&[("severity", "critical"), ("cluster", "a")], 6_000));
        assert!(!inhibitor.is_inhibited(&target, 6_000));
        inhibitor.put(&alert(&[("severity", "critical"), ("cluster", "a")], 0));
        inhibitor.remove(&labels(&[("severity", "critical"), ("cluster", "a")]));
        assert!(!inhibitor.is_inhibited(&target, 6_000));
    }

    #[test]
    fn alert_matching_both_sides_does_not_inhibit_itself() {
        // Every alert of the cluster matches both sides.
        let mut inhibitor = build("  - source_matchers: ['cluster=\"a\"']\n    target_matchers: ['cluster=\"a\"']\n");
        let first = alert(&[("alertname", "One"), ("cluster", "a")], 0);
        inhibitor.put(&first);
        assert!(!inhibitor.is_inhibited(&first.labels, 2_000), "no self-inhibition");
        let second = alert(&[("alertname", "Two"), ("cluster", "a")], 0);
        inhibitor.put(&second);
        assert!(!inhibitor.is_inhibited(&second.labels, 2_000), "two-sided alerts do not inhibit each other");

        // A source that matches only the source side still inhibits a two-sided target.
        let mut inhibitor = build(
            "  - source_matchers: ['severity=~\"critical|warning\"']\n    target_matchers: ['severity=\"warning\"']\n",
        );
        let warning = alert(&[("alertname", "W"), ("severity", "warning")], 0);
        inhibitor.put(&warning);
        assert!(!inhibitor.is_inhibited(&warning.labels, 2_000));
        inhibitor.put(&alert(&[("alertname", "C"), ("severity", "critical")], 0));
        assert!(inhibitor.is_inhibited(&warning.labels, 2_000));
    }

    #[test]
    fn legacy_match_keys_combine_with_matchers() {
        let inhibitor = build(
            "  - source_match: {severity: critical}\n    source_match_re: {service: 'api|web'}\n    \
             target_match_re: {severity: 'warn.*'}\n    target_matchers: ['team!=\"ops\"']\n    equal: [service]\n",
        );
        let rule = inhibitor.rules().next().expect("one rule");
        assert_eq!(rule.source_matchers.to_string(), r#"{service=~"api|web",severity="critical"}"#);
        assert_eq!(rule.target_matchers.to_string(), r#"{severity=~"warn.*",team!="ops"}"#);
        let mut inhibitor = inhibitor;
        inhibitor.put(&alert(&[("severity", "critical"), ("service", "api")], 0));
        assert!(inhibitor.is_inhibited(&labels(&[("severity", "warning"), ("service", "api")]), 1));
        assert!(!inhibitor.is_inhibited(&labels(&[("severity", "warning"), ("service", "web")]), 1));
        assert!(!inhibitor.is_inhibited(&labels(&[("severity", "warning"), ("service", "api"), ("team", "ops")]), 1));
    }
}
