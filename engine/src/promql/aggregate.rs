//! Aggregations, as Prometheus' `aggregation`, `aggregationK` and `aggregationCountValues`
//! (promql/engine.go): sum, avg, min, max, group, count, stddev, stdvar, quantile, topk,
//! bottomk, limitk, limit_ratio and count_values, with `by` and `without`.
//!
//! Invariants: groups are formed per step from the grouping labels (`by` keeps the listed
//! labels, `without` drops them and `__name__`); sums use Kahan-Neumaier compensation and avg
//! falls back to an incremental mean on overflow, as upstream; topk/bottomk/limitk keep the
//! input series' labels; groups come out in the order they were first seen.
//!
//! Concurrency: pure functions over one step's vector.

use std::borrow::Cow;
use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::eval::{Evaluator, OutSample, StepArg, StepSample, Val};
use super::QueryError;
use crate::model::{Labels, METRIC_NAME_LABEL};

/// Kahan-Neumaier addition (Prometheus `kahansum.Inc`): returns the new sum and compensation.
pub(super) fn kahan_inc(increment: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let total = sum + increment;
    let compensation = if total.is_infinite() {
        0.0
    } else if sum.abs() >= increment.abs() {
        compensation + ((sum - total) + increment)
    } else {
        compensation + ((increment - total) + sum)
    };
    (total, compensation)
}

/// The `q`-quantile of `values` by linear interpolation between ranks (Prometheus `quantile`).
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.total_cmp(b),
    });
    let count = values.len() as f64;
    let rank = q * (count - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(count - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum AggregateOp {
    Sum,
    Avg,
    Min,
    Max,
    Group,
    Count,
    Stddev,
    Stdvar,
    Quantile,
    Topk,
    Bottomk,
    Limitk,
    LimitRatio,
    CountValues,
}

fn aggregate_op(text: &str) -> Option<AggregateOp> {
    Some(match text {
        "sum" => AggregateOp::Sum,
        "avg" => AggregateOp::Avg,
        "min" => AggregateOp::Min,
        "max" => AggregateOp::Max,
        "group" => AggregateOp::Group,
        "count" => AggregateOp::Count,
        "stddev" => AggregateOp::Stddev,
        "stdvar" => AggregateOp::Stdvar,
        "quantile" => AggregateOp::Quantile,
        "topk" => AggregateOp::Topk,
        "bottomk" => AggregateOp::Bottomk,
        "limitk" => AggregateOp::Limitk,
        "limit_ratio" => AggregateOp::LimitRatio,
        "count_values" => AggregateOp::CountValues,
        _ => return None,
    })
}

/// Grouping by `by(...)` or `without(...)`.
struct Grouping {
    without: bool,
    names: Vec<String>,
}

impl Grouping {
    fn keeps(&self, name: &str) -> bool {
        if self.without {
            name != METRIC_NAME_LABEL && !self.names.iter().any(|listed| listed == name)
        } else {
            self.names.iter().any(|listed| listed == name)
        }
    }

    fn key(&self, labels: &Labels) -> String {
        let mut key = String::new();
        for label in labels.iter().filter(|label| self.keeps(&label.name)) {
            key.push_str(&label.name);
            key.push('\u{ff}');
            key.push_str(&label.value);
            key.push('\u{fe}');
        }
        key
    }

    fn labels(&self, labels: &Labels) -> Labels {
        Labels::from_pairs(
            labels
                .iter()
                .filter(|label| self.keeps(&label.name))
                .map(|label| (label.name.clone(), label.value.clone())),
        )
    }
}

/// Running state of one group at one step.
struct Group<'a> {
    labels: Labels,
    drop_name: bool,
    value: f64,
    compensation: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    members: Vec<StepSample<'a>>,
}

pub(super) fn eval_aggregate(ev: &mut Evaluator<'_>, aggregate: &AggregateExpr) -> Result<Val, QueryError> {
    let op_text = aggregate.op.to_string();
    let op = aggregate_op(&op_text)
        .ok_or_else(|| QueryError::Execution(format!("aggregation {op_text} is not supported yet")))?;
    let grouping = match &aggregate.modifier {
        Some(LabelModifier::Include(names)) => Grouping { without: false, names: names.labels.clone() },
        Some(LabelModifier::Exclude(names)) => Grouping { without: true, names: names.labels.clone() },
        None => Grouping { without: false, names: Vec::new() },
    };
    if op == AggregateOp::CountValues {
        let label_name = match aggregate.param.as_deref() {
            Some(Expr::StringLiteral(literal)) => literal.val.clone(),
            _ => return Err(QueryError::BadData("count_values needs a string label name".to_string())),
        };
        if !valid_label_name(&label_name) {
            return Err(QueryError::Execution(format!("invalid label name {label_name:?}")));
        }
        let input = ev.eval(&aggregate.expr)?;
        let args = [input];
        let result = ev.range_eval(&args, |step, _| Ok(count_values(step[0].vector(), &grouping, &label_name)))?;
        ev.release(&args[0]);
        return Ok(Val::Vector(result));
    }
    let param = match (&aggregate.param, op) {
        (
            Some(param),
            AggregateOp::Quantile
            | AggregateOp::Topk
            | AggregateOp::Bottomk
            | AggregateOp::Limitk
            | AggregateOp::LimitRatio,
        ) => Some(ev.eval_scalar(param)?),
        _ => None,
    };
    let input = ev.eval(&aggregate.expr)?;
    let args = match param {
        Some(values) => vec![input, Val::Scalar(values)],
        None => vec![input],
    };
    let result = ev.range_eval(&args, |step, _| {
        let parameter = step.get(1).map(StepArg::scalar).unwrap_or(f64::NAN);
        aggregate_step(op, step[0].vector(), &grouping, parameter)
    })?;
    ev.release(&args[0]);
    Ok(Val::Vector(result))
}

/// Prometheus' (UTF-8) label name rule: any non-empty valid UTF-8 string.
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// 2^63: the first float past `i64::MAX`.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn aggregate_step<'a>(
    op: AggregateOp,
    vector: &[StepSample<'a>],
    grouping: &Grouping,
    parameter: f64,
) -> Result<Vec<OutSample<'a>>, QueryError> {
    let mut k_count = 0usize;
    let mut ratio = 0.0;
    match op {
        AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk => {
            if parameter.is_nan() {
                return Err(QueryError::Execution("Parameter value is NaN".to_string()));
            }
            if !(-I64_BOUND..I64_BOUND).contains(&parameter) {
                return Err(QueryError::Execution(format!("Scalar value {parameter} overflows int64")));
            }
            if parameter < 1.0 {
                return Ok(Vec::new());
            }
            k_count = (parameter as i64).min(vector.len() as i64) as usize;
        }
        AggregateOp::LimitRatio => {
            if parameter.is_nan() {
                return Err(QueryError::Execution("Ratio value is NaN".to_string()));
            }
            ratio = parameter.clamp(-1.0, 1.0);
            if ratio == 0.0 {
                return Ok(Vec::new());
            }
        }
        _ => {}
    }
    let mut index_by_key: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Group<'a>> = Vec::new();
    for sample in vector {
        let key = grouping.key(sample.labels);
        let index = match index_by_key.get(&key) {
            Some(index) => *index,
            None => {
                index_by_key.insert(key, groups.len());
                let value = sample.value;
                groups.push(Group {
                    labels: grouping.labels(sample.labels),
                    drop_name: sample.drop_name,
                    value: match op {
                        AggregateOp::Group => 1.0,
                        AggregateOp::Stddev | AggregateOp::Stdvar if !value.is_finite() => f64::NAN,
                        AggregateOp::Stddev | AggregateOp::Stdvar => 0.0,
                        _ => value,
                    },
                    compensation: 0.0,
                    mean: value,
                    count: 1.0,
                    incremental_mean: false,
                    values: vec![value],
                    members: vec![*sample],
                });
                continue;
            }
        };
        let group = &mut groups[index];
        group.drop_name |= sample.drop_name;
        let value = sample.value;
        match op {
            AggregateOp::Sum => (group.value, group.compensation) = kahan_inc(value, group.value, group.compensation),
            AggregateOp::Avg => {
                group.count += 1.0;
                if !group.incremental_mean {
                    let (sum, compensation) = kahan_inc(value, group.value, group.compensation);
                    if !sum.is_infinite() {
                        (group.value, group.compensation) = (sum, compensation);
                        continue;
                    }
                    group.incremental_mean = true;
                    group.mean = group.value / (group.count - 1.0);
                    group.compensation /= group.count - 1.0;
                }
                let q = (group.count - 1.0) / group.count;
                (group.mean, group.compensation) =
                    kahan_inc(value / group.count, q * group.mean, q * group.compensation);
            }
            AggregateOp::Max => {
                if group.value < value || group.value.is_nan() {
                    group.value = value;
                }
            }
            AggregateOp::Min => {
                if group.value > value || group.value.is_nan() {
                    group.value = value;
                }
            }
            AggregateOp::Count => group.count += 1.0,
            AggregateOp::Group => {}
            AggregateOp::Stddev | AggregateOp::Stdvar => {
                group.count += 1.0;
                let delta = value - group.mean;
                group.mean += delta / group.count;
                group.value += delta * (value - group.mean);
            }
            AggregateOp::Quantile => group.values.push(value),
            AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk | AggregateOp::LimitRatio => {
                group.members.push(*sample)
            }
            AggregateOp::CountValues => {}
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut group in groups {
        let value = match op {
            AggregateOp::Sum => {
                if group.value.is_infinite() {
                    group.value
                } else {
                    group.value + group.compensation
                }
            }
            AggregateOp::Avg => {
                if group.incremental_mean {
                    group.mean + group.compensation
                } else {
                    group.value / group.count + group.compensation / group.count
                }
            }
            AggregateOp::Count => group.count,
            AggregateOp::Stdvar => group.value / group.count,
            AggregateOp::Stddev => (group.value / group.count).sqrt(),
            AggregateOp::Quantile => quantile(parameter, &mut group.values),
            AggregateOp::Min | AggregateOp::Max | AggregateOp::Group => group.value,
            AggregateOp::Topk | AggregateOp::Bottomk => {
                select_k(&mut group.members, k_count, op == AggregateOp::Topk);
                out.extend(group.members.iter().map(|sample| OutSample::keep(sample, sample.value)));
                continue;
            }
            AggregateOp::Limitk => {
                out.extend(group.members.iter().take(k_count).map(|sample| OutSample::keep(sample, sample.value)));
                continue;
            }
            AggregateOp::LimitRatio => {
                out.extend(
                    group
                        .members
                        .iter()
                        .filter(|sample| ratio_selects(ratio, sample.labels))
                        .map(|sample| OutSample::keep(sample, sample.value)),
                );
                continue;
            }
            AggregateOp::CountValues => continue,
        };
        out.push(OutSample { labels: Cow::Owned(group.labels), drop_name: group.drop_name, value });
    }
    Ok(out)
}

/// Keeps the `k` largest (`top`) or smallest values, NaN least preferred, ordered best first
/// as Prometheus' heaps come out. Ties keep input order.
fn select_k(members: &mut Vec<StepSample<'_>>, k: usize, top: bool) {
    members.sort_by(|a, b| {
        let (x, y) = (a.value, b.value);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) if top => y.total_cmp(&x),
            (false, false) => x.total_cmp(&y),
        }
    });
    members.truncate(k);
}

/// Whether `limit_ratio(ratio, ...)` keeps the series: a stable position of the labels in
/// `[0, 1)` below `ratio` (or at or above `1 + ratio` for a negative ratio), so the same
/// series are kept at every step and `limit_ratio(r)` and `limit_ratio(r - 1)` partition them.
fn ratio_selects(ratio: f64, labels: &Labels) -> bool {
    // FNV-1a over the label pairs: deterministic across processes.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for label in labels.iter() {
        for byte in label.name.bytes().chain([0xff]).chain(label.value.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let position = hash as f64 / u64::MAX as f64;
    if ratio >= 0.0 {
        position < ratio
    } else {
        position >= 1.0 + ratio
    }
}

/// Go's `strconv.FormatFloat(value, 'f', -1, 64)`.
pub(super) fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

fn count_values<'a>(vector: &[StepSample<'a>], grouping: &Grouping, label_name: &str) -> Vec<OutSample<'a>> {
    let mut index_by_key: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(Labels, f64)> = Vec::new();
    let value_grouping = Grouping {
        without: grouping.without,
        names: if grouping.without {
            grouping.names.iter().filter(|name| *name != label_name).cloned().collect()
        } else {
            grouping.names.iter().cloned().chain([label_name.to_string()]).collect()
        },
    };
    for sample in vector {
        let mut labels = sample.labels.clone();
        labels.set(label_name, &format_float(sample.value));
        let key = value_grouping.key(&labels);
        match index_by_key.get(&key) {
            Some(index) => groups[*index].1 += 1.0,
            None => {
                index_by_key.insert(key, groups.len());
                groups.push((value_grouping.labels(&labels), 1.0));
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, count)| OutSample { labels: Cow::Owned(labels), drop_name: false, value: count })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_quantile(q: f64, values: &[f64], expected: f64) {
        let got = quantile(q, &mut values.to_vec());
        assert!(got == expected || (got.is_nan() && expected.is_nan()), "quantile({q}, {values:?}) = {got}");
    }

    #[test]
    fn quantiles() {
        check_quantile(0.5, &[1.0, 2.0, 3.0, 4.0], 2.5);
        check_quantile(0.0, &[3.0, 1.0], 1.0);
        check_quantile(1.0, &[3.0, 1.0], 3.0);
        check_quantile(-1.0, &[1.0], f64::NEG_INFINITY);
        check_quantile(2.0, &[1.0], f64::INFINITY);
        check_quantile(0.5, &[], f64::NAN);
    }

    #[test]
    fn kahan_keeps_small_terms() {
        let (sum, compensation) = [1.0, 1e100, 1.0, -1e100]
            .into_iter()
            .fold((0.0, 0.0), |(sum, compensation), value| kahan_inc(value, sum, compensation));
        assert_eq!(sum + compensation, 2.0);
    }

    #[test]
    fn float_formatting_matches_go() {
        for (value, text) in
            [(1.0, "1"), (0.5, "0.5"), (f64::INFINITY, "+Inf"), (-2.25, "-2.25"), (1e21, "1000000000000000000000")]
        {
            assert_eq!(format_float(value), text);
        }
    }
}
