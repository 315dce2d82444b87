//! PromQL functions over floats, as Prometheus' promql/functions.go: the range functions
//! (`rate`, `increase`, `delta`, `irate`, `idelta`, `deriv`, `predict_linear`, `resets`,
//! `changes`, the `*_over_time` family, `double_exponential_smoothing`), the instant-vector
//! functions (math, trigonometry, clamping, rounding, dates, `timestamp`, sorting,
//! `histogram_quantile` and `histogram_fraction` over classic buckets), label manipulation
//! (`label_replace`, `label_join`) and the scalar ones (`time`, `pi`, `scalar`, `vector`,
//! `absent`, `absent_over_time`).
//!
//! Invariants: a range function sees, per step and per series, the samples in its left-open
//! window; every function but `last_over_time` and `first_over_time` marks its output for
//! name removal; functions of native histograms see no floats and return nothing.
//!
//! Concurrency: pure functions of one window or one step's vector.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::aggregate::{invalid_quantile, kahan_inc, quantile};
use super::eval::{duplicate_labelset, Evaluator, OutSample, RangeSource, Series, StepArg, StepSample, Val, Window};
use super::{position, QueryError};
use crate::calendar::civil_from_days;
use crate::model::{Labels, Sample, METRIC_NAME_LABEL};

/// A range function: the value for one window (and the scalar arguments at that step), or
/// nothing.
type RangeFn = fn(&Window<'_>, &[f64]) -> Result<Option<f64>, QueryError>;

pub(super) fn eval_call(ev: &mut Evaluator<'_>, call: &Call) -> Result<Val, QueryError> {
    let name = call.func.name;
    let positions = ev.node_positions(call as *const Call as usize);
    let start_suffix = position::suffix(positions.as_ref().map(|p| p.start));
    let arg_suffix = |index: usize| position::suffix(positions.as_ref().and_then(|p| p.args.get(index).copied()));
    // Parentheses around an argument change nothing: `rate((x[5m]))`, `label_replace(("a"), ...)`.
    let args: Vec<&Expr> = call.args.args.iter().map(|arg| unwrap_parens(arg)).collect();
    if let Some(range_index) = args.iter().position(|arg| matches!(arg, Expr::MatrixSelector(_) | Expr::Subquery(_))) {
        return eval_range_call(ev, name, &args, range_index, &arg_suffix(0));
    }
    match name {
        "label_replace" => return label_replace(ev, &args, positions.as_ref()),
        "label_join" => return label_join(ev, &args),
        "time" => return Ok(Val::Scalar(ev.range.steps().map(|step_ms| step_ms as f64 / 1000.0).collect())),
        "pi" => return Ok(Val::Scalar(vec![std::f64::consts::PI; ev.range.step_count()])),
        // The outermost query's range and step, in seconds (experimental upstream).
        "start" | "end" | "range" | "step" => {
            let (start_ms, end_ms, step_ms) = ev.query_range();
            let value_ms = match name {
                "start" => start_ms,
                "end" => end_ms,
                "range" => end_ms.saturating_sub(start_ms),
                _ => step_ms,
            };
            return Ok(Val::Scalar(vec![value_ms as f64 / 1000.0; ev.range.step_count()]));
        }
        "min_of" | "max_of" => {
            let (Some(first), Some(second)) = (args.first(), args.get(1)) else {
                return Err(QueryError::BadData(format!("{name}() needs two scalars")));
            };
            let (first, second) = (ev.eval_scalar(first)?, ev.eval_scalar(second)?);
            let pick = |a: f64, b: f64| match (a.is_nan() || b.is_nan(), name == "min_of") {
                (true, _) => f64::NAN,
                (false, true) => a.min(b),
                (false, false) => a.max(b),
            };
            return Ok(Val::Scalar(first.iter().zip(&second).map(|(a, b)| pick(*a, *b)).collect()));
        }
        _ => {}
    }
    if name == "timestamp" {
        if let Some(Expr::VectorSelector(selector)) = args.first() {
            return ev.vector_selector(selector, true).map(Val::Vector);
        }
    }
    // String arguments are read from the expression; the others are evaluated.
    let strings: Vec<String> = args
        .iter()
        .filter_map(|arg| match arg {
            Expr::StringLiteral(literal) => Some(literal.val.clone()),
            _ => None,
        })
        .collect();
    let mut values = Vec::new();
    for arg in &args {
        if !matches!(arg, Expr::StringLiteral(_)) {
            values.push(ev.eval(arg)?);
        }
    }
    if name == "scalar" {
        let Some(Val::Vector(series)) = values.first() else {
            return Err(QueryError::BadData("scalar() needs an instant vector".to_string()));
        };
        let mut result = vec![f64::NAN; ev.range.step_count()];
        let mut counts = vec![0usize; result.len()];
        let start_ms = ev.range.start_ms;
        let step_ms = ev.range.step_ms.max(1);
        for series in series {
            for point in &series.points {
                let index = usize::try_from((point.timestamp_ms - start_ms) / step_ms).unwrap_or(usize::MAX);
                if let Some(slot) = result.get_mut(index) {
                    counts[index] += 1;
                    *slot = if counts[index] == 1 { point.value } else { f64::NAN };
                }
            }
        }
        ev.release(&values[0]);
        return Ok(Val::Scalar(result));
    }
    if matches!(name, "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc")
        && ev.range.start_ms != ev.range.end_ms
    {
        ev.warn(format!(
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels{start_suffix}"
        ));
    }
    if name == "histogram_quantile" {
        if let Some(Val::Scalar(quantiles)) = values.first() {
            if let Some(q) = quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
                ev.warn(format!("{}{}", invalid_quantile(*q), arg_suffix(0)));
            }
        }
    }
    // Bucket warnings and the monotonicity info point at the buckets argument.
    let notes_suffix = match name {
        "histogram_quantile" => arg_suffix(1),
        "histogram_fraction" => arg_suffix(2),
        _ => String::new(),
    };
    let absent_labels = if name == "absent" { absent_labels(args.first().copied()) } else { Labels::empty() };
    let mut notes: Vec<(bool, String)> = Vec::new();
    let result = ev.range_eval(&values, |step, step_ms| {
        instant_function(name, step, step_ms, &strings, &absent_labels, &mut notes)
    })?;
    for value in &values {
        ev.release(value);
    }
    for (is_info, message) in notes {
        ev.note((is_info, format!("{message}{notes_suffix}")));
    }
    Ok(Val::Vector(result))
}

fn instant_function<'a>(
    name: &str,
    step: &[StepArg<'a>],
    step_ms: i64,
    strings: &[String],
    absent_labels: &Labels,
    notes: &mut Vec<(bool, String)>,
) -> Result<Vec<OutSample<'a>>, QueryError> {
    let vector = || step.first().map(StepArg::vector).unwrap_or(&[]);
    let map = |f: &dyn Fn(f64) -> f64| -> Vec<OutSample<'a>> {
        vector().iter().map(|sample| OutSample::dropping_name(sample, f(sample.value))).collect()
    };
    Ok(match name {
        "abs" => map(&f64::abs),
        "ceil" => map(&f64::ceil),
        "floor" => map(&f64::floor),
        "exp" => map(&f64::exp),
        "sqrt" => map(&f64::sqrt),
        "ln" => map(&f64::ln),
        "log2" => map(&f64::log2),
        "log10" => map(&f64::log10),
        "sin" => map(&f64::sin),
        "cos" => map(&f64::cos),
        "tan" => map(&f64::tan),
        "asin" => map(&f64::asin),
        "acos" => map(&f64::acos),
        "atan" => map(&f64::atan),
        "sinh" => map(&f64::sinh),
        "cosh" => map(&f64::cosh),
        "tanh" => map(&f64::tanh),
        "asinh" => map(&f64::asinh),
        "acosh" => map(&f64::acosh),
        "atanh" => map(&f64::atanh),
        "rad" => map(&|value| value * std::f64::consts::PI / 180.0),
        "deg" => map(&|value| value * 180.0 / std::f64::consts::PI),
        "sgn" => map(&|value| {
            if value > 0.0 {
                1.0
            } else if value < 0.0 {
                -1.0
            } else {
                value
            }
        }),
        "round" => {
            let to_nearest = step.get(1).map(StepArg::scalar).unwrap_or(1.0);
            let inverse = 1.0 / to_nearest;
            map(&|value| (value * inverse + 0.5).floor() / inverse)
        }
        "clamp" => {
            let (low, high) = (step[1].scalar(), step[2].scalar());
            if high < low {
                Vec::new()
            } else {
                map(&|value| low.max(high.min(value)))
            }
        }
        "clamp_min" => {
            let low = step[1].scalar();
            map(&|value| low.max(value))
        }
        "clamp_max" => {
            let high = step[1].scalar();
            map(&|value| high.min(value))
        }
        "timestamp" => map(&|_| step_ms as f64 / 1000.0),
        "vector" => vec![OutSample { labels: Cow::Owned(Labels::empty()), drop_name: false, value: step[0].scalar() }],
        "absent" => {
            if vector().is_empty() {
                vec![OutSample { labels: Cow::Owned(absent_labels.clone()), drop_name: false, value: 1.0 }]
            } else {
                Vec::new()
            }
        }
        "sort" | "sort_desc" => {
            let mut out: Vec<OutSample<'a>> =
                vector().iter().map(|sample| OutSample::keep(sample, sample.value)).collect();
            let descending = name == "sort_desc";
            out.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) if descending => b.value.total_cmp(&a.value),
                (false, false) => a.value.total_cmp(&b.value),
            });
            out
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut out: Vec<OutSample<'a>> =
                vector().iter().map(|sample| OutSample::keep(sample, sample.value)).collect();
            out.sort_by(|a, b| {
                let mut ordering = Ordering::Equal;
                for label in strings {
                    let (x, y) = (a.labels.get(label).unwrap_or(""), b.labels.get(label).unwrap_or(""));
                    if x != y {
                        ordering = natural_cmp(x, y);
                        break;
                    }
                }
                if ordering == Ordering::Equal {
                    ordering = a.labels.cmp(&b.labels);
                }
                if name == "sort_by_label_desc" {
                    ordering.reverse()
                } else {
                    ordering
                }
            });
            out
        }
        "histogram_quantile" => histogram_quantile(step[0].scalar(), step[1].vector(), notes),
        "histogram_fraction" => histogram_fraction(step[0].scalar(), step[1].scalar(), step[2].vector(), notes),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute" | "month" | "year" => {
            if step.is_empty() {
                vec![OutSample {
                    labels: Cow::Owned(Labels::empty()),
                    drop_name: false,
                    value: date_part(name, step_ms.div_euclid(1000)),
                }]
            } else {
                vector()
                    .iter()
                    .filter(|sample| sample.value.is_finite())
                    .map(|sample| OutSample::dropping_name(sample, date_part(name, sample.value as i64)))
                    .collect()
            }
        }
        // Native-histogram functions: floats are not histograms, so nothing comes out.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => Vec::new(),
        other => return Err(QueryError::Execution(format!("function {other} is not supported yet"))),
    })
}

fn unwrap_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(paren) = expr {
        expr = &paren.expr;
    }
    expr
}

/// Go's `natsort.Compare` ordering: runs of digits compare by number, the rest by bytes.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let x_length = x.iter().take_while(|byte| byte.is_ascii_digit()).count();
                let y_length = y.iter().take_while(|byte| byte.is_ascii_digit()).count();
                let x_digits = trim_zeros(&x[..x_length]);
                let y_digits = trim_zeros(&y[..y_length]);
                let ordering = x_digits.len().cmp(&y_digits.len()).then_with(|| x_digits.cmp(y_digits));
                if ordering != Ordering::Equal {
                    return ordering;
                }
                x = &x[x_length..];
                y = &y[y_length..];
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|byte| **byte == b'0').count();
    &digits[zeros.min(digits.len().saturating_sub(1))..]
}

/// The labels `absent(v)` returns: the equality matchers of a selector, except the name and
/// any label matched more than once.
fn absent_labels(expr: Option<&Expr>) -> Labels {
    let selector = match expr {
        Some(Expr::VectorSelector(selector)) => selector,
        Some(Expr::MatrixSelector(selector)) => &selector.vs,
        _ => return Labels::empty(),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for matcher in &selector.matchers.matchers {
        if matcher.name == METRIC_NAME_LABEL {
            continue;
        }
        let seen = pairs.iter().any(|(name, _)| *name == matcher.name) || removed.contains(&matcher.name);
        if matches!(matcher.op, MatchOp::Equal) && !seen {
            pairs.push((matcher.name.clone(), matcher.value.clone()));
        } else {
            pairs.retain(|(name, _)| *name != matcher.name);
            removed.push(matcher.name.clone());
        }
    }
    Labels::from_pairs(pairs)
}

/// `first_arg_suffix`: the position suffix of the first argument (`quantile_over_time`'s warning).
fn eval_range_call(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[&Expr],
    range_index: usize,
    first_arg_suffix: &str,
) -> Result<Val, QueryError> {
    let function =
        range_function(name).ok_or_else(|| QueryError::Execution(format!("function {name} is not supported yet")))?;
    // Scalar arguments, one value per step.
    let mut scalars: Vec<Vec<f64>> = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        if index != range_index {
            scalars.push(ev.eval_scalar(arg)?);
        }
    }
    let source = match args[range_index] {
        Expr::MatrixSelector(selector) => RangeSource::Selector(selector),
        Expr::Subquery(subquery) => RangeSource::Subquery(subquery),
        _ => return Err(QueryError::Execution("range vector expected".to_string())),
    };
    let keeps_name = matches!(name, "last_over_time" | "first_over_time");
    let steps: Vec<i64> = ev.range.steps().collect();
    let mut output: Vec<Series> = Vec::new();
    let mut present = vec![false; steps.len()];
    let mut parameters = vec![0.0; scalars.len()];
    // A few quantiles the function ran with, for the out-of-range warning.
    let mut evaluated_quantiles: Vec<f64> = Vec::new();
    ev.for_each_window_series(&source, |ev, series, windows| {
        let mut points = Vec::new();
        for (step_index, &step_ms) in steps.iter().enumerate() {
            let window = windows(step_ms);
            if window.samples.is_empty() {
                continue;
            }
            // The window is held while the function reads it (Prometheus counts it too).
            if ev.samples_current_count.saturating_add(window.samples.len()) > ev.options.query_samples_max {
                return Err(QueryError::TooManySamples { samples_max: ev.options.query_samples_max });
            }
            present[step_index] = true;
            for (parameter, values) in parameters.iter_mut().zip(&scalars) {
                *parameter = values.get(step_index).copied().unwrap_or(f64::NAN);
            }
            if name == "quantile_over_time" && evaluated_quantiles.len() < 2 {
                evaluated_quantiles.push(parameters[0]);
            }
            if let Some(value) = function(&window, &parameters)? {
                points.push(Sample { timestamp_ms: step_ms, value });
            }
        }
        if !points.is_empty() {
            ev.count_samples(points.len())?;
            output.push(Series { labels: series.labels.clone(), drop_name: series.drop_name || !keeps_name, points });
        }
        Ok(())
    })?;
    if name == "quantile_over_time" {
        if let Some(q) = evaluated_quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
            ev.warn(format!("{}{first_arg_suffix}", invalid_quantile(*q)));
        }
    }
    if name == "absent_over_time" {
        for series in &output {
            ev.release(&Val::Vector(vec![series.clone()]));
        }
        let labels = absent_labels(Some(args[range_index]));
        let points: Vec<Sample> = steps
            .iter()
            .zip(&present)
            .filter(|(_, present)| !**present)
            .map(|(step_ms, _)| Sample { timestamp_ms: *step_ms, value: 1.0 })
            .collect();
        if points.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        ev.count_samples(points.len())?;
        return Ok(Val::Vector(vec![Series { labels, drop_name: true, points }]));
    }
    Ok(Val::Vector(output))
}

fn range_function(name: &str) -> Option<RangeFn> {
    Some(match name {
        "rate" => |window, _| Ok(extrapolated_rate(window, true, true)),
        "increase" => |window, _| Ok(extrapolated_rate(window, true, false)),
        "delta" => |window, _| Ok(extrapolated_rate(window, false, false)),
        "irate" => |window, _| Ok(instant_value(window.samples, true)),
        "idelta" => |window, _| Ok(instant_value(window.samples, false)),
        "deriv" => |window, _| {
            let samples = window.samples;
            Ok((samples.len() >= 2).then(|| linear_regression(samples, samples[0].timestamp_ms).0))
        },
        "predict_linear" => |window, parameters| {
            let samples = window.samples;
            if samples.len() < 2 {
                return Ok(None);
            }
            let (slope, intercept) = linear_regression(samples, window.step_ms);
            Ok(Some(slope * parameters[0] + intercept))
        },
        "resets" => {
            |window, _| Ok(Some(window.samples.windows(2).filter(|pair| pair[1].value < pair[0].value).count() as f64))
        }
        "changes" => |window, _| {
            let changed = |pair: &&[Sample]| {
                pair[1].value != pair[0].value && !(pair[1].value.is_nan() && pair[0].value.is_nan())
            };
            Ok(Some(window.samples.windows(2).filter(changed).count() as f64))
        },
        "avg_over_time" => |window, _| Ok(Some(average(window.samples))),
        "sum_over_time" => |window, _| {
            let (sum, compensation) = window
                .samples
                .iter()
                .fold((0.0, 0.0), |(sum, compensation), sample| kahan_inc(sample.value, sum, compensation));
            Ok(Some(if sum.is_infinite() { sum } else { sum + compensation }))
        },
        "count_over_time" => |window, _| Ok(Some(window.samples.len() as f64)),
        "min_over_time" => |window, _| Ok(Some(extreme(window.samples, |current, best| current < best).1)),
        "max_over_time" => |window, _| Ok(Some(extreme(window.samples, |current, best| current > best).1)),
        "ts_of_min_over_time" => {
            |window, _| Ok(Some(extreme(window.samples, |current, best| current < best).0 as f64 / 1000.0))
        }
        "ts_of_max_over_time" => {
            |window, _| Ok(Some(extreme(window.samples, |current, best| current > best).0 as f64 / 1000.0))
        }
        "last_over_time" => |window, _| Ok(window.samples.last().map(|sample| sample.value)),
        "first_over_time" => |window, _| Ok(window.samples.first().map(|sample| sample.value)),
        "ts_of_last_over_time" => {
            |window, _| Ok(window.samples.last().map(|sample| sample.timestamp_ms as f64 / 1000.0))
        }
        "ts_of_first_over_time" => {
            |window, _| Ok(window.samples.first().map(|sample| sample.timestamp_ms as f64 / 1000.0))
        }
        "present_over_time" => |_, _| Ok(Some(1.0)),
        "absent_over_time" => |_, _| Ok(None),
        "quantile_over_time" => |window, parameters| {
            let mut values: Vec<f64> = window.samples.iter().map(|sample| sample.value).collect();
            Ok(Some(quantile(parameters[0], &mut values)))
        },
        "stddev_over_time" => |window, _| Ok(Some(variance(window.samples).sqrt())),
        "stdvar_over_time" => |window, _| Ok(Some(variance(window.samples))),
        "mad_over_time" => |window, _| {
            let mut values: Vec<f64> = window.samples.iter().map(|sample| sample.value).collect();
            if values.iter().any(|value| value.is_nan()) {
                return Ok(Some(f64::NAN));
            }
            let median = quantile(0.5, &mut values);
            let mut deviations: Vec<f64> = values.iter().map(|value| (value - median).abs()).collect();
            Ok(Some(quantile(0.5, &mut deviations)))
        },
        "double_exponential_smoothing" => {
            |window, parameters| double_exponential_smoothing(window.samples, parameters[0], parameters[1])
        }
        _ => return None,
    })
}

/// `rate`, `increase` and `delta` (Prometheus `extrapolatedRate`): the change over the window,
/// corrected for counter resets, extrapolated towards the window's edges by at most half the
/// average sample interval, and not below zero for counters.
fn extrapolated_rate(window: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let samples = window.samples;
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let mut result = last.value - first.value;
    if is_counter {
        for pair in samples.windows(2) {
            if pair[1].value < pair[0].value {
                result += pair[0].value;
            }
        }
    }
    let range_start_ms = window.end_ms.saturating_sub(window.range_ms);
    let mut duration_to_start = (first.timestamp_ms - range_start_ms) as f64 / 1000.0;
    let mut duration_to_end = (window.end_ms - last.timestamp_ms) as f64 / 1000.0;
    let sampled_interval = (last.timestamp_ms - first.timestamp_ms) as f64 / 1000.0;
    let average_interval = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_interval * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_interval / 2.0;
    }
    if is_counter && result > 0.0 && first.value >= 0.0 {
        let duration_to_zero = sampled_interval * (first.value / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_interval / 2.0;
    }
    let mut factor = if sampled_interval != 0.0 {
        (sampled_interval + duration_to_start + duration_to_end) / sampled_interval
    } else {
        1.0
    };
    if is_rate {
        factor /= window.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta` (Prometheus `instantValue`): the last two samples.
fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (previous, last) = (samples[samples.len() - 2], samples[samples.len() - 1]);
    let interval_ms = last.timestamp_ms - previous.timestamp_ms;
    if interval_ms == 0 {
        return None;
    }
    let mut value = last.value;
    if !is_rate || last.value >= previous.value || last.value.is_nan() || previous.value.is_nan() {
        value = last.value - previous.value;
    }
    if is_rate {
        value /= interval_ms as f64 / 1000.0;
    }
    Some(value)
}

/// Least-squares fit of value over time (seconds from `intercept_ms`): (slope, intercept).
fn linear_regression(samples: &[Sample], intercept_ms: i64) -> (f64, f64) {
    let initial = samples[0].value;
    let constant = samples.iter().all(|sample| sample.value == initial);
    if constant {
        if initial.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial);
    }
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y, mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for sample in samples {
        n += 1.0;
        let x = (sample.timestamp_ms - intercept_ms) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(sample.value, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * sample.value, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let covariance = sum_xy - sum_x * sum_y / n;
    let variance_x = sum_x2 - sum_x * sum_x / n;
    let slope = covariance / variance_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Kahan-compensated mean, switching to an incremental mean on overflow (Prometheus
/// `funcAvgOverTime`).
fn average(samples: &[Sample]) -> f64 {
    let (mut sum, mut count, mut mean, mut compensation, mut incremental) = (samples[0].value, 1.0, 0.0, 0.0, false);
    for sample in &samples[1..] {
        count += 1.0;
        if !incremental {
            let (new_sum, new_compensation) = kahan_inc(sample.value, sum, compensation);
            if !new_sum.is_infinite() {
                (sum, compensation) = (new_sum, new_compensation);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            compensation /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, compensation) = kahan_inc(sample.value / count, q * mean, q * compensation);
    }
    if incremental {
        mean + compensation
    } else {
        sum / count + compensation / count
    }
}

/// (time, value) of the sample `better` prefers; NaN loses to any number.
fn extreme(samples: &[Sample], better: fn(f64, f64) -> bool) -> (i64, f64) {
    let mut best = samples[0];
    for sample in samples {
        if better(sample.value, best.value) || best.value.is_nan() {
            best = *sample;
        }
    }
    (best.timestamp_ms, best.value)
}

/// Population variance with Kahan-compensated Welford updates (Prometheus `varianceOverTime`).
fn variance(samples: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for sample in samples {
        count += 1.0;
        let delta = sample.value - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (sample.value - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// Holt's linear smoothing (Prometheus `funcDoubleExponentialSmoothing`).
fn double_exponential_smoothing(samples: &[Sample], smoothing: f64, trend: f64) -> Result<Option<f64>, QueryError> {
    if smoothing.is_nan() || smoothing <= 0.0 || smoothing >= 1.0 {
        return Err(QueryError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {smoothing:.6}"
        )));
    }
    if trend.is_nan() || trend <= 0.0 || trend >= 1.0 {
        return Err(QueryError::Execution(format!("invalid trend factor. Expected: 0 < tf < 1, got: {trend:.6}")));
    }
    if samples.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1, mut b) = (0.0, samples[0].value, samples[1].value - samples[0].value);
    for (index, sample) in samples.iter().enumerate().skip(1) {
        let x = smoothing * sample.value;
        if index > 1 {
            b = trend * (s1 - s0) + (1.0 - trend) * b;
        }
        let y = (1.0 - smoothing) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

/// Buckets of one classic histogram at one step.
struct Buckets {
    labels: Labels,
    buckets: Vec<(f64, f64)>,
}

/// Groups `le` buckets by their labels without `le`; samples whose `le` does not parse are
/// left out (upstream warns).
fn group_buckets(vector: &[StepSample<'_>], notes: &mut Vec<(bool, String)>) -> Vec<Buckets> {
    let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<Buckets> = Vec::new();
    for sample in vector {
        let Some(upper_bound) = sample.labels.get("le").and_then(parse_go_float) else {
            notes.push((
                false,
                format!(
                    "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?}{}",
                    sample.labels.get("le").unwrap_or(""),
                    for_metric_name(sample.labels)
                ),
            ));
            continue;
        };
        let mut labels = sample.labels.clone();
        labels.set("le", "");
        match index_by_labels.get(&labels) {
            Some(index) => groups[*index].buckets.push((upper_bound, sample.value)),
            None => {
                index_by_labels.insert(labels.clone(), groups.len());
                groups.push(Buckets { labels, buckets: vec![(upper_bound, sample.value)] });
            }
        }
    }
    groups
}

/// Go's `strconv.ParseFloat` for the forms bucket bounds take.
fn parse_go_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn histogram_quantile<'a>(q: f64, vector: &[StepSample<'a>], notes: &mut Vec<(bool, String)>) -> Vec<OutSample<'a>> {
    let groups = group_buckets(vector, notes);
    let mut out = Vec::with_capacity(groups.len());
    for mut group in groups {
        let (value, forced_monotonic) = bucket_quantile(q, &mut group.buckets);
        if forced_monotonic {
            notes.push((
                true,
                format!(
                    "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile){}",
                    for_metric_name(&group.labels)
                ),
            ));
        }
        out.push(OutSample { labels: Cow::Owned(group.labels), drop_name: true, value });
    }
    out
}

/// Prometheus' `maybeAddMetricName` suffix.
fn for_metric_name(labels: &Labels) -> String {
    match labels.metric_name() {
        Some(name) => format!(" for metric name {name:?}"),
        None => String::new(),
    }
}

fn histogram_fraction<'a>(
    lower: f64,
    upper: f64,
    vector: &[StepSample<'a>],
    notes: &mut Vec<(bool, String)>,
) -> Vec<OutSample<'a>> {
    group_buckets(vector, notes)
        .into_iter()
        .map(|mut group| OutSample {
            labels: Cow::Owned(group.labels),
            drop_name: true,
            value: bucket_fraction(lower, upper, &mut group.buckets),
        })
        .collect()
}

fn sort_and_coalesce(buckets: &mut Vec<(f64, f64)>) {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(bound, count) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    *buckets = merged;
}

/// Prometheus `BucketQuantile`: linear interpolation inside the bucket holding the rank, after
/// forcing the cumulative counts to be monotonic.
fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().is_none_or(|last| last.0 != f64::INFINITY) {
        return (f64::NAN, false);
    }
    sort_and_coalesce(buckets);
    // Ensure monotonic counts, ignoring tiny float noise.
    let mut previous = buckets[0].1;
    let mut forced_monotonic = false;
    for bucket in buckets.iter_mut().skip(1) {
        let current = bucket.1;
        if current == previous {
            continue;
        }
        if almost_equal(previous, current, 1e-12) {
            bucket.1 = previous;
            continue;
        }
        if current < previous {
            bucket.1 = previous;
            forced_monotonic = true;
            continue;
        }
        previous = current;
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced_monotonic);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced_monotonic);
    }
    let mut rank = q * observations;
    let index = buckets[..buckets.len() - 1].partition_point(|bucket| bucket.1 < rank);
    if index == buckets.len() - 1 {
        return (buckets[buckets.len() - 2].0, forced_monotonic);
    }
    if index == 0 && buckets[0].0 <= 0.0 {
        return (buckets[0].0, forced_monotonic);
    }
    let (mut bucket_start, bucket_end, mut count) = (0.0, buckets[index].0, buckets[index].1);
    if index > 0 {
        bucket_start = buckets[index - 1].0;
        count -= buckets[index - 1].1;
        rank -= buckets[index - 1].1;
    }
    (bucket_start + (bucket_end - bucket_start) * (rank / count), forced_monotonic)
}

/// Prometheus `almost.Equal`.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let sum = a.abs() + b.abs();
    let difference = (a - b).abs();
    if a == 0.0 || b == 0.0 || sum < MIN_NORMAL {
        return difference < epsilon * MIN_NORMAL;
    }
    difference / sum.min(f64::MAX) < epsilon
}

/// Prometheus `BucketFraction`: the estimated share of observations in `[lower, upper]`.
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
    if buckets.last().is_none_or(|last| last.0 != f64::INFINITY) {
        return f64::NAN;
    }
    sort_and_coalesce(buckets);
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].0 <= 0.0 { f64::NEG_INFINITY } else { 0.0 };
    for (index, &(upper_bound, bucket_count)) in buckets.iter().enumerate() {
        if index > 0 {
            lower_bound = buckets[index - 1].0;
        }
        let interpolate = |value: f64| {
            if lower_bound == f64::NEG_INFINITY {
                return bucket_count;
            }
            rank + (bucket_count - rank) * (value - lower_bound) / (upper_bound - lower_bound)
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bucket_count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// A calendar field of a Unix time in seconds, in UTC (Prometheus' date functions).
fn date_part(name: &str, seconds: i64) -> f64 {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (match name {
        "year" => year,
        "month" => month,
        "day_of_month" => day,
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_year" => month_lengths[..(month - 1) as usize].iter().sum::<i64>() + day,
        "days_in_month" => month_lengths[(month - 1) as usize],
        "hour" => second_of_day / 3600,
        "minute" => second_of_day % 3600 / 60,
        _ => 0,
    }) as f64
}

fn string_arg(args: &[&Expr], index: usize, function: &str) -> Result<String, QueryError> {
    match args.get(index) {
        Some(Expr::StringLiteral(literal)) => Ok(literal.val.clone()),
        _ => Err(QueryError::BadData(format!("{function}() expects a string as argument {}", index + 1))),
    }
}

/// Merges series that relabelling made equal; points at the same step collide.
fn merge_same_labels(series: Vec<Series>) -> Result<Vec<Series>, QueryError> {
    let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut output: Vec<Series> = Vec::with_capacity(series.len());
    for series in series {
        match index_by_labels.get(&series.labels) {
            Some(&index) => {
                let target = &mut output[index];
                target.points.extend(series.points);
                target.points.sort_by_key(|point| point.timestamp_ms);
                if target.points.windows(2).any(|pair| pair[0].timestamp_ms == pair[1].timestamp_ms) {
                    return Err(duplicate_labelset());
                }
            }
            None => {
                index_by_labels.insert(series.labels.clone(), output.len());
                output.push(series);
            }
        }
    }
    Ok(output)
}

/// `positions`: the call's place in the query text, to check the destination literal's bytes.
fn label_replace(
    ev: &mut Evaluator<'_>,
    args: &[&Expr],
    positions: Option<&position::NodePositions>,
) -> Result<Val, QueryError> {
    let destination = string_arg(args, 1, "label_replace")?;
    // Go reads "\xff" as the byte 0xFF: not valid UTF-8, so not a label name.
    let destination_offset = positions.and_then(|positions| positions.arg_offsets.get(1).copied());
    if destination_offset.is_some_and(|offset| !ev.literal_is_utf8(offset)) {
        return Err(QueryError::Execution(format!("invalid destination label name in label_replace(): {destination}")));
    }
    let replacement = string_arg(args, 2, "label_replace")?;
    let source = string_arg(args, 3, "label_replace")?;
    let pattern = string_arg(args, 4, "label_replace")?;
    let regex = regex::Regex::new(&format!("^(?s:{pattern})$"))
        .map_err(|_| QueryError::Execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
    if destination.is_empty() {
        return Err(QueryError::Execution(format!("invalid destination label name in label_replace(): {destination}")));
    }
    let Val::Vector(mut series) = ev.eval(args[0])? else {
        return Err(QueryError::BadData("label_replace() needs an instant vector".to_string()));
    };
    for series in &mut series {
        let value = series.labels.get(&source).unwrap_or("").to_string();
        if let Some(captures) = regex.captures(&value) {
            let mut expanded = String::new();
            captures.expand(&replacement, &mut expanded);
            series.labels.set(&destination, &expanded);
            if destination == METRIC_NAME_LABEL {
                series.drop_name = false;
            }
        }
    }
    merge_same_labels(series).map(Val::Vector)
}

fn label_join(ev: &mut Evaluator<'_>, args: &[&Expr]) -> Result<Val, QueryError> {
    let destination = string_arg(args, 1, "label_join")?;
    let separator = string_arg(args, 2, "label_join")?;
    let sources: Vec<String> =
        (3..args.len()).map(|index| string_arg(args, index, "label_join")).collect::<Result<_, _>>()?;
    if destination.is_empty() {
        return Err(QueryError::Execution(format!("invalid destination label name in label_join(): {destination}")));
    }
    let Val::Vector(mut series) = ev.eval(args[0])? else {
        return Err(QueryError::BadData("label_join() needs an instant vector".to_string()));
    };
    for series in &mut series {
        let joined: Vec<&str> = sources.iter().map(|source| series.labels.get(source).unwrap_or("")).collect();
        let joined = joined.join(&separator);
        series.labels.set(&destination, &joined);
        if destination == METRIC_NAME_LABEL {
            series.drop_name = false;
        }
    }
    merge_same_labels(series).map(Val::Vector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_date(seconds: i64, expected: [f64; 8]) {
        let names = ["year", "month", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute"];
        for (name, want) in names.iter().zip(expected) {
            assert_eq!(date_part(name, seconds), want, "{name}({seconds})");
        }
    }

    #[test]
    fn dates() {
        check_date(0, [1970.0, 1.0, 1.0, 4.0, 1.0, 31.0, 0.0, 0.0]);
        // 2024-02-29T13:45:00Z, a Thursday.
        check_date(1_709_214_300, [2024.0, 2.0, 29.0, 4.0, 60.0, 29.0, 13.0, 45.0]);
        // 1969-12-31T23:59:59Z.
        check_date(-1, [1969.0, 12.0, 31.0, 3.0, 365.0, 31.0, 23.0, 59.0]);
    }

    #[track_caller]
    fn check_quantile(q: f64, buckets: &[(f64, f64)], expected: f64) {
        let (got, _) = bucket_quantile(q, &mut buckets.to_vec());
        assert!((got - expected).abs() < 1e-9 || (got.is_nan() && expected.is_nan()), "{q}: {got} != {expected}");
    }

    #[test]
    fn bucket_quantiles() {
        let buckets = [(0.1, 10.0), (0.5, 50.0), (1.0, 90.0), (f64::INFINITY, 100.0)];
        check_quantile(0.5, &buckets, 0.5);
        check_quantile(0.05, &buckets, 0.05);
        check_quantile(0.95, &buckets, 1.0);
        check_quantile(0.5, &[(1.0, 5.0)], f64::NAN);
        // Non-monotonic counts are forced up, and say so.
        check_quantile(0.5, &[(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 20.0)], 1.0);
        assert!(bucket_quantile(0.5, &mut vec![(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 20.0)]).1);
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), Ordering::Less);
        assert_eq!(natural_cmp("a10", "a10"), Ordering::Equal);
        assert_eq!(natural_cmp("b", "a10"), Ordering::Greater);
    }

    #[test]
    fn rate_extrapolates_to_the_window_edges() {
        let samples: Vec<Sample> =
            (0..=5).map(|index| Sample { timestamp_ms: index * 60_000, value: index as f64 * 60.0 }).collect();
        let window = Window { samples: &samples[1..], step_ms: 300_000, end_ms: 300_000, range_ms: 300_000 };
        // 4 intervals of 60 s cover 240 s of the 300 s window; the start extrapolates 60 s
        // (under 1.1 average intervals), so the increase is 240 * 300 / 240.
        let rate = extrapolated_rate(&window, true, true).unwrap();
        assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        let delta = extrapolated_rate(&window, false, false).unwrap();
        assert!((delta - 300.0).abs() < 1e-9, "{delta}");
    }
}
