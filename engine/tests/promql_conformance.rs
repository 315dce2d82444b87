//! Prometheus' PromQL test scripts (promql/promqltest/testdata, in ../shared/conformance/promql),
//! run against the engine. The script language is summarised in shared/conformance/PROVENANCE.md.
//!
//! Every eval is run. Evals tagged in `promql-evals.tsv` with features the engine does not
//! implement (native histograms, start timestamps, type/unit labels, experimental functions,
//! duration expressions, extended range selectors, fill modifiers) are skipped and counted; every
//! other eval is eligible and passes only when it matches upstream's expected result exactly
//! (an expected line that does not parse, a wrong error message, a missing annotation or an
//! engine error all count as failures). The test fails when fewer evals pass than
//! `PASSED_EVAL_COUNT_MIN`, so coverage cannot silently drop, and when a `load` line cannot be
//! parsed or appended. It prints `promql conformance: passed P of E eligible evals (S skipped)`
//! and a per-file table; `ENGINE_CONFORMANCE_VERBOSE=1` also lists every failing eval.
//!
//! When `../shared/conformance` is absent (a fresh clone) the test prints why it was skipped and
//! passes, unless `ENGINE_CONFORMANCE_REQUIRED=1` (set by CI) makes the absence a failure.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use engine::io::TokioSpawner;
use engine::io::{FileSystem, MemFileSystem, RealFileSystem};
use engine::model::{Labels, Sample, STALE_NAN_BITS};
use engine::promql::series_notation::{
    expand_values as values, parse_number as number, parse_series_labels as series_labels, split_series_line,
};
use engine::promql::{Engine, EngineOptions, Value};
use engine::storage::Appendable;
use engine::tsdb::{Db, DbOptions};

/// Evals of selector-level features that pass today; raise it as PromQL grows.
const PASSED_EVAL_COUNT_MIN: usize = 885;
/// Feature tags (promql-evals.tsv) the engine does not implement yet.
const UNSUPPORTED_TAGS: [&str; 8] = ["nh", "nhcb", "st", "typeunit", "expfn", "durexpr", "extrange", "fill"];

fn conformance_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance"))
}

fn read(path: &Path) -> String {
    let bytes = RealFileSystem
        .read(path)
        .unwrap_or_else(|error| panic!("conformance file {} missing: {error}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|error| panic!("{} is not UTF-8: {error}", path.display()))
}

/// (file, line) -> tags, from the index.
fn tags_by_eval() -> BTreeMap<(String, usize), Vec<String>> {
    read(&conformance_dir().join("promql-evals.tsv"))
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let tags = fields.get(5)?.split(',').filter(|tag| *tag != "-").map(str::to_string).collect();
            Some(((fields[0].to_string(), fields[1].parse().ok()?), tags))
        })
        .collect()
}

fn duration_ms(text: &str) -> i64 {
    engine::config::parse_duration_ms(text).unwrap_or_else(|error| panic!("duration {text:?}: {error}"))
}

fn close(a: f64, b: f64) -> bool {
    if a.to_bits() == STALE_NAN_BITS || b.to_bits() == STALE_NAN_BITS {
        return a.to_bits() == b.to_bits();
    }
    (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() <= 1e-6
}

/// Outcome counts of one file.
#[derive(Default, Clone, Copy)]
struct FileTally {
    eligible: usize,
    passed: usize,
    skipped: usize,
}

#[derive(Default)]
struct Tally {
    by_file: BTreeMap<String, FileTally>,
    failures: Vec<String>,
}

struct Eval<'a> {
    file: &'a str,
    line_number: usize,
    header: &'a str,
    body: Vec<&'a str>,
}

/// What an `expect fail` line asks of the error message.
enum FailExpectation {
    Any,
    Message(String),
    Regex(regex::Regex),
}

fn fail_expectation(eval: &Eval<'_>) -> Result<Option<FailExpectation>, String> {
    for line in &eval.body {
        let Some(rest) = line.strip_prefix("expect fail") else {
            continue;
        };
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(Some(FailExpectation::Any));
        }
        if let Some(message) = rest.strip_prefix("msg:") {
            return Ok(Some(FailExpectation::Message(message.trim().to_string())));
        }
        if let Some(pattern) = rest.strip_prefix("regex:") {
            let regex = regex::Regex::new(pattern.trim()).map_err(|error| format!("bad regex {pattern:?}: {error}"))?;
            return Ok(Some(FailExpectation::Regex(regex)));
        }
        return Err(format!("unknown expect fail form {line:?}"));
    }
    if eval.header.starts_with("eval_fail") {
        for line in &eval.body {
            if let Some(message) = line.strip_prefix("expected_fail_message") {
                return Ok(Some(FailExpectation::Message(message.trim().to_string())));
            }
            if let Some(pattern) = line.strip_prefix("expected_fail_regexp") {
                let regex =
                    regex::Regex::new(pattern.trim()).map_err(|error| format!("bad regex {pattern:?}: {error}"))?;
                return Ok(Some(FailExpectation::Regex(regex)));
            }
        }
        return Ok(Some(FailExpectation::Any));
    }
    Ok(None)
}

/// Runs one eval; `Err` says why it did not pass.
fn run_eval(engine: &Engine, eval: &Eval<'_>) -> Result<(), String> {
    let words: Vec<&str> = eval.header.split_whitespace().collect();
    let expect_fail = fail_expectation(eval)?;
    let expect_ordered = eval.body.contains(&"expect ordered") || words[0] == "eval_ordered";
    let expected_lines: Vec<&str> = eval
        .body
        .iter()
        .copied()
        .filter(|line| !line.starts_with("expect") && !line.starts_with("expected_fail_"))
        .collect();
    let range_vector = eval.body.iter().find_map(|line| line.strip_prefix("expect range vector from "));
    let expect_string = eval.body.iter().find_map(|line| line.strip_prefix("expect string "));
    let (result, steps_ms, query) = match words.get(1).copied() {
        Some("instant") => {
            let time_ms = duration_ms(words[3]);
            let query = eval.header.splitn(5, ' ').nth(4).unwrap_or("");
            (engine.instant_query_annotated(query, time_ms), vec![time_ms], query)
        }
        Some("range") => {
            let (start_ms, end_ms, step_ms) = (duration_ms(words[3]), duration_ms(words[5]), duration_ms(words[7]));
            let query = eval.header.splitn(9, ' ').nth(8).unwrap_or("");
            let steps = (0..).map(|index| start_ms + index * step_ms).take_while(|t| *t <= end_ms).collect();
            (engine.range_query_annotated(query, start_ms, end_ms, step_ms), steps, query)
        }
        _ => return Err(format!("unknown eval form {:?}", eval.header)),
    };
    let value = match (result, expect_fail) {
        (Err(error), Some(expectation)) => {
            let message = error.to_string();
            return match expectation {
                FailExpectation::Any => Ok(()),
                FailExpectation::Message(want) if want == message => Ok(()),
                FailExpectation::Regex(regex) if regex.is_match(&message) => Ok(()),
                FailExpectation::Message(want) => Err(format!("error {message:?}, expected message {want:?}")),
                FailExpectation::Regex(regex) => Err(format!("error {message:?} does not match /{regex}/")),
            };
        }
        (Err(error), None) => return Err(format!("unexpected error: {error}")),
        (Ok((value, _)), Some(_)) => return Err(format!("expected a failure, got {value:?}")),
        (Ok((value, annotations)), None) => {
            check_annotations(&eval.body, "warn", &annotations.warnings)?;
            check_annotations(&eval.body, "info", &annotations.infos)?;
            value
        }
    };
    compare(&value, &expected_lines, &steps_ms, range_vector, expect_string, expect_ordered)
        .map_err(|why| format!("{why}\n    got {}", truncate(&format!("{value:?}"), 600)))?;
    // Upstream's implicit check: an instant eval run as a range query from t-1m to t+1m with a
    // 1m step must give the instant result at its middle step.
    let calls_range_functions = ["start()", "end()", "range()", "step()"].iter().any(|call| query.contains(call));
    if words[1] == "instant" && range_vector.is_none() && expect_string.is_none() && !calls_range_functions {
        let time_ms = steps_ms[0];
        let range_value = engine
            .range_query(query, time_ms - 60_000, time_ms + 60_000, 60_000)
            .map_err(|error| format!("(as a range query): {error}"))?;
        middle_step_mismatch(&value, &range_value, time_ms).map_err(|why| format!("(as a range query): {why}"))?;
    }
    Ok(())
}

/// Upstream's annotation rules: `expect no_<kind>` forbids any; with `expect <kind>` lines, each
/// must match an annotation of that kind and every such annotation must match a line.
fn check_annotations(body: &[&str], kind: &str, got: &[String]) -> Result<(), String> {
    if body.iter().any(|line| *line == format!("expect no_{kind}")) && !got.is_empty() {
        return Err(format!("expected no {kind} annotations, got {got:?}"));
    }
    let prefix = format!("expect {kind}");
    let mut expectations = Vec::new();
    for line in body {
        let Some(rest) = line.strip_prefix(&prefix) else { continue };
        let rest = rest.trim();
        expectations.push(if rest.is_empty() {
            FailExpectation::Any
        } else if let Some(message) = rest.strip_prefix("msg:") {
            FailExpectation::Message(message.trim().to_string())
        } else if let Some(pattern) = rest.strip_prefix("regex:") {
            FailExpectation::Regex(regex::Regex::new(pattern.trim()).map_err(|error| format!("bad regex: {error}"))?)
        } else {
            return Err(format!("unknown annotation expectation {line:?}"));
        });
    }
    if expectations.is_empty() {
        return Ok(());
    }
    let matches = |expectation: &FailExpectation, message: &String| match expectation {
        FailExpectation::Any => true,
        FailExpectation::Message(want) => want == message,
        FailExpectation::Regex(regex) => regex.is_match(message),
    };
    for expectation in &expectations {
        if !got.iter().any(|message| matches(expectation, message)) {
            return Err(format!("no {kind} annotation matches the expectation; got {got:?}"));
        }
    }
    if let Some(message) =
        got.iter().find(|message| !expectations.iter().any(|expectation| matches(expectation, message)))
    {
        return Err(format!("unexpected {kind} annotation {message:?}"));
    }
    Ok(())
}

fn truncate(text: &str, length_max: usize) -> String {
    match text.char_indices().nth(length_max) {
        Some((index, _)) => format!("{}...", &text[..index]),
        None => text.to_string(),
    }
}

/// Compares an instant result with the point at `time_ms` of the same query run as a range.
fn middle_step_mismatch(instant: &Value, range: &Value, time_ms: i64) -> Result<(), String> {
    let Value::Matrix(series) = range else {
        return Err(format!("range query returned {range:?}"));
    };
    let middle: BTreeMap<Labels, f64> = series
        .iter()
        .filter_map(|s| s.samples.iter().find(|p| p.timestamp_ms == time_ms).map(|p| (s.labels.clone(), p.value)))
        .collect();
    let want: BTreeMap<Labels, f64> = match instant {
        Value::Vector(samples) => samples.iter().map(|s| (s.labels.clone(), s.value)).collect(),
        Value::Scalar(sample) => BTreeMap::from([(Labels::empty(), sample.value)]),
        // A range vector or string result has no range-query form.
        Value::Matrix(_) | Value::String(..) => return Ok(()),
    };
    let agree = want.len() == middle.len()
        && want.iter().all(|(labels, value)| middle.get(labels).is_some_and(|got| close(*got, *value)));
    if agree {
        Ok(())
    } else {
        Err(format!("middle step {middle:?} != instant {want:?}"))
    }
}

/// Compares a result with the expected lines.
fn compare(
    value: &Value,
    expected_lines: &[&str],
    steps_ms: &[i64],
    range_vector: Option<&str>,
    expect_string: Option<&str>,
    expect_ordered: bool,
) -> Result<(), String> {
    if let Some(text) = expect_string {
        let want = text.trim().trim_matches(|c| c == '"' || c == '`');
        return match value {
            Value::String(_, got) if got == want => Ok(()),
            other => Err(format!("expected string {want:?}, got {other:?}")),
        };
    }
    if let [line] = expected_lines {
        if let Some(want) = number(line.trim()) {
            return match value {
                Value::Scalar(sample) if close(sample.value, want) => Ok(()),
                Value::Scalar(sample) => Err(format!("scalar {} != {want}", sample.value)),
                other => Err(format!("expected scalar {want}, got {}", other.type_name())),
            };
        }
    }
    if matches!(value, Value::Scalar(_)) {
        return Err(format!("got a scalar, expected {expected_lines:?}"));
    }
    // Expected series -> values per step.
    let steps_ms: Vec<i64> = match range_vector {
        Some(spec) => {
            let words: Vec<&str> = spec.split_whitespace().collect();
            if words.len() != 5 {
                return Err(format!("bad range vector expectation {spec:?}"));
            }
            let (from_ms, to_ms, step_ms) = (duration_ms(words[0]), duration_ms(words[2]), duration_ms(words[4]));
            (0..).map(|index| from_ms + index * step_ms).take_while(|t| *t <= to_ms).collect()
        }
        None => steps_ms.to_vec(),
    };
    let mut expected: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    let mut expected_order = Vec::new();
    for line in expected_lines {
        let (series, tokens) = split_series_line(line.trim());
        let values = values(&tokens).ok_or_else(|| format!("expected line {line:?} does not parse"))?;
        let labels = series_labels(series)?;
        expected_order.push(labels.clone());
        if expected.insert(labels, values).is_some() {
            return Err(format!("expected line {line:?} repeats a series"));
        }
    }
    let got: BTreeMap<Labels, Vec<Sample>> = match value {
        Value::Vector(samples) => {
            if expect_ordered {
                let order: Vec<&Labels> = samples.iter().map(|s| &s.labels).collect();
                if order != expected_order.iter().collect::<Vec<_>>() {
                    return Err("order differs".to_string());
                }
            }
            let mut got = BTreeMap::new();
            for s in samples {
                if got.insert(s.labels.clone(), vec![Sample { timestamp_ms: steps_ms[0], value: s.value }]).is_some() {
                    return Err(format!("result repeats series {}", s.labels));
                }
            }
            got
        }
        Value::Matrix(series) => {
            if series.windows(2).any(|pair| pair[0].labels >= pair[1].labels) {
                return Err("range result not sorted by labels".to_string());
            }
            series.iter().map(|s| (s.labels.clone(), s.samples.clone())).collect()
        }
        Value::Scalar(_) => unreachable!("handled above"),
        Value::String(..) => return Err("unexpected string".to_string()),
    };
    if got.keys().collect::<Vec<_>>() != expected.keys().collect::<Vec<_>>() {
        return Err(format!(
            "series differ: expected {:?}",
            expected.keys().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    for (labels, want) in &expected {
        let have = &got[labels];
        if matches!(value, Value::Matrix(_)) && range_vector.is_some() {
            // Instant query returning raw samples: compare the listed values in order.
            let want: Vec<f64> = want.iter().flatten().copied().collect();
            let have: Vec<f64> = have.iter().map(|s| s.value).collect();
            if want.len() != have.len() || want.iter().zip(&have).any(|(a, b)| !close(*a, *b)) {
                return Err(format!("{labels}: expected {want:?}"));
            }
            continue;
        }
        if want.len() > steps_ms.len() {
            return Err(format!("{labels}: {} expected values for {} steps", want.len(), steps_ms.len()));
        }
        let have_by_time: BTreeMap<i64, f64> = have.iter().map(|s| (s.timestamp_ms, s.value)).collect();
        for (index, step_ms) in steps_ms.iter().enumerate() {
            let want_value = want.get(index).copied().flatten();
            match (want_value, have_by_time.get(step_ms)) {
                (None, None) => {}
                (Some(a), Some(b)) if close(a, *b) => {}
                (a, b) => return Err(format!("{labels} at {step_ms} ms: expected {a:?}, got {b:?}")),
            }
        }
        if have_by_time.keys().any(|t| !steps_ms.contains(t)) {
            return Err(format!("{labels}: points off the step grid"));
        }
    }
    Ok(())
}

/// Loads a `load` block. Native-histogram lines and start-timestamp lines are recognised and
/// left out (evals reading them carry the `nh`/`st` tags); any other line that does not parse,
/// or a sample the store refuses, fails the load.
fn load(db: &Db, file: &str, line_number: usize, header: &str, body: &[&str]) -> Result<(), String> {
    let interval_ms = duration_ms(header.split_whitespace().nth(1).unwrap_or("0"));
    // A later line for the same series wins within one block.
    let mut block: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for (offset, line) in body.iter().enumerate() {
        let location = format!("{file}:{}", line_number + 1 + offset);
        let (series, tokens) = split_series_line(line.trim());
        if tokens.iter().any(|token| token.contains("{{"))
            || series.ends_with("@st")
            || tokens.first().is_some_and(|token| token.starts_with("@st"))
        {
            continue;
        }
        let values = values(&tokens).ok_or_else(|| format!("{location}: cannot parse values of {line:?}"))?;
        let labels = series_labels(series).map_err(|error| format!("{location}: {error}"))?;
        block.insert(labels, values);
    }
    let mut appender = db.appender();
    for (labels, values) in &block {
        for (index, value) in values.iter().enumerate() {
            if let Some(value) = value {
                appender
                    .append(None, labels, index as i64 * interval_ms, *value)
                    .map_err(|error| format!("{file}:{line_number}: append {labels}: {error}"))?;
            }
        }
    }
    runtime().block_on(appender.commit()).map_err(|error| format!("{file}:{line_number}: commit: {error}"))?;
    Ok(())
}

/// The runtime that serves every test database's WAL writer; queries need none.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("build a tokio runtime")
    })
}

fn new_db() -> Db {
    let _entered = runtime().enter();
    Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap()
}

#[test]
fn promql_test_scripts() {
    let promql_dir = conformance_dir().join("promql");
    if RealFileSystem.list_dir(&promql_dir).is_err() {
        let why = format!(
            "promql conformance: skipped, {} is absent (a fresh clone has no peer suites)",
            promql_dir.display()
        );
        assert!(
            std::env::var("ENGINE_CONFORMANCE_REQUIRED").as_deref() != Ok("1"),
            "{why}, and ENGINE_CONFORMANCE_REQUIRED=1"
        );
        eprintln!("{why}");
        return;
    }
    let tags = tags_by_eval();
    let options = EngineOptions { query_samples_max: 10_000, ..EngineOptions::default() };
    let mut tally = Tally::default();
    let mut load_errors = Vec::new();
    let files: Vec<_> = RealFileSystem
        .list_dir(&promql_dir)
        .unwrap_or_else(|error| panic!("conformance folder {} unreadable: {error}", promql_dir.display()))
        .into_iter()
        .filter(|name| name.ends_with(".test"))
        .map(|name| promql_dir.join(name))
        .collect();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&path);
        let mut db = new_db();
        let lines: Vec<&str> = text.lines().collect();
        let mut index = 0;
        let file_tally = tally.by_file.entry(file.clone()).or_default();
        while index < lines.len() {
            let header = lines[index].trim();
            let start = index;
            index += 1;
            if header.is_empty() || header.starts_with('#') {
                continue;
            }
            let mut body = Vec::new();
            // `clear` stands alone: the next line starts a new command even without a blank line.
            while header != "clear"
                && index < lines.len()
                && !lines[index].trim().is_empty()
                && !lines[index].trim().starts_with('#')
            {
                body.push(lines[index].trim());
                index += 1;
            }
            let command = header.split_whitespace().next().unwrap_or("");
            match command {
                "clear" => db = new_db(),
                "load" | "load_with_nhcb" => {
                    if let Err(error) = load(&db, &file, start + 1, header, &body) {
                        load_errors.push(error);
                    }
                }
                _ if command.starts_with("eval") => {
                    let eval_tags = tags.get(&(file.clone(), start + 1)).cloned().unwrap_or_default();
                    if eval_tags.iter().any(|tag| UNSUPPORTED_TAGS.contains(&tag.as_str())) {
                        file_tally.skipped += 1;
                        continue;
                    }
                    file_tally.eligible += 1;
                    let engine = Engine::new(Arc::new(db.clone()), options.clone());
                    let eval = Eval { file: &file, line_number: start + 1, header, body };
                    match run_eval(&engine, &eval) {
                        Ok(()) => file_tally.passed += 1,
                        Err(why) => {
                            tally.failures.push(format!("{}:{} `{}`: {why}", eval.file, eval.line_number, eval.header))
                        }
                    }
                }
                _ => load_errors.push(format!("{file}:{}: unknown command {header:?}", start + 1)),
            }
        }
    }
    let total = tally.by_file.values().fold(FileTally::default(), |sum, file| FileTally {
        eligible: sum.eligible + file.eligible,
        passed: sum.passed + file.passed,
        skipped: sum.skipped + file.skipped,
    });
    eprintln!("{:<28} {:>8} {:>8} {:>8}", "file", "passed", "eligible", "skipped");
    for (file, counts) in &tally.by_file {
        eprintln!("{file:<28} {:>8} {:>8} {:>8}", counts.passed, counts.eligible, counts.skipped);
    }
    eprintln!(
        "promql conformance: passed {} of {} eligible evals ({} skipped)",
        total.passed, total.eligible, total.skipped
    );
    if std::env::var("ENGINE_CONFORMANCE_VERBOSE").as_deref() == Ok("1") {
        for failure in &tally.failures {
            eprintln!("FAIL {failure}");
        }
    }
    assert!(load_errors.is_empty(), "load blocks failed:\n{}", load_errors.join("\n"));
    assert!(
        total.passed >= PASSED_EVAL_COUNT_MIN,
        "only {} evals passed, expected at least {PASSED_EVAL_COUNT_MIN}; failures:\n{}",
        total.passed,
        tally.failures.join("\n")
    );
}
