//! Handler tests: routing, parameters from URL and form bodies, Prometheus' envelopes and status
//! codes, over a real database on the in-memory filesystem.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

use super::Api;
use crate::io::TokioSpawner;
use crate::io::{Clock, MemFileSystem};
use crate::metrics::SelfMetrics;
use crate::model::Labels;
use crate::promql::{Engine, EngineOptions, QueryControl, QueryError};
use crate::storage::Appendable;
use crate::tsdb::{Db, DbOptions};

struct FixedClock(i64);

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

async fn api() -> Api {
    let db =
        Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap();
    let mut appender = db.appender();
    for (job, value) in [("a", 1.0), ("b", 0.0)] {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", "h:1")]);
        for step in 0..5 {
            appender.append(None, &labels, 1_000_000 + step * 15_000, value).unwrap();
        }
    }
    appender.commit().await.unwrap();
    api_with(db, EngineOptions::default())
}

fn api_with(db: Db, options: EngineOptions) -> Api {
    let engine = Engine::new(Arc::new(db.clone()), options);
    Api::new(
        engine,
        Arc::new(FixedClock(1_060_000)),
        db,
        Arc::new(SelfMetrics::default()),
        1024,
        Arc::new(TokioSpawner),
    )
}

async fn call(api: &Api, method: Method, uri: &str, form: Option<&str>) -> (StatusCode, String, String) {
    let mut builder = Request::builder().method(method).uri(uri);
    if form.is_some() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    let request = builder.body(Full::new(Bytes::from(form.unwrap_or("").to_string()))).unwrap();
    let response = api.handle(request).await;
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn instant_query_get_defaults_to_now() {
    let (status, content_type, body) =
        call(&api().await, Method::GET, "/api/v1/query?query=up%7Bjob%3D%22a%22%7D", None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","instance":"h:1","job":"a"},"value":[1060,"1"]}]}}"#
    );
}

#[tokio::test]
async fn instant_query_form_post_with_rfc3339_time() {
    let form = "query=up&time=1970-01-01T00:16:45Z";
    let (status, _, body) = call(&api().await, Method::POST, "/api/v1/query", Some(form)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""job":"a"},"value":[1005,"1"]"#), "{body}");
    assert!(body.contains(r#""job":"b"},"value":[1005,"0"]"#), "{body}");
}

#[tokio::test]
async fn range_query_returns_matrix() {
    let uri = "/api/v1/query_range?query=up%7Bjob%3D%22b%22%7D&start=1000&end=1030&step=15s";
    let (status, _, body) = call(&api().await, Method::GET, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","instance":"h:1","job":"b"},"values":[[1000,"0"],[1015,"0"],[1030,"0"]]}]}}"#
    );
}

#[tokio::test]
async fn bad_requests_are_bad_data_400() {
    let api = api().await;
    for (uri, message) in [
        ("/api/v1/query", r#"invalid parameter \"query\": missing value"#),
        (
            "/api/v1/query?query=up&time=yesterday",
            r#"invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"#,
        ),
        ("/api/v1/query?query=sum(", "unclosed left parenthesis"),
        ("/api/v1/query_range?query=up&start=10&end=0&step=1", "end timestamp must not be before start time"),
        ("/api/v1/query_range?query=up&start=0&end=10&step=0", "zero or negative query resolution step"),
        ("/api/v1/query_range?query=up&start=0&end=10", r#"invalid parameter \"step\": missing value"#),
        ("/api/v1/query_range?query=up%5B1m%5D&start=0&end=10&step=1", "invalid expression type"),
    ] {
        let (status, _, body) = call(&api, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(body.starts_with(r#"{"status":"error","errorType":"bad_data","error":""#), "{uri}: {body}");
        assert!(body.contains(message), "{uri}: {body}");
    }
}

#[tokio::test]
async fn unsupported_expressions_are_execution_422() {
    let (status, _, body) = call(&api().await, Method::GET, "/api/v1/query?query=info(up)", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains(r#""errorType":"execution""#) && body.contains("not supported yet"), "{body}");
}

/// A query nested past the depth limit is `bad_data`, refused before parsing.
#[tokio::test]
async fn too_deep_queries_are_bad_data_400() {
    let uri = format!("/api/v1/query?query={}up{}", "%28".repeat(300), "%29".repeat(300));
    let (status, _, body) = call(&api().await, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains(r#""errorType":"bad_data""#) && body.contains("more than the limit of 256"), "{body}");
}

#[tokio::test]
async fn oversized_form_body_is_rejected() {
    let form = format!("query={}", "x".repeat(4096));
    let (status, _, body) = call(&api().await, Method::POST, "/api/v1/query", Some(&form)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("limit 1024 bytes"), "{body}");
}

#[tokio::test]
async fn probes_metrics_and_unknown_routes() {
    let api = api().await;
    assert_eq!(call(&api, Method::GET, "/-/healthy", None).await.0, StatusCode::OK);
    assert_eq!(call(&api, Method::GET, "/-/ready", None).await.2, "Engine is Ready.\n");
    assert_eq!(call(&api, Method::GET, "/nope", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&api, Method::DELETE, "/api/v1/query", None).await.0, StatusCode::METHOD_NOT_ALLOWED);
    let (status, content_type, body) = call(&api, Method::GET, "/metrics", None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, super::TEXT_FORMAT_CONTENT_TYPE));
    assert!(body.contains("prometheus_tsdb_head_series 2\n"), "{body}");
    assert!(body.contains("prometheus_tsdb_head_samples_appended_total 10\n"), "{body}");
    assert!(body.contains("engine_http_requests_total{handler=\"/-/healthy\"} 1\n"), "{body}");
    // The engine's own exposition must parse with its own scraper.
    let exposition = crate::scrape::parse::parse(body.as_bytes()).unwrap();
    assert!(exposition.samples.len() > 10);
}

#[tokio::test]
async fn tsdb_status_reports_head_cardinality() {
    let api = api().await;
    let (status, content_type, body) = call(&api, Method::GET, "/api/v1/status/tsdb?limit=2", None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(
        body,
        concat!(
            r#"{"status":"success","data":{"headStats":{"numSeries":2,"numLabelPairs":4,"chunkCount":2,"#,
            r#""minTime":1000000,"maxTime":1060000},"#,
            r#""seriesCountByMetricName":[{"name":"up","value":2}],"#,
            r#""labelValueCountByLabelName":[{"name":"job","value":2},{"name":"__name__","value":1}],"#,
            r#""memoryInBytesByLabelName":[{"name":"instance","value":6},{"name":"__name__","value":4}],"#,
            r#""seriesCountByLabelValuePair":[{"name":"__name__=up","value":2},{"name":"instance=h:1","value":2}]}}"#
        )
    );
    let (status, _, body) = call(&api, Method::GET, "/api/v1/status/tsdb?limit=x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

/// Query limits map to Prometheus' `errorType` and status (web/api/v1/api.go
/// `returnAPIError`, `getDefaultErrorCode`).
#[test]
fn query_limit_errors_map_to_prometheus_types() {
    #[track_caller]
    fn check(error: QueryError, status: u16, error_type: &str, message: &str) {
        let mapped = super::ApiError::from(error);
        assert_eq!((mapped.status.as_u16(), mapped.error_type, mapped.message.as_str()), (status, error_type, message));
    }
    check(QueryError::Timeout { stage: "query execution" }, 503, "timeout", "query timed out in query execution");
    check(QueryError::Timeout { stage: "query queue" }, 503, "timeout", "query timed out in query queue");
    check(QueryError::Canceled { stage: "query execution" }, 499, "canceled", "query was canceled in query execution");
    check(
        QueryError::QueueFull { concurrency_max: 1, queue_capacity_count: 4 },
        503,
        "unavailable",
        "too many concurrent queries: 1 evaluating and 4 waiting (--query.max-concurrency=1); retry later",
    );
}

#[tokio::test]
async fn timeout_parameter_is_enforced_and_validated() {
    let api = api().await;
    #[track_caller]
    fn check(got: (StatusCode, String, String), status: StatusCode, body_part: &str) {
        assert_eq!(got.0, status, "{}", got.2);
        assert!(got.2.contains(body_part), "{}", got.2);
    }
    let uri = "/api/v1/query?query=up&timeout=0s";
    check(
        call(&api, Method::GET, uri, None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"status":"error","errorType":"timeout","error":"query timed out in query queue"}"#,
    );
    let uri = "/api/v1/query_range?query=up&start=1000&end=1030&step=15s&timeout=0";
    check(call(&api, Method::GET, uri, None).await, StatusCode::SERVICE_UNAVAILABLE, r#""errorType":"timeout""#);
    let uri = "/api/v1/query?query=up&timeout=-1s";
    check(call(&api, Method::GET, uri, None).await, StatusCode::BAD_REQUEST, r#"invalid parameter \"timeout\""#);
    let uri = "/api/v1/query?query=up&timeout=banana";
    check(call(&api, Method::GET, uri, None).await, StatusCode::BAD_REQUEST, r#"invalid parameter \"timeout\""#);
    let uri = "/api/v1/query?query=up&timeout=30s";
    check(call(&api, Method::GET, uri, None).await, StatusCode::OK, r#""status":"success""#);
}

#[tokio::test]
async fn full_query_queue_is_refused_as_unavailable() {
    let db =
        Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap();
    let api = api_with(db, EngineOptions { query_concurrency_max: 1, ..EngineOptions::default() });
    let control = QueryControl::unbounded();
    let held = api.engine.admit(&control).await.unwrap();
    let mut waiters: Vec<_> = (0..4).map(|_| Box::pin(api.engine.admit(&control))).collect();
    for waiter in &mut waiters {
        assert!(futures_poll_once(waiter.as_mut()).is_pending());
    }
    let (status, _, body) = call(&api, Method::GET, "/api/v1/query?query=1", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains(r#""errorType":"unavailable""#) && body.contains("--query.max-concurrency=1"), "{body}");
    // A request that waits in the queue and is dropped (client gone) leaves it.
    drop(waiters.pop());
    let mut request = Box::pin(call(&api, Method::GET, "/api/v1/query?query=1", None));
    assert!(futures_poll_once(request.as_mut()).is_pending(), "waits for the held permit");
    drop(request);
    drop(waiters.pop());
    drop((held, waiters));
    let (status, _, body) = call(&api, Method::GET, "/api/v1/query?query=1", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, metrics) = call(&api, Method::GET, "/metrics", None).await;
    assert!(metrics.contains("\nprometheus_engine_queries 0\n"), "{metrics}");
    assert!(metrics.contains("\nprometheus_engine_queries_concurrent_max 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nprometheus_engine_query_duration_seconds_count{slice=\"inner_eval\"} 1\n"),
        "{metrics}"
    );
}

fn futures_poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// Series without end: only a deadline or a cancellation stops a query over it.
struct Endless;

impl crate::storage::Queryable for Endless {
    fn querier(&self, _: i64, _: i64) -> Result<Box<dyn crate::storage::Querier>, crate::storage::StorageError> {
        Ok(Box::new(Endless))
    }
}

impl crate::storage::Querier for Endless {
    fn select(
        &self,
        _hints: Option<&crate::storage::SelectHints>,
        _matchers: &[crate::model::Matcher],
    ) -> crate::storage::SeriesSet<'_> {
        Box::new((0u64..).map(|index| {
            Ok(crate::storage::Series {
                labels: Labels::from_pairs([("__name__", "endless".to_string()), ("index", index.to_string())]),
                samples: vec![crate::model::Sample { timestamp_ms: 1_000_000, value: 1.0 }],
            })
        }))
    }
    fn label_names(&self, _: &[crate::model::Matcher]) -> Result<Vec<String>, crate::storage::StorageError> {
        Ok(Vec::new())
    }
    fn label_values(&self, _: &str, _: &[crate::model::Matcher]) -> Result<Vec<String>, crate::storage::StorageError> {
        Ok(Vec::new())
    }
}

/// On the compute pool a never-ending evaluation leaves the runtime free for other requests,
/// and dropping its handler (the client went away) cancels it and frees its slot.
#[tokio::test]
async fn pooled_query_keeps_the_runtime_responsive_and_stops_when_dropped() {
    let db =
        Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap();
    let options = EngineOptions { query_samples_max: usize::MAX, ..EngineOptions::default() };
    let engine = Engine::new(Arc::new(Endless), options);
    let spawner = Arc::new(crate::io::PooledSpawner::new(crate::io::ComputePool::new(2).unwrap()));
    let api = Api::new(engine, Arc::new(FixedClock(1_060_000)), db, Arc::new(SelfMetrics::default()), 1024, spawner);
    let mut endless = Box::pin(call(&api, Method::GET, "/api/v1/query?query=count(endless)", None));
    // Inline, this poll would never return; on the pool the query is running elsewhere.
    assert!(futures_poll_once(endless.as_mut()).is_pending());
    assert_eq!(api.engine.stats().queries_running_count, 1);
    let (status, _, _) = call(&api, Method::GET, "/-/healthy", None).await;
    assert_eq!(status, StatusCode::OK);
    drop(endless);
    // The evaluation sees the flag within POLL_INTERVAL_COUNT series and frees its permit.
    let mut attempt_count = 0;
    while api.engine.stats().queries_running_count > 0 {
        attempt_count += 1;
        assert!(attempt_count < 10_000, "the canceled evaluation never stopped");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // A deadline stops the same query with Prometheus' timeout error.
    let (status, _, body) = call(&api, Method::GET, "/api/v1/query?query=count(endless)&timeout=20ms", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#);
}

/// Two more series so `match[]` unions and label value lists have something to pick from.
async fn api_with_metadata_series() -> Api {
    let db =
        Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap();
    let mut appender = db.appender();
    for (name, job) in [("up", "a"), ("up", "b"), ("http_requests_total", "a"), ("http_requests_total", "c")] {
        let labels = Labels::from_pairs([("__name__", name), ("job", job), ("instance", "h:1")]);
        appender.append(None, &labels, 1_000_000, 1.0).unwrap();
    }
    appender.commit().await.unwrap();
    api_with(db, EngineOptions::default())
}

#[tokio::test]
async fn series_answers_the_union_of_match_selectors_sorted_and_once() {
    let api = api_with_metadata_series().await;
    let uri = "/api/v1/series?match[]=up%7Bjob%3D%22a%22%7D&match[]=%7Bjob%3D%22a%22%7D&start=999&end=1001";
    let (status, _, body) = call(&api, Method::GET, uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"http_requests_total","instance":"h:1","job":"a"},{"__name__":"up","instance":"h:1","job":"a"}]}"#
    );
    // Outside the time range: nothing.
    let (_, _, body) = call(&api, Method::GET, "/api/v1/series?match[]=up&start=2000&end=3000", None).await;
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
    // Form POST, with a limit: truncated and warned as Prometheus does.
    let (status, _, body) = call(&api, Method::POST, "/api/v1/series", Some("match%5B%5D=up&limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"up","instance":"h:1","job":"a"}],"warnings":["results truncated due to limit"]}"#
    );
}

#[tokio::test]
async fn series_refuses_missing_or_empty_matching_selectors() {
    let api = api_with_metadata_series().await;
    let (status, _, body) = call(&api, Method::GET, "/api/v1/series", None).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
        )
    );
    let (status, _, body) = call(&api, Method::GET, "/api/v1/series?match[]=%7Bjob%3D%22%22%7D", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("at least one non-empty matcher"), "{body}");
    let (status, _, body) = call(&api, Method::GET, "/api/v1/series?match[]=rate(up%5B1m%5D)", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("is not a series selector"), "{body}");
    let (status, _, _) = call(&api, Method::GET, "/api/v1/series?match[]=up&start=10&end=5", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn label_names_and_values_filter_by_match_and_limit() {
    let api = api_with_metadata_series().await;
    let (_, _, body) = call(&api, Method::GET, "/api/v1/labels", None).await;
    assert_eq!(body, r#"{"status":"success","data":["__name__","instance","job"]}"#);
    let (_, _, body) = call(&api, Method::GET, "/api/v1/label/job/values", None).await;
    assert_eq!(body, r#"{"status":"success","data":["a","b","c"]}"#);
    let (_, _, body) = call(&api, Method::GET, "/api/v1/label/job/values?match[]=http_requests_total", None).await;
    assert_eq!(body, r#"{"status":"success","data":["a","c"]}"#);
    let (_, _, body) = call(&api, Method::GET, "/api/v1/label/__name__/values?limit=1", None).await;
    assert_eq!(
        body,
        r#"{"status":"success","data":["http_requests_total"],"warnings":["results truncated due to limit"]}"#
    );
    let (status, _, _) = call(&api, Method::GET, "/api/v1/label/0bad/values", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn format_query_and_buildinfo_answer_as_prometheus_shapes_them() {
    let api = api_with_metadata_series().await;
    let (status, _, body) =
        call(&api, Method::GET, "/api/v1/format_query?query=sum%20by(job)(rate(up%5B5m%5D))", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"status":"success","data":"sum by (job) (rate(up[5m]))"}"#);
    let (status, _, body) = call(&api, Method::GET, "/api/v1/format_query?query=sum(", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, body) = call(&api, Method::GET, "/api/v1/status/buildinfo", None).await;
    assert_eq!(status, StatusCode::OK);
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(parsed["data"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(parsed["data"]["goVersion"].is_string());
}

#[tokio::test]
async fn parse_query_answers_the_syntax_tree_in_prometheus_shape() {
    let api = api_with_metadata_series().await;
    let (status, _, body) = call(
        &api,
        Method::GET,
        "/api/v1/parse_query?query=sum%20by(job)(rate(up%7Bjob%3D%22x%22%7D%5B5m%5D))%20%3E%201",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tree: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = &tree["data"];
    assert_eq!(data["type"], "binaryExpr");
    assert_eq!(data["op"], ">");
    assert_eq!(data["lhs"]["type"], "aggregation");
    assert_eq!(data["lhs"]["op"], "sum");
    assert_eq!(data["lhs"]["grouping"], serde_json::json!(["job"]));
    assert_eq!(data["lhs"]["expr"]["type"], "call");
    assert_eq!(data["lhs"]["expr"]["func"]["name"], "rate");
    assert_eq!(data["lhs"]["expr"]["args"][0]["type"], "matrixSelector");
    assert_eq!(data["rhs"]["type"], "numberLiteral");
    let (status, _, body) = call(&api, Method::POST, "/api/v1/parse_query", Some("query=sum(")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("bad_data"), "{body}");
}

#[tokio::test]
async fn query_responses_carry_warnings_with_positions_as_prometheus_3() {
    let api = api_with_metadata_series().await;
    let (status, _, body) =
        call(&api, Method::GET, "/api/v1/query?query=histogram_quantile(2%2C%20up)&time=100", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["warnings"],
        serde_json::json!(["PromQL warning: quantile value should be between 0 and 1, got 2 (1:20)"]),
        "{body}"
    );
    assert!(answer.get("infos").is_none(), "{body}");
    let (_, _, body) = call(&api, Method::GET, "/api/v1/query_range?query=sort(up)&start=0&end=60&step=15", None).await;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["warnings"][0],
        "PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)",
        "{body}"
    );
    let (_, _, body) = call(&api, Method::GET, "/api/v1/query?query=up&time=100", None).await;
    assert!(!body.contains("warnings"), "{body}");
}

#[tokio::test]
async fn federate_answers_the_text_format_and_refuses_bad_selectors() {
    let api = api().await;
    let (status, content_type, body) = call(&api, Method::GET, "/federate?match[]=up%7Bjob%3D%22a%22%7D", None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(body, "# TYPE up untyped\nup{instance=\"h:1\",job=\"a\"} 1 1060000\n");
    let (status, _, body) = call(&api, Method::GET, "/federate", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""), "no match[]: nothing");
    let (status, _, body) = call(&api, Method::GET, "/federate?match[]=up%7B", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _, _) = call(&api, Method::GET, "/federate?match[]=%7Bjob%3D%22%22%7D", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a selector matching everything is refused");
    let (status, _, _) = call(&api, Method::POST, "/federate", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
