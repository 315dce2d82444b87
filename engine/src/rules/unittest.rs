//! Rule unit tests in promtool's file format (cmd/promtool/unittest.go, Prometheus 2.42):
//! `rule_files`, `evaluation_interval`, `group_eval_order` and `tests`, each test with its
//! `input_series` (the expanding notation of [`series_notation`]), `alert_rule_test` and
//! `promql_expr_test`. [`run_file`] gives promtool's verdict and its output, byte for byte:
//! `Unit Testing:  FILE`, then `  SUCCESS`, or `  FAILED:` and the failures on stderr.
//!
//! Semantics, as `testGroup.test`: every test group gets fresh storage (`teststorage.New`) and
//! its own rule groups, alerting rules marked restored; groups are evaluated at 0, interval, ...
//! up to the largest `eval_time`, in `group_eval_order` (stable otherwise: file order), after
//! the input samples up to that time were appended (`LazyLoader.WithSamplesTill`). Alerts are
//! checked at the evaluation at or before their `eval_time` (firing ones only, compared as sorted
//! sets of labels and annotations); expressions are queried after the last evaluation. A rule
//! evaluation error ends the group's test at that step.
//!
//! The file is decoded as yaml.v2's `UnmarshalStrict` decodes it: unknown keys and mistyped
//! values are collected as `line N: ...` errors, scalars are accepted as strings, a bad
//! duration aborts the decoding with its own message. Lines come from matching the keys, in
//! document order, against the text (serde's YAML value carries no positions).
//!
//! Concurrency: one file at a time, on the caller's task; the storage comes from the caller
//! ([`TestStorage`]), so this module reaches no store but through the storage seams.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, VariantAccess, Visitor};

use super::file::{load_rule_file, resolve_rule_files};
use super::{query_vector, AlertState, EvalContext, Group, RuleKind};
use crate::config::{format_duration_ms, parse_duration_ms};
use crate::io::{Clock, FileSystem};
use crate::limits::UNIT_TEST_EVALUATION_STEP_COUNT_MAX;
use crate::model::Labels;
use crate::notifier::{Alert, AlertSink};
use crate::promql::series_notation::{expand_values, parse_series_labels};
use crate::promql::{Engine, EngineOptions};
use crate::storage::{Appendable, Queryable};
use crate::template::{format_float, quote};

/// `evaluation_interval` when the file gives none (promtool's default).
pub const EVALUATION_INTERVAL_MS_DEFAULT: i64 = 60_000;
/// Most samples one query may load (promql/test.go `LazyLoader`'s engine).
pub const QUERY_SAMPLES_MAX: usize = 10_000;
/// Query timeout of the test engine (promql/test.go).
pub const QUERY_TIMEOUT_MS: u64 = 100_000;

/// Fresh, empty storage for one test group (promtool's `teststorage.New`).
pub struct TestStorage {
    /// Where input series, recorded series and `ALERTS` go.
    pub appendable: Arc<dyn Appendable>,
    /// What rules and expression tests query.
    pub queryable: Arc<dyn Queryable>,
}

/// Opens a [`TestStorage`]; the error text is reported as the test group's failure.
pub type OpenStorage<'a> = dyn Fn() -> Result<TestStorage, String> + 'a;

/// What `promtool test rules` prints for some files, and whether any failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Text for standard output.
    pub stdout: String,
    /// Text for standard error (warnings and failures).
    pub stderr: String,
    /// Whether any file failed (exit code 1).
    pub failed: bool,
}

impl Report {
    /// Appends `other`'s text and verdict.
    pub fn append(&mut self, other: Report) {
        self.stdout.push_str(&other.stdout);
        self.stderr.push_str(&other.stderr);
        self.failed |= other.failed;
    }
}

/// Runs the unit test file `file` (a path as given on the command line; rule files are
/// relative to its directory) as promtool's `RulesUnitTest` runs one file.
pub async fn run_file(fs: &dyn FileSystem, file: &str, open_storage: &OpenStorage<'_>) -> Report {
    let mut report = Report { stdout: format!("Unit Testing:  {file}\n"), ..Report::default() };
    let errors = test_file(fs, file, open_storage, &mut report.stderr).await;
    if errors.is_empty() {
        report.stdout.push_str("  SUCCESS\n");
    } else {
        report.failed = true;
        report.stderr.push_str("  FAILED:\n");
        for error in errors {
            report.stderr.push_str(&error);
            report.stderr.push('\n');
            // promtool prints a blank line on stdout after each error it writes to stderr.
            report.stdout.push('\n');
        }
    }
    report.stdout.push('\n');
    report
}

/// The failures of one file (`ruleUnitTest`); warnings go to `stderr` as they arise.
async fn test_file(
    fs: &dyn FileSystem,
    file: &str,
    open_storage: &OpenStorage<'_>,
    stderr: &mut String,
) -> Vec<String> {
    let bytes = match fs.read(Path::new(file)) {
        Ok(bytes) => bytes,
        Err(error) => return vec![format!("open {file}: {}", go_io_error(&error))],
    };
    let text = String::from_utf8_lossy(&bytes);
    let test_file = match decode(&text) {
        Ok(test_file) => test_file,
        Err(error) => return vec![error],
    };
    let rule_files = match resolve_patterns(fs, &go_dir(file), &test_file.rule_files, stderr) {
        Ok(rule_files) => rule_files,
        Err(error) => return vec![error],
    };
    let evaluation_interval_ms = match test_file.evaluation_interval_ms {
        0 => EVALUATION_INTERVAL_MS_DEFAULT,
        interval_ms => interval_ms,
    };
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, name) in test_file.group_eval_order.iter().enumerate() {
        if order.insert(name, index).is_some() {
            return vec![format!("group name repeated in evaluation order: {name}")];
        }
    }
    let mut errors = Vec::new();
    for test_group in &test_file.tests {
        let run = GroupRun { fs, evaluation_interval_ms, order: &order, rule_files: &rule_files, open_storage };
        errors.extend(run.test(test_group).await);
    }
    errors
}

/// `resolveAndGlobFilepaths`: relative patterns joined to `base_dir`, globs expanded (sorted),
/// a pattern matching nothing warned about and skipped.
fn resolve_patterns(
    fs: &dyn FileSystem,
    base_dir: &str,
    patterns: &[String],
    stderr: &mut String,
) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    for pattern in patterns {
        let pattern =
            if pattern.is_empty() || pattern.starts_with('/') { pattern.clone() } else { go_join(base_dir, pattern) };
        let matches = if !pattern.contains(['*', '?', '[', '\\']) {
            let path = Path::new(&pattern);
            // A directory counts when it lists something: an in-memory filesystem lists any path.
            let exists = !pattern.is_empty()
                && (fs.file_size(path).is_ok() || fs.list_dir(path).is_ok_and(|names| !names.is_empty()));
            if exists {
                vec![pattern.clone()]
            } else {
                Vec::new()
            }
        } else {
            let (dir, name) = match pattern.rfind('/') {
                Some(index) => (&pattern[..=index], &pattern[index + 1..]),
                None => ("", pattern.as_str()),
            };
            let dir = if dir.is_empty() { "." } else { dir };
            resolve_rule_files(fs, Path::new(dir), &[name.to_string()])
                .map_err(|error| error.to_string())?
                .iter()
                .map(|path| go_clean(&path.to_string_lossy()))
                .collect()
        };
        if matches.is_empty() {
            stderr.push_str(&format!("  WARNING: no file match pattern {pattern}\n"));
        }
        files.extend(matches);
    }
    Ok(files)
}

/// What one test group shares with the others of its file.
struct GroupRun<'a> {
    fs: &'a dyn FileSystem,
    evaluation_interval_ms: i64,
    order: &'a BTreeMap<&'a str, usize>,
    rule_files: &'a [String],
    open_storage: &'a OpenStorage<'a>,
}

/// An alert as compared: labels, then annotations, each sorted by name (empty values kept, as
/// promtool's `labels.FromMap` keeps them).
type AlertEntry = (Vec<(String, String)>, Vec<(String, String)>);

impl GroupRun<'_> {
    /// `testGroup.test`: the failures of one test group.
    async fn test(&self, test: &TestGroup) -> Vec<String> {
        let mut series = match input_samples(test) {
            Ok(series) => series,
            Err(error) => return vec![error],
        };
        let storage = match (self.open_storage)() {
            Ok(storage) => storage,
            Err(error) => return vec![error],
        };
        let options = EngineOptions {
            query_samples_max: QUERY_SAMPLES_MAX,
            query_timeout_ms: QUERY_TIMEOUT_MS,
            subquery_step_ms_default: self.evaluation_interval_ms,
            ..EngineOptions::default()
        };
        let engine = Engine::new(storage.queryable.clone(), options);
        let context = Arc::new(EvalContext {
            engine: engine.clone(),
            appendable: storage.appendable.clone(),
            queryable: storage.queryable.clone(),
            sink: Arc::new(DiscardSink),
            clock: Arc::new(EpochClock),
            external_labels: test.external_labels.clone(),
            external_url: test.external_url.clone(),
            resend_delay_ms: super::RESEND_DELAY_MS_DEFAULT,
            outage_tolerance_ms: super::OUTAGE_TOLERANCE_MS_DEFAULT,
            for_grace_period_ms: super::FOR_GRACE_PERIOD_MS_DEFAULT,
        });
        let groups = match self.load_groups(test, &context) {
            Ok(groups) => groups,
            Err(errors) => return errors,
        };

        let mut alert_tests: BTreeMap<i64, Vec<&AlertTestCase>> = BTreeMap::new();
        for alert_test in &test.alert_rule_tests {
            if alert_test.alertname.is_empty() {
                let in_group = match test.name.is_empty() {
                    true => String::new(),
                    false => format!(" (in TestGroup {})", test.name),
                };
                return vec![format!(
                    "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                    format_duration_ms(alert_test.eval_time_ms)
                )];
            }
            alert_tests.entry(alert_test.eval_time_ms).or_default().push(alert_test);
        }
        let alert_times: Vec<i64> = alert_tests.keys().copied().collect();
        let max_time_ms = test
            .alert_rule_tests
            .iter()
            .map(|alert_test| alert_test.eval_time_ms)
            .chain(test.promql_expr_tests.iter().map(|expr_test| expr_test.eval_time_ms))
            .max()
            .unwrap_or(0)
            .max(0);
        let interval_ms = self.evaluation_interval_ms;
        let step_count = max_time_ms / interval_ms + 1;
        if step_count > UNIT_TEST_EVALUATION_STEP_COUNT_MAX {
            return vec![format!(
                "{step_count} evaluation steps up to eval_time {} exceed the limit of {UNIT_TEST_EVALUATION_STEP_COUNT_MAX} (UNIT_TEST_EVALUATION_STEP_COUNT_MAX)",
                format_duration_ms(max_time_ms)
            )];
        }

        let mut errors = Vec::new();
        let mut next_alert_index = 0;
        for step_index in 0..step_count {
            let time_ms = step_index * interval_ms;
            let mut eval_errors = Vec::new();
            match append_till(&storage, &mut series, time_ms).await {
                Err(error) => errors.push(error),
                Ok(()) => {
                    for group in &groups {
                        group.eval_at(time_ms).await;
                        for rule in group.snapshot().rules {
                            if let Some(error) = rule.last_error {
                                eval_errors.push(format!(
                                    "    rule: {}, time: {}, err: {error}",
                                    rule.spec.name,
                                    go_duration(time_ms)
                                ));
                            }
                        }
                    }
                }
            }
            let eval_failed = !eval_errors.is_empty();
            errors.extend(eval_errors);
            if eval_failed {
                return errors;
            }
            while let Some(&alert_time_ms) = alert_times.get(next_alert_index) {
                if !(time_ms <= alert_time_ms && alert_time_ms < time_ms + interval_ms) {
                    break;
                }
                let cases = &alert_tests[&alert_time_ms];
                let got = firing_alerts(&groups, cases);
                for case in cases {
                    errors.extend(check_alerts(test, case, got.get(case.alertname.as_str())));
                }
                next_alert_index += 1;
            }
        }

        for expr_test in &test.promql_expr_tests {
            errors.extend(check_expression(&engine, expr_test));
        }
        errors
    }

    /// The rule groups of every rule file, in `group_eval_order` (`orderedGroups`).
    fn load_groups(&self, test: &TestGroup, context: &Arc<EvalContext>) -> Result<Vec<Group>, Vec<String>> {
        let mut groups = Vec::new();
        for file in self.rule_files {
            let rule_file = load_rule_file(self.fs, Path::new(file))
                .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
            for spec in rule_file.groups {
                // Only alert `endsAt` times depend on the interval, and nothing reads them here.
                let interval_ms = spec
                    .interval_ms
                    .or(Some(test.interval_ms))
                    .filter(|interval_ms| *interval_ms > 0)
                    .unwrap_or(self.evaluation_interval_ms);
                let query_offset_ms = spec.query_offset_ms.unwrap_or(0);
                groups.push(Group::new(spec, interval_ms, query_offset_ms, context.clone(), true));
            }
        }
        // Upstream sorts a map's values, unlisted groups tied with the first listed one; a
        // stable sort over file order gives one of the orders it may produce, always the same.
        groups.sort_by_key(|group| self.order.get(group.spec().name.as_str()).copied().unwrap_or(0));
        Ok(groups)
    }
}

/// Input samples by series, in time order; a later definition of the same series replaces an
/// earlier one (promql/test.go `loadCmd.set`).
type InputSamples = BTreeMap<Labels, std::collections::VecDeque<(i64, f64)>>;

/// `seriesLoadingString` and the lazy loader's parse: sample `k` of a series is at `k *
/// interval`; `_` leaves a step empty. With no `interval`, every sample falls on 0 and the
/// first one wins (the store drops the rest as out of order).
fn input_samples(test: &TestGroup) -> Result<InputSamples, String> {
    let mut series = InputSamples::new();
    for input in &test.input_series {
        let labels = parse_series_labels(&input.series).map_err(|error| format!("parse error: {error}"))?;
        let tokens: Vec<&str> = input.values.split_whitespace().collect();
        let values = expand_values(&tokens)
            .ok_or_else(|| format!("parse error: cannot parse series values {}", quote(&input.values)))?;
        let mut samples = std::collections::VecDeque::new();
        for (index, value) in values.into_iter().enumerate() {
            let Some(value) = value else { continue };
            let time_ms = (index as i64).saturating_mul(test.interval_ms);
            if samples.back().is_some_and(|(last_ms, _)| *last_ms >= time_ms) {
                continue;
            }
            samples.push_back((time_ms, value));
        }
        series.insert(labels, samples);
    }
    Ok(series)
}

/// Appends and commits the input samples at or before `time_ms` (`LazyLoader.appendTill`).
async fn append_till(storage: &TestStorage, series: &mut InputSamples, time_ms: i64) -> Result<(), String> {
    let mut appender = storage.appendable.appender();
    for (labels, samples) in series.iter_mut() {
        let mut series_ref = None;
        while let Some(&(sample_ms, value)) = samples.front() {
            if sample_ms > time_ms {
                break;
            }
            samples.pop_front();
            match appender.append(series_ref, labels, sample_ms, value) {
                Ok(reference) => series_ref = Some(reference),
                Err(error) => {
                    appender.rollback();
                    return Err(error.to_string());
                }
            }
        }
    }
    appender.commit().await.map(|_| ()).map_err(|error| error.to_string())
}

/// The firing alerts of every alerting rule named in `cases`, by name, over all groups.
fn firing_alerts<'a>(groups: &[Group], cases: &[&'a AlertTestCase]) -> BTreeMap<&'a str, Vec<AlertEntry>> {
    let mut got: BTreeMap<&str, Vec<AlertEntry>> = BTreeMap::new();
    for group in groups {
        for rule in group.snapshot().rules {
            if rule.spec.kind != RuleKind::Alerting {
                continue;
            }
            let Some(case) = cases.iter().find(|case| case.alertname == rule.spec.name) else { continue };
            let entries = got.entry(case.alertname.as_str()).or_default();
            for alert in rule.alerts.iter().filter(|alert| alert.state == AlertState::Firing) {
                let labels = alert.labels.iter().map(|label| (label.name.clone(), label.value.clone())).collect();
                // Upstream keeps an annotation that renders empty; `Labels` drops it.
                let annotations = rule
                    .spec
                    .annotations
                    .keys()
                    .map(|name| (name.clone(), alert.annotations.get(name).unwrap_or("").to_string()))
                    .collect();
                entries.push((labels, annotations));
            }
        }
    }
    got
}

/// One `alert_rule_test` case against the firing alerts of its name.
fn check_alerts(test: &TestGroup, case: &AlertTestCase, got: Option<&Vec<AlertEntry>>) -> Option<String> {
    let mut got: Vec<AlertEntry> = got.cloned().unwrap_or_default();
    let mut expected: Vec<AlertEntry> = case
        .exp_alerts
        .iter()
        .map(|alert| {
            let mut labels = alert.exp_labels.clone();
            labels.insert("alertname".to_string(), case.alertname.clone());
            (labels.into_iter().collect(), alert.exp_annotations.clone().into_iter().collect())
        })
        .collect();
    got.sort();
    expected.sort();
    if got == expected {
        return None;
    }
    let name = match test.name.is_empty() {
        true => String::new(),
        false => format!("    name: {},\n", test.name),
    };
    let indent = "            ";
    Some(format!(
        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
        case.alertname,
        format_duration_ms(case.eval_time_ms),
        indent_lines(&alerts_string(&expected), indent),
        indent_lines(&alerts_string(&got), indent)
    ))
}

/// `labelsAndAnnotations.String`.
fn alerts_string(alerts: &[AlertEntry]) -> String {
    if alerts.is_empty() {
        return "[]".to_string();
    }
    let mut out = "[\n".to_string();
    for (index, (labels, annotations)) in alerts.iter().enumerate() {
        if index > 0 {
            out.push_str(",\n");
        }
        let entry = format!("\nLabels:{}\nAnnotations:{}", go_labels(labels), go_labels(annotations));
        out.push_str(&format!("{index}:{}", indent_lines(&entry, "  ")));
    }
    out.push_str("\n]");
    out
}

/// One `promql_expr_test` case: the expression at `eval_time` against `exp_samples`.
fn check_expression(engine: &Engine, case: &PromqlTestCase) -> Option<String> {
    let expr = quote(&case.expr);
    let time = format_duration_ms(case.eval_time_ms);
    let got = match query_vector(engine, &case.expr, case.eval_time_ms) {
        Ok(samples) => samples,
        Err(error) => return Some(format!("    expr: {expr}, time: {time}, err: {error}")),
    };
    let mut got: Vec<(Vec<(String, String)>, f64)> = got
        .into_iter()
        .map(|sample| (sample.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(), sample.value))
        .collect();
    let mut expected = Vec::with_capacity(case.exp_samples.len());
    for sample in &case.exp_samples {
        let labels = match sample.labels.trim() {
            "" => Labels::empty(),
            text => match parse_series_labels(text) {
                Ok(labels) => labels,
                Err(error) => {
                    return Some(format!(
                        "    expr: {expr}, time: {time}, err: labels {}: parse error: {error}",
                        quote(&sample.labels)
                    ))
                }
            },
        };
        expected.push((labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect::<Vec<_>>(), sample.value));
    }
    // Upstream sorts with `Compare <= 0`, which puts equal labels in reverse order (Go's
    // insertion sort for short slices): a stable sort of the reversed list does the same.
    expected.reverse();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // `reflect.DeepEqual` on floats is `==`: NaN never matches, 0 matches -0.
    let equal = got.len() == expected.len()
        && got.iter().zip(&expected).all(|(got, expected)| got.0 == expected.0 && got.1 == expected.1);
    if equal {
        return None;
    }
    Some(format!(
        "    expr: {expr}, time: {time},\n        exp: {}\n        got: {}",
        samples_string(&expected),
        samples_string(&got)
    ))
}

/// `parsedSamplesString`: `LABELS VALUE, ...` with values as `%E`, `nil` when empty.
fn samples_string(samples: &[(Vec<(String, String)>, f64)]) -> String {
    if samples.is_empty() {
        return "nil".to_string();
    }
    let parts: Vec<String> = samples
        .iter()
        .map(|(labels, value)| format!("{} {}", go_labels(labels), format_float(*value, 'E', None)))
        .collect();
    parts.join(", ")
}

/// Go's `labels.Labels.String()`: `{a="b", c="d"}` in name order, `__name__` included.
fn go_labels(labels: &[(String, String)]) -> String {
    let parts: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={}", quote(value))).collect();
    format!("{{{}}}", parts.join(", "))
}

/// promtool's `indentLines`: `indent` before every line but the first.
fn indent_lines(lines: &str, indent: &str) -> String {
    lines.split('\n').collect::<Vec<_>>().join(&format!("\n{indent}"))
}

/// Go's `time.Duration.String()` of whole milliseconds: `0s`, `500ms`, `1m0s`, `1h2m3.5s`.
pub fn go_duration(duration_ms: i64) -> String {
    if duration_ms == 0 {
        return "0s".to_string();
    }
    let sign = if duration_ms < 0 { "-" } else { "" };
    let total_ms = duration_ms.unsigned_abs();
    if total_ms < 1000 {
        return format!("{sign}{total_ms}ms");
    }
    let (hours, minutes, seconds, fraction_ms) =
        (total_ms / 3_600_000, total_ms / 60_000 % 60, total_ms / 1000 % 60, total_ms % 1000);
    let seconds = match fraction_ms {
        0 => format!("{seconds}s"),
        _ => format!("{seconds}.{}s", format!("{fraction_ms:03}").trim_end_matches('0')),
    };
    match (hours, minutes) {
        (0, 0) => format!("{sign}{seconds}"),
        (0, _) => format!("{sign}{minutes}m{seconds}"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}"),
    }
}

/// Go's error text for a failed open (`syscall.Errno` strings).
fn go_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory".to_string(),
        _ => error.to_string(),
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            part => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Join(dir, name)`.
fn go_join(dir: &str, name: &str) -> String {
    match dir.is_empty() {
        true => go_clean(name),
        false => go_clean(&format!("{dir}/{name}")),
    }
}

/// Go's `filepath.Dir`.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        Some(index) => go_clean(&path[..=index]),
        None => ".".to_string(),
    }
}

/// Wall time of the test engine: nothing it prints depends on it.
struct EpochClock;

impl Clock for EpochClock {
    fn now_ms(&self) -> i64 {
        0
    }
}

/// promtool's `NotifyFunc`: alerts go nowhere.
struct DiscardSink;

impl AlertSink for DiscardSink {
    fn send(&self, _alerts: Vec<Alert>) {}
}

// ---- The file, decoded as yaml.v2's UnmarshalStrict decodes promtool's structs.

/// `unitTestFile`.
#[derive(Debug, Default)]
struct UnitTestFile {
    rule_files: Vec<String>,
    evaluation_interval_ms: i64,
    group_eval_order: Vec<String>,
    tests: Vec<TestGroup>,
}

/// `testGroup`.
#[derive(Debug, Default)]
struct TestGroup {
    interval_ms: i64,
    input_series: Vec<InputSeries>,
    alert_rule_tests: Vec<AlertTestCase>,
    promql_expr_tests: Vec<PromqlTestCase>,
    external_labels: BTreeMap<String, String>,
    external_url: String,
    name: String,
}

/// `series`.
#[derive(Debug, Default)]
struct InputSeries {
    series: String,
    values: String,
}

/// `alertTestCase`.
#[derive(Debug, Default)]
struct AlertTestCase {
    eval_time_ms: i64,
    alertname: String,
    exp_alerts: Vec<ExpectedAlert>,
}

/// `alert`.
#[derive(Debug, Default)]
struct ExpectedAlert {
    exp_labels: BTreeMap<String, String>,
    exp_annotations: BTreeMap<String, String>,
}

/// `promqlTestCase`.
#[derive(Debug, Default)]
struct PromqlTestCase {
    expr: String,
    eval_time_ms: i64,
    exp_samples: Vec<ExpectedSample>,
}

/// `sample`.
#[derive(Debug, Default)]
struct ExpectedSample {
    labels: String,
    value: f64,
}

/// Decodes a unit test file; the error is promtool's message.
fn decode(text: &str) -> Result<UnitTestFile, String> {
    // yaml.v2's `Unmarshal` reads the first document and ignores the rest.
    let value = match serde_yaml_ng::Deserializer::from_str(text).next() {
        None => Node::Null,
        Some(document) => Node::deserialize(document).map_err(|error| syntax_error(&error))?,
    };
    let mut decoder = Decoder { lines: text.split('\n').collect(), line_index: 0, column: 0, type_errors: Vec::new() };
    let mut file = UnitTestFile::default();
    decoder.structure(&value, 1, "unitTestFile", |decoder, key, value, line| {
        match key {
            "rule_files" => file.rule_files = decoder.strings(value, line),
            "evaluation_interval" => file.evaluation_interval_ms = decoder.duration(value, line)?,
            "group_eval_order" => file.group_eval_order = decoder.strings(value, line),
            "tests" => file.tests = decoder.sequence(value, line, "testGroup", Decoder::test_group)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if decoder.type_errors.is_empty() {
        Ok(file)
    } else {
        Err(format!("yaml: unmarshal errors:\n  {}", decoder.type_errors.join("\n  ")))
    }
}

/// yaml.v2's `yaml: line N: PROBLEM` for text libyaml refuses. yaml.v2 numbers scanner errors
/// from 1 and parser errors from 0, so a parser error names the line before the problem, and
/// a problem on the first line has no line at all.
fn syntax_error(error: &serde_yaml_ng::Error) -> String {
    let message = error.to_string();
    let problem = message.split(" at line ").next().unwrap_or(&message);
    let problem = problem.split(", while ").next().unwrap_or(problem);
    let zero_based_line = error.location().map_or(0, |location| location.line().saturating_sub(1));
    if zero_based_line == 0 {
        return format!("yaml: {problem}");
    }
    let scanner_error = problem.starts_with("found ")
        || problem.starts_with("mapping values are not allowed")
        || problem.starts_with("could not find expected ':'")
        || problem.starts_with("did not find expected comment or line break")
        || problem.starts_with("did not find expected alphabetic or numeric character")
        || problem.starts_with("did not find expected hexdecimal number");
    let line = if scanner_error { zero_based_line + 1 } else { zero_based_line };
    format!("yaml: line {line}: {problem}")
}

/// Walks a YAML value as yaml.v2 decodes into Go structs, collecting its type errors.
struct Decoder<'t> {
    lines: Vec<&'t str>,
    /// Where the next key is looked for: 0-based line and byte column.
    line_index: usize,
    column: usize,
    /// yaml.v2's `TypeError` lines (`line N: ...`), in document order.
    type_errors: Vec<String>,
}

impl Decoder<'_> {
    /// A mapping decoded into the struct `type_name`: `field` is called for each key in order
    /// with the line of its value and returns whether the key is one of the struct's fields.
    fn structure(
        &mut self,
        value: &Node,
        line: usize,
        type_name: &str,
        mut field: impl FnMut(&mut Self, &str, &Node, usize) -> Result<bool, String>,
    ) -> Result<(), String> {
        match value {
            Node::Null => Ok(()),
            Node::Mapping(mapping) => {
                let mut fields_seen: Vec<String> = Vec::new();
                for (key, value) in mapping {
                    let Some(key) = scalar_text(key) else { continue };
                    let (key_line, value_line) = self.locate_key(&key, value);
                    if fields_seen.contains(&key) {
                        self.type_errors
                            .push(format!("line {key_line}: field {key} already set in type main.{type_name}"));
                    } else if field(self, &key, value, value_line)? {
                        fields_seen.push(key);
                    } else {
                        self.type_errors
                            .push(format!("line {key_line}: field {key} not found in type main.{type_name}"));
                    }
                }
                Ok(())
            }
            other => {
                self.type_error(other, line, &format!("main.{type_name}"));
                Ok(())
            }
        }
    }

    fn test_group(&mut self, value: &Node, line: usize) -> Result<TestGroup, String> {
        let mut group = TestGroup::default();
        self.structure(value, line, "testGroup", |decoder, key, value, line| {
            match key {
                "interval" => group.interval_ms = decoder.duration(value, line)?,
                "input_series" => {
                    group.input_series = decoder.sequence(value, line, "series", Decoder::input_series)?
                }
                "alert_rule_test" => {
                    group.alert_rule_tests = decoder.sequence(value, line, "alertTestCase", Decoder::alert_test)?
                }
                "promql_expr_test" => {
                    group.promql_expr_tests = decoder.sequence(value, line, "promqlTestCase", Decoder::expr_test)?
                }
                "external_labels" => group.external_labels = decoder.string_map(value, line),
                "external_url" => group.external_url = decoder.string(value, line),
                "name" => group.name = decoder.string(value, line),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(group)
    }

    fn input_series(&mut self, value: &Node, line: usize) -> Result<InputSeries, String> {
        let mut series = InputSeries::default();
        self.structure(value, line, "series", |decoder, key, value, line| {
            match key {
                "series" => series.series = decoder.string(value, line),
                "values" => series.values = decoder.string(value, line),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(series)
    }

    fn alert_test(&mut self, value: &Node, line: usize) -> Result<AlertTestCase, String> {
        let mut case = AlertTestCase::default();
        self.structure(value, line, "alertTestCase", |decoder, key, value, line| {
            match key {
                "eval_time" => case.eval_time_ms = decoder.duration(value, line)?,
                "alertname" => case.alertname = decoder.string(value, line),
                "exp_alerts" => case.exp_alerts = decoder.sequence(value, line, "alert", Decoder::expected_alert)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(case)
    }

    fn expected_alert(&mut self, value: &Node, line: usize) -> Result<ExpectedAlert, String> {
        let mut alert = ExpectedAlert::default();
        self.structure(value, line, "alert", |decoder, key, value, line| {
            match key {
                "exp_labels" => alert.exp_labels = decoder.string_map(value, line),
                "exp_annotations" => alert.exp_annotations = decoder.string_map(value, line),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(alert)
    }

    fn expr_test(&mut self, value: &Node, line: usize) -> Result<PromqlTestCase, String> {
        let mut case = PromqlTestCase::default();
        self.structure(value, line, "promqlTestCase", |decoder, key, value, line| {
            match key {
                "expr" => case.expr = decoder.string(value, line),
                "eval_time" => case.eval_time_ms = decoder.duration(value, line)?,
                "exp_samples" => {
                    case.exp_samples = decoder.sequence(value, line, "sample", Decoder::expected_sample)?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(case)
    }

    fn expected_sample(&mut self, value: &Node, line: usize) -> Result<ExpectedSample, String> {
        let mut sample = ExpectedSample::default();
        self.structure(value, line, "sample", |decoder, key, value, line| {
            match key {
                "labels" => sample.labels = decoder.string(value, line),
                "value" => sample.value = decoder.float(value, line),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(sample)
    }

    /// A sequence of `type_name` structs.
    fn sequence<T>(
        &mut self,
        value: &Node,
        line: usize,
        type_name: &str,
        mut item: impl FnMut(&mut Self, &Node, usize) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        match value {
            Node::Null => Ok(Vec::new()),
            Node::Sequence(values) => {
                let mut items = Vec::with_capacity(values.len());
                for value in values {
                    let line = self.line_index + 1;
                    items.push(item(self, value, line)?);
                }
                Ok(items)
            }
            other => {
                self.type_error(other, line, &format!("[]main.{type_name}"));
                Ok(Vec::new())
            }
        }
    }

    /// A Go `string`: any scalar, as written; null is empty.
    fn string(&mut self, value: &Node, line: usize) -> String {
        match scalar_text(value) {
            Some(text) => text,
            None => {
                self.type_error(value, line, "string");
                String::new()
            }
        }
    }

    /// A Go `[]string`.
    fn strings(&mut self, value: &Node, line: usize) -> Vec<String> {
        match value {
            Node::Null => Vec::new(),
            Node::Sequence(values) => values.iter().map(|value| self.string(value, line)).collect(),
            other => {
                self.type_error(other, line, "[]string");
                Vec::new()
            }
        }
    }

    /// A Go `map[string]string` (also `labels.Labels`, which decodes through one).
    fn string_map(&mut self, value: &Node, line: usize) -> BTreeMap<String, String> {
        match value {
            Node::Null => BTreeMap::new(),
            Node::Mapping(mapping) => {
                let mut map = BTreeMap::new();
                for (key, value) in mapping {
                    let key = self.string(key, line);
                    let (_, value_line) = self.locate_key(&key, value);
                    let value = self.string(value, value_line);
                    if map.contains_key(&key) {
                        self.type_errors.push(format!("line {value_line}: key {} already set in map", quote(&key)));
                        continue;
                    }
                    map.insert(key, value);
                }
                map
            }
            other => {
                self.type_error(other, line, "map[string]string");
                BTreeMap::new()
            }
        }
    }

    /// A Go `float64`: numbers only (`.inf`, `.nan` included); null is 0.
    fn float(&mut self, value: &Node, line: usize) -> f64 {
        match value {
            Node::Null => 0.0,
            Node::Int(text) => text.parse().unwrap_or(0.0),
            Node::Float(value) => *value,
            other => {
                self.type_error(other, line, "float64");
                0.0
            }
        }
    }

    /// A `model.Duration`: decoded as a string, then parsed; a bad one aborts decoding.
    fn duration(&mut self, value: &Node, line: usize) -> Result<i64, String> {
        if matches!(value, Node::Null) {
            return Ok(0);
        }
        let Some(text) = scalar_text(value) else {
            self.type_error(value, line, "string");
            return Ok(0);
        };
        parse_go_duration(&text)
    }

    /// yaml.v2's `terror`: `line N: cannot unmarshal !!TAG `VALUE` into TYPE`.
    fn type_error(&mut self, value: &Node, line: usize, type_name: &str) {
        let (tag, text) = match value {
            Node::Null => ("!!null", Some(String::new())),
            Node::Bool(_) => ("!!bool", scalar_text(value)),
            Node::Float(_) => ("!!float", scalar_text(value)),
            Node::Int(_) => ("!!int", scalar_text(value)),
            Node::String(_) => ("!!str", scalar_text(value)),
            Node::Sequence(_) => ("!!seq", None),
            Node::Mapping(_) => ("!!map", None),
        };
        let shown = match text {
            None => String::new(),
            Some(text) if text.len() > 10 => {
                let cut = (0..=7).rev().find(|&index| text.is_char_boundary(index)).unwrap_or(0);
                format!(" `{}...`", &text[..cut])
            }
            Some(text) => format!(" `{text}`"),
        };
        self.type_errors.push(format!("line {line}: cannot unmarshal {tag}{shown} into {type_name}"));
    }

    /// Finds `key` as a mapping key at or after the cursor and moves the cursor past its colon.
    /// Returns the key's 1-based line and its value's: the next content line for a block
    /// collection written under the key, else the key's line.
    fn locate_key(&mut self, key: &str, value: &Node) -> (usize, usize) {
        for line_index in self.line_index..self.lines.len() {
            let line = self.lines[line_index];
            let start = if line_index == self.line_index { self.column.min(line.len()) } else { 0 };
            if line.trim_start().starts_with('#') {
                continue;
            }
            let Some(after_colon) = find_key(line, start, key) else { continue };
            self.line_index = line_index;
            self.column = after_colon;
            let rest = line[after_colon..].trim();
            let block =
                matches!(value, Node::Sequence(_) | Node::Mapping(_)) && (rest.is_empty() || rest.starts_with('#'));
            let value_line = match block {
                true => (line_index + 1..self.lines.len())
                    .find(|&index| {
                        let trimmed = self.lines[index].trim();
                        !trimmed.is_empty() && !trimmed.starts_with('#')
                    })
                    .map_or(line_index + 1, |index| index + 1),
                false => line_index + 1,
            };
            return (line_index + 1, value_line);
        }
        (self.line_index + 1, self.line_index + 1)
    }
}

/// The byte offset after the colon of `key` written as a mapping key (plain or quoted) in
/// `line` at or after `start`.
fn find_key(line: &str, start: usize, key: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    for quote in ["", "\"", "'"] {
        let needle = format!("{quote}{key}{quote}");
        let mut from = start;
        while let Some(offset) = line.get(from..).and_then(|rest| rest.find(&needle)) {
            let position = from + offset;
            from = position + 1;
            let boundary_before =
                position == 0 || matches!(bytes[position - 1], b' ' | b'\t' | b'-' | b'{' | b',' | b'?');
            let mut end = position + needle.len();
            while end < bytes.len() && (bytes[end] == b' ' || bytes[end] == b'\t') {
                end += 1;
            }
            if boundary_before && end < bytes.len() && bytes[end] == b':' {
                return Some(end + 1);
            }
        }
    }
    None
}

/// A YAML node as yaml.v2 sees it: mappings keep repeated keys (strict decoding reports them),
/// tags are dropped.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool(bool),
    /// An integer, as its decimal text.
    Int(String),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a YAML node")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Int(value.to_string()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Int(value.to_string()))
    }

    fn visit_i128<E>(self, value: i128) -> Result<Node, E> {
        Ok(Node::Int(value.to_string()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Node, E> {
        Ok(Node::Int(value.to_string()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node, E> {
        Ok(Node::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node, E> {
        Ok(Node::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Node, E> {
        Ok(Node::String(value))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Node, A::Error> {
        let mut nodes = Vec::new();
        while let Some(node) = sequence.next_element()? {
            nodes.push(node);
        }
        Ok(Node::Sequence(nodes))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Mapping(entries))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Node, A::Error> {
        // `!tag value`: the value, as yaml.v2 decodes a tagged node into a plain field.
        let (_tag, variant): (String, _) = data.variant()?;
        variant.newtype_variant()
    }
}

/// A scalar's text as yaml.v2 hands it to a string field; `None` for collections.
fn scalar_text(value: &Node) -> Option<String> {
    match value {
        Node::Null => Some(String::new()),
        Node::Bool(value) => Some(value.to_string()),
        Node::Int(text) | Node::String(text) => Some(text.clone()),
        Node::Float(value) => Some(crate::template::float_to_string(*value)),
        Node::Sequence(_) | Node::Mapping(_) => None,
    }
}

/// `model.ParseDuration` with its error texts.
fn parse_go_duration(text: &str) -> Result<i64, String> {
    if text.is_empty() {
        return Err("empty duration string".to_string());
    }
    parse_duration_ms(text).map_err(|_| format!("not a valid duration string: {}", quote(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{MemFileSystem, TokioSpawner};
    use crate::tsdb::{Db, DbOptions};

    fn put(fs: &MemFileSystem, path: &str, text: &str) {
        fs.open_append(Path::new(path)).unwrap().write_all(text.as_bytes()).unwrap();
    }

    async fn run(fs: &MemFileSystem, file: &str) -> Report {
        let open_storage = || -> Result<TestStorage, String> {
            let options = DbOptions { background_compaction: false, ..DbOptions::default() };
            let db = Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), options)
                .map_err(|error| error.to_string())?;
            Ok(TestStorage { appendable: Arc::new(db.clone()), queryable: Arc::new(db) })
        };
        run_file(fs, file, &open_storage).await
    }

    const RULES: &str = "groups:\n  - name: g\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: Down\n        expr: up == 0\n        for: 1m\n        annotations:\n          summary: '{{ $labels.instance }} is {{ $value }}'\n";

    #[tokio::test(start_paused = true)]
    async fn a_file_runs_as_promtool_runs_it() {
        let fs = MemFileSystem::default();
        put(&fs, "/t/rules/r.yml", RULES);
        let series = "    input_series:\n      - series: 'up{job=\"a\", instance=\"x\"}'\n        values: '1 0 0 0'\n";
        put(
            &fs,
            "/t/pass.yml",
            &format!(
                "rule_files: [rules/*.yml]\ntests:\n  - interval: 1m\n{series}    alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n      - eval_time: 2m30s\n        alertname: Down\n        exp_alerts:\n          - exp_labels: {{job: a, instance: x}}\n            exp_annotations: {{summary: x is 0}}\n    promql_expr_test:\n      - expr: job:up:sum\n        eval_time: 3m\n        exp_samples:\n          - labels: 'job:up:sum{{job=\"a\"}}'\n            value: 0\n"
            ),
        );
        let report = run(&fs, "/t/pass.yml").await;
        assert_eq!(
            report,
            Report { stdout: "Unit Testing:  /t/pass.yml\n  SUCCESS\n\n".to_string(), ..Report::default() }
        );

        put(
            &fs,
            "/t/fail.yml",
            &format!(
                "rule_files: [rules/r.yml, rules/none.yml]\ntests:\n  - interval: 1m\n    name: n\n{series}    alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n        exp_alerts: [{{exp_labels: {{instance: x}}}}]\n    promql_expr_test:\n      - expr: up\n        eval_time: 0s\n"
            ),
        );
        let report = run(&fs, "/t/fail.yml").await;
        assert!(report.failed, "{report:?}");
        assert_eq!(report.stdout, "Unit Testing:  /t/fail.yml\n\n\n\n", "{}", report.stderr);
        assert_eq!(
            report.stderr,
            "  WARNING: no file match pattern /t/rules/none.yml\n  FAILED:\n    name: n,\n    alertname: Down, time: 1m, \n        exp:[\n            0:\n              Labels:{alertname=\"Down\", instance=\"x\"}\n              Annotations:{}\n            ], \n        got:[]\n    expr: \"up\", time: 0s,\n        exp: nil\n        got: {__name__=\"up\", instance=\"x\", job=\"a\"} 1E+00\n"
        );
    }

    #[test]
    fn go_paths() {
        #[track_caller]
        fn check(got: String, expected: &str) {
            assert_eq!(got, expected);
        }
        check(go_clean(""), ".");
        check(go_clean("./a//b/../c/"), "a/c");
        check(go_clean("/../a"), "/a");
        check(go_clean("../a/.."), "..");
        check(go_join(".", "rules.yml"), "rules.yml");
        check(go_join("tests/data", "../r/*.yml"), "tests/r/*.yml");
        check(go_dir("t.yml"), ".");
        check(go_dir("a/b/t.yml"), "a/b");
        check(go_dir("/t.yml"), "/");
    }

    #[test]
    fn go_durations() {
        for (duration_ms, expected) in
            [(0, "0s"), (500, "500ms"), (60_000, "1m0s"), (90_500, "1m30.5s"), (7_200_000, "2h0m0s"), (3_000, "3s")]
        {
            assert_eq!(go_duration(duration_ms), expected, "{duration_ms}");
        }
    }

    #[track_caller]
    fn check_decode_error(text: &str, expected: &str) {
        match decode(text) {
            Ok(file) => panic!("{text:?} decoded: {file:?}"),
            Err(error) => assert_eq!(error, expected, "{text:?}"),
        }
    }

    #[test]
    fn decoding_reports_as_yaml_v2() {
        check_decode_error(
            "rule_files:\n  - a.yml\nbogus: 1\ntests:\n  - interval: 1m\n    foo: 2\n    input_series:\n      - series: up\n        bar: 1\n",
            "yaml: unmarshal errors:\n  line 3: field bogus not found in type main.unitTestFile\n  line 6: field foo not found in type main.testGroup\n  line 9: field bar not found in type main.series",
        );
        check_decode_error(
            "tests:\n  - alert_rule_test:\n      - exp_alerts:\n          - {exp_labels: {a: b}, foo: 1}\n        x: 1\n",
            "yaml: unmarshal errors:\n  line 4: field foo not found in type main.alert\n  line 5: field x not found in type main.alertTestCase",
        );
        check_decode_error("evaluation_interval: abc\n", "not a valid duration string: \"abc\"");
        check_decode_error("evaluation_interval: 5\n", "not a valid duration string: \"5\"");
        check_decode_error("tests:\n  - interval: \"\"\n", "empty duration string");
        check_decode_error(
            "rule_files: x\n",
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `x` into []string",
        );
        check_decode_error(
            "tests:\n  - promql_expr_test:\n      - exp_samples:\n          - value: \"2\"\n            labels: [1]\n",
            "yaml: unmarshal errors:\n  line 4: cannot unmarshal !!str `2` into float64\n  line 5: cannot unmarshal !!seq into string",
        );
        check_decode_error(
            "tests:\n  - input_series:\n      - series: up\n        values:\n          - 1\n",
            "yaml: unmarshal errors:\n  line 5: cannot unmarshal !!seq into string",
        );
    }

    #[test]
    fn decoding_takes_scalars_as_strings() {
        let file = decode(
            "evaluation_interval: 30s\ntests:\n  - interval: 1m\n    external_labels:\n      code: 500\n      ok: true\n    input_series:\n      - series: up\n        values: 1\n    promql_expr_test:\n      - expr: up\n        eval_time: 90s\n        exp_samples:\n          - value: .inf\n",
        )
        .unwrap();
        assert_eq!(file.evaluation_interval_ms, 30_000);
        let test = &file.tests[0];
        assert_eq!(test.external_labels.get("code").map(String::as_str), Some("500"));
        assert_eq!(test.external_labels.get("ok").map(String::as_str), Some("true"));
        assert_eq!(test.input_series[0].values, "1");
        assert_eq!(test.promql_expr_tests[0].eval_time_ms, 90_000);
        assert_eq!(test.promql_expr_tests[0].exp_samples[0].value, f64::INFINITY);
    }

    #[test]
    fn failure_texts() {
        let alerts = vec![
            (vec![("alertname".to_string(), "A".to_string())], vec![("summary".to_string(), "x".to_string())]),
            (vec![("alertname".to_string(), "B".to_string())], vec![]),
        ];
        assert_eq!(
            indent_lines(&alerts_string(&alerts), "            "),
            "[\n            0:\n              Labels:{alertname=\"A\"}\n              Annotations:{summary=\"x\"},\n            1:\n              Labels:{alertname=\"B\"}\n              Annotations:{}\n            ]"
        );
        assert_eq!(alerts_string(&[]), "[]");
        let samples = vec![(vec![("__name__".to_string(), "x".to_string())], 2.0), (vec![], -0.5)];
        assert_eq!(samples_string(&samples), "{__name__=\"x\"} 2E+00, {} -5E-01");
        assert_eq!(samples_string(&[]), "nil");
    }
}
