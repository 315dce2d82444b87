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

use super::eval::{Evaluator, OutSample, Series, StepSample, Val};
use super::QueryError;
use crate::model::{Labels, Sample, METRIC_NAME_LABEL};

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

/// Running state of one group at one step; reused across steps.
#[derive(Default)]
struct Group {
    seen: bool,
    drop_name: bool,
    value: f64,
    compensation: f64,
    mean: f64,
    count: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    /// (input series index, value) for topk, bottomk, limitk and limit_ratio.
    members: Vec<(usize, f64)>,
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
    let parameters = match (&aggregate.param, op) {
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
    if op == AggregateOp::Quantile {
        if let Some(q) = parameters.iter().flatten().find(|q| !(0.0..=1.0).contains(*q)) {
            // Prometheus points at the parameter, the aggregation's first argument.
            let parameter =
                ev.node_positions(aggregate as *const AggregateExpr as usize).and_then(|p| p.args.first().copied());
            ev.warn(format!("{}{}", invalid_quantile(*q), super::position::suffix(parameter)));
        }
    }
    let input = ev.eval(&aggregate.expr)?;
    let Val::Vector(series) = &input else {
        return Err(QueryError::BadData(format!("expected an instant vector in aggregation {op_text}")));
    };
    let result = aggregate_series(ev, op, series, &grouping, parameters.as_deref())?;
    ev.release(&input);
    Ok(Val::Vector(result))
}

/// Aggregates step by step (Prometheus `rangeEvalAgg`): each input series' group is found once,
/// then every step folds the series present at it into their groups.
fn aggregate_series(
    ev: &mut Evaluator<'_>,
    op: AggregateOp,
    series: &[Series],
    grouping: &Grouping,
    parameters: Option<&[f64]>,
) -> Result<Vec<Series>, QueryError> {
    let mut index_by_key: HashMap<String, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let group_of: Vec<usize> = series
        .iter()
        .map(|series| {
            let key = grouping.key(&series.labels);
            *index_by_key.entry(key).or_insert_with(|| {
                group_labels.push(grouping.labels(&series.labels));
                group_labels.len() - 1
            })
        })
        .collect();
    let mut groups: Vec<Group> = (0..group_labels.len()).map(|_| Group::default()).collect();
    // Output series: one per group, or one per input series for the k-selecting operators.
    let selects_series =
        matches!(op, AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk | AggregateOp::LimitRatio);
    let mut output_index: Vec<Option<usize>> = vec![None; if selects_series { series.len() } else { groups.len() }];
    let mut output: Vec<Series> = Vec::new();
    let mut cursors = vec![0usize; series.len()];
    let mut touched: Vec<usize> = Vec::new();
    let steps: Vec<i64> = ev.range.steps().collect();
    for (step_index, &step_ms) in steps.iter().enumerate() {
        let parameter = parameters.and_then(|values| values.get(step_index).copied()).unwrap_or(f64::NAN);
        let (k_count, ratio) = k_parameters(op, parameter, series.len())?;
        if selects_series && k_count == 0 && ratio == 0.0 {
            // Nothing is selected at this step; the cursors still advance.
            for (cursor, series) in cursors.iter_mut().zip(series) {
                if series.points.get(*cursor).is_some_and(|point| point.timestamp_ms == step_ms) {
                    *cursor += 1;
                }
            }
            continue;
        }
        touched.clear();
        for (series_index, input) in series.iter().enumerate() {
            let Some(point) = input.points.get(cursors[series_index]).filter(|point| point.timestamp_ms == step_ms)
            else {
                continue;
            };
            cursors[series_index] += 1;
            let group_index = group_of[series_index];
            let group = &mut groups[group_index];
            let value = point.value;
            if !group.seen {
                touched.push(group_index);
                group.seen = true;
                group.drop_name = input.drop_name;
                group.value = match op {
                    AggregateOp::Group => 1.0,
                    AggregateOp::Stddev | AggregateOp::Stdvar if !value.is_finite() => f64::NAN,
                    AggregateOp::Stddev | AggregateOp::Stdvar => 0.0,
                    _ => value,
                };
                group.compensation = 0.0;
                group.mean = value;
                group.count = 1.0;
                group.incremental_mean = false;
                group.values.clear();
                group.values.push(value);
                group.members.clear();
                group.members.push((series_index, value));
                continue;
            }
            group.drop_name |= input.drop_name;
            fold(op, group, series_index, value);
        }
        for &group_index in &touched {
            let group = &mut groups[group_index];
            group.seen = false;
            if selects_series {
                let members = select_members(op, group, k_count, ratio, series);
                ev.count_samples(members.len())?;
                for (series_index, value) in members {
                    let index = *output_index[series_index].get_or_insert_with(|| {
                        output.push(Series {
                            labels: series[series_index].labels.clone(),
                            drop_name: series[series_index].drop_name,
                            points: Vec::new(),
                        });
                        output.len() - 1
                    });
                    output[index].points.push(Sample { timestamp_ms: step_ms, value });
                }
                continue;
            }
            let value = finish(op, group, parameter);
            ev.count_samples(1)?;
            let index = *output_index[group_index].get_or_insert_with(|| {
                output.push(Series { labels: group_labels[group_index].clone(), drop_name: false, points: Vec::new() });
                output.len() - 1
            });
            output[index].drop_name |= group.drop_name;
            output[index].points.push(Sample { timestamp_ms: step_ms, value });
        }
    }
    Ok(output)
}

/// `k` for topk/bottomk/limitk and the ratio for limit_ratio at one step; (0, 0) selects
/// nothing. Errors are worded as Prometheus' `newFParams`.
fn k_parameters(op: AggregateOp, parameter: f64, series_count: usize) -> Result<(usize, f64), QueryError> {
    match op {
        AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk => {
            if parameter.is_nan() {
                return Err(QueryError::Execution("Parameter value is NaN".to_string()));
            }
            if !(-I64_BOUND..I64_BOUND).contains(&parameter) {
                return Err(QueryError::Execution(format!("Scalar value {parameter} overflows int64")));
            }
            if parameter < 1.0 {
                return Ok((0, 0.0));
            }
            Ok(((parameter as i64).min(series_count as i64) as usize, 0.0))
        }
        AggregateOp::LimitRatio => {
            if parameter.is_nan() {
                return Err(QueryError::Execution("Ratio value is NaN".to_string()));
            }
            Ok((0, parameter.clamp(-1.0, 1.0)))
        }
        _ => Ok((0, 0.0)),
    }
}

/// Folds one more sample into a group that has seen one already.
fn fold(op: AggregateOp, group: &mut Group, series_index: usize, value: f64) {
    match op {
        AggregateOp::Sum => (group.value, group.compensation) = kahan_inc(value, group.value, group.compensation),
        AggregateOp::Avg => {
            group.count += 1.0;
            if !group.incremental_mean {
                let (sum, compensation) = kahan_inc(value, group.value, group.compensation);
                if !sum.is_infinite() {
                    (group.value, group.compensation) = (sum, compensation);
                    return;
                }
                group.incremental_mean = true;
                group.mean = group.value / (group.count - 1.0);
                group.compensation /= group.count - 1.0;
            }
            let q = (group.count - 1.0) / group.count;
            (group.mean, group.compensation) = kahan_inc(value / group.count, q * group.mean, q * group.compensation);
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
        AggregateOp::Stddev | AggregateOp::Stdvar => {
            group.count += 1.0;
            let delta = value - group.mean;
            group.mean += delta / group.count;
            group.value += delta * (value - group.mean);
        }
        AggregateOp::Quantile => group.values.push(value),
        AggregateOp::Topk | AggregateOp::Bottomk | AggregateOp::Limitk | AggregateOp::LimitRatio => {
            group.members.push((series_index, value))
        }
        AggregateOp::Group | AggregateOp::CountValues => {}
    }
}

/// The value a group aggregates to at this step.
fn finish(op: AggregateOp, group: &mut Group, parameter: f64) -> f64 {
    match op {
        AggregateOp::Sum if group.value.is_infinite() => group.value,
        AggregateOp::Sum => group.value + group.compensation,
        AggregateOp::Avg if group.incremental_mean => group.mean + group.compensation,
        AggregateOp::Avg => group.value / group.count + group.compensation / group.count,
        AggregateOp::Count => group.count,
        AggregateOp::Stdvar => group.value / group.count,
        AggregateOp::Stddev => (group.value / group.count).sqrt(),
        AggregateOp::Quantile => quantile(parameter, &mut group.values),
        _ => group.value,
    }
}

/// The members topk/bottomk/limitk/limit_ratio keep, in output order.
fn select_members(
    op: AggregateOp,
    group: &mut Group,
    k_count: usize,
    ratio: f64,
    series: &[Series],
) -> Vec<(usize, f64)> {
    match op {
        AggregateOp::Topk | AggregateOp::Bottomk => {
            select_k(&mut group.members, k_count, op == AggregateOp::Topk);
            group.members.clone()
        }
        AggregateOp::Limitk => group.members.iter().take(k_count).copied().collect(),
        _ => group.members.iter().copied().filter(|(index, _)| ratio_selects(ratio, &series[*index].labels)).collect(),
    }
}

/// Prometheus' (UTF-8) label name rule: any non-empty valid UTF-8 string.
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// 2^63: the first float past `i64::MAX`.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// Keeps the `k` largest (`top`) or smallest values, NaN least preferred, as Prometheus'
/// `aggregationK` (promql/engine.go) does: a binary heap of at most `k` members filled in input
/// order with Go's `container/heap` (`vectorByValueHeap` / `vectorByReverseValueHeap`), where a
/// later member replaces the root only when strictly better, so which of several equal values
/// survive is upstream's; then best first, as its `sort.Sort(sort.Reverse(heap))` leaves them
/// (Go sorts up to 12 elements by insertion sort, emulated exactly; longer heaps are ordered by
/// a stable sort, which differs from Go's pdqsort only among equal values).
fn select_k(members: &mut Vec<(usize, f64)>, k: usize, top: bool) {
    // The heaps' `Less`: NaN first (the root is the worst member), then by value.
    let less = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let mut heap: Vec<(usize, f64)> = Vec::with_capacity(k.min(members.len()));
    for &member in members.iter() {
        if heap.len() < k {
            heap.push(member);
            // `heap.Push`: sift the new last element up.
            let mut child = heap.len() - 1;
            while child > 0 {
                let parent = (child - 1) / 2;
                if !less(heap[child].1, heap[parent].1) {
                    break;
                }
                heap.swap(child, parent);
                child = parent;
            }
            continue;
        }
        let Some(root) = heap.first().map(|root| root.1) else { break };
        let better = if top { root < member.1 } else { root > member.1 };
        if better || (root.is_nan() && !member.1.is_nan()) {
            heap[0] = member;
            // `heap.Fix(h, 0)`: sift the root down.
            let mut parent = 0;
            loop {
                let left = 2 * parent + 1;
                if left >= heap.len() {
                    break;
                }
                let right = left + 1;
                let child = if right < heap.len() && less(heap[right].1, heap[left].1) { right } else { left };
                if !less(heap[child].1, heap[parent].1) {
                    break;
                }
                heap.swap(parent, child);
                parent = child;
            }
        }
    }
    if heap.len() <= 12 {
        // Go's `insertionSort` under `sort.Reverse`: element j moves before j-1 while
        // `Less(j-1, j)`.
        for index in 1..heap.len() {
            let mut position = index;
            while position > 0 && less(heap[position - 1].1, heap[position].1) {
                heap.swap(position, position - 1);
                position -= 1;
            }
        }
    } else {
        heap.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            (false, false) if top => b.1.total_cmp(&a.1),
            (false, false) => a.1.total_cmp(&b.1),
        });
    }
    *members = heap;
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

/// Prometheus' `NewInvalidQuantileWarning` text.
pub(super) fn invalid_quantile(q: f64) -> String {
    format!("PromQL warning: quantile value should be between 0 and 1, got {}", format_go_g(q))
}

/// Go's `%g` for the values annotations quote.
fn format_go_g(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf".to_string() } else { "-Inf".to_string() };
    }
    format_float(value)
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

    #[track_caller]
    fn check_select_k(values: &[f64], k: usize, top: bool, expected: &[usize]) {
        let mut members: Vec<(usize, f64)> = values.iter().copied().enumerate().collect();
        select_k(&mut members, k, top);
        let got: Vec<usize> = members.iter().map(|member| member.0).collect();
        assert_eq!(
            got,
            expected,
            "{}k({k}, {values:?}): expected series {expected:?}, got {got:?}",
            ["bottom", "top"][usize::from(top)]
        );
    }

    /// Which of equal values survive, and their order, as Prometheus' heaps decide: a later
    /// larger value replaces the root, which is the first-seen of the tied members, and the
    /// sift-down then brings the other tied member up (found by the compliance test:
    /// `topk without(instance) (2, demo_memory_usage_bytes)` with two instances at 500000000).
    #[test]
    fn select_k_breaks_ties_as_prometheus_heaps() {
        check_select_k(&[5.0, 5.0, 7.0], 2, true, &[2, 1]);
        check_select_k(&[5.0, 5.0, 3.0], 2, false, &[2, 1]);
        check_select_k(&[5.0, 5.0, 5.0], 2, true, &[0, 1]);
        check_select_k(&[1.0, 3.0, 2.0, 3.0], 3, true, &[1, 3, 2]);
        check_select_k(&[f64::NAN, 1.0, f64::NAN], 2, true, &[1, 0]);
        check_select_k(&[f64::NAN, 1.0, 2.0], 2, true, &[2, 1]);
        check_select_k(&[4.0, 1.0], 0, true, &[]);
        check_select_k(&[4.0, 1.0, 9.0], 5, false, &[1, 0, 2]);
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
