//! The push store: metric groups keyed by their grouping labels (job plus path labels), with
//! the Pushgateway's write semantics (storage/diskmetricstore.go `processWriteRequest`,
//! `checkWriteRequest`, `setPushFailedTimestamp`, `sanitizeLabels`) and its exposition
//! (`GetMetricFamilies` gathered by client_golang: families by name, metrics by label values).
//!
//! Invariants: every metric's labels hold its group's grouping labels (the group's values win
//! over pushed ones) and an `instance` label (empty when the push had none), sorted by name;
//! the whole store passes [`check`]: one type per family name across groups, no series twice, no
//! histogram or summary whose `_sum`, `_count` or `_bucket` names another family; at most
//! [`PUSH_GROUP_COUNT_MAX`] groups and [`PUSH_SAMPLE_COUNT_TOTAL_MAX`] samples. Iteration is over
//! `BTreeMap`s only, so the exposition and the persisted bytes are deterministic.
//!
//! Concurrency: a plain value; the gateway guards it with one mutex.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::limits::{PUSH_GROUP_COUNT_MAX, PUSH_SAMPLE_COUNT_PER_PUSH_MAX, PUSH_SAMPLE_COUNT_TOTAL_MAX};
use crate::scrape::parse::{unescape_help, Entry, MetricType, ParseError, TextParser};

/// Label pairs sorted by name, names distinct; values may be empty (the Pushgateway serves
/// `instance=""` and empty grouping values as they are).
pub type LabelPairs = Vec<(String, String)>;

/// The gateway's own gauge: last successful change of a group, Unix seconds.
pub const PUSH_TIME_METRIC_NAME: &str = "push_time_seconds";
/// The gateway's own gauge: last failed change of a group, Unix seconds.
pub const PUSH_FAILURE_TIME_METRIC_NAME: &str = "push_failure_time_seconds";
const PUSH_TIME_HELP: &str = "Last Unix time when changing this group in the Pushgateway succeeded.";
const PUSH_FAILURE_TIME_HELP: &str = "Last Unix time when changing this group in the Pushgateway failed.";

/// What one metric holds, by its family's type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Counter, gauge or untyped.
    Scalar(f64),
    /// Buckets as pushed (upper bound, cumulative count), sum and count.
    Histogram {
        /// (upper bound, cumulative count) in push order.
        buckets: Vec<(f64, u64)>,
        /// `_sum`.
        sum: f64,
        /// `_count`.
        count: u64,
    },
    /// Quantiles as pushed (quantile, value), sum and count.
    Summary {
        /// (quantile, value) in push order.
        quantiles: Vec<(f64, f64)>,
        /// `_sum`.
        sum: f64,
        /// `_count`.
        count: u64,
    },
}

/// One metric of a family: labels (without `le` or `quantile`) and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Sorted by name.
    pub labels: LabelPairs,
    /// The value.
    pub value: Value,
}

impl Metric {
    /// Exposition lines this metric renders to.
    pub fn sample_count(&self) -> usize {
        match &self.value {
            Value::Scalar(_) => 1,
            Value::Histogram { buckets, .. } => {
                buckets.len() + 2 + usize::from(!buckets.iter().any(|(bound, _)| *bound == f64::INFINITY))
            }
            Value::Summary { quantiles, .. } => quantiles.len() + 2,
        }
    }
}

/// A metric family as pushed.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// Family name.
    pub name: String,
    /// HELP text, unescaped, when the push had one.
    pub help: Option<String>,
    /// Type (untyped without a TYPE line).
    pub metric_type: MetricType,
    /// Metrics in push order.
    pub metrics: Vec<Metric>,
}

/// One group: what the last pushes to one grouping key left.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The grouping labels, `job` included, sorted by name.
    pub labels: LabelPairs,
    /// Pushed families by name (never the two timestamp gauges).
    pub families: BTreeMap<String, Family>,
    /// Last successful push, Unix ms; 0 when none succeeded yet.
    pub push_time_ms: i64,
    /// Last failed push, Unix ms; 0 when none failed.
    pub push_failure_time_ms: i64,
}

impl Group {
    fn new(labels: LabelPairs) -> Self {
        Group { labels, families: BTreeMap::new(), push_time_ms: 0, push_failure_time_ms: 0 }
    }

    fn sample_count(&self) -> usize {
        2 + self.families.values().flat_map(|family| &family.metrics).map(Metric::sample_count).sum::<usize>()
    }
}

/// A parsed push body, labels not yet sanitized.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PushBody {
    /// Families by name, empty ones dropped (expfmt's `TextToMetricFamilies`).
    pub families: BTreeMap<String, Family>,
    /// Whether any sample line had a timestamp (the Pushgateway refuses those pushes).
    pub has_timestamps: bool,
}

/// Why a push body was refused before it reached the store (nothing changes).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    /// Not the text format.
    #[error("text format parsing error in {0}")]
    Parse(#[from] ParseError),
    /// More samples than one push may carry.
    #[error("push has more than {limit} samples (PUSH_SAMPLE_COUNT_PER_PUSH_MAX)")]
    TooManySamples {
        /// The limit.
        limit: usize,
    },
}

/// How a push changes its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushMode {
    /// `PUT`: the pushed families replace the whole group.
    Replace,
    /// `POST`: the pushed families replace only families of the same names.
    Merge,
}

/// Why the store refused a change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The Pushgateway's consistency check failed; the group's failure time was set.
    #[error("pushed metrics are invalid or inconsistent with existing metrics: {0}")]
    Inconsistent(String),
    /// A store-wide bound; nothing changed.
    #[error("push refused: {what} would be {value}, more than the limit {limit} ({name})")]
    Full {
        /// What would grow.
        what: &'static str,
        /// The limit's constant.
        name: &'static str,
        /// Its value.
        limit: usize,
        /// What the push would make it.
        value: usize,
    },
}

/// Parses a text-format 0.0.4 body into families as expfmt's `TextParser` groups samples:
/// `_sum`/`_count` (and `_bucket`) samples join the summary (histogram) family they name;
/// `quantile` and `le` are not labels of those families' metrics; samples of one summary or
/// histogram with equal labels are one metric; a missing or NaN `le`/`quantile` drops the
/// sample's value; counts are truncated to integers.
pub fn parse_body(body: &[u8]) -> Result<PushBody, BodyError> {
    struct Building {
        family: Family,
        // Labels -> metric index, for histograms and summaries; lookup only.
        index: HashMap<LabelPairs, usize>,
    }
    let mut parser = TextParser::new(body);
    let mut building: BTreeMap<String, Building> = BTreeMap::new();
    let new_family = |name: &str| Building {
        family: Family { name: name.to_string(), help: None, metric_type: MetricType::Untyped, metrics: Vec::new() },
        index: HashMap::new(),
    };
    let mut has_timestamps = false;
    let mut sample_count = 0usize;
    while let Some(entry) = parser.next() {
        match entry? {
            Entry::Comment { .. } => {}
            Entry::Help { name, text } => {
                building.entry(name.to_string()).or_insert_with(|| new_family(name)).family.help =
                    Some(unescape_help(text));
            }
            Entry::Type { name, metric_type } => {
                let family = building.entry(name.to_string()).or_insert_with(|| new_family(name));
                family.family.metric_type = metric_type;
            }
            Entry::Sample { value, timestamp_ms, .. } => {
                sample_count += 1;
                if sample_count > PUSH_SAMPLE_COUNT_PER_PUSH_MAX {
                    return Err(BodyError::TooManySamples { limit: PUSH_SAMPLE_COUNT_PER_PUSH_MAX });
                }
                has_timestamps |= timestamp_ms.is_some();
                let (name, pairs) = parser.label_pairs()?;
                let (family_name, part) =
                    family_of(|name| building.get(name).map(|family| family.family.metric_type), name);
                let family = building.entry(family_name.to_string()).or_insert_with(|| new_family(family_name));
                let metric_type = family.family.metric_type;
                let special = match metric_type {
                    MetricType::Histogram => Some("le"),
                    MetricType::Summary => Some("quantile"),
                    _ => None,
                };
                let mut bound = None;
                let mut labels: LabelPairs = Vec::with_capacity(pairs.len());
                for (label_name, label_value) in pairs {
                    if Some(label_name) == special {
                        bound = Some(crate::scrape::parse::parse_float(&label_value).ok_or_else(|| ParseError {
                            line: parser.line_number(),
                            column: 1,
                            message: format!(
                                "expected float as value for {label_name:?} label of {name:?}, found {label_value:?}"
                            ),
                        })?);
                    } else {
                        labels.push((label_name.to_string(), label_value));
                    }
                }
                labels.sort();
                if special.is_none() {
                    family.family.metrics.push(Metric { labels, value: Value::Scalar(value) });
                    continue;
                }
                let index = match family.index.get(&labels) {
                    Some(index) => *index,
                    None => {
                        let empty = if metric_type == MetricType::Histogram {
                            Value::Histogram { buckets: Vec::new(), sum: 0.0, count: 0 }
                        } else {
                            Value::Summary { quantiles: Vec::new(), sum: 0.0, count: 0 }
                        };
                        family.index.insert(labels.clone(), family.family.metrics.len());
                        family.family.metrics.push(Metric { labels, value: empty });
                        family.family.metrics.len() - 1
                    }
                };
                let bound = bound.filter(|bound| !bound.is_nan());
                match (&mut family.family.metrics[index].value, part) {
                    (Value::Histogram { sum, .. } | Value::Summary { sum, .. }, Part::Sum) => *sum = value,
                    (Value::Histogram { count, .. } | Value::Summary { count, .. }, Part::Count) => {
                        *count = value as u64; // Saturating, as expfmt's uint64 conversion for sane values.
                    }
                    (Value::Histogram { buckets, .. }, Part::Bucket | Part::Plain) => {
                        if let Some(bound) = bound {
                            buckets.push((bound, value as u64));
                        }
                    }
                    (Value::Summary { quantiles, .. }, Part::Plain | Part::Bucket) => {
                        if let Some(quantile) = bound {
                            quantiles.push((quantile, value));
                        }
                    }
                    (Value::Scalar(_), _) => {}
                }
            }
        }
    }
    let families = building
        .into_iter()
        .filter(|(_, building)| !building.family.metrics.is_empty())
        .map(|(name, building)| (name, building.family))
        .collect();
    Ok(PushBody { families, has_timestamps })
}

/// Which part of a family a sample line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Plain,
    Bucket,
    Sum,
    Count,
}

/// The family a sample named `name` belongs to (expfmt `setOrCreateCurrentMF`): the family of
/// that exact name, else the summary or histogram its suffix names, else a new one.
fn family_of(type_of: impl Fn(&str) -> Option<MetricType>, name: &str) -> (&str, Part) {
    if type_of(name).is_some() {
        return (name, Part::Plain);
    }
    for (suffix, part, histogram_only) in
        [("_sum", Part::Sum, false), ("_count", Part::Count, false), ("_bucket", Part::Bucket, true)]
    {
        if let Some(base) = name.strip_suffix(suffix) {
            match type_of(base) {
                Some(MetricType::Summary) if !histogram_only => return (base, part),
                Some(MetricType::Histogram) => return (base, part),
                _ => {}
            }
        }
    }
    (name, Part::Plain)
}

/// All groups, by grouping labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Store {
    groups: BTreeMap<LabelPairs, Group>,
}

/// What a change replaced, to put back when it cannot be persisted.
#[derive(Debug)]
pub struct Undo {
    key: LabelPairs,
    previous: Option<Group>,
}

impl Store {
    /// A store holding `groups` (read back from disk; [`check`] is the caller's to run).
    pub fn from_groups(groups: Vec<Group>) -> Self {
        Store { groups: groups.into_iter().map(|group| (group.labels.clone(), group)).collect() }
    }

    /// Groups in grouping-label order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Samples held, the timestamp gauges included.
    pub fn sample_count(&self) -> usize {
        self.groups.values().map(Group::sample_count).sum()
    }

    /// Applies a push to the group `grouping` (sorted, `job` included) at `now_ms`, as the
    /// Pushgateway does: refused whole when a bound would be passed (nothing changes), or when
    /// the result is inconsistent (only the group's failure time changes, the group created
    /// if new). On success (and on an inconsistent push) returns what to put back should the
    /// change not be persisted.
    pub fn push(
        &mut self,
        grouping: &LabelPairs,
        body: PushBody,
        mode: PushMode,
        now_ms: i64,
    ) -> (Result<(), StoreError>, Option<Undo>) {
        let previous = self.groups.get(grouping);
        if previous.is_none() && self.groups.len() >= PUSH_GROUP_COUNT_MAX {
            let error = StoreError::Full {
                what: "the group count",
                name: "PUSH_GROUP_COUNT_MAX",
                limit: PUSH_GROUP_COUNT_MAX,
                value: self.groups.len() + 1,
            };
            return (Err(error), None);
        }
        let mut group = previous.cloned().unwrap_or_else(|| Group::new(grouping.clone()));
        let inconsistency =
            if body.has_timestamps { Some("pushed metrics must not have timestamps".to_string()) } else { None };
        if inconsistency.is_none() {
            if mode == PushMode::Replace {
                group.families.clear();
            }
            for (name, mut family) in body.families {
                if name == PUSH_TIME_METRIC_NAME || name == PUSH_FAILURE_TIME_METRIC_NAME {
                    continue; // The gateway's own gauges replace pushed ones.
                }
                for metric in &mut family.metrics {
                    sanitize_labels(&mut metric.labels, grouping);
                }
                group.families.insert(name, family);
            }
            group.push_time_ms = now_ms;
            let sample_count = self.sample_count() - previous.map_or(0, Group::sample_count) + group.sample_count();
            if sample_count > PUSH_SAMPLE_COUNT_TOTAL_MAX {
                let error = StoreError::Full {
                    what: "the sample count of all groups",
                    name: "PUSH_SAMPLE_COUNT_TOTAL_MAX",
                    limit: PUSH_SAMPLE_COUNT_TOTAL_MAX,
                    value: sample_count,
                };
                return (Err(error), None);
            }
        }
        let inconsistency = inconsistency.or_else(|| {
            let others = self.groups.iter().filter(|(key, _)| *key != grouping).map(|(_, group)| group);
            check(others.chain([&group])).err()
        });
        if let Some(message) = inconsistency {
            // storage/diskmetricstore.go `setPushFailedTimestamp`: the group keeps its metrics.
            let mut failed = previous.cloned().unwrap_or_else(|| Group::new(grouping.clone()));
            failed.push_failure_time_ms = now_ms;
            let undo = self.replace(grouping, Some(failed));
            return (Err(StoreError::Inconsistent(message)), Some(undo));
        }
        let undo = self.replace(grouping, Some(group));
        (Ok(()), Some(undo))
    }

    /// Removes the group `grouping` (a no-op when there is none, as the Pushgateway's 202).
    pub fn delete(&mut self, grouping: &LabelPairs) -> Undo {
        self.replace(grouping, None)
    }

    /// Puts back what a change replaced.
    pub fn undo(&mut self, undo: Undo) {
        self.replace(&undo.key, undo.previous);
    }

    fn replace(&mut self, key: &LabelPairs, group: Option<Group>) -> Undo {
        let previous = match group {
            Some(group) => self.groups.insert(key.clone(), group),
            None => self.groups.remove(key),
        };
        Undo { key: key.clone(), previous }
    }

    /// The text exposition (format 0.0.4) of every group, as the Pushgateway's `/metrics`
    /// serves it without its own process metrics: families sorted by name with one TYPE, the
    /// HELP of the first group (in grouping-label order) that has one; metrics sorted as
    /// client_golang's `metricSorter` (fewer labels first, then label values in name order).
    pub fn render(&self, out: &mut String) {
        struct Merged<'a> {
            help: Option<&'a str>,
            metric_type: MetricType,
            metrics: Vec<&'a Metric>,
        }
        let timestamp_metrics: Vec<(Metric, Metric)> = self
            .groups
            .values()
            .map(|group| {
                let mut labels = Vec::new();
                sanitize_labels(&mut labels, &group.labels);
                let gauge = |ms: i64| Metric { labels: labels.clone(), value: Value::Scalar(ms as f64 / 1000.0) };
                (gauge(group.push_time_ms), gauge(group.push_failure_time_ms))
            })
            .collect();
        let mut merged: BTreeMap<&str, Merged<'_>> = BTreeMap::new();
        for family in self.groups.values().flat_map(|group| group.families.values()) {
            let entry = merged.entry(&family.name).or_insert_with(|| Merged {
                help: None,
                metric_type: family.metric_type,
                metrics: Vec::new(),
            });
            if entry.help.is_none() {
                entry.help = family.help.as_deref();
            }
            entry.metrics.extend(&family.metrics);
        }
        if !timestamp_metrics.is_empty() {
            for (name, help, second) in [
                (PUSH_TIME_METRIC_NAME, PUSH_TIME_HELP, false),
                (PUSH_FAILURE_TIME_METRIC_NAME, PUSH_FAILURE_TIME_HELP, true),
            ] {
                let metrics = timestamp_metrics.iter().map(|(time, failure)| if second { failure } else { time });
                merged.insert(
                    name,
                    Merged { help: Some(help), metric_type: MetricType::Gauge, metrics: metrics.collect() },
                );
            }
        }
        for (name, mut family) in merged {
            family.metrics.sort_by(|a, b| {
                a.labels
                    .len()
                    .cmp(&b.labels.len())
                    .then_with(|| a.labels.iter().map(|(_, value)| value).cmp(b.labels.iter().map(|(_, value)| value)))
            });
            if let Some(help) = family.help {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", type_name(family.metric_type));
            for metric in family.metrics {
                render_metric(out, name, metric);
            }
        }
    }
}

/// storage/diskmetricstore.go `sanitizeLabels`: the grouping labels are set whatever the push
/// said, `instance` is added empty when missing, and the pairs end sorted.
fn sanitize_labels(labels: &mut LabelPairs, grouping: &LabelPairs) {
    let mut map: BTreeMap<String, String> = std::mem::take(labels).into_iter().collect();
    for (name, value) in grouping {
        map.insert(name.clone(), value.clone());
    }
    map.entry("instance".to_string()).or_default();
    *labels = map.into_iter().collect();
}

/// The consistency client_golang's `Gatherers.Gather` demands of the gateway's exposition
/// (registry.go `checkMetricConsistency`, `checkSuffixCollisions`): one type per family name,
/// no series twice, no histogram or summary part named like another family.
pub fn check<'a>(groups: impl Iterator<Item = &'a Group>) -> Result<(), String> {
    let mut types: BTreeMap<&str, MetricType> = BTreeMap::new();
    let mut series: BTreeSet<(&str, &LabelPairs)> = BTreeSet::new();
    for group in groups {
        for family in group.families.values() {
            match types.insert(&family.name, family.metric_type) {
                Some(existing) if existing != family.metric_type => {
                    return Err(format!(
                        "collected metric {:?} is a {} but another group has it as a {}",
                        family.name,
                        type_name(family.metric_type),
                        type_name(existing)
                    ));
                }
                _ => {}
            }
            for metric in &family.metrics {
                if !series.insert((&family.name, &metric.labels)) {
                    return Err(format!(
                        "collected metric {:?} {{{}}} was collected before with the same name and label values",
                        family.name,
                        format_labels(&metric.labels)
                    ));
                }
            }
        }
    }
    for (name, metric_type) in &types {
        let suffixes: &[&str] = match metric_type {
            MetricType::Histogram => &["_bucket", "_count", "_sum"],
            MetricType::Summary => &["_count", "_sum"],
            _ => &[],
        };
        for suffix in suffixes {
            let part = format!("{name}{suffix}");
            if types.contains_key(part.as_str()) {
                return Err(format!(
                    "collected metric named {part:?} collides with previously collected {} named {name:?}",
                    type_name(*metric_type)
                ));
            }
        }
    }
    Ok(())
}

fn type_name(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "untyped",
    }
}

fn render_metric(out: &mut String, name: &str, metric: &Metric) {
    match &metric.value {
        Value::Scalar(value) => write_sample(out, name, "", &metric.labels, None, &format_float(*value)),
        Value::Histogram { buckets, sum, count } => {
            for (bound, bucket_count) in buckets {
                write_sample(out, name, "_bucket", &metric.labels, Some(("le", *bound)), &bucket_count.to_string());
            }
            if !buckets.iter().any(|(bound, _)| *bound == f64::INFINITY) {
                write_sample(out, name, "_bucket", &metric.labels, Some(("le", f64::INFINITY)), &count.to_string());
            }
            write_sample(out, name, "_sum", &metric.labels, None, &format_float(*sum));
            write_sample(out, name, "_count", &metric.labels, None, &count.to_string());
        }
        Value::Summary { quantiles, sum, count } => {
            for (quantile, value) in quantiles {
                write_sample(out, name, "", &metric.labels, Some(("quantile", *quantile)), &format_float(*value));
            }
            write_sample(out, name, "_sum", &metric.labels, None, &format_float(*sum));
            write_sample(out, name, "_count", &metric.labels, None, &count.to_string());
        }
    }
}

/// expfmt `writeSample`: the metric's labels, then the extra `le`/`quantile` label last.
fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &LabelPairs,
    extra: Option<(&str, f64)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let extra_text = extra.map(|(extra_name, bound)| (extra_name.to_string(), format_float(bound)));
        for (index, (label_name, label_value)) in labels.iter().chain(extra_text.as_ref()).enumerate() {
            if index > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label_name}=\"{}\"", escape_label_value(label_value));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn format_labels(labels: &LabelPairs) -> String {
    let pairs: Vec<String> =
        labels.iter().map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value))).collect();
    pairs.join(",")
}

/// The text format's label value escaping: backslash, newline, double quote.
pub(crate) fn escape_label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// expfmt `writeFloat`: `strconv.FormatFloat(f, 'g', -1, 64)` with `+Inf`, `-Inf`, `NaN`: the
/// shortest digits that read back exactly, in exponent form (two exponent digits at least) when
/// the decimal exponent is below -4 or at least 6, Go's threshold for the shortest `g`.
pub fn format_float(value: f64) -> String {
    if value == 0.0 {
        return "0".to_string(); // expfmt writes -0 as 0 (`f == 0`).
    }
    crate::template::format_float(value, 'g', None)
}
