//! The remote read client against real Prometheus 2.42 (Debian's `/usr/bin/prometheus`) as the
//! store: Prometheus scrapes itself every second; the engine scrapes nothing and has two
//! `remote_read` entries, Prometheus' `/api/v1/read` and a port nobody listens on. A range
//! selector asked of the engine must answer exactly what Prometheus answers for it (Prometheus
//! sends streamed XOR chunks, which the engine asks for first), with a warning naming the dead
//! store. Runs when `prometheus` is installed, and must run when `ENGINE_PEER_TESTS=1`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{difference, free_port, http_get, now_ms, peer, query_matrix, Process};

/// Deadline for each wait.
const WAIT_S_MAX: u64 = 60;

fn start_engine(dir: &Path, port: u16, prometheus_port: u16, dead_port: u16) -> Process {
    let config = format!(
        "global:\n  scrape_interval: 1m\n\
         remote_read:\n  - url: http://127.0.0.1:{prometheus_port}/api/v1/read\n    name: prometheus\n\
         \x20 - url: http://127.0.0.1:{dead_port}/api/v1/read\n    name: dead\n    remote_timeout: 2s\n"
    );
    common::start_engine(dir, "engine", "engine", port, Some(&config), &[])
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16) -> Process {
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    );
    common::start_prometheus(binary, dir, "prometheus", port, &config, &[])
}

#[test]
fn engine_reads_prometheus_remotely_and_warns_about_a_dead_store() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-remote-read-client", "reads");
    let prometheus_port = free_port();
    let prometheus = start_prometheus(&binary, &dir, prometheus_port);
    let engine_port = free_port();
    let engine = start_engine(&dir, engine_port, prometheus_port, free_port());
    let failure = |what: &str| format!("{what}\nengine log:\n{}\nprometheus log:\n{}", engine.log(), prometheus.log());

    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        let up = query_matrix(prometheus_port, "up{job=\"prometheus\"}[1h]", now_ms()).unwrap_or_default();
        if up.values().flatten().count() >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", failure("prometheus scraped nothing"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let end_ms = now_ms() - 1_000;
    let query = "{job=\"prometheus\"}[30s]";
    let expected = query_matrix(prometheus_port, query, end_ms).expect("prometheus answers");
    let sample_count: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected.len() >= 100 && sample_count >= 500,
        "too little: {} series, {sample_count} samples",
        expected.len()
    );
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let held = loop {
        if let Some(held) = query_matrix(engine_port, query, end_ms).filter(|held| !held.is_empty()) {
            break held;
        }
        assert!(Instant::now() < deadline, "{}", failure("the engine answered nothing through remote read"));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(held == expected, "{}", failure(&difference("prometheus", &expected, "engine", &held)));

    // The dead store is a warning, not a failure.
    let encoded: String = form_urlencoded::byte_serialize("up".as_bytes()).collect();
    let (status, body) = http_get(engine_port, &format!("/api/v1/query?query={encoded}")).unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let warnings = json["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.iter().any(|warning| warning.as_str().is_some_and(|text| text.starts_with("remote read from dead:"))),
        "{body}"
    );
    assert_eq!(json["data"]["result"].as_array().map(Vec::len), Some(1), "{body}");
    eprintln!("the engine read {} series, {sample_count} samples from prometheus", held.len());
    drop(engine);
    drop(prometheus);
}
