//! HTTP API: Prometheus' query endpoints (`/api/v1/query`, `/api/v1/query_range`, GET and form
//! POST), health and readiness probes, and the engine's own `/metrics`.
//!
//! Error mapping is done here once (STYLE §5): bad parameters and unparsable queries are
//! `bad_data` with 400, evaluation failures `execution` with 422, a deadline `timeout` with 503,
//! a client gone `canceled` with 499, a full query queue `unavailable` with 503, as
//! web/api/v1/api.go (`returnAPIError`, `getDefaultErrorCode`) does.
//!
//! A query waits for a slot of `--query.max-concurrency` ([`Engine::admit`]), then evaluates on
//! the compute pool ([`Spawner::spawn_compute`]) while the handler awaits a oneshot, so a long
//! evaluation blocks no tokio worker. The handler's future holds a [`CancelGuard`]: when the
//! connection goes away, hyper drops the future and the guard sets the flag the evaluator polls.
//!
//! Concurrency: [`Api`] is shared by all connections; handlers hold no lock across an await.

pub mod exemplars;
pub mod federate;
pub mod json;
pub mod meta;
pub mod params;
pub mod remote_read;
pub mod remote_write;
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

use crate::io::{Clock, Spawner};
use crate::metrics::SelfMetrics;
use crate::promql::{CancelGuard, Engine, QueryControl, QueryError};
use crate::rules::Manager;
use crate::tsdb::Db;

/// Re-reads the configuration (`/-/reload`); the error text is the response body.
pub trait Reload: Send + Sync {
    /// Reloads; the previous configuration stays in force on an error.
    fn reload(&self) -> Result<(), String>;

    /// The YAML of the configuration in force (`/api/v1/status/config`).
    fn config_yaml(&self) -> String;

    /// The `external_labels` of the configuration in force (`/federate`).
    fn external_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Whether the last (re)load succeeded, and when it was, Unix ms (`/api/v1/status/runtimeinfo`).
    fn last_reload(&self) -> (bool, i64) {
        (true, 0)
    }
}

/// What `/api/v1/status/runtimeinfo` reports besides the reload state.
#[derive(Clone, Debug, Default)]
pub struct RuntimeInfo {
    /// When the server started, Unix ms.
    pub start_time_ms: i64,
    /// The server's working directory.
    pub working_directory: String,
    /// Retention as Prometheus prints it: `15d`, `512MiB`, or `15d or 512MiB`.
    pub storage_retention: String,
    /// Threads evaluating queries (`--query.max-concurrency`), where Prometheus reports GOMAXPROCS.
    pub compute_thread_count: usize,
}

/// Content type of the text exposition format served on `/metrics`.
pub const TEXT_FORMAT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the handlers need.
pub struct Api {
    engine: Engine,
    clock: Arc<dyn Clock>,
    db: Db,
    metrics: Arc<SelfMetrics>,
    request_body_size_max: usize,
    spawner: Arc<dyn Spawner>,
    rules: Option<Arc<Manager>>,
    reload: Option<Arc<dyn Reload>>,
    targets: Option<Arc<crate::scrape::ScrapeManager>>,
    flag_values: BTreeMap<String, String>,
    alert_manager: Option<Arc<crate::alert::manager::AlertManager>>,
    runtime_info: RuntimeInfo,
    push_gateway: Option<Arc<crate::push::PushGateway>>,
    remote_write: Option<Arc<remote_write::Receiver>>,
    remote_read: Arc<remote_read::RemoteReadServer>,
    /// The `remote_read` stores queries also read from.
    remote_readers: Option<Arc<crate::remote::read::RemoteReaders>>,
    /// Replica labels and algorithm of a query node's deduplication.
    dedup: (Vec<String>, crate::storage::dedup::DedupAlgorithm),
    /// The exemplar store `/api/v1/query_exemplars` reads; empty answers without it.
    exemplars: Option<Arc<crate::exemplars::ExemplarStore>>,
}

/// Prometheus' status for a canceled query (`statusClientClosedConnection`, nginx's 499).
const STATUS_CLIENT_CLOSED_REQUEST: u16 = 499;

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
            QueryError::Timeout { .. } => {
                ApiError { status: StatusCode::SERVICE_UNAVAILABLE, error_type: "timeout", message }
            }
            QueryError::Canceled { .. } => ApiError {
                status: StatusCode::from_u16(STATUS_CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST),
                error_type: "canceled",
                message,
            },
            QueryError::QueueFull { .. } => {
                ApiError { status: StatusCode::SERVICE_UNAVAILABLE, error_type: "unavailable", message }
            }
        }
    }
}

impl Api {
    /// Handlers over `engine` and `db`; queries evaluate through `spawner`'s compute seam.
    pub fn new(
        engine: Engine,
        clock: Arc<dyn Clock>,
        db: Db,
        metrics: Arc<SelfMetrics>,
        request_body_size_max: usize,
        spawner: Arc<dyn Spawner>,
    ) -> Self {
        Api {
            engine,
            clock,
            db,
            metrics,
            request_body_size_max,
            spawner,
            rules: None,
            reload: None,
            targets: None,
            flag_values: BTreeMap::new(),
            alert_manager: None,
            runtime_info: RuntimeInfo::default(),
            push_gateway: None,
            remote_write: None,
            remote_read: Arc::new(remote_read::RemoteReadServer::new(remote_read::RemoteReadLimits::default())),
            remote_readers: None,
            dedup: (Vec::new(), crate::storage::dedup::DedupAlgorithm::default()),
            exemplars: None,
        }
    }

    /// Merges what `readers` answer into every `/api/v1/query` and `/api/v1/query_range`.
    pub fn with_remote_readers(mut self, readers: Arc<crate::remote::read::RemoteReaders>) -> Self {
        self.remote_readers = Some(readers);
        self
    }

    /// On a query node (`--query.store`), deduplicates series across `replica_labels`.
    pub fn with_dedup(mut self, replica_labels: Vec<String>, algorithm: crate::storage::dedup::DedupAlgorithm) -> Self {
        self.dedup = (replica_labels, algorithm);
        self
    }

    /// Serves `POST /api/v1/read` within `limits` (the defaults otherwise).
    pub fn with_remote_read_limits(mut self, limits: remote_read::RemoteReadLimits) -> Self {
        self.remote_read = Arc::new(remote_read::RemoteReadServer::new(limits));
        self
    }

    /// Serves `/api/v1/rules`, `/api/v1/alerts` from `manager` and `/-/reload` through `reload`.
    pub fn with_rules(mut self, manager: Arc<Manager>, reload: Arc<dyn Reload>) -> Self {
        self.rules = Some(manager);
        self.reload = Some(reload);
        self
    }

    /// Serves `/api/v1/targets` and `/api/v1/metadata` from the scrape manager's current targets.
    pub fn with_targets(mut self, targets: Arc<crate::scrape::ScrapeManager>) -> Self {
        self.targets = Some(targets);
        self
    }

    /// Serves `/api/v1/status/flags` from `flag_values` (flag name without dashes -> value).
    pub fn with_flags(mut self, flag_values: BTreeMap<String, String>) -> Self {
        self.flag_values = flag_values;
        self
    }

    /// Serves `/api/v1/status/runtimeinfo` from `info` and the reload state.
    pub fn with_runtime_info(mut self, info: RuntimeInfo) -> Self {
        self.runtime_info = info;
        self
    }

    /// Serves Alertmanager's API v2 (`/api/v2/...`) from the embedded `alert_manager`.
    pub fn with_alert_manager(mut self, alert_manager: Arc<crate::alert::manager::AlertManager>) -> Self {
        self.alert_manager = Some(alert_manager);
        self
    }

    /// Serves the Pushgateway API (`/metrics/job/...`) and its exposition from `push_gateway`.
    pub fn with_push_gateway(mut self, push_gateway: Arc<crate::push::PushGateway>) -> Self {
        self.push_gateway = Some(push_gateway);
        self
    }

    /// Serves `POST /api/v1/write` (remote write 1.0) through `receiver`; 404 without it.
    pub fn with_remote_write_receiver(mut self, receiver: Arc<remote_write::Receiver>) -> Self {
        self.remote_write = Some(receiver);
        self
    }

    /// Serves `/api/v1/query_exemplars` from `store`.
    pub fn with_exemplars(mut self, store: Arc<crate::exemplars::ExemplarStore>) -> Self {
        self.exemplars = Some(store);
        self
    }

    fn rule_snapshots(&self) -> Vec<crate::rules::GroupSnapshot> {
        self.rules.as_deref().map(crate::rules::api::snapshots).unwrap_or_default()
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
        if path.starts_with("/api/v2/") {
            return self.alert_manager_api(request).await;
        }
        if let Some(push_gateway) = self.push_gateway.clone().filter(|_| crate::push::PushGateway::owns(&path)) {
            let body = match Limited::new(request.into_body(), self.request_body_size_max).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    return respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", format!("read body: {error}\n"))
                }
            };
            let answer = push_gateway.handle(method.as_str(), &path, &body);
            return respond(
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
                answer.content_type,
                answer.body,
            );
        }
        match path.as_str() {
            "/api/v1/query" | "/api/v1/query_range" if readable || method == Method::POST => {
                let result = match self.params(request).await {
                    Ok(params) if path == "/api/v1/query" => self.query(&params).await,
                    Ok(params) => self.query_range(&params).await,
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
            "/api/v1/series" | "/api/v1/labels" | "/api/v1/format_query" | "/api/v1/parse_query"
                if readable || method == Method::POST =>
            {
                let result = match self.pairs(request).await {
                    Err(error) => Err(error),
                    Ok(pairs) if path == "/api/v1/format_query" || path == "/api/v1/parse_query" => {
                        let query =
                            pairs.iter().find(|(key, _)| key == "query").map_or("", |(_, value)| value.as_str());
                        if path == "/api/v1/format_query" {
                            meta::format_query(&self.engine, query).map_err(ApiError::bad_data)
                        } else {
                            meta::parse_query(&self.engine, query).map_err(ApiError::bad_data)
                        }
                    }
                    Ok(pairs) => meta::MetaParams::from_pairs(&self.engine, &pairs)
                        .and_then(|params| match path.as_str() {
                            "/api/v1/series" => meta::series(&self.db, &params),
                            _ => meta::label_names(&self.db, &params),
                        })
                        .map_err(ApiError::bad_data),
                };
                respond_result(result)
            }
            label_path if readable && label_path.starts_with("/api/v1/label/") && label_path.ends_with("/values") => {
                let encoded = &label_path["/api/v1/label/".len()..label_path.len() - "/values".len()];
                let name = percent_decode(encoded);
                let result = match self.pairs(request).await {
                    Ok(pairs) => meta::MetaParams::from_pairs(&self.engine, &pairs)
                        .and_then(|params| meta::label_values(&self.db, &name, &params))
                        .map_err(ApiError::bad_data),
                    Err(error) => Err(error),
                };
                respond_result(result)
            }
            "/federate" if readable => match self.pairs(request).await {
                Ok(pairs) => {
                    let selectors: Result<Vec<_>, String> = pairs
                        .iter()
                        .filter(|(key, _)| key == "match[]")
                        .map(|(_, text)| meta::parse_selector(&self.engine, text))
                        .collect();
                    let external_labels = self.reload.as_deref().map(Reload::external_labels).unwrap_or_default();
                    let answer = selectors.and_then(|selectors| {
                        federate::federate(
                            &self.db,
                            &selectors,
                            self.clock.now_ms(),
                            self.engine.options().lookback_delta_ms,
                            &external_labels,
                        )
                    });
                    match answer {
                        Ok(body) => respond(StatusCode::OK, federate::FEDERATE_CONTENT_TYPE, body),
                        Err(error) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{error}\n")),
                    }
                }
                Err(error) => respond(error.status, "text/plain", format!("{}\n", error.message)),
            },
            "/api/v1/query_exemplars" if readable || method == Method::POST => {
                let result = match self.pairs(request).await {
                    Ok(pairs) => {
                        let empty = crate::exemplars::ExemplarStore::new(0);
                        let store = self.exemplars.as_deref().unwrap_or(&empty);
                        exemplars::query(store, &self.engine, &pairs).map_err(ApiError::bad_data)
                    }
                    Err(error) => Err(error),
                };
                respond_result(result)
            }
            "/api/v1/status/buildinfo" if readable => respond(StatusCode::OK, "application/json", meta::build_info()),
            "/api/v1/targets" if readable => {
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
                let first = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
                let state = crate::scrape::health::StateFilter::parse(first("state"));
                let targets = self.targets.as_ref().map(|manager| manager.targets()).unwrap_or_default();
                respond(StatusCode::OK, "application/json", targets.body(state, first("scrapePool")))
            }
            "/api/v1/metadata" if readable => {
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
                let first = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
                let count = |name: &str| -> Result<usize, ApiError> {
                    match first(name) {
                        None | Some("") => Ok(0),
                        // Prometheus: a negative limit means none.
                        Some(text) => match text.parse::<i64>() {
                            Ok(value) => Ok(usize::try_from(value).unwrap_or(0)),
                            Err(_) => Err(ApiError::bad_data(format!("{name} must be a number"))),
                        },
                    }
                };
                let targets = self.targets.as_ref().map(|manager| manager.targets()).unwrap_or_default();
                respond_result(count("limit").and_then(|limit| {
                    Ok(targets.metadata_body(
                        first("metric").filter(|m| !m.is_empty()),
                        limit,
                        count("limit_per_metric")?,
                    ))
                }))
            }
            "/api/v1/status/flags" if readable => {
                let mut body = String::from("{\"status\":\"success\",\"data\":{");
                for (index, (name, value)) in self.flag_values.iter().enumerate() {
                    if index > 0 {
                        body.push(',');
                    }
                    json::write_string(&mut body, name);
                    body.push(':');
                    json::write_string(&mut body, value);
                }
                body.push_str("}}");
                respond(StatusCode::OK, "application/json", body)
            }
            "/api/v1/status/runtimeinfo" if readable => {
                let (reload_success, reload_ms) = self.reload.as_deref().map_or((true, 0), Reload::last_reload);
                let info = &self.runtime_info;
                let body = serde_json::json!({
                    "status": "success",
                    "data": {
                        "startTime": crate::calendar::format_rfc3339_ms(info.start_time_ms),
                        "CWD": info.working_directory,
                        "reloadConfigSuccess": reload_success,
                        "lastConfigTime": crate::calendar::format_rfc3339_ms(reload_ms.max(info.start_time_ms)),
                        "corruptionCount": self.db.stats().wal_corruptions_repaired_total,
                        "storageRetention": info.storage_retention,
                        "computeThreadCount": info.compute_thread_count,
                    },
                });
                respond(StatusCode::OK, "application/json", body.to_string())
            }
            "/api/v1/status/config" if readable => {
                let yaml = self.reload.as_deref().map(Reload::config_yaml).unwrap_or_default();
                respond(StatusCode::OK, "application/json", meta::config_status(&yaml))
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
            "/api/v1/rules" if readable => {
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
                match crate::rules::api::RulesFilter::from_pairs(&pairs) {
                    Ok(filter) => respond(
                        StatusCode::OK,
                        "application/json",
                        crate::rules::api::rules_body(&self.rule_snapshots(), &filter),
                    ),
                    Err(message) => {
                        respond(StatusCode::BAD_REQUEST, "application/json", json::error("bad_data", &message))
                    }
                }
            }
            "/api/v1/alerts" if readable => {
                respond(StatusCode::OK, "application/json", crate::rules::api::alerts_body(&self.rule_snapshots()))
            }
            // As Prometheus with --web.enable-lifecycle (always on here).
            "/-/reload" if method == Method::POST || method == Method::PUT => {
                match self.reload.as_deref().map(Reload::reload) {
                    Some(Err(message)) => {
                        respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("{message}\n"))
                    }
                    _ => respond(StatusCode::OK, "text/plain", String::new()),
                }
            }
            "/-/reload" => {
                respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Only POST or PUT requests allowed\n".to_string())
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
                let body = self.metrics.render(&self.db.stats(), &self.engine.stats());
                respond(StatusCode::OK, TEXT_FORMAT_CONTENT_TYPE, body)
            }
            "/api/v1/read" => {
                let external_labels = self.reload.as_deref().map(Reload::external_labels).unwrap_or_default();
                self.remote_read.serve(&self.db, &external_labels, request, self.request_body_size_max).await
            }
            "/api/v1/write" => {
                remote_write::serve(self.remote_write.as_deref(), request, self.request_body_size_max).await
            }
            "/api/v1/query"
            | "/api/v1/query_range"
            | "/api/v1/series"
            | "/api/v1/query_exemplars"
            | "/api/v1/labels"
            | "/api/v1/format_query"
            | "/api/v1/parse_query"
            | "/api/v1/status/buildinfo"
            | "/api/v1/status/config"
            | "/api/v1/status/flags"
            | "/api/v1/status/runtimeinfo"
            | "/api/v1/metadata"
            | "/api/v1/targets"
            | "/api/v1/status/tsdb"
            | "/api/v1/rules"
            | "/api/v1/alerts"
            | "/federate"
            | "/-/healthy"
            | "/-/ready"
            | "/metrics" => respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Method Not Allowed\n".to_string()),
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".to_string()),
        }
    }

    /// Alertmanager's API v2 over the embedded alert manager; 404 when it is not enabled.
    async fn alert_manager_api<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(alert_manager) = self.alert_manager.clone() else {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "404 page not found (no alert manager enabled)\n".to_string(),
            );
        };
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or("").to_string();
        let body = match Limited::new(request.into_body(), self.request_body_size_max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                return respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "application/json",
                    serde_json::to_string(&format!("request body: {error}")).unwrap_or_default(),
                )
            }
        };
        match crate::alert::api::handle(&alert_manager, &method, &path, &query, &body) {
            Some((status, content_type, body)) => {
                respond(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), content_type, body)
            }
            None => respond(StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".to_string()),
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

    /// Every parameter pair in order, a POST form body's first (Go's `r.Form` puts them before
    /// the URL's, so the body wins for single-valued parameters); repeated keys (`match[]`) kept.
    async fn pairs<B>(&self, request: Request<B>) -> Result<Vec<(String, String)>, ApiError>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let url_pairs: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
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
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        pairs.extend(url_pairs);
        Ok(pairs)
    }

    async fn query(&self, params: &Params) -> Result<String, ApiError> {
        let query = required(params, "query")?.to_string();
        let time_ms = match params.get("time") {
            Some(text) => time_param("time", text)?,
            None => self.clock.now_ms(),
        };
        let control = self.engine.control(optional_timeout(params)?);
        let (engine, remote_warnings) = self.engine_for(params, &query, time_ms, time_ms, 0).await?;
        let (value, mut annotations) = self
            .evaluate(engine, control, move |engine, control| {
                engine.instant_query_annotated_with(&query, time_ms, control)
            })
            .await?;
        add_warnings(&mut annotations, remote_warnings);
        Ok(json::success_annotated(&value, &annotations))
    }

    async fn query_range(&self, params: &Params) -> Result<String, ApiError> {
        let query = required(params, "query")?.to_string();
        let start_ms = time_param("start", required(params, "start")?)?;
        let end_ms = time_param("end", required(params, "end")?)?;
        let step_text = required(params, "step")?;
        let step_ms = params::parse_duration_param_ms(step_text)
            .map_err(|error| ApiError::bad_data(format!("invalid parameter \"step\": {error}")))?;
        let control = self.engine.control(optional_timeout(params)?);
        let (engine, remote_warnings) = self.engine_for(params, &query, start_ms, end_ms, step_ms).await?;
        let (value, mut annotations) = self
            .evaluate(engine, control, move |engine, control| {
                engine.range_query_annotated_with(&query, start_ms, end_ms, step_ms, control)
            })
            .await?;
        add_warnings(&mut annotations, remote_warnings);
        Ok(json::success_annotated(&value, &annotations))
    }

    /// The engine a query evaluates with: the local one, or, with `remote_read` stores or a
    /// query node's `--query.store`s, one over the local storage merged with what the stores
    /// answered for the query's selectors. Store failures are warnings, or, with
    /// `partial_response=false`, the query's error. On a query node, series are deduplicated
    /// across the replica labels unless `dedup=false`. A query that does not parse gets the
    /// local engine, which reports the error.
    async fn engine_for(
        &self,
        params: &Params,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<(Engine, Vec<String>), ApiError> {
        let Some(readers) = self.remote_readers.as_ref().filter(|readers| !readers.is_empty()) else {
            return Ok((self.engine.clone(), Vec::new()));
        };
        let flag = |name: &str| -> Result<bool, ApiError> {
            match params.get(name).map(String::as_str) {
                None | Some("") => Ok(true),
                Some(text) => text
                    .parse::<bool>()
                    .map_err(|_| ApiError::bad_data(format!("invalid parameter \"{name}\": not a bool: {text:?}"))),
            }
        };
        let (dedup, partial_response) = (flag("dedup")?, flag("partial_response")?);
        let Ok(reach) = self.engine.query_reach(query, start_ms, end_ms, step_ms) else {
            return Ok((self.engine.clone(), Vec::new()));
        };
        let prefetched = readers.prefetch(&reach, self.db.start_time_ms()).await;
        if !partial_response && !prefetched.warnings.is_empty() {
            return Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error_type: "unavailable",
                message: format!("partial response disabled: {}", prefetched.warnings.join("; ")),
            });
        }
        let merged: Arc<dyn crate::storage::Queryable> =
            Arc::new(crate::remote::read::MergedQueryable::new(Arc::new(self.db.clone()), prefetched.store));
        let (replica_labels, algorithm) = &self.dedup;
        let queryable = if dedup && readers.has_query_stores() && !replica_labels.is_empty() {
            Arc::new(crate::storage::dedup::DedupQueryable::new(merged, replica_labels.clone(), *algorithm))
        } else {
            merged
        };
        Ok((self.engine.with_queryable(queryable), prefetched.warnings))
    }

    /// Admits the query (waiting counts against its deadline), runs `work` on the compute
    /// seam holding the permit, and awaits its answer. Dropping this future (the client went
    /// away) cancels the evaluation through the guard.
    async fn evaluate<T, F>(&self, engine: Engine, control: QueryControl, work: F) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine, &QueryControl) -> Result<T, QueryError> + Send + 'static,
    {
        let guard: CancelGuard = control.cancel.guard();
        let permit = self.engine.admit(&control).await?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.spawner.spawn_compute(
            "query",
            Box::new(move || {
                // The permit frees when evaluation really ends, not when the handler gives up.
                let _permit = permit;
                let _ = sender.send(work(&engine, &control));
            }),
        );
        let result = receiver
            .await
            .unwrap_or_else(|_| Err(QueryError::Execution("query evaluation ended without an answer".to_string())));
        guard.disarm();
        result
    }
}

/// Adds `warnings` to `annotations`, keeping them sorted and distinct.
fn add_warnings(annotations: &mut crate::promql::Annotations, warnings: Vec<String>) {
    if warnings.is_empty() {
        return;
    }
    annotations.warnings.extend(warnings);
    annotations.warnings.sort();
    annotations.warnings.dedup();
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

/// The request's `timeout`, ms, if given (Prometheus' `parseDuration`: seconds or a duration);
/// negative values are refused as Prometheus refuses them.
fn optional_timeout(params: &Params) -> Result<Option<u64>, ApiError> {
    let Some(text) = params.get("timeout") else {
        return Ok(None);
    };
    let timeout_ms = params::parse_duration_param_ms(text)
        .map_err(|error| ApiError::bad_data(format!("invalid parameter \"timeout\": {error}")))?;
    u64::try_from(timeout_ms)
        .map(Some)
        .map_err(|_| ApiError::bad_data(format!("invalid parameter \"timeout\": negative duration {text:?}")))
}

fn respond_result(result: Result<String, ApiError>) -> Response<Full<Bytes>> {
    match result {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(error) => respond(error.status, "application/json", json::error(error.error_type, &error.message)),
    }
}

/// `%XX` escapes of a path segment decoded (a label name in `/api/v1/label/<name>/values`).
fn percent_decode(text: &str) -> String {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(format!("n={}", text.replace('+', "%2B")).as_bytes()).into_owned().collect();
    pairs.into_iter().next().map(|(_, value)| value).unwrap_or_default()
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
