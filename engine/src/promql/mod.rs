//! PromQL: parses with the `promql-parser` crate and evaluates over the storage's [`Queryable`]
//! seam (the engine never sees the head).
//!
//! The language over floats, with Prometheus 3.x semantics: vector and range selectors with
//! `offset` and `@` (`start()`/`end()`), subqueries, left-open lookback and range windows,
//! staleness markers, every aggregation ([`aggregate`]), every binary operator with vector
//! matching ([`binary`]) and the float functions ([`functions`]). Evaluation is step-wise, as
//! Prometheus' `rangeEval` ([`eval`]). Annotations ([`Annotations`]) carry Prometheus' texts
//! with the `(line:column)` suffix (found by scanning the text: [`position`]; the parser keeps
//! no positions) and cover invalid quantiles, malformed `le` labels, forced bucket monotonicity and sorting in range queries.
//! Native histograms, `info()` and the experimental syntax (duration expressions,
//! `anchored`/`smoothed`, `fill`) are not implemented; a node the engine cannot evaluate is an
//! execution error naming it, never a silent wrong answer.
//!
//! Limits, checked before any work where possible: the query's size and its nesting depth
//! (checked on the text, before parsing, so no input can exhaust the stack), the points per
//! series of a range query, and the samples held in memory (counted while series stream in).
//! Error messages quote at most a bounded prefix of the query.
//!
//! Limits in time and number ([`control`]): a query stops at its deadline
//! (`--query.timeout`, or the request's smaller `timeout`) or when its client goes away
//! (a [`CancelFlag`]), polled by the evaluator; a [`QueryGate`] bounds how many evaluate at once
//! (`--query.max-concurrency`) with a bounded queue in front.
//!
//! Concurrency: an [`Engine`] is immutable and shared (its gate and counters are atomics); each
//! query opens one querier and evaluates synchronously on the calling thread: the API runs it
//! on the compute pool (`io::Spawner::spawn_compute`), so tokio workers stay responsive.

mod aggregate;
mod binary;
pub mod control;
mod eval;
mod functions;
mod position;
pub mod series_notation;
mod value;

use std::sync::Arc;

use crate::storage::Queryable;

pub use control::{CancelFlag, CancelGuard, EngineStats, QueryControl, QueryGate, QueryPermit};
pub use value::{InstantSample, RangeSeries, Value};

/// Default lookback window for instant selectors (Prometheus `--query.lookback-delta`).
pub const LOOKBACK_DELTA_MS_DEFAULT: i64 = 5 * 60 * 1000;
/// Default bound on a query's nesting (parentheses plus operators, counted on the text): deep
/// enough for any real query, shallow enough that evaluation's recursion fits a 2 MiB stack.
pub const EXPRESSION_DEPTH_MAX_DEFAULT: usize = 256;
/// Default bound on a query's length in bytes.
pub const QUERY_SIZE_MAX_DEFAULT: usize = 1 << 20;
/// Longest part of a query or parser message an error quotes.
pub const ERROR_QUOTE_SIZE_MAX: usize = 256;
/// Prometheus' `--query.timeout` default: 2 minutes.
pub const QUERY_TIMEOUT_MS_DEFAULT: u64 = 2 * 60 * 1000;
/// Subquery step when the query gives none: Prometheus' default evaluation interval.
pub const SUBQUERY_STEP_MS_DEFAULT: i64 = 60_000;
/// Prometheus' `--query.max-concurrency` default.
pub const QUERY_CONCURRENCY_MAX_DEFAULT: usize = 20;

/// Query engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample.
    pub lookback_delta_ms: i64,
    /// Most samples one query may hold in memory (Prometheus `--query.max-samples`).
    pub query_samples_max: usize,
    /// Most points per series a range query may produce (Prometheus' 11,000 limit).
    pub range_points_per_series_max: i64,
    /// Deepest nesting of parentheses and operators a query may have.
    pub expression_depth_max: usize,
    /// Longest query text, in bytes.
    pub query_size_max: usize,
    /// Longest a query may take, queue wait included (Prometheus `--query.timeout`); 0 means no
    /// limit. A request's `timeout` parameter can only shorten it.
    pub query_timeout_ms: u64,
    /// Most queries evaluating at once (Prometheus `--query.max-concurrency`); the rest wait in
    /// a bounded queue ([`QueryGate`]).
    pub query_concurrency_max: usize,
    /// Step of a subquery written without one (`[10m:]`): the global evaluation interval in
    /// Prometheus (`NoStepSubqueryIntervalFn`); promtool's `test rules` sets the test file's.
    pub subquery_step_ms_default: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: LOOKBACK_DELTA_MS_DEFAULT,
            query_samples_max: crate::limits::QUERY_SAMPLES_MAX_DEFAULT,
            range_points_per_series_max: crate::limits::RANGE_POINTS_PER_SERIES_MAX,
            expression_depth_max: EXPRESSION_DEPTH_MAX_DEFAULT,
            query_size_max: QUERY_SIZE_MAX_DEFAULT,
            query_timeout_ms: QUERY_TIMEOUT_MS_DEFAULT,
            query_concurrency_max: QUERY_CONCURRENCY_MAX_DEFAULT,
            subquery_step_ms_default: SUBQUERY_STEP_MS_DEFAULT,
        }
    }
}

/// Why a query failed. The API maps each variant to Prometheus' `errorType` and status.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// The expression does not parse, or has the wrong type for the request (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The expression parsed but could not be evaluated (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples than `query_samples_max` (`execution`, 422), worded
    /// as Prometheus' `ErrTooManySamples`.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples {
        /// The limit in force.
        samples_max: usize,
    },
    /// The query nests deeper than `expression_depth_max` (`bad_data`, 400).
    #[error("query nests {depth} parentheses and operators deep, more than the limit of {depth_max}")]
    TooDeep {
        /// Nesting counted on the text (an upper bound of the syntax tree's depth).
        depth: usize,
        /// The limit in force.
        depth_max: usize,
    },
    /// The query text is longer than `query_size_max` (`bad_data`, 400).
    #[error("query of {size} bytes exceeds the limit of {size_max} bytes")]
    TooLong {
        /// Query length in bytes.
        size: usize,
        /// The limit in force.
        size_max: usize,
    },
    /// The store failed while the query read it (`internal`, 500).
    #[error("read series: {0}")]
    Storage(String),
    /// The deadline passed at `stage` (`timeout`, 503), worded as Prometheus' `ErrQueryTimeout`.
    #[error("query timed out in {stage}")]
    Timeout {
        /// [`control::STAGE_QUEUE`] or [`control::STAGE_EXECUTION`].
        stage: &'static str,
    },
    /// The client went away at `stage` (`canceled`, 499), worded as Prometheus'
    /// `ErrQueryCanceled`.
    #[error("query was canceled in {stage}")]
    Canceled {
        /// [`control::STAGE_QUEUE`] or [`control::STAGE_EXECUTION`].
        stage: &'static str,
    },
    /// Every permit is taken and the queue is full (`unavailable`, 503).
    #[error(
        "too many concurrent queries: {concurrency_max} evaluating and {queue_capacity_count} waiting \
         (--query.max-concurrency={concurrency_max}); retry later"
    )]
    QueueFull {
        /// Permits (`--query.max-concurrency`).
        concurrency_max: usize,
        /// Queries that may wait for a permit.
        queue_capacity_count: usize,
    },
}

/// Warnings and infos a query produced, with Prometheus' texts and position suffixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `PromQL warning: ...` messages, sorted, distinct.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` messages, sorted, distinct.
    pub infos: Vec<String>,
}

/// What one query reads ([`Engine::query_reach`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryReach {
    /// Each distinct selector's matchers, `__name__` included.
    pub selectors: Vec<Vec<crate::model::Matcher>>,
    /// First timestamp any selector reads, Unix ms.
    pub min_time_ms: i64,
    /// Last timestamp any selector reads, Unix ms.
    pub max_time_ms: i64,
}

/// Evaluates PromQL over a [`Queryable`].
#[derive(Clone)]
pub struct Engine {
    queryable: Arc<dyn Queryable>,
    options: EngineOptions,
    /// Shared by every clone, so the API and the rules take permits from one pool.
    gate: Arc<QueryGate>,
}

impl Engine {
    /// An engine reading from `queryable`.
    pub fn new(queryable: Arc<dyn Queryable>, options: EngineOptions) -> Self {
        let gate = Arc::new(QueryGate::new(options.query_concurrency_max));
        Engine { queryable, options, gate }
    }

    /// A control for one query: the deadline is `--query.timeout` from now, or
    /// `request_timeout_ms` from now when that is smaller (Prometheus keeps both contexts, so
    /// the smaller wins).
    pub fn control(&self, request_timeout_ms: Option<u64>) -> QueryControl {
        let engine_timeout_ms = Some(self.options.query_timeout_ms).filter(|timeout_ms| *timeout_ms > 0);
        match (engine_timeout_ms, request_timeout_ms) {
            (None, None) => QueryControl::unbounded(),
            (Some(timeout_ms), None) | (None, Some(timeout_ms)) => QueryControl::with_timeout_ms(timeout_ms),
            (Some(engine_ms), Some(request_ms)) => QueryControl::with_timeout_ms(engine_ms.min(request_ms)),
        }
    }

    /// Waits for an evaluation slot (`--query.max-concurrency`) until `control`'s deadline;
    /// hold the permit while evaluating.
    pub async fn admit(&self, control: &QueryControl) -> Result<QueryPermit, QueryError> {
        self.gate.admit(control).await
    }

    /// The query metrics (`prometheus_engine_*`).
    pub fn stats(&self) -> EngineStats {
        self.gate.stats()
    }

    /// The settings in force.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// This engine over another store (the same options and concurrency pool): a query merged
    /// with remote stores evaluates through it.
    pub fn with_queryable(&self, queryable: Arc<dyn Queryable>) -> Engine {
        Engine { queryable, options: self.options.clone(), gate: self.gate.clone() }
    }

    /// What evaluating `query` over `[start_ms, end_ms]` (one instant when equal) reads: each
    /// selector's matchers and the time range one querier must cover, so remote stores can be
    /// read before evaluation starts.
    pub fn query_reach(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<QueryReach, QueryError> {
        let expr = self.parse(query)?;
        let range = eval::EvalRange { start_ms, end_ms, step_ms };
        let (min_time_ms, max_time_ms) = eval::time_bounds(&expr, range, self.options.lookback_delta_ms);
        let mut selectors = Vec::new();
        for selector in eval::selectors(&expr) {
            let matchers = crate::api::meta::selector_matchers(selector).map_err(QueryError::BadData)?;
            if !selectors.contains(&matchers) {
                selectors.push(matchers);
            }
        }
        Ok(QueryReach { selectors, min_time_ms: min_time_ms.saturating_add(1).min(max_time_ms), max_time_ms })
    }

    /// Evaluates `query` at `time_ms` (`/api/v1/query`).
    pub fn instant_query(&self, query: &str, time_ms: i64) -> Result<Value, QueryError> {
        self.instant_query_annotated(query, time_ms).map(|(value, _)| value)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` (`/api/v1/query_range`);
    /// the result is always a matrix.
    pub fn range_query(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<Value, QueryError> {
        self.range_query_annotated(query, start_ms, end_ms, step_ms).map(|(value, _)| value)
    }

    /// [`Engine::instant_query`] stopping at `control`'s deadline or cancel flag. Takes no
    /// permit: callers that must respect `--query.max-concurrency` call [`Engine::admit`] first.
    pub fn instant_query_with(&self, query: &str, time_ms: i64, control: &QueryControl) -> Result<Value, QueryError> {
        self.instant_query_annotated_with(query, time_ms, control).map(|(value, _)| value)
    }

    /// [`Engine::range_query`] stopping at `control`'s deadline or cancel flag; see
    /// [`Engine::instant_query_with`].
    pub fn range_query_with(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        control: &QueryControl,
    ) -> Result<Value, QueryError> {
        self.range_query_annotated_with(query, start_ms, end_ms, step_ms, control).map(|(value, _)| value)
    }

    /// [`Engine::instant_query`] with the warnings and infos the evaluation produced.
    pub fn instant_query_annotated(&self, query: &str, time_ms: i64) -> Result<(Value, Annotations), QueryError> {
        self.instant_query_annotated_with(query, time_ms, &QueryControl::unbounded())
    }

    /// [`Engine::instant_query_with`] with the warnings and infos the evaluation produced.
    pub fn instant_query_annotated_with(
        &self,
        query: &str,
        time_ms: i64,
        control: &QueryControl,
    ) -> Result<(Value, Annotations), QueryError> {
        let expr = self.parse(query)?;
        let range = eval::EvalRange { start_ms: time_ms, end_ms: time_ms, step_ms: 0 };
        self.evaluate(query, &expr, range, false, control)
    }

    /// [`Engine::range_query`] with the warnings and infos the evaluation produced.
    pub fn range_query_annotated(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(Value, Annotations), QueryError> {
        self.range_query_annotated_with(query, start_ms, end_ms, step_ms, &QueryControl::unbounded())
    }

    /// [`Engine::range_query_with`] with the warnings and infos the evaluation produced.
    pub fn range_query_annotated_with(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        control: &QueryControl,
    ) -> Result<(Value, Annotations), QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".to_string(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData("end timestamp must not be before start time".to_string()));
        }
        if end_ms.saturating_sub(start_ms) / step_ms >= self.options.range_points_per_series_max {
            return Err(QueryError::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                self.options.range_points_per_series_max
            )));
        }
        let expr = self.parse(query)?;
        let range = eval::EvalRange { start_ms, end_ms, step_ms };
        self.evaluate(query, &expr, range, true, control)
    }

    fn evaluate(
        &self,
        query: &str,
        expr: &promql_parser::parser::Expr,
        range: eval::EvalRange,
        is_range_query: bool,
        control: &QueryControl,
    ) -> Result<(Value, Annotations), QueryError> {
        let poller = control::Poller::new(control);
        poller.check()?;
        let started = tokio::time::Instant::now();
        let result = self.evaluate_polled(query, expr, range, is_range_query, &poller);
        self.gate.observe_inner_eval(started.elapsed());
        result
    }

    fn evaluate_polled(
        &self,
        query: &str,
        expr: &promql_parser::parser::Expr,
        range: eval::EvalRange,
        is_range_query: bool,
        poller: &control::Poller<'_>,
    ) -> Result<(Value, Annotations), QueryError> {
        // One querier, covering every selector's reach, serves the whole query.
        let (min_time_ms, max_time_ms) = eval::time_bounds(expr, range, self.options.lookback_delta_ms);
        let querier = self
            .queryable
            .querier(min_time_ms.saturating_add(1).min(max_time_ms), max_time_ms)
            .map_err(|error| QueryError::Storage(error.to_string()))?;
        let positions = position::locate(query, expr);
        let mut evaluator = eval::Evaluator::new(querier.as_ref(), &self.options, range, poller, &positions);
        let value = evaluator.run(expr, is_range_query)?;
        Ok((value, evaluator.annotations()))
    }

    /// Checks the size and depth limits on the text, then parses (also for the API's
    /// `match[]` and `format_query`, so no input can overflow the parser's stack).
    pub(crate) fn parse(&self, query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
        if query.len() > self.options.query_size_max {
            return Err(QueryError::TooLong { size: query.len(), size_max: self.options.query_size_max });
        }
        let depth = nesting_bound(query);
        if depth > self.options.expression_depth_max {
            return Err(QueryError::TooDeep { depth, depth_max: self.options.expression_depth_max });
        }
        promql_parser::parser::parse(query).map_err(|message| QueryError::BadData(bounded(&message)))
    }
}

/// At most [`ERROR_QUOTE_SIZE_MAX`] bytes of `text`, cut at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= ERROR_QUOTE_SIZE_MAX {
        return text.to_string();
    }
    let mut end = ERROR_QUOTE_SIZE_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

/// An upper bound of the syntax tree's depth, from the text alone: the deepest parenthesis
/// or bracket nesting plus every operator outside strings and label braces (each operator adds
/// at most one level). No recursion, so any input is safe.
fn nesting_bound(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut depth, mut depth_max, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut braces = 0usize;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if let Some(open) = quote {
            if byte == b'\\' && open != b'`' {
                index += 1;
            } else if byte == open {
                quote = None;
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' | b'\'' | b'`' => quote = Some(byte),
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            _ if braces > 0 => {}
            b'(' | b'[' => {
                depth += 1;
                depth_max = depth_max.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => operators += 1,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = index;
                while index < bytes.len() && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_') {
                    index += 1;
                }
                let word = &query[start..index];
                if ["and", "or", "unless", "atan2"].iter().any(|keyword| word.eq_ignore_ascii_case(keyword)) {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    depth_max.saturating_add(operators)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;
    use crate::io::TokioSpawner;
    use crate::model::Labels;
    use crate::storage::Appendable;
    use crate::tsdb::{Db, DbOptions};

    fn engine() -> Engine {
        engine_with(EngineOptions::default())
    }

    fn engine_with(options: EngineOptions) -> Engine {
        // The writer task lives as long as this runtime; queries need no runtime.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let db = runtime.block_on(async {
            let fs = Arc::new(MemFileSystem::default());
            let db = Db::open(fs, &TokioSpawner, std::path::Path::new("/db"), DbOptions::default()).unwrap();
            let mut appender = db.appender();
            let labels = Labels::from_pairs([("__name__", "m")]);
            for index in 0..10 {
                appender.append(None, &labels, index * 10_000, index as f64).unwrap();
            }
            for (job, scale) in [("a", 1.0), ("b", 2.0)] {
                let labels = Labels::from_pairs([("__name__", "c_total"), ("job", job)]);
                for index in 0..10 {
                    appender.append(None, &labels, index * 10_000, index as f64 * scale).unwrap();
                }
            }
            appender.commit().await.unwrap();
            db
        });
        Engine::new(Arc::new(db), options)
    }

    fn instant_values(engine: &Engine, query: &str, time_ms: i64) -> Vec<(String, f64)> {
        match engine.instant_query(query, time_ms).unwrap() {
            Value::Vector(samples) => {
                samples.into_iter().map(|sample| (sample.labels.to_string(), sample.value)).collect()
            }
            Value::Scalar(sample) => vec![(String::new(), sample.value)],
            other => panic!("{other:?}"),
        }
    }

    #[track_caller]
    fn check(query: &str, time_ms: i64, expected: &[(&str, f64)]) {
        let got = instant_values(&engine(), query, time_ms);
        let want: Vec<(String, f64)> = expected.iter().map(|(labels, value)| (labels.to_string(), *value)).collect();
        assert_eq!(got.len(), want.len(), "{query}: {got:?}");
        for ((got_labels, got_value), (want_labels, want_value)) in got.iter().zip(&want) {
            assert_eq!(got_labels, want_labels, "{query}");
            assert!((got_value - want_value).abs() < 1e-9, "{query}: {got_value} != {want_value}");
        }
    }

    #[test]
    fn operators_aggregations_and_functions() {
        check("1 + 2 * 3", 0, &[("", 7.0)]);
        check("sum(c_total)", 90_000, &[("{}", 27.0)]);
        check("sum by (job) (c_total) > 10", 90_000, &[("{job=\"b\"}", 18.0)]);
        check("c_total / on(job) group_left c_total", 90_000, &[("{job=\"a\"}", 1.0), ("{job=\"b\"}", 1.0)]);
        check("topk(1, c_total)", 90_000, &[("c_total{job=\"b\"}", 18.0)]);
        check("rate(c_total{job=\"a\"}[30s])", 90_000, &[("{job=\"a\"}", 0.1)]);
        check("max_over_time(m[1m:10s])", 90_000, &[("{}", 9.0)]);
        check("-m", 90_000, &[("{}", -9.0)]);
        check("absent(nonexistent{job=\"x\"})", 90_000, &[("{job=\"x\"}", 1.0)]);
    }

    /// Per-step windows: `rate` inside a range query sees `(t - range, t]` at every step.
    #[test]
    fn range_query_rate_per_step() {
        let Value::Matrix(series) =
            engine().range_query("rate(c_total{job=\"b\"}[20s])", 20_000, 90_000, 10_000).unwrap()
        else {
            panic!("matrix expected");
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].samples.len(), 8);
        assert!(series[0].samples.iter().all(|sample| (sample.value - 0.2).abs() < 1e-9), "{series:?}");
    }

    #[test]
    fn sample_limit_is_a_typed_error() {
        let engine = engine_with(EngineOptions { query_samples_max: 5, ..EngineOptions::default() });
        assert_eq!(engine.range_query("m", 0, 90_000, 10_000), Err(QueryError::TooManySamples { samples_max: 5 }));
        assert!(engine.instant_query("m", 90_000).is_ok());
    }

    /// Deep inputs are refused on the text, before the parser or the evaluator could recurse.
    #[test]
    fn deep_queries_are_refused_without_recursion() {
        let engine = engine();
        let parentheses = format!("{}m{}", "(".repeat(50_000), ")".repeat(50_000));
        assert!(matches!(engine.instant_query(&parentheses, 0), Err(QueryError::TooDeep { depth: 50_000, .. })));
        let minuses = format!("{}up", "- ".repeat(5_000));
        assert!(matches!(engine.instant_query(&minuses, 0), Err(QueryError::TooDeep { depth: 5_000, .. })));
        let long = "m".repeat(QUERY_SIZE_MAX_DEFAULT + 1);
        assert!(matches!(engine.instant_query(&long, 0), Err(QueryError::TooLong { .. })));
        // Strings and label braces do not count.
        assert_eq!(nesting_bound(r#"m{a="((((-", b!~"+"} + "))""#), 1);
        assert!(bounded(&"x".repeat(10_000)).len() < ERROR_QUOTE_SIZE_MAX + 32);
    }

    /// The deepest query the limit admits evaluates within a 2 MiB stack (a tokio worker's).
    #[test]
    fn deepest_admitted_query_fits_a_small_stack() {
        let engine = engine();
        let half = EXPRESSION_DEPTH_MAX_DEFAULT / 2;
        let query =
            format!("{}{}m{}", "(".repeat(half), "-".repeat(EXPRESSION_DEPTH_MAX_DEFAULT - half), ")".repeat(half));
        let worker = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || engine.range_query(&query, 0, 90_000, 10_000).map(|value| value.type_name()))
            .unwrap();
        assert_eq!(worker.join().unwrap(), Ok("matrix"));
    }

    /// Extreme durations and times are answered or rejected, never an arithmetic overflow.
    #[test]
    fn extreme_ranges_and_offsets_do_not_overflow() {
        let engine = engine();
        for query in
            ["m[100000000y]", "m offset 100000000y", "m offset -100000000y", "m @ 9e15", "m @ -9e15 offset 100000000y"]
        {
            let _ = engine.instant_query(query, i64::MAX / 2);
            let _ = engine.instant_query(query, i64::MIN / 2);
            let _ = engine.range_query(query, 0, 100_000, 10_000);
            let _ = engine.range_query(query, i64::MIN, i64::MAX, i64::MAX);
            let _ = engine.range_query(query, i64::MAX - 5, i64::MAX, i64::MAX);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_queries_never_panic(
            query in "[a-z_{}\\[\\]()=~!\"@:., 0-9+-]{0,40}",
            time_ms in proptest::num::i64::ANY,
        ) {
            let engine = engine();
            let _ = engine.instant_query(&query, time_ms);
            let _ = engine.range_query(&query, time_ms, time_ms.saturating_add(60_000), 15_000);
        }
    }

    /// Yields `series_count` series of one sample each, lazily, counting reads; at read
    /// `trigger_index` it calls `on_trigger` (cancels, or sleeps past a deadline).
    struct ManySeries {
        series_count: usize,
        trigger_index: usize,
        on_trigger: Arc<dyn Fn() + Send + Sync>,
        read_count: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl crate::storage::Querier for ManySeries {
        fn select(
            &self,
            _hints: Option<&crate::storage::SelectHints>,
            _matchers: &[crate::model::Matcher],
        ) -> crate::storage::SeriesSet<'_> {
            Box::new((0..self.series_count).map(move |index| {
                if index == self.trigger_index {
                    (self.on_trigger)();
                }
                self.read_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(crate::storage::Series {
                    labels: Labels::from_pairs([("__name__", "many".to_string()), ("index", index.to_string())]),
                    samples: vec![crate::model::Sample { timestamp_ms: 0, value: 1.0 }],
                })
            }))
        }
        fn label_names(&self, _: &[crate::model::Matcher]) -> Result<Vec<String>, crate::storage::StorageError> {
            Ok(Vec::new())
        }
        fn label_values(
            &self,
            _: &str,
            _: &[crate::model::Matcher],
        ) -> Result<Vec<String>, crate::storage::StorageError> {
            Ok(Vec::new())
        }
    }

    struct ManyQueryable(ManySeries);

    impl Queryable for ManyQueryable {
        fn querier(&self, _: i64, _: i64) -> Result<Box<dyn crate::storage::Querier>, crate::storage::StorageError> {
            let ManySeries { series_count, trigger_index, on_trigger, read_count } = &self.0;
            Ok(Box::new(ManySeries {
                series_count: *series_count,
                trigger_index: *trigger_index,
                on_trigger: on_trigger.clone(),
                read_count: read_count.clone(),
            }))
        }
    }

    const MANY_SERIES_COUNT: usize = 200_000;
    const TRIGGER_INDEX: usize = 5_000;

    /// Runs `query` over [`MANY_SERIES_COUNT`] series with `control`; returns the result and
    /// how many series were read.
    fn run_many(
        query: &str,
        range: bool,
        control: &QueryControl,
        on_trigger: Arc<dyn Fn() + Send + Sync>,
    ) -> (Result<Value, QueryError>, usize) {
        let read_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let engine = Engine::new(
            Arc::new(ManyQueryable(ManySeries {
                series_count: MANY_SERIES_COUNT,
                trigger_index: TRIGGER_INDEX,
                on_trigger,
                read_count: read_count.clone(),
            })),
            EngineOptions::default(),
        );
        let result = if range {
            engine.range_query_with(query, 0, 60_000, 15_000, control)
        } else {
            engine.instant_query_with(query, 0, control)
        };
        (result, read_count.load(std::sync::atomic::Ordering::Relaxed))
    }

    #[test]
    fn control_stops_a_query_over_many_series() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let _entered = runtime.enter();
        #[track_caller]
        fn check(query: &str, range: bool, stop: &str, expected: QueryError) {
            let control = match stop {
                "past" => QueryControl {
                    deadline: tokio::time::Instant::now().checked_sub(std::time::Duration::from_millis(1)),
                    cancel: CancelFlag::new(),
                },
                "sleep" => QueryControl::with_timeout_ms(20),
                _ => QueryControl::unbounded(),
            };
            let flag = control.cancel.clone();
            let on_trigger: Arc<dyn Fn() + Send + Sync> = match stop {
                "cancel" => Arc::new(move || flag.cancel()),
                // Wall time passes the deadline while the query reads series.
                "sleep" => Arc::new(|| std::thread::sleep(std::time::Duration::from_millis(40))),
                _ => Arc::new(|| {}),
            };
            let (result, read_count) = run_many(query, range, &control, on_trigger);
            assert_eq!(result.map(|value| value.type_name()), Err(expected), "{query} {stop}");
            if stop == "past" {
                assert_eq!(read_count, 0, "{query}: a deadline already past stops before any read");
            } else {
                assert!(
                    read_count <= TRIGGER_INDEX + control::POLL_INTERVAL_COUNT as usize + 1,
                    "{query} {stop}: {read_count} series read after the stop"
                );
            }
        }
        let timeout = QueryError::Timeout { stage: control::STAGE_EXECUTION };
        let canceled = QueryError::Canceled { stage: control::STAGE_EXECUTION };
        for (query, range) in [("many", false), ("sum(many)", true), ("count_over_time(many[1m])", false)] {
            check(query, range, "past", timeout.clone());
            check(query, range, "cancel", canceled.clone());
            check(query, range, "sleep", timeout.clone());
        }
        // Subquery windows poll per inner series too (the inner selector already did).
        check("max_over_time(many[1m:15s])", false, "cancel", canceled);
        // Unbounded: the same query completes.
        let (result, read_count) = run_many("count(many)", false, &QueryControl::unbounded(), Arc::new(|| {}));
        assert_eq!(result.map(|value| value.type_name()), Ok("vector"));
        assert_eq!(read_count, MANY_SERIES_COUNT);
    }

    /// The smaller of `--query.timeout` and the request's `timeout` wins; 0 disables the
    /// engine's.
    #[test]
    fn control_takes_the_smaller_timeout() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let _entered = runtime.enter();
        #[track_caller]
        fn check(engine_timeout_ms: u64, request_timeout_ms: Option<u64>, expected_ms: Option<u64>) {
            let options = EngineOptions { query_timeout_ms: engine_timeout_ms, ..EngineOptions::default() };
            let engine = engine_with(options);
            let before = tokio::time::Instant::now();
            let control = engine.control(request_timeout_ms);
            let after = tokio::time::Instant::now();
            match (control.deadline, expected_ms) {
                (None, None) => {}
                (Some(deadline), Some(expected_ms)) => {
                    let expected = std::time::Duration::from_millis(expected_ms);
                    assert!(deadline >= before + expected && deadline <= after + expected);
                }
                (got, want) => panic!("deadline {got:?}, want {want:?} ms"),
            }
        }
        check(120_000, None, Some(120_000));
        check(120_000, Some(5_000), Some(5_000));
        check(5_000, Some(120_000), Some(5_000));
        check(0, None, None);
        check(0, Some(7_000), Some(7_000));
        check(120_000, Some(u64::MAX), Some(120_000));
        // Too far to matter: a deadline centuries away, or none where the clock cannot say.
        let engine = engine_with(EngineOptions { query_timeout_ms: 0, ..EngineOptions::default() });
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(100 * 365 * 86_400);
        assert!(engine.control(Some(u64::MAX)).deadline.is_none_or(|deadline| deadline > far));
    }

    #[test]
    fn lookback_and_offset() {
        let engine = engine();
        let value_at = |query: &str, time_ms: i64| match engine.instant_query(query, time_ms).unwrap() {
            Value::Vector(samples) => samples.first().map(|sample| sample.value),
            other => panic!("{other:?}"),
        };
        assert_eq!(value_at("m", 95_000), Some(9.0));
        assert_eq!(value_at("m", 90_000 + 300_000 - 1), Some(9.0), "inside the 5m lookback");
        assert_eq!(value_at("m", 90_000 + 300_000), None, "lookback window is left-open");
        assert_eq!(value_at("m offset 30s", 95_000), Some(6.0));
        assert_eq!(value_at("m @ 20", 95_000), Some(2.0));
        assert_eq!(value_at("m", -1), None);
    }
}
