//! Prometheus' PromQL test scripts (promql/promqltest/testdata, in ../shared/conformance/promql),
//! run against the engine. The script language is summarised in shared/conformance/PROVENANCE.md.
//!
//! Every eval is run. Evals tagged in `promql-evals.tsv` with features the engine does not
//! implement (native histograms, start timestamps, type/unit labels, experimental functions,
//! duration expressions, extended range selectors, fill modifiers) are skipped; so are evals the
//! engine answers with an explicit "not supported yet" execution error. Everything else must
//! match upstream's expected result: a wrong answer fails the test, and the test also fails if
//! fewer evals pass than the engine is known to support, so coverage cannot silently drop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use engine::io::TokioSpawner;
use engine::io::{FileSystem, MemFileSystem, RealFileSystem};
use engine::model::{Labels, Sample, STALE_NAN_BITS};
use engine::promql::{Engine, EngineOptions, QueryError, Value};
use engine::storage::Appendable;
use engine::tsdb::{Db, DbOptions};
use promql_parser::parser::{parse, Expr};

/// Evals of selector-level features that pass today; raise it as PromQL grows.
const PASSED_EVAL_COUNT_MIN: usize = 76;
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

/// Parses `metric{a="b"}` or `{__name__="m"}` or `{}` into labels.
fn series_labels(text: &str) -> Labels {
    if text.trim() == "{}" {
        return Labels::empty();
    }
    let Ok(Expr::VectorSelector(selector)) = parse(text) else {
        panic!("cannot parse series {text:?}");
    };
    let mut pairs: Vec<(String, String)> =
        selector.matchers.matchers.iter().map(|matcher| (matcher.name.clone(), matcher.value.clone())).collect();
    if let Some(name) = selector.name {
        pairs.push(("__name__".to_string(), name));
    }
    Labels::from_pairs(pairs)
}

fn number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let (sign, magnitude) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match magnitude {
        "inf" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(hex) = magnitude.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|value| sign * value as f64);
    }
    text.parse().ok()
}

/// Expands a value sequence; `None` is "no sample".
fn values(tokens: &[&str]) -> Option<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for token in tokens {
        if token.starts_with("{{") {
            return None; // Native histogram literal.
        }
        match *token {
            "_" => out.push(None),
            "stale" => out.push(Some(f64::from_bits(STALE_NAN_BITS))),
            _ => {
                if let Some((head, count)) = token
                    .rsplit_once('x')
                    .filter(|(_, count)| count.bytes().all(|b| b.is_ascii_digit()) && !count.is_empty())
                {
                    let count: usize = count.parse().ok()?;
                    if head == "_" {
                        out.extend(std::iter::repeat_n(None, count));
                        continue;
                    }
                    // `a+b` or `a-b`: the operator is the first sign not at the start or after an exponent.
                    let bytes = head.as_bytes();
                    let split = (1..bytes.len())
                        .find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
                    let (start, step) = match split {
                        Some(index) => {
                            let step = number(&head[index + 1..])?;
                            (number(&head[..index])?, if bytes[index] == b'-' { -step } else { step })
                        }
                        None => (number(head)?, 0.0),
                    };
                    out.extend((0..=count).map(|index| Some(start + step * index as f64)));
                } else {
                    out.push(Some(number(token)?));
                }
            }
        }
    }
    Some(out)
}

/// Splits `series values...` where the series may contain spaces inside braces.
fn split_series_line(line: &str) -> (&str, Vec<&str>) {
    let end = match line.find('{') {
        Some(open) if !line[..open].contains(char::is_whitespace) => {
            let mut depth = 0;
            let mut in_quote = false;
            let mut previous = ' ';
            let mut end = line.len();
            for (index, character) in line.char_indices().skip(open) {
                match character {
                    '"' if previous != '\\' => in_quote = !in_quote,
                    '{' if !in_quote => depth += 1,
                    '}' if !in_quote => {
                        depth -= 1;
                        if depth == 0 {
                            end = index + 1;
                            break;
                        }
                    }
                    _ => {}
                }
                previous = character;
            }
            end
        }
        _ => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    (&line[..end], line[end..].split_whitespace().collect())
}

fn close(a: f64, b: f64) -> bool {
    if a.to_bits() == STALE_NAN_BITS || b.to_bits() == STALE_NAN_BITS {
        return a.to_bits() == b.to_bits();
    }
    (a.is_nan() && b.is_nan()) || a == b || ((a - b) / b).abs() <= 1e-6
}

#[derive(Default)]
struct Tally {
    passed: usize,
    skipped_by_tag: usize,
    skipped_unsupported: BTreeSet<String>,
    failures: Vec<String>,
}

struct Eval<'a> {
    file: &'a str,
    line_number: usize,
    header: &'a str,
    body: Vec<&'a str>,
}

fn run_eval(engine: &Engine, eval: &Eval<'_>, tally: &mut Tally) {
    let words: Vec<&str> = eval.header.split_whitespace().collect();
    let expect_fail = eval.body.iter().any(|line| line.starts_with("expect fail")) || words[0] == "eval_fail";
    let mut expected_lines: Vec<&str> = eval.body.iter().copied().filter(|line| !line.starts_with("expect")).collect();
    let range_vector = eval.body.iter().find_map(|line| line.strip_prefix("expect range vector from "));
    let expect_string = eval.body.iter().find_map(|line| line.strip_prefix("expect string "));
    let (result, steps_ms, query) = match words.get(1).copied() {
        Some("instant") => {
            let time_ms = duration_ms(words[3]);
            let query = eval.header.splitn(5, ' ').nth(4).unwrap_or("");
            (engine.instant_query(query, time_ms), vec![time_ms], query)
        }
        Some("range") => {
            let (start_ms, end_ms, step_ms) = (duration_ms(words[3]), duration_ms(words[5]), duration_ms(words[7]));
            let query = eval.header.splitn(9, ' ').nth(8).unwrap_or("");
            let steps = (0..).map(|index| start_ms + index * step_ms).take_while(|t| *t <= end_ms).collect();
            (engine.range_query(query, start_ms, end_ms, step_ms), steps, query)
        }
        _ => panic!("{}:{}: unknown eval form {:?}", eval.file, eval.line_number, eval.header),
    };
    let location = format!("{}:{} `{}`", eval.file, eval.line_number, query);
    let value = match result {
        Err(QueryError::Execution(message)) if message.contains("not supported yet") => {
            tally.skipped_unsupported.insert(message.split(':').next().unwrap_or("").to_string());
            return;
        }
        Err(error) if expect_fail => {
            let _ = error;
            tally.passed += 1;
            return;
        }
        Err(error) => {
            tally.failures.push(format!("{location}: unexpected error: {error}"));
            return;
        }
        Ok(_) if expect_fail => {
            tally.failures.push(format!("{location}: expected a failure"));
            return;
        }
        Ok(value) => value,
    };
    let mismatch = compare(&value, &mut expected_lines, &steps_ms, range_vector, expect_string);
    if let Some(why) = mismatch {
        tally.failures.push(format!("{location}: {why}\n    got {value:?}"));
        return;
    }
    // Upstream's implicit check: an instant eval run as a range query from t-1m to t+1m with a
    // 1m step must give the instant result at its middle step.
    let calls_range_functions = ["start()", "end()", "range()", "step()"].iter().any(|call| query.contains(call));
    if words[1] == "instant" && range_vector.is_none() && expect_string.is_none() && !calls_range_functions {
        let time_ms = steps_ms[0];
        match engine.range_query(query, time_ms - 60_000, time_ms + 60_000, 60_000) {
            Ok(range_value) => {
                if let Some(why) = middle_step_mismatch(&value, &range_value, time_ms) {
                    tally.failures.push(format!("{location} (as a range query): {why}"));
                    return;
                }
            }
            Err(error) => {
                tally.failures.push(format!("{location} (as a range query): {error}"));
                return;
            }
        }
    }
    tally.passed += 1;
}

/// Compares an instant result with the point at `time_ms` of the same query run as a range.
fn middle_step_mismatch(instant: &Value, range: &Value, time_ms: i64) -> Option<String> {
    let Value::Matrix(series) = range else {
        return Some(format!("range query returned {range:?}"));
    };
    let middle: BTreeMap<Labels, f64> = series
        .iter()
        .filter_map(|s| s.samples.iter().find(|p| p.timestamp_ms == time_ms).map(|p| (s.labels.clone(), p.value)))
        .collect();
    let want: BTreeMap<Labels, f64> = match instant {
        Value::Vector(samples) => samples.iter().map(|s| (s.labels.clone(), s.value)).collect(),
        Value::Scalar(sample) => BTreeMap::from([(Labels::empty(), sample.value)]),
        // A range vector or string result has no range-query form.
        Value::Matrix(_) | Value::String(..) => return None,
    };
    let agree = want.len() == middle.len()
        && want.iter().all(|(labels, value)| middle.get(labels).is_some_and(|got| close(*got, *value)));
    (!agree).then(|| format!("middle step {middle:?} != instant {want:?}"))
}

/// Compares a result with the expected lines; `None` when they agree.
fn compare(
    value: &Value,
    expected_lines: &mut Vec<&str>,
    steps_ms: &[i64],
    range_vector: Option<&str>,
    expect_string: Option<&str>,
) -> Option<String> {
    if let Some(text) = expect_string {
        let want = text.trim().trim_matches(|c| c == '"' || c == '`');
        return match value {
            Value::String(_, got) if got == want => None,
            other => Some(format!("expected string {want:?}, got {other:?}")),
        };
    }
    if let (Value::Scalar(sample), [line]) = (value, expected_lines.as_slice()) {
        if let Some(want) = number(line.trim()) {
            return (!close(sample.value, want)).then(|| format!("scalar {} != {want}", sample.value));
        }
    }
    // Expected series -> values per step.
    let steps_ms: Vec<i64> = match range_vector {
        Some(spec) => {
            let words: Vec<&str> = spec.split_whitespace().collect();
            let (from_ms, to_ms, step_ms) = (duration_ms(words[0]), duration_ms(words[2]), duration_ms(words[4]));
            (0..).map(|index| from_ms + index * step_ms).take_while(|t| *t <= to_ms).collect()
        }
        None => steps_ms.to_vec(),
    };
    let mut expected: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for line in expected_lines.iter() {
        let (series, tokens) = split_series_line(line.trim());
        let values = values(&tokens)?;
        expected.insert(series_labels(series), values);
    }
    let got: BTreeMap<Labels, Vec<Sample>> = match value {
        Value::Vector(samples) => samples
            .iter()
            .map(|s| (s.labels.clone(), vec![Sample { timestamp_ms: steps_ms[0], value: s.value }]))
            .collect(),
        Value::Matrix(series) => series.iter().map(|s| (s.labels.clone(), s.samples.clone())).collect(),
        Value::Scalar(sample) => BTreeMap::from([(Labels::empty(), vec![*sample])]),
        Value::String(..) => return Some("unexpected string".to_string()),
    };
    if got.keys().collect::<Vec<_>>() != expected.keys().collect::<Vec<_>>() {
        return Some(format!(
            "series differ: expected {:?}",
            expected.keys().map(ToString::to_string).collect::<Vec<_>>()
        ));
    }
    for (labels, want) in &expected {
        let have = &got[labels];
        let have_by_time: BTreeMap<i64, f64> = have.iter().map(|s| (s.timestamp_ms, s.value)).collect();
        if matches!(value, Value::Matrix(_)) && range_vector.is_some() {
            // Instant query returning raw samples: compare the listed values in order.
            let want: Vec<f64> = want.iter().flatten().copied().collect();
            let have: Vec<f64> = have.iter().map(|s| s.value).collect();
            if want.len() != have.len() || want.iter().zip(&have).any(|(a, b)| !close(*a, *b)) {
                return Some(format!("{labels}: expected {want:?}"));
            }
            continue;
        }
        for (index, step_ms) in steps_ms.iter().enumerate() {
            let want_value = want.get(index).copied().flatten();
            match (want_value, have_by_time.get(step_ms)) {
                (None, None) => {}
                (Some(a), Some(b)) if close(a, *b) => {}
                (a, b) => return Some(format!("{labels} at {step_ms} ms: expected {a:?}, got {b:?}")),
            }
        }
        if have_by_time.keys().any(|t| !steps_ms.contains(t)) {
            return Some(format!("{labels}: points off the step grid"));
        }
    }
    None
}

fn load(db: &Db, header: &str, body: &[&str]) {
    let interval_ms = duration_ms(header.split_whitespace().nth(1).unwrap_or("0"));
    for line in body {
        let (series, tokens) = split_series_line(line.trim());
        let Some(values) = values(&tokens) else { continue };
        let labels = series_labels(series);
        let mut appender = db.appender();
        for (index, value) in values.iter().enumerate() {
            if let Some(value) = value {
                let _ = appender.append(None, &labels, index as i64 * interval_ms, *value);
            }
        }
        runtime().block_on(appender.commit()).unwrap();
    }
}

/// The runtime that serves every test database's WAL writer; queries need none.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("build a tokio runtime"))
}

fn new_db() -> Db {
    let _entered = runtime().enter();
    Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap()
}

#[test]
fn promql_test_scripts() {
    let tags = tags_by_eval();
    let options = EngineOptions { query_samples_max: 10_000, ..EngineOptions::default() };
    let mut tally = Tally::default();
    let promql_dir = conformance_dir().join("promql");
    let files: Vec<_> = RealFileSystem
        .list_dir(&promql_dir)
        .unwrap_or_else(|error| panic!("conformance folder {} missing: {error}", promql_dir.display()))
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
                "load" | "load_with_nhcb" => load(&db, header, &body),
                _ if command.starts_with("eval") => {
                    let eval_tags = tags.get(&(file.clone(), start + 1)).cloned().unwrap_or_default();
                    if eval_tags.iter().any(|tag| UNSUPPORTED_TAGS.contains(&tag.as_str())) {
                        tally.skipped_by_tag += 1;
                        continue;
                    }
                    let engine = Engine::new(Arc::new(db.clone()), options.clone());
                    run_eval(&engine, &Eval { file: &file, line_number: start + 1, header, body }, &mut tally);
                }
                _ => panic!("{file}:{}: unknown command {header:?}", start + 1),
            }
        }
    }
    eprintln!(
        "promql conformance: {} passed, {} failed, {} skipped by feature tag, unsupported node kinds: {:?}",
        tally.passed,
        tally.failures.len(),
        tally.skipped_by_tag,
        tally.skipped_unsupported
    );
    assert!(
        tally.failures.is_empty(),
        "{} evals disagree with Prometheus:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(
        tally.passed >= PASSED_EVAL_COUNT_MIN,
        "only {} evals passed, expected at least {PASSED_EVAL_COUNT_MIN}",
        tally.passed
    );
}
