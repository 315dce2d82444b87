//! The rule load of `compare ingest --rules N`: a rule file of N alerting rules over the
//! generator's series, identical for every system, and the rule-evaluation figures read back
//! from each system's own `/metrics` (`prometheus_rule_group_*`, which the engine names as
//! Prometheus does).
//!
//! The rules cycle through four expression kinds that dashboards and alerting mixins use most:
//! a counter's `rate` compared with a threshold, a gauge threshold, `histogram_quantile` over
//! the rate of classic buckets, and an aggregation by a label. Rule `i` reads target
//! `i % target_count`, so the rules together touch the whole fleet. Pure: no I/O.

use std::fmt::Write as _;

use super::exposition::Sample;

/// The four expression kinds, in the order rules cycle through them; `{instance}` is replaced.
const EXPRESSIONS: [&str; 4] = [
    "rate(app0_http_requests_total{instance=\"{instance}\",code=\"500\"}[1m]) > 1000",
    "app0_memory_usage_bytes{instance=\"{instance}\"} > 1e12",
    "histogram_quantile(0.99, sum by (le) (rate(app0_request_duration_seconds_bucket{instance=\"{instance}\"}[1m]))) > 100",
    "avg by (device) (app0_queue_length{instance=\"{instance}\"}) > 1e9",
];

/// What rule file to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLoad {
    /// Alerting rules in all.
    pub rule_count: usize,
    /// Rules per group (the last group may hold fewer).
    pub group_size: usize,
    /// Every group's evaluation interval.
    pub interval_ms: u64,
    /// Targets of the generator (`127.0.0.1:<port_base + i>`).
    pub target_count: usize,
    /// First generator port.
    pub port_base: u16,
}

/// The rule file, in Prometheus' format.
pub fn rule_file_yaml(load: &RuleLoad) -> String {
    let group_size = load.group_size.max(1);
    let mut yaml = String::from("groups:\n");
    for rule_index in 0..load.rule_count {
        if rule_index % group_size == 0 {
            let _ = writeln!(
                yaml,
                "  - name: bench-{}\n    interval: {}ms\n    rules:",
                rule_index / group_size,
                load.interval_ms
            );
        }
        let target = rule_index % load.target_count.max(1);
        let instance = format!("127.0.0.1:{}", load.port_base as usize + target);
        let expr = EXPRESSIONS[rule_index % EXPRESSIONS.len()].replace("{instance}", &instance);
        let _ = writeln!(
            yaml,
            "      - alert: BenchRule{rule_index}\n        expr: '{expr}'\n        labels:\n          severity: page\n        \
             annotations:\n          summary: '{{{{ $labels.instance }}}} at {{{{ $value }}}}'"
        );
    }
    yaml
}

/// Rule evaluation as one system reported it at the end of the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleFigures {
    /// Groups reporting.
    pub group_count: usize,
    /// Rules reported (`prometheus_rule_group_rules`, summed).
    pub rule_count: f64,
    /// Sum over groups of the last evaluation's duration: the work of one interval.
    pub last_duration_sum_s: f64,
    /// The slowest group's last evaluation.
    pub last_duration_max_s: f64,
    /// Scheduled group evaluations, summed over groups.
    pub iterations_count: f64,
    /// Evaluations missed because a group overran its interval.
    pub iterations_missed_count: f64,
    /// Rule evaluations that failed.
    pub evaluation_failures_count: f64,
}

impl RuleFigures {
    /// Reads the figures from a parsed `/metrics` page; `None` when it has no rule groups.
    pub fn from_samples(samples: &[Sample]) -> Option<RuleFigures> {
        let values = |name: &str| -> Vec<f64> {
            samples.iter().filter(|sample| sample.name == name).map(|sample| sample.value).collect()
        };
        let durations = values("prometheus_rule_group_last_duration_seconds");
        if durations.is_empty() {
            return None;
        }
        let total = |name: &str| values(name).iter().sum::<f64>();
        Some(RuleFigures {
            group_count: durations.len(),
            rule_count: total("prometheus_rule_group_rules"),
            last_duration_sum_s: durations.iter().sum(),
            last_duration_max_s: durations.iter().copied().fold(0.0, f64::max),
            iterations_count: total("prometheus_rule_group_iterations_total"),
            iterations_missed_count: total("prometheus_rule_group_iterations_missed_total"),
            evaluation_failures_count: total("prometheus_rule_evaluation_failures_total"),
        })
    }

    /// True when one interval's work fits in the interval and no evaluation was missed.
    pub fn kept_up(&self, interval_ms: u64) -> bool {
        self.iterations_missed_count == 0.0 && self.last_duration_max_s * 1000.0 <= interval_ms as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::exposition;

    #[test]
    fn rule_file_groups_rules_and_cycles_targets_and_kinds() {
        let yaml = rule_file_yaml(&RuleLoad {
            rule_count: 5,
            group_size: 2,
            interval_ms: 15_000,
            target_count: 3,
            port_base: 20_000,
        });
        assert_eq!(yaml.matches("  - name: bench-").count(), 3);
        assert_eq!(yaml.matches("- alert: BenchRule").count(), 5);
        assert!(yaml.contains("interval: 15000ms"));
        assert!(yaml.contains("rate(app0_http_requests_total{instance=\"127.0.0.1:20000\",code=\"500\"}[1m]) > 1000"));
        assert!(yaml.contains("app0_memory_usage_bytes{instance=\"127.0.0.1:20001\"}"));
        // Rule 3 (the fourth kind) reads target 0 again; rule 4 the first kind on target 1.
        assert!(yaml.contains("avg by (device) (app0_queue_length{instance=\"127.0.0.1:20000\"})"));
        assert!(yaml.contains("rate(app0_http_requests_total{instance=\"127.0.0.1:20001\",code=\"500\"}"));
        let parsed = engine::rules::file::parse_rule_file("bench.yml", &yaml).expect("the engine loads it");
        assert_eq!(parsed.rule_count(), 5);
    }

    #[test]
    fn figures_sum_over_groups() {
        let body = "prometheus_rule_group_last_duration_seconds{rule_group=\"f;a\"} 0.5\n\
                    prometheus_rule_group_last_duration_seconds{rule_group=\"f;b\"} 1.5\n\
                    prometheus_rule_group_rules{rule_group=\"f;a\"} 100\nprometheus_rule_group_rules{rule_group=\"f;b\"} 100\n\
                    prometheus_rule_group_iterations_total{rule_group=\"f;a\"} 8\nprometheus_rule_group_iterations_total{rule_group=\"f;b\"} 8\n\
                    prometheus_rule_group_iterations_missed_total{rule_group=\"f;a\"} 0\n\
                    prometheus_rule_evaluation_failures_total{rule_group=\"f;a\"} 0\n";
        let figures = RuleFigures::from_samples(&exposition::parse(body).unwrap()).unwrap();
        assert_eq!(figures.group_count, 2);
        assert_eq!(figures.rule_count, 200.0);
        assert_eq!(figures.last_duration_sum_s, 2.0);
        assert_eq!(figures.last_duration_max_s, 1.5);
        assert_eq!(figures.iterations_count, 16.0);
        assert!(figures.kept_up(15_000));
        assert!(!figures.kept_up(1_000));
        assert!(RuleFigures::from_samples(&exposition::parse("up 1\n").unwrap()).is_none());
    }
}
