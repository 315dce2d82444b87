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
use crate::promql::{Engine, EngineOptions};
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
    let engine = Engine::new(Arc::new(db.clone()), EngineOptions::default());
    Api::new(engine, Arc::new(FixedClock(1_060_000)), db, Arc::new(SelfMetrics::default()), 1024)
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
