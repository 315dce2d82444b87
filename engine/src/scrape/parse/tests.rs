//! Tests of the text-format parser: the owned [`parse`] (built on the pull parser) on good and
//! bad lines and Prometheus' test data, the pull parser's entries and lazy labels, and
//! proptests that the borrowing parser agrees with the previous owned one
//! ([`reference::parse_reference`]) and never panics.

use super::reference::parse_reference;
use super::*;
use proptest::prelude::*;

fn sample(pairs: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> ScrapedSample {
    ScrapedSample { labels: Labels::from_pairs(pairs.iter().copied()), value, timestamp_ms }
}

#[track_caller]
fn check(body: &str, expected: &[ScrapedSample]) {
    let exposition = parse(body.as_bytes()).unwrap_or_else(|error| panic!("{body:?}: {error}"));
    assert_eq!(exposition.samples.len(), expected.len(), "{body:?}");
    for (got, want) in exposition.samples.iter().zip(expected) {
        assert_eq!(got.labels, want.labels);
        assert_eq!(got.value.to_bits(), want.value.to_bits(), "{body:?}");
        assert_eq!(got.timestamp_ms, want.timestamp_ms);
    }
}

#[track_caller]
fn check_error(body: &str, line: usize, column: usize, message_part: &str) {
    let error = parse(body.as_bytes()).expect_err(body);
    assert_eq!((error.line, error.column), (line, column), "{body:?}: {error}");
    assert!(error.message.contains(message_part), "{body:?}: {error}");
}

#[test]
fn good_lines() {
    check("up 1\n", &[sample(&[("__name__", "up")], 1.0, None)]);
    check("up 1 1700000000000", &[sample(&[("__name__", "up")], 1.0, Some(1_700_000_000_000))]);
    check("  up\t-2.5e3  -5  ", &[sample(&[("__name__", "up")], -2500.0, Some(-5))]);
    check("a:b_c{x=\"1\",y=\"2\",} 3", &[sample(&[("__name__", "a:b_c"), ("x", "1"), ("y", "2")], 3.0, None)]);
    check("m { x = \"a\\\"b\\\\c\\nd\" } 1", &[sample(&[("__name__", "m"), ("x", "a\"b\\c\nd")], 1.0, None)]);
    check(
        "m{} NaN\nm2 +Inf\nm3 -Inf\nm4 inf",
        &[
            sample(&[("__name__", "m")], f64::NAN, None),
            sample(&[("__name__", "m2")], f64::INFINITY, None),
            sample(&[("__name__", "m3")], f64::NEG_INFINITY, None),
            sample(&[("__name__", "m4")], f64::INFINITY, None),
        ],
    );
    check("m{x=\"\"} 1", &[sample(&[("__name__", "m")], 1.0, None)]);
    check("m{x=\"ünïcödé ✓\"} 1", &[sample(&[("__name__", "m"), ("x", "ünïcödé ✓")], 1.0, None)]);
    check("\n\n# just a comment\n#nospace\n", &[]);
}

#[test]
fn metadata() {
    let body = "# HELP h_seconds A \\\\ help\\ntext.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 3\nh_seconds_count 2\n# TYPE c counter\nc 1\n";
    let exposition = parse(body.as_bytes()).unwrap();
    assert_eq!(exposition.samples.len(), 5);
    assert_eq!(
        exposition.metadata,
        vec![
            MetricMetadata {
                name: "h_seconds".into(),
                metric_type: MetricType::Histogram,
                help: Some("A \\ help\ntext.".into())
            },
            MetricMetadata { name: "c".into(), metric_type: MetricType::Counter, help: None },
        ]
    );
}

#[test]
fn bad_lines_name_line_and_column() {
    check_error("up 1\nup{a=\"1\" 1\n", 2, 10, "expected ',' or '}'");
    check_error("up", 1, 3, "expected value");
    check_error("up x", 1, 4, "expected a float value, found \"x\"");
    check_error("up 1 2.5", 1, 6, "integer timestamp");
    check_error("up 1 2 3", 1, 8, "end of line");
    check_error("up{a=1} 1", 1, 6, "double quotes");
    check_error("up{a=\"1} 1", 1, 11, "closing double quote");
    check_error("up{a=\"\\x\"} 1", 1, 7, "invalid escape");
    check_error("up{a=\"1\",a=\"2\"} 1", 1, 10, "duplicate label name");
    check_error("up{__name__=\"x\"} 1", 1, 4, "reserved");
    check_error("up{1a=\"1\"} 1", 1, 4, "label name");
    // Past the linear-scan threshold, duplicates are found through the set.
    let many: String = (0..40).map(|index| format!("l{index}=\"v\",")).collect();
    let line = format!("m{{{many}l3=\"again\"}} 1");
    check_error(&line, 1, line.find("l3=\"again").unwrap() + 1, "duplicate label name \"l3\"");
    let unique = parse(format!("m{{{many}}} 1").as_bytes()).unwrap();
    assert_eq!(unique.samples[0].labels.len(), 41);
    check_error("1up 1", 1, 1, "metric name");
    check_error("# TYPE up foo", 1, 11, "unknown metric type");
    check_error("# TYPE up gauge\n# TYPE up gauge", 2, 3, "second TYPE");
    check_error("up 1\n# TYPE up gauge", 2, 8, "after its samples");
    check_error("h_count 1\n# TYPE h summary", 2, 8, "after its samples");
    check_error("# TYPE up gauge extra", 1, 17, "after metric type");
    check_error("ok 1\nup{a=\"é\" 1", 2, 10, "expected ','");
    let mut invalid = b"up 1\nup{a=\"".to_vec();
    invalid.extend_from_slice(&[0xff, b'"', b'}']);
    let error = parse(&invalid).unwrap_err();
    assert_eq!((error.line, error.column, error.message.as_str()), (2, 7, "invalid UTF-8"));
}

/// Prometheus' own text-format test data (model/textparse/testdata), run from shared/.
#[test]
fn conformance_prometheus_textparse_testdata() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance/exposition/prometheus-textparse");
    for (file, type_count) in [("alltypes.237mfs.prom.txt", 237), ("alltypes.237mfs.nometa.prom.txt", 0)] {
        let path = format!("{dir}/{file}");
        let body = crate::io::FileSystem::read(&crate::io::RealFileSystem, std::path::Path::new(&path))
            .unwrap_or_else(|error| panic!("conformance file {path} missing: {error}"));
        let exposition = parse(&body).unwrap_or_else(|error| panic!("{file}: {error}"));
        let text = String::from_utf8(body).unwrap();
        let sample_lines = text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')).count();
        assert_eq!(exposition.samples.len(), sample_lines, "{file}");
        assert_eq!(sample_lines, 1857, "{file}: the suite's sample count");
        let typed = exposition.metadata.iter().filter(|metadata| metadata.metric_type != MetricType::Untyped).count();
        assert!(typed <= type_count && (type_count == 0 || typed > 200), "{file}: {typed} typed families");
        let quantile_zero = exposition
            .samples
            .iter()
            .find(|s| s.labels.metric_name() == Some("go_gc_duration_seconds") && s.labels.get("quantile") == Some("0"))
            .unwrap_or_else(|| panic!("{file}: go_gc_duration_seconds{{quantile=\"0\"}} missing"));
        assert_eq!(quantile_zero.value, 7.6238e-05);
        let inf_bucket = exposition
            .samples
            .iter()
            .find(|s| {
                s.labels.metric_name() == Some("go_gc_pauses_seconds_bucket") && s.labels.get("le") == Some("+Inf")
            })
            .unwrap_or_else(|| panic!("{file}: go_gc_pauses_seconds_bucket{{le=\"+Inf\"}} missing"));
        assert_eq!(inf_bucket.value, 381_864.0);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[a-z{}=\",# \\\\\n0-9.+-]{0,200}") {
        let _ = parse(text.as_bytes());
    }

    #[test]
    fn rendered_samples_parse_back(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        label_value in "[^\\\\\"\n]{0,10}|[a\\\\\"\n]{0,6}",
        value_bits in any::<u64>(),
        timestamp_ms in proptest::option::of(any::<i64>()),
    ) {
        let value = f64::from_bits(value_bits);
        let escaped = label_value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let rendered_value = if value.is_nan() { "NaN".to_string() } else if value.is_infinite() { if value > 0.0 { "+Inf".into() } else { "-Inf".into() } } else { format!("{value:?}") };
        let mut line = format!("{name}{{l=\"{escaped}\"}} {rendered_value}");
        if let Some(timestamp_ms) = timestamp_ms { line.push_str(&format!(" {timestamp_ms}")); }
        let exposition = parse(line.as_bytes()).unwrap();
        let got = &exposition.samples[0];
        prop_assert_eq!(got.labels.metric_name(), Some(name.as_str()));
        prop_assert_eq!(got.labels.get("l").unwrap_or(""), label_value.as_str());
        prop_assert!(got.value.to_bits() == value.to_bits() || (value.is_nan() && got.value.is_nan()));
        prop_assert_eq!(got.timestamp_ms, timestamp_ms);
    }
}

/// Every entry of `body` as text, with each sample's labels parsed through `labels`.
fn entries(body: &str) -> Vec<String> {
    let mut parser = TextParser::new(body.as_bytes());
    let mut out = Vec::new();
    while let Some(entry) = parser.next() {
        match entry {
            Ok(Entry::Sample { series, value, timestamp_ms }) => {
                let labels = parser.labels().map(|labels| labels.to_string()).unwrap_or_else(|error| error.to_string());
                out.push(format!("sample {series:?} {value} {timestamp_ms:?} -> {labels}"));
            }
            Ok(other) => out.push(format!("{other:?}")),
            Err(error) => out.push(format!("error {error}")),
        }
    }
    out
}

#[track_caller]
fn check_entries(body: &str, expected: &[&str]) {
    assert_eq!(entries(body), expected, "{body:?}");
}

#[test]
fn pull_parser_entries_borrow_the_series_text() {
    check_entries(
        "# HELP a The \\\\ help\n# TYPE a counter\n# other\n\na{x=\"1\"} 5\n  m { x = \"}\\\"\" } 1 7\nb 2\n",
        &[
            "Help { name: \"a\", text: \"The \\\\\\\\ help\" }",
            "Type { name: \"a\", metric_type: Counter }",
            "Comment { text: \" other\" }",
            "sample \"a{x=\\\"1\\\"}\" 5 None -> a{x=\"1\"}",
            "sample \"m { x = \\\"}\\\\\\\"\\\" }\" 1 Some(7) -> m{x=\"}\\\"\"}",
            "sample \"b\" 2 None -> b{}",
        ],
    );
    // The label block is only skimmed by `next`: its errors come from `labels`, with the line's
    // position; a line whose value is also bad reports the earlier, label, problem.
    check_entries(
        "ok 1\nup{a=1} 2\n",
        &[
            "sample \"ok\" 1 None -> ok{}",
            "sample \"up{a=1}\" 2 None -> line 2, column 6: expected label value in double quotes, found '1'",
        ],
    );
    check_entries(
        "ok 1\nup{a=1} x\nnever 1\n",
        &["sample \"ok\" 1 None -> ok{}", "error line 2, column 6: expected label value in double quotes, found '1'"],
    );
    check_entries(
        "up{a=\"1\" 1\nnever 1",
        &["error line 1, column 10: expected ',' or '}' after label value, found '1'"],
    );
}

#[test]
fn series_text_parses_back_alone() {
    assert_eq!(
        series_labels("a{x=\"1\",y=\"\\n\"}").unwrap(),
        Labels::from_pairs([("__name__", "a"), ("x", "1"), ("y", "\n")])
    );
    assert_eq!(series_labels("b").unwrap(), Labels::from_pairs([("__name__", "b")]));
    let error = series_labels("a{x=\"1\"} 2").unwrap_err();
    assert_eq!((error.line, error.column), (1, 10), "{error}");
    assert!(series_labels("a{x=\"1\"").is_err());
}

#[test]
fn helps_and_types_are_found_without_a_scan_of_the_families() {
    // 20,000 families with HELP and TYPE: a family lookup that scans would be quadratic.
    let body: String =
        (0..20_000).map(|index| format!("# HELP f{index} h\n# TYPE f{index} gauge\nf{index} 1\n")).collect();
    let exposition = parse(body.as_bytes()).unwrap();
    assert_eq!((exposition.samples.len(), exposition.metadata.len()), (20_000, 20_000));
    assert_eq!(
        exposition.metadata[19_999],
        MetricMetadata { name: "f19999".into(), metric_type: MetricType::Gauge, help: Some("h".into()) }
    );
}

/// Samples as comparable tuples (NaN compared by bits).
type Comparable = (Vec<(String, u64, Option<i64>)>, Vec<MetricMetadata>);

fn comparable(exposition: &Exposition) -> Comparable {
    let samples = exposition
        .samples
        .iter()
        .map(|sample| (sample.labels.to_string(), sample.value.to_bits(), sample.timestamp_ms))
        .collect();
    (samples, exposition.metadata.clone())
}

/// One line of a generated body: mostly well-formed, sometimes broken in one place.
fn line_strategy() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "a_sum", "a_count", "h", "h_bucket", "x:y", "9bad"]);
    let label_value = "[a-z ]{0,3}|\\\\[\\\\\"n]|\\\\x|\\}|é";
    let label = ("[a-c]|__name__|1x", "=|", "\"|", label_value, "\"|", ",|")
        .prop_map(|(name, equals, open, value, close, comma)| format!("{name}{equals}{open}{value}{close}{comma}"));
    let labels = prop::option::of((prop::collection::vec(label, 0..4), "\\}|")).prop_map(|labels| match labels {
        None => String::new(),
        Some((labels, close)) => format!("{{{}{close}", labels.concat()),
    });
    let value = prop::sample::select(vec!["1", "-2.5e3", "NaN", "+Inf", "-inf", "x", "", "1e", ".5"]);
    let timestamp = prop::sample::select(vec!["", " 17", " -5", " 1.5", " 1 2"]);
    let sample = (name.clone(), " ?", labels, "[ \t]{0,2}", value, timestamp).prop_map(
        |(name, blank, labels, blanks, value, timestamp)| format!("{name}{blank}{labels}{blanks}{value}{timestamp}"),
    );
    let metadata = (
        prop::sample::select(vec!["HELP", "TYPE", "OTHER"]),
        name,
        prop::sample::select(vec![
            "counter",
            "gauge",
            "histogram",
            "summary",
            "untyped",
            "bogus",
            "text \\\\ \\n x",
            "",
        ]),
    )
        .prop_map(|(keyword, name, rest)| format!("# {keyword} {name} {rest}"));
    prop_oneof![6 => sample, 2 => metadata, 1 => Just(String::new()), 1 => "[a-z{}=\",# \\\\0-9.+-]{0,20}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn borrowing_parser_agrees_with_the_owned_one(lines in prop::collection::vec(line_strategy(), 0..12)) {
        let body = lines.join("\n");
        match (parse(body.as_bytes()), parse_reference(body.as_bytes())) {
            (Ok(got), Ok(want)) => prop_assert_eq!(comparable(&got), comparable(&want), "{:?}", body),
            (Err(got), Err(want)) => prop_assert_eq!(got, want, "{:?}", body),
            (got, want) => prop_assert!(false, "{:?}: got {:?}, reference {:?}", body, got.map(|e| e.samples.len()), want.map(|e| e.samples.len())),
        }
    }

    #[test]
    fn word_searches_agree_with_a_byte_scan(bytes in proptest::collection::vec(prop::sample::select(vec![b'a', b'"', b'}', b'\\', b'\n', 0x80, 0xff]), 0..40)) {
        prop_assert_eq!(find_byte(&bytes, b'\n'), bytes.iter().position(|byte| *byte == b'\n'));
        prop_assert_eq!(find_either(&bytes, b'"', b'}'), bytes.iter().position(|byte| matches!(byte, b'"' | b'}')));
    }

    #[test]
    fn pull_parser_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut parser = TextParser::new(&bytes);
        let mut entry_count = 0_usize;
        while let Some(entry) = parser.next() {
            entry_count += 1;
            if let Ok(Entry::Sample { series, .. }) = entry {
                // Whatever `next` skimmed, both label parses agree.
                prop_assert_eq!(parser.labels().ok(), series_labels(series).ok());
            }
        }
        prop_assert!(entry_count <= bytes.len());
    }
}
