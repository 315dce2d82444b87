use proptest::prelude::*;

use super::*;

fn parse_all(input: &str, options: ParseOptions) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::with_options(input.as_bytes(), options).collect()
}

/// A sample as the tests write it: series, value bits, timestamp, exemplar.
type Expected<'a> = (&'a str, f64, Option<i64>, Option<(&'a str, f64, Option<i64>)>);

#[track_caller]
fn check_samples(input: &str, expected: &[Expected<'_>]) {
    let entries = parse_all(input, ParseOptions::default()).unwrap_or_else(|error| panic!("{input:?}: {error}"));
    let got: Vec<Expected<'_>> = entries
        .iter()
        .filter_map(|entry| match entry {
            Entry::Sample { series, value, timestamp_ms, exemplar, .. } => Some((
                *series,
                *value,
                *timestamp_ms,
                exemplar.map(|exemplar| (exemplar.labels, exemplar.value, exemplar.timestamp_ms)),
            )),
            _ => None,
        })
        .collect();
    let bits =
        |samples: &[Expected<'_>]| -> Vec<String> { samples.iter().map(|sample| format!("{sample:?}")).collect() };
    assert_eq!(bits(&got), bits(expected), "{input:?}");
    assert_eq!(entries.last(), Some(&Entry::Eof), "{input:?}");
}

#[track_caller]
fn check_error(input: &str, line: usize, column: usize, kind: ParseErrorKind) {
    let error = parse_all(input, ParseOptions::default()).expect_err(input);
    assert_eq!(error, ParseError { line, column, kind }, "{input:?}");
}

#[track_caller]
fn check_rejected(input: &str, expected_message_part: &str) {
    let error = parse_all(input, ParseOptions::default()).expect_err(input);
    assert!(error.to_string().contains(expected_message_part), "{input:?}: {error}");
}

#[test]
fn samples_values_timestamps_and_exemplars() {
    check_samples("a 1\n# EOF\n", &[("a", 1.0, None, None)]);
    check_samples("a 1\n# EOF", &[("a", 1.0, None, None)]);
    check_samples("a{} -2.5e3 1.5\n# EOF\n", &[("a{}", -2500.0, Some(1500), None)]);
    check_samples(
        "a +Inf\na{b=\"c\"} -infinity\n# EOF\n",
        &[("a", f64::INFINITY, None, None), ("a{b=\"c\"}", f64::NEG_INFINITY, None, None)],
    );
    check_samples("a .5 1.\n# EOF\n", &[("a", 0.5, Some(1000), None)]);
    check_samples("a 007 -1\n# EOF\n", &[("a", 7.0, Some(-1000), None)]);
    // Prometheus' conversion: seconds * 1000, truncated toward zero.
    check_samples("a 1 1700000000.123\n# EOF\n", &[("a", 1.0, Some((1_700_000_000.123_f64 * 1000.0) as i64), None)]);
    check_samples("a 1 -0.0015\n# EOF\n", &[("a", 1.0, Some(-1), None)]);
    check_samples("a 1 1e30\n# EOF\n", &[("a", 1.0, Some(i64::MAX), None)]);
    check_samples(
        "# TYPE a counter\na_total{x=\"y\"} 3 # {trace=\"t\"} 0.5 2\na_total{x=\"z\"} 4 5 # {} 1\n# EOF\n",
        &[
            ("a_total{x=\"y\"}", 3.0, None, Some(("{trace=\"t\"}", 0.5, Some(2000)))),
            ("a_total{x=\"z\"}", 4.0, Some(5000), Some(("{}", 1.0, None))),
        ],
    );
    check_samples(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 0 # {a=\"} # \"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\n# EOF\n",
        &[
            ("h_bucket{le=\"1\"}", 0.0, None, Some(("{a=\"} # \"}", 1.0, None))),
            ("h_bucket{le=\"+Inf\"}", 2.0, None, None),
            ("h_count", 2.0, None, None),
            ("h_sum", 3.0, None, None),
        ],
    );
}

#[test]
fn metadata_entries() {
    let input = "# TYPE a_seconds counter\n# UNIT a_seconds seconds\n# HELP a_seconds x\\ny \\\\ \\q\na_seconds_total 1\n# EOF\n";
    let entries = parse_all(input, ParseOptions::default()).unwrap();
    assert_eq!(entries[0], Entry::Type { name: "a_seconds", metric_type: MetricType::Counter });
    assert_eq!(entries[1], Entry::Unit { name: "a_seconds", unit: "seconds" });
    assert_eq!(entries[2], Entry::Help { name: "a_seconds", help: Cow::Owned("x\ny \\ \\q".to_string()) });
    assert!(matches!(entries[3], Entry::Sample { name: "a_seconds_total", .. }));
    assert_eq!(entries[4], Entry::Eof);
    assert_eq!(entries.len(), 5);
}

#[test]
fn labels_on_demand() {
    #[track_caller]
    fn check(series: &str, expected: &[(&str, &str)]) {
        assert_eq!(series_labels(series).unwrap(), Labels::from_pairs(expected.iter().copied()), "{series:?}");
    }
    check("a", &[("__name__", "a")]);
    check("a{}", &[("__name__", "a")]);
    check("a{b=\"c\",a=\"\"}", &[("__name__", "a"), ("b", "c")]);
    check(r#"a{x="q\"\n\\\z",y="}{,"}"#, &[("__name__", "a"), ("x", "q\"\n\\\\z"), ("y", "}{,")]);
    for bad in ["", "{}", "a{", "a{b}", "a{b=\"c\"", "a}", "a{b=\"c\"}x", "1a"] {
        assert!(series_labels(bad).is_err(), "{bad:?}");
    }
    let entries = parse_all("# TYPE a counter\na_total 1 # {t=\"x\\\"y\",u=\"\"} 1\n# EOF\n", ParseOptions::default());
    let Entry::Sample { exemplar: Some(exemplar), .. } = &entries.unwrap()[1] else { panic!("no exemplar") };
    assert_eq!(exemplar.labels(), Labels::from_pairs([("t", "x\"y")]));
}

#[test]
fn errors_carry_line_and_column() {
    check_error("a 1\n\n# EOF\n", 2, 1, ParseErrorKind::BlankLine);
    check_error("a 1\n", 2, 1, ParseErrorKind::MissingEof);
    check_error("", 1, 1, ParseErrorKind::MissingEof);
    check_error("a 1\n# EOF\nb 1\n", 3, 1, ParseErrorKind::TextAfterEof);
    check_error("a 1\n# EOF\n\n", 3, 1, ParseErrorKind::TextAfterEof);
    check_error("a 1 z\n# EOF\n", 1, 5, ParseErrorKind::InvalidTimestamp { text: "z".to_string() });
    check_error("é{b=\"c\"} 0x1\n# EOF\n", 1, 1, unexpected("a metric name", "é{b=\"c\"} 0x1"));
    check_error("a{b=\"é\"} 0x1\n# EOF\n", 1, 10, ParseErrorKind::InvalidNumber { text: "0x1".to_string() });
    check_error("a{b=\"c\",b=\"d\"} 1\n# EOF\n", 1, 2, ParseErrorKind::DuplicateLabel { name: "b".to_string() });
    check_error(
        "a 1\n\u{ff}\n",
        2,
        1,
        ParseErrorKind::Unexpected { expected: "a metric name", found: "\u{ff}".into() },
    );
    let error = Parser::new(b"a 1\nb \xff\n# EOF\n").find_map(Result::err).unwrap();
    assert_eq!(error, ParseError { line: 2, column: 3, kind: ParseErrorKind::InvalidUtf8 });
    check_error(
        "# TYPE a gauge\na 1\n# HELP a x\n# EOF\n",
        3,
        1,
        ParseErrorKind::MetadataAfterSamples { keyword: "HELP", name: "a".to_string() },
    );
    check_error(
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 1\n# EOF\n",
        5,
        1,
        ParseErrorKind::InvalidHistogram { name: "h".to_string(), reason: "the +Inf bucket is missing" },
    );
    check_error(
        "# TYPE a_created gauge\n# TYPE a counter\n# EOF\n",
        3,
        1,
        ParseErrorKind::NameClash { name: "a_created".to_string() },
    );
}

#[test]
fn specification_rules_rejected() {
    for (input, message) in [
        ("a  1\n# EOF\n", "invalid number \"\""),
        ("a 1 \n# EOF\n", "invalid timestamp \"\""),
        ("a 1_0\n# EOF\n", "invalid number"),
        ("a 1 NaN\n# EOF\n", "invalid timestamp"),
        ("a{b=\"c\",} 1\n# EOF\n", "a label name"),
        ("a{b='c'} 1\n# EOF\n", "'\"'"),
        ("# FOO a b\n# EOF\n", "TYPE, HELP, UNIT"),
        ("#a 1\n# EOF\n", "'# TYPE'"),
        ("# TYPE a untyped\n# EOF\n", "unknown metric type"),
        ("# TYPE a gauge \n# EOF\n", "unknown metric type"),
        ("# HELP a\n# EOF\n", "expected ' '"),
        ("# UNIT a seconds\n# EOF\n", "not the suffix"),
        ("# UNIT a_seconds seconds \n# EOF\n", "a unit"),
        ("# TYPE x_u info\n# UNIT x_u u\n# EOF\n", "cannot have a unit"),
        ("# UNIT x_u u\n# TYPE x_u stateset\n# EOF\n", "cannot have a unit"),
        ("# HELP a x\n# HELP a y\n# EOF\n", "second HELP"),
        ("# TYPE a counter\na_total -1\n# EOF\n", "not negative"),
        ("# TYPE a counter\na_total NaN\n# EOF\n", "not NaN"),
        ("# TYPE a counter\na_created 1 # {a=\"b\"} 1\n# EOF\n", "cannot have an exemplar"),
        ("# TYPE a gauge\na 1 # {a=\"b\"} 1\n# EOF\n", "cannot have an exemplar"),
        ("# TYPE a counter\na_total 1 # {} 1 \n# EOF\n", "invalid timestamp"),
        ("# TYPE a counter\na_total 1 #{} 1\n# EOF\n", "' ' and an exemplar"),
        ("# TYPE a counter\na_total 1 1 x\n# EOF\n", "'#' and an exemplar"),
        ("# TYPE a info\na_info 2\n# EOF\n", "info value is 1"),
        ("# TYPE a stateset\na{a=\"x\"} 0.5\n# EOF\n", "0 or 1"),
        ("# TYPE a stateset\na 0\n# EOF\n", "has no \"a\" label"),
        ("# TYPE a summary\na{quantile=\"1.5\"} 0\n# EOF\n", "invalid quantile"),
        ("# TYPE a summary\na{quantile=\"0.5\"} -1\n# EOF\n", "not negative"),
        ("# TYPE a histogram\na_bucket{le=\"+INF\"} 0\n# EOF\n", "invalid le"),
        ("# TYPE a histogram\na_bucket{le=\"NaN\"} 0\n# EOF\n", "invalid le"),
        ("# TYPE a histogram\na_bucket{le=\"+Inf\"} 0.5\n# EOF\n", "integer"),
        ("# TYPE a histogram\na_bucket{le=\"2\"} 0\na_bucket{le=\"1\"} 0\n# EOF\n", "out of order"),
        ("# TYPE a histogram\na_bucket{le=\"1\"} 2\na_bucket{le=\"+Inf\"} 1\n# EOF\n", "decrease"),
        ("# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_count 2\na_sum 1\n# EOF\n", "count differs"),
        ("# TYPE a histogram\na_bucket{le=\"+Inf\"} 1\na_count 1\n# EOF\n", "count without a sum"),
        ("# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 1\na_count 1\na_sum 1\n# EOF\n", "negative"),
        ("# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gsum 1\n# EOF\n", "_gsum without _gcount"),
        ("# TYPE a gaugehistogram\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -1\n# EOF\n", "negative sum"),
        ("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\"} 1\n# EOF\n", "interleaved"),
        ("# TYPE a gauge\na 1 2\na 1 1\n# EOF\n", "backwards"),
        ("# TYPE a gauge\na 1\na 1 1\n# EOF\n", "some samples"),
        ("a 1\nb 1\na 1\n# EOF\n", "clashes"),
        ("a{__name__=\"b\"} 1\n# EOF\n", "duplicate label name \"__name__\""),
    ] {
        check_rejected(input, message);
    }
    let long = format!("# TYPE a counter\na_total 1 # {{a=\"{}\"}} 1\n# EOF\n", "x".repeat(128));
    check_rejected(&long, "129 characters");
}

#[test]
fn specification_rules_accepted() {
    for input in [
        "# HELP a \n# UNIT a \n# EOF\n",
        "# TYPE a info\na_info{x=\"1\"} 1 2\na_info{x=\"2\"} 1 1\n# EOF\n",
        "# TYPE a gauge\na 1 1\na 2 1\na 3 2\n# EOF\n",
        "# TYPE a gaugehistogram\na_bucket{le=\"-1\"} 1\na_bucket{le=\"+Inf\"} 1\na_gcount 1\na_gsum -1\n# EOF\n",
        "# TYPE a summary\na_count 1\na_sum 2\na{quantile=\"0.5\"} NaN\n# EOF\n",
        "# TYPE a stateset\na{a=\"x\",b=\"1\"} 1\na{a=\"y\",b=\"1\"} 0\n# EOF\n",
        "# TYPE a histogram\na_bucket{x=\"1\",le=\"+Inf\"} 1 1\na_bucket{le=\"+Inf\",x=\"1\"} 2 2\n# EOF\n",
        "# HELP a \"quoted\" \\\n# EOF\n",
        "# TYPE a counter\na_total 1 # {a=\"☃\"} 1\n# EOF\n",
    ] {
        if let Err(error) = parse_all(input, ParseOptions::default()) {
            panic!("{input:?}: {error}");
        }
    }
}

#[test]
fn negative_observations_are_an_option() {
    let input = "# TYPE a histogram\na_bucket{le=\"-1\"} 0\na_bucket{le=\"+Inf\"} 1\na_sum -0.5\na_count 1\n# EOF\n";
    assert!(parse_all(input, ParseOptions::default()).is_err());
    let relaxed = ParseOptions { negative_observations: true };
    assert_eq!(parse_all(input, relaxed).unwrap().len(), 6);
    // A negative sum still needs negative buckets.
    let positive = "# TYPE a histogram\na_bucket{le=\"1\"} 0\na_bucket{le=\"+Inf\"} 1\na_sum -0.5\na_count 1\n# EOF\n";
    assert!(parse_all(positive, relaxed).is_err());
    let summary = "# TYPE s summary\ns{quantile=\"0.5\"} -1\ns_sum -3\ns_count 2\n# EOF\n";
    assert!(parse_all(summary, ParseOptions::default()).is_err());
    assert_eq!(parse_all(summary, relaxed).unwrap().len(), 5);
}

#[test]
fn nothing_after_an_error() {
    let mut parser = Parser::new(b"a x\nb 1\n# EOF\n");
    assert!(matches!(parser.next(), Some(Err(_))));
    assert_eq!(parser.next(), None);
}

/// Renders a label value with the format's escapes.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

/// Valid expositions: gauges with labels and timestamps, and counters with exemplars.
fn exposition() -> impl Strategy<Value = (String, Vec<(Labels, u64, Option<i64>)>)> {
    let value = prop_oneof![any::<i32>().prop_map(f64::from), -1e300_f64..1e300, Just(f64::INFINITY), Just(f64::NAN)];
    let series = (
        proptest::collection::btree_map("[a-z_][a-z0-9_]{0,4}", "[ -~é\n☃]{0,6}", 0..4),
        proptest::collection::vec((value, proptest::option::of(-1_000_000_i64..1_000_000)), 1..4),
    );
    proptest::collection::vec(series, 1..6).prop_map(|metrics| {
        let mut text = String::from("# TYPE g gauge\n# HELP g some \\\\ help\n");
        let mut expected = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (labels, points) in metrics {
            let labels: Vec<(String, String)> =
                labels.into_iter().filter(|(name, _)| !name.starts_with("__") && name != "le").collect();
            if !seen.insert(labels.clone()) {
                continue; // A metric may not appear twice.
            }
            let rendered: Vec<String> =
                labels.iter().map(|(name, value)| format!("{name}=\"{}\"", escape(value))).collect();
            let with_timestamps = points[0].1.is_some();
            let mut timestamp_ms = -2_000_000_i64;
            for (value, offset) in points {
                let timestamp = with_timestamps.then(|| {
                    timestamp_ms += offset.unwrap_or(0).abs();
                    timestamp_ms
                });
                let value_text = match value {
                    v if v.is_nan() => "NaN".to_string(),
                    v if v.is_infinite() => "+Inf".to_string(),
                    v => format!("{v:?}"),
                };
                text.push_str(&format!("g{{{}}} {value_text}", rendered.join(",")));
                if let Some(timestamp_ms) = timestamp {
                    text.push_str(&format!(" {}", timestamp_ms / 1000));
                }
                text.push('\n');
                let mut pairs = labels.clone();
                pairs.push(("__name__".to_string(), "g".to_string()));
                let bits = if value.is_nan() { f64::NAN.to_bits() } else { value.to_bits() };
                expected.push((Labels::from_pairs(pairs), bits, timestamp.map(|ms| ms / 1000 * 1000)));
            }
        }
        text.push_str("# EOF\n");
        (text, expected)
    })
}

proptest! {
    #[test]
    fn never_panics_on_bytes(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let entries: Vec<_> = Parser::new(&input).take(1000).collect();
        prop_assert!(entries.len() <= input.len() + 2);
    }

    #[test]
    fn never_panics_on_near_valid_lines(
        lines in proptest::collection::vec(
            "(# (TYPE|HELP|UNIT) [a-c_]{1,3} [a-z ]{0,8}|[a-c_]{1,3}(\\{([a-c]{1,2}=\"[^\"\n]{0,3}\",?){0,3}\\})? [0-9a-zN.+e-]{1,4}( [0-9.e-]{1,4})?( # \\{[a-c=\",]{0,6}\\} [0-9.]{1,3})?|# EOF)",
            0..12,
        ),
    ) {
        let input = lines.join("\n");
        for entry in Parser::with_options(input.as_bytes(), ParseOptions { negative_observations: true }) {
            if let Ok(Entry::Sample { series, .. }) = entry {
                prop_assert!(series_labels(series).is_ok(), "{series:?}");
            }
        }
    }

    #[test]
    fn valid_expositions_give_their_samples((text, expected) in exposition()) {
        let mut got = Vec::new();
        for entry in Parser::new(text.as_bytes()) {
            let entry = entry.map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
            if let Entry::Sample { series, value, timestamp_ms, .. } = entry {
                let bits = if value.is_nan() { f64::NAN.to_bits() } else { value.to_bits() };
                got.push((series_labels(series).unwrap(), bits, timestamp_ms));
            }
        }
        prop_assert_eq!(got, expected);
    }
}
