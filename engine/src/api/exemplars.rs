//! `/api/v1/query_exemplars` (web/api/v1/api.go `queryExemplars`): the selectors of a PromQL
//! expression (upstream's `parser.ExtractSelectors`) against the exemplar store.
//!
//! `start`/`end` default to the whole time range; `end` before `start` is refused. An expression
//! without selectors (`1 + 1`) answers success without data, as upstream.

use promql_parser::parser::Expr;

use super::meta::{selector_matchers, TIME_MAX_MS, TIME_MIN_MS};
use crate::exemplars::ExemplarStore;
use crate::model::Matcher;
use crate::promql::Engine;

/// The body for the request's `pairs`, or a `bad_data` message.
pub fn query(store: &ExemplarStore, engine: &Engine, pairs: &[(String, String)]) -> Result<String, String> {
    let first = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let time = |name: &str, default_ms: i64| -> Result<i64, String> {
        match first(name) {
            None | Some("") => Ok(default_ms),
            Some(text) => {
                super::params::parse_time_ms(text).map_err(|error| format!("invalid parameter \"{name}\": {error}"))
            }
        }
    };
    let start_ms = time("start", TIME_MIN_MS)?;
    let end_ms = time("end", TIME_MAX_MS)?;
    if end_ms < start_ms {
        return Err("end timestamp must not be before start timestamp".to_string());
    }
    let expr = engine.parse(first("query").unwrap_or("")).map_err(|error| error.to_string())?;
    let mut matcher_sets = Vec::new();
    extract_selectors(&expr, &mut matcher_sets)?;
    if matcher_sets.is_empty() {
        return Ok("{\"status\":\"success\"}".to_string());
    }
    Ok(ExemplarStore::query_body(&store.select(start_ms, end_ms, &matcher_sets)))
}

/// Every vector selector's matchers, in the expression's order (matrix selectors' too).
fn extract_selectors(expr: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), String> {
    match expr {
        Expr::VectorSelector(selector) => out.push(selector_matchers(selector)?),
        Expr::MatrixSelector(matrix) => out.push(selector_matchers(&matrix.vs)?),
        Expr::Aggregate(aggregate) => {
            extract_selectors(&aggregate.expr, out)?;
            if let Some(param) = &aggregate.param {
                extract_selectors(param, out)?;
            }
        }
        Expr::Unary(unary) => extract_selectors(&unary.expr, out)?,
        Expr::Binary(binary) => {
            extract_selectors(&binary.lhs, out)?;
            extract_selectors(&binary.rhs, out)?;
        }
        Expr::Paren(paren) => extract_selectors(&paren.expr, out)?,
        Expr::Subquery(subquery) => extract_selectors(&subquery.expr, out)?,
        Expr::Call(call) => {
            for arg in &call.args.args {
                extract_selectors(arg, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}
