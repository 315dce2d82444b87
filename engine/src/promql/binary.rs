//! Binary operators, as Prometheus' `VectorBinop`, `VectorscalarBinop`, `VectorAnd/Or/Unless`
//! and `scalarBinop` (promql/engine.go): arithmetic, comparisons with and without `bool`, the
//! set operators, `on`/`ignoring` matching and `group_left`/`group_right`.
//!
//! Invariants: matching is decided per step on signatures (the `on` labels, or every label but
//! the `ignoring` ones and `__name__`); arithmetic drops `__name__` at once, comparisons with
//! `bool` and vector-scalar arithmetic mark it for delayed removal; vector matching errors use
//! Prometheus' words.
//!
//! Concurrency: pure functions over one step's vectors.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use promql_parser::label::Labels as NameList;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Evaluator, OutSample, StepSample, Val};
use super::QueryError;
use crate::model::{Labels, METRIC_NAME_LABEL};

/// The operators, parsed once from the token text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            _ => return None,
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic changes what the value means, so the metric name goes.
    fn is_arithmetic(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2)
    }
}

/// `lhs op rhs` on floats: the value and whether a comparison holds (always true for arithmetic).
fn apply(op: Op, lhs: f64, rhs: f64) -> (f64, bool) {
    match op {
        Op::Add => (lhs + rhs, true),
        Op::Sub => (lhs - rhs, true),
        Op::Mul => (lhs * rhs, true),
        Op::Div => (lhs / rhs, true),
        Op::Mod => (go_mod(lhs, rhs), true),
        Op::Pow => (lhs.powf(rhs), true),
        Op::Atan2 => (lhs.atan2(rhs), true),
        Op::Eq => (lhs, lhs == rhs),
        Op::Ne => (lhs, lhs != rhs),
        Op::Gt => (lhs, lhs > rhs),
        Op::Lt => (lhs, lhs < rhs),
        Op::Ge => (lhs, lhs >= rhs),
        Op::Le => (lhs, lhs <= rhs),
        Op::And | Op::Or | Op::Unless => (f64::NAN, false),
    }
}

/// Go's `math.Mod`: the sign follows the dividend, as Rust's `%` does.
fn go_mod(lhs: f64, rhs: f64) -> f64 {
    lhs % rhs
}

pub(super) fn eval_binary(ev: &mut Evaluator<'_>, binary: &BinaryExpr) -> Result<Val, QueryError> {
    let op_text = binary.op.to_string();
    let op = Op::parse(&op_text)
        .ok_or_else(|| QueryError::Execution(format!("binary operator {op_text} is not supported yet")))?;
    let return_bool = binary.modifier.as_ref().is_some_and(|modifier| modifier.return_bool);
    let lhs_type = binary.lhs.value_type();
    let rhs_type = binary.rhs.value_type();
    let lhs = ev.eval(&binary.lhs)?;
    let rhs = ev.eval(&binary.rhs)?;
    let args = [lhs, rhs];
    let result = match (lhs_type, rhs_type) {
        (ValueType::Scalar, ValueType::Scalar) => {
            let (Val::Scalar(lhs), Val::Scalar(rhs)) = (&args[0], &args[1]) else {
                return Err(QueryError::Execution("scalar operands expected".to_string()));
            };
            let values = lhs
                .iter()
                .zip(rhs)
                .map(|(lhs, rhs)| {
                    let (value, keep) = apply(op, *lhs, *rhs);
                    if op.is_comparison() {
                        f64::from(u8::from(keep))
                    } else {
                        value
                    }
                })
                .collect();
            return Ok(Val::Scalar(values));
        }
        (ValueType::Vector, ValueType::Vector) => {
            let matching = Matching::new(binary);
            ev.range_eval(&args, |step, _| match op {
                Op::And => Ok(vector_and(step[0].vector(), step[1].vector(), &matching)),
                Op::Or => Ok(vector_or(step[0].vector(), step[1].vector(), &matching)),
                Op::Unless => Ok(vector_unless(step[0].vector(), step[1].vector(), &matching)),
                _ => vector_binop(op, step[0].vector(), step[1].vector(), &matching, return_bool),
            })?
        }
        (ValueType::Vector, ValueType::Scalar) => ev.range_eval(&args, |step, _| {
            Ok(vector_scalar(op, step[0].vector(), step[1].scalar(), false, return_bool))
        })?,
        (ValueType::Scalar, ValueType::Vector) => ev.range_eval(&args, |step, _| {
            Ok(vector_scalar(op, step[1].vector(), step[0].scalar(), true, return_bool))
        })?,
        _ => {
            return Err(QueryError::BadData(format!(
                "binary expression must contain only scalar and instant vector types: {binary}"
            )))
        }
    };
    ev.release(&args[0]);
    ev.release(&args[1]);
    Ok(Val::Vector(result))
}

fn vector_scalar<'a>(
    op: Op,
    vector: &[StepSample<'a>],
    scalar: f64,
    swap: bool,
    return_bool: bool,
) -> Vec<OutSample<'a>> {
    let mut out = Vec::with_capacity(vector.len());
    for sample in vector {
        let (lhs, rhs) = if swap { (scalar, sample.value) } else { (sample.value, scalar) };
        let (mut value, mut keep) = apply(op, lhs, rhs);
        // A comparison keeps the vector's value, whichever side it is on.
        if op.is_comparison() && swap {
            value = rhs;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            let drop_name = sample.drop_name || op.is_arithmetic() || return_bool;
            out.push(OutSample { labels: Cow::Borrowed(sample.labels), drop_name, value });
        }
    }
    out
}

/// How two vectors are matched.
pub(super) struct Matching {
    card: VectorMatchCardinality,
    /// `on(...)` when true, `ignoring(...)` when false.
    on: bool,
    names: Vec<String>,
    /// `group_left(...)` / `group_right(...)` labels copied from the "one" side.
    include: Vec<String>,
}

impl Matching {
    fn new(binary: &BinaryExpr) -> Self {
        let set_operator = binary.op.is_set_operator();
        let (card, matching) = match &binary.modifier {
            Some(modifier) => (modifier.card.clone(), modifier.matching.clone()),
            None => (VectorMatchCardinality::OneToOne, None),
        };
        let card = if set_operator { VectorMatchCardinality::ManyToMany } else { card };
        let (on, names) = match matching {
            Some(LabelModifier::Include(names)) => (true, names.labels),
            Some(LabelModifier::Exclude(names)) => (false, names.labels),
            None => (false, Vec::new()),
        };
        let include = match &card {
            VectorMatchCardinality::ManyToOne(names) | VectorMatchCardinality::OneToMany(names) => names_of(names),
            _ => Vec::new(),
        };
        Matching { card, on, names, include }
    }

    /// The signature two samples must share to match.
    fn signature(&self, labels: &Labels) -> String {
        let mut key = String::new();
        for label in labels.iter() {
            let listed = self.names.contains(&label.name);
            let used = if self.on { listed } else { !listed && label.name != METRIC_NAME_LABEL };
            if used {
                key.push_str(&label.name);
                key.push('\u{ff}');
                key.push_str(&label.value);
                key.push('\u{fe}');
            }
        }
        key
    }

    /// The labels of the match group (Prometheus `MatchLabels`), for error messages.
    fn match_labels(&self, labels: &Labels) -> Labels {
        Labels::from_pairs(
            labels
                .iter()
                .filter(|label| {
                    let listed = self.names.contains(&label.name);
                    if self.on {
                        listed
                    } else {
                        !listed && label.name != METRIC_NAME_LABEL
                    }
                })
                .map(|label| (label.name.clone(), label.value.clone())),
        )
    }
}

fn names_of(names: &NameList) -> Vec<String> {
    names.labels.clone()
}

/// Formats labels as Prometheus' `Labels.String()`: `{a="b", c="d"}` with the name inside.
pub(super) fn labels_string(labels: &Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|label| format!("{}={:?}", label.name, label.value)).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn vector_and<'a>(lhs: &[StepSample<'a>], rhs: &[StepSample<'a>], matching: &Matching) -> Vec<OutSample<'a>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<String> = rhs.iter().map(|sample| matching.signature(sample.labels)).collect();
    lhs.iter()
        .filter(|sample| right.contains(&matching.signature(sample.labels)))
        .map(|sample| OutSample::keep(sample, sample.value))
        .collect()
}

fn vector_or<'a>(lhs: &[StepSample<'a>], rhs: &[StepSample<'a>], matching: &Matching) -> Vec<OutSample<'a>> {
    let left: HashSet<String> = lhs.iter().map(|sample| matching.signature(sample.labels)).collect();
    let mut out: Vec<OutSample<'a>> = lhs.iter().map(|sample| OutSample::keep(sample, sample.value)).collect();
    out.extend(
        rhs.iter()
            .filter(|sample| !left.contains(&matching.signature(sample.labels)))
            .map(|sample| OutSample::keep(sample, sample.value)),
    );
    out
}

fn vector_unless<'a>(lhs: &[StepSample<'a>], rhs: &[StepSample<'a>], matching: &Matching) -> Vec<OutSample<'a>> {
    let right: HashSet<String> = rhs.iter().map(|sample| matching.signature(sample.labels)).collect();
    lhs.iter()
        .filter(|sample| !right.contains(&matching.signature(sample.labels)))
        .map(|sample| OutSample::keep(sample, sample.value))
        .collect()
}

fn vector_binop<'a>(
    op: Op,
    lhs: &[StepSample<'a>],
    rhs: &[StepSample<'a>],
    matching: &Matching,
    return_bool: bool,
) -> Result<Vec<OutSample<'a>>, QueryError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    let one_to_one = matches!(matching.card, VectorMatchCardinality::OneToOne);
    // The "many" side is iterated; the "one" side must be unique per signature.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_signature: HashMap<String, &StepSample<'a>> = HashMap::with_capacity(one.len());
    for sample in one {
        let signature = matching.signature(sample.labels);
        if let Some(previous) = one_by_signature.get(&signature) {
            let side = if one_to_many { "left" } else { "right" };
            let (mut first, mut second) = (labels_string(sample.labels), labels_string(previous.labels));
            if first > second {
                std::mem::swap(&mut first, &mut second);
            }
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_string(&matching.match_labels(sample.labels)),
            )));
        }
        one_by_signature.insert(signature, sample);
    }
    let mut matched_one_to_one: HashSet<String> = HashSet::new();
    let mut matched_grouped: HashMap<String, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for sample in many {
        let signature = matching.signature(sample.labels);
        let Some(other) = one_by_signature.get(&signature) else {
            continue;
        };
        let (left_value, right_value) =
            if one_to_many { (other.value, sample.value) } else { (sample.value, other.value) };
        let (mut value, keep) = apply(op, left_value, right_value);
        if return_bool {
            value = f64::from(u8::from(keep));
        }
        let labels = result_labels(sample.labels, other.labels, op, matching);
        if one_to_one {
            if !matched_one_to_one.insert(signature) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .to_string(),
                ));
            }
        } else if !matched_grouped.entry(signature).or_default().insert(labels.clone()) {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".to_string(),
            ));
        }
        if !keep && !return_bool {
            continue;
        }
        let drop_name = return_bool || (sample.drop_name && !op.is_arithmetic());
        out.push(OutSample { labels: Cow::Owned(labels), drop_name, value });
    }
    Ok(out)
}

/// The result's labels (Prometheus `resultMetric`): the "many" side's labels, without the name
/// for arithmetic, reduced to the `on` labels (or without the `ignoring` ones) for one-to-one
/// matching, plus the `group_x` labels from the "one" side.
fn result_labels(many: &Labels, one: &Labels, op: Op, matching: &Matching) -> Labels {
    let mut labels = if op.is_arithmetic() { many.without_metric_name() } else { many.clone() };
    if matches!(matching.card, VectorMatchCardinality::OneToOne) {
        let pairs: Vec<(String, String)> = labels
            .iter()
            .filter(|label| {
                let listed = matching.names.contains(&label.name);
                if matching.on {
                    listed
                } else {
                    !listed
                }
            })
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        labels = Labels::from_pairs(pairs);
    }
    for name in &matching.include {
        labels.set(name, one.get(name).unwrap_or(""));
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(op: Op, lhs: f64, rhs: f64, expected: (f64, bool)) {
        let (value, keep) = apply(op, lhs, rhs);
        assert_eq!(keep, expected.1, "{op:?} {lhs} {rhs}");
        assert!(value == expected.0 || (value.is_nan() && expected.0.is_nan()), "{op:?} {lhs} {rhs}: {value}");
    }

    #[test]
    fn operators_on_floats() {
        check(Op::Add, 1.0, 2.0, (3.0, true));
        check(Op::Mod, -7.0, 3.0, (-1.0, true));
        check(Op::Pow, 2.0, 10.0, (1024.0, true));
        check(Op::Div, 1.0, 0.0, (f64::INFINITY, true));
        check(Op::Gt, 2.0, 1.0, (2.0, true));
        check(Op::Eq, f64::NAN, f64::NAN, (f64::NAN, false));
        check(Op::Le, 1.0, 1.0, (1.0, true));
    }

    #[test]
    fn signatures_ignore_the_name_unless_on_lists_it() {
        let labels = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]);
        let ignoring =
            Matching { card: VectorMatchCardinality::OneToOne, on: false, names: vec!["b".into()], include: vec![] };
        let other = Labels::from_pairs([("__name__", "n"), ("a", "1"), ("b", "3")]);
        assert_eq!(ignoring.signature(&labels), ignoring.signature(&other));
        let on = Matching {
            card: VectorMatchCardinality::OneToOne,
            on: true,
            names: vec!["__name__".into()],
            include: vec![],
        };
        assert_ne!(on.signature(&labels), on.signature(&other));
        assert_eq!(labels_string(&labels), "{__name__=\"m\", a=\"1\", b=\"2\"}");
    }
}
