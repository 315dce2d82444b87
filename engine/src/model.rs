//! Core data model: labels, label sets, samples and series references.
//!
//! Invariants:
//! - A [`Labels`] value is always sorted by label name and holds no duplicate names and no
//!   empty values (an empty value means "label absent", as in Prometheus).
//! - Timestamps are `i64` Unix milliseconds everywhere.
//!
//! Concurrency: plain values; `Send + Sync`.

use std::fmt;

/// The label that holds the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Bit pattern Prometheus uses for a staleness marker (`value.StaleNaN`, model/value/value.go).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Returns true when `value` is the staleness marker rather than an ordinary NaN.
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One label pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name, e.g. `job`.
    pub name: String,
    /// Label value, never empty inside a [`Labels`].
    pub value: String,
}

/// A sorted set of labels identifying one series.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order. Pairs with empty values are dropped; when a
    /// name repeats, the last pair wins.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut labels: Vec<Label> =
            pairs.into_iter().map(|(name, value)| Label { name: name.into(), value: value.into() }).collect();
        // Stable sort keeps input order within a name, so the last pair of a run is the one that
        // wins; O(n log n), since scraped bodies choose the label count.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut deduplicated: Vec<Label> = Vec::with_capacity(labels.len());
        for label in labels {
            match deduplicated.last_mut() {
                Some(last) if last.name == label.name => *last = label,
                _ => deduplicated.push(label),
            }
        }
        deduplicated.retain(|label| !label.value.is_empty());
        Labels(deduplicated)
    }

    /// Wraps labels that are already sorted by name, distinct and non-empty (read back from a
    /// store that only holds valid label sets).
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|pair| pair[0].name < pair[1].name), "labels not sorted: {labels:?}");
        Labels(labels)
    }

    /// The empty label set.
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|label| label.name.as_str().cmp(name)).ok().map(|index| self.0[index].value.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    /// Sets `name` to `value` (removes the label when `value` is empty), keeping the order.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|label| label.name.as_str().cmp(name)) {
            Ok(index) if value.is_empty() => {
                self.0.remove(index);
            }
            Ok(index) => self.0[index].value = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(index) => self.0.insert(index, Label { name: name.to_string(), value: value.to_string() }),
        }
    }

    /// A copy without the metric name, as PromQL functions and aggregations produce.
    pub fn without_metric_name(&self) -> Labels {
        Labels(self.0.iter().filter(|label| label.name != METRIC_NAME_LABEL).cloned().collect())
    }

    /// Iterates over the labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    /// Formats as `name{a="b", c="d"}`, the notation Prometheus uses in errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for label in self.0.iter().filter(|label| label.name != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", label.name, label.value)?;
        }
        f.write_str("}")
    }
}

/// One sample: a timestamp in Unix milliseconds and a float value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Unix milliseconds.
    pub timestamp_ms: i64,
    /// Value; may be NaN, ±Inf or the staleness marker.
    pub value: f64,
}

/// Identifies a series inside the head for the lifetime of a database directory; written to the
/// WAL, so it must never be reused for other labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesRef(pub u64);

/// How a [`Matcher`] compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// A label matcher as in a PromQL selector. A missing label matches as the empty string.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub kind: MatchKind,
    /// The literal value or the regex source.
    pub value: String,
    regex: Option<regex::Regex>,
    shape: RegexShape,
}

/// Matchers are equal when they compare the same label the same way with the same text (the
/// compiled regex follows from those).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

/// What a regex matcher's pattern reduces to, so the index can avoid testing every value
/// (Prometheus `labels.FastRegexMatcher`: set matches, prefixes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegexShape {
    /// Not a regex matcher, or a pattern with no shortcut.
    General,
    /// Matches exactly these strings (`a`, `a|b|c`); may include the empty string.
    Set(Vec<String>),
    /// Matches every string starting with this prefix (`prefix.*`).
    Prefix(String),
    /// `.*`: matches everything, the empty string included.
    Any,
    /// `.+`: matches every non-empty string.
    NonEmpty,
}

const REGEX_META_CHARACTERS: &[char] = &['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$'];

fn is_literal(text: &str) -> bool {
    !text.contains(REGEX_META_CHARACTERS)
}

/// Classifies a pattern (anchored on both ends, `.` matching newlines as in [`Matcher::new`]).
fn regex_shape(pattern: &str) -> RegexShape {
    match pattern {
        ".*" => return RegexShape::Any,
        ".+" => return RegexShape::NonEmpty,
        _ => {}
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        if is_literal(prefix) {
            return RegexShape::Prefix(prefix.to_string());
        }
    }
    let alternatives: Vec<&str> = pattern.split('|').collect();
    if alternatives.iter().all(|alternative| is_literal(alternative)) {
        let mut set: Vec<String> = alternatives.into_iter().map(str::to_string).collect();
        set.sort();
        set.dedup();
        return RegexShape::Set(set);
    }
    RegexShape::General
}

impl Matcher {
    /// Builds a matcher; regexes are anchored on both ends as Prometheus does
    /// (`labels.NewFastRegexMatcher`, model/labels/regexp.go).
    pub fn new(kind: MatchKind, name: &str, value: &str) -> Result<Self, regex::Error> {
        let (regex, shape) = match kind {
            MatchKind::Regex | MatchKind::NotRegex => {
                (Some(regex::Regex::new(&format!("^(?s:{value})$"))?), regex_shape(value))
            }
            MatchKind::Equal | MatchKind::NotEqual => (None, RegexShape::General),
        };
        Ok(Matcher { name: name.to_string(), kind, value: value.to_string(), regex, shape })
    }

    /// The shortcut a regex matcher's pattern allows ([`RegexShape::General`] for `=` and `!=`).
    pub fn regex_shape(&self) -> &RegexShape {
        &self.shape
    }

    /// True when `value` (empty for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.kind, &self.regex) {
            (MatchKind::Equal, _) => value == self.value,
            (MatchKind::NotEqual, _) => value != self.value,
            (MatchKind::Regex, Some(regex)) => regex.is_match(value),
            (MatchKind::NotRegex, Some(regex)) => !regex.is_match(value),
            (MatchKind::Regex | MatchKind::NotRegex, None) => {
                unreachable!("regex matcher built without a regex")
            }
        }
    }

    /// True when the matcher accepts the empty string, i.e. also selects series without the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_drop_empty_values() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let names: Vec<_> = labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(names, vec![("a", "1"), ("b", "3")]);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
    }

    #[test]
    fn set_inserts_replaces_and_removes_in_order() {
        let mut labels = Labels::from_pairs([("a", "1"), ("c", "3")]);
        labels.set("b", "2");
        labels.set("a", "9");
        labels.set("c", "");
        assert_eq!(labels, Labels::from_pairs([("a", "9"), ("b", "2")]));
    }

    #[test]
    fn display_matches_prometheus_notation() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(labels.to_string(), "up{job=\"a\\\"b\"}");
    }

    #[test]
    fn regex_matchers_are_anchored() {
        let matcher = Matcher::new(MatchKind::Regex, "job", "no.e").unwrap();
        assert!(matcher.matches("node"));
        assert!(!matcher.matches("xnode"));
        let not = Matcher::new(MatchKind::NotRegex, "job", "").unwrap();
        assert!(not.matches("x"));
        assert!(!not.matches(""));
    }

    #[test]
    fn regex_shapes() {
        #[track_caller]
        fn check(pattern: &str, expected: RegexShape) {
            let matcher = Matcher::new(MatchKind::Regex, "l", pattern).unwrap();
            assert_eq!(matcher.regex_shape(), &expected, "{pattern}");
            // The shape must agree with the regex on a few probes.
            for probe in ["", "a", "b", "ab", "abc", "foo", "foobar", "x\ny", "c"] {
                let by_shape = match &expected {
                    RegexShape::Set(set) => set.iter().any(|member| member == probe),
                    RegexShape::Prefix(prefix) => probe.starts_with(prefix.as_str()),
                    RegexShape::Any => true,
                    RegexShape::NonEmpty => !probe.is_empty(),
                    RegexShape::General => continue,
                };
                assert_eq!(by_shape, matcher.matches(probe), "{pattern} on {probe:?}");
            }
        }
        check("foo", RegexShape::Set(vec!["foo".to_string()]));
        check("b|a|ab", RegexShape::Set(vec!["a".to_string(), "ab".to_string(), "b".to_string()]));
        check("a|", RegexShape::Set(vec!["".to_string(), "a".to_string()]));
        check("", RegexShape::Set(vec!["".to_string()]));
        check("foo.*", RegexShape::Prefix("foo".to_string()));
        check(".*", RegexShape::Any);
        check(".+", RegexShape::NonEmpty);
        check("a.c", RegexShape::General);
        check("fo+", RegexShape::General);
        check("(a|b)", RegexShape::General);
        check("a\\.b", RegexShape::General);
    }

    #[test]
    fn stale_nan_is_distinguished_from_plain_nan() {
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
    }
}
