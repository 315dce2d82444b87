//! Relabeling (Prometheus model/relabel/relabel.go): the `relabel_configs`,
//! `metric_relabel_configs`, `alert_relabel_configs` and `write_relabel_configs` rules that
//! rewrite, keep or drop label sets.
//!
//! Semantics follow Prometheus 2.42: regexes are fully anchored (`^(?:regex)$`); the source
//! labels' values (missing ones as empty strings) are joined by the separator; `$1`, `${1}` and
//! `$name` in `replacement` and `target_label` expand as Go's `Regexp.Expand` does (the regex
//! crate's `Captures::expand` has the same longest-name rule); setting a label to the empty
//! string removes it; `hashmod` takes the last 8 bytes of the MD5 digest as a big-endian integer.
//!
//! A [`RelabelConfig`] is validated when it is built ([`RelabelConfig::from_raw`]), so applying
//! one cannot fail: it only yields a new label set or `None` (dropped).

use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

use crate::model::Labels;

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Writes `replacement` (expanded) to `target_label` when `regex` matches.
    Replace,
    /// Drops the label set unless `regex` matches the joined source values.
    Keep,
    /// Drops the label set when `regex` matches.
    Drop,
    /// Drops the label set unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drops the label set when the joined source values equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to the MD5 of the joined values modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches to the name `replacement` expands to.
    LabelMap,
    /// Removes every label whose name matches.
    LabelDrop,
    /// Removes every label whose name does not match.
    LabelKeep,
    /// Sets `target_label` to the joined values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined values in upper case.
    Uppercase,
}

impl Action {
    fn parse(text: &str) -> Option<Action> {
        // Prometheus accepts actions in any case.
        Some(match text.to_ascii_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

const SEPARATOR_DEFAULT: &str = ";";
const REGEX_DEFAULT: &str = "(.*)";
const REPLACEMENT_DEFAULT: &str = "$1";

/// One rule as written in YAML (Prometheus' keys; unknown keys are errors).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    /// Labels whose values are joined and matched.
    #[serde(default)]
    pub source_labels: Option<Vec<String>>,
    /// Joins the source values (default `;`).
    #[serde(default)]
    pub separator: Option<String>,
    /// Matched against the joined values, anchored (default `(.*)`).
    #[serde(default)]
    pub regex: Option<String>,
    /// For `hashmod`.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The label written by replace, hashmod, lowercase, uppercase; compared by keepequal and
    /// dropequal.
    #[serde(default)]
    pub target_label: Option<String>,
    /// What replace writes and labelmap names (default `$1`).
    #[serde(default)]
    pub replacement: Option<String>,
    /// Default `replace`.
    #[serde(default)]
    pub action: Option<String>,
}

/// A validated rule.
#[derive(Clone, Debug)]
pub struct RelabelConfig {
    source_labels: Vec<String>,
    separator: String,
    regex_source: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source_labels == other.source_labels
            && self.separator == other.separator
            && self.regex_source == other.regex_source
            && self.modulus == other.modulus
            && self.target_label == other.target_label
            && self.replacement == other.replacement
            && self.action == other.action
    }
}

/// Matches what `target_label` may be for `replace`: a label name, possibly with `$1` / `${name}`
/// references (relabel.go `relabelTarget`).
fn is_valid_target_template(text: &str) -> bool {
    static PATTERN: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex"))
        .is_match(text)
}

fn is_valid_label_name(name: &str) -> bool {
    crate::rules::file::is_valid_label_name(name)
}

impl RelabelConfig {
    /// Validates `raw` as Prometheus' `Config.Validate` does, with its messages.
    pub fn from_raw(raw: &RawRelabelConfig) -> Result<RelabelConfig, String> {
        let action_text = raw.action.as_deref().unwrap_or("replace");
        let action = Action::parse(action_text).ok_or_else(|| format!("unknown relabel action {action_text:?}"))?;
        let regex_source = raw.regex.clone().unwrap_or_else(|| REGEX_DEFAULT.to_string());
        let regex = Regex::new(&format!("^(?:{regex_source})$"))
            .map_err(|error| format!("invalid relabel regex {regex_source:?}: {error}"))?;
        let modulus = raw.modulus.unwrap_or(0);
        let target_label = raw.target_label.clone().unwrap_or_default();
        let replacement = raw.replacement.clone().unwrap_or_else(|| REPLACEMENT_DEFAULT.to_string());
        let config = RelabelConfig {
            source_labels: raw.source_labels.clone().unwrap_or_default(),
            separator: raw.separator.clone().unwrap_or_else(|| SEPARATOR_DEFAULT.to_string()),
            regex_source,
            regex,
            modulus,
            target_label,
            replacement,
            action,
        };
        config.validate(raw)?;
        Ok(config)
    }

    fn validate(&self, raw: &RawRelabelConfig) -> Result<(), String> {
        let action = self.action;
        if action == Action::HashMod && self.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".to_string());
        }
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!("relabel configuration for {action} action requires 'target_label' value"));
        }
        if action == Action::Replace && !is_valid_target_template(&self.target_label) {
            return Err(format!("{:?} is invalid 'target_label' for {action} action", self.target_label));
        }
        let plain_target = matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::HashMod | Action::KeepEqual | Action::DropEqual
        );
        if plain_target && !is_valid_label_name(&self.target_label) {
            return Err(format!("{:?} is invalid 'target_label' for {action} action", self.target_label));
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual)
            && (raw.regex.is_some() || raw.modulus.is_some() || raw.separator.is_some() || raw.replacement.is_some())
        {
            return Err(format!(
                "{action} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if action == Action::LabelMap && !is_valid_target_template(&self.replacement) {
            return Err(format!("{:?} is invalid 'replacement' for {action} action", self.replacement));
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep)
            && (raw.source_labels.as_ref().is_some_and(|labels| !labels.is_empty())
                || !self.target_label.is_empty()
                || raw.modulus.is_some()
                || raw.separator.is_some()
                || raw.replacement.is_some())
        {
            return Err(format!("{action} action requires only 'regex', and no other fields"));
        }
        for name in &self.source_labels {
            if !is_valid_label_name(name) {
                return Err(format!("{name:?} is not a valid label name in 'source_labels'"));
            }
        }
        Ok(())
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Applies this rule to `labels`; `None` when the rule drops them.
    pub fn apply(&self, labels: Labels) -> Option<Labels> {
        let joined = self.joined_source_values(&labels);
        let mut labels = labels;
        match self.action {
            Action::Drop => {
                if self.regex.is_match(&joined) {
                    return None;
                }
            }
            Action::Keep => {
                if !self.regex.is_match(&joined) {
                    return None;
                }
            }
            Action::DropEqual => {
                if labels.get(&self.target_label).unwrap_or("") == joined {
                    return None;
                }
            }
            Action::KeepEqual => {
                if labels.get(&self.target_label).unwrap_or("") != joined {
                    return None;
                }
            }
            Action::Replace => {
                let Some(captures) = self.regex.captures(&joined) else { return Some(labels) };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                if !is_valid_label_name(&target) {
                    return Some(labels);
                }
                let mut value = String::new();
                captures.expand(&self.replacement, &mut value);
                labels.set(&target, &value);
            }
            Action::Lowercase => labels.set(&self.target_label, &joined.to_lowercase()),
            Action::Uppercase => labels.set(&self.target_label, &joined.to_uppercase()),
            Action::HashMod => {
                let digest = Md5::digest(joined.as_bytes());
                let mut low_bytes = [0u8; 8];
                low_bytes.copy_from_slice(&digest[8..16]);
                let value = u64::from_be_bytes(low_bytes) % self.modulus;
                labels.set(&self.target_label, &value.to_string());
            }
            Action::LabelMap => {
                let mut mapped = labels.clone();
                for label in labels.iter() {
                    if let Some(captures) = self.regex.captures(&label.name) {
                        let mut name = String::new();
                        captures.expand(&self.replacement, &mut name);
                        mapped.set(&name, &label.value);
                    }
                }
                labels = mapped;
            }
            Action::LabelDrop | Action::LabelKeep => {
                let keep_matching = self.action == Action::LabelKeep;
                let pairs: Vec<(String, String)> = labels
                    .iter()
                    .filter(|label| self.regex.is_match(&label.name) == keep_matching)
                    .map(|label| (label.name.clone(), label.value.clone()))
                    .collect();
                labels = Labels::from_pairs(pairs);
            }
        }
        Some(labels)
    }

    fn joined_source_values(&self, labels: &Labels) -> String {
        let mut joined = String::new();
        for (index, name) in self.source_labels.iter().enumerate() {
            if index > 0 {
                joined.push_str(&self.separator);
            }
            joined.push_str(labels.get(name).unwrap_or(""));
        }
        joined
    }
}

/// Validates every rule of a list; the error names the rule's index.
pub fn from_raw_list(raw: &[RawRelabelConfig]) -> Result<Vec<RelabelConfig>, String> {
    raw.iter()
        .enumerate()
        .map(|(index, raw)| RelabelConfig::from_raw(raw).map_err(|error| format!("relabel rule {index}: {error}")))
        .collect()
}

/// Applies `rules` in order (relabel.go `Process`); `None` when one drops the label set.
pub fn process(labels: Labels, rules: &[RelabelConfig]) -> Option<Labels> {
    rules.iter().try_fold(labels, |labels, rule| rule.apply(labels))
}

/// Whether relabeled `labels` still name a valid series (Prometheus' `Labels.IsValid`): a valid
/// metric name when there is one, and valid label names (`labelmap` writes any name its
/// replacement expands to).
pub fn is_valid_series(labels: &Labels) -> bool {
    labels.iter().all(|label| {
        is_valid_label_name(&label.name)
            && (label.name != crate::model::METRIC_NAME_LABEL || crate::rules::file::is_valid_metric_name(&label.value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> RelabelConfig {
        let raw: RawRelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
        RelabelConfig::from_raw(&raw).unwrap()
    }

    fn rule_error(yaml: &str) -> String {
        let raw: RawRelabelConfig = serde_yaml_ng::from_str(yaml).unwrap();
        RelabelConfig::from_raw(&raw).unwrap_err()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn replace_expands_groups_into_target_and_value() {
        let rule = rule("{source_labels: [a, b], regex: '(.*);(x.*)', target_label: 'c_$1', replacement: '$2-${1}'}");
        let out = rule.apply(labels(&[("a", "foo"), ("b", "xbar")])).unwrap();
        assert_eq!(out, labels(&[("a", "foo"), ("b", "xbar"), ("c_foo", "xbar-foo")]));
        // No match: unchanged.
        let unchanged = labels(&[("a", "foo"), ("b", "bar")]);
        assert_eq!(rule.apply(unchanged.clone()).unwrap(), unchanged);
    }

    #[test]
    fn replace_with_empty_value_removes_the_target_and_invalid_targets_are_skipped() {
        let remove = rule("{source_labels: [missing], regex: '(.*)', target_label: a}");
        assert_eq!(remove.apply(labels(&[("a", "1"), ("b", "2")])).unwrap(), labels(&[("b", "2")]));
        // `$1x` names group "1x" (Go's longest-name rule), which is empty: the target "" is invalid.
        let skip = rule("{source_labels: [a], regex: '(.*)', target_label: '$1x', replacement: v}");
        assert_eq!(skip.apply(labels(&[("a", "1")])).unwrap(), labels(&[("a", "1")]));
    }

    #[test]
    fn regexes_are_anchored() {
        let keep = rule("{source_labels: [job], regex: 'api', action: keep}");
        assert!(keep.apply(labels(&[("job", "api")])).is_some());
        assert!(keep.apply(labels(&[("job", "api-server")])).is_none());
        let drop = rule("{source_labels: [job], regex: 'api|web', action: DROP}");
        assert!(drop.apply(labels(&[("job", "web")])).is_none());
        assert!(drop.apply(labels(&[("job", "webx")])).is_some());
    }

    #[test]
    fn equal_actions_compare_with_the_target_label() {
        let keep = rule("{source_labels: [a], target_label: b, action: keepequal}");
        assert!(keep.apply(labels(&[("a", "1"), ("b", "1")])).is_some());
        assert!(keep.apply(labels(&[("a", "1"), ("b", "2")])).is_none());
        let drop = rule("{source_labels: [a], target_label: b, action: dropequal}");
        assert!(drop.apply(labels(&[("a", "1"), ("b", "1")])).is_none());
    }

    #[test]
    fn label_map_drop_and_keep_work_on_names() {
        let map = rule("{regex: '__meta_(.+)', action: labelmap}");
        assert_eq!(
            map.apply(labels(&[("__meta_zone", "eu"), ("a", "1")])).unwrap(),
            labels(&[("__meta_zone", "eu"), ("a", "1"), ("zone", "eu")])
        );
        let drop = rule("{regex: 'replica|tmp_.*', action: labeldrop}");
        assert_eq!(
            drop.apply(labels(&[("replica", "a"), ("tmp_x", "1"), ("job", "j")])).unwrap(),
            labels(&[("job", "j")])
        );
        let keep = rule("{regex: 'job|__name__', action: labelkeep}");
        assert_eq!(
            keep.apply(labels(&[("__name__", "up"), ("instance", "i"), ("job", "j")])).unwrap(),
            labels(&[("__name__", "up"), ("job", "j")])
        );
    }

    #[test]
    fn case_actions_and_hashmod() {
        let lower = rule("{source_labels: [a], target_label: b, action: lowercase}");
        assert_eq!(lower.apply(labels(&[("a", "MiXeD")])).unwrap().get("b"), Some("mixed"));
        let upper = rule("{source_labels: [a], target_label: b, action: uppercase}");
        assert_eq!(upper.apply(labels(&[("a", "MiXeD")])).unwrap().get("b"), Some("MIXED"));
        // Prometheus' relabel_test.go: "baz" and "foo\nbar" with modulus 1000 hash to 976 and 734.
        let hash = rule("{source_labels: [a], target_label: shard, modulus: 1000, action: hashmod}");
        assert_eq!(hash.apply(labels(&[("a", "baz")])).unwrap().get("shard"), Some("976"));
        assert_eq!(hash.apply(labels(&[("a", "foo\nbar")])).unwrap().get("shard"), Some("734"));
    }

    #[test]
    fn process_stops_at_the_first_drop() {
        let rules =
            [rule("{regex: replica, action: labeldrop}"), rule("{source_labels: [job], regex: x, action: drop}")];
        assert_eq!(process(labels(&[("job", "y"), ("replica", "a")]), &rules), Some(labels(&[("job", "y")])));
        assert_eq!(process(labels(&[("job", "x")]), &rules), None);
    }

    #[test]
    fn relabeled_series_validity() {
        assert!(is_valid_series(&labels(&[("__name__", "a:b_1"), ("x", "1")])));
        assert!(is_valid_series(&labels(&[("x", "1")])), "no metric name is another check");
        assert!(!is_valid_series(&labels(&[("__name__", "1a")])));
        // A capture can expand to a name no label may have.
        let map = rule("{regex: '_(.+)', replacement: '$1', action: labelmap}");
        assert!(!is_valid_series(&map.apply(labels(&[("__name__", "a"), ("_1x", "1")])).unwrap()));
    }

    #[test]
    fn invalid_rules_are_refused_with_prometheus_messages() {
        assert!(rule_error("{action: explode}").contains("unknown relabel action"));
        assert!(rule_error("{source_labels: [a], target_label: b, action: hashmod}").contains("non-zero modulus"));
        assert!(rule_error("{source_labels: [a]}").contains("requires 'target_label'"));
        assert!(rule_error("{source_labels: [a], target_label: '1bad'}").contains("invalid 'target_label'"));
        assert!(rule_error("{regex: a, target_label: b, action: labeldrop}").contains("requires only 'regex'"));
        assert!(rule_error("{source_labels: [a], regex: '(', target_label: b}").contains("invalid relabel regex"));
        assert!(rule_error("{source_labels: [a], target_label: b, regex: x, action: keepequal}")
            .contains("requires only 'source_labels'"));
        let raw: Result<RawRelabelConfig, _> = serde_yaml_ng::from_str("{sourcelabels: [a]}");
        assert!(raw.unwrap_err().to_string().contains("unknown field"));
    }
}
