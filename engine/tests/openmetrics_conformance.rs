//! The OpenMetrics parser suite (prometheus/OpenMetrics `tests/testdata/parsers`, copied to
//! `../shared/conformance/exposition/openmetrics/parsers/<case>/{metrics,test.json}`) run
//! against `exposition::openmetrics`: a case whose `test.json` says `shouldParse: true` must
//! parse to `# EOF` without an error, every other case must fail. Also every
//! `prometheus-textparse/*.om.txt` body (Prometheus' benchmark inputs) must parse.
//!
//! The folder is found from `CARGO_MANIFEST_DIR` (`../../shared/conformance`); when it is absent
//! the tests print why and pass, unless `ENGINE_CONFORMANCE_REQUIRED=1`.
#![allow(clippy::disallowed_methods)] // Tests read the conformance files directly.

use std::path::{Path, PathBuf};

use engine::exposition::openmetrics::{series_labels, Entry, ParseOptions, Parser};
use engine::model::Labels;

/// Cases in the suite; a smaller count means the copy is incomplete.
const CASE_COUNT: usize = 211;

fn conformance_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/exposition");
    if dir.is_dir() {
        return Some(dir);
    }
    assert_ne!(
        std::env::var("ENGINE_CONFORMANCE_REQUIRED").as_deref(),
        Ok("1"),
        "ENGINE_CONFORMANCE_REQUIRED=1 but {} does not exist",
        dir.display()
    );
    eprintln!(
        "openmetrics conformance: skipped, {} does not exist (set ENGINE_CONFORMANCE_REQUIRED=1 to fail)",
        dir.display()
    );
    None
}

/// Parses a whole body; the sample count or the first error. Every sample's labels must
/// materialise too.
fn parse(body: &[u8], options: ParseOptions) -> Result<usize, String> {
    let mut sample_count = 0;
    let mut eof = false;
    for entry in Parser::with_options(body, options) {
        match entry.map_err(|error| error.to_string())? {
            Entry::Sample { series, .. } => {
                series_labels(series).map_err(|error| format!("labels of {series:?}: {error}"))?;
                sample_count += 1;
            }
            Entry::Eof => eof = true,
            _ => {}
        }
    }
    assert!(eof, "a body that parses ends with # EOF");
    Ok(sample_count)
}

#[test]
fn openmetrics_parser_suite() {
    let Some(dir) = conformance_dir() else { return };
    let parsers = dir.join("openmetrics/parsers");
    let mut cases: Vec<String> = std::fs::read_dir(&parsers)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let case_dir = parsers.join(case);
        let test: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case_dir.join("test.json")).unwrap()).unwrap();
        assert_eq!(test["type"], "text", "{case}");
        let should_parse = test["shouldParse"].as_bool().unwrap_or_else(|| panic!("{case}: no shouldParse"));
        let file = test["file"].as_str().unwrap_or("metrics");
        let body = std::fs::read(case_dir.join(file)).unwrap();
        let result = parse(&body, ParseOptions::default());
        match (should_parse, result) {
            (true, Ok(_)) | (false, Err(_)) => {}
            (true, Err(error)) => failures.push(format!("{case}: should parse, got {error}")),
            (false, Ok(sample_count)) => {
                failures.push(format!("{case}: should fail, parsed {sample_count} samples ({})", test["comment"]))
            }
        }
    }
    let passed = cases.len() - failures.len();
    println!("openmetrics conformance: passed {passed} of {} cases", cases.len());
    for failure in &failures {
        println!("  FAILED {failure}");
    }
    assert_eq!(cases.len(), CASE_COUNT, "the suite has {CASE_COUNT} cases");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The samples of some cases that must parse, as the specification reads them: escapes,
/// timestamps in seconds (to ms, truncated; beyond i64 saturated), exemplars, leading zeros.
#[test]
fn openmetrics_cases_give_their_samples() {
    let Some(dir) = conformance_dir() else { return };
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64, Option<i64>);
    #[track_caller]
    fn check(dir: &Path, case: &str, expected: &[Expected<'_>]) {
        let body = std::fs::read(dir.join("openmetrics/parsers").join(case).join("metrics")).unwrap();
        let mut got = Vec::new();
        for entry in Parser::new(&body) {
            if let Entry::Sample { series, value, timestamp_ms, .. } = entry.unwrap() {
                got.push((series_labels(series).unwrap(), value, timestamp_ms));
            }
        }
        let expected: Vec<(Labels, f64, Option<i64>)> = expected
            .iter()
            .map(|(name, pairs, value, timestamp_ms)| {
                let labels = Labels::from_pairs(pairs.iter().copied().chain([("__name__", *name)]));
                (labels, *value, *timestamp_ms)
            })
            .collect();
        assert_eq!(got, expected, "{case}");
    }
    check(
        &dir,
        "escaping",
        &[
            ("a_total", &[("foo", "b\"a\nr")], 1.0, None),
            ("a_total", &[("foo", "b\\a\\z")], 2.0, None),
            ("a_total", &[("foo", "b\"a\nr # ")], 3.0, None),
            ("a_total", &[("foo", "b\\a\\z # ")], 4.0, None),
        ],
    );
    check(
        &dir,
        "timestamps",
        &[
            ("a_total", &[("foo", "1")], 1.0, Some(0)),
            ("a_total", &[("foo", "2")], 1.0, Some(0)),
            ("a_total", &[("foo", "3")], 1.0, Some(1100)),
            ("a_total", &[("foo", "4")], 1.0, Some(i64::MAX)),
            ("a_total", &[("foo", "5")], 1.0, Some(1_500_000)),
            ("b_total", &[], 2.0, Some(1_234_567_890_000)),
        ],
    );
    check(&dir, "leading_zeros_float_gauge", &[("a", &[], 0.12, None)]);
    check(&dir, "uint64_counter", &[("a_total", &[], 9_223_372_036_854_775_808.0, None)]);
    check(&dir, "empty_label", &[("a_total", &[("foo", "bar")], 1.0, None), ("a_total", &[], 2.0, None)]);
    let body = std::fs::read(dir.join("openmetrics/parsers/histogram_exemplars/metrics")).unwrap();
    let exemplars: Vec<_> = Parser::new(&body)
        .filter_map(|entry| match entry.unwrap() {
            Entry::Sample { exemplar: Some(exemplar), .. } => {
                Some((exemplar.labels().len(), exemplar.value, exemplar.timestamp_ms))
            }
            _ => None,
        })
        .collect();
    assert_eq!(exemplars, [(1, 0.5, None), (1, 0.5, None), (1, 4.0, Some(123_000))]);
}

/// Prometheus' benchmark bodies parse. `alltypes.5mfs.om.txt` holds client_golang distributions
/// of negative observations (a histogram with negative buckets and a negative `_sum`, a summary
/// with negative quantiles and sum), which the specification forbids and client_golang emits, so
/// these run with [`ParseOptions::negative_observations`]; the strict default is asserted to
/// refuse exactly that file, at that histogram.
#[test]
fn prometheus_openmetrics_bodies_parse() {
    let Some(dir) = conformance_dir() else { return };
    let textparse = dir.join("prometheus-textparse");
    let mut names: Vec<String> = std::fs::read_dir(&textparse)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".om.txt"))
        .collect();
    names.sort();
    assert_eq!(names, ["1histogram.om.txt", "alltypes.5mfs.om.txt"]);
    for name in &names {
        let body = std::fs::read(textparse.join(name)).unwrap();
        let relaxed = ParseOptions { negative_observations: true };
        let sample_count = parse(&body, relaxed).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(sample_count > 10, "{name}: {sample_count} samples");
        println!("{name}: {sample_count} samples");
        let strict = parse(&body, ParseOptions::default());
        match name.as_str() {
            "alltypes.5mfs.om.txt" => {
                let error = strict.expect_err("the strict parser refuses negative observations");
                assert!(
                    error.contains("rpc_durations_histogram_seconds_sum: a counter-like value is not negative"),
                    "{error}"
                );
            }
            _ => assert_eq!(strict, Ok(sample_count), "{name}"),
        }
    }
}
