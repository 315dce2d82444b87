//! The remote-read endpoint against real Prometheus 2.42 (Debian's `/usr/bin/prometheus`) as
//! the client: the engine scrapes itself every second and carries the external label
//! `replica="a"`; Prometheus scrapes nothing and has `remote_read` to the engine with
//! `read_recent: true`. A range selector asked of Prometheus must answer exactly the engine's
//! series and samples, each with the engine's external label. Runs when `prometheus` is
//! installed, and must run when `ENGINE_PEER_TESTS=1`. Both listen on loopback only.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{difference, free_port, now_ms, peer, query_matrix, with_label, Process};

/// Deadline for each wait.
const WAIT_S_MAX: u64 = 60;

fn start_engine(dir: &Path, port: u16) -> Process {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    replica: a\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    );
    common::start_engine(dir, "engine", "engine", port, Some(&config), &[])
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, engine_port: u16) -> Process {
    let config = format!(
        "global:\n  scrape_interval: 1m\n\
         remote_read:\n  - url: http://127.0.0.1:{engine_port}/api/v1/read\n    read_recent: true\n"
    );
    common::start_prometheus(binary, dir, "prometheus", port, &config, &[])
}

#[test]
fn prometheus_reads_the_engine_remotely() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-remote-read-prometheus", "reads");
    let engine_port = free_port();
    let engine = start_engine(&dir, engine_port);
    let prometheus_port = free_port();
    let prometheus = start_prometheus(&binary, &dir, prometheus_port, engine_port);
    let failure = |what: &str| format!("{what}\nengine log:\n{}\nprometheus log:\n{}", engine.log(), prometheus.log());

    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        let up = query_matrix(engine_port, "up{job=\"engine\"}[1h]", now_ms()).unwrap_or_default();
        if up.values().flatten().count() >= 6 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", failure("the engine scraped nothing"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let end_ms = now_ms() - 1_000;
    let query = "{job=\"engine\"}[30s]";
    let expected = with_label(&query_matrix(engine_port, query, end_ms).expect("the engine answers"), "replica", "a");
    let sample_count: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected.len() >= 50 && sample_count >= 250,
        "too little: {} series, {sample_count} samples",
        expected.len()
    );
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let held = loop {
        // Prometheus answers once its remote storage is up; retry until it does.
        if let Some(held) = query_matrix(prometheus_port, query, end_ms).filter(|held| !held.is_empty()) {
            break held;
        }
        assert!(Instant::now() < deadline, "{}", failure("prometheus answered nothing through remote read"));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(held == expected, "{}", failure(&difference("engine", &expected, "prometheus", &held)));
    // Matchers on the external label: the engine's own value selects, another selects nothing.
    let by_replica = query_matrix(prometheus_port, "up{replica=\"a\"}[30s]", end_ms).expect("prometheus answers");
    assert_eq!(by_replica.len(), 1, "{by_replica:?}");
    let other = query_matrix(prometheus_port, "up{replica=\"b\"}[30s]", end_ms).expect("prometheus answers");
    assert!(other.is_empty(), "{other:?}");
    eprintln!("prometheus read {} series, {sample_count} samples from the engine", held.len());
    drop(prometheus);
    drop(engine);
}
