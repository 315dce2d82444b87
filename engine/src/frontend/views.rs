//! The metrics-view API (the documents' DBaaS endpoint, generalised): a configured path template
//! such as `/api/v1/domain/{domain}/project/{project}/databases/{db_id}/metrics` answers named
//! values (`cpu_usage`, `connections`, ...) computed by per-engine PromQL, every query running at
//! once through the frontend's cache, coalescing and breaker.
//!
//! Path values are spliced into PromQL, so they are restricted to `[A-Za-z0-9_.:-]`: nothing a
//! caller sends can change a query's shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{respond, Caller, Frontend, Looked};

/// One query's result as a view uses it.
#[derive(Debug)]
enum ViewValue {
    /// The first sample's value (or the scalar), and whether it came from a stale copy.
    Value(f64, bool),
    /// The answer held no sample; whether it was stale.
    Empty(bool),
    /// The series of a lookup query (their labels), stale or not.
    Series(Vec<BTreeMap<String, String>>, bool),
    /// No answer: why.
    Failed(String),
}

impl Frontend {
    /// Answers the view `index` for the path's `labels`.
    pub(super) async fn view(
        self: &Arc<Self>,
        index: usize,
        labels: Vec<(String, String)>,
        caller: &Caller,
    ) -> Response<Full<Bytes>> {
        let view = &self.config.views[index];
        for (name, value) in &labels {
            if !value.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.:-".contains(&byte)) {
                let message = format!("{name}: {value:?} may hold only letters, digits and '_', '.', ':', '-'");
                return json_response(StatusCode::BAD_REQUEST, json!({ "error": message }));
            }
        }
        let mut body = Map::new();
        for (name, value) in &labels {
            body.insert(name.clone(), Value::String(value.clone()));
        }
        let mut stale = false;
        let engine = match &view.lookup {
            None => "default".to_string(),
            Some(lookup) => match self.view_query(&substitute(lookup, &labels), caller, true).await {
                ViewValue::Series(series, was_stale) => {
                    stale |= was_stale;
                    let Some(first) = series.first() else {
                        body.insert("error".to_string(), json!("not found"));
                        return json_response(StatusCode::NOT_FOUND, Value::Object(body));
                    };
                    first.get(&view.engine_label).cloned().unwrap_or_else(|| "default".to_string())
                }
                ViewValue::Failed(reason) => {
                    body.insert("error".to_string(), json!(format!("lookup: {reason}")));
                    return json_response(StatusCode::SERVICE_UNAVAILABLE, Value::Object(body));
                }
                ViewValue::Value(..) | ViewValue::Empty(_) => unreachable!("lookups read series"),
            },
        };
        let Some(queries) = view.engines.get(&engine) else {
            body.insert("engine".to_string(), json!(engine));
            body.insert("error".to_string(), json!(format!("no metrics are defined for engine {engine:?}")));
            return json_response(StatusCode::NOT_FOUND, Value::Object(body));
        };
        // Every query at once, each on its own task; results are read in name order.
        let mut pending = Vec::with_capacity(queries.len());
        for (name, template) in queries {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let (this, query, caller) = (self.clone(), substitute(template, &labels), caller.clone());
            self.env.spawner.spawn(
                "frontend-view-query",
                Box::pin(async move {
                    let _ = sender.send(this.view_query(&query, &caller, false).await);
                }),
            );
            pending.push((name.clone(), receiver));
        }
        let mut metrics = Map::new();
        let mut reasons = Map::new();
        for (name, receiver) in pending {
            let value =
                receiver.await.unwrap_or_else(|_| ViewValue::Failed("the query ended without an answer".into()));
            let (number, reason) = match value {
                ViewValue::Value(number, was_stale) => {
                    stale |= was_stale;
                    if number.is_finite() {
                        (json!(number), None)
                    } else {
                        (Value::Null, Some(format!("not a finite number: {number}")))
                    }
                }
                ViewValue::Empty(was_stale) => {
                    stale |= was_stale;
                    (Value::Null, Some("no data".to_string()))
                }
                ViewValue::Failed(reason) => (Value::Null, Some(reason)),
                ViewValue::Series(..) => unreachable!("values are read as values"),
            };
            metrics.insert(name.clone(), number);
            if let Some(reason) = reason {
                reasons.insert(name, json!(reason));
            }
        }
        body.insert("engine".to_string(), json!(engine));
        body.insert("timestamp".to_string(), json!(self.env.clock.now_ms() as f64 / 1000.0));
        body.insert("metrics".to_string(), Value::Object(metrics));
        if !reasons.is_empty() {
            body.insert("reasons".to_string(), Value::Object(reasons));
        }
        body.insert("stale".to_string(), json!(stale));
        if stale {
            body.insert("reason".to_string(), json!(super::STALE_WARNING_BREAKER));
        }
        json_response(StatusCode::OK, Value::Object(body))
    }

    /// Runs one instant query of a view through the cache.
    async fn view_query(self: &Arc<Self>, query: &str, caller: &Caller, as_series: bool) -> ViewValue {
        let pairs = [("query".to_string(), query.to_string())];
        let Some(plan) = self.plan("/api/v1/query", &pairs, caller) else {
            return ViewValue::Failed(format!("cannot query {query:?}"));
        };
        let (body, stale) = match self.lookup(&plan).await {
            Looked::Answer(answer) if answer.status == 200 => (answer.body, false),
            Looked::Answer(answer) => {
                let error = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|value| value.get("error").and_then(Value::as_str).map(String::from))
                    .unwrap_or_else(|| format!("downstream answered {}", answer.status));
                return ViewValue::Failed(error);
            }
            Looked::Stale(body, _) => (body, true),
            Looked::Unavailable(reason) => return ViewValue::Failed(reason),
        };
        let Ok(value) = serde_json::from_slice::<Value>(&body) else {
            return ViewValue::Failed("the downstream's answer is not JSON".to_string());
        };
        let data = &value["data"];
        match data["resultType"].as_str() {
            Some("vector") => {
                let samples = data["result"].as_array().cloned().unwrap_or_default();
                if as_series {
                    let series = samples
                        .iter()
                        .map(|sample| {
                            sample["metric"]
                                .as_object()
                                .map(|labels| {
                                    labels
                                        .iter()
                                        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect();
                    return ViewValue::Series(series, stale);
                }
                match samples.first().and_then(|sample| sample["value"][1].as_str()) {
                    Some(text) => parse_value(text, stale),
                    None => ViewValue::Empty(stale),
                }
            }
            Some("scalar") if !as_series => match data["result"][1].as_str() {
                Some(text) => parse_value(text, stale),
                None => ViewValue::Empty(stale),
            },
            other => ViewValue::Failed(format!("expected a vector, got {}", other.unwrap_or("nothing"))),
        }
    }
}

fn parse_value(text: &str, stale: bool) -> ViewValue {
    let number = match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => text.parse().unwrap_or(f64::NAN),
    };
    ViewValue::Value(number, stale)
}

/// `template` with every `{label}` replaced by the path's value.
fn substitute(template: &str, labels: &[(String, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in labels {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", Bytes::from(body.to_string()))
}
