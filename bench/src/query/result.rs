//! Reading a Prometheus HTTP API query response (`/api/v1/query`, `/api/v1/query_range`) into
//! a comparable form, and comparing one system's answer with another's.
//!
//! Invariants: a [`QueryResult`]'s series are sorted by their label text and each series' points
//! by time, so two results compare independently of the order a system returned them in;
//! timestamps are rounded to whole milliseconds; `NaN` equals `NaN` when comparing. A response
//! that is not JSON, not `success`, or not shaped as the API documents is an error naming what
//! was wrong. Stateless.

use serde_json::Value;

/// One series of a result: its labels as `{a="1",b="2"}` (sorted by name) and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesResult {
    /// The label set, sorted by name, rendered as PromQL would print it.
    pub labels: String,
    /// `(timestamp_ms, value)` in time order; one point for instant vectors and scalars.
    pub points: Vec<(i64, f64)>,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// `vector`, `matrix`, `scalar` or `string`.
    pub result_type: String,
    /// Series sorted by labels.
    pub series: Vec<SeriesResult>,
}

impl QueryResult {
    /// Points in all series.
    pub fn point_count(&self) -> usize {
        self.series.iter().map(|series| series.points.len()).sum()
    }
}

/// Why a response is not a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResultError {
    /// The body is not JSON.
    #[error("response is not JSON: {message}")]
    NotJson {
        /// The parser's message.
        message: String,
    },
    /// The API reported an error.
    #[error("query failed: {error_type}: {error}")]
    Failed {
        /// `errorType`.
        error_type: String,
        /// `error`.
        error: String,
    },
    /// A field is missing or has the wrong type.
    #[error("malformed response: {what}")]
    Malformed {
        /// Which field.
        what: &'static str,
    },
}

fn malformed(what: &'static str) -> ResultError {
    ResultError::Malformed { what }
}

fn parse_value_text(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

/// `[<seconds>, "<value>"]`.
fn parse_point(point: &Value) -> Result<(i64, f64), ResultError> {
    let pair = point.as_array().filter(|pair| pair.len() == 2).ok_or(malformed("point is not a pair"))?;
    let seconds = pair[0].as_f64().ok_or(malformed("point time is not a number"))?;
    let value = pair[1].as_str().and_then(parse_value_text).ok_or(malformed("point value is not a number string"))?;
    Ok(((seconds * 1000.0).round() as i64, value))
}

fn labels_text(metric: Option<&Value>) -> Result<String, ResultError> {
    let Some(metric) = metric else { return Ok("{}".to_string()) };
    let object = metric.as_object().ok_or(malformed("metric is not an object"))?;
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(object.len());
    for (name, value) in object {
        pairs.push((name, value.as_str().ok_or(malformed("label value is not a string"))?));
    }
    pairs.sort_unstable();
    let inner: Vec<String> = pairs.iter().map(|(name, value)| format!("{name}={value:?}")).collect();
    Ok(format!("{{{}}}", inner.join(",")))
}

/// Parses a response body.
pub fn parse_response(body: &[u8]) -> Result<QueryResult, ResultError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|error| ResultError::NotJson { message: error.to_string() })?;
    let status = root.get("status").and_then(Value::as_str).ok_or(malformed("status"))?;
    if status != "success" {
        let text = |key| root.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(ResultError::Failed { error_type: text("errorType"), error: text("error") });
    }
    let data = root.get("data").ok_or(malformed("data"))?;
    let result_type = data.get("resultType").and_then(Value::as_str).ok_or(malformed("data.resultType"))?;
    let result = data.get("result").ok_or(malformed("data.result"))?;
    let mut series = Vec::new();
    match result_type {
        "vector" | "matrix" => {
            for item in result.as_array().ok_or(malformed("data.result is not an array"))? {
                let labels = labels_text(item.get("metric"))?;
                let mut points = match (item.get("value"), item.get("values")) {
                    (Some(point), _) if result_type == "vector" => vec![parse_point(point)?],
                    (_, Some(values)) if result_type == "matrix" => values
                        .as_array()
                        .ok_or(malformed("values is not an array"))?
                        .iter()
                        .map(parse_point)
                        .collect::<Result<_, _>>()?,
                    _ => return Err(malformed("series without value(s)")),
                };
                points.sort_by_key(|(time_ms, _)| *time_ms);
                series.push(SeriesResult { labels, points });
            }
        }
        "scalar" | "string" => {
            let (time_ms, value) = match result_type {
                "scalar" => parse_point(result)?,
                _ => (0, f64::NAN),
            };
            series.push(SeriesResult { labels: "{}".to_string(), points: vec![(time_ms, value)] });
        }
        _ => return Err(malformed("unknown resultType")),
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(QueryResult { result_type: result_type.to_string(), series })
}

/// How one result differs from a reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    /// Series in the reference only.
    pub series_missing_count: usize,
    /// Series in the result only.
    pub series_extra_count: usize,
    /// Series in both whose timestamps differ.
    pub series_timestamps_differ_count: usize,
    /// Largest `|a - b| / max(|a|, |b|)` over the points both have (0 when all are equal).
    pub relative_difference_max: f64,
}

/// Relative differences at or below this are rounding (summation order), not disagreement.
pub const RELATIVE_DIFFERENCE_ROUNDING_MAX: f64 = 1e-9;

impl Agreement {
    /// Same series, same timestamps, values equal up to rounding.
    pub fn agrees(&self) -> bool {
        self.series_missing_count == 0
            && self.series_extra_count == 0
            && self.series_timestamps_differ_count == 0
            && self.relative_difference_max <= RELATIVE_DIFFERENCE_ROUNDING_MAX
    }
}

fn relative_difference(a: f64, b: f64) -> f64 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0.0;
    }
    if !a.is_finite() || !b.is_finite() {
        return f64::INFINITY;
    }
    (a - b).abs() / a.abs().max(b.abs())
}

/// Compares `result` with `reference`, series by label text.
pub fn compare(result: &QueryResult, reference: &QueryResult) -> Agreement {
    let mut agreement = Agreement {
        series_missing_count: 0,
        series_extra_count: 0,
        series_timestamps_differ_count: 0,
        relative_difference_max: 0.0,
    };
    let (mut mine, mut theirs) = (result.series.iter().peekable(), reference.series.iter().peekable());
    loop {
        match (mine.peek(), theirs.peek()) {
            (None, None) => break,
            (Some(_), None) => {
                agreement.series_extra_count += 1;
                mine.next();
            }
            (None, Some(_)) => {
                agreement.series_missing_count += 1;
                theirs.next();
            }
            (Some(a), Some(b)) => match a.labels.cmp(&b.labels) {
                std::cmp::Ordering::Less => {
                    agreement.series_extra_count += 1;
                    mine.next();
                }
                std::cmp::Ordering::Greater => {
                    agreement.series_missing_count += 1;
                    theirs.next();
                }
                std::cmp::Ordering::Equal => {
                    let times = |series: &SeriesResult| series.points.iter().map(|(time_ms, _)| *time_ms).collect();
                    let (times_a, times_b): (Vec<i64>, Vec<i64>) = (times(a), times(b));
                    if times_a != times_b {
                        agreement.series_timestamps_differ_count += 1;
                    } else {
                        for ((_, value_a), (_, value_b)) in a.points.iter().zip(&b.points) {
                            let difference = relative_difference(*value_a, *value_b);
                            agreement.relative_difference_max = agreement.relative_difference_max.max(difference);
                        }
                    }
                    mine.next();
                    theirs.next();
                }
            },
        }
    }
    agreement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn parse(body: &str) -> QueryResult {
        parse_response(body.as_bytes()).expect("parses")
    }

    #[track_caller]
    fn check_error(body: &str, expected: ResultError) {
        assert_eq!(parse_response(body.as_bytes()), Err(expected));
    }

    #[test]
    fn responses_parse_sorted() {
        let vector = parse(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"job":"b","code":"200"},"value":[1700000000.5,"2"]},
                {"metric":{"job":"a"},"value":[1700000000.5,"NaN"]}]}}"#,
        );
        assert_eq!(vector.result_type, "vector");
        assert_eq!(vector.series.len(), 2);
        // Sorted by label text: `{code=...}` before `{job=...}`.
        assert_eq!(vector.series[1].labels, r#"{job="a"}"#);
        assert!(vector.series[1].points[0].1.is_nan());
        assert_eq!(
            vector.series[0],
            SeriesResult { labels: r#"{code="200",job="b"}"#.to_string(), points: vec![(1_700_000_000_500, 2.0)] }
        );
        let matrix = parse(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
                {"metric":{},"values":[[20,"+Inf"],[10,"1e3"]]}]}}"#,
        );
        assert_eq!(matrix.series[0].points, vec![(10_000, 1000.0), (20_000, f64::INFINITY)]);
        assert_eq!(matrix.point_count(), 2);
        let scalar = parse(r#"{"status":"success","data":{"resultType":"scalar","result":[3,"4"]}}"#);
        assert_eq!(scalar.series, vec![SeriesResult { labels: "{}".to_string(), points: vec![(3000, 4.0)] }]);
    }

    #[test]
    fn bad_responses_are_errors() {
        check_error(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
            ResultError::Failed { error_type: "bad_data".to_string(), error: "parse error".to_string() },
        );
        check_error(r#"{"status":"success"}"#, ResultError::Malformed { what: "data" });
        check_error(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}"#,
            ResultError::Malformed { what: "point is not a pair" },
        );
        check_error(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"values":[]}]}}"#,
            ResultError::Malformed { what: "series without value(s)" },
        );
        assert!(matches!(parse_response(b"<html>"), Err(ResultError::NotJson { .. })));
    }

    fn result(series: &[(&str, &[(i64, f64)])]) -> QueryResult {
        QueryResult {
            result_type: "matrix".to_string(),
            series: series
                .iter()
                .map(|(labels, points)| SeriesResult { labels: labels.to_string(), points: points.to_vec() })
                .collect(),
        }
    }

    #[test]
    fn comparison_counts_every_kind_of_difference() {
        let reference = result(&[("{a}", &[(1, 1.0), (2, f64::NAN)]), ("{b}", &[(1, 4.0)]), ("{c}", &[(1, 1.0)])]);
        let same = compare(&reference.clone(), &reference);
        assert!(same.agrees());
        assert_eq!(same.relative_difference_max, 0.0);
        let rounded = compare(
            &result(&[("{a}", &[(1, 1.0 + 1e-12), (2, f64::NAN)]), ("{b}", &[(1, 4.0)]), ("{c}", &[(1, 1.0)])]),
            &reference,
        );
        assert!(rounded.agrees(), "{rounded:?}");
        let different =
            compare(&result(&[("{a}", &[(1, 1.5), (2, 0.0)]), ("{b}", &[(2, 4.0)]), ("{d}", &[])]), &reference);
        assert_eq!(
            different,
            Agreement {
                series_missing_count: 1,
                series_extra_count: 1,
                series_timestamps_differ_count: 1,
                relative_difference_max: f64::INFINITY,
            }
        );
        assert!(!different.agrees());
        let values_only = compare(
            &result(&[("{a}", &[(1, 2.0), (2, f64::NAN)]), ("{b}", &[(1, 4.0)]), ("{c}", &[(1, 1.0)])]),
            &reference,
        );
        assert_eq!(values_only.relative_difference_max, 0.5);
    }
}
