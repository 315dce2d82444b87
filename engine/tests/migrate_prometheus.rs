//! Migration both ways with real Prometheus 2.42 (Debian's `/usr/bin/prometheus`), server to
//! server: the engine starts on a data directory Prometheus wrote while scraping and returns the
//! same samples Prometheus returned; Prometheus starts on a directory the engine wrote (WAL and
//! head-chunk files) and returns the same samples the engine returned. Each process is killed
//! with SIGKILL, as after a crash. Runs when `prometheus` is installed and must run when
//! `ENGINE_PEER_TESTS=1`; loopback only, temporary directories.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, peer, Process};

/// Deadline for a process to produce a wanted answer.
const WAIT_S_MAX: u64 = 60;

/// Samples wanted in the window before a directory changes hands.
const SAMPLE_COUNT_MIN: usize = 8;

fn prometheus() -> Option<PathBuf> {
    peer("/usr/bin/prometheus")
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("engine-migrate", name)
}

/// A config scraping `127.0.0.1:{port}` as job `job` every second, or nothing.
fn write_config(dir: &Path, name: &str, scrape: Option<(&str, u16)>) -> PathBuf {
    let mut text = String::from("global:\n  scrape_interval: 1s\n");
    if let Some((job, port)) = scrape {
        text.push_str(&format!(
            "scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn start(binary: &Path, dir: &Path, name: &str, port: u16, config: &Path) -> Process {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
    Process { child, log_path }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    match common::http_get(port, path) {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// A range query answer: labels (as JSON text) and `(timestamp, value)` points, sorted by labels.
type Matrix = Vec<(String, Vec<(String, String)>)>;

/// The samples of `selector[1m]` at `time_s`, as `(labels, [(timestamp, value)])`, sorted.
fn range_samples(port: u16, selector: &str, time_s: f64) -> Option<Matrix> {
    let query: String = form_urlencoded::byte_serialize(format!("{selector}[1m]").as_bytes()).collect();
    let body = http_get(port, &format!("/api/v1/query?query={query}&time={time_s:.3}"))?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut series: Matrix = json["data"]["result"]
        .as_array()?
        .iter()
        .map(|entry| {
            let points = entry["values"]
                .as_array()
                .map(|values| values.iter().map(|point| (point[0].to_string(), point[1].to_string())).collect())
                .unwrap_or_default();
            (entry["metric"].to_string(), points)
        })
        .collect();
    series.sort();
    Some(series)
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Waits until `selector[1m]` has at least [`SAMPLE_COUNT_MIN`] samples in one series; returns
/// the time of that answer and the answer.
fn wait_for_samples(port: u16, selector: &str, process: &Process) -> (f64, Matrix) {
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    while Instant::now() < deadline {
        // Two seconds back: every scrape stamped before then has committed, so the directory
        // that changes hands holds exactly the samples of this answer in the window.
        let time_s = now_s() - 2.0;
        if let Some(series) = range_samples(port, selector, time_s) {
            if series.iter().any(|(_, points)| points.len() >= SAMPLE_COUNT_MIN) {
                return (time_s, series);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{selector} never had {SAMPLE_COUNT_MIN} samples within {WAIT_S_MAX} s; log:\n{}", process.log());
}

/// Asks `port` for `selector[1m]` at `time_s` until it answers (the server is starting).
fn answer_after_start(port: u16, selector: &str, time_s: f64, process: &Process) -> Matrix {
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    while Instant::now() < deadline {
        if let Some(series) = range_samples(port, selector, time_s).filter(|series| !series.is_empty()) {
            return series;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no answer to {selector} within {WAIT_S_MAX} s; log:\n{}", process.log());
}

#[test]
fn engine_serves_a_data_directory_prometheus_wrote() {
    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("from-prometheus");
    let port = free_port();
    let config = write_config(&dir, "prometheus.yml", Some(("prometheus", port)));
    let prometheus = start(&binary, &dir, "prometheus", port, &config);
    let (time_s, expected) = wait_for_samples(port, "up", &prometheus);
    drop(prometheus); // SIGKILL
    let engine_port = free_port();
    let quiet = write_config(&dir, "engine.yml", None);
    let engine = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, "engine", engine_port, &quiet);
    let got = answer_after_start(engine_port, "up", time_s, &engine);
    assert_eq!(got, expected, "the engine must return Prometheus' own samples; engine log:\n{}", engine.log());
}

#[test]
fn prometheus_serves_a_data_directory_the_engine_wrote() {
    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("from-engine");
    let port = free_port();
    let config = write_config(&dir, "engine.yml", Some(("engine", port)));
    let engine = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, "engine", port, &config);
    let (time_s, expected) = wait_for_samples(port, "up", &engine);
    drop(engine); // SIGKILL
    let prometheus_port = free_port();
    let quiet = write_config(&dir, "prometheus.yml", None);
    let prometheus = start(&binary, &dir, "prometheus", prometheus_port, &quiet);
    let got = answer_after_start(prometheus_port, "up", time_s, &prometheus);
    assert_eq!(got, expected, "Prometheus must return the engine's samples; its log:\n{}", prometheus.log());
    let log = prometheus.log();
    assert!(!log.contains("corruption") && !log.contains("level=error"), "Prometheus repaired or failed:\n{log}");
}

#[test]
fn engine_serves_blocks_promtool_wrote() {
    let Some(_) = prometheus() else { return };
    let dir = temp_dir("promtool-blocks");
    // Ten samples a minute apart, ending a minute ago, in OpenMetrics (timestamps in seconds).
    let last_s = (now_s() as i64 / 60 - 1) * 60;
    let mut text = String::from("# TYPE migrated gauge\n");
    let mut expected: Vec<(String, String)> = Vec::new();
    for index in 0..10_i64 {
        let time_s = last_s - (9 - index) * 60;
        text.push_str(&format!("migrated{{job=\"batch\"}} {}.5 {time_s}\n", index * 3));
        expected.push((time_s.to_string(), format!("\"{}.5\"", index * 3)));
    }
    text.push_str("# EOF\n");
    let input = dir.join("input.om");
    std::fs::write(&input, text).unwrap();
    let data = dir.join("data");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .expect("run promtool");
    assert!(status.success(), "promtool create-blocks-from failed");
    let port = free_port();
    let quiet = write_config(&dir, "engine.yml", None);
    let engine = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, "engine", port, &quiet);
    let query: String = form_urlencoded::byte_serialize(b"migrated[10m]").collect();
    let path = format!("/api/v1/query?query={query}&time={last_s}");
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let body = loop {
        if let Some(body) = http_get(port, &path) {
            break body;
        }
        assert!(Instant::now() < deadline, "engine did not answer; log:\n{}", engine.log());
        std::thread::sleep(Duration::from_millis(250));
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = json["data"]["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(result.len(), 1, "{body}\nlog:\n{}", engine.log());
    assert_eq!(result[0]["metric"]["job"], "batch");
    let got: Vec<(String, String)> = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| (point[0].to_string(), point[1].to_string()))
        .collect();
    assert_eq!(got, expected, "every sample of promtool's blocks, from the engine");
}

/// The engine persists part of its head into a block and checkpoints its WAL; Prometheus 2.42
/// starts on that directory (block, checkpoint, later segments) and counts every sample once.
#[test]
fn prometheus_serves_blocks_and_a_checkpoint_the_engine_persisted() {
    use engine::io::RealFileSystem;
    use engine::model::Labels;
    use engine::storage::Appendable;
    use engine::tsdb::{Db, DbOptions};
    use std::sync::Arc;

    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("persisted");
    let data = dir.join("data");
    const STEP_MS: i64 = 5_000;
    const SAMPLE_COUNT: i64 = 5 * 720; // 5 h at 5 s.
    let end_ms = (now_s() as i64 - 60) * 1000 / STEP_MS * STEP_MS;
    let start_ms = end_ms - (SAMPLE_COUNT - 1) * STEP_MS;
    let series = [
        Labels::from_pairs([("__name__", "persisted"), ("job", "a")]),
        Labels::from_pairs([("__name__", "persisted"), ("job", "b")]),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (block_count, checkpoint_count) = runtime.block_on(async {
        let mut options = DbOptions { background_compaction: false, ..DbOptions::default() };
        options.wal.segment_size_max = 32 * 1024; // Several segments, so a checkpoint is written.
        let db = Db::open(Arc::new(RealFileSystem), &engine::io::TokioSpawner, &data, options).unwrap();
        for index in 0..SAMPLE_COUNT {
            let mut appender = db.appender();
            for labels in &series {
                appender.append(None, labels, start_ms + index * STEP_MS, index as f64).unwrap();
            }
            appender.commit().await.unwrap();
        }
        let written = db.compact_head().await.unwrap();
        let stats = db.stats();
        (written.len(), stats.compaction.checkpoint_creations_total)
    });
    drop(runtime);
    assert!(block_count >= 1, "the head spanned 5 h: at least one block");
    assert_eq!(checkpoint_count, 1, "the wal was checkpointed");

    let port = free_port();
    let quiet = write_config(&dir, "prometheus.yml", None);
    let prometheus = start(&binary, &dir, "prometheus", port, &quiet);
    let time_s = end_ms / 1000;
    let query: String =
        form_urlencoded::byte_serialize(b"count_over_time(persisted[6h]) + on(job) sum_over_time(persisted[6h])")
            .collect();
    let path = format!("/api/v1/query?query={query}&time={time_s}");
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let result = loop {
        let answer = http_get(port, &path).and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
        if let Some(result) =
            answer.and_then(|json| json["data"]["result"].as_array().cloned()).filter(|r| r.len() == 2)
        {
            break result;
        }
        assert!(Instant::now() < deadline, "Prometheus did not answer; log:\n{}", prometheus.log());
        std::thread::sleep(Duration::from_millis(250));
    };
    // Every sample exactly once: a count of 3600 plus a sum of 0 + 1 + ... + 3599.
    let expected = SAMPLE_COUNT + SAMPLE_COUNT * (SAMPLE_COUNT - 1) / 2;
    for entry in &result {
        assert_eq!(entry["value"][1], expected.to_string(), "{entry}; log:\n{}", prometheus.log());
    }
    let log = prometheus.log();
    assert!(!log.contains("corruption") && !log.contains("level=error"), "Prometheus repaired or failed:\n{log}");
}
