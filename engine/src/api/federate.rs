//! `/federate` (Prometheus web/federate.go): the newest sample of every series matching any
//! `match[]` selector, within the lookback window before now, in the text exposition format,
//! so a global server scrapes this one (with `honor_labels: true`) as Prometheus' does.
//!
//! As Prometheus 2.42:
//! - a sample counts if its time is in `[now - lookback_delta, now]`; staleness markers are left
//!   out (the text format cannot carry them);
//! - values as expfmt writes them (Go's `%g`, `0` for -0), label values escaped as the text
//!   format escapes them;
//! - every family is `untyped`, without HELP; families are ordered by metric name, series within
//!   one by labels; each sample carries its timestamp;
//! - labels with an empty value are left out, and external labels a series lacks are appended
//!   after its own labels, sorted by name, with `instance=""` added when no external label
//!   names `instance` (so the global server's scrape does not set one);
//! - no `match[]` answers an empty body; a bad selector is a 400 naming it.
//!
//! The answer is built in memory: at most [`FEDERATE_SERIES_COUNT_MAX`] series, past which the
//! request is refused rather than answered in part (Prometheus has no limit).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::model::{is_stale_nan, Labels, Matcher, METRIC_NAME_LABEL};
// The text exposition's own spelling of values and label values, as the Pushgateway writes it.
use crate::push::store::{escape_label_value, format_float as format_go_g};
use crate::storage::{Queryable, SelectHints};

/// Most series one federation answer holds.
pub const FEDERATE_SERIES_COUNT_MAX: usize = 1_000_000;

/// The text exposition format's content type (expfmt `FmtText`).
pub const FEDERATE_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The federation answer for `selectors` at `now_ms`.
pub fn federate(
    queryable: &dyn Queryable,
    selectors: &[Vec<Matcher>],
    now_ms: i64,
    lookback_delta_ms: i64,
    external_labels: &BTreeMap<String, String>,
) -> Result<String, String> {
    if selectors.is_empty() {
        return Ok(String::new());
    }
    let start_ms = now_ms.saturating_sub(lookback_delta_ms);
    let querier = queryable.querier(start_ms, now_ms).map_err(|error| error.to_string())?;
    let hints =
        SelectHints { start_ms, end_ms: now_ms, function: Some("federate".to_string()), ..SelectHints::default() };
    // (metric name, labels) -> newest sample: name order first, as Prometheus sorts by name.
    let mut newest: BTreeMap<(String, Labels), (i64, f64)> = BTreeMap::new();
    let mut seen: BTreeSet<Labels> = BTreeSet::new();
    for matchers in selectors {
        for series in querier.select(Some(&hints), matchers) {
            let series = series.map_err(|error| error.to_string())?;
            if !seen.insert(series.labels.clone()) {
                continue;
            }
            if seen.len() > FEDERATE_SERIES_COUNT_MAX {
                return Err(format!(
                    "federation would answer more than {FEDERATE_SERIES_COUNT_MAX} series; narrow the match[] selectors"
                ));
            }
            let Some(sample) = series.samples.iter().rev().find(|sample| sample.timestamp_ms <= now_ms) else {
                continue;
            };
            if sample.timestamp_ms < start_ms || is_stale_nan(sample.value) {
                continue;
            }
            let Some(name) = series.labels.metric_name().filter(|name| !name.is_empty()) else {
                tracing::warn!(labels = %series.labels, "ignoring nameless series during federation");
                continue;
            };
            newest.insert((name.to_string(), series.labels), (sample.timestamp_ms, sample.value));
        }
    }
    let mut external: BTreeMap<&str, &str> =
        external_labels.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    external.entry("instance").or_insert("");
    let mut out = String::with_capacity(newest.len() * 96);
    let mut family: Option<&str> = None;
    for ((name, labels), (timestamp_ms, value)) in &newest {
        if family != Some(name.as_str()) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            family = Some(name.as_str());
        }
        out.push_str(name);
        let mut pairs: Vec<(&str, &str)> = labels
            .iter()
            .filter(|label| label.name != METRIC_NAME_LABEL && !label.value.is_empty())
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect();
        for (&external_name, &external_value) in &external {
            if labels.get(external_name).is_none_or(str::is_empty) {
                pairs.push((external_name, external_value));
            }
        }
        if !pairs.is_empty() {
            out.push('{');
            for (index, (label_name, label_value)) in pairs.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label_name}=\"{}\"", escape_label_value(label_value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {} {timestamp_ms}", format_go_g(*value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchKind;
    use crate::storage::{Querier, Series, SeriesSet, StorageError};

    #[test]
    fn go_g_formatting() {
        for (value, expected) in [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1e21, "1e+21"),
            (1.5e-300, "1.5e-300"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(format_go_g(value), expected, "{value}");
        }
    }

    /// A fixed set of series, filtered by the matchers (the querier's range is not applied:
    /// the federation code must pick the window itself).
    struct Fixed(Vec<Series>);

    struct FixedQuerier(Vec<Series>);

    impl Queryable for Fixed {
        fn querier(&self, _min_time_ms: i64, _max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError> {
            Ok(Box::new(FixedQuerier(self.0.clone())))
        }
    }

    impl Querier for FixedQuerier {
        fn select(&self, _hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
            let mut matching: Vec<Series> = self
                .0
                .iter()
                .filter(|series| {
                    matchers.iter().all(|matcher| matcher.matches(series.labels.get(&matcher.name).unwrap_or("")))
                })
                .cloned()
                .collect();
            matching.sort_by(|a, b| a.labels.cmp(&b.labels));
            Box::new(matching.into_iter().map(Ok))
        }
        fn label_names(&self, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }
        fn label_values(&self, _name: &str, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(Vec::new())
        }
    }

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: samples
                .iter()
                .map(|&(timestamp_ms, value)| crate::model::Sample { timestamp_ms, value })
                .collect(),
        }
    }

    fn name_is(name: &str) -> Vec<Matcher> {
        vec![Matcher::new(MatchKind::Equal, METRIC_NAME_LABEL, name).unwrap()]
    }

    fn name_matches(pattern: &str) -> Vec<Matcher> {
        vec![Matcher::new(MatchKind::Regex, METRIC_NAME_LABEL, pattern).unwrap()]
    }

    #[test]
    fn newest_sample_in_the_window_with_external_labels_as_prometheus_writes_it() {
        let stale = f64::from_bits(crate::model::STALE_NAN_BITS);
        let store = Fixed(vec![
            series(&[("__name__", "up"), ("instance", "a:9100"), ("job", "node")], &[(1_000, 1.0), (400_000, 0.0)]),
            series(&[("__name__", "up"), ("instance", "b:9100"), ("job", "node")], &[(1_000, 1.0)]),
            series(&[("__name__", "up"), ("instance", "c:9100"), ("job", "node")], &[(390_000, 1.0), (399_000, stale)]),
            series(&[("__name__", "up"), ("instance", "d:9100"), ("job", "node")], &[(300_000, 1.0), (500_000, 1.0)]),
            series(&[("__name__", "job:rate"), ("job", "node"), ("env", "")], &[(399_500, 2_500_000.0)]),
            series(&[("__name__", "esc"), ("path", "a\"b\\c\nd"), ("replica", "x")], &[(350_000, 0.5)]),
        ]);
        let external =
            BTreeMap::from([("replica".to_string(), "r1".to_string()), ("dc".to_string(), "eu".to_string())]);
        let now_ms = 400_000;
        let answer =
            federate(&store, &[name_is("up"), name_matches("job:.*|esc|up")], now_ms, 300_000, &external).unwrap();
        assert_eq!(
            answer,
            "# TYPE esc untyped\n\
             esc{path=\"a\\\"b\\\\c\\nd\",replica=\"x\",dc=\"eu\",instance=\"\"} 0.5 350000\n\
             # TYPE job:rate untyped\n\
             job:rate{job=\"node\",dc=\"eu\",instance=\"\",replica=\"r1\"} 2.5e+06 399500\n\
             # TYPE up untyped\n\
             up{instance=\"a:9100\",job=\"node\",dc=\"eu\",replica=\"r1\"} 0 400000\n\
             up{instance=\"d:9100\",job=\"node\",dc=\"eu\",replica=\"r1\"} 1 300000\n"
        );
        assert_eq!(federate(&store, &[], now_ms, 300_000, &external).unwrap(), "", "no match[]: nothing");
        let with_instance = BTreeMap::from([("instance".to_string(), "global".to_string())]);
        let answer = federate(&store, &[name_is("job:rate")], now_ms, 300_000, &with_instance).unwrap();
        assert_eq!(answer, "# TYPE job:rate untyped\njob:rate{job=\"node\",instance=\"global\"} 2.5e+06 399500\n");
    }
}
