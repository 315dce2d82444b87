//! Prometheus' metadata endpoints (web/api/v1/api.go `series`, `labelNames`, `labelValues`,
//! `formatQuery`, `serveBuildInfo`): what Grafana calls on connect, in the query editor and for
//! template variables.
//!
//! `match[]` selectors are parsed as PromQL vector selectors (`up`, `{job="a"}`); several are a
//! union. `start`/`end` default to the whole time range, as in Prometheus, and `limit` (0 or absent:
//! none) truncates the sorted result and adds the warning Prometheus adds.

use std::collections::BTreeSet;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use super::json::{write_labels, write_string};
use crate::model::{Labels, MatchKind, Matcher, METRIC_NAME_LABEL};
use crate::promql::Engine;
use crate::storage::{Queryable, SelectHints};

/// Prometheus' `MinTime`/`MaxTime` for absent `start`/`end`, in Unix ms.
pub(crate) const TIME_MIN_MS: i64 = i64::MIN / 2;
pub(crate) const TIME_MAX_MS: i64 = i64::MAX / 2;

/// At most this many series answer one `/api/v1/series` request when the caller sets no
/// `limit`: the response is built in memory, and an unbounded `{__name__=~".+"}` could exhaust it.
pub const SERIES_COUNT_MAX_DEFAULT: usize = 1_000_000;

/// The parameters every metadata endpoint shares.
#[derive(Debug, Default)]
pub struct MetaParams {
    /// Each `match[]` as matchers.
    pub selectors: Vec<Vec<Matcher>>,
    /// Inclusive range, Unix ms.
    pub start_ms: i64,
    /// Inclusive range, Unix ms.
    pub end_ms: i64,
    /// 0: no limit.
    pub limit: usize,
}

impl MetaParams {
    /// Reads `match[]`, `start`, `end` and `limit` from the request's pairs (first value wins
    /// for the single-valued ones, as Go's `FormValue`).
    pub fn from_pairs(engine: &Engine, pairs: &[(String, String)]) -> Result<MetaParams, String> {
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
            return Err("invalid parameter \"end\": end timestamp must not be before start time".to_string());
        }
        let limit = match first("limit") {
            None | Some("") => 0,
            Some(text) => text
                .parse::<usize>()
                .map_err(|_| format!("invalid parameter \"limit\": cannot parse {text:?} to a valid limit"))?,
        };
        let selectors = pairs
            .iter()
            .filter(|(key, _)| key == "match[]")
            .map(|(_, text)| parse_selector(engine, text))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(MetaParams { selectors, start_ms, end_ms, limit })
    }
}

/// Parses one series selector into matchers (`__name__` included); a selector that matches
/// the empty string with every matcher is refused, as Prometheus refuses `{}` and `{a=""}`.
pub fn parse_selector(engine: &Engine, text: &str) -> Result<Vec<Matcher>, String> {
    let expr = engine.parse(text).map_err(|error| format!("invalid parameter \"match[]\": {error}"))?;
    let Expr::VectorSelector(selector) = expr else {
        return Err(format!("invalid parameter \"match[]\": {text:?} is not a series selector"));
    };
    let matchers = selector_matchers(&selector)?;
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(format!(
            "invalid parameter \"match[]\": {text:?}: vector selector must contain at least one non-empty matcher"
        ));
    }
    Ok(matchers)
}

/// A parsed vector selector's matchers, `__name__` included (`or` inside braces refused).
pub fn selector_matchers(selector: &promql_parser::parser::VectorSelector) -> Result<Vec<Matcher>, String> {
    if !selector.matchers.or_matchers.is_empty() {
        return Err("invalid parameter \"match[]\": `or` inside a series selector is not supported".to_string());
    }
    let mut matchers = Vec::new();
    if let Some(name) = &selector.name {
        matchers.push(new_matcher(MatchKind::Equal, METRIC_NAME_LABEL, name)?);
    }
    for matcher in &selector.matchers.matchers {
        let kind = match matcher.op {
            MatchOp::Equal => MatchKind::Equal,
            MatchOp::NotEqual => MatchKind::NotEqual,
            MatchOp::Re(_) => MatchKind::Regex,
            MatchOp::NotRe(_) => MatchKind::NotRegex,
        };
        matchers.push(new_matcher(kind, &matcher.name, &matcher.value)?);
    }
    Ok(matchers)
}

fn new_matcher(kind: MatchKind, name: &str, value: &str) -> Result<Matcher, String> {
    Matcher::new(kind, name, value).map_err(|error| format!("invalid regular expression {value:?}: {error}"))
}

/// `/api/v1/series`: the label sets of the series matching any selector, sorted, each once.
pub fn series(queryable: &dyn Queryable, params: &MetaParams) -> Result<String, String> {
    if params.selectors.is_empty() {
        return Err("no match[] parameter provided".to_string());
    }
    let querier = querier(queryable, params)?;
    let hints = SelectHints {
        start_ms: params.start_ms,
        end_ms: params.end_ms,
        function: Some("series".to_string()),
        ..SelectHints::default()
    };
    let count_max = if params.limit == 0 { SERIES_COUNT_MAX_DEFAULT } else { params.limit };
    let mut found: BTreeSet<Labels> = BTreeSet::new();
    let mut truncated = false;
    'selectors: for matchers in &params.selectors {
        for series in querier.select(Some(&hints), matchers) {
            let series = series.map_err(|error| error.to_string())?;
            if found.contains(&series.labels) {
                continue;
            }
            if found.len() == count_max {
                truncated = true;
                break 'selectors;
            }
            found.insert(series.labels);
        }
    }
    let mut out = String::with_capacity(64 + found.len() * 64);
    out.push_str("{\"status\":\"success\",\"data\":[");
    for (index, labels) in found.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_labels(&mut out, labels);
    }
    out.push(']');
    finish(&mut out, truncated.then(|| truncation_warning(count_max, params.limit)));
    Ok(out)
}

/// `/api/v1/labels`: label names over the matching series (every series without `match[]`).
pub fn label_names(queryable: &dyn Queryable, params: &MetaParams) -> Result<String, String> {
    let querier = querier(queryable, params)?;
    let mut names: BTreeSet<String> = BTreeSet::new();
    if params.selectors.is_empty() {
        names.extend(querier.label_names(&[]).map_err(|error| error.to_string())?);
    }
    for matchers in &params.selectors {
        names.extend(querier.label_names(matchers).map_err(|error| error.to_string())?);
    }
    Ok(string_list(names, params.limit))
}

/// `/api/v1/label/<name>/values`.
pub fn label_values(queryable: &dyn Queryable, name: &str, params: &MetaParams) -> Result<String, String> {
    if !is_valid_label_name(name) {
        return Err(format!("invalid label name: {name:?}"));
    }
    let querier = querier(queryable, params)?;
    let mut values: BTreeSet<String> = BTreeSet::new();
    if params.selectors.is_empty() {
        values.extend(querier.label_values(name, &[]).map_err(|error| error.to_string())?);
    }
    for matchers in &params.selectors {
        values.extend(querier.label_values(name, matchers).map_err(|error| error.to_string())?);
    }
    Ok(string_list(values, params.limit))
}

/// `/api/v1/format_query`: the query pretty-printed as promtool and Prometheus' UI print it.
pub fn format_query(engine: &Engine, query: &str) -> Result<String, String> {
    let expr = engine.parse(query).map_err(|error| format!("invalid parameter \"query\": {error}"))?;
    let mut out = String::from("{\"status\":\"success\",\"data\":");
    write_string(&mut out, &expr.prettify());
    out.push('}');
    Ok(out)
}

/// `/api/v1/parse_query`: the syntax tree as JSON in Prometheus' shape (`translateAST`: nodes
/// tagged by `type`, e.g. `binaryExpr`, `vectorSelector` with its `matchers`), through
/// promql-parser's serializer.
pub fn parse_query(engine: &Engine, query: &str) -> Result<String, String> {
    let expr = engine.parse(query).map_err(|error| format!("invalid parameter \"query\": {error}"))?;
    let tree = serde_json::to_string(&expr).map_err(|error| format!("cannot render the syntax tree: {error}"))?;
    Ok(format!("{{\"status\":\"success\",\"data\":{tree}}}"))
}

/// `/api/v1/status/buildinfo` (Prometheus' field names; `goVersion` carries the Rust toolchain).
pub fn build_info() -> String {
    let mut out = String::from("{\"status\":\"success\",\"data\":{\"version\":");
    write_string(&mut out, env!("CARGO_PKG_VERSION"));
    out.push_str(",\"revision\":\"\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":");
    write_string(&mut out, concat!("rust (engine ", env!("CARGO_PKG_VERSION"), ")"));
    out.push_str("}}");
    out
}

fn querier(queryable: &dyn Queryable, params: &MetaParams) -> Result<Box<dyn crate::storage::Querier>, String> {
    queryable.querier(params.start_ms, params.end_ms).map_err(|error| error.to_string())
}

/// Label names as Prometheus 2 validates them: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

fn string_list(items: BTreeSet<String>, limit: usize) -> String {
    let truncated = limit > 0 && items.len() > limit;
    let mut out = String::from("{\"status\":\"success\",\"data\":[");
    for (index, item) in items.iter().take(if limit == 0 { usize::MAX } else { limit }).enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(&mut out, item);
    }
    out.push(']');
    finish(&mut out, truncated.then(|| truncation_warning(limit, limit)));
    out
}

fn truncation_warning(count: usize, limit: usize) -> String {
    if limit > 0 {
        "results truncated due to limit".to_string()
    } else {
        format!("results truncated at {count} series (the engine's bound for a request without a limit)")
    }
}

fn finish(out: &mut String, warning: Option<String>) {
    if let Some(warning) = warning {
        out.push_str(",\"warnings\":[");
        write_string(out, &warning);
        out.push(']');
    }
    out.push('}');
}

/// `/api/v1/status/config`: the configuration in force, as the YAML it was loaded from
/// (Prometheus re-marshals its parsed config with defaults filled in; the engine answers the
/// file's text).
pub fn config_status(source_yaml: &str) -> String {
    let mut out = String::from("{\"status\":\"success\",\"data\":{\"yaml\":");
    write_string(&mut out, source_yaml);
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_status_carries_the_loaded_yaml_escaped() {
        let config = crate::config::parse("global:\n  scrape_interval: 15s # \"quoted\"\n").unwrap();
        assert_eq!(
            config_status(&config.source_yaml),
            r#"{"status":"success","data":{"yaml":"global:\n  scrape_interval: 15s # \"quoted\"\n"}}"#
        );
    }
}
