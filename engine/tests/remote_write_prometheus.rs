//! The remote-write receiver against real Prometheus 2.42 (Debian's `/usr/bin/prometheus`):
//! the engine runs with `--web.enable-remote-write-receiver` and scrapes nothing; Prometheus
//! scrapes itself every second and remote-writes everything (samples and metadata) to the
//! engine. Then both APIs answer the same range selector over a window of past scrapes, and the
//! engine must hold exactly Prometheus' series and samples. Runs when `prometheus` is installed,
//! and must run when `ENGINE_PEER_TESTS=1`. Both listen on loopback only, each with its own
//! temporary directory, and are killed (SIGKILL) at the end.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{difference, free_port, http_get, now_ms, peer, query_matrix, Process};

/// Deadline for each wait (Prometheus' first scrapes, the engine catching up).
const WAIT_S_MAX: u64 = 60;

/// The selector compared: every series of Prometheus' self-scrape.
const SELECTOR: &str = "{job=\"prometheus\"}";

fn start_engine(dir: &Path, port: u16) -> Process {
    // No scrape jobs: everything the engine holds came through remote write.
    let config = dir.join("engine.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let log_path = dir.join("engine.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("engine-data").display()))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start server binary");
    Process { child, log_path }
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, engine_port: u16) -> Process {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n\
             remote_write:\n  - url: http://127.0.0.1:{engine_port}/api/v1/write\n    \
             queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    \
             metadata_config:\n      send_interval: 2s\n"
        ),
    )
    .unwrap();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Process { child, log_path }
}

/// The earliest timestamp of `up{job="prometheus"}` the engine holds, once it holds any.
fn first_up_ms(port: u16) -> Option<i64> {
    let matrix = query_matrix(port, "up{job=\"prometheus\"}[1h]", now_ms())?;
    matrix.values().next()?.first().map(|(time_ms, _)| *time_ms)
}

#[test]
fn engine_holds_what_prometheus_remote_writes() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-remote-write-prometheus", "holds");
    let engine_port = free_port();
    let engine = start_engine(&dir, engine_port);
    let prometheus_port = free_port();
    let prometheus = start_prometheus(&binary, &dir, prometheus_port, engine_port);
    let failure = |what: &str| format!("{what}\nengine log:\n{}\nprometheus log:\n{}", engine.log(), prometheus.log());

    // The first scrape the engine received bounds the window below: Prometheus' WAL watcher
    // skips samples older than its start, so earlier ones may exist only in Prometheus.
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let first_ms = loop {
        if let Some(first_ms) = first_up_ms(engine_port) {
            break first_ms;
        }
        assert!(Instant::now() < deadline, "{}", failure("no remote-written samples reached the engine"));
        std::thread::sleep(Duration::from_millis(500));
    };
    // Five more scrapes, then a window ending a second in the past: every scrape in it is
    // committed in Prometheus, so its answer is final, and the engine must catch up to it.
    std::thread::sleep(Duration::from_secs(6));
    let end_ms = now_ms() - 1_000;
    let query = format!("{SELECTOR}[{}ms]", end_ms - first_ms + 1);
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let (expected, held) = loop {
        let expected = query_matrix(prometheus_port, &query, end_ms);
        let held = query_matrix(engine_port, &query, end_ms);
        if let (Some(expected), Some(held)) = (&expected, &held) {
            if expected == held || Instant::now() >= deadline {
                break (expected.clone(), held.clone());
            }
        }
        assert!(Instant::now() < deadline, "{}", failure(&format!("{query} failed on one side")));
        std::thread::sleep(Duration::from_millis(500));
    };
    let sample_count: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected.len() >= 100 && sample_count >= 500,
        "too little compared: {} series, {sample_count} samples",
        expected.len()
    );
    assert!(
        held == expected,
        "{}",
        failure(&format!("{query} at {end_ms}:\n{}", difference("prometheus", &expected, "engine", &held)))
    );
    eprintln!("compared {} series, {sample_count} samples", expected.len());

    // Prometheus saw every request accepted; the engine counted them.
    let (_, metrics) = http_get(engine_port, "/metrics").unwrap();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(counter("engine_remote_write_requests_total{code=\"204\"}") >= 1.0);
    assert_eq!(counter("engine_remote_write_requests_total{code=\"400\"}"), 0.0, "{}", failure("requests refused"));
    assert!(counter("engine_remote_write_samples_received_total") >= sample_count as f64);
    let failed = query_matrix(prometheus_port, "prometheus_remote_storage_samples_failed_total[1m]", now_ms())
        .expect("query prometheus' remote storage metrics");
    for samples in failed.values() {
        assert!(samples.iter().all(|(_, bits)| f64::from_bits(*bits) == 0.0), "samples failed: {samples:?}");
    }
    drop(prometheus);
    drop(engine);
}
