//! HTTP API: Prometheus' query endpoints (`/api/v1/query`, `/api/v1/query_range`, GET and form
//! POST), health and readiness probes, and the engine's own `/metrics`.
//!
//! Error mapping is done here once (STYLE §5): bad parameters and unparsable queries are
//! `bad_data` with 400, evaluation failures `execution` with 422, as web/api/v1/api.go does.
//! Concurrency: [`Api`] is shared by all connections; handlers hold no lock across an await.

pub mod json;
pub mod params;
pub mod serve;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::io::Clock;
use crate::metrics::SelfMetrics;
use crate::promql::{Engine, QueryError};
use crate::tsdb::Db;

/// Content type of the text exposition format served on `/metrics`.
pub const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the handlers need.
pub struct Api {
    engine: Engine,
    clock: Arc<dyn Clock>,
    db: Db,
    metrics: Arc<SelfMetrics>,
    request_body_size_max: usize,
}

type Params = BTreeMap<String, String>;

/// An API failure: Prometheus' `errorType` and the message.
struct ApiError {
    status: StatusCode,
    error_type: &'static str,
    message: String,
}

impl ApiError {
    fn bad_data(message: String) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, error_type: "bad_data", message }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        let message = error.to_string();
        match error {
            QueryError::BadData(_) | QueryError::TooDeep { .. } | QueryError::TooLong { .. } => {
                ApiError::bad_data(message)
            }
            QueryError::Execution(_) | QueryError::TooManySamples { .. } => {
                ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, error_type: "execution", message }
            }
            QueryError::Storage(_) => {
                ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, error_type: "internal", message }
            }
        }
    }
}

impl Api {
    /// Handlers over `engine` and `db`.
    pub fn new(
        engine: Engine,
        clock: Arc<dyn Clock>,
        db: Db,
        metrics: Arc<SelfMetrics>,
        request_body_size_max: usize,
    ) -> Self {
        Api { engine, clock, db, metrics, request_body_size_max }
    }

    /// Routes and answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_string();
        self.metrics.count_request(&path);
        let method = request.method().clone();
        let readable = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/api/v1/query" | "/api/v1/query_range" if readable || method == Method::POST => {
                let result = match self.params(request).await {
                    Ok(params) if path == "/api/v1/query" => self.query(&params),
                    Ok(params) => self.query_range(&params),
                    Err(error) => Err(error),
                };
                match result {
                    Ok(body) => respond(StatusCode::OK, "application/json", body),
                    Err(error) => {
                        self.metrics.query_failures_total.fetch_add(1, Ordering::Relaxed);
                        respond(error.status, "application/json", json::error(error.error_type, &error.message))
                    }
                }
            }
            "/api/v1/status/tsdb" if readable => {
                let limit = match self.params(request).await {
                    Ok(params) => match params.get("limit").map(|text| text.parse::<usize>()) {
                        None => Ok(10),
                        Some(Ok(limit)) if limit > 0 => Ok(limit),
                        Some(_) => Err(ApiError::bad_data("limit must be a positive number".to_string())),
                    },
                    Err(error) => Err(error),
                };
                match limit {
                    Ok(limit) => {
                        respond(StatusCode::OK, "application/json", json::tsdb_status(&self.db.tsdb_status(limit)))
                    }
                    Err(error) => {
                        respond(error.status, "application/json", json::error(error.error_type, &error.message))
                    }
                }
            }
            "/-/healthy" if readable => respond(StatusCode::OK, "text/plain", "Engine is Healthy.\n".to_string()),
            // Queries keep working while writes are refused (a full disk, say): not ready for writes.
            "/-/ready" if readable && self.db.stats().ready_for_writes => {
                respond(StatusCode::OK, "text/plain", "Engine is Ready.\n".to_string())
            }
            "/-/ready" if readable => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "Engine is not ready for writes: the last WAL write failed.\n".to_string(),
            ),
            "/metrics" if readable => {
                respond(StatusCode::OK, TEXT_FORMAT_CONTENT_TYPE, self.metrics.render(&self.db.stats()))
            }
            "/api/v1/query"
            | "/api/v1/query_range"
            | "/api/v1/status/tsdb"
            | "/-/healthy"
            | "/-/ready"
            | "/metrics" => respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Method Not Allowed\n".to_string()),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".to_string()),
        }
    }

    /// URL parameters, plus form parameters of a POST body (which win, as in Go's `FormValue`).
    async fn params<B>(&self, request: Request<B>) -> Result<Params, ApiError>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut params: Params =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if request.method() == Method::POST && is_form {
            let body = Limited::new(request.into_body(), self.request_body_size_max)
                .collect()
                .await
                .map_err(|error| {
                    ApiError::bad_data(format!(
                        "read request body (limit {} bytes): {error}",
                        self.request_body_size_max
                    ))
                })?
                .to_bytes();
            params.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(params)
    }

    fn query(&self, params: &Params) -> Result<String, ApiError> {
        let query = required(params, "query")?;
        let time_ms = match params.get("time") {
            Some(text) => time_param("time", text)?,
            None => self.clock.now_ms(),
        };
        optional_timeout(params)?;
        Ok(json::success(&self.engine.instant_query(query, time_ms)?))
    }

    fn query_range(&self, params: &Params) -> Result<String, ApiError> {
        let query = required(params, "query")?;
        let start_ms = time_param("start", required(params, "start")?)?;
        let end_ms = time_param("end", required(params, "end")?)?;
        let step_text = required(params, "step")?;
        let step_ms = params::parse_duration_param_ms(step_text)
            .map_err(|error| ApiError::bad_data(format!("invalid parameter \"step\": {error}")))?;
        optional_timeout(params)?;
        Ok(json::success(&self.engine.range_query(query, start_ms, end_ms, step_ms)?))
    }
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    match params.get(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::bad_data(format!("invalid parameter \"{name}\": missing value"))),
    }
}

fn time_param(name: &str, text: &str) -> Result<i64, ApiError> {
    params::parse_time_ms(text).map_err(|error| ApiError::bad_data(format!("invalid parameter \"{name}\": {error}")))
}

/// Validates `timeout`; evaluation is synchronous and bounded by the sample limit, so the value
/// itself is not yet enforced.
fn optional_timeout(params: &Params) -> Result<(), ApiError> {
    if let Some(text) = params.get("timeout") {
        params::parse_duration_param_ms(text)
            .map_err(|error| ApiError::bad_data(format!("invalid parameter \"timeout\": {error}")))?;
    }
    Ok(())
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
