//! The queries `compare query` times, over the [`Dataset`](super::dataset::Dataset) layout,
//! and the request each one becomes in the Prometheus HTTP API (which all three systems serve).
//!
//! Every query is evaluated at [`evaluation_time_ms`], half a step after the dataset's last
//! sample (`time=` or `end=`), never at the wall clock, so each system answers over the same
//! samples however long loading took. Half a step keeps every window boundary between two
//! samples: Prometheus 2.42's range and lookback windows are closed (`[t - range, t]`), the
//! engine's left-open as in Prometheus 3 (`(t - range, t]`), so on the sample grid a `rate`
//! would see one sample more in Prometheus and the answers could not be compared. Instant
//! queries look back 5 m (the default lookback); range queries cover [`RANGE_MS`] at
//! [`RANGE_STEP_MS`], i.e. 241 steps. Pure: no I/O.

use std::fmt::Write as _;

use super::dataset::{Dataset, BUCKET_BOUNDS, CODES, COUNTER_FAMILY, GAUGE_FAMILY, HISTOGRAM_FAMILY, QUEUES, STEP_MS};

/// Range queries cover the last hour...
pub const RANGE_MS: i64 = 3600 * 1000;
/// ...at the dataset's own resolution.
pub const RANGE_STEP_MS: i64 = 15_000;
/// Queries are evaluated this long after the last sample: half a step, off the sample grid.
pub const EVALUATION_OFFSET_MS: i64 = STEP_MS / 2;
/// The target for the query over the last hour of a tenth of the series.
pub const TEN_PERCENT_TARGET_MS: f64 = 100.0;

/// Instant or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/api/v1/query` at the dataset's end.
    Instant,
    /// `/api/v1/query_range` over [`RANGE_MS`] ending at the dataset's end, step [`RANGE_STEP_MS`].
    Range,
}

/// One timed query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// A short name for the report.
    pub name: &'static str,
    /// The PromQL expression.
    pub expr: String,
    /// Instant or range.
    pub shape: Shape,
    /// Series the selectors match, from the layout.
    pub series_selected_count: usize,
    /// A latency target the report checks, if the issue set one.
    pub target_ms: Option<f64>,
}

/// The query set: five instant queries, three hour-long range queries, and the hour of a tenth
/// of the series with the target.
pub fn query_set(dataset: &Dataset) -> Vec<Query> {
    let instance_count = dataset.instance_count();
    let counter_count = instance_count * CODES.len();
    let gauge_count = instance_count * QUEUES.len();
    let bucket_count = instance_count * BUCKET_BOUNDS.len();
    let counters = format!("{COUNTER_FAMILY}_total");
    let buckets = format!("{HISTOGRAM_FAMILY}_bucket");
    let query = |name, expr: String, shape, series_selected_count, target_ms| Query {
        name,
        expr,
        shape,
        series_selected_count,
        target_ms,
    };
    vec![
        query("selector", format!("{counters}{{job=\"job1\"}}"), Shape::Instant, counter_count / 10, None),
        query(
            "sum by job of rate",
            format!("sum by (job) (rate({counters}[5m]))"),
            Shape::Instant,
            counter_count,
            None,
        ),
        query(
            "histogram_quantile",
            format!("histogram_quantile(0.99, sum by (le) (rate({buckets}[5m])))"),
            Shape::Instant,
            bucket_count,
            None,
        ),
        query("topk", format!("topk(10, {GAUGE_FAMILY})"), Shape::Instant, gauge_count, None),
        query(
            "count all series",
            "count({__name__=~\".+\"})".to_string(),
            Shape::Instant,
            dataset.series_count(),
            None,
        ),
        query(
            "range: sum by job of rate",
            format!("sum by (job) (rate({counters}[5m]))"),
            Shape::Range,
            counter_count,
            None,
        ),
        query(
            "range: histogram_quantile",
            format!("histogram_quantile(0.99, sum by (le) (rate({buckets}[5m])))"),
            Shape::Range,
            bucket_count,
            None,
        ),
        query(
            "range: max by instance",
            format!("max by (instance) ({GAUGE_FAMILY}{{job=\"job1\"}})"),
            Shape::Range,
            gauge_count / 10,
            None,
        ),
        query(
            "range: a tenth of the series",
            format!("sum by (code) (rate({counters}{{job=~\"job[0-4]\"}}[5m]))"),
            Shape::Range,
            dataset.series_count() / 10,
            Some(TEN_PERCENT_TARGET_MS),
        ),
    ]
}

/// When every query of `dataset` is evaluated (the end of range queries).
pub fn evaluation_time_ms(dataset: &Dataset) -> i64 {
    dataset.end_ms() + EVALUATION_OFFSET_MS
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
pub fn encode_parameter(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Unix milliseconds as the API's decimal seconds.
fn seconds(time_ms: i64) -> String {
    format!("{}.{:03}", time_ms.div_euclid(1000), time_ms.rem_euclid(1000))
}

/// The request path and query string of `query` evaluated at `end_ms` (the end of a range).
pub fn request_path(query: &Query, end_ms: i64) -> String {
    let expr = encode_parameter(&query.expr);
    match query.shape {
        Shape::Instant => format!("/api/v1/query?query={expr}&time={}", seconds(end_ms)),
        Shape::Range => format!(
            "/api/v1/query_range?query={expr}&start={}&end={}&step={}",
            seconds(end_ms - RANGE_MS),
            seconds(end_ms),
            seconds(RANGE_STEP_MS)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_encoding(value: &str, expected: &str) {
        assert_eq!(encode_parameter(value), expected);
    }

    #[test]
    fn parameters_are_percent_encoded() {
        check_encoding("up", "up");
        check_encoding("count({__name__=~\".+\"})", "count%28%7B__name__%3D~%22.%2B%22%7D%29");
        check_encoding("a b/c", "a%20b%2Fc");
        check_encoding("é", "%C3%A9");
    }

    #[test]
    fn requests_are_evaluated_at_the_given_time() {
        let dataset = Dataset::new(1, 100_000, 1_700_000_000_000).expect("valid");
        assert_eq!(evaluation_time_ms(&dataset), 1_700_000_007_500);
        let queries = query_set(&dataset);
        assert_eq!(queries.len(), 9);
        assert_eq!(
            request_path(&queries[3], 1_700_000_000_000),
            "/api/v1/query?query=topk%2810%2C%20queue_length%29&time=1700000000.000"
        );
        assert_eq!(
            request_path(&queries[5], 1_700_000_000_000),
            "/api/v1/query_range?query=sum%20by%20%28job%29%20%28rate%28http_requests_total%5B5m%5D%29%29&start=1699996400.000&end=1700000000.000&step=15.000"
        );
        let tenth = queries.iter().find(|query| query.target_ms.is_some()).expect("the target query");
        assert_eq!(tenth.series_selected_count, 10_000);
        assert_eq!(
            queries.iter().find(|query| query.name == "count all series").unwrap().series_selected_count,
            100_000
        );
    }

    #[test]
    fn every_expression_parses() {
        let dataset = Dataset::new(1, 200, 1_700_000_000_000).expect("valid");
        // The engine's rule loader checks each expression with its PromQL parser.
        let mut yaml = String::from("groups:\n  - name: queries\n    rules:\n");
        for (index, query) in query_set(&dataset).iter().enumerate() {
            let _ = writeln!(yaml, "      - record: query_{index}\n        expr: '{}'", query.expr);
        }
        let parsed = engine::rules::file::parse_rule_file("queries.yml", &yaml).expect("every expression parses");
        assert_eq!(parsed.rule_count(), 9);
    }
}
