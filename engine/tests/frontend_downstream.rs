//! The query frontend binary in front of real downstreams on loopback: the engine's server
//! (always) and Debian's Prometheus 2.42 (when installed; required under `ENGINE_PEER_TESTS=1`),
//! each scraping itself every second. Through the frontend, range answers (first whole, then a
//! window moved forward and merged from extents), instant answers and passed-through endpoints
//! must equal what the downstream answers directly for the same aligned times; cache-stats
//! counts exactly the requests sent; 1,000 identical requests make one downstream request by the
//! downstream's own counter; with the downstream killed, cached questions are answered stale with
//! a warning and new ones get a 503, the breaker opens, and once the downstream is back its probe
//! closes the breaker and answers are fresh again.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, http_get, now_ms, peer, Process};
use serde_json::Value;

/// Deadline for each wait.
const WAIT_S_MAX: u64 = 60;

/// Range queries compared; each exercises a different shape of answer.
const RANGE_QUERIES: &[&str] =
    &["up", "rate(prometheus_http_requests_total[10s])", "sum by (job) (scrape_samples_scraped)", "count(up) * 2"];

fn start_frontend(dir: &Path, port: u16, downstream_port: u16) -> Process {
    // A short freshness window, so the test's second window finds extents to merge.
    // A short breaker period, so the test sees it half-open and close again.
    let config =
        "cache:\n  max_freshness: 5s\n  l1_ttl: 2s\nlimits:\n  user_requests_per_minute: 0\nbreaker:\n  open_for: 3s\n";
    common::start_frontend(dir, "frontend", port, downstream_port, config, &[])
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, body) = http_get(port, path).unwrap_or_else(|error| panic!("GET {path}: {error}"));
    (status, serde_json::from_str(&body).unwrap_or_else(|error| panic!("GET {path}: {error}: {body}")))
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Range queries the downstream itself counted: the engine's `engine_http_requests_total`,
/// Prometheus' `prometheus_http_requests_total` (every status code).
fn downstream_range_requests(port: u16) -> u64 {
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    metrics
        .lines()
        .filter(|line| {
            (line.starts_with("engine_http_requests_total{") || line.starts_with("prometheus_http_requests_total{"))
                && line.contains("handler=\"/api/v1/query_range\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn range_path(query: &str, start_ms: i64, end_ms: i64, step_s: i64) -> String {
    format!(
        "/api/v1/query_range?query={}&start={:.3}&end={:.3}&step={step_s}",
        encoded(query),
        start_ms as f64 / 1000.0,
        end_ms as f64 / 1000.0
    )
}

/// Runs the whole comparison against the downstream on `downstream_port`.
fn check_frontend(name: &str, start_downstream: impl Fn() -> Process, downstream_port: u16) {
    let mut downstream = start_downstream();
    let dir = common::temp_dir("engine-frontend", name);
    let port = free_port();
    let frontend = start_frontend(&dir, port, downstream_port);
    let downstream_log = downstream.log_path.clone();
    let failure = |what: &str| {
        let downstream_log = std::fs::read_to_string(&downstream_log).unwrap_or_default();
        format!("{name}: {what}\nfrontend log:\n{}\ndownstream log:\n{downstream_log}", frontend.log())
    };
    common::wait_for_body(port, "/-/ready", WAIT_S_MAX, &frontend, |_| true);
    // Wait for 20 s of the downstream's self-scrapes.
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        let path = format!("/api/v1/query?query={}", encoded("count_over_time(up[1h])"));
        let (_, answer) = get_json(downstream_port, &path);
        if answer["data"]["result"][0]["value"][1].as_str().and_then(|count| count.parse::<f64>().ok()) >= Some(20.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", failure("the downstream scraped too little"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut sent = 0;
    let step_s = 2;
    for round in 0..2 {
        // Ends a few seconds back, aligned to the step: every sample there is written.
        let end_ms = (now_ms() - 3_000) / (step_s * 1000) * (step_s * 1000);
        let start_ms = end_ms - 20_000;
        for query in RANGE_QUERIES {
            let path = range_path(query, start_ms, end_ms, step_s);
            let (status, through) = get_json(port, &path);
            sent += 1;
            assert_eq!(status, 200, "{}", failure(&format!("{path}: {through}")));
            let (_, direct) = get_json(downstream_port, &path);
            assert_eq!(through["data"], direct["data"], "{}", failure(&format!("round {round}: {query}")));
            assert!(through.get("warnings").is_none(), "{through}");
        }
        // The next window starts 8 s later: what is older than max_freshness comes from extents.
        std::thread::sleep(Duration::from_secs(8));
    }
    let (_, stats) = get_json(port, "/api/v1/metrics/cache-stats");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    let partial_hits: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("frontend_extent_partial_hits_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_default();
    assert!(partial_hits >= RANGE_QUERIES.len() as f64, "{}", failure(&format!("no extents merged: {metrics}")));
    // An instant query: the frontend rounds its time down to 5 s.
    let time_ms = (now_ms() - 2_000) / 5_000 * 5_000 + 1_234;
    let path = format!("/api/v1/query?query={}&time={:.3}", encoded("sum(up)"), time_ms as f64 / 1000.0);
    let (status, through) = get_json(port, &path);
    sent += 1;
    assert_eq!(status, 200, "{through}");
    let rounded = format!("/api/v1/query?query={}&time={:.3}", encoded("sum(up)"), (time_ms - 1_234) as f64 / 1000.0);
    assert_eq!(through["data"], get_json(downstream_port, &rounded).1["data"], "{}", failure("instant"));
    // Passed through: label names, and a bad query's error.
    let (status, labels) = get_json(port, "/api/v1/labels");
    sent += 1;
    assert_eq!(status, 200);
    assert_eq!(labels["data"], get_json(downstream_port, "/api/v1/labels").1["data"]);
    let (status, error) = get_json(port, &format!("/api/v1/query?query={}", encoded("sum(")));
    sent += 1;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["errorType"], "bad_data");
    let (_, stats_now) = get_json(port, "/api/v1/metrics/cache-stats");
    assert_eq!(stats_now["total_requests"], sent, "{stats_now}");
    assert_eq!(stats["total_requests"], RANGE_QUERIES.len() * 2, "{stats}");
    // 1,000 identical requests at once: exactly one reaches the downstream, by its own count.
    let end_ms = (now_ms() - 3_000) / 2_000 * 2_000;
    let herd_path = range_path("sum(up) * 7", end_ms - 20_000, end_ms, 2);
    let before = downstream_range_requests(downstream_port);
    let threads: Vec<_> = (0..1_000)
        .map(|_| {
            let herd_path = herd_path.clone();
            std::thread::spawn(move || get_json(port, &herd_path))
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
    sent += 1_000;
    assert!(
        answers.iter().all(|(status, answer)| *status == 200 && *answer == answers[0].1),
        "{}",
        failure("coalesced")
    );
    let crosses_midnight = (end_ms - 20_000) / 86_400_000 != end_ms / 86_400_000;
    let expected = if crosses_midnight { 2 } else { 1 };
    let after = downstream_range_requests(downstream_port);
    assert_eq!(after - before, expected, "{}", failure("1,000 identical requests"));
    let (_, stats_after) = get_json(port, "/api/v1/metrics/cache-stats");
    assert_eq!(stats_after["total_requests"], sent, "{stats_after}");
    // The downstream goes away: the cached instant answer is served stale, a new question 503s.
    let _ = downstream.child.kill();
    let _ = downstream.child.wait();
    std::thread::sleep(Duration::from_secs(3)); // past the 2 s TTL
    let (status, stale) = get_json(port, &path);
    assert_eq!(status, 200, "{}", failure(&format!("stale: {stale}")));
    assert_eq!(stale["data"], through["data"]);
    assert!(stale["warnings"][0].as_str().is_some_and(|warning| warning.starts_with("stale answer")), "{stale}");
    let (status, unavailable) = get_json(port, &format!("/api/v1/query?query={}", encoded("never_asked")));
    assert_eq!(status, 503, "{unavailable}");
    assert_eq!(unavailable["errorType"], "unavailable");
    // More failures open the breaker: the downstream is not asked, stale copies say why.
    for index in 0..5 {
        get_json(port, &format!("/api/v1/query?query={}", encoded(&format!("never_asked_{index}"))));
    }
    let (_, stats_open) = get_json(port, "/api/v1/metrics/cache-stats");
    assert_eq!(stats_open["breaker_state"], "open", "{}", failure(&stats_open.to_string()));
    let (_, stale) = get_json(port, &path);
    assert_eq!(stale["warnings"][0], "stale answer: circuit breaker open", "{stale}");
    // The downstream comes back: after the breaker's period one probe closes it, answers are fresh.
    downstream = start_downstream();
    common::wait_for_body(downstream_port, "/-/ready", WAIT_S_MAX, &downstream, |_| true);
    std::thread::sleep(Duration::from_secs(4));
    let (status, fresh) = get_json(port, &path);
    assert_eq!(status, 200, "{}", failure(&format!("recovered: {fresh}")));
    assert!(fresh.get("warnings").is_none(), "{}", failure(&format!("recovered: {fresh}")));
    assert_eq!(fresh["data"], through["data"]);
    let (_, stats_closed) = get_json(port, "/api/v1/metrics/cache-stats");
    assert_eq!(stats_closed["breaker_state"], "closed", "{stats_closed}");
    drop(downstream);
    eprintln!("{name}: {stats_after}");
    drop(frontend);
}

#[test]
fn frontend_in_front_of_the_engine() {
    let dir = common::temp_dir("engine-frontend-downstream", "engine");
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    );
    check_frontend("engine", || common::start_engine(&dir, "engine", "engine", port, Some(&config), &[]), port);
}

#[test]
fn frontend_in_front_of_prometheus() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-frontend-downstream", "prometheus");
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    );
    check_frontend("prometheus", || common::start_prometheus(&binary, &dir, "prometheus", port, &config, &[]), port);
}

#[test]
fn frontend_inside_the_server() {
    let dir = common::temp_dir("engine-frontend-downstream", "inside");
    let (port, frontend_port) = (free_port(), free_port());
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n\
         frontend:\n  listen_address: 127.0.0.1:{frontend_port}\n  config:\n    cache: {{l1_ttl: 1m}}\n"
    );
    let engine = common::start_engine(&dir, "engine", "engine", port, Some(&config), &[]);
    common::wait_for_body(frontend_port, "/-/ready", WAIT_S_MAX, &engine, |_| true);
    // The engine has scraped itself once it answers `up` directly.
    common::wait_for_body(port, "/api/v1/query?query=up", WAIT_S_MAX, &engine, |body| body.contains("\"engine\""));
    // The frontend evaluates at the time rounded down to 5 s: wait until that is after the first scrape.
    std::thread::sleep(Duration::from_secs(6));
    let path = format!("/api/v1/query?query={}&time={:.3}", encoded("up"), (now_ms() / 5_000 * 5) as f64);
    let (status, first) = get_json(frontend_port, &path);
    assert!(first.to_string().contains("\"engine\""), "{first}");
    let (_, second) = get_json(frontend_port, &path);
    assert_eq!(first, second);
    assert_eq!(status, 200);
    let (_, direct) = get_json(port, &path);
    assert_eq!(first["data"], direct["data"]);
    let (_, stats) = get_json(frontend_port, "/api/v1/metrics/cache-stats");
    assert!(stats["l1_hits"].as_u64() >= Some(1), "{stats}\n{}", engine.log());
    assert!(engine.log().contains("query frontend listening"), "{}", engine.log());
}
