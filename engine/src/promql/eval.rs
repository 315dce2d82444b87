//! Step-wise evaluation. An instant query is a range query with one step, so both share one
//! path: every instant-vector expression evaluates to a series map keyed by labels (a BTreeMap,
//! so output order is the label order, never hash order).
//!
//! Selector semantics follow Prometheus' promql/engine.go (`vectorSelectorSingle`,
//! `matrixIterSlice`): an instant selector takes the newest sample in
//! `(t - offset - lookback, t - offset]` unless it is a staleness marker; a range selector takes
//! every sample in `(t - offset - range, t - offset]` except staleness markers.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher as ParserMatcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, VectorSelector};

use super::{EngineOptions, InstantSample, QueryError, RangeSeries, Value};
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher, Sample, METRIC_NAME_LABEL};
use crate::storage::{Queryable, Series};

/// The evaluation steps: `start_ms`, `start_ms + step_ms`, ... up to `end_ms` inclusive.
/// `step_ms` is 0 for an instant query (one step).
#[derive(Clone, Copy, Debug)]
pub(super) struct EvalRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl EvalRange {
    fn steps(&self) -> impl Iterator<Item = i64> {
        let EvalRange { start_ms, end_ms, step_ms } = *self;
        let count = if step_ms == 0 { 1 } else { end_ms.saturating_sub(start_ms) / step_ms + 1 };
        // Checked: a step near i64::MAX must end the sequence, not wrap around.
        (0..count).map_while(move |index| index.checked_mul(step_ms).and_then(|delta| start_ms.checked_add(delta)))
    }
}

/// An instant-vector or scalar result over all steps.
enum Steps {
    /// One value per step.
    Scalar(Vec<Sample>),
    /// Series with one point per step where they have a value.
    Vector(BTreeMap<Labels, Vec<Sample>>),
}

pub(super) struct Evaluator<'a> {
    queryable: &'a dyn Queryable,
    options: &'a EngineOptions,
    range: EvalRange,
    samples_loaded_count: usize,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(queryable: &'a dyn Queryable, options: &'a EngineOptions, range: EvalRange) -> Self {
        Evaluator { queryable, options, range, samples_loaded_count: 0 }
    }

    /// Evaluates an instant query (one step at `range.start_ms`).
    pub(super) fn instant(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        let time_ms = self.range.start_ms;
        match expr {
            Expr::StringLiteral(literal) => Ok(Value::String(time_ms, literal.val.clone())),
            Expr::MatrixSelector(selector) => Ok(Value::Matrix(self.matrix_selector(selector, time_ms)?)),
            Expr::Paren(paren) if paren.expr.value_type() == ValueType::Matrix => self.instant(&paren.expr),
            _ => match self.steps(expr)? {
                Steps::Scalar(mut samples) => {
                    Ok(Value::Scalar(samples.pop().unwrap_or(Sample { timestamp_ms: time_ms, value: f64::NAN })))
                }
                Steps::Vector(series) => Ok(Value::Vector(
                    series
                        .into_iter()
                        .filter_map(|(labels, samples)| {
                            samples.last().map(|sample| InstantSample {
                                labels,
                                timestamp_ms: sample.timestamp_ms,
                                value: sample.value,
                            })
                        })
                        .collect(),
                )),
            },
        }
    }

    /// Evaluates a range query; the result is a matrix.
    pub(super) fn range(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        let value_type = expr.value_type();
        if matches!(value_type, ValueType::Matrix | ValueType::String) {
            return Err(QueryError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                type_description(value_type)
            )));
        }
        let series = match self.steps(expr)? {
            Steps::Scalar(samples) => vec![RangeSeries { labels: Labels::empty(), samples }],
            Steps::Vector(series) => series
                .into_iter()
                .filter(|(_, samples)| !samples.is_empty())
                .map(|(labels, samples)| RangeSeries { labels, samples })
                .collect(),
        };
        Ok(Value::Matrix(series))
    }

    fn steps(&mut self, expr: &Expr) -> Result<Steps, QueryError> {
        match expr {
            Expr::NumberLiteral(literal) => Ok(Steps::Scalar(
                self.range.steps().map(|timestamp_ms| Sample { timestamp_ms, value: literal.val }).collect(),
            )),
            Expr::Paren(paren) => self.steps(&paren.expr),
            Expr::Unary(unary) => Ok(match self.steps(&unary.expr)? {
                Steps::Scalar(samples) => Steps::Scalar(negate(samples)),
                Steps::Vector(series) => Steps::Vector(drop_metric_names(series)?),
            }),
            Expr::VectorSelector(selector) => self.vector_selector(selector).map(Steps::Vector),
            other => Err(unsupported(other)),
        }
    }

    fn vector_selector(&mut self, selector: &VectorSelector) -> Result<BTreeMap<Labels, Vec<Sample>>, QueryError> {
        let lookback_ms = self.options.lookback_delta_ms;
        let offset_ms = offset_ms(&selector.offset);
        let at_ms = self.at_ms(&selector.at)?;
        let steps: Vec<i64> = self.range.steps().collect();
        let reference_ms = |step_ms: i64| at_ms.unwrap_or(step_ms).saturating_sub(offset_ms);
        let (first_ms, last_ms) = match at_ms {
            Some(at_ms) => (at_ms.saturating_sub(offset_ms), at_ms.saturating_sub(offset_ms)),
            None => (self.range.start_ms.saturating_sub(offset_ms), self.range.end_ms.saturating_sub(offset_ms)),
        };
        let selected = self.select(selector, first_ms.saturating_sub(lookback_ms).saturating_add(1), last_ms)?;
        let mut result = BTreeMap::new();
        for series in selected {
            let mut points = Vec::new();
            let mut next_index = 0;
            for &step_ms in &steps {
                let reference_ms = reference_ms(step_ms);
                // Samples are in time order: advance past everything at or before the reference.
                while next_index < series.samples.len() && series.samples[next_index].timestamp_ms <= reference_ms {
                    next_index += 1;
                }
                let Some(latest) = next_index.checked_sub(1).map(|index| series.samples[index]) else {
                    continue;
                };
                if latest.timestamp_ms > reference_ms.saturating_sub(lookback_ms) && !is_stale_nan(latest.value) {
                    points.push(Sample { timestamp_ms: step_ms, value: latest.value });
                }
            }
            if !points.is_empty() {
                result.insert(series.labels, points);
            }
        }
        Ok(result)
    }

    fn matrix_selector(&mut self, selector: &MatrixSelector, time_ms: i64) -> Result<Vec<RangeSeries>, QueryError> {
        let range_ms = duration_ms(selector.range);
        let reference_ms =
            self.at_ms(&selector.vs.at)?.unwrap_or(time_ms).saturating_sub(offset_ms(&selector.vs.offset));
        let selected =
            self.select(&selector.vs, reference_ms.saturating_sub(range_ms).saturating_add(1), reference_ms)?;
        Ok(selected
            .into_iter()
            .map(|series| RangeSeries {
                labels: series.labels,
                samples: series.samples.into_iter().filter(|sample| !is_stale_nan(sample.value)).collect(),
            })
            .filter(|series| !series.samples.is_empty())
            .collect())
    }

    /// Selects series matching the selector (all its `or` groups) with samples in
    /// `[min_time_ms, max_time_ms]`, enforcing the sample limit.
    fn select(
        &mut self,
        selector: &VectorSelector,
        min_time_ms: i64,
        max_time_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let storage_error = |error: crate::storage::StorageError| QueryError::Execution(error.to_string());
        let querier = self.queryable.querier(min_time_ms, max_time_ms).map_err(storage_error)?;
        let groups: Vec<&Vec<ParserMatcher>> = if selector.matchers.or_matchers.is_empty() {
            vec![&selector.matchers.matchers]
        } else {
            selector.matchers.or_matchers.iter().collect()
        };
        let mut by_labels = BTreeMap::new();
        for group in groups {
            let mut matchers = group.iter().map(convert_matcher).collect::<Result<Vec<_>, _>>()?;
            if let Some(name) = &selector.name {
                matchers.push(convert(MatchKind::Equal, METRIC_NAME_LABEL, name)?);
            }
            // Samples are counted as series stream in, so a huge selection fails before it is
            // all in memory.
            for series in querier.select(None, &matchers) {
                let series = series.map_err(storage_error)?;
                if by_labels.contains_key(&series.labels) {
                    continue;
                }
                self.samples_loaded_count += series.samples.len();
                if self.samples_loaded_count > self.options.query_samples_max {
                    return Err(QueryError::Execution(
                        "query processing would load too many samples into memory in query execution".to_string(),
                    ));
                }
                by_labels.insert(series.labels.clone(), series);
            }
        }
        Ok(by_labels.into_values().collect())
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Result<Option<i64>, QueryError> {
        Ok(match at {
            None => None,
            Some(AtModifier::Start) => Some(self.range.start_ms),
            Some(AtModifier::End) => Some(self.range.end_ms),
            Some(AtModifier::At(time)) => Some(match time.duration_since(UNIX_EPOCH) {
                Ok(after) => duration_ms(after),
                Err(before) => duration_ms(before.duration()).saturating_neg(),
            }),
        })
    }
}

/// Negates every point and drops `__name__`. Series that become equal are merged, as long as
/// they have no point at the same step (Prometheus: "vector cannot contain metrics with the same
/// labelset", promql/engine.go `rangeEval`).
fn drop_metric_names(series: BTreeMap<Labels, Vec<Sample>>) -> Result<BTreeMap<Labels, Vec<Sample>>, QueryError> {
    let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for (labels, samples) in series {
        merged.entry(labels.without_metric_name()).or_default().extend(negate(samples));
    }
    for samples in merged.values_mut() {
        samples.sort_by_key(|sample| sample.timestamp_ms);
        if samples.windows(2).any(|pair| pair[0].timestamp_ms == pair[1].timestamp_ms) {
            return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".to_string()));
        }
    }
    Ok(merged)
}

fn negate(samples: Vec<Sample>) -> Vec<Sample> {
    samples.into_iter().map(|sample| Sample { value: -sample.value, ..sample }).collect()
}

fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration_ms(*duration),
        Some(Offset::Neg(duration)) => duration_ms(*duration).saturating_neg(),
    }
}

fn duration_ms(duration: Duration) -> i64 {
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

fn type_description(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::Vector => "instant vector",
        ValueType::Scalar => "scalar",
        ValueType::Matrix => "range vector",
        ValueType::String => "string",
    }
}

fn unsupported(expr: &Expr) -> QueryError {
    let kind = match expr {
        Expr::Aggregate(_) => "aggregation",
        Expr::Binary(_) => "binary operator",
        Expr::Subquery(_) => "subquery",
        Expr::Call(_) => "function call",
        Expr::MatrixSelector(_) => "range vector selector in this position",
        Expr::StringLiteral(_) => "string literal in this position",
        _ => "expression",
    };
    QueryError::Execution(format!("{kind} is not supported yet: {expr}"))
}
