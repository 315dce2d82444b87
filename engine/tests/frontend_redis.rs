//! Two query frontends sharing Debian's `redis-server` (started here on a loopback port; the test
//! is skipped when it is not installed and required under `ENGINE_PEER_TESTS=1`) in front of the
//! engine's server: an answer fetched by one replica is an L2 hit on the other; identical
//! requests spread over both replicas make one downstream request; a key's rate limit is shared;
//! with Redis stopped mid-test both keep answering (L1 and the downstream) and let limited
//! requests through, counted as fail-open.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, http_get, peer, Process};
use serde_json::Value;

/// Deadline for each wait.
const WAIT_S_MAX: u64 = 60;

fn start_redis(binary: &Path, dir: &Path, port: u16) -> Process {
    let log_path = dir.join("redis.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(log)
        .spawn()
        .expect("start redis-server");
    Process { child, log_path }
}

fn start_frontend(dir: &Path, name: &str, port: u16, downstream_port: u16, redis_port: u16) -> Process {
    let config =
        "cache:\n  l1_ttl: 1s\n  l2_ttl: 15s\nlimits:\n  user_requests_per_minute: 0\n  key_requests_per_minute: 5\n";
    common::start_frontend(
        dir,
        name,
        port,
        downstream_port,
        config,
        &[format!("--frontend.redis-address=127.0.0.1:{redis_port}")],
    )
}

fn get(port: u16, path: &str) -> (u16, String) {
    http_get(port, path).unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

fn stats(port: u16) -> Value {
    serde_json::from_str(&get(port, "/api/v1/metrics/cache-stats").1).unwrap()
}

fn query_path(query: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("/api/v1/query?query={encoded}")
}

#[test]
fn replicas_share_answers_flights_and_limits_through_redis() {
    let Some(redis_binary) = peer("/usr/bin/redis-server") else { return };
    let dir = common::temp_dir("engine-frontend-redis", "shared");
    let engine_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: [\"127.0.0.1:{engine_port}\"]\n"
    );
    let engine = common::start_engine(&dir, "engine", "engine", engine_port, Some(&config), &[]);
    let redis_port = free_port();
    let mut redis = start_redis(&redis_binary, &dir, redis_port);
    let (port_a, port_b) = (free_port(), free_port());
    let frontend_a = start_frontend(&dir, "frontend-a", port_a, engine_port, redis_port);
    let frontend_b = start_frontend(&dir, "frontend-b", port_b, engine_port, redis_port);
    let redis_log = redis.log_path.clone();
    let failure = |what: &str| {
        format!(
            "{what}\nfrontend a:\n{}\nfrontend b:\n{}\nredis:\n{}\nengine:\n{}",
            frontend_a.log(),
            frontend_b.log(),
            std::fs::read_to_string(&redis_log).unwrap_or_default(),
            engine.log()
        )
    };
    common::wait_for_body(port_a, "/-/ready", WAIT_S_MAX, &frontend_a, |_| true);
    common::wait_for_body(port_b, "/-/ready", WAIT_S_MAX, &frontend_b, |_| true);
    common::wait_for_body(engine_port, &query_path("up"), WAIT_S_MAX, &engine, |body| body.contains("\"1\""));

    // Fetched by A, an L2 hit on B: B does not ask the downstream.
    let path = query_path("sum(up)");
    let (status, through_a) = get(port_a, &path);
    assert_eq!(status, 200, "{}", failure(&through_a));
    let (status, through_b) = get(port_b, &path);
    assert_eq!(status, 200, "{through_b}");
    assert_eq!(through_a, through_b);
    let b = stats(port_b);
    assert_eq!(b["l2_hits"], 1, "{}", failure(&b.to_string()));
    assert_eq!(b["downstream_requests"], 0, "{b}");
    assert_eq!(b["redis"], "up");

    // 40 identical requests at once, half to each replica: one downstream request in all.
    let before =
        stats(port_a)["downstream_requests"].as_u64().unwrap() + stats(port_b)["downstream_requests"].as_u64().unwrap();
    let path = query_path("count(up) * 3");
    let threads: Vec<_> = (0..40)
        .map(|index| {
            let (path, port) = (path.clone(), if index % 2 == 0 { port_a } else { port_b });
            std::thread::spawn(move || get(port, &path))
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
    assert!(answers.iter().all(|(status, body)| *status == 200 && *body == answers[0].1), "{answers:?}");
    let (a, b) = (stats(port_a), stats(port_b));
    let after = a["downstream_requests"].as_u64().unwrap() + b["downstream_requests"].as_u64().unwrap();
    assert_eq!(after - before, 1, "{}", failure(&format!("a: {a}\nb: {b}")));

    // The key limit (5 a minute) spans replicas.
    let limited = format!("{}&db_id=db7", query_path("up"));
    for index in 0..5 {
        let port = if index < 3 { port_a } else { port_b };
        assert_eq!(get(port, &limited).0, 200, "request {index}");
    }
    let (status, body) = get(port_a, &limited);
    assert_eq!(status, 429, "{body}");
    assert_eq!(get(port_b, &limited).0, 429);

    // Redis goes away: answers keep coming, the limit fails open, and the frontend says so.
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let (status, body) = get(port_a, &limited);
    assert_eq!(status, 200, "{}", failure(&format!("fail-open: {body}")));
    std::thread::sleep(Duration::from_millis(1_100)); // past the L1 TTL
    let (status, body) = get(port_b, &query_path("sum(up)"));
    assert_eq!(status, 200, "{body}");
    let a = stats(port_a);
    assert_eq!(a["redis"], "down", "{a}");
    assert!(a["redis_errors"].as_u64().unwrap() >= 1, "{a}");
    assert!(a["rate_limit_fail_open"].as_u64().unwrap() >= 1, "{a}");
    let (_, metrics) = get(port_b, "/metrics");
    assert!(metrics.contains("frontend_redis_up 0\n"), "{metrics}");
    drop(frontend_a);
    drop(frontend_b);
}
