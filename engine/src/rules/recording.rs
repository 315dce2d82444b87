//! Recording rules (rules/recording.go `RecordingRule.Eval`): the query's result renamed to
//! the rule's name with the rule's labels applied. Pure: the group writes the output.

use std::collections::BTreeSet;

use super::file::RuleSpec;
use crate::model::{Labels, METRIC_NAME_LABEL};
use crate::promql::InstantSample;

/// The series a recording rule writes for `result`: `__name__` set to the rule's name, rule
/// labels set (an empty value removes the label). Errors as upstream for duplicate label sets
/// and for more than `limit` series (0: no limit).
pub fn apply(spec: &RuleSpec, result: Vec<InstantSample>, limit: usize) -> Result<Vec<(Labels, f64)>, String> {
    let mut output = Vec::with_capacity(result.len());
    let mut seen = BTreeSet::new();
    for sample in result {
        let mut labels = sample.labels;
        labels.set(METRIC_NAME_LABEL, &spec.name);
        for (name, value) in &spec.labels {
            labels.set(name, value);
        }
        if !seen.insert(labels.clone()) {
            return Err("vector contains metrics with the same labelset after applying rule labels".to_string());
        }
        output.push((labels, sample.value));
    }
    if limit > 0 && output.len() > limit {
        return Err(format!("exceeded limit of {limit} with {} series", output.len()));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::RuleKind;
    use std::collections::BTreeMap;

    fn spec(labels: &[(&str, &str)]) -> RuleSpec {
        RuleSpec {
            kind: RuleKind::Recording,
            name: "job:x:sum".to_string(),
            expr: "x".to_string(),
            for_ms: 0,
            keep_firing_for_ms: 0,
            labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            annotations: BTreeMap::new(),
        }
    }

    fn sample(pairs: &[(&str, &str)], value: f64) -> InstantSample {
        InstantSample { labels: Labels::from_pairs(pairs.iter().copied()), timestamp_ms: 0, value }
    }

    #[test]
    fn renames_and_relabels() {
        #[track_caller]
        fn check(spec: &RuleSpec, input: Vec<InstantSample>, limit: usize, expected: Result<Vec<&str>, &str>) {
            let got = apply(spec, input, limit).map(|out| out.iter().map(|(l, _)| l.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected.map(|v| v.iter().map(|s| s.to_string()).collect()).map_err(str::to_string));
        }
        let two =
            || vec![sample(&[("__name__", "x"), ("job", "a")], 1.0), sample(&[("__name__", "x"), ("job", "b")], 2.0)];
        check(&spec(&[]), two(), 0, Ok(vec!["job:x:sum{job=\"a\"}", "job:x:sum{job=\"b\"}"]));
        check(
            &spec(&[("team", "t")]),
            two(),
            0,
            Ok(vec!["job:x:sum{job=\"a\", team=\"t\"}", "job:x:sum{job=\"b\", team=\"t\"}"]),
        );
        check(
            &spec(&[("job", "same")]),
            two(),
            0,
            Err("vector contains metrics with the same labelset after applying rule labels"),
        );
        check(&spec(&[]), two(), 1, Err("exceeded limit of 1 with 2 series"));
        check(&spec(&[]), two(), 2, Ok(vec!["job:x:sum{job=\"a\"}", "job:x:sum{job=\"b\"}"]));
    }
}
