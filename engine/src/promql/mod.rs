//! PromQL: parses with the `promql-parser` crate and evaluates over the storage's [`Queryable`]
//! seam (the engine never sees the head).
//!
//! Implemented so far: instant and range vector selectors with the four matcher types, `offset`,
//! `@`, the lookback window, number and string literals, parentheses and unary minus. Any other
//! node is an execution error naming it, never a silent wrong answer.
//!
//! Concurrency: an [`Engine`] is immutable and shared; each query opens its own querier.

mod eval;
mod value;

use std::sync::Arc;

use crate::storage::Queryable;

pub use value::{InstantSample, RangeSeries, Value};

/// Default lookback window for instant selectors (Prometheus `--query.lookback-delta`).
pub const LOOKBACK_DELTA_MS_DEFAULT: i64 = 5 * 60 * 1000;

/// Query engine settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for the latest sample.
    pub lookback_delta_ms: i64,
    /// Most samples one query may load (Prometheus `--query.max-samples`).
    pub query_samples_max: usize,
    /// Most points per series a range query may produce (Prometheus' 11,000 limit).
    pub range_points_per_series_max: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: LOOKBACK_DELTA_MS_DEFAULT,
            query_samples_max: crate::limits::QUERY_SAMPLES_MAX_DEFAULT,
            range_points_per_series_max: crate::limits::RANGE_POINTS_PER_SERIES_MAX,
        }
    }
}

/// Why a query failed. The API maps each variant to Prometheus' `errorType`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    /// The expression does not parse, or has the wrong type for the request (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The expression parsed but could not be evaluated (`execution`, 422).
    #[error("{0}")]
    Execution(String),
}

/// Evaluates PromQL over a [`Queryable`].
#[derive(Clone)]
pub struct Engine {
    queryable: Arc<dyn Queryable>,
    options: EngineOptions,
}

impl Engine {
    /// An engine reading from `queryable`.
    pub fn new(queryable: Arc<dyn Queryable>, options: EngineOptions) -> Self {
        Engine { queryable, options }
    }

    /// The settings in force.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `query` at `time_ms` (`/api/v1/query`).
    pub fn instant_query(&self, query: &str, time_ms: i64) -> Result<Value, QueryError> {
        let expr = parse(query)?;
        let range = eval::EvalRange { start_ms: time_ms, end_ms: time_ms, step_ms: 0 };
        eval::Evaluator::new(self.queryable.as_ref(), &self.options, range).instant(&expr)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` (`/api/v1/query_range`);
    /// the result is always a matrix.
    pub fn range_query(&self, query: &str, start_ms: i64, end_ms: i64, step_ms: i64) -> Result<Value, QueryError> {
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
        let expr = parse(query)?;
        let range = eval::EvalRange { start_ms, end_ms, step_ms };
        eval::Evaluator::new(self.queryable.as_ref(), &self.options, range).range(&expr)
    }
}

fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    promql_parser::parser::parse(query).map_err(QueryError::BadData)
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
        // The writer task lives as long as this runtime; queries need no runtime.
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let db = runtime.block_on(async {
            let fs = Arc::new(MemFileSystem::default());
            let db = Db::open(fs, &TokioSpawner, std::path::Path::new("/db"), DbOptions::default()).unwrap();
            let mut appender = db.appender();
            let labels = Labels::from_pairs([("__name__", "m")]);
            for index in 0..10 {
                appender.append(None, &labels, index * 10_000, index as f64).unwrap();
            }
            appender.commit().await.unwrap();
            db
        });
        Engine::new(Arc::new(db), EngineOptions::default())
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
