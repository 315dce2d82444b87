//! The frontend in front of a scripted downstream on the in-memory network, in paused tokio
//! time (the wall clock follows it), so TTLs, freshness, the breaker's cool-down and coalescing
//! are exercised exactly.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::Value;

use super::config::FrontendConfig;
use super::Frontend;
use crate::io::{Clock, Env, MemFileSystem, MemNetwork, Network, RandomStreams, TokioSpawner};

/// 2026-01-01T12:00:00Z: mid-day, so hour-long ranges stay within one day piece.
const BASE_MS: i64 = 1_767_268_800_000;

struct VirtualClock(tokio::time::Instant);

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        BASE_MS + self.0.elapsed().as_millis() as i64
    }
}

/// A request's path and parameters.
type Asked = (String, Vec<(String, String)>);

/// The scripted downstream: what it was asked, and switches.
#[derive(Default)]
struct Downstream {
    /// (path, parameters) of every request, in arrival order.
    requests: Mutex<Vec<Asked>>,
    /// Answer 503 to everything.
    failing: AtomicBool,
    /// Delay before answering, milliseconds.
    delay_ms: AtomicU64,
}

impl Downstream {
    fn count(&self, path: &str) -> usize {
        self.requests.lock().unwrap().iter().filter(|(request_path, _)| request_path == path).count()
    }

    fn last(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().last().map(|(_, pairs)| pairs.clone()).unwrap_or_default()
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        pairs.extend(form_urlencoded::parse(&body).into_owned());
        self.requests.lock().unwrap().push((path.clone(), pairs.clone()));
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        if self.failing.load(Ordering::SeqCst) {
            return json(503, r#"{"status":"error","errorType":"unavailable","error":"overloaded"}"#.to_string());
        }
        let find = |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
        let query = find("query").unwrap_or_default();
        match path.as_str() {
            "/api/v1/query" => {
                let time = find("time").unwrap_or_default();
                let result = if query.contains("db_id=\"db1\"") && query.starts_with("dbaas_database_info") {
                    format!(r#"[{{"metric":{{"db_id":"db1","engine":"postgres"}},"value":[{time},"1"]}}]"#)
                } else if query.contains("missing") || query.contains("db_id=\"db2\"") {
                    "[]".to_string()
                } else if query.contains("bad(") {
                    return json(400, r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#.to_string());
                } else {
                    format!(r#"[{{"metric":{{"q":"{}"}},"value":[{time},"{}"]}}]"#, query.len(), query.len())
                };
                let warnings = if query.contains("partial") { r#","warnings":["store down"]"# } else { "" };
                json(
                    200,
                    format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}{warnings}}}"#),
                )
            }
            "/api/v1/query_range" => {
                let start_ms = super::parse_time_ms(&find("start").unwrap()).unwrap();
                let end_ms = super::parse_time_ms(&find("end").unwrap()).unwrap();
                let step_ms = super::parse_duration_param_ms(&find("step").unwrap()).unwrap();
                json(200, range_answer(start_ms, end_ms, step_ms))
            }
            _ => json(200, r#"{"status":"success","data":["__name__","job"]}"#.to_string()),
        }
    }
}

/// The downstream's range answer: series `a` at every point, valued by its time, and series `b`
/// from `BASE_MS` on only.
fn range_answer(start_ms: i64, end_ms: i64, step_ms: i64) -> String {
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut t = start_ms;
    while t <= end_ms {
        let point = format!("[{},\"{}\"]", super::seconds_text(t), t / 1000);
        if t >= BASE_MS {
            b.push(point.clone());
        }
        a.push(point);
        t += step_ms;
    }
    let mut result = Vec::new();
    if !a.is_empty() {
        result.push(format!(r#"{{"metric":{{"s":"a"}},"values":[{}]}}"#, a.join(",")));
    }
    if !b.is_empty() {
        result.push(format!(r#"{{"metric":{{"s":"b"}},"values":[{}]}}"#, b.join(",")));
    }
    format!(r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#, result.join(","))
}

fn json(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

struct Fixture {
    frontend: Arc<Frontend>,
    downstream: Arc<Downstream>,
}

const VIEW_CONFIG: &str = r#"
views:
  - path: /api/v1/domain/{domain}/project/{project}/databases/{db_id}/metrics
    lookup: 'dbaas_database_info{domain="{domain}",db_id="{db_id}"}'
    engines:
      postgres:
        connections: 'sum(pg_connections{db_id="{db_id}"})'
        cpu_usage: 'avg(cpu{db_id="{db_id}"})'
        storage_size: 'missing{db_id="{db_id}"}'
"#;

async fn fixture(yaml: &str) -> Fixture {
    let net = MemNetwork::default();
    let env = Env {
        clock: Arc::new(VirtualClock(tokio::time::Instant::now())),
        fs: Arc::new(MemFileSystem::default()),
        net: Arc::new(net.clone()),
        spawner: Arc::new(TokioSpawner),
        random: RandomStreams::new(1),
    };
    let downstream = Arc::new(Downstream::default());
    let listener = net.bind("downstream:9090".to_string()).await.unwrap();
    let serving = downstream.clone();
    tokio::spawn(crate::api::serve::serve_with(listener, env.spawner.clone(), 10_000, move |request| {
        let serving = serving.clone();
        async move { serving.answer(request).await }
    }));
    let mut config = FrontendConfig::new("http://downstream:9090".to_string());
    config.apply_file(yaml).unwrap();
    Fixture { frontend: Arc::new(Frontend::new(env, config).unwrap()), downstream }
}

impl Fixture {
    async fn get(&self, path_and_query: &str, user: &str) -> (u16, String, Option<String>) {
        let request = Request::get(path_and_query).header("X-User-Id", user).body(Full::new(Bytes::new())).unwrap();
        let response = self.frontend.handle(request).await;
        let status = response.status().as_u16();
        let retry_after = response.headers().get("Retry-After").map(|value| value.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap(), retry_after)
    }

    async fn ok(&self, path_and_query: &str) -> Value {
        let (status, body, _) = self.get(path_and_query, "alice").await;
        assert_eq!(status, 200, "{path_and_query}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn stats(&self) -> Value {
        serde_json::from_str(&self.get("/api/v1/metrics/cache-stats", "").await.1).unwrap()
    }
}

fn range_path(start_ms: i64, end_ms: i64, step_s: i64) -> String {
    format!(
        "/api/v1/query_range?query=up&start={}&end={}&step={step_s}",
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0
    )
}

#[tokio::test(start_paused = true)]
async fn instant_answers_are_cached_for_their_ttl() {
    let fixture = fixture("").await;
    let first = fixture.ok("/api/v1/query?query=up").await;
    let second = fixture.ok("/api/v1/query?query=up").await;
    assert_eq!(first, second);
    assert_eq!(fixture.downstream.count("/api/v1/query"), 1);
    // The time sent is now rounded down to the 5 s resolution.
    let time = fixture.downstream.last().into_iter().find(|(name, _)| name == "time").unwrap().1;
    assert_eq!(time, (BASE_MS / 1000).to_string());
    tokio::time::sleep(Duration::from_secs(5)).await;
    fixture.ok("/api/v1/query?query=up").await;
    assert_eq!(fixture.downstream.count("/api/v1/query"), 2, "past the 5 s TTL the downstream is asked again");
    // An explicit time within the same 5 s shares the answer.
    fixture.ok(&format!("/api/v1/query?query=up&time={}", BASE_MS as f64 / 1000.0 + 1.5)).await;
    fixture.ok(&format!("/api/v1/query?query=up&time={}", BASE_MS as f64 / 1000.0 + 3.0)).await;
    assert_eq!(fixture.downstream.count("/api/v1/query"), 3);
    let stats = fixture.stats().await;
    assert_eq!(stats["total_requests"], 5);
    assert_eq!(stats["l1_hits"], 2);
    assert_eq!(stats["source_hits"], 3);
    assert_eq!(stats["cache_hit_rate"], 0.4);
    // The answers at BASE_MS and 5 s later, and the latest answer kept for serving stale.
    assert_eq!(stats["memory_cache_size"], 3);
}

#[tokio::test(start_paused = true)]
async fn warnings_errors_and_no_store_are_not_cached() {
    let fixture = fixture("").await;
    for _ in 0..2 {
        let answer = fixture.ok("/api/v1/query?query=partial").await;
        assert_eq!(answer["warnings"][0], "store down");
    }
    assert_eq!(fixture.downstream.count("/api/v1/query"), 2);
    for _ in 0..2 {
        let (status, body, _) = fixture.get("/api/v1/query?query=bad(", "alice").await;
        assert_eq!(status, 400, "the downstream's error reaches the client: {body}");
    }
    assert_eq!(fixture.downstream.count("/api/v1/query"), 4);
    // Other endpoints pass through.
    assert_eq!(fixture.ok("/api/v1/labels").await["data"][1], "job");
    assert_eq!(fixture.stats().await["passthrough"], 1);
}

#[tokio::test(start_paused = true)]
async fn a_dashboard_moving_forward_fetches_only_its_tail() {
    let fixture = fixture("").await;
    let hour_ms = 3_600_000;
    let first = fixture.ok(&range_path(BASE_MS - hour_ms, BASE_MS, 15)).await;
    let expected: Value = serde_json::from_str(&range_answer(BASE_MS - hour_ms, BASE_MS, 15_000)).unwrap();
    assert_eq!(first, expected);
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 1);
    // 30 s later the dashboard asks for the last hour again.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let now_ms = BASE_MS + 30_000;
    let second = fixture.ok(&range_path(now_ms - hour_ms, now_ms, 15)).await;
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 2);
    // Only what was newer than max_freshness (1 min) last time is fetched again.
    let asked = fixture.downstream.last();
    let start = asked.iter().find(|(name, _)| name == "start").unwrap().1.parse::<f64>().unwrap();
    assert_eq!((start * 1000.0) as i64, BASE_MS - 60_000 + 15_000);
    let expected: Value = serde_json::from_str(&range_answer(now_ms - hour_ms, now_ms, 15_000)).unwrap();
    assert_eq!(second, expected, "the merged answer equals the downstream's own for the whole range");
    let stats = fixture.stats().await;
    assert_eq!(stats["source_hits"], 2);
    assert_eq!(stats["extent_keys"], 1);
    // Unaligned times are aligned to the step: these share the previous answer.
    fixture.ok(&range_path(now_ms - hour_ms + 7_000, now_ms + 3_000, 15)).await;
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 2);
    assert_eq!(fixture.stats().await["l1_hits"], 1);
}

#[tokio::test(start_paused = true)]
async fn old_ranges_come_from_extents_alone_and_days_are_fetched_apart() {
    let fixture = fixture("").await;
    let day_ms = 86_400_000;
    // Two days ending a day ago: three day pieces (the ends are partial days).
    let (start_ms, end_ms) = (BASE_MS - 3 * day_ms, BASE_MS - day_ms);
    let first = fixture.ok(&range_path(start_ms, end_ms, 300)).await;
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 3);
    let expected: Value = serde_json::from_str(&range_answer(start_ms, end_ms, 300_000)).unwrap();
    assert_eq!(first, expected);
    // A narrower window inside it, after the L1 TTL: no downstream request at all.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let inner = fixture.ok(&range_path(start_ms + day_ms, end_ms - 3_600_000, 300)).await;
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 3);
    let expected: Value = serde_json::from_str(&range_answer(start_ms + day_ms, end_ms - 3_600_000, 300_000)).unwrap();
    assert_eq!(inner, expected);
    assert_eq!(fixture.stats().await["extent_hits"], 1);
    // `@ start()` depends on the whole range: fetched whole, never from pieces.
    let path = range_path(start_ms, end_ms, 300).replace("query=up", "query=up%20%40%20start()");
    fixture.ok(&path).await;
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 4);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_identical_requests_make_one_downstream_request() {
    let fixture = Arc::new(fixture("limits: {user_requests_per_minute: 0}").await);
    fixture.downstream.delay_ms.store(200, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let fixture = fixture.clone();
        tasks.push(tokio::spawn(async move { fixture.ok(&range_path(BASE_MS - 600_000, BASE_MS, 10)).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(fixture.downstream.count("/api/v1/query_range"), 1);
    let stats = fixture.stats().await;
    assert_eq!(stats["total_requests"], 1_000);
    assert_eq!(stats["source_hits"], 1);
    assert_eq!(stats["coalesced"], 999);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_at_their_edges() {
    let fixture = fixture("limits: {user_requests_per_minute: 100, key_requests_per_minute: 150}").await;
    for index in 0..100 {
        let (status, _, _) = fixture.get("/api/v1/query?query=up", "alice").await;
        assert_eq!(status, 200, "request {index}");
    }
    let (status, body, retry_after) = fixture.get("/api/v1/query?query=up", "alice").await;
    assert_eq!(status, 429);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["limit"], 100);
    assert_eq!(body["remaining"], 0);
    assert_eq!(body["retry_after"], 1);
    assert!(body["error"].as_str().unwrap().contains("user"));
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Bob has his own allowance; alice gets one more after 0.6 s.
    assert_eq!(fixture.get("/api/v1/query?query=up", "bob").await.0, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fixture.get("/api/v1/query?query=up", "alice").await.0, 200);
    assert_eq!(fixture.get("/api/v1/query?query=up", "alice").await.0, 429);
    // The key limit spans users: 150 requests for db_id=x, whoever sends them.
    tokio::time::sleep(Duration::from_secs(60)).await;
    for index in 0..150 {
        let user = format!("user{}", index % 3);
        assert_eq!(fixture.get("/api/v1/query?query=up&db_id=x", &user).await.0, 200, "request {index}");
    }
    let (status, body, _) = fixture.get("/api/v1/query?query=up&db_id=x", "user9").await;
    assert_eq!(status, 429);
    assert!(body.contains("key limit"), "{body}");
    let stats = fixture.stats().await;
    assert_eq!(stats["rate_limited"], 3);
    assert_eq!(stats["total_requests"], 100 + 1 + 1 + 2 + 150 + 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_serves_stale_answers_and_recovers() {
    let fixture = fixture("").await;
    let cached = fixture.ok("/api/v1/query?query=up&time=100").await;
    tokio::time::sleep(Duration::from_secs(6)).await; // past the TTL: a stale copy remains
    fixture.downstream.failing.store(true, Ordering::SeqCst);
    // Five failed fetches (each retried twice after a 503) open the breaker; meanwhile the
    // stale copy is served, with a warning.
    for _ in 0..5 {
        let answer = fixture.ok("/api/v1/query?query=up&time=100").await;
        assert_eq!(answer["data"], cached["data"]);
        assert!(answer["warnings"][0].as_str().unwrap().starts_with("stale answer"), "{answer}");
    }
    let asked = fixture.downstream.count("/api/v1/query");
    assert_eq!(asked, 1 + 5 * 3);
    assert_eq!(fixture.stats().await["breaker_state"], "open");
    // Open: the downstream is not asked; stale copies say why; nothing stale is a 503.
    let answer = fixture.ok("/api/v1/query?query=up&time=100").await;
    assert_eq!(answer["warnings"][0], "stale answer: circuit breaker open");
    let (status, body, _) = fixture.get("/api/v1/query?query=never_cached", "alice").await;
    assert_eq!(status, 503);
    assert!(body.contains("circuit breaker open"), "{body}");
    assert_eq!(fixture.downstream.count("/api/v1/query"), asked);
    // After 60 s one probe goes through; the downstream is back, so the breaker closes.
    fixture.downstream.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let answer = fixture.ok("/api/v1/query?query=up&time=100").await;
    assert!(answer.get("warnings").is_none(), "{answer}");
    assert_eq!(fixture.downstream.count("/api/v1/query"), asked + 1);
    let stats = fixture.stats().await;
    assert_eq!(stats["breaker_state"], "closed");
    assert_eq!(stats["stale_served"], 6);
    assert_eq!(stats["unavailable"], 1);
    let metrics = fixture.get("/metrics", "").await.1;
    assert!(metrics.contains("frontend_breaker_opened_total 1\n"), "{metrics}");
    assert!(metrics.contains("frontend_cache_lookups_total{outcome=\"stale\"} 6\n"), "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn views_answer_named_values() {
    let fixture = fixture(VIEW_CONFIG).await;
    let answer = fixture.ok("/api/v1/domain/acme/project/web/databases/db1/metrics").await;
    assert_eq!(answer["engine"], "postgres");
    assert_eq!(answer["db_id"], "db1");
    assert_eq!(answer["domain"], "acme");
    let connections = r#"sum(pg_connections{db_id="db1"})"#.len();
    assert_eq!(answer["metrics"]["connections"].as_f64(), Some(connections as f64));
    assert_eq!(answer["metrics"]["cpu_usage"].as_f64(), Some(r#"avg(cpu{db_id="db1"})"#.len() as f64));
    assert_eq!(answer["metrics"]["storage_size"], Value::Null);
    assert_eq!(answer["reasons"]["storage_size"], "no data");
    assert_eq!(answer["stale"], false);
    assert_eq!(fixture.downstream.count("/api/v1/query"), 4);
    // The second request within the TTL is all cache.
    fixture.ok("/api/v1/domain/acme/project/web/databases/db1/metrics").await;
    assert_eq!(fixture.downstream.count("/api/v1/query"), 4);
    let (status, body, _) = fixture.get("/api/v1/domain/acme/project/web/databases/db2/metrics", "alice").await;
    assert_eq!(status, 404, "{body}");
    let (status, body, _) = fixture.get("/api/v1/domain/acme/project/web/databases/db1%22%7D/metrics", "alice").await;
    assert_eq!(status, 400, "{body}");
    // With the downstream down and the breaker open, the cached view is served stale.
    fixture.downstream.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(6)).await;
    for _ in 0..5 {
        fixture.get("/api/v1/query?query=other", "bob").await;
    }
    let answer = fixture.ok("/api/v1/domain/acme/project/web/databases/db1/metrics").await;
    assert_eq!(answer["stale"], true);
    assert_eq!(answer["reason"], "circuit breaker open");
    assert_eq!(answer["metrics"]["connections"].as_f64(), Some(connections as f64));
    assert_eq!(fixture.stats().await["total_requests"], 5 + 5);
}

#[tokio::test(start_paused = true)]
async fn health_and_unknown_paths() {
    let fixture = fixture("").await;
    assert_eq!(fixture.get("/-/healthy", "").await.0, 200);
    assert_eq!(fixture.get("/-/ready", "").await.0, 200);
    assert_eq!(fixture.get("/nothing", "").await.0, 404);
}

#[tokio::test(start_paused = true)]
async fn the_cache_header_says_how_each_answer_was_served() {
    let fixture = fixture("").await;
    let mut seen = Vec::new();
    for wait_s in [0, 0, 6] {
        tokio::time::sleep(Duration::from_secs(wait_s)).await;
        if wait_s == 6 {
            fixture.downstream.failing.store(true, Ordering::SeqCst);
        }
        let request = Request::get("/api/v1/query?query=up&time=100").body(Full::new(Bytes::new())).unwrap();
        let response = fixture.frontend.handle(request).await;
        seen.push(response.headers()[super::CACHE_HEADER].to_str().unwrap().to_string());
    }
    assert_eq!(seen, ["miss", "l1", "stale"]);
}
