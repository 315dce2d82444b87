//! Table tests for the template engine: Prometheus' `template/template_test.go` cases (ported as
//! facts, not code), Go text/template semantics, errors, bounds, and a no-panic proptest.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;

fn no_query(_: &str) -> Result<Vec<QuerySample>, String> {
    Ok(Vec::new())
}

fn sample(pairs: &[(&str, &str)], value: f64) -> QuerySample {
    QuerySample { labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), value }
}

/// Expands `text` with `dot` and a query function returning `samples`.
fn run(text: &str, dot: &Value, samples: &[QuerySample]) -> Result<String, TemplateError> {
    let samples = samples.to_vec();
    let query = move |_: &str| Ok(samples.clone());
    let template = Template::parse("test", text)?;
    template.execute(dot, &Context { query: &query, external_url: "http://testhost:9090/path/prefix" })
}

#[track_caller]
fn check(text: &str, dot: &Value, samples: &[QuerySample], expected: &str) {
    match run(text, dot, samples) {
        Ok(output) => assert_eq!(output, expected, "template {text:?}"),
        Err(error) => panic!("template {text:?} failed: {error}"),
    }
}

#[track_caller]
fn check_error(text: &str, dot: &Value, samples: &[QuerySample], expected: &str) {
    match run(text, dot, samples) {
        Ok(output) => panic!("template {text:?} gave {output:?}, expected error {expected:?}"),
        Err(error) => assert_eq!(error.to_string(), expected, "template {text:?}"),
    }
}

fn floats(values: &[f64]) -> Value {
    Value::List(Arc::new(values.iter().map(|v| Value::Float(*v)).collect()))
}

fn strings(values: &[&str]) -> Value {
    Value::List(Arc::new(values.iter().map(|v| Value::String(v.to_string())).collect()))
}

fn ints(values: &[i64]) -> Value {
    Value::List(Arc::new(values.iter().map(|v| Value::Int(*v)).collect()))
}

#[test]
fn prometheus_template_test_cases() {
    let nil = Value::Nil;
    let metric_a = [sample(&[("__name__", "metric"), ("instance", "a")], 11.0)];
    for (text, dot, samples, expected) in [
        ("plain text", &nil, &[][..], "plain text"),
        ("{{ 1 }}", &nil, &[], "1"),
        ("{{ \"<b>\" }}", &nil, &[], "<b>"),
        ("{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}", &nil, &[], "1 2"),
        ("{{ query \"metric{instance='a'}\" | first | value }}", &nil, &metric_a[..], "11"),
        ("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}", &nil, &metric_a[..], "a"),
        ("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", &nil, &metric_a[..], ""),
        ("{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}", &nil, &metric_a[..], ""),
        ("{{ \"foo.example.com\" | stripPort }}", &nil, &[], "foo.example.com"),
        ("{{ \"foo.example.com:12345\" | stripPort }}", &nil, &[], "foo.example.com"),
        ("{{ \"2001:0DB8::1\" | stripPort }}", &nil, &[], "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]:12345\" | stripPort }}", &nil, &[], "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]::12345\" | stripPort }}", &nil, &[], "[2001:0DB8::1]::12345"),
        ("{{ .Foo }}", &nil, &[], "<no value>"),
        ("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", &nil, &[], "xa"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", &floats(&[0.0, 1.0, 1234567.0, 0.12]), &[], "0:1:1.235M:120m:"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", &strings(&["0.0", "1.0", "1234567.0", ".12"]), &[], "0:1:1.235M:120m:"),
        ("{{ range . }}{{ humanize . }}:{{ end }}", &ints(&[0, -1, 1, 1234567, i64::MAX]), &[], "0:-1:1:1.235M:9.223E:"),
        ("{{ range . }}{{ humanize1024 . }}:{{ end }}", &floats(&[0.0, 1.0, 1048576.0, 0.12]), &[], "0:1:1Mi:0.12:"),
        ("{{ range . }}{{ humanize1024 . }}:{{ end }}", &ints(&[0, -1, 1, 1234567, i64::MAX]), &[], "0:-1:1:1.177Mi:8Ei:"),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            &floats(&[0.0, 1.0, 60.0, 3600.0, 86400.0, 86400.0 + 3600.0, -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0), 899.99]),
            &[],
            "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:",
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            &floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
            &[],
            "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
        ),
        ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", &ints(&[0, -1, 1, 1234567]), &[], "0s:-1s:1s:14d 6h 56m 7s:"),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            &floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
            &[],
            "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            &strings(&["+Inf", "-Inf", "NaN"]),
            &[],
            "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        ),
        (
            "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
            &nil,
            &[],
            "-22.22%:0%:12.35%:123.5%",
        ),
        ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", &ints(&[0, -1, 1, 1234567, i64::MAX]), &[], "0%:-100%:100%:1.235e+08%:9.223e+20%:"),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            &ints(&[0, -1, 1, 1234567, 9223372036]),
            &[],
            "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
        ),
        ("{{ 1435065584.128 | humanizeTimestamp }}", &nil, &[], "2015-06-23 13:19:44.128 +0000 UTC"),
        ("{{ \"1435065584.128\" | humanizeTimestamp }}", &nil, &[], "2015-06-23 13:19:44.128 +0000 UTC"),
        ("{{ (1435065584.128 | toTime).Format \"2006\" }}", &nil, &[], "2015"),
        ("{{ (\"1435065584.128\" | toTime).Format \"2006\" }}", &nil, &[], "2015"),
        ("{{ \"aa bb CC\" | title }}", &nil, &[], "Aa Bb CC"),
        ("{{ \"aa bb CC\" | toUpper }}", &nil, &[], "AA BB CC"),
        ("{{ \"aA bB CC\" | toLower }}", &nil, &[], "aa bb cc"),
        ("{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}", &nil, &[], "true false"),
        ("{{ graphLink \"up\" }}", &nil, &[], "/graph?g0.expr=up&g0.tab=0"),
        ("{{ tableLink \"up\" }}", &nil, &[], "/graph?g0.expr=up&g0.tab=1"),
        ("{{ pathPrefix }}", &nil, &[], "/path/prefix"),
        ("{{ externalURL }}", &nil, &[], "http://testhost:9090/path/prefix"),
        ("{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}", &nil, &[], "3720.01"),
        ("{{ \"foo.example.com\" | stripDomain }}", &nil, &[], "foo"),
        ("{{ \"foo.example.com:12345\" | stripDomain }}", &nil, &[], "foo:12345"),
        ("{{ \"192.0.2.1\" | stripDomain }}", &nil, &[], "192.0.2.1"),
        ("{{ \"192.0.2.1:12345\" | stripDomain }}", &nil, &[], "192.0.2.1:12345"),
        ("{{ \"2001:0DB8::1\" | stripDomain }}", &nil, &[], "2001:0DB8::1"),
        ("{{ \"[2001:0DB8::1]:12345\" | stripDomain }}", &nil, &[], "[2001:0DB8::1]:12345"),
    ] {
        check(text, dot, samples, expected);
    }
    let unsorted = [
        sample(&[("__name__", "metric"), ("instance", "b")], 21.0),
        sample(&[("__name__", "metric"), ("instance", "a")], 11.0),
    ];
    check(
        "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
        &nil,
        &unsorted,
        "a:11: b:21: ",
    );
}

#[test]
fn prometheus_error_cases() {
    let nil = Value::Nil;
    check_error("{{", &nil, &[], "template: test:1: unclosed action");
    check_error("{{ \u{a0}}}", &nil, &[], "template: test:1: unrecognized character in action: U+00A0");
    check_error(
        "{{ query \"missing\" | first }}",
        &nil,
        &[],
        "template: test:1:21: executing \"test\" at <first>: error calling first: first() called on vector with no elements",
    );
    check_error(
        "{{ humanize \"one\" }}",
        &nil,
        &[],
        "template: test:1:3: executing \"test\" at <humanize \"one\">: error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
    check_error(
        "{{ \"one\" | humanizePercentage }}",
        &nil,
        &[],
        "template: test:1:11: executing \"test\" at <humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing \"one\": invalid syntax",
    );
    check_error(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        &ints(&[i64::MIN]),
        &[],
        "template: test:1:16: executing \"test\" at <humanizeTimestamp .>: error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64",
    );
    check_error("{{ nope }}", &nil, &[], "template: test:1: function \"nope\" not defined");
    check_error("{{ $x }}", &nil, &[], "template: test:1: undefined variable \"$x\"");
    check_error("a\n{{ end }}", &nil, &[], "template: test:2: unexpected {{end}}");
    check_error("{{ if 1 }}", &nil, &[], "template: test:1: unexpected EOF");
}

fn alert(text: &str, labels: &[(&str, &str)], value: f64) -> Result<String, TemplateError> {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let external: BTreeMap<String, String> = [("cluster".to_string(), "eu1".to_string())].into();
    let data =
        AlertTemplateData { labels: &labels, external_labels: &external, external_url: "http://prom:9090", value };
    expand_alert("__alert_A", text, &data, &no_query)
}

#[track_caller]
fn check_alert(text: &str, labels: &[(&str, &str)], value: f64, expected: &str) {
    assert_eq!(alert(text, labels, value).unwrap_or_else(|e| panic!("{text:?}: {e}")), expected, "{text:?}");
}

#[test]
fn alert_templates_render_as_prometheus() {
    let labels = [("instance", "a:9090"), ("job", "node")];
    for (text, value, expected) in [
        ("no actions at all", 1.0, "no actions at all"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("{{ $value }}", 0.1, "0.1"),
        ("{{ .Value }}|{{ $labels.job }}|{{ .Labels.instance }}", 1e6, "1e+06|node|a:9090"),
        ("{{ $labels.nope }}|{{ index $labels \"job\" }}", 1.0, "|node"),
        ("{{ $externalLabels.cluster }} {{ $externalURL }}", 1.0, "eu1 http://prom:9090"),
        ("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}", 1.0, "instance=a:9090;job=node;"),
        ("{{ range $labels }}{{ . }},{{ else }}none{{ end }}", 1.0, "a:9090,node,"),
        ("{{ if gt $value 10.0 }}high{{ else if gt $value 1.0 }}mid{{ else }}low{{ end }}", 5.0, "mid"),
        ("{{ with $labels.job }}job={{ . }}{{ else }}nojob{{ end }}", 1.0, "job=node"),
        ("a  {{- \" b \" -}}  c", 1.0, "a b c"),
        ("{{/* a comment */}}x{{- /* trimmed */ -}} y", 1.0, "xy"),
        ("{{ printf \"%.2f %d %s %q %5.1f%%\" $value 3 \"s\" \"q\" 12.345 }}", 1.23456, "1.23 3 s \"q\"  12.3%"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}", 1.0, "2"),
        ("{{ len $labels }} {{ not false }} {{ and 1 0 }} {{ or 0 \"x\" }}", 1.0, "2 true 0 x"),
        ("{{ eq $labels.job \"node\" \"other\" }} {{ ne 1 2 }} {{ le 2 2 }}", 1.0, "true true true"),
        ("{{ html \"<a&b>\" }} {{ js \"it's\" }} {{ urlquery \"a b&c\" }}", 1.0, "&lt;a&amp;b&gt; it\\'s a+b%26c"),
        ("{{ print 1 2 \"a\" \"b\" 3 }}|{{ println 1 \"a\" }}", 1.0, "1 2ab3|1 a\n"),
        ("{{ slice \"abcdef\" 1 3 }} {{ `raw\\n` }} {{ 0x1F }} {{ 1e3 }} {{ 'a' }}", 1.0, "bc raw\\n 31 1000 97"),
        ("{{ range $i, $e := args \"x\" \"y\" }}{{ $i }}:{{ $e }} {{ end }}", 1.0, "arg0:x arg1:y "),
        (
            "{{ define \"t\" }}[{{ . }}]{{ end }}{{ template \"t\" $labels.job }}{{ block \"b\" 1 }}<{{ . }}>{{ end }}",
            1.0,
            "[node]<1>",
        ),
        ("{{ range $labels }}{{ if eq . \"node\" }}{{ break }}{{ end }}{{ . }}{{ end }}", 1.0, "a:9090"),
        ("{{ (args 1).arg0 }} {{ (args 1).nope }}", 1.0, "1 <no value>"),
        (
            "{{ $value | humanize }} {{ humanizeDuration 3600 }} {{ humanizePercentage 0.1234 }}",
            1234567.0,
            "1.235M 1h 0m 0s 12.34%",
        ),
        ("{{ . }}", 2.0, "{map[instance:a:9090 job:node] map[cluster:eu1] http://prom:9090 2}"),
    ] {
        check_alert(text, &labels, value, expected);
    }
}

#[test]
fn alert_template_errors_display_as_go() {
    let error = alert("{{ nope }}", &[], 1.0).unwrap_err();
    assert_eq!(
        error,
        TemplateError::Parse { name: "__alert_A".into(), line: 1, message: "function \"nope\" not defined".into() }
    );
    assert_eq!(error.to_string(), "template: __alert_A:1: function \"nope\" not defined");
    let error = alert("{{ toUpper $value }}", &[], 1.0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "template: __alert_A:1:115: executing \"__alert_A\" at <toUpper $value>: wrong type for value; expected string; got float64"
    );
    let error = alert("{{ $labels.x.y.Format 1 }}", &[], 1.0).unwrap_err();
    assert!(error.to_string().contains("can't evaluate field y in type string"), "{error}");
}

#[test]
fn bounds_are_errors() {
    let big = Value::List(Arc::new((0..20_000).map(Value::Int).collect()));
    let error = run("{{ range . }}{{ end }}", &big, &[]).unwrap_err();
    assert!(error.to_string().contains("RANGE_ITERATION_COUNT_MAX"), "{error}");
    let error =
        run("{{ define \"r\" }}{{ template \"r\" }}{{ end }}{{ template \"r\" }}", &Value::Nil, &[]).unwrap_err();
    assert!(error.to_string().contains("exceeded maximum template depth"), "{error}");
    let long = Value::String("x".repeat(200_000));
    let error = run("{{ range $i, $e := args 1 2 3 4 5 6 }}{{ $ }}{{ $ }}{{ end }}", &long, &[]).unwrap_err();
    assert!(error.to_string().contains("OUTPUT_SIZE_MAX"), "{error}");
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(50), ")".repeat(50));
    assert!(run(&deep, &Value::Nil, &[]).is_ok());
    let nested = "{{ if 1 }}".repeat(NESTING_DEPTH_MAX + 1);
    assert!(run(&nested, &Value::Nil, &[]).unwrap_err().to_string().contains("nesting depth"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,80}") {
        let _ = alert(&text, &[("job", "x")], 1.5);
    }

    #[test]
    fn arbitrary_actions_never_panic(inner in "[ -~]{0,40}") {
        let _ = alert(&format!("{{{{{inner}}}}}"), &[("job", "x")], 1.5);
        let _ = alert(&format!("{{{{ {inner} }}}}{{{{ end }}}}"), &[("job", "x")], 1.5);
    }
}
