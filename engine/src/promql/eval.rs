//! Step-wise evaluation, as Prometheus' `rangeEval` (promql/engine.go). An instant query is a
//! range query with one step, so both share one path: every instant-vector node evaluates to a
//! set of series with at most one point per step, and operators, aggregations and functions are
//! applied step by step to the vectors the inputs hold at that step.
//!
//! Invariants:
//! - Selector windows are left-open: an instant selector takes the newest sample in
//!   `(t - offset - lookback, t - offset]` unless it is a staleness marker
//!   (`vectorSelectorSingle`); a range selector takes every sample in
//!   `(t - offset - range, t - offset]` except staleness markers (`matrixIterSlice`), per step,
//!   so `rate(x[5m])` works inside range queries and subqueries.
//! - One querier serves the whole query; its time range covers every selector (Prometheus
//!   `FindMinMaxTime`).
//! - Points held by intermediate results are counted while they are produced, against
//!   `query_samples_max`; a breach stops the query with [`QueryError::TooManySamples`].
//! - `__name__` removal is delayed (Prometheus' `EnableDelayedNameRemoval`): operations mark a
//!   series `drop_name`, and the name goes at the end, where equal label sets then collide.
//! - Output order never depends on hash order: series keep insertion order (instant queries
//!   keep the order the last operation produced, as Prometheus does), range results are sorted.
//!
//! - The query's deadline and cancel flag ([`Poller`]) are polled every `POLL_INTERVAL_COUNT`
//!   units of work: a series read (selectors, subquery windows) is one unit, a step of
//!   [`Evaluator::range_eval`] one per input series, so a query over a million series stops
//!   within milliseconds and cheap steps pay no clock read.
//!
//! Concurrency: an [`Evaluator`] belongs to one query on one thread.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher as ParserMatcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector};

use super::control::Poller;
use super::{EngineOptions, InstantSample, QueryError, RangeSeries, Value};
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher, Sample, METRIC_NAME_LABEL};
use crate::storage::Querier;

/// The evaluation steps: `start_ms`, `start_ms + step_ms`, ... up to `end_ms` inclusive.
/// `step_ms` is 0 for an instant query (one step).
#[derive(Clone, Copy, Debug)]
pub(super) struct EvalRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl EvalRange {
    pub(super) fn step_count(&self) -> usize {
        if self.step_ms <= 0 || self.end_ms < self.start_ms {
            return 1;
        }
        // In i128: the span of two extreme timestamps does not fit an i64.
        let steps = (i128::from(self.end_ms) - i128::from(self.start_ms)) / i128::from(self.step_ms);
        usize::try_from(steps).unwrap_or(usize::MAX - 1).saturating_add(1)
    }

    pub(super) fn steps(&self) -> impl Iterator<Item = i64> {
        let EvalRange { start_ms, step_ms, .. } = *self;
        let count = self.step_count() as i64;
        // Checked: a step near i64::MAX must end the sequence, not wrap around.
        (0..count).map_while(move |index| index.checked_mul(step_ms).and_then(|delta| start_ms.checked_add(delta)))
    }

    /// The last step, aligned to the grid.
    fn last_ms(&self) -> i64 {
        if self.step_ms <= 0 {
            return self.start_ms;
        }
        self.start_ms.saturating_add(((self.end_ms.saturating_sub(self.start_ms)) / self.step_ms) * self.step_ms)
    }
}

/// One series of an intermediate result: for instant vectors one point per step where it has a
/// value (at the step's time), for range vectors the raw samples.
#[derive(Clone, Debug)]
pub(super) struct Series {
    pub labels: Labels,
    /// The metric name goes at the end of evaluation (delayed name removal).
    pub drop_name: bool,
    pub points: Vec<Sample>,
}

/// An evaluated node.
pub(super) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    /// Instant vector over all steps.
    Vector(Vec<Series>),
    /// Range vector at one time (instant queries only).
    Matrix(Vec<Series>),
    /// String literal.
    String(String),
}

/// One element of an instant vector at one step.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepSample<'a> {
    pub labels: &'a Labels,
    pub drop_name: bool,
    pub value: f64,
}

/// An element an operation produces at one step.
#[derive(Clone, Debug)]
pub(super) struct OutSample<'a> {
    pub labels: Cow<'a, Labels>,
    pub drop_name: bool,
    pub value: f64,
}

impl<'a> OutSample<'a> {
    pub(super) fn keep(sample: &StepSample<'a>, value: f64) -> Self {
        OutSample { labels: Cow::Borrowed(sample.labels), drop_name: sample.drop_name, value }
    }

    pub(super) fn dropping_name(sample: &StepSample<'a>, value: f64) -> Self {
        OutSample { labels: Cow::Borrowed(sample.labels), drop_name: true, value }
    }
}

/// An argument at one step.
pub(super) enum StepArg<'a> {
    Scalar(f64),
    Vector(Vec<StepSample<'a>>),
}

impl<'a> StepArg<'a> {
    pub(super) fn scalar(&self) -> f64 {
        match self {
            StepArg::Scalar(value) => *value,
            StepArg::Vector(_) => f64::NAN,
        }
    }

    pub(super) fn vector(&self) -> &[StepSample<'a>] {
        match self {
            StepArg::Vector(samples) => samples,
            StepArg::Scalar(_) => &[],
        }
    }
}

/// The window a range function sees at one step.
pub(super) struct Window<'w> {
    /// Samples in `(end_ms - range_ms, end_ms]`, time order.
    pub samples: &'w [Sample],
    /// Step time.
    pub step_ms: i64,
    /// Right edge of the window (`t - offset`, or the `@` time).
    pub end_ms: i64,
    pub range_ms: i64,
}

pub(super) struct Evaluator<'a> {
    querier: &'a dyn Querier,
    /// The query's deadline and cancel flag.
    poller: &'a Poller<'a>,
    pub(super) options: &'a EngineOptions,
    pub(super) range: EvalRange,
    /// The outermost query's start and end, for `@ start()` / `@ end()`.
    query_start_ms: i64,
    query_end_ms: i64,
    query_step_ms: i64,
    /// Points held by live intermediate results.
    pub(super) samples_current_count: usize,
    /// (is an info, message): warnings and infos, deduplicated and ordered.
    annotations: BTreeSet<(bool, String)>,
    /// Where calls and aggregations sit in the query text (annotation suffixes).
    positions: &'a super::position::Positions,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(
        querier: &'a dyn Querier,
        options: &'a EngineOptions,
        range: EvalRange,
        poller: &'a Poller<'a>,
        positions: &'a super::position::Positions,
    ) -> Self {
        Evaluator {
            positions,
            querier,
            poller,
            options,
            range,
            query_start_ms: range.start_ms,
            query_end_ms: range.end_ms,
            query_step_ms: range.step_ms,
            samples_current_count: 0,
            annotations: BTreeSet::new(),
        }
    }

    /// Evaluates the query and converts the result to the API's value types.
    pub(super) fn run(&mut self, expr: &Expr, is_range_query: bool) -> Result<Value, QueryError> {
        let value_type = expr.value_type();
        if is_range_query && matches!(value_type, ValueType::Matrix | ValueType::String) {
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_description(value_type)
            )));
        }
        let time_ms = self.range.start_ms;
        Ok(match self.eval(expr)? {
            Val::String(text) => Value::String(time_ms, text),
            Val::Scalar(values) if is_range_query => Value::Matrix(vec![RangeSeries {
                labels: Labels::empty(),
                samples: self
                    .range
                    .steps()
                    .zip(values)
                    .map(|(timestamp_ms, value)| Sample { timestamp_ms, value })
                    .collect(),
            }]),
            Val::Scalar(values) => {
                Value::Scalar(Sample { timestamp_ms: time_ms, value: values.first().copied().unwrap_or(f64::NAN) })
            }
            Val::Matrix(series) => Value::Matrix(
                finish_names(series, false)?
                    .into_iter()
                    .map(|series| RangeSeries { labels: series.labels, samples: series.points })
                    .collect(),
            ),
            Val::Vector(series) if is_range_query => {
                let mut series = finish_names(series, true)?;
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(
                    series
                        .into_iter()
                        .filter(|series| !series.points.is_empty())
                        .map(|series| RangeSeries { labels: series.labels, samples: series.points })
                        .collect(),
                )
            }
            Val::Vector(series) => {
                let series = finish_names(series, false)?;
                Value::Vector(
                    series
                        .into_iter()
                        .filter_map(|series| {
                            series.points.last().map(|point| InstantSample {
                                labels: series.labels,
                                timestamp_ms: time_ms,
                                value: point.value,
                            })
                        })
                        .collect(),
                )
            }
        })
    }

    pub(super) fn eval(&mut self, expr: &Expr) -> Result<Val, QueryError> {
        match expr {
            Expr::NumberLiteral(literal) => Ok(Val::Scalar(vec![literal.val; self.range.step_count()])),
            Expr::StringLiteral(literal) => Ok(Val::String(literal.val.clone())),
            Expr::Paren(paren) => self.eval(&paren.expr),
            Expr::Unary(unary) => match self.eval(&unary.expr)? {
                Val::Scalar(values) => Ok(Val::Scalar(values.into_iter().map(|value| -value).collect())),
                Val::Vector(mut series) => {
                    for series in &mut series {
                        series.drop_name = true;
                        for point in &mut series.points {
                            point.value = -point.value;
                        }
                    }
                    Ok(Val::Vector(series))
                }
                _ => Err(QueryError::BadData("unary minus applies to scalars and instant vectors only".to_string())),
            },
            Expr::VectorSelector(selector) => self.vector_selector(selector, false).map(Val::Vector),
            Expr::MatrixSelector(selector) => self.range_at_start(&RangeSource::Selector(selector)),
            Expr::Subquery(subquery) => self.range_at_start(&RangeSource::Subquery(subquery)),
            Expr::Binary(binary) => super::binary::eval_binary(self, binary),
            Expr::Aggregate(aggregate) => super::aggregate::eval_aggregate(self, aggregate),
            Expr::Call(call) => super::functions::eval_call(self, call),
            Expr::Extension(_) => Err(QueryError::Execution("extension expressions are not supported yet".to_string())),
        }
    }

    /// Evaluates `expr` to one value per step; a vector here is a caller's type error.
    pub(super) fn eval_scalar(&mut self, expr: &Expr) -> Result<Vec<f64>, QueryError> {
        match self.eval(expr)? {
            Val::Scalar(values) => Ok(values),
            _ => Err(QueryError::BadData(format!("expected a scalar, got {expr}"))),
        }
    }

    /// Applies `step_fn` at every step to the arguments' values at that step (Prometheus
    /// `rangeEval`). Arguments must be scalars or instant vectors.
    pub(super) fn range_eval<'v, F>(&mut self, args: &'v [Val], mut step_fn: F) -> Result<Vec<Series>, QueryError>
    where
        F: FnMut(&[StepArg<'v>], i64) -> Result<Vec<OutSample<'v>>, QueryError>,
    {
        let mut cursors: Vec<Vec<usize>> = args
            .iter()
            .map(|arg| match arg {
                Val::Vector(series) => vec![0; series.len()],
                _ => Vec::new(),
            })
            .collect();
        let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
        let mut index_by_pointer: HashMap<*const Labels, usize> = HashMap::new();
        let mut output: Vec<Series> = Vec::new();
        let step_count = self.range.step_count();
        let mut step_args: Vec<StepArg<'v>> = Vec::with_capacity(args.len());
        // A step costs about one unit per input series: weigh the poll by it.
        let step_weight_count = 1 + cursors.iter().map(Vec::len).sum::<usize>();
        for (step_index, step_ms) in self.range.steps().enumerate() {
            self.poller.tick_by(step_weight_count)?;
            step_args.clear();
            for (arg, cursors) in args.iter().zip(cursors.iter_mut()) {
                step_args.push(match arg {
                    Val::Scalar(values) => StepArg::Scalar(values.get(step_index).copied().unwrap_or(f64::NAN)),
                    Val::Vector(series) => {
                        let mut samples = Vec::new();
                        for (series, cursor) in series.iter().zip(cursors.iter_mut()) {
                            if let Some(point) = series.points.get(*cursor) {
                                if point.timestamp_ms == step_ms {
                                    samples.push(StepSample {
                                        labels: &series.labels,
                                        drop_name: series.drop_name,
                                        value: point.value,
                                    });
                                    *cursor += 1;
                                }
                            }
                        }
                        StepArg::Vector(samples)
                    }
                    Val::Matrix(_) | Val::String(_) => {
                        return Err(QueryError::Execution(
                            "range vector or string where an instant value is needed".to_string(),
                        ))
                    }
                });
            }
            let out = step_fn(&step_args, step_ms)?;
            self.count_samples(out.len())?;
            for sample in out {
                // Labels borrowed from an input series are found by address first: hashing a
                // pointer is cheaper than hashing the labels at every step.
                let pointer = match &sample.labels {
                    Cow::Borrowed(labels) => Some(*labels as *const Labels),
                    Cow::Owned(_) => None,
                };
                let known = pointer.and_then(|pointer| index_by_pointer.get(&pointer).copied());
                let index = match known.or_else(|| index_by_labels.get(sample.labels.as_ref()).copied()) {
                    Some(index) => index,
                    None => {
                        let labels = sample.labels.clone().into_owned();
                        index_by_labels.insert(labels.clone(), output.len());
                        output.push(Series {
                            labels,
                            drop_name: sample.drop_name,
                            points: Vec::with_capacity(step_count.min(64)),
                        });
                        output.len() - 1
                    }
                };
                if let (Some(pointer), None) = (pointer, known) {
                    index_by_pointer.insert(pointer, index);
                }
                let series = &mut output[index];
                series.drop_name |= sample.drop_name;
                series.points.push(Sample { timestamp_ms: step_ms, value: sample.value });
            }
        }
        Ok(output)
    }

    /// Counts `count` more points held in memory.
    pub(super) fn count_samples(&mut self, count: usize) -> Result<(), QueryError> {
        self.samples_current_count = self.samples_current_count.saturating_add(count);
        if self.samples_current_count > self.options.query_samples_max {
            return Err(QueryError::TooManySamples { samples_max: self.options.query_samples_max });
        }
        Ok(())
    }

    /// Releases points of an intermediate result that is no longer held.
    pub(super) fn release(&mut self, val: &Val) {
        let count = match val {
            Val::Vector(series) | Val::Matrix(series) => series.iter().map(|series| series.points.len()).sum(),
            _ => 0,
        };
        self.samples_current_count = self.samples_current_count.saturating_sub(count);
    }

    /// The reference time of a selector at step `step_ms`: the `@` time or the step, minus the
    /// offset.
    fn reference_ms(&self, at: &Option<AtModifier>, offset: &Option<Offset>, step_ms: i64) -> i64 {
        self.at_ms(at).unwrap_or(step_ms).saturating_sub(offset_ms(offset))
    }

    /// Instant selector over all steps. With `timestamps`, each point's value is the time of
    /// the sample it took, in seconds (`timestamp(v)`).
    pub(super) fn vector_selector(
        &mut self,
        selector: &VectorSelector,
        timestamps: bool,
    ) -> Result<Vec<Series>, QueryError> {
        let lookback_ms = self.options.lookback_delta_ms;
        let references: Vec<(i64, i64)> = self
            .range
            .steps()
            .map(|step_ms| (step_ms, self.reference_ms(&selector.at, &selector.offset, step_ms)))
            .collect();
        let mut result = Vec::new();
        let mut produced_count = 0;
        let querier = self.querier;
        let samples_max = self.options.query_samples_max;
        let held_count = self.samples_current_count;
        select(querier, self.poller, selector, &mut |series| {
            let mut points = Vec::new();
            let mut next_index = 0;
            for &(step_ms, reference_ms) in &references {
                // With `@` every step shares one reference; otherwise references only grow.
                if next_index > 0 && series.samples[next_index - 1].timestamp_ms > reference_ms {
                    next_index = 0;
                }
                while next_index < series.samples.len() && series.samples[next_index].timestamp_ms <= reference_ms {
                    next_index += 1;
                }
                let Some(latest) = next_index.checked_sub(1).map(|index| series.samples[index]) else {
                    continue;
                };
                if latest.timestamp_ms > reference_ms.saturating_sub(lookback_ms) && !is_stale_nan(latest.value) {
                    let value = if timestamps { latest.timestamp_ms as f64 / 1000.0 } else { latest.value };
                    points.push(Sample { timestamp_ms: step_ms, value });
                }
            }
            if !points.is_empty() {
                // Counted as series stream in, so a huge selection fails before it is all in memory.
                produced_count += points.len();
                if held_count.saturating_add(produced_count) > samples_max {
                    return Err(QueryError::TooManySamples { samples_max });
                }
                result.push(Series { labels: series.labels, drop_name: timestamps, points });
            }
            Ok(())
        })?;
        self.count_samples(produced_count)?;
        Ok(result)
    }

    /// Calls `visit` with every series the range source yields, and a function giving its
    /// window at a step.
    /// A range vector at the query's (single) time: each series' window there, if not empty.
    fn range_at_start(&mut self, source: &RangeSource<'_>) -> Result<Val, QueryError> {
        let time_ms = self.range.start_ms;
        let mut result = Vec::new();
        self.for_each_window_series(source, |ev, series, windows| {
            let window = windows(time_ms);
            if !window.samples.is_empty() {
                ev.count_samples(window.samples.len())?;
                result.push(Series {
                    labels: series.labels.clone(),
                    drop_name: series.drop_name,
                    points: window.samples.to_vec(),
                });
            }
            Ok(())
        })?;
        Ok(Val::Matrix(result))
    }

    pub(super) fn for_each_window_series(
        &mut self,
        source: &RangeSource<'_>,
        mut visit: impl for<'w> FnMut(&mut Self, &'w Series, &(dyn Fn(i64) -> Window<'w> + 'w)) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        match source {
            RangeSource::Selector(selector) => {
                let range_ms = duration_ms(selector.range);
                let at_ms = self.at_ms(&selector.vs.at);
                let offset = offset_ms(&selector.vs.offset);
                let querier = self.querier;
                let poller = self.poller;
                // Series stream in one at a time; only the current one's samples are held.
                select(querier, poller, &selector.vs, &mut |storage_series| {
                    let samples: Vec<Sample> =
                        storage_series.samples.into_iter().filter(|sample| !is_stale_nan(sample.value)).collect();
                    let series = Series { labels: storage_series.labels, drop_name: false, points: samples };
                    let windows = |step_ms: i64| {
                        let end_ms = at_ms.unwrap_or(step_ms).saturating_sub(offset);
                        window(&series.points, end_ms, range_ms, step_ms)
                    };
                    visit(self, &series, &windows)
                })
            }
            RangeSource::Subquery(subquery) => {
                let range_ms = duration_ms(subquery.range);
                let at_ms = self.at_ms(&subquery.at);
                let offset = offset_ms(&subquery.offset);
                let inner = self.subquery_series(subquery)?;
                let held: usize = inner.iter().map(|series| series.points.len()).sum();
                let mut outcome = Ok(());
                for series in &inner {
                    if let Err(error) = self.poller.tick() {
                        outcome = Err(error);
                        break;
                    }
                    let windows = |step_ms: i64| {
                        let end_ms = at_ms.unwrap_or(step_ms).saturating_sub(offset);
                        window(&series.points, end_ms, range_ms, step_ms)
                    };
                    if let Err(error) = visit(self, series, &windows) {
                        outcome = Err(error);
                        break;
                    }
                }
                self.samples_current_count = self.samples_current_count.saturating_sub(held);
                outcome
            }
        }
    }

    /// Evaluates a subquery's inner expression on its own step grid (Prometheus
    /// `subqueryTimeRange`): steps are multiples of the subquery step after
    /// `first reference - range`, up to the last reference.
    fn subquery_series(&mut self, subquery: &SubqueryExpr) -> Result<Vec<Series>, QueryError> {
        let step_ms = subquery
            .step
            .map(duration_ms)
            .filter(|step| *step > 0)
            .unwrap_or(self.options.subquery_step_ms_default.max(1));
        let range_ms = duration_ms(subquery.range);
        let first_reference_ms = self.reference_ms(&subquery.at, &subquery.offset, self.range.start_ms);
        let last_reference_ms = self.reference_ms(&subquery.at, &subquery.offset, self.range.last_ms());
        let low_ms = first_reference_ms.saturating_sub(range_ms);
        let mut start_ms = low_ms.div_euclid(step_ms).saturating_mul(step_ms);
        if start_ms <= low_ms {
            start_ms = start_ms.saturating_add(step_ms);
        }
        let inner_range = EvalRange { start_ms, end_ms: last_reference_ms, step_ms };
        if last_reference_ms < start_ms {
            return Ok(Vec::new());
        }
        if inner_range.step_count() as i64 > self.options.range_points_per_series_max.saturating_mul(1_000) {
            return Err(QueryError::BadData(format!(
                "subquery of {} steps exceeds the limit of {}",
                inner_range.step_count(),
                self.options.range_points_per_series_max.saturating_mul(1_000)
            )));
        }
        let outer_range = self.range;
        self.range = inner_range;
        let result = self.eval(&subquery.expr);
        self.range = outer_range;
        match result? {
            Val::Vector(series) => Ok(series),
            Val::Scalar(values) => Ok(vec![Series {
                labels: Labels::empty(),
                drop_name: false,
                points: inner_range
                    .steps()
                    .zip(values)
                    .map(|(timestamp_ms, value)| Sample { timestamp_ms, value })
                    .collect(),
            }]),
            _ => Err(QueryError::BadData("subquery is only allowed on instant vector".to_string())),
        }
    }
}

/// Streams the series matching the selector (all its `or` groups) to `visit`, each once.
fn select(
    querier: &dyn Querier,
    poller: &Poller<'_>,
    selector: &VectorSelector,
    visit: &mut dyn FnMut(crate::storage::Series) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    {
        let groups: Vec<&Vec<ParserMatcher>> = if selector.matchers.or_matchers.is_empty() {
            vec![&selector.matchers.matchers]
        } else {
            selector.matchers.or_matchers.iter().collect()
        };
        let mut seen: Vec<Labels> = Vec::new();
        let several_groups = groups.len() > 1;
        for group in groups {
            let mut matchers = group.iter().map(convert_matcher).collect::<Result<Vec<_>, _>>()?;
            if let Some(name) = &selector.name {
                matchers.push(convert(MatchKind::Equal, METRIC_NAME_LABEL, name)?);
            }
            for series in querier.select(None, &matchers) {
                poller.tick()?;
                let series = series.map_err(|error| QueryError::Storage(error.to_string()))?;
                if several_groups {
                    if seen.contains(&series.labels) {
                        continue;
                    }
                    seen.push(series.labels.clone());
                }
                visit(series)?;
            }
        }
        Ok(())
    }
}

impl Evaluator<'_> {
    /// Records a warning (Prometheus `annotations.PromQLWarning`).
    pub(super) fn warn(&mut self, message: String) {
        self.annotations.insert((false, message));
    }

    /// The text positions of the call or aggregation node at `address` (`&Call`, `&AggregateExpr`).
    pub(super) fn node_positions(&self, address: usize) -> Option<super::position::NodePositions> {
        self.positions.get(address).cloned()
    }

    /// Whether the string literal at `offset` in the query text is valid UTF-8 in Go's reading.
    pub(super) fn literal_is_utf8(&self, offset: usize) -> bool {
        self.positions.literal_is_utf8(offset)
    }

    /// Records a note an operation produced (`true` for an info).
    pub(super) fn note(&mut self, (is_info, message): (bool, String)) {
        self.annotations.insert((is_info, message));
    }

    /// The warnings and infos recorded so far.
    pub(super) fn annotations(&self) -> super::Annotations {
        let mut annotations = super::Annotations::default();
        for (is_info, message) in &self.annotations {
            if *is_info {
                annotations.infos.push(message.clone());
            } else {
                annotations.warnings.push(message.clone());
            }
        }
        annotations
    }

    /// The outermost query's start, end and step, ms.
    pub(super) fn query_range(&self) -> (i64, i64, i64) {
        (self.query_start_ms, self.query_end_ms, self.query_step_ms)
    }

    pub(super) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start_ms),
            Some(AtModifier::End) => Some(self.query_end_ms),
            Some(AtModifier::At(time)) => Some(match time.duration_since(UNIX_EPOCH) {
                Ok(after) => duration_ms(after),
                Err(before) => duration_ms(before.duration()).saturating_neg(),
            }),
        }
    }
}

/// Where a range function reads its windows from.
pub(super) enum RangeSource<'e> {
    Selector(&'e MatrixSelector),
    Subquery(&'e SubqueryExpr),
}

/// The samples of `points` in `(end_ms - range_ms, end_ms]`.
fn window(points: &[Sample], end_ms: i64, range_ms: i64, step_ms: i64) -> Window<'_> {
    let start_ms = end_ms.saturating_sub(range_ms);
    let first = points.partition_point(|sample| sample.timestamp_ms <= start_ms);
    let last = points.partition_point(|sample| sample.timestamp_ms <= end_ms);
    Window { samples: &points[first..last.max(first)], step_ms, end_ms, range_ms }
}

/// Applies delayed name removal: drops `__name__` from marked series, then refuses equal label
/// sets (a vector) or merges them when their points do not overlap (a matrix).
fn finish_names(series: Vec<Series>, merge: bool) -> Result<Vec<Series>, QueryError> {
    let mut output: Vec<Series> = Vec::with_capacity(series.len());
    let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
    for mut series in series {
        if series.drop_name {
            series.labels = series.labels.without_metric_name();
        }
        match index_by_labels.get(&series.labels) {
            None => {
                index_by_labels.insert(series.labels.clone(), output.len());
                output.push(series);
            }
            Some(&index) if merge => {
                let target = &mut output[index];
                target.points.extend(series.points);
                target.points.sort_by_key(|point| point.timestamp_ms);
                if target.points.windows(2).any(|pair| pair[0].timestamp_ms == pair[1].timestamp_ms) {
                    return Err(duplicate_labelset());
                }
            }
            Some(_) => return Err(duplicate_labelset()),
        }
    }
    Ok(output)
}

pub(super) fn duplicate_labelset() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".to_string())
}

pub(super) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration_ms(*duration),
        Some(Offset::Neg(duration)) => duration_ms(*duration).saturating_neg(),
    }
}

pub(super) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn convert_matcher(matcher: &ParserMatcher) -> Result<Matcher, QueryError> {
    let kind = match matcher.op {
        MatchOp::Equal => MatchKind::Equal,
        MatchOp::NotEqual => MatchKind::NotEqual,
        MatchOp::Re(_) => MatchKind::Regex,
        MatchOp::NotRe(_) => MatchKind::NotRegex,
    };
    convert(kind, &matcher.name, &matcher.value)
}

fn convert(kind: MatchKind, name: &str, value: &str) -> Result<Matcher, QueryError> {
    Matcher::new(kind, name, value)
        .map_err(|error| QueryError::BadData(format!("invalid regular expression {value:?}: {error}")))
}

pub(super) fn type_description(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

/// The time range one querier must cover for `expr` evaluated over `range` (Prometheus
/// `FindMinMaxTime`): every selector's reach back by its range (or the lookback) and offset.
pub(super) fn time_bounds(expr: &Expr, range: EvalRange, lookback_ms: i64) -> (i64, i64) {
    let mut bounds = (i64::MAX, i64::MIN);
    walk_bounds(expr, range.start_ms, range.end_ms, 0, lookback_ms, &mut bounds, range);
    if bounds.0 > bounds.1 {
        return (range.start_ms, range.end_ms);
    }
    bounds
}

/// Every vector selector of `expr` (those inside matrix selectors and subqueries included), in
/// the order they appear.
pub(super) fn selectors(expr: &Expr) -> Vec<&VectorSelector> {
    fn walk<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
        match expr {
            Expr::VectorSelector(vs) => out.push(vs),
            Expr::MatrixSelector(ms) => out.push(&ms.vs),
            Expr::Subquery(sq) => walk(&sq.expr, out),
            Expr::Aggregate(aggregate) => {
                walk(&aggregate.expr, out);
                if let Some(param) = &aggregate.param {
                    walk(param, out);
                }
            }
            Expr::Unary(unary) => walk(&unary.expr, out),
            Expr::Binary(binary) => {
                walk(&binary.lhs, out);
                walk(&binary.rhs, out);
            }
            Expr::Paren(paren) => walk(&paren.expr, out),
            Expr::Call(call) => call.args.args.iter().for_each(|arg| walk(arg, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let mut out = Vec::new();
    walk(expr, &mut out);
    out
}

fn at_fixed(at: &Option<AtModifier>, query: EvalRange) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(query.start_ms),
        Some(AtModifier::End) => Some(query.end_ms),
        Some(AtModifier::At(time)) => Some(match time.duration_since(UNIX_EPOCH) {
            Ok(after) => duration_ms(after),
            Err(before) => duration_ms(before.duration()).saturating_neg(),
        }),
    }
}

fn walk_bounds(
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    extra_range_ms: i64,
    lookback_ms: i64,
    bounds: &mut (i64, i64),
    query: EvalRange,
) {
    let mut selector_bounds = |vs: &VectorSelector, range_ms: i64| {
        let (start, end) = match at_fixed(&vs.at, query) {
            Some(at) => (at, at),
            None => (start_ms, end_ms),
        };
        let offset = offset_ms(&vs.offset);
        let low = start.saturating_sub(offset).saturating_sub(range_ms.max(lookback_ms)).saturating_sub(extra_range_ms);
        let high = end.saturating_sub(offset);
        bounds.0 = bounds.0.min(low);
        bounds.1 = bounds.1.max(high);
    };
    match expr {
        Expr::VectorSelector(vs) => selector_bounds(vs, 0),
        Expr::MatrixSelector(ms) => selector_bounds(&ms.vs, duration_ms(ms.range)),
        Expr::Subquery(sq) => {
            let (start, end) = match at_fixed(&sq.at, query) {
                Some(at) => (at, at),
                None => (start_ms, end_ms),
            };
            let offset = offset_ms(&sq.offset);
            walk_bounds(
                &sq.expr,
                start.saturating_sub(offset),
                end.saturating_sub(offset),
                extra_range_ms.saturating_add(duration_ms(sq.range)),
                lookback_ms,
                bounds,
                query,
            );
        }
        Expr::Aggregate(aggregate) => {
            walk_bounds(&aggregate.expr, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query);
            if let Some(param) = &aggregate.param {
                walk_bounds(param, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query);
            }
        }
        Expr::Unary(unary) => walk_bounds(&unary.expr, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query),
        Expr::Binary(binary) => {
            walk_bounds(&binary.lhs, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query);
            walk_bounds(&binary.rhs, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query);
        }
        Expr::Paren(paren) => walk_bounds(&paren.expr, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query),
        Expr::Call(call) => {
            for arg in &call.args.args {
                walk_bounds(arg, start_ms, end_ms, extra_range_ms, lookback_ms, bounds, query);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}
